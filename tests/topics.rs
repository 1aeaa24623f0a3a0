//! Library topics with an in-process server and tungstenite clients:
//! subscribe, unsubscribe, publish counts, a closed connection leaving its
//! topics, and the order of publications, broadcasts and direct sends.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;
use rookery::{Config, ConnId, Context, Handler, Message, SendError};
use tungstenite::Message as WsMessage;

fn config() -> Config {
    Config {
        ping_interval: Duration::ZERO,
        close_timeout: Duration::from_millis(500),
        ..Config::default()
    }
}

/// Acts on commands: `sub T`, `unsub T`, `pub T TEXT` (answers the count),
/// `say T TEXT` (publishes, answers nothing),
/// `mix` (publications to two topics, broadcasts and direct sends in one
/// callback), `flip` (joins and leaves `z` between publications to it in
/// one callback), `burst T N` (N publications), `count T`.
struct Topical;

impl Handler for Topical {
    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        ctx.send_text(conn, "hi").unwrap();
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: Message<'_>) {
        let Message::Text(text) = msg else {
            return;
        };
        let mut words = text.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("sub"), Some(t), None) => {
                let fresh = ctx.subscribe(conn, t).unwrap();
                ctx.send_text(conn, &format!("sub {t} {fresh}")).unwrap();
            }
            (Some("unsub"), Some(t), None) => {
                let was = ctx.unsubscribe(conn, t).unwrap();
                ctx.send_text(conn, &format!("unsub {t} {was}")).unwrap();
            }
            (Some("pub"), Some(t), Some(body)) => {
                let n = ctx.publish(t, Message::Text(body));
                ctx.send_text(conn, &format!("published to {n}")).unwrap();
            }
            (Some("say"), Some(t), Some(body)) => {
                ctx.publish(t, Message::Text(body));
            }
            (Some("count"), Some(t), None) => {
                let n = ctx.subscribers(t);
                let topics = ctx.topic_count();
                ctx.send_text(conn, &format!("{n} of {topics}")).unwrap();
            }
            (Some("burst"), Some(t), Some(n)) => {
                for i in 0..n.parse::<u32>().unwrap() {
                    ctx.publish(t, Message::Text(&format!("{t}{i}")));
                }
            }
            (Some("mix"), None, None) => {
                ctx.publish("x", Message::Text("x1"));
                ctx.publish("x", Message::Text("x2"));
                ctx.send_text(conn, "d1").unwrap();
                ctx.publish("y", Message::Text("y1"));
                ctx.broadcast(Message::Text("b1"));
                ctx.publish("x", Message::Text("x3"));
                ctx.publish("y", Message::Text("y2"));
                ctx.send_text(conn, "d2").unwrap();
                ctx.publish("x", Message::Binary(b"x4"));
            }
            (Some("flood"), Some(t), Some(n)) => {
                // N publications of 1,000 bytes, then what waits for the
                // sender (a member) once they are all made.
                let body = "f".repeat(1000);
                for _ in 0..n.parse::<u32>().unwrap() {
                    ctx.publish(t, Message::Text(&body));
                }
                let queued = ctx.backlog(conn).unwrap();
                ctx.send_text(conn, &format!("queued {queued}")).unwrap();
            }
            (Some("flip"), None, None) => {
                // Joins and leaves topic `z` between publications in one
                // callback, with direct sends between them.
                ctx.publish("z", Message::Text("z1"));
                ctx.subscribe(conn, "z").unwrap();
                ctx.send_text(conn, "d1").unwrap();
                ctx.publish("z", Message::Text("z2"));
                ctx.send_text(conn, "d2").unwrap();
                ctx.broadcast(Message::Text("b1"));
                ctx.publish("z", Message::Text("z3"));
                ctx.unsubscribe(conn, "z").unwrap();
                ctx.publish("z", Message::Text("z4"));
                ctx.send_text(conn, "d3").unwrap();
            }
            (Some("stale"), None, None) => {
                let none = ConnId::from_u64(0);
                assert_eq!(ctx.subscribe(none, "x"), Err(SendError::NotOpen));
                assert_eq!(ctx.unsubscribe(none, "x"), Err(SendError::NotOpen));
                ctx.send_text(conn, "refused").unwrap();
            }
            _ => ctx.send_text(conn, "?").unwrap(),
        }
    }
}

