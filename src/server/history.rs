//! [`History`]: the last messages of a channel (a chat room, a topic), each
//! encoded once when it is kept, replayed to a newcomer at the pace of its
//! socket.
//!
//! A message is kept as a [`SharedFrame`]: its frame is made once, when it
//! is pushed, and every newcomer's queue points at that one buffer; with
//! permessage-deflate its compressed variant is made once too, the first
//! time a connection that takes it is sent it, and kept beside it. Replay
//! goes through [`Context::send_paced`], so it never queues more than the
//! backlog limit plus one message for a connection, whatever the history
//! holds. Each message has an offset, counted from 1 for the first one
//! ever pushed, and the history an [`Epoch`], new for each history made:
//! a client that knows a position ([`Since`]: an epoch and the offset of
//! the last message it got) can be given exactly what came after it
//! ([`History::after`], [`History::replay_after`]), or told that it
//! cannot.

use std::collections::VecDeque;
use std::fmt;

use crate::proto::connection::{Message, SendError, SharedFrame};

use super::handler::Context;
use super::slab::ConnId;

/// The last `capacity` messages pushed, oldest first, with their offsets.
///
/// What a topic needs so that a client can come back after a drop and get
/// exactly what it missed, as the chat's `rookery.v1` does: keep each
/// publication, tell the client the epoch and offsets, and on its return
/// give it what came after its position, or say there was a gap.
///
/// ```
/// use rookery::server::{History, Since};
/// use rookery::{ConnId, Context, Handler, Message};
///
/// /// One topic, `news`, whose subscribers may resume with `?since=E:N`.
/// struct News {
///     history: History,
///     joining: Option<Since>,
/// }
///
/// impl Handler for News {
///     fn on_upgrade(&mut self, _: &mut Context<'_>, _: ConnId, req: &rookery::Request) -> rookery::Upgrade {
///         let since = req.target().split_once("?since=").map(|(_, s)| s.parse::<Since>());
///         match since {
///             Some(Err(_)) => rookery::Upgrade::reject(400),
///             Some(Ok(since)) => {
///                 self.joining = Some(since);
///                 rookery::Upgrade::accept()
///             }
///             None => rookery::Upgrade::accept(),
///         }
///     }
///
///     fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
///         let position = format!("{}:{}", self.history.epoch(), self.history.last_offset());
///         let _ = ctx.send_text(conn, &position);
///         match self.joining.take().map(|since| self.history.replay_after(ctx, conn, &since)) {
///             Some(Ok(Some(missed))) => { let _ = ctx.send_text(conn, &format!("recovered {missed}")); }
///             Some(_) => { let _ = ctx.send_text(conn, "gap"); }
///             None => {}
///         }
///         // Subscribed only now: what is published from here on comes
///         // live, behind the replay, none twice.
///         let _ = ctx.subscribe(conn, "news");
///     }
///
///     fn on_message(&mut self, ctx: &mut Context<'_>, _: ConnId, msg: Message<'_>) {
///         let frame = ctx.prepare_kept(msg);
///         ctx.publish("news", msg);
///         let offset = self.history.push_frame(frame);
///         assert_eq!(offset, self.history.last_offset());
///     }
/// }
///
/// let news = News { history: History::new(100), joining: None };
/// assert_eq!(news.history.last_offset(), 0);
/// ```
#[derive(Debug, Clone)]
pub struct History {
    frames: VecDeque<SharedFrame>,
    capacity: usize,
    /// How many messages were ever pushed: the offset of the latest.
    last: u64,
    epoch: Epoch,
}

impl Default for History {
    fn default() -> History {
        History::new(0)
    }
}

impl History {
    /// An empty history that keeps at most `capacity` messages (0: none),
    /// with a new random epoch.
    pub fn new(capacity: usize) -> History {
        History::with_epoch(capacity, Epoch::random())
    }

    /// An empty history with the given epoch (e.g. the one of another
    /// history kept in step with it).
    pub fn with_epoch(capacity: usize, epoch: Epoch) -> History {
        History {
            frames: VecDeque::new(),
            capacity,
            last: 0,
            epoch,
        }
    }

