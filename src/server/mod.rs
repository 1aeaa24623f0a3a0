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

mod completions;
mod config;
mod core;
mod driver;
mod feed;
mod handler;
mod history;
mod input;
#[cfg(feature = "redis")]
mod numbered;
mod per_ip;
pub(crate) mod poller;
mod post;
mod signals;
mod slab;
#[cfg(feature = "redis")]
pub(crate) mod source;
mod stats;
mod timer;
/// `release_spare` is also the chat's.
pub(crate) mod topics;
mod transmit;
mod user_data;

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::debug;

pub use self::config::Config;
use self::core::{Core, Timer, LISTENER_KEY};
pub use self::driver::Io;
pub use self::handler::{Context, Handler, TimerId, Upgrade};
pub use self::history::{Epoch, History, Since, SinceError, MAX_EPOCH};
use self::input::{feed, feed_read, receive};
#[cfg(feature = "redis")]
pub use self::numbered::{ClusterEvent, Numbered, TopicLog};
use self::poller::{Events, Poller};
use self::post::{Post, PostBox};
pub use self::post::{PostError, Poster};
pub use self::signals::{reload_on_sighup, stop_on_signals};
pub use self::slab::ConnId;
#[cfg(feature = "redis")]
pub(crate) use self::source::Source;
pub use self::stats::{Stats, REFUSAL_STATUSES};

/// The loop-wide read buffer's size. Its pages cost memory only once a
/// read has reached them: a server of small messages touches the first few
/// KiB. 512 KiB, as uSockets reads: against 256 KiB and up to four reads
/// per event, echo large gained 1.11x and 1.01x in messages/s in two
/// interleaved runs, with p99 8 % lower in both (docs/performance.md).
const READ_BUFFER: usize = 512 * 1024;

/// Reads from one connection per readiness event, at most, so that one busy
/// peer cannot starve the others: what is left is reported again (the poller
/// is level-triggered) after the other ready connections had their turn.
const READS_PER_EVENT: usize = 1;

/// The capacity of the list of fired timers kept between passes.
const FIRED_KEEP: usize = 1024;

/// Where a pass's time comes from.
#[derive(Debug, Clone, Copy)]
enum Clock {
    /// The wall clock, read once after the wait.
    Wall,
    /// An instant the caller keeps ([`Server::run_once_at`]).
    Given(Instant),
}

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

/// Makes a running [`Server`] re-read its TLS certificate and key, from any
/// thread or from a signal handler (SIGHUP): [`ReloadHandle::reload`] only
/// stores a flag and wakes the poller, both async-signal-safe. The loop
/// reloads at the end of its pass. Without TLS it logs (info) that there is
/// nothing to reload, and does nothing else.
#[derive(Clone)]
pub struct ReloadHandle {
    poller: Arc<Poller>,
    flag: Arc<AtomicBool>,
}

