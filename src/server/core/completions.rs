//! The core's side of the uring driver's completions (see
//! `crate::server::driver`): a socket accepted, a send ended, a receive
//! armed or cancelled as the connection's wish to read changes. Reading the
//! received bytes is the server's (`Server::received`), as with epoll.

use super::*;

impl Core {
    /// An accept completion of the ring: the new socket is admitted, an
    /// error handled as `accept_ready` does.
    #[cfg_attr(not(rookery_uring), allow(dead_code))]
    pub(crate) fn accepted(&mut self, res: i32, more: bool) {
        match driver::accepted_fd(res) {
            Some(fd) if self.listener.is_some() => {
                let stream = TcpStream::from(fd);
                match stream.peer_addr() {
                    Ok(peer) => self.admit(stream, peer),
                    Err(e) => debug!("accept: {e}"),
                }
            }
            // Accepted as the listener closed: dropped.
            Some(_) => {}
            None => {
                let e = io::Error::from_raw_os_error(-res);
                if is_resource_exhaustion(&e) {
                    warn!("accept failed ({e}); pausing accepts for {ACCEPT_BACKOFF:?}");
                    self.set_listener_interest(false);
                    self.schedule(ACCEPT_BACKOFF, Timer::ResumeAccept);
                } else if res != -libc::ECANCELED {
                    debug!("accept: {e}");
                }
            }
        }
        if !more {
            if let Some(ring) = self.ring.as_deref_mut() {
                ring.accept_ended();
            }
        }
    }

    /// A send of slot `index` (generation `generation`) ended with `res`.
    /// A short one sends the rest at once, from the same buffer, before
    /// anything queued since.
    #[cfg_attr(not(rookery_uring), allow(dead_code))]
    pub(crate) fn sent(&mut self, index: usize, generation: u32, res: i32) {
        let id = self
            .slots
            .id_at(index)
            .filter(|id| driver::is_for(*id, generation));
        let Some(ring) = self.ring.as_deref_mut() else {
            return;
        };
        // No length: the ring gave its bytes back as it took the
        // completion, which it does only for a send that went whole or
        // failed (`Ring::reap_releasing_sends`).
        let len = id.and_then(|id| ring.send_len(id));
        let Some(id) = id else {
            ring.send_done(index, generation);
            return;
        };
        let Some(slot) = self.slots.get_mut(id) else {
            ring.send_done(index, generation);
            return;
        };
        if let Ok(n) = usize::try_from(res) {
            self.stats.bytes_sent += n as u64;
            let short = len.is_some_and(|len| n > 0 && n < len);
            if short && !slot.conn.is_finished() {
                // The socket took bytes and had no room for the rest: they
                // go again at once. Whether it is behind is judged by
                // whether that send finds room (`mark_stuck_sends`): with
                // the pass's other completions still to come, judging now
                // would cap what its input makes before its socket had a
                // chance to drain, where epoll writes first.
                ring.send_rest(slot.stream.as_raw_fd(), id, n);
                return;
            }
        }
        ring.send_done(index, generation);
        transmit::sent(slot, res, &self.settings, self.now);
        self.touch(id);
    }

    /// Sends the last wait submitted that are still in flight found their
    /// socket full: their connections are behind, as with epoll when a
    /// write is refused, and the backlog cap applies to what they are sent
    /// next.
    pub(crate) fn mark_stuck_sends(&mut self) {
        let Some(ring) = self.ring.as_deref_mut() else {
            return;
        };
        for &id in ring.stuck_sends() {
            if let Some(slot) = self.slots.get_mut(id) {
                // Behind only if something waits behind the send; one
                // already behind stays so, unjudged. With nothing queued
                // there is nothing to hold back, and ending a write then
                // would take a finished exchange's half-close as done
                // while the send that carries its close frame is still in
                // flight: the half-close is for `transmit::sent`.
                if slot.conn.backlog() > 0 && !slot.conn.wants_write() {
                    let shut = slot.conn.end_write(&self.settings, self.now, &[], 0, None);
                    debug_assert!(!shut, "a write that left bytes queued shuts nothing");
                }
            }
        }
    }

