//! Topics: named sets of connections that a message can be published to.
//!
//! A topic is a name and a list of its members' [`ConnId`]s; each connection
//! with subscriptions has a list of its topics, each with its position in
//! that topic's member list, kept in a side map keyed by its slot index (the
//! slot itself stays as small as it was). So:
//!
//! - publishing to a topic visits its members only, whatever other topics
//!   and connections exist;
//! - subscribing and unsubscribing cost one hash lookup of the name and
//!   O(the connection's topics): a member leaves its topic's list by a swap
//!   with the last member, whose recorded position is then corrected;
//! - a closed connection leaves all its topics in O(its topics) (the core
//!   calls [`Topics::leave_all`] when it removes the connection);
//! - a topic with no members is forgotten, and its number reused.
//!
//! Nothing here sends: the core encodes a publication once and appends it
//! to each member's queue (see `Core::publish`).

use std::collections::HashMap;
use std::rc::Rc;

use crate::proto::block::Live;

use super::slab::ConnId;

/// A topic's number, stable while it has members.
pub(crate) type TopicId = u32;

struct Topic {
    name: Box<str>,
    members: Vec<ConnId>,
    delivery: Delivery,
}

/// How a topic's publications reach its members within one round of
/// writes (see `Core::publish`): the live range its keeping-up members are
/// attached to, and the members that get each publication one by one.
#[derive(Default)]
pub(crate) struct Delivery {
    /// The live range, and the round of writes it belongs to. Forgotten
    /// when a member joins or leaves, so that the next publication visits
    /// every member again.
    pub live: Option<(Rc<Live>, u64)>,
    /// Members that were not attached at the last visit (behind, with a
    /// paced feed, or taking compressed frames).
    pub others: Vec<ConnId>,
}

/// A subscription: the topic, and the connection's position in that
/// topic's member list.
type Membership = (TopicId, u32);

/// One connection's subscriptions (at least one: a connection with none
/// has no entry). The first is kept inline: in a chat every member has
/// exactly one, and a `Vec` of its own per member was 10,000 small
/// allocations for 10,000 members, which the allocator kept resident after
/// they left (about 470 KiB in the churn benchmark).
struct Subscriptions {
    conn: ConnId,
    first: Membership,
    more: Vec<Membership>,
}

