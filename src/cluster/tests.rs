//! The bridge's own tests: its queue, and a bridge driven against a fake
//! Redis in the test's thread.

use super::*;
use std::io::Write;
use std::net::TcpStream;

use crate::server::Source;

#[test]
fn envelopes_round_trip_and_our_own_are_dropped() {
    let cfg = RedisConfig::from_url("redis://127.0.0.1:1").unwrap();
    let mut b = Bridge::new(cfg, Instant::now());
    b.publish("kitchen", OpCode::Binary, &[0, 255]);
    let cmd = b.queue.pop_front().unwrap();
    let reply = Decoder::new(1 << 20).decode(&cmd).unwrap().unwrap().reply;
    let Reply::Array(Some(items)) = reply else {
        panic!()
    };
    let Reply::Bulk(Some(env)) = &items[2] else {
        panic!()
    };
    assert_eq!(
        items[1],
        Reply::Bulk(Some(b"rookery:room:kitchen".to_vec()))
    );
    assert!(open_envelope(env, b.node).is_none());
    let got = open_envelope(env, b.node ^ 1).unwrap();
    assert_eq!(
        (got.topic.as_str(), got.opcode, got.payload),
        ("kitchen", OpCode::Binary, vec![0, 255])
    );
    assert!(open_envelope(&env[..5], 0).is_none());
}

#[test]
fn the_queue_is_bounded_and_counts_drops() {
    let mut cfg = RedisConfig::from_url("redis://127.0.0.1:1").unwrap();
    cfg.max_backlog = 200;
    let mut b = Bridge::new(cfg, Instant::now());
    for _ in 0..10 {
        b.publish("r", OpCode::Text, &[b'x'; 50]);
    }
    assert!(b.status().queued_bytes <= 200);
    assert_eq!(b.queue.len() as u64 + b.dropped, 10);
    assert!(b.dropped > 0);
}

#[test]
fn a_message_of_max_message_is_published_with_the_default_backlog() {
    let mut cfg = RedisConfig::from_url("redis://127.0.0.1:1").unwrap();
    (cfg.max_message, cfg.max_backlog) = (1000, 1000);
    let mut b = Bridge::new(cfg, Instant::now());
    b.publish("room", OpCode::Text, &[b'x'; 1000]);
    assert_eq!((b.queue.len(), b.dropped), (1, 0));
    // The receiving side of the same limit takes its envelope whole.
    let reply = b.decoder.decode(&b.queue[0]).unwrap().unwrap();
    assert_eq!(reply.skip, 0);
    // A full queue still drops; a message over the limit never goes.
    b.publish("room", OpCode::Text, &[b'x'; 10]);
    b.publish("room", OpCode::Text, &[b'x'; 1001]);
    assert_eq!((b.queue.len(), b.dropped), (1, 2));
}

#[test]
fn commands_of_a_link_given_up_are_queued_again_or_counted() {
    let cfg = RedisConfig::from_url("redis://127.0.0.1:1").unwrap();
    let mut b = Bridge::new(cfg, Instant::now());
    b.publish("r", OpCode::Text, b"later");
    for len in [10, 20, 30] {
        b.inflight.push_back(vec![len as u8; len]);
        b.inflight_bytes += len;
    }
    // 35 bytes unwritten: all of the last command and part of the one
    // before (never run by Redis); the first went out whole.
    assert_eq!(b.give_back(35), (2, 1));
    let lens: Vec<usize> = b.queue.iter().map(Vec::len).collect();
    assert_eq!(lens[..2], [20, 30]);
    assert_eq!(b.dropped, 1);
    assert_eq!((b.inflight.len(), b.inflight_bytes), (0, 0));
    assert_eq!(b.queued, 50 + lens[2]);
}

/// A bridge connected to a fake Redis in this thread: the poller, the
/// bridge, the fake's ends of the subscribed and publishing
/// connections, and the instant it came up.
fn bridge_up(max_message: usize) -> (Poller, Bridge, TcpStream, TcpStream, Instant) {
    bridge_up_keeping(max_message, 0)
}

/// [`bridge_up`] with `history` messages kept per topic.
fn bridge_up_keeping(
    max_message: usize,
    history: usize,
) -> (Poller, Bridge, TcpStream, TcpStream, Instant) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cfg =
        RedisConfig::from_url(&format!("redis://{}", listener.local_addr().unwrap())).unwrap();
    cfg.max_message = max_message;
    cfg.history = history;
    let poller = Poller::new().unwrap();
    let t0 = Instant::now();
    let mut b = Bridge::new(cfg, t0);
    b.tick(&poller, t0);
    let (x, _) = listener.accept().unwrap();
    let (y, _) = listener.accept().unwrap();
    let sub_addr = b.sub.as_ref().unwrap().stream.local_addr().unwrap();
    let (mut sub, publ) = if x.peer_addr().unwrap() == sub_addr {
        (x, y)
    } else {
        (y, x)
    };
    b.ready(&poller, t0, SUB_KEY);
    let mut cmd = [0u8; 64];
    let n = sub.read(&mut cmd).unwrap();
    assert!(cmd[..n].windows(10).any(|w| w == b"PSUBSCRIBE"));
    sub.write_all(b"*3\r\n$10\r\npsubscribe\r\n$14\r\nrookery:room:*\r\n:1\r\n")
        .unwrap();
    b.ready(&poller, t0, SUB_KEY);
    assert!(b.is_up());
    (poller, b, sub, publ, t0)
}

