//! What TLS costs the server's heap, measured with a counting allocator:
//! an idle session (the heap that server-side calls allocate and keep,
//! plus `size_of`), and a connection stuck half-way through its handshake
//! (a whole server in this process, real sockets).
//!
//! `cargo test --features tls --test tls_memory -- --nocapture` prints the
//! figures that docs/tls.md and docs/security.md quote; the tests fail if
//! an idle established session (rustls' unbuffered API, as `TlsSession`
//! uses it) costs more than 8 KiB (heap kept plus `size_of`), the most an
//! idle wss connection may, or a half handshake goes over the budget of
//! docs/security.md.

#![cfg(feature = "tls")]

mod tls_support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use rookery::echo::Echo;
use rookery::tls::{TlsSession, MAX_HANDSHAKE_INCOMING};
use rookery::{Config, Server as WsServer};
use rustls::ClientConnection;
use tls_support::*;

/// Counts the bytes allocated and freed while `COUNTING` is set on the
/// current thread, in that thread's counters (tests run on threads of
/// their own); everything else passes straight to the system.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static NET_BYTES: Cell<isize> = const { Cell::new(0) };
    static PEAK_BYTES: Cell<isize> = const { Cell::new(0) };
}

/// This thread's counted bytes: net allocated, and the peak since reset.
struct Counter;

impl Counter {
    fn net(&self) -> isize {
        NET_BYTES.with(Cell::get)
    }
    fn peak(&self) -> isize {
        PEAK_BYTES.with(Cell::get)
    }
    fn reset_peak(&self) {
        PEAK_BYTES.with(|p| p.set(self.net()));
    }
}

const NET: Counter = Counter;

fn counting() -> bool {
    COUNTING.try_with(|c| c.get()).unwrap_or(false)
}

