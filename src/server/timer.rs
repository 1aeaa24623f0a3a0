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
//!
//! The loop asks for the next deadline on every pass. The wheel keeps a
//! lower bound on the earliest due tick, so that answer is usually that
//! bound; the slots are scanned only once the bound has been reached.

use std::cell::Cell;
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
    /// No entry is due before this tick: the smallest tick scheduled since
    /// the last scan, or the first occupied slot that scan found. A `Cell`,
    /// as [`TimerWheel::next_due`] (a question) may tighten it.
    earliest: Cell<Tick>,
}

impl<T> TimerWheel<T> {
    /// An empty wheel at tick 0.
    pub(super) fn new() -> TimerWheel<T> {
        TimerWheel {
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            now: 0,
            len: 0,
            earliest: Cell::new(0),
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
        self.earliest.set(self.earliest.get().min(due));
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

    /// Ticks until the wheel must next be advanced, if it holds a timer:
    /// never past the earliest due one. It may be earlier (the slot's timer
    /// may belong to a later turn, or the bound's may have been cancelled);
    /// waking early then is harmless. The slots are scanned only when the
    /// bound has been reached: it cost ~380 instructions a pass, on a loop
    /// that at a low message rate makes a pass per message (callgrind).
    pub(super) fn next_due(&self) -> Option<Tick> {
        if self.len == 0 {
            return None;
        }
        let earliest = self.earliest.get();
        if earliest > self.now {
            return Some(earliest - self.now);
        }
        let due = (1..=SLOTS as Tick)
            .find(|d| !self.slots[((self.now + d) % SLOTS as Tick) as usize].is_empty())?;
        // Every entry is due after `now` and within one turn of its slot, so
        // none is due before the first occupied slot.
        self.earliest.set(self.now + due);
        Some(due)
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
    fn next_due_is_never_past_the_earliest_timer() {
        // Pseudo-random schedules, cancels and advances; after each, the
        // answer is at most the earliest due tick.
        let mut wheel = TimerWheel::new();
        let mut filed: Vec<(Tick, u32)> = Vec::new();
        let mut seed = 0x2545_f491_u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for step in 0..20_000u32 {
            match next() % 4 {
                0 | 1 => {
                    let due = wheel.now() + Tick::from(next() % 3000);
                    filed.push((wheel.schedule_at(due, step), step));
                }
                2 if !filed.is_empty() => {
                    let (due, what) = filed.swap_remove(next() as usize % filed.len());
                    assert!(wheel.cancel(due, |&w| w == what));
                }
                _ => {
                    let to = wheel.now() + Tick::from(next() % 50);
                    wheel.advance(to, |w| filed.retain(|&(_, f)| f != w));
                }
            }
            let earliest = filed.iter().map(|&(due, _)| due).min();
            match (wheel.next_due(), earliest) {
                (None, None) => {}
                (Some(d), Some(e)) => {
                    assert!(d >= 1, "step {step}: a wake in the past");
                    assert!(
                        wheel.now() + d <= e,
                        "step {step}: wakes at {} after {e}",
                        wheel.now() + d
                    );
                }
                other => panic!("step {step}: {other:?}"),
            }
        }
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
