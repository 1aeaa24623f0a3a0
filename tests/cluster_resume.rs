//! Missed messages across nodes (SPEC §12 with `--redis`), two `rookery`
//! processes on a real `redis-server` started here: a message has the same
//! epoch and offset on both nodes; a client resumes on the other node, and
//! on a node restarted since (which gives newcomers the room's history
//! from Redis, to many joining at once too); Redis flushed gives `gap`; 1,000 messages published during
//! a resume arrive after it contiguous, none twice; with Redis down a node
//! counts under an epoch of its own, and the switch back to the cluster's
//! reaches `rookery.v1` members as a `gap`; and a library handler built on
//! `Context::publish_numbered`, `Context::read_log` and `Handler::on_cluster`.
//!
//! Without `redis-server` in PATH the tests print `SKIPPED: ...` and pass,
//! unless `ROOKERY_REQUIRE_REDIS=1` is set (`common::require`).

#![cfg(feature = "redis")]

mod common;
mod redis_server;

use std::time::Duration;

use common::v1::*;
use common::*;
use redis_server::*;
use tungstenite::Message;

fn node(url: &str, history: usize) -> Rookery {
    let history = history.to_string();
    Rookery::start(&[
        "--ping-interval",
        "0",
        "--idle-timeout",
        "0",
        "--metrics",
        "--history",
        &history,
        "--redis",
        url,
    ])
}

/// Both nodes connected to Redis.
fn nodes(redis: &Redis, history: usize) -> (Rookery, Rookery) {
    let (n1, n2) = (node(&redis.url(), history), node(&redis.url(), history));
    wait_connected(&n1, Duration::from_secs(10));
    wait_connected(&n2, Duration::from_secs(10));
    (n1, n2)
}

fn say(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).expect("send");
}

/// Says `prefix0` .. from a plain member of `path` on `node` and waits for
/// the last one to come back (numbered by the cluster by then).
fn talk(node: &Rookery, path: &str, prefix: &str, n: usize) {
    let mut ws = join_plain(node, path);
    for i in 0..n {
        say(&mut ws, &format!("{prefix}{i}"));
    }
    let last = format!("{prefix}{}", n - 1);
    while text(&mut ws) != last {}
    ws.close(None).expect("close");
}

#[test]
fn the_same_message_has_the_same_epoch_and_offset_on_both_nodes() {
    let Some(redis) = Redis::start(None) else {
        return;
    };
    let (n1, n2) = nodes(&redis, 50);
    let (mut a, ea, la) = join_v1(&n1, "/chat/r");
    let (mut b, eb, lb) = join_v1(&n2, "/chat/r");
    assert_eq!((ea.as_str(), la), (eb.as_str(), lb), "one epoch, one count");
    let mut plain = join_plain(&n2, "/chat/r");
    // Both nodes' members talk at once: one order for everybody.
    for i in 0..20 {
        say(&mut a, &format!("a{i}"));
        say(&mut b, &format!("b{i}"));
    }
    let seen_a: Vec<String> = (0..40).map(|_| text(&mut a)).collect();
    let seen_b: Vec<String> = (0..40).map(|_| text(&mut b)).collect();
    assert_eq!(seen_a, seen_b);
    for (i, env) in seen_a.iter().enumerate() {
        assert_eq!(kind(env), "message", "{env}");
        assert_eq!(epoch_of(env), ea);
        assert_eq!(number(env, "offset"), la + 1 + i as u64, "{env}");
    }
    // The plain member gets the same texts in the same order.
    for env in &seen_a {
        let got = text(&mut plain);
        assert!(
            env.ends_with(&format!("\"text\":\"{got}\"}}")),
            "{got} / {env}"
        );
    }
}

