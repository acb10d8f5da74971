//! A PyCapsule destructor in C, for language bindings that hand our tensors
//! to Python consumers without a compiled extension (ctypes, cffi).
//!
//! The DLPack Python protocol wraps a tensor in a capsule named
//! `"dltensor"` or `"dltensor_versioned"`; a consumer that takes the tensor
//! renames it `"used_dltensor[_versioned]"`, and the capsule's destructor
//! must delete the tensor only if nobody took it. A destructor written in
//! Python (a ctypes callback) costs microseconds on *every* capsule,
//! consumed or not; this one costs nanoseconds.
//!
//! The Python C API is looked up at run time in the process (`dlsym`), so
//! the library has no link-time dependency on libpython and C programs
//! that never call this function never need Python.

use std::ffi::{CStr, c_char, c_void};
use std::sync::OnceLock;

use std::ptr::NonNull;

use crate::abi::{DLManagedTensor, DLManagedTensorVersioned};
use crate::managed;

type GetName = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type GetPointer = unsafe extern "C" fn(*mut c_void, *const c_char) -> *mut c_void;

#[cfg_attr(not(unix), allow(dead_code))]
struct PythonApi {
    get_name: GetName,
    get_pointer: GetPointer,
}

#[cfg(not(unix))]
fn python() -> Option<&'static PythonApi> {
    None // no `dlsym`: a leak rather than a crash (see the function's doc)
}

/// The two capsule functions of the running Python, if there is one.
#[cfg(unix)]
fn python() -> Option<&'static PythonApi> {
    static API: OnceLock<Option<PythonApi>> = OnceLock::new();
    API.get_or_init(|| {
        // SAFETY: dlsym with valid NUL-terminated names; a non-NULL result
        // is the address of the named function of the Python C API, whose
        // signatures are the ones transmuted to.
        unsafe {
            let name = libc::dlsym(libc::RTLD_DEFAULT, c"PyCapsule_GetName".as_ptr());
            let pointer = libc::dlsym(libc::RTLD_DEFAULT, c"PyCapsule_GetPointer".as_ptr());
            if name.is_null() || pointer.is_null() {
                return None;
            }
            Some(PythonApi {
                get_name: std::mem::transmute::<*mut c_void, GetName>(name),
                get_pointer: std::mem::transmute::<*mut c_void, GetPointer>(pointer),
            })
        }
    })
    .as_ref()
}

/// `PyCapsule_Destructor` for a capsule holding a DLPack tensor: calls the
/// tensor's deleter if the capsule is still named `"dltensor"` or
/// `"dltensor_versioned"` (nobody took it), and does nothing once a
/// consumer renamed it `"used_dltensor[_versioned]"`.
///
/// Also for capsules named `"arrow_schema"`, `"arrow_array"` or
/// `"arrow_device_array"` holding a struct allocated with `malloc`: it
/// releases the struct if a consumer did not move it out (its `release` is
/// not NULL), then `free`s it. (The import side of the Python bindings.)
///
/// Pass it to `PyCapsule_New` as the destructor. It is called by Python
/// with the GIL held. If the Python C API cannot be found in the process
/// (Python embedded with `RTLD_LOCAL`), it does nothing: the tensor leaks
/// rather than the process crashing.
///
/// # Safety
/// `capsule` is a PyCapsule being destroyed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn arrow_dlpack_capsule_destructor(capsule: *mut c_void) {
    let Some(api) = python() else { return };
    // A panic must not unwind into Python; nothing below panics, and the
    // guard keeps it that way.
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: a live capsule (contract); GetName does not fail on one.
        let name = unsafe { (api.get_name)(capsule) };
        if name.is_null() {
            return;
        }
        // SAFETY: a capsule name is a NUL-terminated string.
        let name_bytes = unsafe { CStr::from_ptr(name) }.to_bytes();
        // SAFETY: the capsule's own name, so GetPointer succeeds.
        let pointer = unsafe { (api.get_pointer)(capsule, name) };
        if pointer.is_null() {
            return;
        }
        // SAFETY: the capsule holds a tensor of the kind its name says, not
        // yet deleted (the capsule owned it until now); Arrow capsules made
        // by our bindings hold a malloc'd struct (contract of this function).
        unsafe {
            match name_bytes {
                b"dltensor" => {
                    managed::delete(NonNull::new_unchecked(pointer.cast::<DLManagedTensor>()))
                }
                b"dltensor_versioned" => managed::delete(NonNull::new_unchecked(
                    pointer.cast::<DLManagedTensorVersioned>(),
                )),
                _ => free_arrow_struct(name_bytes, pointer),
            }
        }
    });
}

/// Releases (unless moved out) and frees a malloc'd Arrow struct.
///
/// # Safety
/// `pointer` is a `malloc`'d struct of the kind `name` says.
#[cfg(unix)]
unsafe fn free_arrow_struct(name: &[u8], pointer: *mut c_void) {
    use crate::abi::{ArrowArray, ArrowDeviceArray, ArrowSchema};
    // SAFETY: the struct named by the capsule (caller's contract); each
    // release callback is called at most once, then the memory is freed.
    unsafe {
        match name {
            b"arrow_schema" => {
                let s = pointer.cast::<ArrowSchema>();
                if let Some(release) = (*s).release {
                    release(s);
                }
            }
            b"arrow_array" => {
                let a = pointer.cast::<ArrowArray>();
                if let Some(release) = (*a).release {
                    release(a);
                }
            }
            b"arrow_device_array" => {
                let a = pointer.cast::<ArrowDeviceArray>();
                if let Some(release) = (*a).array.release {
                    release(&raw mut (*a).array);
                }
            }
            _ => return, // not ours
        }
        libc::free(pointer);
    }
}

#[cfg(not(unix))]
unsafe fn free_arrow_struct(_name: &[u8], _pointer: *mut c_void) {}
