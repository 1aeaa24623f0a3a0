//! The C API: the functions and types `include/rookery.h` declares, built
//! into `librookery.a`. This module holds the C ABI and nothing else; see
//! `docs/c-api.md` for how to build and link a C program against it.
//!
//! # How it fits together
//!
//! [`rk_server_new`] binds a listener at once (so [`rk_server_port`] works)
//! and keeps a [`Config`]. The [`Server`] is built on the first
//! [`rk_server_run`] or [`rk_server_run_once`], so the path and the options
//! can be set before that. A small handler, `FfiHandler`, turns
//! [`Handler`] calls into the C callbacks.
//!
//! # Re-entrancy without aliasing
//!
//! Callbacks may call [`rk_send`], [`rk_broadcast`], [`rk_close`] and
//! [`rk_kill`] on the server that called them. No `&mut rk_server` ever
//! exists outside [`rk_server_free`]: the loop thread's state sits in
//! [`Cell`]s and is reached through shared references only.
//!
//! - While the loop runs (or while an API call outside the loop uses the
//!   server), the `Box<Server>` is *taken out* of its cell into the running
//!   function's stack frame (`Taken`), and the state is `Busy`.
//! - While a C callback runs, the cell `ctx` holds a raw pointer to the
//!   handler's `&mut Context`; the handler does not touch that reference
//!   until the callback returns and the pointer is cleared, so the API
//!   functions the callback calls are the only users of the context
//!   meanwhile. The server queues whatever would call the handler again
//!   (closes, activations) until the current callback returns, so callbacks
//!   never nest and the pointer is never used twice at once.
//! - Outside callbacks and outside the loop, the API takes the server out of
//!   its cell and uses [`Server::with_context`], which may itself call
//!   callbacks (`on_close` after [`rk_kill`]); those see `ctx` set as above.
//!
//! Everything except [`rk_server_stop`] must be called on one thread at a
//! time (the one that runs the loop, in practice). [`rk_server_stop`] only
//! touches atomics and the poller's eventfd, so it is safe from any thread
//! and from a signal handler.
//!
//! # Panics
//!
//! Every entry point runs inside [`std::panic::catch_unwind`]: a panic is
//! logged and turned into [`RK_EPANIC`]. A panic inside the loop leaves the
//! server dropped (every connection closed at once) and the handle
//! *broken*: later calls return [`RK_EPANIC`]; only [`rk_server_free`] is
//! still useful. (Built with `panic = "abort"`, a panic aborts the process
//! instead; it never unwinds into C either way.)

#![allow(non_camel_case_types)]

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_int, c_void, CStr};
use std::net::{SocketAddr, TcpListener};
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::time::Duration;

use log::{debug, error};

use crate::{Config, ConnId, Context, Handler, Message, SendError, Server, StopHandle};

// ---- error codes -------------------------------------------------------------

/// Success.
pub const RK_OK: c_int = 0;
/// An invalid argument: a NULL pointer, an unknown option, a value out of
/// range, a path that does not start with `/`.
pub const RK_EINVAL: c_int = -1;
/// No such connection, or it is no longer open for messages (closing,
/// closed, or its id is stale).
pub const RK_ENOTOPEN: c_int = -2;
/// Not possible in this state: configuring a server that has started, or
/// running a server that is already running (from one of its callbacks).
pub const RK_EBUSY: c_int = -3;
/// An operating-system error while running (the poller failed).
pub const RK_EIO: c_int = -4;
/// A panic inside the library was caught; the server is unusable.
pub const RK_EPANIC: c_int = -5;
/// The listen address is malformed, cannot be resolved, or cannot be bound.
pub const RK_EADDR: c_int = -6;
/// A text message or close reason that is not valid UTF-8.
pub const RK_EUTF8: c_int = -7;
/// A close code that may not be sent (RFC 6455 §7.4: valid are 1000–1003,
/// 1007–1011 and 3000–4999).
pub const RK_ECODE: c_int = -8;

// ---- options -----------------------------------------------------------------

/// The C `rk_option` enum, received as its underlying `int` so that an
/// out-of-range value is an error rather than undefined behaviour.
pub type rk_option = c_int;

