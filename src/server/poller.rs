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

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

pub(crate) use polling::{Event, PollMode};

pub(crate) use self::linux::{Events, Poller};

/// How long `epoll_wait` may sleep for `timeout`: whole milliseconds, rounded
/// up (a wake-up before the deadline would only find nothing due and wait
/// again), `-1` for none, capped at `i32::MAX`.
fn timeout_ms(timeout: Option<Duration>) -> i32 {
    match timeout {
        None => -1,
        Some(t) => {
            let ms = t.as_nanos().div_ceil(1_000_000);
            i32::try_from(ms).unwrap_or(i32::MAX)
        }
    }
}

mod linux {
    use super::*;
    use rustix::event::epoll::{self, EventData, EventFlags};
    use rustix::event::{eventfd, EventfdFlags};
    use rustix::time::{
        timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags,
        TimerfdTimerFlags, Timespec,
    };
    use std::os::fd::OwnedFd;

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
        list: Vec<epoll::Event>,
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
                let (flags, key) = (ev.flags, ev.data.u64());
                if key == NOTIFY_KEY || key == TIMER_KEY {
                    return None;
                }
                let readable = flags.intersects(
                    EventFlags::IN
                        | EventFlags::HUP
                        | EventFlags::ERR
                        | EventFlags::RDHUP
                        | EventFlags::PRI,
                );
                let writable =
                    flags.intersects(EventFlags::OUT | EventFlags::HUP | EventFlags::ERR);
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

    fn interest(ev: Event, mode: PollMode) -> io::Result<EventFlags> {
        if !matches!(mode, PollMode::Level) {
            // The loop registers everything in level mode; nothing else is
            // implemented here.
            return Err(io::Error::from(io::ErrorKind::Unsupported));
        }
        let mut flags = EventFlags::empty();
        if ev.readable {
            flags |= EventFlags::IN | EventFlags::RDHUP | EventFlags::PRI;
        }
        if ev.writable {
            flags |= EventFlags::OUT;
        }
        Ok(flags)
    }

    impl Poller {
        pub(crate) fn new() -> io::Result<Poller> {
            let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
            let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
            let timer = timerfd_create(
                TimerfdClockId::Monotonic,
                TimerfdFlags::CLOEXEC | TimerfdFlags::NONBLOCK,
            )?;
            epoll::add(
                &epoll,
                &wake,
                EventData::new_u64(NOTIFY_KEY),
                EventFlags::IN,
            )?;
            epoll::add(
                &epoll,
                &timer,
                EventData::new_u64(TIMER_KEY),
                EventFlags::IN,
            )?;
            Ok(Poller { epoll, wake, timer })
        }

        /// Makes a wait end `after` from now (the clock `Instant` reads),
        /// replacing what was armed; a zero `after` is taken as one
        /// nanosecond (zero would disarm). When it fires, the wait that sees
        /// it reads it, so it is reported once.
        pub(crate) fn arm_timer(&self, after: Duration) -> io::Result<()> {
            let after = after.max(Duration::from_nanos(1));
            let spec = Itimerspec {
                it_interval: Timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
                it_value: Timespec {
                    tv_sec: i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
                    tv_nsec: i64::from(after.subsec_nanos()),
                },
            };
            timerfd_settime(&self.timer, TimerfdTimerFlags::empty(), &spec)?;
            Ok(())
        }

        /// Registers `source` with `interest`. The loop deletes a source
        /// before it closes it: epoll would keep reporting a closed
        /// descriptor's open file (shared by a `dup`) under a stale key.
        pub(crate) fn add_with_mode(
            &self,
            source: impl AsFd,
            interest: Event,
            mode: PollMode,
        ) -> io::Result<()> {
            let flags = self::interest(interest, mode)?;
            epoll::add(
                &self.epoll,
                source,
                EventData::new_u64(interest.key as u64),
                flags,
            )?;
            Ok(())
        }

        pub(crate) fn modify_with_mode(
            &self,
            source: impl AsFd,
            interest: Event,
            mode: PollMode,
        ) -> io::Result<()> {
            let flags = self::interest(interest, mode)?;
            epoll::modify(
                &self.epoll,
                source,
                EventData::new_u64(interest.key as u64),
                flags,
            )?;
            Ok(())
        }

        pub(crate) fn delete(&self, source: impl AsFd) -> io::Result<()> {
            epoll::delete(&self.epoll, source)?;
            Ok(())
        }

        /// Wakes the current or next wait. Async-signal-safe: one `write`.
        pub(crate) fn notify(&self) -> io::Result<()> {
            match rustix::io::write(&self.wake, &1u64.to_ne_bytes()) {
                // EAGAIN: the counter is saturated, so a wake-up is pending
                // anyway.
                Ok(_) | Err(rustix::io::Errno::AGAIN) => Ok(()),
                Err(e) => Err(e.into()),
            }
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
            // Whole milliseconds, rounded up, as `epoll_wait` counts them on
            // kernels before 5.11 (`epoll_pwait2`).
            let timeout = timeout.map(|t| {
                let ms = timeout_ms(Some(t));
                Timespec {
                    tv_sec: i64::from(ms / 1000),
                    tv_nsec: i64::from(ms % 1000) * 1_000_000,
                }
            });
            let spare = rustix::buffer::spare_capacity(&mut events.list);
            let n = match epoll::wait(&self.epoll, spare, timeout.as_ref()) {
                Ok(n) => n,
                // A signal (the stop handler) woke us: report nothing, the
                // loop looks at its flags and comes back.
                Err(rustix::io::Errno::INTR) => 0,
                Err(e) => return Err(e.into()),
            };
            for ev in &events.list {
                let key = ev.data.u64();
                if key == NOTIFY_KEY {
                    drain(&self.wake);
                } else if key == TIMER_KEY {
                    drain(&self.timer);
                }
            }
            Ok(n)
        }
    }

    /// Reads the 8-byte counter of an eventfd or a timerfd, which makes it
    /// stop reporting readable (both are in level mode). The descriptor is
    /// non-blocking; EAGAIN (nothing to read any more) is fine.
    fn drain(fd: &OwnedFd) {
        let mut count = [0u8; 8];
        let _ = rustix::io::read(fd, &mut count);
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
        poller
            .add_with_mode(&listener, Event::readable(7), PollMode::Level)
            .unwrap();
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
