//! Gives the shared library its soname.
//!
//! A plain `cargo build` writes `target/<profile>/libarrow_dlpack.so` and
//! nothing else, so its soname is that very name: a program linked against
//! it by hand (`cc app.c target/release/libarrow_dlpack.so`, or
//! `-Ltarget/release -larrow_dlpack`) records `libarrow_dlpack.so` and
//! finds it through `LD_LIBRARY_PATH` or an rpath.
//!
//! An installed library is versioned like any system library: the CMake
//! build sets `ARROW_DLPACK_SOVERSION` to the major version, so the soname
//! becomes `libarrow_dlpack.so.MAJOR` and CMake installs the file with the
//! `.so.MAJOR` and `.so` links. (cargo-c makes the same split.) CMake
//! builds in a cargo target directory of its own, so the two never
//! overwrite each other's library.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=ARROW_DLPACK_SOVERSION");
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os != "linux" && target_os != "freebsd" {
        return;
    }
    let soname = match std::env::var("ARROW_DLPACK_SOVERSION") {
        Ok(version) if !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()) => {
            format!("libarrow_dlpack.so.{version}")
        }
        Ok(version) if !version.is_empty() => {
            panic!("ARROW_DLPACK_SOVERSION must be a number (the major version), got {version:?}")
        }
        _ => "libarrow_dlpack.so".to_string(),
    };
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
}
