//! Paced output: frames a connection is handed only as its socket takes
//! what it was handed before.
//!
//! [`crate::Context::send_paced`] gives a connection a frame encoded once
//! for many (a room's history, say) without queueing it at once: while the
//! connection's backlog is under `max_backlog`, the frame goes to its
//! output queue; past that, the frame waits here, in the connection's
//! *feed*, as a pointer to its one encoding. The core moves frames from the
//! feed to the queue whenever it settles the connection and its backlog is
//! under the limit again (after a write, when the socket is writable). So a
//! connection never holds more than `max_backlog` plus one frame of paced
//! output, a reader that keeps reading gets all of it and is never closed
//! for it, and one that does not read holds pointers, not copies.
//!
//! While a feed is not empty, and until the queue is under the limit again,
//! everything else the connection is sent (broadcasts, publications,
//! [`crate::Context::send`], pings) is appended to it, behind the paced
//! frames, so the order of what the connection receives is the order it was
//! sent, and nothing meets the slow consumer's check in a queue that paced
//! frames filled. Those *live* bytes count against the backlog: a member
//! that does not read while live traffic reaches it is closed (1008) once
//! they pass `max_backlog`, as any slow consumer is. A close frame goes
//! straight to the queue, and the feed is dropped.
//!
//! Feeds live in a map keyed by the connection's slot index (a flag in the
//! slot says whether it has one), so a connection without one costs nothing.

use std::collections::VecDeque;
use std::rc::Rc;

use super::slab::ConnId;

/// One connection's frames waiting for its queue to drain.
#[derive(Debug)]
pub(crate) struct Feed {
    /// The connection (guards against a stale slot index).
    pub(crate) conn: ConnId,
    /// The frames, oldest first, each with whether it is live (counted
    /// against the backlog) or paced (not counted).
    frames: VecDeque<(Rc<[u8]>, bool)>,
    /// Bytes of the live frames waiting here.
    live: usize,
}

impl Feed {
    pub(crate) fn new(conn: ConnId) -> Feed {
        Feed {
            conn,
            frames: VecDeque::new(),
            live: 0,
        }
    }

    /// Appends a paced frame: held as a pointer, not counted as backlog.
    pub(crate) fn push_paced(&mut self, bytes: Rc<[u8]>) {
        self.frames.push_back((bytes, false));
    }

    /// Appends a live frame (or several, as one buffer), counted as
    /// backlog; returns the live bytes now waiting.
    pub(crate) fn push_live(&mut self, bytes: Rc<[u8]>) -> usize {
        self.live += bytes.len();
        self.frames.push_back((bytes, true));
        self.live
    }

    /// Takes the oldest frame.
    pub(crate) fn pop(&mut self) -> Option<Rc<[u8]>> {
        let (bytes, live) = self.frames.pop_front()?;
        if live {
            self.live -= bytes.len();
        }
        Some(bytes)
    }

    /// Whether no frame waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Bytes of live frames waiting (they count as backlog).
    pub(crate) fn live_bytes(&self) -> usize {
        self.live
    }

    /// How many frames wait.
    pub(crate) fn len(&self) -> usize {
        self.frames.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_out_in_order_and_only_live_ones_are_counted() {
        let mut feed = Feed::new(ConnId::from_u64(1 << 32));
        feed.push_paced(vec![1u8; 100].into());
        assert_eq!(feed.push_live(vec![2u8; 30].into()), 30);
        feed.push_paced(vec![3u8; 7].into());
        assert_eq!(feed.push_live(vec![4u8; 5].into()), 35);
        assert_eq!(feed.len(), 4);
        let order: Vec<u8> = std::iter::from_fn(|| feed.pop().map(|b| b[0])).collect();
        assert_eq!(order, [1, 2, 3, 4]);
        assert_eq!(feed.live_bytes(), 0);
        assert!(feed.is_empty());
    }
}
