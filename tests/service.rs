//! Running under systemd: socket activation through the real
//! `systemd-socket-activate` (Debian package `systemd`; skipped, with a
//! message, when it is missing unless `ROOKERY_REQUIRE_SYSTEMD=1`), and the
//! notification protocol against a datagram socket bound by the test (a
//! path, and an abstract `@name`), for the `rookery` binary and for the
//! library's `Notified` wrapper.
#![cfg(target_os = "linux")]

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rookery::echo::Echo;
use rookery::service::{Notified, Notifier};
use rookery::{Config, ConnId, Context, Handler, Message, Server};
use tungstenite::Message as WsMessage;

/// Whether `tool` runs; if not, says SKIPPED (or fails when
/// `ROOKERY_REQUIRE_SYSTEMD` is set).
fn have(tool: &str) -> bool {
    require_program(Tool::Systemd, tool, &["--version"])
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A child killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A WebSocket client over a stream connected already.
fn client_on(stream: TcpStream, url: &str) -> Ws {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let (ws, response) = tungstenite::client::client(url, Retrying(stream)).expect("handshake");
    assert_eq!(response.status(), 101);
    ws
}

/// `rookery` under `systemd-socket-activate` with these `-l` ports and
/// `--fdname`; connects to `port` first (the tool starts the program when a
/// connection comes), chats, and returns the program's stdout and stderr.
fn chat_through_activation(ports: &[u16], fdnames: Option<&str>, port: u16) -> (String, String) {
    let mut cmd = Command::new("systemd-socket-activate");
    for p in ports {
        cmd.arg("-l").arg(format!("127.0.0.1:{p}"));
    }
    if let Some(names) = fdnames {
        cmd.arg(format!("--fdname={names}"));
    }
    // The tool passes only a few variables on; the rest with -E.
    cmd.args(["-E", "RUST_LOG=info"]);
    if let Ok(runner) = std::env::var("ROOKERY_TEST_RUNNER") {
        if !runner.is_empty() {
            cmd.arg(runner);
        }
    }
    // --listen names a port nobody connects to: the passed socket wins.
    cmd.arg(env!("CARGO_BIN_EXE_rookery"))
        .args(["--listen", "127.0.0.1:1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = Killed(cmd.spawn().expect("spawn systemd-socket-activate"));
    // The tool listens before it reads its arguments' program; wait for it.
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut stream = None;
    assert!(
        eventually(Duration::from_secs(10), || {
            stream = TcpStream::connect(addr).ok();
            stream.is_some()
        }),
        "systemd-socket-activate never listened on {addr}"
    );
    let stream = stream.expect("connected");
    let mut ws = client_on(stream, &format!("ws://{addr}/chat"));
    assert_eq!(
        next_data(&mut ws),
        WsMessage::text("Welcome to Rookery Chat!")
    );
    ws.send(WsMessage::text("hello over a passed socket"))
        .unwrap();
    assert_eq!(
        next_data(&mut ws),
        WsMessage::text("hello over a passed socket")
    );
    // SIGTERM: a graceful stop, as for a bound socket.
    // SAFETY: kill(2) on our child's pid (the tool exec'd rookery in place).
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    assert_eq!(expect_close(&mut ws), Some(1001));
    drop(ws);
    let mut stdout = String::new();
    let mut stderr = String::new();
    use std::io::Read;
    child
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status:?}\n{stderr}");
    (stdout, stderr)
}

#[test]
fn serves_the_socket_systemd_socket_activate_passes() {
    if !have("systemd-socket-activate") {
        return;
    }
    let port = free_port();
    let (stdout, stderr) = chat_through_activation(&[port], None, port);
    assert_eq!(
        stdout.lines().next(),
        Some(&*format!("listening on 127.0.0.1:{port}"))
    );
    assert!(
        stderr.contains("serving the socket passed by systemd (descriptor 3")
            && stderr.contains("instead of --listen 127.0.0.1:1"),
        "{stderr}"
    );
}

#[test]
fn among_several_passed_sockets_the_one_named_rookery() {
    if !have("systemd-socket-activate") {
        return;
    }
    let (other, ours) = (free_port(), free_port());
    let (stdout, stderr) = chat_through_activation(&[other, ours], Some("web:rookery"), ours);
    assert_eq!(
        stdout.lines().next(),
        Some(&*format!("listening on 127.0.0.1:{ours}"))
    );
    assert!(
        stderr.contains("(descriptor 4 named rookery, 127.0.0.1:"),
        "{stderr}"
    );
}

/// A datagram socket standing for the service manager's, bound at a path
/// or an abstract name; `NOTIFY_SOCKET`'s value for it.
fn manager(abstract_name: bool, tag: &str) -> (UnixDatagram, String, Option<std::path::PathBuf>) {
    let name = format!("rookery-test-{}-{tag}", std::process::id());
    if abstract_name {
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        (
            UnixDatagram::bind_addr(&addr).unwrap(),
            format!("@{name}"),
            None,
        )
    } else {
        let path = std::env::temp_dir().join(name);
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).unwrap();
        (socket, path.display().to_string(), Some(path))
    }
}

/// The next datagram that is not a watchdog ping (`None` after `limit`).
fn next_state(socket: &UnixDatagram, limit: Duration) -> Option<String> {
    socket.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 512];
    loop {
        let n = socket.recv(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text != "WATCHDOG=1" {
            return Some(text);
        }
    }
}

/// Receive times of the watchdog pings over `span`.
fn pings(socket: &UnixDatagram, span: Duration) -> Vec<Instant> {
    let end = Instant::now() + span;
    let mut at = Vec::new();
    let mut buf = [0u8; 512];
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match socket.recv(&mut buf) {
            Ok(n) if &buf[..n] == b"WATCHDOG=1" => at.push(Instant::now()),
            Ok(n) => panic!("unexpected {:?}", String::from_utf8_lossy(&buf[..n])),
            Err(_) => break,
        }
    }
    at
}

