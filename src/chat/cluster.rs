//! The chat's side of a cluster (feature `redis`, SPEC §12): offsets and
//! history are the cluster's. A member's message goes to the cluster,
//! which numbers it and hands it back to every node, this one too, as a
//! [`ClusterEvent::Message`]: each node delivers a room's messages in that
//! order and keeps them in the room's history under the cluster's epoch.
//! A member joining a room this node does not know well enough (a room new
//! here, a node restarted, a position the local history cannot serve) is
//! parked until the room's log comes from the cluster
//! ([`Context::read_log`]): nothing is sent to it meanwhile, and what the
//! room says meanwhile is kept in its history, so that it follows the
//! replay with nothing lost or repeated at the seam. While Redis is away a
//! room counts under an epoch of this node's own; each switch of epoch
//! reaches `rookery.v1` members as a `gap`.

use std::collections::HashMap;
use std::sync::Arc;

use log::debug;

use super::{envelope, Chat, Delivery};
use crate::server::{ClusterEvent, Epoch, History, Numbered, Since, TopicLog};
use crate::{ConnId, Context, Message};

/// Members waiting for their room's log, by the token of the read: one
/// read per room at a time, however many join meanwhile.
#[derive(Debug, Default)]
pub(super) struct Parked {
    waiting: HashMap<u64, Vec<Waiting>>,
    /// The read under way for a room.
    reading: HashMap<Arc<str>, u64>,
    next_token: u64,
}

/// One member waiting for its room's log.
#[derive(Debug)]
struct Waiting {
    conn: ConnId,
    v1: bool,
    since: Option<Since>,
}

/// `Some(whether Redis can be reached)` with a cluster, `None` without.
pub(super) fn reachable(ctx: &Context<'_>) -> Option<bool> {
    ctx.redis_status().map(|s| s.numbering)
}

/// Tells room's `rookery.v1` members here that their count starts again
/// (or skips): `gap` at `epoch`:`last`.
fn gap_to_members(ctx: &mut Context<'_>, v1_topic: &str, epoch: &Epoch, last: u64) {
    if ctx.subscribers(v1_topic) > 0 {
        ctx.publish_local(v1_topic, Message::Text(&envelope::gap(epoch, last)));
    }
}

impl Chat {
    /// A member's message with a cluster: to the cluster if it can be
    /// reached (delivered when it comes back numbered), else to the room's
    /// members here under this node's own epoch, and queued for the
    /// cluster marked as delivered here.
    pub(super) fn relay_clustered(
        &mut self,
        ctx: &mut Context<'_>,
        name: &str,
        msg: Message<'_>,
        reachable: bool,
    ) -> usize {
        if reachable {
            ctx.publish_numbered(name, msg, false);
            return 0;
        }
        let sent = self.deliver_here(ctx, name, msg);
        ctx.publish_numbered(name, msg, true);
        sent
    }

    /// Delivers a message to room `name`'s members here, under this
    /// node's own epoch (made now if the room counted the cluster's).
    fn deliver_here(&mut self, ctx: &mut Context<'_>, name: &str, msg: Message<'_>) -> usize {
        if let Some(room) = self.rooms.get_mut(name) {
            if room.cluster_epoch {
                let epoch = Epoch::random();
                debug!("room '{name}': Redis away, counting under this node's epoch {epoch}");
                room.restart(epoch.clone(), 0);
                room.cluster_epoch = false;
                room.synced = false;
                gap_to_members(ctx, &room.v1_topic, &epoch, 0);
            }
        }
        self.deliver(ctx, name, msg, Delivery::Here)
    }

    /// Parks a member joining `name` if the room's log must come from the
    /// cluster first: `None` then (it is served when the log comes), else
    /// `Some(since)` to serve it now.
    pub(super) fn park(
        &mut self,
        ctx: &mut Context<'_>,
        conn: ConnId,
        name: &Arc<str>,
        v1: bool,
        since: Option<Since>,
    ) -> Option<Option<Since>> {
        if reachable(ctx) != Some(true) {
            return Some(since);
        }
        let Some(room) = self.rooms.get_mut(name) else {
            return Some(since);
        };
        let served_here = match &since {
            Some(since) => room.envelopes.after(since).is_some(),
            None => room.synced,
        };
        if served_here {
            return Some(since);
        }
        let token = match self.parked.reading.get(name) {
            Some(&token) => token,
            None => {
                let token = self.parked.next_token;
                if !ctx.read_log(name, token) {
                    return Some(since);
                }
                self.parked.next_token += 1;
                self.parked.reading.insert(Arc::clone(name), token);
                token
            }
        };
        debug!("{conn}: waiting for the log of '{name}' from Redis");
        let waiting = Waiting { conn, v1, since };
        self.parked.waiting.entry(token).or_default().push(waiting);
        None
    }

    /// What the cluster hands the chat.
    pub(super) fn cluster_event(&mut self, ctx: &mut Context<'_>, event: ClusterEvent) {
        match event {
            ClusterEvent::Message(m) => self.numbered(ctx, &m),
            ClusterEvent::Log { token, topic, log } => self.log_came(ctx, token, &topic, log),
            ClusterEvent::Returned {
                topic,
                binary,
                payload,
            } => {
                let msg = ClusterEvent::returned_message(binary, &payload);
                self.deliver_here(ctx, &topic, msg);
            }
        }
    }

