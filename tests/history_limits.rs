//! History and rooms under the limits live traffic obeys,
//! through the binary over real sockets:
//!
//! - replay is paced by the newcomer's socket: newcomers that never read
//!   hold at most `--max-backlog` plus one message each, and a reader gets
//!   every history message, however large, without being closed;
//! - what a room says while a newcomer's replay is pending reaches it after
//!   the history, in order, none lost or repeated;
//! - with `--deflate`, the history is compressed once, not per newcomer
//!   (counted in `rookery_compressed_bytes_total`, not timed);
//! - a room with history but no members makes way for a new one past
//!   `--max-rooms`, least recently used first, and is forgotten after
//!   `--room-ttl` (on a virtual clock: `Server::run_once_at`).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use tungstenite::Message;

const WELCOME: &str = "Welcome to Rookery Chat!";

fn chat(extra: &[&str]) -> Rookery {
    let mut args = vec!["--ping-interval", "0", "--metrics"];
    args.extend_from_slice(extra);
    Rookery::start(&args)
}

fn text(ws: &mut Ws) -> String {
    match next_data(ws) {
        Message::Text(t) => t.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// A message of `len` bytes that says which one it is (`n`) at its start.
fn numbered(n: usize, len: usize) -> String {
    let mut m = format!("{n:06}:");
    let fill = len - m.len();
    m.extend(std::iter::repeat_n('h', fill));
    m
}

/// Fills room `path` with `count` messages of `len` bytes from a member
/// that reads each back before it sends the next, then leaves.
fn fill(server: &Rookery, path: &str, count: usize, len: usize) {
    let mut ws = connect(&server.url(path));
    assert_eq!(text(&mut ws), WELCOME);
    for n in 0..count {
        let m = numbered(n, len);
        ws.send(Message::text(m.clone())).unwrap();
        assert_eq!(text(&mut ws), m);
    }
    ws.close(None).unwrap();
    let _ = expect_close(&mut ws);
}

/// A sample of the metrics page: the value of `name`.
fn metric(server: &Rookery, name: &str) -> u64 {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut page = String::new();
    stream.read_to_string(&mut page).unwrap();
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {page}"))
}

/// A tungstenite client on a connection with a small receive buffer.
fn connect_small(server: &Rookery, path: &str, rcvbuf: usize) -> Ws {
    let stream = tcp_with_buffers(server.addr, Some(rcvbuf), None);
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let config = tungstenite::protocol::WebSocketConfig {
        max_message_size: None,
        max_frame_size: None,
        ..Default::default()
    };
    let (ws, _) =
        tungstenite::client::client_with_config(server.url(path), Retrying(stream), Some(config))
            .unwrap_or_else(|e| panic!("handshake: {e}"));
    ws
}

#[test]
fn newcomers_that_never_read_hold_at_most_the_backlog_limit_and_one_message_each() {
    const MESSAGE: usize = 16_000;
    const NEWCOMERS: usize = 16;
    const LIMIT: usize = 256 * 1024;
    let server = chat(&[
        "--max-message",
        "64KiB",
        "--max-backlog",
        "256KiB",
        "--history",
        "400",
    ]);
    // 6.4 MB of history: more than the limit and what the kernel's buffers
    // of a connection with a 4 KiB receive buffer take (about 2.5 MB on
    // loopback) together.
    fill(&server, "/chat/h", 400, MESSAGE);
    let before = server.rss_kib();
    let mut silent = Vec::new();
    for _ in 0..NEWCOMERS {
        let mut s = tcp_with_buffers(server.addr, Some(4096), None);
        s.write_all(upgrade_request("/chat/h", "").as_bytes())
            .unwrap();
        silent.push(s);
    }
    assert!(eventually(Duration::from_secs(10), || metric(
        &server,
        "rookery_connections_open"
    ) == NEWCOMERS
        as u64));
    // The loop has moved what the sockets take once the backlog stays put
    // between two requests (each served by the same loop, a pass apart).
    let mut backlog = metric(&server, "rookery_backlog_bytes");
    assert!(eventually(Duration::from_secs(10), || {
        let now = metric(&server, "rookery_backlog_bytes");
        let settled = now == backlog;
        backlog = now;
        settled
    }));
    let cap = (NEWCOMERS * (LIMIT + MESSAGE + 16)) as u64;
    let grown = server.rss_kib().saturating_sub(before);
    println!("{NEWCOMERS} silent newcomers: backlog {backlog} B (cap {cap}), RSS +{grown} KiB");
    assert!(backlog <= cap, "backlog {backlog} over {cap}");
    // And they are not vacuous: much of each replay is still to come.
    let sent = metric(&server, "rookery_bytes_sent_total");
    let history = (400 * MESSAGE) as u64;
    assert!(backlog > 0);
    assert!(sent < history + NEWCOMERS as u64 * history / 2, "{sent}");
    // None of them was closed for it: they are slow consumers of history,
    // which their idle timeout, not the backlog cap, ends.
    assert_eq!(metric(&server, "rookery_slow_consumer_closes_total"), 0);
    drop(silent);
}

#[test]
fn a_reader_gets_every_large_history_message_and_stays_open() {
    const MESSAGE: usize = 1_048_000;
    let server = chat(&["--history", "8"]);
    fill(&server, "/chat/big", 8, MESSAGE);
    let mut ws = connect(&server.url("/chat/big"));
    assert_eq!(text(&mut ws), WELCOME);
    for n in 0..8 {
        let m = text(&mut ws);
        assert_eq!(m.len(), MESSAGE);
        assert_eq!(m, numbered(n, MESSAGE), "history message {n}");
    }
    ws.send(Message::text("still here")).unwrap();
    assert_eq!(text(&mut ws), "still here");
    assert_eq!(metric(&server, "rookery_slow_consumer_closes_total"), 0);
}

#[test]
fn a_python_reader_gets_every_large_history_message_and_stays_open() {
    const MESSAGE: usize = 1_048_000;
    if !require_python("websockets.asyncio.client") {
        return;
    }
    let server = chat(&["--history", "8"]);
    fill(&server, "/chat/big", 8, MESSAGE);
    let script = format!(
        r#"
import asyncio, websockets
async def main():
    async with websockets.connect("{url}", max_size=None, compression=None) as ws:
        print(await ws.recv())
        for n in range(8):
            m = await ws.recv()
            assert len(m) == {MESSAGE} and m.startswith("%06d:" % n), (n, len(m), m[:10])
        await ws.send("still here")
        print(await ws.recv())
asyncio.run(main())
"#,
        url = server.url("/chat/big"),
    );
    let out = run_python(&script);
    assert_eq!(out, format!("{WELCOME}\nstill here\n"));
}

#[test]
fn live_messages_during_a_pending_replay_come_after_the_history_none_lost_or_repeated() {
    const MESSAGE: usize = 1_000_000;
    const LIVE: usize = 50;
    let server = chat(&["--history", "8"]);
    fill(&server, "/chat/seam", 8, MESSAGE);
    // 8 MB of history against a 16 KiB receive buffer: most of it is still
    // waiting in the server when the room speaks.
    let mut late = connect_small(&server, "/chat/seam", 16 * 1024);
    let mut talker = connect(&server.url("/chat/seam"));
    assert_eq!(text(&mut talker), WELCOME);
    for n in 0..8 {
        assert_eq!(text(&mut talker).len(), MESSAGE, "talker's history {n}");
    }
    let pending = metric(&server, "rookery_backlog_bytes");
    for n in 0..LIVE {
        let m = format!("live {n}");
        talker.send(Message::text(m.clone())).unwrap();
        assert_eq!(text(&mut talker), m);
    }
    assert_eq!(text(&mut late), WELCOME);
    for n in 0..8 {
        assert_eq!(text(&mut late), numbered(n, MESSAGE), "history message {n}");
    }
    for n in 0..LIVE {
        assert_eq!(text(&mut late), format!("live {n}"));
    }
    talker.send(Message::text("after")).unwrap();
    assert_eq!(text(&mut late), "after");
    assert!(
        pending > 0,
        "the replay was not pending while the room spoke"
    );
}

#[cfg(feature = "deflate")]
#[test]
fn with_deflate_the_history_is_compressed_once_for_every_newcomer() {
    const MESSAGE: usize = 20_000;
    const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
    let server = chat(&["--deflate", "--history", "10"]);
    // The filler offers no compression: what is compressed is the history,
    // once, as it is kept.
    let start = metric(&server, "rookery_compressed_bytes_total");
    fill(&server, "/chat/z", 10, MESSAGE);
    let before = metric(&server, "rookery_compressed_bytes_total");
    // Each message's payload (7-byte number and filler) once.
    assert_eq!(before - start, 10 * MESSAGE as u64);
    for _ in 0..4 {
        let (mut s, head) = raw_upgrade(server.addr, "/chat/z", OFFER);
        assert!(head.contains("permessage-deflate"), "{head}");
        let (first, welcome) = read_frame(&mut s).unwrap();
        assert_eq!((first, &welcome[..]), (0x81, WELCOME.as_bytes()));
        for n in 0..10 {
            let (first, payload) = read_frame(&mut s).unwrap();
            // FIN, RSV1 (compressed), text; far smaller than the message.
            assert_eq!(first, 0xC1, "history message {n}");
            assert!(payload.len() < MESSAGE / 10, "{}", payload.len());
        }
    }
    let compressed = metric(&server, "rookery_compressed_bytes_total") - before;
    assert_eq!(compressed, 0, "a newcomer's replay compressed again");
}

#[test]
fn a_room_without_members_makes_way_least_recently_used_first() {
    let server = chat(&["--history", "5", "--max-rooms", "2"]);
    fill(&server, "/chat/j1", 1, 40);
    fill(&server, "/chat/j2", 1, 40);
    // Both idle, at the limit: a third room takes j1's place (the older).
    let mut j3 = connect(&server.url("/chat/j3"));
    assert_eq!(text(&mut j3), WELCOME);
    // j2 kept its history; j1 is new again (and takes j2's place).
    let mut again = connect(&server.url("/chat/j2"));
    assert_eq!(text(&mut again), WELCOME);
    assert_eq!(text(&mut again), numbered(0, 40));
    again.close(None).unwrap();
    let _ = expect_close(&mut again);
    let mut j1 = connect(&server.url("/chat/j1"));
    assert_eq!(text(&mut j1), WELCOME);
    j1.send(Message::text("first in j1")).unwrap();
    assert_eq!(text(&mut j1), "first in j1", "j1's history survived");
    // Every room has members: one more is refused, the default room is not.
    match try_connect(&server.url("/chat/j4"))
        .map(|_| ())
        .map_err(|e| *e)
    {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 503),
        other => panic!("j4: {other:?}"),
    }
    let mut lobby = connect(&server.url("/chat"));
    assert_eq!(text(&mut lobby), WELCOME);
}

#[test]
fn a_room_without_members_is_forgotten_after_the_ttl_on_a_virtual_clock() {
    let config = rookery::Config {
        ping_interval: Duration::ZERO,
        idle_timeout: Duration::ZERO,
        ..rookery::Config::default()
    };
    let server = Virtual::start_with(config, || {
        rookery::chat::Chat::new(rookery::chat::ChatOptions {
            page: false,
            ..rookery::chat::ChatOptions::default()
        })
        .with_rooms(4, 5)
        .with_room_ttl(Duration::from_secs(3600))
        .with_metrics(true)
    });
    let rooms = || {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut page = String::new();
        stream.read_to_string(&mut page).unwrap();
        page.lines()
            .find_map(|l| l.strip_prefix("rookery_rooms ")?.parse::<u64>().ok())
            .unwrap()
    };
    let leave_a_message = |path: &str, text: &str| {
        let mut ws = connect(&server.url(path));
        assert_eq!(next_data(&mut ws), Message::text(WELCOME));
        ws.send(Message::text(text)).unwrap();
        assert_eq!(next_data(&mut ws), Message::text(text));
        ws.close(None).unwrap();
        let _ = expect_close(&mut ws);
        server.settle();
    };
    leave_a_message("/chat/early", "kept in early");
    server.advance(Duration::from_secs(1800));
    leave_a_message("/chat/late", "kept in late");
    assert_eq!(rooms(), 2);
    // An hour after the first left, the first goes; the second half an
    // hour later.
    server.advance(Duration::from_secs(1799));
    assert_eq!(rooms(), 2);
    server.advance(Duration::from_secs(2));
    assert_eq!(rooms(), 1);
    let mut back = connect(&server.url("/chat/late"));
    assert_eq!(next_data(&mut back), Message::text(WELCOME));
    assert_eq!(next_data(&mut back), Message::text("kept in late"));
    back.close(None).unwrap();
    let _ = expect_close(&mut back);
    server.settle();
    // Its member came and went: its hour starts again from then.
    server.advance(Duration::from_secs(3599));
    assert_eq!(rooms(), 1);
    server.advance(Duration::from_secs(2));
    assert_eq!(rooms(), 0);
    let mut fresh = connect(&server.url("/chat/early"));
    assert_eq!(next_data(&mut fresh), Message::text(WELCOME));
    fresh.send(Message::text("new")).unwrap();
    assert_eq!(
        next_data(&mut fresh),
        Message::text("new"),
        "history outlived the TTL"
    );
}

/// A library handler that sends its first newcomer 100 frames of
/// 100,000 B with `Context::send_paced`, and answers `?` from anyone with the
/// first newcomer's backlog and the frames still waiting for it (and
/// `ping` with that, after pinging the first newcomer).
struct Paced {
    first: Option<rookery::ConnId>,
}

const PACED_FRAMES: usize = 100;
const PACED_SIZE: usize = 100_000;

impl rookery::Handler for Paced {
    fn on_open(&mut self, ctx: &mut rookery::Context<'_>, conn: rookery::ConnId) {
        if self.first.is_some() {
            return;
        }
        self.first = Some(conn);
        for n in 0..PACED_FRAMES {
            let mut payload = vec![b'p'; PACED_SIZE];
            payload[..4].copy_from_slice(&(n as u32).to_be_bytes());
            let frame = ctx.prepare(rookery::Message::Binary(&payload));
            ctx.send_paced(conn, &frame).unwrap();
        }
    }

    fn on_message(
        &mut self,
        ctx: &mut rookery::Context<'_>,
        conn: rookery::ConnId,
        msg: rookery::Message<'_>,
    ) {
        let first = self.first.unwrap();
        if msg == rookery::Message::Text("ping") {
            // Waits behind the paced frames too, never meeting the slow
            // consumer's check in a queue they filled.
            ctx.ping(first, b"p").unwrap();
        }
        let report = format!(
            "{} {} {}",
            ctx.backlog(first).unwrap_or(0),
            ctx.paced_waiting(first),
            ctx.is_open(first)
        );
        let _ = ctx.send_text(conn, &report);
    }
}

#[test]
fn send_paced_holds_a_library_connection_to_the_backlog_limit_until_it_reads() {
    let config = rookery::Config {
        max_backlog: 256 * 1024,
        ping_interval: Duration::ZERO,
        ..rookery::Config::default()
    };
    let server = InProcess::start(config, Paced { first: None });
    let stream = tcp_with_buffers(server.addr, Some(4096), None);
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let (mut slow, _) = tungstenite::client::client_with_config(
        server.url("/chat"),
        Retrying(stream),
        Some(tungstenite::protocol::WebSocketConfig {
            max_message_size: None,
            max_frame_size: None,
            ..Default::default()
        }),
    )
    .unwrap();
    let mut observer = connect(&server.url("/chat"));
    let mut ask = |what: &str| {
        observer.send(Message::text(what)).unwrap();
        let report = text(&mut observer);
        let mut parts = report.split(' ');
        let backlog: usize = parts.next().unwrap().parse().unwrap();
        let waiting: usize = parts.next().unwrap().parse().unwrap();
        (backlog, waiting, parts.next() == Some("true"))
    };
    let (backlog, waiting, open) = ask("ping");
    assert!(open);
    assert!(
        backlog <= 256 * 1024 + PACED_SIZE + 16,
        "{backlog} queued for a connection that never read"
    );
    assert!(waiting > PACED_FRAMES / 4, "only {waiting} frames waiting");
    for n in 0..PACED_FRAMES {
        match next_data(&mut slow) {
            Message::Binary(b) => {
                assert_eq!(b.len(), PACED_SIZE);
                assert_eq!(b[..4], (n as u32).to_be_bytes(), "frame {n}");
            }
            other => panic!("frame {n}: {other:?}"),
        }
    }
    assert_eq!(ask("?"), (0, 0, true));
}

#[test]
fn a_room_ttl_too_long_for_the_clock_means_never() {
    let server = Virtual::start_with(rookery::Config::default(), || {
        rookery::chat::Chat::new(rookery::chat::ChatOptions {
            page: false,
            ..rookery::chat::ChatOptions::default()
        })
        .with_rooms(4, 5)
        .with_room_ttl(Duration::MAX)
    });
    for round in 0..2 {
        let mut ws = connect(&server.url("/chat/long"));
        assert_eq!(next_data(&mut ws), Message::text(WELCOME));
        if round == 1 {
            assert_eq!(next_data(&mut ws), Message::text("kept"));
        }
        ws.send(Message::text("kept")).unwrap();
        assert_eq!(next_data(&mut ws), Message::text("kept"));
        // Leaving arms the room's timer, a Duration::MAX away.
        ws.close(None).unwrap();
        let _ = expect_close(&mut ws);
        server.settle();
        server.advance(Duration::from_secs(3600 * 24 * 365));
    }
    assert!(!server.has_stopped());
}

#[test]
fn a_newcomer_that_reads_nothing_while_the_room_talks_is_closed_as_a_slow_consumer() {
    let server = chat(&["--history", "8", "--max-backlog", "256KiB"]);
    fill(&server, "/chat/busy", 8, 1_000_000);
    // Its replay is pending (8 MB against a 4 KiB receive buffer) ...
    let silent = tcp_with_buffers(server.addr, Some(4096), None);
    (&silent)
        .write_all(upgrade_request("/chat/busy", "").as_bytes())
        .unwrap();
    let mut talker = connect(&server.url("/chat/busy"));
    assert_eq!(text(&mut talker), WELCOME);
    for _ in 0..8 {
        text(&mut talker);
    }
    assert_eq!(metric(&server, "rookery_slow_consumer_closes_total"), 0);
    // ... and what the room says waits behind it, counted: 400 KB of it
    // passes the 256 KiB limit.
    for n in 0..10 {
        let m = numbered(n, 40_000);
        talker.send(Message::text(m.clone())).unwrap();
        assert_eq!(text(&mut talker), m, "the talker is not held up");
    }
    assert!(eventually(Duration::from_secs(10), || metric(
        &server,
        "rookery_slow_consumer_closes_total"
    ) == 1));
    drop(silent);
}
