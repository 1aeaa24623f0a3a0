//! Broadcasts and topic publications: each encoded once, side by side with
//! the others of the pass in a shared [`Block`] (and compressed once, into
//! a block of its own kind, for the members that take permessage-deflate's
//! shared window), and appended at once to every member's output queue as
//! a range of that block: consecutive broadcasts extend one range, so a
//! member's write covers them with one slice. The member goes on the dirty
//! list, whose queues the loop writes before it settles what it touched
//! ([`Core::flush_dirty`]): one write per member per pass, and no settling
//! for a member that a write leaves as it was. Order is each member's
//! queue's, so a member gets exactly what was sent while it was one, in
//! order with everything else it is sent.

use std::ops::Range;

use crate::proto::block::{Block, Live};

use super::super::topics::TopicId;

use super::*;

/// A member's queue that broadcasts filled to this size within one pass is
/// written at once, not when the pass settles it.
const WRITE_AT: usize = 64 * 1024;

/// The size of a block broadcasts are encoded in; a frame over a quarter
/// of it gets a block of its own size.
const BLOCK: usize = 16 * 1024;

/// The blocks the next broadcasts are encoded in, plain and compressed.
#[derive(Debug, Default)]
pub(super) struct Blocks {
    plain: Option<Rc<Block>>,
    deflated: Option<Rc<Block>>,
    /// Where a frame is compressed before it is put in its block.
    scratch: Vec<u8>,
}

/// Compressed output kept in `Blocks::scratch` between broadcasts.
const SCRATCH_KEEP: usize = 64 * 1024;

/// One broadcast, encoded: plain, compressed once the first member that
/// takes it needs it, and as one buffer for members with a paced feed.
struct Encoded {
    plain: (Rc<Block>, Range<usize>),
    deflated: Option<(Rc<Block>, Range<usize>)>,
    /// `Rc<[u8]>` copies (plain, compressed) for members with a paced feed.
    fed: [Option<Rc<[u8]>>; 2],
}

/// Appends `parts` to the block `current`, or to a new one: its own if the
/// frame is large, else a fresh [`BLOCK`] that becomes current.
fn put(current: &mut Option<Rc<Block>>, parts: &[&[u8]]) -> (Rc<Block>, Range<usize>) {
    if let Some(block) = current.as_ref() {
        if let Some(range) = block.append(parts) {
            return (Rc::clone(block), range);
        }
    }
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let block = Rc::new(Block::with_capacity(if total > BLOCK / 4 {
        total
    } else {
        BLOCK
    }));
    // A new block of at least `total` bytes takes them.
    let range = block.append(parts).unwrap_or_default();
    if total <= BLOCK / 4 {
        *current = Some(Rc::clone(&block));
    }
    (block, range)
}

impl Blocks {
    /// Encodes a frame in the plain block.
    fn encode(&mut self, opcode: OpCode, payload: &[u8]) -> Encoded {
        let header = ServerHeader::new(true, opcode, payload.len());
        Encoded {
            plain: put(&mut self.plain, &[header.as_bytes(), payload]),
            deflated: None,
            fed: [None, None],
        }
    }

    /// The compressed frame of `plain`, in the compressed block, or `plain`
    /// itself when compressing does not make it smaller (or it is a control
    /// frame, which is never compressed).
    fn deflate(
        &mut self,
        codec: &mut Codec,
        plain: &(Rc<Block>, Range<usize>),
    ) -> (Rc<Block>, Range<usize>) {
        let frame = plain.0.get(plain.1.clone());
        self.scratch.clear();
        codec.compress_frame(frame, &mut self.scratch);
        let result = if self.scratch.len() < frame.len() {
            put(&mut self.deflated, &[&self.scratch])
        } else {
            (Rc::clone(&plain.0), plain.1.clone())
        };
        if self.scratch.capacity() > SCRATCH_KEEP {
            self.scratch = Vec::new();
        }
        result
    }
}

impl Core {
    /// Sends a frame to every open connection. Returns the number of
    /// members.
    pub(crate) fn broadcast(&mut self, opcode: OpCode, payload: &[u8]) -> usize {
        let mut frame = self.blocks.encode(opcode, payload);
        let members = self.open_count;
        let block = Rc::clone(&frame.plain.0);
        let ping = block.get(frame.plain.1.clone());
        // By slot, not by a collected list of ids: no allocation per
        // broadcast. Appending never adds or removes a slot.
        for index in 0..self.slots.slot_count() {
            let Some(id) = self.slots.id_at(index) else {
                continue;
            };
            if opcode == OpCode::Ping {
                if let Some(slot) = self.slots.get_mut(id) {
                    // The keep-alive ping goes to everyone at once, most
                    // of them idle: written now to a member with nothing
                    // queued (one `sendmsg`, which the batch made too), so
                    // that 10,000 idle members do not each take a queue
                    // for two bytes until the pass ends.
                    if slot.io == 0
                        && !slot.fed
                        && slot.conn.is_open()
                        && !slot.conn.has_output()
                        && !slot.conn.wants_write()
                    {
                        transmit::flush(
                            slot,
                            &self.settings,
                            self.now,
                            &mut self.stats,
                            &[ping],
                            None,
                        );
                        if !slot.conn.is_open() || slot.conn.wants_write() {
                            touch_slot(slot, id, &mut self.touched, &mut self.open_count);
                        }
                        continue;
                    }
                }
            }
            self.hand_frame(id, &mut frame);
        }
        if opcode != OpCode::Ping {
            self.stats.messages_sent += members as u64;
        }
        members
    }

