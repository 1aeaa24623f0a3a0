//! The application's side of the server: the [`Handler`] trait it
//! implements and the [`Context`] through which it acts.
//!
//! The server owns every connection; a handler only ever holds [`ConnId`]s.
//! A callback is handed the event's data and a [`Context`], and nothing of
//! the loop is borrowed besides: the context acts on any connection at once.
//! What would call the handler again (a connection it kills, one it
//! activates) is settled when the callback has returned, so callbacks never
//! nest.

use std::net::SocketAddr;
use std::time::Duration;

use crate::proto::connection::{Message, SendError, SharedFrame};
use crate::proto::http::{Request, Response};

use super::core::Core;
use super::slab::ConnId;
use super::stats::Stats;
use super::Config;

/// The handler's answer to an upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upgrade {
    /// Switch protocols.
    Accept {
        /// The subprotocol chosen among the client's offers, if any.
        protocol: Option<String>,
        /// When set, no frame is read until [`Context::activate`] is called,
        /// and [`Handler::on_open`] waits for it too.
        delayed: bool,
    },
    /// Refuse with this response.
    Reject(Response),
}

impl Upgrade {
    /// Accept, with no subprotocol, active at once.
    pub fn accept() -> Upgrade {
        Upgrade::Accept {
            protocol: None,
            delayed: false,
        }
    }

    /// Accept with the given subprotocol (which must be one the client
    /// offered; another is left out of the reply with a warning).
    pub fn with_protocol(protocol: &str) -> Upgrade {
        Upgrade::Accept {
            protocol: Some(protocol.to_string()),
            delayed: false,
        }
    }

    /// The same acceptance, but delayed until [`Context::activate`].
    pub fn delayed(self) -> Upgrade {
        match self {
            Upgrade::Accept { protocol, .. } => Upgrade::Accept {
                protocol,
                delayed: true,
            },
            reject => reject,
        }
    }

    /// Refuse with a bare status.
    pub fn reject(status: u16) -> Upgrade {
        Upgrade::Reject(Response::status(status))
    }
}

/// A handle on a timer set with [`Context::set_timer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerId(pub(crate) ConnId);

/// What a handler may do, handed to every callback.
pub struct Context<'a> {
    pub(crate) core: &'a mut Core,
}

