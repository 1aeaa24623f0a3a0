//! Topics across nodes through Redis pub/sub (feature `redis`).
//!
//! This module owns the bridge: two non-blocking sockets to one Redis (RESP2
//! needs a subscribed connection apart from the one that publishes),
//! registered in the server's own poller under their own keys, driven by
//! the sans-IO codec in [`resp`]. The server hands it every local
//! publication ([`crate::Context::publish`]) and its readiness events and
//! deadlines; the bridge hands back what other nodes published, which the
//! server publishes locally only (never back to Redis).
//!
//! Guarantees (see docs/cluster.md): at most once across nodes; one
//! publishing connection, so a node's messages keep their order; while
//! Redis is away, publications wait in a queue of at most `max_backlog`
//! bytes and later ones are dropped and counted; a publication handed to a
//! connection that is then given up is queued again if Redis's host did
//! not take all of it, and counted as dropped otherwise (it may or may not
//! have been published: publishing it again could deliver it twice).
//!
//! Limits (SPEC 14, docs/security.md): each readiness of a socket reads at
//! most [`READ_PER_PASS`] bytes, and what it decodes is delivered locally
//! before the pass goes on, so a flooding Redis costs each pass a bounded
//! amount of work and memory and the rest waits in the kernel (TCP pushes
//! back on Redis). A message from Redis larger than `max_message` is
//! skipped as it arrives and counted, and the link stays up.

pub mod resp;

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::server::poller::{Event, PollMode, Poller};
use crate::server::source::{Deliver, Source};
use crate::server::{Context, Handler, Server};
use log::{debug, info, warn};
use std::any::Any;

use crate::log_text::escape_for_log;

use crate::proto::frame::OpCode;
use resp::{encode_command, Decoder, Reply};

/// Poller keys of the two Redis sockets (next to the listener's).
pub(crate) const SUB_KEY: usize = usize::MAX - 2;
pub(crate) const PUB_KEY: usize = usize::MAX - 3;

/// First wait before reconnecting; doubled per failed try up to the cap.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// The spec's bound on the time between tries.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A connection whose handshake or whose owed replies take longer than this
/// is given up (a silent Redis).
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// After (re)subscribing, the queue waits this long before it is published,
/// so that nodes reconnecting at about the same time are listening again.
const RESUME_GRACE: Duration = Duration::from_secs(1);
/// Bytes moved from the queue to a socket's output at most at a time.
const OUT_CHUNK: usize = 64 * 1024;
/// Bytes of commands written and not yet acknowledged, at most (plus one
/// command): what a connection given up can leave of unknown fate.
const INFLIGHT_MAX: usize = 64 * 1024;
/// Bytes read from one Redis socket at most per readiness (per pass).
pub const READ_PER_PASS: usize = 64 * 1024;
/// A subscribed connection silent this long is sent a PING, so that a
/// stopped Redis is noticed (within this and [`REPLY_TIMEOUT`]) even by a
/// node that publishes nothing.
const PING_IDLE: Duration = Duration::from_secs(10);
/// An identical failure is logged at WARN at most this often (the others
/// at debug level, counted in the next WARN line).
const REPEAT_LOG_EVERY: Duration = Duration::from_secs(60);
/// The envelope's bytes besides the payload, at most: version, flags,
/// origin, the room name's length and a 255-byte room name.
const ENVELOPE_MAX: usize = 11 + 255;
/// The envelope's first byte (and version).
const ENVELOPE_V1: u8 = 1;
/// Envelope flag: the payload is binary.
const FLAG_BINARY: u8 = 1;

/// What is wrong with a `--redis` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    /// It does not start with `redis://`.
    Scheme,
    /// `rediss://`: TLS to Redis, which the bridge does not speak.
    Tls,
    /// No host.
    Host,
    /// A port that is not a number.
    Port,
    /// A database that is not a number.
    Db,
    /// The host does not resolve.
    Resolve(String),
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::Scheme => {
                f.write_str("expected redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]")
            }
            UrlError::Tls => f.write_str(
                "TLS to Redis (rediss://) is not supported: use redis://, through a TLS tunnel (e.g. stunnel) if the link needs encryption",
            ),
            UrlError::Host => f.write_str("no host"),
            UrlError::Port => f.write_str("bad port"),
            UrlError::Db => f.write_str("bad database number"),
            UrlError::Resolve(e) => write!(f, "cannot resolve the host: {e}"),
        }
    }
}

impl std::error::Error for UrlError {}

/// Where the bridge connects and how it names channels.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// Redis's address (resolved once, when the URL is read).
    pub addr: SocketAddr,
    /// `AUTH` user (Redis 6 ACL), if any: `AUTH USER PASSWORD`.
    pub username: Option<String>,
    /// `AUTH` password, if any.
    pub password: Option<String>,
    /// `SELECT` database, if any.
    pub db: Option<u32>,
    /// Channels are `PREFIX:room:TOPIC`.
    pub prefix: String,
    /// Bytes of publications kept while Redis is away.
    pub max_backlog: usize,
    /// The largest message published to Redis and accepted from it (the
    /// envelope comes on top: see docs/cluster.md).
    pub max_message: usize,
}

impl RedisConfig {
    /// Reads `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]` (resolving the
    /// host now, with the system resolver), with prefix `rookery`, a 1 MiB
    /// queue and 1 MiB messages. `PASSWORD@` without a colon is a password
    /// too. `rediss://` is refused: the bridge does not speak TLS.
    pub fn from_url(url: &str) -> Result<RedisConfig, UrlError> {
        if url.starts_with("rediss://") {
            return Err(UrlError::Tls);
        }
        let rest = url.strip_prefix("redis://").ok_or(UrlError::Scheme)?;
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((auth, rest)) => (Some(auth), rest),
            None => (None, rest),
        };
        let (username, password) = match auth.map(|a| a.split_once(':')) {
            Some(Some((user, pw))) => (Some(user), Some(pw)),
            Some(None) => (None, auth),
            None => (None, None),
        };
        let username = username.filter(|u| !u.is_empty()).map(str::to_string);
        let password = password.filter(|p| !p.is_empty()).map(str::to_string);
        let (hostport, db) = match rest.split_once('/') {
            Some((hp, "")) => (hp, None),
            Some((hp, db)) => (hp, Some(db.parse().map_err(|_| UrlError::Db)?)),
            None => (rest, None),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || !p.is_empty() => {
                (h, p.parse::<u16>().map_err(|_| UrlError::Port)?)
            }
            _ => (hostport, 6379),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(UrlError::Host);
        }
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| UrlError::Resolve(e.to_string()))?
            .next()
            .ok_or_else(|| UrlError::Resolve("no address".into()))?;
        Ok(RedisConfig {
            addr,
            username,
            password,
            db,
            prefix: "rookery".into(),
            max_backlog: 1 << 20,
            max_message: 1 << 20,
        })
    }
}

