//! The io_uring driver: owns the ring, its provided-buffer ring, the send
//! buffers in flight, and every `unsafe` block the `io-uring` crate asks for.
//!
//! What runs on the ring: one multishot accept on the listener; one
//! multishot receive per connection that wants to read, each landing in a
//! buffer the kernel picks from a ring of [`BUF_COUNT`] buffers of
//! [`BUF_SIZE`] bytes shared by all connections (an idle connection holds no
//! read buffer; a buffer goes back to the ring as soon as its bytes are
//! copied into the loop's read buffer); at most one send per connection, of
//! a copy of its pending output (so the memory the kernel reads stays
//! valid, whatever the connection does to its queue meanwhile, and bytes
//! are never reordered); and a multishot poll on the epoll descriptor that
//! holds the cross-thread wake-up eventfd and any extra sources (the Redis
//! bridge), so that they wake the same wait. Every submission of a pass goes
//! to the kernel with the next pass's wait, in one `io_uring_enter`, whose
//! timeout is the wheel's next deadline.
//!
//! Fixed memory, set here at start: the buffers, [`BUF_COUNT`] ×
//! [`BUF_SIZE`] = 1 MiB (pages are touched only once the kernel wrote to
//! them), their ring of 4 KiB, and the submission and completion queues
//! (256 and 1024 entries, 16 KiB + 16 KiB). A send copies at most
//! `SEND_MAX` (1 MiB) of a connection's output; at most [`SPARE_SENDS`]
//! buffers of up to `SEND_KEEP` (64 KiB) are kept for reuse.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use io_uring::types::{BufRingEntry, CancelBuilder, Fd, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring};

use super::{injected_refusal, Refusal, SEND_KEEP};
use crate::server::slab::ConnId;

/// Provided buffers for receives.
pub(crate) const BUF_COUNT: u16 = 256;
/// The size of each.
pub(crate) const BUF_SIZE: usize = 4096;
/// The buffer group id of the one buffer ring.
const BGID: u16 = 0;
/// Submission queue entries (the completion queue gets four times as many).
const SQ_ENTRIES: u32 = 256;
/// Send buffers kept for reuse once their send completed.
pub(crate) const SPARE_SENDS: usize = 8;

/// What a completion is for: the top 4 bits of its user data.
const ACCEPT: u64 = 1;
const RECV: u64 = 2;
const SEND: u64 = 3;
const POLL: u64 = 4;
const CANCEL: u64 = 5;

/// A connection's generation in user data: 28 bits (a wrong match needs
/// 2^28 reuses of one slot while an operation is in flight).
const GEN_MASK: u64 = 0x0fff_ffff;

fn user_data(kind: u64, id: Option<ConnId>) -> u64 {
    let (index, generation) =
        id.map_or((0, 0), |id| (id.index() as u64, u64::from(id.generation())));
    (kind << 60) | ((generation & GEN_MASK) << 32) | (index & 0xffff_ffff)
}

/// A completion, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Done {
    /// The multishot accept gave a descriptor (`res` ≥ 0) or an error.
    Accept { res: i32, more: bool },
    /// A receive of connection slot `index` (generation `generation`, 28
    /// bits): `res` bytes into buffer `bid`, 0 at the peer's end, or an error.
    Recv {
        index: usize,
        generation: u32,
        res: i32,
        bid: Option<u16>,
        more: bool,
    },
    /// A send of connection slot `index` ended.
    Send {
        index: usize,
        generation: u32,
        res: i32,
    },
    /// The epoll descriptor (wake-up, extra sources) is readable.
    Poll { more: bool },
    /// A cancellation ended (nothing to do).
    Cancelled,
}

impl Done {
    fn decode(ud: u64, res: i32, flags: u32) -> Done {
        let index = (ud & 0xffff_ffff) as usize;
        let generation = ((ud >> 32) & GEN_MASK) as u32;
        let more = cqueue::more(flags);
        match ud >> 60 {
            ACCEPT => Done::Accept { res, more },
            RECV => Done::Recv {
                index,
                generation,
                res,
                bid: cqueue::buffer_select(flags),
                more,
            },
            SEND => Done::Send {
                index,
                generation,
                res,
                // A send is single-shot.
            },
            POLL => Done::Poll { more },
            _ => Done::Cancelled,
        }
    }
}

