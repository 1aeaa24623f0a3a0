//! The loop's one decompressor and its compressors: raw DEFLATE streams,
//! reset for every message (no context takeover), so that no connection
//! owns a stream.
//!
//! - [`Streams::inflate`] stops the moment the output would pass the limit,
//!   so a message that claims gigabytes costs at most the limit plus one
//!   output step (a decompression bomb is refused while it inflates).
//! - [`Streams::deflate`] compresses with a window of 9 to 15 bits; one
//!   compressor per window size in use is made on first use (browsers never
//!   ask for a smaller window, so normally there is one).
//!
//! Memory (zlib-rs, measured in `tests/deflate.rs`): the decompressor
//! holds its 32 KiB window and about 7 KiB of state; a compressor at level
//! 6, window 15, about 270 KiB. Both exist once per loop, not per
//! connection.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::InflateError;

/// The four bytes a sync flush ends with; RFC 7692 §7.2.1 removes them
/// from each compressed message, and the receiver appends them again.
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The smallest step by which the inflate output grows.
const INFLATE_STEP: usize = 16 * 1024;

/// The loop-wide compression streams.
#[derive(Default)]
pub struct Streams {
    inflater: Option<Decompress>,
    /// Indexed by window bits minus 9.
    deflaters: [Option<Compress>; 7],
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams")
            .field("inflater", &self.inflater.is_some())
            .field(
                "deflaters",
                &self.deflaters.iter().filter(|d| d.is_some()).count(),
            )
            .finish()
    }
}

impl Streams {
    /// Appends the inflated form of one compressed message (without its
    /// sync tail) to `out`, which must hold no more than `limit` bytes
    /// after.
    pub fn inflate(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), InflateError> {
        let inflater = self
            .inflater
            .get_or_insert_with(|| Decompress::new_with_window_bits(false, 15));
        inflater.reset(false);
        let start = out.len();
        for part in [input, &SYNC_TAIL[..]] {
            let mut consumed = 0;
            loop {
                if out.len() == out.capacity() {
                    let produced = out.len() - start;
                    if produced >= limit {
                        // Full at the limit with input left: one byte more
                        // would pass it (checked below with a spare byte).
                        out.reserve_exact(1);
                    } else {
                        // `limit` may be usize::MAX (no limit to speak of).
                        let room = (limit - produced).saturating_add(1);
                        let step = produced.max(INFLATE_STEP).min(room);
                        out.reserve_exact(step);
                    }
                }
                let before_in = inflater.total_in();
                let before_out = out.len();
                let status = inflater
                    .decompress_vec(&part[consumed..], out, FlushDecompress::Sync)
                    .map_err(|_| InflateError::Corrupt)?;
                consumed += (inflater.total_in() - before_in) as usize;
                if out.len() - start > limit {
                    return Err(InflateError::TooBig);
                }
                let progressed = inflater.total_in() != before_in || out.len() != before_out;
                if status == Status::StreamEnd {
                    // A final block: nothing after it counts (the tail
                    // we append is the only thing allowed there).
                    return Ok(());
                }
                if consumed == part.len() && out.len() < out.capacity() {
                    break;
                }
                if !progressed && out.len() < out.capacity() {
                    // Input left that the inflater will not take.
                    return Err(InflateError::Corrupt);
                }
            }
        }
        Ok(())
    }

