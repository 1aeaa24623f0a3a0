//! Tests of the C API (`src/ffi/`) through its `extern "C"` functions,
//! called from Rust exactly as a C program would call them.
//!
//! What is covered: NULL arguments everywhere; bad addresses and options;
//! configuration after start; unknown and stale connection ids; send after
//! close; callbacks calling back into the API (send, broadcast, close, kill,
//! stop, and the refused run/free); `rk_server_stop` from another thread,
//! before the first run, and racing the start; a panic inside the Rust side
//! (through a hidden test hook that makes the Rust handler panic) caught at
//! the boundary; and that `include/rookery.h` declares every exported `rk_`
//! symbol.
//!
//! Posts, timers and the rest: `rk_post` from 4 threads × 100,000 messages (order per
//! thread, nothing lost, `RK_EAGAIN` retried), its errors, broadcasts and
//! posts around a stop; timers set, fired and cancelled; `on_upgrade`
//! (request accessors, refusal, subprotocol, per-connection data, peer,
//! delayed activation from a timer); `on_http` answers and the default 404;
//! and a `poll(2)` loop on `rk_server_fd` / `rk_server_timeout_ms`; with
//! NULL arguments and calls from the wrong place (`rk_accept_protocol`
//! outside `on_upgrade`, connection calls from `on_http`).
//!
//! What is not: a panic in a callback written in Rust as `extern "C" fn`
//! cannot unwind at all (Rust aborts the process), so it cannot be tested;
//! the hook exercises the same `catch_unwind` path from inside the handler.

mod common;

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::net::TcpStream;
use std::ptr;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{require_program, Tool};
use rookery::ffi::*;
use tungstenite::{Message as WsMessage, WebSocket};

// ---- helpers ---------------------------------------------------------------------

/// A server handle freed on drop.
struct Srv(*mut rk_server);

impl Srv {
    fn new() -> Srv {
        let addr = CString::new("127.0.0.1:0").unwrap();
        let mut err = 12345;
        // SAFETY: a valid string and a valid `int` pointer.
        let s = unsafe { rk_server_new(addr.as_ptr(), &mut err) };
        assert!(!s.is_null(), "rk_server_new: {}", strerror(err));
        assert_eq!(err, RK_OK);
        Srv(s)
    }

    fn port(&self) -> u16 {
        // SAFETY: a live handle.
        unsafe { rk_server_port(self.0) }
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/chat", self.port())
    }

    /// Runs the loop in short turns until `done` or the deadline.
    fn pump_until(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            // SAFETY: a live handle, on this thread.
            let rc = unsafe { rk_server_run_once(self.0, 10) };
            assert!(rc >= 0, "rk_server_run_once: {}", strerror(rc));
        }
    }
}

impl Drop for Srv {
    fn drop(&mut self) {
        // SAFETY: a live handle, not used afterwards.
        unsafe { rk_server_free(self.0) };
    }
}

/// A raw pointer that may cross threads (only `rk_server_stop` uses it
/// there).
#[derive(Clone, Copy)]
struct SendPtr(*mut rk_server);
// SAFETY: the other thread only calls `rk_server_stop`, which is safe from
// any thread; the handle outlives it (joined before the free).
unsafe impl Send for SendPtr {}

fn strerror(code: c_int) -> String {
    // SAFETY: rk_strerror returns a static NUL-terminated string.
    unsafe { CStr::from_ptr(rk_strerror(code)) }
        .to_str()
        .unwrap()
        .to_string()
}

fn client(url: &str) -> WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>> {
    let (ws, _) = tungstenite::connect(url).expect("client connect");
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }
    ws
}

/// Reads until a data message or a close; returns the text, or the close
/// code as `close:<code>`.
fn next(ws: &mut WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>) -> String {
    loop {
        match ws.read() {
            Ok(WsMessage::Text(t)) => return t.to_string(),
            Ok(WsMessage::Binary(b)) => return format!("binary:{}", b.len()),
            Ok(WsMessage::Close(frame)) => {
                // Send the reply tungstenite queued, completing the handshake.
                let _ = ws.flush();
                return format!("close:{}", frame.map_or(0, |f| u16::from(f.code)));
            }
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) => return "closed".into(),
            Err(e) => return format!("error:{e}"),
        }
    }
}

/// Aborts the whole test binary if a test hangs (a lost stop would).
fn watchdog(secs: u64) -> mpsc::Sender<()> {
    let (tx, rx) = mpsc::channel::<()>();
    thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(Duration::from_secs(secs)) {
            eprintln!("watchdog: test hung for {secs} s");
            std::process::abort();
        }
    });
    tx
}

// ---- a scripted application, as a C program would write it ------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Open(u64),
    Message(u64, String, bool),
    Close(u64, u16),
    /// The result of an API call made from inside a callback.
    Call(&'static str, c_int),
}

#[derive(Default)]
struct App {
    events: RefCell<Vec<Event>>,
}

impl App {
    fn record(&self, e: Event) {
        self.events.borrow_mut().push(e);
    }
    fn has(&self, e: &Event) -> bool {
        self.events.borrow().contains(e)
    }
    fn count(&self, f: impl Fn(&Event) -> bool) -> usize {
        self.events.borrow().iter().filter(|e| f(e)).count()
    }
    fn call(&self, name: &'static str) -> Option<c_int> {
        self.events.borrow().iter().find_map(|e| match e {
            Event::Call(n, rc) if *n == name => Some(*rc),
            _ => None,
        })
    }
}

/// SAFETY (all callbacks): `user` is the `App` registered with the server,
/// alive for the server's life; `s` is the live handle.
unsafe fn app<'a>(user: *mut c_void) -> &'a App {
    // SAFETY: see above.
    unsafe { &*(user as *const App) }
}

unsafe extern "C" fn on_open(s: *mut rk_server, conn: u64, user: *mut c_void) {
    // SAFETY: see `app`.
    let app = unsafe { app(user) };
    app.record(Event::Open(conn));
    let welcome = b"welcome";
    // SAFETY: a live handle and a valid buffer; re-entrant call.
    let rc = unsafe { rk_send(s, conn, welcome.as_ptr(), welcome.len(), 1) };
    app.record(Event::Call("send welcome", rc));
}

unsafe extern "C" fn on_message(
    s: *mut rk_server,
    conn: u64,
    data: *const u8,
    len: usize,
    is_text: c_int,
    user: *mut c_void,
) {
    // SAFETY: see `app`; `data` holds `len` bytes during the call.
    let (app, bytes) = unsafe { (app(user), std::slice::from_raw_parts(data, len)) };
    let text = String::from_utf8_lossy(bytes).into_owned();
    app.record(Event::Message(conn, text.clone(), is_text != 0));
    // SAFETY (every call below): a live handle, valid buffers, re-entrant
    // calls from inside a callback, which the API allows.
    unsafe {
        match text.as_str() {
            "broadcast" => {
                let rc = rk_broadcast(s, data, len, is_text);
                app.record(Event::Call("broadcast", rc));
            }
            "close" => {
                let reason = CString::new("bye").unwrap();
                let rc = rk_close(s, conn, 4000, reason.as_ptr());
                app.record(Event::Call("close", rc));
                let rc = rk_send(s, conn, data, len, 1);
                app.record(Event::Call("send after close", rc));
                let rc = rk_close(s, conn, 1000, ptr::null());
                app.record(Event::Call("close twice", rc));
            }
            "kill" => {
                let rc = rk_kill(s, conn);
                app.record(Event::Call("kill", rc));
                let rc = rk_kill(s, conn);
                app.record(Event::Call("kill twice", rc));
                let rc = rk_send(s, conn, data, len, 1);
                app.record(Event::Call("send after kill", rc));
            }
            "reenter" => {
                app.record(Event::Call("run_once", rk_server_run_once(s, 0)));
                app.record(Event::Call("run", rk_server_run(s)));
                app.record(Event::Call(
                    "set_option",
                    rk_server_set_option(s, RK_OPT_MAX_MESSAGE, 10),
                ));
                let path = CString::new("/x").unwrap();
                app.record(Event::Call(
                    "set_path",
                    rk_server_set_path(s, path.as_ptr()),
                ));
                // Refused (and logged): the server keeps running.
                rk_server_free(s);
                let rc = rk_send(s, conn, data, len, 1);
                app.record(Event::Call("send after free attempt", rc));
            }
            "stop" => rk_server_stop(s),
            _ => {
                let rc = rk_send(s, conn, data, len, is_text);
                app.record(Event::Call("echo", rc));
            }
        }
    }
}

