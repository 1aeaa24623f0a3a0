//! The chat service: the broadcaster of the classic Restbed and RESTinio
//! WebSocket examples, with rooms.
//!
//! An upgrade on the WebSocket path joins the default room, one on
//! `PATH/NAME` joins room `NAME` (1 to 64 bytes of `A-Z a-z 0-9 . _ -`, but
//! not `.` or `..`; else `404`); a room is a topic of the server
//! ([`Context::publish`]). Each new connection is sent the welcome text,
//! then the room's history (the last `history` messages, if kept, encoded
//! once and paced by the newcomer's socket: [`crate::server::History`]),
//! and only then joins its room; every text message goes to every member
//! of the sender's room, sender included, in arrival order, encoded once;
//! binary messages are refused with 1003 unless relaying them is allowed.
//! Which rooms exist is `rooms`' business: a room with history but no
//! members is forgotten after a while, or to make way for a new one, and an
//! upgrade that would create a room past `max_rooms` when none can make way
//! is refused with `503` (never one for the default room).
//!
//! A client that offers the `rookery.v1` subprotocol gets every message as
//! a JSON envelope with its room's epoch and its offset, and may come back
//! with `?since=EPOCH:OFFSET` to get exactly what it missed, or be told of
//! a gap (`envelope`; SPEC §12). Each message's envelope is made once, for
//! every such member and the room's history; plain members get the same
//! frames as ever. Pings, pongs,
//! idle timeouts and the
//! closing handshake are the server's business, configured in
//! [`crate::Config`]. `GET /` serves the chat page.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use log::{debug, info, trace};

use crate::proto::handshake::offered_protocols;
use crate::proto::http::{Request, Response};
use crate::server::Since;
use crate::{CloseCode, ConnId, Context, Handler, Message, TimerId, Upgrade};

#[cfg(feature = "redis")]
mod cluster;
mod envelope;
mod rooms;

use self::rooms::Rooms;

/// The most characters of a client's text that one log line shows.
const LOG_EXCERPT: usize = 200;

/// The chat page, with `{{WS_PATH}}` where the WebSocket path goes.
const PAGE_TEMPLATE: &str = include_str!("chat_page.html");

/// The longest room name, in bytes.
pub const MAX_ROOM_NAME: usize = 64;

/// The default for [`Chat::with_rooms`]' `max_rooms`.
pub const DEFAULT_MAX_ROOMS: usize = 1024;

/// The default for [`Chat::with_room_ttl`]: an hour.
pub const DEFAULT_ROOM_TTL: Duration = Duration::from_secs(3600);

/// The token of the timer that forgets idle rooms.
const SWEEP_TOKEN: u64 = 0x726f_6f6d; // "room"

/// The welcome text of [`ChatOptions::default`].
pub const DEFAULT_WELCOME: &str = "Welcome to Rookery Chat!";

/// What a [`Chat`] is made with ([`Chat::new`]); the default is the
/// `rookery` command's chat.
///
/// ```
/// use rookery::chat::ChatOptions;
///
/// let options = ChatOptions { page: false, ..ChatOptions::default() };
/// assert_eq!(options.welcome, "Welcome to Rookery Chat!");
/// assert_eq!(options.path, "/chat");
/// assert!(!options.allow_binary);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatOptions {
    /// The first message each new member is sent.
    pub welcome: String,
    /// Relay binary messages (else a member that sends one is closed with
    /// 1003).
    pub allow_binary: bool,
    /// Serve the chat page at `GET /`.
    pub page: bool,
    /// The WebSocket path, the server's [`crate::Config::path`]: the page
    /// connects to it, and rooms are below it (`PATH/NAME`).
    pub path: String,
}

impl Default for ChatOptions {
    fn default() -> ChatOptions {
        ChatOptions {
            welcome: DEFAULT_WELCOME.to_string(),
            allow_binary: false,
            page: true,
            path: crate::Config::default().path,
        }
    }
}

