//! Helpers shared by the integration tests: running the `rookery` binary or
//! an in-process server, and a minimal raw client for what an off-the-shelf
//! client will not send (fragments, byte-at-a-time writes, bad frames); and
//! the check for an outside tool (Python, redis-server, openssl, ...) that
//! skips a test on a machine without it.
#![allow(dead_code)]

pub mod v1;

pub mod descriptor_limit;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rookery::{Config, Handler, Server, StopHandle};

/// A `Command` for the built `rookery` binary. When `ROOKERY_TEST_RUNNER`
/// is set (e.g. `qemu-aarch64-static`, by `scripts/cross-test`), the binary
/// is run through it: a cross-built binary cannot be exec'd directly where
/// binfmt_misc is not registered.
pub fn rookery_command() -> Command {
    let bin = env!("CARGO_BIN_EXE_rookery");
    match std::env::var("ROOKERY_TEST_RUNNER") {
        Ok(runner) if !runner.is_empty() => {
            let mut c = Command::new(runner);
            c.arg(bin);
            c
        }
        _ => Command::new(bin),
    }
}

// ---- outside tools -------------------------------------------------------------

/// An outside program some tests use beside Rust. A fresh machine with only
/// Rust has none of them: a test that needs one skips (see [`require`]).
#[derive(Clone, Copy, Debug)]
pub enum Tool {
    /// `python3` (or `ROOKERY_PYTHON`) with a package: `websockets`,
    /// `prometheus_client`.
    Python,
    /// `redis-server`, started by the test on a free port.
    Redis,
    /// `openssl`, to make keys that rcgen on ring cannot (RSA).
    Openssl,
    /// `curl`, an https client nobody here wrote.
    Curl,
    /// `nm` (binutils), to list the C library's symbols.
    Nm,
    /// `make`, to check the C example's Makefile.
    Make,
    /// systemd's tools (`systemd-socket-activate`, `systemd-analyze`) and
    /// `strace`, for the service tests.
    Systemd,
}

impl Tool {
    /// The variable that turns this tool's absence from a skip into a
    /// failure (`.ci/run` sets every one of them to 1).
    pub fn require_var(self) -> &'static str {
        match self {
            Tool::Python => "ROOKERY_REQUIRE_PYTHON",
            Tool::Redis => "ROOKERY_REQUIRE_REDIS",
            Tool::Openssl => "ROOKERY_REQUIRE_OPENSSL",
            Tool::Curl => "ROOKERY_REQUIRE_CURL",
            Tool::Nm => "ROOKERY_REQUIRE_NM",
            Tool::Make => "ROOKERY_REQUIRE_MAKE",
            Tool::Systemd => "ROOKERY_REQUIRE_SYSTEMD",
        }
    }

    /// How to get it, for the skip message.
    fn hint(self) -> &'static str {
        match self {
            Tool::Python => {
                "python3 -m venv ~/.venvs/rookery && ~/.venvs/rookery/bin/pip install \
                 websockets prometheus-client, then ROOKERY_PYTHON=~/.venvs/rookery/bin/python"
            }
            Tool::Redis => "apt-get install redis-server",
            Tool::Openssl => "apt-get install openssl",
            Tool::Curl => "apt-get install curl",
            Tool::Nm => "apt-get install binutils",
            Tool::Make => "apt-get install make",
            Tool::Systemd => "apt-get install systemd strace",
        }
    }
}

/// Whether a test may use `tool`, which `probe` looks for (`what` names it
/// in messages, e.g. `redis-server`). Found: `true`. Missing: prints
/// `SKIPPED: <what> not found` and returns `false`, and the test (or its
/// part that needs the tool) returns early and passes; but when the tool's
/// `ROOKERY_REQUIRE_*` variable is set (to anything but `0` or nothing) it
/// panics instead, so that CI, which installs every tool, cannot pass
/// without running the check.
pub fn require(tool: Tool, what: &str, probe: impl FnOnce() -> bool) -> bool {
    if probe() {
        return true;
    }
    let var = tool.require_var();
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string();
    if std::env::var(var).is_ok_and(|v| !v.is_empty() && v != "0") {
        panic!("{what} not found, and {var} is set ({test})");
    }
    skipped(&format!(
        "SKIPPED: {what} not found ({test}; {}; {var}=1 makes this a failure)",
        tool.hint()
    ));
    false
}

