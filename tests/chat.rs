//! The chat service, row by row of the table in docs/chat.md: the welcome
//! before joining, every text to every member (sender included) in arrival
//! order, binary refused with 1003, ping and pong, the ping and idle timers,
//! the close echo, the page and the HTTP answers, SIGTERM and SIGINT. Over
//! real sockets with tungstenite as the client.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use tungstenite::Message;

const WELCOME: &str = "Welcome to Rookery Chat!";

fn chat(extra: &[&str]) -> Rookery {
    let mut args = vec!["--ping-interval", "0"];
    args.extend_from_slice(extra);
    Rookery::start(&args)
}

fn join(server: &Rookery) -> Ws {
    let mut ws = connect(&server.url("/chat"));
    assert_eq!(
        next_data(&mut ws),
        Message::text(WELCOME),
        "welcome comes first"
    );
    ws
}

#[test]
fn welcome_then_every_text_to_every_member_sender_included() {
    let server = chat(&[]);
    let mut a = join(&server);
    let mut b = join(&server);
    a.send(Message::text("hello from a")).unwrap();
    assert_eq!(next_data(&mut a), Message::text("hello from a"));
    assert_eq!(next_data(&mut b), Message::text("hello from a"));
    b.send(Message::text("and b")).unwrap();
    assert_eq!(next_data(&mut a), Message::text("and b"));
    assert_eq!(next_data(&mut b), Message::text("and b"));
}

#[test]
fn custom_welcome() {
    let server = chat(&["--welcome", "hi there"]);
    let mut ws = connect(&server.url("/chat"));
    assert_eq!(next_data(&mut ws), Message::text("hi there"));
}

#[test]
fn a_new_member_sees_its_welcome_before_any_broadcast() {
    let server = chat(&[]);
    let mut talker = join(&server);
    // Broadcasts in flight before, during and after each join: the server
    // reads the talker's and the newcomer's bytes in whatever passes they
    // arrive in.
    let mut said = 0;
    for n in 0..20 {
        for _ in 0..3 {
            talker.send(Message::text(format!("noise {n}"))).unwrap();
            said += 1;
        }
        let mut ws = connect(&server.url("/chat"));
        talker.send(Message::text(format!("noise {n}"))).unwrap();
        said += 1;
        assert_eq!(next_data(&mut ws), Message::text(WELCOME));
    }
    // The talker is sent all of its own, so none was lost on the way.
    for _ in 0..said {
        assert!(matches!(next_data(&mut talker), Message::Text(t) if t.starts_with("noise ")));
    }
}

#[test]
fn binary_is_refused_with_1003_unless_allowed() {
    let server = chat(&[]);
    let mut ws = join(&server);
    ws.send(Message::binary(vec![1u8, 2, 3])).unwrap();
    assert_eq!(expect_close(&mut ws), Some(1003));

    let server = chat(&["--allow-binary"]);
    let mut a = join(&server);
    let mut b = join(&server);
    a.send(Message::binary(vec![1u8, 2, 3])).unwrap();
    assert_eq!(next_data(&mut b), Message::binary(vec![1u8, 2, 3]));
    assert_eq!(next_data(&mut a), Message::binary(vec![1u8, 2, 3]));
}

#[test]
fn ping_is_answered_with_pong() {
    let server = chat(&[]);
    let mut ws = join(&server);
    ws.send(Message::Ping(b"p1".to_vec())).unwrap();
    match next(&mut ws) {
        Message::Pong(p) => assert_eq!(&p[..], b"p1"),
        other => panic!("expected pong, got {other:?}"),
    }
}

/// The chat in process on a virtual clock, with the command's defaults but
/// `ping_interval` and `idle_timeout`.
fn virtual_chat(ping_interval: Duration, idle_timeout: Duration) -> Virtual {
    let config = rookery::Config {
        ping_interval,
        idle_timeout,
        ..rookery::Config::default()
    };
    Virtual::start_with(config, || {
        rookery::chat::Chat::new(rookery::chat::ChatOptions::default())
    })
}

