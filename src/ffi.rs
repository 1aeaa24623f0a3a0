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

mod logging;
pub use self::logging::{rk_log_fn, rk_set_log};

use crate::proto::http::{Request, Response};
use crate::{
    Config, ConnId, Context, Handler, Message, PostError, Poster, SendError, Server, StopHandle,
    TimerId, Upgrade,
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
        // After the callback, which may still want its pointer.
        self.owner().conn_users.borrow_mut().remove(&conn.as_u64());
    }

    fn on_upgrade(&mut self, ctx: &mut Context<'_>, conn: ConnId, req: &Request) -> Upgrade {
        let owner = self.owner();
        if owner.callbacks.get().on_upgrade.is_none() {
            return Upgrade::accept();
        }
        let request = rk_request::new(req);
        *owner.upgrade.borrow_mut() = Some(UpgradeCall {
            conn: conn.as_u64(),
            offered: crate::proto::handshake::offered_protocols(req)
                .map(str::to_string)
                .collect(),
            protocol: None,
        });
        let mut answer = RK_UPGRADE_ACCEPT;
        self.dispatch(ctx, |cb, s, user| {
            if let Some(f) = cb.on_upgrade {
                // SAFETY: as in `on_open`; `request` lives until this call
                // returns.
                answer = unsafe { f(s, conn.as_u64(), &request, user) };
            }
        });
        let protocol = owner.upgrade.borrow_mut().take().and_then(|c| c.protocol);
        match answer {
            RK_UPGRADE_ACCEPT => Upgrade::Accept {
                protocol,
                delayed: false,
            },
            RK_UPGRADE_DELAYED => Upgrade::Accept {
                protocol,
                delayed: true,
            },
            status => {
                owner.conn_users.borrow_mut().remove(&conn.as_u64());
                match u16::try_from(status) {
                    Ok(status @ 400..=599) => Upgrade::reject(status),
                    _ => {
                        error!("rookery: on_upgrade returned {status}, not 0, 1 or 400..599: answering 500");
                        Upgrade::reject(500)
                    }
                }
            }
        }
    }

    fn on_http(&mut self, req: &Request) -> Response {
        let owner = self.owner();
        let Some(f) = owner.callbacks.get().on_http else {
            return Response::status(404);
        };
        let request = rk_request::new(req);
        let mut response = rk_response::new();
        // No context is published here (the handler gets none): API calls
        // that need one return RK_EBUSY from inside on_http.
        // SAFETY: as in `on_open`; `request` and `response` live until this
        // call returns.
        unsafe { f(self.owner, &request, &mut response, owner.user.get()) };
        response.finish()
    }

    fn on_timer(&mut self, ctx: &mut Context<'_>, token: u64) {
        self.dispatch(ctx, |cb, s, user| {
            if let Some(f) = cb.on_timer {
                // SAFETY: as in `on_open`.
                unsafe { f(s, token, user) }
            }
        });
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
        // A C program has no other way to see the library's log lines
        // (stderr, or its own function after rk_set_log).
        logging::install();
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
            #[cfg(feature = "tls")]
            tls: RefCell::new(None),
            callbacks: Cell::new(rk_callbacks::default()),
            user: Cell::new(ptr::null_mut()),
            server: Cell::new(None),
            ctx: Cell::new(ptr::null_mut()),
            poster: AtomicPtr::new(ptr::null_mut()),
            fd: Cell::new(-1),
            upgrade: RefCell::new(None),
            conn_users: RefCell::new(HashMap::new()),
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

/// Makes the listener speak TLS (https and wss on the same port) with the
/// PEM certificate (chain) and key in these files. Only before the server
/// first runs. `RK_ETLS` if a file is missing or unusable (the reason is
/// logged), `RK_ENOTSUP` in a library built without the `tls` feature.
///
/// # Safety
///
/// `s` is NULL or a live handle; `cert_pem_file` and `key_pem_file` are
/// NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn rk_server_set_tls(
    s: *mut rk_server,
    cert_pem_file: *const c_char,
    key_pem_file: *const c_char,
) -> c_int {
    guard_int("rk_server_set_tls", || {
        // SAFETY: per this function's contract.
        let s = unsafe { handle(s) }?;
        // SAFETY: per this function's contract.
        let cert = unsafe { c_str(cert_pem_file) }?;
        // SAFETY: per this function's contract.
        let key = unsafe { c_str(key_pem_file) }?;
        configurable(s)?;
        set_tls(s, cert, key)
    })
}

