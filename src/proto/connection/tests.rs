//! The connection driven entirely in memory, with made-up time: every close
//! path and every deadline, no socket and no sleep.

use std::time::{Duration, Instant};

use super::*;
use crate::proto::frame::encode_client_frame;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const MASK: [u8; 4] = [1, 2, 3, 4];

fn settings() -> Settings {
    Settings {
        handshake_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(15),
        close_timeout: Duration::from_secs(2),
        ..Settings::default()
    }
}

fn upgrade_request(path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_client_frame(&mut out, first, MASK, payload);
    out
}

/// A transport that takes at most `room` bytes, then refuses, driven as the
/// server's `transmit::flush` drives a connection's output.
struct Throttled {
    room: usize,
    got: Vec<u8>,
    /// Whether the connection asked for its sending direction to be shut.
    shut: bool,
}

impl Throttled {
    fn new(room: usize) -> Throttled {
        Throttled {
            room,
            got: Vec::new(),
            shut: false,
        }
    }

    /// Takes what fits of `bytes`; how much that was.
    fn take(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.room);
        self.got.extend_from_slice(&bytes[..n]);
        self.room -= n;
        n
    }

    /// One write: the connection's pending output, then `extra` once all of
    /// that went, unless the connection waits for the transport to drain.
    fn flush(&mut self, conn: &mut Connection, s: &Settings, now: Instant, extra: &[&[u8]]) {
        if conn.is_finished() {
            return;
        }
        let mut written = 0;
        if !conn.wants_write() {
            let mut n = 0;
            let mut all = true;
            let pending: Vec<Vec<u8>> = conn.pending_output().map(<[u8]>::to_vec).collect();
            for bytes in &pending {
                let took = self.take(bytes);
                n += took;
                if took < bytes.len() {
                    all = false;
                    break;
                }
            }
            conn.consumed(n);
            if all {
                for part in extra {
                    written += self.take(part);
                }
            }
        }
        if conn.end_write(s, now, extra, written, None) {
            self.shut = true;
        }
    }

    /// The transport can take more: a write follows.
    fn writable(&mut self, conn: &mut Connection, s: &Settings, now: Instant) {
        conn.handle_writable();
        self.flush(conn, s, now, &[]);
    }
}

/// Sends `msg` as the server sends a large one: handed to the transport
/// right after the pending output, queued only as far as it is refused.
fn send_through(
    conn: &mut Connection,
    s: &Settings,
    now: Instant,
    codec: &mut Codec,
    sink: &mut Throttled,
    msg: Message<'_>,
) -> Result<(), SendError> {
    let (header, payload) = conn.message_parts(codec, msg)?;
    let payload = payload.to_vec();
    sink.flush(conn, s, now, &[header.as_bytes(), &payload]);
    Ok(())
}

/// The notices a test asks about one at a time, taken through
/// [`Connection::poll_event`] (any other notice polled on the way is
/// dropped).
trait Notices {
    fn take_closed(&mut self) -> Option<CloseCode>;
    fn take_activation(&mut self, now: Instant) -> Option<Vec<u8>>;
    fn take_backlog_closed(&mut self) -> bool;
}

impl Notices for Connection {
    fn take_closed(&mut self) -> Option<CloseCode> {
        let now = Instant::now();
        std::iter::from_fn(|| self.poll_event(now)).find_map(|n| match n {
            Notice::Closed(code) => Some(code),
            _ => None,
        })
    }

    fn take_activation(&mut self, now: Instant) -> Option<Vec<u8>> {
        std::iter::from_fn(|| self.poll_event(now)).find_map(|n| match n {
            Notice::Activated(early) => Some(early),
            _ => None,
        })
    }

    fn take_backlog_closed(&mut self) -> bool {
        let now = Instant::now();
        std::iter::from_fn(|| self.poll_event(now)).any(|n| n == Notice::BacklogExceeded)
    }
}

/// What a test sees of an event, owned.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Request(String),
    Upgrade(String),
    Text(String),
    Binary(Vec<u8>),
    Closed(u16, String),
}

/// A connection with a peer that records what it is sent.
struct Peer {
    s: Settings,
    conn: Connection,
    codec: Codec,
    scratch: Vec<u8>,
    wire: Throttled,
    t0: Instant,
    /// Whether `feed` tries [`Connection::read_message`] before
    /// `handle_input`, as the server does.
    fast: bool,
}

