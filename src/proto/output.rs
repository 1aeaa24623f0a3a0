//! A connection's outgoing bytes, as data.
//!
//! Everything a connection sends (its `101`, HTTP answers, data frames,
//! pongs, close frames, broadcasts) ends in one [`OutQueue`]. The queue
//! never writes: its owner asks for what is [`OutQueue::pending`] (slices
//! for one vectored write), hands them to its transport, and says what went
//! with [`OutQueue::consume`]. A large reply can follow the queue in that
//! same write without being copied in; only what the transport refuses of
//! it is queued ([`OutQueue::push_rest`]). A broadcast frame that must wait
//! is kept as a reference to its one shared encoding, so a slow member
//! costs a pointer, not a copy. An empty queue is one null pointer: nothing
//! stays allocated for an idle connection.

use std::collections::VecDeque;
use std::rc::Rc;

use super::block::{Block, Live};
use super::frame::{ServerHeader, MAX_SERVER_HEADER};

/// The most parts a transport write hands along after the queue (a frame
/// header, its payload, and one more): what [`OutQueue::push_rest`] takes.
pub const MAX_EXTRA: usize = 3;

/// Small owned chunks are merged up to this size to keep the write short.
const MERGE_LIMIT: usize = 16 * 1024;

/// A shared frame shorter than this is copied rather than referenced.
const SHARE_MIN: usize = 256;

#[derive(Debug)]
enum Chunk {
    Owned(Vec<u8>),
    /// `bytes[start..end]` of a buffer shared with other queues: a
    /// broadcast frame, a history entry.
    Shared {
        bytes: Rc<[u8]>,
        start: usize,
        end: usize,
    },
    /// `block[start..end]`: broadcasts encoded in a block shared with
    /// other queues (see `proto::block`).
    Span {
        block: Rc<Block>,
        start: usize,
        end: usize,
    },
}

impl Chunk {
    #[inline]
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Shared { bytes, start, end } => bytes.get(*start..*end).unwrap_or_default(),
            Chunk::Span { block, start, end } => block.get(*start..*end),
        }
    }
}

/// Queued output bytes, oldest first.
#[derive(Debug, Default)]
pub struct OutQueue {
    queue: Option<Box<Queue>>,
}

#[derive(Debug, Default)]
struct Queue {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already written.
    front_written: usize,
    queued: usize,
    /// The capacities of the blocks its spans keep alive (one per span).
    pinned: usize,
    /// An owned chunk already written, kept (emptied) for the next copy.
    spare: Vec<u8>,
    /// A live range the queue is attached to, and where it attached: owed
    /// after every chunk, sealed into one before anything else is queued.
    attached: Option<(Rc<Live>, usize)>,
}

/// Emptied queues kept for reuse, per thread (the loop's), at most this
/// many: a connection that replies to every read, or a member of a fan-out
/// written every pass, would otherwise allocate and free its queue and its
/// chunk list for every write. Idle connections keep nothing. The last
/// [`SPARE_WITH_BUFFER`] given back (the first to be taken again) keep their
/// spare buffer too; the cache holds at most
/// `SPARE_WITH_BUFFER × SPARE_BUFFER` plus about 270 bytes a queue (the
/// queue, its chunk list of four): at most about 530 KiB, once 1,024
/// connections or more have been written in one pass (most buffers are
/// 512 bytes, not 4 KiB).
const SPARE_QUEUES: usize = 1024;

/// How many cached queues keep their spare buffer: on the ring every reply
/// is queued, and a pass at 50,000 echoes a second writes dozens of
/// connections; with eight, the others allocated a buffer for each reply.
const SPARE_WITH_BUFFER: usize = 64;

/// The largest written buffer a queue keeps for its next copy.
const SPARE_BUFFER: usize = 4 * 1024;

/// The smallest buffer a copy starts, so that a few small replies merge
/// without reallocating.
const MIN_CHUNK: usize = 512;

thread_local! {
    // Boxes, not queues: a queue moves between an `OutQueue` (a box, so that
    // an empty one is a null pointer) and this cache without a copy.
    #[allow(clippy::vec_box)]
    static SPARE: std::cell::RefCell<Vec<Box<Queue>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A queue from the cache, or a new one.
fn acquire() -> Box<Queue> {
    SPARE
        .with(|spare| spare.borrow_mut().pop())
        .unwrap_or_default()
}

/// Gives an emptied queue back to the cache, or frees it.
fn release(queue: Box<Queue>) {
    debug_assert!(queue.chunks.is_empty());
    SPARE.with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < SPARE_QUEUES {
            // The top of the stack (the next to be taken) keeps its buffer:
            // the one that falls out of the top gives it up.
            if let Some(index) = spare.len().checked_sub(SPARE_WITH_BUFFER) {
                spare[index].spare = Vec::new();
            }
            spare.push(queue);
        }
    });
}