#[cfg(feature = "tls")]
fn set_tls(s: &rk_server, cert: &str, key: &str) -> Result<c_int, c_int> {
    match crate::tls::TlsConfig::from_pem_files(cert.as_ref(), key.as_ref()) {
        Ok(config) => {
            *s.tls.borrow_mut() = Some(config);
            Ok(RK_OK)
        }
        Err(e) => {
            error!("rookery: rk_server_set_tls: {e}");
            Err(RK_ETLS)
        }
    }
}

#[cfg(not(feature = "tls"))]
fn set_tls(_s: &rk_server, _cert: &str, _key: &str) -> Result<c_int, c_int> {
    Err(RK_ENOTSUP)
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
            MaxPosted(usize),
            Deflate(bool),
            PerIp(usize),
            Rate(Option<crate::Rate>),
            RateBurst(u64),
            RateBytes(Option<crate::Rate>),
            RateBytesBurst(u64),
        }
        // A rate of `value` a second, as much at once; 0: none.
        let rate = || match value {
            0 => Ok(None),
            n => crate::Rate::new(n, n).map(Some).ok_or(RK_EINVAL),
        };
        let set = match opt {
            RK_OPT_PING_INTERVAL_MS => Set::Ping(ms()?),
            RK_OPT_IDLE_TIMEOUT_MS => Set::Idle(ms()?),
            RK_OPT_HANDSHAKE_TIMEOUT_MS => Set::Handshake(ms()?),
            RK_OPT_CLOSE_TIMEOUT_MS => Set::Close(ms()?),
            RK_OPT_MAX_MESSAGE if value > 0 => Set::MaxMessage(value),
            RK_OPT_MAX_BACKLOG => Set::MaxBacklog(size()?),
            RK_OPT_MAX_CONNECTIONS => Set::MaxConnections(size()?),
            RK_OPT_MAX_POSTED => Set::MaxPosted(size()?),
            RK_OPT_DEFLATE if value > 1 => return Err(RK_EINVAL),
            RK_OPT_DEFLATE if value == 1 && !cfg!(feature = "deflate") => return Err(RK_ENOTSUP),
            RK_OPT_DEFLATE => Set::Deflate(value == 1),
            RK_OPT_MAX_CONNECTIONS_PER_IP => {
                Set::PerIp(usize::try_from(value).map_err(|_| RK_EINVAL)?)
            }
            RK_OPT_RATE_LIMIT => Set::Rate(rate()?),
            RK_OPT_RATE_LIMIT_BURST => Set::RateBurst(value),
            RK_OPT_RATE_LIMIT_BYTES => Set::RateBytes(rate()?),
            RK_OPT_RATE_LIMIT_BYTES_BURST => Set::RateBytesBurst(value),
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
            Set::MaxPosted(n) => config.max_posted = n,
            Set::Deflate(on) => config.deflate = on,
            Set::PerIp(n) => config.max_connections_per_ip = n,
            Set::Rate(rate) => config.rate_limit = rate,
            Set::RateBytes(rate) => config.rate_limit_bytes = rate,
            Set::RateBurst(burst) => {
                config.rate_limit = Some(with_burst(config.rate_limit, burst)?)
            }
            Set::RateBytesBurst(burst) => {
                config.rate_limit_bytes = Some(with_burst(config.rate_limit_bytes, burst)?);
            }
        }
        Ok(RK_OK)
    })
}

/// `rate` with its burst set to `burst`: `RK_EINVAL` without a rate, or
/// for a burst out of range.
fn with_burst(rate: Option<crate::Rate>, burst: u64) -> Result<crate::Rate, c_int> {
    rate.and_then(|r| crate::Rate::new(r.per_second(), burst))
        .ok_or(RK_EINVAL)
}

/// The size of `rk_callbacks` in the headers before it could grow: six
/// function pointers (`on_open` .. `on_timer`). The symbol
/// [`rk_server_set_callbacks`], which programs built with those headers
/// call, reads this much and no more, for good; the header now maps the
/// name to [`rk_server_set_callbacks_sized`] with the program's
/// `sizeof(rk_callbacks)`, so members appended later are never read past
/// the end of an older program's struct.
pub const RK_CALLBACKS_FROZEN_SIZE: usize = 6 * std::mem::size_of::<usize>();