    /// A message numbered by the cluster: delivered to its room's members
    /// here and kept, at its offset. One this node had is skipped; one
    /// after a hole, or of another epoch, starts the room's count again
    /// there (its `rookery.v1` members are told: `gap`).
    fn numbered(&mut self, ctx: &mut Context<'_>, m: &Numbered) {
        let Some(room) = self.rooms.get_mut(m.topic.as_str()) else {
            // No member and no history here: nothing to deliver or keep
            // (the cluster keeps it for whoever joins).
            return;
        };
        let same = room.history.epoch() == &m.epoch;
        let last = room.history.last_offset();
        if same && m.offset <= last {
            return;
        }
        if !same || m.offset != last + 1 {
            let before = m.offset.saturating_sub(1);
            room.restart(m.epoch.clone(), before);
            room.cluster_epoch = true;
            // Its history no longer runs back as far as the cluster's.
            room.synced = before == 0;
            gap_to_members(ctx, &room.v1_topic, &m.epoch, before);
        }
        self.deliver(ctx, &m.topic, m.message(), Delivery::Here);
    }

    /// A room's log came for parked members: the room takes it up if it
    /// is newer than what this node holds, and the members are served.
    fn log_came(&mut self, ctx: &mut Context<'_>, token: u64, topic: &str, log: Option<TopicLog>) {
        let Some(waiting) = self.parked.waiting.remove(&token) else {
            return;
        };
        self.parked.reading.remove(topic);
        match &log {
            Some(log) => self.take_up(ctx, topic, log),
            None => debug!("no log of '{topic}' from Redis: its newcomers are served from here"),
        }
        for w in waiting {
            // Not if it closed meanwhile.
            if self.member_of.get(&w.conn).is_some_and(|n| &**n == topic) {
                self.serve(ctx, w.conn, topic, w.v1, w.since);
            }
        }
    }

    /// Makes room `name`'s history the cluster's `log`, merged with what
    /// the room holds of the same epoch (the log's older messages before,
    /// its newer ones after). Messages of the same epoch newer than what
    /// the room had reach its members here now (their copies from pub/sub,
    /// if they come later, are then old and skipped).
    fn take_up(&mut self, ctx: &mut Context<'_>, name: &str, log: &TopicLog) {
        let Some(room) = self.rooms.get_mut(name) else {
            return;
        };
        let same = room.cluster_epoch && room.history.epoch() == &log.epoch;
        let had = room.history.last_offset();
        let held_from = room.history.first_offset();
        let log_from = log.entries.first().map_or(log.last + 1, |e| e.0);
        if same && log.last <= had && log_from >= held_from {
            room.synced = true;
            return;
        }
        if !same || log_from > had + 1 {
            // Its members cannot be given all that came since they last
            // heard: they start again from the log's latest.
            gap_to_members(ctx, &room.v1_topic, &log.epoch, log.last);
        }
        let old = same.then(|| (room.history.clone(), room.envelopes.clone()));
        let from = if same {
            log_from.min(held_from)
        } else {
            log_from
        };
        room.restart(log.epoch.clone(), from.saturating_sub(1));
        room.cluster_epoch = true;
        room.synced = true;
        let mut old = old.filter(|(plain, _)| !plain.is_empty());
        for (offset, msg) in log.messages() {
            if old.is_some() && (held_from..=had).contains(&offset) {
                continue; // The room's own copy goes in instead.
            }
            if offset > had {
                if let Some((plain, envelopes)) = old.take() {
                    self.keep_held(name, &plain, &envelopes);
                }
            }
            let Some(room) = self.rooms.get_mut(name) else {
                return;
            };
            if offset != room.history.next_offset() {
                room.restart(log.epoch.clone(), offset.saturating_sub(1));
            }
            let how = if same && offset > had {
                Delivery::Here
            } else {
                Delivery::Keep
            };
            self.deliver(ctx, name, msg, how);
        }
        if let Some((plain, envelopes)) = old.take() {
            self.keep_held(name, &plain, &envelopes);
        }
        if let Some(room) = self.rooms.get_mut(name) {
            if room.history.last_offset() < log.last {
                // No history kept in Redis (`--history 0`): the count only.
                room.restart(log.epoch.clone(), log.last);
            }
        }
    }

    /// Puts back what room `name` held (`plain` and `envelopes`, in step)
    /// after what the log gave of older messages.
    fn keep_held(&mut self, name: &str, plain: &History, envelopes: &History) {
        let Some(room) = self.rooms.get_mut(name) else {
            return;
        };
        if plain.first_offset() != room.history.next_offset() {
            room.restart(
                plain.epoch().clone(),
                plain.first_offset().saturating_sub(1),
            );
        }
        for (p, e) in plain.iter().zip(envelopes.iter()) {
            room.history.push_frame(p.clone());
            room.envelopes.push_frame(e.clone());
        }
    }
}
