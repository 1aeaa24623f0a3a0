//! What a publication costs next to a broadcast (run by hand, release
//! build: `cargo test --release --test topics_cost -- --ignored --nocapture`).
//! 1,000 connections all subscribed to topic `big`, and each also to one of
//! 99 other topics; one round is one message to `big` (publish) or to
//! everyone (broadcast), written to each member with one `sendmsg`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use rookery::{Config, ConnId, Context, Handler, Message, Server};

struct Subscribe;

impl Handler for Subscribe {
    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        let n = ctx.open_connections();
        ctx.subscribe(conn, "big").unwrap();
        ctx.subscribe(conn, &format!("other{}", n % 99)).unwrap();
    }

    fn on_message(&mut self, _ctx: &mut Context<'_>, _conn: ConnId, _msg: Message<'_>) {}
}

const CLIENTS: usize = 1000;
const ROUNDS: usize = 300;

#[test]
#[ignore]
fn publish_to_one_topic_costs_what_a_broadcast_costs() {
    let config = Config {
        ping_interval: Duration::ZERO,
        idle_timeout: Duration::ZERO,
        max_connections: 4 * CLIENTS,
        ..Config::default()
    };
    let mut server = Server::bind("127.0.0.1:0", config, Subscribe).unwrap();
    let addr = server.local_addr();
    let request = "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(request.as_bytes()).unwrap();
        c.set_nonblocking(true).unwrap();
        clients.push(c);
        server.run_once(Some(Duration::ZERO)).unwrap();
    }
    let mut buf = vec![0u8; 1 << 16];
    let mut drain = |clients: &mut Vec<TcpStream>| {
        for c in clients.iter_mut() {
            while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
        }
    };
    while server.with_context(|ctx, _| ctx.open_connections()) < CLIENTS {
        server.run_once(Some(Duration::from_millis(1))).unwrap();
    }
    drain(&mut clients);
    assert_eq!(
        server.with_context(|ctx, _| ctx.subscribers("big")),
        CLIENTS
    );
    assert_eq!(server.with_context(|ctx, _| ctx.topic_count()), 100);
    let msg = "0123456789abcdef";
    let small = server.with_context(|ctx, _| ctx.subscribers("other0"));
    let mut measure = |topic: Option<&str>| {
        let mut total = Duration::ZERO;
        for _ in 0..ROUNDS {
            let start = Instant::now();
            let n = server.with_context(|ctx, _| match topic {
                Some(topic) => ctx.publish(topic, Message::Text(msg)),
                None => ctx.broadcast(Message::Text(msg)),
            });
            total += start.elapsed();
            assert!(n == CLIENTS || n == small);
            drain(&mut clients);
        }
        total / ROUNDS as u32
    };
    for _ in 0..2 {
        let b = measure(None);
        let p = measure(Some("big"));
        let q = measure(Some("other0"));
        println!(
            "{CLIENTS} connections, 16-byte text: broadcast {b:?}; publish to the topic of {CLIENTS} (of 100 topics) {p:?}; to one of {small} members {q:?}"
        );
    }
}
