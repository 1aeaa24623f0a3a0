//! A sans-IO RESP2 codec for the handful of replies the bridge needs: simple
//! strings, errors, integers, bulk strings and arrays of those (one level of
//! nesting is all Redis pub/sub sends; deeper nesting is refused).
//!
//! A bulk string over the decoder's limit that ends its reply (a pub/sub
//! message's data is its last element) is not buffered: the reply comes out
//! with [`Reply::Oversized`] in its place and [`Decoded::skip`] tells the
//! caller how many bytes to discard as they arrive, so one oversized
//! message costs that message, not the connection.
//!
//! Our own instead of `redis-protocol`: that crate brings `bytes`,
//! `bytes-utils` and `cookie-factory` for a codec of which we need five
//! reply types and three commands; this one is ~200 lines, allocates only
//! what a reply holds, and every length it reads is bounded before use.

use std::fmt;

/// One decoded reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Simple(Vec<u8>),
    /// `-ERR ...`
    Error(Vec<u8>),
    /// `:1`
    Integer(i64),
    /// `$n` (`None`: the null bulk string `$-1`)
    Bulk(Option<Vec<u8>>),
    /// `*n` (`None`: the null array `*-1`)
    Array(Option<Vec<Reply>>),
    /// A bulk string of this many bytes, over the limit, ending its reply:
    /// its content is not kept (see [`Decoded::skip`]).
    Oversized(usize),
}

/// One reply taken from the front of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The reply.
    pub reply: Reply,
    /// Bytes of the buffer it took (never more than the buffer holds).
    pub used: usize,
    /// Bytes after those to discard unread: the content (and CRLF) of the
    /// [`Reply::Oversized`] bulk string ending the reply; 0 otherwise.
    pub skip: usize,
}

/// Why the input is not RESP2 the bridge accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespError {
    /// A type byte that is not `+ - : $ *`.
    BadType(u8),
    /// A length or integer that is not a number, or is out of range.
    BadNumber,
    /// A bulk string or array larger than the decoder's limit (a bulk
    /// string only where it does not end its reply).
    TooLarge,
    /// Arrays nested deeper than two levels.
    TooDeep,
    /// A line or a bulk string not ended by CRLF.
    BadTerminator,
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespError::BadType(b) => write!(f, "unknown RESP type byte 0x{b:02x}"),
            RespError::BadNumber => f.write_str("bad number in a RESP header"),
            RespError::TooLarge => f.write_str("RESP value over the size limit"),
            RespError::TooDeep => f.write_str("RESP arrays nested too deep"),
            RespError::BadTerminator => f.write_str("RESP line not ended by CRLF"),
        }
    }
}

impl std::error::Error for RespError {}

/// Longest header or simple line accepted (a simple string or error reply).
const MAX_LINE: usize = 4096;
/// Most elements in one array (pub/sub messages have 3 or 4).
const MAX_ELEMENTS: usize = 16;
/// How deep arrays may nest.
const MAX_DEPTH: usize = 2;

/// Decodes replies from a byte buffer, incrementally: [`Decoder::decode`]
/// returns `Ok(None)` until a whole reply is in the buffer.
#[derive(Debug, Clone)]
pub struct Decoder {
    max_bulk: usize,
    /// Most elements in one array.
    max_elements: usize,
    /// Most bytes of one reply (see [`Decoder::max_reply`]).
    max_reply: usize,
}

impl Decoder {
    /// A decoder that refuses bulk strings longer than `max_bulk` bytes.
    pub fn new(max_bulk: usize) -> Decoder {
        Decoder {
            max_bulk,
            max_elements: MAX_ELEMENTS,
            max_reply: max_bulk.saturating_add(64 * 1024),
        }
    }

    /// The same decoder taking arrays of up to `elements` elements and
    /// replies of up to `bytes` bytes in all (each bulk string still at
    /// most `max_bulk`): for the answer to a read of a topic's log, one
    /// flat array of its messages.
    pub fn with_arrays(mut self, elements: usize, bytes: usize) -> Decoder {
        self.max_elements = self.max_elements.max(elements);
        self.max_reply = self.max_reply.max(bytes);
        self
    }

    /// The most bytes one reply may take on the wire: its largest bulk
    /// string and 64 KiB of headers and lines around it. A reply still
    /// incomplete past it is refused, so this is the buffer bound a caller
    /// needs.
    pub fn max_reply(&self) -> usize {
        self.max_reply
    }