impl Peer {
    fn new(s: Settings) -> Peer {
        let t0 = Instant::now();
        Peer {
            conn: Connection::new(&s, t0),
            s,
            codec: Codec::default(),
            scratch: Vec::new(),
            wire: Throttled::new(usize::MAX),
            t0,
            fast: false,
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// Feeds `bytes` at `ms`, accepting any upgrade, and returns the events.
    fn feed(&mut self, ms: u64, bytes: &[u8]) -> Vec<Seen> {
        let now = self.at(ms);
        let mut input = bytes.to_vec();
        let mut off = 0;
        let mut seen = Vec::new();
        while off < input.len() {
            if self.fast {
                if let Some((used, message)) =
                    self.conn.read_message(&self.s, now, &mut input[off..])
                {
                    off += used;
                    seen.push(match message {
                        Message::Text(t) => Seen::Text(t.to_string()),
                        Message::Binary(b) => Seen::Binary(b.to_vec()),
                    });
                    continue;
                }
            }
            let (used, event) = self.conn.handle_input(
                &self.s,
                now,
                &mut self.codec,
                &mut input[off..],
                &mut self.scratch,
            );
            off += used;
            match event {
                None if used == 0 => break,
                None => {}
                Some(Event::Upgrade(req)) => {
                    seen.push(Seen::Upgrade(req.path().to_string()));
                    self.conn.accept(&self.s, now, &req, None, false).unwrap();
                }
                Some(Event::Request(req)) => {
                    seen.push(Seen::Request(req.path().to_string()));
                    self.conn
                        .respond(&self.s, now, &Response::status(404))
                        .unwrap();
                }
                Some(Event::Text(t)) => seen.push(Seen::Text(t.to_string())),
                Some(Event::Binary(b)) => seen.push(Seen::Binary(b.to_vec())),
                Some(Event::Closed { code, reason }) => {
                    seen.push(Seen::Closed(code.get(), reason.to_string()))
                }
            }
        }
        self.flush(ms);
        seen
    }

    fn flush(&mut self, ms: u64) {
        let now = self.at(ms);
        self.wire.flush(&mut self.conn, &self.s, now, &[]);
    }

    fn tick(&mut self, ms: u64) -> Option<CloseCode> {
        self.conn.handle_timeout(&self.s, self.at(ms));
        self.flush(ms);
        self.conn.take_closed()
    }

    /// Takes what was sent so far.
    fn sent(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.wire.got)
    }

    fn open(s: Settings) -> Peer {
        let mut peer = Peer::new(s);
        assert_eq!(
            peer.feed(0, &upgrade_request("/chat")),
            [Seen::Upgrade("/chat".into())]
        );
        let reply = String::from_utf8(peer.sent()).unwrap();
        assert!(reply.starts_with("HTTP/1.1 101 "), "{reply}");
        assert!(reply.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{reply}");
        assert!(peer.conn.is_open());
        peer
    }

    fn ms_until_timeout(&self) -> Option<u64> {
        self.conn
            .poll_timeout(&self.s)
            .map(|t| t.duration_since(self.t0).as_millis() as u64)
    }
}

/// A server frame as sent on the wire.
fn server_frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&mut out, opcode, payload);
    out
}

fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    p
}

#[test]
fn the_upgrade_is_answered_and_messages_come_out_as_data() {
    let mut peer = Peer::open(settings());
    let mut input = client_frame(0x81, b"hello");
    input.extend(client_frame(0x82, &[1, 2, 3]));
    // A fragmented text with a ping in the middle, split at every byte.
    let mut fragmented = client_frame(0x01, "hé".as_bytes());
    fragmented.extend(client_frame(0x89, b"p"));
    fragmented.extend(client_frame(0x80, "llo".as_bytes()));
    assert_eq!(
        peer.feed(10, &input),
        [Seen::Text("hello".into()), Seen::Binary(vec![1, 2, 3])]
    );
    let mut seen = Vec::new();
    for b in &fragmented {
        seen.extend(peer.feed(20, std::slice::from_ref(b)));
    }
    assert_eq!(seen, [Seen::Text("héllo".into())]);
    assert_eq!(
        peer.sent(),
        server_frame(OpCode::Pong, b"p"),
        "automatic pong"
    );
    assert_eq!(peer.conn.receive_heap_bytes(), 0, "the message moved out");
}

#[test]
fn a_peer_close_is_echoed_and_reported_with_its_reason() {
    let mut peer = Peer::open(settings());
    let seen = peer.feed(100, &client_frame(0x88, &close_payload(4001, "bye")));
    assert_eq!(seen, [Seen::Closed(4001, "bye".into())]);
    assert_eq!(
        peer.sent(),
        server_frame(OpCode::Close, &4001u16.to_be_bytes())
    );
    assert!(!peer.conn.can_send());
    // Draining: waits for the peer's EOF at most the close timeout.
    assert_eq!(peer.ms_until_timeout(), Some(2100));
    assert_eq!(peer.conn.take_closed(), None, "reported once");
    peer.conn.handle_eof();
    assert!(peer.conn.is_finished());
    assert_eq!(peer.conn.take_closed(), None);
}

#[test]
fn our_close_is_answered_or_times_out_as_1006() {
    let mut peer = Peer::open(settings());
    peer.conn
        .close(&peer.s, peer.at(50), CloseCode::new(4000), "as asked")
        .unwrap();
    peer.flush(50);
    assert_eq!(
        peer.sent(),
        server_frame(OpCode::Close, &close_payload(4000, "as asked"))
    );
    // Data after our close is dropped; the peer's answer reports our code.
    assert_eq!(peer.feed(60, &client_frame(0x81, b"late")), []);
    let seen = peer.feed(70, &client_frame(0x88, &close_payload(1000, "")));
    assert_eq!(seen, [Seen::Closed(4000, String::new())]);
    assert!(peer.sent().is_empty(), "no second close frame");

    let mut silent = Peer::open(settings());
    silent
        .conn
        .close(&silent.s, silent.at(50), CloseCode::NORMAL, "")
        .unwrap();
    assert_eq!(silent.ms_until_timeout(), Some(2050));
    assert_eq!(silent.tick(2049), None);
    assert!(!silent.conn.is_finished());
    assert_eq!(silent.tick(2050), Some(CloseCode::ABNORMAL));
    assert!(silent.conn.is_finished());
}

#[test]
fn protocol_errors_fail_fast_with_their_code() {
    let cases: [(Vec<u8>, u16); 4] = [
        (client_frame(0xC1, b"x"), 1002),
        (client_frame(0x81, b"\xff"), 1007),
        (client_frame(0x82, &[0; 11]), 1009),
        (client_frame(0x88, &[0x03, 0xED]), 1002),
    ];
    for (input, code) in cases {
        let s = Settings {
            max_message: 10,
            ..settings()
        };
        let mut peer = Peer::open(s);
        assert_eq!(
            peer.feed(5, &input),
            [Seen::Closed(code, String::new())],
            "{input:02x?}"
        );
        assert_eq!(
            peer.sent(),
            server_frame(OpCode::Close, &code.to_be_bytes())
        );
        // Nothing more is read.
        assert_eq!(peer.feed(6, &client_frame(0x81, b"more")), []);
    }
}

