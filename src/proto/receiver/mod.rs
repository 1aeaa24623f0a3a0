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
//!
//! This file holds the receiver's state and the general path (payloads,
//! fragmentation, UTF-8 across frames, control frames); `header` reads and
//! checks a frame header, `whole` takes the common case of a whole small
//! message in one read, and `event` is what a read reports.

mod event;
mod header;
#[cfg(test)]
mod tests;
mod whole;

pub use event::{Event, Payload, ProtocolError};
// What `read_simple_message` returns, nameable with the feature `internals`;
// the crate itself never names it.
#[cfg_attr(not(feature = "internals"), allow(unused_imports))]
pub use whole::WholeFrame;

use header::FrameState;

use super::close::{self, CloseFrameError};
use super::frame::{apply_mask, OpCode, MAX_CONTROL_PAYLOAD};
use super::utf8::Utf8Validator;

/// The largest message buffer kept for reuse after a message is delivered;
/// a larger one is freed so that an idle connection stays small.
pub const KEEP_CAPACITY: usize = 4 * 1024;

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
    #[inline(always)]
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
}