    /// Decodes one reply from the start of `input`: the reply, how many
    /// bytes it took and how many more to skip; `Ok(None)` if more bytes
    /// are needed.
    pub fn decode(&self, input: &[u8]) -> Result<Option<Decoded>, RespError> {
        // First without keeping anything: a large reply (a log of many
        // messages) arriving a read at a time is looked at once per read,
        // and only the look that finds it whole allocates.
        let (mut pos, mut skip) = (0, 0);
        let whole = self.value(input, &mut pos, 0, true, &mut skip, false)?;
        if whole.is_none() {
            return match input.len() > self.max_reply() {
                true => Err(RespError::TooLarge),
                false => Ok(None),
            };
        }
        let (mut pos, mut skip) = (0, 0);
        match self.value(input, &mut pos, 0, true, &mut skip, true)? {
            Some(_) if pos > self.max_reply() => Err(RespError::TooLarge),
            Some(reply) => Ok(Some(Decoded {
                reply,
                used: pos,
                skip,
            })),
            // Everything in `input` belongs to this unfinished reply.
            None if input.len() > self.max_reply() => Err(RespError::TooLarge),
            None => Ok(None),
        }
    }

    /// The value at `*pos`; `last`: nothing of the reply follows it, so an
    /// oversized bulk string there can be skipped (its length goes to
    /// `skip`) rather than refused; `keep`: build the reply (else only
    /// check that it is whole and well-formed, returning empty values).
    fn value(
        &self,
        input: &[u8],
        pos: &mut usize,
        depth: usize,
        last: bool,
        skip: &mut usize,
        keep: bool,
    ) -> Result<Option<Reply>, RespError> {
        let Some(&kind) = input.get(*pos) else {
            return Ok(None);
        };
        if !matches!(kind, b'+' | b'-' | b':' | b'$' | b'*') {
            return Err(RespError::BadType(kind));
        }
        let Some((line, next)) = line(input, *pos + 1)? else {
            return Ok(None);
        };
        match kind {
            b'+' => {
                *pos = next;
                Ok(Some(Reply::Simple(if keep {
                    line.to_vec()
                } else {
                    Vec::new()
                })))
            }
            b'-' => {
                *pos = next;
                Ok(Some(Reply::Error(if keep {
                    line.to_vec()
                } else {
                    Vec::new()
                })))
            }
            b':' => {
                *pos = next;
                Ok(Some(Reply::Integer(number(line)?)))
            }
            b'$' => {
                let n = number(line)?;
                if n == -1 {
                    *pos = next;
                    return Ok(Some(Reply::Bulk(None)));
                }
                let n = usize::try_from(n).map_err(|_| RespError::BadNumber)?;
                if n > self.max_bulk {
                    if !last {
                        return Err(RespError::TooLarge);
                    }
                    *pos = next;
                    *skip = n.checked_add(2).ok_or(RespError::BadNumber)?;
                    return Ok(Some(Reply::Oversized(n)));
                }
                let end = next + n;
                if input.len() < end + 2 {
                    return Ok(None);
                }
                if &input[end..end + 2] != b"\r\n" {
                    return Err(RespError::BadTerminator);
                }
                *pos = end + 2;
                Ok(Some(Reply::Bulk(keep.then(|| input[next..end].to_vec()))))
            }
            _ => {
                let n = number(line)?;
                if n == -1 {
                    *pos = next;
                    return Ok(Some(Reply::Array(None)));
                }
                let n = usize::try_from(n).map_err(|_| RespError::BadNumber)?;
                if n > self.max_elements {
                    return Err(RespError::TooLarge);
                }
                if depth >= MAX_DEPTH {
                    return Err(RespError::TooDeep);
                }
                let mut at = next;
                let mut items = Vec::with_capacity(if keep { n } else { 0 });
                for i in 0..n {
                    let last = last && i + 1 == n;
                    match self.value(input, &mut at, depth + 1, last, skip, keep)? {
                        Some(item) if keep => items.push(item),
                        Some(_) => {}
                        None => return Ok(None),
                    }
                }
                *pos = at;
                Ok(Some(Reply::Array(Some(items))))
            }
        }
    }
}

