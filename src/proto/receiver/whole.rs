//! The common case, taken apart from the general path: a whole
//! unfragmented, uncompressed text or binary frame at the start of the
//! input, unmasked (and its text validated) in one pass.

use std::ops::Range;

use super::{Event, Payload, ProtocolError, Receiver};
use crate::proto::frame::{apply_mask, unmask_checking_ascii};

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

impl Receiver {
    /// The common case, taken between messages: `input` starts with a whole
    /// unfragmented, uncompressed text or binary frame with a 7- or 16-bit
    /// length. Its checks are the general path's for exactly that header:
    /// the first byte is FIN and an opcode with no reserved bit (so RSV1
    /// never passes here), the mask bit is set, and the length is within
    /// `max_message`. Returns `None` for anything else, which the general
    /// path then reads (and refuses, if it must). A 32-byte text costs about
    /// half the general path's instructions this way (callgrind, with the
    /// unmasking and the ASCII check: ~120 against ~260).
    pub(super) fn read_whole_message(
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
    pub(super) fn is_between_messages(&self) -> bool {
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
}