impl OutQueue {
    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.queue.as_ref().map_or(0, |q| q.queued)
    }

    /// Memory the queue keeps alive: its bytes, or the whole blocks its
    /// spans reference if that is more (a span of a few bytes keeps its
    /// block). What the backlog cap is checked against.
    pub fn held(&self) -> usize {
        self.queue.as_ref().map_or(0, |q| q.queued.max(q.pinned))
    }

    /// Whether nothing waits (an attachment is something).
    pub fn is_empty(&self) -> bool {
        self.queue.is_none()
    }

    /// Attaches the queue to `live` from `start`: it owes `live`'s bytes
    /// from there to wherever `live` ends when the queue is sealed. An
    /// earlier attachment is sealed first.
    pub fn attach(&mut self, live: &Rc<Live>, start: usize) {
        self.seal();
        let queue = self.queue.get_or_insert_with(acquire);
        queue.attached = Some((Rc::clone(live), start));
    }

    /// Whether the queue is attached to `live`.
    #[inline]
    pub fn is_attached_to(&self, live: &Rc<Live>) -> bool {
        matches!(self.queue.as_deref(), Some(Queue { attached: Some((l, _)), .. }) if Rc::ptr_eq(l, live))
    }

    /// Turns the attachment, if any, into a range queued after every chunk,
    /// and marks the live range detached (its group's next broadcast
    /// visits its members again). Every push does this first.
    #[inline]
    pub fn seal(&mut self) {
        if let Some(queue) = self.queue.as_deref_mut() {
            if let Some((live, start)) = queue.attached.take() {
                self.seal_now(&live, start);
            }
        }
    }

    #[inline(never)]
    fn seal_now(&mut self, live: &Live, start: usize) {
        live.detach();
        self.push_span_sealed(live.block(), start..live.end());
        if self.queue.as_ref().is_some_and(|q| q.chunks.is_empty()) {
            // Attached but owing nothing: nothing waits.
            if let Some(queue) = self.queue.take() {
                release(queue);
            }
        }
    }

    /// Queues a copy of `parts`, concatenated.
    pub fn push_copy(&mut self, parts: &[&[u8]]) {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        self.append(total, |buf| {
            for part in parts {
                buf.extend_from_slice(part);
            }
        });
    }

    /// Queues a copy of a frame, `header` then `payload`: what a reply is.
    pub fn push_frame(&mut self, header: &ServerHeader, payload: &[u8]) {
        let total = header.as_bytes().len() + payload.len();
        self.append(total, |buf| put_frame(buf, header, payload));
    }

    /// Has `write` append `total` bytes to the owned chunk at the back, if
    /// they fit under [`MERGE_LIMIT`], or to a new chunk.
    #[inline(always)]
    fn append(&mut self, total: usize, write: impl FnOnce(&mut Vec<u8>)) {
        if total == 0 {
            return;
        }
        self.seal();
        let queue = self.queue.get_or_insert_with(acquire);
        queue.queued += total;
        if let Some(Chunk::Owned(last)) = queue.chunks.back_mut() {
            if last.len() + total <= MERGE_LIMIT {
                write(last);
                return;
            }
        }
        let mut buf = std::mem::take(&mut queue.spare);
        buf.reserve(total.max(MIN_CHUNK));
        write(&mut buf);
        queue.chunks.push_back(Chunk::Owned(buf));
    }

    /// Queues the bytes of a shared buffer from `from` to its end (see
    /// [`OutQueue::push_shared_range`]).
    pub fn push_shared(&mut self, frame: &Rc<[u8]>, from: usize) {
        self.push_shared_range(frame, from..frame.len());
    }

    /// Queues `frame[range]` as a reference to the shared buffer: a range
    /// that continues the one queued last in the same buffer extends it, so
    /// consecutive parts of one buffer are one slice of the next write. A
    /// range shorter than [`SHARE_MIN`] is copied instead (merged into the
    /// owned chunk at the back), which keeps many small broadcasts one slice
    /// too. A range past the buffer's end is cut to it.
    pub fn push_shared_range(&mut self, frame: &Rc<[u8]>, range: std::ops::Range<usize>) {
        let end = range.end.min(frame.len());
        let start = range.start.min(end);
        let rest = end - start;
        if rest == 0 {
            return;
        }
        if rest < SHARE_MIN {
            self.push_copy(&[&frame[start..end]]);
            return;
        }
        self.seal();
        let queue = self.queue.get_or_insert_with(acquire);
        queue.queued += rest;
        if let Some(Chunk::Shared {
            bytes, end: last, ..
        }) = queue.chunks.back_mut()
        {
            if *last == start && Rc::ptr_eq(bytes, frame) {
                *last = end;
                return;
            }
        }
        queue.chunks.push_back(Chunk::Shared {
            bytes: Rc::clone(frame),
            start,
            end,
        });
    }

    /// Queues `block[range]` as a reference to the block: a range that
    /// continues the one queued last in the same block extends it, so the
    /// broadcasts of a pass, side by side in their block, are one slice of
    /// the next write however many they are.
    pub fn push_span(&mut self, block: &Rc<Block>, range: std::ops::Range<usize>) {
        self.seal();
        self.push_span_sealed(block, range);
    }

    /// [`OutQueue::push_span`] on a queue that is not attached.
    fn push_span_sealed(&mut self, block: &Rc<Block>, range: std::ops::Range<usize>) {
        let len = range.end.saturating_sub(range.start);
        if len == 0 {
            return;
        }
        let queue = self.queue.get_or_insert_with(acquire);
        queue.queued += len;
        if let Some(Chunk::Span {
            block: last_block,
            end,
            ..
        }) = queue.chunks.back_mut()
        {
            if *end == range.start && Rc::ptr_eq(last_block, block) {
                *end = range.end;
                return;
            }
        }
        queue.pinned += block.capacity();
        queue.chunks.push_back(Chunk::Span {
            block: Rc::clone(block),
            start: range.start,
            end: range.end,
        });
    }

    /// Extends the span at the back by `block[range]` if that continues it,
    /// and says whether it did: [`OutQueue::push_span`]'s common case, by
    /// itself, for a caller that has more to check on the other path.
    #[inline]
    pub fn extend_span(&mut self, block: &Rc<Block>, range: std::ops::Range<usize>) -> bool {
        let Some(queue) = self.queue.as_deref_mut() else {
            return false;
        };
        if queue.attached.is_some() {
            // Owed after the span at the back: extending it would reorder.
            return false;
        }
        match queue.chunks.back_mut() {
            Some(Chunk::Span {
                block: last_block,
                end,
                ..
            }) if *end == range.start && Rc::ptr_eq(last_block, block) => {
                queue.queued += range.end.saturating_sub(range.start);
                *end = range.end.max(*end);
                true
            }
            _ => false,
        }
    }

    /// Copies into owned chunks the spans that hold a small part of their
    /// block: for a queue that waits for its peer, so that what it holds
    /// is what it counts as backlog, not whole blocks kept for a few bytes
    /// of each. Spans of at least a quarter of their block stay referenced.
    pub fn unpin(&mut self) {
        let Some(queue) = self.queue.as_deref_mut() else {
            return;
        };
        for (index, chunk) in queue.chunks.iter_mut().enumerate() {
            if let Chunk::Span { block, start, end } = chunk {
                if (*end - *start) * 4 < block.capacity() {
                    let skip = if index == 0 { queue.front_written } else { 0 };
                    let bytes = block.get(*start + skip..*end).to_vec();
                    if index == 0 {
                        queue.front_written = 0;
                    }
                    queue.pinned -= block.capacity();
                    *chunk = Chunk::Owned(bytes);
                }
            }
        }
    }

    /// What is queued, oldest first, as slices for one vectored write. The
    /// caller hands them to its transport and reports what it took with
    /// [`OutQueue::consume`].
    ///
    /// How long the slices stay where they are, for a transport that hands
    /// them to the kernel and learns later what it took (a completion
    /// ring): the bytes of a shared chunk (an `Rc<[u8]>` or a broadcast
    /// block) are never moved or freed while the queue references them, so
    /// its slices stay valid until the queue consumes them, whatever else is
    /// appended meanwhile (an append may extend a shared range, never move
    /// its bytes). [`OutQueue::unpin`], which the connection calls when a
    /// write leaves its peer behind, turns small spans into owned copies:
    /// it ends the validity of their slices, as a write's end does. An owned chunk is a
    /// `Vec` that appends may grow, and growing may move it: its slices
    /// stay valid only while nothing is appended, until the next
    /// [`OutQueue::consume`]. [`OutQueue::push_rest`] after a write appends
    /// like any push.
    pub fn pending(&self) -> PendingOutput<'_> {
        match self.queue.as_deref() {
            Some(queue) => PendingOutput {
                chunks: queue.chunks.iter(),
                skip: queue.front_written,
            },
            None => PendingOutput {
                chunks: Default::default(),
                skip: 0,
            },
        }
    }

    /// Queues what the transport left of `parts` (bytes handed to it after
    /// the queue's, in the same write): the bytes past the first `written`. With `shared` set, a whole-frame remainder
    /// is queued as a reference to that one buffer (made on first need from
    /// `parts`), so every member that must wait for a broadcast shares it.
    pub fn push_rest(
        &mut self,
        parts: &[&[u8]],
        written: usize,
        shared: Option<&mut Option<Rc<[u8]>>>,
    ) {
        if written >= parts.iter().map(|part| part.len()).sum() {
            // All taken (the common case): nothing to queue.
            return;
        }
        match shared {
            Some(slot) if written == 0 => {
                let frame = slot.get_or_insert_with(|| parts.concat().into());
                self.push_shared(frame, 0);
            }
            _ => self.push_copy(&skip(parts, written)),
        }
    }

    /// Forgets the first `written` queued bytes: the transport took them.
    pub fn consume(&mut self, mut written: usize) {
        let Some(queue) = self.queue.as_mut() else {
            return;
        };
        queue.queued -= written;
        while written > 0 {
            let Some(front) = queue.chunks.front() else {
                break;
            };
            let left = front.bytes().len() - queue.front_written;
            if written < left {
                queue.front_written += written;
                return;
            }
            written -= left;
            queue.front_written = 0;
            match queue.chunks.pop_front() {
                Some(Chunk::Owned(mut buf))
                    if buf.capacity() <= SPARE_BUFFER && queue.spare.capacity() == 0 =>
                {
                    buf.clear();
                    queue.spare = buf;
                }
                Some(Chunk::Span { block, .. }) => queue.pinned -= block.capacity(),
                _ => {}
            }
        }
        if queue.chunks.is_empty() && queue.attached.is_none() {
            // An idle connection keeps nothing: the queue goes back to the
            // loop's small cache, or is freed.
            if let Some(queue) = self.queue.take() {
                release(queue);
            }
        }
    }
}