impl Subscriptions {
    fn new(conn: ConnId, first: Membership) -> Subscriptions {
        Subscriptions {
            conn,
            first,
            more: Vec::new(),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Membership> {
        std::iter::once(&self.first).chain(self.more.iter())
    }

    fn contains(&self, topic: TopicId) -> bool {
        self.iter().any(|&(t, _)| t == topic)
    }

    /// Where the connection sits in `topic`'s member list, if subscribed.
    fn position_mut(&mut self, topic: TopicId) -> Option<&mut u32> {
        if self.first.0 == topic {
            return Some(&mut self.first.1);
        }
        self.more
            .iter_mut()
            .find(|(t, _)| *t == topic)
            .map(|(_, pos)| pos)
    }

    /// Takes `topic` out; returns the position it had, and whether any
    /// subscription is left.
    fn remove(&mut self, topic: TopicId) -> Option<(u32, bool)> {
        let pos = if self.first.0 == topic {
            let pos = self.first.1;
            match self.more.pop() {
                Some(next) => self.first = next,
                None => return Some((pos, false)),
            }
            pos
        } else {
            let at = self.more.iter().position(|&(t, _)| t == topic)?;
            self.more.swap_remove(at).1
        };
        if self.more.is_empty() {
            // A connection back to one topic does not keep room for more.
            self.more = Vec::new();
        }
        Some((pos, true))
    }
}

/// Every topic and every connection's subscriptions.
#[derive(Default)]
pub(crate) struct Topics {
    by_name: HashMap<Box<str>, TopicId>,
    topics: Vec<Option<Topic>>,
    free: Vec<TopicId>,
    /// Keyed by slot index; the entry's `conn` guards against a stale id.
    by_conn: HashMap<usize, Subscriptions>,
}

impl Topics {
    /// The topic called `name`, if it has members.
    pub(crate) fn find(&self, name: &str) -> Option<TopicId> {
        self.by_name.get(name).copied()
    }

    /// How many topics have members.
    pub(crate) fn len(&self) -> usize {
        self.by_name.len()
    }

    /// The members of `topic` (empty for an unknown one).
    pub(crate) fn members(&self, topic: TopicId) -> &[ConnId] {
        match self.topics.get(topic as usize) {
            Some(Some(t)) => &t.members,
            _ => &[],
        }
    }

    /// The members of `topic` and how publications reach them.
    pub(crate) fn delivery(&mut self, topic: TopicId) -> Option<(&[ConnId], &mut Delivery)> {
        match self.topics.get_mut(topic as usize) {
            Some(Some(t)) => Some((&t.members, &mut t.delivery)),
            _ => None,
        }
    }

    /// Whether `conn` is subscribed to `topic`: O(its topics).
    #[cfg(test)]
    pub(crate) fn is_member(&self, conn: ConnId, topic: TopicId) -> bool {
        self.by_conn
            .get(&conn.index())
            .is_some_and(|s| s.conn == conn && s.contains(topic))
    }

    /// Whether `conn` has any subscription.
    pub(crate) fn has_subscriptions(&self, conn: ConnId) -> bool {
        self.by_conn
            .get(&conn.index())
            .is_some_and(|s| s.conn == conn)
    }

    /// The topics `conn` is subscribed to.
    pub(crate) fn topics_of(&self, conn: ConnId) -> impl Iterator<Item = &str> {
        self.by_conn
            .get(&conn.index())
            .filter(|s| s.conn == conn)
            .into_iter()
            .flat_map(|s| s.iter())
            .filter_map(|&(t, _)| match self.topics.get(t as usize) {
                Some(Some(topic)) => Some(&*topic.name),
                _ => None,
            })
    }

    /// Subscribes `conn` (a live connection) to `name`; `false` if it
    /// already was.
    pub(crate) fn subscribe(&mut self, conn: ConnId, name: &str) -> bool {
        let topic = match self.by_name.get(name) {
            Some(&t) => t,
            None => {
                let t = Topic {
                    name: name.into(),
                    members: Vec::new(),
                    delivery: Delivery::default(),
                };
                let id = match self.free.pop() {
                    Some(id) => {
                        self.topics[id as usize] = Some(t);
                        id
                    }
                    None => {
                        self.topics.push(Some(t));
                        (self.topics.len() - 1) as TopicId
                    }
                };
                self.by_name.insert(name.into(), id);
                id
            }
        };
        let Some(Some(t)) = self.topics.get_mut(topic as usize) else {
            return false;
        };
        let entry = (topic, t.members.len() as u32);
        match self.by_conn.entry(conn.index()) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(Subscriptions::new(conn, entry));
            }
            std::collections::hash_map::Entry::Occupied(mut o) => {
                let subs = o.get_mut();
                if subs.conn != conn {
                    // A stale entry (cannot happen: removal clears it);
                    // start over.
                    *subs = Subscriptions::new(conn, entry);
                } else if subs.contains(topic) {
                    return false;
                } else {
                    subs.more.push(entry);
                }
            }
        }
        t.members.push(conn);
        t.delivery.live = None;
        true
    }

    /// Unsubscribes `conn` from `name`; `false` if it was not subscribed.
    pub(crate) fn unsubscribe(&mut self, conn: ConnId, name: &str) -> bool {
        let Some(&topic) = self.by_name.get(name) else {
            return false;
        };
        let Some(subs) = self.by_conn.get_mut(&conn.index()) else {
            return false;
        };
        if subs.conn != conn {
            return false;
        }
        let Some((pos, any_left)) = subs.remove(topic) else {
            return false;
        };
        if !any_left {
            self.by_conn.remove(&conn.index());
            release_spare(&mut self.by_conn);
        }
        self.leave(topic, pos);
        true
    }

