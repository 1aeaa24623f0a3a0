//! A hashed timer wheel.
//!
//! Time is counted in ticks of [`TICK`]. A timer due at tick `t` waits in
//! slot `t % SLOTS`; advancing the wheel by one tick visits one slot and
//! fires the entries that are due, so the cost of a tick depends on the
//! timers in that slot, never on the number of connections. Timers further
//! away than one turn of the wheel stay in their slot until their turn comes.
//!
//! An entry names what it is for. A connection keeps at most one entry, at
//! the earliest of its deadlines; a deadline that moves later (the idle
//! clock, reset by every message) leaves the entry where it is, and when it
//! fires the connection is simply asked again, so resetting the idle timer
//! costs nothing. Entries are cancelled eagerly when their owner goes
//! ([`TimerWheel::cancel`] scans one slot), so a closed connection leaves
//! nothing behind in the wheel.

use std::time::Duration;

/// The wheel's resolution.
pub(super) const TICK: Duration = Duration::from_millis(10);

/// Slots in the wheel: one turn is `SLOTS × TICK` (about 10 s).
const SLOTS: usize = 1024;

/// The capacity an empty slot keeps; a larger one is freed.
const SLOT_KEEP: usize = 8;

/// A tick count since the wheel's start.
pub(super) type Tick = u64;

struct Entry<T> {
    due: Tick,
    what: T,
}

/// Timers carrying a `T` each.
pub(super) struct TimerWheel<T> {
    slots: Vec<Vec<Entry<T>>>,
    /// The last tick whose slot has been processed.
    now: Tick,
    len: usize,
}

impl<T> TimerWheel<T> {
    /// An empty wheel at tick 0.
    pub(super) fn new() -> TimerWheel<T> {
        TimerWheel {
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            now: 0,
            len: 0,
        }
    }

    /// The current tick.
    pub(super) fn now(&self) -> Tick {
        self.now
    }

    /// Schedules `what` to fire at tick `due` (at the next tick if that has
    /// passed). Returns the tick it was filed under, for [`TimerWheel::cancel`].
    pub(super) fn schedule_at(&mut self, due: Tick, what: T) -> Tick {
        let due = due.max(self.now + 1);
        self.slots[(due % SLOTS as Tick) as usize].push(Entry { due, what });
        self.len += 1;
        due
    }

    /// Removes the entry filed under tick `due` for which `is` holds, if it
    /// is still there. Returns whether one was removed.
    pub(super) fn cancel(&mut self, due: Tick, mut is: impl FnMut(&T) -> bool) -> bool {
        let slot = &mut self.slots[(due % SLOTS as Tick) as usize];
        let Some(i) = slot.iter().position(|e| e.due == due && is(&e.what)) else {
            return false;
        };
        slot.swap_remove(i);
        self.len -= 1;
        if slot.is_empty() && slot.capacity() > SLOT_KEEP {
            // A burst of timers (a round of connections) is not kept for good.
            *slot = Vec::new();
        }
        true
    }

    /// How many timers are waiting.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }

    /// Advances to tick `to`, passing every timer that came due to `fire`.
    pub(super) fn advance(&mut self, to: Tick, mut fire: impl FnMut(T)) {
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
            if slot.is_empty() && slot.capacity() > SLOT_KEEP {
                *slot = Vec::new();
            }
        }
    }

    /// Ticks until the next slot that holds a timer, if any. The timer there
    /// may belong to a later turn; waking early then is harmless.
    pub(super) fn next_due(&self) -> Option<Tick> {
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
        wheel.schedule_at(5, "b");
        wheel.schedule_at(2, "a");
        wheel.schedule_at(3000, "far");
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
        wheel.schedule_at(7, ());
        assert_eq!(wheel.next_due(), Some(7));
        wheel.schedule_at(0, ());
        assert_eq!(wheel.next_due(), Some(1));
    }

    #[test]
    fn a_long_stall_fires_everything_due() {
        let mut wheel = TimerWheel::new();
        for i in 0..50 {
            wheel.schedule_at(i * 97, i);
        }
        let mut fired = 0;
        wheel.advance(1_000_000, |_| fired += 1);
        assert_eq!(fired, 50);
    }

    #[test]
    fn cancelled_entries_leave_nothing_behind() {
        let mut wheel = TimerWheel::new();
        let dues: Vec<Tick> = (0..1000u64)
            .map(|i| wheel.schedule_at(500 + i % 3, i))
            .collect();
        assert_eq!(wheel.len(), 1000);
        for (i, due) in dues.iter().enumerate() {
            assert!(wheel.cancel(*due, |&w| w == i as u64));
        }
        assert!(!wheel.cancel(dues[0], |&w| w == 0), "already gone");
        assert_eq!(wheel.len(), 0);
        assert_eq!(wheel.next_due(), None);
        let kept: usize = wheel.slots.iter().map(Vec::capacity).sum();
        assert_eq!(kept, 0, "the burst's slot capacity is released");
        let mut fired = 0;
        wheel.advance(2000, |_| fired += 1);
        assert_eq!(fired, 0);
    }
}