impl OutQueue {
    /// Moves whole chunks from the front of the queue into `into` while it
    /// holds less than `max` bytes and fewer than `max_chunks` chunks: the
    /// transport took them, as [`OutQueue::consume`] says of written bytes,
    /// but their memory goes along instead of being copied (see
    /// [`TakenOutput`]). Returns how many bytes moved.
    pub fn take_front(&mut self, max: usize, max_chunks: usize, into: &mut TakenOutput) -> usize {
        let Some(queue) = self.queue.as_deref_mut() else {
            return 0;
        };
        let mut taken = 0;
        while into.len < max && into.chunks.len() - into.first < max_chunks {
            let Some(mut chunk) = queue.chunks.pop_front() else {
                break;
            };
            let skip = std::mem::take(&mut queue.front_written);
            match &mut chunk {
                Chunk::Owned(v) => drop(v.drain(..skip.min(v.len()))),
                Chunk::Shared { start, .. } => *start += skip,
                Chunk::Span { block, start, .. } => {
                    *start += skip;
                    queue.pinned -= block.capacity();
                }
            }
            let n = chunk.bytes().len();
            queue.queued -= n;
            taken += n;
            into.len += n;
            into.chunks.push(chunk);
        }
        if queue.chunks.is_empty() && queue.attached.is_none() {
            if let Some(queue) = self.queue.take() {
                release(queue);
            }
        }
        taken
    }
}