#[test]
fn the_binary_tells_the_manager_ready_reloading_stopping_and_pings() {
    for abstract_name in [false, true] {
        let (socket, value, path) = manager(abstract_name, "bin");
        let mut cmd = rookery_command();
        cmd.args(["--listen", "127.0.0.1:0", "-q"])
            .env("NOTIFY_SOCKET", &value)
            // A ping every 50 ms.
            .env("WATCHDOG_USEC", "100000")
            .env_remove("WATCHDOG_PID")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = Killed(cmd.spawn().expect("spawn rookery"));
        let mut line = String::new();
        BufReader::new(child.0.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap()
            .to_string();
        assert_eq!(
            next_state(&socket, Duration::from_secs(10)).as_deref(),
            Some("READY=1"),
            "{value}"
        );
        let mut ws = connect(&format!("ws://{addr}/chat"));
        assert_eq!(
            next_data(&mut ws),
            WsMessage::text("Welcome to Rookery Chat!")
        );
        let got = pings(&socket, Duration::from_millis(600));
        assert!(got.len() >= 3, "{} pings in 600 ms at 50 ms", got.len());

        let pid = child.0.id() as i32;
        let before = monotonic_usec();
        // SAFETY: kill(2) on our child.
        unsafe { libc::kill(pid, libc::SIGHUP) };
        let reloading = next_state(&socket, Duration::from_secs(10)).unwrap();
        let after = monotonic_usec();
        let usec = reloading
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .unwrap_or_else(|| panic!("{reloading:?}"));
        let usec: u64 = usec.parse().unwrap();
        assert!(
            (before..=after).contains(&usec),
            "CLOCK_MONOTONIC: {usec} not in {before}..={after}"
        );
        assert_eq!(
            next_state(&socket, Duration::from_secs(10)).as_deref(),
            Some("READY=1")
        );
        // Still serving after the reload.
        ws.send(WsMessage::text("after the reload")).unwrap();
        assert_eq!(next_data(&mut ws), WsMessage::text("after the reload"));

        // SAFETY: kill(2) on our child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(
            next_state(&socket, Duration::from_secs(10)).as_deref(),
            Some("STOPPING=1")
        );
        assert_eq!(expect_close(&mut ws), Some(1001));
        drop(ws);
        assert!(child.0.wait().unwrap().success());
        if let Some(path) = path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Echo, but a message "block" holds the loop for 400 ms, and every open
/// is told to the manager's socket too (so that the order of datagrams is
/// the order of events on the loop).
struct Blocking {
    told: Notifier,
}

impl Handler for Blocking {
    fn on_open(&mut self, _ctx: &mut Context<'_>, _conn: ConnId) {
        self.told.send("OPEN").unwrap();
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: Message<'_>) {
        if msg.as_bytes() == b"block" {
            std::thread::sleep(Duration::from_millis(400));
        }
        let _ = ctx.send(conn, msg);
    }
}

#[test]
fn the_watchdog_pings_come_from_the_loop_and_stop_while_it_is_blocked() {
    // A path here; the binary's test above takes both kinds of address.
    {
        let (socket, value, path) = manager(false, "lib");
        let value = std::ffi::OsString::from(value);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // A client that connects before the server runs: it waits in the
        // backlog, and readiness must still come first.
        let early = TcpStream::connect(addr).unwrap();
        let handler = Notified::new(
            Blocking {
                told: Notifier::new(&value).unwrap(),
            },
            Some(Notifier::new(&value).unwrap()),
            Some(Duration::from_millis(50)),
        );
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut server = Server::from_listener(listener, Config::default(), handler).unwrap();
            tx.send(server.stop_handle()).unwrap();
            server.run().unwrap();
        });
        let stop = rx.recv().unwrap();
        let mut ws = client_on(early, &format!("ws://{addr}/chat"));
        assert_eq!(
            next_state(&socket, Duration::from_secs(10)).as_deref(),
            Some("READY=1")
        );
        assert_eq!(
            next_state(&socket, Duration::from_secs(10)).as_deref(),
            Some("OPEN")
        );
        let before = pings(&socket, Duration::from_millis(300));
        assert!(before.len() >= 2, "{} pings in 300 ms", before.len());

        ws.send(WsMessage::text("block")).unwrap();
        let sent = Instant::now();
        let during = pings(&socket, Duration::from_millis(1000));
        assert_eq!(next_data(&mut ws), WsMessage::text("block"));
        // No ping in the 400 ms the loop was held (a margin of 50 ms for
        // the message to reach it), then they resume.
        let held = sent + Duration::from_millis(50)..sent + Duration::from_millis(400);
        assert!(
            !during.iter().any(|t| held.contains(t)),
            "a ping while the loop was blocked: {:?}",
            during
                .iter()
                .map(|t| t.duration_since(sent))
                .collect::<Vec<_>>()
        );
        assert!(
            during
                .iter()
                .filter(|t| **t > sent + Duration::from_millis(400))
                .count()
                >= 2,
            "the pings resume: {:?}",
            during
                .iter()
                .map(|t| t.duration_since(sent))
                .collect::<Vec<_>>()
        );
        stop.stop();
        assert_eq!(
            next_state(&socket, Duration::from_secs(10)).as_deref(),
            Some("STOPPING=1")
        );
        assert_eq!(expect_close(&mut ws), Some(1001));
        drop(ws);
        thread.join().unwrap();
        if let Some(path) = path {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[test]
fn without_a_notifier_the_wrapper_only_passes_calls_on() {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let mut server = Server::bind(
            "127.0.0.1:0",
            Config::default(),
            Notified::new(Echo, None, Some(Duration::from_millis(10))),
        )
        .unwrap();
        // The first pass calls on_start.
        server
            .run_once_at(std::time::Instant::now(), Some(Duration::ZERO))
            .unwrap();
        let armed = server.next_timeout();
        tx.send((server.local_addr(), server.stop_handle(), armed))
            .unwrap();
        server.run().unwrap();
    });
    let (addr, stop, armed) = rx.recv().unwrap();
    // The server's own ping timer (5 s) is the only one.
    assert!(
        armed.is_some_and(|t| t > Duration::from_secs(1)),
        "no watchdog timer without a manager: {armed:?}"
    );
    let mut ws = connect(&format!("ws://{addr}/chat"));
    ws.send(WsMessage::text("echo")).unwrap();
    assert_eq!(next_data(&mut ws), WsMessage::text("echo"));
    stop.stop();
    assert_eq!(expect_close(&mut ws), Some(1001));
    drop(ws);
    thread.join().unwrap();
}

/// The datagrams waiting on `socket`, without waiting.
fn drain(socket: &UnixDatagram) -> Vec<String> {
    socket.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 512];
    let mut got = Vec::new();
    while let Ok(n) = socket.recv(&mut buf) {
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    got
}

#[test]
fn on_the_loops_clock_one_ping_per_period_and_none_caught_up() {
    let (socket, value, _) = manager(true, "virtual");
    let value = std::ffi::OsString::from(value);
    let config = Config {
        ping_interval: Duration::ZERO,
        ..Config::default()
    };
    let handler = Notified::new(
        Echo,
        Some(Notifier::new(&value).unwrap()),
        Some(Duration::from_millis(50)),
    );
    let mut server = Server::bind("127.0.0.1:0", config, handler).unwrap();
    let start = Instant::now();
    let pass = |server: &mut Server<_>, at: Duration| {
        assert!(server
            .run_once_at(start + at, Some(Duration::ZERO))
            .unwrap());
    };
    assert_eq!(drain(&socket), Vec::<String>::new(), "not before it runs");
    pass(&mut server, Duration::ZERO);
    assert_eq!(drain(&socket), ["READY=1"]);
    // 250 ms of the loop's clock in passes of 10 ms: a ping per 50 ms (the
    // wheel's 10 ms ticks may push one past the end).
    for step in 1..=25 {
        pass(&mut server, Duration::from_millis(10 * step));
    }
    let pings = drain(&socket);
    assert!(
        (4..=5).contains(&pings.len()) && pings.iter().all(|p| p == "WATCHDOG=1"),
        "{pings:?}"
    );
    // A loop away for 500 ms pings once when it is back, not ten times:
    // the pings say it runs now, they do not make up for lost time.
    pass(&mut server, Duration::from_millis(750));
    assert_eq!(drain(&socket), ["WATCHDOG=1"]);
    pass(&mut server, Duration::from_millis(790));
    assert_eq!(drain(&socket), Vec::<String>::new());
    pass(&mut server, Duration::from_millis(810));
    assert_eq!(drain(&socket), ["WATCHDOG=1"]);
}

/// `CLOCK_MONOTONIC` in microseconds, read the plain way, to check the
/// server's `MONOTONIC_USEC=` against.
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a live timespec that clock_gettime fills in.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) },
        0
    );
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

/// A descriptor named by the variables but not open is refused with a
/// message saying so, not taken: `sh` sets `LISTEN_PID` to its own pid and
/// `exec`s the binary (the same pid; through `ROOKERY_TEST_RUNNER` if set)
/// with descriptor 3 closed.
#[test]
fn a_passed_descriptor_that_is_not_open_is_refused() {
    let out = Command::new("sh")
        .args([
            "-c",
            "LISTEN_PID=$$; export LISTEN_PID; exec $ROOKERY_TEST_RUNNER \"$0\" \"$@\"",
        ])
        .arg(env!("CARGO_BIN_EXE_rookery"))
        .args(["--listen", "127.0.0.1:1"])
        .env("LISTEN_FDS", "1")
        .env_remove("LISTEN_FDNAMES")
        .stdin(Stdio::null())
        .output()
        .expect("run sh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr
            .contains("passed descriptor 3 is not a listening TCP socket (not an open descriptor)"),
        "{stderr}"
    );
}