/// The chat broadcaster.
#[derive(Debug)]
pub struct Chat {
    welcome: String,
    allow_binary: bool,
    /// The rendered page, or `None` when it is turned off.
    page: Option<Vec<u8>>,
    /// The WebSocket path: rooms are below it.
    ws_path: String,
    /// The rooms, their members' counts and their histories; a room's name
    /// is shared with `member_of`, so that a member costs no allocation of
    /// its own.
    rooms: Rooms,
    /// The timer that forgets idle rooms, while one is armed.
    sweep: Option<TimerId>,
    /// Each open member's room.
    member_of: HashMap<ConnId, Arc<str>>,
    /// Whether `GET /metrics` serves the metrics.
    metrics: bool,
    /// The upgrade being accepted (`on_open` follows `on_upgrade` at once).
    joining: Option<Joining>,
    /// Resumes answered: with what was missed, and with a gap.
    resumes: Resumes,
    /// Members waiting for their room's log from the cluster.
    #[cfg(feature = "redis")]
    parked: cluster::Parked,
}

/// What an accepted upgrade asked for.
#[derive(Debug)]
struct Joining {
    conn: ConnId,
    room: String,
    /// It speaks `rookery.v1`.
    v1: bool,
    /// The position it resumes from, if any (`rookery.v1` only).
    since: Option<Since>,
}

/// Counts of resumes, by result.
#[derive(Debug, Default, Clone, Copy)]
struct Resumes {
    recovered: u64,
    gap: u64,
}

