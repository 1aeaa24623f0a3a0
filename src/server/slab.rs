//! A slab of connections addressed by plain ids.
//!
//! An id is a slot index plus the slot's generation, so an id kept by a
//! handler after its connection closed can never reach the connection that
//! later reuses the slot: lookups of stale ids simply fail.

use std::fmt;

/// A connection's handle: cheap to copy, meaningless once the connection is
/// gone (every lookup with it then fails).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u64);

impl ConnId {
    fn new(index: u32, generation: u32) -> ConnId {
        ConnId((u64::from(generation) << 32) | u64::from(index))
    }

    pub(crate) fn index(self) -> usize {
        (self.0 & 0xFFFF_FFFF) as usize
    }

    pub(crate) fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The id as a number, e.g. for a C caller or a log line.
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// Rebuilds an id from [`ConnId::as_u64`]; an invalid number is just an
    /// id that matches no connection.
    pub fn from_u64(raw: u64) -> ConnId {
        ConnId(raw)
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}.{}", self.index(), self.generation())
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

struct Slot<T> {
    // Generations start at 1 so that the id 0 never names a connection.
    generation: u32,
    value: Option<T>,
}

/// Values in reusable slots.
pub(crate) struct Slab<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    /// Stores `value` and returns its id.
    pub(crate) fn insert(&mut self, value: T) -> ConnId {
        self.len += 1;
        if let Some(index) = self.free.pop() {
            let slot = &mut self.slots[index as usize];
            slot.value = Some(value);
            return ConnId::new(index, slot.generation);
        }
        let index = self.slots.len() as u32;
        self.slots.push(Slot {
            generation: 1,
            value: Some(value),
        });
        ConnId::new(index, 1)
    }

    /// The value for `id`, if it is still there.
    pub(crate) fn get(&self, id: ConnId) -> Option<&T> {
        let slot = self.slots.get(id.index())?;
        if slot.generation != id.generation() {
            return None;
        }
        slot.value.as_ref()
    }

    /// The value for `id`, mutably.
    pub(crate) fn get_mut(&mut self, id: ConnId) -> Option<&mut T> {
        let slot = self.slots.get_mut(id.index())?;
        if slot.generation != id.generation() {
            return None;
        }
        slot.value.as_mut()
    }

    /// Takes the value out; its id and every copy of it go stale.
    pub(crate) fn remove(&mut self, id: ConnId) -> Option<T> {
        let slot = self.slots.get_mut(id.index())?;
        if slot.generation != id.generation() {
            return None;
        }
        let value = slot.value.take()?;
        slot.generation = slot.generation.wrapping_add(1).max(1);
        self.free.push(id.index() as u32);
        self.len -= 1;
        Some(value)
    }

    /// How many values are stored.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether the slab is empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The id's key for the poller: the slot index, which is unique among
    /// live values.
    pub(crate) fn key(id: ConnId) -> usize {
        id.index()
    }

    /// How many slots exist (occupied or free): the bound for [`Slab::id_at`].
    pub(crate) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// The id of the value in slot `index`, if any.
    pub(crate) fn id_at(&self, index: usize) -> Option<ConnId> {
        let slot = self.slots.get(index)?;
        slot.value.as_ref()?;
        Some(ConnId::new(index as u32, slot.generation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_ids_never_reach_a_reused_slot() {
        let mut slab = Slab::default();
        let a = slab.insert("a");
        assert_eq!(slab.get(a), Some(&"a"));
        assert_eq!(slab.remove(a), Some("a"));
        let b = slab.insert("b");
        assert_eq!(Slab::<&str>::key(a), Slab::<&str>::key(b));
        assert_ne!(a, b);
        assert_eq!(slab.get(a), None);
        assert_eq!(slab.remove(a), None);
        assert_eq!(slab.get(b), Some(&"b"));
        assert_eq!(slab.len(), 1);
        assert_eq!(slab.id_at(Slab::<&str>::key(b)), Some(b));
    }

    #[test]
    fn ids_round_trip_through_u64_and_garbage_matches_nothing() {
        let mut slab = Slab::default();
        let a = slab.insert(1);
        assert_eq!(ConnId::from_u64(a.as_u64()), a);
        assert_eq!(slab.get(ConnId::from_u64(0)), None);
        assert_eq!(slab.get(ConnId::from_u64(u64::MAX)), None);
        let ids: Vec<_> = (0..5).map(|i| slab.insert(i)).collect();
        slab.remove(ids[2]);
        let seen: Vec<_> = (0..slab.slot_count())
            .filter_map(|i| slab.id_at(i))
            .collect();
        assert_eq!(seen.len(), 5);
        assert!(!seen.contains(&ids[2]));
    }
}
