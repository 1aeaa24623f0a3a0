//! Minimal client-side RFC 6455 pieces: masked frame encoding into a reusable
//! output buffer, the handshake request/response check, payload headers.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// The RFC 6455 sample key and its accept value (section 1.3): a fixed key
/// lets us check `Sec-WebSocket-Accept` without a SHA-1 implementation.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const ACCEPT: &[u8] = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

pub fn handshake_request(host: &str, path: &str) -> Vec<u8> {
    handshake_request_with(host, path, false)
}

/// The permessage-deflate offer of `--deflate` (RFC 7692 section 7.1).
pub const DEFLATE_OFFER: &str = "permessage-deflate; client_max_window_bits";

/// The upgrade request, with the permessage-deflate offer if `deflate`.
pub fn handshake_request_with(host: &str, path: &str, deflate: bool) -> Vec<u8> {
    let ext = if deflate {
        format!("Sec-WebSocket-Extensions: {DEFLATE_OFFER}\r\n")
    } else {
        String::new()
    };
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n"
    )
    .into_bytes()
}

/// Checks the `Sec-WebSocket-Extensions` answer to [`DEFLATE_OFFER`] in a
/// `101` head: `Ok(true)` if the server took permessage-deflate with
/// parameters we can honour, `Ok(false)` if it answered with no extension.
/// We inflate every message on its own (one shared inflater, reset per
/// message), so the server must promise `server_no_context_takeover`; we
/// never compress, so `client_no_context_takeover` and the window bits are
/// only checked for form.
pub fn check_deflate_answer(head: &[u8]) -> Result<bool, String> {
    let mut found = false;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if !line[..colon].eq_ignore_ascii_case(b"sec-websocket-extensions") {
            continue;
        }
        let value = String::from_utf8_lossy(line[colon + 1..].trim_ascii()).into_owned();
        for ext in value.split(',') {
            if found {
                return Err(format!("more than one extension in the answer: {value}"));
            }
            let mut params = ext.split(';').map(str::trim);
            if params.next() != Some("permessage-deflate") {
                return Err(format!("extension not offered in the answer: {value}"));
            }
            let mut server_nct = false;
            let mut seen: Vec<&str> = Vec::new();
            for p in params {
                let (name, arg) = match p.split_once('=') {
                    Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                    None => (p, None),
                };
                if seen.contains(&name) {
                    return Err(format!("parameter {name} twice in the answer: {value}"));
                }
                seen.push(name);
                match (name, arg) {
                    ("server_no_context_takeover", None) => server_nct = true,
                    ("client_no_context_takeover", None) => {}
                    ("server_max_window_bits" | "client_max_window_bits", Some(a))
                        if matches!(a.parse::<u8>(), Ok(8..=15)) => {}
                    _ => return Err(format!("bad parameter '{p}' in the answer: {value}")),
                }
            }
            if !server_nct {
                return Err(format!(
                    "answer without server_no_context_takeover (the loadgen inflates each message alone): {value}"
                ));
            }
            found = true;
        }
    }
    Ok(found)
}

/// The sync-flush tail a compressed message is sent without (RFC 7692 7.2.1).
const DEFLATE_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Inflates compressed messages (raw DEFLATE, window 15), each on its own:
/// one for the whole loadgen.
pub struct Inflater {
    z: flate2::Decompress,
    input: Vec<u8>,
}

impl Inflater {
    pub fn new() -> Self {
        Inflater {
            z: flate2::Decompress::new_with_window_bits(false, 15),
            input: Vec::new(),
        }
    }

    /// Replaces `out` with the inflated form of one message's payload (as
    /// it came, without the tail), at most `limit` bytes.
    pub fn inflate(
        &mut self,
        payload: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), String> {
        self.z.reset(false);
        self.input.clear();
        self.input.extend_from_slice(payload);
        self.input.extend_from_slice(&DEFLATE_TAIL);
        out.clear();
        let mut at = 0;
        loop {
            if out.capacity() - out.len() < 1024 {
                out.reserve(out.len().max(4096));
            }
            let (i0, o0) = (self.z.total_in(), self.z.total_out());
            let st = self
                .z
                .decompress_vec(&self.input[at..], out, flate2::FlushDecompress::Sync)
                .map_err(|e| format!("inflate: {e}"))?;
            at += (self.z.total_in() - i0) as usize;
            let produced = self.z.total_out() - o0;
            if out.len() > limit {
                return Err(format!("inflated message over {limit} bytes"));
            }
            if st == flate2::Status::StreamEnd {
                return Ok(());
            }
            let room_left = out.len() < out.capacity();
            if at == self.input.len() && room_left {
                return Ok(());
            }
            if at < self.input.len() && produced == 0 && room_left && st == flate2::Status::BufError
            {
                return Err("inflate: no progress".into());
            }
        }
    }
}