impl Chat {
    /// A chat made with `options`; rooms and history are set with
    /// [`Chat::with_rooms`], metrics with [`Chat::with_metrics`]. Give the
    /// server the same path ([`crate::Config::path`] and
    /// [`ChatOptions::path`]).
    ///
    /// ```no_run
    /// use rookery::chat::{Chat, ChatOptions};
    /// use rookery::{Config, Server};
    ///
    /// let chat = Chat::new(ChatOptions {
    ///     welcome: "Hello from the board".into(),
    ///     allow_binary: true,
    ///     path: "/ws".into(),
    ///     ..ChatOptions::default()
    /// })
    /// .with_rooms(16, 20);
    /// let config = Config { path: "/ws".into(), ..Config::default() };
    /// let mut server = Server::bind("127.0.0.1:1984", config, chat)?;
    /// server.run()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(options: ChatOptions) -> Chat {
        let ChatOptions {
            welcome,
            allow_binary,
            page,
            path,
        } = options;
        Chat {
            welcome,
            allow_binary,
            page: page.then(|| render_page(&path).into_bytes()),
            ws_path: path,
            rooms: Rooms::new(DEFAULT_MAX_ROOMS, 0, DEFAULT_ROOM_TTL),
            sweep: None,
            member_of: HashMap::new(),
            metrics: false,
            joining: None,
            resumes: Resumes::default(),
            #[cfg(feature = "redis")]
            parked: cluster::Parked::default(),
        }
    }

    /// The same chat with at most `max_rooms` rooms at once, each keeping
    /// its last `history` messages for newcomers (0: none). An upgrade that
    /// would create one room more forgets the least recently used room
    /// without members, or, if every room has members, is refused with
    /// `503`; the default room is not counted and never refused. History
    /// keeps each message twice, as its plain frame and as its `rookery.v1`
    /// envelope (at most 6 bytes per byte of text, for a text of control
    /// characters, plus about 70), so it costs at most `(max_rooms + 1) ×
    /// history × 8 × max_message` bytes, twice that with permessage-deflate
    /// (each frame's compressed variant is kept beside it once made).
    pub fn with_rooms(mut self, max_rooms: usize, history: usize) -> Chat {
        self.rooms = Rooms::new(max_rooms, history, self.rooms.ttl());
        self
    }

    /// The same chat forgetting a room with history but no members after
    /// `ttl` without members (zero: only when a new room needs its place).
    /// Call after [`Chat::with_rooms`]. The default is an hour.
    pub fn with_room_ttl(mut self, ttl: Duration) -> Chat {
        self.rooms = Rooms::new(self.rooms.max_rooms(), self.rooms.history_capacity(), ttl);
        self
    }

    /// The same chat serving Prometheus metrics at `GET /metrics`.
    pub fn with_metrics(mut self, on: bool) -> Chat {
        self.metrics = on;
        self
    }

    /// How many rooms exist (with members or history).
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// The room an upgrade on `path` asks for (`""`: the default room), or
    /// `None` if `path` names none.
    fn room_for<'p>(&self, path: &'p str) -> Option<&'p str> {
        let rest = path.strip_prefix(self.ws_path.as_str())?;
        if rest.is_empty() {
            return Some("");
        }
        let name = rest.strip_prefix('/')?;
        valid_room_name(name).then_some(name)
    }

    /// Relays a member's message to its room: to its members here and
    /// now, or, with a cluster that can be reached, through the cluster,
    /// which numbers it and hands it back to every node, this one too
    /// (`cluster`). Returns the number of recipients here (0 when it went
    /// to the cluster).
    fn relay(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: Message<'_>) -> usize {
        let Some(name) = self.member_of.get(&conn).cloned() else {
            return 0;
        };
        #[cfg(feature = "redis")]
        if let Some(reachable) = cluster::reachable(ctx) {
            return self.relay_clustered(ctx, &name, msg, reachable);
        }
        self.deliver(ctx, &name, msg, Delivery::Everywhere)
    }

    /// Delivers a message to room `name`: plain to its plain members and
    /// as an envelope with its offset to its `rookery.v1` ones (as `how`
    /// says), and keeps both in the room's history. Returns the number of
    /// recipients.
    fn deliver(
        &mut self,
        ctx: &mut Context<'_>,
        name: &str,
        msg: Message<'_>,
        how: Delivery,
    ) -> usize {
        let mut sent = match how {
            Delivery::Everywhere => ctx.publish(name, msg),
            Delivery::Here => ctx.publish_local(name, msg),
            Delivery::Keep => 0,
        };
        let Some(room) = self.rooms.get_mut(name) else {
            return sent;
        };
        let v1_members = match how {
            Delivery::Keep => 0,
            _ => ctx.subscribers(&room.v1_topic),
        };
        let kept = room.history.capacity() > 0;
        let offset = room.history.next_offset();
        if v1_members > 0 || kept {
            // Made once, for every v1 member and the history.
            let envelope = envelope::message(room.history.epoch(), offset, msg);
            if v1_members > 0 {
                // Each node makes its own members' envelopes.
                sent += ctx.publish_local(&room.v1_topic, Message::Text(&envelope));
            }
            if kept {
                // Compressed now only where v1 members come: a room of
                // plain members pays no compression for envelopes nobody
                // may read (they are compressed once, on first use, if so).
                let frame = if room.v1_seen {
                    ctx.prepare_kept(Message::Text(&envelope))
                } else {
                    ctx.prepare(Message::Text(&envelope))
                };
                room.envelopes.push_frame(frame);
            }
        }
        if kept {
            // Encoded, and with permessage-deflate compressed, once here:
            // a newcomer's replay then costs no more than sending the same
            // bytes live.
            room.history.push_frame(ctx.prepare_kept(msg));
        } else {
            room.history.pass();
            room.envelopes.pass();
        }
        sent
    }

    /// Sends a new member, already counted in room `name`, its welcome
    /// and the room's history, and subscribes it: a plain member its plain
    /// history; a `rookery.v1` member what it missed and `recovered`, or a
    /// `gap` and the room's history.
    fn serve(
        &mut self,
        ctx: &mut Context<'_>,
        conn: ConnId,
        name: &str,
        v1: bool,
        since: Option<Since>,
    ) {
        let Some(room) = self.rooms.get_mut(name) else {
            return;
        };
        if !v1 {
            let _ = ctx.send_text(conn, &self.welcome);
            // Paced: queued as the newcomer's socket takes it, never more
            // than the backlog limit and one message at a time; what the
            // room says meanwhile waits behind it.
            let _ = room.history.replay(ctx, conn);
            let _ = ctx.subscribe(conn, name);
            return;
        }
        room.v1_seen = true;
        let (epoch, last) = (room.history.epoch(), room.history.last_offset());
        let welcome = envelope::welcome(&self.welcome, name, epoch, last);
        let _ = ctx.send_text(conn, &welcome);
        // Paced as a plain member's history is; the envelopes sent after
        // wait behind it, as live messages do.
        let resumed = since.map(|since| room.envelopes.replay_after(ctx, conn, &since));
        match resumed {
            Some(Ok(Some(missed))) => {
                self.resumes.recovered += 1;
                debug!("{conn}: resumed in '{name}' with {missed} missed message(s)");
                let _ = ctx.send_text(conn, &envelope::recovered(epoch, last, missed));
            }
            Some(Ok(None)) => {
                self.resumes.gap += 1;
                debug!("{conn}: cannot resume in '{name}': gap");
                let _ = ctx.send_text(conn, &envelope::gap(epoch, last));
                let _ = room.envelopes.replay(ctx, conn);
            }
            Some(Err(_)) => {}
            None => {
                let _ = room.envelopes.replay(ctx, conn);
            }
        }
        let _ = ctx.subscribe(conn, &room.v1_topic);
    }

    /// The server's metrics ([`render_metrics`]) and the chat's own.
    fn render_metrics(&self, ctx: &Context<'_>) -> String {
        let mut out = render_metrics(ctx, self.rooms.len());
        let name = "rookery_resumes_total";
        let _ = write!(
            out,
            "# HELP {name} rookery.v1 resumes (?since=), by result.\n# TYPE {name} counter\n\
             {name}{{result=\"recovered\"}} {}\n{name}{{result=\"gap\"}} {}\n",
            self.resumes.recovered, self.resumes.gap
        );
        out
    }

    /// The answer to a plain HTTP request: the page at `/`, else 404.
    fn answer(&self, req: &Request) -> Response {
        match (&self.page, req.path(), req.method()) {
            (Some(page), "/", "GET" | "HEAD") => {
                Response::ok("text/html; charset=utf-8", page.clone())
                    .with_header("Cache-Control", "no-cache")
                    .with_header("X-Content-Type-Options", "nosniff")
            }
            (Some(_), "/", _) => Response::status(405).with_header("Allow", "GET, HEAD"),
            _ => Response::status(404),
        }
    }
}