    /// An empty history of `epoch` whose next message gets offset
    /// `last + 1`: one that takes up a count kept elsewhere (a cluster's,
    /// with the feature `redis`: `Context::publish_numbered`).
    pub fn resumed_at(capacity: usize, epoch: Epoch, last: u64) -> History {
        History {
            last,
            ..History::with_epoch(capacity, epoch)
        }
    }

    /// The epoch: the offsets of this history mean nothing in another.
    pub fn epoch(&self) -> &Epoch {
        &self.epoch
    }

    /// Keeps `msg`, encoded once, forgetting the oldest message if the
    /// history is full. Returns its offset.
    pub fn push(&mut self, msg: Message<'_>) -> u64 {
        self.push_frame(SharedFrame::new(msg))
    }

    /// Keeps a frame already encoded (e.g. the one just broadcast).
    /// Returns its offset (1 for the first message ever pushed).
    pub fn push_frame(&mut self, frame: SharedFrame) -> u64 {
        self.last += 1;
        let offset = self.last;
        if self.capacity == 0 {
            return offset;
        }
        if self.frames.len() >= self.capacity {
            self.frames.pop_front();
        }
        self.frames.push_back(frame);
        offset
    }

    /// Counts a message without keeping it (for a history that keeps
    /// none, where encoding it would be waste). Returns its offset. What
    /// was held is forgotten: it no longer runs up to the latest message.
    pub fn pass(&mut self) -> u64 {
        self.frames.clear();
        self.last += 1;
        self.last
    }

    /// How many messages it holds.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The most messages it keeps.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The offset of the oldest message held (equal to
    /// [`History::next_offset`] when empty).
    pub fn first_offset(&self) -> u64 {
        self.next_offset() - self.frames.len() as u64
    }

    /// The offset the next message pushed will get.
    pub fn next_offset(&self) -> u64 {
        self.last + 1
    }

    /// The offset of the latest message pushed (0: none yet), whether or
    /// not it is still held.
    pub fn last_offset(&self) -> u64 {
        self.last
    }

    /// The messages held, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &SharedFrame> {
        self.frames.iter()
    }

    /// The messages held from offset `offset` on, oldest first (all of them
    /// if `offset` is older than the oldest held).
    pub fn since(&self, offset: u64) -> impl Iterator<Item = &SharedFrame> {
        let skip = offset.saturating_sub(self.first_offset());
        self.frames
            .iter()
            .skip(usize::try_from(skip).unwrap_or(usize::MAX))
    }

    /// Every message after position `since`, oldest first, if this
    /// history can give them all: `since` is of this epoch, not past the
    /// latest message, and nothing after it has been forgotten. `None`
    /// otherwise (a gap: the client cannot be given what it missed).
    pub fn after(&self, since: &Since) -> Option<impl Iterator<Item = &SharedFrame>> {
        let held_from = self.first_offset();
        let whole = since.epoch == self.epoch
            && since.offset <= self.last
            && since.offset.saturating_add(1) >= held_from;
        whole.then(|| self.since(since.offset.saturating_add(1)))
    }

    /// Sends `conn` every message after `since`, paced as
    /// [`History::replay`] does, if [`History::after`] can give them all:
    /// `Ok(Some(how many))`, or `Ok(None)` (a gap: nothing sent).
    pub fn replay_after(
        &self,
        ctx: &mut Context<'_>,
        conn: ConnId,
        since: &Since,
    ) -> Result<Option<usize>, SendError> {
        let Some(frames) = self.after(since) else {
            return Ok(None);
        };
        let mut sent = 0;
        for frame in frames {
            ctx.send_paced(conn, frame)?;
            sent += 1;
        }
        Ok(Some(sent))
    }

    /// Bytes of encoded frames held (uncompressed; a compressed variant,
    /// once made, adds at most as much again).
    pub fn frame_bytes(&self) -> usize {
        self.frames.iter().map(SharedFrame::len).sum()
    }

    /// Sends every message held to `conn`, oldest first, paced by its
    /// socket ([`Context::send_paced`]). Returns how many were handed over.
    pub fn replay(&self, ctx: &mut Context<'_>, conn: ConnId) -> Result<usize, SendError> {
        for frame in &self.frames {
            ctx.send_paced(conn, frame)?;
        }
        Ok(self.frames.len())
    }
}

