//! The chat's rooms: how many members each has, its history, and when a
//! room with history but no members is forgotten.
//!
//! A room exists while it has members or history. One without either goes
//! when its last member leaves; one with history but no members is *idle*:
//! it is forgotten once it has been idle for the TTL (the chat sweeps with a
//! server timer, armed for the next room due, never by a scan per message),
//! or sooner when a new room would pass the most rooms allowed, the least
//! recently used idle room first. Idle rooms are kept in the order they
//! became idle, so that room is the first one, and so is the next to
//! expire. The default room (`""`) is not counted against the limit and
//! never refused.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::server::History;

/// One room.
#[derive(Debug)]
pub(super) struct Room {
    pub(super) members: usize,
    /// Its messages as plain frames; its epoch and offsets are the room's.
    pub(super) history: History,
    /// The same messages as `rookery.v1` envelopes, kept in step with
    /// `history` (same epoch, same offsets), each encoded once when kept.
    pub(super) envelopes: History,
    /// The topic of its `rookery.v1` members.
    pub(super) v1_topic: Arc<str>,
    /// Whether a `rookery.v1` member ever joined it (then envelopes are
    /// compressed, with permessage-deflate, when kept; else on first use).
    pub(super) v1_seen: bool,
    /// With a cluster: its history is the cluster's latest messages, in
    /// the cluster's epoch (read from the cluster, or kept since without a
    /// hole), so a newcomer can be served from it.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(super) synced: bool,
    /// With a cluster: its epoch is the cluster's (else this node's own,
    /// as while Redis is away).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(super) cluster_epoch: bool,
    /// Its key among the idle rooms, while it is one.
    idle: Option<u64>,
}

impl Room {
    /// Starts both histories again, empty, in `epoch`, the next message
    /// to get offset `last + 1` (a cluster's count taken up, or a count of
    /// this node's own).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(super) fn restart(&mut self, epoch: crate::server::Epoch, last: u64) {
        let capacity = self.history.capacity();
        self.envelopes = History::resumed_at(capacity, epoch.clone(), last);
        self.history = History::resumed_at(capacity, epoch, last);
    }
}

/// Every room, and the idle ones in the order they became idle.
#[derive(Debug)]
pub(super) struct Rooms {
    /// By name; the name is shared with the chat's map of members, so a
    /// member costs no allocation of its own.
    rooms: HashMap<Arc<str>, Room>,
    /// Idle rooms by a number that grows with each: (name, since when).
    idle: BTreeMap<u64, (Arc<str>, Instant)>,
    next_idle: u64,
    max_rooms: usize,
    /// Messages each room keeps.
    history: usize,
    /// How long an idle room is kept (zero: until it must make way).
    ttl: Duration,
}

impl Rooms {
    pub(super) fn new(max_rooms: usize, history: usize, ttl: Duration) -> Rooms {
        Rooms {
            rooms: HashMap::new(),
            idle: BTreeMap::new(),
            next_idle: 0,
            max_rooms,
            history,
            ttl,
        }
    }

    /// How many rooms exist.
    pub(super) fn len(&self) -> usize {
        self.rooms.len()
    }

    /// How many rooms are idle (history, no members).
    #[cfg(test)]
    pub(super) fn idle_count(&self) -> usize {
        self.idle.len()
    }

    /// How long an idle room is kept (zero: until it must make way).
    pub(super) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The most rooms at once (the default room aside).
    pub(super) fn max_rooms(&self) -> usize {
        self.max_rooms
    }

    /// Messages each room keeps.
    pub(super) fn history_capacity(&self) -> usize {
        self.history
    }

    /// Whether `name` exists.
    #[cfg(test)]
    pub(super) fn contains(&self, name: &str) -> bool {
        self.rooms.contains_key(name)
    }

