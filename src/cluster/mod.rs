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

mod api;
mod config;
mod envelope;
mod failures;
mod link;
mod numbering;
pub mod resp;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::io::{self, Read};
use std::time::{Duration, Instant};

use crate::server::poller::{Event, PollMode, Poller};
use crate::server::ClusterEvent;
use crate::Message;
use log::{debug, info, warn};

use crate::log_text::escape_for_log;
use crate::proto::frame::OpCode;
pub use config::{RedisConfig, UrlError};
use envelope::{
    node_id, open_envelope, pmessage, Incoming, Push, ENVELOPE_MAX, ENVELOPE_V1, FLAG_BINARY,
};
use failures::{Failures, Say};
use link::{decode_into, flush, open, reset_on_close, unacknowledged, Expect, Link, LinkError};
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
/// A numbered publication written and not acknowledged for this long (no
/// acknowledgement at all meanwhile) is delivered here without a number
/// ([`ClusterEvent::Returned`]), and so are the next ones until Redis
/// answers again: a slow or stopped Redis delays local chat this long at
/// most.
const NUMBERING_WAIT: Duration = Duration::from_secs(1);
/// A subscribed connection silent this long is sent a PING, so that a
/// stopped Redis is noticed (within this and [`REPLY_TIMEOUT`]) even by a
/// node that publishes nothing.
const PING_IDLE: Duration = Duration::from_secs(10);

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
    /// Connected (past the grace after connecting, while the queue waits)
    /// and Redis numbers publications in time: messages of a cluster's
    /// topics go through it ([`crate::Context::publish_numbered`]).
    pub numbering: bool,
}

/// The bridge between a server's topics and Redis.
pub(crate) struct Bridge {
    cfg: RedisConfig,
    node: u64,
    pattern: Vec<u8>,
    channel_prefix: Vec<u8>,
    decoder: Decoder,
    /// The publishing link's: the answer to a read of a topic's log is
    /// one array of up to `history` messages.
    log_decoder: Decoder,
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
    /// Reads of topics' logs asked for, not yet written: (token, topic).
    reads: VecDeque<(u64, String)>,
    /// Reads written, in order, their answers owed.
    reads_owed: VecDeque<(u64, String)>,
    /// What the handler is to be told.
    events: Vec<ClusterEvent>,
    /// The clock of the last tick.
    ticked: Instant,
    /// The `seq` of the last numbered publication.
    seq: u64,
    /// Numbered publications delivered here after all.
    taken_back: numbering::TakenBack,
    /// When the last acknowledgement came, or commands were written to
    /// an idle link; `None` with nothing in flight.
    progress_at: Option<Instant>,
    /// Publications in flight went unacknowledged for [`NUMBERING_WAIT`]:
    /// numbered ones are delivered here until Redis answers again.
    stalled: bool,
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
        // A log's message is 3 elements (offset, flags, payload) and at
        // most `max_message` and 64 bytes of framing.
        let log_decoder = decoder.clone().with_arrays(
            cfg.history.saturating_mul(3).saturating_add(2),
            cfg.history
                .saturating_mul(cfg.max_message.saturating_add(64))
                .saturating_add(64 * 1024),
        );
        debug!("redis: node id {node:016x}");
        Bridge {
            cfg,
            node,
            pattern,
            channel_prefix,
            decoder,
            log_decoder,
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
            reads: VecDeque::new(),
            reads_owed: VecDeque::new(),
            events: Vec::new(),
            ticked: now,
            seq: 0,
            taken_back: numbering::TakenBack::default(),
            progress_at: None,
            stalled: false,
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
            // Not in the grace after connecting either: the queue waits
            // then, and a numbered message would wait with it.
            numbering: self.is_up() && !self.stalled && self.resume_at.is_none(),
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
        self.enqueue(cmd);
    }

    /// A local publication to be numbered by the cluster (see
    /// [`numbering`]): queued as [`Bridge::publish`] queues, and handed
    /// back to every node, this one too unless `delivered` (its members
    /// have had it), as a [`ClusterEvent::Message`].
    pub(crate) fn publish_numbered(&mut self, topic: &str, msg: Message<'_>, delivered: bool) {
        let payload = msg.as_bytes();
        if payload.len() > self.cfg.max_message {
            self.dropped += 1;
            return;
        }
        let mut channel = self.channel_prefix.clone();
        channel.extend_from_slice(topic.as_bytes());
        let binary = matches!(msg, Message::Binary(_));
        self.seq += 1;
        let Some(cmd) = numbering::publish_command(
            &self.cfg.prefix,
            &channel,
            (self.node, self.seq),
            topic,
            binary,
            delivered,
            payload,
            self.cfg.history,
        ) else {
            debug!("redis: topic name over 255 bytes is not bridged");
            return;
        };
        self.enqueue(cmd);
    }

    /// Queues a command for the publishing link, or drops and counts it
    /// past `max_backlog`.
    fn enqueue(&mut self, cmd: Vec<u8>) {
        if !self.queue.is_empty() && self.queued + cmd.len() > self.cfg.max_backlog {
            self.dropped += 1;
            return;
        }
        self.queued += cmd.len();
        self.queue.push_back(cmd);
    }

