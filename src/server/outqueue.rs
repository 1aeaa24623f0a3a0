//! What a connection's socket has not yet accepted.
//!
//! Frames are written straight to the socket; only the part the socket
//! refuses is queued here. A broadcast frame is queued as a reference to the
//! one shared encoding, so a slow member costs a pointer, not a copy.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::rc::Rc;

/// Most slices handed to one `writev`.
const MAX_IOVECS: usize = 32;

/// Small owned chunks are merged up to this size to keep `writev` short.
const MERGE_LIMIT: usize = 16 * 1024;

#[derive(Debug)]
enum Chunk {
    Owned(Vec<u8>),
    Shared(Rc<[u8]>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Shared(s) => s,
        }
    }
}

/// Queued output bytes, oldest first.
#[derive(Debug, Default)]
pub struct OutQueue {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already written.
    front_written: usize,
    queued: usize,
}

impl OutQueue {
    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.queued
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Queues a copy of `parts`, concatenated.
    pub fn push_copy(&mut self, parts: &[&[u8]]) {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total == 0 {
            return;
        }
        self.queued += total;
        if let Some(Chunk::Owned(last)) = self.chunks.back_mut() {
            if last.len() + total <= MERGE_LIMIT {
                for part in parts {
                    last.extend_from_slice(part);
                }
                return;
            }
        }
        let mut owned = Vec::with_capacity(total);
        for part in parts {
            owned.extend_from_slice(part);
        }
        self.chunks.push_back(Chunk::Owned(owned));
    }

    /// Queues the tail of a shared frame starting at `from`.
    pub fn push_shared(&mut self, frame: &Rc<[u8]>, from: usize) {
        let rest = frame.len().saturating_sub(from);
        if rest == 0 {
            return;
        }
        if from > 0 || rest < 256 {
            // A partial frame or a tiny one: copying is cheaper than tracking it.
            self.push_copy(&[&frame[from..]]);
        } else {
            self.queued += rest;
            self.chunks.push_back(Chunk::Shared(Rc::clone(frame)));
        }
    }

    /// Writes as much as the socket takes. Returns `Ok(true)` when the queue
    /// emptied, `Ok(false)` when the socket is full.
    pub fn flush(&mut self, sink: &mut impl Write) -> io::Result<bool> {
        while !self.chunks.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut n = 0;
            for (i, chunk) in self.chunks.iter().take(MAX_IOVECS).enumerate() {
                let bytes = chunk.bytes();
                slices[i] = IoSlice::new(if i == 0 {
                    &bytes[self.front_written..]
                } else {
                    bytes
                });
                n += 1;
            }
            let written = match sink.write_vectored(&slices[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => written,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.consume(written);
        }
        Ok(true)
    }

    fn consume(&mut self, mut written: usize) {
        self.queued -= written;
        while written > 0 {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let left = front.bytes().len() - self.front_written;
            if written < left {
                self.front_written += written;
                return;
            }
            written -= left;
            self.front_written = 0;
            self.chunks.pop_front();
        }
        if self.chunks.is_empty() {
            // Free the ring's storage: an idle connection keeps nothing.
            self.chunks = VecDeque::new();
        }
    }
}

/// Writes `parts` with one `writev`, looping only on `EINTR`. Returns how many
/// bytes the socket took (0 when it would block).
pub fn write_parts(sink: &mut impl Write, parts: &[&[u8]]) -> io::Result<usize> {
    let slices: [IoSlice<'_>; 2] = [
        IoSlice::new(parts.first().copied().unwrap_or_default()),
        IoSlice::new(parts.get(1).copied().unwrap_or_default()),
    ];
    let count = parts.len().min(2);
    loop {
        return match sink.write_vectored(&slices[..count]) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(e),
        };
    }
}

/// Skips the first `n` bytes of the concatenation of `parts`, returning what
/// remains as (at most two) slices.
pub fn skip<'a>(parts: &[&'a [u8]], mut n: usize) -> [&'a [u8]; 2] {
    let mut out: [&[u8]; 2] = [&[], &[]];
    let mut k = 0;
    for part in parts {
        if n >= part.len() {
            n -= part.len();
            continue;
        }
        if k < 2 {
            out[k] = &part[n..];
            k += 1;
        }
        n = 0;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that accepts at most `room` bytes, then blocks.
    struct Throttled {
        room: usize,
        got: Vec<u8>,
    }

    impl Write for Throttled {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn queued_bytes_come_out_in_order_across_partial_writes() {
        let mut q = OutQueue::default();
        let shared: Rc<[u8]> = vec![9u8; 1000].into();
        q.push_copy(&[b"ab", b"cd"]);
        q.push_shared(&shared, 0);
        q.push_copy(&[b"ef"]);
        q.push_shared(&shared, 990);
        assert_eq!(q.len(), 4 + 1000 + 2 + 10);
        let mut sink = Throttled {
            room: 3,
            got: Vec::new(),
        };
        assert!(!q.flush(&mut sink).unwrap());
        assert_eq!(q.len(), 1013);
        for _ in 0..20 {
            sink.room = 97;
            if q.flush(&mut sink).unwrap() {
                break;
            }
        }
        assert!(q.is_empty());
        let mut want = b"abcd".to_vec();
        want.extend_from_slice(&[9; 1000]);
        want.extend_from_slice(b"ef");
        want.extend_from_slice(&[9; 10]);
        assert_eq!(sink.got, want);
    }

    #[test]
    fn skip_returns_the_unwritten_rest() {
        let parts: [&[u8]; 2] = [b"head", b"payload"];
        assert_eq!(skip(&parts, 0), [&b"head"[..], &b"payload"[..]]);
        assert_eq!(skip(&parts, 2), [&b"ad"[..], &b"payload"[..]]);
        assert_eq!(skip(&parts, 4), [&b"payload"[..], &b""[..]]);
        assert_eq!(skip(&parts, 6), [&b"yload"[..], &b""[..]]);
        assert_eq!(skip(&parts, 11), [&b""[..], &b""[..]]);
    }
}
