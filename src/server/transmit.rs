//! Moving a connection's output to its socket: the one place bytes meet
//! the kernel on the way out.
//!
//! A connection never writes: it holds what it wants sent as data
//! ([`Connection::pending_output`]: its replies, and broadcasts as
//! references to their one encoding). [`flush`] takes those slices (and,
//! after them, a large message handed along without being queued), encrypts
//! them if the slot has a TLS session, writes them with
//! one `sendmsg`, and tells the connection what went ([`Connection::consumed`],
//! [`Connection::end_write`]) or that the socket failed
//! ([`Connection::write_failed`]); the connection decides what that means
//! (backlog, half-close).

use std::io::{self, IoSlice};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Instant;

use crate::proto::connection::{Connection, Settings};

use super::core::{Slot, IO_DIRTY, IO_SENDING, IO_URING};
use super::driver::Ring;
use super::slab::ConnId;
use super::stats::Stats;

/// Most slices handed to one `sendmsg`.
const MAX_IOVECS: usize = 32;

/// The smallest message a connection on the ring writes with its own
/// `sendmsg` rather than through the pass's send ([`flush_parts`]): below
/// it, the copy into the queue costs less than the system call.
const RING_DIRECT_MIN: usize = 16 * 1024;

/// Writes what the connection of `slot` has pending and then `extra` (at
/// most [`crate::proto::output::MAX_EXTRA`] parts), one `sendmsg` per round
/// until the socket refuses bytes or everything is out, and queues what it
/// refused of `extra` (as one buffer shared by every member that must wait,
/// if `shared` is given). A connection that is behind writes nothing until
/// its socket is writable again; `extra` is then queued whole. A connection
/// whose exchange is over and whose output is all out has its sending
/// direction shut.
pub(crate) fn flush(
    slot: &mut Slot,
    settings: &Settings,
    now: Instant,
    stats: &mut Stats,
    extra: &[&[u8]],
    shared: Option<&mut Option<Rc<[u8]>>>,
) {
    if slot.conn.is_finished() {
        return;
    }
    // What a live range owes it goes before anything written now.
    slot.conn.seal(settings, now);
    if slot.io & IO_URING != 0 {
        // On the ring every byte goes through the connection's queue and
        // out with its next send (`submit`), so that nothing overtakes a
        // send in flight.
        if !extra.is_empty() {
            // Queued, not refused: a connection that was not behind is not
            // behind for it (the cap applies only to one that is).
            let was_behind = slot.conn.wants_write();
            slot.conn.end_write(settings, now, extra, 0, shared);
            if !was_behind {
                slot.conn.handle_writable();
            }
        }
        return;
    }
    let written = if slot.conn.wants_write() {
        0
    } else {
        match write(slot, stats, extra) {
            Ok(n) => n,
            Err(e) => {
                slot.conn.write_failed(&e);
                return;
            }
        }
    };
    // Everything went and nothing is left queued or owed (the reply to a
    // lone message): the connection has nothing to learn of the write, and
    // `end_write` (~45 instructions) is skipped.
    if !slot.conn.has_output() && written == extra.iter().map(|part| part.len()).sum::<usize>() {
        return;
    }
    if slot.conn.end_write(settings, now, extra, written, shared) {
        shutdown_write(slot);
    }
}

/// [`flush`] of a message's header and payload (from
/// [`Connection::message_parts`]: the connection can send), handed along
/// without being queued. A plain socket with nothing queued or owed before
/// them takes them in one non-blocking `sendmsg` without `flush`'s general
/// steps, and the connection hears of the write only if the socket refused
/// part of it: on epoll, a reply's common case (~60 instructions less a
/// reply, callgrind); on the ring, a large message (at least
/// [`RING_DIRECT_MIN`]) of a connection with no send in flight, which
/// would otherwise be copied into the queue for the pass's send (the copy
/// was most of the ring's user-space time in echo large). Anything else is
/// `flush`.
pub(crate) fn flush_parts(
    slot: &mut Slot,
    settings: &Settings,
    now: Instant,
    stats: &mut Stats,
    header: &[u8],
    payload: &[u8],
) {
    // No send in flight, so nothing of the connection's can be overtaken.
    let direct = slot.io == 0
        || (slot.io & (IO_SENDING | IO_DIRTY) == 0
            && header.len() + payload.len() >= RING_DIRECT_MIN);
    if !direct || has_tls(slot) || slot.conn.has_output() || slot.conn.wants_write() {
        return flush(slot, settings, now, stats, &[header, payload], None);
    }
    let slices = [IoSlice::new(header), IoSlice::new(payload)];
    let written = match send_once(|s| send_slices(&slot.stream, s), &slices) {
        Ok(Some(n)) => {
            stats.bytes_sent += n as u64;
            n
        }
        Ok(None) => 0,
        Err(e) => {
            slot.conn.write_failed(&e);
            return;
        }
    };
    if written < header.len() + payload.len() {
        // The rest is queued, and the connection is behind from now on (it
        // can send: no half-close is owed).
        slot.conn
            .end_write(settings, now, &[header, payload], written, None);
    }
}