/// The line starting at `from` (without CRLF) and where the next begins.
fn line(input: &[u8], from: usize) -> Result<Option<(&[u8], usize)>, RespError> {
    let rest = input.get(from..).unwrap_or(&[]);
    let window = &rest[..rest.len().min(MAX_LINE + 2)];
    match window.iter().position(|&b| b == b'\n') {
        Some(i) if i > 0 && window[i - 1] == b'\r' => Ok(Some((&rest[..i - 1], from + i + 1))),
        Some(_) => Err(RespError::BadTerminator),
        None if rest.len() > MAX_LINE + 1 => Err(RespError::TooLarge),
        None => Ok(None),
    }
}

fn number(line: &[u8]) -> Result<i64, RespError> {
    if line.is_empty() || line.len() > 20 {
        return Err(RespError::BadNumber);
    }
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(RespError::BadNumber)
}

/// Appends a command (an array of bulk strings) to `out`.
pub fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    out.extend_from_slice(args.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for arg in args {
        out.push(b'$');
        out.extend_from_slice(arg.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reply and bytes used, for replies that skip nothing.
    fn whole(d: &Decoder, input: &[u8]) -> Result<Option<(Reply, usize)>, RespError> {
        d.decode(input).map(|r| {
            r.map(|r| {
                assert_eq!(r.skip, 0);
                (r.reply, r.used)
            })
        })
    }

    #[test]
    fn decodes_each_type_and_waits_for_more() {
        let d = Decoder::new(64);
        assert_eq!(
            whole(&d, b"+OK\r\n"),
            Ok(Some((Reply::Simple(b"OK".to_vec()), 5)))
        );
        assert_eq!(
            whole(&d, b"-ERR x\r\n").map(|r| r.map(|r| r.0)),
            Ok(Some(Reply::Error(b"ERR x".to_vec())))
        );
        assert_eq!(whole(&d, b":42\r\n"), Ok(Some((Reply::Integer(42), 5))));
        assert_eq!(whole(&d, b"$-1\r\n"), Ok(Some((Reply::Bulk(None), 5))));
        let msg = b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n";
        for cut in 0..msg.len() {
            assert_eq!(whole(&d, &msg[..cut]), Ok(None), "cut at {cut}");
        }
        let (reply, used) = whole(&d, msg).unwrap().unwrap();
        assert_eq!(used, msg.len());
        assert_eq!(
            reply,
            Reply::Array(Some(vec![
                Reply::Bulk(Some(b"message".to_vec())),
                Reply::Bulk(Some(b"c".to_vec())),
                Reply::Bulk(Some(b"hi".to_vec())),
            ]))
        );
    }

    #[test]
    fn refuses_what_it_must_not_buffer() {
        let d = Decoder::new(8);
        // An oversized bulk string is refused unless it ends its reply.
        assert_eq!(whole(&d, b"*2\r\n$9\r\n"), Err(RespError::TooLarge));
        assert_eq!(whole(&d, b"*17\r\n"), Err(RespError::TooLarge));
        assert_eq!(whole(&d, b"*1\r\n*1\r\n*1\r\n"), Err(RespError::TooDeep));
        assert_eq!(whole(&d, b"?\r\n"), Err(RespError::BadType(b'?')));
        assert_eq!(whole(&d, b"$x\r\n"), Err(RespError::BadNumber));
        assert_eq!(whole(&d, b"$2\r\nabXY"), Err(RespError::BadTerminator));
        assert_eq!(whole(&d, &[b'+'; 5000]), Err(RespError::TooLarge));
    }

    #[test]
    fn an_oversized_bulk_string_ending_its_reply_is_skipped_not_kept() {
        let d = Decoder::new(8);
        let msg = b"*4\r\n$8\r\npmessage\r\n$1\r\np\r\n$1\r\nc\r\n$20\r\n";
        let got = d.decode(msg).unwrap().unwrap();
        assert_eq!((got.used, got.skip), (msg.len(), 22));
        let Reply::Array(Some(items)) = got.reply else {
            panic!("{:?}", got.reply)
        };
        assert_eq!(items[3], Reply::Oversized(20));
        // Its header alone is enough: the content is never waited for.
        assert_eq!(d.decode(&msg[..msg.len() - 1]), Ok(None));
        let top = d.decode(b"$1000000000\r\nxy").unwrap().unwrap();
        assert_eq!(
            (top.reply, top.used, top.skip),
            (Reply::Oversized(1_000_000_000), 13, 1_000_000_002)
        );
    }

    #[test]
    fn encodes_a_command() {
        let mut out = Vec::new();
        encode_command(&mut out, &[b"PUBLISH", b"c", b""]);
        assert_eq!(out, b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$0\r\n\r\n");
    }
}