    /// Appends the compressed form of `input` (without the sync tail) to
    /// `out`, with a window of `window_bits` (9 to 15). Returns whether it
    /// is smaller than `input`; if not, `out` is left as it was, and the
    /// message is better sent as it is.
    pub fn deflate(&mut self, window_bits: u8, input: &[u8], out: &mut Vec<u8>) -> bool {
        let window_bits = window_bits.clamp(9, 15);
        let deflater = self.deflaters[usize::from(window_bits - 9)].get_or_insert_with(|| {
            Compress::new_with_window_bits(Compression::default(), false, window_bits)
        });
        deflater.reset();
        let start = out.len();
        // Room for the worst case (stored blocks) in one go, usually.
        out.reserve(input.len() + input.len() / 64 + 16);
        let mut consumed = 0;
        loop {
            let before_in = deflater.total_in();
            if deflater
                .compress_vec(&input[consumed..], out, FlushCompress::Sync)
                .is_err()
            {
                out.truncate(start);
                return false;
            }
            consumed += (deflater.total_in() - before_in) as usize;
            if consumed == input.len() && out.len() < out.capacity() {
                break;
            }
            out.reserve(64 + input.len() - consumed);
        }
        if out[start..].ends_with(&SYNC_TAIL) {
            out.truncate(out.len() - SYNC_TAIL.len());
        }
        if out.len() - start >= input.len() {
            out.truncate(start);
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(codec: &mut Streams, window: u8, msg: &[u8]) -> Vec<u8> {
        let mut z = Vec::new();
        if !codec.deflate(window, msg, &mut z) {
            return msg.to_vec();
        }
        assert!(z.len() < msg.len());
        let mut back = Vec::new();
        codec.inflate(&z, &mut back, msg.len()).unwrap();
        back
    }

    #[test]
    fn messages_round_trip_at_every_window() {
        let mut codec = Streams::default();
        let text: Vec<u8> = b"the quick brown fox jumps over the lazy dog; "
            .iter()
            .cycle()
            .take(100_000)
            .copied()
            .collect();
        for window in 9..=15 {
            assert_eq!(round_trip(&mut codec, window, &text), text);
            assert_eq!(
                round_trip(&mut codec, window, b"hello hello hello hello"),
                b"hello hello hello hello"
            );
        }
    }

    #[test]
    fn incompressible_input_is_left_alone() {
        let mut codec = Streams::default();
        let mut out = vec![1, 2, 3];
        assert!(!codec.deflate(15, b"ab", &mut out));
        assert_eq!(out, [1, 2, 3]);
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        assert!(!codec.deflate(15, &noise, &mut out));
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn rfc7692_section_7_2_3_1_hello() {
        // "Hello" compressed, as in RFC 7692 §7.2.3.1.
        let mut codec = Streams::default();
        let mut out = Vec::new();
        codec
            .inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &mut out, 100)
            .unwrap();
        assert_eq!(out, b"Hello");
        // With a final block (BFINAL set), §7.2.3.4 style.
        let mut out = Vec::new();
        codec
            .inflate(&[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &mut out, 100)
            .unwrap();
        assert_eq!(out, b"Hello");
        // Uncompressed (stored) block, §7.2.3.3.
        let mut out = Vec::new();
        codec
            .inflate(
                &[
                    0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
                ],
                &mut out,
                100,
            )
            .unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let mut codec = Streams::default();
        let zeros = vec![0u8; 8 << 20];
        let mut z = Vec::new();
        assert!(codec.deflate(15, &zeros, &mut z));
        assert!(z.len() < 16 * 1024, "{}", z.len());
        let mut out = Vec::new();
        assert_eq!(
            codec.inflate(&z, &mut out, 1 << 20),
            Err(InflateError::TooBig)
        );
        assert!(out.capacity() <= (1 << 20) + 1, "{}", out.capacity());
        // Exactly at the limit is fine.
        let mut out = Vec::new();
        codec.inflate(&z, &mut out, 8 << 20).unwrap();
        assert_eq!(out.len(), 8 << 20);
    }

    #[test]
    fn no_limit_at_all_is_a_limit_too() {
        // A --max-message of u64::MAX: the growth step must not overflow
        // (a fuzzed connection found it).
        let mut codec = Streams::default();
        let mut z = Vec::new();
        assert!(codec.deflate(15, &[b'x'; 100_000], &mut z));
        let mut out = Vec::new();
        codec.inflate(&z, &mut out, usize::MAX).unwrap();
        assert_eq!(out, vec![b'x'; 100_000]);
    }

    #[test]
    fn garbage_is_refused_and_the_codec_recovers() {
        let mut codec = Streams::default();
        let mut out = Vec::new();
        assert_eq!(
            codec.inflate(&[0xff; 64], &mut out, 1000),
            Err(InflateError::Corrupt)
        );
        assert_eq!(round_trip(&mut codec, 15, &[b'a'; 300]), vec![b'a'; 300]);
    }
}