    /// Whether a batch of sends is due before the pass's end: as many
    /// connections wait for one as the ring takes in one submission.
    pub(crate) fn send_batch_full(&self) -> bool {
        self.send_dirty.len() >= driver::SEND_BATCH
    }

    /// Starts a send for each connection given output since the last wait
    /// (see `transmit::submit`). Returns whether any of them is to be
    /// settled again (its socket failed, or its exchange ended).
    pub(crate) fn submit_sends(&mut self) -> bool {
        let Some(ring) = self.ring.as_deref_mut() else {
            return false;
        };
        let mut dirty = std::mem::take(&mut self.send_dirty);
        for &id in &dirty {
            let Some(slot) = self.slots.get_mut(id) else {
                continue;
            };
            slot.io &= !IO_DIRTY;
            let (feeds, settings) = (&mut self.feeds, &self.settings);
            let mut more = |slot: &mut Slot| super::paced::refill(slot, id, feeds, settings);
            transmit::submit(slot, id, ring, settings, self.now, &mut more);
            if slot.conn.is_finished() {
                touch_slot(slot, id, &mut self.touched, &mut self.open_count);
            }
        }
        dirty.clear();
        self.send_dirty = dirty;
        !self.touched.is_empty()
    }

    /// The connection of slot `index` for a receive completion of
    /// `generation`, if it is still there.
    #[cfg_attr(not(rookery_uring), allow(dead_code))]
    pub(crate) fn receiver(&self, index: usize, generation: u32) -> Option<ConnId> {
        self.slots
            .id_at(index)
            .filter(|id| driver::is_for(*id, generation))
    }
}

/// Arms the multishot receive of `slot` when its connection wants to read
/// and cancels it when it does not (the ring's `epoll_ctl`). Bytes that
/// came after it stopped reading and before the cancellation took effect
/// are held: handed over at the next pass when it reads again, and the
/// receive is armed only once they are all read, so that what is held never
/// grows past what one cancellation let in.
pub(super) fn sync_recv(
    slot: &mut Slot,
    id: ConnId,
    ring: &mut Ring,
    settings: &Settings,
    now: Instant,
    stats: &mut Stats,
) {
    let mut want = slot.conn.wants_read(settings);
    if !want && slot.io & IO_RECV != 0 && slot.io & IO_CANCELLING == 0 {
        want = send_now(slot, id, ring, settings, now, stats);
    }
    // A receive being cancelled still counts as armed until its last
    // completion (which clears both bits): a second one on the same socket
    // could take bytes out of order, and a cancellation names only one.
    let armed = slot.io & IO_RECV != 0;
    if slot.io & IO_CANCELLING != 0 {
        return;
    }
    if want && !armed {
        if slot.io & IO_HELD != 0 {
            ring.resume(id);
            return;
        }
        ring.recv(slot.stream.as_raw_fd(), id);
        slot.io |= IO_RECV;
    } else if !want && armed {
        ring.cancel_recv(id);
        slot.io |= IO_CANCELLING;
        // Now rather than with the next wait: every receive completion
        // until then would be held.
        ring.submit();
    }
}

