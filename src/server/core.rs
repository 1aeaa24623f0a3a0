//! Everything the poll loop owns except the handler and the read buffer:
//! the connections, the poller, the timers, and the actions on them that a
//! [`super::Context`] exposes.

use std::collections::VecDeque;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, warn};
use polling::{Event, PollMode, Poller};

use crate::proto::close;
use crate::proto::frame::{encode_close, OpCode, ServerHeader, MAX_CONTROL_PAYLOAD};

use super::conn::{Conn, Phase, READ, WRITE};
use super::handler::{Message, SendError, TimerId};
use super::outqueue::{skip, write_parts, MAX_PARTS};
use super::slab::{ConnId, Slab};
use super::timer::{ticks, Tick, TimerWheel};
use super::Config;

/// The poller key of the listening socket.
pub(crate) const LISTENER_KEY: usize = usize::MAX - 1;

/// How long accepting pauses after running out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A write to a corked connection at least this large is not copied into
/// the cork buffer: it goes out at once, with what was corked before it.
const CORK_DIRECT: usize = 16 * 1024;

/// The cork buffer's capacity kept between uses.
const CORK_KEEP: usize = 256 * 1024;

/// Broadcasts gathered past this size are written at once.
const BATCH_LIMIT: usize = 64 * 1024;

/// The broadcast buffer's capacity kept between uses.
const BATCH_KEEP: usize = 256 * 1024;

/// Connections accepted past the limit only to be told `503`, at most.
const MAX_BUSY_REJECTS: usize = 64;

/// What a timer is for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TimerTarget {
    Handshake(ConnId),
    Idle(ConnId),
    Close(ConnId),
    Ping,
    ResumeAccept,
    ShutdownDeadline,
    User(TimerId),
}

/// A handler call the core owes, delivered once the current callback returns.
#[derive(Debug)]
pub(crate) enum Notice {
    Open(ConnId),
    Close(ConnId, u16, String),
}

/// The loop's state, minus the handler and the read buffer.
pub(crate) struct Core {
    pub poller: Arc<Poller>,
    pub listener: Option<TcpListener>,
    pub local_addr: SocketAddr,
    pub conns: Slab<Conn>,
    pub wheel: TimerWheel<TimerTarget>,
    pub user_timers: Slab<u64>,
    pub config: Config,
    pub notices: VecDeque<Notice>,
    pub stop_flag: Arc<AtomicBool>,
    pub stopping: bool,
    pub busy_rejects: usize,
    /// The connection whose input is being processed, if any, and the
    /// output collected for it meanwhile.
    corked: Option<ConnId>,
    cork_buf: Vec<u8>,
    /// Broadcast frames not yet written (see [`Core::flush_batch`]).
    batch: Vec<u8>,
    /// Connections in [`Phase::Open`].
    open_count: usize,
    start: Instant,
}

/// Sets the poller interest of `conn` to what its state calls for, with one
/// `epoll_ctl` only when it changed.
fn sync_interest(poller: &Poller, key: usize, conn: &mut Conn, max_backlog: usize) {
    let want = conn.wanted_interest(max_backlog);
    if want == conn.interest {
        return;
    }
    let event = Event::new(key, want & READ != 0, want & WRITE != 0);
    match poller.modify_with_mode(&conn.stream, event, PollMode::Level) {
        Ok(()) => conn.interest = want,
        Err(e) => warn!("poller modify failed: {e}"),
    }
}

impl Core {
    pub fn new(listener: TcpListener, config: Config) -> io::Result<Core> {
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let poller = Arc::new(Poller::new()?);
        // SAFETY: the listener is deleted from the poller before it is
        // dropped (`stop_listening`, and `Drop for Core`).
        unsafe { poller.add_with_mode(&listener, Event::readable(LISTENER_KEY), PollMode::Level)? };
        let mut core = Core {
            poller,
            listener: Some(listener),
            local_addr,
            conns: Slab::default(),
            wheel: TimerWheel::new(),
            user_timers: Slab::default(),
            config,
            notices: VecDeque::new(),
            stop_flag: Arc::new(AtomicBool::new(false)),
            stopping: false,
            busy_rejects: 0,
            corked: None,
            cork_buf: Vec::new(),
            batch: Vec::new(),
            open_count: 0,
            start: Instant::now(),
        };
        if !core.config.ping_interval.is_zero() {
            core.wheel
                .schedule(ticks(core.config.ping_interval), TimerTarget::Ping);
        }
        Ok(core)
    }