/// Interval between pings to every open connection, in ms (default 5000,
/// 0 = off).
pub const RK_OPT_PING_INTERVAL_MS: rk_option = 1;
/// An open connection silent this long is closed with 1001, in ms (default
/// 15000, 0 = off).
pub const RK_OPT_IDLE_TIMEOUT_MS: rk_option = 2;
/// A connection that has not completed its handshake this long after
/// connecting is dropped, in ms (default 5000, 0 = off).
pub const RK_OPT_HANDSHAKE_TIMEOUT_MS: rk_option = 3;
/// How long a closing connection (and a graceful shutdown) waits for the
/// peer's close frame, in ms (default 5000; 0 means 1 s for a connection).
pub const RK_OPT_CLOSE_TIMEOUT_MS: rk_option = 4;
/// The largest message accepted, in bytes (default 1 MiB, at least 1).
pub const RK_OPT_MAX_MESSAGE: rk_option = 5;
/// The most bytes queued for one connection before it is closed with 1008
/// (default 1 MiB, at least 1).
pub const RK_OPT_MAX_BACKLOG: rk_option = 6;
/// The most connections at once, handshakes included (default 1024, at
/// least 1).
pub const RK_OPT_MAX_CONNECTIONS: rk_option = 7;

/// The largest value a `_MS` option takes (`UINT32_MAX` ms, about 49 days).
const MAX_MS: u64 = u32::MAX as u64;

// ---- callbacks -----------------------------------------------------------------

/// The C callbacks; any member may be NULL. They run on the thread inside
/// [`rk_server_run`] / [`rk_server_run_once`] (or inside an API call that
/// ends a connection, for `on_close`) and must return normally (no
/// `longjmp`, no C++ exception).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct rk_callbacks {
    /// A connection is open; the server may send to it.
    pub on_open: Option<unsafe extern "C" fn(s: *mut rk_server, conn: u64, user: *mut c_void)>,
    /// A complete message arrived; `data` is valid during the call only.
    pub on_message: Option<
        unsafe extern "C" fn(
            s: *mut rk_server,
            conn: u64,
            data: *const u8,
            len: usize,
            is_text: c_int,
            user: *mut c_void,
        ),
    >,
    /// An upgraded connection is closed (once per connection); the id is
    /// stale afterwards.
    pub on_close:
        Option<unsafe extern "C" fn(s: *mut rk_server, conn: u64, code: u16, user: *mut c_void)>,
}

// ---- the server handle -----------------------------------------------------------

/// Where a handle is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Bound, not built yet: configurable.
    Fresh,
    /// Built and resting in `rk_server::server`.
    Ready,
    /// Built and taken out by a running function (the loop, or an API call).
    Busy,
    /// Unusable; every call returns this code.
    Broken(c_int),
}

/// The opaque server handle of the C API.
pub struct rk_server {
    // Shared with any thread and with signal handlers: atomics only.
    /// Set by [`rk_server_stop`]; read once the server is built.
    stop_requested: AtomicBool,
    /// The built server's stop handle (owned: from `Box::into_raw`), or NULL.
    stop_handle: AtomicPtr<StopHandle>,

    // The loop thread's only.
    local_addr: SocketAddr,
    state: Cell<State>,
    /// The listener until the server is built.
    listener: Cell<Option<TcpListener>>,
    /// The configuration until the server is built.
    config: RefCell<Config>,
    callbacks: Cell<rk_callbacks>,
    user: Cell<*mut c_void>,
    /// The server while `Ready`.
    server: Cell<Option<Box<Server<FfiHandler>>>>,
    /// The current callback's context, or NULL outside callbacks.
    ctx: Cell<*mut Context<'static>>,
}

thread_local! {
    /// Test hook: the handle whose next message makes the handler panic
    /// (see [`test_hook_panic_on_next_message`]). Kept out of `rk_server`
    /// so that production handles carry nothing for tests.
    static PANIC_ON_MESSAGE: Cell<*const rk_server> = const { Cell::new(ptr::null()) };
}

impl Drop for rk_server {
    fn drop(&mut self) {
        let handle = self.stop_handle.swap(ptr::null_mut(), Ordering::SeqCst);
        if !handle.is_null() {
            // SAFETY: the pointer came from `Box::into_raw` in `ensure_built`
            // and was swapped out above, so it is freed exactly once.
            drop(unsafe { Box::from_raw(handle) });
        }
    }
}

/// Turns [`Handler`] calls into C callbacks.
struct FfiHandler {
    /// The handle that owns the server that owns this handler: it outlives
    /// us, and it is only ever reached through shared references.
    owner: *mut rk_server,
}

impl FfiHandler {
    fn owner(&self) -> &rk_server {
        // SAFETY: the `rk_server` owns the `Server` that owns this handler,
        // so it is alive whenever the handler is called; it is only accessed
        // through shared references (interior mutability), and it is not
        // freed while the server is taken out (`rk_server_free` refuses
        // while `Busy`).
        unsafe { &*self.owner }
    }

