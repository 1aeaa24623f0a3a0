//! Settling a connection after the loop acted on it: its output written
//! (`server::transmit`), what it reports acted on
//! ([`crate::proto::connection::Connection::poll_event`]), its poller
//! interest and its wheel entry brought in line, and a finished one removed.

use super::completions::sync_recv;
use super::paced::pump;
use super::*;

/// The dirty list's capacity kept between passes (a fan-out to more
/// members than this gives its list back).
const DIRTY_KEEP: usize = 4096;

impl Core {
    /// Puts `id` on the list of connections to settle.
    pub(crate) fn touch(&mut self, id: ConnId) {
        let Some(slot) = self.slots.get_mut(id) else {
            return;
        };
        touch_slot(slot, id, &mut self.touched, &mut self.open_count);
    }

    /// Whether a connection waits to be settled or written
    /// ([`Core::next_touched`], [`Core::flush_dirty`]).
    #[inline(always)]
    pub(crate) fn has_unsettled(&self) -> bool {
        !self.touched.is_empty() || !self.dirty.is_empty()
    }

    /// The next connection to settle.
    pub(crate) fn next_touched(&mut self) -> Option<ConnId> {
        while let Some(id) = self.touched.pop() {
            if let Some(slot) = self.slots.get_mut(id) {
                slot.touched = false;
                return Some(id);
            }
        }
        None
    }

    /// Writes the queue of every connection on the dirty list (members
    /// that broadcasts or publications gave output since the last call),
    /// one [`transmit::flush`] each, and settles only those that the write
    /// changed: closed, or now wanting (or no longer wanting) to be told
    /// when their socket is writable. The loop calls it before it settles
    /// the touched list, so a member of a broadcast costs one write and no
    /// settling, as when the batch of broadcasts was written to each.
    #[inline]
    pub(crate) fn flush_dirty(&mut self) {
        // Inlined test, outlined work: the loop asks before every settling.
        if !self.dirty.is_empty() {
            self.write_dirty();
        }
    }