/// A pmessage from another node for room `r`.
fn push(payload: &[u8]) -> Vec<u8> {
    let mut env = vec![ENVELOPE_V1, 0];
    env.extend_from_slice(&7u64.to_be_bytes());
    env.push(1);
    env.push(b'r');
    env.extend_from_slice(payload);
    let mut out = Vec::new();
    encode_command(
        &mut out,
        &[b"pmessage", b"rookery:room:*", b"rookery:room:r", &env],
    );
    out
}

#[test]
fn a_flood_is_read_a_pass_at_a_time() {
    let (poller, mut b, mut sub, _publ, t0) = bridge_up(1 << 20);
    let msg = push(&[b'f'; 1000]);
    sub.set_nonblocking(true).unwrap();
    let mut sent = 0;
    // Fill the kernel's buffers both ways.
    'fill: loop {
        let mut at = 0;
        while at < msg.len() {
            match sub.write(&msg[at..]) {
                Ok(n) => {
                    at += n;
                    sent += n;
                }
                // Full (perhaps in the middle of a message).
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 'fill,
                Err(e) => panic!("{e}"),
            }
        }
    }
    assert!(sent > 2 * READ_PER_PASS, "only {sent} bytes buffered");
    let mut got = 0;
    for pass in 0..3 {
        b.ready(&poller, t0, SUB_KEY);
        // Whole messages on the wire: what it read, less what it holds.
        let bytes = b.take_incoming().count() * msg.len();
        let held = b.sub.as_ref().unwrap().input.len();
        assert!(
            bytes <= READ_PER_PASS + msg.len() && held < msg.len(),
            "pass {pass}: {bytes} + {held}"
        );
        assert!(
            bytes + 2 * msg.len() >= READ_PER_PASS,
            "pass {pass}: only {bytes}"
        );
        got += bytes;
    }
    assert!(b.is_up() && got < sent);
}

#[test]
fn a_message_over_the_limit_is_skipped_and_counted_and_the_link_stays() {
    let (poller, mut b, mut sub, _publ, t0) = bridge_up(1024);
    sub.write_all(&push(&[b'x'; 1025])).unwrap(); // fits the decoder, not the limit
    let big = push(&vec![b'y'; 300_000]);
    let writer = {
        let mut sub = sub.try_clone().unwrap();
        std::thread::spawn(move || {
            sub.write_all(&big).unwrap();
            sub.write_all(&push(b"after")).unwrap();
        })
    };
    let mut after = None;
    for _ in 0..1000 {
        b.ready(&poller, t0, SUB_KEY);
        assert!(b.sub.as_ref().unwrap().input.capacity() <= READ_PER_PASS);
        if let Some(m) = b.take_incoming().next() {
            after = Some(m.payload);
            break;
        }
        // Until the writer's next bytes (or what is left) are readable.
        let mut events = crate::server::poller::Events::new();
        poller
            .wait(&mut events, Some(Duration::from_millis(100)))
            .unwrap();
    }
    writer.join().unwrap();
    assert_eq!(after.as_deref(), Some(&b"after"[..]));
    assert_eq!(b.status().oversized, 2);
    assert!(b.is_up());
}

#[test]
fn a_stopped_redis_is_given_up_and_what_it_did_not_acknowledge_counted() {
    let (poller, mut b, sub, mut publ, t0) = bridge_up(1 << 20);
    for i in 0..3 {
        b.publish("r", OpCode::Text, format!("m{i}").as_bytes());
    }
    b.tick(&poller, t0);
    let mut buf = [0u8; 4096];
    let n = publ.read(&mut buf).unwrap();
    assert_eq!(buf[..n].windows(7).filter(|w| w == b"PUBLISH").count(), 3);
    // Unacknowledged: the metrics show them, and the link is still up.
    let st = b.status();
    assert!(st.connected && st.queued_bytes > 0, "{st:?}");
    b.tick(&poller, t0 + REPLY_TIMEOUT - Duration::from_millis(1));
    assert!(b.is_up());
    b.tick(&poller, t0 + REPLY_TIMEOUT);
    let st = b.status();
    assert_eq!((st.connected, st.dropped, st.queued_bytes), (false, 3, 0));
    // A node that only listens notices a stopped Redis too: PING.
    drop((sub, publ));
    let (poller, mut b, mut sub, _publ, t0) = bridge_up(1 << 20);
    assert_eq!(b.next_wake(), Some(t0 + PING_IDLE));
    b.tick(&poller, t0 + PING_IDLE);
    let n = sub.read(&mut buf).unwrap();
    assert!(buf[..n].ends_with(b"PING\r\n"));
    b.tick(&poller, t0 + PING_IDLE + REPLY_TIMEOUT);
    assert!(!b.is_up());
}

