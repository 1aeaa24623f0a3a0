//! The compressed copy of the broadcast batch.
//!
//! The core gathers consecutive broadcasts (or publications to one topic)
//! as plain frames in one buffer and writes it to each member with one
//! `sendmsg` (see `Core::flush_batch`). Members that negotiated
//! permessage-deflate get the same frames compressed: made here from the
//! plain batch, frame by frame, once per batch and only when the first such
//! member is written to, so a batch that reaches nobody who compresses costs
//! no compression at all, and one that reaches many costs it once.

use crate::proto::deflate::Codec;
use crate::proto::frame::split_server_frame;

/// The compressed frames of a batch's first `covered` plain bytes.
#[derive(Debug, Default)]
pub(crate) struct DeflatedBatch {
    bytes: Vec<u8>,
    /// Plain bytes compressed so far (always a frame boundary).
    covered: usize,
    /// For each frame: where it ends in the plain batch, and in `bytes`.
    marks: Vec<(usize, usize)>,
}

/// Compressed output kept for the next batch; a larger buffer is freed.
const KEEP: usize = 256 * 1024;

impl DeflatedBatch {
    /// The compressed frames of `plain` from plain offset `from` (a frame
    /// boundary, as every offset the core keeps is), compressing what is new
    /// in `plain` first.
    pub(crate) fn since(&mut self, codec: &mut Codec, plain: &[u8], from: usize) -> &[u8] {
        while self.covered < plain.len() {
            let rest = &plain[self.covered..];
            let len = match split_server_frame(rest) {
                Some((_, header_len, payload_len)) => (header_len + payload_len).min(rest.len()),
                // Not a frame of ours (cannot happen): pass it on as it is.
                None => rest.len(),
            };
            codec.compress_frame(&rest[..len], &mut self.bytes);
            self.covered += len;
            self.marks.push((self.covered, self.bytes.len()));
        }
        let start = match from {
            0 => 0,
            _ => self
                .marks
                .binary_search_by_key(&from, |&(plain_end, _)| plain_end)
                .map_or(self.bytes.len(), |i| self.marks[i].1),
        };
        &self.bytes[start..]
    }

    /// Forgets the batch, once it has been written.
    pub(crate) fn clear(&mut self) {
        self.covered = 0;
        self.marks.clear();
        if self.bytes.capacity() > KEEP {
            self.bytes = Vec::new();
            self.marks = Vec::new();
        } else {
            self.bytes.clear();
        }
    }
}
