//! [`History`]: the last messages of a channel (a chat room, a topic), each
//! encoded once when it is kept, replayed to a newcomer at the pace of its
//! socket.
//!
//! A message is kept as a [`SharedFrame`]: its frame is made once, when it
//! is pushed, and every newcomer's queue points at that one buffer; with
//! permessage-deflate its compressed variant is made once too, the first
//! time a connection that takes it is sent it, and kept beside it. Replay
//! goes through [`Context::send_paced`], so it never queues more than the
//! backlog limit plus one message for a connection, whatever the history
//! holds. Each message has an offset, counted from the first one ever
//! pushed, so a caller can ask for what came after one it knows.

use std::collections::VecDeque;

use crate::proto::connection::{Message, SendError, SharedFrame};

use super::handler::Context;
use super::slab::ConnId;

/// The last `capacity` messages pushed, oldest first.
#[derive(Debug, Clone, Default)]
pub struct History {
    frames: VecDeque<SharedFrame>,
    capacity: usize,
    /// The offset the next message pushed gets: how many were ever pushed.
    next: u64,
}

impl History {
    /// An empty history that keeps at most `capacity` messages (0: none).
    pub fn new(capacity: usize) -> History {
        History {
            frames: VecDeque::new(),
            capacity,
            next: 0,
        }
    }

    /// Keeps `msg`, encoded once, forgetting the oldest message if the
    /// history is full. Returns its offset.
    pub fn push(&mut self, msg: Message<'_>) -> u64 {
        self.push_frame(SharedFrame::new(msg))
    }

    /// Keeps a frame already encoded (e.g. the one just broadcast).
    pub fn push_frame(&mut self, frame: SharedFrame) -> u64 {
        let offset = self.next;
        self.next += 1;
        if self.capacity == 0 {
            return offset;
        }
        if self.frames.len() >= self.capacity {
            self.frames.pop_front();
        }
        self.frames.push_back(frame);
        offset
    }

    /// How many messages it holds.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The most messages it keeps.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The offset of the oldest message held (equal to
    /// [`History::next_offset`] when empty).
    pub fn first_offset(&self) -> u64 {
        self.next - self.frames.len() as u64
    }

    /// The offset the next message pushed will get.
    pub fn next_offset(&self) -> u64 {
        self.next
    }

    /// The messages held, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &SharedFrame> {
        self.frames.iter()
    }

    /// The messages held from offset `offset` on, oldest first (all of them
    /// if `offset` is older than the oldest held).
    pub fn since(&self, offset: u64) -> impl Iterator<Item = &SharedFrame> {
        let skip = offset.saturating_sub(self.first_offset());
        self.frames
            .iter()
            .skip(usize::try_from(skip).unwrap_or(usize::MAX))
    }

    /// Bytes of encoded frames held (uncompressed; a compressed variant,
    /// once made, adds at most as much again).
    pub fn frame_bytes(&self) -> usize {
        self.frames.iter().map(SharedFrame::len).sum()
    }

    /// Sends every message held to `conn`, oldest first, paced by its
    /// socket ([`Context::send_paced`]). Returns how many were handed over.
    pub fn replay(&self, ctx: &mut Context<'_>, conn: ConnId) -> Result<usize, SendError> {
        for frame in &self.frames {
            ctx.send_paced(conn, frame)?;
        }
        Ok(self.frames.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payloads<'a>(frames: impl Iterator<Item = &'a SharedFrame>) -> Vec<usize> {
        frames.map(SharedFrame::len).collect()
    }

    #[test]
    fn keeps_the_last_messages_with_their_offsets() {
        let mut h = History::new(3);
        assert_eq!((h.first_offset(), h.next_offset()), (0, 0));
        for n in 0..5u8 {
            let text = "x".repeat(usize::from(n));
            assert_eq!(h.push(Message::Text(&text)), u64::from(n));
        }
        // Frames of 2 + 2, 2 + 3 and 2 + 4 bytes: messages 2, 3 and 4.
        assert_eq!(payloads(h.iter()), [4, 5, 6]);
        assert_eq!((h.first_offset(), h.next_offset(), h.len()), (2, 5, 3));
        assert_eq!(payloads(h.since(4)), [6]);
        assert_eq!(payloads(h.since(0)), [4, 5, 6]);
        assert_eq!(payloads(h.since(9)), Vec::<usize>::new());
        assert_eq!(h.frame_bytes(), 15);
    }

    #[test]
    fn a_history_of_nothing_keeps_nothing_but_counts() {
        let mut h = History::new(0);
        assert_eq!(h.push(Message::Binary(b"abc")), 0);
        assert_eq!(h.push(Message::Binary(b"abc")), 1);
        assert!(h.is_empty());
        assert_eq!(h.first_offset(), 2);
    }
}
