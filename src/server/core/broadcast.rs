//! Broadcasts and topic publications: gathered as plain frames in the
//! loop-wide batch, written to each member with one `sendmsg` (see
//! [`Core::flush_batch`]), and compressed once for the members that take
//! permessage-deflate (`server::batch`).

use super::*;

impl Core {
    /// Queues a broadcast frame for every open connection. Consecutive
    /// broadcasts gather in one buffer, written to each member with one
    /// `sendmsg` once the current event is handled, or before anything else
    /// is sent or any connection joins or leaves (see [`Core::flush_batch`]).
    /// Returns the number of members.
    pub(crate) fn broadcast(&mut self, opcode: OpCode, payload: &[u8]) -> usize {
        if self.batch_topic.is_some() {
            // A batch for one topic first: order is kept across targets.
            self.flush_batch();
        }
        let header = ServerHeader::new(true, opcode, payload.len());
        self.batch.extend_from_slice(header.as_bytes());
        self.batch.extend_from_slice(payload);
        if self.batch.len() >= BATCH_LIMIT {
            self.flush_batch();
        }
        if opcode != OpCode::Ping {
            self.stats.messages_sent += self.open_count as u64;
        }
        self.open_count
    }

    /// Queues a frame for the members of topic `name`, as
    /// [`Core::broadcast`] does for everyone: consecutive publications to
    /// the same topic gather in the batch; one to another topic (or a
    /// broadcast) writes the batch first, so every member receives what it
    /// is sent in the order it was sent. Returns the number of members.
    pub(crate) fn publish(&mut self, name: &str, opcode: OpCode, payload: &[u8]) -> usize {
        let Some(topic) = self.topics.find(name) else {
            return 0;
        };
        if self.batch_topic != Some(topic) {
            self.flush_batch();
            self.batch_topic = Some(topic);
        }
        let header = ServerHeader::new(true, opcode, payload.len());
        self.batch.extend_from_slice(header.as_bytes());
        self.batch.extend_from_slice(payload);
        let members = self.topics.members(topic).len();
        self.stats.messages_sent += members as u64;
        if self.batch.len() >= BATCH_LIMIT {
            self.flush_batch();
        }
        members
    }

    /// Subscribes a live connection to a topic (it receives publications
    /// once it is open), after
    /// writing what was published before: a member gets only what is
    /// published while it is one. `Ok(false)` if it already was.
    pub(crate) fn subscribe(&mut self, id: ConnId, name: &str) -> Result<bool, SendError> {
        if self.slots.get(id).is_none() {
            return Err(SendError::NotOpen);
        }
        self.flush_batch();
        Ok(self.topics.subscribe(id, name))
    }

    /// Unsubscribes a connection from a topic, after writing what was
    /// published to it before. `Ok(false)` if it was not subscribed.
    pub(crate) fn unsubscribe(&mut self, id: ConnId, name: &str) -> Result<bool, SendError> {
        if self.slots.get(id).is_none() {
            return Err(SendError::NotOpen);
        }
        self.flush_batch();
        Ok(self.topics.unsubscribe(id, name))
    }

    /// Before the input of `id` is read on: queues for it the broadcasts made
    /// since it was last given them. Its input may close it (a close frame,
    /// a protocol error), and a member that leaves must have had every
    /// broadcast made while it was one, before its close frame; the others
    /// get the batch when it is flushed.
    #[inline]
    pub(crate) fn hand_batch_to(&mut self, id: ConnId) {
        // Inlined tests, outlined work: it runs before every frame read, and
        // almost always there is no batch (then whoever reads has had it
        // all: a store, not a call) or the connection has had it.
        if self.batch.is_empty() {
            self.batch_given = Some((id, 0));
            return;
        }
        if matches!(self.batch_given, Some((given, n)) if given == id && n == self.batch.len()) {
            return;
        }
        self.hand_batch_now(id);
    }

