//! One connection's state: its socket, where it is in its life, what it has
//! received but not finished, and what it has yet to send.

use std::net::TcpStream;

use crate::proto::http::HeadReader;
use crate::proto::receiver::Receiver;

use super::outqueue::OutQueue;
use super::timer::Tick;

/// Where a connection is in its life.
#[derive(Debug)]
pub(crate) enum Phase {
    /// Reading the request head. Boxed, like `Pending`, so that the open
    /// phases, where connections spend their lives, stay small.
    Handshake(Box<HeadReader>),
    /// Upgraded, waiting for the handler to activate it. Nothing more is
    /// read meanwhile.
    Pending(Box<Pending>),
    /// Exchanging messages.
    Open,
    /// We sent a close frame and wait for the peer's; its messages are dropped.
    Closing,
    /// Finished: flush what is queued, then half-close and discard input until
    /// the peer closes too (so that unread input never turns our last bytes
    /// into a reset).
    Draining,
}

/// A connection accepted with a delayed activation.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// Frame bytes that arrived with the request.
    pub early: Vec<u8>,
    /// Set by `activate()` until the open is delivered.
    pub activated: bool,
}

/// Poller interest bits.
pub(crate) const READ: u8 = 1;
pub(crate) const WRITE: u8 = 2;

/// A connection in the slab.
#[derive(Debug)]
pub(crate) struct Conn {
    pub stream: TcpStream,
    pub phase: Phase,
    pub rx: Receiver,
    pub out: OutQueue,
    /// The tick at which the peer last sent anything.
    pub last_heard: Tick,
    /// The interest registered with the poller.
    pub interest: u8,
    /// Whether the socket has refused bytes that are still queued: the peer
    /// is behind, and the backlog cap applies to what is sent next.
    pub behind: bool,
    /// Whether our side of the TCP connection has been shut down.
    pub fin_sent: bool,
    /// Whether the handler knows this connection as upgraded, and so must be
    /// told when it closes.
    pub upgraded: bool,
    /// The code of the close frame we sent first, reported to the handler
    /// when the peer answers.
    pub close_code: u16,
    /// Whether this connection was accepted only to be told `503`.
    pub busy_reject: bool,
}

/// Output beyond which reading from a connection pauses, so that a client
/// that sends without reading cannot make us queue without bound.
pub(crate) const READ_PAUSE: usize = 64 * 1024;

impl Conn {
    pub fn new(stream: TcpStream, now: Tick) -> Conn {
        Conn {
            stream,
            phase: Phase::Handshake(Box::default()),
            rx: Receiver::new(),
            out: OutQueue::default(),
            last_heard: now,
            interest: READ,
            behind: false,
            fin_sent: false,
            upgraded: false,
            close_code: 0,
            busy_reject: false,
        }
    }

    /// Whether the WebSocket is usable for sending messages.
    pub fn can_send(&self) -> bool {
        matches!(self.phase, Phase::Open | Phase::Pending(_))
    }

    /// The poller interest this state calls for.
    pub fn wanted_interest(&self, max_backlog: usize) -> u8 {
        let read = match self.phase {
            Phase::Pending(_) => false,
            Phase::Draining => true,
            Phase::Handshake(_) | Phase::Open | Phase::Closing => {
                self.out.len() < READ_PAUSE.min(max_backlog.max(1))
            }
        };
        let write = !self.out.is_empty();
        (if read { READ } else { 0 }) | (if write { WRITE } else { 0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle open connection is this struct and nothing on the heap (its
    /// buffers are freed between messages); keep it within a few hundred
    /// bytes, as the idle-memory figure in docs/performance.md depends on it.
    #[test]
    fn an_idle_connection_stays_small() {
        assert!(
            std::mem::size_of::<Conn>() <= 160,
            "{}",
            std::mem::size_of::<Conn>()
        );
        assert!(std::mem::size_of::<Receiver>() <= 112);
    }
}
