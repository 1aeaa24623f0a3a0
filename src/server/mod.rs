//! The poll-loop server: one thread, one poller, one slab of connections,
//! one timer wheel, one clock.
//!
//! The loop is plumbing around [`crate::proto::connection::Connection`]:
//! each pass reads the clock once, waits for readiness, reads each ready
//! socket into one loop-wide buffer, hands the bytes to the connection,
//! calls the [`Handler`] with the events that come out, fires the timers
//! that are due, and then settles every connection it touched: its queued
//! bytes go to its socket (one `sendmsg`), its poller interest and its wheel
//! entry follow what it wants, and a finished one is closed and removed.
//! Sockets are registered in level-triggered mode, and the interest of a
//! connection changes (one `epoll_ctl`) only when its queue fills or empties.

mod config;
mod core;
mod handler;
mod sink;
mod slab;
mod stats;
mod timer;
mod topics;

use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::debug;
use polling::{Events, Poller};

use crate::proto::connection::Event;
use crate::proto::http::{Request, Response};

pub use self::config::Config;
use self::core::{Core, Timer, LISTENER_KEY};
pub use self::handler::{Context, Handler, TimerId, Upgrade};
pub use self::slab::ConnId;
pub use self::stats::{Stats, REFUSAL_STATUSES};

/// The loop-wide read buffer's size.
const READ_BUFFER: usize = 256 * 1024;

/// Reads from one connection per readiness event, at most, so that one busy
/// peer cannot starve the others.
const READS_PER_EVENT: usize = 4;

/// The loop-wide message buffer's capacity kept between messages; a larger
/// one (left by a large fragmented message) is freed.
const SCRATCH_KEEP: usize = 64 * 1024;

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
    /// Where every socket is read into; only leftovers stay per connection.
    read_buf: Vec<u8>,
    /// Where a message gathered across reads is moved when it completes.
    scratch: Vec<u8>,
    events: Events,
    ready: Vec<(usize, bool, bool)>,
    fired: Vec<Timer>,
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
            scratch: Vec::new(),
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
    /// is not a handler), then settles what it did.
    pub fn with_context<R>(&mut self, f: impl FnOnce(&mut Context<'_>, &mut H) -> R) -> R {
        self.core.now = Instant::now();
        let result = f(
            &mut Context {
                core: &mut self.core,
            },
            &mut self.handler,
        );
        self.settle();
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
        self.core.now = Instant::now();
        self.check_stop();
        if self.core.stopping && self.core.slots.is_empty() {
            return Ok(false);
        }
        let caller = timeout.map(|t| self.core.now + t);
        let deadline = match (caller, self.core.next_wake()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.events.clear();
        match deadline {
            Some(deadline) => self.core.poller.wait_deadline(&mut self.events, deadline),
            None => self.core.poller.wait(&mut self.events, None),
        }?;
        // The one reading of the clock this pass: every connection and timer
        // below sees the same instant.
        self.core.now = Instant::now();
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
                self.settle();
                continue;
            }
            let Some(id) = self.core.slots.id_at(key) else {
                continue;
            };
            if writable {
                self.core.writable(id);
            }
            if readable {
                self.read_from(id);
            }
            self.settle();
        }
        self.ready = ready;
        self.run_timers();
        self.check_stop();
        Ok(!(self.core.stopping && self.core.slots.is_empty()))
    }

    fn check_stop(&mut self) {
        if self.core.stop_flag.load(Ordering::SeqCst) && !self.core.stopping {
            self.core.begin_shutdown();
            self.settle();
        }
    }

    fn run_timers(&mut self) {
        let mut fired = std::mem::take(&mut self.fired);
        self.core.advance_wheel(&mut fired);
        for timer in fired.drain(..) {
            match timer {
                Timer::Conn(id) => self.core.conn_timer(id),
                Timer::Ping => {
                    self.core.broadcast(crate::proto::frame::OpCode::Ping, &[]);
                    self.core.schedule_ping();
                }
                Timer::ResumeAccept => self.core.resume_accepting(),
                Timer::ShutdownDeadline => self.core.kill_all(),
                Timer::User(timer) => {
                    if let Some(token) = self.core.take_user_timer(timer) {
                        self.handler.on_timer(
                            &mut Context {
                                core: &mut self.core,
                            },
                            token,
                        );
                    }
                }
            }
            self.settle();
        }
        self.fired = fired;
    }

    /// Reads what `id`'s socket has (a few reads at most) and feeds it to
    /// its connection.
    fn read_from(&mut self, id: ConnId) {
        for _ in 0..READS_PER_EVENT {
            let Some(slot) = self.core.slots.get_mut(id) else {
                break;
            };
            if !slot.conn.wants_read(&self.core.settings) {
                break;
            }
            let n = match slot.stream.read(&mut self.read_buf) {
                Ok(0) => {
                    debug!("{id}: peer closed the connection");
                    slot.conn.handle_eof();
                    self.core.touch(id);
                    break;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!("{id}: read failed: {e}");
                    slot.conn.handle_eof();
                    self.core.touch(id);
                    break;
                }
            };
            self.core.stats.bytes_received += n as u64;
            feed(
                &mut self.core,
                &mut self.handler,
                &mut self.scratch,
                id,
                &mut self.read_buf[..n],
            );
            if n < self.read_buf.len() {
                break;
            }
        }
        if self.scratch.capacity() > SCRATCH_KEEP {
            self.scratch = Vec::new();
        }
    }

    /// Settles every touched connection: writes its output, delivers what it
    /// owes the handler (an activation, a close), and removes it if it is
    /// finished. Handler calls may touch more connections; they are settled
    /// too.
    fn settle(&mut self) {
        self.core.flush_batch();
        while let Some(id) = self.core.next_touched() {
            if let Some(early) = self
                .core
                .slots
                .get_mut(id)
                .and_then(|slot| slot.conn.take_activation(self.core.now))
            {
                self.open(id, early);
            }
            let (closed, _removed) = self.core.settle(id);
            if let Some(code) = closed {
                self.core.stats.count_close(code);
                self.handler.on_close(
                    &mut Context {
                        core: &mut self.core,
                    },
                    id,
                    code,
                    "",
                );
            }
            self.core.flush_batch();
        }
    }

    /// A delayed connection was activated: it is open now; the handler hears
    /// of it, and what arrived with the request is read.
    fn open(&mut self, id: ConnId, mut early: Vec<u8>) {
        // Broadcasts made before it joined are not for it.
        self.core.flush_batch();
        self.core.touch(id);
        self.handler.on_open(
            &mut Context {
                core: &mut self.core,
            },
            id,
        );
        feed(
            &mut self.core,
            &mut self.handler,
            &mut self.scratch,
            id,
            &mut early,
        );
    }
}

