//! A hashed timer wheel.
//!
//! Time is counted in ticks of [`TICK`]. A timer due at tick `t` waits in
//! slot `t % SLOTS`; advancing the wheel by one tick visits one slot and
//! fires the entries that are due, so the cost of a tick depends on the
//! timers in that slot, never on the number of connections. Timers further
//! away than one turn of the wheel stay in their slot until their turn comes.
//!
//! Cancelling is lazy: an entry names what it is for, and its owner checks on
//! expiry whether it still matters (a connection that has gone, a state that
//! has changed). This keeps resetting a connection's idle timer free: the
//! connection only records when it last heard from its peer.

use std::time::Duration;

/// The wheel's resolution.
pub const TICK: Duration = Duration::from_millis(10);

/// Slots in the wheel: one turn is `SLOTS × TICK` (about 10 s).
const SLOTS: usize = 1024;

/// A tick count since the wheel's start.
pub type Tick = u64;

/// Converts a duration to whole ticks, rounding up so a timer never fires early.
pub fn ticks(duration: Duration) -> Tick {
    let tick = TICK.as_nanos();
    (duration.as_nanos().div_ceil(tick)) as Tick
}

struct Entry<T> {
    due: Tick,
    what: T,
}

/// Timers carrying a `T` each.
pub struct TimerWheel<T> {
    slots: Vec<Vec<Entry<T>>>,
    /// The last tick whose slot has been processed.
    now: Tick,
    len: usize,
}

impl<T> TimerWheel<T> {
    /// An empty wheel at tick 0.
    pub fn new() -> TimerWheel<T> {
        TimerWheel {
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            now: 0,
            len: 0,
        }
    }

    /// The current tick.
    pub fn now(&self) -> Tick {
        self.now
    }

    /// Schedules `what` to fire `after` ticks from now (at least one).
    pub fn schedule(&mut self, after: Tick, what: T) {
        let due = self.now + after.max(1);
        self.slots[(due % SLOTS as Tick) as usize].push(Entry { due, what });
        self.len += 1;
    }

    /// Advances to tick `to`, passing every timer that came due to `fire`.
    pub fn advance(&mut self, to: Tick, mut fire: impl FnMut(T)) {
        // A long stall (a suspended machine) need not walk every tick: one
        // turn visits every slot once.
        if to > self.now + SLOTS as Tick {
            self.now = to - SLOTS as Tick;
        }
        while self.now < to {
            self.now += 1;
            let now = self.now;
            let slot = &mut self.slots[(now % SLOTS as Tick) as usize];
            if slot.is_empty() {
                continue;
            }
            let mut i = 0;
            while i < slot.len() {
                if slot[i].due <= now {
                    let entry = slot.swap_remove(i);
                    self.len -= 1;
                    fire(entry.what);
                } else {
                    i += 1;
                }
            }
        }
    }

    /// Ticks until the next slot that holds a timer, if any. The timer there
    /// may belong to a later turn; waking early then is harmless.
    pub fn next_due(&self) -> Option<Tick> {
        if self.len == 0 {
            return None;
        }
        (1..=SLOTS as Tick)
            .find(|d| !self.slots[((self.now + d) % SLOTS as Tick) as usize].is_empty())
    }
}

impl<T> Default for TimerWheel<T> {
    fn default() -> Self {
        TimerWheel::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_order_at_the_right_tick() {
        let mut wheel = TimerWheel::new();
        wheel.schedule(5, "b");
        wheel.schedule(2, "a");
        wheel.schedule(3000, "far");
        let mut fired = Vec::new();
        wheel.advance(4, |w| fired.push(w));
        assert_eq!(fired, ["a"]);
        wheel.advance(5, |w| fired.push(w));
        assert_eq!(fired, ["a", "b"]);
        assert_eq!(wheel.len, 1);
        // A timer more than one turn away survives the turns before it.
        wheel.advance(2999, |w| fired.push(w));
        assert_eq!(fired.len(), 2);
        wheel.advance(3000, |w| fired.push(w));
        assert_eq!(fired, ["a", "b", "far"]);
        assert_eq!(wheel.len, 0);
        assert_eq!(wheel.next_due(), None);
    }

    #[test]
    fn next_due_points_at_the_first_occupied_slot() {
        let mut wheel = TimerWheel::new();
        wheel.schedule(7, ());
        assert_eq!(wheel.next_due(), Some(7));
        wheel.schedule(0, ());
        assert_eq!(wheel.next_due(), Some(1));
    }

    #[test]
    fn a_long_stall_fires_everything_due() {
        let mut wheel = TimerWheel::new();
        for i in 0..50 {
            wheel.schedule(i * 97, i);
        }
        let mut fired = 0;
        wheel.advance(1_000_000, |_| fired += 1);
        assert_eq!(fired, 50);
    }

    #[test]
    fn durations_round_up_to_ticks() {
        assert_eq!(ticks(Duration::from_millis(10)), 1);
        assert_eq!(ticks(Duration::from_millis(11)), 2);
        assert_eq!(ticks(Duration::from_secs(5)), 500);
        assert_eq!(ticks(Duration::ZERO), 0);
    }
}
