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
        "--max-connections-per-ip",
        "--rate-limit",
        "--rate-limit-bytes",
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
        (&["--rate-limit", "fast"][..], "--rate-limit"),
        (&["--rate-limit", "10/m"][..], "--rate-limit"),
        (
            &["--rate-limit-bytes", "1MiB:lots"][..],
            "--rate-limit-bytes",
        ),
        (
            &["--max-connections-per-ip", "-3"][..],
            "--max-connections-per-ip",
        ),
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

/// Runs the binary with `--listen 127.0.0.1:0` and `args`, its stderr into
/// a fresh file `name`, with the variables `env` makes from that file's
/// metadata, until its `listening on` line; stops it with SIGTERM and
/// returns what it wrote to stderr.
fn run_with_stderr_file(
    name: &str,
    args: &[&str],
    env: impl Fn(&std::fs::Metadata) -> Vec<(String, String)>,
) -> String {
    use std::io::BufRead;
    let dir = std::env::temp_dir().join(format!("rookery-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let file = std::fs::File::create(&path).unwrap();
    let meta = file.metadata().unwrap();
    let mut child = common::rookery_command()
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .envs(env(&meta))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(file)
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("listening on "), "{line}");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    let text = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    text
}

/// Whether `line` starts with `[YYYY-MM-DDTHH:MM:SS.mmmZ `.
fn stamped(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 26
        && b[0] == b'['
        && b[1..26].iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'.',
            23 => c == b'Z',
            24 => c == b' ',
            _ => c.is_ascii_digit(),
        })
}

#[test]
fn log_lines_carry_a_utc_timestamp_to_the_millisecond() {
    let text = run_with_stderr_file("stamped", &[], |_| Vec::new());
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 2, "{text}");
    for line in &lines {
        assert!(stamped(line), "{line:?}");
        let year: u32 = line[1..5].parse().unwrap();
        assert!((2024..3000).contains(&year), "{line}");
    }
    // After the line naming the io driver.
    let serving = lines.iter().find(|l| l.contains("serving chat on"));
    assert!(
        serving.is_some_and(|l| l[26..].starts_with("INFO ] serving chat on ")),
        "{text}"
    );
}

#[test]
fn under_the_journal_lines_have_no_timestamp_but_a_priority() {
    use std::os::unix::fs::MetadataExt;
    let text = run_with_stderr_file("journal", &[], |meta| {
        vec![(
            "JOURNAL_STREAM".into(),
            format!("{}:{}", meta.dev(), meta.ino()),
        )]
    });
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 2, "{text}");
    assert!(lines[0].starts_with("<6>[INFO ] io driver: "), "{text}");
    assert!(
        lines[1].starts_with("<6>[INFO ] serving chat on "),
        "{text}"
    );
    for line in &lines {
        assert!(!stamped(line) && line.starts_with('<'), "{line:?}");
    }

    // Inherited from a parent whose stderr was the journal, while ours is
    // not: stamped as usual.
    let text = run_with_stderr_file("inherited", &[], |meta| {
        vec![(
            "JOURNAL_STREAM".into(),
            format!("{}:{}", meta.dev(), meta.ino() + 1),
        )]
    });
    assert!(text.lines().all(stamped), "{text}");
}

/// What the binary started with `args` logs for one chat message: whether
/// an info, a debug and a trace line appeared.
fn levels_logged(args: &[&str]) -> (bool, bool, bool) {
    let mut server = common::Rookery::start(args);
    let mut ws = common::connect(&server.url("/chat"));
    let _welcome = common::next_data(&mut ws);
    ws.send(tungstenite::Message::text("level check")).unwrap();
    assert_eq!(
        common::next_data(&mut ws),
        tungstenite::Message::text("level check")
    );
    drop(ws);
    server.signal(libc::SIGTERM);
    assert!(server
        .wait_exit(std::time::Duration::from_secs(10))
        .is_some());
    let log = server.stderr_text();
    (
        log.contains(" INFO ] serving chat on "),
        log.contains(" DEBUG] Received message 'level check' from "),
        log.contains(" TRACE] ") && log.contains("bytes broadcast, recipients: 1"),
    )
}

#[test]
fn verbosity_flags_combine_and_v_and_q_count_against_each_other() {
    assert_eq!(levels_logged(&[]), (true, false, false));
    assert_eq!(levels_logged(&["-v"]), (true, true, false));
    assert_eq!(levels_logged(&["-vv"]), (true, true, true));
    assert_eq!(levels_logged(&["-vvv"]), (true, true, true));
    assert_eq!(levels_logged(&["-v", "-v"]), (true, true, true));
    assert_eq!(levels_logged(&["-vq"]), (true, false, false));
    assert_eq!(levels_logged(&["-q", "-v"]), (true, false, false));
    assert_eq!(levels_logged(&["-vvq"]), (true, true, false));
    assert_eq!(levels_logged(&["-q"]), (false, false, false));
}