    /// Calls `call` with the callbacks, the handle and the user pointer,
    /// with `ctx` published for re-entrant API calls.
    fn dispatch(
        &self,
        ctx: &mut Context<'_>,
        call: impl FnOnce(rk_callbacks, *mut rk_server, *mut c_void),
    ) {
        let owner = self.owner();
        let callbacks = owner.callbacks.get();
        let user = owner.user.get();
        let _scope = CallbackScope::enter(owner, ctx);
        call(callbacks, self.owner, user);
    }
}

impl Handler for FfiHandler {
    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        self.dispatch(ctx, |cb, s, user| {
            if let Some(f) = cb.on_open {
                // SAFETY: the C caller registered a valid function pointer
                // of this signature; the arguments are plain values and the
                // handle, valid for the call.
                unsafe { f(s, conn.as_u64(), user) }
            }
        });
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: Message<'_>) {
        let owner: *const rk_server = self.owner;
        if !owner.is_null() && PANIC_ON_MESSAGE.with(|p| p.get()) == owner {
            PANIC_ON_MESSAGE.with(|p| p.set(ptr::null()));
            panic!("test hook: panic in on_message");
        }
        let data = msg.as_bytes();
        let is_text = c_int::from(msg.is_text());
        self.dispatch(ctx, |cb, s, user| {
            if let Some(f) = cb.on_message {
                // SAFETY: as in `on_open`; `data` points to `data.len()`
                // bytes that live until this call returns.
                unsafe { f(s, conn.as_u64(), data.as_ptr(), data.len(), is_text, user) }
            }
        });
    }

    fn on_close(&mut self, ctx: &mut Context<'_>, conn: ConnId, code: u16, _reason: &str) {
        self.dispatch(ctx, |cb, s, user| {
            if let Some(f) = cb.on_close {
                // SAFETY: as in `on_open`.
                unsafe { f(s, conn.as_u64(), code, user) }
            }
        });
    }
}

/// Publishes a callback's context in `rk_server::ctx` for its duration
/// (restored on drop, unwinding included).
struct CallbackScope<'a> {
    owner: &'a rk_server,
    previous: *mut Context<'static>,
}

impl<'a> CallbackScope<'a> {
    fn enter(owner: &'a rk_server, ctx: &mut Context<'_>) -> CallbackScope<'a> {
        // The lifetime is erased; the pointer is cleared (on drop) before
        // the context it points to goes away, since the scope lives inside
        // the handler call that received the context.
        let raw = (ctx as *mut Context<'_>).cast::<Context<'static>>();
        let previous = owner.ctx.replace(raw);
        CallbackScope { owner, previous }
    }
}

impl Drop for CallbackScope<'_> {
    fn drop(&mut self) {
        self.owner.ctx.set(self.previous);
    }
}

/// The server, taken out of its handle while a function uses it; put back
/// on drop, or dropped (and the handle broken) if a panic unwinds.
struct Taken<'a> {
    owner: &'a rk_server,
    server: Option<Box<Server<FfiHandler>>>,
}

impl<'a> Taken<'a> {
    fn take(owner: &'a rk_server) -> Result<Taken<'a>, c_int> {
        match owner.state.get() {
            State::Ready => {}
            State::Fresh => return Err(RK_ENOTOPEN),
            State::Busy => return Err(RK_EBUSY),
            State::Broken(code) => return Err(code),
        }
        let server = owner.server.take().ok_or(RK_EIO)?;
        owner.state.set(State::Busy);
        Ok(Taken {
            owner,
            server: Some(server),
        })
    }

    fn server(&mut self) -> &mut Server<FfiHandler> {
        self.server
            .as_deref_mut()
            .expect("the server is present until drop")
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        let Some(server) = self.server.take() else {
            return;
        };
        if std::thread::panicking() {
            // Its state may be half-updated: drop it (closing every socket).
            self.owner.state.set(State::Broken(RK_EPANIC));
            drop(server);
        } else {
            self.owner.server.set(Some(server));
            self.owner.state.set(State::Ready);
        }
    }
}

// ---- helpers ---------------------------------------------------------------------

/// Runs `f`; a panic is logged and becomes `on_panic`.
fn guard<R>(what: &str, on_panic: R, f: impl FnOnce() -> R) -> R {
    // AssertUnwindSafe: after a panic, no state that the panic may have left
    // half-updated is used again. A server being run is dropped and its
    // handle marked broken (`Taken`); the callback context pointer is
    // restored (`CallbackScope`); `RefCell` borrows end on unwind.
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => value,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(no message)");
            error!("rookery: panic caught in {what}: {message}");
            // Dropping a payload may itself panic; never let that escape.
            if let Err(inner) = panic::catch_unwind(AssertUnwindSafe(|| drop(payload))) {
                std::mem::forget(inner);
            }
            on_panic
        }
    }
}

