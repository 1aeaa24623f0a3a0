//! Frame headers (RFC 6455 §5.2): opcodes, the server-side encoder, and
//! unmasking a word at a time.

use super::close::CloseCode;

/// A frame's opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    /// Continues a fragmented message.
    Continuation,
    /// The first frame of a text message.
    Text,
    /// The first frame of a binary message.
    Binary,
    /// A close frame.
    Close,
    /// A ping.
    Ping,
    /// A pong.
    Pong,
}

impl OpCode {
    /// Decodes the low four bits of a frame's first byte; `None` for the
    /// reserved opcodes.
    pub fn from_bits(bits: u8) -> Option<OpCode> {
        Some(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// The opcode's four-bit value.
    pub fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Close, ping and pong.
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// The largest payload a control frame may carry.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// The longest header a server frame needs (no mask).
pub const MAX_SERVER_HEADER: usize = 10;

/// The header of an unmasked (server-to-client) frame, ready to be written
/// before the payload.
#[derive(Debug, Clone, Copy)]
pub struct ServerHeader {
    bytes: [u8; MAX_SERVER_HEADER],
    len: u8,
}

impl ServerHeader {
    /// The header for a frame of `payload_len` bytes.
    pub fn new(fin: bool, opcode: OpCode, payload_len: usize) -> ServerHeader {
        let mut bytes = [0u8; MAX_SERVER_HEADER];
        bytes[0] = (u8::from(fin) << 7) | opcode.bits();
        let len = if payload_len < 126 {
            bytes[1] = payload_len as u8;
            2
        } else if let Ok(short) = u16::try_from(payload_len) {
            bytes[1] = 126;
            bytes[2..4].copy_from_slice(&short.to_be_bytes());
            4
        } else {
            bytes[1] = 127;
            bytes[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
            10
        };
        ServerHeader { bytes, len }
    }

    /// The same header with RSV1 set: the first frame of a compressed
    /// message (RFC 7692 §6).
    pub fn with_rsv1(mut self) -> ServerHeader {
        self.bytes[0] |= 0x40;
        self
    }

    /// The encoded header.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The encoded header followed by padding to [`MAX_SERVER_HEADER`]
    /// bytes: for a copy of fixed size, cut back to
    /// [`ServerHeader::as_bytes`]'s length after.
    pub fn padded(&self) -> &[u8; MAX_SERVER_HEADER] {
        &self.bytes
    }
}

/// Reads the header of a server frame at the start of `bytes` (one we
/// encoded: unmasked, FIN set): its opcode, header length and payload
/// length. `None` if `bytes` does not start with a whole header.
pub fn split_server_frame(bytes: &[u8]) -> Option<(OpCode, usize, usize)> {
    let (&first, &second) = (bytes.first()?, bytes.get(1)?);
    let opcode = OpCode::from_bits(first & 0x0F)?;
    let (header_len, len) = match second & 0x7F {
        126 => (
            4,
            u64::from(u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?)),
        ),
        127 => (10, u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?)),
        short => (2, u64::from(short)),
    };
    Some((opcode, header_len, usize::try_from(len).ok()?))
}

/// Appends a whole unfragmented server frame to `out`.
pub fn encode_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    out.extend_from_slice(ServerHeader::new(true, opcode, payload.len()).as_bytes());
    out.extend_from_slice(payload);
}

/// Appends a close frame; `code` `None` sends an empty payload. The reason is
/// cut at a character boundary to fit in a control frame.
pub fn encode_close(out: &mut Vec<u8>, code: Option<CloseCode>, reason: &str) {
    let Some(code) = code else {
        encode_frame(out, OpCode::Close, &[]);
        return;
    };
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
    payload[..2].copy_from_slice(&code.get().to_be_bytes());
    payload[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
    encode_frame(out, OpCode::Close, &payload[..2 + end]);
}

/// Appends a masked client-to-server frame: `first` is the frame's first
/// byte (FIN, RSV bits and opcode as the caller wants them, valid or not),
/// then the length, `mask` and the masked payload. rookery is a server and
/// never sends one; tests, fuzzers, benchmarks and clients built on the core
/// do.
pub fn encode_client_frame(out: &mut Vec<u8>, first: u8, mask: [u8; 4], payload: &[u8]) {
    let header = ServerHeader::new(true, OpCode::Text, payload.len());
    let mut bytes = header.bytes;
    bytes[0] = first;
    bytes[1] |= 0x80;
    out.extend_from_slice(&bytes[..usize::from(header.len)]);
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask, 0);
}

/// XORs `data` with the masking key, where `data` starts `offset` bytes into
/// the frame's payload (RFC 6455 §5.3).
///
/// Works eight bytes at a time: the key repeated to a `u64` is XORed with
/// the data's words.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4], offset: u64) {
    // The key read as a little-endian word and rotated by the phase is the
    // key starting at byte `offset % 4`; XORing little-endian words keeps
    // that byte order on either endianness. This form is about half the
    // instructions of indexing a rotated array for a 32-byte text
    // (callgrind: 39 against 76) and as fast for 64 KiB, which LLVM
    // vectorizes all the same.
    let key = u32::from_le_bytes(mask).rotate_right(8 * (offset % 4) as u32);
    let word = u64::from(key) | (u64::from(key) << 32);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        unmask_word(chunk, word);
    }
    // The tail starts at a multiple of eight, so the key's phase is unchanged.
    for (b, k) in chunks.into_remainder().iter_mut().zip(word.to_le_bytes()) {
        *b ^= k;
    }
}