#[test]
fn a_silent_connection_is_closed_after_the_idle_timeout_and_traffic_resets_it() {
    let mut peer = Peer::open(settings());
    assert_eq!(peer.ms_until_timeout(), Some(15_000));
    // A pong is traffic too.
    assert_eq!(peer.feed(10_000, &client_frame(0x8A, b"")), []);
    assert_eq!(peer.ms_until_timeout(), Some(25_000));
    assert_eq!(peer.tick(15_000), None);
    assert!(peer.conn.is_open(), "an early wake-up changes nothing");
    peer.tick(25_000);
    assert_eq!(
        peer.sent(),
        server_frame(OpCode::Close, &close_payload(1001, "idle timeout"))
    );
    let seen = peer.feed(25_100, &client_frame(0x88, &close_payload(1001, "")));
    assert_eq!(seen, [Seen::Closed(1001, String::new())]);
}

#[test]
fn a_slow_handshake_is_dropped_at_the_deadline_without_a_report() {
    let mut peer = Peer::new(settings());
    assert_eq!(peer.feed(100, b"GET /chat HTTP/1.1\r\nHost"), []);
    assert_eq!(peer.ms_until_timeout(), Some(5_000));
    assert_eq!(peer.tick(4_999), None);
    assert!(!peer.conn.is_finished());
    assert_eq!(peer.tick(5_000), None, "not upgraded: nothing to report");
    assert!(peer.conn.is_finished());
    assert!(peer.sent().is_empty());
    // Off means off.
    let off = Peer::new(Settings {
        handshake_timeout: Duration::ZERO,
        ..settings()
    });
    assert_eq!(off.ms_until_timeout(), None);
}