/// Where a message goes besides its room's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// To the room's members here and on other nodes (without a cluster,
    /// or through a bridge that does not number: [`Context::publish`]).
    Everywhere,
    /// To the room's members here only.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Here,
    /// To nobody: the history only (members had it already).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Keep,
}

/// Whether `name` may name a room: 1 to 64 bytes of `A-Z a-z 0-9 . _ -`,
/// but not `.` or `..` (which a browser or a proxy would take for the path
/// itself or its parent).
pub fn valid_room_name(name: &str) -> bool {
    (1..=MAX_ROOM_NAME).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The chat page for `ws_path`, quoted for the script string it lands in.
pub fn render_page(ws_path: &str) -> String {
    let mut quoted = String::with_capacity(ws_path.len());
    for c in ws_path.chars() {
        match c {
            '"' | '\\' | '<' | '>' | '&' | '\'' => quoted.push_str(&format!("\\u{:04x}", c as u32)),
            c => quoted.push(c),
        }
    }
    PAGE_TEMPLATE.replace("{{WS_PATH}}", &quoted)
}

/// The metrics in the Prometheus text format (version 0.0.4).
pub fn render_metrics(ctx: &Context<'_>, rooms: usize) -> String {
    let stats = ctx.stats();
    let mut out = String::with_capacity(2048);
    let mut one = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    };
    one(
        "rookery_connections_open",
        "gauge",
        "Connections open for messages.",
        ctx.open_connections() as u64,
    );
    one(
        "rookery_connections_accepted_total",
        "counter",
        "TCP connections accepted.",
        stats.connections_accepted,
    );
    one(
        "rookery_messages_received_total",
        "counter",
        "Data messages received.",
        stats.messages_received,
    );
    one(
        "rookery_messages_sent_total",
        "counter",
        "Data messages sent, one per recipient.",
        stats.messages_sent,
    );
    one(
        "rookery_bytes_received_total",
        "counter",
        "Bytes read from sockets.",
        stats.bytes_received,
    );
    one(
        "rookery_bytes_sent_total",
        "counter",
        "Bytes written to sockets.",
        stats.bytes_sent,
    );
    one(
        "rookery_slow_consumer_closes_total",
        "counter",
        "Connections closed (1008) for a backlog over --max-backlog.",
        stats.slow_consumer_closes,
    );
    one(
        "rookery_rooms",
        "gauge",
        "Chat rooms (with members or history).",
        rooms as u64,
    );
    one(
        "rookery_backlog_bytes",
        "gauge",
        "Bytes queued for all clients, not yet taken by their sockets.",
        ctx.total_backlog() as u64,
    );
    one(
        "rookery_compressed_bytes_total",
        "counter",
        "Message bytes handed to the compressor (permessage-deflate).",
        ctx.bytes_compressed(),
    );
    #[cfg(feature = "redis")]
    if let Some(redis) = ctx.redis_status() {
        one(
            "rookery_redis_connected",
            "gauge",
            "1 while both Redis connections are up and subscribed.",
            u64::from(redis.connected),
        );
        one(
            "rookery_redis_dropped_total",
            "counter",
            "Messages for Redis dropped: the queue (--max-backlog) was full, or the connection was given up before Redis acknowledged them.",
            redis.dropped,
        );
        one(
            "rookery_redis_backlog_bytes",
            "gauge",
            "Bytes of messages waiting for Redis or for its acknowledgement.",
            redis.queued_bytes as u64,
        );
        one(
            "rookery_redis_oversized_total",
            "counter",
            "Messages from Redis dropped because they were larger than --max-message.",
            redis.oversized,
        );
    }
    let mut labelled = |name: &str,
                        help: &str,
                        label: &str,
                        rows: &mut dyn Iterator<Item = (Option<u16>, u64)>| {
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} counter\n");
        for (key, n) in rows {
            let value = key.map_or_else(|| "other".to_string(), |k| k.to_string());
            let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {n}", escape_label(&value));
        }
    };
    labelled(
        "rookery_handshakes_rejected_total",
        "Requests and upgrades refused, by HTTP status.",
        "status",
        &mut stats.handshakes_rejected(),
    );
    labelled(
        "rookery_closes_total",
        "Upgraded connections closed, by close code (1006: no closing handshake).",
        "code",
        &mut stats
            .closes()
            .map(|(code, n)| (code.map(CloseCode::get), n)),
    );
    out
}

