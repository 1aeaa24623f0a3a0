//! The systemd units in contrib/systemd: `systemd-analyze verify` finds
//! nothing wrong with them, their sandbox scores as exposed as its options
//! say (`systemd-analyze security`), and every system call the server makes
//! in a session (traced with strace) is one the unit's
//! `SystemCallFilter=` allows. Skipped, with a message, when
//! systemd-analyze (Debian package `systemd`) or strace is missing, unless
//! `ROOKERY_REQUIRE_SYSTEMD=1` (then it fails).
#![cfg(target_os = "linux")]

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const UNITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/systemd");

/// Whether `tool` runs; if not, says SKIPPED (or fails when
/// `ROOKERY_REQUIRE_SYSTEMD` is set).
fn have(tool: &str) -> bool {
    require_program(Tool::Systemd, tool, &["--version"])
}

/// A directory with copies of the units whose ExecStart runs the built
/// binary (verify checks that the command exists; /usr/bin/rookery is the
/// package's).
fn units_for_the_built_binary() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rookery-units-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["rookery.service", "rookery.socket"] {
        let text = std::fs::read_to_string(Path::new(UNITS).join(name)).unwrap();
        let text = text.replace("/usr/bin/rookery", env!("CARGO_BIN_EXE_rookery"));
        std::fs::write(dir.join(name), text).unwrap();
    }
    dir
}

#[test]
fn systemd_analyze_verify_is_clean() {
    if !have("systemd-analyze") {
        return;
    }
    let dir = units_for_the_built_binary();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.join("rookery.socket"))
        .arg(dir.join("rookery.service"))
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.trim().is_empty(), "{said}");

    // And the sandbox: "OK" is 1.0 to 2.0 on systemd's scale of 10.
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=20", "--no-pager"])
        .arg(dir.join("rookery.service"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exposure above 2.0:\n{}",
        said.lines().rev().take(3).collect::<Vec<_>>().join("\n")
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// The system calls a filter line's groups and names allow, with groups
/// expanded by `systemd-analyze syscall-filter`.
fn expand(names: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut todo: Vec<String> = names.split_whitespace().map(String::from).collect();
    let mut seen = BTreeSet::new();
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if !name.starts_with('@') {
            out.insert(name);
            continue;
        }
        let listing = Command::new("systemd-analyze")
            .args(["syscall-filter", "--no-pager", &name])
            .output()
            .unwrap();
        assert!(listing.status.success(), "unknown group {name}");
        for line in String::from_utf8_lossy(&listing.stdout).lines().skip(1) {
            let line = line.trim();
            if !line.is_empty() && !line.starts_with('#') {
                todo.push(line.to_string());
            }
        }
    }
    out
}

/// The allowed set of the unit: the union of its allow-lines minus its
/// deny-lines (`SystemCallFilter=~...`).
fn allowed_by_the_unit() -> BTreeSet<String> {
    let unit = std::fs::read_to_string(Path::new(UNITS).join("rookery.service")).unwrap();
    let (mut allow, mut deny) = (BTreeSet::new(), BTreeSet::new());
    for value in unit
        .lines()
        .filter_map(|l| l.strip_prefix("SystemCallFilter="))
    {
        match value.strip_prefix('~') {
            Some(denied) => deny.extend(expand(denied)),
            None => allow.extend(expand(value)),
        }
    }
    assert!(!allow.is_empty(), "the unit has a SystemCallFilter=");
    allow.difference(&deny).cloned().collect()
}

#[test]
fn every_system_call_of_a_session_is_allowed_by_the_unit() {
    if !have("systemd-analyze")
        || !have("strace")
        || std::env::var_os("ROOKERY_TEST_RUNNER").is_some()
    {
        return;
    }
    let allowed = allowed_by_the_unit();
    let dir = std::env::temp_dir().join(format!("rookery-strace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("trace");
    let notify = dir.join("notify");
    let manager = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    let mut strace = Command::new("strace")
        .args(["-f", "-qq", "-o"])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_rookery"))
        .args(["--listen", "127.0.0.1:0", "--history", "5", "--metrics"])
        .env("NOTIFY_SOCKET", &notify)
        .env("WATCHDOG_USEC", "100000")
        .env("JOURNAL_STREAM", "1:1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(strace.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", strace.id())).unwrap();
    let pid: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    let mut buf = [0u8; 64];
    manager
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = manager.recv(&mut buf);

    // A session: the page, metrics, two clients chatting, a reload, a stop.
    http_status(addr.parse().unwrap(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    http_status(
        addr.parse().unwrap(),
        "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let mut a = connect(&format!("ws://{addr}/chat"));
    let mut b = connect(&format!("ws://{addr}/chat"));
    next_data(&mut a);
    next_data(&mut b);
    a.send(tungstenite::Message::text("hi")).unwrap();
    next_data(&mut b);
    // A watchdog ping, then a reload told to the manager, each awaited on
    // the manager's socket (its read timeout bounds the wait).
    let mut heard = |what: &str| loop {
        let n = manager.recv(&mut buf).expect("a notification");
        if String::from_utf8_lossy(&buf[..n]).contains(what) {
            break;
        }
    };
    heard("WATCHDOG=1");
    // SAFETY: kill(2) on strace's child, the server.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    heard("RELOADING=1");
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    expect_close(&mut a);
    expect_close(&mut b);
    drop((a, b));
    assert!(strace.wait().unwrap().success());

    let text = std::fs::read_to_string(&trace).unwrap();
    let used: BTreeSet<String> = text
        .lines()
        .filter_map(|l| {
            let call = l.split_once(' ')?.1.trim_start();
            let name = call.split_once('(')?.0;
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                .then(|| name.to_string())
        })
        .filter(|n| !n.is_empty())
        .collect();
    assert!(
        used.contains("epoll_wait") || used.contains("epoll_pwait"),
        "{used:?}"
    );
    let refused: Vec<_> = used.difference(&allowed).collect();
    assert!(
        refused.is_empty(),
        "system calls the unit's filter refuses: {refused:?} (used: {used:?})"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