/// [`apply_mask`] for a whole payload (offset 0) that also tells whether
/// every unmasked byte is ASCII: a small text's check folded into its
/// unmasking, one OR per word, where a second pass (`is_ascii`) cost about
/// as much as the unmasking (callgrind, 32 bytes).
#[inline(always)]
pub fn unmask_checking_ascii(data: &mut [u8], mask: [u8; 4]) -> bool {
    let key = u32::from_le_bytes(mask);
    let word = u64::from(key) | (u64::from(key) << 32);
    let mut seen = 0u64;
    // Four words a step: LLVM's vectorized form of a one-word loop spent
    // ~25 instructions deciding and setting up for a 32-byte message.
    let mut blocks = data.chunks_exact_mut(32);
    for block in &mut blocks {
        for chunk in block.chunks_exact_mut(8) {
            seen |= unmask_word(chunk, word);
        }
    }
    let mut words = blocks.into_remainder().chunks_exact_mut(8);
    for chunk in &mut words {
        seen |= unmask_word(chunk, word);
    }
    let mut tail_seen = 0u8;
    for (b, k) in words.into_remainder().iter_mut().zip(word.to_le_bytes()) {
        *b ^= k;
        tail_seen |= *b;
    }
    seen & 0x8080_8080_8080_8080 == 0 && tail_seen < 0x80
}

