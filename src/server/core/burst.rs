//! The end of a burst of connections, for a program that gives memory back
//! to the system then (see [`crate::Server::set_memory_release`]).
//!
//! A burst leaves the allocator holding what its connections used: glibc
//! returns only the free top of its heap, and one block still in use above
//! the freed ones keeps all of them. Under churn with the uring driver,
//! RSS stepped up by about 2.4 MiB at random rounds and stayed there
//! (200,000 connections in rounds of 10,000: 7,024 KiB after round 10,
//! 9,540 after the last), every byte of it free (glibc's `malloc_trim`
//! gave it back). Which block lands on top depends on the order of a
//! pass's allocations, so the cure is the release, not a reordering.

use super::Core;

/// Bursts smaller than this are not worth a release.
pub(crate) const BURST_MIN: usize = 256;

impl Core {
    /// Called at the end of every pass: the release to call now, if a
    /// burst has just ended. A burst ends when the connections fall to a
    /// quarter of their peak since the last release (a peak of at least
    /// [`BURST_MIN`]); the fall from there counts from where it stopped, so
    /// a burst that ends in steps is released at each of them.
    pub(crate) fn burst_ended(&mut self) -> Option<fn()> {
        let release = self.release_memory?;
        let live = self.slots.len();
        if live > self.burst_peak {
            self.burst_peak = live;
        } else if self.burst_peak >= BURST_MIN && live <= self.burst_peak / 4 {
            self.burst_peak = live;
            return Some(release);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use super::super::test_support::open_many;
    use super::BURST_MIN;
    use crate::Config;

    static RELEASES: AtomicUsize = AtomicUsize::new(0);

    fn count_release() {
        RELEASES.fetch_add(1, Ordering::SeqCst);
    }

    /// The release is called once a burst of connections has closed, not
    /// while they are open (under either driver: `ROOKERY_IO`).
    #[test]
    fn memory_is_released_when_a_burst_of_connections_ends() {
        let (mut server, clients) = match open_many(Config::default(), BURST_MIN) {
            Ok(opened) => opened,
            Err(e) => {
                println!("SKIPPED: the driver asked for is not found ({e})");
                return;
            }
        };
        server.set_memory_release(count_release);
        let now = Instant::now();
        for _ in 0..5 {
            server
                .run_once_at(now, Some(Duration::from_millis(1)))
                .expect("pass");
        }
        assert_eq!(
            RELEASES.load(Ordering::SeqCst),
            0,
            "none while all are open"
        );
        drop(clients);
        for _ in 0..200 {
            server
                .run_once_at(now, Some(Duration::from_millis(10)))
                .expect("pass");
            if server.core.slots.is_empty() {
                break;
            }
        }
        assert_eq!(server.core.slots.len(), 0, "every connection closed");
        let releases = RELEASES.load(Ordering::SeqCst);
        assert!(releases >= 1, "released after the burst");
        // Once at a quarter of 256, once at a quarter of that at most: 64
        // and 16 are below the smallest burst.
        assert!(releases <= 2, "released {releases} times");
    }
}