/// Whether `id` is the connection a completion of (`index`, `generation`)
/// was for.
pub(crate) fn is_for(id: ConnId, generation: u32) -> bool {
    u64::from(id.generation()) & GEN_MASK == u64::from(generation)
}

/// The descriptor an accept completion returned, owned.
pub(crate) fn accepted_fd(res: i32) -> Option<OwnedFd> {
    if res < 0 {
        return None;
    }
    // SAFETY: a successful accept completion's result is a new descriptor
    // the kernel installed in this process for us; nothing else owns it, and
    // each completion is decoded once.
    Some(unsafe { OwnedFd::from_raw_fd(res) })
}

/// The ring of provided buffers: its entries (page-aligned, shared with
/// the kernel) and the memory they point at.
struct BufRing {
    entries: NonNull<BufRingEntry>,
    entries_layout: Layout,
    data: NonNull<u8>,
    data_layout: Layout,
    /// Our tail: entries up to it are the kernel's once published.
    tail: u16,
    /// Whether `tail` moved since it was last published.
    dirty: bool,
}

impl BufRing {
    fn new(ring: &IoUring) -> Result<BufRing, Refusal> {
        let entries_layout = Layout::from_size_align(usize::from(BUF_COUNT) * 16, 4096)
            .map_err(|_| Refusal::Missing("memory for a buffer ring"))?;
        let data_layout = Layout::from_size_align(usize::from(BUF_COUNT) * BUF_SIZE, 4096)
            .map_err(|_| Refusal::Missing("memory for a buffer ring"))?;
        // SAFETY: both layouts have a non-zero size.
        let entries = NonNull::new(unsafe { alloc_zeroed(entries_layout) }.cast::<BufRingEntry>());
        // SAFETY: as above. Zeroed memory from the allocator is mapped lazily:
        // a page costs memory once the kernel first writes to it.
        let data = NonNull::new(unsafe { alloc_zeroed(data_layout) });
        let (Some(entries), Some(data)) = (entries, data) else {
            return Err(Refusal::Missing("memory for a buffer ring"));
        };
        let mut bufs = BufRing {
            entries,
            entries_layout,
            data,
            data_layout,
            tail: 0,
            dirty: false,
        };
        // SAFETY: the entries are page-aligned, BUF_COUNT (a power of two)
        // long, and stay allocated until `Drop for Ring` unregistered them.
        let registered = unsafe {
            ring.submitter().register_buf_ring_with_flags(
                entries.as_ptr() as u64,
                BUF_COUNT,
                BGID,
                0,
            )
        };
        if let Err(e) = registered {
            // `bufs` frees the memory as it drops.
            return Err(Refusal::Setup(format!(
                "IORING_REGISTER_PBUF_RING: {e} (a provided buffer ring needs Linux 5.19)"
            )));
        }
        for bid in 0..BUF_COUNT {
            bufs.give_back(bid);
        }
        bufs.publish();
        Ok(bufs)
    }

