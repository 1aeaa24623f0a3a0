//! The C API's topics (`rk_subscribe`, `rk_unsubscribe`, `rk_publish`)
//! through their `extern "C"` functions, called from Rust as a C
//! program would: NULL and invalid arguments, counts, members only, and a
//! closed connection leaving its topics.

use std::cell::RefCell;
use std::ffi::{c_int, c_void, CString};
use std::net::TcpStream;
use std::ptr;
use std::time::{Duration, Instant};

use rookery::ffi::*;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message as WsMessage, WebSocket};

type Client = WebSocket<MaybeTlsStream<TcpStream>>;

struct Srv(*mut rk_server);

impl Srv {
    fn new() -> Srv {
        let addr = CString::new("127.0.0.1:0").unwrap();
        let mut err = 0;
        // SAFETY: a valid string and a valid `int` pointer.
        let s = unsafe { rk_server_new(addr.as_ptr(), &mut err) };
        assert!(!s.is_null());
        Srv(s)
    }

    fn client(&self) -> Client {
        // SAFETY: a live handle.
        let port = unsafe { rk_server_port(self.0) };
        let url = format!("ws://127.0.0.1:{port}/chat");
        let (tx, rx) = std::sync::mpsc::channel();
        // Connect from a thread while this one runs the loop.
        let t = std::thread::spawn(move || {
            let (ws, _) = tungstenite::connect(url).expect("connect");
            if let MaybeTlsStream::Plain(s) = ws.get_ref() {
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            }
            tx.send(ws).unwrap();
        });
        let mut got = None;
        self.pump_until("connect", || {
            got = got.take().or_else(|| rx.try_recv().ok());
            got.is_some()
        });
        t.join().unwrap();
        got.unwrap()
    }

    fn pump_until(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            // SAFETY: a live handle, on this thread.
            let rc = unsafe { rk_server_run_once(self.0, 10) };
            assert!(rc >= 0);
        }
    }
}

impl Drop for Srv {
    fn drop(&mut self) {
        // SAFETY: a live handle, not used afterwards.
        unsafe { rk_server_free(self.0) };
    }
}

#[derive(Default)]
struct App {
    opened: RefCell<Vec<u64>>,
    results: RefCell<Vec<(String, c_int)>>,
}

unsafe extern "C" fn on_open(_s: *mut rk_server, conn: u64, user: *mut c_void) {
    // SAFETY: `user` is the App, alive for the server's life.
    let app = unsafe { &*(user as *const App) };
    app.opened.borrow_mut().push(conn);
}

/// `sub T`, `unsub T`, `pub T BODY`: the result is recorded and sent back.
unsafe extern "C" fn on_message(
    s: *mut rk_server,
    conn: u64,
    data: *const u8,
    len: usize,
    _is_text: c_int,
    user: *mut c_void,
) {
    // SAFETY: `user` is the App; `data` holds `len` bytes during the call.
    let (app, bytes) = unsafe {
        (
            &*(user as *const App),
            std::slice::from_raw_parts(data, len),
        )
    };
    let text = String::from_utf8_lossy(bytes).into_owned();
    let mut words = text.splitn(3, ' ');
    let (cmd, topic, body) = (words.next(), words.next(), words.next());
    let Some(topic) = topic.map(|t| CString::new(t).unwrap()) else {
        return;
    };
    // SAFETY (below): a live handle and valid buffers, re-entrant calls.
    let rc = unsafe {
        match (cmd, body) {
            (Some("sub"), None) => rk_subscribe(s, conn, topic.as_ptr()),
            (Some("unsub"), None) => rk_unsubscribe(s, conn, topic.as_ptr()),
            (Some("pub"), Some(body)) => {
                rk_publish(s, topic.as_ptr(), body.as_ptr(), body.len(), 1)
            }
            _ => return,
        }
    };
    app.results.borrow_mut().push((text.clone(), rc));
    let answer = format!("{rc}");
    // SAFETY: as above.
    unsafe { rk_send(s, conn, answer.as_ptr(), answer.len(), 1) };
}

fn start(app: &App) -> Srv {
    let srv = Srv::new();
    // Zeroed: every callback NULL, whatever members rk_callbacks has.
    // SAFETY: rk_callbacks holds only nullable function pointers.
    let mut cb: rk_callbacks = unsafe { std::mem::zeroed() };
    cb.on_open = Some(on_open);
    cb.on_message = Some(on_message);
    // SAFETY: a live handle; `app` outlives the server.
    let rc = unsafe { rk_server_set_callbacks(srv.0, &cb, app as *const App as *mut c_void) };
    assert_eq!(rc, RK_OK);
    srv
}

