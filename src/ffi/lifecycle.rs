//! A server handle's life: `rk_server_new`, the settings made before the
//! first run (path, TLS, options, callbacks), running it (`rk_server_run`,
//! `rk_server_run_once`), stopping it from any thread, `rk_server_free`,
//! and `rk_strerror`.

use super::*;

// ---- the API ---------------------------------------------------------------------

/// Binds and listens on `listen_addr` (`"127.0.0.1:0"` picks a free port).
/// Returns NULL on error; `*err` (if `err` is not NULL) is set to
/// [`RK_OK`] or the error code.
///
/// # Safety
///
/// `listen_addr` is NULL or a NUL-terminated string; `err` is NULL or
/// points to a writable `int`.
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
            Io(crate::Io),
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
            RK_OPT_IO => Set::Io(match value {
                RK_IO_AUTO => crate::Io::Auto,
                RK_IO_EPOLL => crate::Io::Epoll,
                RK_IO_URING if cfg!(rookery_uring) => crate::Io::Uring,
                RK_IO_URING => return Err(RK_ENOTSUP),
                _ => return Err(RK_EINVAL),
            }),
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
            Set::Io(io) => config.io = io,
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

/// Frees the handle: every connection is dropped at once, without close
/// frames or `on_close` (stop and run to the end first for a graceful
/// close). NULL is ignored; so is a call while the server runs (from a
/// callback), which is logged.
///
/// # Safety
///
/// `s` is NULL or a live handle, not used afterwards, and not being used
/// by [`rk_server_stop`] on another thread or in a signal handler.
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