    /// Whether a member may join `name`: the room exists, or it is the
    /// default room, or there is room for one more, if need be once the
    /// least recently used idle room is forgotten. `false`: every room has
    /// members (the upgrade gets 503).
    pub(super) fn admit(&mut self, name: &str) -> bool {
        let named = self.rooms.len() - usize::from(self.rooms.contains_key(""));
        if name.is_empty() || named < self.max_rooms || self.rooms.contains_key(name) {
            return true;
        }
        // The default room is not counted: forgetting it makes no place.
        let victim = self
            .idle
            .iter()
            .find(|(_, (name, _))| !name.is_empty())
            .map(|(&key, _)| key);
        match victim.and_then(|key| self.idle.remove(&key)) {
            Some((victim, _)) => {
                log::debug!(
                    "forgetting idle room '{victim}' to make way for a new one ({} rooms)",
                    self.rooms.len()
                );
                self.rooms.remove(&victim);
                true
            }
            None => false,
        }
    }

    /// A member joins `name` (the room is made if need be, with a new
    /// epoch): the room's own name, to share, and the room.
    pub(super) fn join(&mut self, name: &str) -> (Arc<str>, &mut Room) {
        let name = match self.rooms.get_key_value(name) {
            Some((known, _)) => Arc::clone(known),
            None => Arc::from(name),
        };
        let history = self.history;
        let room = self.rooms.entry(Arc::clone(&name)).or_insert_with(|| {
            let plain = History::new(history);
            Room {
                members: 0,
                envelopes: History::with_epoch(history, plain.epoch().clone()),
                history: plain,
                v1_topic: super::envelope::topic(&name).into(),
                v1_seen: false,
                synced: false,
                cluster_epoch: false,
                idle: None,
            }
        });
        if let Some(key) = room.idle.take() {
            self.idle.remove(&key);
        }
        room.members += 1;
        (name, room)
    }

    /// A member leaves `name` at `now`. A room left without members goes
    /// if it has no history, else becomes idle: `true` then.
    pub(super) fn leave(&mut self, name: &Arc<str>, now: Instant) -> bool {
        let Some(room) = self.rooms.get_mut(&**name) else {
            return false;
        };
        room.members = room.members.saturating_sub(1);
        if room.members > 0 {
            return false;
        }
        if room.history.is_empty() {
            self.rooms.remove(&**name);
            return false;
        }
        let key = self.next_idle;
        self.next_idle += 1;
        room.idle = Some(key);
        self.idle.insert(key, (Arc::clone(name), now));
        true
    }

    /// The room `name`, to keep a message in, if it exists.
    pub(super) fn get_mut(&mut self, name: &str) -> Option<&mut Room> {
        self.rooms.get_mut(name)
    }

