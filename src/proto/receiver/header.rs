//! A frame header: gathered across reads when it is split, and checked in
//! full (reserved bits, opcode, mask bit, control frames' length and FIN,
//! continuation order, the message's size) before any payload byte is
//! accepted.

use super::{OpCode, ProtocolError, Receiver, MAX_CONTROL_PAYLOAD};

/// The frame being received.
#[derive(Debug, Clone, Copy)]
pub(super) struct FrameState {
    pub(super) opcode: OpCode,
    pub(super) fin: bool,
    pub(super) mask: [u8; 4],
    /// RSV1: the first frame of a compressed message.
    pub(super) compressed: bool,
    pub(super) len: u64,
    /// Payload bytes already consumed.
    pub(super) done: u64,
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
    /// Gathers and checks a frame header. Returns `None` when `input` ended
    /// inside the header (its bytes are kept).
    pub(super) fn read_header(
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
