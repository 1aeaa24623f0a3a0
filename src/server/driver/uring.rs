//! The io_uring driver: owns the ring, its provided-buffer ring
//! ([`buffers`]), the sends' bytes in flight, and every `unsafe` block the
//! `io-uring` crate asks for: three, each where the kernel is handed memory
//! or a descriptor (pushing a submission and owning an accepted socket
//! here, registering the buffer ring in [`buffers`]).
//!
//! What runs on the ring: one multishot accept on the listener; one
//! multishot receive per connection that wants to read, each landing in a
//! buffer the kernel picks from a ring shared by all connections: 32
//! buffers of 56 KiB that the kernel fills receive after receive
//! (incremental consumption, Linux 6.12), else 256 of 7 KiB, one a receive
//! (an idle connection holds no read buffer; a buffer goes back to the ring
//! as soon as the kernel is done with it and its bytes are copied into the
//! loop's read buffer); at most one send per connection, of its pending
//! output moved out of its queue (or, for a few bytes, a copy), kept here
//! with its iovecs until the completion (so the memory the kernel reads
//! stays valid, whatever the connection does meanwhile, and bytes are never
//! reordered); and a multishot poll on the epoll descriptor that holds the
//! cross-thread wake-up eventfd and any extra sources (the Redis bridge),
//! so that they wake the same wait. Every submission of a pass goes to the
//! kernel with the next pass's wait, in one `io_uring_enter`, whose timeout
//! is the wheel's next deadline; only a connection whose output paused its
//! reading sends in the middle of the pass (`send_now`).
//!
//! Fixed memory, set here at start: the buffers, [`buffers::BUF_MEMORY`] = 1.75 MiB
//! (written at start, so resident from the start), their ring
//! of 4 KiB, and the submission and completion queues
//! (256 and 1024 entries, 16 KiB + 16 KiB). A send takes at most
//! `SEND_MAX` (1 MiB) of a connection's output; at most [`SPARE_SMALL`]
//! (64) copy buffers of up to `SEND_COPY` (4 KiB), or [`SPARE_SENDS`] (8)
//! of up to `SEND_KEEP` (64 KiB), and 64 emptied outputs are kept for
//! reuse.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use io_uring::types::{CancelBuilder, Fd, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring};

use self::buffers::{BufRing, Geometry, BGID};
use super::sends::{release_spare, release_spare_over, Outgoing, Sends};
use super::{injected_refusal, Refusal, SEND_COPY, SEND_KEEP};
use crate::proto::TakenOutput;
use crate::server::slab::ConnId;

mod buffers;