#[test]
fn bad_requests_get_their_status_and_other_paths_go_to_the_caller() {
    let mut peer = Peer::new(settings());
    assert_eq!(
        peer.feed(0, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        [Seen::Request("/".into())]
    );
    assert!(String::from_utf8(peer.sent())
        .unwrap()
        .starts_with("HTTP/1.1 404 "));
    let mut bad = Peer::new(settings());
    let old_version = String::from_utf8(upgrade_request("/chat"))
        .unwrap()
        .replace("Version: 13", "Version: 8")
        .into_bytes();
    assert_eq!(bad.feed(0, &old_version), []);
    let reply = String::from_utf8(bad.sent()).unwrap();
    assert!(reply.starts_with("HTTP/1.1 426 "), "{reply}");
    assert!(reply.contains("Sec-WebSocket-Version: 13"), "{reply}");
    let mut huge = Peer::new(settings());
    assert_eq!(huge.feed(0, &vec![b'a'; 9000]), []);
    assert!(String::from_utf8(huge.sent())
        .unwrap()
        .starts_with("HTTP/1.1 431 "));
    let origins = Settings {
        allowed_origins: vec!["https://a.example".into()],
        ..settings()
    };
    let mut foreign = Peer::new(origins);
    let mut req = upgrade_request("/chat");
    req.truncate(req.len() - 2);
    req.extend_from_slice(b"Origin: https://b.example\r\n\r\n");
    assert_eq!(foreign.feed(0, &req), []);
    assert!(String::from_utf8(foreign.sent())
        .unwrap()
        .starts_with("HTTP/1.1 403 "));
}

#[test]
fn a_delayed_upgrade_reads_nothing_until_activated() {
    let mut peer = Peer::new(settings());
    let mut input = upgrade_request("/chat");
    input.extend(client_frame(0x81, b"early"));
    let now = peer.at(0);
    let (used, event) =
        peer.conn
            .handle_input(&peer.s, now, &mut peer.codec, &mut input, &mut peer.scratch);
    let Some(Event::Upgrade(req)) = event else {
        panic!("no upgrade");
    };
    peer.conn.accept(&peer.s, now, &req, None, true).unwrap();
    let (rest, event) = peer.conn.handle_input(
        &peer.s,
        now,
        &mut peer.codec,
        &mut input[used..],
        &mut peer.scratch,
    );
    assert!(event.is_none());
    assert_eq!(used + rest, input.len(), "kept, not read");
    assert!(peer.conn.can_send() && !peer.conn.is_open());
    assert!(!peer.conn.wants_read(&peer.s));
    assert_eq!(peer.conn.take_activation(now), None, "not activated yet");
    peer.conn.activate().unwrap();
    assert_eq!(peer.conn.activate(), Err(SendError::NotPending));
    let early = peer.conn.take_activation(peer.at(300)).unwrap();
    assert!(peer.conn.is_open());
    assert_eq!(peer.feed(300, &early), [Seen::Text("early".into())]);
}

#[test]
fn a_kill_is_reported_once_as_1006() {
    let mut peer = Peer::open(settings());
    peer.conn.kill().unwrap();
    assert!(peer.conn.is_finished());
    assert_eq!(peer.conn.take_closed(), Some(CloseCode::ABNORMAL));
    assert_eq!(peer.conn.take_closed(), None);
    assert_eq!(peer.conn.kill(), Err(SendError::NotOpen));
    assert_eq!(
        peer.conn
            .send(&peer.s, peer.at(1), &mut peer.codec, Message::Text("x")),
        Err(SendError::NotOpen)
    );
}

#[test]
fn a_peer_that_does_not_read_is_closed_with_1008_past_the_backlog_limit() {
    let s = Settings {
        max_backlog: 1000,
        ..settings()
    };
    let mut peer = Peer::open(s);
    let mut sink = Throttled::new(100);
    let big = [b'x'; 600];
    // One message larger than the socket takes: the peer is behind now.
    let now = peer.at(1);
    send_through(
        &mut peer.conn,
        &peer.s,
        now,
        &mut peer.codec,
        &mut sink,
        Message::Binary(&big),
    )
    .unwrap();
    assert!(peer.conn.wants_write());
    assert!(peer.conn.is_open(), "a single message is let through");
    peer.conn
        .send(&peer.s, peer.at(2), &mut peer.codec, Message::Binary(&big))
        .unwrap();
    assert!(!peer.conn.is_open(), "over the cap while behind");
    assert_eq!(
        peer.conn
            .send(&peer.s, peer.at(3), &mut peer.codec, Message::Text("x")),
        Err(SendError::NotOpen)
    );
    // The close frame goes out once the socket drains.
    sink.room = usize::MAX / 2;
    let now = peer.at(4);
    sink.writable(&mut peer.conn, &peer.s, now);
    let tail = close_payload(1008, "backlog limit exceeded");
    assert!(
        sink.got.ends_with(&tail),
        "{:?}",
        &sink.got[sink.got.len() - 30..]
    );
}

#[test]
fn paced_frames_skip_the_backlog_check_and_encode_matches_send() {
    let s = Settings {
        max_backlog: 1000,
        ..settings()
    };
    let mut peer = Peer::open(s);
    let mut sink = Throttled::new(100);
    let big = [b'x'; 600];
    let now = peer.at(1);
    send_through(
        &mut peer.conn,
        &peer.s,
        now,
        &mut peer.codec,
        &mut sink,
        Message::Binary(&big),
    )
    .unwrap();
    assert!(peer.conn.wants_write());
    // Behind, and over the cap: a paced frame is queued all the same (its
    // caller bounds what it queues), where a send would close.
    let frame = SharedFrame::new(Message::Binary(&big));
    let bytes = peer.conn.shared_bytes(&mut peer.codec, &frame);
    peer.conn.queue_paced(&bytes).unwrap();
    assert!(peer.conn.is_open());
    assert!(peer.conn.backlog() > 1000);
    // What `encode` makes is the frame `send` would queue.
    let encoded = peer.conn.encode(&mut peer.codec, Message::Text("hello"));
    assert_eq!(&encoded[..], &server_frame(OpCode::Text, b"hello")[..]);
    assert_eq!(&bytes[..], &server_frame(OpCode::Binary, &big)[..]);
    // The slow consumer's close, asked for by the caller.
    peer.conn.close_for_backlog(&peer.s, peer.at(2));
    assert!(!peer.conn.is_open());
    assert!(peer.conn.take_backlog_closed());
    assert_eq!(peer.conn.queue_paced(&bytes), Err(SendError::NotOpen));
    sink.room = usize::MAX / 2;
    let now = peer.at(3);
    sink.writable(&mut peer.conn, &peer.s, now);
    assert!(sink
        .got
        .ends_with(&close_payload(1008, "backlog limit exceeded")));
}

#[test]
fn the_sending_direction_is_shut_once_the_close_answer_is_out() {
    let mut peer = Peer::open(settings());
    peer.conn
        .send(&peer.s, peer.at(1), &mut peer.codec, Message::Text("x"))
        .unwrap();
    let mut sink = Throttled::new(3);
    let now = peer.at(1);
    sink.flush(&mut peer.conn, &peer.s, now, &[]);
    assert!(!sink.shut, "open: never shut");
    let mut input = client_frame(0x88, &close_payload(1000, ""));
    let (_, event) =
        peer.conn
            .handle_input(&peer.s, now, &mut peer.codec, &mut input, &mut peer.scratch);
    assert!(matches!(
        event,
        Some(Event::Closed {
            code: CloseCode::NORMAL,
            ..
        })
    ));
    // Draining: the rest of the reply and the close frame first.
    sink.writable(&mut peer.conn, &peer.s, now);
    assert!(!sink.shut, "output left: not shut yet");
    assert!(peer.conn.wants_write());
    sink.room = 100;
    sink.writable(&mut peer.conn, &peer.s, now);
    assert!(sink.shut, "all out: shut");
    assert!(!peer.conn.has_output());
    assert!(!peer.conn.end_write(&peer.s, now, &[], 0, None), "once");
    assert!(sink.got.ends_with(&[0x88, 0x02, 0x03, 0xE8]));
}

#[test]
fn notices_come_once_each_in_order() {
    // A refused request: its status, once.
    let mut peer = Peer::new(settings());
    peer.feed(0, b"GET /chat HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(peer.conn.poll_event(peer.at(0)), Some(Notice::Refused(400)));
    assert_eq!(peer.conn.poll_event(peer.at(0)), None);
    // A backlog close, then the end of the connection it led to.
    let s = Settings {
        max_backlog: 10,
        ..settings()
    };
    let mut peer = Peer::open(s);
    assert_eq!(peer.conn.poll_event(peer.at(1)), None);
    peer.conn.close_for_backlog(&peer.s, peer.at(1));
    peer.conn.kill().unwrap();
    let now = peer.at(2);
    let notices: Vec<Notice> = std::iter::from_fn(|| peer.conn.poll_event(now)).collect();
    assert_eq!(
        notices,
        [Notice::BacklogExceeded, Notice::Closed(CloseCode::ABNORMAL)]
    );
}

#[test]
fn a_failed_write_finishes_the_connection() {
    let mut peer = Peer::open(settings());
    peer.conn
        .send(&peer.s, peer.at(1), &mut peer.codec, Message::Text("x"))
        .unwrap();
    assert_eq!(peer.conn.pending_output().len(), 1);
    peer.conn
        .write_failed(&std::io::ErrorKind::BrokenPipe.into());
    assert!(peer.conn.is_finished());
    assert_eq!(peer.conn.take_closed(), Some(CloseCode::ABNORMAL));
}

#[test]
fn invalid_text_fails_at_the_bad_byte_even_mid_frame() {
    // Autobahn 6.4.4: one frame in chops; the chop with the bad byte fails.
    let mut peer = Peer::open(settings());
    let payload = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80";
    let frame = client_frame(0x81, payload);
    let (head, rest) = frame.split_at(6 + 12);
    assert_eq!(peer.feed(1, head), []);
    assert_eq!(
        peer.feed(2, &rest[..1]),
        [Seen::Closed(1007, String::new())]
    );
}

#[test]
fn read_message_agrees_with_handle_input() {
    // Every kind of input the fast path takes, declines or must refuse, fed
    // whole and byte by byte, to a connection that tries `read_message`
    // first (as the server does) and to one that only uses `handle_input`:
    // the same events, the same bytes sent, the same deadline.
    let long = "x".repeat(126);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("ascii text", client_frame(0x81, b"hello, world")),
        ("utf-8 text", client_frame(0x81, "κόσμε".as_bytes())),
        ("empty text", client_frame(0x81, b"")),
        (
            "binary, high bytes",
            client_frame(0x82, &[0xff, 0x80, 0x00, 0x7f]),
        ),
        ("16-bit length", client_frame(0x81, long.as_bytes())),
        (
            "two in one read",
            [client_frame(0x81, b"a"), client_frame(0x82, b"b")].concat(),
        ),
        ("invalid utf-8", client_frame(0x81, b"ok\xc3\x28")),
        // Masked, it is ASCII: read twice without the mask put back, it
        // would pass.
        ("invalid utf-8, ascii when masked", {
            let mut frame = Vec::new();
            encode_client_frame(&mut frame, 0x81, [0x80; 4], b"\xc1\xc1");
            frame
        }),
        (
            "invalid utf-8 then text",
            [client_frame(0x81, b"\xff"), client_frame(0x81, b"a")].concat(),
        ),
        ("over max_message", client_frame(0x81, b"eleven byte")),
        (
            "fragments around a ping",
            [
                client_frame(0x01, b"frag"),
                client_frame(0x89, b"p"),
                client_frame(0x80, b"ment"),
                client_frame(0x81, b"next"),
            ]
            .concat(),
        ),
        ("reserved bit", client_frame(0xC1, b"rsv1")),
        ("unmasked", vec![0x81, 0x01, b'a']),
        ("continuation first", client_frame(0x80, b"c")),
        (
            "close, then data",
            [close_frame(1000, "bye"), client_frame(0x81, b"late")].concat(),
        ),
    ];
    for (name, input) in &cases {
        for bytewise in [false, true] {
            let s = Settings {
                max_message: 10.max(long.len() as u64),
                ..settings()
            };
            let s = if *name == "over max_message" {
                Settings {
                    max_message: 10,
                    ..s
                }
            } else {
                s
            };
            let mut outcomes = Vec::new();
            for fast in [false, true] {
                let mut peer = Peer::open(s.clone());
                peer.sent();
                peer.fast = fast;
                let mut seen = Vec::new();
                if bytewise {
                    for (i, byte) in input.iter().enumerate() {
                        seen.extend(peer.feed(10 + i as u64, &[*byte]));
                    }
                } else {
                    seen.extend(peer.feed(10, input));
                }
                outcomes.push((seen, peer.sent(), peer.ms_until_timeout()));
            }
            assert_eq!(outcomes[0], outcomes[1], "{name}, byte by byte: {bytewise}");
        }
    }
}

/// A masked client close frame.
fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    client_frame(0x88, &close_payload(code, reason))
}