/// A label value as the text format wants it: `\`, `"` and newlines
/// escaped.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

impl Handler for Chat {
    fn on_http_with_context(&mut self, ctx: &mut Context<'_>, req: &Request) -> Response {
        if self.metrics && req.path() == "/metrics" {
            let response = match req.method() {
                "GET" | "HEAD" => Response::ok(
                    "text/plain; version=0.0.4; charset=utf-8",
                    self.render_metrics(ctx).into_bytes(),
                )
                .with_header("Cache-Control", "no-cache"),
                _ => Response::status(405).with_header("Allow", "GET, HEAD"),
            };
            trace!(
                "HTTP {} '/metrics': {}",
                excerpt(req.method(), 16).0,
                response.status
            );
            return response;
        }
        self.on_http(req)
    }

    fn on_upgrade(&mut self, _ctx: &mut Context<'_>, conn: ConnId, req: &Request) -> Upgrade {
        let Some(name) = self.room_for(req.path()) else {
            debug!("{conn}: no such room, answering 404");
            return Upgrade::reject(404);
        };
        let since = match envelope::since(req.target()) {
            Ok(since) => since,
            Err(why) => {
                debug!("{conn}: bad 'since' ({why}), answering 400");
                return Upgrade::reject(400);
            }
        };
        if !self.rooms.admit(name) {
            debug!(
                "{conn}: {} rooms already, all with members: answering 503",
                self.rooms.len()
            );
            return Upgrade::reject(503);
        }
        let v1 = offered_protocols(req).any(|p| p == envelope::PROTOCOL);
        self.joining = Some(Joining {
            conn,
            room: name.to_string(),
            v1,
            // A plain member has no offsets to resume from.
            since: since.filter(|_| v1),
        });
        if v1 {
            Upgrade::with_protocol(envelope::PROTOCOL)
        } else {
            Upgrade::accept()
        }
    }

