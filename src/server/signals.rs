//! Stopping a server on SIGINT and SIGTERM, and reloading its TLS pair on
//! SIGHUP, the way the `rookery` command does, without writing a signal
//! handler yourself.
//!
//! The handlers find the current handle in a [`Slot`], which a later call
//! replaces. The module's one `unsafe` block is the `sigaction` call in
//! [`install`].

use std::io;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError, TryLockError};

use super::{ReloadHandle, StopHandle};

/// The handle SIGINT and SIGTERM stop.
static STOP: Slot<StopHandle> = Slot::new();

/// Whether a signal already asked the current stop handle to stop.
static SIGNALLED: AtomicBool = AtomicBool::new(false);

/// The handle SIGHUP reloads.
static RELOAD: Slot<ReloadHandle> = Slot::new();

/// Stops the server behind `handle` gracefully on the first SIGINT or
/// SIGTERM, as [`StopHandle::stop`] does: no new connections, close 1001 to
/// every connection, [`Server::run`](crate::Server::run) returns once they
/// are closed or the close timeout passed. A second SIGINT or SIGTERM while
/// that is under way ends the process at once, for a user who does not want
/// to wait: by that signal's default action, so the parent sees the process
/// killed by it (a shell shows status 130 after SIGINT, 143 after SIGTERM,
/// and systemd counts either as a clean stop).
///
/// The handlers are installed for the whole process (with `SA_RESTART`,
/// replacing any earlier handler for these two signals). Each is installed
/// with `SA_RESETHAND`: the first SIGINT puts SIGINT's default action back,
/// and the first SIGTERM SIGTERM's.
/// Only one handle is kept: calling this again (say, for the next server
/// after the first one stopped) replaces it, and the count of signals starts
/// again from zero. The signal handler itself only calls
/// [`StopHandle::stop`], which is async-signal-safe; a signal that comes
/// while a call is replacing the handle stops the new one.
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
    SIGNALLED.store(false, Ordering::SeqCst);
    STOP.replace(handle, StopHandle::stop);
    install(libc::SIGINT, Catch::Stop)?;
    install(libc::SIGTERM, Catch::Stop)
}

/// Makes SIGHUP call [`ReloadHandle::reload`] on `handle`: the server
/// re-reads its TLS certificate and key, and keeps the old pair (with a
/// warning) if the new one does not load; a server without TLS logs the
/// signal (info) and carries on. SIGHUP never stops the server. A second
/// call replaces the handle.
pub fn reload_on_sighup(handle: ReloadHandle) -> io::Result<()> {
    RELOAD.replace(handle, ReloadHandle::reload);
    install(libc::SIGHUP, Catch::Reload)
}

/// The SIGINT and SIGTERM handler: the first signal stops the current
/// handle, a second ends the process.
///
/// A second signal of the same kind finds its default action (`SA_RESETHAND`)
/// and never reaches this handler; one of the other kind (SIGINT after
/// SIGTERM) does, with its own action reset on the way in, and sends itself
/// again to take it. `kill` is async-signal-safe, and with `SA_NODEFER` the
/// signal is not blocked in here, so it ends the process before `kill`
/// returns.
extern "C" fn on_stop(signal: libc::c_int) {
    if SIGNALLED.swap(true, Ordering::SeqCst) {
        if let Some(signal) = rustix::process::Signal::from_named_raw(signal) {
            let _ = rustix::process::kill_process(rustix::process::getpid(), signal);
        }
    }
    STOP.signal(StopHandle::stop);
}

/// The SIGHUP handler.
extern "C" fn on_reload(_signal: libc::c_int) {
    RELOAD.signal(ReloadHandle::reload);
}

/// The handlers [`install`] can install, each async-signal-safe.
#[derive(Debug, Clone, Copy)]
enum Catch {
    /// [`on_stop`].
    Stop,
    /// [`on_reload`].
    Reload,
    /// [`tests::on_count`]: counts the signal on the thread it interrupts.
    #[cfg(test)]
    Count,
}

