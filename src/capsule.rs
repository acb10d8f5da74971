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
//! that never call this function never need Python. What a capsule's
//! contents need to be destroyed, by its name, is [`destroy_contents`]:
//! the Python extension's capsules (`src/python/`) use it too.

use std::ffi::{CStr, c_char, c_void};
use std::sync::OnceLock;

use std::ptr::NonNull;

use crate::abi::{ArrowArray, ArrowSchema, DLManagedTensor, DLManagedTensorVersioned};
use crate::arrow::release::Release;
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
        // SAFETY: the capsule's own name, so GetPointer succeeds.
        let pointer = unsafe { (api.get_pointer)(capsule, name) };
        // SAFETY: a capsule name is a NUL-terminated string; the capsule
        // holds what its name says, not yet destroyed (this function's
        // contract).
        unsafe { destroy_contents(CStr::from_ptr(name), pointer) };
    });
}

/// What a capsule of the DLPack or Arrow PyCapsule protocols made by our
/// bindings holds, destroyed by the capsule's name: a `"dltensor"` or
/// `"dltensor_versioned"` tensor is deleted; a malloc'd `"arrow_schema"`,
/// `"arrow_array"` or `"arrow_device_array"` struct is released (unless a
/// consumer moved it out) and freed; anything else (a `"used_..."` tensor a
/// consumer took) is left alone. The one destructor of the C ABI's
/// capsules and of the Python extension's.
///
/// # Safety
/// `pointer` is NULL or what a capsule named `name` holds, owned by the
/// caller and not yet destroyed.
pub(crate) unsafe fn destroy_contents(name: &CStr, pointer: *mut c_void) {
    let Some(pointer) = NonNull::new(pointer) else {
        return;
    };
    // SAFETY: the caller's contract: a live tensor of the flavour the name
    // says, or a malloc'd Arrow struct of the kind it says.
    unsafe {
        match name.to_bytes() {
            b"dltensor" => managed::delete(pointer.cast::<DLManagedTensor>()),
            b"dltensor_versioned" => managed::delete(pointer.cast::<DLManagedTensorVersioned>()),
            b"arrow_schema" => free_schema(pointer.cast()),
            b"arrow_array" | b"arrow_device_array" => free_device_array(pointer.cast()),
            _ => {} // not ours to destroy
        }
    }
}

/// Releases (unless moved out) and frees a malloc'd struct ArrowSchema.
///
/// # Safety
/// `schema` was allocated with `malloc`, is owned by the caller and not yet
/// freed.
pub(crate) unsafe fn free_schema(schema: NonNull<ArrowSchema>) {
    let s = schema.as_ptr();
    // SAFETY: live (the caller's contract); its release callback is called
    // at most once, then the memory is freed.
    unsafe {
        (*s).release_once();
        libc::free(s.cast());
    }
}

/// Releases (unless moved out) and frees a malloc'd struct ArrowArray or
/// ArrowDeviceArray (which starts with its ArrowArray).
///
/// # Safety
/// As [`free_schema`].
pub(crate) unsafe fn free_device_array(array: NonNull<ArrowArray>) {
    let a = array.as_ptr();
    // SAFETY: as in `free_schema`.
    unsafe {
        (*a).release_once();
        libc::free(a.cast());
    }
}
