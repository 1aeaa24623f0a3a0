//! What a chat member costs the heap, next to an echo connection, counted
//! in blocks (live allocations) with a counting allocator: a member must
//! hold no block of its own beyond its connection's, and a round of
//! members that leaves must leave no blocks behind.
//!
//! Why blocks and not bytes: the churn benchmark (docs/performance.md)
//! found each member's own small blocks (a subscription list, a copy of
//! its room's name) kept resident by the allocator after the members
//! left, about 1 MiB for 10,000. The tables that grow with the members are
//! one block each, whatever their size.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use rookery::chat::{Chat, ChatOptions};
use rookery::echo::Echo;
use rookery::{Config, Handler, Server};

/// Counts live blocks allocated while `COUNTING` is set on the current
/// thread; everything passes straight to the system.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}
static LIVE: AtomicIsize = AtomicIsize::new(0);

fn counting() -> bool {
    COUNTING.try_with(|c| c.get()).unwrap_or(false)
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees hold; the counter is a side effect.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counting() {
            LIVE.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if counting() {
            LIVE.fetch_sub(1, Ordering::Relaxed);
        }
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if counting() {
            LIVE.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }
    // `realloc` keeps the block count: the default (alloc, copy, dealloc)
    // would count one in and one out, the same.
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const MEMBERS: usize = 400;

// A named room: its name is what each member used to keep a copy of.
const REQUEST: &str = "GET /chat/lobby HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Runs the server until `done` holds (or panics after 10 s).
fn run_until<H: Handler>(server: &mut Server<H>, mut done: impl FnMut(&mut Server<H>) -> bool) {
    let start = Instant::now();
    while !done(server) {
        assert!(start.elapsed() < Duration::from_secs(10), "server stalled");
        server.run_once(Some(Duration::from_millis(1))).unwrap();
    }
    // A few more passes: what the last event owed is settled.
    for _ in 0..5 {
        server.run_once(Some(Duration::ZERO)).unwrap();
    }
}

/// Live blocks per open connection, and blocks left after they all left
/// again, for a server running `handler` with `path` as its WebSocket path
/// (all counted on this thread, where the server runs; the clients
/// allocate nothing while counted).
fn blocks<H: Handler>(handler: H, path: &str) -> (f64, isize) {
    let config = Config {
        path: path.to_string(),
        // No timers: the wheel keeps a small list in each of its 1,024
        // slots once used (bounded, and by design), and which slots a round
        // uses depends on how long it took, not on its members. With a
        // handshake deadline per connection, a round of 400 that took 70 ms
        // left 7 blocks in new slots, and 17 to 27 with a busy core.
        ping_interval: Duration::ZERO,
        idle_timeout: Duration::ZERO,
        handshake_timeout: Duration::ZERO,
        close_timeout: Duration::ZERO,
        max_connections: 4 * MEMBERS,
        ..Config::default()
    };
    let mut server = Server::bind("127.0.0.1:0", config, handler).unwrap();
    let addr = server.local_addr();
    let mut clients: Vec<TcpStream> = Vec::with_capacity(MEMBERS);
    let mut buf = vec![0u8; 1 << 16];
    let open = |s: &mut Server<H>| s.with_context(|ctx, _| ctx.open_connections());
    // One round first, so that every table the handler and the server keep
    // exists and has had its first growth.
    for round in 0..2 {
        COUNTING.with(|c| c.set(true));
        let before = LIVE.load(Ordering::Relaxed);
        for _ in 0..MEMBERS {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(REQUEST.as_bytes()).unwrap();
            c.set_nonblocking(true).unwrap();
            clients.push(c);
            server.run_once(Some(Duration::ZERO)).unwrap();
        }
        run_until(&mut server, |s| open(s) == MEMBERS);
        for c in clients.iter_mut() {
            while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
        }
        let joined = LIVE.load(Ordering::Relaxed);
        clients.clear();
        run_until(&mut server, |s| open(s) == 0);
        let left = LIVE.load(Ordering::Relaxed);
        COUNTING.with(|c| c.set(false));
        if round == 1 {
            return ((joined - before) as f64 / MEMBERS as f64, left - before);
        }
    }
    unreachable!()
}

#[test]
fn a_chat_member_holds_no_block_of_its_own_and_leaves_none_behind() {
    // Echo answers upgrades on its path only; the chat below its path.
    let (echo_each, echo_left) = blocks(Echo, "/chat/lobby");
    let chat = Chat::new(ChatOptions {
        welcome: "welcome".into(),
        page: false,
        ..ChatOptions::default()
    });
    let (chat_each, chat_left) = blocks(chat, "/chat");
    println!(
        "blocks per open connection: echo {echo_each:.3}, chat {chat_each:.3}; \
         left after {MEMBERS} leave: echo {echo_left}, chat {chat_left}"
    );
    // The tables that grow with the members are one block each, so a
    // block per member (a list, a name) shows as about 1.0 here (2.0
    // before both went).
    assert!(
        chat_each - echo_each < 0.05,
        "a chat member holds {:.3} blocks of its own",
        chat_each - echo_each
    );
    // Every table has had its growth in the first round, and nothing in
    // the second depends on the time (no timers), so the count is exact.
    assert!(
        chat_left == 0 && echo_left == 0,
        "left behind: chat {chat_left}, echo {echo_left}"
    );
}