impl Context<'_> {
    /// Sends a message to one connection.
    pub fn send(&mut self, conn: ConnId, msg: Message<'_>) -> Result<(), SendError> {
        self.core.send(conn, msg)
    }

    /// Sends a text message to one connection.
    pub fn send_text(&mut self, conn: ConnId, text: &str) -> Result<(), SendError> {
        self.send(conn, Message::Text(text))
    }

    /// Sends a binary message to one connection.
    pub fn send_binary(&mut self, conn: ConnId, data: &[u8]) -> Result<(), SendError> {
        self.send(conn, Message::Binary(data))
    }

    /// Encodes a message once for [`Context::send_prepared`].
    pub fn prepare(&self, msg: Message<'_>) -> SharedFrame {
        SharedFrame::new(msg)
    }

    /// Sends a prepared frame to one connection.
    pub fn send_prepared(&mut self, conn: ConnId, frame: &SharedFrame) -> Result<(), SendError> {
        self.core.send_shared(conn, frame)
    }

    /// Sends a message to every open connection, encoding it once. Returns
    /// how many connections it was given to. Consecutive broadcasts are
    /// written to each member together, once the current event is handled
    /// or before anything else is sent.
    pub fn broadcast(&mut self, msg: Message<'_>) -> usize {
        self.core.broadcast(msg.opcode(), msg.as_bytes())
    }

    /// Subscribes `conn` to `topic` (any string; topics exist while they
    /// have members). It receives what is published to `topic` from now
    /// on, in order with everything else it is sent. `Ok(false)` if it
    /// already was a member; [`SendError::NotOpen`] for an unknown
    /// connection. A closed connection leaves all its topics.
    pub fn subscribe(&mut self, conn: ConnId, topic: &str) -> Result<bool, SendError> {
        self.core.subscribe(conn, topic)
    }

    /// Unsubscribes `conn` from `topic`; it still gets what was published
    /// before. `Ok(false)` if it was not a member.
    pub fn unsubscribe(&mut self, conn: ConnId, topic: &str) -> Result<bool, SendError> {
        self.core.unsubscribe(conn, topic)
    }

    /// Sends a message to the members of `topic`, encoding it once; its
    /// cost depends on that topic's members only. Returns how many members
    /// the topic has (0 for a topic nobody is subscribed to); one that is
    /// closing is counted but no longer sent to. As with
    /// [`Context::broadcast`], consecutive publications are written to each
    /// member together, and every member receives messages in the order
    /// they were published or sent.
    ///
    /// With a Redis bridge attached (`Server::set_redis`, feature `redis`)
    /// the message is also queued for the other nodes.
    pub fn publish(&mut self, topic: &str, msg: Message<'_>) -> usize {
        #[cfg(feature = "redis")]
        if let Some(bridge) = self.core.bridge.as_deref_mut() {
            bridge.publish(topic, msg.opcode(), msg.as_bytes());
        }
        self.core.publish(topic, msg.opcode(), msg.as_bytes())
    }

    /// The Redis bridge's state, `None` without a bridge.
    #[cfg(feature = "redis")]
    pub fn redis_status(&self) -> Option<crate::cluster::RedisStatus> {
        self.core.bridge.as_deref().map(|b| b.status())
    }

    /// How many members `topic` has.
    pub fn subscribers(&self, topic: &str) -> usize {
        let topics = &self.core.topics;
        topics.find(topic).map_or(0, |t| topics.members(t).len())
    }

    /// How many topics have members.
    pub fn topic_count(&self) -> usize {
        self.core.topics.len()
    }

    /// The topics `conn` is subscribed to.
    pub fn topics_of(&self, conn: ConnId) -> impl Iterator<Item = &str> {
        self.core.topics.topics_of(conn)
    }

    /// Sends a ping with `payload` (at most 125 bytes).
    pub fn ping(&mut self, conn: ConnId, payload: &[u8]) -> Result<(), SendError> {
        self.core.ping(conn, payload)
    }

    /// Starts the closing handshake: sends a close frame and waits for the
    /// peer's, at most the close timeout. [`Handler::on_close`] follows.
    pub fn close(&mut self, conn: ConnId, code: u16, reason: &str) -> Result<(), SendError> {
        self.core.close(conn, code, reason)
    }

    /// Drops the TCP connection at once. [`Handler::on_close`] follows with
    /// code 1006 if the connection was upgraded.
    pub fn kill(&mut self, conn: ConnId) -> Result<(), SendError> {
        self.core.kill(conn)
    }

    /// Activates a connection accepted with [`Upgrade::delayed`]:
    /// [`Handler::on_open`] follows and frames start to be read.
    pub fn activate(&mut self, conn: ConnId) -> Result<(), SendError> {
        self.core.activate(conn)
    }

    /// Calls [`Handler::on_timer`] with `token` after `after`.
    pub fn set_timer(&mut self, after: Duration, token: u64) -> TimerId {
        self.core.set_timer(after, token)
    }

    /// Cancels a timer; `false` if it already fired or was cancelled.
    pub fn cancel_timer(&mut self, timer: TimerId) -> bool {
        self.core.cancel_timer(timer)
    }

    /// The peer's address.
    pub fn peer_addr(&self, conn: ConnId) -> Option<SocketAddr> {
        self.core.peer_addr(conn)
    }

    /// Whether messages may be sent to `conn`: open, or accepted with
    /// [`Upgrade::delayed`] and not yet activated.
    pub fn can_send(&self, conn: ConnId) -> bool {
        self.core.slots.get(conn).is_some_and(|s| s.conn.can_send())
    }

    /// Whether `conn` is open for messages.
    pub fn is_open(&self, conn: ConnId) -> bool {
        self.core.is_open(conn)
    }

    /// Bytes queued for `conn` that its socket has not taken yet.
    pub fn backlog(&self, conn: ConnId) -> Option<usize> {
        self.core.backlog(conn)
    }

    /// How many connections are open for messages.
    pub fn open_connections(&self) -> usize {
        self.core.open_connections()
    }

    /// The server's counters (connections, messages, bytes, refusals,
    /// close codes), e.g. for a metrics page.
    pub fn stats(&self) -> &Stats {
        &self.core.stats
    }

    /// Bytes queued for all connections that their sockets have not taken
    /// yet. It walks every connection: for reports, not per message.
    pub fn total_backlog(&self) -> usize {
        self.core.total_backlog()
    }

    /// Begins a graceful shutdown, as [`crate::StopHandle::stop`] does.
    pub fn stop(&mut self) {
        self.core.request_stop();
    }

    /// The server's configuration.
    pub fn config(&self) -> &Config {
        &self.core.config
    }
}

