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
//! Everything except [`rk_server_stop`] and [`rk_post`] must be called on
//! one thread at a time (the one that runs the loop, in practice).
//! [`rk_server_stop`] only touches atomics and the poller's eventfd, so it
//! is safe from any thread and from a signal handler. [`rk_post`] touches
//! only the atomic pointer to the server's [`Poster`] (a mutex-protected
//! queue, `Sync`), so it is safe from any thread (not from a signal
//! handler: it locks and allocates).
//!
//! # Section 10 state
//!
//! What the newer calls need lives beside the server, on the loop thread:
//! the poller's descriptor (cached at build, for [`rk_server_fd`]), the
//! upgrade being decided (for [`rk_accept_protocol`], only inside
//! `on_upgrade`), and the per-connection user pointers (a map keyed by id,
//! not in the connection slots, whose size is measured). `on_upgrade` and
//! `on_http` get an [`rk_request`] holding NUL-terminated copies of the
//! request's parts; `on_http` fills an [`rk_response`]. The handler gives
//! `on_http` no context, so calls that need one return [`RK_EBUSY`] there.
//!
//! # Files
//!
//! This file holds what every part shares: the error codes and options,
//! `rk_callbacks`, the handle (`rk_server`) and its state, `rk_request` and
//! `rk_response`, and the boundary (the panic guard, pointer and string
//! checks, taking the server out of its cell). The entry points are in
//! `lifecycle` (new, settings, run, stop, free), `connections` (send,
//! broadcast, close, kill, user pointers, peers), `topics`, `posts`
//! (`rk_post`, timers), `requests` (upgrades and HTTP answers),
//! `event_loop` (descriptor and timeout for another loop) and `logging`;
//! `callbacks` is the handler that calls C.
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
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::net::{SocketAddr, TcpListener};
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::time::Duration;

use log::{debug, error};

mod callbacks;
mod connections;
mod event_loop;
mod lifecycle;
mod logging;
mod posts;
mod requests;
mod topics;

#[cfg(feature = "internals")]
pub use self::callbacks::test_hook_panic_on_next_message;
pub use self::connections::*;
pub use self::event_loop::*;
pub use self::lifecycle::*;
pub use self::logging::{rk_log_fn, rk_set_log};
pub use self::posts::*;
pub use self::requests::*;
pub use self::topics::*;

use crate::proto::http::{Request, Response};
use crate::{
    CloseCode, Config, ConnId, Context, Handler, Message, PostError, Poster, SendError, Server,
    StopHandle, TimerId, Upgrade,
};

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
/// Would block: [`rk_post`] found `RK_OPT_MAX_POSTED` bytes already waiting.
pub const RK_EAGAIN: c_int = -9;
/// Not supported by this build (a cargo feature left out).
pub const RK_ENOTSUP: c_int = -10;
/// A TLS certificate or key that cannot be used.
pub const RK_ETLS: c_int = -11;
/// No such thing: a timer that fired, was cancelled, or never existed.
pub const RK_ENOTFOUND: c_int = -12;

/// `on_upgrade`: accept the connection, open at once.
pub const RK_UPGRADE_ACCEPT: c_int = 0;
/// `on_upgrade`: accept, but read no frame until [`rk_activate`].
pub const RK_UPGRADE_DELAYED: c_int = 1;

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
/// The most bytes [`rk_post`] may hold waiting for the loop (payloads plus
/// 40 bytes each; default 1 MiB, at least 1).
pub const RK_OPT_MAX_POSTED: rk_option = 8;
/// Take clients' permessage-deflate offers (RFC 7692): 0 (default) or 1.
/// `RK_ENOTSUP` in a library built without the `deflate` feature.
pub const RK_OPT_DEFLATE: rk_option = 9;
/// The most connections at once from one IP address, handshakes included;
/// more are answered `503` (default 0 = no limit).
pub const RK_OPT_MAX_CONNECTIONS_PER_IP: rk_option = 10;
/// The most messages a second an open connection may send, else close 1008
/// (default 0 = no limit); sets the burst to the same number.
pub const RK_OPT_RATE_LIMIT: rk_option = 11;
/// The burst of [`RK_OPT_RATE_LIMIT`] (set after it; at least 1).
pub const RK_OPT_RATE_LIMIT_BURST: rk_option = 12;
/// The most payload bytes a second (inflated) an open connection may send,
/// else close 1008 (default 0 = no limit); sets the burst to the same number.
pub const RK_OPT_RATE_LIMIT_BYTES: rk_option = 13;
/// The burst of [`RK_OPT_RATE_LIMIT_BYTES`] (set after it; at least 1).
pub const RK_OPT_RATE_LIMIT_BYTES_BURST: rk_option = 14;
/// How the loop moves bytes: [`RK_IO_AUTO`] (default), [`RK_IO_EPOLL`] or
/// [`RK_IO_URING`] (`RK_ENOTSUP` in a library built without the `uring`
/// feature; where the kernel refuses it, the first run fails with
/// `RK_EIO` and the reason logged).
pub const RK_OPT_IO: rk_option = 15;