    /// Asks for `topic`'s log (its epoch, latest offset and the messages
    /// kept), answered by a [`ClusterEvent::Log`] with `token`. `false`
    /// (nothing asked) while Redis is away.
    pub(crate) fn read_log(&mut self, topic: &str, token: u64) -> bool {
        if !self.is_up() {
            return false;
        }
        self.reads.push_back((token, topic.to_string()));
        true
    }

    /// When the bridge needs the loop to wake.
    pub(crate) fn next_wake(&self) -> Option<Instant> {
        let owed = self.waiting_since.map(|t| t + REPLY_TIMEOUT);
        let ping = self
            .sub
            .as_ref()
            .filter(|l| l.ready && l.expect.is_empty())
            .map(|l| l.heard + PING_IDLE);
        // Reads asked for after this pass's tick go out at the next, at once.
        let read = (!self.reads.is_empty()).then_some(self.ticked);
        let stall = self
            .progress_at
            .filter(|_| !self.stalled)
            .map(|t| t + NUMBERING_WAIT);
        [self.retry_at, owed, self.resume_at, ping, read, stall]
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
        self.ticked = now;
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
        if !self.stalled && self.progress_at.is_some_and(|t| t + NUMBERING_WAIT <= now) {
            debug!("redis: no acknowledgement for {NUMBERING_WAIT:?}: delivering here unnumbered");
            self.stalled = true;
            self.take_back();
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
                    looked: 0,
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
        // What was not numbered yet is delivered here now (what goes out
        // again later is skipped when it comes back).
        self.take_back();
        self.progress_at = None;
        self.stalled = false;
        let (requeued, lost) = self.give_back(unwritten);
        // Reads owed or not yet written are answered: nothing.
        for (token, topic) in self.reads_owed.drain(..).chain(self.reads.drain(..)) {
            self.events.push(ClusterEvent::Log {
                token,
                topic,
                log: None,
            });
        }
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

    /// Hands the handler this node's numbered publications not numbered
    /// yet, to deliver here ([`ClusterEvent::Returned`]).
    fn take_back(&mut self) {
        let cmds = self.inflight.iter().chain(self.queue.iter());
        for u in self.taken_back.take_back(cmds) {
            self.events.push(ClusterEvent::Returned {
                topic: u.topic,
                binary: u.binary,
                payload: u.payload,
            });
        }
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
        let decoder = if key == PUB_KEY {
            self.log_decoder.clone()
        } else {
            self.decoder.clone()
        };
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
        // Whether the socket has nothing more for now.
        let mut drained = false;
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
                    // The subscribed link decodes as it reads, so that an
                    // oversized message is skipped, never buffered; the
                    // publishing one once a pass, after reading (a log of
                    // many messages is looked at once per pass, not per
                    // read: 16 times for 1 MiB, not 64).
                    if key == SUB_KEY {
                        decode_into(&decoder, link, &mut replies)?;
                    }
                    if n < want {
                        drained = true;
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    drained = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(LinkError::Io(e)),
            }
        }
        // With more to read next pass (the socket, level-triggered, is
        // ready again then), an unfinished reply is looked at again only
        // once its bytes have doubled: a log of 1 MiB costs five looks,
        // not sixteen.
        let more = !drained && rustix::io::ioctl_fionread(&link.stream).is_ok_and(|n| n > 0);
        if key != SUB_KEY && (!more || link.input.len() >= 2 * link.looked) {
            decode_into(&decoder, link, &mut replies)?;
            link.looked = link.input.len();
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
                Some(Push::Data(msg)) if msg.first() == Some(&numbering::ENVELOPE_V2) => {
                    let taken_back = &self.taken_back;
                    match numbering::open_numbered(msg, node, |seq| taken_back.contains(seq)) {
                        Some(m) if m.payload.len() > max_message => {
                            self.oversized += 1;
                            debug!("redis: dropped a message over --max-message from Redis");
                        }
                        Some(m) => self.events.push(ClusterEvent::Message(m)),
                        None => {}
                    }
                    return Ok(());
                }
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
            (Expect::Read, Reply::Array(_)) => true,
            _ => false,
        };
        if !fits {
            return Err(LinkError::Unexpected);
        }
        if !link.ready && link.expect.is_empty() {
            link.ready = true;
        }
        if expected == Expect::Read {
            if let Some((token, topic)) = self.reads_owed.pop_front() {
                let log = numbering::parse_log(reply);
                if log.is_none() {
                    warn!(
                        "redis: the answer to a read of '{}' is not a log",
                        escape_for_log(&topic)
                    );
                }
                self.events.push(ClusterEvent::Log { token, topic, log });
            }
        }
        if expected == Expect::Publish {
            // Redis took the oldest command in flight.
            if let Some(cmd) = self.inflight.pop_front() {
                self.inflight_bytes -= cmd.len();
            }
            self.progress_at = (!self.inflight.is_empty()).then_some(now);
            self.stalled = false;
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
        if self.is_up() {
            if let Some(link) = self.publ.as_mut() {
                if !self.reads.is_empty() && link.expect.is_empty() {
                    self.waiting_since = Some(now);
                }
                for (token, topic) in self.reads.drain(..) {
                    let cmd = numbering::read_command(&self.cfg.prefix, &topic, self.cfg.history);
                    link.out.extend_from_slice(&cmd);
                    link.expect.push_back(Expect::Read);
                    self.reads_owed.push_back((token, topic));
                }
            }
        }
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
                    self.progress_at.get_or_insert(now);
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