fn add(n: isize) {
    let _ = NET_BYTES.try_with(|net| {
        let now = net.get() + n;
        net.set(now);
        let _ = PEAK_BYTES.try_with(|p| p.set(p.get().max(now)));
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees hold; the counters are side effects.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counting() {
            add(layout.size() as isize);
        }
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if counting() {
            add(-(layout.size() as isize));
        }
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if counting() {
            add(layout.size() as isize);
        }
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counting() {
            add(new_size as isize - layout.size() as isize);
        }
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` with its allocations counted.
fn counted<T>(f: impl FnOnce() -> T) -> T {
    COUNTING.with(|c| c.set(true));
    let out = f();
    COUNTING.with(|c| c.set(false));
    out
}

/// The server side under test: either API, behind one face.
trait Server {
    fn feed(&mut self, wire: &mut [u8], plain: &mut Vec<u8>);
    fn take_output(&mut self) -> Vec<u8>;
    fn send(&mut self, data: &[u8]);
}

impl Server for TlsSession {
    fn feed(&mut self, wire: &mut [u8], plain: &mut Vec<u8>) {
        counted(|| self.read_tls(wire, plain)).unwrap();
    }
    fn take_output(&mut self) -> Vec<u8> {
        let out = self.pending_output().to_vec();
        counted(|| self.consumed(out.len()));
        out
    }
    fn send(&mut self, data: &[u8]) {
        counted(|| self.write_plaintext(data)).unwrap();
    }
}

/// rustls' buffered API, for comparison.
impl Server for rustls::ServerConnection {
    fn feed(&mut self, wire: &mut [u8], plain: &mut Vec<u8>) {
        counted(|| {
            let mut rd = &wire[..];
            while !rd.is_empty() {
                self.read_tls(&mut rd).unwrap();
                self.process_new_packets().unwrap();
            }
            let mut buf = [0u8; 1024];
            while let Ok(n) = std::io::Read::read(&mut self.reader(), &mut buf) {
                if n == 0 {
                    break;
                }
                plain.extend_from_slice(&buf[..n]);
            }
        });
    }
    fn take_output(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 * 1024);
        counted(|| {
            while self.wants_write() {
                self.write_tls(&mut out).unwrap();
            }
        });
        out
    }
    fn send(&mut self, data: &[u8]) {
        counted(|| self.writer().write_all(data)).unwrap();
    }
}

/// Handshake, then one small request and reply, as a WebSocket upgrade
/// would, leaving both sides idle.
fn settle(client: &mut ClientConnection, server: &mut dyn Server) {
    let mut plain = Vec::with_capacity(1 << 20);
    let mut replied = false;
    for _ in 0..100 {
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        let mut moved = !wire.is_empty();
        if moved {
            server.feed(&mut wire, &mut plain);
        }
        if !replied && !plain.is_empty() {
            replied = true;
            server.send(REPLY);
        }
        let out = server.take_output();
        if !out.is_empty() {
            moved = true;
            let mut rd = &out[..];
            while !rd.is_empty() {
                client.read_tls(&mut rd).unwrap();
                client.process_new_packets().unwrap();
            }
            let _ = client_plaintext(client);
        }
        if !moved {
            return;
        }
    }
    panic!("did not settle");
}

const REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\r\n";
const REPLY: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";

/// Average bytes kept per idle session over `n` sessions held at once, and
/// the largest transient heap of one handshake (peak above what was held
/// before it started).
fn measure(
    n: usize,
    make_client: &dyn Fn() -> ClientConnection,
    make_server: &dyn Fn() -> Box<dyn Server>,
) -> (isize, isize) {
    let mut kept = Vec::new();
    let start = NET.net();
    let mut peak = 0;
    for _ in 0..n {
        let mut client = make_client();
        let before = NET.net();
        NET.reset_peak();
        let mut server = counted(make_server);
        client_send(&mut client, REQUEST);
        settle(&mut client, &mut *server);
        peak = peak.max(NET.peak() - before);
        kept.push((client, server));
    }
    let net = (NET.net() - start) / n as isize;
    drop(kept);
    (net, peak)
}

#[test]
fn idle_session_bytes() {
    let pair = pair();
    let config = config(&pair);
    // Fill the shared resumption cache first, so that what is measured is
    // per session and not the cache filling up (each handshake then
    // replaces one cache entry).
    for _ in 0..300 {
        let mut c = client(&pair.trust);
        let mut s = TlsSession::new(&config).unwrap();
        pump(&mut c, &mut s, usize::MAX);
    }
    let n = 32;
    let mut report = Vec::new();
    let versions: [(&str, &[&'static rustls::SupportedProtocolVersion]); 2] = [
        ("TLS 1.3", &[&rustls::version::TLS13]),
        ("TLS 1.2", &[&rustls::version::TLS12]),
    ];
    let mut worst_unbuffered = 0;
    for (name, v) in versions {
        let make_client = || client_with(&pair.trust, v);
        let cfg = config.clone();
        let (idle, peak) = measure(n, &make_client, &move || {
            Box::new(TlsSession::new(&cfg).unwrap()) as Box<dyn Server>
        });
        worst_unbuffered = worst_unbuffered.max(idle);
        report.push(format!(
            "unbuffered TlsSession, {name}: {idle} heap bytes idle per session (transient peak of one handshake: {peak})"
        ));
        let server_config = config.server_config().clone();
        let (idle, peak) = measure(n, &make_client, &move || {
            Box::new(rustls::ServerConnection::new(server_config.clone()).unwrap())
                as Box<dyn Server>
        });
        report.push(format!(
            "buffered rustls::ServerConnection, {name}: {idle} heap bytes idle per session (transient peak of one handshake: {peak})"
        ));
    }
    report.push(format!(
        "size_of: TlsSession {}, rustls::server::UnbufferedServerConnection {}, rustls::ServerConnection {}",
        std::mem::size_of::<TlsSession>(),
        std::mem::size_of::<rustls::server::UnbufferedServerConnection>(),
        std::mem::size_of::<rustls::ServerConnection>(),
    ));
    let mut err = std::io::stderr();
    for line in &report {
        let _ = writeln!(err, "tls_memory: {line}");
    }
    let total = worst_unbuffered as usize + std::mem::size_of::<TlsSession>();
    assert!(
        total <= 8 * 1024,
        "an idle wss session costs {total} bytes, over the 8 KiB budget"
    );
}

/// A ClientHello's handshake message announcing `announced` bytes of body
/// (a plausible start, then zeros), cut into handshake records of 16 KiB as
/// a client would send it: the whole of it on the wire.
fn announced_hello(announced: usize) -> Vec<u8> {
    let mut message = vec![1];
    message.extend_from_slice(&(announced as u32).to_be_bytes()[1..]);
    message.extend_from_slice(&[3, 3]);
    message.resize(4 + announced, 0);
    let mut wire = Vec::new();
    for record in message.chunks(16 * 1024) {
        wire.extend_from_slice(&[0x16, 3, 1]);
        wire.extend_from_slice(&(record.len() as u16).to_be_bytes());
        wire.extend_from_slice(record);
    }
    wire
}

/// Whether the server has closed `c` (EOF or reset); `c` is non-blocking.
fn closed_by_server(c: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    match c.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// Opens `clients.len()` connections to `server`, each sending its bytes
/// (as far as the server takes them: it may drop a connection first) and
/// then nothing; runs the server (counted) until every byte is written or
/// refused and the server has read nothing new for a few passes, all on
/// the server's clock `now` (no deadline passes meanwhile, however long it
/// takes). Returns the sockets, kept open.
fn half_handshakes(server: &mut WsServer<Echo>, now: Instant, clients: &[&[u8]]) -> Vec<TcpStream> {
    let addr = server.local_addr();
    let mut peers: Vec<(TcpStream, &[u8])> = Vec::with_capacity(clients.len());
    let received = |s: &mut WsServer<Echo>| s.with_context(|ctx, _| ctx.stats().bytes_received);
    for &bytes in clients {
        let c = TcpStream::connect(addr).unwrap();
        c.set_nonblocking(true).unwrap();
        peers.push((c, bytes));
        counted(|| server.run_once_at(now, Some(Duration::ZERO))).unwrap();
    }
    let start = Instant::now();
    let mut last = received(server);
    let mut quiet = 0;
    while quiet < 3 {
        assert!(start.elapsed() < Duration::from_secs(20), "server stalled");
        for (c, rest) in peers.iter_mut() {
            match c.write(rest) {
                Ok(n) => *rest = &rest[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                // Dropped by the server: the rest is refused.
                Err(_) => *rest = &[],
            }
        }
        counted(|| server.run_once_at(now, Some(Duration::from_millis(10)))).unwrap();
        let now = received(server);
        let written = peers.iter().all(|(_, rest)| rest.is_empty());
        quiet = if now == last && written { quiet + 1 } else { 0 };
        last = now;
    }
    peers.into_iter().map(|(c, _)| c).collect()
}

/// A connection that sends part of a ClientHello and then nothing: what
/// the server keeps for it, and that it gives all of it back once the
/// handshake timeout has closed the connection. Two kinds of peer: one
/// that announces a ClientHello of 65,000 bytes and sends all but the
/// last 100 bytes of it over four 16 KiB records (rustls joins a handshake
/// message in the caller's buffer, so before the cap the session kept all
/// of it, 66,962 bytes per connection counted here, until the timeout),
/// and one that sends all but the last byte of the largest ClientHello the
/// session takes (`MAX_HANDSHAKE_INCOMING`), the worst a stuck handshake
/// can cost.
#[test]
fn a_stuck_half_handshake_holds_a_bounded_heap_and_gives_it_back() {
    const EACH: usize = 100;
    /// The budget of docs/security.md for a connection in its TLS
    /// handshake, all of the server's heap for it included.
    const BUDGET: isize = MAX_HANDSHAKE_INCOMING as isize + 3 * 1024;
    let pair = pair();
    let tls = config(&pair);
    let config = Config {
        // Nothing but the handshake timeout runs.
        ping_interval: Duration::ZERO,
        idle_timeout: Duration::ZERO,
        close_timeout: Duration::ZERO,
        handshake_timeout: Duration::from_secs(5),
        max_connections: 4 * EACH,
        ..Config::default()
    };
    let mut server = WsServer::bind("127.0.0.1:0", config, Echo).unwrap();
    server.set_tls(tls);
    let mut huge = announced_hello(65_000);
    huge.truncate(huge.len() - 100);
    // The largest ClientHello the session takes (8 KiB with its headers),
    // all but its last byte.
    let mut most = announced_hello(MAX_HANDSHAKE_INCOMING - 9);
    assert_eq!(most.len(), MAX_HANDSHAKE_INCOMING);
    most.pop();
    let mut now = Instant::now();
    // Round 0 warms up every table the server keeps (its slots, the timer
    // wheel's slots); round 1 is the one measured.
    for round in 0..2 {
        for (name, bytes) in [("65,000 B announced", &huge), ("8 KiB - 1 sent", &most)] {
            let before = NET.net();
            let mut sockets = half_handshakes(&mut server, now, &vec![&bytes[..]; EACH]);
            let each = (NET.net() - before) / EACH as isize;
            // The handshake timeout passes, on the server's clock.
            now += Duration::from_secs(6);
            let start = Instant::now();
            while !sockets.iter_mut().all(closed_by_server) {
                assert!(start.elapsed() < Duration::from_secs(20), "not closed");
                counted(|| server.run_once_at(now, Some(Duration::from_millis(5)))).unwrap();
            }
            drop(sockets);
            let left = NET.net() - before;
            if round == 1 {
                eprintln!(
                    "tls_memory: half handshake, {name}: {each} heap bytes per connection; {left} left once all {EACH} were closed"
                );
                assert!(
                    each <= BUDGET,
                    "{name}: a half handshake holds {each} bytes, over {BUDGET}"
                );
                // The timer wheel may keep a slot's list a little longer
                // than it was: bytes, not a connection's worth.
                assert!(
                    left < 64 * EACH as isize,
                    "{name}: {left} bytes not given back"
                );
            }
        }
    }
}