/// Runs `f` under [`guard`], flattening its result to an `int`.
fn guard_int(what: &str, f: impl FnOnce() -> Result<c_int, c_int>) -> c_int {
    guard(what, RK_EPANIC, || f().unwrap_or_else(|code| code))
}

/// The handle behind `s`, or [`RK_EINVAL`] for NULL.
///
/// # Safety
///
/// `s` is NULL or a live handle from [`rk_server_new`].
unsafe fn handle<'a>(s: *const rk_server) -> Result<&'a rk_server, c_int> {
    // SAFETY: per this function's contract; only shared references to a
    // handle are ever made (besides `rk_server_free`'s).
    unsafe { s.as_ref() }.ok_or(RK_EINVAL)
}

/// The UTF-8 string behind `p`.
///
/// # Safety
///
/// `p` is NULL or a NUL-terminated string valid for the call.
unsafe fn c_str<'a>(p: *const c_char) -> Result<&'a str, c_int> {
    if p.is_null() {
        return Err(RK_EINVAL);
    }
    // SAFETY: per this function's contract.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str().map_err(|_| RK_EUTF8)
}

/// The bytes behind `data`; NULL is allowed when `len` is 0.
///
/// # Safety
///
/// `data` is NULL or points to `len` readable bytes valid for the call.
unsafe fn bytes<'a>(data: *const u8, len: usize) -> Result<&'a [u8], c_int> {
    if data.is_null() {
        return if len == 0 { Ok(&[]) } else { Err(RK_EINVAL) };
    }
    if len > isize::MAX as usize {
        return Err(RK_EINVAL);
    }
    // SAFETY: per this function's contract; `len` fits a slice.
    Ok(unsafe { std::slice::from_raw_parts(data, len) })
}

/// The message `data`/`len`/`is_text` describe.
fn message(data: &[u8], is_text: c_int) -> Result<Message<'_>, c_int> {
    if is_text != 0 {
        std::str::from_utf8(data)
            .map(Message::Text)
            .map_err(|_| RK_EUTF8)
    } else {
        Ok(Message::Binary(data))
    }
}

fn send_error(e: SendError) -> c_int {
    match e {
        SendError::InvalidCloseCode => RK_ECODE,
        SendError::ControlTooLong => RK_EINVAL,
        // Not open, not pending activation, no upgrade decision owed (the
        // last cannot happen through the C API, which decides none).
        _ => RK_ENOTOPEN,
    }
}

/// Fails with [`RK_EBUSY`] unless the handle is still configurable.
fn configurable(s: &rk_server) -> Result<(), c_int> {
    match s.state.get() {
        State::Fresh => Ok(()),
        State::Broken(code) => Err(code),
        State::Ready | State::Busy => Err(RK_EBUSY),
    }
}

/// Builds the server on first use.
fn ensure_built(raw: *mut rk_server, s: &rk_server) -> Result<(), c_int> {
    match s.state.get() {
        State::Fresh => {}
        State::Ready | State::Busy => return Ok(()),
        State::Broken(code) => return Err(code),
    }
    let listener = s.listener.take().ok_or(RK_EIO)?;
    let config = s.config.borrow().clone();
    let server = match Server::from_listener(listener, config, FfiHandler { owner: raw }) {
        Ok(server) => Box::new(server),
        Err(e) => {
            error!("rookery: cannot start the server: {e}");
            s.state.set(State::Broken(RK_EIO));
            return Err(RK_EIO);
        }
    };
    let stop = Box::into_raw(Box::new(server.stop_handle()));
    // Publish the handle, then look at the flag; `rk_server_stop` sets the
    // flag, then looks at the handle. All four are SeqCst, so at least one
    // side sees the other's write: a stop is never lost.
    s.stop_handle.store(stop, Ordering::SeqCst);
    if s.stop_requested.load(Ordering::SeqCst) {
        server.stop_handle().stop();
    }
    s.server.set(Some(server));
    s.state.set(State::Ready);
    Ok(())
}

