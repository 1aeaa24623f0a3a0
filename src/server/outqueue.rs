//! What a connection's socket has not yet accepted.
//!
//! Frames are written straight to the socket; only the part the socket
//! refuses is queued here. A broadcast frame is queued as a reference to the
//! one shared encoding, so a slow member costs a pointer, not a copy.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::rc::Rc;

/// Where queued bytes go: a socket, or a test double.
pub trait Sink {
    /// Writes from `slices` in order, as `writev` does; returns the count.
    fn send_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize>;
}

impl Sink for TcpStream {
    /// `sendmsg` with `MSG_NOSIGNAL`: a peer that reset its connection must
    /// give us `EPIPE`, not a `SIGPIPE` that kills a C host program which,
    /// unlike Rust's runtime, does not ignore that signal.
    fn send_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        // SAFETY: `msghdr` is plain data, so all-zero is a valid value; the
        // iovec pointer and count describe `slices`, and `IoSlice` is
        // documented to be ABI-compatible with `iovec` on Unix; `slices` and
        // the buffers they point into outlive the call, and the kernel only
        // reads them. The descriptor belongs to `self` and is open.
        let sent = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = slices.as_ptr() as *mut libc::iovec;
            msg.msg_iovlen = slices.len() as _;
            libc::sendmsg(self.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
        };
        if sent < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(sent as usize)
        }
    }
}

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

/// Queued output bytes, oldest first. Empty, it is one null pointer: the
/// queue itself is allocated only while the socket is refusing bytes.
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
}

impl OutQueue {
    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.queue.as_ref().map_or(0, |q| q.queued)
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_none()
    }

    /// Queues a copy of `parts`, concatenated.
    pub fn push_copy(&mut self, parts: &[&[u8]]) {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total == 0 {
            return;
        }
        let queue = self.queue.get_or_insert_with(Box::default);
        queue.queued += total;
        if let Some(Chunk::Owned(last)) = queue.chunks.back_mut() {
            if last.len() + total <= MERGE_LIMIT {
                for part in parts {
                    last.extend_from_slice(part);
                }
                return;
            }
        }
        queue.chunks.push_back(Chunk::Owned(parts.concat()));
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
            let queue = self.queue.get_or_insert_with(Box::default);
            queue.queued += rest;
            queue.chunks.push_back(Chunk::Shared(Rc::clone(frame)));
        }
    }

    /// Writes as much as the socket takes. Returns `Ok(true)` when the queue
    /// emptied, `Ok(false)` when the socket is full.
    pub fn flush(&mut self, sink: &mut impl Sink) -> io::Result<bool> {
        let Some(queue) = self.queue.as_mut() else {
            return Ok(true);
        };
        while !queue.chunks.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut n = 0;
            for (i, chunk) in queue.chunks.iter().take(MAX_IOVECS).enumerate() {
                let bytes = chunk.bytes();
                slices[i] = IoSlice::new(if i == 0 {
                    &bytes[queue.front_written..]
                } else {
                    bytes
                });
                n += 1;
            }
            let written = match sink.send_vectored(&slices[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => written,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            queue.consume(written);
        }
        // Free the queue: an idle connection keeps nothing.
        self.queue = None;
        Ok(true)
    }
}

impl Queue {
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
    }
}

/// The most pieces [`write_parts`] and [`skip`] take: what is corked, a
/// frame header and its payload.
pub const MAX_PARTS: usize = 3;

/// Writes `parts` (at most [`MAX_PARTS`]) with one `writev`, looping only on
/// `EINTR`. Returns how many bytes the socket took (0 when it would block).
pub fn write_parts(sink: &mut impl Sink, parts: &[&[u8]]) -> io::Result<usize> {
    assert!(parts.len() <= MAX_PARTS, "too many parts for one write");
    let mut slices = [IoSlice::new(&[]); MAX_PARTS];
    for (slice, part) in slices.iter_mut().zip(parts) {
        *slice = IoSlice::new(part);
    }
    loop {
        return match sink.send_vectored(&slices[..parts.len()]) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(e),
        };
    }
}

/// Skips the first `n` bytes of the concatenation of `parts` (at most
/// [`MAX_PARTS`]), returning what remains.
pub fn skip<'a>(parts: &[&'a [u8]], mut n: usize) -> [&'a [u8]; MAX_PARTS] {
    let mut out: [&[u8]; MAX_PARTS] = [&[]; MAX_PARTS];
    for (slot, part) in out.iter_mut().zip(parts) {
        let skipped = n.min(part.len());
        *slot = &part[skipped..];
        n -= skipped;
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

    impl Sink for Throttled {
        fn send_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut n = 0;
            for slice in slices {
                let take = slice.len().min(self.room - n);
                self.got.extend_from_slice(&slice[..take]);
                n += take;
            }
            self.room -= n;
            Ok(n)
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

    /// A write to a socket whose sending side is shut gets `EPIPE`. With
    /// plain `writev` it would also raise SIGPIPE, which kills a C host
    /// program; the check runs in a forked child with SIGPIPE at its
    /// default action so that a signal shows in its exit status.
    #[test]
    fn a_closed_socket_gives_epipe_not_sigpipe() {
        use std::net::{Shutdown, TcpListener};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_theirs, _) = listener.accept().unwrap();
        ours.shutdown(Shutdown::Write).unwrap();
        // SAFETY: the child only makes async-signal-safe calls (signal,
        // sendmsg, _exit) before it exits; the parent waits for it.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = unsafe {
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                match ours.send_vectored(&[IoSlice::new(b"x")]) {
                    Err(e) if e.raw_os_error() == Some(libc::EPIPE) => 0,
                    _ => 1,
                }
            };
            // SAFETY: ends the forked child without running the parent's
            // atexit handlers or unwinding its test harness.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(
            libc::WIFEXITED(status),
            "child killed by signal {}",
            libc::WTERMSIG(status)
        );
        assert_eq!(libc::WEXITSTATUS(status), 0, "expected EPIPE");
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
