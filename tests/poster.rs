//! The Rust side of posting from other threads: `Server::poster`,
//! `Poster::post`, the bound, and posts during and after a stop.

use std::thread;
use std::time::{Duration, Instant};

use rookery::{Config, ConnId, Context, Handler, Message, PostError, Server};
use tungstenite::Message as WsMessage;

#[derive(Default)]
struct Opened(Vec<ConnId>);

impl Handler for Opened {
    fn on_open(&mut self, _ctx: &mut Context<'_>, conn: ConnId) {
        self.0.push(conn);
    }
    fn on_message(&mut self, _ctx: &mut Context<'_>, _conn: ConnId, _msg: Message<'_>) {}
}

fn server(max_posted: usize) -> Server<Opened> {
    let config = Config {
        ping_interval: Duration::ZERO,
        close_timeout: Duration::from_millis(500),
        max_posted,
        ..Config::default()
    };
    Server::bind("127.0.0.1:0", config, Opened::default()).unwrap()
}

fn pump_until(server: &mut Server<Opened>, mut done: impl FnMut(&mut Server<Opened>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(server) {
        assert!(Instant::now() < deadline, "timed out");
        server.run_once(Some(Duration::from_millis(10))).unwrap();
    }
}

#[test]
fn posts_from_threads_arrive_in_order_and_stop_refuses_more() {
    const THREADS: usize = 3;
    const EACH: usize = 2000;
    let mut server = server(4096);
    let url = format!("ws://{}/chat", server.local_addr());
    let reader = thread::spawn(move || {
        let (mut ws, _) = tungstenite::connect(url).unwrap();
        let mut seen = [0usize; THREADS];
        let mut broadcasts = 0;
        loop {
            match ws.read() {
                Ok(WsMessage::Text(t)) if t.as_str() == "all" => broadcasts += 1,
                Ok(WsMessage::Text(t)) => {
                    let (t, i) = t.split_once(':').unwrap();
                    let (t, i): (usize, usize) = (t.parse().unwrap(), i.parse().unwrap());
                    assert_eq!(i, seen[t], "thread {t} out of order");
                    seen[t] += 1;
                }
                Ok(WsMessage::Close(frame)) => {
                    let _ = ws.flush();
                    return (seen, broadcasts, frame.map(|f| u16::from(f.code)));
                }
                Ok(_) => {}
                Err(e) => panic!("{e}"),
            }
        }
    });
    pump_until(&mut server, |s| !s.handler().0.is_empty());
    let conn = server.handler().0[0];
    let poster = server.poster();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let poster = poster.clone();
            thread::spawn(move || {
                let mut full = 0;
                for i in 0..EACH {
                    let msg = format!("{t}:{i}");
                    loop {
                        match poster.post(Some(conn), Message::Text(&msg)) {
                            Ok(()) => break,
                            Err(PostError::Full) => {
                                full += 1;
                                thread::yield_now();
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                full
            })
        })
        .collect();
    pump_until(&mut server, |_| threads.iter().all(|t| t.is_finished()));
    let full: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    // Posted just before the stop: still delivered, before the close.
    poster.post(None, Message::Text("all")).unwrap();
    server.stop_handle().stop();
    server.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(
        poster.post(None, Message::Text("late")),
        Err(PostError::Stopped)
    );
    while server.run_once(Some(Duration::from_millis(10))).unwrap() {}
    let (seen, broadcasts, code) = reader.join().unwrap();
    assert_eq!(seen, [EACH; THREADS]);
    assert_eq!(broadcasts, 1);
    assert_eq!(code, Some(1001));
    eprintln!("{} retries on PostError::Full", full);
    drop(server);
    assert_eq!(
        poster.post(Some(conn), Message::Binary(b"gone")),
        Err(PostError::Stopped)
    );
}

#[test]
fn the_descriptor_and_timeout_for_another_loop() {
    use std::os::fd::AsRawFd;
    let mut server = server(1 << 20);
    assert!(server.as_raw_fd() >= 0);
    // No pings, no connections: nothing to wake for.
    assert_eq!(server.next_timeout(), None);
    // Well after the server's start (300 ms later on its clock): the
    // timeout counts from the loop's clock, not from its start.
    let later = std::time::Instant::now() + Duration::from_millis(300);
    assert!(server.run_once_at(later, Some(Duration::ZERO)).unwrap());
    server.with_context(|ctx, _| ctx.set_timer(Duration::from_millis(200), 1));
    let t = server.next_timeout().unwrap();
    assert!(
        t <= Duration::from_millis(210) && t >= Duration::from_millis(50),
        "{t:?}"
    );
    // On Linux a pass arms the loop's timer, and the descriptor itself
    // turns readable when it is due: a program that only polls it is woken.
    #[cfg(target_os = "linux")]
    {
        assert!(server.run_once(Some(Duration::ZERO)).unwrap());
        let mut pollfd = libc::pollfd {
            fd: server.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let started = std::time::Instant::now();
        // SAFETY: one valid pollfd, for the call's duration.
        let n = unsafe { libc::poll(&mut pollfd, 1, 10_000) };
        assert_eq!(n, 1, "the timer did not make the descriptor readable");
        assert!(started.elapsed() >= Duration::from_millis(100));
    }
}