unsafe extern "C" fn on_close(s: *mut rk_server, conn: u64, code: u16, user: *mut c_void) {
    // SAFETY: see `app`.
    let app = unsafe { app(user) };
    app.record(Event::Close(conn, code));
    let msg = b"too late";
    // SAFETY: a live handle; re-entrant call.
    let rc = unsafe { rk_send(s, conn, msg.as_ptr(), msg.len(), 1) };
    app.record(Event::Call("send in on_close", rc));
}

fn callbacks() -> rk_callbacks {
    rk_callbacks {
        on_open: Some(on_open),
        on_message: Some(on_message),
        on_close: Some(on_close),
        ..rk_callbacks::default()
    }
}

fn with_app(srv: &Srv, app: &App) {
    let cb = callbacks();
    // SAFETY: a live handle, a valid struct, and `app` outlives the server
    // (declared before it in every test).
    let rc = unsafe { rk_server_set_callbacks(srv.0, &cb, app as *const App as *mut c_void) };
    assert_eq!(rc, RK_OK);
}

// ---- tests ---------------------------------------------------------------------

#[test]
fn strerror_covers_every_code() {
    let codes = [
        RK_OK,
        RK_EINVAL,
        RK_ENOTOPEN,
        RK_EBUSY,
        RK_EIO,
        RK_EPANIC,
        RK_EADDR,
        RK_EUTF8,
        RK_ECODE,
        RK_EAGAIN,
        RK_ENOTSUP,
        RK_ETLS,
        RK_ENOTFOUND,
    ];
    let mut seen = std::collections::HashSet::new();
    for code in codes {
        assert!(code <= 0);
        let text = strerror(code);
        assert_ne!(text, "unknown error", "code {code}");
        assert!(seen.insert(text), "duplicate text for {code}");
    }
    assert_eq!(strerror(-1000), "unknown error");
    assert_eq!(strerror(7), "unknown error");
}

#[test]
fn null_arguments_are_errors_not_crashes() {
    let null = ptr::null_mut::<rk_server>();
    let mut err = 0;
    // SAFETY: every pointer is NULL or valid; NULL is what is tested.
    unsafe {
        assert!(rk_server_new(ptr::null(), &mut err).is_null());
        assert_eq!(err, RK_EINVAL);
        assert!(rk_server_new(ptr::null(), ptr::null_mut()).is_null());
        let path = CString::new("/chat").unwrap();
        assert_eq!(rk_server_set_path(null, path.as_ptr()), RK_EINVAL);
        assert_eq!(rk_server_set_option(null, RK_OPT_MAX_MESSAGE, 1), RK_EINVAL);
        let cb = callbacks();
        assert_eq!(
            rk_server_set_callbacks(null, &cb, ptr::null_mut()),
            RK_EINVAL
        );
        assert_eq!(rk_server_port(null), 0);
        assert_eq!(rk_server_run(null), RK_EINVAL);
        assert_eq!(rk_server_run_once(null, 0), RK_EINVAL);
        rk_server_stop(null);
        assert_eq!(rk_send(null, 1, b"x".as_ptr(), 1, 1), RK_EINVAL);
        assert_eq!(rk_broadcast(null, b"x".as_ptr(), 1, 1), RK_EINVAL);
        assert_eq!(rk_close(null, 1, 1000, ptr::null()), RK_EINVAL);
        assert_eq!(rk_kill(null, 1), RK_EINVAL);
        rk_server_free(null);
    }

    let srv = Srv::new();
    // SAFETY: a live handle; NULL pointers are what is tested.
    unsafe {
        assert_eq!(rk_server_set_path(srv.0, ptr::null()), RK_EINVAL);
        assert_eq!(
            rk_server_set_callbacks(srv.0, ptr::null(), ptr::null_mut()),
            RK_EINVAL
        );
        assert_eq!(rk_send(srv.0, 1, ptr::null(), 5, 1), RK_EINVAL);
        assert_eq!(rk_broadcast(srv.0, ptr::null(), 5, 0), RK_EINVAL);
        // NULL with length 0 is an empty message: fine, but no such connection.
        assert_eq!(rk_send(srv.0, 1, ptr::null(), 0, 1), RK_ENOTOPEN);
        assert_eq!(rk_broadcast(srv.0, ptr::null(), 0, 1), 0);
        // A NULL reason is no reason.
        assert_eq!(rk_close(srv.0, 1, 1000, ptr::null()), RK_ENOTOPEN);
    }
}

#[test]
fn bad_addresses() {
    let mut err = 0;
    for addr in [
        "",
        "nonsense",
        "127.0.0.1",
        "127.0.0.1:99999",
        "999.1.1.1:80",
    ] {
        let c = CString::new(addr).unwrap();
        // SAFETY: valid pointers.
        let s = unsafe { rk_server_new(c.as_ptr(), &mut err) };
        assert!(s.is_null(), "{addr:?} was accepted");
        assert_eq!(err, RK_EADDR, "{addr:?}");
    }
    // Not UTF-8.
    let c = CString::new(vec![0xff, b':', b'1']).unwrap();
    // SAFETY: valid pointers.
    assert!(unsafe { rk_server_new(c.as_ptr(), &mut err) }.is_null());
    assert_eq!(err, RK_EUTF8);
    // In use.
    let srv = Srv::new();
    let c = CString::new(format!("127.0.0.1:{}", srv.port())).unwrap();
    // SAFETY: valid pointers.
    assert!(unsafe { rk_server_new(c.as_ptr(), &mut err) }.is_null());
    assert_eq!(err, RK_EADDR);
}

/// `RK_OPT_IO`: the three values, `RK_ENOTSUP` for io_uring in a library
/// without it, `RK_EINVAL` past them; epoll chosen serves with a pollable
/// descriptor.
#[test]
fn the_io_option_chooses_the_driver() {
    let srv = Srv::new();
    // SAFETY: a live handle, on this thread.
    unsafe {
        let s = srv.0;
        assert_eq!(rk_server_set_option(s, RK_OPT_IO, 3), RK_EINVAL);
        let uring = rk_server_set_option(s, RK_OPT_IO, RK_IO_URING);
        if cfg!(rookery_uring) {
            assert_eq!(uring, RK_OK);
        } else {
            assert_eq!(uring, RK_ENOTSUP);
        }
        assert_eq!(rk_server_set_option(s, RK_OPT_IO, RK_IO_AUTO), RK_OK);
        assert_eq!(rk_server_set_option(s, RK_OPT_IO, RK_IO_EPOLL), RK_OK);
        assert!(rk_server_fd(s) >= 0);
        // Fixed once built.
        assert_eq!(rk_server_set_option(s, RK_OPT_IO, RK_IO_AUTO), RK_EBUSY);
    }
    let url = srv.url();
    let client = thread::spawn(move || {
        let mut ws = client(&url);
        ws.send(WsMessage::text("over epoll")).unwrap();
        ws.close(None).unwrap();
    });
    srv.pump_until("the client", || client.is_finished());
    client.join().unwrap();
}