/// A close frame with `code` and `reason`, as the server sends it.
fn server_close(code: u16, reason: &str) -> Vec<u8> {
    server_frame(OpCode::Close, &close_payload(code, reason))
}

#[test]
fn a_sender_over_the_message_rate_is_closed_with_1008_and_one_within_it_never() {
    use crate::proto::rate::{Limits, Rate};
    let limited = Settings {
        rate_limits: Limits {
            messages: Rate::new(10, 3),
            bytes: None,
        },
        ..settings()
    };
    for fast in [false, true] {
        // A burst of 3 at once, then one every 100 ms: all pass.
        let mut steady = Peer::open(limited.clone());
        steady.fast = fast;
        let three: Vec<u8> = (0..3).flat_map(|_| client_frame(0x81, b"hi")).collect();
        assert_eq!(steady.feed(10, &three).len(), 3);
        for i in 1..=200 {
            assert_eq!(
                steady.feed(10 + 100 * i, &client_frame(0x81, b"hi")),
                [Seen::Text("hi".into())],
                "message {i} at {} ms",
                10 + 100 * i
            );
        }
        assert!(steady.conn.is_open());
        steady.sent();

        // A fourth in the same instant is over: closed, the message dropped,
        // and what follows it is not read as messages.
        let mut flood = Peer::open(limited.clone());
        flood.fast = fast;
        let five: Vec<u8> = (0..5).flat_map(|_| client_frame(0x81, b"hi")).collect();
        let hi = || Seen::Text("hi".into());
        assert_eq!(flood.feed(10, &five), [hi(), hi(), hi()]);
        assert!(!flood.conn.is_open());
        assert_eq!(flood.sent(), server_close(1008, "rate limit exceeded"));
        assert_eq!(
            flood.feed(20, &client_frame(0x88, &close_payload(1008, ""))),
            [Seen::Closed(1008, String::new())]
        );
    }
}

