//! Everything the poll loop owns except the handler and its buffers: the
//! listener, the poller, the slab of connections with their sockets, the
//! timer wheel, the loop's clock, and the list of connections to settle. A
//! [`super::Context`] is a thin view of it.
//!
//! No protocol decision is made here: each connection's
//! [`Connection`] decides what to send and when it is done; the core moves
//! its bytes to its socket, files its deadline in the wheel, keeps the
//! poller's interest in step with what it wants, and closes the socket when
//! it is finished.
//!
//! This file holds the core's state, the clock and the wheel, accepting,
//! sending to one connection, closing and the queries; its submodules the
//! rest: `settle` (after the loop acted on a connection), `broadcast`
//! (broadcasts, publications) and `paced` (paced feeds).

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::poller::{Event, PollMode, Poller};
use log::{debug, warn};

use crate::proto::connection::{Connection, Message, Notice, SendError, Settings, SharedFrame};
use crate::proto::deflate::Codec;
use crate::proto::frame::{encode_frame, OpCode, ServerHeader, MAX_CONTROL_PAYLOAD};
use crate::proto::http::Response;

use super::driver::{self, Ring};
use super::feed::Feed;
use super::handler::TimerId;
use super::per_ip::PerIp;
use super::slab::{ConnId, Slab};
use super::stats::Stats;
use super::timer::{Tick, TimerWheel, TICK};
use super::topics::Topics;
use super::transmit;
use super::user_data::UserData;
use super::Config;

mod broadcast;
mod burst;
mod clock;
mod completions;
mod paced;
mod settle;
#[cfg(test)]
mod test_support;

use clock::tick_at;
use paced::feed_live;
use settle::touch_slot;

/// [`TICK`] in nanoseconds.
const TICK_NANOS: u64 = TICK.as_nanos() as u64;

/// The poller key of the listening socket.
pub(crate) const LISTENER_KEY: usize = usize::MAX - 1;

/// How long accepting pauses after running out of file descriptors.
pub(super) const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A message at least this large goes straight to the socket with what is
/// queued before it, instead of being copied into the queue.
const DIRECT_MIN: usize = 16 * 1024;

/// Connections accepted past the limit only to be told `503`, at most.
const MAX_BUSY_REJECTS: usize = 64;

/// Poller interest bits.
const READ: u8 = 1;
const WRITE: u8 = 2;

/// `Slot::io` bits, with the uring driver (see `super::driver`): the slot is
/// driven by the ring, its multishot receive is armed, a send of it is in
/// flight, bytes it received wait in the ring's held list.
pub(crate) const IO_URING: u8 = 1;
pub(crate) const IO_RECV: u8 = 2;
pub(crate) const IO_SENDING: u8 = 4;
pub(crate) const IO_HELD: u8 = 8;
/// On `Core::send_dirty`.
pub(crate) const IO_DIRTY: u8 = 16;
/// Its receive is being cancelled: armed again only after its last
/// completion, so that two receives never run on one socket.
pub(crate) const IO_CANCELLING: u8 = 32;

/// What a timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// A connection's earliest deadline.
    Conn(ConnId),
    Ping,
    ResumeAccept,
    ShutdownDeadline,
    User(TimerId),
}

/// A connection with its socket and the loop's bookkeeping for it.
pub(crate) struct Slot {
    pub stream: TcpStream,
    pub conn: Connection,
    /// The tick its wheel entry is filed under (0: none).
    timer: u32,
    /// The interest registered with the poller.
    interest: u8,
    /// Whether it is on the touched list.
    touched: bool,
    /// Whether it is on the dirty list (broadcasts queued, not yet written).
    dirty: bool,
    /// Whether it is counted as open (a broadcast member).
    member: bool,
    /// Whether it was accepted only to be told `503`.
    busy_reject: bool,
    /// Whether it has a paced feed (see [`super::feed`]) in `Core::feeds`.
    fed: bool,
    /// Its state on the ring (`IO_*` bits); 0 with epoll.
    pub(crate) io: u8,
    /// Its TLS session, on a TLS listener: plaintext between it and `conn`.
    #[cfg(feature = "tls")]
    pub tls: Option<Box<crate::tls::TlsSession>>,
}

