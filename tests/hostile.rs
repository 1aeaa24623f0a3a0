//! Hostile clients and limits, one test per threat in the table of
//! docs/security.md, against the real `rookery` binary over real sockets:
//! slowloris handshakes, oversized heads, too many connections, foreign
//! origins, frames announcing more than the limit, slow consumers,
//! descriptor exhaustion, connections reset or half-closed mid-frame, and
//! peers that never answer a close frame.
//!
//! Every test starts its own server (port 0) with short timers, kills it on
//! the way out (pass or fail), and polls with generous deadlines rather than
//! asserting tight timings, so that a loaded two-core CI machine passes.
//! The deadline tests (slowloris, the handshake and close timeouts) run the
//! chat in process on a virtual clock (`common::Virtual`) instead: each
//! deadline is checked just before and after it is due, with no waiting.
//! Memory is the server's VmRSS from /proc; figures are printed (run with
//! `--nocapture` to see them).

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rookery::Config;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

mod common;

type Ws = tungstenite::WebSocket<TcpStream>;

/// How long anything that should happen "soon" may take on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(20);

// ---- the server under test ---------------------------------------------------

/// A `rookery` child process; killed (and reaped) when dropped, so a failing
/// test never leaves a server behind.
struct Rookery {
    child: Child,
    port: u16,
    log: PathBuf,
    _stdout: BufReader<ChildStdout>,
}

impl Rookery {
    /// Starts `rookery --listen 127.0.0.1:0 ARGS` and waits for its
    /// `listening on` line. Stderr (the log) goes to a file.
    fn start(args: &[&str]) -> Rookery {
        Rookery::start_with(args, None)
    }