/// Position just past the "\r\n\r\n" ending an HTTP head, if complete.
pub fn head_end(data: &[u8]) -> Option<usize> {
    data.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
}

/// Checks a handshake response head: status 101 and the expected accept key.
pub fn check_response(head: &[u8]) -> Result<(), String> {
    let first = head.split(|&b| b == b'\n').next().unwrap_or_default();
    if !(first.starts_with(b"HTTP/1.1 101") || first.starts_with(b"HTTP/1.0 101")) {
        return Err(format!(
            "handshake refused: {}",
            String::from_utf8_lossy(first).trim_end()
        ));
    }
    for line in head.split(|&b| b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if line[..colon].eq_ignore_ascii_case(b"sec-websocket-accept") {
            let value = line[colon + 1..].trim_ascii();
            if value == ACCEPT {
                return Ok(());
            }
            return Err(format!(
                "bad Sec-WebSocket-Accept: {}",
                String::from_utf8_lossy(value)
            ));
        }
    }
    Err("handshake response without Sec-WebSocket-Accept".into())
}

/// XORs `data` with the 4-byte masking key, eight bytes at a time.
#[inline]
pub fn apply_mask(data: &mut [u8], key: [u8; 4]) {
    let k8 = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) ^ k8;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, so the key phase is 0.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// Bodies at least this long are sent from a shared pre-masked copy with
/// writev instead of being copied (and masked) into the output buffer.
pub const PREMASK_MIN: usize = 4096;

/// A piece of queued output that is not simply the rest of `Out::buf`.
enum Seg {
    /// `buf[..end]` (from wherever the write position is).
    Buf { end: usize },
    /// A shared, already masked body, `off` bytes of which are written.
    Body { data: &'static [u8], off: usize },
}

/// A connection's pending output. Frames are appended (masked) and written
/// with as few syscalls as possible; the buffer is reused, so steady-state
/// sending does not allocate.
pub struct Out {
    pub buf: Vec<u8>,
    pos: usize,
    segs: VecDeque<Seg>,
    /// The last write hit EAGAIN: wait for a writable edge before retrying.
    pub blocked: bool,
    rng: u32,
}

impl Out {
    pub fn new(seed: u32, capacity: usize) -> Self {
        Out {
            buf: Vec::with_capacity(capacity),
            pos: 0,
            segs: VecDeque::new(),
            blocked: false,
            rng: seed | 1,
        }
    }

    #[inline]
    fn next_key(&mut self) -> [u8; 4] {
        // xorshift32: unpredictable enough for a benchmark's masking keys.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        x.to_ne_bytes()
    }

    #[inline]
    fn header(&mut self, opcode: u8, len: usize, key: [u8; 4]) {
        self.buf.push(0x80 | opcode);
        if len < 126 {
            self.buf.push(0x80 | len as u8);
        } else if len <= 0xFFFF {
            self.buf.push(0x80 | 126);
            self.buf.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            self.buf.push(0x80 | 127);
            self.buf.extend_from_slice(&(len as u64).to_be_bytes());
        }
        self.buf.extend_from_slice(&key);
    }

    /// Appends one final, masked frame whose payload is `head` then `body`.
    #[inline]
    pub fn frame(&mut self, opcode: u8, head: &[u8], body: &[u8]) {
        let len = head.len() + body.len();
        self.buf.reserve(len + 14);
        let key = self.next_key();
        self.header(opcode, len, key);
        let start = self.buf.len();
        self.buf.extend_from_slice(head);
        self.buf.extend_from_slice(body);
        apply_mask(&mut self.buf[start..], key);
    }

    /// Like [`Out::frame`], but `body` is already masked with `key` (from
    /// phase 0, so `head.len()` must be a multiple of 4) and is queued by
    /// reference rather than copied.
    pub fn frame_premasked(&mut self, opcode: u8, head: &[u8], key: [u8; 4], body: &'static [u8]) {
        debug_assert!(head.len().is_multiple_of(4));
        self.header(opcode, head.len() + body.len(), key);
        let start = self.buf.len();
        self.buf.extend_from_slice(head);
        apply_mask(&mut self.buf[start..], key);
        self.segs.push_back(Seg::Buf {
            end: self.buf.len(),
        });
        self.segs.push_back(Seg::Body { data: body, off: 0 });
    }

    pub fn pending(&self) -> bool {
        self.pos < self.buf.len() || !self.segs.is_empty()
    }

