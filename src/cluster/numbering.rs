//! Offsets and history that are the cluster's (SPEC §12 with `--redis`):
//! one Lua script per numbered publication, run atomically by Redis, takes
//! the topic's next offset (`INCR PREFIX:seq:T`), appends the message to
//! the topic's stream (`XADD PREFIX:log:T MAXLEN history`, the message's
//! id being `OFFSET-0`) and publishes it with the topic's epoch and its
//! offset, so every node sees the same numbers in the same order. The
//! epoch (`PREFIX:epoch:T`) is made by whichever script first finds none
//! (a new topic, or Redis's data lost): it is the candidate the node sends
//! along, and the counter and the stream start again with it. A second
//! script reads a topic's log: its epoch, its latest offset and the
//! messages its stream keeps, in one flat array.
//!
//! A numbered publication travels as the bridge's envelope version 2:
//! `[2][flags][origin: 8 bytes BE][seq: 8 bytes BE][topic len][topic]EPOCH OFFSET [payload]`
//! (the script writes the epoch and the offset, in decimal, each followed
//! by a space; `seq` counts the origin's numbered publications, so that it
//! can tell which of its own it delivered itself after all: those Redis
//! was too slow to number, [`unnumbered`]).

use super::envelope::{FLAG_BINARY, ORIGIN_DELIVERED};
use super::resp::{encode_command, Reply};
use crate::server::{Epoch, Numbered, TopicLog};

/// The largest offset taken from Redis: Lua's numbers are exact up to
/// 2^53, and a larger one (from a Redis that is not ours) could not be
/// counted on from without overflowing.
const MAX_OFFSET: u64 = 1 << 53;

/// The envelope's first byte for a numbered message.
pub(super) const ENVELOPE_V2: u8 = 2;

/// KEYS: counter, epoch, stream. ARGV: channel, candidate epoch, messages
/// kept, envelope head, flags, payload. Returns the offset.
const PUBLISH: &[u8] = b"local e = redis.call('GET', KEYS[2])
if not e then
  e = ARGV[2]
  redis.call('SET', KEYS[2], e)
  redis.call('DEL', KEYS[1], KEYS[3])
end
local n = redis.call('INCR', KEYS[1])
if tonumber(ARGV[3]) > 0 then
  redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[3], n .. '-0', 'f', ARGV[5], 'p', ARGV[6])
end
redis.call('PUBLISH', ARGV[1], ARGV[4] .. e .. ' ' .. n .. ' ' .. ARGV[6])
return n";

/// KEYS: counter, epoch, stream. ARGV: candidate epoch, most messages.
/// Returns `[epoch, latest offset, (offset, flags, payload)...]`, oldest
/// first.
const READ: &[u8] = b"local e = redis.call('GET', KEYS[2])
if not e then
  e = ARGV[1]
  redis.call('SET', KEYS[2], e)
  redis.call('DEL', KEYS[1], KEYS[3])
end
local out = {e, tonumber(redis.call('GET', KEYS[1]) or '0')}
if tonumber(ARGV[2]) > 0 then
  local got = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', ARGV[2])
  for i = #got, 1, -1 do
    local id, fields = got[i][1], got[i][2]
    local f, p = '', ''
    for j = 1, #fields, 2 do
      if fields[j] == 'f' then f = fields[j + 1] elseif fields[j] == 'p' then p = fields[j + 1] end
    end
    table.insert(out, tonumber((string.gsub(id, '-.*', ''))))
    table.insert(out, f)
    table.insert(out, p)
  end
end
return out";

/// The three keys of `topic`: its counter, its epoch and its stream.
fn keys(prefix: &str, topic: &str) -> [Vec<u8>; 3] {
    ["seq", "epoch", "log"].map(|k| format!("{prefix}:{k}:{topic}").into_bytes())
}

