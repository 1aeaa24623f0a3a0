//! Tests of the C API (`src/ffi.rs`) through its `extern "C"` functions,
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
//! What is not: a panic in a callback written in Rust as `extern "C" fn`
//! cannot unwind at all (Rust aborts the process), so it cannot be tested;
//! the hook exercises the same `catch_unwind` path from inside the handler.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::net::TcpStream;
use std::ptr;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

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
        assert_eq!(rk_server_set_option(s, 8, 1), RK_EINVAL);
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
            if i % 2 == 0 {
                thread::yield_now();
            } else {
                thread::sleep(Duration::from_micros(200 * (i % 7)));
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

/// The `extern "C"` functions `src/ffi.rs` exports.
fn source_exports() -> Vec<String> {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/ffi.rs"))
        .expect("read src/ffi.rs");
    let mut names: Vec<String> = src
        .split("#[no_mangle]")
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

#[test]
fn header_declares_every_exported_symbol() {
    let declared = header_functions();
    let exported = source_exports();
    assert!(exported.len() >= 14, "{exported:?}");
    assert_eq!(declared, exported, "include/rookery.h vs src/ffi.rs");

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
    let source = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src/ffi.rs"));
    if modified(&lib) < modified(source) {
        eprintln!(
            "{} is older than src/ffi.rs: nm check skipped",
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
    let (Some(table), Some(index)) = (nm(&["-g", "--defined-only"]), nm(&["-s"])) else {
        eprintln!("nm not available: nm check skipped");
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
