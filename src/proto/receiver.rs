//! The frame decoder and message assembler for client-to-server traffic.
//!
//! [`Receiver::read`] takes whatever bytes arrived, unmasks them in place and
//! returns at most one [`Event`] per call. Every rule of RFC 6455 that a
//! server must enforce is checked here, and each violation is a
//! [`ProtocolError`] that names its close code:
//!
//! - the header is checked in full (reserved bits, opcode, mask bit, control
//!   frame length and FIN, continuation order, message size) before a single
//!   payload byte is accepted, so an oversized message is refused without
//!   buffering any of it;
//! - text is validated as it arrives, across frames and reads, so an invalid
//!   byte fails at once;
//! - close frames are checked for a valid code and a UTF-8 reason;
//! - once permessage-deflate is negotiated (the `compression` argument of
//!   [`Receiver::read`]), RSV1 is accepted on the first frame of a data message, and marks it
//!   compressed: its bytes are gathered unchecked and come out as
//!   [`Event::Deflated`], to be inflated (and text validated) by the caller.
//!
//! Payloads are not copied when they can be avoided: a whole message or
//! control frame found inside one read is returned as a range of the caller's
//! buffer ([`Payload::Input`]); only messages that span reads or fragments are
//! gathered in the receiver's own buffer ([`Payload::Message`]). Between
//! messages the receiver holds no heap memory unless a message left capacity
//! below [`KEEP_CAPACITY`].

use std::fmt;
use std::ops::Range;

use super::close::{self, CloseFrameError};
use super::frame::{apply_mask, unmask_checking_ascii, OpCode, MAX_CONTROL_PAYLOAD};
use super::utf8::Utf8Validator;

/// The largest message buffer kept for reuse after a message is delivered;
/// a larger one is freed so that an idle connection stays small.
pub const KEEP_CAPACITY: usize = 4 * 1024;

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
    InvalidCloseCode(u16),
    /// Text or a close reason that is not UTF-8.
    InvalidUtf8,
    /// The message would exceed the size limit (inflated, if compressed).
    MessageTooBig,
    /// A compressed message that does not inflate.
    BadCompression,
}