/// The `EVAL` that numbers, keeps (the last `keep`) and publishes one
/// message; `delivered` marks one its origin has delivered itself.
#[allow(clippy::too_many_arguments)]
pub(super) fn publish_command(
    prefix: &str,
    channel: &[u8],
    (node, seq): (u64, u64),
    topic: &str,
    binary: bool,
    delivered: bool,
    payload: &[u8],
    keep: usize,
) -> Option<Vec<u8>> {
    let topic_len = u8::try_from(topic.len()).ok()?;
    let mut flags = 0;
    if binary {
        flags |= FLAG_BINARY;
    }
    if delivered {
        flags |= ORIGIN_DELIVERED;
    }
    let mut head = Vec::with_capacity(19 + topic.len());
    head.push(ENVELOPE_V2);
    head.push(flags);
    head.extend_from_slice(&node.to_be_bytes());
    head.extend_from_slice(&seq.to_be_bytes());
    head.push(topic_len);
    head.extend_from_slice(topic.as_bytes());
    let [seq, epoch, log] = keys(prefix, topic);
    let candidate = Epoch::random();
    let keep = keep.to_string();
    let mut cmd = Vec::with_capacity(PUBLISH.len() + payload.len() + 128);
    encode_command(
        &mut cmd,
        &[
            b"EVAL",
            PUBLISH,
            b"3",
            &seq,
            &epoch,
            &log,
            channel,
            candidate.as_str().as_bytes(),
            keep.as_bytes(),
            &head,
            &[flags],
            payload,
        ],
    );
    Some(cmd)
}

/// The `EVAL` that reads `topic`'s log, at most `count` messages.
pub(super) fn read_command(prefix: &str, topic: &str, count: usize) -> Vec<u8> {
    let [seq, epoch, log] = keys(prefix, topic);
    let candidate = Epoch::random();
    let count = count.to_string();
    let mut cmd = Vec::with_capacity(READ.len() + 128);
    encode_command(
        &mut cmd,
        &[
            b"EVAL",
            READ,
            b"3",
            &seq,
            &epoch,
            &log,
            candidate.as_str().as_bytes(),
            count.as_bytes(),
        ],
    );
    cmd
}

/// Reads an envelope version 2 (see the module's doc). `None` for what its
/// origin (this `node`) delivered itself, marked so or with a `seq` that
/// `delivered_here` names, and for anything malformed.
pub(super) fn open_numbered(
    data: &[u8],
    node: u64,
    delivered_here: impl Fn(u64) -> bool,
) -> Option<Numbered> {
    let (&version, rest) = data.split_first()?;
    let (&flags, rest) = rest.split_first()?;
    if version != ENVELOPE_V2 || rest.len() < 17 {
        return None;
    }
    let (origin, rest) = rest.split_at(8);
    let (seq, rest) = rest.split_at(8);
    let seq = u64::from_be_bytes(seq.try_into().ok()?);
    if u64::from_be_bytes(origin.try_into().ok()?) == node
        && (flags & ORIGIN_DELIVERED != 0 || delivered_here(seq))
    {
        return None;
    }
    let (&len, rest) = rest.split_first()?;
    let (topic, rest) = rest.split_at_checked(usize::from(len))?;
    let topic = std::str::from_utf8(topic).ok()?.to_string();
    let (epoch, rest) = split_word(rest)?;
    let (offset, payload) = split_word(rest)?;
    let epoch = Epoch::parse(std::str::from_utf8(epoch).ok()?)?;
    let offset = std::str::from_utf8(offset)
        .ok()?
        .parse()
        .ok()
        .filter(|&o: &u64| o <= MAX_OFFSET)?;
    let binary = flags & FLAG_BINARY != 0;
    if !binary {
        std::str::from_utf8(payload).ok()?;
    }
    Some(Numbered {
        topic,
        epoch,
        offset,
        binary,
        payload: payload.to_vec(),
    })
}

/// A numbered publication of this node's, read back from its command.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Unnumbered {
    pub(super) seq: u64,
    pub(super) topic: String,
    pub(super) binary: bool,
    pub(super) payload: Vec<u8>,
}