    /// Hands buffer `bid` back to the kernel (visible at the next publish).
    fn give_back(&mut self, bid: u16) {
        let slot = usize::from(self.tail & (BUF_COUNT - 1));
        // SAFETY: `slot` < BUF_COUNT; the entry at our tail is not the
        // kernel's until `publish` moves the shared tail past it; `bid` <
        // BUF_COUNT, so the address is inside `data`.
        unsafe {
            let entry = &mut *self.entries.as_ptr().add(slot);
            entry.set_addr(self.data.as_ptr().add(usize::from(bid) * BUF_SIZE) as u64);
            entry.set_len(BUF_SIZE as u32);
            entry.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
        self.dirty = true;
    }

    /// Makes the buffers given back visible to the kernel.
    fn publish(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        // SAFETY: the shared tail is a u16 inside the first entry, which the
        // kernel reads; the release store orders the entries written before.
        unsafe {
            let tail = BufRingEntry::tail(self.entries.as_ptr()).cast::<AtomicU16>();
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    /// The first `len` bytes of buffer `bid`, which a completion handed us.
    fn bytes(&self, bid: u16, len: usize) -> &[u8] {
        let bid = usize::from(bid.min(BUF_COUNT - 1));
        let len = len.min(BUF_SIZE);
        // SAFETY: inside `data`; the kernel wrote these bytes before posting
        // the completion and does not touch the buffer until it is given
        // back.
        unsafe { std::slice::from_raw_parts(self.data.as_ptr().add(bid * BUF_SIZE), len) }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with these layouts; the owner
        // unregistered the ring (or never registered it) and no operation
        // that may write into the buffers is in flight.
        unsafe {
            dealloc(self.entries.as_ptr().cast(), self.entries_layout);
            dealloc(self.data.as_ptr(), self.data_layout);
        }
    }
}

/// The loop's io_uring.
pub(crate) struct Ring {
    ring: IoUring,
    bufs: BufRing,
    listener: RawFd,
    /// Whether the multishot accept is armed, and whether it should be.
    accepting: bool,
    accept_wanted: bool,
    /// The epoll descriptor polled on the ring, and whether its poll is armed.
    epoll: Option<RawFd>,
    polling: bool,
    /// The send in flight per slot index: its connection's generation, its
    /// number, its bytes.
    sending: Vec<Option<(u32, u64, Vec<u8>)>>,
    /// Connections whose send was queued since the last wait, and those
    /// whose send the last wait submitted (see `stuck_sends`).
    queued_sends: Vec<(ConnId, u64)>,
    submitted_sends: Vec<(ConnId, u64)>,
    /// Sends found in flight after the wait that submitted them.
    suspects: Vec<(ConnId, u64)>,
    /// The number of the last send queued (each send in flight has its own).
    send_seq: u64,
    /// Sends still in flight for connections that are gone, by user data.
    orphans: Vec<(u64, Vec<u8>)>,
    spare: Vec<Vec<u8>>,
    /// Bytes received for a connection that did not want them yet.
    held: Vec<(ConnId, Vec<u8>)>,
    /// Connections whose held bytes are to be read at the next pass.
    resumed: Vec<ConnId>,
    /// Completions of the last wait.
    done: Vec<Done>,
    /// Whether the epoll descriptor is to be looked at again without a
    /// new poll completion (a source was ready: it may still be).
    repoll: bool,
    /// Operations whose last completion has not come.
    in_flight: usize,
}

impl Ring {
    /// Sets up the ring, checks what it offers, registers the buffers and
    /// arms the accept on `listener`.
    pub(super) fn open(listener: &std::net::TcpListener) -> Result<Ring, Refusal> {
        if let Some(refusal) = injected_refusal() {
            return Err(refusal);
        }
        let ring = IoUring::builder()
            .setup_cqsize(SQ_ENTRIES * 4)
            .build(SQ_ENTRIES)
            .map_err(|e| Refusal::Setup(with_sysctl(e)))?;
        let params = ring.params();
        if !params.is_feature_ext_arg() {
            return Err(Refusal::Missing(
                "IORING_FEAT_EXT_ARG (a wait with a timeout, Linux 5.11)",
            ));
        }
        if !params.is_feature_nodrop() {
            return Err(Refusal::Missing("IORING_FEAT_NODROP (Linux 5.5)"));
        }
        let mut probe = io_uring::Probe::new();
        ring.submitter()
            .register_probe(&mut probe)
            .map_err(|e| Refusal::Setup(format!("IORING_REGISTER_PROBE: {e}")))?;
        for (code, name) in [
            (opcode::AcceptMulti::CODE, "accept"),
            (opcode::RecvMulti::CODE, "recv"),
            (opcode::Send::CODE, "send"),
            (opcode::PollAdd::CODE, "poll"),
            (opcode::AsyncCancel::CODE, "cancel"),
        ] {
            if !probe.is_supported(code) {
                return Err(Refusal::Missing(name));
            }
        }
        // Multishot receive (6.0) has no opcode of its own to probe.
        if let Some(release) = kernel_release() {
            if release < (6, 0) {
                return Err(Refusal::Missing("multishot receive (Linux 6.0)"));
            }
        }
        let bufs = BufRing::new(&ring)?;
        let mut ring = Ring {
            ring,
            bufs,
            listener: listener.as_raw_fd(),
            accepting: false,
            accept_wanted: true,
            epoll: None,
            polling: false,
            sending: Vec::new(),
            queued_sends: Vec::new(),
            submitted_sends: Vec::new(),
            send_seq: 0,
            suspects: Vec::new(),
            orphans: Vec::new(),
            spare: Vec::new(),
            held: Vec::new(),
            resumed: Vec::new(),
            done: Vec::new(),
            repoll: false,
            in_flight: 0,
        };
        ring.arm_accept();
        Ok(ring)
    }

    /// A line for the start-up log.
    pub(super) fn describe(&self) -> String {
        format!(
            "{} buffers of {} B, {} submission entries",
            BUF_COUNT, BUF_SIZE, SQ_ENTRIES
        )
    }

    /// Queues `entry`, submitting what is queued first if the queue is full.
    fn push(&mut self, entry: squeue::Entry) {
        loop {
            // SAFETY: every entry queued here points at memory that outlives
            // its operation: sends at a buffer kept in `sending` or
            // `orphans` until their completion, receives at the buffer ring
            // (owned by `self`, unregistered only after every operation
            // ended, see `Drop`), the others at nothing.
            let pushed = unsafe { self.ring.submission().push(&entry) };
            if pushed.is_ok() {
                self.in_flight += 1;
                return;
            }
            if let Err(e) = self.ring.submit() {
                log::warn!("io_uring submit failed: {e}");
                return;
            }
        }
    }

    fn arm_accept(&mut self) {
        if self.accepting {
            return;
        }
        let entry = opcode::AcceptMulti::new(Fd(self.listener))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data(ACCEPT, None));
        self.push(entry);
        self.accepting = true;
    }

    /// Starts or stops accepting (a pause after running out of
    /// descriptors; the shutdown).
    pub(crate) fn set_accepting(&mut self, on: bool) {
        self.accept_wanted = on;
        if on {
            self.arm_accept();
        } else if self.accepting {
            self.accepting = false;
            self.cancel(user_data(ACCEPT, None));
        }
    }

    /// The accept ended (a completion without `more`): armed again if it
    /// is still wanted.
    pub(crate) fn accept_ended(&mut self) {
        self.accepting = false;
        if self.accept_wanted {
            self.arm_accept();
        }
    }

    /// Polls `epoll` (readable when the wake-up eventfd or an extra source
    /// is) on the ring.
    pub(crate) fn watch(&mut self, epoll: RawFd) {
        self.epoll = Some(epoll);
        self.arm_poll();
    }

    /// The poll ended (a completion without `more`): armed again.
    pub(crate) fn arm_poll(&mut self) {
        let Some(fd) = self.epoll else {
            return;
        };
        if self.polling {
            return;
        }
        let entry = opcode::PollAdd::new(Fd(fd), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(user_data(POLL, None));
        self.push(entry);
        self.polling = true;
    }

    pub(crate) fn poll_ended(&mut self) {
        self.polling = false;
        self.arm_poll();
    }

    /// Arms a multishot receive for connection `id` on `fd`.
    pub(crate) fn recv(&mut self, fd: RawFd, id: ConnId) {
        let entry = opcode::RecvMulti::new(Fd(fd), BGID)
            .build()
            .user_data(user_data(RECV, Some(id)));
        self.push(entry);
    }

    /// Cancels the receive of `id` (it stops reading, or it is gone).
    pub(crate) fn cancel_recv(&mut self, id: ConnId) {
        self.cancel(user_data(RECV, Some(id)));
    }

    fn cancel(&mut self, target: u64) {
        let entry = opcode::AsyncCancel::new(target)
            .build()
            .user_data(user_data(CANCEL, None));
        self.push(entry);
    }

    /// A buffer for a send: a spare one, or a new one.
    pub(crate) fn send_buffer(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_default()
    }

    /// Keeps `buf` for a later send, if there is room.
    pub(crate) fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.spare.len() < SPARE_SENDS && buf.capacity() <= SEND_KEEP {
            buf.clear();
            self.spare.push(buf);
        }
    }

    /// Sends `buf` on `fd` for `id`; it stays here until the completion.
    pub(crate) fn send(&mut self, fd: RawFd, id: ConnId, buf: Vec<u8>) {
        let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        let entry = opcode::Send::new(Fd(fd), buf.as_ptr(), len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data(SEND, Some(id)));
        let index = id.index();
        if self.sending.len() <= index {
            self.sending.resize_with(index + 1, || None);
        }
        self.send_seq += 1;
        self.sending[index] = Some((id.generation(), self.send_seq, buf));
        self.queued_sends.push((id, self.send_seq));
        self.push(entry);
    }

    /// A send of `id` took only the first `n` bytes of its buffer: the rest
    /// goes now, before anything else of it.
    pub(crate) fn send_rest(&mut self, fd: RawFd, id: ConnId, n: usize) {
        let Some(Some((_, _, buf))) = self.sending.get_mut(id.index()) else {
            return;
        };
        buf.drain(..n.min(buf.len()));
        let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        let entry = opcode::Send::new(Fd(fd), buf.as_ptr(), len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data(SEND, Some(id)));
        self.send_seq += 1;
        if let Some(Some((_, seq, _))) = self.sending.get_mut(id.index()) {
            *seq = self.send_seq;
        }
        self.queued_sends.push((id, self.send_seq));
        self.push(entry);
    }

    /// The connections whose send is still in flight after two waits since
    /// it was submitted: a send the socket has room for completes as it is
    /// submitted, so these found their socket full and it stayed full for a
    /// pass (epoll's "refused"; one wait alone would also catch a socket
    /// its reader was draining at that moment).
    pub(crate) fn stuck_sends(&mut self) -> Vec<ConnId> {
        let in_flight = |sending: &[Option<(u32, u64, Vec<u8>)>], id: &ConnId, seq: &u64| {
            sending.get(id.index()).is_some_and(|s| {
                s.as_ref()
                    .is_some_and(|(g, n, _)| *g == id.generation() && n == seq)
            })
        };
        let mut stuck = std::mem::take(&mut self.suspects);
        stuck.retain(|(id, seq)| in_flight(&self.sending, id, seq));
        let ids = stuck.iter().map(|(id, _)| *id).collect();
        // Stuck ones stay watched while in flight: what is queued behind
        // them later makes them behind then (the connection's queue may
        // be empty now).
        let mut suspects = std::mem::take(&mut self.submitted_sends);
        suspects.retain(|(id, seq)| in_flight(&self.sending, id, seq));
        stuck.append(&mut suspects);
        self.suspects = stuck;
        ids
    }

    /// The length of the send in flight for `id`, if any.
    pub(crate) fn send_len(&self, id: ConnId) -> Option<usize> {
        match self.sending.get(id.index())? {
            Some((g, _, buf)) if *g == id.generation() => Some(buf.len()),
            _ => None,
        }
    }

    /// A send of (`index`, `generation`) completed: its buffer is free.
    pub(crate) fn send_done(&mut self, index: usize, generation: u32) {
        let current = self.sending.get_mut(index).and_then(|s| {
            let ours = s
                .as_ref()
                .is_some_and(|(g, _, _)| u64::from(*g) & GEN_MASK == u64::from(generation));
            if ours {
                s.take()
            } else {
                None
            }
        });
        let buf = match current {
            Some((_, _, buf)) => Some(buf),
            None => {
                let ud = (SEND << 60) | (u64::from(generation) << 32) | index as u64;
                self.orphans
                    .iter()
                    .position(|(u, _)| *u == ud)
                    .map(|at| self.orphans.swap_remove(at).1)
            }
        };
        if let Some(buf) = buf {
            self.recycle(buf);
        }
    }

    /// Connection `id` is gone: its receive is cancelled, a send in flight
    /// keeps its buffer until it completes, its held bytes go. What is
    /// queued is submitted now, before the caller closes the socket: an
    /// entry naming its descriptor must not meet a new socket that reuses
    /// the number.
    pub(crate) fn forget(&mut self, id: ConnId, receiving: bool) {
        if receiving {
            self.cancel_recv(id);
        }
        let index = id.index();
        if let Some(slot) = self.sending.get_mut(index) {
            if let Some((generation, seq, buf)) = slot.take() {
                if generation == id.generation() {
                    self.orphans.push((user_data(SEND, Some(id)), buf));
                } else {
                    *slot = Some((generation, seq, buf));
                }
            }
        }
        self.held.retain(|(held, _)| *held != id);
        self.resumed.retain(|r| *r != id);
        self.submit();
    }

    /// The bytes of buffer `bid` that a receive completion reported.
    pub(crate) fn bytes(&self, bid: u16, len: usize) -> &[u8] {
        self.bufs.bytes(bid, len)
    }

    /// Gives buffer `bid` back to the kernel.
    pub(crate) fn give_back(&mut self, bid: u16) {
        self.bufs.give_back(bid);
    }

    /// Keeps `bytes` for `id`, which does not read now.
    pub(crate) fn hold(&mut self, id: ConnId, bytes: &[u8]) {
        match self.held.iter_mut().find(|(held, _)| *held == id) {
            Some((_, buf)) => buf.extend_from_slice(bytes),
            None => self.held.push((id, bytes.to_vec())),
        }
    }

    /// `id` reads again: its held bytes are handed over at the next pass.
    pub(crate) fn resume(&mut self, id: ConnId) {
        if !self.resumed.contains(&id) {
            self.resumed.push(id);
        }
    }

    /// The held bytes of `id`, taken.
    pub(crate) fn take_held(&mut self, id: ConnId) -> Option<Vec<u8>> {
        let at = self.held.iter().position(|(held, _)| *held == id)?;
        Some(self.held.swap_remove(at).1)
    }

    /// Takes back the (emptied) list of completions, for its capacity.
    pub(crate) fn keep_done(&mut self, done: Vec<Done>) {
        self.done = done;
    }

    /// Whether the next wait must not sleep (held bytes are due, or a
    /// source may still be ready).
    pub(crate) fn has_work(&self) -> bool {
        !self.resumed.is_empty() || self.repoll
    }

    /// Looks at the epoll descriptor again next pass, or not.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn set_repoll(&mut self, again: bool) {
        self.repoll = again;
    }

    /// What the next pass acts on: the connections whose held bytes are
    /// due, the completions of the last wait, and whether to look at the
    /// epoll descriptor again.
    pub(crate) fn take_completions(&mut self) -> (Vec<ConnId>, Vec<Done>, bool) {
        (
            std::mem::take(&mut self.resumed),
            std::mem::take(&mut self.done),
            std::mem::replace(&mut self.repoll, false),
        )
    }

    /// Submits what is queued (the buffers given back made visible first),
    /// without waiting.
    pub(crate) fn submit(&mut self) {
        self.bufs.publish();
        if self.ring.submission().is_empty() {
            return;
        }
        if let Err(e) = self.ring.submit() {
            log::warn!("io_uring submit failed: {e}");
        }
    }

    /// Submits what is queued and waits, in one `io_uring_enter`, for a
    /// completion or `timeout` (`None`: no limit); then takes every
    /// completion into `done`.
    pub(crate) fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.bufs.publish();
        self.submitted_sends.clear();
        std::mem::swap(&mut self.submitted_sends, &mut self.queued_sends);
        let timeout = if self.has_work() {
            Some(Duration::ZERO)
        } else {
            timeout
        };
        let result = match timeout {
            None => self.ring.submit_and_wait(1),
            Some(t) if t.is_zero() => self.ring.submit(),
            Some(t) => {
                let ts = Timespec::new().sec(t.as_secs()).nsec(t.subsec_nanos());
                let args = SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
        };
        match result {
            Ok(_) => {}
            // The timeout passed, a signal came (the stop handler), or the
            // completion queue is full: take what is there.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) => {}
            Err(e) => return Err(e),
        }
        self.done.clear();
        for cqe in self.ring.completion() {
            if !cqueue::more(cqe.flags()) {
                self.in_flight = self.in_flight.saturating_sub(1);
            }
            self.done
                .push(Done::decode(cqe.user_data(), cqe.result(), cqe.flags()));
        }
        Ok(())
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // No operation may outlive the buffers it reads or writes: cancel
        // them all and take their completions before the memory goes.
        let all = opcode::AsyncCancel2::new(CancelBuilder::any())
            .build()
            .user_data(user_data(CANCEL, None));
        self.push(all);
        for _ in 0..100 {
            if self.in_flight == 0 {
                break;
            }
            if self.wait(Some(Duration::from_millis(10))).is_err() {
                break;
            }
            for done in std::mem::take(&mut self.done) {
                if let Done::Accept { res, .. } = done {
                    drop(accepted_fd(res));
                }
            }
        }
        let _ = self.ring.submitter().unregister_buf_ring(BGID);
    }
}

impl AsRawFd for Ring {
    fn as_raw_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }
}

impl std::os::fd::AsFd for Ring {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        // SAFETY: the ring's descriptor stays open as long as `self`, which
        // the returned borrow cannot outlive.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(self.ring.as_raw_fd()) }
    }
}

/// The error of `io_uring_setup`, with `kernel.io_uring_disabled` when it
/// is set (the usual reason for `EPERM`).
fn with_sysctl(e: io::Error) -> String {
    match std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled") {
        Ok(v) if v.trim() != "0" => format!("{e} (kernel.io_uring_disabled={})", v.trim()),
        _ => e.to_string(),
    }
}

/// The running kernel's major and minor release, if it can be read.
fn kernel_release() -> Option<(u32, u32)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let mut parts = release.trim().split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}