/// Runs `f` with a context: the current callback's if one is running,
/// else the resting server's (then delivering any `on_close` it caused).
fn with_context<R>(s: &rk_server, f: impl FnOnce(&mut Context<'_>) -> R) -> Result<R, c_int> {
    let raw = s.ctx.get();
    if !raw.is_null() {
        // SAFETY: `ctx` is non-NULL only while a callback of this server
        // runs on this thread (`CallbackScope`), and points to the context
        // the handler received; the handler does not use that context until
        // the callback returns, and callbacks never nest, so this is the
        // only live use of it. The reference ends before this returns.
        let ctx = unsafe { &mut *raw };
        return Ok(f(ctx));
    }
    let mut taken = Taken::take(s)?;
    Ok(taken.server().with_context(|ctx, _| f(ctx)))
}

// ---- the API ---------------------------------------------------------------------

/// Binds and listens on `listen_addr` (`"127.0.0.1:0"` picks a free port).
/// Returns NULL on error; `*err` (if `err` is not NULL) is set to
/// [`RK_OK`] or the error code.
///
/// # Safety
///
/// `listen_addr` is NULL or a NUL-terminated string; `err` is NULL or
/// points to a writable `int`.
#[no_mangle]
pub unsafe extern "C" fn rk_server_new(
    listen_addr: *const c_char,
    err: *mut c_int,
) -> *mut rk_server {
    let (server, code) = guard("rk_server_new", (ptr::null_mut(), RK_EPANIC), || {
        // A C program has no other way to see the library's log lines.
        let _ = env_logger::try_init();
        // SAFETY: per this function's contract.
        let addr = match unsafe { c_str(listen_addr) } {
            Ok(addr) => addr,
            Err(code) => return (ptr::null_mut(), code),
        };
        let listener = match TcpListener::bind(addr) {
            Ok(listener) => listener,
            Err(e) => {
                debug!("rookery: cannot listen on {addr:?}: {e}");
                return (ptr::null_mut(), RK_EADDR);
            }
        };
        let local_addr = match listener.local_addr() {
            Ok(a) => a,
            Err(_) => return (ptr::null_mut(), RK_EIO),
        };
        let server = Box::new(rk_server {
            stop_requested: AtomicBool::new(false),
            stop_handle: AtomicPtr::new(ptr::null_mut()),
            local_addr,
            state: Cell::new(State::Fresh),
            listener: Cell::new(Some(listener)),
            config: RefCell::new(Config::default()),
            callbacks: Cell::new(rk_callbacks::default()),
            user: Cell::new(ptr::null_mut()),
            server: Cell::new(None),
            ctx: Cell::new(ptr::null_mut()),
        });
        (Box::into_raw(server), RK_OK)
    });
    if !err.is_null() {
        // SAFETY: per this function's contract.
        unsafe { err.write(code) };
    }
    server
}

/// Sets the path WebSocket upgrades are accepted on (default `"/chat"`);
/// it must start with `/`. Only before the server first runs.
///
/// # Safety
///
/// `s` is NULL or a live handle; `path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn rk_server_set_path(s: *mut rk_server, path: *const c_char) -> c_int {
    guard_int("rk_server_set_path", || {
        // SAFETY: per this function's contract.
        let s = unsafe { handle(s) }?;
        // SAFETY: per this function's contract.
        let path = unsafe { c_str(path) }?;
        if !path.starts_with('/') {
            return Err(RK_EINVAL);
        }
        configurable(s)?;
        s.config.borrow_mut().path = path.to_string();
        Ok(RK_OK)
    })
}

/// Sets a limit or timer (see the `RK_OPT_` constants). Only before the
/// server first runs.
///
/// # Safety
///
/// `s` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn rk_server_set_option(
    s: *mut rk_server,
    opt: rk_option,
    value: u64,
) -> c_int {
    guard_int("rk_server_set_option", || {
        // SAFETY: per this function's contract.
        let s = unsafe { handle(s) }?;
        let ms = || {
            if value > MAX_MS {
                Err(RK_EINVAL)
            } else {
                Ok(Duration::from_millis(value))
            }
        };
        let size = || match usize::try_from(value) {
            Ok(0) | Err(_) => Err(RK_EINVAL),
            Ok(n) => Ok(n),
        };
        // Check the value before the state, so a bad option is reported as
        // such whatever the state.
        enum Set {
            Ping(Duration),
            Idle(Duration),
            Handshake(Duration),
            Close(Duration),
            MaxMessage(u64),
            MaxBacklog(usize),
            MaxConnections(usize),
        }
        let set = match opt {
            RK_OPT_PING_INTERVAL_MS => Set::Ping(ms()?),
            RK_OPT_IDLE_TIMEOUT_MS => Set::Idle(ms()?),
            RK_OPT_HANDSHAKE_TIMEOUT_MS => Set::Handshake(ms()?),
            RK_OPT_CLOSE_TIMEOUT_MS => Set::Close(ms()?),
            RK_OPT_MAX_MESSAGE if value > 0 => Set::MaxMessage(value),
            RK_OPT_MAX_BACKLOG => Set::MaxBacklog(size()?),
            RK_OPT_MAX_CONNECTIONS => Set::MaxConnections(size()?),
            _ => return Err(RK_EINVAL),
        };
        configurable(s)?;
        let mut config = s.config.borrow_mut();
        match set {
            Set::Ping(d) => config.ping_interval = d,
            Set::Idle(d) => config.idle_timeout = d,
            Set::Handshake(d) => config.handshake_timeout = d,
            Set::Close(d) => config.close_timeout = d,
            Set::MaxMessage(n) => config.max_message = n,
            Set::MaxBacklog(n) => config.max_backlog = n,
            Set::MaxConnections(n) => config.max_connections = n,
        }
        Ok(RK_OK)
    })
}

