//! The command line: help, version, mistakes, and the bound address.

mod common;

use std::process::Stdio;

fn rookery(args: &[&str]) -> std::process::Output {
    common::rookery_command()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run rookery")
}

#[test]
fn help_explains_every_flag_with_its_default() {
    let out = rookery(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--listen",
        "--path",
        "--mode",
        "--welcome",
        "--ping-interval",
        "--idle-timeout",
        "--handshake-timeout",
        "--close-timeout",
        "--max-message",
        "--max-backlog",
        "--max-connections",
        "--allow-origin",
        "--allow-binary",
        "--no-page",
        "-v",
        "-q",
        "--help",
        "--version",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    for default in [
        "127.0.0.1:1984",
        "/chat",
        "5s",
        "15s",
        "1MiB",
        "1024",
        "Welcome to Rookery Chat!",
    ] {
        assert!(help.contains(default), "--help lacks the default {default}");
    }
}

#[test]
fn version_names_the_crate_version() {
    let out = rookery(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("rookery {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_bad_flag_or_value_is_one_line_and_exit_2() {
    for (args, names) in [
        (&["--frobnicate"][..], "--frobnicate"),
        (&["--ping-interval", "often"][..], "--ping-interval"),
        (&["--max-message", "huge"][..], "--max-message"),
        (&["--mode", "relay"][..], "--mode"),
        (&["--listen"][..], "--listen"),
    ] {
        let out = rookery(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(names), "{err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn port_0_prints_the_bound_address() {
    let server = common::Rookery::start(&[]);
    assert_eq!(server.addr.ip().to_string(), "127.0.0.1");
    assert_ne!(server.addr.port(), 0);
    assert!(std::net::TcpStream::connect(server.addr).is_ok());
}

#[test]
fn an_address_in_use_is_an_error_not_a_panic() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = rookery(&["--listen", &addr]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("cannot listen on"), "{err}");
    assert!(!err.contains("panicked"));
}

#[test]
fn rust_log_overrides_quiet() {
    let mut server = common::Rookery::start(&["-q"]);
    server.signal(libc::SIGTERM);
    server
        .wait_exit(std::time::Duration::from_secs(10))
        .unwrap();
    assert!(
        !server.stderr_text().contains("serving chat"),
        "-q hides info"
    );

    let mut child = common::rookery_command()
        .args(["-q", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("serving chat"));
}
