//! Every deadline of the server on a virtual clock (`Server::run_once_at`):
//! the handshake timeout, the idle timeout, pings, the close timeout, the
//! shutdown deadline and a handler's timer, each checked just before and
//! just after it is due, with real sockets and no sleeping.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{client_frame, raw_upgrade, read_close, read_frame, Virtual};
use rookery::echo::Echo;
use rookery::{Config, ConnId, Context, Handler, Message};

/// How far before and after a deadline the tests look: the wheel ticks
/// every 10 ms and files a timer at the first tick at or after its time.
const MARGIN: Duration = Duration::from_millis(100);

fn config() -> Config {
    Config {
        path: "/echo".into(),
        ping_interval: Duration::ZERO,
        idle_timeout: Duration::ZERO,
        handshake_timeout: Duration::ZERO,
        ..Config::default()
    }
}

/// Whether the server has sent nothing and kept the connection: everything
/// a pass sends is on the loopback socket once the pass is over.
fn quiet(stream: &mut TcpStream) -> bool {
    stream.set_nonblocking(true).expect("nonblocking");
    let mut byte = [0u8; 1];
    let quiet = matches!(stream.read(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock);
    stream.set_nonblocking(false).expect("blocking");
    quiet
}

/// Whether the server has closed the socket (end of stream or reset),
/// reading past any frames.
fn dropped(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                return false
            }
            Err(_) => return true,
        }
    }
}

fn upgraded(server: &Virtual) -> TcpStream {
    let (mut stream, head) = raw_upgrade(server.addr, "/echo", "");
    assert!(head.starts_with("HTTP/1.1 101 "), "{head:?}");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // The pass that answered may still be settling the new connection.
    server.settle();
    let _ = stream.flush();
    stream
}

#[test]
fn the_handshake_timeout_drops_a_silent_client_when_due_and_not_before() {
    let server = Virtual::start(
        Config {
            handshake_timeout: Duration::from_secs(5),
            ..config()
        },
        Echo,
    );
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    server.settle();
    server.advance(Duration::from_secs(5) - MARGIN);
    assert!(quiet(&mut stream), "dropped before the handshake timeout");
    server.advance(2 * MARGIN);
    assert!(dropped(&mut stream), "kept past the handshake timeout");
}

#[test]
fn the_idle_timeout_closes_with_1001_when_due_and_not_before() {
    let server = Virtual::start(
        Config {
            idle_timeout: Duration::from_secs(15),
            ..config()
        },
        Echo,
    );
    let mut stream = upgraded(&server);
    server.advance(Duration::from_secs(10));
    // A message restarts the silence.
    stream
        .write_all(&client_frame(0x81, b"still here"))
        .expect("write");
    let (first, payload) = read_frame(&mut stream).expect("echo");
    assert_eq!((first, payload.as_slice()), (0x81, &b"still here"[..]));
    server.advance(Duration::from_secs(15) - MARGIN);
    assert!(quiet(&mut stream), "closed before 15 s of silence");
    server.advance(2 * MARGIN);
    assert_eq!(read_close(&mut stream).expect("close frame"), Some(1001));
}

#[test]
fn pings_go_out_at_each_interval() {
    let server = Virtual::start(
        Config {
            ping_interval: Duration::from_secs(5),
            ..config()
        },
        Echo,
    );
    let mut stream = upgraded(&server);
    // The first ping is due 5 s after the start, whenever the client came;
    // each next one 5 s after the pass that sent the last (here MARGIN
    // past its due time).
    for round in 0..3 {
        server.advance(Duration::from_secs(5) - MARGIN);
        assert!(quiet(&mut stream), "round {round}: a ping early");
        server.advance(2 * MARGIN);
        let (first, _) = read_frame(&mut stream).expect("ping");
        assert_eq!(first, 0x89, "round {round}: a ping");
    }
}

#[test]
fn a_peer_that_never_answers_our_close_is_dropped_after_the_close_timeout() {
    let server = Virtual::start(
        Config {
            idle_timeout: Duration::from_secs(1),
            close_timeout: Duration::from_secs(5),
            ..config()
        },
        Echo,
    );
    let mut stream = upgraded(&server);
    server.advance(Duration::from_secs(1) + MARGIN);
    assert_eq!(read_close(&mut stream).expect("close frame"), Some(1001));
    // The close went out MARGIN past the idle deadline: its own deadline
    // counts from there.
    server.advance(Duration::from_secs(5) - MARGIN);
    assert!(quiet(&mut stream), "dropped before the close timeout");
    server.advance(2 * MARGIN);
    assert!(dropped(&mut stream), "kept past the close timeout");
}

#[test]
fn a_shutdown_waits_the_close_timeout_for_answers_then_ends() {
    let server = Virtual::start(
        Config {
            close_timeout: Duration::from_secs(5),
            ..config()
        },
        Echo,
    );
    let mut stream = upgraded(&server);
    server.request_stop();
    server.settle();
    assert_eq!(read_close(&mut stream).expect("close frame"), Some(1001));
    server.advance(Duration::from_secs(5) - MARGIN);
    assert!(!server.has_stopped(), "stopped before the close timeout");
    server.advance(2 * MARGIN);
    assert!(server.has_stopped(), "still running past the close timeout");
    assert!(dropped(&mut stream));
}

/// Sets a 30 s timer for each new connection and tells it when it fires.
struct Alarm;

impl Handler for Alarm {
    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        ctx.set_timer(Duration::from_secs(30), conn.as_u64());
    }

    fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, _: Message<'_>) {}

    fn on_timer(&mut self, ctx: &mut Context<'_>, token: u64) {
        let _ = ctx.send_text(ConnId::from_u64(token), "fired");
    }
}

#[test]
fn a_handler_timer_fires_at_its_time() {
    let server = Virtual::start(config(), Alarm);
    let mut stream = upgraded(&server);
    server.advance(Duration::from_secs(30) - MARGIN);
    assert!(quiet(&mut stream), "the timer fired early");
    server.advance(2 * MARGIN);
    let (first, payload) = read_frame(&mut stream).expect("timer's message");
    assert_eq!((first, payload.as_slice()), (0x81, &b"fired"[..]));
}

#[test]
fn a_sender_at_the_rate_limit_is_never_closed_and_one_past_its_burst_is() {
    let server = Virtual::start(
        Config {
            rate_limit: rookery::Rate::new(10, 5),
            ..config()
        },
        Echo,
    );
    // One message every 100 ms for 10 s of the server's time: all echoed.
    let mut steady = upgraded(&server);
    for i in 0..100 {
        steady
            .write_all(&client_frame(0x81, b"tick"))
            .expect("write");
        let (first, payload) = read_frame(&mut steady).expect("echo");
        assert_eq!((first, payload.as_slice()), (0x81, &b"tick"[..]), "{i}");
        server.advance(Duration::from_millis(100));
    }
    // Six at once: the burst of five is echoed, the sixth closes it.
    let mut burst = upgraded(&server);
    let six: Vec<u8> = (0..6).flat_map(|_| client_frame(0x81, b"x")).collect();
    burst.write_all(&six).expect("write");
    for _ in 0..5 {
        assert_eq!(read_frame(&mut burst).expect("echo").0, 0x81);
    }
    assert_eq!(read_close(&mut burst).expect("close frame"), Some(1008));
    // The steady one is still open and still within its rate.
    steady
        .write_all(&client_frame(0x81, b"tock"))
        .expect("write");
    let (first, payload) = read_frame(&mut steady).expect("echo");
    assert_eq!((first, payload.as_slice()), (0x81, &b"tock"[..]));
}
