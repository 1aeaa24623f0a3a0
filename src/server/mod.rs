//! The poll-loop server: one thread, one poller, one slab of connections,
//! one timer wheel.
//!
//! The loop is a thin layer over [`crate::proto`]: it reads into one
//! loop-wide buffer, hands the bytes to the connection's receiver, passes
//! complete messages to the [`Handler`], and writes replies straight to the
//! socket, queueing only what the socket refuses. Sockets are registered in
//! level-triggered mode, and the interest of a connection changes (one
//! `epoll_ctl`) only when its queue fills or empties, never per event.

mod config;
mod conn;
mod core;
mod handler;
mod outqueue;
mod slab;
mod timer;

use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, warn};
use polling::{Events, Poller};

use crate::proto::close;
use crate::proto::handshake;
use crate::proto::http::{Request, Status};
use crate::proto::receiver::{Event as RxEvent, Payload};

pub use self::config::Config;
use self::conn::Phase;
use self::core::{Core, Notice, TimerTarget, LISTENER_KEY};
pub use self::handler::{Context, Handler, Message, SendError, SharedFrame, TimerId, Upgrade};
pub use self::slab::ConnId;

/// The loop-wide read buffer's size.
const READ_BUFFER: usize = 256 * 1024;

/// Reads from one connection per readiness event, at most, so that one busy
/// peer cannot starve the others.
const READS_PER_EVENT: usize = 4;

/// Stops a running [`Server`] from any thread, or from a signal handler:
/// [`StopHandle::stop`] only stores a flag and writes to the poller's
/// notification descriptor, both async-signal-safe.
#[derive(Clone)]
pub struct StopHandle {
    poller: Arc<Poller>,
    flag: Arc<AtomicBool>,
}

impl StopHandle {
    /// Begins a graceful shutdown: stop accepting, close every connection
    /// with 1001, wait at most the close timeout, then return from `run`.
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        let _ = self.poller.notify();
    }
}

/// A WebSocket server with its handler.
pub struct Server<H: Handler> {
    core: Core,
    handler: H,
    read_buf: Vec<u8>,
    events: Events,
    ready: Vec<(usize, bool, bool)>,
    fired: Vec<TimerTarget>,
}

impl<H: Handler> Server<H> {
    /// Binds to `addr` and listens.
    pub fn bind(addr: impl ToSocketAddrs, config: Config, handler: H) -> io::Result<Server<H>> {
        let listener = TcpListener::bind(addr)?;
        Server::from_listener(listener, config, handler)
    }

    /// Serves on an already bound listener.
    pub fn from_listener(
        listener: TcpListener,
        config: Config,
        handler: H,
    ) -> io::Result<Server<H>> {
        Ok(Server {
            core: Core::new(listener, config)?,
            handler,
            read_buf: vec![0; READ_BUFFER],
            events: Events::new(),
            ready: Vec::new(),
            fired: Vec::new(),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.core.local_addr
    }

    /// A handle that stops the server from elsewhere.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            poller: Arc::clone(&self.core.poller),
            flag: Arc::clone(&self.core.stop_flag),
        }
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// The handler, mutably.
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.core.config
    }

