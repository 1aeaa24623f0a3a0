//! The handler's state and start: values attached to connections
//! (`Context::set_user_data`), `Handler::on_start`, and `publish_text`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rookery::{
    CloseCode, Config, ConnId, Context, Handler, Message, Request, SendError, Server, Upgrade,
};
use tungstenite::Message as WsMessage;

type Log = Arc<Mutex<Vec<String>>>;

fn config() -> Config {
    Config {
        ping_interval: Duration::ZERO,
        close_timeout: Duration::from_millis(500),
        ..Config::default()
    }
}

/// A connection's value: its name, its message count, and a shared count
/// of the values dropped.
struct Member {
    name: String,
    messages: u32,
    dropped: Arc<AtomicUsize>,
}

impl Drop for Member {
    fn drop(&mut self) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

/// Names each connection after its query (`/chat?NAME`) and counts its
/// messages in the value attached to it.
struct Named {
    log: Log,
    dropped: Arc<AtomicUsize>,
}

impl Handler for Named {
    fn on_upgrade(&mut self, ctx: &mut Context<'_>, conn: ConnId, req: &Request) -> Upgrade {
        let name = req.target().split_once('?').map_or("", |(_, q)| q);
        let member = Member {
            name: name.to_string(),
            messages: 0,
            dropped: Arc::clone(&self.dropped),
        };
        ctx.set_user_data(conn, member).unwrap();
        // No connection has the id 0.
        assert_eq!(
            ctx.set_user_data(ConnId::from_u64(0), 1u8),
            Err(SendError::NotOpen)
        );
        Upgrade::accept()
    }

    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        ctx.subscribe(conn, "everyone").unwrap();
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: Message<'_>) {
        let Message::Text(text) = msg else {
            return;
        };
        // A value of another type is neither shown nor taken.
        assert!(ctx.user_data::<String>(conn).is_none());
        assert!(ctx.take_user_data::<String>(conn).is_none());
        let Some(member) = ctx.user_data_mut::<Member>(conn) else {
            let _ = ctx.send_text(conn, "no value");
            return;
        };
        member.messages += 1;
        let line = format!("{} #{}: {text}", member.name, member.messages);
        if text == "forget me" {
            let member = ctx.take_user_data::<Member>(conn).unwrap();
            assert!(ctx.user_data::<Member>(conn).is_none());
            drop(member);
        }
        let reached = ctx.publish_text("everyone", &line);
        self.log
            .lock()
            .unwrap()
            .push(format!("published to {reached}"));
    }

    fn on_close(&mut self, ctx: &mut Context<'_>, conn: ConnId, _code: CloseCode, _reason: &str) {
        let entry = match ctx.user_data::<Member>(conn) {
            Some(member) => format!("closed {} after {}", member.name, member.messages),
            None => "closed without a value".to_string(),
        };
        self.log.lock().unwrap().push(entry);
    }
}

fn logged(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

#[test]
fn a_value_attached_to_a_connection_lives_until_after_on_close() {
    let log: Log = Arc::default();
    let dropped = Arc::new(AtomicUsize::new(0));
    let server = InProcess::start(
        config(),
        Named {
            log: log.clone(),
            dropped: dropped.clone(),
        },
    );
    let mut ada = connect(&server.url("/chat?ada"));
    let mut bob = connect(&server.url("/chat?bob"));
    ada.send(WsMessage::text("hello")).unwrap();
    // Published to both members, the sender included.
    assert_eq!(next_data(&mut ada), WsMessage::text("ada #1: hello"));
    assert_eq!(next_data(&mut bob), WsMessage::text("ada #1: hello"));
    ada.send(WsMessage::text("again")).unwrap();
    assert_eq!(next_data(&mut bob), WsMessage::text("ada #2: again"));
    bob.send(WsMessage::text("hi")).unwrap();
    assert_eq!(next_data(&mut bob), WsMessage::text("bob #1: hi"));
    assert_eq!(dropped.load(Ordering::SeqCst), 0);

    ada.close(Some(tungstenite::protocol::CloseFrame {
        code: 1000.into(),
        reason: "".into(),
    }))
    .unwrap();
    assert_eq!(expect_close(&mut ada), Some(1000));
    assert!(eventually(Duration::from_secs(5), || logged(&log)
        .contains(&"closed ada after 2".to_string())));
    // Dropped with its connection, once: bob's is still there.
    assert!(eventually(Duration::from_secs(5), || dropped
        .load(Ordering::SeqCst)
        == 1));

    // Taken away: dropped at once, and gone for the rest of its life.
    bob.send(WsMessage::text("forget me")).unwrap();
    assert_eq!(next_data(&mut bob), WsMessage::text("bob #2: forget me"));
    assert_eq!(dropped.load(Ordering::SeqCst), 2);
    bob.send(WsMessage::text("still there?")).unwrap();
    assert_eq!(next_data(&mut bob), WsMessage::text("no value"));
    drop(bob);
    assert!(eventually(Duration::from_secs(5), || logged(&log)
        .contains(&"closed without a value".to_string())));
    assert_eq!(
        logged(&log)
            .iter()
            .filter(|e| e.starts_with("published to 2"))
            .count(),
        3,
        "{:?}",
        logged(&log)
    );
    server.stop();
    assert_eq!(dropped.load(Ordering::SeqCst), 2);
}

/// Sets a timer in `on_start` and counts what happens.
#[derive(Default)]
struct Starter {
    starts: usize,
    ticks: usize,
}

impl Handler for Starter {
    fn on_start(&mut self, ctx: &mut Context<'_>) {
        self.starts += 1;
        assert_eq!(ctx.open_connections(), 0);
        ctx.set_timer(Duration::from_secs(1), 7);
    }

    fn on_timer(&mut self, _ctx: &mut Context<'_>, token: u64) {
        assert_eq!(token, 7);
        self.ticks += 1;
    }

    fn on_message(&mut self, _ctx: &mut Context<'_>, _conn: ConnId, _msg: Message<'_>) {}
}

#[test]
fn on_start_is_called_once_before_the_first_pass_and_can_set_timers() {
    let mut server = Server::bind("127.0.0.1:0", config(), Starter::default()).unwrap();
    assert_eq!(server.handler().starts, 0, "not before the server runs");
    // On a virtual clock: no connection ever comes, and the timer set at
    // start fires all the same, in the first pass that reaches its time.
    let start = Instant::now();
    server
        .run_once_at(start + Duration::from_millis(500), Some(Duration::ZERO))
        .unwrap();
    assert_eq!((server.handler().starts, server.handler().ticks), (1, 0));
    server
        .run_once_at(start + Duration::from_secs(2), Some(Duration::ZERO))
        .unwrap();
    assert_eq!((server.handler().starts, server.handler().ticks), (1, 1));
    server.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(server.handler().starts, 1, "once");

    // Through `run` as well, stopped at once.
    let mut server = Server::bind("127.0.0.1:0", config(), Starter::default()).unwrap();
    server.stop_handle().stop();
    server.run().unwrap();
    assert_eq!(server.handler().starts, 1);
}