/// The bridge's state, for metrics ([`crate::Context::redis_status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisStatus {
    /// Both connections up and subscribed.
    pub connected: bool,
    /// Publications dropped: the queue was full, the message was larger
    /// than `max_message`, or it was written to a connection that was
    /// given up before Redis acknowledged it.
    pub dropped: u64,
    /// Bytes of publications waiting for Redis or for its acknowledgement.
    pub queued_bytes: usize,
    /// Messages from Redis dropped because they were larger than
    /// `max_message` (the connection stays up).
    pub oversized: u64,
}

/// What a sent command's reply is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Auth,
    Select,
    Subscribe,
    Publish,
    Ping,
}

/// One socket to Redis with its buffers.
struct Link {
    key: usize,
    stream: TcpStream,
    out: Vec<u8>,
    input: Vec<u8>,
    expect: VecDeque<Expect>,
    /// Set once its handshake replies are all in.
    ready: bool,
    /// Whether WRITE interest is registered.
    writing: bool,
    /// Bytes of an oversized bulk string still to discard as they come.
    skip: usize,
    /// When it last read anything (or was opened).
    heard: Instant,
}

/// A message from another node, to be published locally.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub topic: String,
    pub opcode: OpCode,
    pub payload: Vec<u8>,
}

/// Why a connection to Redis was given up.
#[derive(Debug)]
enum LinkError {
    Io(io::Error),
    Closed,
    Protocol(resp::RespError),
    Refused(String),
    Unexpected,
    Timeout,
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkError::Io(e) => write!(f, "{e}"),
            LinkError::Closed => f.write_str("connection closed by Redis"),
            LinkError::Protocol(e) => write!(f, "not RESP: {e}"),
            LinkError::Refused(e) => write!(f, "Redis answered: {}", escape_for_log(e)),
            LinkError::Unexpected => f.write_str("unexpected reply"),
            LinkError::Timeout => f.write_str("no answer in time"),
        }
    }
}

/// The bridge between a server's topics and Redis.
pub(crate) struct Bridge {
    cfg: RedisConfig,
    node: u64,
    pattern: Vec<u8>,
    channel_prefix: Vec<u8>,
    decoder: Decoder,
    sub: Option<Link>,
    publ: Option<Link>,
    /// Encoded PUBLISH commands not yet handed to the socket.
    queue: VecDeque<Vec<u8>>,
    /// Their bytes: at most `max_backlog`, or one command if larger, plus
    /// what a link given up put back.
    queued: usize,
    /// Commands handed to the publishing socket, not yet acknowledged, in
    /// order (each `:N` reply acknowledges the first).
    inflight: VecDeque<Vec<u8>>,
    /// Their bytes (at most [`INFLIGHT_MAX`], plus one command).
    inflight_bytes: usize,
    pub dropped: u64,
    /// Messages from Redis over `max_message`, dropped.
    oversized: u64,
    /// What the log said about failed tries.
    failures: Failures,
    backoff: Duration,
    retry_at: Option<Instant>,
    /// When the current try or the oldest owed reply began.
    waiting_since: Option<Instant>,
    /// When the queue may go out (after resubscribing).
    resume_at: Option<Instant>,
    incoming: Vec<Incoming>,
}