    /// Unsubscribes `conn` from every topic.
    pub(crate) fn leave_all(&mut self, conn: ConnId) {
        let Some(subs) = self.by_conn.remove(&conn.index()) else {
            return;
        };
        if subs.conn != conn {
            self.by_conn.insert(conn.index(), subs);
            return;
        }
        for &(topic, pos) in subs.iter() {
            self.leave(topic, pos);
        }
        release_spare(&mut self.by_conn);
    }

    /// Takes the member at `pos` out of `topic`, moving the last member into
    /// its place, and forgets the topic if it is left empty.
    fn leave(&mut self, topic: TopicId, pos: u32) {
        let Some(Some(t)) = self.topics.get_mut(topic as usize) else {
            return;
        };
        let pos = pos as usize;
        if pos >= t.members.len() {
            return;
        }
        t.members.swap_remove(pos);
        t.delivery.live = None;
        if let Some(&moved) = t.members.get(pos) {
            if let Some(at) = self
                .by_conn
                .get_mut(&moved.index())
                .and_then(|subs| subs.position_mut(topic))
            {
                *at = pos as u32;
            }
        }
        if t.members.is_empty() {
            let name = std::mem::take(&mut t.name);
            self.by_name.remove(&name);
            self.topics[topic as usize] = None;
            self.free.push(topic);
        }
    }
}

