//! The bridge's envelope around a message on a Redis channel (version,
//! flags, the origin node, the topic, the payload), the `pmessage` pushes
//! that carry one, and the node id that lets a node skip its own.

use super::resp::Reply;
use crate::proto::frame::OpCode;

/// The envelope's bytes besides the payload, at most: version, flags,
/// origin, the room name's length and a 255-byte room name, and for a
/// numbered message its count, epoch and offset.
pub(super) const ENVELOPE_MAX: usize = 11 + 255 + NUMBERS_MAX;
/// A numbered envelope's count of its origin's numbered publications (8
/// bytes), epoch and offset (16 characters, 20 digits and two spaces).
const NUMBERS_MAX: usize = 8 + 16 + 20 + 2;
/// The envelope's first byte (and version).
pub(super) const ENVELOPE_V1: u8 = 1;
/// Envelope flag: the payload is binary.
pub(super) const FLAG_BINARY: u8 = 1;
/// Envelope flag: its origin delivered it to its own members itself (it
/// was published while Redis was away): the origin skips it.
pub(super) const ORIGIN_DELIVERED: u8 = 2;

/// A message from another node, to be published locally.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub topic: String,
    pub opcode: OpCode,
    pub payload: Vec<u8>,
}

/// What a `pmessage` push carries.
pub(super) enum Push<'a> {
    /// The envelope.
    Data(&'a [u8]),
    /// An envelope of this many bytes, over the limit, skipped unread.
    Oversized(usize),
}

/// The envelope of a `pmessage` push (`[pmessage, pattern, channel, data]`)
/// whose channel has our prefix.
pub(super) fn pmessage(reply: &Reply, prefix_len: usize) -> Option<Push<'_>> {
    let Reply::Array(Some(items)) = reply else {
        return None;
    };
    match items.as_slice() {
        [Reply::Bulk(Some(kind)), _, Reply::Bulk(Some(channel)), data]
            if kind == b"pmessage" && channel.len() >= prefix_len =>
        {
            match data {
                Reply::Bulk(Some(data)) => Some(Push::Data(data)),
                Reply::Oversized(n) => Some(Push::Oversized(*n)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Reads an envelope: `[1][flags][origin: 8 bytes BE][topic len][topic][payload]`.
/// `None` for our own messages and for anything malformed.
pub(super) fn open_envelope(data: &[u8], node: u64) -> Option<Incoming> {
    let (&version, rest) = data.split_first()?;
    let (&flags, rest) = rest.split_first()?;
    if version != ENVELOPE_V1 || rest.len() < 9 {
        return None;
    }
    let (origin, rest) = rest.split_at(8);
    if u64::from_be_bytes(origin.try_into().ok()?) == node {
        return None;
    }
    let (&len, rest) = rest.split_first()?;
    let (topic, payload) = rest.split_at_checked(usize::from(len))?;
    let topic = std::str::from_utf8(topic).ok()?.to_string();
    let opcode = if flags & FLAG_BINARY != 0 {
        OpCode::Binary
    } else {
        std::str::from_utf8(payload).ok()?;
        OpCode::Text
    };
    Some(Incoming {
        topic,
        opcode,
        payload: payload.to_vec(),
    })
}

/// A node id unlikely to repeat: the clock, the process id and a stack
/// address, mixed (splitmix64).
pub(super) fn node_id() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let local = 0u8;
    let mut z = t ^ (u64::from(std::process::id()) << 32) ^ (&local as *const u8 as u64);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
