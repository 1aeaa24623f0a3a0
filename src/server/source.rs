//! Another source of readiness in the loop, beside the listener and the
//! connections: sockets of its own registered in the loop's poller under
//! keys of its own, a deadline of its own, and a hook on every local
//! publication. The server owns at most one, knows it only through
//! [`Source`], and hands it the poller, the pass's clock and a way to
//! publish locally. The Redis bridge (`crate::cluster`) is one, and the only
//! one so far: the facility is compiled in with the feature `redis` only,
//! which keeps the default binary as small as without it.

use std::any::Any;
use std::time::Instant;

use super::core::Core;
use super::numbered::ClusterEvent;
use super::poller::Poller;
use crate::proto::frame::OpCode;

/// Publishes a message to the local members of a topic (and never back to
/// the source): `(topic, opcode, payload)`.
pub(crate) type Deliver<'a> = &'a mut dyn FnMut(&str, OpCode, &[u8]);

/// A source of readiness and messages that the loop drives.
pub(crate) trait Source: Any {
    /// Whether poller key `key` is one of this source's.
    fn owns(&self, key: usize) -> bool;

    /// Readiness of one of its keys, at `now`.
    fn ready(&mut self, poller: &Poller, now: Instant, key: usize);

    /// Once a pass, after the events: its deadlines and queues.
    fn tick(&mut self, poller: &Poller, now: Instant);

    /// Hands what it has for the local members to `deliver` (after each
    /// [`Source::ready`] and [`Source::tick`]).
    fn deliver(&mut self, deliver: Deliver<'_>);

    /// What it has for the handler ([`crate::Handler::on_cluster`]),
    /// taken after each [`Source::ready`] and [`Source::tick`].
    fn take_events(&mut self) -> Vec<ClusterEvent> {
        Vec::new()
    }

    /// When it next needs [`Source::tick`], if ever.
    fn next_wake(&self) -> Option<Instant>;

    /// A local publication ([`crate::Context::publish`]).
    fn published(&mut self, topic: &str, opcode: OpCode, payload: &[u8]);

    /// Leaves the poller (before the source is dropped or replaced).
    fn detach(&mut self, poller: &Poller);

    /// Itself, for the owner of the concrete type to look at its state.
    fn as_any(&self) -> &dyn Any;

    /// Itself, to change.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl Core {
    /// Attaches `source`, detaching the one it replaces.
    pub(crate) fn set_source(&mut self, source: Box<dyn Source>) {
        if let Some(mut old) = self.source.replace(source) {
            old.detach(&self.poller);
        }
    }

    /// The attached source, if it is a `T`.
    pub(crate) fn source_as<T: Source>(&self) -> Option<&T> {
        self.source.as_deref()?.as_any().downcast_ref()
    }

    /// The attached source, if it is a `T`, to change.
    pub(crate) fn source_as_mut<T: Source>(&mut self) -> Option<&mut T> {
        let source: &mut dyn Any = self.source.as_deref_mut()?.as_any_mut();
        source.downcast_mut()
    }

    /// What the source has for the handler.
    pub(crate) fn take_source_events(&mut self) -> Vec<ClusterEvent> {
        self.source
            .as_deref_mut()
            .map_or_else(Vec::new, Source::take_events)
    }

    /// Whether poller key `key` belongs to the attached source.
    pub(crate) fn source_owns(&self, key: usize) -> bool {
        self.source.as_deref().is_some_and(|s| s.owns(key))
    }

    /// Readiness of a source's key; what it delivers is published locally.
    pub(crate) fn source_ready(&mut self, key: usize) {
        let Some(mut source) = self.source.take() else {
            return;
        };
        source.ready(&self.poller, self.now, key);
        self.publish_local(&mut *source);
        self.source = Some(source);
    }

    /// The source's deadlines and queues, once per pass.
    pub(crate) fn source_tick(&mut self) {
        let Some(mut source) = self.source.take() else {
            return;
        };
        source.tick(&self.poller, self.now);
        self.publish_local(&mut *source);
        self.source = Some(source);
    }

    /// Tells the source of a local publication.
    pub(crate) fn source_published(&mut self, topic: &str, opcode: OpCode, payload: &[u8]) {
        if let Some(source) = self.source.as_deref_mut() {
            source.published(topic, opcode, payload);
        }
    }

    /// Publishes what `source` delivers to the local members only.
    fn publish_local(&mut self, source: &mut dyn Source) {
        source.deliver(&mut |topic, opcode, payload| {
            self.publish(topic, opcode, payload);
        });
    }
}
