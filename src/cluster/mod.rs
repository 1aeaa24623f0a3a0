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
//! bytes and later ones are dropped and counted.

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
/// The envelope's first byte (and version).
const ENVELOPE_V1: u8 = 1;
/// Envelope flag: the payload is binary.
const FLAG_BINARY: u8 = 1;

/// What is wrong with a `--redis` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    /// It does not start with `redis://`.
    Scheme,
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
            UrlError::Scheme => f.write_str("expected redis://[:PASSWORD@]HOST[:PORT][/DB]"),
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
    /// `AUTH` password, if any.
    pub password: Option<String>,
    /// `SELECT` database, if any.
    pub db: Option<u32>,
    /// Channels are `PREFIX:room:TOPIC`.
    pub prefix: String,
    /// Bytes of publications kept while Redis is away.
    pub max_backlog: usize,
    /// The largest message accepted from Redis.
    pub max_message: usize,
}

impl RedisConfig {
    /// Reads `redis://[:PASSWORD@]HOST[:PORT][/DB]` (resolving the host
    /// now, with the system resolver), with prefix `rookery`, a 1 MiB queue
    /// and 1 MiB messages.
    pub fn from_url(url: &str) -> Result<RedisConfig, UrlError> {
        let rest = url.strip_prefix("redis://").ok_or(UrlError::Scheme)?;
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((auth, rest)) => (Some(auth), rest),
            None => (None, rest),
        };
        // `:PASSWORD` (Redis has no user before 6; `user:pw` keeps the pw).
        let password = auth
            .map(|a| a.split_once(':').map_or(a, |(_, pw)| pw).to_string())
            .filter(|p| !p.is_empty());
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
    /// Publications dropped because the queue was full.
    pub dropped: u64,
    /// Bytes of publications waiting for Redis.
    pub queued_bytes: usize,
}

