//! The C PyCapsule destructor outside Python: it must find no Python C API
//! in a plain Rust process and do nothing (a leak beats a crash). Its real
//! work is tested from Python (python/tests/test_lifetime.py).

#[test]
#[cfg_attr(miri, ignore = "Miri does not support dlsym")]
fn the_capsule_destructor_does_nothing_without_python() {
    let mut not_a_capsule = [0u64; 8];
    // SAFETY: without a Python runtime the function returns before reading
    // its argument.
    unsafe {
        arrow_dlpack::capi::arrow_dlpack_capsule_destructor(not_a_capsule.as_mut_ptr().cast())
    };
    assert_eq!(not_a_capsule, [0; 8]);
}