fn text(ws: &mut Ws) -> String {
    match next_data(ws) {
        WsMessage::Text(t) => t.to_string(),
        WsMessage::Binary(b) => format!("bin:{}", String::from_utf8_lossy(&b)),
        other => panic!("unexpected {other:?}"),
    }
}

fn ask(ws: &mut Ws, cmd: &str) -> String {
    ws.send(WsMessage::text(cmd)).unwrap();
    text(ws)
}

fn client(server: &InProcess) -> Ws {
    let mut ws = connect(&server.url("/chat"));
    assert_eq!(text(&mut ws), "hi");
    ws
}

#[test]
fn publish_reaches_members_only_and_counts_them() {
    let server = InProcess::start(config(), Topical);
    let mut a = client(&server);
    let mut b = client(&server);
    let mut c = client(&server);
    assert_eq!(ask(&mut a, "sub news"), "sub news true");
    assert_eq!(ask(&mut a, "sub news"), "sub news false");
    assert_eq!(ask(&mut b, "sub news"), "sub news true");
    assert_eq!(ask(&mut c, "sub other"), "sub other true");
    assert_eq!(ask(&mut c, "count news"), "2 of 2");
    // c is not a member: it gets only its own answer.
    assert_eq!(ask(&mut c, "pub news hello"), "published to 2");
    assert_eq!(text(&mut a), "hello");
    assert_eq!(text(&mut b), "hello");
    assert_eq!(ask(&mut c, "pub nobody x"), "published to 0");
    assert_eq!(ask(&mut c, "stale"), "refused");
    // The publisher itself, a member: the publication comes first.
    a.send(WsMessage::text("pub news again")).unwrap();
    assert_eq!(text(&mut a), "again");
    assert_eq!(text(&mut a), "published to 2");
    assert_eq!(text(&mut b), "again");
    assert_eq!(ask(&mut b, "unsub news"), "unsub news true");
    assert_eq!(ask(&mut b, "unsub news"), "unsub news false");
    assert_eq!(ask(&mut c, "pub news third"), "published to 1");
    assert_eq!(text(&mut a), "third");
    // b got nothing more: its next message is the answer to its question.
    assert_eq!(ask(&mut b, "count news"), "1 of 2");
    server.stop();
}

#[test]
fn a_closed_connection_leaves_all_its_topics() {
    let server = InProcess::start(config(), Topical);
    let mut a = client(&server);
    let mut b = client(&server);
    for t in ["t1", "t2", "t3"] {
        assert_eq!(ask(&mut a, &format!("sub {t}")), format!("sub {t} true"));
    }
    assert_eq!(ask(&mut b, "sub t2"), "sub t2 true");
    assert_eq!(ask(&mut b, "count t2"), "2 of 3");
    a.close(None).unwrap();
    let _ = expect_close(&mut a);
    assert!(eventually(Duration::from_secs(5), || ask(
        &mut b, "count t2"
    ) == "1 of 1"));
    assert_eq!(ask(&mut b, "pub t1 x"), "published to 0");
    // A killed one too (no closing handshake).
    let mut d = client(&server);
    assert_eq!(ask(&mut d, "sub t2"), "sub t2 true");
    drop(d);
    assert!(eventually(Duration::from_secs(5), || ask(
        &mut b, "count t2"
    ) == "1 of 1"));
    server.stop();
}

#[test]
fn publications_broadcasts_and_direct_sends_keep_their_order() {
    let server = InProcess::start(config(), Topical);
    let mut both = client(&server);
    let mut x_only = client(&server);
    let mut none = client(&server);
    ask(&mut both, "sub x");
    ask(&mut both, "sub y");
    ask(&mut x_only, "sub x");
    both.send(WsMessage::text("mix")).unwrap();
    let got: Vec<String> = (0..9).map(|_| text(&mut both)).collect();
    assert_eq!(
        got,
        ["x1", "x2", "d1", "y1", "b1", "x3", "y2", "d2", "bin:x4"]
    );
    let got: Vec<String> = (0..5).map(|_| text(&mut x_only)).collect();
    assert_eq!(got, ["x1", "x2", "b1", "x3", "bin:x4"]);
    assert_eq!(text(&mut none), "b1");
    // Pipelined commands in one read, from a member: each answer after the
    // publications before it.
    let mut raw = Vec::new();
    for cmd in ["pub x p1", "pub y p2", "pub x p3"] {
        raw.push(WsMessage::text(cmd));
    }
    for m in raw {
        x_only.write(m).unwrap();
    }
    x_only.flush().unwrap();
    let got: Vec<String> = (0..5).map(|_| text(&mut x_only)).collect();
    assert_eq!(
        got,
        [
            "p1",
            "published to 2",
            "published to 1",
            "p3",
            "published to 2"
        ]
    );
    let got: Vec<String> = (0..3).map(|_| text(&mut both)).collect();
    assert_eq!(got, ["p1", "p2", "p3"]);
    server.stop();
}