/// Output moved out of a queue (`OutQueue::take_front`) for a transport
/// that hands the kernel the bytes and learns later what it took (a
/// completion ring). Its bytes stay where they are, unchanged, for as long
/// as it lives, whatever the queue does meanwhile: an owned chunk's buffer
/// moved with it (moving a `Vec` does not move its heap memory, and nothing
/// appends to it here), a shared buffer or block is reference-counted and
/// never written below its end.
#[derive(Debug, Default)]
pub struct TakenOutput {
    chunks: Vec<Chunk>,
    /// Chunks at the front already sent whole.
    first: usize,
    /// Bytes of the first chunk left already sent.
    skip: usize,
    len: usize,
}

impl TakenOutput {
    /// Bytes not yet sent.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is left to send.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes not yet sent, as slices, oldest first.
    pub fn slices(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let skip = self.skip;
        self.chunks[self.first..]
            .iter()
            .enumerate()
            .map(move |(i, chunk)| &chunk.bytes()[if i == 0 { skip } else { 0 }..])
            .filter(|bytes| !bytes.is_empty())
    }

    /// Forgets the first `n` bytes not yet sent (a send took them).
    pub fn advance(&mut self, mut n: usize) {
        n = n.min(self.len);
        self.len -= n;
        while n > 0 {
            let Some(chunk) = self.chunks.get(self.first) else {
                return;
            };
            let left = chunk.bytes().len() - self.skip;
            if n < left {
                self.skip += n;
                return;
            }
            n -= left;
            self.skip = 0;
            self.first += 1;
        }
    }