impl Slot {
    /// Whether its TLS session holds ciphertext the socket has not taken.
    pub(crate) fn tls_wants_write(&self) -> bool {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_deref() {
            return tls.wants_write();
        }
        false
    }

    /// Writes what its TLS session holds; a failure ends the connection.
    fn flush_tls(&mut self) {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_deref_mut() {
            if let Err(e) = transmit::flush_tls(tls, &self.stream) {
                debug!("TLS write failed: {e}");
                let _ = self.conn.kill();
            }
        }
    }
}

/// What settling a connection left for the handler (see [`Core::settle`]).
#[derive(Debug, Default)]
pub(crate) struct Settled {
    /// It was activated: it is open now, and these bytes came with its
    /// request.
    pub activated: Option<Vec<u8>>,
    /// It ended without its input saying so, with this close code.
    pub closed: Option<crate::CloseCode>,
    /// It is gone from the slab.
    pub removed: bool,
}

/// The loop's state, minus the handler and its buffers.
pub(crate) struct Core {
    /// The epoll instance: every readiness with the epoll driver; with the
    /// uring driver only the wake-up eventfd and extra sources, its
    /// descriptor polled on the ring.
    pub poller: Arc<Poller>,
    /// The io_uring driver, if it runs (`None`: epoll).
    pub(crate) ring: driver::RingSlot,
    listener: Option<TcpListener>,
    pub local_addr: SocketAddr,
    pub slots: Slab<Slot>,
    wheel: TimerWheel<Timer>,
    user_timers: Slab<(u64, Tick)>,
    /// The handler's values, one per connection at most.
    pub(crate) user_data: UserData,
    pub config: Config,
    pub settings: Settings,
    pub(crate) stop_flag: Arc<AtomicBool>,
    pub(crate) reload_flag: Arc<AtomicBool>,
    pub stopping: bool,
    busy_rejects: usize,
    /// The loop's clock: read once per pass (see [`Core::set_clock`]), and
    /// handed to every connection.
    pub now: Instant,
    /// `now` as nanoseconds since `start`, for the wheel's ticks.
    now_nanos: u64,
    /// Whether the deadline is armed on the poller's timer with the uring
    /// driver too: a program that runs the loop with `run_once` from a wait
    /// of its own on the ring's descriptor must be woken by it (the epoll
    /// descriptor holding the timer is polled on the ring).
    pub(crate) timer_on_fd: bool,
    /// When the poller's timer is armed to fire (nanoseconds since
    /// `start`), if it was armed; it may have fired since.
    timer_armed: Option<u64>,
    /// Another source of readiness, when attached (see `super::source`;
    /// compiled in only with a feature that brings one, `redis`).
    #[cfg(feature = "redis")]
    pub(crate) source: Option<Box<dyn super::source::Source>>,
    start: Instant,
    /// The blocks broadcasts are encoded in (see `broadcast`).
    blocks: broadcast::Blocks,
    /// The loop's compressor and decompressor, shared by every connection.
    pub codec: Codec,
    /// Topics and their members.
    pub topics: Topics,
    /// The counters.
    pub stats: Stats,
    /// Connections acted on since the loop last settled them.
    touched: Vec<ConnId>,
    /// Messages at least this large go straight to the socket
    /// ([`Core::send`]): [`DIRECT_MIN`], or 0 while the handler is given a
    /// read of one whole message (see [`Core::reply_now`]).
    direct_min: usize,
    /// Members that broadcasts gave output since the last
    /// [`Core::flush_dirty`], which writes it.
    dirty: Vec<ConnId>,
    /// Rounds of [`Core::flush_dirty`]'s writes so far: a topic's live
    /// range is good for the round it was made in.
    round: u64,
    /// Connections with output for the ring's next sends (uring driver).
    send_dirty: Vec<ConnId>,
    /// Connections counted as open.
    open_count: usize,
    /// Called when a burst of connections ends (see `burst`).
    pub(crate) release_memory: Option<fn()>,
    /// The most connections since the last release.
    burst_peak: usize,
    /// The paced feeds, by slot index (see [`super::feed`]).
    feeds: HashMap<usize, Feed>,
    /// Connections by address, with `max_connections_per_ip`.
    per_ip: PerIp,
    /// The certificate and key new connections use, on a TLS listener.
    #[cfg(feature = "tls")]
    pub tls: Option<crate::tls::TlsConfig>,
}

