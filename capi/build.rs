//! Link arguments for the shared library only (`librookery.so`): its soname,
//! `librookery.so.0`. The static archive takes no link step.
//!
//! No version script of our own: rustc gives a cdylib one already, which
//! exports the `#[no_mangle]` C functions alone (here the `rk_*` wrappers
//! of src/lib.rs) and makes everything else local, and GNU ld joins a
//! second script to it (their exports add up), so one could not narrow it.
//! `.ci/package-test` checks that `nm -D` lists only `rk_*`.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,librookery.so.0");
}