#[test]
fn options_and_path_before_start_only() {
    let srv = Srv::new();
    assert_ne!(srv.port(), 0);
    let s = srv.0;
    // SAFETY: a live handle, valid strings.
    unsafe {
        for opt in [
            RK_OPT_PING_INTERVAL_MS,
            RK_OPT_IDLE_TIMEOUT_MS,
            RK_OPT_HANDSHAKE_TIMEOUT_MS,
            RK_OPT_CLOSE_TIMEOUT_MS,
        ] {
            assert_eq!(rk_server_set_option(s, opt, 0), RK_OK);
            assert_eq!(rk_server_set_option(s, opt, 250), RK_OK);
            assert_eq!(rk_server_set_option(s, opt, u64::from(u32::MAX)), RK_OK);
            assert_eq!(
                rk_server_set_option(s, opt, u64::from(u32::MAX) + 1),
                RK_EINVAL
            );
        }
        for opt in [
            RK_OPT_MAX_MESSAGE,
            RK_OPT_MAX_BACKLOG,
            RK_OPT_MAX_CONNECTIONS,
        ] {
            assert_eq!(rk_server_set_option(s, opt, 0), RK_EINVAL);
            assert_eq!(rk_server_set_option(s, opt, 4096), RK_OK);
        }
        assert_eq!(rk_server_set_option(s, 0, 1), RK_EINVAL);
        assert_eq!(rk_server_set_option(s, RK_OPT_MAX_POSTED, 0), RK_EINVAL);
        assert_eq!(rk_server_set_option(s, RK_OPT_MAX_POSTED, 4096), RK_OK);
        assert_eq!(rk_server_set_option(s, RK_OPT_DEFLATE, 2), RK_EINVAL);
        assert_eq!(rk_server_set_option(s, RK_OPT_DEFLATE, 0), RK_OK);
        let deflate = if cfg!(feature = "deflate") {
            RK_OK
        } else {
            RK_ENOTSUP
        };
        assert_eq!(rk_server_set_option(s, RK_OPT_DEFLATE, 1), deflate);
        // Bursts only after their rate, which resets them.
        assert_eq!(
            rk_server_set_option(s, RK_OPT_RATE_LIMIT_BURST, 10),
            RK_EINVAL
        );
        assert_eq!(rk_server_set_option(s, RK_OPT_RATE_LIMIT, 5), RK_OK);
        assert_eq!(
            rk_server_set_option(s, RK_OPT_RATE_LIMIT_BURST, 0),
            RK_EINVAL
        );
        assert_eq!(rk_server_set_option(s, RK_OPT_RATE_LIMIT_BURST, 10), RK_OK);
        assert_eq!(
            rk_server_set_option(s, RK_OPT_RATE_LIMIT_BYTES_BURST, 10),
            RK_EINVAL
        );
        assert_eq!(
            rk_server_set_option(s, RK_OPT_RATE_LIMIT_BYTES, 1 << 20),
            RK_OK
        );
        assert_eq!(
            rk_server_set_option(s, RK_OPT_RATE_LIMIT_BYTES_BURST, 4 << 20),
            RK_OK
        );
        assert_eq!(
            rk_server_set_option(s, RK_OPT_RATE_LIMIT_BYTES, 1 << 41),
            RK_EINVAL
        );
        assert_eq!(rk_server_set_option(s, RK_OPT_RATE_LIMIT, 0), RK_OK);
        assert_eq!(
            rk_server_set_option(s, RK_OPT_RATE_LIMIT_BURST, 10),
            RK_EINVAL
        );
        assert_eq!(
            rk_server_set_option(s, RK_OPT_MAX_CONNECTIONS_PER_IP, 0),
            RK_OK
        );
        assert_eq!(
            rk_server_set_option(s, RK_OPT_MAX_CONNECTIONS_PER_IP, 8),
            RK_OK
        );
        assert_eq!(rk_server_set_option(s, 16, 1), RK_EINVAL);
        assert_eq!(rk_server_set_option(s, -1, 1), RK_EINVAL);
        let bad = CString::new("chat").unwrap();
        assert_eq!(rk_server_set_path(s, bad.as_ptr()), RK_EINVAL);
        let good = CString::new("/ws").unwrap();
        assert_eq!(rk_server_set_path(s, good.as_ptr()), RK_OK);

        assert_eq!(rk_server_run_once(s, 0), 1);
        assert_eq!(rk_server_set_option(s, RK_OPT_MAX_MESSAGE, 10), RK_EBUSY);
        assert_eq!(rk_server_set_path(s, good.as_ptr()), RK_EBUSY);
        // A bad option is reported as such whatever the state.
        assert_eq!(rk_server_set_option(s, 99, 1), RK_EINVAL);
        // Callbacks may change at any time.
        let cb = rk_callbacks::default();
        assert_eq!(rk_server_set_callbacks(s, &cb, ptr::null_mut()), RK_OK);
    }
    // The path took effect: /chat is now a 404, /ws upgrades.
    let port = srv.port();
    let c = thread::spawn(move || {
        let old = tungstenite::connect(format!("ws://127.0.0.1:{port}/chat"));
        let new = tungstenite::connect(format!("ws://127.0.0.1:{port}/ws"));
        let status = match old {
            Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
            other => panic!("unexpected {:?}", other.map(|_| ())),
        };
        (status, new.is_ok())
    });
    srv.pump_until("the client", || c.is_finished());
    assert_eq!(c.join().unwrap(), (404, true));
}

#[test]
fn unknown_connections_and_bad_values() {
    let srv = Srv::new();
    let s = srv.0;
    // SAFETY: a live handle, valid buffers.
    unsafe {
        // Before the first run: no connection exists.
        assert_eq!(rk_send(s, 42, b"x".as_ptr(), 1, 1), RK_ENOTOPEN);
        assert_eq!(rk_kill(s, 42), RK_ENOTOPEN);
        assert_eq!(rk_close(s, 42, 1000, ptr::null()), RK_ENOTOPEN);
        assert_eq!(rk_broadcast(s, b"x".as_ptr(), 1, 1), 0);
        assert_eq!(rk_server_run_once(s, 0), 1);
        // After it, likewise (id 0 is never a connection).
        for id in [0, 42, u64::MAX] {
            assert_eq!(rk_send(s, id, b"x".as_ptr(), 1, 0), RK_ENOTOPEN);
            assert_eq!(rk_kill(s, id), RK_ENOTOPEN);
            assert_eq!(rk_close(s, id, 1000, ptr::null()), RK_ENOTOPEN);
        }
        assert_eq!(rk_broadcast(s, b"x".as_ptr(), 1, 1), 0);
        // Bad values are reported before the connection is looked up.
        let invalid = [0xc3u8, 0x28];
        assert_eq!(rk_send(s, 42, invalid.as_ptr(), 2, 1), RK_EUTF8);
        assert_eq!(rk_broadcast(s, invalid.as_ptr(), 2, 1), RK_EUTF8);
        for code in [0, 999, 1004, 1005, 1006, 1015, 2999, 5000] {
            assert_eq!(rk_close(s, 42, code, ptr::null()), RK_ECODE, "code {code}");
        }
        let reason = [0xffu8, 0];
        assert_eq!(
            rk_close(s, 42, 1000, reason.as_ptr().cast::<c_char>()),
            RK_EUTF8
        );
    }
}