/// Unmasks one eight-byte `chunk` with `word` and returns the plain word.
#[inline(always)]
fn unmask_word(chunk: &mut [u8], word: u64) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(chunk);
    let plain = u64::from_le_bytes(bytes) ^ word;
    chunk.copy_from_slice(&plain.to_le_bytes());
    plain
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask_bytewise(data: &mut [u8], mask: [u8; 4], offset: u64) {
        for (i, b) in data.iter_mut().enumerate() {
            *b ^= mask[((offset + i as u64) % 4) as usize];
        }
    }

    #[test]
    fn unmasking_with_the_ascii_check_matches_unmasking_and_is_ascii() {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        for len in (0..40).chain([127, 128, 129, 200]) {
            // All ASCII, then one byte at a time with its top bit set.
            for high in std::iter::once(None).chain((0..len).map(Some)) {
                let mut orig: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8 & 0x7F).collect();
                if let Some(i) = high {
                    orig[i] |= 0x80;
                }
                let mut masked = orig.clone();
                mask_bytewise(&mut masked, mask, 0);
                let mut unmasked = masked.clone();
                let ascii = unmask_checking_ascii(&mut unmasked, mask);
                assert_eq!(unmasked, orig, "len {len}");
                assert_eq!(ascii, orig.is_ascii(), "len {len}, high byte at {high:?}");
            }
        }
    }

    #[test]
    fn word_mask_matches_bytewise_at_every_offset_and_length() {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        for offset in 0..8u64 {
            for len in 0..40 {
                let orig: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
                let mut fast = orig.clone();
                let mut slow = orig.clone();
                apply_mask(&mut fast, mask, offset);
                mask_bytewise(&mut slow, mask, offset);
                assert_eq!(fast, slow, "offset {offset} len {len}");
            }
        }
    }

    #[test]
    fn masking_in_pieces_equals_masking_at_once() {
        let mask = [1, 2, 3, 4];
        let orig: Vec<u8> = (0..100u8).collect();
        let mut whole = orig.clone();
        apply_mask(&mut whole, mask, 0);
        let mut pieces = orig.clone();
        let (a, rest) = pieces.split_at_mut(3);
        let (b, c) = rest.split_at_mut(50);
        apply_mask(a, mask, 0);
        apply_mask(b, mask, 3);
        apply_mask(c, mask, 53);
        assert_eq!(whole, pieces);
    }

    #[test]
    fn rfc6455_section_5_7_unmasked_examples() {
        let mut out = Vec::new();
        encode_frame(&mut out, OpCode::Text, b"Hello");
        assert_eq!(out, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        out.clear();
        encode_frame(&mut out, OpCode::Pong, b"Hello");
        assert_eq!(out, [0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        assert_eq!(
            ServerHeader::new(false, OpCode::Text, 3).as_bytes(),
            [0x01, 0x03]
        );
        assert_eq!(
            ServerHeader::new(true, OpCode::Continuation, 2).as_bytes(),
            [0x80, 0x02]
        );
        assert_eq!(
            ServerHeader::new(true, OpCode::Binary, 256).as_bytes(),
            [0x82, 0x7E, 0x01, 0x00]
        );
        assert_eq!(
            ServerHeader::new(true, OpCode::Binary, 65536).as_bytes(),
            [0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00]
        );
        assert_eq!(
            ServerHeader::new(true, OpCode::Binary, 65535).as_bytes(),
            [0x82, 0x7E, 0xff, 0xff]
        );
        assert_eq!(
            ServerHeader::new(true, OpCode::Binary, 125).as_bytes(),
            [0x82, 125]
        );
        assert_eq!(
            ServerHeader::new(true, OpCode::Binary, 126).as_bytes(),
            [0x82, 126, 0, 126]
        );
    }

    #[test]
    fn rfc6455_section_5_7_masked_example_unmasks() {
        let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&payload, b"Hello");
    }

    #[test]
    fn rfc6455_section_5_7_client_frame() {
        let mut out = Vec::new();
        encode_client_frame(&mut out, 0x81, [0x37, 0xfa, 0x21, 0x3d], b"Hello");
        assert_eq!(
            out,
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
        out.clear();
        encode_client_frame(&mut out, 0x02, [0; 4], &[0; 300]);
        assert_eq!(&out[..4], [0x02, 0x80 | 126, 0x01, 0x2C]);
        assert_eq!(out.len(), 4 + 4 + 300);
    }

    #[test]
    fn close_frames() {
        let mut out = Vec::new();
        encode_close(&mut out, Some(CloseCode::GOING_AWAY), "bye");
        assert_eq!(out, [0x88, 5, 0x03, 0xE9, b'b', b'y', b'e']);
        out.clear();
        encode_close(&mut out, None, "ignored");
        assert_eq!(out, [0x88, 0]);
        out.clear();
        let long = "é".repeat(100);
        encode_close(&mut out, Some(CloseCode::NORMAL), &long);
        assert_eq!(out[1], 124);
        assert!(std::str::from_utf8(&out[4..]).is_ok());
    }

    #[test]
    fn opcodes_round_trip_and_reserved_are_refused() {
        for bits in 0..16u8 {
            match OpCode::from_bits(bits) {
                Some(op) => assert_eq!(op.bits(), bits),
                None => assert!(matches!(bits, 3..=7 | 0xB..=0xF)),
            }
        }
        assert!(OpCode::Ping.is_control());
        assert!(!OpCode::Text.is_control());
    }

    #[test]
    fn server_frames_split_back_into_header_and_payload() {
        for len in [0, 1, 125, 126, 65_535, 65_536, 70_000] {
            let payload = vec![7u8; len];
            let mut out = Vec::new();
            encode_frame(&mut out, OpCode::Binary, &payload);
            let (opcode, header_len, payload_len) = split_server_frame(&out).unwrap();
            assert_eq!((opcode, payload_len), (OpCode::Binary, len));
            assert_eq!(header_len + payload_len, out.len());
            assert_eq!(split_server_frame(&out[..header_len - 1]), None);
        }
        let rsv1 = ServerHeader::new(true, OpCode::Text, 3).with_rsv1();
        assert_eq!(rsv1.as_bytes(), [0xC1, 3]);
    }
}
