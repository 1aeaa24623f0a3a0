//! Rate limits on what a client sends: token buckets over its messages and
//! over their bytes, driven by the instants the caller passes in.
//!
//! A [`Rate`] is an average and a burst: a bucket holds at most `burst`
//! tokens, refills at `per_second` tokens a second, and a message is let
//! through only if the bucket holds what it costs (one token per message,
//! or one per byte of payload, counted after inflating when the message was
//! compressed). A [`Bucket`] keeps one instant, when it will be full again
//! (the "generic cell rate algorithm" form of a token bucket): no float, no
//! timer, and nothing to do while the client is quiet.

use std::time::{Duration, Instant};

/// Nanoseconds in a second.
const NANOS: u128 = 1_000_000_000;

/// The largest rate or burst accepted: 2^40 (a TiB a second, or a trillion
/// messages), far past what a board can take, and small enough that no
/// arithmetic on it overflows.
pub const MAX_RATE: u64 = 1 << 40;

/// An average rate with a burst: `per_second` units a second on average,
/// up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    per_second: u64,
    burst: u64,
}

impl Rate {
    /// `per_second` a second, bursts up to `burst`; `None` unless both are
    /// from 1 to [`MAX_RATE`].
    pub fn new(per_second: u64, burst: u64) -> Option<Rate> {
        let ok = |n: u64| (1..=MAX_RATE).contains(&n);
        (ok(per_second) && ok(burst)).then_some(Rate { per_second, burst })
    }

    /// The average, per second.
    pub fn per_second(&self) -> u64 {
        self.per_second
    }

    /// The most at once.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// How long refilling `amount` tokens takes, in nanoseconds (rounded
    /// up, so that a client never gains by rounding).
    fn nanos_for(&self, amount: u64) -> u128 {
        (u128::from(amount) * NANOS).div_ceil(u128::from(self.per_second))
    }
}

/// One token bucket's state: when it will be full again (`None`: it is).
/// Starts full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bucket {
    full_at: Option<Instant>,
}

impl Bucket {
    /// The tokens it holds at `now`.
    pub fn available(&self, rate: &Rate, now: Instant) -> u64 {
        let Some(debt) = self.full_at.and_then(|at| at.checked_duration_since(now)) else {
            return rate.burst;
        };
        // Tokens owed, rounded up: a part of a token is not one yet.
        let owed = (debt.as_nanos() * u128::from(rate.per_second)).div_ceil(NANOS);
        rate.burst
            .saturating_sub(u64::try_from(owed).unwrap_or(u64::MAX))
    }

    /// Takes `amount` tokens at `now` if it holds them; whether it did.
    pub fn take(&mut self, rate: &Rate, now: Instant, amount: u64) -> bool {
        if amount > self.available(rate, now) {
            return false;
        }
        let from = match self.full_at {
            Some(at) if at > now => at,
            _ => now,
        };
        let refill = rate.nanos_for(amount);
        let secs = u64::try_from(refill / NANOS).unwrap_or(u64::MAX);
        // The remainder is below a second, so it fits.
        let refill = Duration::new(secs, (refill % NANOS) as u32);
        match from.checked_add(refill) {
            Some(at) => {
                self.full_at = Some(at);
                true
            }
            None => false,
        }
    }
}

/// The limits on what one connection sends: messages a second and payload
/// bytes a second, either or both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Messages a second (`--rate-limit`).
    pub messages: Option<Rate>,
    /// Payload bytes a second, inflated (`--rate-limit-bytes`).
    pub bytes: Option<Rate>,
}

impl Limits {
    /// Whether there is any limit.
    pub fn is_set(&self) -> bool {
        self.messages.is_some() || self.bytes.is_some()
    }
}

/// One connection's buckets, for the limits its server has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limiter {
    messages: Bucket,
    bytes: Bucket,
}

impl Limiter {
    /// The largest message (payload bytes) the limits let through at `now`,
    /// or `None` if they let no message through at all.
    pub fn allowance(&self, limits: &Limits, now: Instant) -> Option<u64> {
        if let Some(rate) = &limits.messages {
            if self.messages.available(rate, now) == 0 {
                return None;
            }
        }
        Some(match &limits.bytes {
            Some(rate) => self.bytes.available(rate, now),
            None => u64::MAX,
        })
    }

