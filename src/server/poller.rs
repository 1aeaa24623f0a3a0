//! The loop's readiness poller: owns the epoll instance, its wake-up
//! descriptor and every `unsafe` call that touches them.
//!
//! Why not the `polling` crate's `Poller` on Linux: each of its waits costs
//! four syscalls besides `epoll_wait` (it arms a timerfd and re-registers it,
//! then reads its eventfd and re-registers that, both oneshot), even with no
//! timeout. When the server is not saturated a wait serves only a few
//! events: at a fixed 100,000 echoes/s the server made 3.26 syscalls per
//! message with them and 1.99 without (docs/performance.md). Here the
//! wake-up eventfd is registered once in level mode and read only when it
//! fired: one syscall per wait.
//!
//! The loop's deadline (kept in the timer wheel) is a timerfd, registered
//! once and armed only when the deadline moves earlier than what is armed
//! or what is armed has passed ([`Poller::arm_timer`]), so `epoll_wait`
//! itself sleeps without a timeout. A timeout there sets up and cancels a
//! kernel timer on every sleep, which at a fixed 50,000 echoes/s (about one
//! sleep for two messages) was 0.4 % of the server's CPU; the timerfd is
//! armed once per deadline, read once when it fires.
//!
//! Elsewhere (not Linux) this is a thin wrapper around `polling::Poller`
//! with the same methods, so the loop has one interface; there it has no
//! timer of its own ([`Poller::HAS_TIMER`]) and the loop passes its
//! deadline to `wait` as a timeout.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

pub(crate) use polling::{Event, PollMode};

#[cfg(target_os = "linux")]
pub(crate) use self::linux::{Events, Poller};
#[cfg(not(target_os = "linux"))]
pub(crate) use self::portable::{Events, Poller};

