//! What the bridge offers the server and the handler: its place in the
//! loop ([`Source`]), [`Server::set_redis`], and on [`Context`] its state
//! and the cluster's numbering and logs.

use std::any::Any;
use std::time::Instant;

use super::{Bridge, RedisConfig, RedisStatus};
use crate::proto::frame::OpCode;
use crate::server::poller::Poller;
use crate::server::source::{Deliver, Source};
use crate::server::{ClusterEvent, Context, Handler, Server};
use crate::Message;

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

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn take_events(&mut self) -> Vec<ClusterEvent> {
        std::mem::take(&mut self.events)
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

    /// Publishes `msg` to `topic` through the cluster, which numbers it:
    /// the same epoch and offset on every node, the same order (see
    /// docs/cluster.md). It comes back to every node, this one included,
    /// as a [`ClusterEvent::Message`] for [`Handler::on_cluster`] to
    /// deliver and keep, unless `delivered` (this node's members have had
    /// it already: it was published while Redis was away). Queued while
    /// Redis is away, as [`Context::publish`] is. `false` without a bridge.
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn publish_numbered(&mut self, topic: &str, msg: Message<'_>, delivered: bool) -> bool {
        match self.core.source_as_mut::<Bridge>() {
            Some(bridge) => {
                bridge.publish_numbered(topic, msg, delivered);
                true
            }
            None => false,
        }
    }

    /// Asks the cluster for `topic`'s log (its epoch, its latest offset and
    /// the last messages it keeps, [`RedisConfig::history`]); the answer
    /// comes to [`Handler::on_cluster`] as a [`ClusterEvent::Log`] with
    /// `token`, never waited for in the loop. `false` (nothing asked)
    /// without a bridge or while Redis is away.
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn read_log(&mut self, topic: &str, token: u64) -> bool {
        self.core
            .source_as_mut::<Bridge>()
            .is_some_and(|b| b.read_log(topic, token))
    }
}