impl ProtocolError {
    /// The close code to fail the connection with.
    pub fn close_code(self) -> u16 {
        match self {
            ProtocolError::InvalidUtf8 | ProtocolError::BadCompression => close::INVALID_PAYLOAD,
            ProtocolError::MessageTooBig => close::MESSAGE_TOO_BIG,
            _ => close::PROTOCOL_ERROR,
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
    /// A valid close frame; parse its payload with [`close::parse_close`].
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

/// The frame being received.
#[derive(Debug, Clone, Copy)]
struct FrameState {
    opcode: OpCode,
    fin: bool,
    mask: [u8; 4],
    /// RSV1: the first frame of a compressed message.
    compressed: bool,
    len: u64,
    /// Payload bytes already consumed.
    done: u64,
}

/// A whole frame found at the start of the input by
/// [`Receiver::read_simple_message`]: its payload is unmasked in place (and
/// validated, for a text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WholeFrame {
    /// Bytes of input the frame took.
    pub end: usize,
    /// Where the payload is in the input.
    pub payload: Range<usize>,
    /// Text, or binary.
    pub text: bool,
    mask: [u8; 4],
    /// Every payload byte is ASCII (so UTF-8).
    ascii: bool,
}

impl WholeFrame {
    /// Whether the payload (in `input`, unmasked) is UTF-8: ASCII, the
    /// common case, was seen while unmasking.
    #[inline(always)]
    fn is_utf8(&self, input: &[u8]) -> bool {
        self.ascii || std::str::from_utf8(&input[self.payload.clone()]).is_ok()
    }
}

/// Whole frames up to this payload length are unmasked with the ASCII test
/// folded in ([`unmask_checking_ascii`]); longer ones take [`apply_mask`]
/// (then `is_ascii`, for a text). `cargo bench --bench hot_paths`: 1.5x
/// faster at 32 bytes, even at 128, 0.6x at 512.
const SHORT_PAYLOAD: usize = 128;

/// Decoder and assembler state for one connection.
#[derive(Debug, Default)]
pub struct Receiver {
    header: [u8; 14],
    header_len: u8,
    /// Whether the message in progress is compressed.
    compressed: bool,
    frame: Option<FrameState>,
    /// The data opcode of a fragmented message in progress.
    message_opcode: Option<OpCode>,
    message_len: u64,
    utf8: Utf8Validator,
    message: Vec<u8>,
    /// A control frame split across reads: rare, so boxed, to keep every
    /// connection eight bytes instead of a `Vec`'s twenty-four.
    control: Option<Box<ControlBuf>>,
}

/// The payload of a control frame gathered across reads (at most 125 bytes,
/// which the header check guarantees).
#[derive(Debug)]
struct ControlBuf {
    bytes: [u8; MAX_CONTROL_PAYLOAD],
    len: usize,
}

impl ControlBuf {
    fn push(&mut self, chunk: &[u8]) {
        let end = (self.len + chunk.len()).min(MAX_CONTROL_PAYLOAD);
        let take = end - self.len;
        self.bytes[self.len..end].copy_from_slice(&chunk[..take]);
        self.len = end;
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Appends `chunk` to a message buffer, growing it by doubling as `Vec`
/// does, or at once to hold the `rest` of the frame still to come, but
/// never past `max_message` (which the message cannot exceed), so that a
/// message near the limit costs the limit, not up to twice it.
fn gather(buf: &mut Vec<u8>, chunk: &[u8], max_message: u64, rest: u64) {
    let needed = buf.len() + chunk.len();
    if needed > buf.capacity() {
        let limit = usize::try_from(max_message).unwrap_or(usize::MAX);
        // Room for the rest of the frame too, when it is at most three times
        // what has come: a large frame over two or three reads is gathered
        // without a reallocation's copy, and a peer that announces a large
        // frame and sends little makes it allocate at most four times what
        // it sent (doubling alone: twice).
        let whole = usize::try_from(rest)
            .ok()
            .and_then(|rest| needed.checked_add(rest))
            .filter(|&whole| whole <= needed.saturating_mul(4));
        let target = whole
            .unwrap_or(0)
            .max(buf.capacity().saturating_mul(2))
            .max(needed)
            .min(limit.max(needed));
        buf.reserve_exact(target - buf.len());
    }
    buf.extend_from_slice(chunk);
}

/// Bytes needed for a complete header, given its first two bytes.
fn header_len(second: u8) -> usize {
    let ext = match second & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + ext + if second & 0x80 != 0 { 4 } else { 0 }
}

impl Receiver {
    /// A receiver at the start of a connection.
    pub fn new() -> Receiver {
        Receiver::default()
    }

    /// The assembled message, for events with [`Payload::Message`].
    pub fn message(&self) -> &[u8] {
        &self.message
    }

    /// Exchanges the assembled message with `other` (the caller's buffer,
    /// shared by every connection), for events with [`Payload::Message`]:
    /// the caller gets the message without a copy, and the receiver keeps
    /// the caller's old buffer, emptied, only if it is small.
    pub fn swap_message(&mut self, other: &mut Vec<u8>) {
        std::mem::swap(&mut self.message, other);
        self.message.clear();
        if self.message.capacity() > KEEP_CAPACITY {
            self.message = Vec::new();
        }
    }

    /// Resolves a payload location to bytes; `input` must be the buffer the
    /// event came from.
    pub fn payload<'a>(&'a self, input: &'a [u8], payload: &Payload) -> &'a [u8] {
        match payload {
            Payload::Input(range) => input.get(range.clone()).unwrap_or_default(),
            Payload::Message => &self.message,
            Payload::Control => self.control.as_deref().map_or(&[], ControlBuf::as_slice),
        }
    }

    /// Whether the receiver sits between frames with nothing buffered, so
    /// that dropping it loses nothing.
    pub fn is_idle(&self) -> bool {
        self.header_len == 0 && self.frame.is_none() && self.message_opcode.is_none()
    }

    /// Heap bytes held by this receiver.
    pub fn heap_bytes(&self) -> usize {
        self.message.capacity()
            + self
                .control
                .as_ref()
                .map_or(0, |_| std::mem::size_of::<ControlBuf>())
    }

    /// Consumes bytes from `input`, unmasking them in place. Returns how many
    /// bytes were consumed and the event they completed, if any. Call again
    /// with the rest of the input until it is all consumed; a call that
    /// consumes everything without an event needs more input.
    ///
    /// `max_message` caps the total payload of one message; `compression`
    /// says whether permessage-deflate was negotiated (RSV1 allowed). After
    /// an error the connection must be failed: the receiver's state is
    /// unspecified.
    pub fn read(
        &mut self,
        input: &mut [u8],
        max_message: u64,
        compression: bool,
    ) -> Result<(usize, Option<Event>), ProtocolError> {
        if self.is_between_messages() {
            if let Some(read) = self.read_whole_message(input, max_message) {
                return read;
            }
        }
        let mut used = 0;
        let frame = match self.frame {
            Some(frame) => frame,
            None => {
                let Some((frame, header_used)) =
                    self.read_header(input, max_message, compression)?
                else {
                    return Ok((input.len(), None));
                };
                used = header_used;
                if !frame.opcode.is_control() {
                    self.message_len += frame.len;
                }
                self.frame = Some(frame);
                frame
            }
        };
        let remaining = frame.len - frame.done;
        let available = input.len() - used;
        let take = usize::try_from(remaining).map_or(available, |r| r.min(available));
        let chunk_range = used..used + take;
        let chunk = &mut input[chunk_range.clone()];
        apply_mask(chunk, frame.mask, frame.done);
        used += take;
        let complete = take as u64 == remaining;
        let whole_frame_here = frame.done == 0 && complete;
        if let Some(f) = self.frame.as_mut() {
            f.done += take as u64;
        }

        if frame.opcode.is_control() {
            let payload = if whole_frame_here {
                Payload::Input(chunk_range)
            } else {
                self.control
                    .get_or_insert_with(|| {
                        Box::new(ControlBuf {
                            bytes: [0; MAX_CONTROL_PAYLOAD],
                            len: 0,
                        })
                    })
                    .push(chunk);
                if !complete {
                    return Ok((used, None));
                }
                Payload::Control
            };
            self.frame = None;
            return self
                .control_event(frame.opcode, payload, input)
                .map(|e| (used, Some(e)));
        }

        let message_opcode = self.message_opcode.unwrap_or(frame.opcode);
        if self.message_opcode.is_none() {
            self.compressed = frame.compressed;
        }
        let validate = message_opcode == OpCode::Text && !self.compressed;
        if validate && self.utf8.feed(chunk).is_err() {
            return Err(ProtocolError::InvalidUtf8);
        }
        let unfragmented = whole_frame_here && frame.fin && self.message_opcode.is_none();
        if !unfragmented {
            gather(
                &mut self.message,
                chunk,
                max_message,
                remaining - take as u64,
            );
        }
        if !complete {
            if self.message_opcode.is_none() {
                self.message_opcode = Some(message_opcode);
            }
            return Ok((used, None));
        }
        self.frame = None;
        if !frame.fin {
            self.message_opcode = Some(message_opcode);
            return Ok((used, None));
        }
        if validate && !self.utf8.is_complete() {
            return Err(ProtocolError::InvalidUtf8);
        }
        self.message_opcode = None;
        self.message_len = 0;
        self.utf8.reset();
        let payload = if unfragmented {
            Payload::Input(chunk_range)
        } else {
            Payload::Message
        };
        let event = match message_opcode {
            _ if std::mem::take(&mut self.compressed) => Event::Deflated {
                text: message_opcode == OpCode::Text,
                payload,
            },
            OpCode::Text => Event::Text(payload),
            _ => Event::Binary(payload),
        };
        Ok((used, Some(event)))
    }

    /// The common case, taken between messages: `input` starts with a whole
    /// unfragmented, uncompressed text or binary frame with a 7- or 16-bit
    /// length. Its checks are the general path's for exactly that header:
    /// the first byte is FIN and an opcode with no reserved bit (so RSV1
    /// never passes here), the mask bit is set, and the length is within
    /// `max_message`. Returns `None` for anything else, which the general
    /// path then reads (and refuses, if it must). A 32-byte text costs about
    /// half the general path's instructions this way (callgrind, with the
    /// unmasking and the ASCII check: ~120 against ~260).
    fn read_whole_message(
        &mut self,
        input: &mut [u8],
        max_message: u64,
    ) -> Option<Result<(usize, Option<Event>), ProtocolError>> {
        let frame = self.unmask_whole_frame(input, max_message)?;
        let payload = Payload::Input(frame.payload.clone());
        if frame.text && !frame.is_utf8(input) {
            return Some(Err(ProtocolError::InvalidUtf8));
        }
        let event = if frame.text {
            Event::Text(payload)
        } else {
            Event::Binary(payload)
        };
        Some(Ok((frame.end, Some(event))))
    }

    /// [`Receiver::read`] for a caller that takes the common case apart
    /// from the rest: the whole message at the start of `input` if there is
    /// one, taken exactly as `read` would take it (see
    /// `read_whole_message`), with its text validated.
    /// Returns `None` for anything else, with `input` as it was, so that
    /// `read` then reads it (and refuses it, if it must): an invalid text is
    /// masked again.
    #[inline(always)]
    pub fn read_simple_message(
        &mut self,
        input: &mut [u8],
        max_message: u64,
    ) -> Option<WholeFrame> {
        if !self.is_between_messages() {
            return None;
        }
        let frame = self.unmask_whole_frame(input, max_message)?;
        if frame.text && !frame.is_utf8(input) {
            apply_mask(&mut input[frame.payload.clone()], frame.mask, 0);
            return None;
        }
        Some(frame)
    }

    /// Whether no frame or message is under way.
    #[inline]
    fn is_between_messages(&self) -> bool {
        self.frame.is_none() && self.header_len == 0 && self.message_opcode.is_none()
    }

    /// The whole-frame test of [`Receiver::read_whole_message`]: when
    /// `input` starts with such a frame, its payload is unmasked in place.
    #[inline(always)]
    fn unmask_whole_frame(&mut self, input: &mut [u8], max_message: u64) -> Option<WholeFrame> {
        let (&first, &second) = (input.first()?, input.get(1)?);
        let text = match first {
            0x81 => true,
            0x82 => false,
            _ => return None,
        };
        let (len, start) = match second {
            0x80..=0xFD => (usize::from(second & 0x7F), 6),
            0xFE => (
                usize::from(u16::from_be_bytes([*input.get(2)?, *input.get(3)?])),
                8,
            ),
            _ => return None,
        };
        let end: usize = start + len;
        if end > input.len() || len as u64 > max_message {
            return None;
        }
        self.start_frame();
        let mask: [u8; 4] = input[start - 4..start].try_into().ok()?;
        let payload = &mut input[start..end];
        let ascii = if len <= SHORT_PAYLOAD {
            unmask_checking_ascii(payload, mask)
        } else {
            // Vectorized unmasking is faster on long payloads, and a binary
            // one needs no ASCII test.
            apply_mask(payload, mask, 0);
            text && payload.is_ascii()
        };
        Some(WholeFrame {
            end,
            payload: start..end,
            text,
            mask,
            ascii,
        })
    }

    /// Validates a completed control frame and frees the control buffer's
    /// claim on the next frame.
    fn control_event(
        &mut self,
        opcode: OpCode,
        payload: Payload,
        input: &[u8],
    ) -> Result<Event, ProtocolError> {
        let event = match opcode {
            OpCode::Ping => Event::Ping(payload),
            OpCode::Pong => Event::Pong(payload),
            _ => {
                close::parse_close(self.payload(input, &payload)).map_err(|e| match e {
                    CloseFrameError::Truncated => ProtocolError::TruncatedClose,
                    CloseFrameError::InvalidCode(code) => ProtocolError::InvalidCloseCode(code),
                    CloseFrameError::InvalidReason => ProtocolError::InvalidUtf8,
                })?;
                Event::Close(payload)
            }
        };
        Ok(event)
    }

    /// Forgets the payloads of delivered events, which the caller has had
    /// until this next call to [`Receiver::read`].
    fn start_frame(&mut self) {
        self.control = None;
        if self.message_opcode.is_none() {
            // The last message, if any, has been delivered.
            if self.message.capacity() > KEEP_CAPACITY {
                self.message = Vec::new();
            } else {
                self.message.clear();
            }
        }
    }

    /// Gathers and checks a frame header. Returns `None` when `input` ended
    /// inside the header (its bytes are kept).
    fn read_header(
        &mut self,
        input: &[u8],
        max_message: u64,
        compression: bool,
    ) -> Result<Option<(FrameState, usize)>, ProtocolError> {
        let have = usize::from(self.header_len);
        let (header, used): (&[u8], usize) =
            if have == 0 && input.len() >= 2 && input.len() >= header_len(input[1]) {
                // The common case: the whole header is in this read.
                let len = header_len(input[1]);
                (&input[..len], len)
            } else {
                let mut used = 0;
                while usize::from(self.header_len) < 2
                    || usize::from(self.header_len) < header_len(self.header[1])
                {
                    let Some(&b) = input.get(used) else {
                        return Ok(None);
                    };
                    self.header[usize::from(self.header_len)] = b;
                    self.header_len += 1;
                    used += 1;
                    if self.header_len == 2 {
                        // Fail on the first two bytes before waiting for the rest.
                        self.check_first_bytes(self.header[0], self.header[1], compression)?;
                    }
                }
                self.header_len = 0;
                (&self.header[..header_len(self.header[1])], used)
            };
        let frame = self.parse_header(header, max_message, compression)?;
        self.start_frame();
        Ok(Some((frame, used)))
    }

    /// The checks that need only the first two header bytes.
    fn check_first_bytes(
        &self,
        first: u8,
        second: u8,
        compression: bool,
    ) -> Result<OpCode, ProtocolError> {
        if first & 0x30 != 0 {
            return Err(ProtocolError::ReservedBits);
        }
        let bits = first & 0x0F;
        let opcode = OpCode::from_bits(bits).ok_or(ProtocolError::UnknownOpcode(bits))?;
        // RSV1 (RFC 7692 §6): only with compression negotiated, and only on
        // the first frame of a data message.
        if first & 0x40 != 0 && !(compression && matches!(opcode, OpCode::Text | OpCode::Binary)) {
            return Err(ProtocolError::ReservedBits);
        }
        let fin = first & 0x80 != 0;
        if second & 0x80 == 0 {
            return Err(ProtocolError::Unmasked);
        }
        if opcode.is_control() {
            if !fin {
                return Err(ProtocolError::ControlFragmented);
            }
            if usize::from(second & 0x7F) > MAX_CONTROL_PAYLOAD {
                return Err(ProtocolError::ControlTooLong);
            }
        } else if opcode == OpCode::Continuation {
            if self.message_opcode.is_none() {
                return Err(ProtocolError::UnexpectedContinuation);
            }
        } else if self.message_opcode.is_some() {
            return Err(ProtocolError::ExpectedContinuation);
        }
        Ok(opcode)
    }

    fn parse_header(
        &self,
        header: &[u8],
        max_message: u64,
        compression: bool,
    ) -> Result<FrameState, ProtocolError> {
        let (first, second) = (header[0], header[1]);
        let opcode = self.check_first_bytes(first, second, compression)?;
        let (len, rest) = match second & 0x7F {
            126 => (
                u64::from(u16::from_be_bytes([header[2], header[3]])),
                &header[4..],
            ),
            127 => {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&header[2..10]);
                let len = u64::from_be_bytes(bytes);
                if len >> 63 != 0 {
                    return Err(ProtocolError::InvalidLength);
                }
                (len, &header[10..])
            }
            short => (u64::from(short), &header[2..]),
        };
        if !opcode.is_control() && self.message_len.saturating_add(len) > max_message {
            return Err(ProtocolError::MessageTooBig);
        }
        let mut mask = [0u8; 4];
        mask.copy_from_slice(&rest[..4]);
        Ok(FrameState {
            opcode,
            fin: first & 0x80 != 0,
            compressed: first & 0x40 != 0,
            mask,
            len,
            done: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    const BIG: u64 = 1 << 20;

    /// A masked client frame.
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        crate::proto::frame::encode_client_frame(&mut out, first, MASK, payload);
        out
    }

    /// What a test sees of an event: the kind and the payload bytes.
    #[derive(Debug, PartialEq, Eq)]
    enum Seen {
        Text(Vec<u8>),
        Binary(Vec<u8>),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Vec<u8>),
        Deflated(bool, Vec<u8>),
    }

    /// Feeds `input` in pieces of `step` bytes and collects the events until
    /// the input ends or an error occurs.
    fn run(input: &[u8], step: usize, max: u64) -> (Vec<Seen>, Option<ProtocolError>) {
        run_with(input, step, max, false)
    }

    /// [`run`], with permessage-deflate negotiated or not.
    fn run_with(
        input: &[u8],
        step: usize,
        max: u64,
        compression: bool,
    ) -> (Vec<Seen>, Option<ProtocolError>) {
        let mut rx = Receiver::new();
        let mut seen = Vec::new();
        for piece in input.chunks(step.max(1)) {
            let mut buf = piece.to_vec();
            let mut off = 0;
            while off < buf.len() {
                match rx.read(&mut buf[off..], max, compression) {
                    Err(e) => return (seen, Some(e)),
                    Ok((n, event)) => {
                        if let Some(event) = event {
                            let data = |p: &Payload| rx.payload(&buf[off..], p).to_vec();
                            seen.push(match &event {
                                Event::Text(p) => Seen::Text(data(p)),
                                Event::Binary(p) => Seen::Binary(data(p)),
                                Event::Ping(p) => Seen::Ping(data(p)),
                                Event::Pong(p) => Seen::Pong(data(p)),
                                Event::Close(p) => Seen::Close(data(p)),
                                Event::Deflated { text, payload } => {
                                    Seen::Deflated(*text, data(payload))
                                }
                            });
                        }
                        assert!(n > 0 || buf[off..].is_empty(), "no progress");
                        off += n;
                    }
                }
            }
        }
        (seen, None)
    }

    /// Runs `input` at every piece size that matters and checks each gives
    /// the same result.
    fn run_all_splits(input: &[u8], max: u64) -> (Vec<Seen>, Option<ProtocolError>) {
        run_all_splits_with(input, max, false)
    }

    fn run_all_splits_with(
        input: &[u8],
        max: u64,
        compression: bool,
    ) -> (Vec<Seen>, Option<ProtocolError>) {
        let whole = run_with(input, input.len(), max, compression);
        for step in [1, 2, 3, 5, 7, 13] {
            let (seen, err) = run_with(input, step, max, compression);
            assert_eq!(err, whole.1, "step {step}");
            if err.is_none() {
                assert_eq!(seen, whole.0, "step {step}");
            }
        }
        whole
    }

    #[test]
    fn rfc6455_section_5_7_masked_text() {
        let input = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (seen, err) = run_all_splits(&input, BIG);
        assert_eq!(err, None);
        assert_eq!(seen, [Seen::Text(b"Hello".to_vec())]);
    }

    #[test]
    fn rfc6455_section_5_7_fragmented_text_and_ping() {
        let mut input = frame(0x01, b"Hel");
        input.extend(frame(0x89, b"Hello"));
        input.extend(frame(0x80, b"lo"));
        let (seen, err) = run_all_splits(&input, BIG);
        assert_eq!(err, None);
        assert_eq!(
            seen,
            [Seen::Ping(b"Hello".to_vec()), Seen::Text(b"Hello".to_vec())]
        );
    }

    #[test]
    fn lengths_at_every_encoding_boundary() {
        for len in [0usize, 1, 125, 126, 127, 65535, 65536, 100_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let input = frame(0x82, &payload);
            let (seen, err) = run(&input, input.len(), BIG);
            assert_eq!(err, None);
            assert_eq!(seen, [Seen::Binary(payload.clone())], "len {len}");
            let (seen, err) = run(&input, 1000, BIG);
            assert_eq!(err, None);
            assert_eq!(seen, [Seen::Binary(payload)], "len {len} in pieces");
        }
    }

    /// A whole frame in one read takes `read_whole_message`; in pieces it
    /// takes the general path. Both must give the same events and errors.
    #[test]
    fn the_whole_message_path_agrees_with_the_general_one() {
        let mut unmasked = frame(0x82, b"x");
        unmasked[1] &= 0x7F;
        let mut cases: Vec<(Vec<u8>, u64)> = vec![
            (frame(0x81, b"plain ascii text of thirty-two b"), BIG),
            (frame(0x81, "h\u{e9}llo \u{1F600}".as_bytes()), BIG),
            (frame(0x81, b"bad \xC3\x28 byte"), BIG),
            (frame(0x81, b"cut \xE2\x82"), BIG),
            (frame(0x81, &[b'a'; 126]), BIG),
            // Past SHORT_PAYLOAD: unmasked, then tested as ASCII or UTF-8.
            (frame(0x81, &[b'a'; 300]), BIG),
            (frame(0x81, "\u{e9}".repeat(150).as_bytes()), BIG),
            (
                frame(0x81, &[[b'a'; 299].as_slice(), b"\xff"].concat()),
                BIG,
            ),
            (frame(0x82, &[0xff; 300]), BIG),
            (frame(0x82, &[7; 65535]), BIG),
            (frame(0x82, &[7; 65536]), BIG),
            (frame(0x82, &[7; 100]), 99),
            (frame(0x82, &[7; 100]), 100),
            (frame(0xC1, b"rsv1 without deflate"), BIG),
            (frame(0x83, b"reserved opcode"), BIG),
            (frame(0x02, b"first fragment"), BIG),
            (unmasked, BIG),
        ];
        // Then a second message behind each, read in the same buffer.
        for (input, _) in cases.iter_mut() {
            input.extend(frame(0x81, b"next"));
        }
        // Split every way, the long frames take minutes under Miri (safe
        // code past SHORT_PAYLOAD); the 126-byte one covers the 16-bit
        // length there.
        cases.retain(|(input, _)| !cfg!(miri) || input.len() < 256);
        for (input, max) in &cases {
            let (seen, err) = run_all_splits(input, *max);
            let (stepped, stepped_err) = run(input, 1, *max);
            assert_eq!(err, stepped_err, "{:x?}", &input[..2]);
            assert_eq!(seen, stepped, "{:x?}", &input[..2]);
        }
    }

    #[test]
    // Megabytes of masking are minutes under Miri; the code is safe.
    #[cfg_attr(miri, ignore)]
    fn a_frame_over_reads_is_gathered_in_one_buffer_if_its_rest_is_small() {
        // 64 KiB in two reads: the first 40 KiB, then the rest. The buffer
        // is sized for the whole frame at the first read, so the second
        // needs no reallocation.
        let payload: Vec<u8> = (0..64 * 1024).map(|i| i as u8).collect();
        let input = frame(0x82, &payload);
        let (first, second) = input.split_at(14 + 40 * 1024);
        let mut rx = Receiver::new();
        let mut first = first.to_vec();
        let (used, event) = rx.read(&mut first, BIG, false).unwrap();
        let (used, event) = match event {
            None if used == 14 => rx.read(&mut first[used..], BIG, false).unwrap(),
            other => (used, other),
        };
        assert!(event.is_none() && used > 0);
        assert_eq!(rx.heap_bytes(), payload.len(), "room for the whole frame");
        let mut second = second.to_vec();
        let (_, event) = rx.read(&mut second, BIG, false).unwrap();
        assert!(matches!(event, Some(Event::Binary(Payload::Message))));
        assert_eq!(rx.message(), &payload[..]);
        assert_eq!(rx.heap_bytes(), payload.len(), "no reallocation");

        // A frame announced as 1 MiB with 1 KiB sent: the buffer holds what
        // came (at most four times it), not the announced length.
        let mut rx = Receiver::new();
        let mut head = frame(0x82, &vec![0; 1 << 20])[..14 + 1024].to_vec();
        let mut off = 0;
        while off < head.len() {
            let (used, event) = rx.read(&mut head[off..], BIG, false).unwrap();
            assert!(event.is_none());
            off += used;
        }
        assert!(rx.heap_bytes() <= 4 * 1024, "{} bytes", rx.heap_bytes());
    }

    #[test]
    fn several_messages_in_one_read_are_returned_in_order() {
        let mut input = frame(0x81, b"one");
        input.extend(frame(0x82, b"two"));
        input.extend(frame(0x8A, b"p"));
        input.extend(frame(0x88, &[0x03, 0xE8]));
        let (seen, err) = run_all_splits(&input, BIG);
        assert_eq!(err, None);
        assert_eq!(
            seen,
            [
                Seen::Text(b"one".to_vec()),
                Seen::Binary(b"two".to_vec()),
                Seen::Pong(b"p".to_vec()),
                Seen::Close(vec![0x03, 0xE8]),
            ]
        );
    }

    #[test]
    fn empty_messages_and_fragments() {
        let mut input = frame(0x81, b"");
        input.extend(frame(0x01, b""));
        input.extend(frame(0x00, b""));
        input.extend(frame(0x80, b""));
        input.extend(frame(0x88, b""));
        let (seen, err) = run_all_splits(&input, BIG);
        assert_eq!(err, None);
        assert_eq!(
            seen,
            [Seen::Text(vec![]), Seen::Text(vec![]), Seen::Close(vec![])]
        );
    }

    #[test]
    fn every_violation_maps_to_its_close_code() {
        let long_ping = frame(0x89, &[0; 126]);
        let mut unmasked = frame(0x81, b"hi");
        unmasked[1] &= 0x7F;
        let mut huge = vec![0x82, 0xFF];
        huge.extend_from_slice(&(1u64 << 63).to_be_bytes());
        huge.extend_from_slice(&MASK);
        let mut text_in_fragment = frame(0x01, b"a");
        text_in_fragment.extend(frame(0x81, b"b"));
        let mut split_utf8_bad = frame(0x01, b"\xce");
        split_utf8_bad.extend(frame(0x80, b"\x41"));
        let mut unfinished_utf8 = frame(0x01, b"ok");
        unfinished_utf8.extend(frame(0x80, b"\xe2\x82"));
        let cases: Vec<(Vec<u8>, ProtocolError, u16)> = vec![
            (frame(0xC1, b"x"), ProtocolError::ReservedBits, 1002),
            (frame(0xA1, b"x"), ProtocolError::ReservedBits, 1002),
            (frame(0x91, b"x"), ProtocolError::ReservedBits, 1002),
            (frame(0x83, b"x"), ProtocolError::UnknownOpcode(3), 1002),
            (frame(0x8B, b"x"), ProtocolError::UnknownOpcode(0xB), 1002),
            (unmasked, ProtocolError::Unmasked, 1002),
            (long_ping, ProtocolError::ControlTooLong, 1002),
            (frame(0x09, b"x"), ProtocolError::ControlFragmented, 1002),
            (
                frame(0x80, b"x"),
                ProtocolError::UnexpectedContinuation,
                1002,
            ),
            (text_in_fragment, ProtocolError::ExpectedContinuation, 1002),
            (huge, ProtocolError::InvalidLength, 1002),
            (frame(0x88, &[3]), ProtocolError::TruncatedClose, 1002),
            (
                frame(0x88, &[0x03, 0xED]),
                ProtocolError::InvalidCloseCode(1005),
                1002,
            ),
            (
                frame(0x88, &[0x03, 0xE8, 0xFF]),
                ProtocolError::InvalidUtf8,
                1007,
            ),
            (frame(0x81, b"\xff"), ProtocolError::InvalidUtf8, 1007),
            (split_utf8_bad, ProtocolError::InvalidUtf8, 1007),
            (unfinished_utf8, ProtocolError::InvalidUtf8, 1007),
            (frame(0x82, &[0; 11]), ProtocolError::MessageTooBig, 1009),
        ];
        for (input, want, code) in cases {
            let (_, err) = run_all_splits(&input, 10);
            assert_eq!(err, Some(want), "{input:02x?}");
            assert_eq!(want.close_code(), code);
        }
    }

    #[test]
    fn fragmented_message_size_is_checked_across_frames() {
        let mut input = frame(0x02, &[0; 6]);
        input.extend(frame(0x80, &[0; 6]));
        assert_eq!(run(&input, input.len(), 12).1, None);
        assert_eq!(
            run(&input, input.len(), 11).1,
            Some(ProtocolError::MessageTooBig)
        );
    }

    #[test]
    fn oversized_header_fails_before_any_payload() {
        // A header announcing 2^40 bytes with no payload following.
        let mut header = vec![0x82, 0xFF];
        header.extend_from_slice(&(1u64 << 40).to_be_bytes());
        header.extend_from_slice(&MASK);
        let mut rx = Receiver::new();
        assert_eq!(
            rx.read(&mut header, BIG, false),
            Err(ProtocolError::MessageTooBig)
        );
        assert_eq!(rx.heap_bytes(), 0);
    }

    #[test]
    fn invalid_text_fails_at_the_bad_byte_not_at_the_end() {
        // The first fragment's bad byte fails before the rest arrives.
        let mut input = frame(0x01, b"good \xed\xa0\x80 bad");
        input.truncate(input.len() - 2);
        let (_, err) = run(&input, 4, BIG);
        assert_eq!(err, Some(ProtocolError::InvalidUtf8));
    }

    #[test]
    fn large_buffers_are_released_after_the_message() {
        let mut input = frame(0x02, &[7; 10_000]);
        input.extend(frame(0x80, &[7; 10_000]));
        let mut rx = Receiver::new();
        let mut buf = input.clone();
        let mut off = 0;
        let mut got = None;
        while off < buf.len() {
            let (n, ev) = rx.read(&mut buf[off..], BIG, false).unwrap();
            off += n;
            if ev.is_some() {
                got = ev;
            }
        }
        assert_eq!(got, Some(Event::Binary(Payload::Message)));
        assert_eq!(rx.message().len(), 20_000);
        let mut scratch = vec![0u8; 2 * KEEP_CAPACITY];
        rx.swap_message(&mut scratch);
        assert_eq!(scratch.len(), 20_000);
        assert_eq!(rx.heap_bytes(), 0, "a large caller buffer is not kept");
        assert!(rx.is_idle());
    }

    #[test]
    fn ping_split_across_reads_is_gathered() {
        let input = frame(0x89, b"abcdef");
        let (seen, err) = run(&input, 9, BIG);
        assert_eq!(err, None);
        assert_eq!(seen, [Seen::Ping(b"abcdef".to_vec())]);
    }

    #[test]
    fn rsv1_marks_a_compressed_message_once_negotiated() {
        // Not negotiated: RSV1 is a protocol error (1002).
        assert_eq!(
            run_all_splits(&frame(0xC1, b"\xf2\x48"), BIG).1,
            Some(ProtocolError::ReservedBits)
        );
        // Negotiated: the bytes come out unvalidated (they are not UTF-8),
        // whole or gathered across fragments; plain messages still work.
        let mut input = frame(0xC1, b"\xf2\x48\xcd");
        input.extend(frame(0x42, b"\xff\x01"));
        input.extend(frame(0x80, b"\xfe"));
        input.extend(frame(0x81, b"plain"));
        let (seen, err) = run_all_splits_with(&input, BIG, true);
        assert_eq!(err, None);
        assert_eq!(
            seen,
            [
                Seen::Deflated(true, b"\xf2\x48\xcd".to_vec()),
                Seen::Deflated(false, b"\xff\x01\xfe".to_vec()),
                Seen::Text(b"plain".to_vec()),
            ]
        );
    }

    #[test]
    fn rsv1_only_on_the_first_frame_of_a_data_message() {
        let mut on_continuation = frame(0x41, b"a");
        on_continuation.extend(frame(0xC0, b"b"));
        let mut plain_then_bad = frame(0x01, b"a");
        plain_then_bad.extend(frame(0xC0, b"b"));
        for input in [
            frame(0xC9, b"x"),       // ping
            frame(0xCA, b"x"),       // pong
            frame(0xC8, &[3, 0xE8]), // close
            on_continuation,
            plain_then_bad,
            frame(0xE1, b"x"), // RSV1 + RSV2
            frame(0xA1, b"x"), // RSV2
            frame(0x91, b"x"), // RSV3
        ] {
            assert_eq!(
                run_all_splits_with(&input, BIG, true).1,
                Some(ProtocolError::ReservedBits),
                "{input:02x?}"
            );
        }
        // The wire size of a compressed message counts against the limit.
        assert_eq!(
            run_all_splits_with(&frame(0xC2, &[0; 11]), 10, true).1,
            Some(ProtocolError::MessageTooBig)
        );
    }
}