#[test]
fn a_sender_over_the_byte_rate_is_closed_with_1008_fragmented_or_not() {
    use crate::proto::rate::{Limits, Rate};
    let limited = Settings {
        rate_limits: Limits {
            messages: None,
            bytes: Rate::new(1000, 1000),
        },
        ..settings()
    };
    for fast in [false, true] {
        let mut peer = Peer::open(limited.clone());
        peer.fast = fast;
        assert_eq!(peer.feed(0, &client_frame(0x82, &[1; 600])).len(), 1);
        // 400 left at once; 100 more each 100 ms.
        assert_eq!(peer.feed(100, &client_frame(0x82, &[1; 500])).len(), 1);
        assert!(peer.conn.is_open());
        // A fragmented message counts whole, when it completes.
        let mut parts = client_frame(0x02, &[1; 300]);
        parts.extend(client_frame(0x80, &[1; 300]));
        assert_eq!(peer.feed(500, &parts), []);
        assert!(!peer.conn.is_open());
        assert_eq!(peer.sent(), server_close(1008, "rate limit exceeded"));
    }
    // A single message over the burst never passes.
    let mut big = Peer::open(limited);
    assert_eq!(big.feed(60_000, &client_frame(0x82, &[1; 1001])), []);
    assert_eq!(big.sent(), server_close(1008, "rate limit exceeded"));
}

#[test]
fn a_delayed_upgrade_keeps_its_limiter_until_activated() {
    use crate::proto::rate::{Limits, Rate};
    let s = Settings {
        rate_limits: Limits {
            messages: Rate::new(1, 1),
            bytes: None,
        },
        ..settings()
    };
    let mut peer = Peer::new(s.clone());
    let mut input = upgrade_request("/chat");
    let len = input.len();
    let now = peer.at(0);
    let (used, event) =
        peer.conn
            .handle_input(&s, now, &mut peer.codec, &mut input, &mut peer.scratch);
    assert_eq!(used, len);
    let Some(Event::Upgrade(req)) = event else {
        panic!("no upgrade");
    };
    peer.conn.accept(&s, now, &req, None, true).unwrap();
    peer.conn.activate().unwrap();
    assert_eq!(peer.conn.take_activation(now), Some(Vec::new()));
    peer.flush(0);
    peer.sent();
    let two: Vec<u8> = (0..2).flat_map(|_| client_frame(0x81, b"x")).collect();
    assert_eq!(peer.feed(0, &two), [Seen::Text("x".into())]);
    assert_eq!(peer.sent(), server_close(1008, "rate limit exceeded"));
}

#[test]
fn upgrade_paths_are_the_ws_path_and_below_it() {
    use super::is_upgrade_path;
    assert!(is_upgrade_path("/chat", "/chat"));
    assert!(is_upgrade_path("/chat/kitchen", "/chat"));
    assert!(is_upgrade_path("/chat/", "/chat"));
    assert!(!is_upgrade_path("/chatty", "/chat"));
    assert!(!is_upgrade_path("/", "/chat"));
    assert!(is_upgrade_path("/", "/"));
    assert!(!is_upgrade_path("/x", "/"));
}

/// permessage-deflate: negotiated in the `101`, inflated on the way in,
/// compressed on the way out; the failures close with the right code.
#[cfg(feature = "deflate")]
mod deflate {
    use super::*;

    const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

    fn offering(extra: &str) -> Vec<u8> {
        let mut req = upgrade_request("/chat");
        req.truncate(req.len() - 2);
        req.extend_from_slice(extra.as_bytes());
        req.extend_from_slice(b"\r\n");
        req
    }

    fn deflating(max_message: u64) -> Peer {
        let mut peer = Peer::new(Settings {
            deflate: true,
            max_message,
            ..settings()
        });
        peer.feed(0, &offering(OFFER));
        let reply = String::from_utf8(peer.sent()).unwrap();
        assert!(
            reply.contains("\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n"),
            "{reply}"
        );
        peer
    }

    fn compressed(payload: &[u8]) -> Vec<u8> {
        Codec::default().compress(15, payload).unwrap().to_vec()
    }

    /// The frames of a server's output: (first byte, payload).
    fn frames(mut wire: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some((_, header, len)) = crate::proto::frame::split_server_frame(wire) {
            out.push((wire[0], wire[header..header + len].to_vec()));
            wire = &wire[header + len..];
        }
        out
    }

    #[test]
    fn offers_are_ignored_unless_enabled() {
        let mut peer = Peer::new(settings());
        peer.feed(0, &offering(OFFER));
        let reply = String::from_utf8(peer.sent()).unwrap();
        assert!(reply.starts_with("HTTP/1.1 101 ") && !reply.contains("Extensions"));
        // And RSV1 stays a protocol error.
        let z = compressed(&[b'a'; 100]);
        assert_eq!(
            peer.feed(1, &client_frame(0xC1, &z)),
            [Seen::Closed(1002, String::new())]
        );
    }