#[test]
fn callbacks_call_back_into_the_api() {
    let app = App::default();
    let srv = Srv::new();
    with_app(&srv, &app);
    let url = srv.url();
    let (tx, rx) = mpsc::channel::<Vec<String>>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let clients = thread::spawn(move || {
        let mut a = client(&url);
        let mut b = client(&url);
        let mut seen = vec![next(&mut a), next(&mut b)];
        a.send(WsMessage::text("hello")).unwrap();
        seen.push(next(&mut a));
        a.send(WsMessage::text("broadcast")).unwrap();
        seen.push(next(&mut a));
        seen.push(next(&mut b));
        a.send(WsMessage::text("reenter")).unwrap();
        seen.push(next(&mut a));
        a.send(WsMessage::binary(vec![1u8, 2, 3])).unwrap();
        seen.push(next(&mut a));
        b.send(WsMessage::text("close")).unwrap();
        seen.push(next(&mut b));
        let _ = b.flush();
        tx.send(seen).unwrap();
        // Keep `a` open until the server side is done with it.
        go_rx.recv().unwrap();
        a.send(WsMessage::text("kill")).unwrap();
        let mut rest = Vec::new();
        loop {
            let m = next(&mut a);
            let end = m == "closed" || m.starts_with("error:");
            rest.push(if end { "end".to_string() } else { m });
            if end {
                break;
            }
        }
        tx.send(rest).unwrap();
    });

    let mut seen = None;
    srv.pump_until("the first client steps", || {
        seen = seen.take().or_else(|| rx.try_recv().ok());
        seen.is_some()
    });
    let seen = seen.unwrap();
    assert_eq!(
        seen,
        [
            "welcome",
            "welcome",
            "hello",
            "broadcast",
            "broadcast",
            "reenter",
            "binary:3",
            "close:4000"
        ]
    );
    assert_eq!(
        app.count(|e| matches!(e, Event::Call("send welcome", RK_OK))),
        2
    );
    assert_eq!(app.call("echo"), Some(RK_OK));
    assert_eq!(app.call("broadcast"), Some(2));
    assert_eq!(app.call("run_once"), Some(RK_EBUSY));
    assert_eq!(app.call("run"), Some(RK_EBUSY));
    assert_eq!(app.call("set_option"), Some(RK_EBUSY));
    assert_eq!(app.call("set_path"), Some(RK_EBUSY));
    assert_eq!(app.call("send after free attempt"), Some(RK_OK));
    assert_eq!(app.call("close"), Some(RK_OK));
    assert_eq!(app.call("send after close"), Some(RK_ENOTOPEN));
    assert_eq!(app.call("close twice"), Some(RK_ENOTOPEN));
    let opens: Vec<u64> = app
        .events
        .borrow()
        .iter()
        .filter_map(|e| match e {
            Event::Open(id) => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(opens.len(), 2);
    assert!(opens.iter().all(|&id| id != 0));
    let b = opens[1];
    srv.pump_until("on_close of the closed client", || {
        app.has(&Event::Close(b, 4000))
    });
    assert_eq!(app.call("send in on_close"), Some(RK_ENOTOPEN));
    // Sending outside any callback, between turns of the loop.
    let a = opens[0];
    // SAFETY: a live handle, valid buffers.
    unsafe {
        assert_eq!(rk_send(srv.0, a, b"outside".as_ptr(), 7, 1), RK_OK);
        assert_eq!(rk_send(srv.0, b, b"outside".as_ptr(), 7, 1), RK_ENOTOPEN);
        assert_eq!(rk_broadcast(srv.0, b"all".as_ptr(), 3, 0), 1);
    }

    go_tx.send(()).unwrap();
    let mut last = None;
    srv.pump_until("the kill", || {
        last = last.take().or_else(|| rx.try_recv().ok());
        last.is_some()
    });
    clients.join().unwrap();
    assert_eq!(app.call("kill"), Some(RK_OK));
    assert_eq!(app.call("kill twice"), Some(RK_ENOTOPEN));
    assert_eq!(app.call("send after kill"), Some(RK_ENOTOPEN));
    // The client saw the two sends from outside, then the connection drop.
    assert_eq!(last.unwrap(), ["outside", "binary:3", "end"]);
    assert!(app.has(&Event::Close(a, 1006)));
    // One on_close per connection.
    assert_eq!(app.count(|e| matches!(e, Event::Close(..))), 2);
}

#[test]
fn kill_outside_a_callback_calls_on_close_inside_it() {
    let app = App::default();
    let srv = Srv::new();
    with_app(&srv, &app);
    let url = srv.url();
    let c = thread::spawn(move || {
        let mut ws = client(&url);
        let first = next(&mut ws);
        (first, next(&mut ws))
    });
    srv.pump_until("on_open", || {
        app.count(|e| matches!(e, Event::Open(_))) == 1
    });
    let id = match app.events.borrow()[0] {
        Event::Open(id) => id,
        ref e => panic!("unexpected {e:?}"),
    };
    // SAFETY: a live handle.
    assert_eq!(unsafe { rk_kill(srv.0, id) }, RK_OK);
    // on_close ran inside rk_kill, and its re-entrant send got ENOTOPEN.
    assert!(app.has(&Event::Close(id, 1006)));
    assert_eq!(app.call("send in on_close"), Some(RK_ENOTOPEN));
    // SAFETY: a live handle.
    assert_eq!(unsafe { rk_kill(srv.0, id) }, RK_ENOTOPEN);
    let (first, second) = c.join().unwrap();
    assert_eq!(first, "welcome");
    assert!(
        second == "closed" || second.starts_with("error:"),
        "{second}"
    );
}

#[test]
fn stop_from_another_thread() {
    let dog = watchdog(60);
    let app = App::default();
    let srv = Srv::new();
    with_app(&srv, &app);
    // SAFETY: a live handle.
    unsafe { rk_server_set_option(srv.0, RK_OPT_CLOSE_TIMEOUT_MS, 2000) };
    let url = srv.url();
    let handle = SendPtr(srv.0);
    let c = thread::spawn(move || {
        let mut ws = client(&url);
        let welcome = next(&mut ws);
        let handle = handle;
        // SAFETY: rk_server_stop is safe from any thread; the handle lives
        // until this thread is joined.
        unsafe { rk_server_stop(handle.0) };
        (welcome, next(&mut ws))
    });
    // SAFETY: a live handle, run on this thread.
    let rc = unsafe { rk_server_run(srv.0) };
    assert_eq!(rc, RK_OK, "{}", strerror(rc));
    let (welcome, close) = c.join().unwrap();
    assert_eq!(welcome, "welcome");
    assert_eq!(close, "close:1001");
    assert_eq!(
        app.count(|e| matches!(e, Event::Close(_, 1001))),
        1,
        "{:?}",
        app.events.borrow()
    );
    // A stopped server stays stopped.
    // SAFETY: a live handle.
    unsafe {
        assert_eq!(rk_server_run(srv.0), RK_OK);
        assert_eq!(rk_server_run_once(srv.0, 0), 0);
    }
    drop(dog);
}

#[test]
fn stop_before_run_and_racing_the_start() {
    let dog = watchdog(60);
    // Before the first run: that run stops at once.
    let srv = Srv::new();
    // SAFETY: a live handle.
    unsafe {
        rk_server_stop(srv.0);
        rk_server_stop(srv.0);
        assert_eq!(rk_server_run(srv.0), RK_OK);
    }
    // Racing the lazy start from another thread: never lost.
    for i in 0..50 {
        let srv = Srv::new();
        let handle = SendPtr(srv.0);
        let stopper = thread::spawn(move || {
            let handle = handle;
            // Some stop at once, others after a varying number of
            // yields: before, during and after the lazy start.
            for _ in 0..(i % 7) * 50 {
                thread::yield_now();
            }
            // SAFETY: safe from any thread; joined before the free.
            unsafe { rk_server_stop(handle.0) };
        });
        // SAFETY: a live handle, run on this thread.
        assert_eq!(unsafe { rk_server_run(srv.0) }, RK_OK);
        stopper.join().unwrap();
    }
    drop(dog);
}

#[test]
fn a_panic_inside_is_caught_at_the_boundary() {
    let app = App::default();
    let srv = Srv::new();
    with_app(&srv, &app);
    let url = srv.url();
    let c = thread::spawn(move || {
        let mut ws = client(&url);
        let welcome = next(&mut ws);
        ws.send(WsMessage::text("boom")).unwrap();
        (welcome, next(&mut ws))
    });
    srv.pump_until("on_open", || {
        app.count(|e| matches!(e, Event::Open(_))) == 1
    });
    // SAFETY: a live handle.
    unsafe { rookery::ffi::test_hook_panic_on_next_message(srv.0) };
    let deadline = Instant::now() + Duration::from_secs(10);
    let rc = loop {
        assert!(Instant::now() < deadline, "no panic reported");
        // SAFETY: a live handle.
        let rc = unsafe { rk_server_run_once(srv.0, 10) };
        if rc != 1 {
            break rc;
        }
    };
    assert_eq!(rc, RK_EPANIC);
    // The message never reached the C side, and the server is gone: the
    // client's connection was dropped, without on_close.
    assert!(!app
        .events
        .borrow()
        .iter()
        .any(|e| matches!(e, Event::Message(..))));
    assert_eq!(app.count(|e| matches!(e, Event::Close(..))), 0);
    let (welcome, end) = c.join().unwrap();
    assert_eq!(welcome, "welcome");
    assert!(end == "closed" || end.starts_with("error:"), "{end}");
    // Every later call says so; the port is still known; free works (Drop).
    // SAFETY: a live handle.
    unsafe {
        assert_eq!(rk_server_run_once(srv.0, 0), RK_EPANIC);
        assert_eq!(rk_server_run(srv.0), RK_EPANIC);
        assert_eq!(rk_send(srv.0, 1, b"x".as_ptr(), 1, 1), RK_EPANIC);
        assert_eq!(rk_broadcast(srv.0, b"x".as_ptr(), 1, 1), RK_EPANIC);
        assert_eq!(rk_kill(srv.0, 1), RK_EPANIC);
        assert_eq!(
            rk_server_set_option(srv.0, RK_OPT_MAX_MESSAGE, 1),
            RK_EPANIC
        );
        rk_server_stop(srv.0);
    }
    assert_ne!(srv.port(), 0);
}

// ---- posts, timers, upgrades, HTTP answers, per-connection data, running from
// ---- another event loop ---------------------------------------------------------

/// What the section-10 callbacks saw and are told to do.
#[derive(Default)]
struct Ext {
    log: RefCell<Vec<String>>,
    /// Connections opened, in order.
    opened: RefCell<Vec<u64>>,
    /// `on_upgrade` refuses unless the query is this (when set).
    token: Option<&'static str>,
    /// `on_upgrade` answers with this subprotocol.
    protocol: Option<&'static str>,
    /// `on_upgrade` delays, and `on_timer` activates the connection whose
    /// id is the token.
    delay: bool,
    /// Per-connection data handed out with `rk_conn_set_user` (boxed: the
    /// pointers must stay put while the vector grows).
    #[allow(clippy::vec_box)]
    users: RefCell<Vec<Box<u64>>>,
}

impl Ext {
    fn push(&self, line: String) {
        self.log.borrow_mut().push(line);
    }
    fn has(&self, line: &str) -> bool {
        self.log.borrow().iter().any(|l| l == line)
    }
    fn find(&self, prefix: &str) -> Option<String> {
        self.log
            .borrow()
            .iter()
            .find(|l| l.starts_with(prefix))
            .cloned()
    }
}

/// SAFETY (all `x_` callbacks): `user` is the `Ext` registered with the
/// server, alive for the server's life.
unsafe fn ext<'a>(user: *mut c_void) -> &'a Ext {
    // SAFETY: see above.
    unsafe { &*(user as *const Ext) }
}

/// A C string the library returned, as Rust (None for NULL).
fn c_text(p: *const c_char) -> Option<String> {
    // SAFETY: a string from the library, valid during the callback.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

unsafe extern "C" fn x_on_upgrade(
    s: *mut rk_server,
    conn: u64,
    req: *const rk_request,
    user: *mut c_void,
) -> c_int {
    // SAFETY: see `ext`; `req` is valid during the call; a live handle.
    unsafe {
        let x = ext(user);
        let key = CString::new("SEC-websocket-KEY").unwrap();
        let absent = CString::new("X-Absent").unwrap();
        x.push(format!(
            "upgrade {} {} {:?} key={} absent={:?}",
            c_text(rk_request_method(req)).unwrap_or_default(),
            c_text(rk_request_path(req)).unwrap_or_default(),
            c_text(rk_request_query(req)).unwrap_or_default(),
            c_text(rk_request_header(req, key.as_ptr())).is_some(),
            c_text(rk_request_header(req, absent.as_ptr())),
        ));
        x.push(format!(
            "null name {:?}",
            c_text(rk_request_header(req, ptr::null()))
        ));
        if let Some(token) = x.token {
            if c_text(rk_request_query(req)).as_deref() != Some(token) {
                return 403;
            }
        }
        let bogus = CString::new("not-offered").unwrap();
        x.push(format!(
            "accept bogus {}",
            rk_accept_protocol(s, conn, bogus.as_ptr())
        ));
        x.push(format!(
            "accept other conn {}",
            rk_accept_protocol(s, conn + 1, bogus.as_ptr())
        ));
        if let Some(p) = x.protocol {
            let p = CString::new(p).unwrap();
            x.push(format!(
                "accept protocol {}",
                rk_accept_protocol(s, conn, p.as_ptr())
            ));
        }
        let mut data = Box::new(conn * 10);
        let rc = rk_conn_set_user(s, conn, (&mut *data as *mut u64).cast());
        x.users.borrow_mut().push(data);
        x.push(format!("set user in upgrade {rc}"));
        let mut buf = [0 as c_char; 64];
        let rc = rk_conn_peer(s, conn, buf.as_mut_ptr(), buf.len());
        x.push(format!(
            "peer {rc} {}",
            c_text(buf.as_ptr()).unwrap_or_default()
        ));
        let rc = rk_conn_peer(s, conn, buf.as_mut_ptr(), 4);
        x.push(format!("peer small {rc} {:?}", c_text(buf.as_ptr())));
        x.push(format!(
            "peer null {}",
            rk_conn_peer(s, conn, ptr::null_mut(), 64)
        ));
        if x.delay {
            x.push(format!("timer {}", rk_set_timer(s, 50, conn) > 0));
            return RK_UPGRADE_DELAYED;
        }
        RK_UPGRADE_ACCEPT
    }
}

unsafe extern "C" fn x_on_http(
    s: *mut rk_server,
    req: *const rk_request,
    res: *mut rk_response,
    user: *mut c_void,
) {
    // SAFETY: see `ext`; `req` and `res` are valid during the call.
    unsafe {
        let x = ext(user);
        let path = c_text(rk_request_path(req)).unwrap_or_default();
        x.push(format!("http {path}"));
        x.push(format!(
            "send from http {}",
            rk_send(s, 1, b"x".as_ptr(), 1, 1)
        ));
        x.push(format!("timer from http {}", rk_set_timer(s, 10, 1)));
        if path == "/status" {
            let body = format!("{{\"query\":{:?}}}", c_text(rk_request_query(req)).unwrap());
            let ct = CString::new("Content-Type").unwrap();
            let json = CString::new("application/json").unwrap();
            let bad = CString::new("Bad Name").unwrap();
            let cl = CString::new("content-length").unwrap();
            let crlf = CString::new("a\r\nX-Injected: 1").unwrap();
            x.push(format!(
                "response {} {} {} {} {} {} {}",
                rk_response_status(res, 200),
                rk_response_status(res, 99),
                rk_response_header(res, ct.as_ptr(), json.as_ptr()),
                rk_response_header(res, bad.as_ptr(), json.as_ptr()),
                rk_response_header(res, cl.as_ptr(), json.as_ptr()),
                rk_response_header(res, ct.as_ptr(), crlf.as_ptr()),
                rk_response_body(res, body.as_ptr(), body.len()),
            ));
        } else if path == "/teapot" {
            rk_response_status(res, 418);
        }
        // Anything else stays 404.
    }
}

unsafe extern "C" fn x_on_open(s: *mut rk_server, conn: u64, user: *mut c_void) {
    // SAFETY: see `ext`; a live handle.
    unsafe {
        let x = ext(user);
        x.opened.borrow_mut().push(conn);
        let mine = rk_conn_user(s, conn) as *const u64;
        x.push(format!(
            "open user {}",
            if mine.is_null() { 0 } else { *mine }
        ));
        let hi = b"hi";
        rk_send(s, conn, hi.as_ptr(), hi.len(), 1);
    }
}

unsafe extern "C" fn x_on_close(s: *mut rk_server, conn: u64, code: u16, user: *mut c_void) {
    // SAFETY: see `ext`; a live handle.
    unsafe {
        let x = ext(user);
        x.push(format!(
            "close {code} user set {}",
            !rk_conn_user(s, conn).is_null()
        ));
    }
}

unsafe extern "C" fn x_on_message(
    s: *mut rk_server,
    conn: u64,
    data: *const u8,
    len: usize,
    is_text: c_int,
    _user: *mut c_void,
) {
    // SAFETY: a live handle; `data` holds `len` bytes during the call.
    unsafe { rk_send(s, conn, data, len, is_text) };
}

unsafe extern "C" fn x_on_timer(s: *mut rk_server, token: u64, user: *mut c_void) {
    // SAFETY: see `ext`; a live handle.
    unsafe {
        let x = ext(user);
        x.push(format!("timer {token}"));
        if x.delay {
            x.push(format!("activate {}", rk_activate(s, token)));
            x.push(format!("activate twice {}", rk_activate(s, token)));
        }
    }
}

fn with_ext(srv: &Srv, x: &Ext) {
    let cb = rk_callbacks {
        on_open: Some(x_on_open),
        on_message: Some(x_on_message),
        on_close: Some(x_on_close),
        on_upgrade: Some(x_on_upgrade),
        on_http: Some(x_on_http),
        on_timer: Some(x_on_timer),
    };
    // SAFETY: a live handle, a valid struct; `x` outlives the server.
    let rc = unsafe { rk_server_set_callbacks(srv.0, &cb, x as *const Ext as *mut c_void) };
    assert_eq!(rc, RK_OK);
}

/// Runs `f` on a thread while the loop turns, and returns its result.
fn pump_with<T: Send + 'static>(srv: &Srv, f: impl FnOnce() -> T + Send + 'static) -> T {
    let handle = thread::spawn(f);
    srv.pump_until("the client thread", || handle.is_finished());
    handle.join().expect("client thread")
}

/// One raw HTTP exchange: the whole answer as text.
fn http_get(port: u16, target: &str) -> String {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn post_from_four_threads_keeps_order_and_loses_nothing() {
    const THREADS: u64 = 4;
    const EACH: u64 = 100_000;
    let _watchdog = watchdog(240);
    let srv = Srv::new();
    let x = Ext::default();
    with_ext(&srv, &x);
    // SAFETY: a live handle. The client reads as fast as it can; a big
    // backlog keeps a slow test machine from closing it with 1008.
    unsafe {
        assert_eq!(
            rk_server_set_option(srv.0, RK_OPT_MAX_BACKLOG, 256 << 20),
            RK_OK
        );
        assert_eq!(
            rk_server_set_option(srv.0, RK_OPT_PING_INTERVAL_MS, 0),
            RK_OK
        );
        assert_eq!(
            rk_server_set_option(srv.0, RK_OPT_IDLE_TIMEOUT_MS, 0),
            RK_OK
        );
        // Small enough that RK_EAGAIN happens and is retried.
        assert_eq!(
            rk_server_set_option(srv.0, RK_OPT_MAX_POSTED, 64 << 10),
            RK_OK
        );
    }
    let url = srv.url();
    let reader = thread::spawn(move || {
        let mut ws = client(&url);
        assert_eq!(next(&mut ws), "hi");
        let mut seen = vec![0u64; THREADS as usize];
        for _ in 0..THREADS * EACH {
            let m = next(&mut ws);
            let (t, i) = m.split_once(':').unwrap_or_else(|| panic!("{m}"));
            let (t, i): (usize, u64) = (t.parse().unwrap(), i.parse().unwrap());
            assert_eq!(i, seen[t], "thread {t} out of order");
            seen[t] += 1;
        }
        seen
    });
    srv.pump_until("the connection", || !x.opened.borrow().is_empty());
    let conn = x.opened.borrow()[0];
    let retries = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let ptr = SendPtr(srv.0);
    let started = Instant::now();
    let posters: Vec<_> = (0..THREADS)
        .map(|t| {
            let retries = retries.clone();
            thread::spawn(move || {
                let ptr = ptr;
                for i in 0..EACH {
                    let msg = format!("{t}:{i}");
                    loop {
                        // SAFETY: rk_post is safe from any thread; the
                        // handle outlives this thread (joined below).
                        let rc = unsafe { rk_post(ptr.0, conn, msg.as_ptr(), msg.len(), 1) };
                        if rc == RK_EAGAIN {
                            retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            thread::yield_now();
                            continue;
                        }
                        assert_eq!(rc, RK_OK);
                        break;
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(200);
    while !reader.is_finished() {
        assert!(Instant::now() < deadline, "timed out");
        // SAFETY: a live handle, on this thread.
        assert!(unsafe { rk_server_run_once(srv.0, 10) } >= 0);
    }
    let seen = reader.join().expect("reader");
    for p in posters {
        p.join().unwrap();
    }
    assert_eq!(seen, vec![EACH; THREADS as usize]);
    eprintln!(
        "{} posts from {THREADS} threads in {:?}, {} RK_EAGAIN retries",
        THREADS * EACH,
        started.elapsed(),
        retries.load(std::sync::atomic::Ordering::Relaxed)
    );
}

#[test]
fn post_errors_broadcast_and_stop() {
    let _watchdog = watchdog(60);
    let srv = Srv::new();
    let x = Ext::default();
    with_ext(&srv, &x);
    let msg = b"posted";
    // SAFETY: a live handle or NULL; valid or NULL buffers, as tested.
    unsafe {
        assert_eq!(rk_post(ptr::null_mut(), 0, msg.as_ptr(), 6, 1), RK_EINVAL);
        // Before the server is built nothing could receive it.
        assert_eq!(rk_post(srv.0, 0, msg.as_ptr(), 6, 1), RK_ENOTOPEN);
        assert_eq!(rk_server_set_option(srv.0, RK_OPT_MAX_POSTED, 1), RK_OK);
        assert!(rk_server_fd(srv.0) >= 0);
        assert_eq!(rk_post(srv.0, 0, ptr::null(), 6, 1), RK_EINVAL);
        assert_eq!(rk_post(srv.0, 0, b"\xff".as_ptr(), 1, 1), RK_EUTF8);
    }
    let url = srv.url();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let clients = thread::spawn(move || {
        let mut a = client(&url);
        let mut b = client(&url);
        assert_eq!(next(&mut a), "hi");
        assert_eq!(next(&mut b), "hi");
        ready_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        let got = [next(&mut a), next(&mut a), next(&mut b), next(&mut b)];
        (got, next(&mut a), next(&mut b))
    });
    srv.pump_until("two connections", || x.opened.borrow().len() == 2);
    srv.pump_until("the clients", || ready_rx.try_recv().is_ok());
    let first = x.opened.borrow()[0];
    // SAFETY: a live handle, valid buffers.
    unsafe {
        // Broadcast, then one for `first` only... and the queue is full
        // (the bound is 1 byte: one message fits when it is empty).
        assert_eq!(rk_post(srv.0, 0, msg.as_ptr(), msg.len(), 1), RK_OK);
        assert_eq!(rk_post(srv.0, first, b"one".as_ptr(), 3, 1), RK_EAGAIN);
        srv.pump_until("the broadcast post", || {
            rk_post(srv.0, first, b"one".as_ptr(), 3, 0) == RK_OK
        });
        // A post to a stale id is accepted and dropped by the loop.
        srv.pump_until("room for the stale post", || {
            rk_post(srv.0, 12345, b"lost".as_ptr(), 4, 1) == RK_OK
        });
    }
    // SAFETY: a live handle, valid buffers.
    unsafe {
        // A post made before the stop still goes out, before the close.
        srv.pump_until("room in the queue", || {
            rk_post(srv.0, 0, b"last".as_ptr(), 4, 1) == RK_OK
        });
        rk_server_stop(srv.0);
        assert_eq!(rk_server_run_once(srv.0, 0), 1);
        assert_eq!(rk_post(srv.0, 0, msg.as_ptr(), msg.len(), 1), RK_ENOTOPEN);
    }
    go_tx.send(()).unwrap();
    let handle = clients;
    let deadline = Instant::now() + Duration::from_secs(20);
    // SAFETY: a live handle, on this thread.
    while unsafe { rk_server_run_once(srv.0, 10) } == 1 {
        assert!(Instant::now() < deadline, "shutdown timed out");
    }
    let (got, a_end, b_end) = handle.join().unwrap();
    assert_eq!(got[0], "posted");
    assert_eq!(got[1], "binary:3");
    assert_eq!(got[2], "posted");
    assert_eq!(got[3], "last");
    // a got "last" as its third message; then both get 1001.
    assert_eq!(a_end, "last");
    assert_eq!(b_end, "close:1001");
    // SAFETY: a live handle; the server has stopped.
    assert_eq!(
        unsafe { rk_post(srv.0, 0, msg.as_ptr(), msg.len(), 1) },
        RK_ENOTOPEN
    );
}

#[test]
fn timers_fire_once_and_cancel() {
    let srv = Srv::new();
    let x = Ext::default();
    with_ext(&srv, &x);
    // Before the timers are set: they fire at least 30 ms after it.
    let started = Instant::now();
    // SAFETY: a live handle or NULL.
    let (a, b, c) = unsafe {
        assert_eq!(rk_set_timer(ptr::null_mut(), 10, 1), i64::from(RK_EINVAL));
        assert_eq!(rk_cancel_timer(ptr::null_mut(), 1), RK_EINVAL);
        assert_eq!(rk_cancel_timer(srv.0, 1), RK_ENOTFOUND);
        let a = rk_set_timer(srv.0, 30, 7);
        let b = rk_set_timer(srv.0, 20, 8);
        let c = rk_set_timer(srv.0, 0, 9);
        (a, b, c)
    };
    assert!(a > 0 && b > 0 && c > 0 && a != b && b != c, "{a} {b} {c}");
    // SAFETY: a live handle.
    unsafe {
        assert_eq!(rk_cancel_timer(srv.0, b), RK_OK);
        assert_eq!(rk_cancel_timer(srv.0, b), RK_ENOTFOUND);
        assert_eq!(rk_cancel_timer(srv.0, 0), RK_ENOTFOUND);
        assert_eq!(rk_cancel_timer(srv.0, -5), RK_ENOTFOUND);
    }
    srv.pump_until("timer 7", || x.has("timer 7"));
    assert!(started.elapsed() >= Duration::from_millis(30));
    assert!(x.has("timer 9"));
    assert!(!x.has("timer 8"));
    // SAFETY: a live handle.
    assert_eq!(unsafe { rk_cancel_timer(srv.0, a) }, RK_ENOTFOUND);
    let log = x.log.borrow().clone();
    assert_eq!(log, ["timer 9", "timer 7"]);
}

#[test]
fn upgrade_filter_protocol_user_data_and_peer() {
    let srv = Srv::new();
    let x = Ext {
        token: Some("token=s3cret"),
        protocol: Some("v2.rookery"),
        ..Ext::default()
    };
    with_ext(&srv, &x);
    let port = srv.port();
    let (status, proto, peer, echo) = pump_with(&srv, move || {
        let refused = tungstenite::connect(format!("ws://127.0.0.1:{port}/chat?token=nope"));
        let status = match refused {
            Err(tungstenite::Error::Http(r)) => r.status().as_u16(),
            other => panic!("not refused: {:?}", other.map(|_| ())),
        };
        let mut req = tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://127.0.0.1:{port}/chat?token=s3cret"
        ))
        .unwrap();
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", "v2.rookery".parse().unwrap());
        let (mut ws, resp) = tungstenite::connect(req).unwrap();
        let proto = resp
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.to_str().unwrap().to_string());
        let peer = match ws.get_ref() {
            tungstenite::stream::MaybeTlsStream::Plain(s) => s.local_addr().unwrap().to_string(),
            _ => unreachable!(),
        };
        assert_eq!(next(&mut ws), "hi");
        ws.send(WsMessage::text("ping?")).unwrap();
        let echo = next(&mut ws);
        ws.close(None).unwrap();
        while ws.read().is_ok() {}
        (status, proto, peer, echo)
    });
    srv.pump_until("the close", || x.find("close ").is_some());
    assert_eq!(status, 403);
    assert_eq!(proto.as_deref(), Some("v2.rookery"));
    assert_eq!(echo, "ping?");
    let conn = x.opened.borrow()[0];
    assert!(x.has("upgrade GET /chat \"token=nope\" key=true absent=None"));
    assert!(x.has("upgrade GET /chat \"token=s3cret\" key=true absent=None"));
    assert!(x.has(&format!("accept bogus {RK_EINVAL}")));
    assert!(x.has("null name None"));
    assert!(x.has(&format!("accept other conn {RK_EBUSY}")));
    assert!(x.has("accept protocol 0"));
    assert!(x.has("set user in upgrade 0"));
    assert!(x.has(&format!("peer 0 {peer}")), "{:?}", x.log.borrow());
    assert!(x.has(&format!("peer small {RK_EINVAL} Some(\"\")")));
    assert!(x.has(&format!("peer null {RK_EINVAL}")));
    assert!(x.has(&format!("open user {}", conn * 10)));
    assert!(x.has("close 1005 user set true"), "{:?}", x.log.borrow());
    // SAFETY: a live handle, or NULL; valid or NULL pointers, as tested.
    unsafe {
        // Forgotten after the close; stale or unknown ids.
        assert!(rk_conn_user(srv.0, conn).is_null());
        assert!(rk_conn_user(ptr::null(), conn).is_null());
        let mut v = 1u8;
        let p: *mut c_void = (&mut v as *mut u8).cast();
        assert_eq!(rk_conn_set_user(srv.0, conn, p), RK_ENOTOPEN);
        assert_eq!(rk_conn_set_user(ptr::null_mut(), conn, p), RK_EINVAL);
        let mut buf = [0 as c_char; 64];
        assert_eq!(rk_conn_peer(srv.0, conn, buf.as_mut_ptr(), 64), RK_ENOTOPEN);
        assert_eq!(
            rk_conn_peer(ptr::null(), conn, buf.as_mut_ptr(), 64),
            RK_EINVAL
        );
        // Outside on_upgrade.
        let p = CString::new("v2.rookery").unwrap();
        assert_eq!(rk_accept_protocol(srv.0, conn, p.as_ptr()), RK_EBUSY);
        assert_eq!(
            rk_accept_protocol(ptr::null_mut(), conn, p.as_ptr()),
            RK_EINVAL
        );
        assert_eq!(rk_accept_protocol(srv.0, conn, ptr::null()), RK_EINVAL);
        assert_eq!(rk_activate(srv.0, conn), RK_ENOTOPEN);
        assert_eq!(rk_activate(ptr::null_mut(), conn), RK_EINVAL);
        // NULL requests and responses.
        assert!(rk_request_method(ptr::null()).is_null());
        assert!(rk_request_path(ptr::null()).is_null());
        assert!(rk_request_query(ptr::null()).is_null());
        assert!(rk_request_header(ptr::null(), p.as_ptr()).is_null());
        assert_eq!(rk_response_status(ptr::null_mut(), 200), RK_EINVAL);
        assert_eq!(
            rk_response_header(ptr::null_mut(), p.as_ptr(), p.as_ptr()),
            RK_EINVAL
        );
        assert_eq!(rk_response_body(ptr::null_mut(), ptr::null(), 0), RK_EINVAL);
    }
}

#[test]
fn delayed_upgrade_activated_from_a_timer() {
    let srv = Srv::new();
    let x = Ext {
        delay: true,
        ..Ext::default()
    };
    with_ext(&srv, &x);
    let url = srv.url();
    let got = pump_with(&srv, move || {
        let mut ws = client(&url);
        // Sent before activation: read only once activated, after "hi".
        ws.send(WsMessage::text("early")).unwrap();
        let got = (next(&mut ws), next(&mut ws));
        drop(ws);
        got
    });
    assert_eq!(got, ("hi".to_string(), "early".to_string()));
    assert!(x.has("timer true"));
    let conn = x.opened.borrow()[0];
    assert!(x.has(&format!("timer {conn}")));
    assert!(x.has("activate 0"));
    assert!(x.has(&format!("activate twice {RK_ENOTOPEN}")));
}

#[test]
fn http_answers_from_on_http_and_the_default_404() {
    let srv = Srv::new();
    let x = Ext::default();
    with_ext(&srv, &x);
    let port = srv.port();
    let (status, teapot, other) = pump_with(&srv, move || {
        (
            http_get(port, "/status?x=1"),
            http_get(port, "/teapot"),
            http_get(port, "/other"),
        )
    });
    assert!(status.starts_with("HTTP/1.1 200 OK\r\n"), "{status}");
    assert!(
        status.contains("\r\nContent-Type: application/json\r\n"),
        "{status}"
    );
    assert!(!status.contains("text/plain"), "{status}");
    assert!(!status.contains("X-Injected"), "{status}");
    assert!(status.ends_with("\r\n\r\n{\"query\":\"x=1\"}"), "{status}");
    assert!(teapot.starts_with("HTTP/1.1 418 "), "{teapot}");
    assert!(other.starts_with("HTTP/1.1 404 Not Found\r\n"), "{other}");
    assert!(x.has(&format!("send from http {RK_EBUSY}")));
    assert!(x.has(&format!("timer from http {RK_EBUSY}")));
    assert!(x.has(&format!(
        "response 0 {RK_EINVAL} 0 {RK_EINVAL} {RK_EINVAL} {RK_EINVAL} 0"
    )));

    // Without on_http: 404 for everything but the WebSocket path.
    let srv = Srv::new();
    let port = srv.port();
    let answer = pump_with(&srv, move || http_get(port, "/status"));
    assert!(answer.starts_with("HTTP/1.1 404 Not Found\r\n"), "{answer}");
}

#[test]
fn own_event_loop_with_server_fd_and_timeout() {
    let srv = Srv::new();
    let x = Ext::default();
    with_ext(&srv, &x);
    // SAFETY: a live handle, or NULL.
    let fd = unsafe {
        assert_eq!(rk_server_fd(ptr::null()), RK_EINVAL);
        assert_eq!(rk_server_timeout_ms(ptr::null()), -1);
        assert_eq!(
            rk_server_set_option(srv.0, RK_OPT_PING_INTERVAL_MS, 0),
            RK_OK
        );
        let fd = rk_server_fd(srv.0);
        assert!(fd >= 0);
        // Built now: options are fixed.
        assert_eq!(
            rk_server_set_option(srv.0, RK_OPT_MAX_MESSAGE, 10),
            RK_EBUSY
        );
        assert_eq!(rk_server_fd(srv.0), fd);
        // No pings, no connections, no timers.
        assert_eq!(rk_server_timeout_ms(srv.0), -1);
        rk_set_timer(srv.0, 500, 1);
        let t = rk_server_timeout_ms(srv.0);
        // At most the 500 ms rounded up to the wheel's 10 ms tick (less if
        // this thread was descheduled in between).
        assert!((100..=520).contains(&t), "{t}");
        fd
    };
    let url = srv.url();
    let client = thread::spawn(move || {
        let mut ws = client(&url);
        let hi = next(&mut ws);
        ws.send(WsMessage::text("over poll")).unwrap();
        (hi, next(&mut ws))
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut wakes = 0;
    while !client.is_finished() || !x.has("timer 1") {
        assert!(Instant::now() < deadline, "timed out");
        // SAFETY: a live handle, on this thread; `pfd` is one valid pollfd.
        unsafe {
            let timeout = rk_server_timeout_ms(srv.0);
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            let n = libc::poll(&mut pfd, 1, timeout);
            assert!(n >= 0);
            wakes += 1;
            assert_eq!(rk_server_run_once(srv.0, 0), 1);
        }
    }
    let got = client.join().unwrap();
    assert_eq!(got, ("hi".to_string(), "over poll".to_string()));
    assert!(wakes < 1000, "{wakes} wakes: busy loop?");
    // A post wakes the descriptor.
    // SAFETY: a live handle; `pfd` is one valid pollfd.
    unsafe {
        assert_eq!(rk_post(srv.0, 0, b"x".as_ptr(), 1, 1), RK_OK);
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        assert_eq!(libc::poll(&mut pfd, 1, 5000), 1);
        assert_eq!(rk_server_run_once(srv.0, 0), 1);
        rk_server_stop(srv.0);
        assert_eq!(rk_server_timeout_ms(srv.0), 0);
    }
}

/// The function names declared in `include/rookery.h`.
fn header_functions() -> Vec<String> {
    let header = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/rookery.h"))
        .expect("read include/rookery.h");
    let mut names = Vec::new();
    for line in header.lines() {
        let line = line.trim_start();
        if line.starts_with("/*") || line.starts_with('*') || line.starts_with('#') {
            continue;
        }
        // A declaration: `type *rk_name(` or `type rk_name(` at top level.
        if let Some(open) = line.find('(') {
            let before = &line[..open];
            let name = before.rsplit([' ', '*']).next().unwrap_or("");
            if name.starts_with("rk_") && !line.starts_with("void (*") {
                names.push(name.to_string());
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

/// The C API's source files: `src/ffi/*.rs`.
fn source_files() -> Vec<std::path::PathBuf> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/ffi");
    let files: Vec<_> = std::fs::read_dir(dir)
        .expect("read src/ffi/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    assert!(!files.is_empty(), "no source in src/ffi/");
    files
}

/// The names of the functions defined by `fn ` after each `marker` in `src`.
fn functions_after(src: &str, marker: &str) -> Vec<String> {
    let mut names: Vec<String> = src
        .split(marker)
        .skip(1)
        .filter_map(|chunk| {
            let fn_at = chunk.find("fn ")?;
            let rest = &chunk[fn_at + 3..];
            Some(rest[..rest.find('(')?].trim().to_string())
        })
        .collect();
    names.sort();
    names
}

/// The C API's functions: the `pub` `extern "C" fn rk_*` of `src/ffi/`.
fn source_functions() -> Vec<String> {
    let mut src = String::new();
    for file in source_files() {
        src += &std::fs::read_to_string(file).expect("read src/ffi/");
    }
    let mut names: Vec<String> = ["pub extern \"C\" fn ", "pub unsafe extern \"C\" fn "]
        .iter()
        .flat_map(|marker| src.split(marker).skip(1))
        .filter_map(|rest| Some(rest[..rest.find('(')?].trim().to_string()))
        .filter(|name| name.starts_with("rk_"))
        .collect();
    names.sort();
    names
}

/// The symbols the library exports: the `#[no_mangle]` wrappers of
/// `capi/src/lib.rs`.
fn source_exports() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/capi/src/lib.rs");
    let src = std::fs::read_to_string(path).expect("read capi/src/lib.rs");
    functions_after(&src, "#[no_mangle]")
}

#[test]
fn header_declares_every_exported_symbol() {
    let declared = header_functions();
    let exported = source_exports();
    assert!(exported.len() >= 14, "{exported:?}");
    assert_eq!(declared, exported, "include/rookery.h vs capi/src/lib.rs");
    assert_eq!(source_functions(), exported, "src/ffi/ vs capi/src/lib.rs");

    // And the symbols actually in the static library, when it is there
    // (`cargo build` writes it next to the test binary's `deps/`).
    let exe = std::env::current_exe().unwrap();
    let lib = exe
        .parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("librookery.a"));
    let Some(lib) = lib.filter(|l| l.exists()) else {
        eprintln!("librookery.a not built next to the tests: nm check skipped");
        return;
    };
    // `cargo test` does not rebuild the archive: skip a stale one (.ci/c-test
    // runs the same check on a fresh release build).
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let capi = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/capi/src/lib.rs"));
    let newest = source_files()
        .iter()
        .chain([&capi])
        .filter_map(|f| modified(f))
        .max();
    if modified(&lib) < newest {
        eprintln!(
            "{} is older than its sources: nm check skipped",
            lib.display()
        );
        return;
    }
    // Each member's symbol table (`T rk_x`) and the archive index
    // (`rk_x in member.o`, from `nm -s`): an LTO build's members also carry
    // LLVM bitcode, which an old LLVM plugin of binutils' nm may fail to
    // read, listing nothing for them; the index is read by nm itself.
    let nm = |args: &[&str]| {
        std::process::Command::new("nm")
            .args(args)
            .arg(&lib)
            .output()
            .ok()
            .filter(|out| !out.stdout.is_empty())
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    if !require_program(Tool::Nm, "nm", &["--version"]) {
        return;
    }
    let (Some(table), Some(index)) = (nm(&["-g", "--defined-only"]), nm(&["-s"])) else {
        eprintln!("nm listed nothing for {}: nm check skipped", lib.display());
        return;
    };
    let from_table = table.lines().filter_map(|l| {
        let mut parts = l.split_whitespace();
        let (_, kind, name) = (parts.next()?, parts.next()?, parts.next()?);
        (kind == "T").then_some(name)
    });
    let from_index = index.lines().filter_map(|l| {
        let mut parts = l.split_whitespace();
        let (name, word) = (parts.next()?, parts.next()?);
        (word == "in").then_some(name)
    });
    let mut symbols: Vec<String> = from_table
        .chain(from_index)
        .filter(|name| name.starts_with("rk_"))
        .map(str::to_string)
        .collect();
    symbols.sort();
    symbols.dedup();
    assert!(!symbols.is_empty(), "no rk_ symbols in {}", lib.display());
    for sym in &symbols {
        assert!(
            declared.contains(sym),
            "{sym} is exported by {} but not declared",
            lib.display()
        );
    }
}

/// `rk_server_set_tls`: NULLs and bad files are errors; in a build without
/// TLS it is `RK_ENOTSUP`; with TLS a good pair serves wss (a rustls client
/// through tungstenite completes its upgrade over the C API's server); and
/// it is refused once the server runs.
#[test]
fn set_tls_serves_wss_or_says_it_is_not_supported() {
    let srv = Srv::new();
    let missing = CString::new("/nonexistent/cert.pem").unwrap();
    // SAFETY: a live handle; NULL or valid strings.
    unsafe {
        assert_eq!(
            rk_server_set_tls(ptr::null_mut(), missing.as_ptr(), missing.as_ptr()),
            RK_EINVAL
        );
        assert_eq!(
            rk_server_set_tls(srv.0, ptr::null(), missing.as_ptr()),
            RK_EINVAL
        );
        assert_eq!(
            rk_server_set_tls(srv.0, missing.as_ptr(), ptr::null()),
            RK_EINVAL
        );
    }
    // SAFETY: as above.
    let rc = unsafe { rk_server_set_tls(srv.0, missing.as_ptr(), missing.as_ptr()) };
    if !cfg!(feature = "tls") {
        assert_eq!(rc, RK_ENOTSUP);
        return;
    }
    assert_eq!(rc, RK_ETLS);
    #[cfg(feature = "tls")]
    tls_case::serve_wss(&srv);
}

#[cfg(feature = "tls")]
#[path = "tls_support/mod.rs"]
mod tls_support;

#[cfg(feature = "tls")]
mod tls_case {
    use super::*;

    pub(super) fn serve_wss(srv: &Srv) {
        let pair = tls_support::pair();
        let dir = tls_support::temp_dir("ffi");
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, &pair.cert_pem).unwrap();
        std::fs::write(&key, &pair.key_pem).unwrap();
        let cert = CString::new(cert.to_str().unwrap()).unwrap();
        let key = CString::new(key.to_str().unwrap()).unwrap();
        // SAFETY: a live handle and valid strings.
        assert_eq!(
            unsafe { rk_server_set_tls(srv.0, cert.as_ptr(), key.as_ptr()) },
            RK_OK
        );
        let port = srv.port();
        let trust = pair.trust.clone();
        let client = thread::spawn(move || {
            let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let stream = rustls::StreamOwned::new(tls_support::client(&trust), tcp);
            let url = format!("wss://localhost:{port}/chat");
            tungstenite::client(url.as_str(), stream)
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        srv.pump_until("the wss client", || client.is_finished());
        client
            .join()
            .unwrap()
            .expect("wss upgrade through the C API");
        // SAFETY: a live handle and valid strings.
        assert_eq!(
            unsafe { rk_server_set_tls(srv.0, cert.as_ptr(), key.as_ptr()) },
            RK_EBUSY
        );
    }
}