/// What [`publish_command`] made `cmd` of, if it did and the message is
/// not marked as delivered by its origin: to deliver it here after all
/// when Redis does not number it in time.
pub(super) fn unnumbered(cmd: &[u8]) -> Option<Unnumbered> {
    let decoder = super::resp::Decoder::new(cmd.len());
    let Reply::Array(Some(args)) = decoder.decode(cmd).ok()??.reply else {
        return None;
    };
    let args = <[Reply; 12]>::try_from(args).ok()?;
    let bulk = |i: usize| match &args[i] {
        Reply::Bulk(Some(b)) => Some(b.as_slice()),
        _ => None,
    };
    let (eval, head, flags, payload) = (bulk(0)?, bulk(9)?, *bulk(10)?.first()?, bulk(11)?);
    if eval != b"EVAL" || head.first() != Some(&ENVELOPE_V2) || flags & ORIGIN_DELIVERED != 0 {
        return None;
    }
    let seq = u64::from_be_bytes(head.get(10..18)?.try_into().ok()?);
    let topic = std::str::from_utf8(head.get(19..)?).ok()?.to_string();
    Some(Unnumbered {
        seq,
        topic,
        binary: flags & FLAG_BINARY != 0,
        payload: payload.to_vec(),
    })
}

/// How many ranges of taken-back publications [`TakenBack`] remembers.
const RANGES_KEPT: usize = 16;

/// This node's numbered publications that it delivered itself after all
/// ([`unnumbered`]), by `seq`: skipped if Redis numbers them later.
#[derive(Debug, Default)]
pub(super) struct TakenBack {
    /// `(first, last)` seqs, oldest first, at most [`RANGES_KEPT`].
    ranges: std::collections::VecDeque<(u64, u64)>,
    /// The highest seq taken back so far.
    upto: u64,
}

impl TakenBack {
    /// Whether the publication `seq` was taken back.
    pub(super) fn contains(&self, seq: u64) -> bool {
        self.ranges.iter().any(|&(a, b)| (a..=b).contains(&seq))
    }

    /// Takes back every numbered publication among `cmds` (oldest first)
    /// not taken back before, and returns them to deliver here.
    pub(super) fn take_back<'a>(
        &mut self,
        cmds: impl Iterator<Item = &'a Vec<u8>>,
    ) -> Vec<Unnumbered> {
        let back: Vec<Unnumbered> = cmds
            .filter_map(|cmd| unnumbered(cmd))
            .filter(|u| u.seq > self.upto)
            .collect();
        if let (Some(first), Some(last)) = (back.first(), back.last()) {
            if self.ranges.len() == RANGES_KEPT {
                self.ranges.pop_front();
            }
            self.ranges.push_back((first.seq, last.seq));
            self.upto = last.seq;
        }
        back
    }
}

/// The bytes before the first space, and those after it.
fn split_word(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = data.iter().take(24).position(|&b| b == b' ')?;
    Some((&data[..at], &data[at + 1..]))
}

