//! `rk_callbacks` can grow: a program built against an older header hands
//! the library a shorter struct (through the header's
//! `rk_server_set_callbacks` macro, which passes its `sizeof`), and the
//! library reads no byte past it; programs built before the macro call the
//! `rk_server_set_callbacks` symbol, which reads the six members of their
//! header and no more; a newer program's longer struct is taken when the
//! members this library does not know are NULL.
//!
//! Each struct here is followed by words that are not function pointers
//! (1, 2, 3): a library that read them as callbacks would jump there and
//! crash the test.

use std::ffi::{c_int, c_void, CString};
use std::mem::size_of;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rookery::ffi::*;

type OnOpen = unsafe extern "C" fn(*mut rk_server, u64, *mut c_void);
type OnMessage = unsafe extern "C" fn(*mut rk_server, u64, *const u8, usize, c_int, *mut c_void);
type OnClose = unsafe extern "C" fn(*mut rk_server, u64, u16, *mut c_void);

/// `rk_callbacks` as section 5 of the specification first had it: three
/// members, then whatever the program keeps next to it.
#[repr(C)]
struct ThreeMembers {
    on_open: Option<OnOpen>,
    on_message: Option<OnMessage>,
    on_close: Option<OnClose>,
    after: [usize; 3],
}

/// Today's six members, then what a newer header might append.
#[repr(C)]
struct Longer {
    current: rk_callbacks,
    appended: [usize; 2],
}

/// What the callbacks saw, for one server (the user pointer).
#[derive(Default)]
struct Counts {
    opened: AtomicUsize,
    closed: AtomicUsize,
}

fn counts<'a>(user: *mut c_void) -> &'a Counts {
    // SAFETY: every server here gets a `Counts` that outlives it as user.
    unsafe { &*(user as *const Counts) }
}

unsafe extern "C" fn on_open(s: *mut rk_server, _conn: u64, user: *mut c_void) {
    counts(user).opened.fetch_add(1, Ordering::SeqCst);
    // A timer, whose on_timer member (past the short struct's end) must be
    // taken as NULL: it fires, and nothing is called.
    // SAFETY: s is the running server.
    assert!(unsafe { rk_set_timer(s, 0, 7) } > 0);
}

unsafe extern "C" fn on_close(s: *mut rk_server, _conn: u64, _code: u16, user: *mut c_void) {
    counts(user).closed.fetch_add(1, Ordering::SeqCst);
    // SAFETY: s is the running server.
    unsafe { rk_server_stop(s) };
}

/// A server with callbacks set by `set` (given the user pointer), one
/// client that connects, waits for the timer to have fired and closes;
/// returns once the server stopped.
fn serve(set: impl FnOnce(*mut rk_server, *mut c_void) -> c_int) {
    let addr = CString::new("127.0.0.1:0").unwrap();
    let seen = Counts::default();
    let user = &seen as *const Counts as *mut c_void;
    // SAFETY: valid arguments; the server is freed at the end.
    unsafe {
        let s = rk_server_new(addr.as_ptr(), ptr::null_mut());
        assert!(!s.is_null());
        assert_eq!(set(s, user), RK_OK);
        let port = rk_server_port(s);
        // The client closes once the loop has run a pass past the open (so
        // the 0 ms timer set in on_open has fired).
        let (opened, wait_open) = std::sync::mpsc::channel::<()>();
        let client = std::thread::spawn(move || {
            let (mut ws, _) =
                tungstenite::connect(format!("ws://127.0.0.1:{port}/chat")).expect("connect");
            let _ = wait_open.recv_timeout(Duration::from_secs(10));
            ws.close(None).unwrap();
            while ws.read().is_ok() {}
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut told = false;
        while rk_server_run_once(s, 20) == 1 {
            assert!(Instant::now() < deadline, "the server did not stop");
            if !told && seen.opened.load(Ordering::SeqCst) > 0 {
                // One more pass: the timer is due at once.
                assert_eq!(rk_server_run_once(s, 20), 1);
                let _ = opened.send(());
                told = true;
            }
        }
        client.join().unwrap();
        rk_server_free(s);
    }
    assert_eq!(seen.opened.load(Ordering::SeqCst), 1);
    assert_eq!(seen.closed.load(Ordering::SeqCst), 1);
}

#[test]
fn a_program_with_an_older_shorter_struct_runs() {
    let cb = ThreeMembers {
        on_open: Some(on_open),
        on_message: None,
        on_close: Some(on_close),
        after: [1, 2, 3],
    };
    // What `rk_server_set_callbacks(s, &cb, NULL)` compiles to with that
    // header: its sizeof, three pointers.
    serve(|s, user| unsafe {
        rk_server_set_callbacks_sized(
            s,
            (&cb as *const ThreeMembers).cast(),
            3 * size_of::<usize>(),
            user,
        )
    });
}

#[test]
fn a_program_built_before_the_macro_calls_the_frozen_symbol() {
    assert_eq!(RK_CALLBACKS_FROZEN_SIZE, 6 * size_of::<usize>());
    assert!(size_of::<rk_callbacks>() >= RK_CALLBACKS_FROZEN_SIZE);
    // Its struct: the six members, then its own data (which a library
    // with a seventh member must not read as one).
    #[repr(C)]
    struct Six {
        cb: [usize; 6],
        after: [usize; 3],
    }
    let mut six = Six {
        cb: [0; 6],
        after: [1, 2, 3],
    };
    six.cb[0] = on_open as OnOpen as usize;
    six.cb[2] = on_close as OnClose as usize;
    serve(|s, user| unsafe { rk_server_set_callbacks(s, (&six as *const Six).cast(), user) });
}

#[test]
fn a_newer_longer_struct_is_taken_if_what_it_adds_is_null() {
    let longer = |appended| Longer {
        current: rk_callbacks {
            on_open: Some(on_open),
            on_close: Some(on_close),
            ..rk_callbacks::default()
        },
        appended,
    };
    let ok = longer([0, 0]);
    serve(|s, user| unsafe {
        rk_server_set_callbacks_sized(s, (&ok as *const Longer).cast(), size_of::<Longer>(), user)
    });

    let addr = CString::new("127.0.0.1:0").unwrap();
    let unknown = longer([0, 0x1234]);
    // SAFETY: valid arguments; the server is freed below.
    unsafe {
        let s = rk_server_new(addr.as_ptr(), ptr::null_mut());
        let p = (&unknown as *const Longer).cast();
        let n = size_of::<Longer>();
        assert_eq!(
            rk_server_set_callbacks_sized(s, p, n, ptr::null_mut()),
            RK_ENOTSUP
        );
        assert_eq!(
            rk_server_set_callbacks_sized(s, p, 7, ptr::null_mut()),
            RK_EINVAL
        );
        assert_eq!(
            rk_server_set_callbacks_sized(s, ptr::null(), 0, ptr::null_mut()),
            RK_EINVAL
        );
        assert_eq!(
            rk_server_set_callbacks_sized(s, p, 0, ptr::null_mut()),
            RK_OK
        );
        assert_eq!(
            rk_server_set_callbacks_sized(ptr::null_mut(), p, 0, ptr::null_mut()),
            RK_EINVAL
        );
        rk_server_free(s);
    }
}