    #[inline(never)]
    fn write_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        // Every queue attached to a live range is on this list: sealed
        // below, so the ranges of this round are done with.
        self.round += 1;
        for &id in &dirty {
            let Some(slot) = self.slots.get_mut(id) else {
                continue;
            };
            slot.dirty = false;
            slot.conn.seal(&self.settings, self.now);
            if slot.conn.has_output() && !slot.conn.wants_write() {
                transmit::flush(slot, &self.settings, self.now, &mut self.stats, &[], None);
            }
            let wants_write = slot.conn.wants_write() || slot.tls_wants_write();
            // On the ring the flush only queued: settling hands it to the
            // pass's sends.
            if !slot.conn.is_open()
                || wants_write != (slot.interest & WRITE != 0)
                || slot.io & IO_URING != 0
            {
                touch_slot(slot, id, &mut self.touched, &mut self.open_count);
            }
        }
        dirty.clear();
        if dirty.capacity() <= DIRTY_KEEP && self.dirty.capacity() == 0 {
            self.dirty = dirty;
        }
    }

    /// Writes what `id` has queued, acts on what its connection reports
    /// ([`Connection::poll_event`]), and brings its poller interest and its
    /// wheel entry in line with what it now wants. Returns what the handler
    /// is owed.
    ///
    /// One slab lookup for all of it: this runs for every connection a pass
    /// touched, and a lookup per step (membership, interest, timer) made it
    /// 436 instructions a message where this is 407 (callgrind, echoes at
    /// 5,000/s).
    pub(crate) fn settle(&mut self, id: ConnId) -> Settled {
        let mut settled = Settled::default();
        let Some(slot) = self.slots.get_mut(id) else {
            settled.removed = true;
            return settled;
        };
        // On the ring, ciphertext goes out with the connection's sends.
        if slot.io == 0 && slot.tls_wants_write() {
            slot.flush_tls();
        }
        if slot.fed {
            pump(
                slot,
                id,
                &mut self.feeds,
                &self.settings,
                self.now,
                &mut self.stats,
            );
        } else if slot.io == 0 && slot.conn.has_output() && !slot.conn.wants_write() {
            transmit::flush(slot, &self.settings, self.now, &mut self.stats, &[], None);
        }
        // On the ring, its output goes out with the pass's other sends, just
        // before the wait (`Core::submit_sends`): all it was given this pass
        // in one send.
        if slot.io & IO_URING != 0
            && slot.io & (IO_SENDING | IO_DIRTY) == 0
            && (slot.conn.has_output() || slot.tls_wants_write())
        {
            slot.io |= IO_DIRTY;
            self.send_dirty.push(id);
        }
        while let Some(notice) = slot.conn.poll_event(self.now) {
            match notice {
                Notice::Refused(status) => self.stats.count_refusal(status),
                Notice::Activated(early) => settled.activated = Some(early),
                Notice::BacklogExceeded => {
                    self.stats.slow_consumer_closes += 1;
                    warn!(
                        "{id} ({}): {} bytes queued, over the backlog limit of {}: closing (1008)",
                        Peer(&slot.stream),
                        slot.conn.backlog(),
                        self.settings.max_backlog
                    );
                }
                Notice::Closed(code) => settled.closed = Some(code),
            }
        }
        if slot.conn.is_finished() {
            self.remove(id);
            settled.removed = true;
            return settled;
        }
        count_membership(slot, &mut self.open_count);
        match self.ring.as_deref_mut() {
            Some(ring) => sync_recv(slot, id, ring, &self.settings, self.now, &mut self.stats),
            None => sync_interest(slot, id, &self.poller, &self.settings),
        }
        sync_timer(slot, id, &mut self.wheel, &self.settings, self.start);
        settled
    }

    /// Closes the socket of a finished connection and forgets it.
    pub(super) fn remove(&mut self, id: ConnId) {
        if self.topics.has_subscriptions(id) {
            self.topics.leave_all(id);
        }
        let Some(slot) = self.slots.remove(id) else {
            return;
        };
        if slot.member {
            self.open_count -= 1;
        }
        if slot.fed {
            self.feeds.remove(&id.index());
            crate::server::topics::release_spare(&mut self.feeds);
        }
        if slot.timer != 0 {
            self.wheel
                .cancel(Tick::from(slot.timer), |t| *t == Timer::Conn(id));
        }
        match self.ring.as_deref_mut() {
            // The socket closes as `slot` drops, after this.
            Some(ring) => ring.forget(id, slot.io & IO_RECV != 0),
            None => {
                if let Err(e) = self.poller.delete(&slot.stream) {
                    warn!("poller delete failed: {e}");
                }
            }
        }
        if slot.busy_reject {
            self.busy_rejects -= 1;
        } else if self.config.max_connections_per_ip > 0 {
            self.per_ip.remove(id);
        }
        debug!("{id} removed");
    }

    /// The socket of `id` can take bytes again.
    pub(crate) fn writable(&mut self, id: ConnId) {
        if let Some(slot) = self.slots.get_mut(id) {
            slot.flush_tls();
            if !slot.tls_wants_write() {
                slot.conn.handle_writable();
                transmit::flush(slot, &self.settings, self.now, &mut self.stats, &[], None);
            }
            self.touch(id);
        }
    }
}

/// [`Core::touch`] for a slot already looked up: puts it on the list to
/// settle, and keeps the open count in step, with that one lookup (this runs
/// for every message sent).
pub(super) fn touch_slot(
    slot: &mut Slot,
    id: ConnId,
    touched: &mut Vec<ConnId>,
    open_count: &mut usize,
) {
    if !slot.touched {
        slot.touched = true;
        touched.push(id);
    }
    count_membership(slot, open_count);
}

/// Counts `slot` in or out of the open set as its connection now is.
fn count_membership(slot: &mut Slot, open_count: &mut usize) {
    let open = slot.conn.is_open();
    if open != slot.member {
        slot.member = open;
        if open {
            *open_count += 1;
        } else {
            *open_count -= 1;
        }
    }
}