    /// Holds the bytes of `buf` (a copy the caller made) after what it
    /// holds.
    pub fn push_copy(&mut self, buf: Vec<u8>) {
        self.len += buf.len();
        self.chunks.push(Chunk::Owned(buf));
    }

    /// Empties it, keeping its list's memory for the next output, and
    /// returns the owned buffer it held last, emptied, for a copy.
    pub fn clear(&mut self) -> Option<Vec<u8>> {
        let last = match self.chunks.pop() {
            Some(Chunk::Owned(mut buf)) => {
                buf.clear();
                Some(buf)
            }
            _ => None,
        };
        self.chunks.clear();
        self.first = 0;
        self.skip = 0;
        self.len = 0;
        last
    }
}

/// Appends a frame, `header` then `payload`, to `buf` with one capacity
/// check. The header is copied as its fixed ten bytes (a move the compiler
/// inlines, where a slice of two to ten bytes is a `memcpy` call) and the
/// length then set past its real end. Safe `Vec` calls checked the capacity
/// again for each part: ~55 instructions for a 32-byte reply where this
/// takes ~20 (callgrind), on the path of every message sent.
#[inline(always)]
#[allow(unsafe_code)]
fn put_frame(buf: &mut Vec<u8>, header: &ServerHeader, payload: &[u8]) {
    buf.reserve(MAX_SERVER_HEADER + payload.len());
    let at = buf.len();
    let header_len = header.as_bytes().len();
    debug_assert!(header_len <= MAX_SERVER_HEADER);
    // SAFETY: `reserve` left room for at least `MAX_SERVER_HEADER +
    // payload.len()` bytes past `at`, the length. The ten padded header bytes
    // go to `at..at + 10` and the payload to `at + header_len..`, which ends
    // at most at `at + 10 + payload.len()` as `header_len` is at most ten:
    // both writes stay inside the allocation. The sources are a local
    // header and a borrowed slice, neither of which can be `buf`'s spare
    // capacity (it is only reachable through `buf`, borrowed mutably here).
    // The new length covers the header's real bytes and the payload, all
    // written; the padding past the header is overwritten by the payload or
    // left past the length.
    unsafe {
        let end = buf.as_mut_ptr().add(at);
        std::ptr::copy_nonoverlapping(header.padded().as_ptr(), end, MAX_SERVER_HEADER);
        std::ptr::copy_nonoverlapping(payload.as_ptr(), end.add(header_len), payload.len());
        buf.set_len(at + header_len + payload.len());
    }
}

/// Skips the first `n` bytes of the concatenation of `parts` (at most
/// [`MAX_EXTRA`]), returning what remains.
fn skip<'a>(parts: &[&'a [u8]], mut n: usize) -> [&'a [u8]; MAX_EXTRA] {
    let mut out: [&[u8]; MAX_EXTRA] = [&[]; MAX_EXTRA];
    for (slot, part) in out.iter_mut().zip(parts) {
        let skipped = n.min(part.len());
        *slot = &part[skipped..];
        n -= skipped;
    }
    out
}

/// The queued bytes as slices, oldest first (what `Connection::pending_output`
/// hands out; each `next` gives the next slice).
#[derive(Debug, Clone)]
pub struct PendingOutput<'a> {
    chunks: std::collections::vec_deque::Iter<'a, Chunk>,
    /// Bytes of the next chunk already written (the front one only).
    skip: usize,
}

impl<'a> Iterator for PendingOutput<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        let bytes = &self.chunks.next()?.bytes()[self.skip..];
        self.skip = 0;
        Some(bytes)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.chunks.size_hint()
    }
}

impl ExactSizeIterator for PendingOutput<'_> {}

