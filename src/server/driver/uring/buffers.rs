//! The ring of provided buffers that every connection's multishot receive
//! lands in: its entries and the memory they point at, shared with the
//! kernel from registration until the ring unregisters them, and the one
//! `unsafe` block that registers them.

use std::cell::Cell;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::IoUring;

use crate::server::driver::Refusal;

/// The memory of the receive buffers.
pub(crate) const BUF_MEMORY: usize = 32 * 56 * 1024;
/// The most buffers it is cut into (the entries fill one page).
const MAX_BUFS: u16 = 256;
/// `IOU_PBUF_RING_INC` (the io-uring crate does not name it).
const IOU_PBUF_RING_INC: u16 = 2;
/// The buffer group id of the one buffer ring.
pub(super) const BGID: u16 = 0;

/// One entry of the buffer ring, laid out as the kernel's `io_uring_buf`.
/// The kernel reads the entries between its head and our tail (and, with
/// incremental consumption, moves the address and length of the one it is
/// filling); the shared tail is the `resv` field of the first entry. Cells:
/// the kernel touches this memory behind the compiler's back, so no `&mut`
/// to it may claim it exclusive.
#[repr(C)]
#[derive(Default)]
struct Entry {
    addr: Cell<u64>,
    len: Cell<u32>,
    bid: Cell<u16>,
    resv: AtomicU16,
}

/// The entries, page-aligned as `IORING_REGISTER_PBUF_RING` wants them.
#[repr(C, align(4096))]
struct Entries([Entry; MAX_BUFS as usize]);

/// How the buffer memory is cut up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Geometry {
    /// Buffers (a power of two).
    pub(super) count: u16,
    /// Bytes each.
    pub(super) size: usize,
    /// Whether the kernel fills a buffer across receives
    /// (`IOU_PBUF_RING_INC`, Linux 6.12), so that few large buffers serve
    /// small and large messages alike.
    pub(super) incremental: bool,
}

/// With incremental consumption: 32 buffers of 56 KiB. Large buffers make
/// a 64 KiB message two completions, where 4 KiB ones made it sixteen; 32
/// of them run out less often than 16 of 64 KiB under large messages (a
/// receive that finds none ends, and is armed again).
const LARGE: Geometry = Geometry {
    count: 32,
    size: 56 * 1024,
    incremental: true,
};
/// Without (before 6.12): each receive takes a whole buffer, so many small
/// ones.
const SMALL: Geometry = Geometry {
    count: MAX_BUFS,
    size: BUF_MEMORY / MAX_BUFS as usize,
    incremental: false,
};

/// The ring of provided buffers: its entries and the memory they point at,
/// both shared with the kernel from registration until the owner
/// unregistered them (`Drop for Ring`), and freed only after that.
pub(super) struct BufRing {
    entries: Box<Entries>,
    /// [`BUF_MEMORY`] bytes of buffers, which the kernel writes into while
    /// a buffer is its own (from publication to the completion that names
    /// it last).
    data: Box<[Cell<u8>]>,
    pub(super) geometry: Geometry,
    /// Per buffer: how much of it completions handed us so far (the
    /// kernel fills it from there on, with incremental consumption).
    filled: Vec<u32>,
    /// Our tail: entries up to it are the kernel's once published.
    tail: u16,
    /// Whether `tail` moved since it was last published.
    dirty: bool,
}

impl BufRing {
    /// The ring with incremental consumption where the kernel has it, else
    /// with small buffers.
    pub(super) fn new(ring: &IoUring) -> Result<BufRing, Refusal> {
        match BufRing::with(ring, LARGE) {
            Err(Refusal::Setup(_)) => BufRing::with(ring, SMALL),
            other => other,
        }
    }

    fn with(ring: &IoUring, geometry: Geometry) -> Result<BufRing, Refusal> {
        let mut bufs = BufRing {
            entries: Box::new(Entries(std::array::from_fn(|_| Entry::default()))),
            data: vec![Cell::new(0); BUF_MEMORY].into_boxed_slice(),
            geometry,
            filled: vec![0; usize::from(geometry.count)],
            tail: 0,
            dirty: false,
        };
        // Resident from the start, as the fixed memory it is: otherwise the
        // pages would come in one by one as the ring turns, and look like
        // the connections' memory.
        for page in bufs.data.iter().step_by(4096) {
            page.set(1);
        }
        let flags = if geometry.incremental {
            IOU_PBUF_RING_INC
        } else {
            0
        };
        // SAFETY: the entries are page-aligned, `count` (a power of two, at
        // most MAX_BUFS) long, and with the buffers they point at stay
        // allocated until the ring is unregistered (`Drop for Ring`, which
        // leaks them if an operation may still be in flight). Meanwhile the
        // kernel writes a buffer only while it is its own: given back and
        // not yet named by a completion without `IORING_CQE_F_BUF_MORE`;
        // this side reads only the bytes completions reported, and both
        // sides touch the memory only through cells and the atomic tail.
        let registered = unsafe {
            ring.submitter().register_buf_ring_with_flags(
                bufs.entries.0.as_ptr() as u64,
                geometry.count,
                BGID,
                flags,
            )
        };
        if let Err(e) = registered {
            return Err(Refusal::Setup(format!(
                "IORING_REGISTER_PBUF_RING: {e} (a provided buffer ring needs Linux 5.19)"
            )));
        }
        for bid in 0..geometry.count {
            bufs.give_back(bid);
        }
        bufs.publish();
        Ok(bufs)
    }

    /// Hands buffer `bid` back to the kernel, empty (visible at the next
    /// publish).
    fn give_back(&mut self, bid: u16) {
        let Geometry { count, size, .. } = self.geometry;
        let bid = bid & (count - 1);
        let entry = &self.entries.0[usize::from(self.tail & (count - 1))];
        entry
            .addr
            .set(self.data[usize::from(bid) * size..].as_ptr() as u64);
        entry.len.set(size as u32);
        entry.bid.set(bid);
        self.filled[usize::from(bid)] = 0;
        self.tail = self.tail.wrapping_add(1);
        self.dirty = true;
    }

    /// Makes the buffers given back visible to the kernel: the release
    /// store orders the entries written before it.
    pub(super) fn publish(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        self.entries.0[0].resv.store(self.tail, Ordering::Release);
    }

    /// Copies the `len` bytes a completion reported in buffer `bid` into
    /// `into` (returns how many fit), and gives the buffer back unless the
    /// kernel goes on filling it (`kept`).
    pub(super) fn take(&mut self, bid: u16, kept: bool, len: usize, into: &mut [u8]) -> usize {
        let Geometry { count, size, .. } = self.geometry;
        let bid = bid & (count - 1);
        let filled = &mut self.filled[usize::from(bid)];
        let from = (*filled as usize).min(size);
        let n = len.min(size - from).min(into.len());
        let at = usize::from(bid) * size + from;
        for (to, cell) in into[..n].iter_mut().zip(&self.data[at..at + n]) {
            *to = cell.get();
        }
        *filled = u32::try_from(from + len).unwrap_or(u32::MAX);
        if !(kept && self.geometry.incremental) {
            self.give_back(bid);
        }
        n
    }

    /// Leaves the memory allocated for good: the kernel may still use it.
    pub(super) fn leak(&mut self) {
        let entries = Box::new(Entries(std::array::from_fn(|_| Entry::default())));
        Box::leak(std::mem::replace(&mut self.entries, entries));
        Box::leak(std::mem::take(&mut self.data));
    }
}
