//! A buffer that many output queues reference by range: the one encoding of
//! the broadcasts of a pass.
//!
//! A [`Block`] is filled only at its end, and a range below its end is
//! never written again, so a queue may hold `(block, range)` and hand out
//! `&[u8]` of it while the block keeps growing for the next broadcast.
//! Consecutive broadcasts land side by side, and a member that gets all of
//! them holds one range (`OutQueue::push_span` extends the last one): one
//! slice of its next write, however many broadcasts it covers. The block
//! is freed when the last queue that references it has written its range.
//!
//! A [`Live`] range is the growing end of one group's broadcasts in a block
//! (a topic's, within one pass of the loop): queues *attached* to it owe
//! their peer everything from where they attached to its current end, so a
//! publication that extends it reaches every attached member without
//! visiting one. A queue seals its attachment (turns it into an ordinary
//! range) before anything else is appended to it, which keeps its order,
//! and marks the range [`Live::is_detached`] so that the group's next
//! broadcast visits its members again.

use std::cell::Cell;
use std::ops::Range;

/// A fixed-size buffer filled at its end (see the module doc).
#[derive(Debug)]
pub struct Block {
    /// `Cell`s, so that bytes past `len` can be written through a shared
    /// block; those below `len` are only read.
    bytes: Box<[Cell<u8>]>,
    len: Cell<usize>,
}

impl Block {
    /// An empty block of `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Block {
        Block {
            bytes: std::iter::repeat_with(|| Cell::new(0)).take(capacity).collect(),
            len: Cell::new(0),
        }
    }

    /// Bytes it holds in all.
    pub fn capacity(&self) -> usize {
        self.bytes.len()
    }

    /// Bytes still free at its end.
    pub fn room(&self) -> usize {
        self.bytes.len() - self.len.get()
    }

    /// Appends the concatenation of `parts` if it fits, and returns where
    /// it is; `None` (nothing written) if it does not.
    pub fn append(&self, parts: &[&[u8]]) -> Option<Range<usize>> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total > self.room() {
            return None;
        }
        let start = self.len.get();
        let mut at = start;
        for part in parts {
            for (cell, &byte) in self.bytes[at..at + part.len()].iter().zip(part.iter()) {
                cell.set(byte);
            }
            at += part.len();
        }
        self.len.set(at);
        Some(start..at)
    }

    /// The bytes of `range` (cut to what was written).
    #[allow(unsafe_code)]
    pub fn get(&self, range: Range<usize>) -> &[u8] {
        let end = range.end.min(self.len.get());
        let start = range.start.min(end);
        let cells = &self.bytes[start..end];
        // SAFETY: `Cell<u8>` has the layout of `u8`, so the cells are
        // `end - start` initialised bytes. They lie below `len`, and `append`
        // writes only at `len` and past it, and `len` never decreases: no
        // cell of this range is written while the returned slice (borrowed
        // from `self`) lives.
        unsafe { std::slice::from_raw_parts(cells.as_ptr().cast::<u8>(), cells.len()) }
    }
}

/// The growing end of a group's broadcasts in a block (see the module doc).
#[derive(Debug)]
pub struct Live {
    block: std::rc::Rc<Block>,
    end: Cell<usize>,
    detached: Cell<bool>,
}

impl Live {
    /// A live range of `block` that ends at `end`.
    pub fn new(block: &std::rc::Rc<Block>, end: usize) -> Live {
        Live {
            block: std::rc::Rc::clone(block),
            end: Cell::new(end),
            detached: Cell::new(false),
        }
    }

    /// The block it is a range of.
    pub fn block(&self) -> &std::rc::Rc<Block> {
        &self.block
    }

    /// Where it ends now.
    pub fn end(&self) -> usize {
        self.end.get()
    }

    /// Extends it to `end`: every attached queue owes that much more.
    pub fn extend_to(&self, end: usize) {
        self.end.set(end.max(self.end.get()));
    }

    /// Whether a queue sealed its attachment since [`Live::reattached`]: its
    /// members must be visited again.
    pub fn is_detached(&self) -> bool {
        self.detached.get()
    }

    /// Marks that a queue sealed its attachment.
    pub fn detach(&self) {
        self.detached.set(true);
    }

    /// Marks that every member was visited again.
    pub fn reattached(&self) {
        self.detached.set(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_bytes_stay_put_while_more_are_appended() {
        let block = Block::with_capacity(16);
        let first = block.append(&[b"abc", b"de"]).unwrap();
        assert_eq!(first, 0..5);
        let held = block.get(first.clone());
        let second = block.append(&[b"fghij"]).unwrap();
        assert_eq!(second, 5..10);
        assert_eq!(held, b"abcde", "an earlier range is untouched");
        assert_eq!(block.get(second), b"fghij");
        assert_eq!(block.room(), 6);
        assert_eq!(block.append(&[b"0123456"]), None, "does not fit");
        assert_eq!(block.room(), 6, "nothing written");
        assert_eq!(block.get(0..100), b"abcdefghij", "cut to what was written");
    }
}