/// Sets the callbacks (copied) and the pointer passed to them. Allowed at
/// any time, from a callback too; the next event uses the new ones.
///
/// # Safety
///
/// `s` is NULL or a live handle; `cb` is NULL or points to an
/// `rk_callbacks` whose non-NULL members are valid functions.
#[no_mangle]
pub unsafe extern "C" fn rk_server_set_callbacks(
    s: *mut rk_server,
    cb: *const rk_callbacks,
    user: *mut c_void,
) -> c_int {
    guard_int("rk_server_set_callbacks", || {
        // SAFETY: per this function's contract.
        let s = unsafe { handle(s) }?;
        // SAFETY: per this function's contract; `rk_callbacks` is `Copy`
        // and every bit pattern of its members (nullable function pointers)
        // the C side can build is valid.
        let cb = unsafe { cb.as_ref() }.ok_or(RK_EINVAL)?;
        s.callbacks.set(*cb);
        s.user.set(user);
        Ok(RK_OK)
    })
}

/// The port the server listens on, or 0 if `s` is NULL.
///
/// # Safety
///
/// `s` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn rk_server_port(s: *const rk_server) -> u16 {
    guard("rk_server_port", 0, || {
        // SAFETY: per this function's contract.
        unsafe { handle(s) }.map_or(0, |s| s.local_addr.port())
    })
}

/// Serves until [`rk_server_stop`], then closes every connection gracefully
/// and returns [`RK_OK`] (or an error code).
///
/// # Safety
///
/// `s` is NULL or a live handle, used on this thread only.
#[no_mangle]
pub unsafe extern "C" fn rk_server_run(s: *mut rk_server) -> c_int {
    guard_int("rk_server_run", || {
        // SAFETY: per this function's contract.
        let h = unsafe { handle(s) }?;
        ensure_built(s, h)?;
        let mut taken = Taken::take(h)?;
        loop {
            match taken.server().run_once(None) {
                Ok(true) => {}
                Ok(false) => return Ok(RK_OK),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    error!("rookery: poll failed: {e}");
                    return Err(RK_EIO);
                }
            }
        }
    })
}

/// Waits at most `timeout_ms` (negative: until something happens; 0: not
/// at all) and handles what is ready. Returns 1 while the server runs, 0
/// once it has stopped, or an error code.
///
/// # Safety
///
/// `s` is NULL or a live handle, used on this thread only.
#[no_mangle]
pub unsafe extern "C" fn rk_server_run_once(s: *mut rk_server, timeout_ms: c_int) -> c_int {
    guard_int("rk_server_run_once", || {
        // SAFETY: per this function's contract.
        let h = unsafe { handle(s) }?;
        ensure_built(s, h)?;
        let mut taken = Taken::take(h)?;
        let timeout = u64::try_from(timeout_ms).ok().map(Duration::from_millis);
        match taken.server().run_once(timeout) {
            Ok(running) => Ok(c_int::from(running)),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(1),
            Err(e) => {
                error!("rookery: poll failed: {e}");
                Err(RK_EIO)
            }
        }
    })
}

/// Begins a graceful shutdown: stop accepting, close every connection with
/// 1001, then [`rk_server_run`] returns. Safe from a signal handler and
/// from any thread; before the server runs, it makes the first run stop at
/// once. NULL is ignored.
///
/// # Safety
///
/// `s` is NULL or a live handle; [`rk_server_free`] must not run
/// concurrently.
#[no_mangle]
pub unsafe extern "C" fn rk_server_stop(s: *mut rk_server) {
    // No logging and no allocation here: this runs in signal handlers.
    guard("rk_server_stop", (), || {
        if s.is_null() {
            return;
        }
        // SAFETY: `s` is a live handle (contract). Only references to its two
        // atomic fields are made, never to the whole struct, so this does not
        // conflict with the loop thread's use of the other fields.
        let (flag, stop) = unsafe { (&(*s).stop_requested, &(*s).stop_handle) };
        flag.store(true, Ordering::SeqCst);
        let stop = stop.load(Ordering::SeqCst);
        // SAFETY: a non-NULL pointer is the boxed handle, alive until
        // `rk_server_free` (which must not run concurrently). `stop` only
        // does an atomic store and an eventfd write: async-signal-safe.
        if let Some(stop) = unsafe { stop.as_ref() } {
            stop.stop();
        }
    });
}

