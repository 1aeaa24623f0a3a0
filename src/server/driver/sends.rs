//! The uring driver's sends in flight, by connection slot: each one's bytes
//! (which the kernel reads until its completion: the connection's output
//! moved out of its queue, or a copy) with the iovecs and `msghdr` that
//! point at them, its number and its connection's generation. Kept dense,
//! so that a connection with nothing in flight costs its slot's 4-byte
//! entry in the index, not a record.

use std::os::fd::RawFd;

use io_uring::types::Fd;
use io_uring::{opcode, squeue};

use super::SEND_SLICES;
use crate::proto::TakenOutput;

/// What a send hands the kernel, kept together until its completion: the
/// bytes ([`TakenOutput`], whose memory stays put while it lives), and for
/// more than one slice the iovecs and the `msghdr` the submission points
/// at, each on the heap so that moving this record moves none of them.
pub(crate) struct Outgoing {
    pub(crate) out: TakenOutput,
    iov: Vec<libc::iovec>,
    #[cfg(not(target_env = "musl"))]
    msg: Option<Box<libc::msghdr>>,
}

impl Outgoing {
    pub(crate) fn new(out: TakenOutput) -> Outgoing {
        Outgoing {
            out,
            iov: Vec::new(),
            #[cfg(not(target_env = "musl"))]
            msg: None,
        }
    }

    /// Bytes not yet sent.
    pub(crate) fn len(&self) -> usize {
        self.out.len()
    }

    /// A send of what is left on `fd`: `send` for one slice, `sendmsg`
    /// for more. The entry points into `self` (bytes, iovecs, `msghdr`),
    /// which must live, unchanged, until its completion.
    pub(crate) fn entry(&mut self, fd: RawFd) -> squeue::Entry {
        let mut slices = self.out.slices();
        let (first, second) = (slices.next(), slices.next());
        if let (Some(one), None) = (first, second) {
            // One slice (a reply, a large message): `send`, no iovec.
            return opcode::Send::new(
                Fd(fd),
                one.as_ptr(),
                u32::try_from(one.len()).unwrap_or(u32::MAX),
            )
            .flags(libc::MSG_NOSIGNAL)
            .build();
        }
        self.iov.clear();
        for bytes in self.out.slices().take(SEND_SLICES) {
            self.iov.push(libc::iovec {
                iov_base: bytes.as_ptr() as *mut libc::c_void,
                iov_len: bytes.len(),
            });
        }
        #[cfg(not(target_env = "musl"))]
        if self.iov.len() > 1 {
            let msg = self.msg.get_or_insert_with(|| {
                Box::new(libc::msghdr {
                    msg_name: std::ptr::null_mut(),
                    msg_namelen: 0,
                    msg_iov: std::ptr::null_mut(),
                    msg_iovlen: 0,
                    msg_control: std::ptr::null_mut(),
                    msg_controllen: 0,
                    msg_flags: 0,
                })
            });
            msg.msg_iov = self.iov.as_mut_ptr();
            msg.msg_iovlen = self.iov.len() as _;
            return opcode::SendMsg::new(Fd(fd), &**msg)
                .flags(libc::MSG_NOSIGNAL as u32)
                .build();
        }
        let (ptr, len) = self.iov.first().map_or((std::ptr::null(), 0), |v| {
            (v.iov_base as *const u8, v.iov_len)
        });
        opcode::Send::new(Fd(fd), ptr, u32::try_from(len).unwrap_or(u32::MAX))
            .flags(libc::MSG_NOSIGNAL)
            .build()
    }
}

/// A send in flight.
pub(crate) struct InFlight {
    /// The slot index of its connection.
    index: usize,
    /// Its connection's generation.
    pub(crate) generation: u32,
    /// Its number (a send cut short goes again under a new one).
    pub(crate) seq: u64,
    /// What it sends.
    pub(crate) buf: Outgoing,
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
        buf: Outgoing,
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
        release_spare(&mut self.list);
        Some(gone)
    }
}

/// Gives back most of `list`'s room once it holds less than a quarter of
/// it: a burst of connections set up at once puts thousands of sends in
/// flight (their replies to the handshake), and a `Vec` keeps its capacity
/// when it empties, so without this the burst's 104 bytes a send would
/// stay resident after it (1.7 MiB after 10,000). Shrinking to twice what
/// is left moves those, after at least as many removals.
pub(crate) fn release_spare<T>(list: &mut Vec<T>) {
    release_spare_over(list, 64);
}

/// [`release_spare`] keeping room for `keep` entries at least: a list
/// filled and emptied every pass keeps a pass's worth, so that it does not
/// shrink and grow again each time.
pub(crate) fn release_spare_over<T>(list: &mut Vec<T>, keep: usize) {
    if list.capacity() > keep && list.len() < list.capacity() / 4 {
        list.shrink_to((list.len() * 2).max(keep));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(byte: u8) -> Outgoing {
        let mut out = TakenOutput::default();
        out.push_copy(vec![byte]);
        Outgoing::new(out)
    }

    fn first(send: &InFlight) -> Vec<u8> {
        send.buf.out.slices().flatten().copied().collect()
    }

    #[test]
    fn sends_are_found_by_slot_after_others_leave() {
        let mut sends = Sends::default();
        assert!(sends.insert(3, 1, 10, out(3)).is_none());
        assert!(sends.insert(7, 1, 11, out(7)).is_none());
        assert!(sends.insert(5, 2, 12, out(5)).is_none());
        // The first leaves: the last moves into its place.
        assert_eq!(sends.remove(3).map(|s| first(&s)), Some(vec![3]));
        assert!(sends.get(3).is_none());
        assert_eq!(sends.get(5).map(|s| (s.generation, s.seq)), Some((2, 12)));
        assert_eq!(sends.get(7).map(first), Some(vec![7]));
        // A second send of a slot displaces (and returns) the first.
        let displaced = sends.insert(7, 4, 13, out(8));
        assert_eq!(displaced.map(|s| s.seq), Some(11));
        assert_eq!(sends.get(7).map(|s| s.seq), Some(13));
        assert!(sends.remove(9).is_none());
        // Nothing in flight costs 4 bytes a slot.
        assert_eq!(std::mem::size_of_val(&sends.at[0]), 4);
    }

    #[test]
    fn a_burst_of_sends_gives_its_room_back_once_they_complete() {
        let mut sends = Sends::default();
        for index in 0..10_000 {
            sends.insert(index, 1, index as u64, out(1));
        }
        let peak = sends.list.capacity();
        assert!(peak >= 10_000);
        for index in 0..9_990 {
            assert!(sends.remove(index).is_some());
        }
        assert!(
            sends.list.capacity() <= 64,
            "{} of room kept for 10 sends",
            sends.list.capacity()
        );
        // Those left are still found where they are.
        for index in 9_990..10_000 {
            assert_eq!(sends.get(index).map(|s| s.seq), Some(index as u64));
        }
    }
}