impl ReloadHandle {
    /// Asks for a reload.
    pub fn reload(&self) {
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
    /// Where a TLS session's plaintext goes, for every connection.
    #[cfg(feature = "tls")]
    plain: Vec<u8>,
    events: Events,
    /// The other list of reports: the one the last pass walked.
    spare_events: Option<Events>,
    #[cfg(feature = "redis")]
    ready: Vec<(usize, bool, bool)>,
    fired: Vec<Timer>,
    /// Messages posted from other threads, and the loop's buffer for them.
    posts: PostBox,
    posted: VecDeque<Post>,
    /// Whether [`Handler::on_start`] was called.
    started: bool,
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
        let max_posted = config.max_posted;
        let core = Core::new(listener, config)?;
        let posts = PostBox::new(Arc::clone(&core.poller), max_posted);
        Ok(Server {
            core,
            handler,
            read_buf: vec![0; READ_BUFFER],
            scratch: Vec::new(),
            #[cfg(feature = "tls")]
            plain: Vec::new(),
            events: Events::new(),
            spare_events: None,
            #[cfg(feature = "redis")]
            ready: Vec::new(),
            fired: Vec::new(),
            posts,
            posted: VecDeque::new(),
            started: false,
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

    /// Has the loop call `release` at the end of a pass in which a burst
    /// of connections ended (the connections fell to a quarter of their
    /// peak since the last call, a peak of at least 256): where a program
    /// gives its allocator's free memory back to the system. Without it, RSS
    /// after a burst can stay higher by what the allocator keeps. The
    /// `rookery` program passes glibc's `malloc_trim(0)`; the allocator is
    /// the embedding program's, so the library calls none itself.
    pub fn set_memory_release(&mut self, release: fn()) {
        self.core.release_memory = Some(release);
    }

    /// Makes the listener speak TLS (https and wss on the same port): every
    /// connection accepted from now on uses `config`.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn set_tls(&mut self, config: crate::tls::TlsConfig) {
        self.core.tls = Some(config);
    }

    /// Attaches another source of readiness (see [`source`]), detaching
    /// the one it replaces.
    #[cfg(feature = "redis")]
    pub(crate) fn set_source(&mut self, source: Box<dyn Source>) {
        self.core.set_source(source);
    }

    /// A handle that makes the server re-read its certificate and key (see
    /// [`ReloadHandle`]).
    pub fn reload_handle(&self) -> ReloadHandle {
        ReloadHandle {
            poller: Arc::clone(&self.core.poller),
            flag: Arc::clone(&self.core.reload_flag),
        }
    }

    /// A handle that posts messages to this server's connections from any
    /// thread (see [`Poster`]).
    pub fn poster(&self) -> Poster {
        self.posts.poster()
    }

    /// How long the loop may sleep before it has a timer to run (`None`: no
    /// timer pending), for a program that waits on the server's descriptor
    /// (see the `AsRawFd` implementation) in its own event loop and then
    /// calls [`Server::run_once`] with a zero timeout.
    pub fn next_timeout(&self) -> Option<Duration> {
        if self.core.stop_flag.load(Ordering::SeqCst) && !self.core.stopping {
            return Some(Duration::ZERO);
        }
        // The wheel counts from the clock of the last pass; the program's
        // own work since then is time already gone.
        let wake = self.core.wake_in()?;
        Some(wake.saturating_sub(Instant::now().saturating_duration_since(self.core.now)))
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
    /// is not a handler), then settles what it did. A handler that sets
    /// timers at start does it in [`Handler::on_start`] instead, which
    /// every way of running the server calls.
    ///
    /// ```no_run
    /// use rookery::{Config, ConnId, Context, Handler, Message, Server};
    ///
    /// struct Quiet;
    ///
    /// impl Handler for Quiet {
    ///     fn on_message(&mut self, _ctx: &mut Context<'_>, _conn: ConnId, _msg: Message<'_>) {}
    /// }
    ///
    /// let mut server = Server::bind("127.0.0.1:0", Config::default(), Quiet)?;
    /// server.run_once(None)?;
    /// let told = server.with_context(|ctx, _quiet| ctx.broadcast(Message::Text("news")));
    /// println!("told {told} clients");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn with_context<R>(&mut self, f: impl FnOnce(&mut Context<'_>, &mut H) -> R) -> R {
        self.core.set_clock(Instant::now());
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
        self.core.set_clock(Instant::now());
        self.start();
        // Each pass's wait is timed from the clock read after the last wait:
        // only that pass's own work (microseconds, a few milliseconds when
        // it is busy, when the wait returns at once anyway) lies between, so
        // a timer runs at most that late, against ticks of 10 ms.
        while self.run_pass(Clock::Wall, None)? {}
        Ok(())
    }

    /// Waits for events at most `timeout` (`None`: until a timer or event),
    /// handles them, and returns whether the server is still running.
    pub fn run_once(&mut self, timeout: Option<Duration>) -> io::Result<bool> {
        // The caller may have been away for a while: time the wait afresh.
        self.core.set_clock(Instant::now());
        self.start();
        self.core.timer_on_fd = true;
        let running = self.run_pass(Clock::Wall, timeout);
        self.submit_pending();
        running
    }

    /// One pass on a clock the caller keeps (a test, a simulation): waits
    /// at most `timeout` of real time for socket events, then handles what
    /// came and fires every timer due by `now`. The wall clock is not read
    /// and timers do not end the wait (they run on the given clock), so a
    /// test moves `now` an hour ahead and sees the idle timeouts, pings,
    /// room expiries and backoffs of that hour at once, without sleeping.
    ///
    /// `now` never runs back: an earlier one than the last pass's (or the
    /// start's) counts as the last one. Returns whether the server is still
    /// running.
    ///
    /// ```no_run
    /// use std::time::{Duration, Instant};
    /// # use rookery::{Config, Server, echo::Echo};
    /// let mut server = Server::bind("127.0.0.1:0", Config::default(), Echo)?;
    /// let start = Instant::now();
    /// // An hour passes for the server in one pass: every deadline of that
    /// // hour is handled now.
    /// server.run_once_at(start + Duration::from_secs(3600), Some(Duration::ZERO))?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn run_once_at(&mut self, now: Instant, timeout: Option<Duration>) -> io::Result<bool> {
        self.start();
        let running = self.run_pass(Clock::Given(now), timeout);
        self.submit_pending();
        running
    }

    /// Calls [`Handler::on_start`] before the first pass, and settles what
    /// it did.
    fn start(&mut self) {
        if std::mem::replace(&mut self.started, true) {
            return;
        }
        self.handler.on_start(&mut Context {
            core: &mut self.core,
        });
        self.settle();
    }

    /// One pass: waits at most `timeout` and, on the wall clock, until the
    /// next timer, counted from the loop's clock; then takes the pass's one
    /// reading of the clock and handles what came.
    fn run_pass(&mut self, clock: Clock, timeout: Option<Duration>) -> io::Result<bool> {
        self.check_stop();
        if self.core.stopping && self.core.slots.is_empty() {
            return Ok(false);
        }
        self.events.clear();
        let now = match clock {
            Clock::Wall => {
                // The deadline stays in the wheel; the poller's timer is
                // armed for it when it changed (see `poller`), or it is the
                // ring's wait's timeout.
                let timeout = self.core.wait_timeout(timeout);
                self.wait(timeout)?;
                Instant::now()
            }
            Clock::Given(now) => {
                self.wait(timeout)?;
                now
            }
        };
        // The one reading of the clock this pass: every connection and timer
        // below sees the same instant.
        self.core.set_clock(now);
        self.deliver_posts();
        if self.core.ring.is_some() {
            self.dispatch_completions()?;
            // Reports of the epoll descriptor were acted on there.
            self.events.clear();
        }
        // The reports are walked where the wait left them, that list swapped
        // out for the spare one (handling a report borrows the server
        // mutably): copying them out was ~150 instructions of every pass.
        let spare = self.spare_events.take().unwrap_or_else(Events::new);
        let mut events = std::mem::replace(&mut self.events, spare);
        for ev in events.iter() {
            let (key, readable, writable) = (ev.key, ev.readable, ev.writable);
            if key == LISTENER_KEY {
                self.core.accept_ready();
                self.settle();
                continue;
            }
            #[cfg(feature = "redis")]
            if self.core.source_owns(key) {
                self.core.source_ready(key);
                self.hand_cluster_events();
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
        events.clear();
        self.spare_events = Some(events);
        #[cfg(feature = "redis")]
        if self.core.source.is_some() {
            self.core.source_tick();
            self.hand_cluster_events();
            self.settle();
        }
        self.run_timers();
        self.check_reload();
        self.check_stop();
        if let Some(release) = self.core.burst_ended() {
            release();
        }
        Ok(!(self.core.stopping && self.core.slots.is_empty()))
    }

    /// Hands the handler what the cluster numbered or read since the last
    /// call ([`Handler::on_cluster`]).
    #[cfg(feature = "redis")]
    fn hand_cluster_events(&mut self) {
        for event in self.core.take_source_events() {
            self.handler.on_cluster(
                &mut Context {
                    core: &mut self.core,
                },
                event,
            );
        }
    }

    /// Re-reads the TLS certificate and key if a reload was asked for: new
    /// connections use the new pair; a pair that does not load leaves the old
    /// one in place, with a warning.
    fn check_reload(&mut self) {
        if !self.core.reload_flag.swap(false, Ordering::SeqCst) {
            return;
        }
        self.reload_tls();
        self.handler.on_reload(&mut Context {
            core: &mut self.core,
        });
        self.settle();
    }

    fn reload_tls(&mut self) {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.core.tls.as_mut() {
            match tls.reload() {
                Ok(()) => log::info!("reloaded the TLS certificate and key"),
                Err(e) => log::warn!("TLS reload failed, keeping the old pair: {e}"),
            }
            return;
        }
        log::info!("SIGHUP (a reload) ignored: there is no TLS certificate to re-read");
    }

    /// Begins the shutdown once a stop was asked for. The check is inlined
    /// (it runs twice a pass); the shutdown is not.
    #[inline(always)]
    fn check_stop(&mut self) {
        if self.core.stop_flag.load(Ordering::SeqCst) && !self.core.stopping {
            self.begin_shutdown();
        }
    }

    #[cold]
    #[inline(never)]
    fn begin_shutdown(&mut self) {
        let (count, wait) = (self.core.slots.len(), self.core.config.close_timeout);
        let noun = if count == 1 {
            "connection"
        } else {
            "connections"
        };
        if wait.is_zero() {
            log::info!("stopping: closing {count} {noun} (not waiting for answers)");
        } else {
            log::info!("stopping: closing {count} {noun} (up to {wait:?})");
        }
        // Posts accepted so far still go out, before the close frames.
        self.posts.close();
        self.deliver_posts();
        self.handler.on_shutdown(&mut Context {
            core: &mut self.core,
        });
        self.core.begin_shutdown();
        self.settle();
    }

    /// The poller's reports copied out, into the reused vector `ready`
    /// (given back by the caller): handling one borrows the server mutably.
    #[cfg(feature = "redis")]
    fn take_ready(&mut self) -> Vec<(usize, bool, bool)> {
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        ready.extend(
            self.events
                .iter()
                .map(|ev| (ev.key, ev.readable, ev.writable)),
        );
        ready
    }

    /// Sends what other threads posted since the last pass, in order. The
    /// check for posts is inlined (it runs every pass); the delivery is not.
    #[inline(always)]
    fn deliver_posts(&mut self) {
        if self.posts.has_posts() {
            self.deliver_posted();
        }
    }

    #[inline(never)]
    fn deliver_posted(&mut self) {
        self.posts.take_into(&mut self.posted);
        if self.posted.is_empty() {
            return;
        }
        for post in self.posted.drain(..) {
            let msg = post.message();
            match post.conn {
                // A connection closed meanwhile just misses it.
                Some(id) => {
                    let _ = self.core.send(id, msg);
                }
                None => {
                    self.core.broadcast(msg.opcode(), msg.as_bytes());
                }
            }
        }
        self.settle();
    }

    /// Advances the wheel to the pass's clock and acts on the timers that
    /// came due. Inlined, with the acting out of line: most passes fire
    /// nothing, and taking the list out and putting it back was ~40
    /// instructions of each.
    #[inline(always)]
    fn run_timers(&mut self) {
        self.core.advance_wheel(&mut self.fired);
        if !self.fired.is_empty() {
            self.run_fired();
        }
    }

    #[inline(never)]
    fn run_fired(&mut self) {
        let mut fired = std::mem::take(&mut self.fired);
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
        if fired.capacity() > FIRED_KEEP {
            // A burst of timers (a round of connections closing) is not kept.
            fired = Vec::new();
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
            let n = match receive(&slot.stream, &mut self.read_buf) {
                #[cfg(feature = "tls")]
                Ok(n) if n > 0 && slot.tls.is_some() => {
                    self.core.stats.bytes_received += n as u64;
                    self.read_tls(id, n);
                    if n < self.read_buf.len() {
                        break;
                    }
                    continue;
                }
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
            feed_read(
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

    /// Decrypts `n` bytes read for `id` and feeds the plaintext to its
    /// connection. Bytes that are not TLS, or a broken session, drop the
    /// connection (at most an alert is sent).
    #[cfg(feature = "tls")]
    fn read_tls(&mut self, id: ConnId, n: usize) {
        let Some(tls) = self
            .core
            .slots
            .get_mut(id)
            .and_then(|slot| slot.tls.as_deref_mut())
        else {
            return;
        };
        let mut plain = std::mem::take(&mut self.plain);
        plain.clear();
        let read = tls.read_tls(&mut self.read_buf[..n], &mut plain);
        self.core.touch(id);
        match read {
            Ok(outcome) => {
                if !plain.is_empty() {
                    feed(
                        &mut self.core,
                        &mut self.handler,
                        &mut self.scratch,
                        id,
                        &mut plain,
                    );
                }
                if outcome.peer_closed {
                    if let Some(slot) = self.core.slots.get_mut(id) {
                        slot.conn.handle_eof();
                    }
                }
            }
            Err(e) => {
                // Debug only: anyone can send these, as often as they like.
                // The peer's address says who (the connection was never
                // logged as open); looked up only when it is logged.
                if log::log_enabled!(log::Level::Debug) {
                    let peer = self
                        .core
                        .peer_addr(id)
                        .map_or_else(|| "?".to_string(), |p| p.to_string());
                    match e {
                        crate::tls::SessionError::NotTls => debug!(
                            "{id}: {peer} sent bytes that are not TLS (plain http:// or ws:// \
                             to the TLS port?); dropped"
                        ),
                        e => debug!("{id}: {peer}: {e}; dropped"),
                    }
                }
                if let Some(slot) = self.core.slots.get_mut(id) {
                    let _ = slot.conn.kill();
                }
            }
        }
        if plain.capacity() <= SCRATCH_KEEP {
            self.plain = plain;
        }
    }

    /// Writes what broadcasts gave their members ([`Core::flush_dirty`]),
    /// then settles every touched connection: writes its output, delivers
    /// what it owes the handler (an activation, a close), and removes it if
    /// it is finished. Handler calls may touch more connections; they are
    /// settled too. The test for anything to settle is inlined (it runs
    /// after every event, and after a lone message's reply there is
    /// nothing: the call alone was ~40 instructions); the settling is not.
    #[inline(always)]
    fn settle(&mut self) {
        if self.core.has_unsettled() {
            self.settle_touched();
        }
    }

    #[inline(never)]
    fn settle_touched(&mut self) {
        loop {
            self.settle_list();
            // On the ring, output goes out with the pass's sends, just
            // before the wait; a pass that gives output to hundreds of
            // connections (a burst of set-ups, each answered) sends it in
            // batches of a submission queue's worth instead, so that what
            // waits for its send stays small: all of it waiting at once
            // (each connection's queue and its copy) left the allocator
            // holding megabytes after the burst.
            if !(self.core.send_batch_full() && self.core.submit_sends()) {
                break;
            }
        }
    }

    fn settle_list(&mut self) {
        loop {
            // Before each settling: a handler called while the list is
            // settled may broadcast.
            self.core.flush_dirty();
            let Some(id) = self.core.next_touched() else {
                break;
            };
            let settled = self.core.settle(id);
            if let Some(code) = settled.closed {
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
            if settled.removed {
                // After `on_close`, which may still read it.
                self.core.user_data.forget(id);
            } else if let Some(early) = settled.activated {
                self.open(id, early);
            }
        }
    }

    /// A delayed connection was activated: it is open now; the handler hears
    /// of it, and what arrived with the request is read.
    fn open(&mut self, id: ConnId, mut early: Vec<u8>) {
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

/// The poller's descriptor (epoll on Linux): readable when the server has
/// something to do. With [`Server::next_timeout`], for running the server
/// from another event loop.
#[cfg(unix)]
impl<H: Handler> std::os::fd::AsRawFd for Server<H> {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        match self.core.ring.as_deref() {
            Some(ring) => ring.as_raw_fd(),
            None => self.core.poller.as_raw_fd(),
        }
    }
}

#[cfg(unix)]
impl<H: Handler> std::os::fd::AsFd for Server<H> {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self.core.ring.as_deref() {
            Some(ring) => ring.as_fd(),
            None => self.core.poller.as_fd(),
        }
    }
}