/// Submission queue entries (the completion queue gets four times as many).
const SQ_ENTRIES: u32 = 256;
/// Send buffers of up to `SEND_KEEP` kept for reuse once their send
/// completed.
pub(crate) const SPARE_SENDS: usize = 8;
/// Send buffers of up to `SEND_COPY` (a small output's copy), and emptied
/// outputs, kept for reuse: a pass at a fixed rate of 50,000 echoes a
/// second starts dozens of sends, and with eight kept the rest were
/// allocated and freed each pass (three allocations a send: the copy, the
/// output's list and the queue's buffer, about 0.7 a message).
pub(crate) const SPARE_SMALL: usize = 64;

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
        /// The kernel goes on filling buffer `bid` (`IORING_CQE_F_BUF_MORE`).
        kept: bool,
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
                kept: cqueue::buffer_more(flags),
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
    sends: Sends,
    /// Connections whose send was queued since the last wait, and those
    /// whose send the last wait submitted (see `stuck_sends`).
    queued_sends: Vec<(ConnId, u64)>,
    submitted_sends: Vec<(ConnId, u64)>,
    /// Sends found in flight after the wait that submitted them.
    suspects: Vec<(ConnId, u64)>,
    /// The connections of the suspects found still in flight a wait later
    /// (`stuck_sends`).
    stuck: Vec<ConnId>,
    /// The number of the last send queued (each send in flight has its own).
    send_seq: u64,
    /// Sends still in flight for connections that are gone, by user data.
    orphans: Vec<(u64, Outgoing)>,
    spare: Vec<Vec<u8>>,
    /// Emptied outputs of sends that completed, kept for their memory.
    spare_outputs: Vec<TakenOutput>,
    /// Bytes received for a connection that did not want them yet.
    held: Vec<(ConnId, Vec<u8>)>,
    /// Connections whose held bytes are to be read at the next pass.
    resumed: Vec<ConnId>,
    /// Completions of the last wait.
    done: Vec<Done>,
    /// Completions taken from the queue during a pass (`send_now`), acted
    /// on at the next.
    late: Vec<Done>,
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
            // A completion's task work runs at the loop's next entry into
            // the kernel, not by interrupting it (an inter-processor
            // interrupt per receive otherwise); the flag in the submission
            // queue tells a submit that some is pending, so that it takes
            // it (GETEVENTS). Not DEFER_TASKRUN: it would tie the ring to
            // the thread that made it, and a loop run from another event
            // loop waiting on the ring's descriptor would not be woken.
            .setup_coop_taskrun()
            .setup_taskrun_flag()
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
            sends: Sends::default(),
            queued_sends: Vec::new(),
            submitted_sends: Vec::new(),
            send_seq: 0,
            suspects: Vec::new(),
            stuck: Vec::new(),
            orphans: Vec::new(),
            spare: Vec::new(),
            spare_outputs: Vec::new(),
            held: Vec::new(),
            resumed: Vec::new(),
            done: Vec::new(),
            late: Vec::new(),
            repoll: false,
            in_flight: 0,
        };
        ring.arm_accept();
        Ok(ring)
    }

    /// A line for the start-up log.
    pub(super) fn describe(&self) -> String {
        let Geometry {
            count,
            size,
            incremental,
        } = self.bufs.geometry;
        let filled = if incremental {
            "filled in turn"
        } else {
            "one a receive"
        };
        format!(
            "{count} buffers of {size} B ({filled}), {SQ_ENTRIES} submission entries, cooperative task run"
        )
    }

    /// Queues `entry`, submitting what is queued first if the queue is full.
    fn push(&mut self, entry: squeue::Entry) {
        loop {
            // SAFETY: every entry queued here points at memory that outlives
            // its operation. A send points at an `Outgoing` (its bytes, its
            // iovecs, its `msghdr`) kept in `sends` until its completion, or
            // in `orphans` when its connection goes first (`forget`): its
            // bytes are chunks moved out of the connection's queue or a
            // copy, so nothing the connection does meanwhile (appending,
            // consuming, closing) moves or frees them, and the iovecs and
            // `msghdr` are on the heap, unmoved when the record moves; a
            // short send's rest is queued only after the completion of the
            // part before. Receives point at the buffer ring (owned by
            // `self`, unregistered only after every operation ended); `Drop`
            // leaks all of it if an operation may still be in flight. The
            // others point at nothing.
            let pushed = unsafe { self.ring.submission().push(&entry) };
            if pushed.is_ok() {
                self.in_flight += 1;
                return;
            }
            if let Err(e) = self.ring.submit() {
                log::warn!("io_uring submit failed: {e}");
                return;
            }
            self.reap_releasing_sends();
        }
    }

    /// Takes every completion in the queue into `late` (after a submission
    /// in the middle of a pass, when the submission queue filled), and
    /// gives back at once the bytes of each send that completed whole: the
    /// connection hears of it at the next pass (`Core::sent`), but the
    /// kernel is done with them. A pass that starts thousands of sends (a
    /// burst of connections set up at once, each answered) otherwise held
    /// every one's bytes until the next pass, and with them past the
    /// completion queue's 1,024 entries until the passes after it: 7,500
    /// sends at once, the memory of which stayed with the allocator (4 MiB
    /// of RSS); now it reuses a few spare buffers. The completion queue
    /// stays short of overflowing, too.
    pub(crate) fn reap_releasing_sends(&mut self) {
        let from = self.late.len();
        self.reap_into_late();
        for at in from..self.late.len() {
            let Done::Send {
                index,
                generation,
                res,
            } = self.late[at]
            else {
                continue;
            };
            let whole = match usize::try_from(res) {
                Ok(n) => self
                    .send_len_at(index, generation)
                    .is_none_or(|len| n >= len),
                // Failed: nothing of it will go again.
                Err(_) => true,
            };
            if whole {
                self.send_done(index, generation);
            }
        }
    }

    /// The length of the send in flight for slot `index` of `generation`
    /// (28 bits), if any.
    fn send_len_at(&self, index: usize, generation: u32) -> Option<usize> {
        let send = self.sends.get(index)?;
        (u64::from(send.generation) & GEN_MASK == u64::from(generation)).then(|| send.buf.len())
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

    /// An empty output for a send: a spare one, or a new one.
    pub(crate) fn output(&mut self) -> TakenOutput {
        self.spare_outputs.pop().unwrap_or_default()
    }

    /// Keeps `out` (emptied) and the buffer of its copy for later sends,
    /// if there is room.
    pub(crate) fn recycle_output(&mut self, mut out: TakenOutput) {
        if let Some(buf) = out.clear() {
            self.recycle(buf);
        }
        if self.spare_outputs.len() < SPARE_SMALL {
            self.spare_outputs.push(out);
        }
    }

    /// Keeps `buf` for a later send, if there is room.
    pub(crate) fn recycle(&mut self, mut buf: Vec<u8>) {
        let room = match buf.capacity() {
            c if c <= SEND_COPY => SPARE_SMALL,
            c if c <= SEND_KEEP => SPARE_SENDS,
            _ => 0,
        };
        if self.spare.len() < room {
            buf.clear();
            self.spare.push(buf);
        }
    }

    /// Sends `out` on `fd` for `id`: its bytes, and the iovecs that point at
    /// them, stay here until the completion.
    pub(crate) fn send(&mut self, fd: RawFd, id: ConnId, out: TakenOutput) {
        let mut buf = Outgoing::new(out);
        let entry = buf.entry(fd).user_data(user_data(SEND, Some(id)));
        self.send_seq += 1;
        let displaced = self
            .sends
            .insert(id.index(), id.generation(), self.send_seq, buf);
        if let Some(old) = displaced {
            // Not forgotten (a bug elsewhere): its bytes stay until its
            // completion all the same.
            let ud = (SEND << 60) | ((u64::from(old.generation) & GEN_MASK) << 32);
            self.orphans.push((ud | id.index() as u64, old.buf));
        }
        self.queued_sends.push((id, self.send_seq));
        self.push(entry);
    }

    /// A send of `id` took only the first `n` bytes of what it was given:
    /// the rest goes now, from where it is, before anything else of it.
    pub(crate) fn send_rest(&mut self, fd: RawFd, id: ConnId, n: usize) {
        let Some(send) = self.sends.get_mut(id.index()) else {
            return;
        };
        send.buf.out.advance(n);
        let entry = send.buf.entry(fd).user_data(user_data(SEND, Some(id)));
        self.send_seq += 1;
        send.seq = self.send_seq;
        self.queued_sends.push((id, self.send_seq));
        self.push(entry);
    }

    /// Submits what is queued now, in the middle of a pass, and returns the
    /// result of the send of `id` if it completed meanwhile (a send the
    /// socket has room for completes within the submission). Every other
    /// completion that came is kept for the next pass, in order.
    pub(crate) fn send_now(&mut self, id: ConnId) -> Option<i32> {
        self.bufs.publish();
        if let Err(e) = self.ring.submit() {
            log::warn!("io_uring submit failed: {e}");
            return None;
        }
        let before = self.late.len();
        self.reap_into_late();
        let generation = u32::try_from(u64::from(id.generation()) & GEN_MASK).unwrap_or(0);
        let mine = |d: &Done| {
            matches!(d, Done::Send { index, generation: g, .. }
                if *index == id.index() && *g == generation)
        };
        let at = before + self.late[before..].iter().position(mine)?;
        match self.late.remove(at) {
            Done::Send { res, .. } => Some(res),
            _ => None,
        }
    }

    /// The send of `id` completed (see `send_now`): its buffer is free.
    pub(crate) fn send_finished(&mut self, id: ConnId) {
        let generation = u32::try_from(u64::from(id.generation()) & GEN_MASK).unwrap_or(0);
        self.send_done(id.index(), generation);
    }

    /// Takes every completion in the queue into `late`.
    fn reap_into_late(&mut self) {
        for cqe in self.ring.completion() {
            if !cqueue::more(cqe.flags()) {
                self.in_flight = self.in_flight.saturating_sub(1);
            }
            self.late
                .push(Done::decode(cqe.user_data(), cqe.result(), cqe.flags()));
        }
    }

    /// The connections whose send is still in flight after two waits since
    /// it was submitted: a send the socket has room for completes as it is
    /// submitted, so these found their socket full and it stayed full for a
    /// pass (epoll's "refused"; one wait alone would also catch a socket
    /// its reader was draining at that moment).
    pub(crate) fn stuck_sends(&mut self) -> &[ConnId] {
        let sends = &self.sends;
        let in_flight = |(id, seq): &(ConnId, u64)| {
            sends
                .get(id.index())
                .is_some_and(|s| s.generation == id.generation() && s.seq == *seq)
        };
        self.suspects.retain(in_flight);
        self.stuck.clear();
        self.stuck.extend(self.suspects.iter().map(|(id, _)| *id));
        // Stuck ones stay watched while in flight: what is queued behind
        // them later makes them behind then (the connection's queue may
        // be empty now). Each list keeps its memory from pass to pass
        // (`append` leaves the submitted list empty, not unallocated): a
        // list made anew each pass was most of the ring's allocations at a
        // fixed rate, about one a message.
        self.submitted_sends.retain(in_flight);
        self.suspects.append(&mut self.submitted_sends);
        &self.stuck
    }

    /// The length of the send in flight for `id`, if any.
    pub(crate) fn send_len(&self, id: ConnId) -> Option<usize> {
        let send = self.sends.get(id.index())?;
        (send.generation == id.generation()).then(|| send.buf.len())
    }

    /// A send of (`index`, `generation`) completed: its buffer is free.
    pub(crate) fn send_done(&mut self, index: usize, generation: u32) {
        let ours = self
            .sends
            .get(index)
            .is_some_and(|s| u64::from(s.generation) & GEN_MASK == u64::from(generation));
        let current = if ours { self.sends.remove(index) } else { None };
        let buf = match current {
            Some(send) => Some(send.buf),
            None => {
                let ud = (SEND << 60) | (u64::from(generation) << 32) | index as u64;
                let at = self.orphans.iter().position(|(u, _)| *u == ud);
                let orphan = at.map(|at| self.orphans.swap_remove(at).1);
                release_spare(&mut self.orphans);
                orphan
            }
        };
        if let Some(send) = buf {
            self.recycle_output(send.out);
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
        let ours = self
            .sends
            .get(id.index())
            .is_some_and(|s| s.generation == id.generation());
        if let Some(send) = ours.then(|| self.sends.remove(id.index())).flatten() {
            self.orphans.push((user_data(SEND, Some(id)), send.buf));
        }
        self.held.retain(|(held, _)| *held != id);
        self.resumed.retain(|r| *r != id);
        self.submit();
    }

    /// Copies the `len` bytes a receive completion reported in buffer
    /// `bid` into `into` (returns how many fit); the buffer goes back to
    /// the kernel unless it goes on filling it (`kept`).
    pub(crate) fn take(&mut self, bid: u16, kept: bool, len: usize, into: &mut [u8]) -> usize {
        self.bufs.take(bid, kept, len, into)
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
        // A burst's lists give their room back once it has passed (each
        // entry is small, but 10,000 of them are a few hundred KiB that
        // would stay resident).
        const PASS: usize = 1024;
        release_spare_over(&mut self.done, PASS);
        release_spare_over(&mut self.late, PASS);
        release_spare_over(&mut self.queued_sends, PASS);
        release_spare_over(&mut self.submitted_sends, PASS);
        release_spare_over(&mut self.suspects, PASS);
        release_spare_over(&mut self.stuck, PASS);
    }

    /// Whether the next wait must not sleep (held bytes are due, or a
    /// source may still be ready).
    pub(crate) fn has_work(&self) -> bool {
        !self.resumed.is_empty() || self.repoll || !self.late.is_empty()
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
        // The buffers the pass gave back, once a pass: published as each
        // was given back, they halved the receives that found none in echo
        // large (0.21 -> 0.12 a message) but cost 1.15x the CPU a message,
        // the receives going on through the pass in smaller pieces.
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
        self.done.append(&mut self.late);
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
        let unregistered = self.ring.submitter().unregister_buf_ring(BGID).is_ok();
        if self.in_flight != 0 || !unregistered {
            log::warn!(
                "io_uring: operations still in flight at close; their buffers stay allocated"
            );
            self.bufs.leak();
            std::mem::forget(std::mem::take(&mut self.sends));
            std::mem::forget(std::mem::take(&mut self.orphans));
        }
    }
}

impl AsRawFd for Ring {
    fn as_raw_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }
}

impl AsFd for Ring {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.ring.as_fd()
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

#[cfg(test)]
mod tests;