/// Sets the callbacks (copied) and the pointer passed to them, reading the
/// six members of the headers that had no size (see
/// [`RK_CALLBACKS_FROZEN_SIZE`]): the entry point of programs built before
/// [`rk_server_set_callbacks_sized`]. Allowed at any time, from a callback
/// too; the next event uses the new ones.
///
/// # Safety
///
/// `s` is NULL or a live handle; `cb` is NULL or points to at least
/// [`RK_CALLBACKS_FROZEN_SIZE`] bytes of an `rk_callbacks` whose non-NULL
/// members are valid functions.
#[no_mangle]
pub unsafe extern "C" fn rk_server_set_callbacks(
    s: *mut rk_server,
    cb: *const rk_callbacks,
    user: *mut c_void,
) -> c_int {
    // SAFETY: per this function's contract.
    unsafe {
        set_callbacks(
            "rk_server_set_callbacks",
            s,
            cb,
            RK_CALLBACKS_FROZEN_SIZE,
            user,
        )
    }
}

/// Sets the callbacks from a struct of `size` bytes, the
/// `sizeof(rk_callbacks)` of the header the program was built with (the
/// header's `rk_server_set_callbacks` macro passes it): members past it
/// are NULL, so a program built against an older, shorter struct runs. A
/// longer struct (a newer header than this library) is taken if the
/// members this library does not know are all NULL, else refused with
/// `RK_ENOTSUP`. `RK_EINVAL` for a size that is not a whole number of
/// members.
///
/// # Safety
///
/// `s` is NULL or a live handle; `cb` is NULL or points to `size` readable
/// bytes laid out as the first members of `rk_callbacks`, the non-NULL
/// ones valid functions.
#[no_mangle]
pub unsafe extern "C" fn rk_server_set_callbacks_sized(
    s: *mut rk_server,
    cb: *const rk_callbacks,
    size: usize,
    user: *mut c_void,
) -> c_int {
    // SAFETY: per this function's contract.
    unsafe { set_callbacks("rk_server_set_callbacks_sized", s, cb, size, user) }
}

/// The callbacks of the first `size` bytes at `cb`, the rest NULL.
///
/// # Safety
///
/// As [`rk_server_set_callbacks_sized`].
unsafe fn set_callbacks(
    what: &'static str,
    s: *mut rk_server,
    cb: *const rk_callbacks,
    size: usize,
    user: *mut c_void,
) -> c_int {
    guard_int(what, || {
        // SAFETY: per this function's contract.
        let s = unsafe { handle(s) }?;
        if cb.is_null() || !size.is_multiple_of(std::mem::size_of::<usize>()) {
            return Err(RK_EINVAL);
        }
        let ours = std::mem::size_of::<rk_callbacks>();
        let bytes = cb.cast::<u8>();
        if size > ours {
            // SAFETY: the caller gave `size` readable bytes at `cb`.
            let newer = unsafe { std::slice::from_raw_parts(bytes.add(ours), size - ours) };
            if newer.iter().any(|&b| b != 0) {
                return Err(RK_ENOTSUP);
            }
        }
        let mut callbacks = rk_callbacks::default();
        // SAFETY: at most `size` bytes are read from `cb` (the caller's
        // promise) and at most `size_of::<rk_callbacks>()` written into
        // `callbacks`; both are whole nullable function pointers (size is
        // a multiple of a pointer's size, checked above), and every bit
        // pattern the C side can give such a member is valid.
        unsafe {
            ptr::copy_nonoverlapping(
                bytes,
                (&mut callbacks as *mut rk_callbacks).cast::<u8>(),
                size.min(ours),
            );
        }
        s.callbacks.set(callbacks);
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
        RK_EAGAIN => b"try again later (queue full)\0",
        RK_ENOTSUP => b"not supported by this build\0",
        RK_ETLS => b"TLS certificate or key unusable\0",
        RK_ENOTFOUND => b"not found\0",
        _ => b"unknown error\0",
    };
    text.as_ptr().cast()
}

// ---- posts from other threads, timers --------------------------------------------

/// Queues a copy of a message for `conn` (0: every connection open when the
/// loop sends it) and wakes the loop, which sends posts in the order they
/// were made. The one function besides [`rk_server_stop`] that may be
/// called from any thread (not from a signal handler: it locks a mutex and
/// allocates). Returns [`RK_OK`], [`RK_EINVAL`], [`RK_EUTF8`],
/// [`RK_EAGAIN`] (`RK_OPT_MAX_POSTED` bytes already wait: retry later) or
/// [`RK_ENOTOPEN`] (the server has not been built by a first run, or is
/// stopping or stopped). A post to a connection that has closed by the time
/// the loop sends it is dropped.
///
/// # Safety
///
/// `s` is NULL or a live handle that [`rk_server_free`] does not free
/// concurrently; `data` is NULL or points to `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn rk_post(
    s: *mut rk_server,
    conn: u64,
    data: *const u8,
    len: usize,
    is_text: c_int,
) -> c_int {
    guard_int("rk_post", || {
        if s.is_null() {
            return Err(RK_EINVAL);
        }
        // SAFETY: per this function's contract.
        let msg = message(unsafe { bytes(data, len) }?, is_text)?;
        // SAFETY: `s` is a live handle (contract). Only a reference to its
        // atomic `poster` field is made, never to the whole struct, as in
        // `rk_server_stop`: the loop thread's `Cell`s are not touched.
        let poster = unsafe { &(*s).poster }.load(Ordering::SeqCst);
        // SAFETY: a non-NULL pointer is the boxed poster, freed only by
        // `rk_server_free`, which does not run concurrently (contract);
        // `Poster` is `Sync`.
        let poster = unsafe { poster.as_ref() }.ok_or(RK_ENOTOPEN)?;
        let conn = (conn != 0).then(|| ConnId::from_u64(conn));
        poster.post(conn, msg).map_err(|e| match e {
            PostError::Full => RK_EAGAIN,
            PostError::Stopped => RK_ENOTOPEN,
        })?;
        Ok(RK_OK)
    })
}

