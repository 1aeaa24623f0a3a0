//! Decides whether the io_uring driver is compiled: the feature `uring`, on
//! Linux, on an architecture the `io-uring` crate ships bindings for (it
//! refuses to compile elsewhere, e.g. 32-bit ARM boards). The code asks
//! `cfg(rookery_uring)`, one name for the whole condition; elsewhere the
//! feature builds and `--io uring` says the driver is not built in.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(rookery_uring)");
    let feature = std::env::var_os("CARGO_FEATURE_URING").is_some();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    // The architectures io-uring 0.7's prebuilt `sys.rs` covers; keep in
    // step with the target table of its dependency in Cargo.toml.
    let bound = matches!(
        arch.as_str(),
        "x86_64" | "aarch64" | "riscv64" | "loongarch64" | "powerpc64"
    );
    if feature && os == "linux" && bound {
        println!("cargo::rustc-cfg=rookery_uring");
    }
}
