//! Gives the shared library a soname, `libarrow_dlpack.so.MAJOR`, so that
//! installed copies are versioned like any system library.

fn main() {
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_default();
    if target_os == "linux" || target_os == "freebsd" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libarrow_dlpack.so.{major}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
