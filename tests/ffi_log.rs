//! `rk_set_log`: the library's log lines reach the program's function, up
//! to the level it asked for, and nothing more goes to stderr; a program
//! that never calls it still gets them on stderr (`RUST_LOG`). The logger
//! is per process, so each case runs in a child process of this test
//! binary (the test re-runs itself with `ROOKERY_LOG_CASE` set), whose
//! stderr is checked.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::process::Command;
use std::ptr;
use std::sync::Mutex;
use std::time::Duration;

use rookery::ffi::*;

/// The lines the program's function received.
static LINES: Mutex<Vec<(c_int, String)>> = Mutex::new(Vec::new());

unsafe extern "C" fn collect(level: c_int, line: *const c_char, user: *mut c_void) {
    assert_eq!(user as usize, 0x5eed, "the user pointer comes back");
    // SAFETY: the library passes a NUL-terminated line, valid now.
    let text = unsafe { CStr::from_ptr(line) }
        .to_string_lossy()
        .into_owned();
    LINES.lock().unwrap().push((level, text));
}

/// A server on a free port that logs: a client connects (debug: "connected
/// from", "removed") and the program frees the server from a callback
/// (error: "rk_server_free called while the server runs").
fn make_the_library_log() {
    unsafe extern "C" fn free_inside(s: *mut rk_server, _conn: u64, _user: *mut c_void) {
        // SAFETY: s is the running server; the call is refused and logged.
        unsafe { rk_server_free(s) };
        // SAFETY: as above.
        unsafe { rk_server_stop(s) };
    }
    let addr = CString::new("127.0.0.1:0").unwrap();
    let mut err = 0;
    // SAFETY: valid arguments, the server freed below.
    unsafe {
        let s = rk_server_new(addr.as_ptr(), &mut err);
        assert!(!s.is_null(), "{err}");
        rk_server_set_option(s, RK_OPT_CLOSE_TIMEOUT_MS, 100);
        let callbacks = rk_callbacks {
            on_open: Some(free_inside),
            ..std::mem::zeroed()
        };
        assert_eq!(
            rk_server_set_callbacks(s, &callbacks, ptr::null_mut()),
            RK_OK
        );
        let port = rk_server_port(s);
        let client = std::thread::spawn(move || {
            let (mut ws, _) =
                tungstenite::connect(format!("ws://127.0.0.1:{port}/chat")).expect("connect");
            while ws.read().is_ok() {}
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while rk_server_run_once(s, 50) == 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "the server did not stop"
            );
        }
        client.join().unwrap();
        rk_server_free(s);
    }
}

/// Runs the case `name` in a child process with `RUST_LOG=debug`; returns
/// its stderr.
fn child(name: &str) -> String {
    // Through ROOKERY_TEST_RUNNER when set (qemu-user in scripts/cross-test:
    // a cross-built test binary cannot be exec'd directly there).
    let exe = std::env::current_exe().unwrap();
    let mut cmd = match std::env::var("ROOKERY_TEST_RUNNER") {
        Ok(runner) if !runner.is_empty() => {
            let mut c = Command::new(runner);
            c.arg(exe);
            c
        }
        _ => Command::new(exe),
    };
    let out = cmd
        .args(["--exact", "cases", "--nocapture", "--test-threads=1"])
        .env("ROOKERY_LOG_CASE", name)
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "case {name} failed:\n{}\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

#[test]
fn without_rk_set_log_lines_go_to_stderr() {
    if std::env::var_os("ROOKERY_LOG_CASE").is_some() {
        return;
    }
    let stderr = child("stderr");
    assert!(stderr.contains("connected from"), "{stderr}");
    assert!(
        stderr.contains("rk_server_free called while the server runs"),
        "{stderr}"
    );
}

#[test]
fn with_rk_set_log_lines_go_to_the_program_and_none_to_stderr() {
    if std::env::var_os("ROOKERY_LOG_CASE").is_some() {
        return;
    }
    assert_eq!(child("debug"), "", "nothing on stderr after rk_set_log");
    assert_eq!(child("errors"), "");
    assert_eq!(child("none"), "");
}

/// The cases, run in the child processes only.
#[test]
fn cases() {
    let Ok(case) = std::env::var("ROOKERY_LOG_CASE") else {
        return;
    };
    let user = 0x5eed as *mut c_void;
    match case.as_str() {
        "stderr" => make_the_library_log(),
        "debug" => {
            // SAFETY: `collect` may be called from any thread.
            unsafe { rk_set_log(Some(collect), user, 4) };
            make_the_library_log();
            let lines = LINES.lock().unwrap();
            let levels: Vec<c_int> = lines.iter().map(|(l, _)| *l).collect();
            assert!(levels.iter().all(|l| (1..=4).contains(l)), "{lines:?}");
            assert!(
                lines
                    .iter()
                    .any(|(l, t)| *l == 4 && t.contains("connected from")),
                "{lines:?}"
            );
            assert!(
                lines
                    .iter()
                    .any(|(l, t)| *l == 1
                        && t.contains("rk_server_free called while the server runs")),
                "{lines:?}"
            );
            assert!(lines.iter().all(|(_, t)| !t.contains('\n')), "{lines:?}");
        }
        "errors" => {
            // SAFETY: as above.
            unsafe { rk_set_log(Some(collect), user, 1) };
            make_the_library_log();
            let lines = LINES.lock().unwrap();
            assert!(
                !lines.is_empty() && lines.iter().all(|(l, _)| *l == 1),
                "{lines:?}"
            );
        }
        "none" => {
            // A NULL function drops everything, stderr included.
            // SAFETY: NULL is allowed.
            unsafe { rk_set_log(None, ptr::null_mut(), 5) };
            make_the_library_log();
        }
        other => panic!("unknown case {other}"),
    }
}