/// A connection that stopped reading because of what it has queued, with
/// no send in flight: its send goes now, in the middle of the pass, rather
/// than with the pass's other sends. Waiting for those would pause its
/// reading until the next pass (its receive cancelled, the bytes that came
/// meanwhile held and copied twice, the receive armed again), at every
/// large message: a 64 KiB echo reaches the pause by itself. A send the
/// socket has room for completes within the submission and is acted on
/// here, as epoll's write would be. Returns whether it reads again.
fn send_now(
    slot: &mut Slot,
    id: ConnId,
    ring: &mut Ring,
    settings: &Settings,
    now: Instant,
    stats: &mut Stats,
) -> bool {
    if slot.io & IO_SENDING != 0 || slot.conn.is_finished() {
        return false;
    }
    transmit::submit(slot, id, ring, settings, now, &mut |_| false);
    if slot.io & IO_SENDING == 0 {
        return slot.conn.wants_read(settings);
    }
    let (Some(res), Some(len)) = (ring.send_now(id), ring.send_len(id)) else {
        return false;
    };
    if let Ok(n) = usize::try_from(res) {
        stats.bytes_sent += n as u64;
        if n > 0 && n < len {
            // The socket is full: the rest goes at once, and the pause holds.
            ring.send_rest(slot.stream.as_raw_fd(), id, n);
            return false;
        }
    }
    ring.send_finished(id);
    transmit::sent(slot, res, settings, now);
    slot.conn.wants_read(settings)
}

#[cfg(all(test, rookery_uring))]
mod tests {
    use std::io::{ErrorKind, IoSlice, Read, Write};
    use std::time::{Duration, Instant};

    use super::super::test_support::{open_many, open_one, read_head};
    use super::IO_SENDING;
    use crate::proto::frame::encode_client_frame;
    use crate::server::driver::{Io, SEND_BATCH};
    use crate::server::transmit::send_slices;
    use crate::{Config, Message};

    /// What `open` makes of a server on the ring, or `None` (SKIPPED
    /// printed) where the kernel refuses io_uring.
    fn on_ring<T>(open: impl FnOnce(Config) -> std::io::Result<T>) -> Option<T> {
        let config = Config {
            io: Io::Uring,
            ..Config::default()
        };
        match open(config) {
            Ok(opened) => Some(opened),
            Err(e) => {
                println!("SKIPPED: io_uring not found ({e})");
                None
            }
        }
    }

    /// Output waits for the pass's sends, just before the wait, until as
    /// many connections have some as one submission takes: then their
    /// sends start in the middle of the pass (where a burst of set-ups had
    /// them all waiting at once, each with its queue and its copy).
    #[test]
    fn output_for_a_submissions_worth_of_connections_goes_at_once() {
        let Some((mut server, _clients)) = on_ring(|config| open_many(config, SEND_BATCH)) else {
            return;
        };
        // The handshakes' replies sent and done with.
        let now = Instant::now();
        for _ in 0..10 {
            server
                .run_once_at(now, Some(Duration::from_millis(10)))
                .expect("pass");
        }
        let core = &server.core;
        let ids: Vec<_> = (0..core.slots.slot_count())
            .filter_map(|i| core.slots.id_at(i))
            .collect();
        assert_eq!(ids.len(), SEND_BATCH);
        let sending = |server: &crate::Server<_>| {
            ids.iter()
                .filter(|&&id| {
                    let slot = server.core.slots.get(id);
                    slot.is_some_and(|slot| slot.io & IO_SENDING != 0)
                })
                .count()
        };
        assert_eq!(sending(&server), 0, "nothing in flight");
        let (last, first) = ids.split_last().expect("ids");
        for &id in first {
            server.core.send(id, Message::Text("x")).expect("send");
        }
        server.settle();
        assert_eq!(sending(&server), 0, "one short of a batch: they wait");
        server.core.send(*last, Message::Text("x")).expect("send");
        server.settle();
        assert_eq!(sending(&server), SEND_BATCH, "a batch: they all go");
        assert!(server.core.send_dirty.is_empty());
    }

