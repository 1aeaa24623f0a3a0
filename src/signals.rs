//! Stopping a server on SIGINT and SIGTERM, and reloading its TLS pair on
//! SIGHUP, the way the `rookery` command does, without writing a signal
//! handler yourself.

use std::io;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

use crate::{ReloadHandle, StopHandle};

/// The exit status when a second SIGINT or SIGTERM arrives while stopping.
const SECOND_SIGNAL_STATUS: libc::c_int = 130;

/// The handle the signal handler stops: a `Box` turned into a raw pointer,
/// or null before the first call to [`stop_on_signals`].
static HANDLE: AtomicPtr<StopHandle> = AtomicPtr::new(ptr::null_mut());

/// How many signal handlers are between loading [`HANDLE`] and being done
/// with what they loaded; a replaced handle is freed only when none are.
static IN_HANDLER: AtomicUsize = AtomicUsize::new(0);

/// Whether a signal already asked the current handle to stop.
static SIGNALLED: AtomicBool = AtomicBool::new(false);

/// Stops the server behind `handle` gracefully on the first SIGINT or
/// SIGTERM, as [`StopHandle::stop`] does: no new connections, close 1001 to
/// every connection, [`Server::run`](crate::Server::run) returns once they
/// are closed or the close timeout passed. A second SIGINT or SIGTERM while
/// that is under way ends the process at once with exit status 130, for a
/// user who does not want to wait.
///
/// The handlers are installed for the whole process (with `SA_RESTART`,
/// replacing any earlier handler for these two signals) and stay installed.
/// Only one handle is kept: calling this again (say, for the next server
/// after the first one stopped) replaces it, and the count of signals starts
/// again from zero. The signal handler itself only calls
/// [`StopHandle::stop`], which is async-signal-safe.
///
/// ```no_run
/// use rookery::{Config, Server};
/// # struct Echo;
/// # impl rookery::Handler for Echo {
/// #     fn on_message(&mut self, ctx: &mut rookery::Context<'_>, conn: rookery::ConnId, msg: rookery::Message<'_>) {
/// #         let _ = ctx.send(conn, msg);
/// #     }
/// # }
/// let mut server = Server::bind("127.0.0.1:9001", Config::default(), Echo)?;
/// rookery::stop_on_signals(server.stop_handle())?;
/// server.run()?; // returns after Ctrl-C, once every connection is closed
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
///
/// The error of `sigaction(2)`, which should not fail for these signals.
pub fn stop_on_signals(handle: StopHandle) -> io::Result<()> {
    let new = Box::into_raw(Box::new(handle));
    let old = HANDLE.swap(new, Ordering::SeqCst);
    SIGNALLED.store(false, Ordering::SeqCst);
    if !old.is_null() {
        // A handler that loaded `old` counted itself in before loading it;
        // any handler that starts from now on loads `new`.
        while IN_HANDLER.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
        // SAFETY: `old` came from `Box::into_raw` in an earlier call, it is
        // no longer in `HANDLE`, and no signal handler still uses it (the
        // count above is zero), so this is its one and only owner.
        drop(unsafe { Box::from_raw(old) });
    }
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `action` is fully initialised (zeroed, which is a valid
        // `sigaction`, then the handler, flags and an emptied mask set)
        // before sigaction reads it; the handler is an `extern "C"` function
        // that lives for the whole program and does only async-signal-safe
        // work; a null old-action pointer is allowed.
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, ptr::null_mut())
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The SIGINT and SIGTERM handler: atomics, [`StopHandle::stop`] (an atomic
/// store and an eventfd write) and `_exit`, all async-signal-safe.
extern "C" fn on_signal(_signal: libc::c_int) {
    if SIGNALLED.swap(true, Ordering::SeqCst) {
        // SAFETY: _exit is async-signal-safe and takes no pointers.
        unsafe { libc::_exit(SECOND_SIGNAL_STATUS) };
    }
    IN_HANDLER.fetch_add(1, Ordering::SeqCst);
    let handle = HANDLE.load(Ordering::SeqCst);
    // SAFETY: a non-null `handle` points to a live `StopHandle`: it is freed
    // only by `stop_on_signals` after it left `HANDLE` and while no handler
    // is counted in `IN_HANDLER`, and this one counted itself in before
    // loading it. It is only read.
    if let Some(handle) = unsafe { handle.as_ref() } {
        handle.stop();
    }
    IN_HANDLER.fetch_sub(1, Ordering::SeqCst);
}

/// The handle SIGHUP reloads (owned: from `Box::into_raw`), or NULL.
static RELOAD: AtomicPtr<ReloadHandle> = AtomicPtr::new(ptr::null_mut());

/// SIGHUP handlers running now (see `IN_HANDLER`).
static IN_RELOAD: AtomicUsize = AtomicUsize::new(0);

/// Makes SIGHUP call [`ReloadHandle::reload`] on `handle`: the server
/// re-reads its TLS certificate and key, and keeps the old pair (with a
/// warning) if the new one does not load; a server without TLS logs the
/// signal (info) and carries on. SIGHUP never stops the server. A second
/// call replaces the handle.
pub fn reload_on_sighup(handle: ReloadHandle) -> io::Result<()> {
    let new = Box::into_raw(Box::new(handle));
    let old = RELOAD.swap(new, Ordering::SeqCst);
    if !old.is_null() {
        while IN_RELOAD.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
        // SAFETY: `old` came from `Box::into_raw` above (in an earlier call)
        // and was swapped out, so no handler will load it again; the wait
        // above let any handler still using it finish.
        drop(unsafe { Box::from_raw(old) });
    }
    // SAFETY: `sigaction` is given a zeroed (valid) struct whose handler is
    // an `extern "C"` function that only makes async-signal-safe calls.
    let rc = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sighup as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGHUP, &action, ptr::null_mut())
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

extern "C" fn on_sighup(_signal: libc::c_int) {
    IN_RELOAD.fetch_add(1, Ordering::SeqCst);
    let handle = RELOAD.load(Ordering::SeqCst);
    // SAFETY: a non-null pointer is a live `Box` from `reload_on_sighup`,
    // freed only after `IN_RELOAD` drops back to zero.
    if let Some(handle) = unsafe { handle.as_ref() } {
        // An atomic store and an eventfd write: async-signal-safe.
        handle.reload();
    }
    IN_RELOAD.fetch_sub(1, Ordering::SeqCst);
}