/// Whether `ws` has nothing to read and is still open.
fn quiet(ws: &mut Ws) -> bool {
    let stream = &ws.get_ref().0;
    stream.set_nonblocking(true).expect("nonblocking");
    let mut byte = [0u8; 1];
    let quiet =
        matches!(stream.peek(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    stream.set_nonblocking(false).expect("blocking");
    quiet
}

/// How far before and after a deadline the tests look (the wheel ticks
/// every 10 ms).
const MARGIN: Duration = Duration::from_millis(50);

#[test]
fn server_pings_every_interval() {
    let interval = Duration::from_millis(200);
    let server = virtual_chat(interval, Duration::ZERO);
    let mut ws = connect(&server.url("/chat"));
    assert_eq!(next_data(&mut ws), Message::text(WELCOME));
    server.settle();
    // Each ping is due an interval after the pass that sent the last (here
    // MARGIN past its own due time).
    for round in 0..3 {
        server.advance(interval - MARGIN);
        assert!(quiet(&mut ws), "round {round}: a ping early");
        server.advance(2 * MARGIN);
        assert!(matches!(next(&mut ws), Message::Ping(_)), "round {round}");
    }
}

#[test]
fn idle_connection_is_closed_with_1001_but_traffic_keeps_it_open() {
    let idle_timeout = Duration::from_millis(600);
    let server = virtual_chat(Duration::ZERO, idle_timeout);
    let mut busy = connect(&server.url("/chat"));
    assert_eq!(next_data(&mut busy), Message::text(WELCOME));
    let mut idle = connect(&server.url("/chat"));
    assert_eq!(next_data(&mut idle), Message::text(WELCOME));
    server.settle();
    // `busy` speaks (pings count as traffic) every 150 ms for 1.5 s.
    for _ in 0..10 {
        busy.send(Message::Ping(Vec::new())).unwrap();
        assert!(matches!(next(&mut busy), Message::Pong(_)));
        server.advance(Duration::from_millis(150));
    }
    assert_eq!(expect_close(&mut idle), Some(1001));
    busy.send(Message::text("still open")).unwrap();
    assert_eq!(next_data(&mut busy), Message::text("still open"));
    server.advance(idle_timeout - MARGIN);
    assert!(
        quiet(&mut busy),
        "closed before its silence was long enough"
    );
    server.advance(2 * MARGIN);
    assert_eq!(expect_close(&mut busy), Some(1001), "closed once silent");
}

#[test]
fn close_frame_is_echoed_and_logged() {
    // Message contents are logged at -v (debug) only.
    let mut server = chat(&["-v"]);
    let (mut raw, _) = raw_upgrade(server.addr, "/chat", "");
    let (_, welcome) = read_frame(&mut raw).unwrap();
    assert_eq!(welcome, WELCOME.as_bytes());
    raw.write_all(&client_frame(0x81, b"log me")).unwrap();
    assert_eq!(read_frame(&mut raw).unwrap().1, b"log me");
    raw.write_all(&client_frame(0x88, &[0x03, 0xE8])).unwrap();
    assert_eq!(read_close(&mut raw).unwrap(), Some(1000));
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(10)).is_some());
    let log = server.stderr_text();
    assert!(log.contains("Received message 'log me' from "), "{log}");
    assert!(log.contains("Closed connection to "), "{log}");
}