/// Whether `slot` speaks TLS.
fn has_tls(slot: &Slot) -> bool {
    #[cfg(feature = "tls")]
    if slot.tls.is_some() {
        return true;
    }
    let _ = slot;
    false
}

/// The writes of [`flush`]: returns how many bytes of `extra` went.
fn write(slot: &mut Slot, stats: &mut Stats, extra: &[&[u8]]) -> io::Result<usize> {
    let conn = &mut slot.conn;
    #[cfg(feature = "tls")]
    if let Some(tls) = slot.tls.as_deref_mut() {
        return write_rounds(conn, stats, extra, |slices| {
            tls_send(tls, &slot.stream, slices)
        });
    }
    let stream = &slot.stream;
    {
        // The common cases: one slice or two to `send`, without the 32-slot
        // array and the walk over the chunks.
        let mut pending = conn.pending_output();
        if extra.is_empty() && pending.len() <= 1 {
            // A connection's replies to one read, merged into one chunk.
            let Some(bytes) = pending.next() else {
                return Ok(0);
            };
            if let Some(n) = send_once(|s| send_slices(stream, s), &[IoSlice::new(bytes)])? {
                stats.bytes_sent += n as u64;
                conn.consumed(n);
            }
            return Ok(0);
        }
        if let ([header, payload], 0) = (extra, pending.len()) {
            // The reply to a read of one message (`Core::send`), with
            // nothing queued before it: its header and payload as they are.
            let slices = [IoSlice::new(header), IoSlice::new(payload)];
            let Some(n) = send_once(|s| send_slices(stream, s), &slices)? else {
                return Ok(0);
            };
            stats.bytes_sent += n as u64;
            return Ok(n);
        }
    }
    write_rounds(conn, stats, extra, |slices| send_slices(stream, slices))
}

/// Vectored writes through `send` of what `conn` has pending, then `extra`
/// once all of it fits in one write, until `send` blocks or everything is
/// out. Returns how many bytes of `extra` went.
fn write_rounds(
    conn: &mut Connection,
    stats: &mut Stats,
    extra: &[&[u8]],
    mut send: impl FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
) -> io::Result<usize> {
    loop {
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let mut n = 0;
        let mut queued = 0;
        let mut pending = conn.pending_output();
        for bytes in pending
            .by_ref()
            .take(MAX_IOVECS - crate::proto::output::MAX_EXTRA)
        {
            slices[n] = IoSlice::new(bytes);
            queued += bytes.len();
            n += 1;
        }
        // Only once every queued chunk fits in this write may the extra
        // bytes follow it.
        let all_queued = pending.len() == 0;
        if all_queued {
            for part in extra.iter().filter(|p| !p.is_empty()) {
                slices[n] = IoSlice::new(part);
                n += 1;
            }
        }
        if n == 0 {
            return Ok(0);
        }
        let Some(written) = send_once(&mut send, &slices[..n])? else {
            return Ok(0);
        };
        stats.bytes_sent += written as u64;
        let from_queue = written.min(queued);
        conn.consumed(from_queue);
        if all_queued {
            return Ok(written - from_queue);
        }
        if from_queue < queued {
            // The socket is full.
            return Ok(0);
        }
    }
}