/// Sends a message (`is_text` non-zero: text, which must be UTF-8) to one
/// connection. `data` may be NULL when `len` is 0.
///
/// # Safety
///
/// `s` is NULL or a live handle; `data` is NULL or points to `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn rk_send(
    s: *mut rk_server,
    conn: u64,
    data: *const u8,
    len: usize,
    is_text: c_int,
) -> c_int {
    guard_int("rk_send", || {
        // SAFETY: per this function's contract.
        let s = unsafe { handle(s) }?;
        // SAFETY: per this function's contract.
        let msg = message(unsafe { bytes(data, len) }?, is_text)?;
        with_context(s, |ctx| ctx.send(ConnId::from_u64(conn), msg))?.map_err(send_error)?;
        Ok(RK_OK)
    })
}

/// Sends a message to every open connection, encoding it once. Returns how
/// many connections it was given to (0 or more), or an error code.
///
/// # Safety
///
/// `s` is NULL or a live handle; `data` is NULL or points to `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn rk_broadcast(
    s: *mut rk_server,
    data: *const u8,
    len: usize,
    is_text: c_int,
) -> c_int {
    guard_int("rk_broadcast", || {
        // SAFETY: per this function's contract.
        let s = unsafe { handle(s) }?;
        // SAFETY: per this function's contract.
        let msg = message(unsafe { bytes(data, len) }?, is_text)?;
        if s.state.get() == State::Fresh {
            return Ok(0);
        }
        let sent = with_context(s, |ctx| ctx.broadcast(msg))?;
        Ok(c_int::try_from(sent).unwrap_or(c_int::MAX))
    })
}

/// Closes a connection gracefully: a close frame with `code` and `reason`
/// (NULL: none; cut to 123 bytes), then waits for the peer's, at most the
/// close timeout. `on_close` follows.
///
/// # Safety
///
/// `s` is NULL or a live handle; `reason` is NULL or a NUL-terminated
/// string.
#[no_mangle]
pub unsafe extern "C" fn rk_close(
    s: *mut rk_server,
    conn: u64,
    code: u16,
    reason: *const c_char,
) -> c_int {
    guard_int("rk_close", || {
        // SAFETY: per this function's contract.
        let s = unsafe { handle(s) }?;
        let reason = if reason.is_null() {
            ""
        } else {
            // SAFETY: per this function's contract.
            unsafe { c_str(reason) }?
        };
        if !crate::proto::close::is_valid_on_wire(code) {
            return Err(RK_ECODE);
        }
        with_context(s, |ctx| ctx.close(ConnId::from_u64(conn), code, reason))?
            .map_err(send_error)?;
        Ok(RK_OK)
    })
}

/// Drops a connection at once (no closing handshake); `on_close` follows
/// with 1006 if it was open.
///
/// # Safety
///
/// `s` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn rk_kill(s: *mut rk_server, conn: u64) -> c_int {
    guard_int("rk_kill", || {
        // SAFETY: per this function's contract.
        let s = unsafe { handle(s) }?;
        with_context(s, |ctx| ctx.kill(ConnId::from_u64(conn)))?.map_err(send_error)?;
        Ok(RK_OK)
    })
}

/// Frees the handle: every connection is dropped at once, without close
/// frames or `on_close` (stop and run to the end first for a graceful
/// close). NULL is ignored; so is a call while the server runs (from a
/// callback), which is logged.
///
/// # Safety
///
/// `s` is NULL or a live handle, not used afterwards, and not being used
/// by [`rk_server_stop`] on another thread or in a signal handler.
#[no_mangle]
pub unsafe extern "C" fn rk_server_free(s: *mut rk_server) {
    guard("rk_server_free", (), || {
        // SAFETY: per this function's contract.
        let Ok(h) = (unsafe { handle(s) }) else {
            return;
        };
        if h.state.get() == State::Busy || !h.ctx.get().is_null() {
            error!("rookery: rk_server_free called while the server runs: ignored");
            return;
        }
        // SAFETY: `s` came from `Box::into_raw` in `rk_server_new` (contract)
        // and is not in use: the state is not `Busy`, so no function of this
        // handle is running on this thread, and the contract excludes others.
        drop(unsafe { Box::from_raw(s) });
    });
}