/// Sets a timer: `on_timer(s, token, user)` is called once, on the loop,
/// `ms` milliseconds from now (at 10 ms granularity, never early). Builds
/// the server if it has not run yet (the options are fixed from then on).
/// Returns the timer's id (> 0), or [`RK_EINVAL`], [`RK_EBUSY`] (from
/// `on_http`), [`RK_EIO`], [`RK_EPANIC`].
///
/// # Safety
///
/// `s` is NULL or a live handle, used on this thread only.
#[no_mangle]
pub unsafe extern "C" fn rk_set_timer(s: *mut rk_server, ms: u32, token: u64) -> i64 {
    guard("rk_set_timer", i64::from(RK_EPANIC), || {
        let set = || {
            // SAFETY: per this function's contract.
            let h = unsafe { handle(s) }?;
            ensure_built(s, h)?;
            let after = Duration::from_millis(u64::from(ms));
            let id = with_context(h, |ctx| ctx.set_timer(after, token))?;
            match i64::try_from(id.0.as_u64()) {
                Ok(id) if id > 0 => Ok(id),
                _ => {
                    // An id C cannot hold (a slot reused 2^31 times).
                    let _ = with_context(h, |ctx| ctx.cancel_timer(id));
                    Err(RK_EIO)
                }
            }
        };
        set().unwrap_or_else(i64::from)
    })
}

/// Cancels a timer set with [`rk_set_timer`]. Returns [`RK_OK`],
/// [`RK_ENOTFOUND`] (it fired, was cancelled, or never existed),
/// [`RK_EINVAL`], [`RK_EBUSY`] (from `on_http`).
///
/// # Safety
///
/// `s` is NULL or a live handle, used on this thread only.
#[no_mangle]
pub unsafe extern "C" fn rk_cancel_timer(s: *mut rk_server, timer: i64) -> c_int {
    guard_int("rk_cancel_timer", || {
        // SAFETY: per this function's contract.
        let h = unsafe { handle(s) }?;
        let Ok(raw) = u64::try_from(timer) else {
            return Err(RK_ENOTFOUND);
        };
        if raw == 0 || h.state.get() == State::Fresh {
            return Err(RK_ENOTFOUND);
        }
        let timer = TimerId(ConnId::from_u64(raw));
        if with_context(h, |ctx| ctx.cancel_timer(timer))? {
            Ok(RK_OK)
        } else {
            Err(RK_ENOTFOUND)
        }
    })
}

// ---- upgrades and HTTP answers -----------------------------------------------------