    /// Counts a message of `len` payload bytes received at `now`; `false`
    /// (counting nothing) if it is over either limit.
    pub fn take(&mut self, limits: &Limits, now: Instant, len: u64) -> bool {
        if self.allowance(limits, now).is_none_or(|most| len > most) {
            return false;
        }
        let messages = limits
            .messages
            .as_ref()
            .is_none_or(|rate| self.messages.take(rate, now, 1));
        let bytes = limits
            .bytes
            .as_ref()
            .is_none_or(|rate| self.bytes.take(rate, now, len));
        messages && bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn rates_need_both_numbers_in_range() {
        assert!(Rate::new(1, 1).is_some());
        assert!(Rate::new(MAX_RATE, MAX_RATE).is_some());
        assert!(Rate::new(0, 1).is_none());
        assert!(Rate::new(1, 0).is_none());
        assert!(Rate::new(MAX_RATE + 1, 1).is_none());
        assert!(Rate::new(1, u64::MAX).is_none());
    }

    #[test]
    fn a_burst_then_the_average() {
        // 10 a second, bursts of 5.
        let rate = Rate::new(10, 5).unwrap();
        let t0 = Instant::now();
        let mut b = Bucket::default();
        assert_eq!(b.available(&rate, t0), 5);
        for _ in 0..5 {
            assert!(b.take(&rate, t0, 1));
        }
        assert!(!b.take(&rate, t0, 1), "the burst is spent");
        assert!(!b.take(&rate, t0 + ms(99), 1), "a token takes 100 ms");
        assert!(b.take(&rate, t0 + ms(100), 1));
        assert!(!b.take(&rate, t0 + ms(150), 1));
        // Quiet for a long time: full again, and no more than full.
        assert_eq!(b.available(&rate, t0 + Duration::from_secs(60)), 5);
        // A failed take costs nothing.
        let mut c = Bucket::default();
        assert!(!c.take(&rate, t0, 6));
        assert_eq!(c.available(&rate, t0), 5);
    }

    #[test]
    fn a_steady_sender_at_the_rate_is_never_refused_and_one_above_it_is() {
        let rate = Rate::new(100, 100).unwrap();
        let t0 = Instant::now();
        let mut steady = Bucket::default();
        for i in 0..10_000u64 {
            assert!(steady.take(&rate, t0 + ms(10 * i), 1), "message {i}");
        }
        // 125 a second drains the bucket by 25 a second: the burst of 100
        // runs out after about 4 s.
        let mut fast = Bucket::default();
        let refused = (0..1000u64).find(|i| !fast.take(&rate, t0 + ms(8 * i), 1));
        let at = refused.map(|i| 8 * i);
        assert!(matches!(at, Some(3900..=4100)), "{at:?}");
    }

    #[test]
    fn byte_buckets_take_a_message_whole_or_not_at_all() {
        // 1,000 bytes a second, bursts of 2,000.
        let rate = Rate::new(1000, 2000).unwrap();
        let t0 = Instant::now();
        let mut b = Bucket::default();
        assert!(b.take(&rate, t0, 1500));
        assert_eq!(b.available(&rate, t0), 500);
        assert!(!b.take(&rate, t0, 501));
        assert!(b.take(&rate, t0, 500));
        assert_eq!(b.available(&rate, t0 + ms(250)), 250);
        assert_eq!(b.available(&rate, t0 + ms(2000)), 2000);
        assert!(!b.take(&rate, t0 + ms(9000), 2001), "over the burst: never");
    }

    #[test]
    fn limiters_count_messages_and_bytes_together() {
        let limits = Limits {
            messages: Rate::new(2, 2),
            bytes: Rate::new(100, 100),
        };
        let t0 = Instant::now();
        let mut l = Limiter::default();
        assert_eq!(l.allowance(&limits, t0), Some(100));
        assert!(l.take(&limits, t0, 60));
        assert_eq!(l.allowance(&limits, t0), Some(40));
        assert!(!l.take(&limits, t0, 41), "over the bytes");
        assert!(l.take(&limits, t0, 0));
        assert_eq!(l.allowance(&limits, t0), None, "out of messages");
        assert!(!l.take(&limits, t0, 0));
        assert_eq!(l.allowance(&limits, t0 + ms(500)), Some(90));
        // No limits: anything goes.
        let none = Limits::default();
        assert!(!none.is_set());
        assert_eq!(Limiter::default().allowance(&none, t0), Some(u64::MAX));
        assert!(Limiter::default().take(&none, t0, u64::MAX));
    }

    #[test]
    fn the_largest_values_do_not_overflow() {
        let slow = Rate::new(1, MAX_RATE).unwrap();
        let t0 = Instant::now();
        let mut b = Bucket::default();
        assert!(b.take(&slow, t0, MAX_RATE));
        assert_eq!(b.available(&slow, t0), 0);
        assert_eq!(b.available(&slow, t0 + Duration::from_secs(3)), 3);
        let fast = Rate::new(MAX_RATE, 1).unwrap();
        let mut b = Bucket::default();
        assert!(b.take(&fast, t0, 1));
        assert_eq!(b.available(&fast, t0 + Duration::from_nanos(1)), 1);
    }
}