    /// A closing connection whose close frame's send stays in flight past
    /// two waits (its socket full) is judged stuck, and still has its
    /// sending direction shut once that send ends: the peer, which waits
    /// for the end of the stream after the close frame, gets it at once,
    /// not at the close timeout. (Judging it behind with nothing queued
    /// once took the half-close as done: in a churn of 10,000 closes, the
    /// last few hundred waited out the 5 s close timeout.)
    #[test]
    fn a_close_frame_stuck_in_flight_is_followed_by_the_end_of_the_stream() {
        let Some((mut server, mut client)) = on_ring(open_one) else {
            return;
        };
        assert!(read_head(&mut client).starts_with(b"HTTP/1.1 101"));
        let id = server.core.slots.id_at(0).expect("the connection");
        // The server's socket filled with bytes the client does not read
        // yet, so that the close frame's send waits in flight; small
        // buffers at both ends, fixed (not tuned as data flows), keep it
        // full until the client reads.
        let filler = vec![0u8; 64 * 1024];
        let mut filled = 0;
        {
            use rustix::net::sockopt;
            sockopt::set_socket_recv_buffer_size(&client, 4096).expect("SO_RCVBUF");
            let slot = server.core.slots.get(id).expect("slot");
            sockopt::set_socket_send_buffer_size(&slot.stream, 4096).expect("SO_SNDBUF");
            loop {
                match send_slices(&slot.stream, &[IoSlice::new(&filler)]) {
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("filling: {e}"),
                }
            }
        }
        let mut close = Vec::new();
        encode_client_frame(&mut close, 0x88, [1, 2, 3, 4], &1000u16.to_be_bytes());
        client.write_all(&close).expect("close");
        let now = Instant::now();
        let mut stuck = false;
        for _ in 0..10 {
            server
                .run_once_at(now, Some(Duration::from_millis(10)))
                .expect("pass");
            let slot = server.core.slots.get(id).expect("slot");
            stuck = slot.io & IO_SENDING != 0;
        }
        assert!(stuck, "the close frame's send waits in flight");
        // The client reads everything: the filler, the close frame, then
        // the end of the stream, with no time passing on the server.
        client.set_nonblocking(true).expect("nonblocking");
        let (mut got, mut buf, mut ended) = (Vec::new(), vec![0; 256 * 1024], false);
        for _ in 0..400 {
            match client.read(&mut buf) {
                Ok(0) => {
                    ended = true;
                    break;
                }
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    server
                        .run_once_at(now, Some(Duration::from_millis(5)))
                        .expect("pass");
                }
                Err(e) => panic!("reading: {e}"),
            }
        }
        assert_eq!(got.len(), filled + 4, "the filler and the close frame");
        assert_eq!(&got[filled..], b"\x88\x02\x03\xe8");
        assert!(ended, "the end of the stream follows the close frame");
    }

    /// A send whose bytes the ring gave back as it took the completion in
    /// the middle of a pass (`Ring::reap_releasing_sends`) still ends for
    /// its connection at the next pass, which then sends again.
    #[test]
    fn a_send_given_back_early_still_ends_for_its_connection() {
        let Some((mut server, mut client)) = on_ring(open_one) else {
            return;
        };
        // The reply to the handshake: submitted, its completion taken
        // between passes, and its bytes given back there.
        let Some(ring) = server.core.ring.as_deref_mut() else {
            panic!("the ring");
        };
        ring.submit();
        for _ in 0..100 {
            ring.reap_releasing_sends();
            if ring.has_work() {
                break;
            }
        }
        assert!(ring.has_work(), "the send's completion, taken");
        assert!(read_head(&mut client).starts_with(b"HTTP/1.1 101"));
        // Its connection heard of the end of that send: the echo goes.
        let mut frame = Vec::new();
        encode_client_frame(&mut frame, 0x81, [1, 2, 3, 4], b"one");
        client.write_all(&frame).expect("write");
        let now = Instant::now();
        let mut echo = [0; 5];
        let mut got = 0;
        for _ in 0..50 {
            server
                .run_once_at(now, Some(Duration::from_millis(20)))
                .expect("pass");
            client.set_nonblocking(true).expect("nonblocking");
            if let Ok(n) = client.read(&mut echo[got..]) {
                got += n;
            }
            client.set_nonblocking(false).expect("blocking");
            if got == echo.len() {
                break;
            }
        }
        assert_eq!(&echo[..got], b"\x81\x03one");
    }
}
