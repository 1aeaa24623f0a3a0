//! What [`Receiver::read`] reports: an [`Event`], where its payload is
//! ([`Payload`]), or the [`ProtocolError`] that fails the connection.

use std::fmt;
use std::ops::Range;

use super::close::CloseCode;
#[cfg(doc)]
use super::Receiver;

/// A violation of RFC 6455 by the client, or of the server's size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A reserved bit was set that no negotiated extension allows.
    ReservedBits,
    /// A reserved opcode.
    UnknownOpcode(u8),
    /// A client frame without the mask bit.
    Unmasked,
    /// A control frame longer than 125 bytes.
    ControlTooLong,
    /// A fragmented control frame.
    ControlFragmented,
    /// A continuation frame with no message in progress.
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is in progress.
    ExpectedContinuation,
    /// A 64-bit length with its most significant bit set.
    InvalidLength,
    /// A close frame with a one-byte payload.
    TruncatedClose,
    /// A close code that may not be sent.
    InvalidCloseCode(CloseCode),
    /// Text or a close reason that is not UTF-8.
    InvalidUtf8,
    /// The message would exceed the size limit (inflated, if compressed).
    MessageTooBig,
    /// A compressed message that does not inflate.
    BadCompression,
}

impl ProtocolError {
    /// The close code to fail the connection with.
    pub fn close_code(self) -> CloseCode {
        match self {
            ProtocolError::InvalidUtf8 | ProtocolError::BadCompression => CloseCode::INVALID_DATA,
            ProtocolError::MessageTooBig => CloseCode::TOO_BIG,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::ReservedBits => f.write_str("reserved bits set"),
            ProtocolError::UnknownOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            ProtocolError::Unmasked => f.write_str("client frame not masked"),
            ProtocolError::ControlTooLong => f.write_str("control frame longer than 125 bytes"),
            ProtocolError::ControlFragmented => f.write_str("fragmented control frame"),
            ProtocolError::UnexpectedContinuation => f.write_str("continuation without a message"),
            ProtocolError::ExpectedContinuation => {
                f.write_str("new message inside a fragmented one")
            }
            ProtocolError::InvalidLength => f.write_str("payload length has its top bit set"),
            ProtocolError::TruncatedClose => f.write_str("one-byte close payload"),
            ProtocolError::InvalidCloseCode(code) => write!(f, "invalid close code {code}"),
            ProtocolError::InvalidUtf8 => f.write_str("invalid UTF-8"),
            ProtocolError::MessageTooBig => f.write_str("message exceeds the size limit"),
            ProtocolError::BadCompression => f.write_str("compressed message does not inflate"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Where an event's payload is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// This range of the buffer passed to the [`Receiver::read`] call that
    /// returned the event (already unmasked).
    Input(Range<usize>),
    /// The receiver's message buffer: see [`Receiver::message`].
    Message,
    /// The receiver's control-frame buffer (a control frame split across
    /// reads): see [`Receiver::payload`].
    Control,
}

/// What a call to [`Receiver::read`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete, valid UTF-8 text message.
    Text(Payload),
    /// A complete binary message.
    Binary(Payload),
    /// A ping with its payload.
    Ping(Payload),
    /// A pong with its payload.
    Pong(Payload),
    /// A valid close frame; parse its payload with
    /// [`parse_close`](crate::proto::close::parse_close).
    Close(Payload),
    /// A complete compressed message (RSV1 on its first frame), not yet
    /// inflated, so text is not yet validated.
    Deflated {
        /// Whether it is a text message.
        text: bool,
        /// The compressed bytes, without the sync tail.
        payload: Payload,
    },
}
