//! The library API with an in-process server: upgrade decisions,
//! subprotocols, delayed activation, graceful close versus kill, timers,
//! stale ids, and `on_close` codes.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use rookery::proto::handshake::offered_protocols;
use rookery::proto::http::Request;
use rookery::{CloseCode, Config, ConnId, Context, Handler, Message, SendError, Upgrade};
use tungstenite::Message as WsMessage;

type Log = Arc<Mutex<Vec<String>>>;

/// A message large enough to be handed to the socket as it is sent.
static LARGE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| "L".repeat(20_000));

fn config() -> Config {
    Config {
        ping_interval: Duration::ZERO,
        close_timeout: Duration::from_millis(500),
        ..Config::default()
    }
}

/// A handler whose behaviour is chosen by the text it receives.
struct Scripted {
    log: Log,
    delayed: bool,
}

impl Scripted {
    fn record(&self, entry: String) {
        self.log.lock().unwrap().push(entry);
    }
}

impl Handler for Scripted {
    fn on_upgrade(&mut self, ctx: &mut Context<'_>, conn: ConnId, req: &Request) -> Upgrade {
        if req.target().contains("reject") {
            return Upgrade::reject(403);
        }
        let upgrade = match offered_protocols(req).find(|p| *p == "v2.rookery") {
            Some(p) => Upgrade::with_protocol(p),
            None => Upgrade::accept(),
        };
        if self.delayed {
            // Activate later from a timer: nothing may be read before.
            ctx.set_timer(Duration::from_millis(300), conn.as_u64());
            return upgrade.delayed();
        }
        upgrade
    }

    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        self.record("open".into());
        ctx.send_text(conn, "opened").unwrap();
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: Message<'_>) {
        let Message::Text(text) = msg else {
            return;
        };
        self.record(format!("message {text}"));
        match text {
            "close me" => ctx.close(conn, CloseCode::new(4000), "as asked").unwrap(),
            "kill me" => {
                ctx.kill(conn).unwrap();
                // The id is stale at once.
                assert_eq!(ctx.send_text(conn, "x"), Err(SendError::NotOpen));
                assert_eq!(ctx.kill(conn), Err(SendError::NotOpen));
            }
            "bad code" => {
                assert_eq!(
                    ctx.close(conn, CloseCode::NO_STATUS, ""),
                    Err(SendError::InvalidCloseCode)
                );
                ctx.send_text(conn, "refused").unwrap();
            }
            "mix" => {
                ctx.broadcast(Message::Text("b1"));
                ctx.send_text(conn, "direct").unwrap();
                ctx.broadcast(Message::Text("b2"));
                ctx.broadcast(Message::Text("b3"));
                ctx.close(conn, CloseCode::NORMAL, "").unwrap();
                ctx.broadcast(Message::Text("after"));
            }
            "backlog" => {
                ctx.send_text(conn, "reply").unwrap();
                let backlog = ctx.backlog(conn).unwrap();
                self.record(format!("backlog {backlog}"));
            }
            "large" => {
                ctx.send_text(conn, &LARGE).unwrap();
                let backlog = ctx.backlog(conn).unwrap();
                self.record(format!("backlog {backlog}"));
            }
            "small, then large" => {
                ctx.send_text(conn, "small").unwrap();
                ctx.send_text(conn, &LARGE).unwrap();
            }
            "timer" => {
                let cancelled = ctx.set_timer(Duration::from_millis(50), 1);
                assert!(ctx.cancel_timer(cancelled));
                assert!(!ctx.cancel_timer(cancelled));
                ctx.set_timer(Duration::from_millis(100), conn.as_u64());
            }
            _ => {
                ctx.send_text(conn, text).unwrap();
            }
        }
    }

    fn on_close(&mut self, ctx: &mut Context<'_>, conn: ConnId, code: CloseCode, reason: &str) {
        self.record(format!("close {} {reason}", code.get()));
        assert!(!ctx.is_open(conn));
        assert_eq!(ctx.send_text(conn, "late"), Err(SendError::NotOpen));
    }

    fn on_timer(&mut self, ctx: &mut Context<'_>, token: u64) {
        let conn = ConnId::from_u64(token);
        if self.delayed && ctx.activate(conn).is_ok() {
            self.record("activated".into());
            assert_eq!(ctx.activate(conn), Err(SendError::NotPending));
            return;
        }
        self.record("timer".into());
        let _ = ctx.send_text(conn, "tick");
    }
}

fn start(delayed: bool) -> (InProcess, Log) {
    start_with(config(), delayed)
}

fn start_with(config: Config, delayed: bool) -> (InProcess, Log) {
    let log: Log = Arc::default();
    let server = InProcess::start(
        config,
        Scripted {
            log: log.clone(),
            delayed,
        },
    );
    (server, log)
}