/// Prints a skip line with `eprintln!`, which the test harness captures and
/// shows for a failing test and with `--nocapture`; and, unless the output
/// is not captured anyway, once more straight to the process's stderr,
/// which the harness does not capture, so that a plain passing
/// `cargo test` shows the skip too.
fn skipped(line: &str) {
    eprintln!("{line}");
    let nocapture = std::env::args().any(|a| a == "--nocapture" || a == "--no-capture")
        || std::env::var("RUST_TEST_NOCAPTURE").is_ok_and(|v| v != "0");
    if !nocapture {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
        let _ = err.flush();
    }
}

/// Whether `program` runs (with `args`, e.g. `--version`) and exits 0.
pub fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// [`require`] for a program found by running it with `args`.
pub fn require_program(tool: Tool, program: &str, args: &[&str]) -> bool {
    require(tool, program, || runs(program, args))
}

/// The Python with the tests' packages (`websockets`, `prometheus_client`):
/// `ROOKERY_PYTHON` if set (e.g. a virtual environment's `bin/python`;
/// Debian 12's own Python refuses `pip install`), else `python3`.
pub fn python() -> String {
    std::env::var("ROOKERY_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Runs `script` with [`python()`] and returns what it printed; panics,
/// with its stderr, if it fails.
pub fn run_python(script: &str) -> String {
    let out = Command::new(python())
        .args(["-c", script])
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// [`require`] for [`python()`] able to import `module` (e.g.
/// `websockets.asyncio.client`, `prometheus_client.parser`).
pub fn require_python(module: &str) -> bool {
    let python = python();
    let what = format!("{python} with the module {module}");
    require(Tool::Python, &what, || {
        runs(&python, &["-c", &format!("import {module}")])
    })
}

/// A `rookery` child process, killed when dropped.
pub struct Rookery {
    pub child: Child,
    pub addr: SocketAddr,
    /// Everything the process wrote to stderr so far: drained by a thread so
    /// that a chatty server never blocks on a full pipe.
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    stderr_thread: Option<JoinHandle<()>>,
}

impl Rookery {
    /// Starts the binary with `args` (plus `--listen 127.0.0.1:0`, and
    /// `--io` with what `ROOKERY_IO` names when it is set, so that one test
    /// run covers one driver) and waits for its `listening on` line.
    pub fn start(args: &[&str]) -> Rookery {
        let mut cmd = rookery_command();
        cmd.args(["--listen", "127.0.0.1:0"]);
        if let Some(io) = std::env::var_os(rookery::Io::ENV).filter(|v| !v.is_empty()) {
            cmd.arg("--io").arg(io);
        }
        cmd.args(args);
        Rookery::spawn(cmd)
    }

    /// Starts `cmd` (the binary, its arguments set) with piped output and
    /// waits for its `listening on` line.
    pub fn spawn(mut cmd: Command) -> Rookery {
        match Rookery::try_spawn(&mut cmd) {
            Some(server) => server,
            None => panic!("rookery exited before listening: {cmd:?}"),
        }
    }

    /// [`Rookery::spawn`], or `None` if the process ended without
    /// listening (a refused option: its output is lost, run it again).
    pub fn try_spawn(cmd: &mut Command) -> Option<Rookery> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn rookery");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read listening line");
        if line.is_empty() {
            let _ = child.wait();
            return None;
        }
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .expect("address");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let stderr_thread = child.stderr.take().map(|pipe| {
            let sink = std::sync::Arc::clone(&stderr);
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    let mut text = sink.lock().expect("stderr lock");
                    text.push_str(&line);
                    text.push('\n');
                }
            })
        });
        Some(Rookery {
            child,
            addr,
            stderr,
            stderr_thread,
        })
    }

    /// The URL of the WebSocket path.
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// Sends a signal to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with a pid we own and a valid signal number.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let mut status = None;
        eventually(limit, || {
            status = self.child.try_wait().expect("try_wait");
            status.is_some()
        });
        status
    }

    /// Everything the process wrote to stderr; complete once it exited.
    pub fn stderr_text(&mut self) -> String {
        if self.child.try_wait().ok().flatten().is_some() {
            if let Some(thread) = self.stderr_thread.take() {
                let _ = thread.join();
            }
        }
        self.stderr.lock().expect("stderr lock").clone()
    }

    /// Resident set size in KiB: the sum over the process's page tables
    /// (/proc/PID/smaps_rollup), exact where /proc/PID/status's VmRSS may
    /// be the kernel's per-CPU counters read without their pending deltas
    /// (up to 32 pages off per CPU on some kernels); VmRSS where the
    /// rollup is unreadable.
    pub fn rss_kib(&self) -> u64 {
        self.proc_kib("smaps_rollup", "Rss:")
            .or_else(|| self.proc_kib("status", "VmRSS:"))
            .unwrap_or(0)
    }

    /// Peak resident set size in KiB, from /proc.
    pub fn peak_rss_kib(&self) -> u64 {
        self.proc_kib("status", "VmHWM:").unwrap_or(0)
    }

    /// A `kB` field of /proc/PID/`file`, if readable.
    fn proc_kib(&self, file: &str, field: &str) -> Option<u64> {
        std::fs::read_to_string(format!("/proc/{}/{file}", self.child.id()))
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

impl Drop for Rookery {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An in-process server on its own thread, stopped when dropped.
pub struct InProcess {
    pub addr: SocketAddr,
    stop: StopHandle,
    thread: Option<JoinHandle<()>>,
}

impl InProcess {
    pub fn start<H: Handler + Send + 'static>(config: Config, handler: H) -> InProcess {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut server = Server::bind("127.0.0.1:0", config, handler).expect("bind");
            tx.send((server.local_addr(), server.stop_handle()))
                .expect("send");
            server.run().expect("run");
        });
        let (addr, stop) = rx.recv().expect("server started");
        InProcess {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// Stops the server and waits for its thread.
    pub fn stop(mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            t.join().expect("server thread");
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An in-process server on its own thread and on a virtual clock: each pass
/// is `run_once_at(now)` with the clock this value keeps, so a test moves
/// time forward with [`Virtual::advance`] and sees every deadline of that
/// span handled at once, without sleeping. Stopped when dropped.
pub struct Virtual {
    pub addr: SocketAddr,
    now: std::sync::Arc<std::sync::Mutex<Instant>>,
    passes: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: StopHandle,
    thread: Option<JoinHandle<()>>,
}

/// The pass count of a [`Virtual`] server whose loop has ended.
const ENDED: u64 = u64::MAX;

impl Virtual {
    pub fn start<H: Handler + Send + 'static>(config: Config, handler: H) -> Virtual {
        Virtual::start_with(config, move || handler)
    }

    /// [`Virtual::start`] with a handler made on the server's thread, for
    /// one that may not cross threads (the chat: its history is shared
    /// frames, `Rc`s).
    pub fn start_with<H: Handler + 'static>(
        config: Config,
        make: impl FnOnce() -> H + Send + 'static,
    ) -> Virtual {
        use std::sync::atomic::Ordering;
        let now = std::sync::Arc::new(std::sync::Mutex::new(Instant::now()));
        let passes = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (tx, rx) = std::sync::mpsc::channel();
        let (clock, count) = (now.clone(), passes.clone());
        let thread = std::thread::spawn(move || {
            let mut server = Server::bind("127.0.0.1:0", config, make()).expect("bind");
            // The clock starts with the server's, so that "5 s from the
            // start" is 5 s of advances.
            *clock.lock().expect("clock") = Instant::now();
            tx.send((server.local_addr(), server.stop_handle()))
                .expect("send");
            loop {
                let at = *clock.lock().expect("clock");
                // The real wait only bounds how soon a pass notices a moved
                // clock; no deadline depends on it.
                let running = server
                    .run_once_at(at, Some(Duration::from_millis(1)))
                    .expect("pass");
                if !running {
                    // Marked before the thread ends, so that a test that saw
                    // this pass also sees the loop over (`has_stopped`).
                    count.store(ENDED, Ordering::SeqCst);
                    break;
                }
                count.fetch_add(1, Ordering::SeqCst);
            }
        });
        let (addr, stop) = rx.recv().expect("server started");
        Virtual {
            addr,
            now,
            passes,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// Moves the server's clock `by` forward and returns once a whole pass
    /// ran on the new time (its timers fired and what they sent is written).
    pub fn advance(&self, by: Duration) {
        *self.now.lock().expect("clock") += by;
        self.settle();
    }

    /// Returns once a whole pass began and ended after this call (what the
    /// sockets had by now is handled).
    pub fn settle(&self) {
        use std::sync::atomic::Ordering;
        let seen = self.passes.load(Ordering::SeqCst);
        while self.passes.load(Ordering::SeqCst) < seen.saturating_add(2) {
            if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
                return;
            }
            std::thread::yield_now();
        }
    }

    /// Asks the server to stop (it then runs until its connections closed).
    pub fn request_stop(&self) {
        self.stop.stop();
    }

    /// Whether the server's loop has ended.
    pub fn has_stopped(&self) -> bool {
        self.passes.load(std::sync::atomic::Ordering::SeqCst) == ENDED
            || self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for Virtual {
    fn drop(&mut self) {
        self.stop.stop();
        // A stopping server waits for its connections' close handshakes on
        // the virtual clock: move it past any close timeout.
        *self.now.lock().expect("clock") += Duration::from_secs(3600);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub type Ws = tungstenite::WebSocket<Retrying>;

/// A blocking socket whose reads and writes are tried again when
/// interrupted. A socket with a read timeout fails a waiting read with
/// EINTR, handler or none, when the process is stopped or frozen and then
/// resumed (signal(7)); tungstenite passes that on as a failure, and one
/// CI run lost a handshake to it (`connect: Io(... Interrupted ...)`).
pub struct Retrying(pub TcpStream);

impl Read for Retrying {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.0.read(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }
}

impl Write for Retrying {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        loop {
            match self.0.write(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Connects a tungstenite client (an independent implementation) to `url`.
pub fn connect(url: &str) -> Ws {
    try_connect(url).expect("connect")
}

/// Like [`connect`], returning the handshake error instead of panicking.
pub fn try_connect(url: &str) -> Result<Ws, Box<tungstenite::Error>> {
    use tungstenite::client::IntoClientRequest;
    let (ws, response) = try_handshake(url.into_client_request().expect("request"))?;
    assert_eq!(response.status(), 101);
    Ok(ws)
}

/// The tungstenite handshake for `request` (a `ws://` URL, headers as the
/// caller set them) over a blocking connection to its host whose reads time
/// out after 20 s, with no message size limit; the server's response too.
pub fn try_handshake(
    request: tungstenite::handshake::client::Request,
) -> Result<(Ws, tungstenite::handshake::client::Response), Box<tungstenite::Error>> {
    let authority = request
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or_default();
    let stream = TcpStream::connect(authority).expect("tcp connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let config = tungstenite::protocol::WebSocketConfig {
        max_message_size: None,
        max_frame_size: None,
        ..Default::default()
    };
    tungstenite::client::client_with_config(request, Retrying(stream), Some(config)).map_err(|e| {
        match e {
            tungstenite::HandshakeError::Failure(e) => Box::new(e),
            tungstenite::HandshakeError::Interrupted(_) => unreachable!("blocking socket"),
        }
    })
}

/// Reads the next data or close message, answering nothing itself (the
/// caller sees pings as messages too).
pub fn next(ws: &mut Ws) -> tungstenite::Message {
    ws.read().expect("read")
}

/// Reads until a text or binary message, skipping pings and pongs.
pub fn next_data(ws: &mut Ws) -> tungstenite::Message {
    loop {
        match ws.read().expect("read") {
            tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => continue,
            other => return other,
        }
    }
}

/// Reads until the connection closes, completing the closing handshake
/// (tungstenite sends its reply on the next read); returns the code of the
/// server's close frame, if any.
pub fn expect_close(ws: &mut Ws) -> Option<u16> {
    let mut code = None;
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Close(frame)) => code = frame.map(|f| u16::from(f.code)),
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) | Err(tungstenite::Error::AlreadyClosed) => {
                return code
            }
            Err(tungstenite::Error::Io(e)) if code.is_some() => {
                // The server may reset after its close frame; the code stands.
                let _ = e;
                return code;
            }
            Err(e) => panic!("unexpected error while waiting for close: {e}"),
        }
    }
}

// ---- a raw client -------------------------------------------------------------

/// A valid upgrade request for `path`.
pub fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// A masked client frame (`first`: FIN, RSV and opcode bits).
pub fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    rookery::proto::frame::encode_client_frame(&mut out, first, [0x12, 0x34, 0x56, 0x78], payload);
    out
}

/// Opens a raw TCP connection, sends the upgrade request and reads the
/// response head; returns the stream and the head.
pub fn raw_upgrade(addr: SocketAddr, path: &str, extra: &str) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    stream
        .write_all(upgrade_request(path, extra).as_bytes())
        .expect("write");
    let head = read_head(&mut stream);
    (stream, head)
}

/// Reads an HTTP response head byte by byte (so nothing after it is lost).
pub fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => head.push(byte[0]),
            // As `read_exact` does: a thread that drove a ring now closed
            // is interrupted once (see `rookery::Io::Uring`).
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("reading head: {e}"),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Reads one server frame: (first byte, payload).
pub fn read_frame(stream: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    stream.read_exact(&mut h)?;
    assert_eq!(h[1] & 0x80, 0, "server frames are never masked");
    let len = match h[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            stream.read_exact(&mut b)?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            stream.read_exact(&mut b)?;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0u8; len as usize];
    stream.read_exact(&mut payload)?;
    Ok((h[0], payload))
}

/// Reads frames until a close frame; returns its code (None if empty), or
/// `Err` if the connection ended first.
pub fn read_close(stream: &mut TcpStream) -> std::io::Result<Option<u16>> {
    loop {
        let (first, payload) = read_frame(stream)?;
        if first & 0x0F == 0x8 {
            return Ok((payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]])));
        }
    }
}

/// Sends an HTTP request and returns the status code of the reply.
pub fn http_status(addr: SocketAddr, request: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    stream.write_all(request.as_bytes()).expect("write");
    let head = read_head(&mut stream);
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A TCP connection to `addr` with its socket buffers set before
/// connecting, so that the kernel does not grow them (a receive window of
/// about `rcvbuf` bytes: a slow reader).
pub fn tcp_with_buffers(
    addr: SocketAddr,
    rcvbuf: Option<usize>,
    sndbuf: Option<usize>,
) -> TcpStream {
    use rustix::net::{socket_with, sockopt, AddressFamily, SocketFlags, SocketType};
    let family = if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let fd = socket_with(family, SocketType::STREAM, SocketFlags::CLOEXEC, None).expect("socket");
    if let Some(size) = rcvbuf {
        sockopt::set_socket_recv_buffer_size(&fd, size).expect("SO_RCVBUF");
    }
    if let Some(size) = sndbuf {
        sockopt::set_socket_send_buffer_size(&fd, size).expect("SO_SNDBUF");
    }
    rustix::net::connect(&fd, &addr).expect("connect");
    TcpStream::from(fd)
}

/// Polls `f` until it returns true or `limit` passes.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}
