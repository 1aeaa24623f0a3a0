//! The loop's clock and deadlines: the one reading of the clock a pass
//! makes, the timer wheel (connections' deadlines, the keep-alive ping, the
//! handler's timers), and when the next wait must end: the poller's
//! timerfd, armed only when the next deadline moves earlier, or the ring's
//! wait's timeout.

use std::time::{Duration, Instant};

use log::{debug, warn};

use super::{Core, Peer, Timer, TICK_NANOS};
use crate::server::handler::TimerId;
use crate::server::slab::ConnId;
use crate::server::timer::Tick;

impl Core {
    /// The first tick at or after `at`: a timer filed there never fires early.
    fn tick_at(&self, at: Instant) -> Tick {
        tick_at(self.start, at)
    }

    /// Sets the loop's clock, `now`, for the pass that follows. The
    /// nanoseconds since the start are worked out here, once: the wheel's
    /// tick and the wait's timeout come from them with plain integer
    /// arithmetic, where each `Instant` difference was ~40 instructions of a
    /// pass (callgrind, at one or two messages a pass).
    ///
    /// The clock never runs back: a `now` earlier than the last one (the
    /// wall clock read by [`crate::Server::with_context`] after a pass on a
    /// virtual clock that runs ahead, see [`crate::Server::run_once_at`])
    /// leaves it where it is.
    pub(crate) fn set_clock(&mut self, now: Instant) {
        if now < self.now {
            return;
        }
        self.now = now;
        self.now_nanos = self.nanos_since_start(now);
    }

    /// The tick that has fully begun at `now`.
    pub(crate) fn current_tick(&self) -> Tick {
        self.now_nanos / TICK_NANOS
    }

    /// Nanoseconds from the loop's start to `at` (0 before it).
    fn nanos_since_start(&self, at: Instant) -> u64 {
        nanos_between(self.start, at)
    }

    /// How long from `now` the loop may sleep before its next timer is due
    /// (zero if one is due already; `None`: no timer pending).
    pub(crate) fn wake_in(&self) -> Option<Duration> {
        self.wake_at()
            .map(|at| Duration::from_nanos(at.saturating_sub(self.now_nanos)))
    }

    /// When the next timer is due, in nanoseconds since the start.
    fn wake_at(&self) -> Option<u64> {
        let wheel = self
            .wheel
            .next_due()
            .map(|due| (self.wheel.now() + due).saturating_mul(TICK_NANOS));
        #[cfg(feature = "redis")]
        if let Some(source) = self.source.as_deref().and_then(|s| s.next_wake()) {
            let source = self.nanos_since_start(source);
            return Some(wheel.map_or(source, |w| w.min(source)));
        }
        wheel
    }

    /// How long the next wait may last at most, given the caller's
    /// `timeout`: where the poller has a timer of its own, it is armed for
    /// the next deadline (a syscall only when that deadline is earlier than
    /// what is armed, or what is armed has passed) and the wait needs no
    /// timeout for it; elsewhere the deadline is the wait's timeout.
    pub(crate) fn wait_timeout(&mut self, timeout: Option<Duration>) -> Option<Duration> {
        let Some(at) = self.wake_at() else {
            return timeout;
        };
        let wake = Duration::from_nanos(at.saturating_sub(self.now_nanos));
        // The ring's wait takes the deadline as its timeout, in the same
        // `io_uring_enter`: no timer to arm, unless a program waits on the
        // ring's descriptor itself (`timer_on_fd`).
        let armed = (self.ring.is_none() || self.timer_on_fd)
            && !wake.is_zero()
            && self.arm_timer(at, wake);
        if armed {
            return timeout;
        }
        Some(timeout.map_or(wake, |t| t.min(wake)))
    }

    /// Arms the poller's timer for `at` (`wake` from now) unless what is
    /// armed fires between now and then; whether it is armed. The test is
    /// inlined (it runs every pass, and is nearly always enough); arming
    /// is not.
    #[inline(always)]
    fn arm_timer(&mut self, at: u64, wake: Duration) -> bool {
        if self
            .timer_armed
            .is_some_and(|armed| armed > self.now_nanos && armed <= at)
        {
            return true;
        }
        self.rearm_timer(at, wake)
    }

    #[inline(never)]
    fn rearm_timer(&mut self, at: u64, wake: Duration) -> bool {
        match self.poller.arm_timer(wake) {
            Ok(()) => {
                self.timer_armed = Some(at);
                true
            }
            Err(e) => {
                warn!("arming the loop's timer failed: {e}");
                self.timer_armed = None;
                false
            }
        }
    }

    /// Fires every timer due by the loop's clock.
    pub(crate) fn advance_wheel(&mut self, fired: &mut Vec<Timer>) {
        let to = self.current_tick();
        self.wheel.advance(to, |t| fired.push(t));
    }

    pub(super) fn schedule(&mut self, after: Duration, what: Timer) -> Tick {
        // A timer further off than a century (a `--room-ttl` of 10^15 h, a
        // handler's `Duration::MAX`) fires in a century: `Instant` cannot
        // add any span.
        let after = after.min(Duration::from_secs(100 * 365 * 24 * 3600));
        let due = self.tick_at(self.now + after);
        self.wheel.schedule_at(due, what)
    }

    pub(crate) fn schedule_ping(&mut self) {
        if !self.config.ping_interval.is_zero() {
            self.schedule(self.config.ping_interval, Timer::Ping);
        }
    }

    /// A connection's wheel entry fired.
    pub(crate) fn conn_timer(&mut self, id: ConnId) {
        let Some(slot) = self.slots.get_mut(id) else {
            return;
        };
        slot.timer = 0;
        let handshaking = slot.conn.is_handshaking();
        slot.conn.handle_timeout(&self.settings, self.now);
        if handshaking && slot.conn.is_finished() {
            debug!("{id} ({}): handshake timed out", Peer(&slot.stream));
        }
        self.touch(id);
    }

    // ---- the handler's timers ----------------------------------------------

    pub(crate) fn set_timer(&mut self, after: Duration, token: u64) -> TimerId {
        let id = self.user_timers.insert((token, 0));
        let timer = TimerId(id);
        let due = self.schedule(after, Timer::User(timer));
        if let Some(entry) = self.user_timers.get_mut(id) {
            entry.1 = due;
        }
        timer
    }

    pub(crate) fn cancel_timer(&mut self, timer: TimerId) -> bool {
        match self.user_timers.remove(timer.0) {
            Some((_, due)) => {
                self.wheel.cancel(due, |t| *t == Timer::User(timer));
                true
            }
            None => false,
        }
    }

    /// The token of a user timer that fired, unless it was cancelled.
    pub(crate) fn take_user_timer(&mut self, timer: TimerId) -> Option<u64> {
        self.user_timers.remove(timer.0).map(|(token, _)| token)
    }
}

/// The first tick that begins at or after `at`, counted from `start`.
pub(super) fn tick_at(start: Instant, at: Instant) -> Tick {
    nanos_between(start, at).div_ceil(TICK_NANOS)
}

/// Nanoseconds from `start` to `at` (0 before it), in a `u64` (584 years):
/// `Duration::as_nanos` is a `u128`, whose division was a call of its own on
/// the path of every settled connection.
fn nanos_between(start: Instant, at: Instant) -> u64 {
    let since = at.saturating_duration_since(start);
    since
        .as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(since.subsec_nanos()))
}