/// The request's method (`"GET"`), NUL-terminated; NULL if `r` is NULL.
///
/// # Safety
///
/// `r` is NULL or the request passed to the running `on_upgrade` or
/// `on_http`; the result is valid until that callback returns.
#[no_mangle]
pub unsafe extern "C" fn rk_request_method(r: *const rk_request) -> *const c_char {
    guard("rk_request_method", ptr::null(), || {
        // SAFETY: per this function's contract.
        unsafe { r.as_ref() }.map_or(ptr::null(), |r| r.method.as_ptr())
    })
}

/// The request's path, without the query; NULL if `r` is NULL.
///
/// # Safety
///
/// As for [`rk_request_method`].
#[no_mangle]
pub unsafe extern "C" fn rk_request_path(r: *const rk_request) -> *const c_char {
    guard("rk_request_path", ptr::null(), || {
        // SAFETY: per this function's contract.
        unsafe { r.as_ref() }.map_or(ptr::null(), |r| r.path.as_ptr())
    })
}

/// The request's query, after `?` (`""` if none; not decoded); NULL if `r`
/// is NULL.
///
/// # Safety
///
/// As for [`rk_request_method`].
#[no_mangle]
pub unsafe extern "C" fn rk_request_query(r: *const rk_request) -> *const c_char {
    guard("rk_request_query", ptr::null(), || {
        // SAFETY: per this function's contract.
        unsafe { r.as_ref() }.map_or(ptr::null(), |r| r.query.as_ptr())
    })
}

/// The value of the first header field called `name` (any case), or NULL
/// if there is none (or `r` or `name` is NULL).
///
/// # Safety
///
/// As for [`rk_request_method`]; `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn rk_request_header(
    r: *const rk_request,
    name: *const c_char,
) -> *const c_char {
    guard("rk_request_header", ptr::null(), || {
        // SAFETY: per this function's contract.
        let Some(r) = (unsafe { r.as_ref() }) else {
            return ptr::null();
        };
        // SAFETY: per this function's contract.
        let Ok(name) = (unsafe { c_str(name) }) else {
            return ptr::null();
        };
        // SAFETY: `req` points to the request the callback was given, alive
        // until it returns (contract).
        let req = unsafe { &*r.req };
        let Some(value) = req.header(name).and_then(|v| CString::new(v).ok()) else {
            return ptr::null();
        };
        let mut kept = r.headers.borrow_mut();
        kept.push(value);
        kept.last().map_or(ptr::null(), |v| v.as_ptr())
    })
}

/// Sets the status of `on_http`'s answer (200..=599; it starts as 404).
/// Returns [`RK_OK`] or [`RK_EINVAL`].
///
/// # Safety
///
/// `res` is NULL or the response passed to the running `on_http`.
#[no_mangle]
pub unsafe extern "C" fn rk_response_status(res: *mut rk_response, status: c_int) -> c_int {
    guard_int("rk_response_status", || {
        // SAFETY: per this function's contract.
        let res = unsafe { res.as_mut() }.ok_or(RK_EINVAL)?;
        res.status = match u16::try_from(status) {
            Ok(status @ 200..=599) => status,
            _ => return Err(RK_EINVAL),
        };
        Ok(RK_OK)
    })
}

/// Adds a header field to `on_http`'s answer (both copied). A
/// `Content-Type` replaces the default one; `Content-Length` and
/// `Connection` are the library's own, and a name that is not an HTTP token
/// or a value with CR, LF or NUL is refused. Returns [`RK_OK`],
/// [`RK_EINVAL`] or [`RK_EUTF8`].
///
/// # Safety
///
/// `res` is NULL or the response passed to the running `on_http`; `name`
/// and `value` are NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn rk_response_header(
    res: *mut rk_response,
    name: *const c_char,
    value: *const c_char,
) -> c_int {
    guard_int("rk_response_header", || {
        // SAFETY: per this function's contract.
        let res = unsafe { res.as_mut() }.ok_or(RK_EINVAL)?;
        // SAFETY: per this function's contract.
        let (name, value) = unsafe { (c_str(name)?, c_str(value)?) };
        let token = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
        if name.is_empty()
            || !name.bytes().all(token)
            || name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("connection")
            || value.bytes().any(|c| c == b'\r' || c == b'\n')
        {
            return Err(RK_EINVAL);
        }
        res.headers.push((name.to_string(), value.to_string()));
        Ok(RK_OK)
    })
}