    /// Like [`Rookery::start`], with `RLIMIT_NOFILE` set to `nofile` in the
    /// child.
    fn start_with(args: &[&str], nofile: Option<u64>) -> Rookery {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let mut cmd = common::rookery_command();
        let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "hostile-{}-{}.log",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let log_file = std::fs::File::create(&log).expect("create log file");
        cmd.args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file));
        if let Some(limit) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe and the closure touches
            // nothing but its own copy of `limit`.
            unsafe {
                cmd.pre_exec(move || {
                    let rlim = libc::rlimit {
                        rlim_cur: limit as libc::rlim_t,
                        rlim_max: limit as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &rlim) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().expect("spawn rookery");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        let Some(port) = line
            .trim()
            .rsplit_once(':')
            .filter(|_| line.starts_with("listening on 127.0.0.1:"))
            .and_then(|(_, p)| p.parse().ok())
        else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "rookery did not start: first line {line:?}, log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        Rookery {
            child,
            port,
            log,
            _stdout: stdout,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/chat", self.port)
    }

    /// Whether the process is still running.
    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The server's log so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Resident set size in KiB.
    fn rss_kib(&self) -> u64 {
        rss_kib(self.pid())
    }

    /// User plus system CPU time, in clock ticks.
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // Fields after the parenthesised command name; utime and stime are
        // fields 14 and 15 of the whole line.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    /// Open file descriptors.
    fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Drop for Rookery {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- server log ({}) ---\n{}",
                self.log.display(),
                self.log()
            );
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// Resident set size in KiB: the page tables' sum (smaps_rollup's `Rss:`),
/// exact where status's `VmRSS:` may be per-CPU counters read without their
/// pending deltas; `VmRSS:` where the rollup is unreadable.
fn rss_kib(pid: u32) -> u64 {
    let field = |file: &str, name: &str| -> Option<u64> {
        std::fs::read_to_string(format!("/proc/{pid}/{file}"))
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    field("smaps_rollup", "Rss:")
        .or_else(|| field("status", "VmRSS:"))
        .unwrap_or(0)
}

/// The peak RSS of a process over a span: the kernel's high-water mark
/// (VmHWM), reset to the current RSS when the span starts (5 written to
/// /proc/PID/clear_refs). Where the reset is refused, the mark counts from
/// the process's start, which only makes the figure larger.
struct RssSampler {
    pid: u32,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
        RssSampler { pid }
    }

    fn peak(self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

/// Polls `cond` until it holds or `limit` passes.
fn wait_until(limit: Duration, cond: impl FnMut() -> bool) -> bool {
    common::eventually(limit, cond)
}

// ---- clients -----------------------------------------------------------------------

/// A tungstenite client (an independent implementation) on the chat path.
fn ws_connect(server: &Rookery) -> Ws {
    ws_over(server, tcp(server.port))
}

fn ws_over(server: &Rookery, stream: TcpStream) -> Ws {
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    match tungstenite::client(server.url(), stream) {
        Ok((ws, _)) => ws,
        Err(e) => panic!("websocket handshake failed: {e}"),
    }
}

fn tcp(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// The next data message, answering and skipping pings.
fn read_msg(ws: &mut Ws) -> Message {
    loop {
        match ws.read() {
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(msg) => return msg,
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

fn read_text(ws: &mut Ws) -> String {
    match read_msg(ws) {
        Message::Text(text) => text,
        other => panic!("expected text, got {other:?}"),
    }
}

/// A chat client: connected, welcome read.
fn chat_member(server: &Rookery) -> Ws {
    let mut ws = ws_connect(server);
    assert_eq!(read_text(&mut ws), "Welcome to Rookery Chat!");
    ws
}

/// The chat in process on a virtual clock (`common::Virtual`), with
/// `config`.
fn virtual_chat(config: Config) -> common::Virtual {
    common::Virtual::start_with(config, || {
        rookery::chat::Chat::new(rookery::chat::ChatOptions::default())
    })
}

/// A chat client of a server on a virtual clock: connected, welcome read.
fn virtual_member(server: &common::Virtual) -> Ws {
    let stream = tcp(server.addr.port());
    let mut ws = match tungstenite::client(server.url("/chat"), stream) {
        Ok((ws, _)) => ws,
        Err(e) => panic!("websocket handshake failed: {e}"),
    };
    assert_eq!(read_text(&mut ws), "Welcome to Rookery Chat!");
    ws
}

/// An upgrade request for `/chat` with extra header lines.
fn request(extra: &str) -> String {
    format!(
        "GET /chat HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

use common::read_head;

/// A raw connection upgraded on `/chat`.
fn raw_upgrade(port: u16) -> TcpStream {
    raw_upgrade_over(tcp(port))
}

fn raw_upgrade_over(mut stream: TcpStream) -> TcpStream {
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(request("").as_bytes()).unwrap();
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    stream
}

use common::client_frame as masked;
use common::read_frame;

/// Reads frames until a close frame; returns its code.
fn read_close_code(stream: &mut TcpStream) -> u16 {
    loop {
        let (first, payload) = read_frame(stream).expect("a close frame");
        if first == 0x88 {
            assert!(payload.len() >= 2, "close frame without a code");
            return u16::from_be_bytes([payload[0], payload[1]]);
        }
    }
}

/// Waits until the server has closed `stream` (EOF or reset), discarding
/// anything else that arrives. Returns how long it took.
fn wait_closed(stream: &mut TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return start.elapsed(), // reset
        }
        assert!(
            start.elapsed() < limit,
            "the server did not close the connection within {limit:?}"
        );
    }
}

/// Closes `stream` with a reset (SO_LINGER 0) instead of a FIN.
fn reset(stream: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a descriptor we own, reading `linger` only.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", io::Error::last_os_error());
    drop(stream);
}

// ---- slowloris ---------------------------------------------------------------------

/// Fifty connections that start a request head and stall, and one that
/// trickles a header line forever, are all dropped after the handshake
/// timeout, while a chat member keeps talking and a newcomer gets in.
#[test]
fn slowloris_handshakes_are_dropped_while_a_client_chats() {
    const STEP: Duration = Duration::from_millis(20);
    let server = virtual_chat(Config {
        handshake_timeout: Duration::from_millis(500),
        ..Config::default()
    });
    let port = server.addr.port();
    let mut chatter = virtual_member(&server);

    let mut stalled: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = tcp(port);
            s.write_all(b"GET /chat HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                .unwrap();
            s
        })
        .collect();
    // Never a blank line: only the timeout can end this head.
    let mut trickle = tcp(port);
    let mut line = b"GET /chat HTTP/1.1\r\n"
        .iter()
        .chain(b"X-A: b\r\n".iter().cycle());
    let mut trickled = None;
    server.settle();

    // 1.5 s of the server's clock in steps of 20 ms: a byte of the
    // trickling head and a chat message each, and a newcomer joins at 200 ms.
    let mut sent = 0;
    let mut newcomer = None;
    for step in 0..75u32 {
        if trickled.is_none() && trickle.write_all(&[*line.next().unwrap()]).is_err() {
            trickled = Some(STEP * step);
        }
        let text = format!("message {sent}");
        chatter.send(Message::text(text.clone())).unwrap();
        assert_eq!(read_text(&mut chatter), text);
        sent += 1;
        if step == 10 {
            newcomer = Some(virtual_member(&server));
        }
        server.advance(STEP);
    }

    for s in &mut stalled {
        wait_closed(s, PATIENCE);
    }
    assert!(
        trickled.is_some_and(|t| t >= Duration::from_millis(500)),
        "a trickling head was dropped early or never ({trickled:?}; it must not reset the timeout)"
    );

    // The members were never disturbed.
    let mut newcomer = newcomer.expect("newcomer");
    chatter.send(Message::text("after the storm")).unwrap();
    assert_eq!(read_text(&mut chatter), "after the storm");
    let mut seen_by_newcomer = Vec::new();
    loop {
        let text = read_text(&mut newcomer);
        if text == "after the storm" {
            break;
        }
        seen_by_newcomer.push(text);
    }
    // The newcomer saw a contiguous run of the chatter's messages.
    for pair in seen_by_newcomer.windows(2) {
        let n = |s: &str| s["message ".len()..].parse::<usize>().unwrap();
        assert_eq!(n(&pair[1]), n(&pair[0]) + 1, "{seen_by_newcomer:?}");
    }
    println!(
        "slowloris: {sent} messages during the storm, trickler dropped after {:?} of the server's clock",
        trickled.unwrap()
    );
}

/// The handshake timeout counts from the connection, not from whenever the
/// server last woke up: after a long idle spell a client still gets the
/// whole timeout to send its request.
#[test]
fn handshake_timeout_counts_from_the_connection() {
    let server = virtual_chat(Config {
        handshake_timeout: Duration::from_secs(2),
        ping_interval: Duration::ZERO,
        idle_timeout: Duration::ZERO,
        ..Config::default()
    });
    // Nothing is due: the server's clock runs 2.5 s with no timer.
    server.advance(Duration::from_millis(2500));
    let mut s = tcp(server.addr.port());
    let mut late = tcp(server.addr.port());
    server.settle();
    server.advance(Duration::from_millis(300));
    s.write_all(request("").as_bytes()).unwrap();
    let head = read_head(&mut s);
    assert!(
        head.starts_with("HTTP/1.1 101 "),
        "a client 300 ms into a 2 s handshake timeout was dropped: {head:?}"
    );
    // The silent one goes 2 s after it came.
    server.advance(Duration::from_millis(1800));
    wait_closed(&mut late, PATIENCE);
}

// ---- request head cap -------------------------------------------------------------

/// A head over 8 KiB gets 431 and is closed; so does one with too many
/// fields; one just within the cap upgrades.
#[test]
fn request_head_over_8_kib_gets_431() {
    let server = Rookery::start(&["-q"]);
    let base_len = request("").len();

    // One byte over, sent in small pieces, as a slow client would.
    let filler = "X-Filler: ".len() + 2;
    let over = request(&format!(
        "X-Filler: {}\r\n",
        "a".repeat(8193 - base_len - filler)
    ));
    assert_eq!(over.len(), 8193);
    let mut s = tcp(server.port);
    for piece in over.as_bytes().chunks(1000) {
        let _ = s.write_all(piece);
    }
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 431 "), "{head}");
    wait_closed(&mut s, PATIENCE);

    // Far over, in one write: refused without reading it all.
    let mut s = tcp(server.port);
    let huge = request(&format!("X-Filler: {}\r\n", "a".repeat(200_000)));
    let _ = s.write_all(huge.as_bytes());
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 431 "), "{head}");

    // Too many header fields.
    let many: String = (0..70).map(|i| format!("X-H{i}: v\r\n")).collect();
    let mut s = tcp(server.port);
    s.write_all(request(&many).as_bytes()).unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 431 "), "{head}");

    // Exactly 8 KiB is allowed.
    let exact = request(&format!(
        "X-Filler: {}\r\n",
        "a".repeat(8192 - base_len - filler)
    ));
    assert_eq!(exact.len(), 8192);
    let mut s = tcp(server.port);
    s.write_all(exact.as_bytes()).unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(server.rss_kib() > 0);
}

// ---- connection limit ---------------------------------------------------------------

/// With `--max-connections 10`, the eleventh gets 503 and is closed; the ten
/// keep chatting; when one leaves, a newcomer gets in.
#[test]
fn connection_over_the_limit_gets_503_and_the_others_are_untouched() {
    let server = Rookery::start(&["--max-connections", "10", "-q"]);
    let mut members: Vec<Ws> = (0..10).map(|_| chat_member(&server)).collect();

    let mut eleventh = tcp(server.port);
    let _ = eleventh.write_all(request("").as_bytes());
    let head = read_head(&mut eleventh);
    assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
    wait_closed(&mut eleventh, PATIENCE);

    // Several more at once: all refused, none admitted.
    let mut refused: Vec<TcpStream> = (0..20).map(|_| tcp(server.port)).collect();
    for s in &mut refused {
        let head = read_head(s);
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
    }

    // Every member still hears every other.
    for (i, member) in members.iter_mut().enumerate() {
        member.send(Message::text(format!("from {i}"))).unwrap();
    }
    for member in &mut members {
        let got: Vec<String> = (0..10).map(|_| read_text(member)).collect();
        let want: Vec<String> = (0..10).map(|i| format!("from {i}")).collect();
        assert_eq!(got, want);
    }

    // One leaves (closing handshake); a newcomer gets in.
    let mut leaving = members.pop().unwrap();
    leaving.close(None).unwrap();
    while leaving.read().is_ok() {}
    drop(leaving);
    let admitted = wait_until(PATIENCE, || {
        let mut s = tcp(server.port);
        if s.write_all(request("").as_bytes()).is_err() {
            return false;
        }
        read_head(&mut s).starts_with("HTTP/1.1 101 ")
    });
    assert!(admitted, "no room made when a member left");
}

// ---- rates ---------------------------------------------------------------------------

/// A client flooding the chat is closed with 1008 once past its burst, and
/// a member that reads gets at most that burst of it and stays open.
#[test]
fn a_flooder_is_closed_1008_by_the_rate_limit_and_a_member_is_not() {
    let server = Rookery::start(&["--rate-limit", "20/s:40", "-q"]);
    let mut member = chat_member(&server);
    let mut flooder = raw_upgrade(server.port);
    let upgraded = Instant::now();
    let flood: Vec<u8> = (0..1000).flat_map(|_| masked(0x81, b"flood")).collect();
    // The server may close before taking it all: a failed write is fine.
    let _ = flooder.write_all(&flood);
    assert_eq!(read_close_code(&mut flooder), 1008);
    // What the bucket refilled by the time the flooder was closed, at most.
    let refilled = (upgraded.elapsed().as_secs_f64() * 20.0).ceil() as usize;
    drop(flooder);
    member.send(Message::text("still here")).unwrap();
    let mut floods = 0;
    loop {
        match read_text(&mut member).as_str() {
            "flood" => floods += 1,
            "still here" => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    // The burst of 40, and what refilled while the flood came in.
    assert!(
        (40..=40 + refilled).contains(&floods),
        "{floods} floods relayed, {refilled} refilled"
    );
}

/// A TCP connection to 127.0.0.1:`port` from the loopback address
/// 127.0.0.`host` (Linux routes all of 127/8 to the loopback interface).
fn tcp_from(host: u8, port: u16) -> TcpStream {
    let sockaddr = |a: [u8; 4], port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor we own (the stream owns it
    // from the start); the addresses outlive the calls that read them.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
        let stream = TcpStream::from_raw_fd(fd);
        let local = sockaddr([127, 0, 0, host], 0);
        let rc = libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len);
        assert_eq!(rc, 0, "bind: {}", io::Error::last_os_error());
        let remote = sockaddr([127, 0, 0, 1], port);
        let rc = libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len);
        assert_eq!(rc, 0, "connect: {}", io::Error::last_os_error());
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream
    }
}

/// One address trickling handshakes holds at most its share of the
/// connections: past `--max-connections-per-ip` it gets 503, while other
/// addresses still get in and a slot it gives up is its own again.
#[test]
fn one_address_gets_503_past_its_share_and_others_still_get_in() {
    let server = Rookery::start(&[
        "--max-connections",
        "100",
        "--max-connections-per-ip",
        "3",
        "-q",
    ]);
    // Three handshakes begun and never finished hold their slots.
    let mut tricklers: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = tcp_from(1, server.port);
            s.write_all(b"GET /chat HTTP/1.1\r\nHost: x\r\n").unwrap();
            s
        })
        .collect();
    for _ in 0..5 {
        let mut fourth = tcp_from(1, server.port);
        let _ = fourth.write_all(request("").as_bytes());
        let head = read_head(&mut fourth);
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
    }
    // Another address is not affected, up to its own share.
    let mut others: Vec<TcpStream> = (0..3)
        .map(|_| raw_upgrade_over(tcp_from(2, server.port)))
        .collect();
    let mut over = tcp_from(2, server.port);
    let _ = over.write_all(request("").as_bytes());
    assert!(read_head(&mut over).starts_with("HTTP/1.1 503 "));
    // An upgraded connection counts as well as a handshake: one closes,
    // and its address has a slot again.
    reset(others.pop().expect("three upgraded"));
    assert!(
        wait_until(PATIENCE, || {
            let mut s = tcp_from(2, server.port);
            s.write_all(request("").as_bytes()).is_ok()
                && read_head(&mut s).starts_with("HTTP/1.1 101 ")
        }),
        "no slot given back to 127.0.0.2"
    );
    reset(tricklers.pop().expect("three handshakes"));
    assert!(
        wait_until(PATIENCE, || {
            let mut s = tcp_from(1, server.port);
            s.write_all(request("").as_bytes()).is_ok()
                && read_head(&mut s).starts_with("HTTP/1.1 101 ")
        }),
        "no slot given back to 127.0.0.1"
    );
}

// ---- origin allow-list ----------------------------------------------------------------

#[test]
fn origin_outside_the_allow_list_gets_403() {
    let server = Rookery::start(&[
        "--allow-origin",
        "https://good.example",
        "--allow-origin",
        "https://also.example",
        "-q",
    ]);
    let status = |origin: Option<&str>| {
        let mut s = tcp(server.port);
        let extra = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
        s.write_all(request(&extra).as_bytes()).unwrap();
        read_head(&mut s)
    };
    let head = status(Some("https://evil.example"));
    assert!(head.starts_with("HTTP/1.1 403 "), "{head}");
    let head = status(Some("https://good.example.evil.example"));
    assert!(head.starts_with("HTTP/1.1 403 "), "{head}");
    for good in ["https://good.example", "https://also.example"] {
        let head = status(Some(good));
        assert!(head.starts_with("HTTP/1.1 101 "), "{good}: {head}");
    }
    // Not a browser (no Origin): the list does not apply.
    let head = status(None);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
}

#[test]
fn two_origins_get_400_and_a_default_port_matches_the_entry_without_it() {
    let server = Rookery::start(&[
        "--allow-origin",
        "https://good.example",
        "--allow-origin",
        "http://plain.example",
        "-q",
    ]);
    let head_for = |extra: &str| {
        let mut s = tcp(server.port);
        s.write_all(request(extra).as_bytes()).unwrap();
        read_head(&mut s)
    };
    // Only the first was checked once: allowed then evil got 101.
    for extra in [
        "Origin: https://good.example\r\nOrigin: https://evil.example\r\n",
        "Origin: https://evil.example\r\nOrigin: https://good.example\r\n",
        "Origin: https://good.example\r\norigin: https://good.example\r\n",
    ] {
        let head = head_for(extra);
        assert!(head.starts_with("HTTP/1.1 400 "), "{extra:?}: {head}");
    }
    for origin in ["https://good.example:443", "http://plain.example:80"] {
        let head = head_for(&format!("Origin: {origin}\r\n"));
        assert!(head.starts_with("HTTP/1.1 101 "), "{origin}: {head}");
    }
    for origin in ["https://good.example:8443", "http://plain.example:443"] {
        let head = head_for(&format!("Origin: {origin}\r\n"));
        assert!(head.starts_with("HTTP/1.1 403 "), "{origin}: {head}");
    }
}

// ---- message size limit ------------------------------------------------------------------

/// A header announcing 2^40 bytes is answered with 1009 at once, and the
/// payload that follows is never buffered: the server's RSS does not move.
#[test]
fn frame_announcing_2_pow_40_bytes_gets_1009_without_buffering() {
    let server = Rookery::start(&["--mode", "echo", "-q"]);
    let mut header = vec![0x82, 0xFF];
    header.extend_from_slice(&(1u64 << 40).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    // Warm up: one echo, and one such header answered, so that buffers that
    // exist anyway, and the code of that answer (which qemu-user, in the
    // cross tests, translates and keeps in its own RSS the first time it
    // runs), are counted before.
    let mut warm = ws_connect(&server);
    warm.send(Message::binary(vec![1; 1000])).unwrap();
    assert_eq!(read_msg(&mut warm), Message::binary(vec![1; 1000]));
    let mut first = raw_upgrade(server.port);
    first.write_all(&header).unwrap();
    first.write_all(&[0x5A; 64 * 1024]).unwrap();
    assert_eq!(read_close_code(&mut first), 1009);
    wait_closed(&mut first, PATIENCE);
    let before = server.rss_kib();

    let mut s = raw_upgrade(server.port);
    s.write_all(&header).unwrap();
    // Then as much "payload" as the server will take, 8 MiB at most.
    let mut writer = s.try_clone().unwrap();
    writer
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let pusher = thread::spawn(move || {
        let chunk = vec![0x5A; 64 * 1024];
        let mut sent = 0usize;
        while sent < 8 << 20 {
            match writer.write(&chunk) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        sent
    });
    assert_eq!(read_close_code(&mut s), 1009);
    let pushed = pusher.join().unwrap();
    let after = server.rss_kib();
    println!(
        "2^40 header: RSS {before} KiB before, {after} KiB after ({pushed} payload bytes pushed)"
    );
    assert!(
        after < before + 2048,
        "RSS grew from {before} to {after} KiB"
    );
    wait_closed(&mut s, PATIENCE);

    // Over the limit by one byte, and over it across fragments.
    let mut s = raw_upgrade(server.port);
    let mut frame = masked(0x82, &vec![0; (1 << 20) + 1]);
    frame.truncate(14 + 1000);
    let _ = s.write_all(&frame);
    assert_eq!(read_close_code(&mut s), 1009);
    let mut s = raw_upgrade(server.port);
    s.write_all(&masked(0x02, &vec![7; 700 * 1024])).unwrap();
    let mut second = masked(0x80, &vec![7; 400 * 1024]);
    second.truncate(14);
    s.write_all(&second).unwrap();
    assert_eq!(read_close_code(&mut s), 1009);

    // The server is fine.
    warm.send(Message::text("still here")).unwrap();
    assert_eq!(read_msg(&mut warm), Message::text("still here"));
}

// ---- slow consumers ------------------------------------------------------------------------

/// A member that never reads, under 20 MiB of broadcast: closed with 1008
/// once its queue passes `--max-backlog` (and the event is logged); the
/// others receive everything in order; the server's RSS stays within about
/// connections × max-backlog.
#[test]
fn slow_consumer_is_closed_1008_and_the_others_get_everything() {
    const SIZE: usize = 16 * 1024;
    const COUNT: usize = 1280; // 20 MiB
    const BATCH: usize = 16;
    const WINDOW: usize = 48; // messages the reader may lag behind
    let server = Rookery::start(&[
        "--max-backlog",
        "1MiB",
        "--close-timeout",
        "60s",
        "--ping-interval",
        "0",
        "-q",
    ]);
    // The slow consumer: a small receive buffer, and it never reads.
    let mut slow = ws_over(
        &server,
        common::tcp_with_buffers(([127, 0, 0, 1], server.port).into(), Some(4096), None),
    );
    let mut sender = chat_member(&server);
    let mut reader = chat_member(&server);
    let before = server.rss_kib();
    let sampler = RssSampler::start(server.pid());

    let received = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&received);
    let reader_thread = thread::spawn(move || {
        for i in 0..COUNT {
            let text = read_text(&mut reader);
            assert_eq!(text.len(), SIZE, "message {i}");
            assert_eq!(&text[..7], format!("{i:06} "), "out of order");
            counter.store(i + 1, Ordering::SeqCst);
        }
        reader
    });

    let pad = "x".repeat(SIZE - 7);
    let started = Instant::now();
    for batch in 0..COUNT / BATCH {
        for j in 0..BATCH {
            let i = batch * BATCH + j;
            sender
                .write(Message::text(format!("{i:06} {pad}")))
                .unwrap();
        }
        sender.flush().unwrap();
        // The sender is a member too: it gets its own messages back.
        for j in 0..BATCH {
            let text = read_text(&mut sender);
            assert_eq!(&text[..7], format!("{:06} ", batch * BATCH + j));
        }
        // Keep the reading member within a window, so that only the member
        // that does not read at all can fall behind by a megabyte.
        let sent = (batch + 1) * BATCH;
        assert!(
            wait_until(PATIENCE, || received.load(Ordering::SeqCst) + WINDOW
                >= sent),
            "the reading member stalled at {}",
            received.load(Ordering::SeqCst)
        );
    }
    let mut reader = reader_thread.join().unwrap();
    let peak = sampler.peak();
    let elapsed = started.elapsed();
    let after = server.rss_kib();
    println!(
        "slow consumer: RSS {before} KiB before, peak {peak} KiB, {after} KiB after \
         20 MiB of broadcast in {elapsed:?}"
    );
    let bound = before + 3 * 1024 + 4096;
    assert!(
        peak < bound,
        "RSS peaked at {peak} KiB (before {before} KiB, bound {bound} KiB)"
    );

    // The others are still members.
    sender.send(Message::text("done")).unwrap();
    assert_eq!(read_text(&mut sender), "done");
    assert_eq!(read_text(&mut reader), "done");

    // The slow consumer, reading at last, finds the welcome, an unbroken
    // run of messages from the first, then close 1008.
    assert_eq!(read_text(&mut slow), "Welcome to Rookery Chat!");
    let mut got = 0;
    let code = loop {
        match slow.read() {
            Ok(Message::Text(text)) => {
                assert_eq!(&text[..7], format!("{got:06} "));
                got += 1;
            }
            Ok(Message::Close(frame)) => break frame.map(|f| u16::from(f.code)),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) => panic!("slow consumer: {e} after {got} messages"),
        }
    };
    assert_eq!(code, Some(u16::from(CloseCode::Policy)));
    assert!(got < COUNT, "the slow consumer was never cut off");
    println!("slow consumer: cut off after {got} of {COUNT} messages");
    assert!(
        wait_until(PATIENCE, || server.log().contains("backlog limit")),
        "the 1008 close was not logged:\n{}",
        server.log()
    );
}

/// An echo client that sends without ever reading: the server stops reading
/// from it once its replies back up, so it cannot grow the server's memory;
/// when it finally reads, every reply is there, in order.
#[test]
fn echo_client_that_never_reads_cannot_grow_memory() {
    const SIZE: usize = 8 * 1024;
    let server = Rookery::start(&["--mode", "echo", "--ping-interval", "0", "-q"]);
    let mut s = raw_upgrade_over(common::tcp_with_buffers(
        ([127, 0, 0, 1], server.port).into(),
        Some(16 * 1024),
        Some(16 * 1024),
    ));
    let before = server.rss_kib();
    let sampler = RssSampler::start(server.pid());
    let mut writer = s.try_clone().unwrap();
    writer
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let writer_thread = thread::spawn(move || {
        let mut whole = 0usize;
        for i in 0u32..4096 {
            // 32 MiB in all: more than every socket buffer on the way.
            let mut payload = vec![(i % 251) as u8; SIZE];
            payload[..4].copy_from_slice(&i.to_be_bytes());
            match writer.write_all(&masked(0x82, &payload)) {
                Ok(()) => whole += 1,
                Err(e) => return (whole, Some(e.kind())),
            }
        }
        (whole, None)
    });
    let (whole, error) = writer_thread.join().unwrap();
    let peak = sampler.peak();
    println!(
        "non-reading echo client: {whole} messages sent before the server stopped reading; \
         RSS {before} KiB before, peak {peak} KiB"
    );
    assert!(
        matches!(error, Some(ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "the server kept reading from a client that never reads ({whole} messages, {error:?})"
    );
    assert!(peak < before + 4096, "RSS grew from {before} to {peak} KiB");

    // Others are served meanwhile.
    let mut other = ws_connect(&server);
    other.send(Message::text("hello")).unwrap();
    assert_eq!(read_msg(&mut other), Message::text("hello"));

    // Reading at last: every reply the server made, in order, then nothing
    // (the last message was cut by the write timeout, so it has no reply).
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut next = 0u32;
    loop {
        match read_frame(&mut s) {
            Ok((first, payload)) => {
                assert_eq!(first, 0x82);
                assert_eq!(payload.len(), SIZE);
                assert_eq!(u32::from_be_bytes(payload[..4].try_into().unwrap()), next);
                next += 1;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("after {next} replies: {e}"),
        }
    }
    assert_eq!(next as usize, whole, "replies for {whole} whole messages");
}

/// A client that keeps up is never taken for a slow consumer: the largest
/// message the server accepts is echoed even with the backlog limit equal to
/// it, and a burst larger than the backlog limit is echoed whole.
#[test]
fn a_client_that_keeps_up_is_never_a_slow_consumer() {
    let server = Rookery::start(&[
        "--mode",
        "echo",
        "--max-message",
        "1MiB",
        "--max-backlog",
        "1MiB",
        "-q",
    ]);
    let mut ws = ws_connect(&server);
    let big: Vec<u8> = (0..1 << 20).map(|i| (i % 253) as u8).collect();
    ws.send(Message::binary(big.clone())).unwrap();
    assert_eq!(read_msg(&mut ws), Message::binary(big));

    let server = Rookery::start(&["--mode", "echo", "--max-backlog", "16KiB", "-q"]);
    let mut s = raw_upgrade(server.port);
    let mut reader = s.try_clone().unwrap();
    let reader_thread = thread::spawn(move || {
        for i in 0..200u32 {
            let (first, payload) = read_frame(&mut reader).unwrap();
            assert_eq!(first, 0x82, "message {i}");
            assert_eq!(payload[..4], i.to_be_bytes());
        }
    });
    let mut burst = Vec::new();
    for i in 0..200u32 {
        let mut payload = vec![0u8; 500];
        payload[..4].copy_from_slice(&i.to_be_bytes());
        burst.extend(masked(0x82, &payload));
    }
    s.write_all(&burst).unwrap();
    reader_thread.join().unwrap();
}

// ---- descriptor exhaustion -------------------------------------------------------------------

/// Out of file descriptors, the server pauses accepting instead of spinning
/// on EMFILE, stays up, and serves new clients once descriptors free up.
#[test]
fn fd_exhaustion_pauses_accepting_without_spinning() {
    let server = Rookery::start_with(
        &["--handshake-timeout", "0", "--ping-interval", "0"],
        Some(64),
    );
    let base = server.fd_count();
    let capacity = 64 - base;
    // More connections than descriptors; the extra ones wait in the backlog.
    let extra = 20;
    let mut clients: Vec<TcpStream> = (0..capacity + extra).map(|_| tcp(server.port)).collect();
    assert!(
        wait_until(PATIENCE, || server.fd_count() >= 64),
        "descriptors never ran out ({} open)",
        server.fd_count()
    );

    // Exhausted for a while: the server must sleep, not spin.
    let cpu_before = server.cpu_ticks();
    let wall = Instant::now();
    thread::sleep(Duration::from_millis(1500));
    let cpu = server.cpu_ticks() - cpu_before;
    let elapsed = wall.elapsed();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let cpu_time = Duration::from_millis(cpu * 1000 / hz);
    println!("EMFILE: {cpu_time:?} of CPU in {elapsed:?} while out of descriptors");
    assert!(
        cpu_time < elapsed / 4,
        "the server spun: {cpu_time:?} of CPU in {elapsed:?}"
    );
    let mut server = server;
    assert!(server.alive(), "the server died");
    let pauses = server.log().matches("pausing accepts").count();
    assert!(pauses >= 1, "no pause was logged");
    assert!(pauses < 200, "{pauses} pauses logged: a busy loop");

    // Free 40 descriptors: the waiting connections are accepted, then new
    // clients, one after another, are served.
    for client in clients.drain(..40) {
        drop(client);
    }
    assert!(
        wait_until(PATIENCE, || server.fd_count()
            == base + capacity + extra - 40),
        "the waiting connections were not accepted ({} descriptors open)",
        server.fd_count()
    );
    for i in 0..5 {
        let mut ws = ws_connect(&server);
        assert_eq!(read_text(&mut ws), "Welcome to Rookery Chat!", "client {i}");
    }
    assert!(server.alive());
}

// ---- connections that vanish mid-frame ---------------------------------------------------------

/// Connections reset or half-closed in the middle of a frame (with part of
/// a fragmented message buffered), in the middle of a request head, or as
/// soon as they are made, are removed at once with their buffers: the
/// server's descriptors return to where they were, without waiting for any
/// timeout.
#[test]
fn reset_or_half_close_mid_frame_frees_the_connection() {
    let server = Rookery::start(&[
        "--mode",
        "echo",
        "--handshake-timeout",
        "60s",
        "--close-timeout",
        "60s",
        "--idle-timeout",
        "0",
        "--ping-interval",
        "0",
        "-q",
    ]);
    let base = server.fd_count();
    // Connections reset as soon as they are made, before or after the server
    // accepts them (the aborted-connection errors of accept).
    for _ in 0..50 {
        reset(tcp(server.port));
    }
    assert!(
        wait_until(PATIENCE, || server.fd_count() == base),
        "{} descriptors after 50 instant resets (base {base})",
        server.fd_count()
    );

    let mut conns = Vec::new();
    for _ in 0..30 {
        let mut s = raw_upgrade(server.port);
        // A first fragment, then half of the second.
        s.write_all(&masked(0x02, &vec![b'a'; 32 * 1024])).unwrap();
        let second = masked(0x80, &vec![b'b'; 64 * 1024]);
        s.write_all(&second[..second.len() / 2]).unwrap();
        conns.push(s);
    }
    for _ in 0..10 {
        let mut s = tcp(server.port);
        s.write_all(b"GET /chat HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgr")
            .unwrap();
        conns.push(s);
    }
    assert!(
        wait_until(PATIENCE, || server.fd_count() == base + 40),
        "{} descriptors for 40 connections over {base}",
        server.fd_count()
    );
    let mid = server.rss_kib();

    let mut half_closed = Vec::new();
    for (i, s) in conns.into_iter().enumerate() {
        if i % 2 == 0 {
            reset(s);
        } else {
            s.shutdown(Shutdown::Write).unwrap();
            half_closed.push(s);
        }
    }
    assert!(
        wait_until(PATIENCE, || server.fd_count() == base),
        "{} descriptors left after every peer went away (base {base})",
        server.fd_count()
    );
    for s in &mut half_closed {
        wait_closed(s, PATIENCE);
    }
    println!(
        "vanished mid-frame: RSS {mid} KiB with 40 half-finished connections, {} KiB after",
        server.rss_kib()
    );

    let mut ws = ws_connect(&server);
    ws.send(Message::text("still here")).unwrap();
    assert_eq!(read_msg(&mut ws), Message::text("still here"));
}

// ---- closing handshake ---------------------------------------------------------------------------

/// A peer that never answers our close frame is dropped after
/// `--close-timeout`, even if it keeps sending data meanwhile.
#[test]
fn peer_that_never_answers_our_close_is_dropped_after_the_close_timeout() {
    let server = virtual_chat(Config {
        close_timeout: Duration::from_millis(500),
        ping_interval: Duration::ZERO,
        ..Config::default()
    });
    let mut s = raw_upgrade(server.addr.port());
    let (first, welcome) = read_frame(&mut s).unwrap();
    assert_eq!(
        (first, welcome.as_slice()),
        (0x81, &b"Welcome to Rookery Chat!"[..])
    );
    // The chat refuses binary messages: close 1003, and it waits for ours.
    s.write_all(&masked(0x82, b"\x00\x01")).unwrap();
    assert_eq!(read_close_code(&mut s), 1003);
    // Data every 50 ms of the server's clock, never a close frame: kept
    // for 450 ms, dropped by 550 ms.
    for _ in 0..9 {
        s.write_all(&masked(0x81, b"are you there?")).unwrap();
        server.settle();
        server.advance(Duration::from_millis(50));
    }
    s.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let open = matches!(s.read(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock);
    s.set_nonblocking(false).unwrap();
    assert!(open, "dropped before the close timeout");
    server.advance(Duration::from_millis(100));
    let _ = s.write_all(&masked(0x81, b"are you there?"));
    wait_closed(&mut s, PATIENCE);

    // A peer that answers is let go at once, without the timeout.
    let mut s = raw_upgrade(server.addr.port());
    read_frame(&mut s).unwrap();
    s.write_all(&masked(0x82, b"\x00")).unwrap();
    assert_eq!(read_close_code(&mut s), 1003);
    s.write_all(&masked(0x88, &1003u16.to_be_bytes())).unwrap();
    let answered = Instant::now();
    wait_closed(&mut s, PATIENCE);
    assert!(answered.elapsed() < Duration::from_secs(5));
}