/// The most characters in an [`Epoch`].
pub const MAX_EPOCH: usize = 16;

/// A history's epoch: 1 to [`MAX_EPOCH`] characters of `A-Z a-z 0-9`, new
/// whenever a count of offsets starts again, so that a position from
/// before is never taken for one of now.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Epoch(Box<str>);

impl Epoch {
    /// A new epoch, 11 random characters (64 bits from the standard
    /// library's randomly keyed hasher, the clock and a process counter:
    /// unpredictable enough that two starts never share one, no crate
    /// needed).
    pub fn random() -> Epoch {
        use std::hash::{BuildHasher, Hasher};
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        hasher.write_u128(nanos);
        hasher.write_u32(std::process::id());
        let mut bits = hasher.finish();
        const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut out = String::with_capacity(11);
        for _ in 0..11 {
            out.push(char::from(DIGITS[(bits % 62) as usize]));
            bits /= 62;
        }
        Epoch(out.into())
    }

    /// The epoch `text` names, if it is one (1 to 16 of `A-Z a-z 0-9`).
    pub fn parse(text: &str) -> Option<Epoch> {
        let valid = (1..=MAX_EPOCH).contains(&text.len())
            && text.bytes().all(|b| b.is_ascii_alphanumeric());
        valid.then(|| Epoch(text.into()))
    }

    /// The epoch as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A client's position in a history: the epoch it knew and the offset of
/// the last message it got (0: none). Written `EPOCH:OFFSET`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Since {
    /// The epoch the offset belongs to.
    pub epoch: Epoch,
    /// The offset of the last message the client got.
    pub offset: u64,
}

/// Why a position could not be read ([`Since`]'s `FromStr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SinceError {
    /// No `:` between epoch and offset.
    NoColon,
    /// The epoch is not 1 to 16 characters of `A-Z a-z 0-9`.
    BadEpoch,
    /// The offset is not a decimal number that fits 64 bits.
    BadOffset,
}

impl fmt::Display for SinceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SinceError::NoColon => "no ':' between epoch and offset",
            SinceError::BadEpoch => "the epoch is not 1 to 16 characters of A-Z a-z 0-9",
            SinceError::BadOffset => "the offset is not a decimal number of 64 bits",
        })
    }
}

impl std::error::Error for SinceError {}

impl std::str::FromStr for Since {
    type Err = SinceError;

    /// `EPOCH:OFFSET`, e.g. `k3Xw9Q:41`.
    fn from_str(text: &str) -> Result<Since, SinceError> {
        let (epoch, offset) = text.split_once(':').ok_or(SinceError::NoColon)?;
        let epoch = Epoch::parse(epoch).ok_or(SinceError::BadEpoch)?;
        // Digits only: `u64::from_str` would take a leading `+`.
        if offset.is_empty() || !offset.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SinceError::BadOffset);
        }
        let offset = offset.parse().map_err(|_| SinceError::BadOffset)?;
        Ok(Since { epoch, offset })
    }
}

