//! The values a connection is driven with: the server's [`Settings`], a
//! [`Message`], a [`SharedFrame`] encoded once for many connections, and
//! the [`SendError`] of an action that could not be taken.

use std::cell::OnceCell;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use crate::proto::deflate::{self, Codec};
use crate::proto::frame::{encode_frame, OpCode};
use crate::proto::rate::Limits;

/// What a connection needs to know of the server's configuration. One value
/// serves every connection; it is passed to the calls that need it, never
/// copied into a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The path WebSocket upgrades are accepted on.
    pub path: String,
    /// Origins allowed to upgrade; empty allows all, `*` allows any.
    pub allowed_origins: Vec<String>,
    /// The largest message accepted, in bytes.
    pub max_message: u64,
    /// Past this many queued bytes a peer that is behind is closed with 1008.
    pub max_backlog: usize,
    /// A connection that has not sent a complete request head this long
    /// after it was accepted is dropped (zero: never).
    pub handshake_timeout: Duration,
    /// An open connection that sent nothing this long is closed with 1001
    /// (zero: never).
    pub idle_timeout: Duration,
    /// How long a closing connection waits for the peer's close frame and
    /// then for its end of the TCP connection. Zero still means one second:
    /// a half-dead peer must not hold its connection forever.
    pub close_timeout: Duration,
    /// Whether a client's permessage-deflate offer is taken (RFC 7692; only
    /// with feature `deflate`, else no offer ever is).
    pub deflate: bool,
    /// What an open connection may send, in messages and in (inflated)
    /// payload bytes a second; past either it is closed with 1008.
    pub rate_limits: Limits,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            path: "/chat".to_string(),
            allowed_origins: Vec::new(),
            max_message: 1 << 20,
            max_backlog: 1 << 20,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(15),
            close_timeout: Duration::from_secs(5),
            deflate: false,
            rate_limits: Limits::default(),
        }
    }
}

impl Settings {
    pub(super) fn close_wait(&self) -> Duration {
        if self.close_timeout.is_zero() {
            Duration::from_secs(1)
        } else {
            self.close_timeout
        }
    }
}

/// A complete message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message (valid UTF-8).
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl<'a> Message<'a> {
    /// The payload bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        match *self {
            Message::Text(text) => text.as_bytes(),
            Message::Binary(data) => data,
        }
    }

    /// Whether this is a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Message::Text(_))
    }

    /// The frame opcode this message is sent with.
    pub fn opcode(&self) -> OpCode {
        match self {
            Message::Text(_) => OpCode::Text,
            Message::Binary(_) => OpCode::Binary,
        }
    }
}

/// A message encoded once as one unfragmented server frame, to be sent to
/// any number of connections without copying it again; compressed once too,
/// the first time it is sent to a connection that negotiated
/// permessage-deflate.
#[derive(Debug, Clone)]
pub struct SharedFrame(Rc<SharedBytes>);

#[derive(Debug)]
struct SharedBytes {
    plain: Rc<[u8]>,
    /// The compressed frame; `Some(None)` once it is known not to pay.
    deflated: OnceCell<Option<Rc<[u8]>>>,
}

impl SharedFrame {
    /// Encodes `msg`.
    pub fn new(msg: Message<'_>) -> SharedFrame {
        let mut bytes =
            Vec::with_capacity(crate::proto::frame::MAX_SERVER_HEADER + msg.as_bytes().len());
        encode_frame(&mut bytes, msg.opcode(), msg.as_bytes());
        SharedFrame(Rc::new(SharedBytes {
            plain: bytes.into(),
            deflated: OnceCell::new(),
        }))
    }

    /// The encoded frame's length, uncompressed.
    pub fn len(&self) -> usize {
        self.0.plain.len()
    }

    /// Whether the frame is empty (never: a frame has a header).
    pub fn is_empty(&self) -> bool {
        self.0.plain.is_empty()
    }

    /// Makes the compressed variant now, if it is not made yet, rather
    /// than when the first connection that takes it is sent the frame: for
    /// a frame kept to be sent later (a history), so that the cost is paid
    /// when it is kept, not on the path of a newcomer.
    pub fn compress_now(&self, codec: &mut Codec) {
        self.0
            .deflated
            .get_or_init(|| codec.compress_shared(&self.0.plain));
    }

    /// The bytes for a connection that compresses with `window_bits` (0:
    /// it does not).
    pub(super) fn bytes_for(&self, window_bits: u8, codec: &mut Codec) -> &Rc<[u8]> {
        if window_bits != deflate::SHARED_WINDOW_BITS {
            return &self.0.plain;
        }
        self.0
            .deflated
            .get_or_init(|| codec.compress_shared(&self.0.plain))
            .as_ref()
            .unwrap_or(&self.0.plain)
    }
}

/// Why an action on a connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// No such connection, or it is no longer open for messages.
    NotOpen,
    /// The connection is not waiting for activation.
    NotPending,
    /// A close code that may not be sent (RFC 6455 §7.4).
    InvalidCloseCode,
    /// A control payload over 125 bytes.
    ControlTooLong,
    /// The connection is not waiting for an upgrade decision.
    NotDeciding,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::NotOpen => "connection is not open",
            SendError::NotPending => "connection is not waiting for activation",
            SendError::InvalidCloseCode => "close code may not be sent",
            SendError::ControlTooLong => "control payload longer than 125 bytes",
            SendError::NotDeciding => "connection is not waiting for an upgrade decision",
        })
    }
}

impl std::error::Error for SendError {}