#[test]
fn page_and_http_routes() {
    let server = chat(&["--path", "/room"]);
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut reply = Vec::new();
    std::io::Read::read_to_end(&mut stream, &mut reply).unwrap();
    let reply = String::from_utf8(reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert!(reply.contains("Content-Type: text/html; charset=utf-8\r\n"));
    assert!(
        reply.contains("\"/room\""),
        "the page connects to the configured path"
    );
    assert!(!reply.contains("{{WS_PATH}}"));
    assert_eq!(
        http_status(server.addr, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"),
        404
    );
    assert_eq!(
        http_status(server.addr, "GET /room HTTP/1.1\r\nHost: x\r\n\r\n"),
        400
    );
    assert_eq!(
        http_status(server.addr, "POST / HTTP/1.1\r\nHost: x\r\n\r\n"),
        405
    );

    let server = chat(&["--no-page"]);
    assert_eq!(
        http_status(server.addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        404
    );
}

#[test]
fn three_senders_200_messages_each_reach_five_clients_in_order() {
    let server = chat(&[]);
    let mut listeners: Vec<Ws> = (0..5).map(|_| join(&server)).collect();
    // Every sender joins before anyone speaks, so each sees all 600 too.
    let sender_sockets: Vec<Ws> = (0..3).map(|_| join(&server)).collect();
    let senders: Vec<_> = sender_sockets
        .into_iter()
        .enumerate()
        .map(|(s, mut ws)| {
            std::thread::spawn(move || {
                for i in 0..200 {
                    ws.send(Message::text(format!("{s}:{i}"))).unwrap();
                }
                let mut seen = 0;
                while seen < 600 {
                    if let Message::Text(_) = next_data(&mut ws) {
                        seen += 1;
                    }
                }
            })
        })
        .collect();
    for ws in &mut listeners {
        let mut next_expected: HashMap<u32, u32> = HashMap::new();
        for _ in 0..600 {
            let Message::Text(text) = next_data(ws) else {
                panic!("expected text")
            };
            let (s, i) = text.split_once(':').unwrap();
            let (s, i): (u32, u32) = (s.parse().unwrap(), i.parse().unwrap());
            let want = next_expected.entry(s).or_insert(0);
            assert_eq!(i, *want, "sender {s} out of order");
            *want += 1;
        }
        assert_eq!(
            next_expected.values().copied().collect::<Vec<_>>(),
            vec![200; 3]
        );
    }
    for s in senders {
        s.join().unwrap();
    }
}

#[test]
fn sigterm_closes_everyone_with_1001_and_exits_0() {
    let mut server = chat(&[]);
    let mut clients: Vec<Ws> = (0..3).map(|_| join(&server)).collect();
    server.signal(libc::SIGTERM);
    for ws in &mut clients {
        assert_eq!(expect_close(ws), Some(1001));
    }
    let status = server.wait_exit(Duration::from_secs(10)).expect("exited");
    assert_eq!(status.code(), Some(0));
    // It stopped accepting.
    assert!(std::net::TcpStream::connect(server.addr).is_err());
}

#[test]
fn sigint_with_a_silent_client_exits_after_the_close_timeout() {
    let mut server = chat(&["--close-timeout", "500ms"]);
    // A raw client that never answers the close frame.
    let (_raw, _) = raw_upgrade(server.addr, "/chat", "");
    let start = Instant::now();
    server.signal(libc::SIGINT);
    let status = server.wait_exit(Duration::from_secs(10)).expect("exited");
    assert_eq!(status.code(), Some(0));
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "{:?}",
        start.elapsed()
    );
}

/// Starts a chat server whose shutdown waits on a client that never
/// answers the close frame, and sends it `first`: stopping has begun.
fn stopping_after(first: i32) -> (Rookery, std::net::TcpStream) {
    let server = chat(&["--close-timeout", "30s"]);
    let (mut raw, _) = raw_upgrade(server.addr, "/chat", "");
    server.signal(first);
    assert_eq!(read_close(&mut raw).unwrap(), Some(1001), "stopping began");
    (server, raw)
}

/// Sends `second` to a stopping server: it must die of that signal at
/// once, not wait out the close timeout.
fn assert_killed_by(mut server: Rookery, second: i32) {
    use std::os::unix::process::ExitStatusExt;
    let start = Instant::now();
    server.signal(second);
    let status = server.wait_exit(Duration::from_secs(10)).expect("exited");
    assert_eq!(status.code(), None, "{status:?}");
    assert_eq!(status.signal(), Some(second), "{status:?}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_second_signal_while_stopping_ends_the_process_by_that_signal() {
    let (server, _raw) = stopping_after(libc::SIGTERM);
    assert_killed_by(server, libc::SIGTERM);
}

#[test]
fn a_sigint_after_a_sigterm_ends_the_process_by_sigint() {
    let (server, _raw) = stopping_after(libc::SIGTERM);
    assert_killed_by(server, libc::SIGINT);
}

/// A text that tries everything against a log: a newline and a forged
/// line, terminal escapes, a carriage return, and half a megabyte.
fn hostile_text() -> String {
    let mut text =
        "hi\n[2026-01-01T00:00:00.000Z INFO ] forged line\r\x1b[2J\x1b[31mred\u{9b}".to_string();
    text.push_str(&"x".repeat(500_000));
    text
}

/// Sends `text` through a chat started with `args`, waits for it to come
/// back, stops the server and returns its stderr.
fn log_of_one_message(args: &[&str], text: &str) -> String {
    let mut server = chat(args);
    let mut ws = join(&server);
    ws.send(Message::text(text)).unwrap();
    assert_eq!(next_data(&mut ws), Message::text(text));
    drop(ws);
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(10)).is_some());
    server.stderr_text()
}

#[test]
fn message_text_is_logged_at_debug_escaped_and_cut() {
    let text = hostile_text();
    let log = log_of_one_message(&["-v"], &text);
    assert!(!log.contains('\x1b') && !log.contains('\r') && !log.contains('\u{9b}'));
    // Every line is one of ours: stamped, none forged by the text.
    for line in log.lines() {
        assert!(
            line.starts_with("[20") && line.as_bytes().get(24) == Some(&b'Z'),
            "a line that is not the logger's: {line:?}"
        );
        assert!(
            line.len() < 400,
            "an unbounded line of {} bytes",
            line.len()
        );
    }
    let received: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Received message '"))
        .collect();
    assert_eq!(received.len(), 1, "{log}");
    let line = received[0];
    assert!(
        line.contains(
            "DEBUG] Received message 'hi\\n[2026-01-01T00:00:00.000Z INFO ] forged line\\r\\x1b[2J\\x1b[31mred\\u{9b}xxx"
        ),
        "{line}"
    );
    assert!(
        line.contains("…' from #")
            && line.ends_with(&format!(" (cut: {} bytes in all)", text.len())),
        "{line}"
    );
}

#[test]
fn message_text_is_not_logged_at_the_default_level() {
    let log = log_of_one_message(&[], &hostile_text());
    assert!(log.contains("Opened connection to "), "{log}");
    assert!(!log.contains("forged"), "{log}");
    assert!(!log.contains("Received message"), "{log}");
    assert!(!log.contains("xxxxxxxx"), "{log}");
}

#[test]
fn bidi_and_invisible_format_characters_are_escaped_in_the_log() {
    // Right-to-left and Arabic letter marks, an override, a zero-width
    // space, a byte order mark, a soft hyphen and a tag character: each
    // reorders or hides what a reader of the log sees.
    let text = "a\u{200f}b\u{61c}c\u{202e}d\u{200b}e\u{feff}f\u{ad}g\u{e0041}h";
    let log = log_of_one_message(&["-v"], text);
    let line = log
        .lines()
        .find(|l| l.contains("Received message '"))
        .unwrap_or_else(|| panic!("no message line in {log}"));
    assert!(
        line.contains(
            "Received message 'a\\u{200f}b\\u{61c}c\\u{202e}d\\u{200b}e\\u{feff}f\\u{ad}g\\u{e0041}h' from #"
        ),
        "{line}"
    );
    for c in [
        '\u{200f}',
        '\u{61c}',
        '\u{202e}',
        '\u{200b}',
        '\u{feff}',
        '\u{ad}',
        '\u{e0041}',
    ] {
        assert!(!log.contains(c), "raw U+{:04X} in {log}", u32::from(c));
    }
}
