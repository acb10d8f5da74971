//! Page-locked ("pinned") host memory from the CUDA driver, for copies a
//! GPU will read: `tensor.to("cuda", non_blocking=True)` from pinned
//! memory is an asynchronous DMA, from pageable memory a staged,
//! synchronous copy.
//!
//! The driver (`libcuda.so.1`) is loaded with `dlopen` at the first pinned
//! copy: no link dependency, no cost without one. Memory comes from
//! `cuMemHostAlloc` (portable: usable from every context), with device
//! 0's primary context made current around the call (the driver asks for
//! a context; the primary one is the one the CUDA runtime, and so PyTorch,
//! uses), and goes back with `cuMemFreeHost` the same way.

use std::ffi::{CStr, c_int, c_uint, c_void};
use std::sync::OnceLock;

use crate::error::{Error, err};

/// `CU_MEMHOSTALLOC_PORTABLE`: pinned for every context.
const PORTABLE: c_uint = 1;

type Status = c_int;

type Init = unsafe extern "C" fn(c_uint) -> Status;
type DeviceGet = unsafe extern "C" fn(*mut c_int, c_int) -> Status;
type Retain = unsafe extern "C" fn(*mut *mut c_void, c_int) -> Status;
type PrimaryRelease = unsafe extern "C" fn(c_int) -> Status;
type Push = unsafe extern "C" fn(*mut c_void) -> Status;
type Pop = unsafe extern "C" fn(*mut *mut c_void) -> Status;
type Alloc = unsafe extern "C" fn(*mut *mut c_void, usize, c_uint) -> Status;
type Free = unsafe extern "C" fn(*mut c_void) -> Status;

/// The driver's functions the pinned copies call.
struct Driver {
    device_get: DeviceGet,
    retain: Retain,
    release: PrimaryRelease,
    push: Push,
    pop: Pop,
    alloc: Alloc,
    free: Free,
}

/// The driver, loaded once; the reason when it cannot be.
fn driver() -> Result<&'static Driver, Error> {
    static DRIVER: OnceLock<Result<Driver, String>> = OnceLock::new();
    DRIVER.get_or_init(load).as_ref().map_err(|why| {
        err!(
            ARROW_DLPACK_UNSUPPORTED_DEVICE,
            "pinned memory needs the CUDA driver: {why}"
        )
    })
}

fn load() -> Result<Driver, String> {
    let names: [&CStr; 2] = [c"libcuda.so.1", c"libcuda.so"];
    // SAFETY: dlopen with valid C strings; a handle never closed (the
    // driver stays loaded for the process, as the CUDA runtime keeps it).
    let handle = names
        .iter()
        .map(|n| unsafe { libc::dlopen(n.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) })
        .find(|h| !h.is_null())
        .ok_or_else(|| {
            "libcuda.so.1 was not found (no NVIDIA driver on this machine)".to_string()
        })?;
    let find = |name: &CStr| -> Result<*mut c_void, String> {
        // SAFETY: a live handle and a C string.
        let f = unsafe { libc::dlsym(handle, name.as_ptr()) };
        match f.is_null() {
            true => Err(format!("libcuda.so.1 has no {}", name.to_string_lossy())),
            false => Ok(f),
        }
    };
    // SAFETY: each symbol is the driver API function of that name, whose C
    // signature the field's type spells (cuda.h).
    unsafe {
        use std::mem::transmute;
        let init = transmute::<*mut c_void, Init>(find(c"cuInit")?);
        let code = init(0);
        if code != 0 {
            return Err(format!("cuInit failed with CUresult {code}"));
        }
        Ok(Driver {
            device_get: transmute::<*mut c_void, DeviceGet>(find(c"cuDeviceGet")?),
            retain: transmute::<*mut c_void, Retain>(find(c"cuDevicePrimaryCtxRetain")?),
            release: transmute::<*mut c_void, PrimaryRelease>(find(
                c"cuDevicePrimaryCtxRelease_v2",
            )?),
            push: transmute::<*mut c_void, Push>(find(c"cuCtxPushCurrent_v2")?),
            pop: transmute::<*mut c_void, Pop>(find(c"cuCtxPopCurrent_v2")?),
            alloc: transmute::<*mut c_void, Alloc>(find(c"cuMemHostAlloc")?),
            free: transmute::<*mut c_void, Free>(find(c"cuMemFreeHost")?),
        })
    }
}

impl Driver {
    /// Runs `call` with device 0's primary context current.
    fn in_context(&self, call: impl FnOnce() -> Status) -> Result<Status, String> {
        let (mut device, mut context) = (0, std::ptr::null_mut());
        // SAFETY: the driver's functions with valid out-pointers; the
        // context pushed is popped, the one retained released.
        unsafe {
            match (self.device_get)(&mut device, 0) {
                0 => {}
                code => return Err(format!("cuDeviceGet failed with CUresult {code}")),
            }
            match (self.retain)(&mut context, device) {
                0 => {}
                code => {
                    return Err(format!(
                        "cuDevicePrimaryCtxRetain failed with CUresult {code}"
                    ));
                }
            }
            let code = match (self.push)(context) {
                0 => {
                    let code = call();
                    (self.pop)(&mut std::ptr::null_mut());
                    Ok(code)
                }
                code => Err(format!("cuCtxPushCurrent failed with CUresult {code}")),
            };
            (self.release)(device);
            code
        }
    }
}

/// Whether the driver can be loaded (the reason when not).
pub fn check() -> Result<(), Error> {
    driver().map(|_| ())
}

/// `len` bytes (at least 1) of pinned host memory, uninitialized.
pub fn alloc(len: usize) -> Result<*mut u8, Error> {
    let d = driver()?;
    let mut p = std::ptr::null_mut();
    // SAFETY: a valid out-pointer.
    let code = d
        .in_context(|| unsafe { (d.alloc)(&mut p, len.max(1), PORTABLE) })
        .map_err(|why| err!(ARROW_DLPACK_UNSUPPORTED_DEVICE, "pinned memory: {why}"))?;
    match (code, p.is_null()) {
        (0, false) => Ok(p.cast()),
        _ => Err(err!(
            ARROW_DLPACK_OUT_OF_MEMORY,
            "cuMemHostAlloc of {len} bytes of pinned memory failed with CUresult {code}"
        )),
    }
}

/// Frees memory of [`alloc`].
///
/// # Safety
/// `p` came from [`alloc`] and is not used again.
pub unsafe fn free(p: *mut u8) {
    // The driver loaded (the memory came from it); a failure to free is
    // not reportable from a deleter.
    if let Ok(d) = driver() {
        // SAFETY: memory of `cuMemHostAlloc`, freed once.
        let _ = d.in_context(|| unsafe { (d.free)(p.cast()) });
    }
}