/// Feeds `input` to connection `id` and hands each event to the handler.
fn feed<H: Handler>(
    core: &mut Core,
    handler: &mut H,
    scratch: &mut Vec<u8>,
    id: ConnId,
    input: &mut [u8],
) {
    core.touch(id);
    let mut offset = 0;
    while offset < input.len() {
        core.hand_batch_to(id);
        let Some(slot) = core.slots.get_mut(id) else {
            return;
        };
        let (used, event) =
            slot.conn
                .handle_input(&core.settings, core.now, &mut input[offset..], scratch);
        offset += used;
        let Some(event) = event else {
            if used == 0 {
                // An upgrade decision is owed first; nothing else to read.
                return;
            }
            continue;
        };
        match event {
            Event::Text(text) => {
                core.stats.messages_received += 1;
                handler.on_message(&mut Context { core }, id, crate::Message::Text(text));
            }
            Event::Binary(data) => {
                core.stats.messages_received += 1;
                handler.on_message(&mut Context { core }, id, crate::Message::Binary(data));
            }
            Event::Closed { code, reason } => {
                core.stats.count_close(code);
                core.touch(id);
                handler.on_close(&mut Context { core }, id, code, reason);
            }
            Event::Request(request) => answer_request(core, handler, id, &request),
            Event::Upgrade(request) => answer_upgrade(core, handler, id, &request),
        }
    }
}

/// Answers a plain HTTP request (the handler's answer, or `503` while
/// shutting down).
fn answer_request<H: Handler>(core: &mut Core, handler: &mut H, id: ConnId, request: &Request) {
    let response = if core.stopping {
        Response::status(503)
    } else {
        handler.on_http_with_context(&mut Context { core: &mut *core }, request)
    };
    if let Some(slot) = core.slots.get_mut(id) {
        let _ = slot.conn.respond(&core.settings, core.now, &response);
    }
}

/// Lets the handler decide on a valid upgrade request, and opens the
/// connection if it accepts.
fn answer_upgrade<H: Handler>(core: &mut Core, handler: &mut H, id: ConnId, request: &Request) {
    let decision = if core.stopping {
        Upgrade::reject(503)
    } else {
        handler.on_upgrade(&mut Context { core: &mut *core }, id, request)
    };
    // Broadcasts made before it joins are not for it.
    core.flush_batch();
    let Some(slot) = core.slots.get_mut(id) else {
        return;
    };
    match decision {
        Upgrade::Reject(response) => {
            let _ = slot.conn.reject(&core.settings, core.now, &response);
        }
        Upgrade::Accept { protocol, delayed } => {
            let accepted = slot.conn.accept(
                &core.settings,
                core.now,
                request,
                protocol.as_deref(),
                delayed,
            );
            core.touch(id);
            if accepted.is_ok() && !delayed {
                handler.on_open(&mut Context { core }, id);
            }
        }
    }
}
