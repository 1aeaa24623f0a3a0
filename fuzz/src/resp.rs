//! The check behind the `resp_decoder` fuzz target: arbitrary bytes, in
//! arbitrary pieces, into the bridge's RESP2 decoder.
//!
//! Not part of `lib.rs` (which depends on rookery without features): the
//! fuzz target and rookery's `tests/cluster.rs` include this file with
//! `#[path]`. It depends on nothing but `rookery` (feature `redis`) and `std`.
//!
//! Layout: byte 0 seeds the piece sizes; the rest is what Redis sent.
//! Invariants: no panic; a reply never claims more bytes than it was given;
//! decoding a growing buffer gives the same replies as decoding it whole
//! (the decoder is incremental: `Ok(None)` only ever means "more bytes"),
//! the bytes of an oversized bulk string it says to skip being discarded
//! as they come, as the bridge does; the buffer a caller must keep stays
//! under `max_reply`.

use rookery::cluster::resp::{Decoder, Reply};

/// The bulk limit used: small, so the limit paths are reached.
const MAX_BULK: usize = 512;

/// Decodes `data` whole, then again in pieces, and compares.
pub fn resp_decoder(data: &[u8]) {
    let Some((&seed, bytes)) = data.split_first() else {
        return;
    };
    let decoder = Decoder::new(MAX_BULK);
    let whole = decode_all(&decoder, bytes, &mut |_| bytes.len());
    let mut state = u32::from(seed) | 0x100;
    let pieces = decode_all(&decoder, bytes, &mut |left| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        1 + (state as usize) % left.max(1)
    });
    assert_eq!(whole, pieces, "pieces change the replies");
}

/// Feeds `bytes` in pieces of `piece(left)` bytes; returns the replies and
/// the error, if any, that ended it.
fn decode_all(
    decoder: &Decoder,
    bytes: &[u8],
    piece: &mut dyn FnMut(usize) -> usize,
) -> (Vec<Reply>, Option<rookery::cluster::resp::RespError>) {
    let mut buf = Vec::new();
    let mut replies = Vec::new();
    let mut fed = 0;
    let mut skip = 0usize;
    loop {
        loop {
            match decoder.decode(&buf) {
                Ok(Some(got)) => {
                    let used = got.used;
                    assert!(
                        used > 0 && used <= buf.len(),
                        "claimed {used} of {}",
                        buf.len()
                    );
                    let now = got.skip.min(buf.len() - used);
                    buf.drain(..used + now);
                    skip = got.skip - now;
                    replies.push(got.reply);
                }
                Ok(None) => break,
                Err(e) => return (replies, Some(e)),
            }
        }
        assert!(buf.len() <= decoder.max_reply(), "kept {} bytes", buf.len());
        if fed == bytes.len() {
            return (replies, None);
        }
        let n = piece(bytes.len() - fed).min(bytes.len() - fed);
        let dropped = skip.min(n);
        skip -= dropped;
        buf.extend_from_slice(&bytes[fed + dropped..fed + n]);
        fed += n;
    }
}