/// Sets the poller interest of `slot` to what its connection wants, with
/// one `epoll_ctl` only when it changed.
fn sync_interest(slot: &mut Slot, id: ConnId, poller: &Poller, settings: &Settings) {
    let want = (if slot.conn.wants_read(settings) {
        READ
    } else {
        0
    }) | (if slot.conn.wants_write() || slot.tls_wants_write() {
        WRITE
    } else {
        0
    });
    if want == slot.interest {
        return;
    }
    let event = Event::new(Slab::<Slot>::key(id), want & READ != 0, want & WRITE != 0);
    match poller.modify_with_mode(&slot.stream, event, PollMode::Level) {
        Ok(()) => slot.interest = want,
        Err(e) => warn!("poller modify failed: {e}"),
    }
}

/// Files the earliest deadline of `slot` (connection `id`) in the wheel. A
/// connection keeps one entry; a deadline that moved later leaves it be (it
/// fires, finds nothing due, and is filed again), one that moved earlier
/// refiles it.
fn sync_timer(
    slot: &mut Slot,
    id: ConnId,
    wheel: &mut TimerWheel<Timer>,
    settings: &Settings,
    start: Instant,
) {
    let filed = Tick::from(slot.timer);
    let Some(deadline) = slot.conn.poll_timeout(settings) else {
        if filed != 0 {
            // No deadline any more (an upgrade with the idle timer off):
            // the entry goes now rather than when it comes due.
            slot.timer = 0;
            wheel.cancel(filed, |t| *t == Timer::Conn(id));
        }
        return;
    };
    let due = tick_at(start, deadline);
    if filed != 0 && filed <= due {
        return;
    }
    if filed != 0 {
        wheel.cancel(filed, |t| *t == Timer::Conn(id));
    }
    // Ticks of 10 ms: u32 lasts 497 days; past that, fall back to "no
    // entry" and let the next sync file it again.
    slot.timer = u32::try_from(wheel.schedule_at(due, Timer::Conn(id))).unwrap_or(0);
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    use super::super::test_support::{open_one, read_head, Echo};
    use crate::proto::frame::encode_client_frame;
    use crate::{Config, ConnId, Server};

    /// Waits for the server's socket events and reads `id`'s socket, as a
    /// pass does, but without settling: what is left to settle shows.
    fn read_without_settling(server: &mut Server<Echo>, id: ConnId) {
        server.wait(Some(Duration::from_secs(5))).expect("wait");
        server.read_from(id);
    }

    fn read_exact(client: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut bytes = vec![0; n];
        client.read_exact(&mut bytes).expect("read");
        bytes
    }

    /// The reply to a read of one message is written while the handler
    /// sends it, and the connection is not settled for it (nothing would
    /// change); the replies to a read of two are queued, and it is.
    #[test]
    fn a_lone_message_answered_at_once_is_not_settled() {
        let config = Config {
            idle_timeout: Duration::from_secs(30),
            // The direct reply is epoll's: on the ring a small one is queued.
            io: crate::server::driver::Io::Epoll,
            ..Config::default()
        };
        let (mut server, mut client) = open_one(config).expect("bind");
        let head = read_head(&mut client);
        assert!(head.starts_with(b"HTTP/1.1 101"));
        let id = server.core.slots.id_at(0).expect("the connection");
        let frame = |payload: &[u8]| {
            let mut out = Vec::new();
            encode_client_frame(&mut out, 0x81, [1, 2, 3, 4], payload);
            out
        };

        client.write_all(&frame(b"one")).expect("write");
        read_without_settling(&mut server, id);
        assert!(server.core.touched.is_empty());
        assert_eq!(read_exact(&mut client, 5), b"\x81\x03one");

        client
            .write_all(&[frame(b"two"), frame(b"three")].concat())
            .expect("write");
        read_without_settling(&mut server, id);
        assert_eq!(server.core.touched, [id]);
        server.settle();
        assert_eq!(read_exact(&mut client, 12), b"\x81\x03two\x81\x05three");
    }
}