/// Sends `cmd` and runs the loop until `n` messages came back to `ws`.
fn ask(srv: &Srv, ws: &mut Client, cmd: &str) -> String {
    ws.send(WsMessage::text(cmd)).unwrap();
    read(srv, ws)
}

fn read(srv: &Srv, ws: &mut Client) -> String {
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_nonblocking(true).unwrap();
    }
    let mut got = None;
    srv.pump_until("an answer", || {
        match ws.read() {
            Ok(WsMessage::Text(t)) => got = Some(t.to_string()),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
        got.is_some()
    });
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_nonblocking(false).unwrap();
    }
    got.unwrap()
}

#[test]
fn null_and_invalid_arguments_are_errors() {
    let srv = Srv::new();
    let t = CString::new("t").unwrap();
    let null = ptr::null_mut();
    // SAFETY: NULL or live handles and valid or NULL pointers.
    unsafe {
        assert_eq!(rk_subscribe(null, 1, t.as_ptr()), RK_EINVAL);
        assert_eq!(rk_unsubscribe(null, 1, t.as_ptr()), RK_EINVAL);
        assert_eq!(rk_publish(null, t.as_ptr(), b"x".as_ptr(), 1, 1), RK_EINVAL);
        assert_eq!(rk_subscribe(srv.0, 1, ptr::null()), RK_EINVAL);
        assert_eq!(rk_unsubscribe(srv.0, 1, ptr::null()), RK_EINVAL);
        assert_eq!(
            rk_publish(srv.0, ptr::null(), b"x".as_ptr(), 1, 1),
            RK_EINVAL
        );
        assert_eq!(rk_publish(srv.0, t.as_ptr(), ptr::null(), 3, 1), RK_EINVAL);
        let bad = [0xffu8, 0];
        assert_eq!(rk_subscribe(srv.0, 1, bad.as_ptr().cast()), RK_EUTF8);
        assert_eq!(rk_publish(srv.0, t.as_ptr(), bad.as_ptr(), 1, 1), RK_EUTF8);
        // Before the first run: nobody to publish to; no such connection.
        assert_eq!(rk_publish(srv.0, t.as_ptr(), b"x".as_ptr(), 1, 1), 0);
        assert_eq!(rk_subscribe(srv.0, 1, t.as_ptr()), RK_ENOTOPEN);
        // Running (one pass), still no connection.
        assert!(rk_server_run_once(srv.0, 0) >= 0);
        assert_eq!(rk_subscribe(srv.0, 12345, t.as_ptr()), RK_ENOTOPEN);
        assert_eq!(rk_publish(srv.0, t.as_ptr(), ptr::null(), 0, 0), 0);
    }
}

#[test]
fn publish_counts_members_and_a_closed_connection_leaves() {
    let app = App::default();
    let srv = start(&app);
    let mut a = srv.client();
    let mut b = srv.client();
    let mut c = srv.client();
    assert_eq!(ask(&srv, &mut a, "sub room"), "1");
    assert_eq!(ask(&srv, &mut a, "sub room"), "0");
    assert_eq!(ask(&srv, &mut b, "sub room"), "1");
    assert_eq!(ask(&srv, &mut c, "pub room hello"), "2");
    assert_eq!(read(&srv, &mut a), "hello");
    assert_eq!(read(&srv, &mut b), "hello");
    assert_eq!(ask(&srv, &mut b, "unsub room"), "1");
    assert_eq!(ask(&srv, &mut b, "unsub room"), "0");
    assert_eq!(ask(&srv, &mut c, "pub room again"), "1");
    assert_eq!(read(&srv, &mut a), "again");
    // A closed member leaves; a publish outside any callback sees it.
    drop(a);
    let topic = CString::new("room").unwrap();
    srv.pump_until("a's topics gone", || {
        // SAFETY: a live handle, valid buffers, outside any callback.
        unsafe { rk_publish(srv.0, topic.as_ptr(), b"x".as_ptr(), 1, 1) == 0 }
    });
    assert_eq!(app.opened.borrow().len(), 3);
    assert!(app.results.borrow().len() >= 7);
}
