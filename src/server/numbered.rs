//! What a cluster hands the handler ([`crate::Handler::on_cluster`],
//! feature `redis`): messages numbered by the cluster (the same epoch and
//! offset on every node, the same order), and the answers to reads of a
//! topic's log ([`crate::Context::read_log`]). The types are the server's
//! so that the handler trait can name them; the Redis bridge
//! (`crate::cluster`) makes them.

use crate::proto::connection::Message;

use super::history::Epoch;

/// A message published with [`crate::Context::publish_numbered`] on some
/// node, as the cluster numbered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Numbered {
    /// The topic it was published to.
    pub topic: String,
    /// The topic's epoch in the cluster.
    pub epoch: Epoch,
    /// Its offset in the topic (1 for the first of the epoch).
    pub offset: u64,
    /// Whether it is binary (else its payload is UTF-8).
    pub binary: bool,
    /// Its bytes.
    pub payload: Vec<u8>,
}

impl Numbered {
    /// The message itself.
    pub fn message(&self) -> Message<'_> {
        log_message(self.binary, &self.payload)
    }
}

/// A topic's log as the cluster keeps it: its epoch, the offset of its
/// latest message (0: none), and its last messages, oldest first, as
/// `(offset, binary, payload)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicLog {
    /// The topic's epoch in the cluster.
    pub epoch: Epoch,
    /// The offset of its latest message (0: none yet).
    pub last: u64,
    /// The messages kept, oldest first.
    pub entries: Vec<(u64, bool, Vec<u8>)>,
}

impl TopicLog {
    /// Its messages, oldest first, with their offsets.
    pub fn messages(&self) -> impl Iterator<Item = (u64, Message<'_>)> {
        self.entries
            .iter()
            .map(|(offset, binary, payload)| (*offset, log_message(*binary, payload)))
    }
}

/// What the cluster hands the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClusterEvent {
    /// A numbered message (this node's own ones too, unless it delivered
    /// them itself: see [`crate::Context::publish_numbered`]).
    Message(Numbered),
    /// A publication of this node's ([`crate::Context::publish_numbered`])
    /// that the cluster did not number in time (Redis slow, stopped or
    /// lost): deliver it here now, under a count of this node's own; it
    /// does not come back as a [`ClusterEvent::Message`] (other nodes may
    /// still get it numbered, if Redis takes it later).
    Returned {
        /// The topic it was published to.
        topic: String,
        /// Whether it is binary (else its payload is UTF-8).
        binary: bool,
        /// Its bytes.
        payload: Vec<u8>,
    },
    /// The answer to [`crate::Context::read_log`] with this `token`: the
    /// topic's log, or `None` if it could not be read (the connection to
    /// the cluster was lost before the answer came).
    Log {
        /// The token the read was asked with.
        token: u64,
        /// The topic.
        topic: String,
        /// What the cluster holds.
        log: Option<TopicLog>,
    },
}

impl ClusterEvent {
    /// The message a [`ClusterEvent::Returned`] carries.
    pub fn returned_message(binary: bool, payload: &[u8]) -> Message<'_> {
        log_message(binary, payload)
    }
}

/// A payload as a message: text if it is UTF-8 and not marked binary
/// (the bridge checks text as it arrives; anything else is binary).
fn log_message(binary: bool, payload: &[u8]) -> Message<'_> {
    match std::str::from_utf8(payload) {
        Ok(text) if !binary => Message::Text(text),
        _ => Message::Binary(payload),
    }
}
