//! examples/c/Makefile finds librookery.a where cargo puts it: under
//! `CARGO_TARGET_DIR` when that is set (absolute, or relative to the
//! repository's root, where the Makefile runs cargo), else under target/.
//! Checked with `make -n`, which prints the commands without running them.
//! Without make the test prints `SKIPPED: make not found` and passes,
//! unless `ROOKERY_REQUIRE_MAKE=1` (CI) makes it fail (`common::require`).

mod common;

use std::process::Command;

use common::{require_program, Tool};

/// The commands `make -n chat` would run, with `CARGO_TARGET_DIR` as
/// given (`None`: unset), or `None` without make.
fn planned(target_dir: Option<&str>) -> Option<String> {
    let mut make = Command::new("make");
    make.args(["-n", "-C", "examples/c", "chat"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("CARGO_TARGET_DIR")
        // `cargo test` sets CARGO to its own path, which the Makefile uses.
        .env("CARGO", "cargo");
    if let Some(dir) = target_dir {
        make.env("CARGO_TARGET_DIR", dir);
    }
    if !require_program(Tool::Make, "make", &["--version"]) {
        return None;
    }
    let out = make.output().expect("run make");
    assert!(out.status.success(), "{out:?}");
    Some(String::from_utf8(out.stdout).unwrap())
}

#[test]
fn the_c_example_links_the_library_from_cargos_target_directory() {
    let Some(plan) = planned(None) else { return };
    assert!(
        plan.contains(" ../../target/release/librookery.a "),
        "{plan}"
    );
    assert!(!plan.contains("CARGO_TARGET_DIR"), "{plan}");

    let plan = planned(Some("/tmp/rookery-elsewhere")).unwrap();
    assert!(
        plan.contains(
            "CARGO_TARGET_DIR='/tmp/rookery-elsewhere' cargo build --release -p rookery-capi"
        ),
        "{plan}"
    );
    assert!(
        plan.contains(" /tmp/rookery-elsewhere/release/librookery.a "),
        "{plan}"
    );

    // Relative: cargo, run from the repository's root, takes it from there.
    let plan = planned(Some("build")).unwrap();
    assert!(
        plan.contains("cd ../.. && CARGO_TARGET_DIR='build' cargo build"),
        "{plan}"
    );
    assert!(
        plan.contains(" ../../build/release/librookery.a "),
        "{plan}"
    );
}
