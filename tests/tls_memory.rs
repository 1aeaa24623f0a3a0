//! What an idle TLS session costs, measured with a counting allocator:
//! the heap that server-side calls allocate and keep, plus `size_of`.
//!
//! `cargo test --features tls --test tls_memory -- --nocapture` prints the
//! figures that docs/tls.md quotes; the test fails if an idle established
//! session (rustls' unbuffered API, as `TlsSession` uses it) costs more than
//! 8 KiB (heap kept plus `size_of`), the most an idle wss connection may.

#![cfg(feature = "tls")]

mod tls_support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::sync::atomic::{AtomicIsize, Ordering};

use rookery::tls::TlsSession;
use rustls::ClientConnection;
use tls_support::*;

/// Counts the bytes allocated and freed while `COUNTING` is set on the
/// current thread; everything else passes straight to the system.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}
static NET: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

fn counting() -> bool {
    COUNTING.try_with(|c| c.get()).unwrap_or(false)
}

fn add(n: isize) {
    let now = NET.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
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
    NET.store(0, Ordering::Relaxed);
    let mut peak = 0;
    for _ in 0..n {
        let mut client = make_client();
        let before = NET.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let mut server = counted(make_server);
        client_send(&mut client, REQUEST);
        settle(&mut client, &mut *server);
        peak = peak.max(PEAK.load(Ordering::Relaxed) - before);
        kept.push((client, server));
    }
    let net = NET.load(Ordering::Relaxed) / n as isize;
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