#[test]
fn a_member_that_joins_and_leaves_in_one_pass_gets_what_was_sent_meanwhile() {
    let server = InProcess::start(config(), Topical);
    let mut flipper = client(&server);
    let mut member = client(&server);
    ask(&mut member, "sub z");
    flipper.send(WsMessage::text("flip")).unwrap();
    // z2 and z3 only (made while it was a member), in order with its own
    // direct sends and the broadcast.
    let got: Vec<String> = (0..6).map(|_| text(&mut flipper)).collect();
    assert_eq!(got, ["d1", "z2", "d2", "b1", "z3", "d3"]);
    let got: Vec<String> = (0..5).map(|_| text(&mut member)).collect();
    assert_eq!(got, ["z1", "z2", "b1", "z3", "z4"]);
    // Nothing more for the one that left: its next message is an answer.
    assert_eq!(ask(&mut flipper, "count z"), "1 of 1");
    server.stop();
}

#[test]
fn a_member_that_keeps_up_holds_little_of_a_burst() {
    let server = InProcess::start(config(), Topical);
    let mut ws = client(&server);
    ask(&mut ws, "sub big");
    // 2 MB published in one callback: written as the member's queue
    // grows, not held whole until the callback returns.
    ws.send(WsMessage::text("flood big 2000")).unwrap();
    let mut reply = String::new();
    for _ in 0..2001 {
        reply = text(&mut ws);
    }
    let queued: usize = reply.strip_prefix("queued ").unwrap().parse().unwrap();
    // On the io_uring driver sends are submitted when the pass ends, not
    // within a callback: there the member holds the burst until then
    // (under the backlog cap), and only its arrival is checked.
    let on_ring =
        cfg!(feature = "uring") && std::env::var("ROOKERY_IO").map_or(true, |v| v != "epoll");
    if !on_ring {
        assert!(queued < 2_000_000 / 2, "{queued} bytes held");
    }
    server.stop();
}

#[test]
fn a_burst_to_one_topic_arrives_whole_and_in_order() {
    let server = InProcess::start(config(), Topical);
    let mut members: Vec<Ws> = (0..5).map(|_| client(&server)).collect();
    for ws in &mut members {
        ask(ws, "sub big");
    }
    let mut outsider = client(&server);
    ask(&mut outsider, "sub small");
    // 20,000 publications in one callback: each member's queue holds them
    // all, written when the callback returns.
    outsider.send(WsMessage::text("burst big 20000")).unwrap();
    for ws in &mut members {
        for i in 0..20000 {
            assert_eq!(text(ws), format!("big{i}"));
        }
    }
    assert_eq!(ask(&mut outsider, "count big"), "5 of 2");
    server.stop();
}

#[test]
fn a_member_gets_the_publications_made_before_its_close_frame_first() {
    let server = InProcess::start(config(), Topical);
    let mut other = client(&server);
    ask(&mut other, "sub x");
    let (mut raw, _) = raw_upgrade(server.addr, "/chat", "");
    assert_eq!(read_frame(&mut raw).unwrap().1, b"hi");
    raw.write_all(&client_frame(0x81, b"sub x")).unwrap();
    assert_eq!(read_frame(&mut raw).unwrap().1, b"sub x true");
    // Two publications and a close frame in one write: the member's own
    // publications come before the answer to its close, which its
    // connection queues while they are still owed to it.
    let mut bytes = client_frame(0x81, b"say x p1");
    bytes.extend(client_frame(0x81, b"say x p2"));
    bytes.extend(client_frame(0x88, &1000u16.to_be_bytes()));
    raw.write_all(&bytes).unwrap();
    assert_eq!(read_frame(&mut raw).unwrap(), (0x81, b"p1".to_vec()));
    assert_eq!(read_frame(&mut raw).unwrap(), (0x81, b"p2".to_vec()));
    assert_eq!(read_close(&mut raw).unwrap(), Some(1000));
    assert_eq!(text(&mut other), "p1");
    assert_eq!(text(&mut other), "p2");
    server.stop();
}