/// How long `epoll_wait` may sleep for `timeout`: whole milliseconds, rounded
/// up (a wake-up before the deadline would only find nothing due and wait
/// again), `-1` for none, capped at `i32::MAX`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn timeout_ms(timeout: Option<Duration>) -> i32 {
    match timeout {
        None => -1,
        Some(t) => {
            let ms = t.as_nanos().div_ceil(1_000_000);
            i32::try_from(ms).unwrap_or(i32::MAX)
        }
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use super::*;
    use std::os::fd::{FromRawFd, OwnedFd};

    /// The key of the wake-up eventfd; no slab key reaches it.
    const NOTIFY_KEY: u64 = u64::MAX;
    /// The key of the deadline timerfd. The loop's own keys count down
    /// from `usize::MAX - 1` (the listener, the Redis bridge's two
    /// connections) and slab keys up from 0: neither reaches it.
    const TIMER_KEY: u64 = u64::MAX - 64;
    const _: () = assert!(crate::server::core::LISTENER_KEY as u64 > TIMER_KEY || usize::BITS < 64);

    /// How many readiness reports one wait takes at most.
    const EVENTS_CAPACITY: usize = 1024;

    /// Readiness reports of one wait.
    pub(crate) struct Events {
        list: Vec<libc::epoll_event>,
    }

    impl Events {
        pub(crate) fn new() -> Events {
            Events {
                list: Vec::with_capacity(EVENTS_CAPACITY),
            }
        }

        pub(crate) fn clear(&mut self) {
            self.list.clear();
        }

        /// Each report as the key registered and whether it counts as
        /// readable and writable (errors and hang-ups count as both, as in
        /// `polling`, so the loop reads and writes and sees the failure).
        pub(crate) fn iter(&self) -> impl Iterator<Item = Event> + '_ {
            self.list.iter().filter_map(|ev| {
                let key = ev.u64;
                if key == NOTIFY_KEY || key == TIMER_KEY {
                    return None;
                }
                let flags = ev.events as libc::c_int;
                let readable = flags
                    & (libc::EPOLLIN
                        | libc::EPOLLHUP
                        | libc::EPOLLERR
                        | libc::EPOLLRDHUP
                        | libc::EPOLLPRI)
                    != 0;
                let writable = flags & (libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) != 0;
                Some(Event::new(key as usize, readable, writable))
            })
        }
    }

    /// An epoll instance in level-triggered mode, with an eventfd to wake it
    /// and a timerfd for the loop's deadline.
    pub(crate) struct Poller {
        epoll: OwnedFd,
        wake: OwnedFd,
        timer: OwnedFd,
    }

    fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(ret)
        }
    }

    fn interest(ev: Event, mode: PollMode) -> io::Result<u32> {
        if !matches!(mode, PollMode::Level) {
            // The loop registers everything in level mode; nothing else is
            // implemented here.
            return Err(io::Error::from(io::ErrorKind::Unsupported));
        }
        let mut flags = 0;
        if ev.readable {
            flags |= libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLPRI;
        }
        if ev.writable {
            flags |= libc::EPOLLOUT;
        }
        Ok(flags as u32)
    }

    impl Poller {
        pub(crate) fn new() -> io::Result<Poller> {
            // SAFETY: plain syscalls; each descriptor returned is checked and
            // owned at once by an `OwnedFd`, which closes it.
            let epoll =
                unsafe { OwnedFd::from_raw_fd(cvt(libc::epoll_create1(libc::EPOLL_CLOEXEC))?) };
            // SAFETY: as above.
            let wake = unsafe {
                OwnedFd::from_raw_fd(cvt(libc::eventfd(
                    0,
                    libc::EFD_CLOEXEC | libc::EFD_NONBLOCK,
                ))?)
            };
            // SAFETY: as above.
            let timer = unsafe {
                OwnedFd::from_raw_fd(cvt(libc::timerfd_create(
                    libc::CLOCK_MONOTONIC,
                    libc::TFD_CLOEXEC | libc::TFD_NONBLOCK,
                ))?)
            };
            let poller = Poller { epoll, wake, timer };
            poller.ctl(
                libc::EPOLL_CTL_ADD,
                poller.wake.as_raw_fd(),
                libc::EPOLLIN as u32,
                NOTIFY_KEY,
            )?;
            poller.ctl(
                libc::EPOLL_CTL_ADD,
                poller.timer.as_raw_fd(),
                libc::EPOLLIN as u32,
                TIMER_KEY,
            )?;
            Ok(poller)
        }

        /// Whether the poller keeps a deadline of its own (see `arm_timer`).
        pub(crate) const HAS_TIMER: bool = true;

        /// Makes a wait end `after` from now (the clock `Instant` reads),
        /// replacing what was armed; a zero `after` is taken as one
        /// nanosecond (zero would disarm). When it fires, the wait that sees
        /// it reads it, so it is reported once.
        pub(crate) fn arm_timer(&self, after: Duration) -> io::Result<()> {
            let after = after.max(Duration::from_nanos(1));
            let spec = libc::itimerspec {
                it_interval: libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
                it_value: libc::timespec {
                    tv_sec: libc::time_t::try_from(after.as_secs()).unwrap_or(libc::time_t::MAX),
                    tv_nsec: after.subsec_nanos() as libc::c_long,
                },
            };
            // SAFETY: `spec` is a valid itimerspec for the call's duration;
            // the old value is not asked for (null).
            cvt(unsafe {
                libc::timerfd_settime(self.timer.as_raw_fd(), 0, &spec, std::ptr::null_mut())
            })?;
            Ok(())
        }

        fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, key: u64) -> io::Result<()> {
            let mut ev = libc::epoll_event { events, u64: key };
            // SAFETY: `ev` is a valid epoll_event for the call's duration;
            // the kernel checks both descriptors.
            cvt(unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut ev) })?;
            Ok(())
        }

        /// Registers `source` with `interest`.
        ///
        /// # Safety
        ///
        /// The source must be deleted before it is closed (the same
        /// contract as `polling::Poller::add_with_mode`): epoll would keep
        /// reporting a closed descriptor's open file under a stale key.
        pub(crate) unsafe fn add_with_mode(
            &self,
            source: impl AsFd,
            interest: Event,
            mode: PollMode,
        ) -> io::Result<()> {
            let flags = self::interest(interest, mode)?;
            self.ctl(
                libc::EPOLL_CTL_ADD,
                source.as_fd().as_raw_fd(),
                flags,
                interest.key as u64,
            )
        }

        pub(crate) fn modify_with_mode(
            &self,
            source: impl AsFd,
            interest: Event,
            mode: PollMode,
        ) -> io::Result<()> {
            let flags = self::interest(interest, mode)?;
            self.ctl(
                libc::EPOLL_CTL_MOD,
                source.as_fd().as_raw_fd(),
                flags,
                interest.key as u64,
            )
        }

        pub(crate) fn delete(&self, source: impl AsFd) -> io::Result<()> {
            self.ctl(libc::EPOLL_CTL_DEL, source.as_fd().as_raw_fd(), 0, 0)
        }

        /// Wakes the current or next wait. Async-signal-safe: one `write`.
        pub(crate) fn notify(&self) -> io::Result<()> {
            let one: u64 = 1;
            // SAFETY: writes the 8 bytes of `one`, which outlives the call.
            let n = unsafe {
                libc::write(
                    self.wake.as_raw_fd(),
                    (&one as *const u64).cast(),
                    std::mem::size_of::<u64>(),
                )
            };
            // EAGAIN: the counter is saturated, so a wake-up is pending anyway.
            if n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }

        /// Waits at most `timeout` (`None`: until something is ready, or a
        /// notification) and returns how many reports `events` holds (the
        /// wake-up's included, which `Events::iter` skips).
        pub(crate) fn wait(
            &self,
            events: &mut Events,
            timeout: Option<Duration>,
        ) -> io::Result<usize> {
            events.list.clear();
            let cap = events.list.capacity().min(i32::MAX as usize);
            let ms = timeout_ms(timeout);
            // SAFETY: the kernel writes at most `cap` entries into the
            // vector's spare capacity, which has room for `cap`.
            let n = unsafe {
                libc::epoll_wait(
                    self.epoll.as_raw_fd(),
                    events.list.as_mut_ptr(),
                    cap as libc::c_int,
                    ms,
                )
            };
            let n = match cvt(n) {
                Ok(n) => n as usize,
                // A signal (the stop handler) woke us: report nothing, the
                // loop looks at its flags and comes back.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
                Err(e) => return Err(e),
            };
            // SAFETY: the kernel initialised the first `n <= cap` entries.
            unsafe { events.list.set_len(n) };
            for ev in &events.list {
                if ev.u64 == NOTIFY_KEY {
                    drain(&self.wake);
                } else if ev.u64 == TIMER_KEY {
                    drain(&self.timer);
                }
            }
            Ok(n)
        }
    }

    /// Reads the 8-byte counter of an eventfd or a timerfd, which makes it
    /// stop reporting readable (both are in level mode).
    fn drain(fd: &OwnedFd) {
        let mut count = 0u64;
        // SAFETY: reads at most 8 bytes into `count`. The descriptor is
        // non-blocking; EAGAIN (nothing to read any more) is fine.
        unsafe {
            libc::read(
                fd.as_raw_fd(),
                (&mut count as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }

    impl AsRawFd for Poller {
        fn as_raw_fd(&self) -> RawFd {
            self.epoll.as_raw_fd()
        }
    }

    impl AsFd for Poller {
        fn as_fd(&self) -> BorrowedFd<'_> {
            self.epoll.as_fd()
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod portable {
    use super::*;

    pub(crate) use polling::Events;

    /// `polling::Poller` with the Linux poller's method names.
    pub(crate) struct Poller(polling::Poller);

    impl Poller {
        pub(crate) fn new() -> io::Result<Poller> {
            polling::Poller::new().map(Poller)
        }

        /// # Safety
        ///
        /// As `polling::Poller::add_with_mode`: delete before closing.
        pub(crate) unsafe fn add_with_mode(
            &self,
            source: impl AsFd,
            interest: Event,
            mode: PollMode,
        ) -> io::Result<()> {
            // SAFETY: the caller keeps the contract above.
            unsafe {
                self.0
                    .add_with_mode(source.as_fd().as_raw_fd(), interest, mode)
            }
        }

        pub(crate) fn modify_with_mode(
            &self,
            source: impl AsFd,
            interest: Event,
            mode: PollMode,
        ) -> io::Result<()> {
            self.0.modify_with_mode(source, interest, mode)
        }

        pub(crate) fn delete(&self, source: impl AsFd) -> io::Result<()> {
            self.0.delete(source)
        }

        pub(crate) fn notify(&self) -> io::Result<()> {
            self.0.notify()
        }

        /// No timer of its own: the loop passes its deadline to `wait`.
        pub(crate) const HAS_TIMER: bool = false;

        pub(crate) fn arm_timer(&self, _after: Duration) -> io::Result<()> {
            Err(io::Error::from(io::ErrorKind::Unsupported))
        }

        pub(crate) fn wait(
            &self,
            events: &mut Events,
            timeout: Option<Duration>,
        ) -> io::Result<usize> {
            self.0.wait(events, timeout)
        }
    }

    impl AsRawFd for Poller {
        fn as_raw_fd(&self) -> RawFd {
            self.0.as_raw_fd()
        }
    }

    impl AsFd for Poller {
        fn as_fd(&self) -> BorrowedFd<'_> {
            self.0.as_fd()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;

    #[test]
    fn timeouts_round_up_to_milliseconds() {
        assert_eq!(timeout_ms(None), -1);
        assert_eq!(timeout_ms(Some(Duration::ZERO)), 0);
        assert_eq!(timeout_ms(Some(Duration::from_nanos(1))), 1);
        assert_eq!(timeout_ms(Some(Duration::from_millis(5))), 5);
        assert_eq!(timeout_ms(Some(Duration::from_micros(5001))), 6);
        assert_eq!(timeout_ms(Some(Duration::from_secs(u64::MAX))), i32::MAX);
    }

    #[test]
    fn the_timer_ends_a_wait_once_and_arming_it_again_replaces_it() {
        if !Poller::HAS_TIMER {
            return;
        }
        let poller = Poller::new().unwrap();
        let mut events = Events::new();
        // Armed far off, then again soon: the second replaces the first.
        poller.arm_timer(Duration::from_secs(3600)).unwrap();
        poller.arm_timer(Duration::from_millis(20)).unwrap();
        let started = std::time::Instant::now();
        // Ended by the timer, not by the wait's own (long) timeout; its
        // report is the loop's own, not an event.
        let n = poller
            .wait(&mut events, Some(Duration::from_secs(60)))
            .unwrap();
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(19), "{waited:?}");
        assert!(waited < Duration::from_secs(60), "{waited:?}");
        assert_eq!(n, 1);
        assert_eq!(events.iter().count(), 0);
        // Read when it fired: not reported again.
        let n = poller.wait(&mut events, Some(Duration::ZERO)).unwrap();
        assert_eq!(n, 0);
        // A zero wait arms it for the next instant (zero would disarm it).
        poller.arm_timer(Duration::ZERO).unwrap();
        let n = poller
            .wait(&mut events, Some(Duration::from_secs(60)))
            .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn reports_readiness_level_triggered_and_wakes_on_notify() {
        let poller = Arc::new(Poller::new().unwrap());
        let mut events = Events::new();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        // SAFETY: deleted below, before the listener is dropped.
        unsafe {
            poller
                .add_with_mode(&listener, Event::readable(7), PollMode::Level)
                .unwrap()
        };
        poller.wait(&mut events, Some(Duration::ZERO)).unwrap();
        assert_eq!(events.iter().count(), 0);

        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        poller.wait(&mut events, None).unwrap();
        let got: Vec<_> = events.iter().map(|e| (e.key, e.readable)).collect();
        assert_eq!(got, [(7, true)]);
        // Level mode: still reported while the connection is not accepted.
        poller.wait(&mut events, Some(Duration::ZERO)).unwrap();
        assert_eq!(events.iter().count(), 1);
        // No interest: not reported.
        poller
            .modify_with_mode(&listener, Event::none(7), PollMode::Level)
            .unwrap();
        poller.wait(&mut events, Some(Duration::ZERO)).unwrap();
        assert_eq!(events.iter().count(), 0);

        // A notification from another thread ends a wait without a timeout,
        // and is consumed: the next wait does not see it.
        let other = Arc::clone(&poller);
        let t = std::thread::spawn(move || other.notify().unwrap());
        poller.wait(&mut events, None).unwrap();
        assert_eq!(events.iter().count(), 0);
        t.join().unwrap();
        poller.wait(&mut events, Some(Duration::ZERO)).unwrap();
        assert_eq!(events.iter().count(), 0);
        poller.delete(&listener).unwrap();
    }
}