    fn on_http(&mut self, req: &Request) -> Response {
        let response = self.answer(req);
        if log::log_enabled!(log::Level::Trace) {
            let (path, cut) = excerpt(req.path(), LOG_EXCERPT);
            let more = if cut { "…" } else { "" };
            trace!(
                "HTTP {} '{path}{more}': {}",
                excerpt(req.method(), 16).0,
                response.status
            );
        }
        response
    }

    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        match ctx.peer_addr(conn) {
            Some(addr) => info!("Opened connection to {conn} ({addr})"),
            None => info!("Opened connection to {conn}"),
        }
        // The welcome is queued before the connection can be part of any
        // broadcast, so it is always the first message a member sees; then
        // the room's history, and only then does it join the room's topic:
        // every message published to the room before is in the history,
        // every one after reaches it live, none both.
        let (name, v1, since) = match self.joining.take() {
            Some(j) if j.conn == conn => (j.room, j.v1, j.since),
            _ => (String::new(), false, None),
        };
        let (name, _) = self.rooms.join(&name);
        self.member_of.insert(conn, Arc::clone(&name));
        // With a cluster, a room this node does not know well enough waits
        // for the cluster's log first (nothing is sent meanwhile).
        #[cfg(feature = "redis")]
        let Some(since) = self.park(ctx, conn, &name, v1, since) else {
            return;
        };
        self.serve(ctx, conn, &name, v1, since);
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: Message<'_>) {
        match msg {
            Message::Text(text) => {
                // The text is the client's: at debug level only, escaped
                // and cut, so that it can neither flood the log nor forge
                // lines or terminal escapes in it.
                if log::log_enabled!(log::Level::Debug) {
                    match excerpt(text, LOG_EXCERPT) {
                        (shown, false) => debug!("Received message '{shown}' from {conn}"),
                        (shown, true) => debug!(
                            "Received message '{shown}…' from {conn} (cut: {} bytes in all)",
                            text.len()
                        ),
                    }
                }
                let members = self.relay(ctx, conn, msg);
                trace!(
                    "{conn}: text of {} bytes broadcast, recipients: {members}",
                    text.len()
                );
            }
            Message::Binary(data) if self.allow_binary => {
                debug!("Received {} binary bytes from {conn}", data.len());
                let members = self.relay(ctx, conn, msg);
                trace!(
                    "{conn}: binary of {} bytes broadcast, recipients: {members}",
                    data.len()
                );
            }
            Message::Binary(_) => {
                info!("Refusing binary message from {conn}");
                let _ = ctx.close(
                    conn,
                    CloseCode::UNSUPPORTED,
                    "binary messages are not supported",
                );
            }
        }
    }

    fn on_close(&mut self, ctx: &mut Context<'_>, conn: ConnId, code: CloseCode, _reason: &str) {
        info!("Closed connection to {conn} (code {})", code.get());
        // (The server takes it out of its topic itself.)
        let left = self.member_of.remove(&conn);
        // A burst of members must not keep its map's table (about 400 KiB
        // for 10,000) resident once it has gone.
        crate::server::topics::release_spare(&mut self.member_of);
        if let Some(name) = left {
            let idle = self.rooms.leave(&name, ctx.now());
            if idle && self.sweep.is_none() && !self.rooms.ttl().is_zero() {
                self.sweep = Some(ctx.set_timer(self.rooms.ttl(), SWEEP_TOKEN));
            }
        }
    }

    #[cfg(feature = "redis")]
    fn on_cluster(&mut self, ctx: &mut Context<'_>, event: crate::server::ClusterEvent) {
        self.cluster_event(ctx, event);
    }

    fn on_timer(&mut self, ctx: &mut Context<'_>, token: u64) {
        if token != SWEEP_TOKEN {
            return;
        }
        self.sweep = None;
        let now = ctx.now();
        if let Some(due) = self.rooms.expire(now) {
            // The wheel's ticks are 10 ms: a timer never fires early, but
            // one due in less than a tick is no use.
            let wait = due
                .saturating_duration_since(now)
                .max(Duration::from_millis(10));
            self.sweep = Some(ctx.set_timer(wait, SWEEP_TOKEN));
        }
    }
}