    #[test]
    fn compressed_messages_come_in_inflated_whole_or_fragmented() {
        let mut peer = deflating(1 << 20);
        let text = "a chat line, a chat line, a chat line, a chat line, again".repeat(4);
        let z = compressed(text.as_bytes());
        assert_eq!(
            peer.feed(1, &client_frame(0xC1, &z)),
            [Seen::Text(text.clone())]
        );
        let (a, b) = z.split_at(z.len() / 2);
        let mut fragmented = client_frame(0x41, a);
        fragmented.extend(client_frame(0x80, b));
        for piece in fragmented.chunks(3) {
            let seen = peer.feed(2, piece);
            assert!(
                seen.is_empty() || seen == [Seen::Text(text.clone())],
                "{seen:?}"
            );
        }
        let binary = vec![7u8; 5000];
        assert_eq!(
            peer.feed(3, &client_frame(0xC2, &compressed(&binary))),
            [Seen::Binary(binary)]
        );
        // A plain message is still a message.
        assert_eq!(
            peer.feed(4, &client_frame(0x81, b"hi")),
            [Seen::Text("hi".into())]
        );
    }

    #[test]
    fn a_bomb_closes_1009_while_inflating() {
        let mut peer = deflating(64 * 1024);
        let z = compressed(&vec![0u8; 16 << 20]);
        assert!(
            z.len() < 64 * 1024,
            "the wire size alone is under the limit"
        );
        assert_eq!(
            peer.feed(1, &client_frame(0xC2, &z)),
            [Seen::Closed(1009, String::new())]
        );
        assert!(
            peer.scratch.capacity() <= 64 * 1024 + 1,
            "{}",
            peer.scratch.capacity()
        );
        assert_eq!(frames(&peer.sent()), [(0x88, vec![0x03, 0xF1])]);
    }

    #[test]
    fn inflated_bytes_count_against_the_byte_rate_and_are_not_inflated_past_it() {
        use crate::proto::rate::{Limits, Rate};
        // The report: 1,034-byte frames that each inflate to about 1 MiB.
        let mut peer = Peer::new(Settings {
            deflate: true,
            max_message: 1 << 20,
            rate_limits: Limits {
                messages: None,
                bytes: Rate::new(64 * 1024, 64 * 1024),
            },
            ..settings()
        });
        peer.feed(0, &offering(OFFER));
        peer.sent();
        let small = vec![b'a'; 60 * 1024];
        assert_eq!(
            peer.feed(1, &client_frame(0xC2, &compressed(&small))),
            [Seen::Binary(small)]
        );
        let bomb = compressed(&vec![0u8; (1 << 20) - 16]);
        assert!(bomb.len() < 2048, "{}", bomb.len());
        assert_eq!(peer.feed(2, &client_frame(0xC2, &bomb)), []);
        assert!(!peer.conn.is_open());
        assert!(
            peer.scratch.capacity() <= 64 * 1024 + 1,
            "inflated no further than the allowance: {}",
            peer.scratch.capacity()
        );
        assert_eq!(
            frames(&peer.sent()),
            [(0x88, close_payload(1008, "rate limit exceeded"))]
        );
        // Past max_message it is still 1009, limit or no limit.
        let mut peer = Peer::new(Settings {
            deflate: true,
            max_message: 1000,
            rate_limits: Limits {
                messages: None,
                bytes: Rate::new(1 << 20, 1 << 20),
            },
            ..settings()
        });
        peer.feed(0, &offering(OFFER));
        peer.sent();
        assert_eq!(
            peer.feed(1, &client_frame(0xC2, &compressed(&[0; 2000]))),
            [Seen::Closed(1009, String::new())]
        );
    }

    #[test]
    fn bad_compressed_data_and_bad_utf8_close_1007() {
        let mut peer = deflating(1 << 20);
        assert_eq!(
            peer.feed(1, &client_frame(0xC1, &[0xff; 40])),
            [Seen::Closed(1007, String::new())]
        );
        let mut peer = deflating(1 << 20);
        let z = compressed(&[0xff; 200]);
        assert_eq!(
            peer.feed(1, &client_frame(0xC1, &z)),
            [Seen::Closed(1007, String::new())]
        );
    }

    #[test]
    fn messages_go_out_compressed_when_it_pays() {
        let mut peer = deflating(1 << 20);
        let line = "{\"user\":\"ada\",\"text\":\"hello hello hello hello hello\"}".repeat(3);
        let now = peer.at(1);
        peer.conn
            .send(&peer.s, now, &mut peer.codec, Message::Text(&line))
            .unwrap();
        peer.conn
            .send(&peer.s, now, &mut peer.codec, Message::Text("short"))
            .unwrap();
        let shared = SharedFrame::new(Message::Binary(&[9u8; 300]));
        peer.conn
            .send_shared(&peer.s, now, &mut peer.codec, &shared)
            .unwrap();
        peer.flush(1);
        let sent = frames(&peer.sent());
        assert_eq!(sent.len(), 3);
        let mut codec = Codec::default();
        let mut out = Vec::new();
        assert_eq!(sent[0].0, 0xC1, "RSV1 on a compressed text");
        codec.inflate(&sent[0].1, &mut out, 1 << 20).unwrap();
        assert_eq!(out, line.as_bytes());
        assert_eq!(sent[1], (0x81, b"short".to_vec()), "too short to compress");
        assert_eq!(sent[2].0, 0xC2);
        out.clear();
        codec.inflate(&sent[2].1, &mut out, 1 << 20).unwrap();
        assert_eq!(out, [9u8; 300]);
    }