/// Values of [`RK_OPT_IO`]: io_uring where it is built in and the kernel
/// allows it, else epoll.
pub const RK_IO_AUTO: u64 = 0;
/// Readiness through epoll.
pub const RK_IO_EPOLL: u64 = 1;
/// Linux io_uring (SPEC section 11).
pub const RK_IO_URING: u64 = 2;

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
    /// A valid upgrade request: return [`RK_UPGRADE_ACCEPT`],
    /// [`RK_UPGRADE_DELAYED`], or an HTTP status 400..=599 to refuse with.
    pub on_upgrade: Option<
        unsafe extern "C" fn(
            s: *mut rk_server,
            conn: u64,
            req: *const rk_request,
            user: *mut c_void,
        ) -> c_int,
    >,
    /// A plain HTTP request (not an upgrade on the WebSocket path): fill
    /// `res` (it starts as `404 Not Found`).
    pub on_http: Option<
        unsafe extern "C" fn(
            s: *mut rk_server,
            req: *const rk_request,
            res: *mut rk_response,
            user: *mut c_void,
        ),
    >,
    /// A timer set with [`rk_set_timer`] fired.
    pub on_timer: Option<unsafe extern "C" fn(s: *mut rk_server, token: u64, user: *mut c_void)>,
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
    /// The built server's poster (owned: from `Box::into_raw`), or NULL;
    /// [`rk_post`] uses it from any thread.
    poster: AtomicPtr<Poster>,

    // The loop thread's only.
    local_addr: SocketAddr,
    state: Cell<State>,
    /// The listener until the server is built.
    listener: Cell<Option<TcpListener>>,
    /// The configuration until the server is built.
    config: RefCell<Config>,
    /// The certificate and key, from `rk_server_set_tls`, until the server
    /// is built.
    #[cfg(feature = "tls")]
    tls: RefCell<Option<crate::tls::TlsConfig>>,
    callbacks: Cell<rk_callbacks>,
    user: Cell<*mut c_void>,
    /// The server while `Ready`.
    server: Cell<Option<Box<Server<FfiHandler>>>>,
    /// The current callback's context, or NULL outside callbacks.
    ctx: Cell<*mut Context<'static>>,
    /// The poller's descriptor once built (-1 before).
    fd: Cell<c_int>,
    /// The upgrade `on_upgrade` is deciding, while it runs.
    upgrade: RefCell<Option<UpgradeCall>>,
    /// The per-connection pointers of [`rk_conn_set_user`], kept here rather
    /// than in the connection slots (whose size is measured); removed when
    /// the connection closes.
    conn_users: RefCell<HashMap<u64, *mut c_void>>,
}

/// The upgrade being decided in `on_upgrade`.
struct UpgradeCall {
    conn: u64,
    /// The subprotocols the client offered.
    offered: Vec<String>,
    /// The one [`rk_accept_protocol`] chose.
    protocol: Option<String>,
}

#[cfg(feature = "internals")]
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
        let poster = self.poster.swap(ptr::null_mut(), Ordering::SeqCst);
        if !poster.is_null() {
            // SAFETY: from `Box::into_raw` in `ensure_built`, swapped out
            // above: freed once. No `rk_post` runs concurrently (contract of
            // `rk_server_free`).
            drop(unsafe { Box::from_raw(poster) });
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

// ---- requests and responses ----------------------------------------------------

/// The request `on_upgrade` and `on_http` see: NUL-terminated copies of
/// its parts, made for the call (a header when it is asked for).
pub struct rk_request {
    req: *const Request,
    method: CString,
    path: CString,
    query: CString,
    /// Header values handed out so far; each `CString` keeps its buffer
    /// where it is while the vector grows, so earlier pointers stay valid.
    headers: RefCell<Vec<CString>>,
}

impl rk_request {
    fn new(req: &Request) -> rk_request {
        let c = |s: &str| CString::new(s).unwrap_or_default();
        let query = req.target().split_once('?').map_or("", |(_, q)| q);
        rk_request {
            req,
            method: c(req.method()),
            path: c(req.path()),
            query: c(query),
            headers: RefCell::new(Vec::new()),
        }
    }
}

/// The answer `on_http` builds.
pub struct rk_response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl rk_response {
    fn new() -> rk_response {
        rk_response {
            status: 404,
            headers: Vec::new(),
            body: None,
        }
    }

    /// The response: without a body set, the default text for the status.
    fn finish(self) -> Response {
        let mut response = match self.body {
            None => Response::status(self.status),
            Some(body) => Response {
                status: self.status,
                headers: Vec::new(),
                body,
            },
        };
        if self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        {
            response
                .headers
                .retain(|(n, _)| !n.eq_ignore_ascii_case("content-type"));
        }
        response.headers.extend(self.headers);
        response
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
        #[cfg(feature = "tls")]
        Ok(mut server) => {
            if let Some(tls) = s.tls.borrow_mut().take() {
                server.set_tls(tls);
            }
            Box::new(server)
        }
        #[cfg(not(feature = "tls"))]
        Ok(server) => Box::new(server),
        Err(e) => {
            error!("rookery: cannot start the server: {e}");
            s.state.set(State::Broken(RK_EIO));
            return Err(RK_EIO);
        }
    };
    s.fd.set(std::os::fd::AsRawFd::as_raw_fd(&*server));
    s.poster
        .store(Box::into_raw(Box::new(server.poster())), Ordering::SeqCst);
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
