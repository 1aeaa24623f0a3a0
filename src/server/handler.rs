//! The application's side of the server: the [`Handler`] trait it
//! implements and the [`Context`] through which it acts.
//!
//! The server owns every connection; a handler only ever holds [`ConnId`]s.
//! A callback is handed the event's data and a [`Context`], and nothing of
//! the loop is borrowed besides: the context acts on any connection at once.
//! What would call the handler again (a connection it kills, one it
//! activates) is settled when the callback has returned, so callbacks never
//! nest.

use std::any::Any;
use std::net::SocketAddr;
use std::time::Duration;

use crate::proto::close::CloseCode;
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

    /// [`Context::prepare`] for a frame kept to be sent later (a history):
    /// when the server takes permessage-deflate, the frame's compressed
    /// form is made now too, once, so that sending it later costs no
    /// compression.
    pub fn prepare_kept(&mut self, msg: Message<'_>) -> SharedFrame {
        let frame = SharedFrame::new(msg);
        if self.core.settings.deflate {
            frame.compress_now(&mut self.core.codec);
        }
        frame
    }

    /// Sends a prepared frame to one connection.
    pub fn send_prepared(&mut self, conn: ConnId, frame: &SharedFrame) -> Result<(), SendError> {
        self.core.send_shared(conn, frame)
    }

    /// Sends a prepared frame to one connection as fast as its socket takes
    /// it, and no faster: queued at once while the connection's backlog is
    /// under [`Config::max_backlog`], else kept (as a pointer to the one
    /// encoding, not a copy) until the socket has taken enough. So a
    /// connection is never sent more than `max_backlog` plus one frame this
    /// way before it has read what came before, and never closed for it;
    /// one that does not read holds pointers only (its idle timeout ends it
    /// as any other). With permessage-deflate, the frame is compressed once
    /// for every connection it is sent to. For replaying a log to a
    /// newcomer (see [`super::History`]).
    ///
    /// Until every paced frame has been queued, whatever else `conn` is
    /// sent (broadcasts, publications, [`Context::send`]) waits behind
    /// them, in order, and counts against its backlog: past `max_backlog`
    /// of that, it is closed with 1008 as any slow consumer is.
    pub fn send_paced(&mut self, conn: ConnId, frame: &SharedFrame) -> Result<(), SendError> {
        self.core.send_paced(conn, frame)
    }

    /// How many frames sent with [`Context::send_paced`] still wait for
    /// `conn`'s socket to drain (0 for an unknown connection).
    pub fn paced_waiting(&self, conn: ConnId) -> usize {
        self.core.paced_waiting(conn)
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
        self.core
            .source_published(topic, msg.opcode(), msg.as_bytes());
        self.core.publish(topic, msg.opcode(), msg.as_bytes())
    }

    /// [`Context::publish`] to this server's members of `topic` only, never
    /// to other nodes through a Redis bridge: for a variant of a message
    /// that the other nodes make for themselves (the chat's `rookery.v1`
    /// envelopes). Returns how many members the topic has.
    pub fn publish_local(&mut self, topic: &str, msg: Message<'_>) -> usize {
        self.core.publish(topic, msg.opcode(), msg.as_bytes())
    }

    /// Sends a text message to the members of `topic`, as
    /// [`Context::publish`] does. Returns how many members the topic has.
    ///
    /// ```
    /// use rookery::{ConnId, Context, Handler, Message};
    ///
    /// /// Every text goes to everyone in the topic `all`.
    /// struct Relay;
    ///
    /// impl Handler for Relay {
    ///     fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
    ///         let _ = ctx.subscribe(conn, "all");
    ///         ctx.publish_text("all", "someone joined");
    ///     }
    ///
    ///     fn on_message(&mut self, ctx: &mut Context<'_>, _conn: ConnId, msg: Message<'_>) {
    ///         if let Message::Text(text) = msg {
    ///             ctx.publish_text("all", text);
    ///         }
    ///     }
    /// }
    /// ```
    pub fn publish_text(&mut self, topic: &str, text: &str) -> usize {
        self.publish(topic, Message::Text(text))
    }

    /// Sends a binary message to the members of `topic`, as
    /// [`Context::publish`] does. Returns how many members the topic has.
    ///
    /// ```
    /// # use rookery::Context;
    /// fn share_reading(ctx: &mut Context<'_>, reading: [u8; 4]) {
    ///     ctx.publish_binary("sensors", &reading);
    /// }
    /// ```
    pub fn publish_binary(&mut self, topic: &str, data: &[u8]) -> usize {
        self.publish(topic, Message::Binary(data))
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
    /// A code that may not be sent ([`CloseCode::is_valid_on_wire`]) is
    /// refused with [`SendError::InvalidCloseCode`].
    pub fn close(&mut self, conn: ConnId, code: CloseCode, reason: &str) -> Result<(), SendError> {
        self.core.close(conn, code, reason)
    }

    /// Drops the TCP connection at once. [`Handler::on_close`] follows with
    /// [`CloseCode::ABNORMAL`] if the connection was upgraded.
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

    /// The loop's clock: the instant read once for this pass, which every
    /// connection and timer of the pass sees.
    pub fn now(&self) -> std::time::Instant {
        self.core.now
    }

    /// Payload bytes the loop's compressor has been handed so far
    /// (permessage-deflate; always 0 without the feature `deflate`): what
    /// compressing has cost, e.g. to check that a message sent to many is
    /// compressed once.
    pub fn bytes_compressed(&self) -> u64 {
        self.core.codec.bytes_compressed()
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

    /// Attaches `value` to `conn`, in place of any value it had (of any
    /// type): the handler's own state for that connection, e.g. a user
    /// name or the room it joined, kept without a map of its own. It may be
    /// set from [`Handler::on_upgrade`] on; it is dropped when the
    /// connection is gone, after [`Handler::on_close`] (which can still
    /// read it). [`SendError::NotOpen`] for an unknown or stale connection.
    ///
    /// One value per connection: for several, attach a struct. The value
    /// is boxed, one allocation; a connection without one costs nothing.
    ///
    /// ```
    /// use rookery::{CloseCode, ConnId, Context, Handler, Message, Request, Upgrade};
    ///
    /// /// Greets by the name given in the path (`/chat?name=Ada`).
    /// struct Greeter;
    ///
    /// /// What the handler keeps for each connection.
    /// struct Member {
    ///     name: String,
    ///     messages: u32,
    /// }
    ///
    /// impl Handler for Greeter {
    ///     fn on_upgrade(&mut self, ctx: &mut Context<'_>, conn: ConnId, req: &Request) -> Upgrade {
    ///         let name = req.target().split_once("name=").map_or("anonymous", |(_, n)| n);
    ///         let member = Member { name: name.to_string(), messages: 0 };
    ///         let _ = ctx.set_user_data(conn, member);
    ///         Upgrade::accept()
    ///     }
    ///
    ///     fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, _msg: Message<'_>) {
    ///         let Some(member) = ctx.user_data_mut::<Member>(conn) else {
    ///             return;
    ///         };
    ///         member.messages += 1;
    ///         let reply = format!("{}: message {}", member.name, member.messages);
    ///         let _ = ctx.send_text(conn, &reply);
    ///     }
    ///
    ///     fn on_close(&mut self, ctx: &mut Context<'_>, conn: ConnId, _code: CloseCode, _reason: &str) {
    ///         if let Some(member) = ctx.user_data::<Member>(conn) {
    ///             println!("{} left after {} messages", member.name, member.messages);
    ///         }
    ///     }
    /// }
    /// ```
    pub fn set_user_data<T: Any>(&mut self, conn: ConnId, value: T) -> Result<(), SendError> {
        if self.core.slots.get(conn).is_none() {
            return Err(SendError::NotOpen);
        }
        self.core.user_data.set(conn, Box::new(value));
        Ok(())
    }

    /// The value attached to `conn` with [`Context::set_user_data`], if it
    /// has one of type `T`.
    ///
    /// ```
    /// # use rookery::{ConnId, Context};
    /// fn name_of<'c>(ctx: &'c Context<'_>, conn: ConnId) -> &'c str {
    ///     ctx.user_data::<String>(conn).map_or("?", String::as_str)
    /// }
    /// ```
    pub fn user_data<T: Any>(&self, conn: ConnId) -> Option<&T> {
        self.core.user_data.get(conn)
    }

    /// The value attached to `conn`, mutably, if it has one of type `T`.
    /// It borrows the context: copy out what a send needs first (see
    /// [`Context::set_user_data`]).
    ///
    /// ```
    /// # use rookery::{ConnId, Context};
    /// fn count_message(ctx: &mut Context<'_>, conn: ConnId) {
    ///     if let Some(count) = ctx.user_data_mut::<u64>(conn) {
    ///         *count += 1;
    ///     }
    /// }
    /// ```
    pub fn user_data_mut<T: Any>(&mut self, conn: ConnId) -> Option<&mut T> {
        self.core.user_data.get_mut(conn)
    }

    /// Takes the value attached to `conn` away, if it has one of type `T`
    /// (a value of another type stays attached).
    ///
    /// ```
    /// # use rookery::{ConnId, Context};
    /// fn forget_name(ctx: &mut Context<'_>, conn: ConnId) -> Option<String> {
    ///     ctx.take_user_data::<String>(conn)
    /// }
    /// ```
    pub fn take_user_data<T: Any>(&mut self, conn: ConnId) -> Option<T> {
        self.core.user_data.take(conn)
    }
}

/// The application: decides on upgrades and reacts to connections,
/// messages and timers. Every method but [`Handler::on_message`] has a
/// default.
pub trait Handler {
    /// Called once, when the server first runs ([`crate::Server::run`] or
    /// the first [`crate::Server::run_once`]), before it waits for
    /// anything: the place to set the handler's first timers, which need a
    /// [`Context`] that no connection has brought yet. Not called again
    /// after a stop. The default does nothing.
    ///
    /// ```
    /// use std::time::Duration;
    /// use rookery::{ConnId, Context, Handler, Message};
    ///
    /// /// Tells every client the time since start, each second.
    /// struct Clock {
    ///     seconds: u64,
    /// }
    ///
    /// impl Handler for Clock {
    ///     fn on_start(&mut self, ctx: &mut Context<'_>) {
    ///         ctx.set_timer(Duration::from_secs(1), 0);
    ///     }
    ///
    ///     fn on_timer(&mut self, ctx: &mut Context<'_>, _token: u64) {
    ///         self.seconds += 1;
    ///         ctx.broadcast(Message::Text(&format!("{} s", self.seconds)));
    ///         ctx.set_timer(Duration::from_secs(1), 0);
    ///     }
    ///
    ///     fn on_message(&mut self, _ctx: &mut Context<'_>, _conn: ConnId, _msg: Message<'_>) {}
    /// }
    /// ```
    fn on_start(&mut self, ctx: &mut Context<'_>) {
        let _ = ctx;
    }

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
    /// reason, [`CloseCode::NO_STATUS`] if its frame had no code; ours if we
    /// did, or the one we failed the connection with), or
    /// [`CloseCode::ABNORMAL`] if the TCP connection ended without a
    /// completed closing handshake.
    /// Called once for every upgraded connection. The id is stale afterwards.
    fn on_close(&mut self, ctx: &mut Context<'_>, conn: ConnId, code: CloseCode, reason: &str) {
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

    /// Something from the cluster (feature `redis`): a message numbered by
    /// it ([`crate::Context::publish_numbered`], from this node or
    /// another), or the answer to a read of a topic's log
    /// ([`crate::Context::read_log`]). The default delivers each message
    /// to this node's members of its topic ([`Context::publish_local`]);
    /// a handler that keeps a topic's history and offsets (the chat) keeps
    /// them here, in the cluster's order.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    fn on_cluster(&mut self, ctx: &mut Context<'_>, event: super::numbered::ClusterEvent) {
        if let super::numbered::ClusterEvent::Message(m) = event {
            ctx.publish_local(&m.topic, m.message());
        }
    }

    /// The graceful shutdown begins ([`StopHandle::stop`](crate::StopHandle),
    /// SIGTERM through [`stop_on_signals`](crate::stop_on_signals)): called
    /// once, before the close frames go out; connections are still open.
    fn on_shutdown(&mut self, ctx: &mut Context<'_>) {
        let _ = ctx;
    }
}