#[test]
fn numbered_publications_unanswered_for_a_while_are_handed_back_once() {
    let (poller, mut b, mut sub, mut publ, t0) = bridge_up(1 << 20);
    assert!(b.status().numbering);
    b.publish_numbered("r", crate::Message::Text("one"), false);
    b.publish_numbered("r", crate::Message::Text("two"), true);
    b.tick(&poller, t0);
    let mut buf = [0u8; 8192];
    let n = publ.read(&mut buf).unwrap();
    assert_eq!(buf[..n].windows(4).filter(|w| w == b"EVAL").count(), 2);
    assert_eq!(b.next_wake(), Some(t0 + NUMBERING_WAIT));
    b.tick(&poller, t0 + NUMBERING_WAIT - Duration::from_millis(1));
    assert!(b.take_events().is_empty() && b.status().numbering);
    b.tick(&poller, t0 + NUMBERING_WAIT);
    // The one its origin had not delivered comes back, once; the link
    // stays (Redis may only be slow) but numbering is off meanwhile.
    let back = b.take_events();
    assert_eq!(
        back,
        [ClusterEvent::Returned {
            topic: "r".into(),
            binary: false,
            payload: b"one".to_vec()
        }]
    );
    assert!(b.is_up() && !b.status().numbering);
    b.tick(&poller, t0 + REPLY_TIMEOUT - Duration::from_millis(1));
    assert!(b.take_events().is_empty());
    // When Redis numbers it after all, this node skips it.
    let node = b.node;
    let numbered = |seq: u64, offset: u64| {
        let mut env = vec![numbering::ENVELOPE_V2, 0];
        env.extend_from_slice(&node.to_be_bytes());
        env.extend_from_slice(&seq.to_be_bytes());
        env.extend_from_slice(format!("\x01rE1 {offset} x").as_bytes());
        let mut msg = Vec::new();
        encode_command(
            &mut msg,
            &[b"pmessage", b"rookery:room:*", b"rookery:room:r", &env],
        );
        msg
    };
    sub.write_all(&numbered(1, 1)).unwrap();
    publ.write_all(b":1\r\n").unwrap();
    b.ready(&poller, t0, SUB_KEY);
    b.ready(&poller, t0, PUB_KEY);
    assert!(
        b.take_events().is_empty(),
        "taken back: not delivered twice"
    );
    assert!(b.status().numbering, "an answer: numbering again");
    // One of its own not taken back is delivered as numbered.
    sub.write_all(&numbered(3, 2)).unwrap();
    b.ready(&poller, t0, SUB_KEY);
    assert!(
        matches!(&b.take_events()[..], [ClusterEvent::Message(m)] if m.offset == 2),
        "its own numbered message"
    );
}

#[test]
fn a_read_of_a_log_is_answered_even_when_the_link_goes() {
    let (poller, mut b, _sub, publ, t0) = bridge_up(1 << 20);
    assert!(b.read_log("r", 7));
    b.tick(&poller, t0);
    assert!(b.take_events().is_empty());
    drop(publ);
    for _ in 0..100 {
        b.ready(&poller, t0, PUB_KEY);
        if !b.is_up() {
            break;
        }
    }
    assert_eq!(
        b.take_events(),
        [ClusterEvent::Log {
            token: 7,
            topic: "r".into(),
            log: None
        }]
    );
    // Nothing is asked while Redis is away.
    assert!(!b.read_log("r", 8));
}

#[test]
fn a_log_larger_than_a_pass_is_read_over_passes_whole() {
    const N: usize = 3000;
    let (poller, mut b, _sub, mut publ, t0) = bridge_up_keeping(1 << 20, N);
    assert!(b.read_log("r", 1));
    b.tick(&poller, t0);
    let mut buf = [0u8; 4096];
    let n = publ.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"*"), "the read went out");
    let mut reply = format!("*{}\r\n$2\r\nE1\r\n:{N}\r\n", 2 + 3 * N).into_bytes();
    for i in 1..=N {
        let payload = format!("{i:06}{}", "x".repeat(58));
        reply.extend_from_slice(format!(":{i}\r\n$1\r\n\0\r\n$64\r\n{payload}\r\n").as_bytes());
    }
    assert!(reply.len() > 3 * READ_PER_PASS);
    let writer = std::thread::spawn(move || publ.write_all(&reply).map(|_| publ));
    let mut log = None;
    for _ in 0..1000 {
        b.ready(&poller, t0, PUB_KEY);
        if let Some(ClusterEvent::Log { log: got, .. }) = b.take_events().pop() {
            log = got;
            break;
        }
        let mut events = crate::server::poller::Events::new();
        poller
            .wait(&mut events, Some(Duration::from_millis(100)))
            .unwrap();
    }
    let _publ = writer.join().unwrap().unwrap();
    let log = log.expect("the whole log");
    assert_eq!(
        (log.epoch.as_str(), log.last, log.entries.len()),
        ("E1", N as u64, N)
    );
    assert!(log
        .messages()
        .enumerate()
        .all(|(i, (offset, _))| offset == i as u64 + 1));
    assert!(b.is_up());
}