/// A raw client upgraded on `server`, past the handler's "opened".
fn opened(server: &InProcess) -> std::net::TcpStream {
    let (mut raw, head) = raw_upgrade(server.addr, "/chat", "");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(read_frame(&mut raw).unwrap().1, b"opened");
    raw
}

fn logged(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

#[test]
fn graceful_close_waits_for_the_peer_and_reports_its_code() {
    let (server, log) = start(false);
    let mut ws = connect(&server.url("/chat"));
    assert_eq!(next_data(&mut ws), WsMessage::text("opened"));
    ws.send(WsMessage::text("close me")).unwrap();
    assert_eq!(expect_close(&mut ws), Some(4000));
    assert!(eventually(Duration::from_secs(5), || logged(&log)
        .iter()
        .any(|e| e.starts_with("close"))));
    // The peer answered: the handshake completed with the code we started it with.
    assert!(
        logged(&log).contains(&"close 4000 ".to_string()),
        "{:?}",
        logged(&log)
    );
}

#[test]
fn kill_drops_at_once_and_reports_1006() {
    let (server, log) = start(false);
    let mut ws = connect(&server.url("/chat"));
    assert_eq!(next_data(&mut ws), WsMessage::text("opened"));
    ws.send(WsMessage::text("kill me")).unwrap();
    match ws.read() {
        Err(tungstenite::Error::Protocol(_)) | Err(tungstenite::Error::Io(_)) => {}
        other => panic!("expected a dropped connection, got {other:?}"),
    }
    assert!(eventually(Duration::from_secs(5), || logged(&log)
        .contains(&"close 1006 ".to_string())));
}

#[test]
fn invalid_close_code_is_refused_and_connection_stays_open() {
    let (server, _log) = start(false);
    let mut ws = connect(&server.url("/chat"));
    assert_eq!(next_data(&mut ws), WsMessage::text("opened"));
    ws.send(WsMessage::text("bad code")).unwrap();
    assert_eq!(next_data(&mut ws), WsMessage::text("refused"));
}

#[test]
fn peer_close_reports_the_peers_code_and_reason() {
    let (server, log) = start(false);
    let mut ws = connect(&server.url("/chat"));
    assert_eq!(next_data(&mut ws), WsMessage::text("opened"));
    ws.close(Some(tungstenite::protocol::CloseFrame {
        code: 3001.into(),
        reason: "done here".into(),
    }))
    .unwrap();
    assert_eq!(expect_close(&mut ws), Some(3001));
    assert!(eventually(Duration::from_secs(5), || logged(&log)
        .contains(&"close 3001 done here".to_string())));
}

#[test]
fn timers_fire_and_cancelled_ones_do_not() {
    let log: Log = Arc::default();
    let handler = Scripted {
        log: log.clone(),
        delayed: false,
    };
    let server = Virtual::start(config(), handler);
    let mut ws = connect(&server.url("/chat"));
    assert_eq!(next_data(&mut ws), WsMessage::text("opened"));
    ws.send(WsMessage::text("timer")).unwrap();
    server.settle();
    // The cancelled timer (50 ms) is past; the other (100 ms) not yet.
    server.advance(Duration::from_millis(80));
    assert!(
        logged(&log).iter().all(|e| e != "timer"),
        "{:?}",
        logged(&log)
    );
    server.advance(Duration::from_millis(40));
    assert_eq!(next_data(&mut ws), WsMessage::text("tick"));
    server.advance(Duration::from_secs(10));
    assert_eq!(logged(&log).iter().filter(|e| *e == "timer").count(), 1);
}

#[test]
fn handler_chooses_a_subprotocol_among_the_offers() {
    let (server, _log) = start(false);
    let (_, head) = raw_upgrade(
        server.addr,
        "/chat",
        "Sec-WebSocket-Protocol: v1.rookery, v2.rookery\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 101"));
    assert!(
        head.contains("Sec-WebSocket-Protocol: v2.rookery\r\n"),
        "{head}"
    );
    let (_, head) = raw_upgrade(
        server.addr,
        "/chat",
        "Sec-WebSocket-Protocol: v1.rookery\r\n",
    );
    assert!(!head.contains("Sec-WebSocket-Protocol"), "{head}");
}

#[test]
fn handler_can_reject_an_upgrade() {
    let (server, log) = start(false);
    assert_eq!(
        http_status(server.addr, &upgrade_request("/chat?reject", "")),
        403
    );
    assert!(logged(&log).is_empty());
}