/// What a sent command's reply is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Auth,
    Select,
    Subscribe,
    Publish,
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
            LinkError::Refused(e) => write!(f, "Redis answered: {e}"),
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
    queued: usize,
    pub dropped: u64,
    backoff: Duration,
    retry_at: Option<Instant>,
    /// When the current try or the oldest owed reply began.
    waiting_since: Option<Instant>,
    /// When the queue may go out (after resubscribing).
    resume_at: Option<Instant>,
    /// Whether a try has ever succeeded (for the log's level).
    was_up: bool,
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
        let decoder = Decoder::new(cfg.max_message.saturating_add(1024));
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
            dropped: 0,
            backoff: BACKOFF_MIN,
            retry_at: Some(now),
            waiting_since: None,
            resume_at: None,
            was_up: false,
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
            queued_bytes: self.queued,
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
        if self.queued + cmd.len() > self.cfg.max_backlog {
            self.dropped += 1;
            return;
        }
        self.queued += cmd.len();
        self.queue.push_back(cmd);
    }

    /// When the bridge needs the loop to wake.
    pub(crate) fn next_wake(&self) -> Option<Instant> {
        let owed = self.waiting_since.map(|t| t + REPLY_TIMEOUT);
        [self.retry_at, owed, self.resume_at]
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
        if let Err(e) = self.pump(poller, now) {
            self.fail(poller, now, &e);
        }
    }

    fn connect(&mut self, poller: &Poller, now: Instant) {
        debug!("redis: connecting to {}", self.cfg.addr);
        let mut handshake = Vec::new();
        let mut expect = VecDeque::new();
        if let Some(pw) = &self.cfg.password {
            encode_command(&mut handshake, &[b"AUTH", pw.as_bytes()]);
            expect.push_back(Expect::Auth);
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

    fn fail(&mut self, poller: &Poller, now: Instant, e: &LinkError) {
        if self.was_up || self.backoff == BACKOFF_MIN {
            warn!(
                "redis {}: {e}; retrying in {:?}",
                self.cfg.addr, self.backoff
            );
        } else {
            info!(
                "redis {}: {e}; retrying in {:?}",
                self.cfg.addr, self.backoff
            );
        }
        self.was_up = false;
        for link in [self.sub.take(), self.publ.take()].into_iter().flatten() {
            let _ = poller.delete(&link.stream);
        }
        self.waiting_since = None;
        self.resume_at = None;
        self.retry_at = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
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
        let max_in = decoder.max_reply();
        let Some(link) = self.link(key) else {
            return Ok(());
        };
        // Write what is owed, then read what came.
        flush(link)?;
        let mut buf = [0u8; 16 * 1024];
        let mut replies = Vec::new();
        loop {
            match link.stream.read(&mut buf) {
                Ok(0) => return Err(LinkError::Closed),
                Ok(n) => {
                    link.input.extend_from_slice(&buf[..n]);
                    let mut used = 0;
                    while let Some((reply, n)) = decoder
                        .decode(&link.input[used..])
                        .map_err(LinkError::Protocol)?
                    {
                        used += n;
                        replies.push(reply);
                    }
                    link.input.drain(..used);
                    if link.input.len() > max_in {
                        return Err(LinkError::Protocol(resp::RespError::TooLarge));
                    }
                    if n < buf.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(LinkError::Io(e)),
            }
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
        let Some(link) = self.link(key) else {
            return Ok(());
        };
        if let Reply::Error(e) = &reply {
            return Err(LinkError::Refused(String::from_utf8_lossy(e).into_owned()));
        }
        // A pub/sub message on the subscribed link, once subscribed.
        if key == SUB_KEY && link.ready {
            if let Some(msg) = pmessage(&reply, prefix_len) {
                if let Some(incoming) = open_envelope(msg, node) {
                    self.incoming.push(incoming);
                }
                return Ok(());
            }
        }
        let expected = link.expect.pop_front().ok_or(LinkError::Unexpected)?;
        let fits = match (expected, &reply) {
            (Expect::Auth | Expect::Select, Reply::Simple(_)) => true,
            (Expect::Publish, Reply::Integer(_)) => true,
            (Expect::Subscribe, Reply::Array(Some(items))) => {
                matches!(items.first(), Some(Reply::Bulk(Some(k))) if k == b"psubscribe")
            }
            _ => false,
        };
        if !fits {
            return Err(LinkError::Unexpected);
        }
        if !link.ready && link.expect.is_empty() {
            link.ready = true;
        }
        if !was_up && self.is_up() {
            info!("redis {}: connected and subscribed", self.cfg.addr);
            self.was_up = true;
            self.backoff = BACKOFF_MIN;
            if !self.queue.is_empty() {
                self.resume_at = Some(now + RESUME_GRACE);
            }
        }
        self.waiting_since = self.owed().then_some(now);
        Ok(())
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
                while link.out.len() < OUT_CHUNK {
                    let Some(cmd) = self.queue.pop_front() else {
                        break;
                    };
                    self.queued -= cmd.len();
                    link.out.extend_from_slice(&cmd);
                    link.expect.push_back(Expect::Publish);
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

/// The envelope of a `pmessage` push (`[pmessage, pattern, channel, data]`)
/// whose channel has our prefix.
fn pmessage(reply: &Reply, prefix_len: usize) -> Option<&[u8]> {
    let Reply::Array(Some(items)) = reply else {
        return None;
    };
    match items.as_slice() {
        [Reply::Bulk(Some(kind)), _, Reply::Bulk(Some(channel)), Reply::Bulk(Some(data))]
            if kind == b"pmessage" && channel.len() >= prefix_len =>
        {
            Some(data)
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
    }

    #[test]
    fn envelopes_round_trip_and_our_own_are_dropped() {
        let cfg = RedisConfig::from_url("redis://127.0.0.1:1").unwrap();
        let mut b = Bridge::new(cfg, Instant::now());
        b.publish("kitchen", OpCode::Binary, &[0, 255]);
        let cmd = b.queue.pop_front().unwrap();
        let (reply, _) = Decoder::new(1 << 20).decode(&cmd).unwrap().unwrap();
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
}
