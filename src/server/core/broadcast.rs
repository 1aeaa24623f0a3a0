//! Broadcasts and topic publications: each encoded once (and compressed
//! once, for the members that take permessage-deflate's shared window), as a
//! [`SharedFrame`], and appended at once to every member's output queue as a
//! reference to it. The member goes on the dirty list, whose queues the loop
//! writes before it settles what it touched ([`Core::flush_dirty`]): one
//! write per member per pass, and no settling for a member that a write
//! leaves as it was. Order is each member's queue's, so a member gets
//! exactly what was sent while it was one, in order with everything else it
//! is sent.

use super::*;

/// A member's queue that broadcasts filled to this size within one pass is
/// written at once, not when the pass settles it.
const WRITE_AT: usize = 64 * 1024;

impl Core {
    /// Sends a frame to every open connection. Returns the number of
    /// members.
    pub(crate) fn broadcast(&mut self, opcode: OpCode, payload: &[u8]) -> usize {
        let frame = SharedFrame::of(opcode, payload);
        let members = self.open_count;
        // By slot, not by a collected list of ids: no allocation per
        // broadcast. Appending never adds or removes a slot.
        for index in 0..self.slots.slot_count() {
            if let Some(id) = self.slots.id_at(index) {
                self.hand_frame(id, &frame);
            }
        }
        if opcode != OpCode::Ping {
            self.stats.messages_sent += members as u64;
        }
        members
    }

    /// Sends a frame to the members of topic `name`, as
    /// [`Core::broadcast`] does to everyone. Returns the number of members.
    pub(crate) fn publish(&mut self, name: &str, opcode: OpCode, payload: &[u8]) -> usize {
        let Some(topic) = self.topics.find(name) else {
            return 0;
        };
        let frame = SharedFrame::of(opcode, payload);
        let members = self.topics.members(topic).len();
        // A member that the backlog check closes stays in the topic until
        // it is removed, so the list does not change under the walk.
        for index in 0..members {
            if let Some(&id) = self.topics.members(topic).get(index) {
                self.hand_frame(id, &frame);
            }
        }
        self.stats.messages_sent += members as u64;
        members
    }

    /// Appends a broadcast frame to the output of `id`, if it is open:
    /// behind its paced feed if it has one, else to its queue (as a
    /// reference, under the backlog cap).
    #[inline]
    fn hand_frame(&mut self, id: ConnId, frame: &SharedFrame) {
        let Some(slot) = self.slots.get_mut(id) else {
            return;
        };
        if !slot.conn.is_open() {
            return;
        }
        if slot.fed {
            let bytes = slot.conn.shared_bytes(&mut self.codec, frame);
            feed_live(slot, id, &mut self.feeds, &self.settings, self.now, bytes);
            touch_slot(slot, id, &mut self.touched, &mut self.open_count);
            return;
        }
        let _ = slot
            .conn
            .send_shared(&self.settings, self.now, &mut self.codec, frame);
        if slot.conn.backlog() >= WRITE_AT && !slot.conn.wants_write() {
            // A burst in one callback: written as it grows, so that a
            // member that keeps up holds at most this much of it.
            transmit::flush(slot, &self.settings, self.now, &mut self.stats, &[], None);
        }
        if !slot.conn.is_open() {
            // Closed for its backlog: settled, as any close is.
            touch_slot(slot, id, &mut self.touched, &mut self.open_count);
        } else if !slot.dirty {
            slot.dirty = true;
            self.dirty.push(id);
        }
    }

    /// Subscribes a live connection to a topic (it receives publications
    /// once it is open): it gets only what is published while it is a
    /// member. `Ok(false)` if it already was.
    pub(crate) fn subscribe(&mut self, id: ConnId, name: &str) -> Result<bool, SendError> {
        if self.slots.get(id).is_none() {
            return Err(SendError::NotOpen);
        }
        Ok(self.topics.subscribe(id, name))
    }

    /// Unsubscribes a connection from a topic. `Ok(false)` if it was not
    /// subscribed.
    pub(crate) fn unsubscribe(&mut self, id: ConnId, name: &str) -> Result<bool, SendError> {
        if self.slots.get(id).is_none() {
            return Err(SendError::NotOpen);
        }
        Ok(self.topics.unsubscribe(id, name))
    }
}