impl fmt::Display for Since {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.epoch, self.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payloads<'a>(frames: impl Iterator<Item = &'a SharedFrame>) -> Vec<usize> {
        frames.map(SharedFrame::len).collect()
    }

    #[test]
    fn keeps_the_last_messages_with_their_offsets() {
        let mut h = History::new(3);
        assert_eq!(
            (h.first_offset(), h.next_offset(), h.last_offset()),
            (1, 1, 0)
        );
        for n in 0..5u8 {
            let text = "x".repeat(usize::from(n));
            assert_eq!(h.push(Message::Text(&text)), u64::from(n) + 1);
        }
        // Frames of 2 + 2, 2 + 3 and 2 + 4 bytes: offsets 3, 4 and 5.
        assert_eq!(payloads(h.iter()), [4, 5, 6]);
        assert_eq!((h.first_offset(), h.next_offset(), h.len()), (3, 6, 3));
        assert_eq!(h.last_offset(), 5);
        assert_eq!(payloads(h.since(5)), [6]);
        assert_eq!(payloads(h.since(0)), [4, 5, 6]);
        assert_eq!(payloads(h.since(9)), Vec::<usize>::new());
        assert_eq!(h.frame_bytes(), 15);
    }

    #[test]
    fn a_history_of_nothing_keeps_nothing_but_counts() {
        let mut h = History::new(0);
        assert_eq!(h.push(Message::Binary(b"abc")), 1);
        assert_eq!(h.push(Message::Binary(b"abc")), 2);
        assert_eq!(h.pass(), 3);
        assert!(h.is_empty());
        assert_eq!(h.first_offset(), 4);
        // Nothing is missed from the latest position, so that is whole.
        let now = Since {
            epoch: h.epoch().clone(),
            offset: 3,
        };
        assert_eq!(h.after(&now).map(Iterator::count), Some(0));
        let before = Since {
            epoch: h.epoch().clone(),
            offset: 2,
        };
        assert!(h.after(&before).is_none());
    }

    #[test]
    fn after_gives_everything_after_a_position_or_nothing() {
        let mut h = History::new(3);
        for n in 1..=5u8 {
            h.push(Message::Text(&"x".repeat(usize::from(n))));
        }
        // Held: offsets 3, 4, 5 (frames of 5, 6 and 7 bytes).
        let at = |offset| Since {
            epoch: h.epoch().clone(),
            offset,
        };
        let after = |since: Since| h.after(&since).map(payloads);
        assert_eq!(after(at(2)), Some(vec![5, 6, 7]));
        assert_eq!(after(at(4)), Some(vec![7]));
        assert_eq!(after(at(5)), Some(vec![]));
        // Offset 2 was forgotten: from 1 on is a gap; past the latest too.
        assert_eq!(after(at(1)), None);
        assert_eq!(after(at(0)), None);
        assert_eq!(after(at(6)), None);
        assert_eq!(after(at(u64::MAX)), None);
        // Another epoch: a gap whatever the offset.
        let other = Since {
            epoch: Epoch::parse("other").unwrap(),
            offset: 4,
        };
        assert_eq!(after(other), None);
    }

    #[test]
    fn epochs_are_new_each_time_and_positions_parse_strictly() {
        let a = Epoch::random();
        let b = Epoch::random();
        assert_ne!(a, b);
        assert!(Epoch::parse(a.as_str()).is_some());
        assert_ne!(History::new(1).epoch(), History::new(1).epoch());
        let good: Since = "abcXYZ09:42".parse().unwrap();
        assert_eq!((good.epoch.as_str(), good.offset), ("abcXYZ09", 42));
        assert_eq!(good.to_string(), "abcXYZ09:42");
        assert_eq!("a:0".parse::<Since>().map(|s| s.offset), Ok(0));
        let max = format!("{}:{}", "z".repeat(16), u64::MAX);
        assert_eq!(max.parse::<Since>().map(|s| s.offset), Ok(u64::MAX));
        for (bad, why) in [
            ("", SinceError::NoColon),
            ("abc", SinceError::NoColon),
            (":1", SinceError::BadEpoch),
            ("a-b:1", SinceError::BadEpoch),
            ("é:1", SinceError::BadEpoch),
            ("abcdefghijklmnopq:1", SinceError::BadEpoch),
            ("a:", SinceError::BadOffset),
            ("a:+1", SinceError::BadOffset),
            ("a:-1", SinceError::BadOffset),
            ("a:1:2", SinceError::BadOffset),
            ("a:18446744073709551616", SinceError::BadOffset),
            ("a: 1", SinceError::BadOffset),
        ] {
            assert_eq!(bad.parse::<Since>(), Err(why), "{bad:?}");
        }
    }
}