impl Bridge {
    pub(crate) fn new(cfg: RedisConfig, now: Instant) -> Bridge {
        let node = node_id();
        let channel_prefix = format!("{}:room:", cfg.prefix).into_bytes();
        let mut pattern = Vec::new();
        for &b in &channel_prefix {
            if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
                pattern.push(b'\\');
            }
            pattern.push(b);
        }
        pattern.push(b'*');
        // The envelope of a message of `max_message` bytes is the largest
        // bulk string a node of the same `max_message` publishes.
        let decoder = Decoder::new(cfg.max_message.saturating_add(ENVELOPE_MAX));
        debug!("redis: node id {node:016x}");
        Bridge {
            cfg,
            node,
            pattern,
            channel_prefix,
            decoder,
            sub: None,
            publ: None,
            queue: VecDeque::new(),
            queued: 0,
            inflight: VecDeque::new(),
            inflight_bytes: 0,
            dropped: 0,
            oversized: 0,
            failures: Failures::default(),
            backoff: BACKOFF_MIN,
            retry_at: Some(now),
            waiting_since: None,
            resume_at: None,
            incoming: Vec::new(),
        }
    }

    /// Whether both connections are up and subscribed.
    pub(crate) fn is_up(&self) -> bool {
        self.sub.as_ref().is_some_and(|l| l.ready) && self.publ.as_ref().is_some_and(|l| l.ready)
    }

    /// What `/metrics` shows.
    pub(crate) fn status(&self) -> RedisStatus {
        RedisStatus {
            connected: self.is_up(),
            dropped: self.dropped,
            queued_bytes: self.queued + self.inflight_bytes,
            oversized: self.oversized,
        }
    }

    /// A local publication: queued for Redis (or dropped and counted past
    /// the bound).
    pub(crate) fn publish(&mut self, topic: &str, opcode: OpCode, payload: &[u8]) {
        let binary = match opcode {
            OpCode::Text => false,
            OpCode::Binary => true,
            _ => return,
        };
        let Ok(topic_len) = u8::try_from(topic.len()) else {
            debug!("redis: topic name over 255 bytes is not bridged");
            return;
        };
        if payload.len() > self.cfg.max_message {
            // No node with the same limit would take it.
            self.dropped += 1;
            return;
        }
        let mut envelope = Vec::with_capacity(11 + topic.len() + payload.len());
        envelope.push(ENVELOPE_V1);
        envelope.push(if binary { FLAG_BINARY } else { 0 });
        envelope.extend_from_slice(&self.node.to_be_bytes());
        envelope.push(topic_len);
        envelope.extend_from_slice(topic.as_bytes());
        envelope.extend_from_slice(payload);
        let mut channel = self.channel_prefix.clone();
        channel.extend_from_slice(topic.as_bytes());
        let mut cmd = Vec::with_capacity(envelope.len() + channel.len() + 32);
        encode_command(&mut cmd, &[b"PUBLISH", &channel, &envelope]);
        // An empty queue takes any message of up to `max_message`, however
        // small `max_backlog` is: with the envelope, a message of exactly
        // `--max-message` is over `--max-backlog`'s default of the same size.
        if !self.queue.is_empty() && self.queued + cmd.len() > self.cfg.max_backlog {
            self.dropped += 1;
            return;
        }
        self.queued += cmd.len();
        self.queue.push_back(cmd);
    }

    /// When the bridge needs the loop to wake.
    pub(crate) fn next_wake(&self) -> Option<Instant> {
        let owed = self.waiting_since.map(|t| t + REPLY_TIMEOUT);
        let ping = self
            .sub
            .as_ref()
            .filter(|l| l.ready && l.expect.is_empty())
            .map(|l| l.heard + PING_IDLE);
        [self.retry_at, owed, self.resume_at, ping]
            .into_iter()
            .flatten()
            .min()
    }

    /// Messages from other nodes since the last call.
    pub(crate) fn take_incoming(&mut self) -> std::vec::Drain<'_, Incoming> {
        self.incoming.drain(..)
    }

    /// Whether `key` is one of the bridge's sockets.
    pub(crate) fn owns(key: usize) -> bool {
        key == SUB_KEY || key == PUB_KEY
    }

    /// Readiness of one of its sockets.
    pub(crate) fn ready(&mut self, poller: &Poller, now: Instant, key: usize) {
        let result = self.drive(poller, now, key);
        if let Err(e) = result {
            self.fail(poller, now, &e);
        }
    }

    /// Timers, and moving the queue to the publishing socket: called once
    /// per pass.
    pub(crate) fn tick(&mut self, poller: &Poller, now: Instant) {
        if self.retry_at.is_some_and(|t| t <= now) {
            self.retry_at = None;
            self.connect(poller, now);
        }
        if self.waiting_since.is_some_and(|t| t + REPLY_TIMEOUT <= now) {
            self.fail(poller, now, &LinkError::Timeout);
            return;
        }
        if self.resume_at.is_some_and(|t| t <= now) {
            self.resume_at = None;
        }
        if let Some(link) = self.sub.as_mut() {
            if link.ready && link.expect.is_empty() && link.heard + PING_IDLE <= now {
                // Silent for a while: make it answer (REPLY_TIMEOUT applies).
                encode_command(&mut link.out, &[b"PING"]);
                link.expect.push_back(Expect::Ping);
                link.heard = now;
                self.waiting_since.get_or_insert(now);
                if let Err(e) = flush(link) {
                    self.fail(poller, now, &e);
                    return;
                }
            }
        }
        if let Err(e) = self.pump(poller, now) {
            self.fail(poller, now, &e);
        }
    }

    fn connect(&mut self, poller: &Poller, now: Instant) {
        debug!("redis: connecting to {}", self.cfg.addr);
        let mut handshake = Vec::new();
        let mut expect = VecDeque::new();
        match (&self.cfg.username, &self.cfg.password) {
            (Some(user), Some(pw)) => {
                encode_command(&mut handshake, &[b"AUTH", user.as_bytes(), pw.as_bytes()]);
                expect.push_back(Expect::Auth);
            }
            (None, Some(pw)) => {
                encode_command(&mut handshake, &[b"AUTH", pw.as_bytes()]);
                expect.push_back(Expect::Auth);
            }
            // A user without a password: Redis's `default` user, or one
            // with `nopass`; nothing to send.
            (_, None) => {}
        }
        if let Some(db) = self.cfg.db {
            encode_command(&mut handshake, &[b"SELECT", db.to_string().as_bytes()]);
            expect.push_back(Expect::Select);
        }
        let mut links = Vec::new();
        for key in [SUB_KEY, PUB_KEY] {
            let mut out = handshake.clone();
            let mut exp = expect.clone();
            if key == SUB_KEY {
                encode_command(&mut out, &[b"PSUBSCRIBE", &self.pattern]);
                exp.push_back(Expect::Subscribe);
            }
            match open(poller, self.cfg.addr, key) {
                Ok(stream) => links.push(Link {
                    key,
                    stream,
                    out,
                    input: Vec::new(),
                    ready: exp.is_empty(),
                    expect: exp,
                    writing: true,
                    skip: 0,
                    heard: now,
                }),
                Err(e) => {
                    for link in links {
                        let _ = poller.delete(&link.stream);
                    }
                    self.fail(poller, now, &LinkError::Io(e));
                    return;
                }
            }
        }
        self.publ = links.pop();
        self.sub = links.pop();
        self.waiting_since = Some(now);
    }

    /// Gives both links up, logs why, and retries after the backoff.
    /// Commands handed to the publishing link go back to the front of the
    /// queue if some of their bytes never reached Redis's host (still in
    /// our output, or in the kernel's send queue unacknowledged by the
    /// peer, which the reset below discards): Redis cannot have run them.
    /// Those it received whole and did not acknowledge are counted as
    /// dropped (Redis may have published them: sending them again could
    /// deliver them twice).
    fn fail(&mut self, poller: &Poller, now: Instant, e: &LinkError) {
        let unwritten = self
            .publ
            .as_ref()
            .map_or(0, |l| l.out.len() + unacknowledged(&l.stream));
        if let Some(link) = &self.publ {
            reset_on_close(&link.stream);
        }
        for link in [self.sub.take(), self.publ.take()].into_iter().flatten() {
            let _ = poller.delete(&link.stream);
        }
        let (requeued, lost) = self.give_back(unwritten);
        let text = e.to_string();
        let mut what = String::new();
        if requeued > 0 {
            what.push_str(&format!("; {requeued} publications queued again"));
        }
        if lost > 0 {
            what.push_str(&format!(
                "; {lost} publications not acknowledged, counted as dropped"
            ));
        }
        match self.failures.failed(&text, now, !what.is_empty()) {
            Say::Quiet => debug!(
                "redis {}: {text}; retrying in {:?}",
                self.cfg.addr, self.backoff
            ),
            Say::Warn { again } => {
                let again = match again {
                    0 => String::new(),
                    n => format!(" (and {n} times more since the last such line)"),
                };
                warn!(
                    "redis {}: {text}{again}{what}; retrying in {:?}",
                    self.cfg.addr, self.backoff
                );
            }
        }
        self.waiting_since = None;
        self.resume_at = None;
        self.retry_at = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    /// Empties the in-flight list (see [`Bridge::fail`]): the last commands,
    /// `unwritten` bytes' worth, back to the queue's front in order, the
    /// others counted as dropped. Returns how many of each.
    fn give_back(&mut self, unwritten: usize) -> (usize, u64) {
        let mut left = unwritten;
        let mut requeued = 0;
        while left > 0 {
            let Some(cmd) = self.inflight.pop_back() else {
                break;
            };
            left = left.saturating_sub(cmd.len());
            self.inflight_bytes -= cmd.len();
            self.queued += cmd.len();
            self.queue.push_front(cmd);
            requeued += 1;
        }
        let lost = self.inflight.len() as u64;
        self.dropped += lost;
        self.inflight.clear();
        self.inflight_bytes = 0;
        (requeued, lost)
    }

    /// Takes its sockets out of the poller (before the server drops it).
    pub(crate) fn detach(&mut self, poller: &Poller) {
        for link in [self.sub.take(), self.publ.take()].into_iter().flatten() {
            let _ = poller.delete(&link.stream);
        }
    }

    fn link(&mut self, key: usize) -> Option<&mut Link> {
        if key == SUB_KEY {
            self.sub.as_mut()
        } else {
            self.publ.as_mut()
        }
    }

    fn drive(&mut self, poller: &Poller, now: Instant, key: usize) -> Result<(), LinkError> {
        let decoder = self.decoder.clone();
        let Some(link) = self.link(key) else {
            return Ok(());
        };
        // Write what is owed, then read what came: at most READ_PER_PASS
        // bytes. The rest waits in the kernel (the socket is level-triggered,
        // so it is ready again next pass), and TCP pushes back on Redis.
        flush(link)?;
        let mut buf = [0u8; 16 * 1024];
        let mut replies = Vec::new();
        let mut budget = READ_PER_PASS;
        while budget > 0 {
            let want = budget.min(buf.len());
            match link.stream.read(&mut buf[..want]) {
                Ok(0) => return Err(LinkError::Closed),
                Ok(n) => {
                    budget -= n;
                    link.heard = now;
                    let skipped = link.skip.min(n);
                    link.skip -= skipped;
                    link.input.extend_from_slice(&buf[skipped..n]);
                    decode_into(&decoder, link, &mut replies)?;
                    if n < want {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(LinkError::Io(e)),
            }
        }
        if link.input.is_empty() && link.input.capacity() > READ_PER_PASS {
            // A large message is through: give its buffer back.
            link.input = Vec::new();
        }
        for reply in replies {
            self.on_reply(now, key, reply)?;
        }
        self.pump(poller, now)
    }

    fn on_reply(&mut self, now: Instant, key: usize, reply: Reply) -> Result<(), LinkError> {
        let was_up = self.is_up();
        let node = self.node;
        let prefix_len = self.channel_prefix.len();
        let max_message = self.cfg.max_message;
        let Some(link) = self.link(key) else {
            return Ok(());
        };
        if let Reply::Error(e) = &reply {
            return Err(LinkError::Refused(String::from_utf8_lossy(e).into_owned()));
        }
        // A pub/sub message on the subscribed link, once subscribed.
        if key == SUB_KEY && link.ready {
            match pmessage(&reply, prefix_len) {
                Some(Push::Data(msg)) => {
                    match open_envelope(msg, node) {
                        Some(incoming) if incoming.payload.len() > max_message => {
                            self.oversized += 1;
                            debug!("redis: dropped a message over --max-message from Redis");
                        }
                        Some(incoming) => self.incoming.push(incoming),
                        None => {}
                    }
                    return Ok(());
                }
                Some(Push::Oversized(n)) => {
                    self.oversized += 1;
                    debug!("redis: dropped a message of {n} bytes from Redis (over --max-message)");
                    return Ok(());
                }
                None => {}
            }
        }
        let expected = link.expect.pop_front().ok_or(LinkError::Unexpected)?;
        let fits = match (expected, &reply) {
            (Expect::Auth | Expect::Select, Reply::Simple(_)) => true,
            (Expect::Publish, Reply::Integer(_)) => true,
            (Expect::Subscribe, Reply::Array(Some(items))) => {
                matches!(items.first(), Some(Reply::Bulk(Some(k))) if k == b"psubscribe")
            }
            (Expect::Ping, Reply::Array(Some(items))) => {
                matches!(items.first(), Some(Reply::Bulk(Some(k))) if k == b"pong")
            }
            (Expect::Ping, Reply::Simple(k)) => k == b"PONG",
            _ => false,
        };
        if !fits {
            return Err(LinkError::Unexpected);
        }
        if !link.ready && link.expect.is_empty() {
            link.ready = true;
        }
        if expected == Expect::Publish {
            // Redis took the oldest command in flight.
            if let Some(cmd) = self.inflight.pop_front() {
                self.inflight_bytes -= cmd.len();
            }
        }
        if !was_up && self.is_up() {
            self.on_up(now);
        }
        self.waiting_since = self.owed().then_some(now);
        Ok(())
    }

    /// Both links are up and subscribed: said (at WARN if it follows a
    /// failure, so that `-q` shows the recovery too), and the queue goes
    /// out after the grace.
    fn on_up(&mut self, now: Instant) {
        match self.failures.recovered() {
            Some(unshown) => {
                let also = match unshown {
                    0 => String::new(),
                    n => format!(" (after {n} more failed tries not shown)"),
                };
                warn!(
                    "redis {}: connected and subscribed again{also}",
                    self.cfg.addr
                );
            }
            None => info!("redis {}: connected and subscribed", self.cfg.addr),
        }
        self.backoff = BACKOFF_MIN;
        if !self.queue.is_empty() {
            self.resume_at = Some(now + RESUME_GRACE);
        }
    }

    /// Whether a reply is owed on either link.
    fn owed(&self) -> bool {
        [&self.sub, &self.publ]
            .into_iter()
            .flatten()
            .any(|l| !l.expect.is_empty())
    }

    /// Moves the queue to the publishing socket (once up, past the grace)
    /// and keeps each socket's interest in step with its output.
    fn pump(&mut self, poller: &Poller, now: Instant) -> Result<(), LinkError> {
        let up = self.is_up() && self.resume_at.is_none();
        if up {
            if let Some(link) = self.publ.as_mut() {
                let before = link.expect.len();
                while link.out.len() < OUT_CHUNK && self.inflight_bytes < INFLIGHT_MAX {
                    let Some(cmd) = self.queue.pop_front() else {
                        break;
                    };
                    self.queued -= cmd.len();
                    link.out.extend_from_slice(&cmd);
                    link.expect.push_back(Expect::Publish);
                    self.inflight_bytes += cmd.len();
                    self.inflight.push_back(cmd);
                }
                if before == 0 && !link.expect.is_empty() {
                    self.waiting_since = Some(now);
                }
                flush(link)?;
            }
        }
        for link in [self.sub.as_mut(), self.publ.as_mut()]
            .into_iter()
            .flatten()
        {
            let want = !link.out.is_empty();
            if want != link.writing {
                let ev = if want {
                    Event::all(link.key)
                } else {
                    Event::readable(link.key)
                };
                poller
                    .modify_with_mode(&link.stream, ev, PollMode::Level)
                    .map_err(LinkError::Io)?;
                link.writing = want;
            }
        }
        Ok(())
    }
}

impl Source for Bridge {
    fn owns(&self, key: usize) -> bool {
        Bridge::owns(key)
    }

    fn ready(&mut self, poller: &Poller, now: Instant, key: usize) {
        Bridge::ready(self, poller, now, key);
    }

    fn tick(&mut self, poller: &Poller, now: Instant) {
        Bridge::tick(self, poller, now);
    }

    /// What other nodes published: the server publishes it locally only
    /// (a message from Redis is never sent back).
    fn deliver(&mut self, deliver: Deliver<'_>) {
        for msg in self.take_incoming() {
            deliver(&msg.topic, msg.opcode, &msg.payload);
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        Bridge::next_wake(self)
    }

    fn published(&mut self, topic: &str, opcode: OpCode, payload: &[u8]) {
        self.publish(topic, opcode, payload);
    }

    fn detach(&mut self, poller: &Poller) {
        Bridge::detach(self, poller);
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl<H: Handler> Server<H> {
    /// Joins this server to the others that name the same Redis: what is
    /// published to a topic here ([`Context::publish`]) is published to the
    /// topic of the same name on every node, and the other way round (see
    /// docs/cluster.md). The connections are made from the loop, with
    /// backoff; the server serves local traffic whatever Redis does.
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn set_redis(&mut self, config: RedisConfig) {
        self.set_source(Box::new(Bridge::new(config, Instant::now())));
    }
}

impl Context<'_> {
    /// The Redis bridge's state, `None` without a bridge.
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis_status(&self) -> Option<RedisStatus> {
        self.core.source_as::<Bridge>().map(Bridge::status)
    }
}

/// Decodes the replies complete in `link`'s input into `replies`, leaving
/// the start of an unfinished one; the bytes of an oversized bulk string
/// are discarded, those not read yet as they come (`Link::skip`).
fn decode_into(
    decoder: &Decoder,
    link: &mut Link,
    replies: &mut Vec<Reply>,
) -> Result<(), LinkError> {
    let mut used = 0;
    while let Some(got) = decoder
        .decode(&link.input[used..])
        .map_err(LinkError::Protocol)?
    {
        used += got.used;
        let here = got.skip.min(link.input.len() - used);
        used += here;
        link.skip = got.skip - here;
        replies.push(got.reply);
    }
    link.input.drain(..used);
    Ok(())
}

/// Writes what `link` has queued, as far as the socket takes it.
fn flush(link: &mut Link) -> Result<(), LinkError> {
    let mut written = 0;
    while written < link.out.len() {
        match link.stream.write(&link.out[written..]) {
            Ok(0) => return Err(LinkError::Closed),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(LinkError::Io(e)),
        }
    }
    link.out.drain(..written);
    Ok(())
}

/// What the log says about failed tries: the first failure, and any unlike
/// the one before, at WARN; the same one again within [`REPEAT_LOG_EVERY`]
/// of the last WARN at debug level, counted in the next WARN line. Never
/// hidden at `-q`, never a line per retry.
#[derive(Debug, Default)]
struct Failures {
    last: Option<String>,
    /// Failures since the last WARN, not shown at WARN.
    unshown: u64,
    warned_at: Option<Instant>,
}

/// How to log one failure.
#[derive(Debug, PartialEq, Eq)]
enum Say {
    /// At WARN, with how many times it repeated unshown since the last.
    Warn { again: u64 },
    /// At debug level.
    Quiet,
}

impl Failures {
    /// A failure, `text` as logged; `news`: it carries something to say
    /// (publications queued again or dropped) whatever the text.
    fn failed(&mut self, text: &str, now: Instant, news: bool) -> Say {
        let repeated = self.last.as_deref() == Some(text);
        let recently = self.warned_at.is_some_and(|t| now < t + REPEAT_LOG_EVERY);
        if !repeated {
            self.last = Some(text.to_string());
        }
        if repeated && recently && !news {
            self.unshown += 1;
            return Say::Quiet;
        }
        self.warned_at = Some(now);
        Say::Warn {
            again: std::mem::take(&mut self.unshown),
        }
    }

    /// Up again: `Some(failures not shown)` if a failure was logged since
    /// the last time up (the recovery is worth a WARN then).
    fn recovered(&mut self) -> Option<u64> {
        let was_failing = self.last.take().is_some();
        self.warned_at = None;
        let unshown = std::mem::take(&mut self.unshown);
        was_failing.then_some(unshown)
    }
}

/// What a `pmessage` push carries.
enum Push<'a> {
    /// The envelope.
    Data(&'a [u8]),
    /// An envelope of this many bytes, over the limit, skipped unread.
    Oversized(usize),
}

/// The envelope of a `pmessage` push (`[pmessage, pattern, channel, data]`)
/// whose channel has our prefix.
fn pmessage(reply: &Reply, prefix_len: usize) -> Option<Push<'_>> {
    let Reply::Array(Some(items)) = reply else {
        return None;
    };
    match items.as_slice() {
        [Reply::Bulk(Some(kind)), _, Reply::Bulk(Some(channel)), data]
            if kind == b"pmessage" && channel.len() >= prefix_len =>
        {
            match data {
                Reply::Bulk(Some(data)) => Some(Push::Data(data)),
                Reply::Oversized(n) => Some(Push::Oversized(*n)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Reads an envelope: `[1][flags][origin: 8 bytes BE][topic len][topic][payload]`.
/// `None` for our own messages and for anything malformed.
fn open_envelope(data: &[u8], node: u64) -> Option<Incoming> {
    let (&version, rest) = data.split_first()?;
    let (&flags, rest) = rest.split_first()?;
    if version != ENVELOPE_V1 || rest.len() < 9 {
        return None;
    }
    let (origin, rest) = rest.split_at(8);
    if u64::from_be_bytes(origin.try_into().ok()?) == node {
        return None;
    }
    let (&len, rest) = rest.split_first()?;
    let (topic, payload) = rest.split_at_checked(usize::from(len))?;
    let topic = std::str::from_utf8(topic).ok()?.to_string();
    let opcode = if flags & FLAG_BINARY != 0 {
        OpCode::Binary
    } else {
        std::str::from_utf8(payload).ok()?;
        OpCode::Text
    };
    Some(Incoming {
        topic,
        opcode,
        payload: payload.to_vec(),
    })
}

/// Bytes in `stream`'s send queue that the peer has not acknowledged
/// (`SIOCOUTQ`; 0 where unknown). rustix has no safe call for it.
#[allow(unsafe_code)]
fn unacknowledged(stream: &TcpStream) -> usize {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let mut n: libc::c_int = 0;
        // SAFETY: SIOCOUTQ (= TIOCOUTQ) on a TCP socket we own writes one
        // int through the pointer given, to `n`, which outlives the call.
        let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
        if rc == 0 {
            return usize::try_from(n).unwrap_or(0);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = stream;
    0
}

/// Makes closing `stream` send a reset and discard its unsent bytes
/// (`SO_LINGER` 0), so that what [`unacknowledged`] counted never reaches
/// Redis after the connection is given up.
fn reset_on_close(stream: &TcpStream) {
    let _ = rustix::net::sockopt::set_socket_linger(stream, Some(Duration::ZERO));
}

/// A node id unlikely to repeat: the clock, the process id and a stack
/// address, mixed (splitmix64).
fn node_id() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let local = 0u8;
    let mut z = t ^ (u64::from(std::process::id()) << 32) ^ (&local as *const u8 as u64);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A non-blocking TCP connect (the loop never waits for it), registered
/// for readiness under `key`.
fn open(poller: &Poller, addr: SocketAddr, key: usize) -> io::Result<TcpStream> {
    use rustix::net::{socket_with, AddressFamily, SocketFlags, SocketType};
    let family = if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let fd = socket_with(
        family,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    match rustix::net::connect(&fd, &addr) {
        Ok(()) | Err(rustix::io::Errno::INPROGRESS) => {}
        Err(e) => return Err(e.into()),
    }
    let stream = TcpStream::from(fd);
    let _ = stream.set_nodelay(true);
    // Deleted from the poller before it is dropped (`Bridge::fail`, and the
    // bridge is dropped with the server's poller).
    poller.add_with_mode(&stream, Event::all(key), PollMode::Level)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let c = RedisConfig::from_url("redis://:s3cret@127.0.0.1:7000/3").unwrap();
        assert_eq!(c.addr, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(c.password.as_deref(), Some("s3cret"));
        assert_eq!(c.db, Some(3));
        let c = RedisConfig::from_url("redis://127.0.0.1").unwrap();
        assert_eq!(c.addr.port(), 6379);
        assert_eq!((c.password, c.db), (None, None));
        assert_eq!(
            RedisConfig::from_url("http://x").unwrap_err(),
            UrlError::Scheme
        );
        assert_eq!(
            RedisConfig::from_url("redis://1.2.3.4:x").unwrap_err(),
            UrlError::Port
        );
        assert_eq!(
            RedisConfig::from_url("redis://1.2.3.4/x").unwrap_err(),
            UrlError::Db
        );
        assert_eq!(
            RedisConfig::from_url("redis:///0").unwrap_err(),
            UrlError::Host
        );
        let c = RedisConfig::from_url("redis://alice:pw@127.0.0.1").unwrap();
        assert_eq!(
            (c.username.as_deref(), c.password.as_deref()),
            (Some("alice"), Some("pw"))
        );
        let c = RedisConfig::from_url("redis://pw@127.0.0.1").unwrap();
        assert_eq!((c.username, c.password.as_deref()), (None, Some("pw")));
        let e = RedisConfig::from_url("rediss://127.0.0.1:6380").unwrap_err();
        assert_eq!(e, UrlError::Tls);
        assert!(e.to_string().contains("TLS to Redis"), "{e}");
    }

    #[test]
    fn envelopes_round_trip_and_our_own_are_dropped() {
        let cfg = RedisConfig::from_url("redis://127.0.0.1:1").unwrap();
        let mut b = Bridge::new(cfg, Instant::now());
        b.publish("kitchen", OpCode::Binary, &[0, 255]);
        let cmd = b.queue.pop_front().unwrap();
        let reply = Decoder::new(1 << 20).decode(&cmd).unwrap().unwrap().reply;
        let Reply::Array(Some(items)) = reply else {
            panic!()
        };
        let Reply::Bulk(Some(env)) = &items[2] else {
            panic!()
        };
        assert_eq!(
            items[1],
            Reply::Bulk(Some(b"rookery:room:kitchen".to_vec()))
        );
        assert!(open_envelope(env, b.node).is_none());
        let got = open_envelope(env, b.node ^ 1).unwrap();
        assert_eq!(
            (got.topic.as_str(), got.opcode, got.payload),
            ("kitchen", OpCode::Binary, vec![0, 255])
        );
        assert!(open_envelope(&env[..5], 0).is_none());
    }

    #[test]
    fn the_queue_is_bounded_and_counts_drops() {
        let mut cfg = RedisConfig::from_url("redis://127.0.0.1:1").unwrap();
        cfg.max_backlog = 200;
        let mut b = Bridge::new(cfg, Instant::now());
        for _ in 0..10 {
            b.publish("r", OpCode::Text, &[b'x'; 50]);
        }
        assert!(b.status().queued_bytes <= 200);
        assert_eq!(b.queue.len() as u64 + b.dropped, 10);
        assert!(b.dropped > 0);
    }

    #[test]
    fn a_message_of_max_message_is_published_with_the_default_backlog() {
        let mut cfg = RedisConfig::from_url("redis://127.0.0.1:1").unwrap();
        (cfg.max_message, cfg.max_backlog) = (1000, 1000);
        let mut b = Bridge::new(cfg, Instant::now());
        b.publish("room", OpCode::Text, &[b'x'; 1000]);
        assert_eq!((b.queue.len(), b.dropped), (1, 0));
        // The receiving side of the same limit takes its envelope whole.
        let reply = b.decoder.decode(&b.queue[0]).unwrap().unwrap();
        assert_eq!(reply.skip, 0);
        // A full queue still drops; a message over the limit never goes.
        b.publish("room", OpCode::Text, &[b'x'; 10]);
        b.publish("room", OpCode::Text, &[b'x'; 1001]);
        assert_eq!((b.queue.len(), b.dropped), (1, 2));
    }

    #[test]
    fn commands_of_a_link_given_up_are_queued_again_or_counted() {
        let cfg = RedisConfig::from_url("redis://127.0.0.1:1").unwrap();
        let mut b = Bridge::new(cfg, Instant::now());
        b.publish("r", OpCode::Text, b"later");
        for len in [10, 20, 30] {
            b.inflight.push_back(vec![len as u8; len]);
            b.inflight_bytes += len;
        }
        // 35 bytes unwritten: all of the last command and part of the one
        // before (never run by Redis); the first went out whole.
        assert_eq!(b.give_back(35), (2, 1));
        let lens: Vec<usize> = b.queue.iter().map(Vec::len).collect();
        assert_eq!(lens[..2], [20, 30]);
        assert_eq!(b.dropped, 1);
        assert_eq!((b.inflight.len(), b.inflight_bytes), (0, 0));
        assert_eq!(b.queued, 50 + lens[2]);
    }

    #[test]
    fn repeated_failures_are_warned_once_a_minute_and_counted_never_hidden() {
        let t0 = Instant::now();
        let mut f = Failures::default();
        let refused = "Connection refused (os error 111)";
        assert_eq!(f.failed(refused, t0, false), Say::Warn { again: 0 });
        for s in 1..5 {
            let at = t0 + Duration::from_secs(s * 5);
            assert_eq!(f.failed(refused, at, false), Say::Quiet);
        }
        // Another failure is news at once; and so is the first again.
        let t1 = t0 + Duration::from_secs(30);
        assert_eq!(
            f.failed("no answer in time", t1, false),
            Say::Warn { again: 4 }
        );
        assert_eq!(f.failed(refused, t1, false), Say::Warn { again: 0 });
        assert_eq!(
            f.failed(refused, t1 + Duration::from_secs(59), false),
            Say::Quiet
        );
        assert_eq!(
            f.failed(refused, t1 + Duration::from_secs(59), true),
            Say::Warn { again: 1 }
        );
        assert_eq!(
            f.failed(refused, t1 + Duration::from_secs(60), false),
            Say::Quiet
        );
        assert_eq!(
            f.failed(refused, t1 + Duration::from_secs(119), false),
            Say::Warn { again: 1 }
        );
        assert_eq!(
            f.failed(refused, t1 + Duration::from_secs(120), false),
            Say::Quiet
        );
        // Connecting again after failures is worth a WARN, with the count.
        assert_eq!(f.recovered(), Some(1));
        assert_eq!(f.recovered(), None);
        assert_eq!(
            f.failed(refused, t1 + Duration::from_secs(121), false),
            Say::Warn { again: 0 }
        );
    }

    #[test]
    fn a_redis_error_is_shown_with_format_characters_escaped() {
        let e = LinkError::Refused("ERR \u{202e}txt.exe\n[fake]".into()).to_string();
        assert_eq!(e, "Redis answered: ERR \\u{202e}txt.exe\\n[fake]");
    }

    /// A bridge connected to a fake Redis in this thread: the poller, the
    /// bridge, the fake's ends of the subscribed and publishing
    /// connections, and the instant it came up.
    fn bridge_up(max_message: usize) -> (Poller, Bridge, TcpStream, TcpStream, Instant) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut cfg =
            RedisConfig::from_url(&format!("redis://{}", listener.local_addr().unwrap())).unwrap();
        cfg.max_message = max_message;
        let poller = Poller::new().unwrap();
        let t0 = Instant::now();
        let mut b = Bridge::new(cfg, t0);
        b.tick(&poller, t0);
        let (x, _) = listener.accept().unwrap();
        let (y, _) = listener.accept().unwrap();
        let sub_addr = b.sub.as_ref().unwrap().stream.local_addr().unwrap();
        let (mut sub, publ) = if x.peer_addr().unwrap() == sub_addr {
            (x, y)
        } else {
            (y, x)
        };
        b.ready(&poller, t0, SUB_KEY);
        let mut cmd = [0u8; 64];
        let n = sub.read(&mut cmd).unwrap();
        assert!(cmd[..n].windows(10).any(|w| w == b"PSUBSCRIBE"));
        sub.write_all(b"*3\r\n$10\r\npsubscribe\r\n$14\r\nrookery:room:*\r\n:1\r\n")
            .unwrap();
        b.ready(&poller, t0, SUB_KEY);
        assert!(b.is_up());
        (poller, b, sub, publ, t0)
    }

    /// A pmessage from another node for room `r`.
    fn push(payload: &[u8]) -> Vec<u8> {
        let mut env = vec![ENVELOPE_V1, 0];
        env.extend_from_slice(&7u64.to_be_bytes());
        env.push(1);
        env.push(b'r');
        env.extend_from_slice(payload);
        let mut out = Vec::new();
        encode_command(
            &mut out,
            &[b"pmessage", b"rookery:room:*", b"rookery:room:r", &env],
        );
        out
    }

    #[test]
    fn a_flood_is_read_a_pass_at_a_time() {
        let (poller, mut b, mut sub, _publ, t0) = bridge_up(1 << 20);
        let msg = push(&[b'f'; 1000]);
        sub.set_nonblocking(true).unwrap();
        let mut sent = 0;
        // Fill the kernel's buffers both ways.
        'fill: loop {
            let mut at = 0;
            while at < msg.len() {
                match sub.write(&msg[at..]) {
                    Ok(n) => {
                        at += n;
                        sent += n;
                    }
                    // Full (perhaps in the middle of a message).
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 'fill,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        assert!(sent > 2 * READ_PER_PASS, "only {sent} bytes buffered");
        let mut got = 0;
        for pass in 0..3 {
            b.ready(&poller, t0, SUB_KEY);
            // Whole messages on the wire: what it read, less what it holds.
            let bytes = b.take_incoming().count() * msg.len();
            let held = b.sub.as_ref().unwrap().input.len();
            assert!(
                bytes <= READ_PER_PASS + msg.len() && held < msg.len(),
                "pass {pass}: {bytes} + {held}"
            );
            assert!(
                bytes + 2 * msg.len() >= READ_PER_PASS,
                "pass {pass}: only {bytes}"
            );
            got += bytes;
        }
        assert!(b.is_up() && got < sent);
    }

    #[test]
    fn a_message_over_the_limit_is_skipped_and_counted_and_the_link_stays() {
        let (poller, mut b, mut sub, _publ, t0) = bridge_up(1024);
        sub.write_all(&push(&[b'x'; 1025])).unwrap(); // fits the decoder, not the limit
        let big = push(&vec![b'y'; 300_000]);
        let writer = {
            let mut sub = sub.try_clone().unwrap();
            std::thread::spawn(move || {
                sub.write_all(&big).unwrap();
                sub.write_all(&push(b"after")).unwrap();
            })
        };
        let mut after = None;
        for _ in 0..1000 {
            b.ready(&poller, t0, SUB_KEY);
            assert!(b.sub.as_ref().unwrap().input.capacity() <= READ_PER_PASS);
            if let Some(m) = b.take_incoming().next() {
                after = Some(m.payload);
                break;
            }
            // Until the writer's next bytes (or what is left) are readable.
            let mut events = crate::server::poller::Events::new();
            poller
                .wait(&mut events, Some(Duration::from_millis(100)))
                .unwrap();
        }
        writer.join().unwrap();
        assert_eq!(after.as_deref(), Some(&b"after"[..]));
        assert_eq!(b.status().oversized, 2);
        assert!(b.is_up());
    }

    #[test]
    fn a_stopped_redis_is_given_up_and_what_it_did_not_acknowledge_counted() {
        let (poller, mut b, sub, mut publ, t0) = bridge_up(1 << 20);
        for i in 0..3 {
            b.publish("r", OpCode::Text, format!("m{i}").as_bytes());
        }
        b.tick(&poller, t0);
        let mut buf = [0u8; 4096];
        let n = publ.read(&mut buf).unwrap();
        assert_eq!(buf[..n].windows(7).filter(|w| w == b"PUBLISH").count(), 3);
        // Unacknowledged: the metrics show them, and the link is still up.
        let st = b.status();
        assert!(st.connected && st.queued_bytes > 0, "{st:?}");
        b.tick(&poller, t0 + REPLY_TIMEOUT - Duration::from_millis(1));
        assert!(b.is_up());
        b.tick(&poller, t0 + REPLY_TIMEOUT);
        let st = b.status();
        assert_eq!((st.connected, st.dropped, st.queued_bytes), (false, 3, 0));
        // A node that only listens notices a stopped Redis too: PING.
        drop((sub, publ));
        let (poller, mut b, mut sub, _publ, t0) = bridge_up(1 << 20);
        assert_eq!(b.next_wake(), Some(t0 + PING_IDLE));
        b.tick(&poller, t0 + PING_IDLE);
        let n = sub.read(&mut buf).unwrap();
        assert!(buf[..n].ends_with(b"PING\r\n"));
        b.tick(&poller, t0 + PING_IDLE + REPLY_TIMEOUT);
        assert!(!b.is_up());
    }
}
