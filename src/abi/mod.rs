//! `#[repr(C)]` mirrors of the Arrow C (Device) Data Interface and of the
//! DLPack 1.3 ABI, written from the specifications. Nothing else lives here:
//! no validation, no behaviour.
//!
//! The C definitions that users see are in `cbindgen.toml` (emitted verbatim
//! into the header under the conventional include guards, so that the header
//! coexists with Arrow C++, nanoarrow and `dlpack/dlpack.h`). Static
//! assertions at the end of `arrow.rs` and `dlpack.rs` pin the Rust side to
//! the same layout; `c_tests/abi_check.c` pins the C side against the
//! definitions pyarrow ships. The DLPack C exchange API's table, which the
//! Python package offers and takes, is Rust-only (no C function names it).

mod arrow;
mod dlpack;

pub use arrow::*;
pub use dlpack::*;
