//! A pass of the uring driver (see `driver`): the completions of the one
//! wait acted on in order (accepts, received bytes, ended sends, the poll
//! of the epoll descriptor that holds the wake-up and extra sources), in
//! place of the epoll driver's walk over ready keys. Everything after
//! (posts, timers, settling) is the same pass as with epoll.

use std::io;
use std::time::Duration;

use super::core::IO_HELD;
#[cfg(rookery_uring)]
use super::core::{IO_CANCELLING, IO_RECV};
use super::driver::Done;
use super::{feed, ConnId, Handler, Server, SCRATCH_KEEP};

impl<H: Handler> Server<H> {
    /// Waits at most `timeout` with the driver that runs.
    pub(super) fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.submit_sends();
        match self.core.ring.as_deref_mut() {
            Some(ring) => ring.wait(timeout),
            None => self.core.poller.wait(&mut self.events, timeout).map(drop),
        }
    }

    /// Submits what the pass queued on the ring without waiting: a caller
    /// of `run_once` may next wait on the ring's descriptor in a loop of its
    /// own, where nothing else would submit it.
    pub(super) fn submit_pending(&mut self) {
        self.submit_sends();
        if let Some(ring) = self.core.ring.as_deref_mut() {
            ring.submit();
        }
    }

    /// The pass's sends, queued on the ring; a connection that ended there
    /// is settled (which may queue more).
    fn submit_sends(&mut self) {
        // With epoll, nothing (a call of every pass, otherwise).
        if self.core.ring.is_none() {
            return;
        }
        for _ in 0..4 {
            if !self.core.submit_sends() {
                return;
            }
            self.settle();
        }
    }

    /// Acts on the completions of the last wait, settling after each.
    #[cfg_attr(not(rookery_uring), allow(unused_mut))]
    pub(super) fn dispatch_completions(&mut self) -> io::Result<()> {
        let Some(ring) = self.core.ring.as_deref_mut() else {
            return Ok(());
        };
        let (resumed, mut done, repoll) = ring.take_completions();
        for id in resumed {
            self.read_held(id);
            self.settle();
        }
        if repoll {
            self.poll_sources()?;
        }
        let mut at = 0;
        while let Some(&d) = done.get(at) {
            at += 1;
            #[cfg(rookery_uring)]
            if let Done::Recv { .. } = d {
                at += self.recv_run(&done[at - 1..]);
                self.settle();
                continue;
            }
            self.complete(d)?;
        }
        self.core.mark_stuck_sends();
        done.clear();
        if let Some(ring) = self.core.ring.as_deref_mut() {
            ring.keep_done(done);
        }
        if self.scratch.capacity() > SCRATCH_KEEP {
            self.scratch = Vec::new();
        }
        Ok(())
    }

    #[cfg(rookery_uring)]
    fn complete(&mut self, done: Done) -> io::Result<()> {
        match done {
            Done::Accept { res, more } => self.core.accepted(res, more),
            // Taken by `recv_run`.
            Done::Recv { .. } => {}
            Done::Send {
                index,
                generation,
                res,
            } => self.core.sent(index, generation, res),
            Done::Poll { more } => {
                if !more {
                    if let Some(ring) = self.core.ring.as_deref_mut() {
                        ring.poll_ended();
                    }
                }
                self.poll_sources()?;
            }
            Done::Cancelled => return Ok(()),
        }
        self.settle();
        Ok(())
    }

    #[cfg(not(rookery_uring))]
    fn complete(&mut self, done: Done) -> io::Result<()> {
        match done {}
    }

    /// The epoll descriptor polled on the ring was readable: its reports
    /// taken without waiting (which reads the wake-up eventfd), each extra
    /// source's acted on. Sources are level-triggered and the ring's poll
    /// fires on new readiness only, so a pass that found any looks again at
    /// the next.
    fn poll_sources(&mut self) -> io::Result<()> {
        self.events.clear();
        self.core
            .poller
            .wait(&mut self.events, Some(Duration::ZERO))?;
        #[cfg(feature = "redis")]
        {
            let ready = self.take_ready();
            let any = !ready.is_empty();
            for &(key, _, _) in &ready {
                if self.core.source_owns(key) {
                    self.core.source_ready(key);
                    self.settle();
                }
            }
            self.ready = ready;
            if let Some(ring) = self.core.ring.as_deref_mut() {
                ring.set_repoll(any);
            }
        }
        Ok(())
    }

    /// The receive completion at the head of `run`, and those right after
    /// it for the same connection while they fit in the read buffer: their
    /// bytes copied into the loop's read buffer side by side (each ring
    /// buffer given back at once) and read by the connection in one go, or
    /// held if it does not read now. A message larger than one ring buffer
    /// arrives as several completions in a row: together, it is read where
    /// it lies instead of being put together again in the connection's
    /// receive buffer. Returns how many completions after the head it took.
    #[cfg(rookery_uring)]
    fn recv_run(&mut self, run: &[Done]) -> usize {
        let Some(&Done::Recv {
            index,
            generation,
            res,
            bid,
            kept,
            mut more,
        }) = run.first()
        else {
            return 0;
        };
        let Some(ring) = self.core.ring.as_deref_mut() else {
            return 0;
        };
        let mut n = 0;
        if let (Some(bid), Ok(len)) = (bid, usize::try_from(res)) {
            n = ring.take(bid, kept, len, &mut self.read_buf);
        }
        let mut taken = 0;
        for next in &run[1..] {
            match *next {
                Done::Recv {
                    index: i,
                    generation: g,
                    res: r,
                    bid: Some(b),
                    kept: k,
                    more: m,
                } if more && res > 0 && i == index && g == generation && r > 0 => {
                    let len = usize::try_from(r).unwrap_or(usize::MAX);
                    if len > self.read_buf.len() - n {
                        break;
                    }
                    n += ring.take(b, k, len, &mut self.read_buf[n..]);
                    more = m;
                    taken += 1;
                }
                _ => break,
            }
        }
        self.recv_done(index, generation, res, n, more);
        taken
    }

    /// A receive of slot `index` ended with `res` (its `n` bytes are at the
    /// start of the read buffer): read by the connection, or held if it
    /// does not read now.
    #[cfg(rookery_uring)]
    fn recv_done(&mut self, index: usize, generation: u32, res: i32, n: usize, more: bool) {
        let id = self.core.receiver(index, generation);
        let Some(ring) = self.core.ring.as_deref_mut() else {
            return;
        };
        let Some(id) = id else {
            return;
        };
        let Some(slot) = self.core.slots.get_mut(id) else {
            return;
        };
        if !more {
            // Its last completion: armed again when it settles, if it
            // still reads.
            slot.io &= !(IO_RECV | IO_CANCELLING);
        }
        if res > 0 {
            self.core.stats.bytes_received += n as u64;
            let wants = slot.conn.wants_read(&self.core.settings);
            if wants && slot.io & IO_HELD == 0 {
                self.received(id, n);
            } else {
                // Behind bytes held earlier, or not wanted now: in order,
                // after them.
                ring.hold(id, &self.read_buf[..n]);
                slot.io |= IO_HELD;
                if wants {
                    self.read_held(id);
                }
            }
        } else if res == 0 {
            log::debug!("{id}: peer closed the connection");
            slot.conn.handle_eof();
        } else if res != -libc::ENOBUFS && res != -libc::ECANCELED {
            // ENOBUFS: the buffers ran out for a moment; ECANCELED: it
            // stopped reading. Either way it is armed again when it reads.
            log::debug!("{id}: read failed: {}", io::Error::from_raw_os_error(-res));
            slot.conn.handle_eof();
        }
        self.core.touch(id);
    }

    /// Hands the bytes held for `id` to its connection, as far as it reads.
    fn read_held(&mut self, id: ConnId) {
        let Some(held) = self
            .core
            .ring
            .as_deref_mut()
            .and_then(|ring| ring.take_held(id))
        else {
            return;
        };
        if let Some(slot) = self.core.slots.get_mut(id) {
            slot.io &= !IO_HELD;
        }
        let mut at = 0;
        while at < held.len() {
            let Some(slot) = self.core.slots.get_mut(id) else {
                return;
            };
            if !slot.conn.wants_read(&self.core.settings) {
                slot.io |= IO_HELD;
                if let Some(ring) = self.core.ring.as_deref_mut() {
                    ring.hold(id, &held[at..]);
                }
                break;
            }
            let n = (held.len() - at).min(self.read_buf.len());
            self.read_buf[..n].copy_from_slice(&held[at..at + n]);
            at += n;
            self.received(id, n);
        }
        self.core.touch(id);
    }

    /// Reads `n` bytes of the read buffer received for `id`: decrypted
    /// first on a TLS connection.
    fn received(&mut self, id: ConnId, n: usize) {
        #[cfg(feature = "tls")]
        if self
            .core
            .slots
            .get(id)
            .is_some_and(|slot| slot.tls.is_some())
        {
            self.read_tls(id, n);
            return;
        }
        feed(
            &mut self.core,
            &mut self.handler,
            &mut self.scratch,
            id,
            &mut self.read_buf[..n],
        );
    }
}