#[test]
fn delayed_activation_reads_nothing_until_activated() {
    let (server, log) = start(true);
    // The first message rides with the request, before activation.
    let mut raw = std::net::TcpStream::connect(server.addr).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut bytes = upgrade_request("/chat", "").into_bytes();
    bytes.extend(client_frame(0x81, b"early"));
    raw.write_all(&bytes).unwrap();
    let head = read_head(&mut raw);
    assert!(head.starts_with("HTTP/1.1 101"));
    raw.write_all(&client_frame(0x81, b"later")).unwrap();
    assert_eq!(read_frame(&mut raw).unwrap().1, b"opened");
    assert_eq!(read_frame(&mut raw).unwrap().1, b"early");
    assert_eq!(read_frame(&mut raw).unwrap().1, b"later");
    assert_eq!(
        logged(&log),
        ["activated", "open", "message early", "message later"],
        "nothing was delivered before activation"
    );
}

#[test]
fn stop_handle_shuts_down_gracefully_with_1001() {
    let (server, log) = start(false);
    let mut ws = connect(&server.url("/chat"));
    assert_eq!(next_data(&mut ws), WsMessage::text("opened"));
    let addr = server.addr;
    let stopper = std::thread::spawn(move || server.stop());
    assert_eq!(expect_close(&mut ws), Some(1001));
    stopper.join().unwrap();
    assert!(std::net::TcpStream::connect(addr).is_err());
    assert!(
        logged(&log).contains(&"close 1001 ".to_string()),
        "{:?}",
        logged(&log)
    );
}

#[test]
fn broadcasts_keep_their_order_with_direct_sends_and_closes() {
    let (server, _log) = start(false);
    let mut a = connect(&server.url("/chat"));
    let mut b = connect(&server.url("/chat"));
    assert_eq!(next_data(&mut a), WsMessage::text("opened"));
    assert_eq!(next_data(&mut b), WsMessage::text("opened"));
    a.send(WsMessage::text("mix")).unwrap();
    for want in ["b1", "direct", "b2", "b3"] {
        assert_eq!(next_data(&mut a), WsMessage::text(want));
    }
    // `a` left the open set before "after" was broadcast.
    assert_eq!(expect_close(&mut a), Some(1000));
    for want in ["b1", "b2", "b3", "after"] {
        assert_eq!(next_data(&mut b), WsMessage::text(want));
    }
}

/// The reply to a read of one message is written before the handler
/// returns (nothing stays queued for it); the replies to a read of two
/// messages are queued, to go out together.
#[test]
fn the_reply_to_a_read_of_one_message_goes_out_at_once() {
    let config = Config {
        // The ring queues a small reply.
        io: rookery::Io::Epoll,
        ..config()
    };
    let (server, log) = start_with(config, false);
    let mut raw = opened(&server);
    raw.write_all(&client_frame(0x81, b"backlog")).unwrap();
    assert_eq!(read_frame(&mut raw).unwrap().1, b"reply");
    // Two messages in one write, read at once: both replies wait in the
    // queue (2 + 5 bytes each).
    let mut two = client_frame(0x81, b"backlog");
    two.extend(client_frame(0x81, b"backlog"));
    raw.write_all(&two).unwrap();
    assert_eq!(read_frame(&mut raw).unwrap().1, b"reply");
    assert_eq!(read_frame(&mut raw).unwrap().1, b"reply");
    let backlogs: Vec<String> = logged(&log)
        .into_iter()
        .filter(|e| e.starts_with("backlog"))
        .collect();
    assert_eq!(backlogs, ["backlog 0", "backlog 7", "backlog 14"]);
}

/// On the ring, a large message of a connection with nothing queued and no
/// send in flight is written by the send itself, as on epoll, instead of
/// being copied into the queue for the pass's send; behind a small one
/// still queued, it waits its turn.
#[test]
fn on_the_ring_a_large_message_is_written_at_once_and_in_order() {
    let config = Config {
        io: rookery::Io::Uring,
        ..config()
    };
    if let Err(e) = rookery::Server::bind("127.0.0.1:0", config.clone(), rookery::echo::Echo) {
        println!("SKIPPED: io_uring not found ({e})");
        return;
    }
    let (server, log) = start_with(config, false);
    let mut raw = opened(&server);
    raw.write_all(&client_frame(0x81, b"large")).unwrap();
    assert_eq!(read_frame(&mut raw).unwrap().1, LARGE.as_bytes());
    // The handler logs the backlog after the send, which may be after
    // the bytes reached this client.
    let backlog = || -> Vec<usize> {
        logged(&log)
            .iter()
            .filter_map(|e| e.strip_prefix("backlog ")?.parse().ok())
            .collect()
    };
    assert!(eventually(Duration::from_secs(5), || !backlog().is_empty()));
    let backlog = backlog();
    // The socket took it (some of it at least) before the handler went on.
    assert_eq!(backlog.len(), 1);
    assert!(backlog[0] < LARGE.len(), "{backlog:?}");
    raw.write_all(&client_frame(0x81, b"small, then large"))
        .unwrap();
    assert_eq!(read_frame(&mut raw).unwrap().1, b"small");
    assert_eq!(read_frame(&mut raw).unwrap().1, LARGE.as_bytes());
}