#[test]
fn a_client_resumes_on_the_other_node_and_on_a_node_restarted_since() {
    let Some(redis) = Redis::start(None) else {
        return;
    };
    let (mut n1, n2) = nodes(&redis, 50);
    let (mut a, epoch, start) = join_v1(&n1, "/chat/k");
    talk(&n1, "/chat/k", "m", 5);
    for i in 0..5u64 {
        assert_eq!(
            text(&mut a),
            message(&epoch, start + 1 + i, &format!("m{i}"))
        );
    }
    drop(a);
    talk(&n1, "/chat/k", "n", 3);
    // On the other node, which has never had the room: what it missed
    // comes from Redis.
    let since = start + 5;
    let (mut back, e2, last) = join_v1(&n2, &format!("/chat/k?since={epoch}:{since}"));
    assert_eq!((e2.as_str(), last), (epoch.as_str(), since + 3));
    for i in 0..3u64 {
        assert_eq!(
            text(&mut back),
            message(&epoch, since + 1 + i, &format!("n{i}"))
        );
    }
    assert_eq!(
        text(&mut back),
        format!(
            r#"{{"type":"recovered","epoch":"{epoch}","offset":{},"missed":3}}"#,
            since + 3
        )
    );
    drop(back);
    // The first node restarted (all it kept is gone); more said meanwhile.
    let _ = n1.child.kill();
    let _ = n1.child.wait();
    talk(&n2, "/chat/k", "o", 2);
    let n1 = node(&redis.url(), 50);
    wait_connected(&n1, Duration::from_secs(10));
    let since = start + 8;
    let (mut again, e3, last) = join_v1(&n1, &format!("/chat/k?since={epoch}:{since}"));
    assert_eq!((e3.as_str(), last), (epoch.as_str(), since + 2));
    for i in 0..2u64 {
        assert_eq!(
            text(&mut again),
            message(&epoch, since + 1 + i, &format!("o{i}"))
        );
    }
    assert_eq!(kind(&text(&mut again)), "recovered");
    // A newcomer on the restarted node gets the room's history from Redis.
    let mut newcomer = join_plain(&n1, "/chat/k");
    let all: Vec<String> = ["m0", "m1", "m2", "m3", "m4", "n0", "n1", "n2", "o0", "o1"]
        .map(String::from)
        .to_vec();
    let got: Vec<String> = (0..all.len()).map(|_| text(&mut newcomer)).collect();
    assert_eq!(got, all);
    // And live messages after it, once each.
    say(&mut again, "live");
    assert_eq!(text(&mut newcomer), "live");
    assert_eq!(text(&mut again), message(&epoch, since + 3, "live"));
}