    /// The current tick.
    pub fn now(&self) -> Tick {
        (self.start.elapsed().as_nanos() / super::timer::TICK.as_nanos()) as Tick
    }

    /// The instant at which tick `tick` begins, for poll deadlines.
    pub fn instant_of(&self, tick: Tick) -> Instant {
        let nanos = tick.saturating_mul(super::timer::TICK.as_nanos() as u64);
        self.start + Duration::from_nanos(nanos)
    }

    // ---- accepting -------------------------------------------------------

    /// Accepts every pending connection (up to a batch).
    pub fn accept_ready(&mut self) {
        for _ in 0..64 {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if is_resource_exhaustion(&e) => {
                    warn!("accept failed ({e}); pausing accepts for {ACCEPT_BACKOFF:?}");
                    if let Some(listener) = self.listener.as_ref() {
                        // Level mode, as registered: plain `modify` would
                        // switch the listener to oneshot for good.
                        let _ = self.poller.modify_with_mode(
                            listener,
                            Event::none(LISTENER_KEY),
                            PollMode::Level,
                        );
                    }
                    self.schedule(ACCEPT_BACKOFF, TimerTarget::ResumeAccept);
                    return;
                }
                // ECONNABORTED and friends concern one connection only.
                Err(e) => debug!("accept: {e}"),
            }
        }
    }

    pub fn resume_accepting(&mut self) {
        if let Some(listener) = self.listener.as_ref() {
            // Level mode: with plain `modify` (oneshot) the listener would
            // report one more batch of connections, then none ever again.
            let interest = Event::readable(LISTENER_KEY);
            if let Err(e) = self
                .poller
                .modify_with_mode(listener, interest, PollMode::Level)
            {
                warn!("cannot resume accepting: {e}");
            }
        }
    }

    fn admit(&mut self, stream: std::net::TcpStream, peer: SocketAddr) {
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let _ = stream.set_nodelay(true);
        let live = self.conns.len() - self.busy_rejects;
        let busy = live >= self.config.max_connections;
        if busy && self.busy_rejects >= MAX_BUSY_REJECTS {
            debug!("dropping {peer}: at the connection limit");
            return;
        }
        let now = self.now();
        let id = self.conns.insert(Conn::new(stream, now));
        let key = Slab::<Conn>::key(id);
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        // SAFETY: the stream is deleted from the poller in `remove` before
        // the connection (and its socket) is dropped.
        let added = unsafe {
            self.poller
                .add_with_mode(&conn.stream, Event::readable(key), PollMode::Level)
        };
        if let Err(e) = added {
            warn!("cannot watch {peer}: {e}");
            self.conns.remove(id);
            return;
        }
        debug!("{id} connected from {peer}");
        if busy {
            conn.busy_reject = true;
            self.busy_rejects += 1;
            debug!(
                "{id}: over {} connections, answering 503",
                self.config.max_connections
            );
            self.respond(id, &crate::proto::http::Response::status(503), false);
            return;
        }
        if !self.config.handshake_timeout.is_zero() {
            self.schedule(self.config.handshake_timeout, TimerTarget::Handshake(id));
        }
    }

    // ---- writing -----------------------------------------------------------

    /// Starts collecting `id`'s output in the loop-wide cork buffer while its
    /// input is processed, so its replies leave in one write.
    pub fn cork(&mut self, id: ConnId) {
        self.corked = Some(id);
    }

    /// Ends the cork: writes the collected output, queueing what the socket
    /// refuses, then flushes anything queued before.
    pub fn uncork(&mut self, id: ConnId) {
        if self.corked != Some(id) {
            return;
        }
        self.corked = None;
        let bytes = std::mem::take(&mut self.cork_buf);
        if !bytes.is_empty() {
            self.push(id, &[&bytes], None);
            self.after_queue(id, false);
        }
        let mut bytes = bytes;
        bytes.clear();
        if bytes.capacity() <= CORK_KEEP {
            self.cork_buf = bytes;
        }
        self.flush(id);
    }

    /// Hands bytes to `id`: into the cork buffer while it is corked and has
    /// nothing queued, behind its queue if it has one, else straight to the
    /// socket (one `writev`), queueing only what the socket refused.
    ///
    /// `shared`, when given, holds (or will hold, made on first need) the
    /// same bytes as one reference-counted buffer, so that every connection
    /// that must queue a broadcast keeps a reference instead of a copy.
    /// Returns false if the connection died.
    fn push(&mut self, id: ConnId, parts: &[&[u8]], shared: Option<&mut Option<Rc<[u8]>>>) -> bool {
        let corked = self.corked == Some(id);
        let Some(conn) = self.conns.get_mut(id) else {
            return false;
        };
        let mut written = 0;
        let mut corked_bytes: &[u8] = &[];
        if conn.out.is_empty() {
            let total: usize = parts.iter().map(|p| p.len()).sum();
            if corked && total < CORK_DIRECT {
                for part in parts {
                    self.cork_buf.extend_from_slice(part);
                }
                return true;
            }
            // Not corked, or too large to be worth a copy: write what is
            // corked and this together, now.
            if corked {
                corked_bytes = &self.cork_buf;
            }
            let mut all: [&[u8]; MAX_PARTS] = [&[]; MAX_PARTS];
            all[0] = corked_bytes;
            all[1..1 + parts.len()].copy_from_slice(parts);
            written = match write_parts(&mut conn.stream, &all[..1 + parts.len()]) {
                Ok(n) => n,
                Err(e) => {
                    debug!("{id}: write failed: {e}");
                    self.remove(id, close::ABNORMAL);
                    return false;
                }
            };
            if written < corked_bytes.len() {
                conn.out.push_copy(&[&corked_bytes[written..]]);
            }
            written = written.saturating_sub(corked_bytes.len());
        }
        let was_corked = !corked_bytes.is_empty();
        match shared {
            Some(slot) => {
                let frame = slot.get_or_insert_with(|| parts.concat().into());
                conn.out.push_shared(frame, written);
            }
            None => conn.out.push_copy(&skip(parts, written)),
        }
        if was_corked {
            self.cork_buf.clear();
        }
        true
    }

    /// Writes `parts` to `id` and enforces the backlog cap.
    pub fn write(&mut self, id: ConnId, parts: &[&[u8]]) {
        // Broadcasts made before this write reach `id` before it.
        self.flush_batch();
        let was_behind = self.conns.get(id).is_some_and(|c| c.behind);
        if self.push(id, parts, None) {
            self.after_queue(id, was_behind);
        }
    }

    /// Like [`Core::write`] for a shared, already encoded frame.
    fn write_shared(&mut self, id: ConnId, frame: &Rc<[u8]>) {
        self.flush_batch();
        let was_behind = self.conns.get(id).is_some_and(|c| c.behind);
        let mut shared = Some(Rc::clone(frame));
        if self.push(id, &[frame], Some(&mut shared)) {
            self.after_queue(id, was_behind);
        }
    }

    /// Queues a broadcast frame for every open connection. Consecutive
    /// broadcasts gather in one buffer, written to each member with one
    /// `writev` when anything else happens or the event is handled (see
    /// [`Core::flush_batch`]). Returns the number of members.
    pub fn broadcast(&mut self, opcode: OpCode, payload: &[u8]) -> usize {
        let header = ServerHeader::new(true, opcode, payload.len());
        self.batch.extend_from_slice(header.as_bytes());
        self.batch.extend_from_slice(payload);
        if self.batch.len() >= BATCH_LIMIT {
            self.flush_batch();
        }
        self.open_count
    }

    /// Writes the gathered broadcasts to every open connection: encoded once,
    /// one `writev` per member, and for a member whose socket refuses part of
    /// it, one shared buffer referenced from its queue.
    ///
    /// Called before any other write and before any connection joins or
    /// leaves the open set, so every member receives exactly the broadcasts
    /// made while it was open, in order with everything else it is sent.
    pub fn flush_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        let mut shared: Option<Rc<[u8]>> = None;
        // By slot, not by a collected list of ids: no allocation per batch.
        // A write may remove a connection, never add one.
        for index in 0..self.conns.slot_count() {
            let Some(id) = self.conns.id_at(index) else {
                continue;
            };
            if !self.is_open(id) {
                continue;
            }
            let was_behind = self.conns.get(id).is_some_and(|c| c.behind);
            if self.push(id, &[&batch], Some(&mut shared)) {
                self.after_queue(id, was_behind);
            }
        }
        let mut batch = batch;
        batch.clear();
        if batch.capacity() <= BATCH_KEEP && self.batch.capacity() == 0 {
            self.batch = batch;
        }
    }

    /// Checks the backlog cap and the poller interest after a write.
    ///
    /// The cap applies to a peer that is behind: one whose socket refused
    /// bytes that are still queued when this write came. A single message
    /// larger than the cap, sent to a peer that has kept up, is let through,
    /// so the largest message the server accepts can always be echoed;
    /// memory stays bounded by the cap plus one message.
    fn after_queue(&mut self, id: ConnId, was_behind: bool) {
        let max_backlog = self.config.max_backlog;
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        conn.behind = !conn.out.is_empty();
        let over = was_behind && conn.out.len() > max_backlog;
        if over && matches!(conn.phase, Phase::Open | Phase::Pending(_)) {
            warn!(
                "{id}: {} bytes queued, over the backlog limit of {max_backlog}: closing (1008)",
                conn.out.len()
            );
            let _ = self.close(id, close::POLICY_VIOLATION, "backlog limit exceeded");
            return;
        }
        sync_interest(&self.poller, Slab::<Conn>::key(id), conn, max_backlog);
    }

    /// Writes what is queued for `id`; finishes a draining connection.
    pub fn flush(&mut self, id: ConnId) {
        let max_backlog = self.config.max_backlog;
        if self.corked == Some(id) {
            return;
        }
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        match conn.out.flush(&mut conn.stream) {
            Ok(emptied) => conn.behind = !emptied,
            Err(e) => {
                debug!("{id}: write failed: {e}");
                self.remove(id, close::ABNORMAL);
                return;
            }
        }
        if conn.out.is_empty() && matches!(conn.phase, Phase::Draining) && !conn.fin_sent {
            conn.fin_sent = true;
            let _ = conn.stream.shutdown(Shutdown::Write);
        }
        sync_interest(&self.poller, Slab::<Conn>::key(id), conn, max_backlog);
    }

    /// Sends a complete frame.
    fn send_frame(&mut self, id: ConnId, opcode: OpCode, payload: &[u8]) {
        let header = ServerHeader::new(true, opcode, payload.len());
        self.write(id, &[header.as_bytes(), payload]);
    }

    pub fn send_message(&mut self, id: ConnId, msg: Message<'_>) -> Result<(), SendError> {
        if !self.is_sendable(id) {
            return Err(SendError::NotOpen);
        }
        self.send_frame(id, msg.opcode(), msg.as_bytes());
        Ok(())
    }

    pub fn send_shared(&mut self, id: ConnId, frame: &Rc<[u8]>) -> Result<(), SendError> {
        if !self.is_sendable(id) {
            return Err(SendError::NotOpen);
        }
        self.write_shared(id, frame);
        Ok(())
    }

    pub fn send_control(
        &mut self,
        id: ConnId,
        opcode: OpCode,
        payload: &[u8],
    ) -> Result<(), SendError> {
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(SendError::ControlTooLong);
        }
        if !self.is_sendable(id) {
            return Err(SendError::NotOpen);
        }
        self.send_frame(id, opcode, payload);
        Ok(())
    }

    /// Pings every open connection.
    pub fn ping_all(&mut self) {
        self.broadcast(OpCode::Ping, &[]);
    }

    /// Writes an HTTP response and lets the connection drain.
    pub fn respond(
        &mut self,
        id: ConnId,
        response: &crate::proto::http::Response,
        head_only: bool,
    ) {
        let mut bytes = Vec::new();
        response.write_to(&mut bytes, head_only);
        self.write(id, &[&bytes]);
        self.drain(id);
    }

    // ---- closing -------------------------------------------------------------

    /// Graceful close: close frame now, the TCP connection once the peer
    /// answers or the close timeout passes.
    pub fn close(&mut self, id: ConnId, code: u16, reason: &str) -> Result<(), SendError> {
        if !close::is_valid_on_wire(code) {
            return Err(SendError::InvalidCloseCode);
        }
        if !self.is_sendable(id) {
            return Err(SendError::NotOpen);
        }
        let mut frame = Vec::with_capacity(4 + reason.len().min(MAX_CONTROL_PAYLOAD));
        encode_close(&mut frame, Some(code), reason);
        self.flush_batch();
        // Past the backlog limit all the same: it is small, and it is the
        // last thing this connection is sent.
        if let Some(conn) = self.conns.get_mut(id) {
            if matches!(conn.phase, Phase::Open) {
                self.open_count -= 1;
            }
            conn.phase = Phase::Closing;
            conn.close_code = code;
        }
        if !self.push(id, &[&frame], None) {
            return Ok(());
        }
        self.refresh_interest(id);
        self.schedule_close_timeout(id);
        Ok(())
    }

    /// Fails the connection after a protocol violation: a close frame with
    /// `code`, then drain without reading another frame.
    pub fn fail(&mut self, id: ConnId, code: u16, why: &dyn std::fmt::Display) {
        debug!("{id}: failing with {code}: {why}");
        let mut frame = Vec::with_capacity(4);
        encode_close(&mut frame, Some(code), "");
        let was_closing = matches!(self.conns.get(id).map(|c| &c.phase), Some(Phase::Closing));
        if !was_closing {
            self.write(id, &[&frame]);
        }
        self.notify_closed(id, code, "");
        self.drain(id);
    }

    /// The peer's close frame arrived.
    pub fn close_received(&mut self, id: ConnId, code: Option<u16>, reason: &str) {
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        if matches!(conn.phase, Phase::Closing) {
            // The peer answered ours: report the code the handshake began with.
            let ours = conn.close_code;
            self.notify_closed(id, ours, "");
        } else {
            // Echo the peer's code (RFC 6455 §5.5.1).
            let mut frame = Vec::with_capacity(4);
            encode_close(&mut frame, code, "");
            self.write(id, &[&frame]);
            self.notify_closed(id, code.unwrap_or(close::NO_STATUS), reason);
        }
        self.drain(id);
    }

    /// Finishes the WebSocket: flush, half-close, wait for the peer's end.
    pub fn drain(&mut self, id: ConnId) {
        self.flush_batch();
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        match conn.phase {
            Phase::Draining => return,
            Phase::Open => self.open_count -= 1,
            _ => {}
        }
        conn.phase = Phase::Draining;
        self.schedule_close_timeout(id);
        self.flush(id);
    }

    fn schedule_close_timeout(&mut self, id: ConnId) {
        let timeout = if self.config.close_timeout.is_zero() {
            // "Off" still may not mean "forever" for a half-dead socket.
            Duration::from_secs(1)
        } else {
            self.config.close_timeout
        };
        self.schedule(timeout, TimerTarget::Close(id));
    }

    /// Tells the handler (once) that an upgraded connection is closed.
    fn notify_closed(&mut self, id: ConnId, code: u16, reason: &str) {
        if let Some(conn) = self.conns.get_mut(id) {
            if conn.upgraded {
                conn.upgraded = false;
                self.notices
                    .push_back(Notice::Close(id, code, reason.to_string()));
            }
        }
    }

    pub fn kill(&mut self, id: ConnId) -> Result<(), SendError> {
        if self.conns.get(id).is_none() {
            return Err(SendError::NotOpen);
        }
        self.remove(id, close::ABNORMAL);
        Ok(())
    }

    /// Drops the connection now.
    pub fn remove(&mut self, id: ConnId, code: u16) {
        if self.corked == Some(id) {
            self.corked = None;
            self.cork_buf.clear();
        }
        self.notify_closed(id, code, "");
        let Some(conn) = self.conns.remove(id) else {
            return;
        };
        if matches!(conn.phase, Phase::Open) {
            self.open_count -= 1;
        }
        if let Err(e) = self.poller.delete(&conn.stream) {
            warn!("poller delete failed: {e}");
        }
        if conn.busy_reject {
            self.busy_rejects -= 1;
        }
        debug!("{id} removed");
    }

    /// The peer's end of the TCP connection is gone (EOF or error).
    pub fn peer_gone(&mut self, id: ConnId) {
        self.remove(id, close::ABNORMAL);
    }

    // ---- activation, timers, queries ------------------------------------------

    pub fn activate(&mut self, id: ConnId) -> Result<(), SendError> {
        let Some(conn) = self.conns.get_mut(id) else {
            return Err(SendError::NotOpen);
        };
        match &mut conn.phase {
            Phase::Pending(pending) if !pending.activated => pending.activated = true,
            _ => return Err(SendError::NotPending),
        }
        self.notices.push_back(Notice::Open(id));
        Ok(())
    }

    /// Sets the poller interest `id`'s state calls for, after a change of phase.
    pub fn refresh_interest(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.get_mut(id) {
            sync_interest(
                &self.poller,
                Slab::<Conn>::key(id),
                conn,
                self.config.max_backlog,
            );
        }
    }

    pub fn set_timer(&mut self, after: Duration, token: u64) -> TimerId {
        let id = TimerId(self.user_timers.insert(token));
        self.schedule(after, TimerTarget::User(id));
        id
    }

    pub fn cancel_timer(&mut self, timer: TimerId) -> bool {
        self.user_timers.remove(timer.0).is_some()
    }

    pub fn peer_addr(&self, id: ConnId) -> Option<SocketAddr> {
        self.conns.get(id)?.stream.peer_addr().ok()
    }

    pub fn is_open(&self, id: ConnId) -> bool {
        matches!(self.conns.get(id).map(|c| &c.phase), Some(Phase::Open))
    }

    fn is_sendable(&self, id: ConnId) -> bool {
        self.conns.get(id).is_some_and(Conn::can_send)
    }

    pub fn backlog(&self, id: ConnId) -> Option<usize> {
        Some(self.conns.get(id)?.out.len())
    }

    pub fn open_connections(&self) -> usize {
        self.open_count
    }

    /// Moves an upgraded connection into the open set.
    pub fn mark_open(&mut self, id: ConnId) {
        // Broadcasts made before it joined are not for it.
        self.flush_batch();
        let now = self.now();
        if let Some(conn) = self.conns.get_mut(id) {
            if !matches!(conn.phase, Phase::Open) {
                conn.phase = Phase::Open;
                conn.last_heard = now;
                self.open_count += 1;
            }
        }
        self.refresh_interest(id);
        self.start_idle_timer(id);
    }

    pub fn request_stop(&mut self) {
        self.stop_flag.store(true, Ordering::SeqCst);
    }

    /// Stops accepting and closes every connection with 1001.
    pub fn begin_shutdown(&mut self) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        if let Some(listener) = self.listener.take() {
            let _ = self.poller.delete(&listener);
        }
        let ids: Vec<ConnId> = self.conns.iter().map(|(id, _)| id).collect();
        for id in ids {
            let phase = self.conns.get(id).map(|c| &c.phase);
            match phase {
                Some(Phase::Handshake(_)) => self.remove(id, close::ABNORMAL),
                Some(Phase::Open | Phase::Pending(_)) => {
                    let _ = self.close(id, close::GOING_AWAY, "server shutting down");
                }
                _ => {}
            }
        }
        let deadline = self.config.close_timeout;
        self.schedule(deadline, TimerTarget::ShutdownDeadline);
    }

    /// Handles a connection's own timer.
    pub fn conn_timer(&mut self, target: TimerTarget) {
        let now = self.now();
        match target {
            TimerTarget::Handshake(id) => {
                if let Some(Conn {
                    phase: Phase::Handshake(_),
                    ..
                }) = self.conns.get(id)
                {
                    debug!("{id}: handshake timed out");
                    self.remove(id, close::ABNORMAL);
                }
            }
            TimerTarget::Idle(id) => {
                let idle = ticks(self.config.idle_timeout);
                let Some(conn) = self.conns.get(id) else {
                    return;
                };
                if !matches!(conn.phase, Phase::Open) {
                    return;
                }
                let silent = now.saturating_sub(conn.last_heard);
                if silent >= idle {
                    debug!("{id}: idle for {:?}, closing", self.config.idle_timeout);
                    let _ = self.close(id, close::GOING_AWAY, "idle timeout");
                } else {
                    self.wheel.schedule(idle - silent, TimerTarget::Idle(id));
                }
            }
            TimerTarget::Close(id) => {
                if let Some(conn) = self.conns.get(id) {
                    if matches!(conn.phase, Phase::Closing | Phase::Draining) {
                        debug!("{id}: close timed out");
                        self.remove(id, close::ABNORMAL);
                    }
                }
            }
            TimerTarget::ShutdownDeadline => {
                let ids: Vec<ConnId> = self.conns.iter().map(|(id, _)| id).collect();
                for id in ids {
                    self.remove(id, close::ABNORMAL);
                }
            }
            _ => {}
        }
    }

    pub fn start_idle_timer(&mut self, id: ConnId) {
        if !self.config.idle_timeout.is_zero() {
            self.schedule(self.config.idle_timeout, TimerTarget::Idle(id));
        }
    }

    /// Schedules `what` to fire `after` from now. The wheel's clock moves
    /// only when timers run, so after the loop slept in poll it lags the real
    /// time; counting from it would fire a new timer early by that lag (a
    /// handshake timeout set after a quiet spell could expire at once).
    pub fn schedule(&mut self, after: Duration, what: TimerTarget) {
        let lag = self.now().saturating_sub(self.wheel.now());
        self.wheel.schedule(lag + ticks(after), what);
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        // Every registered source must leave the poller before it is closed.
        let ids: Vec<ConnId> = self.conns.iter().map(|(id, _)| id).collect();
        for id in ids {
            if let Some(conn) = self.conns.remove(id) {
                let _ = self.poller.delete(&conn.stream);
            }
        }
        if let Some(listener) = self.listener.take() {
            let _ = self.poller.delete(&listener);
        }
    }
}

fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}