/// One write through `send`, retried if interrupted: how many bytes it
/// took (never 0: a socket that takes nothing is an error), or `None` if it
/// would block.
fn send_once(
    mut send: impl FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
    slices: &[IoSlice<'_>],
) -> io::Result<Option<usize>> {
    loop {
        match send(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => return Ok(Some(written)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Starts a send on the ring of what `slot` has pending, unless one is in
/// flight: at most `SEND_MAX` bytes (the connection's queue, and what
/// `refill` moves from a paced feed as the queue empties), which the ring
/// keeps until the completion ([`sent`]). The queue's chunks themselves
/// move to the ring, not a copy of them; a copy only where that is cheaper
/// (at most `SEND_COPY` bytes, into a reused buffer) or needed (a TLS
/// session's ciphertext, after the session took the queue's plaintext).
/// The bytes count as taken by the transport, as a write's are with epoll:
/// what stays queued is what the kernel has not been handed, which the
/// backlog cap and the read pause measure. With nothing pending and
/// nothing in flight, a finished exchange has its sending direction shut.
#[cfg_attr(not(rookery_uring), allow(dead_code))]
pub(crate) fn submit(
    slot: &mut Slot,
    id: ConnId,
    ring: &mut Ring,
    settings: &Settings,
    now: Instant,
    refill: &mut dyn FnMut(&mut Slot) -> bool,
) {
    use super::driver::{SEND_COPY, SEND_MAX, SEND_SLICES};
    if slot.conn.is_finished() || slot.io & IO_SENDING != 0 {
        return;
    }
    slot.conn.seal(settings, now);
    #[cfg(feature = "tls")]
    let copy = slot.tls.is_some() || slot.conn.backlog() <= SEND_COPY;
    #[cfg(not(feature = "tls"))]
    let copy = slot.conn.backlog() <= SEND_COPY;
    let out = if copy {
        let mut buf = ring.send_buffer();
        loop {
            if let Err(e) = fill(slot, &mut buf) {
                ring.recycle(buf);
                slot.conn.write_failed(&e);
                return;
            }
            // A paced feed refills the queue as a write empties it.
            if buf.len() >= SEND_MAX || !refill(slot) {
                break;
            }
        }
        let mut out = ring.output();
        out.push_copy(buf);
        out
    } else {
        let mut out = ring.output();
        loop {
            let n = slot.conn.take_output(SEND_MAX, SEND_SLICES, &mut out);
            if out.len() >= SEND_MAX || (n == 0 && !out.is_empty()) || !refill(slot) {
                break;
            }
        }
        out
    };
    if out.is_empty() {
        ring.recycle_output(out);
        if slot.conn.end_write(settings, now, &[], 0, None) {
            shutdown_write(slot);
        }
        return;
    }
    ring.send(slot.stream.as_raw_fd(), id, out);
    slot.io |= IO_SENDING;
}

/// Moves what `slot` has to send into `buf`, at most `SEND_MAX` bytes.
fn fill(slot: &mut Slot, buf: &mut Vec<u8>) -> io::Result<()> {
    let max = super::driver::SEND_MAX;
    #[cfg(feature = "tls")]
    if let Some(tls) = slot.tls.as_deref_mut() {
        if !tls.wants_write() {
            // The session takes plaintext only once its ciphertext is out,
            // so what waits stays in the connection's queue, where the
            // backlog cap applies.
            let mut bufs: [&[u8]; MAX_IOVECS] = [&[]; MAX_IOVECS];
            let (mut n, mut taken) = (0, 0);
            for bytes in slot.conn.pending_output().take(MAX_IOVECS) {
                let take = bytes.len().min(TLS_WRITE_MAX - taken);
                bufs[n] = &bytes[..take];
                n += 1;
                taken += take;
                if taken == TLS_WRITE_MAX {
                    break;
                }
            }
            if taken > 0 {
                tls.write_plaintext_vectored(&bufs[..n])
                    .map_err(|e| io::Error::new(io::ErrorKind::BrokenPipe, e.to_string()))?;
                slot.conn.consumed(taken);
            }
        }
        let pending = tls.pending_output();
        let len = pending.len().min(max.saturating_sub(buf.len()));
        buf.extend_from_slice(&pending[..len]);
        tls.consumed(len);
        return Ok(());
    }
    let start = buf.len();
    for bytes in slot.conn.pending_output() {
        let room = max.saturating_sub(buf.len());
        buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
        if buf.len() >= max {
            break;
        }
    }
    slot.conn.consumed(buf.len() - start);
    Ok(())
}

/// A send of `slot` ended, all of it sent (`res` ≥ 0, after any resends of
/// a short one) or failed (`-errno`). With nothing left, a finished
/// exchange has its sending direction shut.
#[cfg_attr(not(rookery_uring), allow(dead_code))]
pub(crate) fn sent(slot: &mut Slot, res: i32, settings: &Settings, now: Instant) {
    slot.io &= !IO_SENDING;
    if slot.conn.is_finished() {
        return;
    }
    match res {
        0 => slot
            .conn
            .write_failed(&io::Error::from(io::ErrorKind::WriteZero)),
        r if r < 0 => slot
            .conn
            .write_failed(&io::Error::from_raw_os_error(r.saturating_neg())),
        _ => {
            slot.conn.handle_writable();
            let idle = slot.conn.backlog() == 0 && !slot.tls_wants_write();
            if idle && slot.conn.end_write(settings, now, &[], 0, None) {
                shutdown_write(slot);
            }
        }
    }
}

/// `send` (one buffer) or `sendmsg` with `MSG_NOSIGNAL`: a peer that reset
/// its connection must give us `EPIPE`, not a `SIGPIPE` that kills a C host
/// program which, unlike Rust's runtime, does not ignore that signal. And
/// `MSG_DONTWAIT`: a socket driven by the ring is blocking, and the loop
/// must never wait on one (the TLS close at a half-close).
pub(crate) fn send_slices(stream: &TcpStream, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    use rustix::net::{send, sendmsg, SendAncillaryBuffer, SendFlags};
    let sent = if let [one] = slices {
        // One buffer (the usual echo batch): `send`, which spares the
        // kernel copying in a `msghdr` and an iovec array.
        send(stream, one, SendFlags::NOSIGNAL | SendFlags::DONTWAIT)
    } else {
        sendmsg(
            stream,
            slices,
            &mut SendAncillaryBuffer::default(),
            SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
        )
    };
    sent.map_err(io::Error::from)
}

/// Ends the sending direction of `slot`: the clean end of its TLS session
/// first, if it has one (what the socket refuses of it is lost with the
/// half-close, as an unread close frame is), then the TCP half-close.
fn shutdown_write(slot: &mut Slot) {
    #[cfg(feature = "tls")]
    if let Some(tls) = slot.tls.as_deref_mut() {
        tls.close();
        let _ = flush_tls(tls, &slot.stream);
    }
    let _ = slot.stream.shutdown(Shutdown::Write);
}

/// The most plaintext taken into a TLS session per write: what the socket
/// refuses of its ciphertext waits in the session, so this bounds it.
#[cfg(feature = "tls")]
const TLS_WRITE_MAX: usize = 64 * 1024;

/// Encrypts what is handed over and writes the ciphertext. A session still
/// holding ciphertext the socket refused takes nothing more (`WouldBlock`),
/// so that plaintext waits in the connection's queue, where the backlog cap
/// applies.
#[cfg(feature = "tls")]
fn tls_send(
    tls: &mut crate::tls::TlsSession,
    stream: &TcpStream,
    slices: &[IoSlice<'_>],
) -> io::Result<usize> {
    if !flush_tls(tls, stream)? {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    let mut bufs: [&[u8]; MAX_IOVECS] = [&[]; MAX_IOVECS];
    let mut n = 0;
    let mut taken = 0;
    for slice in slices.iter().take(bufs.len()) {
        let take = slice.len().min(TLS_WRITE_MAX - taken);
        bufs[n] = &slice[..take];
        n += 1;
        taken += take;
        if taken == TLS_WRITE_MAX {
            break;
        }
    }
    tls.write_plaintext_vectored(&bufs[..n])
        .map_err(|e| io::Error::new(io::ErrorKind::BrokenPipe, e.to_string()))?;
    flush_tls(tls, stream)?;
    Ok(taken)
}

/// Writes the session's pending ciphertext. Returns whether all of it went.
#[cfg(feature = "tls")]
pub(crate) fn flush_tls(tls: &mut crate::tls::TlsSession, stream: &TcpStream) -> io::Result<bool> {
    loop {
        let pending = tls.pending_output();
        if pending.is_empty() {
            return Ok(true);
        }
        match send_slices(stream, &[IoSlice::new(pending)]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => tls.consumed(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write to a socket whose sending side is shut gets `EPIPE`. With
    /// plain `writev` it would also raise SIGPIPE, which kills a C host
    /// program; here SIGPIPE is counted on the thread that raises it, so
    /// that a signal shows and the test goes on.
    #[test]
    fn a_closed_socket_gives_epipe_not_sigpipe() {
        use crate::server::signals::tests::{count, counted};
        use std::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_theirs, _) = listener.accept().unwrap();
        ours.shutdown(Shutdown::Write).unwrap();
        count(libc::SIGPIPE).unwrap();
        let before = counted();
        // One buffer goes through `send`, two through `sendmsg`.
        let one = send_slices(&ours, &[IoSlice::new(b"x")]).unwrap_err();
        let two = send_slices(&ours, &[IoSlice::new(b"x"), IoSlice::new(b"y")]).unwrap_err();
        assert_eq!(one.raw_os_error(), Some(libc::EPIPE));
        assert_eq!(two.raw_os_error(), Some(libc::EPIPE));
        assert_eq!(counted(), before, "no SIGPIPE");
        // The count does see one: a send without MSG_NOSIGNAL raises it.
        let plain = rustix::net::send(&ours, b"x", rustix::net::SendFlags::DONTWAIT);
        assert_eq!(plain, Err(rustix::io::Errno::PIPE));
        assert_eq!(counted(), before + 1);
    }
}