/// Takes the pending bytes of `q` into `got` as a transport with `room`
/// bytes would: for tests of the queue and of the connection.
#[cfg(test)]
pub(crate) fn take_into(q: &mut OutQueue, got: &mut Vec<u8>, room: usize) -> usize {
    let mut n = 0;
    for bytes in q.pending() {
        let take = bytes.len().min(room - n);
        got.extend_from_slice(&bytes[..take]);
        n += take;
    }
    q.consume(n);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_bytes_come_out_in_order_across_partial_writes() {
        let mut q = OutQueue::default();
        let shared: Rc<[u8]> = vec![9u8; 1000].into();
        q.push_copy(&[b"ab", b"cd"]);
        q.push_shared(&shared, 0);
        q.push_copy(&[b"ef"]);
        q.push_shared(&shared, 990);
        assert_eq!(q.len(), 4 + 1000 + 2 + 10);
        let mut got = Vec::new();
        assert_eq!(take_into(&mut q, &mut got, 3), 3);
        assert_eq!(q.len(), 1013);
        for _ in 0..20 {
            take_into(&mut q, &mut got, 97);
            if q.is_empty() {
                break;
            }
        }
        assert!(q.is_empty());
        let mut want = b"abcd".to_vec();
        want.extend_from_slice(&[9; 1000]);
        want.extend_from_slice(b"ef");
        want.extend_from_slice(&[9; 10]);
        assert_eq!(got, want);
    }

    #[test]
    fn taken_output_stays_put_while_the_queue_goes_on() {
        let mut q = OutQueue::default();
        let shared: Rc<[u8]> = vec![7u8; 300].into();
        q.push_copy(&[&[1u8; 20_000]]);
        q.push_shared(&shared, 0);
        q.push_copy(&[b"tail"]);
        q.consume(5);
        let mut taken = TakenOutput::default();
        // Whole chunks, up to the byte limit (the first chunk goes past it).
        assert_eq!(q.take_front(10, 8, &mut taken), 19_995);
        assert_eq!(q.len(), 304);
        assert_eq!(q.take_front(usize::MAX, 2, &mut taken), 300, "two chunks at most");
        assert_eq!(taken.len(), 20_295);
        let before: Vec<*const u8> = taken.slices().map(<[u8]>::as_ptr).collect();
        // The queue takes more, is emptied, takes more again: what was
        // taken does not move or change.
        q.push_copy(&[&[2u8; 9000]]);
        assert_eq!(q.take_front(usize::MAX, 8, &mut TakenOutput::default()), 9004);
        assert!(q.is_empty());
        q.push_copy(&[b"later"]);
        let after: Vec<*const u8> = taken.slices().map(<[u8]>::as_ptr).collect();
        assert_eq!(before, after);
        // A short send: the rest, from where it stopped.
        taken.advance(19_990);
        let rest: Vec<u8> = taken.slices().flatten().copied().collect();
        assert_eq!(rest.len(), 305);
        assert_eq!(&rest[..5], &[1u8; 5]);
        assert!(rest[5..].iter().all(|b| *b == 7));
        taken.advance(305);
        assert!(taken.is_empty() && taken.slices().next().is_none());
        // Emptied for the next, with the last owned buffer for a copy.
        assert!(taken.clear().is_none(), "its last chunk was shared");
        taken.push_copy(b"abc".to_vec());
        assert_eq!(taken.len(), 3);
        assert_eq!(taken.clear().map(|v| v.capacity() >= 3 && v.is_empty()), Some(true));
        assert!(taken.is_empty() && taken.slices().next().is_none());
    }

    #[test]
    fn queued_frames_are_their_headers_and_payloads_exactly() {
        use crate::proto::frame::OpCode;
        let mut q = OutQueue::default();
        let mut want = Vec::new();
        // Short, 16-bit and 64-bit lengths, merged into one chunk and then,
        // past the merge limit, into new ones.
        for len in [0, 5, 125, 126, 300, 70_000, 3] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let header = ServerHeader::new(true, OpCode::Binary, len);
            q.push_frame(&header, &payload);
            want.extend_from_slice(header.as_bytes());
            want.extend_from_slice(&payload);
        }
        assert_eq!(q.len(), want.len());
        let mut got = Vec::new();
        take_into(&mut q, &mut got, usize::MAX);
        assert!(q.is_empty());
        assert_eq!(got, want);
    }

    #[test]
    fn only_the_refused_rest_of_extra_bytes_is_kept() {
        let mut q = OutQueue::default();
        let parts: [&[u8]; 2] = [b"head ", b"payload"];
        q.push_rest(&parts, parts.concat().len(), None);
        assert!(q.is_empty(), "all taken: nothing queued");
        q.push_rest(&parts, 3, None);
        assert_eq!(q.len(), 9);
        let mut got = Vec::new();
        take_into(&mut q, &mut got, 100);
        assert_eq!(got, b"d payload");
        assert!(q.is_empty());
    }

    #[test]
    fn pending_output_starts_past_what_was_taken_and_ends_empty() {
        let mut q = OutQueue::default();
        assert_eq!(q.pending().len(), 0);
        let shared: Rc<[u8]> = vec![5u8; 1000].into();
        q.push_copy(&[b"0123456789"]);
        q.push_shared(&shared, 0);
        q.consume(4);
        let slices: Vec<&[u8]> = q.pending().collect();
        assert_eq!(slices.len(), 2);
        assert_eq!(slices[0], b"456789");
        assert_eq!(slices[1].len(), 1000);
        q.consume(1006);
        assert!(q.is_empty());
        assert_eq!(q.pending().len(), 0);
    }

    #[test]
    fn a_refused_broadcast_is_queued_as_one_shared_buffer() {
        let batch = vec![7u8; 4096];
        let mut shared = None;
        let mut queues: Vec<OutQueue> = (0..3).map(|_| OutQueue::default()).collect();
        for q in &mut queues {
            q.push_rest(&[&batch], 0, Some(&mut shared));
            assert_eq!(q.len(), 4096);
        }
        // One allocation for the three members: the Rc counts them.
        let rc = shared.unwrap();
        assert_eq!(Rc::strong_count(&rc), 4);
    }

    #[test]
    fn consecutive_ranges_of_one_shared_buffer_merge_into_one_slice() {
        let mut q = OutQueue::default();
        let a: Rc<[u8]> = (0..2000).map(|i| i as u8).collect::<Vec<u8>>().into();
        let b: Rc<[u8]> = vec![7u8; 600].into();
        // The tail of `a` from 300, then its tail from 1000 again: the
        // second does not continue the first (it ends at 2000), so two.
        q.push_shared(&a, 300);
        assert_eq!(q.pending().len(), 1);
        q.push_shared(&b, 0);
        q.push_shared(&b, 600);
        assert_eq!(q.pending().len(), 2, "an empty tail adds nothing");
        q.push_shared(&a, 1000);
        assert_eq!(q.pending().len(), 3, "another buffer between: no merge");
        let slices: Vec<&[u8]> = q.pending().collect();
        assert_eq!(slices[0], &a[300..]);
        assert_eq!(slices[2], &a[1000..]);
        assert_eq!(q.len(), 1700 + 600 + 1000);
    }

    #[test]
    fn a_range_that_continues_the_last_one_extends_it() {
        // A buffer queued in two parts, back to back (its head, then from
        // where the head ended): one slice, one reference.
        let frame: Rc<[u8]> = (0..1000).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into();
        let mut q = OutQueue::default();
        q.push_shared_range(&frame, 0..400);
        q.push_shared(&frame, 400);
        assert_eq!(q.pending().len(), 1, "merged into one range");
        assert_eq!(Rc::strong_count(&frame), 2, "one reference for both");
        assert_eq!(q.len(), 1000);
        let mut got = Vec::new();
        take_into(&mut q, &mut got, 650);
        take_into(&mut q, &mut got, 650);
        assert_eq!(got, &frame[..]);
        assert!(q.is_empty());
        assert_eq!(Rc::strong_count(&frame), 1, "released once written");
    }

    #[test]
    fn small_shared_tails_are_copied_and_merge_with_owned_bytes() {
        let mut q = OutQueue::default();
        let small: Rc<[u8]> = vec![1u8; 40].into();
        for _ in 0..50 {
            q.push_shared(&small, 0);
        }
        assert_eq!(q.pending().len(), 1, "fifty small frames, one slice");
        assert_eq!(Rc::strong_count(&small), 1, "copied, not referenced");
        assert_eq!(q.len(), 2000);
    }

    #[test]
    fn consecutive_spans_of_one_block_are_one_slice() {
        let block = Rc::new(Block::with_capacity(1024));
        let other = Rc::new(Block::with_capacity(1024));
        let mut q = OutQueue::default();
        // Three broadcasts side by side: one range, one reference.
        for text in [b"one", b"two", b"six"] {
            let range = block.append(&[text]).unwrap();
            q.push_span(&block, range);
        }
        assert_eq!(q.pending().len(), 1);
        assert_eq!(Rc::strong_count(&block), 2);
        // One this queue did not get (another topic's) breaks the run.
        block.append(&[b"not ours"]).unwrap();
        let range = block.append(&[b"ten"]).unwrap();
        q.push_span(&block, range);
        let range = other.append(&[b"!"]).unwrap();
        q.push_span(&other, range);
        let slices: Vec<&[u8]> = q.pending().collect();
        assert_eq!(slices, [&b"onetwosix"[..], b"ten", b"!"]);
        assert_eq!(q.len(), 13);
        let mut got = Vec::new();
        take_into(&mut q, &mut got, 4);
        take_into(&mut q, &mut got, 100);
        assert_eq!(got, b"onetwosixten!");
        assert_eq!(Rc::strong_count(&block), 1, "released once written");
    }

    #[test]
    fn an_attached_queue_owes_the_live_range_and_seals_it_before_anything_else() {
        let block = Rc::new(Block::with_capacity(1024));
        block.append(&[b"before"]).unwrap();
        let first = block.append(&[b"one"]).unwrap();
        let live = Rc::new(Live::new(&block, first.end));
        let mut q = OutQueue::default();
        q.push_copy(&[b"<"]);
        q.attach(&live, first.start);
        assert!(q.is_attached_to(&live));
        // Publications that continue the range reach it without a push.
        let second = block.append(&[b"two"]).unwrap();
        live.extend_to(second.end);
        assert!(!live.is_detached());
        // What is queued next comes after what the range owes: sealed.
        q.push_copy(&[b">"]);
        assert!(!q.is_attached_to(&live));
        assert!(live.is_detached(), "its topic must visit its members again");
        let third = block.append(&[b"six"]).unwrap();
        live.extend_to(third.end);
        let slices: Vec<&[u8]> = q.pending().collect();
        assert_eq!(slices, [&b"<"[..], b"onetwo", b">"]);
        // A range that owes nothing leaves nothing queued when sealed.
        let mut idle = OutQueue::default();
        idle.attach(&live, third.end);
        idle.seal();
        assert!(idle.is_empty());
        // Extending the last span would overtake the attachment: refused.
        let mut q = OutQueue::default();
        q.push_span(&block, first.clone());
        q.attach(&live, second.start);
        assert!(!q.extend_span(&block, second.clone()));
    }

    #[test]
    fn a_queue_left_waiting_copies_small_spans_and_keeps_large_ones() {
        let block = Rc::new(Block::with_capacity(1000));
        let mut q = OutQueue::default();
        let small = block.append(&[&[1u8; 100]]).unwrap();
        q.push_span(&block, small);
        q.push_copy(&[b"direct"]);
        let large = block.append(&[&[2u8; 600]]).unwrap();
        q.push_span(&block, large);
        // Each span keeps the whole block alive: that is what it holds.
        assert_eq!(q.held(), 2000);
        // Part of the first span went before the peer stopped reading.
        let mut got = Vec::new();
        take_into(&mut q, &mut got, 30);
        q.unpin();
        // The large span keeps the block; the small one is a copy now.
        assert_eq!(Rc::strong_count(&block), 2);
        assert_eq!(q.len(), 70 + 6 + 600);
        assert_eq!(q.held(), 1000);
        take_into(&mut q, &mut got, usize::MAX);
        let mut want = vec![1u8; 100];
        want.extend_from_slice(b"direct");
        want.extend_from_slice(&[2u8; 600]);
        assert_eq!(got, want);
        assert_eq!(q.held(), 0);
    }

    #[test]
    fn the_queue_cache_keeps_buffers_only_for_the_next_to_be_taken() {
        // Each test runs on a thread of its own: its cache starts empty.
        let total = SPARE_WITH_BUFFER + 12;
        for _ in 0..total {
            let mut queue = Box::<Queue>::default();
            queue.spare = Vec::with_capacity(64);
            release(queue);
        }
        SPARE.with(|spare| {
            let spare = spare.borrow();
            assert_eq!(spare.len(), total);
            let with: Vec<bool> = spare.iter().map(|q| q.spare.capacity() > 0).collect();
            assert!(with[..12].iter().all(|&b| !b), "{with:?}");
            assert!(with[12..].iter().all(|&b| b), "{with:?}");
        });
        assert!(acquire().spare.capacity() > 0, "the top one has its buffer");
    }

    #[test]
    fn skip_returns_the_unwritten_rest() {
        let parts: [&[u8]; 2] = [b"head", b"payload"];
        let rest = |n| skip(&parts, n).concat();
        assert_eq!(rest(0), b"headpayload");
        assert_eq!(rest(2), b"adpayload");
        assert_eq!(rest(4), b"payload");
        assert_eq!(rest(6), b"yload");
        assert_eq!(rest(11), b"");
        let three: [&[u8]; 3] = [b"ab", b"", b"cd"];
        assert_eq!(skip(&three, 1).concat(), b"bcd");
        assert_eq!(skip(&three, 3).concat(), b"d");
    }
}
