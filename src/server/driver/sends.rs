//! The uring driver's sends in flight, by connection slot: each one's bytes
//! (which the kernel reads until its completion), its number and its
//! connection's generation. Kept dense, so that a connection with nothing
//! in flight costs its slot's 4-byte entry in the index, not a record.

/// A send in flight.
pub(crate) struct InFlight {
    /// The slot index of its connection.
    index: usize,
    /// Its connection's generation.
    pub(crate) generation: u32,
    /// Its number (a send cut short goes again under a new one).
    pub(crate) seq: u64,
    /// What it sends, from the start of the buffer.
    pub(crate) buf: Vec<u8>,
}

/// The sends in flight, at most one per slot index.
#[derive(Default)]
pub(crate) struct Sends {
    list: Vec<InFlight>,
    /// Per slot index: 1 + the position of its send in `list`, or 0.
    at: Vec<u32>,
}

impl Sends {
    fn position(&self, index: usize) -> Option<usize> {
        let at = *self.at.get(index)?;
        (at as usize).checked_sub(1)
    }

    /// The send in flight of slot `index`.
    pub(crate) fn get(&self, index: usize) -> Option<&InFlight> {
        self.list.get(self.position(index)?)
    }

    /// The same, to change.
    pub(crate) fn get_mut(&mut self, index: usize) -> Option<&mut InFlight> {
        let at = self.position(index)?;
        self.list.get_mut(at)
    }

    /// Records a send of slot `index`; returns the one it displaces.
    pub(crate) fn insert(
        &mut self,
        index: usize,
        generation: u32,
        seq: u64,
        buf: Vec<u8>,
    ) -> Option<InFlight> {
        let displaced = self.remove(index);
        if self.at.len() <= index {
            self.at.resize(index + 1, 0);
        }
        self.list.push(InFlight {
            index,
            generation,
            seq,
            buf,
        });
        self.at[index] = u32::try_from(self.list.len()).unwrap_or(0);
        displaced
    }

    /// Takes the send in flight of slot `index`.
    pub(crate) fn remove(&mut self, index: usize) -> Option<InFlight> {
        let at = self.position(index)?;
        self.at[index] = 0;
        let gone = self.list.swap_remove(at);
        if let Some(moved) = self.list.get(at) {
            self.at[moved.index] = u32::try_from(at + 1).unwrap_or(0);
        }
        Some(gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_are_found_by_slot_after_others_leave() {
        let mut sends = Sends::default();
        assert!(sends.insert(3, 1, 10, vec![3]).is_none());
        assert!(sends.insert(7, 1, 11, vec![7]).is_none());
        assert!(sends.insert(5, 2, 12, vec![5]).is_none());
        // The first leaves: the last moves into its place.
        assert_eq!(sends.remove(3).map(|s| s.buf), Some(vec![3]));
        assert!(sends.get(3).is_none());
        assert_eq!(sends.get(5).map(|s| (s.generation, s.seq)), Some((2, 12)));
        assert_eq!(sends.get(7).map(|s| s.buf.clone()), Some(vec![7]));
        // A second send of a slot displaces (and returns) the first.
        let displaced = sends.insert(7, 4, 13, vec![8]);
        assert_eq!(displaced.map(|s| s.seq), Some(11));
        assert_eq!(sends.get(7).map(|s| s.seq), Some(13));
        assert!(sends.remove(9).is_none());
        // Nothing in flight costs 4 bytes a slot.
        assert_eq!(std::mem::size_of_val(&sends.at[0]), 4);
    }
}