    /// Writes as much as the socket takes. Ok(()) also when it would block.
    pub fn flush<W>(&mut self, mut sock: W) -> io::Result<()>
    where
        W: Write,
    {
        if self.blocked {
            return Ok(());
        }
        while self.pending() {
            let r = if self.segs.is_empty() {
                sock.write(&self.buf[self.pos..])
            } else {
                let mut iov = [IoSlice::new(&[]); 32];
                let mut k = 0;
                let mut cur = self.pos;
                for seg in self.segs.iter() {
                    if k == iov.len() {
                        break;
                    }
                    match *seg {
                        Seg::Buf { end } => {
                            if end > cur {
                                iov[k] = IoSlice::new(&self.buf[cur..end]);
                                k += 1;
                            }
                            cur = end;
                        }
                        Seg::Body { data, off } => {
                            iov[k] = IoSlice::new(&data[off..]);
                            k += 1;
                        }
                    }
                }
                if k < iov.len() && cur < self.buf.len() {
                    iov[k] = IoSlice::new(&self.buf[cur..]);
                    k += 1;
                }
                sock.write_vectored(&iov[..k])
            };
            match r {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.blocked = true;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.buf.clear();
        self.pos = 0;
        Ok(())
    }

    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            match self.segs.front_mut() {
                Some(Seg::Buf { end }) => {
                    let take = n.min(*end - self.pos);
                    self.pos += take;
                    n -= take;
                    if self.pos == *end {
                        self.segs.pop_front();
                    }
                }
                Some(Seg::Body { data, off }) => {
                    let take = n.min(data.len() - *off);
                    *off += take;
                    n -= take;
                    if *off == data.len() {
                        self.segs.pop_front();
                    }
                }
                None => {
                    self.pos += n;
                    n = 0;
                }
            }
        }
        // An empty Buf segment at the front is already written.
        while let Some(Seg::Buf { end }) = self.segs.front() {
            if *end > self.pos {
                break;
            }
            self.segs.pop_front();
        }
    }
}

/// Pre-masked copies of a large message body, one per masking key, shared
/// by every connection: large frames then cost no copy and no XOR to send.
pub struct Premasked {
    keys: Vec<[u8; 4]>,
    bodies: Vec<&'static [u8]>,
    next: usize,
}

impl Premasked {
    pub fn new(body: &[u8], count: usize, mut seed: u32) -> Self {
        let mut keys = Vec::new();
        let mut bodies = Vec::new();
        for _ in 0..count {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let key = seed.to_ne_bytes();
            let mut b = body.to_vec();
            apply_mask(&mut b, key);
            keys.push(key);
            // Lives for the whole run.
            bodies.push(&*Box::leak(b.into_boxed_slice()));
        }
        Premasked {
            keys,
            bodies,
            next: 0,
        }
    }