#[test]
fn an_unknown_letter_in_a_group_of_short_flags_is_named() {
    let out = rookery(&["-vx"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err, "rookery: unknown flag '-x' in '-vx' (see --help)\n");
}

/// Runs the binary with `args`; asserts exit status 2 with one line on
/// stderr and nothing on stdout, and returns that line.
fn refused(args: &[&str]) -> String {
    let out = rookery(args);
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    assert!(out.stdout.is_empty(), "{args:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

#[test]
fn a_path_that_hides_the_page_or_holds_a_query_is_refused() {
    let err = refused(&["--path", "/"]);
    assert!(
        err.starts_with("rookery: invalid value '/' for --path: the chat page is served at /"),
        "{err}"
    );
    assert!(err.contains("--no-page"), "{err}");
    for (path, why) in [
        ("/x?y", "a path cannot hold '?'"),
        ("/x#y", "a path cannot hold '#'"),
        ("/my chat", "a path cannot hold spaces"),
    ] {
        let err = refused(&["--path", path]);
        assert!(
            err.starts_with(&format!(
                "rookery: invalid value '{path}' for --path: {why}"
            )),
            "{err}"
        );
    }

    // Without the page, / is a WebSocket path like any other.
    let server = common::Rookery::start(&["--path", "/", "--no-page"]);
    let mut ws = common::connect(&server.url("/"));
    assert_eq!(
        common::next_data(&mut ws),
        tungstenite::Message::text("Welcome to Rookery Chat!")
    );
}

#[test]
fn a_bad_origin_is_refused_at_start_and_a_good_one_matches_browsers() {
    let err = refused(&["--allow-origin", "http://a.example/"]);
    assert!(
        err.starts_with("rookery: invalid value 'http://a.example/' for --allow-origin: ")
            && err.contains("write 'http://a.example'"),
        "{err}"
    );
    let err = refused(&["--allow-origin", "a.example"]);
    assert!(
        err.starts_with("rookery: invalid value 'a.example' for --allow-origin: "),
        "{err}"
    );

    let status = |head: &str| head.split(' ').nth(1).unwrap_or_default().to_string();
    // Written as a person might; matched as a browser sends it.
    let server = common::Rookery::start(&["--allow-origin", "HTTPS://A.Example:443"]);
    let (_ok, head) = common::raw_upgrade(server.addr, "/chat", "Origin: https://a.example\r\n");
    assert_eq!(status(&head), "101", "{head}");
    let (_no, head) = common::raw_upgrade(server.addr, "/chat", "Origin: https://b.example\r\n");
    assert_eq!(status(&head), "403", "{head}");

    let server = common::Rookery::start(&["--allow-origin", "*"]);
    let (_any, head) = common::raw_upgrade(server.addr, "/chat", "Origin: http://c.example:81\r\n");
    assert_eq!(status(&head), "101", "{head}");
}

#[test]
fn on_a_wildcard_address_the_serving_line_names_one_that_opens() {
    let mut server = common::Rookery::start(&["--listen", "0.0.0.0:0"]);
    // The `listening on` line stays the bound address, as scripts parse it.
    assert_eq!(server.addr.ip().to_string(), "0.0.0.0");
    let port = server.addr.port();
    let mut ws = common::connect(&format!("ws://127.0.0.1:{port}/chat"));
    assert_eq!(
        common::next_data(&mut ws),
        tungstenite::Message::text("Welcome to Rookery Chat!")
    );
    drop(ws);
    server.signal(libc::SIGTERM);
    assert!(server
        .wait_exit(std::time::Duration::from_secs(10))
        .is_some());
    let log = server.stderr_text();
    assert!(
        log.contains(&format!(
            " INFO ] serving chat on ws://127.0.0.1:{port}/chat (all interfaces), page at http://127.0.0.1:{port}/\n"
        )),
        "{log}"
    );
    assert!(!log.contains("0.0.0.0"), "{log}");
}

#[test]
fn help_says_what_0_means_for_each_timer_and_what_a_second_signal_does() {
    let out = rookery(&["--help"]);
    let help = String::from_utf8(out.stdout).unwrap();
    // One blanket "0 turns the timer off" was wrong for --close-timeout.
    assert!(!help.contains("0 turns the timer off"), "{help}");
    for meaning in [
        "(0: no pings)",
        "(0: silence never closes a connection)",
        "by then (0: no limit",
        "shutdown sends its close frames and exits without",
        "any other close still waits 1s",
        "ends the process at once, killed by that signal",
        "* allows any",
        "-vv (or more) trace",
        "-vq is the default",
    ] {
        assert!(help.contains(meaning), "--help lacks {meaning:?}");
    }
}

#[test]
fn sighup_without_tls_is_logged_and_ignored() {
    let mut server = common::Rookery::start(&["--mode", "echo"]);
    let mut ws = common::connect(&server.url("/chat"));
    server.signal(libc::SIGHUP);
    // Its default action ended the process, and every member with it.
    assert!(
        common::eventually(std::time::Duration::from_secs(10), || server
            .stderr_text()
            .contains("SIGHUP (a reload) ignored")),
        "{}",
        server.stderr_text()
    );
    assert!(server.child.try_wait().unwrap().is_none(), "still running");
    ws.send(tungstenite::Message::text("after")).unwrap();
    assert_eq!(
        common::next_data(&mut ws),
        tungstenite::Message::text("after")
    );
    drop(ws);
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(std::time::Duration::from_secs(10));
    assert_eq!(status.and_then(|s| s.code()), Some(0));
}