/// The answer to [`read_command`], if it is one.
pub(super) fn parse_log(reply: Reply) -> Option<TopicLog> {
    let Reply::Array(Some(items)) = reply else {
        return None;
    };
    let mut items = items.into_iter();
    let epoch = match items.next()? {
        Reply::Bulk(Some(e)) => Epoch::parse(std::str::from_utf8(&e).ok()?)?,
        _ => return None,
    };
    let last = match items.next()? {
        Reply::Integer(n) => u64::try_from(n).ok().filter(|&n| n <= MAX_OFFSET)?,
        _ => return None,
    };
    let mut entries = Vec::new();
    loop {
        let offset = match items.next() {
            None => break,
            Some(Reply::Integer(n)) => u64::try_from(n).ok().filter(|&n| n <= MAX_OFFSET)?,
            Some(_) => return None,
        };
        let (Some(Reply::Bulk(Some(flags))), Some(Reply::Bulk(Some(payload)))) =
            (items.next(), items.next())
        else {
            return None;
        };
        let binary = flags.first().is_some_and(|f| f & FLAG_BINARY != 0);
        if !binary && std::str::from_utf8(&payload).is_err() {
            return None;
        }
        entries.push((offset, binary, payload));
    }
    Some(TopicLog {
        epoch,
        last,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::resp::Decoder;

    fn args(cmd: &[u8]) -> Vec<Vec<u8>> {
        let reply = Decoder::new(1 << 20).decode(cmd).unwrap().unwrap().reply;
        let Reply::Array(Some(items)) = reply else {
            panic!("{reply:?}")
        };
        items
            .into_iter()
            .map(|i| match i {
                Reply::Bulk(Some(b)) => b,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_numbered_message_opens_as_published_and_its_origin_may_skip_it() {
        let cmd =
            publish_command("rk", b"rk:room:r", (7, 1), "r", true, false, &[0, 1], 5).unwrap();
        let back = unnumbered(&cmd).unwrap();
        assert_eq!((back.seq, back.topic.as_str(), back.binary), (1, "r", true));
        assert_eq!(back.payload, [0, 1]);
        let a = args(&cmd);
        assert_eq!(
            a[3..6],
            [
                b"rk:seq:r".to_vec(),
                b"rk:epoch:r".to_vec(),
                b"rk:log:r".to_vec()
            ]
        );
        assert_eq!(a[8], b"5");
        // What the script publishes: the head, the epoch, the offset.
        let mut data = a[9].clone();
        data.extend_from_slice(b"E1 42 ");
        data.extend_from_slice(&a[11]);
        let got = open_numbered(&data, 7, |_| false).unwrap();
        assert!(
            open_numbered(&data, 7, |seq| seq == 1).is_none(),
            "delivered here after all"
        );
        assert_eq!(
            (
                got.topic.as_str(),
                got.epoch.as_str(),
                got.offset,
                got.binary
            ),
            ("r", "E1", 42, true)
        );
        assert_eq!(got.payload, [0, 1]);
        let cmd = publish_command("rk", b"rk:room:r", (7, 2), "r", false, true, b"hi", 5).unwrap();
        assert!(unnumbered(&cmd).is_none(), "delivered by its origin");
        let a = args(&cmd);
        let mut data = a[9].clone();
        data.extend_from_slice(b"E1 43 hi");
        assert!(
            open_numbered(&data, 7, |_| false).is_none(),
            "delivered by its origin"
        );
        assert_eq!(
            open_numbered(&data, 8, |_| false).unwrap().message(),
            crate::Message::Text("hi")
        );
        for bad in [
            &b"E1 x hi"[..],
            b"E1 43",
            b"E\xff 1 x",
            b"E!1 2 x",
            b"E1 18446744073709551615 x",
        ] {
            let mut data = a[9].clone();
            data.extend_from_slice(bad);
            assert!(open_numbered(&data, 8, |_| false).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn a_log_is_read_from_its_flat_array() {
        let bulk = |b: &[u8]| Reply::Bulk(Some(b.to_vec()));
        let reply = Reply::Array(Some(vec![
            bulk(b"E2"),
            Reply::Integer(9),
            Reply::Integer(8),
            bulk(&[0]),
            bulk(b"eight"),
            Reply::Integer(9),
            bulk(&[FLAG_BINARY]),
            bulk(&[0xff]),
        ]));
        let log = parse_log(reply).unwrap();
        assert_eq!((log.epoch.as_str(), log.last), ("E2", 9));
        let got: Vec<_> = log.messages().collect();
        assert_eq!(got[0], (8, crate::Message::Text("eight")));
        assert_eq!(got[1], (9, crate::Message::Binary(&[0xff])));
        let torn = Reply::Array(Some(vec![
            bulk(b"E2"),
            Reply::Integer(9),
            Reply::Integer(8),
        ]));
        assert!(parse_log(torn).is_none());
        let not_utf8 = Reply::Array(Some(vec![
            bulk(b"E2"),
            Reply::Integer(1),
            Reply::Integer(1),
            bulk(&[0]),
            bulk(&[0xff]),
        ]));
        assert!(parse_log(not_utf8).is_none());
        let too_far = Reply::Array(Some(vec![bulk(b"E2"), Reply::Integer(i64::MAX)]));
        assert!(parse_log(too_far).is_none(), "an offset past 2^53");
    }
}