impl Core {
    pub(crate) fn new(listener: TcpListener, config: Config) -> io::Result<Core> {
        if config.deflate && !cfg!(feature = "deflate") {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "permessage-deflate needs rookery built with the feature `deflate`",
            ));
        }
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let poller = Arc::new(Poller::new()?);
        let mut ring = driver::open(config.io, &listener)?;
        match ring.as_deref_mut() {
            Some(ring) => {
                ring.watch(poller.as_raw_fd());
                // Accepting and the wake-up are armed before the first
                // pass: a program may wait on the ring's descriptor first.
                ring.submit();
            }
            // Deleted from the poller before it is dropped (`begin_shutdown`,
            // and `Drop for Core`).
            None => {
                poller.add_with_mode(&listener, Event::readable(LISTENER_KEY), PollMode::Level)?
            }
        }
        let now = Instant::now();
        let mut core = Core {
            poller,
            ring,
            listener: Some(listener),
            local_addr,
            slots: Slab::default(),
            wheel: TimerWheel::new(),
            user_timers: Slab::default(),
            user_data: UserData::default(),
            settings: config.settings(),
            config,
            stop_flag: Arc::new(AtomicBool::new(false)),
            reload_flag: Arc::new(AtomicBool::new(false)),
            stopping: false,
            busy_rejects: 0,
            now,
            now_nanos: 0,
            timer_armed: None,
            timer_on_fd: false,
            start: now,
            blocks: broadcast::Blocks::default(),
            codec: Codec::default(),
            topics: Topics::default(),
            stats: Stats::default(),
            touched: Vec::new(),
            direct_min: DIRECT_MIN,
            dirty: Vec::new(),
            round: 0,
            send_dirty: Vec::new(),
            open_count: 0,
            release_memory: None,
            burst_peak: 0,
            feeds: HashMap::new(),
            per_ip: PerIp::default(),
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "redis")]
            source: None,
        };
        core.schedule_ping();
        Ok(core)
    }

    // ---- accepting -------------------------------------------------------

    /// Accepts every pending connection (up to a batch).
    pub(crate) fn accept_ready(&mut self) {
        for _ in 0..64 {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if is_resource_exhaustion(&e) => {
                    warn!("accept failed ({e}); pausing accepts for {ACCEPT_BACKOFF:?}");
                    self.set_listener_interest(false);
                    self.schedule(ACCEPT_BACKOFF, Timer::ResumeAccept);
                    return;
                }
                // ECONNABORTED and friends concern one connection only.
                Err(e) => debug!("accept: {e}"),
            }
        }
    }

    pub(crate) fn resume_accepting(&mut self) {
        self.set_listener_interest(true);
    }

    pub(super) fn set_listener_interest(&mut self, readable: bool) {
        if let Some(ring) = self.ring.as_deref_mut() {
            ring.set_accepting(readable && self.listener.is_some());
            return;
        }
        if let Some(listener) = self.listener.as_ref() {
            let interest = if readable {
                Event::readable(LISTENER_KEY)
            } else {
                Event::none(LISTENER_KEY)
            };
            // Level mode, as registered: plain `modify` would switch the
            // listener to oneshot, and it would stop accepting for good.
            if let Err(e) = self
                .poller
                .modify_with_mode(listener, interest, PollMode::Level)
            {
                warn!("cannot change the listener's interest: {e}");
            }
        }
    }

    pub(super) fn admit(&mut self, stream: TcpStream, peer: SocketAddr) {
        // On the ring a socket stays blocking: io_uring returns EAGAIN for a
        // non-blocking one instead of waiting for room itself.
        if stream.set_nonblocking(self.ring.is_none()).is_err() {
            return;
        }
        let _ = stream.set_nodelay(true);
        self.stats.connections_accepted += 1;
        let live = self.slots.len() - self.busy_rejects;
        let per_ip = self.config.max_connections_per_ip;
        let crowded = per_ip > 0 && self.per_ip.is_full(peer.ip(), per_ip);
        let busy = live >= self.config.max_connections || crowded;
        if busy && self.busy_rejects >= MAX_BUSY_REJECTS {
            debug!("dropping {peer}: at the connection limit");
            return;
        }
        #[cfg(feature = "tls")]
        let tls = match self.tls.as_ref().map(crate::tls::TlsSession::new) {
            None => None,
            Some(Ok(session)) => Some(Box::new(session)),
            Some(Err(e)) => {
                warn!("cannot start TLS for {peer}: {e}");
                return;
            }
        };
        let id = self.slots.insert(Slot {
            stream,
            conn: Connection::new(&self.settings, self.now),
            timer: 0,
            interest: READ,
            touched: false,
            dirty: false,
            member: false,
            busy_reject: busy,
            fed: false,
            io: 0,
            #[cfg(feature = "tls")]
            tls,
        });
        let key = Slab::<Slot>::key(id);
        let Some(slot) = self.slots.get_mut(id) else {
            return;
        };
        // Deleted from the poller (or its receive cancelled) in `remove`
        // before the slot (and its socket) is dropped.
        let added = match self.ring.as_deref_mut() {
            Some(ring) => {
                ring.recv(slot.stream.as_raw_fd(), id);
                slot.io = IO_URING | IO_RECV;
                Ok(())
            }
            None => self
                .poller
                .add_with_mode(&slot.stream, Event::readable(key), PollMode::Level),
        };
        if let Err(e) = added {
            warn!("cannot watch {peer}: {e}");
            self.slots.remove(id);
            return;
        }
        debug!("{id} connected from {peer}");
        if busy {
            self.busy_rejects += 1;
            self.stats.count_refusal(503);
            if crowded {
                debug!(
                    "{id}: {} has {per_ip} connections already, answering 503",
                    peer.ip()
                );
            } else {
                debug!(
                    "{id}: over {} connections, answering 503",
                    self.config.max_connections
                );
            }
            let _ = slot
                .conn
                .respond(&self.settings, self.now, &Response::status(503));
        } else if per_ip > 0 {
            self.per_ip.add(id, peer.ip());
        }
        self.touch(id);
    }

    // ---- writing -----------------------------------------------------------

    /// Sends a message to one connection: copied into its queue when small,
    /// written straight to its socket (with what is queued before it) when
    /// large. Broadcasts made before are ahead of it in its queue.
    ///
    /// Only the choice is inlined: as one function, the queueing path's
    /// register saves (~20 instructions) were paid by every direct reply
    /// too.
    #[inline(always)]
    pub(crate) fn send(&mut self, id: ConnId, msg: Message<'_>) -> Result<(), SendError> {
        if msg.as_bytes().len() >= self.direct_min {
            return self.send_direct(id, msg);
        }
        self.send_queued(id, msg)
    }

    /// [`Core::send`] of a small message: copied into the queue.
    #[inline(never)]
    fn send_queued(&mut self, id: ConnId, msg: Message<'_>) -> Result<(), SendError> {
        let slot = self.slots.get_mut(id).ok_or(SendError::NotOpen)?;
        if slot.fed {
            return self.send_behind_feed(id, msg);
        }
        let result = slot
            .conn
            .send(&self.settings, self.now, &mut self.codec, msg);
        if result.is_ok() {
            self.stats.messages_sent += 1;
        }
        // `touch`, with the lookup already made: this runs for every message.
        touch_slot(slot, id, &mut self.touched, &mut self.open_count);
        result
    }

    /// The handler is given a read of one whole message (a client that
    /// waits for each answer, a low rate; epoll only): the first message it
    /// sends goes straight to the socket, after what is queued, instead of
    /// being copied into the queue and written when the connection settles,
    /// a queue filled and emptied per message. The replies to a read of
    /// several messages are queued, and go out in one write.
    pub(crate) fn reply_now(&mut self) {
        self.direct_min = 0;
    }

    /// Ends [`Core::reply_now`].
    pub(crate) fn reply_later(&mut self) {
        self.direct_min = DIRECT_MIN;
    }

    /// [`Core::send`] for a large message, or the first one sent after
    /// [`Core::reply_now`]: written straight to the socket, after what is
    /// queued; what the socket refuses is queued. Kept out of line so that
    /// the queueing path stays a small function.
    #[inline(never)]
    fn send_direct(&mut self, id: ConnId, msg: Message<'_>) -> Result<(), SendError> {
        self.reply_later();
        let slot = self.slots.get_mut(id).ok_or(SendError::NotOpen)?;
        if slot.fed {
            return self.send_behind_feed(id, msg);
        }
        let result = match slot.conn.message_parts(&mut self.codec, msg) {
            Ok((header, payload)) => {
                transmit::flush_parts(
                    slot,
                    &self.settings,
                    self.now,
                    &mut self.stats,
                    header.as_bytes(),
                    payload,
                );
                self.stats.messages_sent += 1;
                Ok(())
            }
            Err(e) => Err(e),
        };
        // Settling an open connection whose write took everything would
        // change nothing (no output, poller interest and deadline as they
        // were): the reply to a lone message costs no settling.
        if !slot.conn.is_open() || slot.conn.has_output() || slot.conn.wants_write() {
            touch_slot(slot, id, &mut self.touched, &mut self.open_count);
        }
        result
    }

    pub(crate) fn send_shared(&mut self, id: ConnId, frame: &SharedFrame) -> Result<(), SendError> {
        let slot = self.slots.get_mut(id).ok_or(SendError::NotOpen)?;
        let result = if slot.fed {
            if slot.conn.can_send() {
                let bytes = slot.conn.shared_bytes(&mut self.codec, frame);
                feed_live(slot, id, &mut self.feeds, &self.settings, self.now, bytes);
                Ok(())
            } else {
                Err(SendError::NotOpen)
            }
        } else {
            slot.conn
                .send_shared(&self.settings, self.now, &mut self.codec, frame)
        };
        if result.is_ok() {
            self.stats.messages_sent += 1;
        }
        self.touch(id);
        result
    }

    pub(crate) fn ping(&mut self, id: ConnId, payload: &[u8]) -> Result<(), SendError> {
        let slot = self.slots.get_mut(id).ok_or(SendError::NotOpen)?;
        if slot.fed && slot.conn.can_send() && payload.len() <= MAX_CONTROL_PAYLOAD {
            // Behind the feed too: straight into a queue that holds paced
            // frames past the limit, it would meet the slow consumer's check.
            let mut frame = Vec::with_capacity(2 + payload.len());
            encode_frame(&mut frame, OpCode::Ping, payload);
            feed_live(
                slot,
                id,
                &mut self.feeds,
                &self.settings,
                self.now,
                frame.into(),
            );
            self.touch(id);
            return Ok(());
        }
        let result = slot.conn.ping(&self.settings, self.now, payload);
        self.touch(id);
        result
    }

    // ---- closing -------------------------------------------------------------

    pub(crate) fn close(
        &mut self,
        id: ConnId,
        code: crate::CloseCode,
        reason: &str,
    ) -> Result<(), SendError> {
        let slot = self.slots.get_mut(id).ok_or(SendError::NotOpen)?;
        let result = slot.conn.close(&self.settings, self.now, code, reason);
        self.touch(id);
        result
    }

    pub(crate) fn kill(&mut self, id: ConnId) -> Result<(), SendError> {
        let slot = self.slots.get_mut(id).ok_or(SendError::NotOpen)?;
        let result = slot.conn.kill();
        self.touch(id);
        result
    }

    pub(crate) fn activate(&mut self, id: ConnId) -> Result<(), SendError> {
        let slot = self.slots.get_mut(id).ok_or(SendError::NotOpen)?;
        let result = slot.conn.activate();
        self.touch(id);
        result
    }

    /// Stops accepting and closes every connection with 1001.
    pub(crate) fn begin_shutdown(&mut self) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        if let Some(listener) = self.listener.take() {
            match self.ring.as_deref_mut() {
                // Cancelled and submitted before the listener closes.
                Some(ring) => {
                    ring.set_accepting(false);
                    ring.submit();
                }
                None => {
                    let _ = self.poller.delete(&listener);
                }
            }
        }
        for index in 0..self.slots.slot_count() {
            let Some(id) = self.slots.id_at(index) else {
                continue;
            };
            let Some(slot) = self.slots.get_mut(id) else {
                continue;
            };
            if slot.conn.is_handshaking() {
                let _ = slot.conn.kill();
            } else if slot.conn.can_send() {
                let _ = slot.conn.close(
                    &self.settings,
                    self.now,
                    crate::CloseCode::GOING_AWAY,
                    "server shutting down",
                );
            }
            self.touch(id);
        }
        self.schedule(self.config.close_timeout, Timer::ShutdownDeadline);
    }

    /// The shutdown's wait is over: every connection goes now.
    pub(crate) fn kill_all(&mut self) {
        for index in 0..self.slots.slot_count() {
            if let Some(id) = self.slots.id_at(index) {
                let _ = self.kill(id);
            }
        }
    }

    // ---- queries ------------------------------------------------------------

    pub(crate) fn peer_addr(&self, id: ConnId) -> Option<SocketAddr> {
        self.slots.get(id)?.stream.peer_addr().ok()
    }

    pub(crate) fn is_open(&self, id: ConnId) -> bool {
        self.slots.get(id).is_some_and(|s| s.conn.is_open())
    }

    /// Bytes queued for `id` that its socket has not taken, and live bytes
    /// waiting behind its paced feed.
    pub(crate) fn backlog(&self, id: ConnId) -> Option<usize> {
        let slot = self.slots.get(id)?;
        Some(slot.conn.backlog() + self.live_behind_feed(id, slot))
    }

    pub(crate) fn open_connections(&self) -> usize {
        self.open_count
    }

    /// Bytes queued for every connection that their sockets have not taken
    /// yet (a walk over the connections: for reports, not the message path).
    pub(crate) fn total_backlog(&self) -> usize {
        (0..self.slots.slot_count())
            .filter_map(|i| self.slots.id_at(i))
            .filter_map(|id| self.backlog(id))
            .sum()
    }

    pub(crate) fn request_stop(&mut self) {
        self.stop_flag.store(true, Ordering::SeqCst);
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        // Every registered source must leave the poller before it is closed.
        for index in 0..self.slots.slot_count() {
            if let Some(id) = self.slots.id_at(index) {
                if let Some(slot) = self.slots.remove(id) {
                    let _ = self.poller.delete(&slot.stream);
                }
            }
        }
        if let Some(listener) = self.listener.take() {
            let _ = self.poller.delete(&listener);
        }
        #[cfg(feature = "redis")]
        if let Some(mut source) = self.source.take() {
            source.detach(&self.poller);
        }
    }
}

/// A connection's peer address in a log line (`?` once the socket has
/// lost it).
struct Peer<'a>(&'a TcpStream);

impl std::fmt::Display for Peer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.peer_addr() {
            Ok(addr) => write!(f, "{addr}"),
            Err(_) => f.write_str("?"),
        }
    }
}

pub(super) fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle open connection is its slot and nothing on the heap (its
    /// buffers are freed between messages); keep it within a few hundred
    /// bytes, as the idle-memory figure in docs/performance.md depends on it.
    #[test]
    fn an_idle_connection_stays_small() {
        // 152 bytes before the connection became its own state machine;
        // a TLS build adds the session's pointer.
        let slot = std::mem::size_of::<Slot>();
        let tls = if cfg!(feature = "tls") { 8 } else { 0 };
        assert!(slot <= 152 + tls, "{slot}");
    }
}