    #[inline(never)]
    fn hand_batch_now(&mut self, id: ConnId) {
        let given = match self.batch_given {
            Some((given, n)) if given == id => n,
            _ => {
                if !self.batch.is_empty() {
                    // Another connection's turn: everyone gets the batch now.
                    self.flush_batch();
                }
                self.batch_given = Some((id, 0));
                return;
            }
        };
        // `hand_batch_to` returned already if `id` has had the whole batch.
        let for_it = match self.batch_topic {
            None => true,
            Some(topic) => self.topics.is_member(id, topic),
        };
        let Some(slot) = self.slots.get_mut(id) else {
            return;
        };
        if for_it && slot.conn.is_open() {
            let frames = if slot.conn.takes_shared_deflate() {
                self.deflated.since(&mut self.codec, &self.batch, given)
            } else {
                &self.batch[given..]
            };
            if slot.fed {
                let bytes = Rc::from(frames);
                feed_live(slot, id, &mut self.feeds, &self.settings, self.now, bytes);
            } else {
                slot.conn.send_frames(&self.settings, self.now, frames);
            }
        }
        self.batch_given = Some((id, self.batch.len()));
    }

    /// Writes the gathered broadcasts to every open connection: encoded once,
    /// one `sendmsg` per member, and for a member whose socket refuses part
    /// of it, one shared buffer referenced from its queue.
    ///
    /// Called before any other send and before any connection joins or
    /// leaves the open set, so every member receives exactly the broadcasts
    /// made while it was open, in order with everything else it is sent.
    #[inline]
    pub(crate) fn flush_batch(&mut self) {
        // Inlined test, outlined work: every send asks, few have to flush.
        if !self.batch.is_empty() {
            self.write_batch();
        }
    }

    #[inline(never)]
    fn write_batch(&mut self) {
        let batch = std::mem::take(&mut self.batch);
        let given = self.batch_given.take();
        let topic = self.batch_topic.take();
        let mut shared: Option<Rc<[u8]>> = None;
        let mut shared_deflated: Option<Rc<[u8]>> = None;
        // By slot (or by the topic's member list), not by a collected list
        // of ids: no allocation per batch. A write may finish a connection,
        // never add or remove one, nor change a topic.
        let count = match topic {
            None => self.slots.slot_count(),
            Some(topic) => self.topics.members(topic).len(),
        };
        for index in 0..count {
            let id = match topic {
                None => self.slots.id_at(index),
                Some(topic) => self.topics.members(topic).get(index).copied(),
            };
            let Some(id) = id else {
                continue;
            };
            let Some(slot) = self.slots.get_mut(id) else {
                continue;
            };
            if !slot.conn.is_open() {
                continue;
            }
            let from = match given {
                Some((given, n)) if given == id => n,
                _ => 0,
            };
            if from == batch.len() {
                continue;
            }
            let (frames, shared) = if slot.conn.takes_shared_deflate() {
                let frames = self.deflated.since(&mut self.codec, &batch, from);
                (frames, &mut shared_deflated)
            } else {
                (&batch[from..], &mut shared)
            };
            if slot.fed {
                // Behind its paced feed, as one shared buffer for every
                // member that has one.
                let bytes = if from == 0 {
                    Rc::clone(shared.get_or_insert_with(|| Rc::from(frames)))
                } else {
                    Rc::from(frames)
                };
                feed_live(slot, id, &mut self.feeds, &self.settings, self.now, bytes);
                self.touch(id);
                continue;
            }
            let shared = if from == 0 { Some(shared) } else { None };
            transmit::flush(
                slot,
                &self.settings,
                self.now,
                &mut self.stats,
                &[frames],
                shared,
            );
            let wants_write = slot.conn.wants_write() || slot.tls_wants_write();
            // On the ring the batch was only queued: the pass's sends take it.
            if !slot.conn.is_open()
                || wants_write != (slot.interest & WRITE != 0)
                || slot.io & IO_URING != 0
            {
                self.touch(id);
            }
        }
        if let Some((id, _)) = given {
            self.batch_given = Some((id, 0));
        }
        self.deflated.clear();
        let mut batch = batch;
        batch.clear();
        if batch.capacity() <= BATCH_KEEP && self.batch.capacity() == 0 {
            self.batch = batch;
        }
    }
}