    /// Runs `f` with a context, outside any callback (to send from code that
    /// is not a handler), then delivers the notices it caused.
    pub fn with_context<R>(&mut self, f: impl FnOnce(&mut Context<'_>, &mut H) -> R) -> R {
        let result = f(
            &mut Context {
                core: &mut self.core,
            },
            &mut self.handler,
        );
        self.dispatch_notices();
        result
    }

    /// Serves until stopped and every connection is closed (or the close
    /// timeout passed).
    pub fn run(&mut self) -> io::Result<()> {
        while self.run_once(None)? {}
        Ok(())
    }

    /// Waits for events at most `timeout` (`None`: until a timer or event),
    /// handles them, and returns whether the server is still running.
    pub fn run_once(&mut self, timeout: Option<Duration>) -> io::Result<bool> {
        if self.core.stop_flag.load(Ordering::SeqCst) && !self.core.stopping {
            self.core.begin_shutdown();
            self.dispatch_notices();
        }
        if self.core.stopping && self.core.conns.is_empty() {
            return Ok(false);
        }
        let deadline = self.poll_deadline(timeout);
        self.events.clear();
        match deadline {
            Some(deadline) => self.core.poller.wait_deadline(&mut self.events, deadline),
            None => self.core.poller.wait(&mut self.events, None),
        }?;
        // Copy the keys out (into a reused vector): handling an event
        // borrows the server mutably.
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        ready.extend(
            self.events
                .iter()
                .map(|ev| (ev.key, ev.readable, ev.writable)),
        );
        for &(key, readable, writable) in &ready {
            if key == LISTENER_KEY {
                self.core.accept_ready();
                continue;
            }
            let Some(id) = self.core.conns.id_at(key) else {
                continue;
            };
            if writable {
                self.core.flush(id);
            }
            if readable {
                self.on_readable(id);
            }
            self.dispatch_notices();
        }
        self.ready = ready;
        self.run_timers();
        if self.core.stop_flag.load(Ordering::SeqCst) && !self.core.stopping {
            self.core.begin_shutdown();
            self.dispatch_notices();
        }
        Ok(!(self.core.stopping && self.core.conns.is_empty()))
    }

    /// The earlier of the caller's timeout and the next timer.
    fn poll_deadline(&self, timeout: Option<Duration>) -> Option<Instant> {
        let caller = timeout.map(|t| Instant::now() + t);
        let timer = self
            .core
            .wheel
            .next_due()
            .map(|d| self.core.instant_of(self.core.wheel.now() + d));
        match (caller, timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn run_timers(&mut self) {
        let now = self.core.now();
        let mut fired = std::mem::take(&mut self.fired);
        self.core.wheel.advance(now, |t| fired.push(t));
        for target in fired.drain(..) {
            match target {
                TimerTarget::Ping => {
                    self.core.ping_all();
                    let interval = self.core.config.ping_interval;
                    self.core.schedule(interval, TimerTarget::Ping);
                }
                TimerTarget::ResumeAccept => self.core.resume_accepting(),
                TimerTarget::User(timer) => {
                    if let Some(token) = self.core.user_timers.remove(timer.0) {
                        self.handler.on_timer(
                            &mut Context {
                                core: &mut self.core,
                            },
                            token,
                        );
                    }
                }
                other => self.core.conn_timer(other),
            }
            self.dispatch_notices();
        }
        self.fired = fired;
    }

    /// Delivers queued handler calls, including those the calls queue, then
    /// writes the broadcasts they and the event before them made.
    fn dispatch_notices(&mut self) {
        self.core.flush_batch();
        while let Some(notice) = self.core.notices.pop_front() {
            match notice {
                Notice::Close(id, code, reason) => {
                    self.handler.on_close(
                        &mut Context {
                            core: &mut self.core,
                        },
                        id,
                        code,
                        &reason,
                    );
                }
                Notice::Open(id) => self.open_pending(id),
            }
            self.core.flush_batch();
        }
    }

    /// Activates a delayed connection and feeds it what arrived early.
    fn open_pending(&mut self, id: ConnId) {
        let Some(conn) = self.core.conns.get_mut(id) else {
            return;
        };
        let Phase::Pending(pending) = &mut conn.phase else {
            return;
        };
        let mut early = std::mem::take(&mut pending.early);
        self.core.mark_open(id);
        self.handler.on_open(
            &mut Context {
                core: &mut self.core,
            },
            id,
        );
        self.core.cork(id);
        process_input(&mut self.core, &mut self.handler, id, &mut early);
        self.core.uncork(id);
    }

    fn on_readable(&mut self, id: ConnId) {
        let now = self.core.now();
        self.core.cork(id);
        for _ in 0..READS_PER_EVENT {
            let Some(conn) = self.core.conns.get_mut(id) else {
                break;
            };
            if conn.wanted_interest(self.core.config.max_backlog) & conn::READ == 0 {
                break;
            }
            let n = match conn.stream.read(&mut self.read_buf) {
                Ok(0) => {
                    debug!("{id}: peer closed the connection");
                    self.core.peer_gone(id);
                    break;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!("{id}: read failed: {e}");
                    self.core.peer_gone(id);
                    break;
                }
            };
            conn.last_heard = now;
            process_input(
                &mut self.core,
                &mut self.handler,
                id,
                &mut self.read_buf[..n],
            );
            if n < self.read_buf.len() {
                break;
            }
        }
        self.core.uncork(id);
    }
}

/// Feeds `input` to connection `id` according to its phase.
fn process_input<H: Handler>(core: &mut Core, handler: &mut H, id: ConnId, input: &mut [u8]) {
    let mut offset = 0;
    while offset < input.len() {
        let max_message = core.config.max_message;
        let Some(conn) = core.conns.get_mut(id) else {
            return;
        };
        match &mut conn.phase {
            Phase::Handshake(reader) => match reader.feed(&input[offset..]) {
                Ok(Status::Partial) => return,
                Ok(Status::Complete((request, used))) => {
                    offset += used;
                    handle_request(core, handler, id, &request);
                }
                Err(e) => {
                    debug!("{id}: bad request: {e}");
                    core.respond(id, &crate::proto::http::Response::status(e.status()), false);
                    return;
                }
            },
            Phase::Pending(pending) => {
                // Only the bytes that came with the request get here: reading
                // pauses until activation.
                pending.early.extend_from_slice(&input[offset..]);
                return;
            }
            Phase::Draining => return,
            Phase::Open | Phase::Closing => {
                let start = offset;
                match conn.rx.read(&mut input[offset..], max_message) {
                    Err(e) => {
                        core.fail(id, e.close_code(), &e);
                        return;
                    }
                    Ok((used, event)) => {
                        offset += used;
                        if let Some(event) = event {
                            handle_event(core, handler, id, event, &input[start..offset]);
                        }
                    }
                }
            }
        }
    }
}

/// Answers a complete request head.
fn handle_request<H: Handler>(core: &mut Core, handler: &mut H, id: ConnId, req: &Request) {
    let head_only = req.method() == "HEAD";
    if core.stopping {
        core.respond(id, &crate::proto::http::Response::status(503), head_only);
        return;
    }
    if req.path() != core.config.path {
        let response = handler.on_http(req);
        core.respond(id, &response, head_only);
        return;
    }
    let key = match handshake::validate(req) {
        Ok(key) => key,
        Err(e) => {
            debug!("{id}: refused upgrade: {e}");
            core.respond(id, &e.response(), head_only);
            return;
        }
    };
    if !handshake::origin_allowed(req, &core.config.allowed_origins) {
        debug!("{id}: origin {:?} not allowed", req.header("Origin"));
        core.respond(
            id,
            &handshake::HandshakeError::OriginNotAllowed.response(),
            false,
        );
        return;
    }
    let decision = handler.on_upgrade(&mut Context { core: &mut *core }, id, req);
    let (protocol, delayed) = match decision {
        Upgrade::Reject(response) => {
            core.respond(id, &response, false);
            return;
        }
        Upgrade::Accept { protocol, delayed } => (protocol, delayed),
    };
    let protocol = protocol.filter(|p| {
        let offered = handshake::offered_protocols(req).any(|o| o == p);
        if !offered {
            warn!("{id}: handler chose subprotocol {p:?}, which the client did not offer");
        }
        offered
    });
    let mut reply = Vec::with_capacity(160);
    handshake::write_accept(&mut reply, key, protocol.as_deref());
    core.write(id, &[&reply]);
    let now = core.now();
    let Some(conn) = core.conns.get_mut(id) else {
        return;
    };
    conn.upgraded = true;
    conn.last_heard = now;
    if delayed {
        conn.phase = Phase::Pending(Box::default());
        core.refresh_interest(id);
        return;
    }
    core.mark_open(id);
    handler.on_open(&mut Context { core }, id);
}

/// Acts on one event from a connection's receiver.
fn handle_event<H: Handler>(
    core: &mut Core,
    handler: &mut H,
    id: ConnId,
    event: RxEvent,
    input: &[u8],
) {
    let Some(conn) = core.conns.get_mut(id) else {
        return;
    };
    let open = matches!(conn.phase, Phase::Open);
    match event {
        // Closing: RFC 6455 lets us drop data after our close frame; the
        // receiver forgets the message when it reads the next frame.
        RxEvent::Text(_) | RxEvent::Binary(_) if !open => {}
        RxEvent::Text(payload) => deliver(core, handler, id, payload, input, true),
        RxEvent::Binary(payload) => deliver(core, handler, id, payload, input, false),
        RxEvent::Ping(payload) => {
            if open {
                let mut copy = [0u8; crate::proto::frame::MAX_CONTROL_PAYLOAD];
                let data = conn.rx.payload(input, &payload);
                let len = data.len().min(copy.len());
                copy[..len].copy_from_slice(&data[..len]);
                let _ = core.send_control(id, crate::proto::frame::OpCode::Pong, &copy[..len]);
            }
        }
        RxEvent::Pong(_) => {}
        RxEvent::Close(payload) => {
            let frame = close::parse_close(conn.rx.payload(input, &payload));
            let (code, reason) = match frame {
                Ok(frame) => (frame.code, frame.reason.to_string()),
                // The receiver validated it already.
                Err(_) => (None, String::new()),
            };
            core.close_received(id, code, &reason);
        }
    }
}

/// Hands a data message to the handler.
fn deliver<H: Handler>(
    core: &mut Core,
    handler: &mut H,
    id: ConnId,
    payload: Payload,
    input: &[u8],
    text: bool,
) {
    let Some(conn) = core.conns.get_mut(id) else {
        return;
    };
    let owned = match payload {
        Payload::Input(_) => None,
        _ => Some(conn.rx.take_message()),
    };
    let bytes: &[u8] = match (&owned, &payload) {
        (Some(buf), _) => buf,
        (None, Payload::Input(range)) => input.get(range.clone()).unwrap_or_default(),
        (None, _) => &[],
    };
    let msg = if text {
        match std::str::from_utf8(bytes) {
            Ok(s) => Message::Text(s),
            // The receiver validated it; failing safe all the same.
            Err(_) => {
                core.fail(id, close::INVALID_PAYLOAD, &"invalid UTF-8");
                return;
            }
        }
    } else {
        Message::Binary(bytes)
    };
    handler.on_message(&mut Context { core: &mut *core }, id, msg);
    if let (Some(buf), Some(conn)) = (owned, core.conns.get_mut(id)) {
        conn.rx.recycle(buf);
    }
}