/// `text` as a log line may show it: escaped (see [`crate::log_text`]:
/// controls, bidirectional and other format characters, line separators)
/// and at most `limit` characters long, never cutting an escape in two. The
/// flag tells whether something was left off.
fn excerpt(text: &str, limit: usize) -> (String, bool) {
    crate::log_text::excerpt_for_log(text, limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_gets_the_path_quoted_for_its_script() {
        let page = render_page("/chat");
        assert!(page.contains("\"/chat\""));
        assert!(!page.contains("{{WS_PATH}}"));
        let hostile = render_page("/a\"</script>");
        assert!(!hostile.contains("\"</script>"));
        assert!(hostile.contains("\\u0022\\u003c/script\\u003e"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        assert_eq!(escape_label("404"), "404");
    }

    #[test]
    fn room_names_and_paths() {
        let chat = Chat::new(ChatOptions {
            page: false,
            ..ChatOptions::default()
        });
        assert_eq!(chat.room_for("/chat"), Some(""));
        assert_eq!(chat.room_for("/chat/kitchen"), Some("kitchen"));
        assert_eq!(chat.room_for("/chat/a.b_c-D9"), Some("a.b_c-D9"));
        assert_eq!(
            chat.room_for(&format!("/chat/{}", "x".repeat(64)))
                .map(str::len),
            Some(64)
        );
        for bad in [
            "/chat/",
            "/chat//",
            "/chat/a/b",
            "/chat/a%20b",
            "/chat/é",
            "/chatx",
            "/",
            "/chat/.",
            "/chat/..",
        ] {
            assert_eq!(chat.room_for(bad), None, "{bad}");
        }
        assert_eq!(chat.room_for(&format!("/chat/{}", "x".repeat(65))), None);
        // Dots are allowed, only the two names of the path itself are not.
        assert_eq!(chat.room_for("/chat/..."), Some("..."));
        assert_eq!(chat.room_for("/chat/.a"), Some(".a"));
    }

    #[test]
    fn log_excerpts_escape_control_characters_and_stop_at_the_limit() {
        assert_eq!(excerpt("hello", 200), ("hello".to_string(), false));
        assert_eq!(
            excerpt(
                "a\nb\r\tc\\d\u{1b}[31m\u{7f}\u{9b}\u{202e}\u{2028}\u{200f}\u{61c}é",
                200
            ),
            (
                "a\\nb\\r\\tc\\\\d\\x1b[31m\\x7f\\u{9b}\\u{202e}\\u{2028}\\u{200f}\\u{61c}é"
                    .to_string(),
                false
            )
        );
        assert_eq!(excerpt("abcdef", 4), ("abcd".to_string(), true));
        assert_eq!(excerpt("abcd", 4), ("abcd".to_string(), false));
        // An escape is never cut in two: "ab\x1b" would be 6 characters.
        assert_eq!(excerpt("ab\u{1b}", 5), ("ab".to_string(), true));
        let (long, cut) = excerpt(&"\n".repeat(100_000), 200);
        assert!(cut);
        assert_eq!(long, "\\n".repeat(100));
        let (wide, cut) = excerpt(&"é".repeat(1000), 200);
        assert!(cut && wide.chars().count() == 200);
    }
}
