//! `librookery.a`: the C API of rookery (`include/rookery.h`).
//!
//! The functions live in the `rookery` crate's `ffi` module (its hidden
//! `ffi` feature); this crate only links them, with the rest of rookery and
//! the Rust standard library, into one static archive. Their
//! `#[no_mangle] extern "C"` symbols are exported from it as they are.

pub use rookery_lib::ffi::*;
