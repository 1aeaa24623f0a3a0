//! permessage-deflate (RFC 7692): what the connection needs to compress
//! and inflate messages, with memory that does not grow per connection.
//!
//! - [`negotiate`] reads the client's offers (`offer`, feature `deflate`)
//!   and gives the [`Agreement`] the `101` answers with;
//! - [`Codec`] is what the loop hands a connection when it reads or sends:
//!   one decompressor and the compressors (`codec`, feature `deflate`),
//!   reset for every message, and one output buffer, for every connection of
//!   the loop. A connection keeps only the window size it agreed to.
//!
//! The same calls exist in every build, so the connection has no feature
//! switches of its own: built without the feature, no offer is ever taken,
//! and the codec is empty. See docs/compression.md.

use std::rc::Rc;

#[cfg(feature = "deflate")]
#[cfg_attr(docsrs, doc(cfg(feature = "deflate")))]
pub mod codec;
#[cfg(feature = "deflate")]
#[cfg_attr(docsrs, doc(cfg(feature = "deflate")))]
pub mod offer;

/// Messages shorter than this are sent uncompressed even on a connection
/// that negotiated compression (RFC 7692 lets the sender choose per
/// message): chat lines of 64 bytes, each compressed alone, saved a median
/// of 1 byte, and one in ten did not shrink at all; from 96 bytes every
/// line shrank, by 13 % or more (docs/performance.md, "Compression").
pub const COMPRESS_MIN: usize = 96;

/// The window of the compressed variant of a shared frame or broadcast:
/// what every client gets that did not ask for a smaller one (browsers
/// never do). A connection that did gets shared frames uncompressed.
pub const SHARED_WINDOW_BITS: u8 = 15;

/// What the server agreed to for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreement {
    /// The window the server compresses with, in bits (9 to 15).
    pub window_bits: u8,
    /// Whether the offer named `server_max_window_bits`, so the answer must
    /// confirm it.
    pub(crate) window_named: bool,
}

impl Agreement {
    /// Appends the `Sec-WebSocket-Extensions` value of the server's answer:
    /// no context takeover either way, and the window if the client named one.
    pub fn write_answer(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(
            b"permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        );
        if self.window_named {
            out.extend_from_slice(b"; server_max_window_bits=");
            if self.window_bits >= 10 {
                out.push(b'1');
            }
            out.push(b'0' + self.window_bits % 10);
        }
    }
}

/// The permessage-deflate offer of `request` to take, if any (never, when
/// built without feature `deflate`).
pub fn negotiate(request: &crate::proto::http::Request) -> Option<Agreement> {
    #[cfg(feature = "deflate")]
    return offer::negotiate(request);
    #[cfg(not(feature = "deflate"))]
    {
        let _ = request;
        None
    }
}

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// The inflated message would pass the size limit.
    TooBig,
    /// The data is not a valid DEFLATE stream (or refers to a window the
    /// client agreed not to keep).
    Corrupt,
}

/// The loop's compression state, handed to every connection that needs it.
#[derive(Debug, Default)]
pub struct Codec {
    #[cfg(feature = "deflate")]
    streams: codec::Streams,
    /// The last compressed message ([`Codec::compress`]).
    #[cfg(feature = "deflate")]
    out: Vec<u8>,
    /// Payload bytes handed to the compressor so far.
    #[cfg(feature = "deflate")]
    compressed: u64,
}

/// Compressed output kept between messages; a larger buffer is freed.
#[cfg(feature = "deflate")]
const OUT_KEEP: usize = 64 * 1024;

impl Codec {
    /// Appends the inflated form of one compressed message (without its
    /// sync tail) to `out`, which must hold no more than `limit` bytes after.
    pub fn inflate(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), InflateError> {
        #[cfg(feature = "deflate")]
        return self.streams.inflate(input, out, limit);
        #[cfg(not(feature = "deflate"))]
        {
            let _ = (input, out, limit);
            Err(InflateError::Corrupt)
        }
    }

    /// `payload` compressed with a window of `window_bits`, without the sync
    /// tail, if it is long enough to be worth it ([`COMPRESS_MIN`]) and came
    /// out smaller. Valid until the next call.
    pub fn compress(&mut self, window_bits: u8, payload: &[u8]) -> Option<&[u8]> {
        #[cfg(feature = "deflate")]
        {
            if payload.len() < COMPRESS_MIN {
                return None;
            }
            self.compressed += payload.len() as u64;
            if self.out.capacity() > OUT_KEEP {
                self.out = Vec::new();
            }
            self.out.clear();
            self.streams
                .deflate(window_bits, payload, &mut self.out)
                .then_some(&self.out[..])
        }
        #[cfg(not(feature = "deflate"))]
        {
            let _ = (window_bits, payload);
            None
        }
    }

    /// Payload bytes handed to the compressor since the codec was made
    /// (whether or not they came out smaller): what compressing has cost,
    /// e.g. to check that a message sent to many is compressed once.
    pub fn bytes_compressed(&self) -> u64 {
        #[cfg(feature = "deflate")]
        return self.compressed;
        #[cfg(not(feature = "deflate"))]
        0
    }

    /// Appends `frame` (one unfragmented data frame of ours, as
    /// `frame::encode_frame` writes it) to `out` compressed
    /// with the shared window, RSV1 set, or as it is when compression does
    /// not pay (or it is a control frame).
    pub fn compress_frame(&mut self, frame: &[u8], out: &mut Vec<u8>) {
        use crate::proto::frame::{split_server_frame, ServerHeader};
        if let Some((opcode, header_len, payload_len)) = split_server_frame(frame) {
            if !opcode.is_control() && header_len + payload_len == frame.len() {
                if let Some(z) = self.compress(SHARED_WINDOW_BITS, &frame[header_len..]) {
                    let header = ServerHeader::new(true, opcode, z.len()).with_rsv1();
                    out.extend_from_slice(header.as_bytes());
                    out.extend_from_slice(z);
                    return;
                }
            }
        }
        out.extend_from_slice(frame);
    }

    /// A shared frame's compressed variant, as one buffer to share, or
    /// `None` if it is better sent as it is.
    pub(crate) fn compress_shared(&mut self, frame: &[u8]) -> Option<Rc<[u8]>> {
        let mut out = Vec::with_capacity(frame.len());
        self.compress_frame(frame, &mut out);
        (out.len() < frame.len()).then(|| out.into())
    }
}