    /// Sends a frame to the members of topic `name`, as
    /// [`Core::broadcast`] does to everyone. Returns the number of members.
    ///
    /// Members that keep up are attached to the topic's live range in the
    /// block (`proto::block::Live`): a publication that continues it, with
    /// no member detached or changed since, extends it and reaches all of
    /// them at once; only the others (behind, with a paced feed, taking
    /// compressed frames) are visited. Otherwise every member is visited
    /// and attached again. A queue seals its attachment before anything
    /// else is queued for it, so each member's order is its queue's.
    pub(crate) fn publish(&mut self, name: &str, opcode: OpCode, payload: &[u8]) -> usize {
        let Some(topic) = self.topics.find(name) else {
            return 0;
        };
        let mut frame = self.blocks.encode(opcode, payload);
        let (block, range) = (Rc::clone(&frame.plain.0), frame.plain.1.clone());
        let round = self.round;
        let Some((members, delivery)) = self.topics.delivery(topic) else {
            return 0;
        };
        let members = members.len();
        // The round's live range, if this frame continues it.
        let continued = match &delivery.live {
            Some((live, made))
                if *made == round
                    && Rc::ptr_eq(live.block(), &block)
                    && live.end() == range.start =>
            {
                Some(Rc::clone(live))
            }
            _ => None,
        };
        let mut others = std::mem::take(&mut delivery.others);
        let renewed = match continued {
            Some(live) if !live.is_detached() => {
                live.extend_to(range.end);
                for &id in &others {
                    self.hand_frame(id, &mut frame);
                }
                None
            }
            continued => {
                let live = continued.unwrap_or_else(|| Rc::new(Live::new(&block, range.start)));
                live.extend_to(range.end);
                live.reattached();
                others.clear();
                self.visit_members(topic, &live, range.start, &mut frame, &mut others);
                Some(live)
            }
        };
        // Membership does not change under the walks: a member closed for
        // its backlog stays until it is removed.
        if let Some((_, delivery)) = self.topics.delivery(topic) {
            delivery.others = others;
            if let Some(live) = renewed {
                delivery.live = Some((live, round));
            }
        }
        self.stats.messages_sent += members as u64;
        members
    }

    /// Attaches every member of `topic` that keeps up to `live` from
    /// `start` (unless it still is), and hands the frame to the others,
    /// which it lists in `others`.
    fn visit_members(
        &mut self,
        topic: TopicId,
        live: &Rc<Live>,
        start: usize,
        frame: &mut Encoded,
        others: &mut Vec<ConnId>,
    ) {
        for index in 0..self.topics.members(topic).len() {
            let Some(&id) = self.topics.members(topic).get(index) else {
                continue;
            };
            let Some(slot) = self.slots.get_mut(id) else {
                continue;
            };
            if slot.conn.is_attached_to(live) {
                continue;
            }
            if !slot.fed && !slot.conn.takes_shared_deflate() && slot.conn.attach(live, start) {
                if slot.conn.backlog() >= WRITE_AT {
                    // A burst in one callback, sealed block by block:
                    // written as it grows (see `WRITE_AT`).
                    transmit::flush(slot, &self.settings, self.now, &mut self.stats, &[], None);
                    if !slot.conn.is_open() {
                        touch_slot(slot, id, &mut self.touched, &mut self.open_count);
                        continue;
                    }
                }
                if !slot.dirty {
                    slot.dirty = true;
                    self.dirty.push(id);
                }
                continue;
            }
            others.push(id);
            self.hand_frame(id, frame);
        }
    }

    /// Appends a broadcast frame to the output of `id`, if it is open:
    /// behind its paced feed if it has one, else to its queue (a range of
    /// the frame's block, under the backlog cap), and puts it on the dirty
    /// list. This runs for every member of every broadcast: the common case
    /// (the member got the broadcast before, in the same block, and has not
    /// been written since) extends its last range and is done.
    #[inline(always)]
    fn hand_frame(&mut self, id: ConnId, frame: &mut Encoded) {
        let Some(slot) = self.slots.get_mut(id) else {
            return;
        };
        let deflate = slot.conn.takes_shared_deflate();
        let span = match &frame.deflated {
            Some(deflated) if deflate => Some(deflated),
            _ if deflate => None,
            _ => Some(&frame.plain),
        };
        if let Some((block, range)) = span {
            // On the dirty list already: it has output, not yet written.
            if slot.dirty && slot.conn.extend_span(block, range.clone()) {
                return;
            }
        }
        self.hand_frame_slowly(id, frame);
    }

    /// [`Core::hand_frame`] for the other cases.
    #[inline(never)]
    fn hand_frame_slowly(&mut self, id: ConnId, frame: &mut Encoded) {
        let Some(slot) = self.slots.get_mut(id) else {
            return;
        };
        if !slot.conn.is_open() {
            return;
        }
        let deflate = slot.conn.takes_shared_deflate();
        if deflate && frame.deflated.is_none() {
            frame.deflated = Some(self.blocks.deflate(&mut self.codec, &frame.plain));
        }
        let (block, range) = match &frame.deflated {
            Some(deflated) if deflate => deflated,
            _ => &frame.plain,
        };
        if slot.fed {
            let bytes = frame.fed[usize::from(deflate)]
                .get_or_insert_with(|| Rc::from(block.get(range.clone())));
            let bytes = Rc::clone(bytes);
            feed_live(slot, id, &mut self.feeds, &self.settings, self.now, bytes);
            touch_slot(slot, id, &mut self.touched, &mut self.open_count);
            return;
        }
        slot.conn
            .send_span(&self.settings, self.now, block, range.clone());
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
        let Some(slot) = self.slots.get_mut(id) else {
            return Err(SendError::NotOpen);
        };
        // It owes what was published while it was a member, no more.
        slot.conn.seal(&self.settings, self.now);
        Ok(self.topics.unsubscribe(id, name))
    }
}