    /// The next (key, masked body) pair, round-robin.
    #[inline]
    pub fn next(&mut self) -> ([u8; 4], &'static [u8]) {
        let i = self.next;
        self.next = (i + 1) % self.keys.len();
        (self.keys[i], self.bodies[i])
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The 16-byte payload header: sender id and sequence number (low 32 bits)
/// as 16 lowercase hex digits, so it is valid UTF-8 in text messages.
#[inline]
pub fn payload_header(id: u32, seq: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    let v = ((id as u64) << 32) | (seq & 0xFFFF_FFFF);
    for (i, b) in out.iter_mut().enumerate() {
        *b = HEX[((v >> (60 - 4 * i)) & 0xF) as usize];
    }
    out
}

/// Inverse of [`payload_header`]: (id, seq low 32 bits).
pub fn parse_header(h: &[u8]) -> Option<(u32, u32)> {
    if h.len() < 16 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in &h[..16] {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        v = (v << 4) | d as u64;
    }
    Some(((v >> 32) as u32, v as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip() {
        let h = payload_header(0xdead_beef, 0x1_2345_6789);
        assert_eq!(&h, b"deadbeef23456789");
        assert_eq!(parse_header(&h), Some((0xdead_beef, 0x2345_6789)));
        assert_eq!(parse_header(b"Welcome to Rookery Chat!"), None);
    }

    #[test]
    fn mask_matches_bytewise() {
        let key = [1, 2, 3, 0x80];
        for len in 0..40 {
            let orig: Vec<u8> = (0..len as u8).collect();
            let mut fast = orig.clone();
            apply_mask(&mut fast, key);
            let slow: Vec<u8> = orig
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4])
                .collect();
            assert_eq!(fast, slow);
        }
    }

    #[test]
    fn frame_layout() {
        let mut out = Out::new(7, 0);
        out.frame(OP_TEXT, b"ab", b"cd");
        assert_eq!(out.buf[0], 0x81);
        assert_eq!(out.buf[1], 0x80 | 4);
        let key = [out.buf[2], out.buf[3], out.buf[4], out.buf[5]];
        let mut p = out.buf[6..].to_vec();
        apply_mask(&mut p, key);
        assert_eq!(p, b"abcd");
        let mut out = Out::new(7, 0);
        out.frame(OP_BINARY, &[], &vec![0u8; 70_000]);
        assert_eq!(out.buf[1], 0x80 | 127);
        assert_eq!(out.buf.len(), 2 + 8 + 4 + 70_000);
    }

    /// A writer that takes at most `max` bytes per call.
    struct Trickle {
        got: Vec<u8>,
        max: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let n = b.len().min(self.max);
            self.got.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn premasked_frames_match_copied_frames() {
        let body: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let mut pm = Premasked::new(&body, 3, 99);
        for max in [1, 7, 100, 5000, 1 << 20] {
            let mut out = Out::new(1, 0);
            let mut w = Trickle {
                got: Vec::new(),
                max,
            };
            let mut expect = Vec::new();
            for i in 0..5u8 {
                let head = [i; 16];
                let (key, masked) = pm.next();
                out.frame_premasked(OP_BINARY, &head, key, masked);
                out.frame(OP_PING, b"x", &[]);
                let mut p = head.to_vec();
                p.extend_from_slice(&body);
                expect.push(p);
            }
            while out.pending() {
                out.flush(&mut w).unwrap();
            }
            // Decode what was written.
            let mut got = Vec::new();
            let mut at = 0;
            while at < w.got.len() {
                let b1 = w.got[at + 1] & 0x7F;
                let (hl, len) = match b1 {
                    126 => (
                        4,
                        u16::from_be_bytes([w.got[at + 2], w.got[at + 3]]) as usize,
                    ),
                    127 => unreachable!(),
                    l => (2, l as usize),
                };
                let key = [
                    w.got[at + hl],
                    w.got[at + hl + 1],
                    w.got[at + hl + 2],
                    w.got[at + hl + 3],
                ];
                let mut p = w.got[at + hl + 4..at + hl + 4 + len].to_vec();
                apply_mask(&mut p, key);
                if w.got[at] & 0x0F == OP_BINARY {
                    got.push(p);
                } else {
                    assert_eq!(p, b"x");
                }
                at += hl + 4 + len;
            }
            assert_eq!(got, expect, "max {max}");
        }
    }

    #[test]
    fn deflate_answer_check() {
        let head = |ext: &str| {
            format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n{ext}\r\n")
                .into_bytes()
        };
        let rookery = head("Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n");
        assert_eq!(check_deflate_answer(&rookery), Ok(true));
        assert_eq!(check_deflate_answer(&head("")), Ok(false));
        let bits = head("sec-websocket-extensions: permessage-deflate;server_no_context_takeover; server_max_window_bits=10\r\n");
        assert_eq!(check_deflate_answer(&bits), Ok(true));
        assert!(
            check_deflate_answer(&head("Sec-WebSocket-Extensions: permessage-deflate\r\n"))
                .is_err()
        );
        assert!(check_deflate_answer(&head(
            "Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n"
        ))
        .is_err());
        assert!(check_deflate_answer(&head("Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; server_max_window_bits=16\r\n")).is_err());
        let req = String::from_utf8(handshake_request_with("h:1", "/c", true)).unwrap();
        assert!(req.contains(
            "\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
        ));
        assert_eq!(
            handshake_request("h:1", "/c"),
            handshake_request_with("h:1", "/c", false)
        );
    }

    #[test]
    fn inflate_roundtrip() {
        use flate2::{Compress, Compression, FlushCompress};
        let mut inf = Inflater::new();
        let mut out = Vec::new();
        for len in [0usize, 1, 60, 4096, 100_000] {
            let msg: Vec<u8> = (0..len)
                .map(|i| b"abcdefgh{}\":, "[(i * 7 + i / 13) % 14])
                .collect();
            let mut z = Compress::new_with_window_bits(Compression::new(6), false, 15);
            let mut buf = Vec::with_capacity(len + 64);
            z.compress_vec(&msg, &mut buf, FlushCompress::Sync).unwrap();
            while !buf.ends_with(&DEFLATE_TAIL) || z.total_in() < len as u64 {
                buf.reserve(1024);
                z.compress_vec(&[], &mut buf, FlushCompress::Sync).unwrap();
            }
            buf.truncate(buf.len() - 4);
            inf.inflate(&buf, &mut out, 1 << 20).unwrap();
            assert_eq!(out, msg, "len {len}");
        }
        assert!(inf.inflate(&[0xff, 0xff, 0xff], &mut out, 1 << 20).is_err());
    }

    #[test]
    fn accept_check() {
        let ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert_eq!(head_end(ok), Some(ok.len()));
        assert!(check_response(ok).is_ok());
        assert!(check_response(b"HTTP/1.1 400 Bad Request\r\n\r\n").is_err());
    }
}