    #[test]
    fn a_smaller_server_window_is_confirmed_and_used() {
        let mut peer = Peer::new(Settings {
            deflate: true,
            ..settings()
        });
        peer.feed(
            0,
            &offering(
                "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n",
            ),
        );
        let reply = String::from_utf8(peer.sent()).unwrap();
        assert!(reply.contains("; server_max_window_bits=10\r\n"), "{reply}");
        assert!(!peer.conn.takes_shared_deflate(), "shared frames go plain");
        // A 2,000-byte text twice: a 15-bit window would refer back 2,000
        // bytes, past what a client's 10-bit window keeps.
        let mut x = 1u32;
        let half: String = (0..2000)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                char::from(b'a' + (x >> 16) as u8 % 26)
            })
            .collect();
        let text = half.repeat(2);
        let now = peer.at(1);
        peer.conn
            .send(&peer.s, now, &mut peer.codec, Message::Text(&text))
            .unwrap();
        peer.flush(1);
        let sent = frames(&peer.sent());
        assert_eq!(sent[0].0, 0xC1);
        let mut small = flate2::Decompress::new_with_window_bits(false, 10);
        let mut input = sent[0].1.clone();
        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let mut out = Vec::with_capacity(2 * text.len());
        small
            .decompress_vec(&input, &mut out, flate2::FlushDecompress::Sync)
            .unwrap();
        assert_eq!(out, text.as_bytes());
        assert!(
            sent[0].1.len() < text.len() * 3 / 4,
            "compressed all the same"
        );
    }
}

/// Echo through a socket that takes a little at a time and often nothing,
/// driven as the server drives a connection (read while it wants input,
/// small replies queued and large ones written straight through, output
/// written when settled and when the socket turns writable): whatever the
/// pieces, the peer gets every reply, whole and in order.
#[test]
fn echoes_through_a_throttled_socket_arrive_whole_and_in_order() {
    /// Replies to `data` as the server's `Core::send` does.
    fn echo(peer: &mut Peer, sink: &mut Throttled, data: &[u8]) {
        let now = peer.at(1);
        let msg = Message::Binary(data);
        if data.len() >= 16 * 1024 {
            send_through(&mut peer.conn, &peer.s, now, &mut peer.codec, sink, msg)
        } else {
            peer.conn.send(&peer.s, now, &mut peer.codec, msg)
        }
        .unwrap();
    }
    // xorshift: the same pieces on every run.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move |below: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % below as u64) as usize
    };
    // Under Miri (which took 144 s for one round of 24 replies of these
    // sizes), one round of a dozen smaller ones, still on both sides of the
    // 16 KiB line: enough to reach every path.
    let (rounds, replies, sizes): (_, _, &[usize]) = if cfg!(miri) {
        (1, 12, &[4, 100, 3000, 17 * 1024])
    } else {
        (20, 200, &[4, 100, 8 * 1024, 8 * 1024, 20 * 1024, 70_000])
    };
    for round in 0..rounds {
        let s = Settings {
            max_message: 1 << 20,
            max_backlog: 1 << 30,
            ..settings()
        };
        let mut peer = Peer::open(s);
        let mut wire = Vec::new();
        let mut want = Vec::new();
        for i in 0u32..replies {
            let len = sizes[next(sizes.len())];
            let mut payload = vec![(i % 251) as u8; len];
            payload[..4].copy_from_slice(&i.to_be_bytes());
            wire.extend_from_slice(&client_frame(0x82, &payload));
            want.extend_from_slice(&server_frame(OpCode::Binary, &payload));
        }
        let mut sink = Throttled::new(0);
        let mut fed = 0;
        let mut checked = 0;
        for pass in 0.. {
            assert!(pass < 100_000, "round {round}: stuck");
            // A read, if the connection takes input.
            if fed < wire.len() && peer.conn.wants_read(&peer.s) {
                let n = (next(64 * 1024) + 1).min(wire.len() - fed);
                let mut input = wire[fed..fed + n].to_vec();
                fed += n;
                let mut off = 0;
                while off < input.len() {
                    let now = peer.at(1);
                    if let Some((used, message)) =
                        peer.conn.read_message(&peer.s, now, &mut input[off..])
                    {
                        off += used;
                        let data = message.as_bytes().to_vec();
                        echo(&mut peer, &mut sink, &data);
                        continue;
                    }
                    let (used, event) = peer.conn.handle_input(
                        &peer.s,
                        now,
                        &mut peer.codec,
                        &mut input[off..],
                        &mut peer.scratch,
                    );
                    off += used;
                    match event {
                        None => assert!(used > 0),
                        Some(Event::Binary(b)) => {
                            let data = b.to_vec();
                            echo(&mut peer, &mut sink, &data);
                        }
                        Some(other) => panic!("round {round}: {other:?}"),
                    }
                }
                // Settled: what is queued goes out unless the socket is full.
                if peer.conn.has_output() && !peer.conn.wants_write() {
                    let now = peer.at(1);
                    sink.flush(&mut peer.conn, &peer.s, now, &[]);
                }
            }
            // The peer reads some; the socket turns writable.
            if next(3) == 0 {
                sink.room += next(40 * 1024);
                if peer.conn.wants_write() {
                    let now = peer.at(1);
                    sink.writable(&mut peer.conn, &peer.s, now);
                }
            }
            assert!(peer.conn.is_open(), "round {round}");
            let got = &sink.got[checked..];
            if let Some(at) = got.iter().zip(&want[checked..]).position(|(a, b)| a != b) {
                panic!("round {round}: the output differs at byte {}", checked + at);
            }
            assert!(
                sink.got.len() <= want.len(),
                "round {round}: more than sent"
            );
            checked = sink.got.len();
            if checked == want.len() {
                break;
            }
        }
        assert_eq!(fed, wire.len());
        assert_eq!(peer.conn.backlog(), 0);
    }
}
