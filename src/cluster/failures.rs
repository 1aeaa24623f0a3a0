//! What the log says about failed tries to reach Redis ([`Failures`]):
//! a WARN for news, repeats counted instead of logged.

use std::time::{Duration, Instant};

/// An identical failure is logged at WARN at most this often (the others
/// at debug level, counted in the next WARN line).
pub(super) const REPEAT_LOG_EVERY: Duration = Duration::from_secs(60);

/// What the log says about failed tries: the first failure, and any unlike
/// the one before, at WARN; the same one again within [`REPEAT_LOG_EVERY`]
/// of the last WARN at debug level, counted in the next WARN line. Never
/// hidden at `-q`, never a line per retry.
#[derive(Debug, Default)]
pub(super) struct Failures {
    last: Option<String>,
    /// Failures since the last WARN, not shown at WARN.
    unshown: u64,
    warned_at: Option<Instant>,
}

/// How to log one failure.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Say {
    /// At WARN, with how many times it repeated unshown since the last.
    Warn { again: u64 },
    /// At debug level.
    Quiet,
}

impl Failures {
    /// A failure, `text` as logged; `news`: it carries something to say
    /// (publications queued again or dropped) whatever the text.
    pub(super) fn failed(&mut self, text: &str, now: Instant, news: bool) -> Say {
        let repeated = self.last.as_deref() == Some(text);
        let recently = self.warned_at.is_some_and(|t| now < t + REPEAT_LOG_EVERY);
        if !repeated {
            self.last = Some(text.to_string());
        }
        if repeated && recently && !news {
            self.unshown += 1;
            return Say::Quiet;
        }
        self.warned_at = Some(now);
        Say::Warn {
            again: std::mem::take(&mut self.unshown),
        }
    }

    /// Up again: `Some(failures not shown)` if a failure was logged since
    /// the last time up (the recovery is worth a WARN then).
    pub(super) fn recovered(&mut self) -> Option<u64> {
        let was_failing = self.last.take().is_some();
        self.warned_at = None;
        let unshown = std::mem::take(&mut self.unshown);
        was_failing.then_some(unshown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_failures_are_warned_once_a_minute_and_counted_never_hidden() {
        let t0 = Instant::now();
        let mut f = Failures::default();
        let refused = "Connection refused (os error 111)";
        assert_eq!(f.failed(refused, t0, false), Say::Warn { again: 0 });
        for s in 1..5 {
            let at = t0 + Duration::from_secs(s * 5);
            assert_eq!(f.failed(refused, at, false), Say::Quiet);
        }
        // Another failure is news at once; and so is the first again.
        let t1 = t0 + Duration::from_secs(30);
        assert_eq!(
            f.failed("no answer in time", t1, false),
            Say::Warn { again: 4 }
        );
        assert_eq!(f.failed(refused, t1, false), Say::Warn { again: 0 });
        assert_eq!(
            f.failed(refused, t1 + Duration::from_secs(59), false),
            Say::Quiet
        );
        assert_eq!(
            f.failed(refused, t1 + Duration::from_secs(59), true),
            Say::Warn { again: 1 }
        );
        assert_eq!(
            f.failed(refused, t1 + Duration::from_secs(60), false),
            Say::Quiet
        );
        assert_eq!(
            f.failed(refused, t1 + Duration::from_secs(119), false),
            Say::Warn { again: 1 }
        );
        assert_eq!(
            f.failed(refused, t1 + Duration::from_secs(120), false),
            Say::Quiet
        );
        // Connecting again after failures is worth a WARN, with the count.
        assert_eq!(f.recovered(), Some(1));
        assert_eq!(f.recovered(), None);
        assert_eq!(
            f.failed(refused, t1 + Duration::from_secs(121), false),
            Say::Warn { again: 0 }
        );
    }
}