/// The application: decides on upgrades and reacts to connections,
/// messages and timers. Every method but [`Handler::on_message`] has a
/// default.
pub trait Handler {
    /// A valid upgrade request reached the WebSocket path, or a path below
    /// it (`PATH/NAME`; origin and protocol version already checked).
    /// Choose a subprotocol among
    /// [`crate::proto::handshake::offered_protocols`], delay, or reject.
    /// The default accepts the WebSocket path itself and answers `404`
    /// below it.
    fn on_upgrade(&mut self, ctx: &mut Context<'_>, conn: ConnId, req: &Request) -> Upgrade {
        let _ = conn;
        if req.path() == ctx.config().path {
            Upgrade::accept()
        } else {
            Upgrade::reject(404)
        }
    }

    /// A request for any other path. The default answers `404`.
    fn on_http(&mut self, req: &Request) -> Response {
        let _ = req;
        Response::status(404)
    }

    /// A request for any other path, with a view of the server (its
    /// [`Context::stats`], its topics). The default is
    /// [`Handler::on_http`]; implement one or the other.
    fn on_http_with_context(&mut self, ctx: &mut Context<'_>, req: &Request) -> Response {
        let _ = ctx;
        self.on_http(req)
    }

    /// The connection is open: messages may be sent and will be received.
    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        let _ = (ctx, conn);
    }

    /// A complete, valid message arrived.
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: Message<'_>);

    /// The connection is closed: `code` is the one of the close frame that
    /// began the closing handshake (the peer's if it closed first, with its
    /// reason, 1005 if its frame had no code; ours if we did, or the one we
    /// failed the connection with), or 1006 if the TCP connection ended
    /// without a completed closing handshake.
    /// Called once for every upgraded connection. The id is stale afterwards.
    fn on_close(&mut self, ctx: &mut Context<'_>, conn: ConnId, code: u16, reason: &str) {
        let _ = (ctx, conn, code, reason);
    }

    /// A timer set with [`Context::set_timer`] fired.
    fn on_timer(&mut self, ctx: &mut Context<'_>, token: u64) {
        let _ = (ctx, token);
    }

    /// A reload was asked for ([`ReloadHandle::reload`](crate::ReloadHandle),
    /// SIGHUP through [`reload_on_sighup`](crate::reload_on_sighup)) and the
    /// server did its own part (the TLS pair): reload what the handler
    /// keeps. Called on the loop, at the end of the pass that saw the ask.
    fn on_reload(&mut self, ctx: &mut Context<'_>) {
        let _ = ctx;
    }

    /// The graceful shutdown begins ([`StopHandle::stop`](crate::StopHandle),
    /// SIGTERM through [`stop_on_signals`](crate::stop_on_signals)): called
    /// once, before the close frames go out; connections are still open.
    fn on_shutdown(&mut self, ctx: &mut Context<'_>) {
        let _ = ctx;
    }
}