/// A static, NUL-terminated description of an error code (`"unknown
/// error"` for a code that is not one).
#[no_mangle]
pub extern "C" fn rk_strerror(err: c_int) -> *const c_char {
    let text: &'static [u8] = match err {
        RK_OK => b"success\0",
        RK_EINVAL => b"invalid argument\0",
        RK_ENOTOPEN => b"connection not open\0",
        RK_EBUSY => b"server busy or already started\0",
        RK_EIO => b"I/O error\0",
        RK_EPANIC => b"internal error (panic caught)\0",
        RK_EADDR => b"cannot listen on that address\0",
        RK_EUTF8 => b"invalid UTF-8\0",
        RK_ECODE => b"close code not allowed\0",
        _ => b"unknown error\0",
    };
    text.as_ptr().cast()
}

/// Test hook, not part of the C API: the next message `s` receives makes
/// the Rust handler panic before any callback runs, so that tests can check
/// the panic is caught at the boundary. Hidden, unstable.
///
/// # Safety
///
/// `s` is NULL or a live handle.
#[doc(hidden)]
pub unsafe fn test_hook_panic_on_next_message(s: *mut rk_server) {
    // SAFETY: per this function's contract.
    if let Ok(s) = unsafe { handle(s) } {
        PANIC_ON_MESSAGE.with(|p| p.set(s));
    }
}

// ---- topics (SPEC §8) ----------------------------------------------------------

/// Subscribes connection `conn` to `topic` (a UTF-8 C string; any name):
/// it receives what [`rk_publish`] sends to `topic` from now on, in order
/// with everything else it is sent. A closed connection leaves all its
/// topics. Returns 1 if it was subscribed now, 0 if it already was, or
/// [`RK_EINVAL`], [`RK_EUTF8`], [`RK_ENOTOPEN`] (no such connection).
///
/// # Safety
///
/// `s` is NULL or a live handle; `topic` is NULL or a C string.
#[no_mangle]
pub unsafe extern "C" fn rk_subscribe(s: *mut rk_server, conn: u64, topic: *const c_char) -> c_int {
    guard_int("rk_subscribe", || {
        // SAFETY: per this function's contract.
        let s = unsafe { handle(s) }?;
        // SAFETY: per this function's contract.
        let topic = unsafe { c_str(topic) }?;
        let fresh = with_context(s, |ctx| ctx.subscribe(ConnId::from_u64(conn), topic))?
            .map_err(send_error)?;
        Ok(c_int::from(fresh))
    })
}

/// Unsubscribes connection `conn` from `topic`. Returns 1 if it was
/// subscribed, 0 if not, or [`RK_EINVAL`], [`RK_EUTF8`], [`RK_ENOTOPEN`].
///
/// # Safety
///
/// `s` is NULL or a live handle; `topic` is NULL or a C string.
#[no_mangle]
pub unsafe extern "C" fn rk_unsubscribe(
    s: *mut rk_server,
    conn: u64,
    topic: *const c_char,
) -> c_int {
    guard_int("rk_unsubscribe", || {
        // SAFETY: per this function's contract.
        let s = unsafe { handle(s) }?;
        // SAFETY: per this function's contract.
        let topic = unsafe { c_str(topic) }?;
        let was = with_context(s, |ctx| ctx.unsubscribe(ConnId::from_u64(conn), topic))?
            .map_err(send_error)?;
        Ok(c_int::from(was))
    })
}

/// Sends a message to the subscribers of `topic`, encoding it once.
/// Returns how many connections it was given to (0 or more), or
/// [`RK_EINVAL`], [`RK_EUTF8`].
///
/// # Safety
///
/// `s` is NULL or a live handle; `topic` is NULL or a C string; `data` is
/// NULL or points to `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn rk_publish(
    s: *mut rk_server,
    topic: *const c_char,
    data: *const u8,
    len: usize,
    is_text: c_int,
) -> c_int {
    guard_int("rk_publish", || {
        // SAFETY: per this function's contract.
        let s = unsafe { handle(s) }?;
        // SAFETY: per this function's contract.
        let topic = unsafe { c_str(topic) }?;
        // SAFETY: per this function's contract.
        let msg = message(unsafe { bytes(data, len) }?, is_text)?;
        if s.state.get() == State::Fresh {
            return Ok(0);
        }
        let sent = with_context(s, |ctx| ctx.publish(topic, msg))?;
        Ok(c_int::try_from(sent).unwrap_or(c_int::MAX))
    })
}