/// Sets the body of `on_http`'s answer (copied; `body` may be NULL when
/// `len` is 0). Without a body, the answer carries the status's text.
/// Returns [`RK_OK`] or [`RK_EINVAL`].
///
/// # Safety
///
/// `res` is NULL or the response passed to the running `on_http`; `body`
/// is NULL or points to `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn rk_response_body(
    res: *mut rk_response,
    body: *const u8,
    len: usize,
) -> c_int {
    guard_int("rk_response_body", || {
        // SAFETY: per this function's contract.
        let res = unsafe { res.as_mut() }.ok_or(RK_EINVAL)?;
        // SAFETY: per this function's contract.
        let body = unsafe { bytes(body, len) }?;
        res.body = Some(body.to_vec());
        Ok(RK_OK)
    })
}

/// Inside `on_upgrade` for `conn` only: answer with this subprotocol, which
/// must be one the client offered. Returns [`RK_OK`], [`RK_EINVAL`] (NULL,
/// or not offered), [`RK_EUTF8`], or [`RK_EBUSY`] (not inside `on_upgrade`
/// for `conn`).
///
/// # Safety
///
/// `s` is NULL or a live handle, used on this thread only; `protocol` is
/// NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn rk_accept_protocol(
    s: *mut rk_server,
    conn: u64,
    protocol: *const c_char,
) -> c_int {
    guard_int("rk_accept_protocol", || {
        // SAFETY: per this function's contract.
        let h = unsafe { handle(s) }?;
        // SAFETY: per this function's contract.
        let protocol = unsafe { c_str(protocol) }?;
        let mut upgrade = h.upgrade.borrow_mut();
        let call = upgrade
            .as_mut()
            .filter(|c| c.conn == conn)
            .ok_or(RK_EBUSY)?;
        if !call.offered.iter().any(|o| o == protocol) {
            return Err(RK_EINVAL);
        }
        call.protocol = Some(protocol.to_string());
        Ok(RK_OK)
    })
}

/// Opens a connection accepted with [`RK_UPGRADE_DELAYED`]: `on_open`
/// follows (after the current callback) and its frames are read. Returns
/// [`RK_OK`], [`RK_EINVAL`], [`RK_ENOTOPEN`] (unknown, or not waiting for
/// activation), [`RK_EBUSY`] (from `on_http`).
///
/// # Safety
///
/// `s` is NULL or a live handle, used on this thread only.
#[no_mangle]
pub unsafe extern "C" fn rk_activate(s: *mut rk_server, conn: u64) -> c_int {
    guard_int("rk_activate", || {
        // SAFETY: per this function's contract.
        let h = unsafe { handle(s) }?;
        with_context(h, |ctx| ctx.activate(ConnId::from_u64(conn)))?.map_err(send_error)?;
        Ok(RK_OK)
    })
}

// ---- per connection ------------------------------------------------------------------

/// Attaches `ptr` to `conn` (NULL detaches), from `on_upgrade` on, while
/// the connection is not closing; it is forgotten when the connection closes (after `on_close`, which may still
/// read it to free what it points to) or is refused. The library never
/// dereferences it. Returns [`RK_OK`], [`RK_EINVAL`], [`RK_ENOTOPEN`]
/// (unknown, closing or closed connection), [`RK_EBUSY`] (from `on_http`).
///
/// # Safety
///
/// `s` is NULL or a live handle, used on this thread only.
#[no_mangle]
pub unsafe extern "C" fn rk_conn_set_user(s: *mut rk_server, conn: u64, ptr: *mut c_void) -> c_int {
    guard_int("rk_conn_set_user", || {
        // SAFETY: per this function's contract.
        let h = unsafe { handle(s) }?;
        // The connection being decided in on_upgrade, or one that may be
        // sent to (not closing: on_close may have been delivered already).
        let deciding = h.upgrade.borrow().as_ref().is_some_and(|c| c.conn == conn);
        if !deciding && !with_context(h, |ctx| ctx.can_send(ConnId::from_u64(conn)))? {
            return Err(RK_ENOTOPEN);
        }
        let mut users = h.conn_users.borrow_mut();
        if ptr.is_null() {
            users.remove(&conn);
        } else {
            users.insert(conn, ptr);
        }
        Ok(RK_OK)
    })
}