/// Installs `catch`'s handler for `signal`, process-wide, with
/// `SA_RESTART` (and `SA_RESETHAND | SA_NODEFER` for [`Catch::Stop`]: see
/// [`on_stop`]), replacing any
/// earlier handler.
///
/// # Errors
///
/// The error of `sigaction(2)`: a signal number that cannot be caught.
#[allow(unsafe_code)] // sigaction, below.
fn install(signal: libc::c_int, catch: Catch) -> io::Result<()> {
    let (handler, flags): (extern "C" fn(libc::c_int), libc::c_int) = match catch {
        Catch::Stop => (
            on_stop,
            libc::SA_RESTART | libc::SA_RESETHAND | libc::SA_NODEFER,
        ),
        Catch::Reload => (on_reload, libc::SA_RESTART),
        #[cfg(test)]
        Catch::Count => (tests::on_count, libc::SA_RESTART),
    };
    // SAFETY: `action` is zeroed (a valid `sigaction`: no handler, no
    // flags) and then given the handler, the flags and an emptied mask
    // before sigaction reads it; a null old-action pointer is allowed. The
    // handler is one of this module's `extern "C"` functions, which live as
    // long as the program and do only async-signal-safe work (atomics, a
    // lock tried but never waited for, an eventfd write, `kill`), so it may
    // interrupt any code at any point.
    let rc = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as libc::sighandler_t;
        action.sa_flags = flags;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(signal, &action, std::ptr::null_mut())
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A handle that signal handlers act on and a later call replaces.
///
/// A handler never waits for the lock: one that finds it taken leaves its
/// signal `pending`, and whoever holds the lock (the call replacing the
/// handle, or a handler on another thread) acts on it after unlocking. So a
/// handler never blocks, not even when it interrupts the replacing call on
/// the same thread, and no signal is lost.
struct Slot<T> {
    /// The current handle; `None` before the first call.
    handle: Mutex<Option<T>>,
    /// A signal not acted on yet.
    pending: AtomicBool,
}

impl<T> Slot<T> {
    const fn new() -> Slot<T> {
        Slot {
            handle: Mutex::new(None),
            pending: AtomicBool::new(false),
        }
    }

    /// Makes `handle` the one signals act on (`act`: what a signal does),
    /// outside a signal handler; the old one is dropped.
    fn replace(&self, handle: T, act: fn(&T)) {
        let old = self
            .handle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(handle);
        drop(old);
        self.deliver(act);
    }

    /// From a signal handler: `act` on the current handle, now or by the
    /// lock's holder.
    fn signal(&self, act: fn(&T)) {
        self.pending.store(true, Ordering::SeqCst);
        self.deliver(act);
    }

    /// Acts on a pending signal unless the lock is taken, in which case its
    /// holder does so after unlocking (it calls this too).
    fn deliver(&self, act: fn(&T)) {
        loop {
            // Orders the unlock (or the store of `pending`) before the load
            // below, as the other side orders its store before trying the
            // lock: one of the two sees the other.
            fence(Ordering::SeqCst);
            if !self.pending.load(Ordering::SeqCst) {
                return;
            }
            let guard = match self.handle.try_lock() {
                Ok(guard) => guard,
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => return,
            };
            if self.pending.swap(false, Ordering::SeqCst) {
                if let Some(handle) = guard.as_ref() {
                    act(handle);
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cell::Cell;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    thread_local! {
        /// Signals [`on_count`] counted on this thread.
        static COUNTED: Cell<u32> = const { Cell::new(0) };
    }

    /// Counts a signal on the thread it interrupts: a const thread-local
    /// without a destructor, which needs no lazy set-up.
    pub(super) extern "C" fn on_count(_signal: libc::c_int) {
        COUNTED.with(|c| c.set(c.get().wrapping_add(1)));
    }

    /// Makes `signal`, process-wide, count on the thread it is sent to
    /// (see [`counted`]) instead of its default action. For a signal a
    /// system call raises on its own thread (SIGPIPE), so that tests on
    /// other threads do not disturb the count.
    pub(crate) fn count(signal: libc::c_int) -> io::Result<()> {
        install(signal, Catch::Count)
    }

    /// How many signals this thread counted.
    pub(crate) fn counted() -> u32 {
        COUNTED.with(Cell::get)
    }

    fn bump(counter: &Arc<AtomicUsize>) {
        counter.fetch_add(1, Ordering::SeqCst);
    }

    #[test]
    fn a_signal_acts_on_the_current_handle() {
        let slot = Slot::new();
        slot.signal(bump);
        let (first, second) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        slot.replace(first.clone(), bump);
        assert_eq!(
            first.load(Ordering::SeqCst),
            0,
            "a signal before any handle has nothing to act on"
        );
        slot.signal(bump);
        assert_eq!(first.load(Ordering::SeqCst), 1);
        slot.replace(second.clone(), bump);
        slot.signal(bump);
        assert_eq!(first.load(Ordering::SeqCst), 1, "replaced");
        assert_eq!(second.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_signal_that_finds_the_lock_taken_is_delivered_by_its_holder() {
        let slot = Slot::new();
        let (first, second) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        slot.replace(first.clone(), bump);
        // As when a handler interrupts `replace` on its own thread.
        let guard = slot.handle.lock().unwrap();
        slot.signal(bump);
        assert_eq!(first.load(Ordering::SeqCst), 0, "the handler did not wait");
        drop(guard);
        slot.replace(second.clone(), bump);
        assert_eq!(first.load(Ordering::SeqCst), 0);
        assert_eq!(second.load(Ordering::SeqCst), 1, "the holder delivered it");
        slot.signal(bump);
        assert_eq!(second.load(Ordering::SeqCst), 2, "once");
    }

    #[test]
    fn a_counted_signal_counts_on_its_own_thread() {
        count(libc::SIGPIPE).unwrap();
        let before = counted();
        // A send without MSG_NOSIGNAL to a socket whose peer is gone
        // raises SIGPIPE on this thread.
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        drop(theirs);
        let sent = rustix::net::send(&ours, b"x", rustix::net::SendFlags::empty());
        assert_eq!(sent, Err(rustix::io::Errno::PIPE));
        assert_eq!(counted(), before + 1);
    }
}