#[test]
fn redis_flushed_gives_a_new_epoch_and_a_gap() {
    let Some(redis) = Redis::start(None) else {
        return;
    };
    let (n1, n2) = nodes(&redis, 50);
    let (mut a, epoch, start) = join_v1(&n1, "/chat/f");
    talk(&n2, "/chat/f", "x", 3);
    for i in 0..3u64 {
        assert_eq!(
            text(&mut a),
            message(&epoch, start + 1 + i, &format!("x{i}"))
        );
    }
    assert!(command(redis.port, &["FLUSHALL"]).starts_with("+OK"));
    talk(&n2, "/chat/f", "after", 1);
    let gap = text(&mut a);
    assert_eq!(kind(&gap), "gap", "{gap}");
    let fresh = epoch_of(&gap);
    assert_ne!(fresh, epoch, "a new epoch after the data was lost");
    assert_eq!(number(&gap, "offset"), 0);
    assert_eq!(text(&mut a), message(&fresh, 1, "after0"));
    // A client coming back with a position of the old epoch, on either
    // node: gap, then the room's history of the new one.
    for n in [&n1, &n2] {
        let (mut back, e, last) = join_v1(n, &format!("/chat/f?since={epoch}:{}", start + 3));
        assert_eq!((e.as_str(), last), (fresh.as_str(), 1));
        assert_eq!(
            text(&mut back),
            format!(r#"{{"type":"gap","epoch":"{fresh}","offset":1}}"#)
        );
        assert_eq!(text(&mut back), message(&fresh, 1, "after0"));
    }
}

#[test]
fn a_thousand_messages_published_during_a_resume_arrive_contiguous_none_twice() {
    let Some(redis) = Redis::start(None) else {
        return;
    };
    const N: u64 = 1000;
    let (n1, n2) = nodes(&redis, 2000);
    let (mut a, epoch, start) = join_v1(&n1, "/chat/s");
    talk(&n1, "/chat/s", "m", 10);
    for _ in 0..10 {
        assert_eq!(kind(&text(&mut a)), "message");
    }
    drop(a);
    let since = start + 10;
    // A sender on the first node talks while the client resumes on the
    // second (which has to read the room's log from Redis first).
    let mut sender = join_plain(&n1, "/chat/s");
    let writer = std::thread::spawn(move || {
        for i in 0..N {
            say(&mut sender, &format!("s{i}"));
        }
        sender
    });
    let (mut back, e, _) = join_v1(&n2, &format!("/chat/s?since={epoch}:{since}"));
    assert_eq!(e, epoch);
    let mut sender = writer.join().expect("writer");
    let mut next = since + 1;
    let mut recovered = 0;
    while next <= since + N {
        let env = text(&mut back);
        match kind(&env) {
            "message" => {
                assert_eq!(number(&env, "offset"), next, "{env}");
                assert_eq!(epoch_of(&env), epoch);
                next += 1;
            }
            "recovered" => {
                recovered += 1;
                assert_eq!(number(&env, "missed"), number(&env, "offset") - since);
            }
            _ => panic!("{env}"),
        }
    }
    assert_eq!(recovered, 1, "one recovered, in the stream of messages");
    // Nothing after the last but what comes next.
    say(&mut sender, "end");
    assert_eq!(text(&mut back), message(&epoch, since + N + 1, "end"));
}

#[test]
fn with_redis_down_a_node_counts_on_its_own_and_the_switch_back_is_a_gap() {
    let Some(mut redis) = Redis::start(None) else {
        return;
    };
    let (n1, n2) = nodes(&redis, 50);
    let (mut a, epoch, start) = join_v1(&n1, "/chat/d");
    let (mut b, _, _) = join_v1(&n2, "/chat/d");
    say(&mut a, "up");
    assert_eq!(text(&mut a), message(&epoch, start + 1, "up"));
    assert_eq!(text(&mut b), message(&epoch, start + 1, "up"));
    redis.kill();
    assert!(
        eventually(Duration::from_secs(10), || metric(
            &n1,
            "rookery_redis_connected"
        ) == 0),
        "still connected"
    );
    // Local chat goes on, under this node's own epoch.
    say(&mut a, "down");
    let gap = text(&mut a);
    assert_eq!(kind(&gap), "gap", "{gap}");
    let local = epoch_of(&gap);
    assert_ne!(local, epoch);
    assert_eq!(text(&mut a), message(&local, 1, "down"));
    // Redis back (empty): the next message of the cluster switches back.
    redis.spawn();
    wait_connected(&n1, Duration::from_secs(15));
    wait_connected(&n2, Duration::from_secs(15));
    say(&mut b, "back");
    let gap = text(&mut a);
    assert_eq!(kind(&gap), "gap", "{gap}");
    let cluster = epoch_of(&gap);
    assert_ne!(cluster, local);
    let back = text(&mut a);
    assert_eq!(epoch_of(&back), cluster);
    assert!(back.ends_with(r#""text":"back"}"#), "{back}");
    assert_eq!(number(&gap, "offset") + 1, number(&back, "offset"));
    // The other node got the same message at the same place.
    let mut on_b = text(&mut b);
    while kind(&on_b) != "message" || !on_b.ends_with(r#""text":"back"}"#) {
        on_b = text(&mut b);
    }
    assert_eq!(on_b, back);
}

#[test]
fn newcomers_on_a_node_new_to_the_room_all_get_its_history_from_redis() {
    let Some(redis) = Redis::start(None) else {
        return;
    };
    let (n1, n2) = nodes(&redis, 50);
    talk(&n1, "/chat/h", "h", 5);
    // Joined at once: they wait for the one read of the room's log.
    let mut all: Vec<Ws> = (0..8).map(|_| connect(&n2.url("/chat/h"))).collect();
    for ws in &mut all {
        assert_eq!(text(ws), WELCOME);
        for i in 0..5 {
            assert_eq!(text(ws), format!("h{i}"));
        }
    }
    say(&mut all[0], "then");
    for ws in &mut all {
        assert_eq!(text(ws), "then");
    }
}

/// A library handler on the cluster's numbering: every message to topic
/// `t` through [`rookery::Context::publish_numbered`], delivered from
/// `on_cluster` as `EPOCH:OFFSET:TEXT`; a newcomer is first sent the
/// topic's log from [`rookery::Context::read_log`] (`log LAST COUNT`), or
/// `no log` while Redis is not there yet.
struct Numbering {
    joining: std::collections::HashMap<u64, rookery::ConnId>,
    next: u64,
}

impl rookery::Handler for Numbering {
    fn on_open(&mut self, ctx: &mut rookery::Context<'_>, conn: rookery::ConnId) {
        self.next += 1;
        if ctx.read_log("t", self.next) {
            self.joining.insert(self.next, conn);
        } else {
            let _ = ctx.send_text(conn, "no log");
        }
    }

    fn on_message(
        &mut self,
        ctx: &mut rookery::Context<'_>,
        _: rookery::ConnId,
        msg: rookery::Message<'_>,
    ) {
        assert!(ctx.publish_numbered("t", msg, false));
    }

    fn on_cluster(&mut self, ctx: &mut rookery::Context<'_>, event: rookery::server::ClusterEvent) {
        match event {
            rookery::server::ClusterEvent::Message(m) => {
                let text = format!(
                    "{}:{}:{}",
                    m.epoch,
                    m.offset,
                    String::from_utf8_lossy(&m.payload)
                );
                ctx.publish_local("t", rookery::Message::Text(&text));
            }
            rookery::server::ClusterEvent::Log { token, log, .. } => {
                let Some(conn) = self.joining.remove(&token) else {
                    return;
                };
                let line = match log {
                    Some(log) => format!("log {} {}", log.last, log.entries.len()),
                    None => "no log".into(),
                };
                let _ = ctx.send_text(conn, &line);
                let _ = ctx.subscribe(conn, "t");
            }
            _ => {}
        }
    }
}

#[test]
fn a_library_handler_numbers_through_the_cluster_and_reads_a_topics_log() {
    let Some(redis) = Redis::start(None) else {
        return;
    };
    let start = |url: &str| {
        let mut cfg = rookery::cluster::RedisConfig::from_url(url).expect("url");
        (cfg.prefix, cfg.history) = ("lib".into(), 10);
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let handler = Numbering {
                joining: Default::default(),
                next: 0,
            };
            let mut server =
                rookery::Server::bind("127.0.0.1:0", rookery::Config::default(), handler)
                    .expect("bind");
            server.set_redis(cfg);
            tx.send((server.local_addr(), server.stop_handle()))
                .expect("send");
            server.run().expect("run");
        });
        let (addr, stop) = rx.recv().expect("started");
        (format!("ws://{addr}/chat"), stop, thread)
    };
    let (url1, stop1, t1) = start(&redis.url());
    let (url2, stop2, t2) = start(&redis.url());
    // Joined once each node is connected: the log (empty) first.
    let join = |url: &str| {
        let ok = eventually(Duration::from_secs(10), || {
            let mut ws = connect(url);
            text(&mut ws).starts_with("log ")
        });
        assert!(ok, "no log from {url}");
        let mut ws = connect(url);
        assert!(text(&mut ws).starts_with("log "));
        ws
    };
    let mut a = join(&url1);
    let mut b = join(&url2);
    say(&mut a, "one");
    say(&mut b, "two");
    let on_a: Vec<String> = (0..2).map(|_| text(&mut a)).collect();
    let on_b: Vec<String> = (0..2).map(|_| text(&mut b)).collect();
    assert_eq!(on_a, on_b, "one order, the same numbers");
    let offsets: Vec<&str> = on_a
        .iter()
        .map(|t| t.split(':').nth(1).unwrap_or(""))
        .collect();
    assert_eq!(offsets, ["1", "2"]);
    // A newcomer's log holds both.
    let mut c = connect(&url2);
    assert_eq!(text(&mut c), "log 2 2");
    stop1.stop();
    stop2.stop();
    drop((a, b, c));
    t1.join().expect("node 1");
    t2.join().expect("node 2");
}