/// The pointer [`rk_conn_set_user`] attached to `conn`, or NULL (none, an
/// unknown or closed connection, or NULL `s`).
///
/// # Safety
///
/// `s` is NULL or a live handle, used on this thread only.
#[no_mangle]
pub unsafe extern "C" fn rk_conn_user(s: *const rk_server, conn: u64) -> *mut c_void {
    guard("rk_conn_user", ptr::null_mut(), || {
        // SAFETY: per this function's contract.
        let Ok(h) = (unsafe { handle(s) }) else {
            return ptr::null_mut();
        };
        let users = h.conn_users.borrow();
        users.get(&conn).copied().unwrap_or(ptr::null_mut())
    })
}

/// Writes the peer's address of `conn` as `"IP:PORT"` (`"[IPv6]:PORT"`),
/// NUL-terminated, into `buf` (64 bytes always suffice). Returns [`RK_OK`],
/// [`RK_EINVAL`] (NULL, or `len` too small: then `buf` holds `""` if `len`
/// is not 0), [`RK_ENOTOPEN`], [`RK_EBUSY`] (from `on_http`).
///
/// # Safety
///
/// `s` is NULL or a live handle, used on this thread only; `buf` is NULL or
/// points to `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn rk_conn_peer(
    s: *const rk_server,
    conn: u64,
    buf: *mut c_char,
    len: usize,
) -> c_int {
    guard_int("rk_conn_peer", || {
        // SAFETY: per this function's contract.
        let h = unsafe { handle(s) }?;
        if buf.is_null() {
            return Err(RK_EINVAL);
        }
        let peer = with_context(h, |ctx| ctx.peer_addr(ConnId::from_u64(conn)))?
            .ok_or(RK_ENOTOPEN)?
            .to_string();
        if peer.len() >= len {
            if len > 0 {
                // SAFETY: `buf` has at least one writable byte (contract).
                unsafe { buf.write(0) };
            }
            return Err(RK_EINVAL);
        }
        // SAFETY: `buf` has `len` > `peer.len()` writable bytes (contract),
        // which do not overlap `peer`'s own buffer.
        unsafe {
            ptr::copy_nonoverlapping(peer.as_ptr().cast::<c_char>(), buf, peer.len());
            buf.add(peer.len()).write(0);
        }
        Ok(RK_OK)
    })
}

// ---- your own event loop ---------------------------------------------------------------

/// The descriptor to poll for readability (the server's epoll descriptor):
/// when it is readable, or after [`rk_server_timeout_ms`], call
/// `rk_server_run_once(s, 0)`. Builds the server if it has not run yet (the
/// options are fixed from then on). Do not read, write or close it. Returns
/// the descriptor (≥ 0), or [`RK_EINVAL`], [`RK_EIO`], [`RK_EPANIC`].
///
/// # Safety
///
/// `s` is NULL or a live handle, used on this thread only.
#[no_mangle]
pub unsafe extern "C" fn rk_server_fd(s: *const rk_server) -> c_int {
    guard_int("rk_server_fd", || {
        // SAFETY: per this function's contract.
        let h = unsafe { handle(s) }?;
        // The handle is only ever used through shared references, so the
        // `*mut` the handler keeps is no licence to mutate through it.
        ensure_built(s.cast_mut(), h)?;
        if let State::Broken(code) = h.state.get() {
            return Err(code);
        }
        Ok(h.fd.get())
    })
}

/// How long a program's own loop may wait on [`rk_server_fd`] before it
/// must call `rk_server_run_once(s, 0)` for the server's timers, in ms
/// (rounded up): -1 when no timer is pending, 0 to call it at once (also
/// from a callback, or once the server broke). Builds the server if it has
/// not run yet. NULL `s`: -1 ([`RK_EINVAL`]).
///
/// # Safety
///
/// `s` is NULL or a live handle, used on this thread only.
#[no_mangle]
pub unsafe extern "C" fn rk_server_timeout_ms(s: *const rk_server) -> c_int {
    guard_int("rk_server_timeout_ms", || {
        // SAFETY: per this function's contract.
        let h = unsafe { handle(s) }?;
        if ensure_built(s.cast_mut(), h).is_err() || h.state.get() != State::Ready {
            return Ok(0);
        }
        let server = h.server.take();
        let timeout = server.as_ref().map(|server| server.next_timeout());
        h.server.set(server);
        Ok(match timeout {
            None => 0,
            Some(None) => -1,
            Some(Some(t)) => c_int::try_from(t.as_micros().div_ceil(1000)).unwrap_or(c_int::MAX),
        })
    })
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

// ---- topics ---------------------------------------------------------------------

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
