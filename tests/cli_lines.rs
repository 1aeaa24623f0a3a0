//! What the command says: the paths it refuses, its help and README in
//! agreement, and the log lines that name a connection or a stop (read
//! from the binary's stderr).

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use tungstenite::Message;

const PATIENCE: Duration = Duration::from_secs(20);

fn help() -> String {
    let out = rookery_command()
        .arg("--help")
        .stdin(Stdio::null())
        .output()
        .expect("run rookery");
    String::from_utf8(out.stdout).unwrap()
}

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

#[test]
fn a_path_with_a_trailing_slash_is_refused_naming_the_one_to_write() {
    for (args, fix) in [
        (&["--path", "/chat/"][..], "write '/chat'"),
        (&["--path", "/a/b//", "--mode", "echo"][..], "write '/a/b'"),
    ] {
        let out = rookery_command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run rookery");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty());
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("cannot end with '/'") && err.contains(fix),
            "{err}"
        );
    }
}

#[test]
fn help_and_readme_agree_on_the_root_path_sizes_and_the_history_limit() {
    let (help, readme) = (help(), readme());
    // `/` is refused only where the chat page is served (src/cli/parse.rs).
    assert!(
        help.contains("(/ only with --no-page or --mode echo"),
        "{help}"
    );
    assert!(readme.contains("only with `--no-page` or `--mode echo`"));
    // Every unit `parse_size` takes.
    assert!(
        help.contains(
            "KiB, MiB, GiB (powers of 1024; also\nK, M, G) or KB, MB, GB (powers of 1000)"
        ),
        "{help}"
    );
    assert!(readme.contains(
        "`KiB`, `MiB`, `GiB`\n(powers of 1024; also `K`, `M`, `G`) or `KB`, `MB`, `GB` (powers of 1000)"
    ));
    // The --history maximum, and that it is the one enforced.
    assert!(help.contains("at most 100000"), "{help}");
    assert!(readme.contains("at most 100000"));
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/chat.md"));
    assert!(docs.unwrap().contains("`--history N` (0 to 100000"));
    for (n, code) in [("100000", None), ("100001", Some(2))] {
        let out = rookery_command()
            .args(["--history", n, "--listen", "127.0.0.1:0", "--help"])
            .output()
            .unwrap();
        // --help wins once the values parse; a bad value is refused first.
        assert_eq!(out.status.code(), code.or(Some(0)), "--history {n}");
    }
}

#[test]
fn echo_logs_opens_and_closes_at_info_as_the_chat_does() {
    let mut server = Rookery::start(&["--mode", "echo", "--ping-interval", "0"]);
    let mut ws = connect(&server.url("/chat"));
    let port = ws.get_ref().0.local_addr().unwrap().port();
    ws.send(Message::text("hi")).unwrap();
    assert_eq!(next_data(&mut ws), Message::text("hi"));
    drop(ws);
    assert!(eventually(PATIENCE, || server
        .stderr_text()
        .contains(" INFO ] Closed connection to #")));
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit(PATIENCE).is_some());
    let log = server.stderr_text();
    assert!(
        log.contains(" INFO ] Opened connection to #")
            && log.contains(&format!(" (127.0.0.1:{port})\n")),
        "{log}"
    );
    assert!(log.contains(" (code 1006)\n"), "{log}");
}

#[test]
fn a_stop_says_how_many_connections_it_closes_and_how_long_it_waits() {
    let mut server = Rookery::start(&["--close-timeout", "300ms", "--ping-interval", "0"]);
    // Two members that never answer the close frame: the stop waits 300 ms.
    let _a = raw_upgrade(server.addr, "/chat", "");
    let _b = raw_upgrade(server.addr, "/chat", "");
    assert!(eventually(PATIENCE, || server
        .stderr_text()
        .matches("Opened connection")
        .count()
        == 2));
    server.signal(libc::SIGINT);
    assert!(server.wait_exit(PATIENCE).is_some());
    let log = server.stderr_text();
    let stopping = log
        .find(" INFO ] stopping: closing 2 connections (up to 300ms)\n")
        .unwrap_or_else(|| panic!("{log}"));
    let stopped = log
        .find(" INFO ] stopped\n")
        .unwrap_or_else(|| panic!("{log}"));
    assert!(stopping < stopped, "{log}");

    // Told not to wait, it says so.
    let mut server = Rookery::start(&["--close-timeout", "0"]);
    let _a = raw_upgrade(server.addr, "/chat", "");
    assert!(eventually(PATIENCE, || server
        .stderr_text()
        .contains("Opened connection")));
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit(PATIENCE).is_some());
    let log = server.stderr_text();
    assert!(
        log.contains(" INFO ] stopping: closing 1 connection (not waiting for answers)\n"),
        "{log}"
    );
}

#[test]
fn a_handshake_timeout_names_the_connection_and_its_peer() {
    let mut server = Rookery::start(&["-v", "--handshake-timeout", "100ms"]);
    // Connected, and silent.
    let silent = TcpStream::connect(server.addr).unwrap();
    let port = silent.local_addr().unwrap().port();
    let line = format!(" (127.0.0.1:{port}): handshake timed out\n");
    assert!(
        eventually(PATIENCE, || server.stderr_text().contains(&line)),
        "{}",
        server.stderr_text()
    );
    let log = server.stderr_text();
    let at = log.find(&line).unwrap();
    let start = log[..at].rfind('\n').map_or(0, |i| i + 1);
    assert!(log[start..at].contains(" DEBUG] #"), "{log}");
}

#[test]
fn a_slow_consumer_cut_off_is_logged_with_its_connection_and_peer() {
    let mut server = Rookery::start(&["--max-backlog", "64KiB", "--ping-interval", "0"]);
    // A member that never reads.
    let mut slow = tcp_with_buffers(server.addr, Some(4096), None);
    let port = slow.local_addr().unwrap().port();
    slow.set_read_timeout(Some(PATIENCE)).unwrap();
    slow.write_all(upgrade_request("/chat", "").as_bytes())
        .unwrap();
    assert!(read_head(&mut slow).starts_with("HTTP/1.1 101"));
    let mut sender = connect(&server.url("/chat"));
    assert_eq!(
        next_data(&mut sender),
        Message::text("Welcome to Rookery Chat!")
    );
    let line = format!(" (127.0.0.1:{port}): ");
    let pad = "x".repeat(8 * 1024);
    let mut sent = 0;
    while sent < 2000 && !server.stderr_text().contains("backlog limit") {
        sender.send(Message::text(pad.clone())).unwrap();
        assert_eq!(next_data(&mut sender), Message::text(pad.clone()));
        sent += 1;
    }
    assert!(
        eventually(PATIENCE, || server.stderr_text().contains("backlog limit")),
        "not cut off after {sent} messages of 8 KiB"
    );
    let log = server.stderr_text();
    let cut = log
        .lines()
        .find(|l| l.contains("backlog limit"))
        .unwrap()
        .to_string();
    assert!(
        cut.contains(" WARN ] #")
            && cut.contains(&line)
            && cut.ends_with("over the backlog limit of 65536: closing (1008)"),
        "{cut}"
    );
}

#[cfg(feature = "deflate")]
#[test]
fn the_serving_line_says_when_deflate_is_on() {
    let mut server = Rookery::start(&["--deflate"]);
    let port = server.addr.port();
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit(PATIENCE).is_some());
    let log = server.stderr_text();
    assert!(
        log.contains(&format!(
            " INFO ] serving chat on ws://127.0.0.1:{port}/chat with permessage-deflate, page at"
        )),
        "{log}"
    );
}