/// Gives back most of `map`'s table once it holds less than a quarter of
/// what it has room for: a map keyed by connection grows to the peak of
/// connections, and a `HashMap` keeps its capacity when it empties, so
/// without this a burst of 10,000 members would stay resident (640 KiB for
/// the subscriptions) after they left. Shrinking to twice the entries left
/// costs one rehash of those, after at least as many removals. (`capacity`
/// leaves out slots a removal marked as deleted, so this may come late,
/// never early.)
pub(crate) fn release_spare<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
    const KEEP: usize = 64;
    if map.capacity() > KEEP && map.len() < map.capacity() / 4 {
        map.shrink_to((map.len() * 2).max(KEEP));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> ConnId {
        ConnId::from_u64((1 << 32) | n)
    }

    fn sorted(t: &Topics, name: &str) -> Vec<ConnId> {
        let mut m = t.find(name).map_or(Vec::new(), |id| t.members(id).to_vec());
        m.sort();
        m
    }

    #[test]
    fn subscribe_unsubscribe_and_leave_all_keep_every_list_in_step() {
        let mut t = Topics::default();
        assert!(t.subscribe(id(1), "a"));
        assert!(!t.subscribe(id(1), "a"));
        assert!(t.subscribe(id(2), "a"));
        assert!(t.subscribe(id(3), "a"));
        assert!(t.subscribe(id(2), "b"));
        assert_eq!(t.len(), 2);
        assert!(t.is_member(id(2), t.find("b").unwrap()));
        assert!(!t.is_member(id(1), t.find("b").unwrap()));
        // 1 leaves a: 3 moves into its place, and must still be found there.
        assert!(t.unsubscribe(id(1), "a"));
        assert!(!t.unsubscribe(id(1), "a"));
        assert_eq!(sorted(&t, "a"), vec![id(2), id(3)]);
        assert!(t.unsubscribe(id(3), "a"));
        assert_eq!(sorted(&t, "a"), vec![id(2)]);
        t.leave_all(id(2));
        assert_eq!(t.len(), 0);
        assert!(t.find("a").is_none() && t.find("b").is_none());
        assert!(!t.has_subscriptions(id(2)));
        // Numbers are reused.
        assert!(t.subscribe(id(4), "c"));
        assert_eq!(t.topics.len(), 2);
    }

    #[test]
    fn a_stale_id_touches_nothing() {
        let mut t = Topics::default();
        t.subscribe(id(1), "a");
        let stale = ConnId::from_u64((2 << 32) | 1);
        assert!(!t.unsubscribe(stale, "a"));
        t.leave_all(stale);
        assert_eq!(sorted(&t, "a"), vec![id(1)]);
    }

    #[test]
    fn many_members_leave_in_any_order() {
        let mut t = Topics::default();
        for n in 0..100 {
            t.subscribe(id(n), "x");
            t.subscribe(id(n), &format!("own{n}"));
        }
        for n in (0..100).filter(|n| n % 3 == 0) {
            t.leave_all(id(n));
        }
        for n in (0..100).filter(|n| n % 3 == 1) {
            assert!(t.unsubscribe(id(n), "x"));
        }
        let left: Vec<_> = (0..100).filter(|n| n % 3 == 2).map(id).collect();
        assert_eq!(sorted(&t, "x"), left);
        for n in 0..100 {
            assert_eq!(t.find(&format!("own{n}")).is_some(), n % 3 != 0);
        }
    }

    /// Every recorded position points back at its connection, and the
    /// lists agree with `model` (connection, topic name).
    fn check(t: &Topics, model: &std::collections::BTreeSet<(u64, String)>) {
        for subs in t.by_conn.values() {
            for &(topic, pos) in subs.iter() {
                assert_eq!(t.members(topic).get(pos as usize), Some(&subs.conn));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for name in t.by_name.keys() {
            for m in t.members(t.find(name).unwrap()) {
                assert!(seen.insert((m.index() as u64, name.to_string())));
            }
        }
        assert_eq!(&seen, model);
    }

    #[test]
    fn random_subscriptions_keep_every_position_right() {
        // Several topics per connection, so the inline first one is taken
        // out while others remain, and moved into by a swap.
        let mut next = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move |n: u64| {
            next ^= next << 13;
            next ^= next >> 7;
            next ^= next << 17;
            next % n
        };
        let mut t = Topics::default();
        let mut model = std::collections::BTreeSet::new();
        for _ in 0..20_000 {
            let conn = rand(40);
            let name = format!("t{}", rand(6));
            match rand(10) {
                0 => {
                    t.leave_all(id(conn));
                    model.retain(|(c, _)| *c != conn);
                }
                1..=4 => {
                    let fresh = model.insert((conn, name.clone()));
                    assert_eq!(t.subscribe(id(conn), &name), fresh);
                }
                _ => {
                    let was = model.remove(&(conn, name.clone()));
                    assert_eq!(t.unsubscribe(id(conn), &name), was);
                }
            }
            check(&t, &model);
        }
    }

    #[test]
    fn a_burst_of_members_gives_its_table_back_when_it_leaves() {
        let mut t = Topics::default();
        for n in 0..10_000 {
            t.subscribe(id(n), "room");
        }
        assert!(t.by_conn.capacity() >= 10_000);
        // Members that stay keep their entries through the shrinking.
        for n in 10..10_000 {
            t.leave_all(id(n));
        }
        assert!(t.by_conn.capacity() < 1_000, "{}", t.by_conn.capacity());
        assert_eq!(sorted(&t, "room"), (0..10).map(id).collect::<Vec<_>>());
        for n in 0..10 {
            assert!(t.is_member(id(n), t.find("room").unwrap()));
            assert!(t.unsubscribe(id(n), "room"));
        }
        assert_eq!(t.by_conn.len(), 0);
        assert!(t.by_conn.capacity() <= 64 * 2);
    }

    #[test]
    fn a_map_is_shrunk_only_below_a_quarter_of_its_room() {
        // Filled by insertions only: a removal can leave a tombstone, which
        // `capacity` does not count.
        let filled = |room: usize, n: u32| {
            let mut m: HashMap<u32, ()> = HashMap::with_capacity(room);
            m.extend((0..n).map(|k| (k, ())));
            m
        };
        let mut m = filled(4_096, 2_000);
        let room = m.capacity();
        assert!(2_000 >= room / 4);
        release_spare(&mut m);
        assert_eq!(m.capacity(), room, "a quarter full is left alone");
        let mut m = filled(4_096, 100);
        let room = m.capacity();
        release_spare(&mut m);
        assert!(m.capacity() < room / 8, "{} of {room}", m.capacity());
        assert!((0..100).all(|k| m.contains_key(&k)));
        let mut small = filled(60, 0);
        let small_room = small.capacity();
        release_spare(&mut small);
        assert_eq!(small.capacity(), small_room, "small maps are kept");
    }
}