    /// Forgets every room idle for the TTL or longer at `now`; returns when
    /// the next idle room is due, if any (and the TTL is on).
    pub(super) fn expire(&mut self, now: Instant) -> Option<Instant> {
        if self.ttl.is_zero() {
            return None;
        }
        while let Some(entry) = self.idle.first_entry() {
            // A TTL past what an `Instant` can hold is never.
            let due = entry.get().1.checked_add(self.ttl)?;
            if due > now {
                return Some(due);
            }
            let (name, _) = entry.remove();
            log::debug!("forgetting room '{name}': idle for {:?}", self.ttl);
            self.rooms.remove(&name);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;

    fn with_history(rooms: &mut Rooms, name: &str, at: Instant) -> Arc<str> {
        let (name, _) = rooms.join(name);
        if let Some(room) = rooms.get_mut(&name) {
            room.history.push(Message::Text("kept"));
        }
        assert!(rooms.leave(&name, at));
        name
    }

    #[test]
    fn a_room_made_again_counts_again_under_a_new_epoch() {
        let mut rooms = Rooms::new(4, 5, Duration::from_secs(60));
        let t = Instant::now();
        let name = with_history(&mut rooms, "r", t);
        let (_, room) = rooms.join(&name);
        let first = room.history.epoch().clone();
        assert_eq!(room.history.last_offset(), 1);
        assert_eq!(
            room.envelopes.epoch(),
            &first,
            "both encodings share the room's epoch"
        );
        assert_eq!(&*room.v1_topic, "v1/r");
        assert!(rooms.leave(&name, t));
        rooms.expire(t + Duration::from_secs(60));
        assert!(!rooms.contains("r"));
        let (_, again) = rooms.join("r");
        assert_ne!(again.history.epoch(), &first);
        assert_eq!(again.history.last_offset(), 0);
    }

    #[test]
    fn the_default_room_is_never_refused() {
        let mut rooms = Rooms::new(2, 5, Duration::ZERO);
        for name in ["a", "b"] {
            assert!(rooms.admit(name));
            rooms.join(name);
        }
        assert!(!rooms.admit("c"));
        assert!(rooms.admit(""));
        let (lobby, _) = rooms.join("");
        assert_eq!(rooms.len(), 3);
        // Nor is it counted: with one room less, a new one fits, and an
        // idle default room is not the one that makes way.
        let (b, _) = rooms.join("b");
        rooms.leave(&b, Instant::now());
        rooms.leave(&b, Instant::now());
        if let Some(room) = rooms.get_mut("") {
            room.history.push(Message::Text("kept"));
        }
        assert!(rooms.leave(&lobby, Instant::now()));
        assert!(rooms.admit("c"));
        rooms.join("c");
        assert!(!rooms.admit("d"));
        assert!(rooms.contains(""));
        // Existing rooms still take members.
        assert!(rooms.admit("a"));
    }

    #[test]
    fn a_new_room_past_the_limit_takes_the_place_of_the_least_recently_used_idle_one() {
        let t = Instant::now();
        let mut rooms = Rooms::new(3, 5, Duration::ZERO);
        let _a = with_history(&mut rooms, "a", t);
        let _b = with_history(&mut rooms, "b", t + Duration::from_secs(1));
        assert!(rooms.admit("busy"));
        rooms.join("busy");
        // a was idle first, but a member came back and left again: b is
        // now the least recently used.
        rooms.join("a");
        assert!(rooms.leave(&Arc::from("a"), t + Duration::from_secs(2)));
        assert_eq!(rooms.idle_count(), 2);
        assert!(rooms.admit("c"));
        assert!(!rooms.contains("b") && rooms.contains("a"));
        rooms.join("c");
        assert!(rooms.admit("d"));
        assert!(!rooms.contains("a"));
        rooms.join("d");
        // Every room has members now: one more is refused.
        assert!(!rooms.admit("e"));
        assert_eq!(rooms.len(), 3);
    }

    #[test]
    fn idle_rooms_are_forgotten_after_the_ttl_in_order() {
        let t = Instant::now();
        let ttl = Duration::from_secs(60);
        let mut rooms = Rooms::new(10, 5, ttl);
        with_history(&mut rooms, "a", t);
        with_history(&mut rooms, "b", t + Duration::from_secs(10));
        // A room without history goes when its last member leaves.
        let (plain, _) = rooms.join("plain");
        assert!(!rooms.leave(&plain, t));
        assert!(!rooms.contains("plain"));
        assert_eq!(rooms.expire(t + Duration::from_secs(59)), Some(t + ttl));
        assert_eq!(rooms.len(), 2);
        assert_eq!(
            rooms.expire(t + ttl),
            Some(t + Duration::from_secs(70)),
            "a goes at its due time, b is next"
        );
        assert!(!rooms.contains("a") && rooms.contains("b"));
        // A member back in b stops its clock.
        rooms.join("b");
        assert_eq!(rooms.expire(t + Duration::from_secs(3600)), None);
        assert!(rooms.contains("b"));
        // A TTL of zero keeps idle rooms until they must make way.
        let mut forever = Rooms::new(10, 5, Duration::ZERO);
        with_history(&mut forever, "x", t);
        assert_eq!(forever.expire(t + Duration::from_secs(1 << 30)), None);
        assert!(forever.contains("x"));
        // Nor does a TTL too long for the clock panic: it is never.
        let mut endless = Rooms::new(10, 5, Duration::MAX);
        with_history(&mut endless, "x", t);
        assert_eq!(endless.expire(t + Duration::from_secs(1 << 30)), None);
        assert!(endless.contains("x"));
    }
}
