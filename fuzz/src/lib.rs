//! The checks behind rookery's fuzz targets.
//!
//! Each public entry point takes arbitrary bytes, drives one part of the
//! sans-IO core with them, and panics when an invariant breaks. The fuzz
//! targets in `fuzz_targets/` are one-line wrappers around these functions,
//! and `tests/random_input.rs` includes this very file (with `#[path]`) so
//! that every `cargo test` feeds the same entry points seeded random input.
//! This file therefore depends on nothing but `rookery` and `std`.
//!
//! - [`http_head`]: [`HeadReader::feed`] in random pieces; the result must not
//!   depend on the split, the reader never holds more than the 8 KiB cap
//!   (plus the one byte that proves a head too large), and every request it
//!   completes survives the handshake checks and the `101` writer.
//! - [`frame_decoder`]: [`Receiver::read`] on arbitrary bytes with a random
//!   message limit, in random pieces: consumption always progresses, at most
//!   the input is consumed, the receiver's heap stays within the limit plus a
//!   small constant, every event it returns is valid, and whole and split
//!   input give the same events and the same error.
//! - [`message_assembler`]: sequences of masked frames (mostly well formed:
//!   fragmented text with code points cut across frames, interleaved control
//!   frames, close frames with valid and invalid codes; sometimes one
//!   violation) encoded and fed to [`Receiver::read`]; the events and the
//!   error must be exactly those of a small independent model of RFC 6455.
//! - [`connection`]: a whole [`Connection`] driven through its life: an
//!   upgrade request (valid or not) and frame streams fed in random pieces,
//!   interleaved with steps of virtual time, throttled writes, sends, closes,
//!   pings, kills and activations. The connection never panics, makes
//!   progress on every input, reports its end exactly once and nothing after
//!   it, keeps its receive buffers within the message limit, and never
//!   leaves a deadline in the past.

use std::time::{Duration, Instant};

use rookery::proto::close::CloseCode;
use rookery::proto::connection::{Connection, Event as ConnEvent, Message, Notice, Settings};
use rookery::proto::deflate::Codec;
use rookery::proto::frame::apply_mask;
use rookery::proto::handshake;
use rookery::proto::http::Response;
use rookery::proto::http::{HeadReader, HttpError, Request, Status, MAX_HEAD};
use rookery::proto::receiver::{Event, Payload, ProtocolError, Receiver, KEEP_CAPACITY};

/// What [`Receiver::heap_bytes`] may exceed `max(max_message, KEEP_CAPACITY)`
/// by: the control-frame buffer (125 bytes, grown by doubling).
pub const HEAP_SLACK: usize = 256;

/// Choices drawn from the fuzzer's bytes; zeros once they run out, so every
/// input, however short, describes a complete test.
pub struct Choices<'a> {
    data: &'a [u8],
}

impl<'a> Choices<'a> {
    /// Choices from `data`.
    pub fn new(data: &'a [u8]) -> Choices<'a> {
        Choices { data }
    }

    /// Whether every byte has been used.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte, or 0.
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// The next two bytes, big-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    /// The next eight bytes, big-endian.
    pub fn u64(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        for b in &mut bytes {
            *b = self.byte();
        }
        u64::from_be_bytes(bytes)
    }

    /// A number below `n` (which must not be 0).
    pub fn below(&mut self, n: usize) -> usize {
        usize::from(self.u16()) % n
    }

    /// Whatever is left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

/// A small xorshift generator: piece sizes, payload contents.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator; any seed works (0 is replaced).
    pub fn new(seed: u64) -> XorShift {
        XorShift(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number below `n` (which must not be 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

/// How input is cut into the pieces a socket might deliver.
pub enum Splitter {
    /// Everything at once.
    Whole,
    /// Random piece sizes: mostly a few bytes, sometimes hundreds or tens of
    /// thousands, sometimes all that is left.
    Random(XorShift),
}

impl Splitter {
    /// Random pieces from `seed`; seed 0 means all at once.
    pub fn new(seed: u64) -> Splitter {
        if seed == 0 {
            Splitter::Whole
        } else {
            Splitter::Random(XorShift::new(seed))
        }
    }

    /// The size of the next piece, at least 1 when `remaining` is not 0.
    pub fn next_len(&mut self, remaining: usize) -> usize {
        let rng = match self {
            Splitter::Whole => return remaining,
            Splitter::Random(rng) => rng,
        };
        let r = rng.next_u64();
        let len = match r % 8 {
            0..=3 => 1 + (r >> 8) % 8,
            4 | 5 => 1 + (r >> 8) % 200,
            6 => 1 + (r >> 8) % 65536,
            _ => remaining as u64,
        };
        (len as usize).min(remaining)
    }

    /// A coin toss (always heads when splitting is off).
    pub fn coin(&mut self) -> bool {
        match self {
            Splitter::Whole => true,
            Splitter::Random(rng) => rng.next_u64() & 1 == 1,
        }
    }
}

// ---- HTTP head -------------------------------------------------------------

/// One result of the head reader, with where in the input it happened.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadOutcome {
    /// A complete request ending at this offset of the input.
    Request(Request, usize),
    /// The reader failed.
    Error(HttpError),
}

/// Fuzz entry point for [`HeadReader`]: 8 bytes of split seed, then the
/// bytes a client sends.
pub fn http_head(data: &[u8]) {
    let mut choices = Choices::new(data);
    let seed = choices.u64();
    let input = choices.rest();
    let whole = run_heads(input, &mut Splitter::Whole);
    let split = run_heads(input, &mut Splitter::new(seed));
    assert_eq!(
        whole, split,
        "the head reader's result depends on the split"
    );
}

/// Feeds `input` to a head reader in pieces; after a complete head the same
/// reader continues with the bytes that follow. Stops at the first error.
pub fn run_heads(input: &[u8], split: &mut Splitter) -> Vec<HeadOutcome> {
    let mut reader = HeadReader::new();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < input.len() {
        let len = split.next_len(input.len() - pos);
        assert!(len > 0);
        let piece = &input[pos..pos + len];
        let mut off = 0;
        while off < piece.len() {
            match reader.feed(&piece[off..]) {
                Ok(Status::Partial) => {
                    assert!(reader.buffered() <= MAX_HEAD, "partial head over the cap");
                    off = piece.len();
                }
                Ok(Status::Complete((request, used))) => {
                    assert!(used >= 1 && used <= piece.len() - off, "used {used}");
                    assert_eq!(reader.buffered(), 0, "a completed reader keeps bytes");
                    check_request(&request);
                    off += used;
                    out.push(HeadOutcome::Request(request, pos + off));
                }
                Err(e) => {
                    assert!(
                        reader.buffered() <= MAX_HEAD + 1,
                        "reader grew past the cap"
                    );
                    assert!(matches!(e.status(), 400 | 431 | 505), "{e:?}");
                    out.push(HeadOutcome::Error(e));
                    return out;
                }
            }
        }
        pos += len;
    }
    out
}

/// Exercises everything the server does with a parsed request.
fn check_request(req: &Request) {
    assert!(!req.method().is_empty() && !req.target().is_empty());
    assert!(req.target().starts_with(req.path()));
    assert!(req.minor_version() <= 1);
    assert!(req.headers().count() <= 64);
    for (name, value) in req.headers() {
        assert!(!name.is_empty());
        assert_eq!(value, value.trim_matches([' ', '\t']));
        assert!(!value.contains(['\r', '\n']));
        assert!(req.header(name).is_some());
    }
    let _ = req.has_token("Connection", "upgrade");
    let _ = handshake::origin_allowed(req, &["https://example.com".to_string()]);
    let mut out = Vec::new();
    match handshake::validate(req) {
        Ok(key) => {
            let protocol = handshake::offered_protocols(req).next();
            let mut extensions = Vec::new();
            if let Some(agreement) = rookery::proto::deflate::negotiate(req) {
                assert!((9..=15).contains(&agreement.window_bits));
                agreement.write_answer(&mut extensions);
            }
            let extensions = (!extensions.is_empty()).then_some(&extensions[..]);
            handshake::write_accept(&mut out, key, protocol, extensions);
            assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
            // The reply ends with the only blank line: nothing the client sent
            // can inject a header or a body.
            let end = out.windows(4).position(|w| w == b"\r\n\r\n");
            assert_eq!(end, Some(out.len() - 4), "header injection");
        }
        Err(e) => {
            e.response().write_to(&mut out, false);
            assert!(out.starts_with(b"HTTP/1.1 4"), "{e:?}");
        }
    }
}

// ---- frames ------------------------------------------------------------------

/// An event's kind, for comparing outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text message.
    Text,
    /// Binary message.
    Binary,
    /// Ping.
    Ping,
    /// Pong.
    Pong,
    /// Close.
    Close,
}

/// What a receiver made of a byte stream: its events, then its error if any.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Events with their payloads, in order.
    pub events: Vec<(Kind, Vec<u8>)>,
    /// The error that ended the stream.
    pub error: Option<ProtocolError>,
}

/// The most heap a receiver may hold under `max_message`.
pub fn heap_limit(max_message: u64) -> usize {
    usize::try_from(max_message)
        .unwrap_or(usize::MAX)
        .max(KEEP_CAPACITY)
        .saturating_add(HEAP_SLACK)
}

/// A message limit: the interesting edges, or a small random one.
fn pick_max_message(choices: &mut Choices<'_>) -> u64 {
    const EDGES: [u64; 8] = [0, 1, 125, 126, 4096, 65536, 1 << 20, u64::MAX];
    let b = choices.byte();
    if b & 0x80 == 0 {
        EDGES[usize::from(b) % EDGES.len()]
    } else {
        u64::from(choices.u16())
    }
}

/// Fuzz entry point for the frame decoder: a message limit, 8 bytes of split
/// seed, then the bytes a client sends after its handshake.
pub fn frame_decoder(data: &[u8]) {
    let mut choices = Choices::new(data);
    let max = pick_max_message(&mut choices);
    let seed = choices.u64();
    let input = choices.rest();
    let whole = run_receiver(input, max, &mut Splitter::Whole);
    let split = run_receiver(input, max, &mut Splitter::new(seed));
    assert_eq!(whole, split, "the receiver's result depends on the split");
}

/// Feeds `input` to a fresh receiver in pieces, as the server does (each
/// piece in its own buffer, every byte of it consumed by repeated calls),
/// checking the receiver's promises at every call.
pub fn run_receiver(input: &[u8], max: u64, split: &mut Splitter) -> Outcome {
    let mut rx = Receiver::new();
    let limit = heap_limit(max);
    let mut out = Outcome::default();
    let mut pos = 0;
    while pos < input.len() {
        let len = split.next_len(input.len() - pos);
        assert!(len > 0);
        let mut piece = input[pos..pos + len].to_vec();
        pos += len;
        let mut off = 0;
        while off < piece.len() {
            let rest = &mut piece[off..];
            let rest_len = rest.len();
            let result = rx.read(rest, max, false);
            assert!(
                rx.heap_bytes() <= limit,
                "receiver holds {} bytes, limit {limit}",
                rx.heap_bytes()
            );
            let (used, event) = match result {
                Ok(ok) => ok,
                Err(e) => {
                    out.error = Some(e);
                    return out;
                }
            };
            assert!(used > 0, "no progress on {rest_len} bytes");
            assert!(used <= rest_len, "consumed {used} of {rest_len}");
            if let Some(event) = event {
                let (kind, payload) = match event {
                    Event::Text(p) => (Kind::Text, p),
                    Event::Binary(p) => (Kind::Binary, p),
                    Event::Ping(p) => (Kind::Ping, p),
                    Event::Pong(p) => (Kind::Pong, p),
                    Event::Close(p) => (Kind::Close, p),
                    Event::Deflated { .. } => unreachable!("compression is not negotiated here"),
                };
                if let Payload::Input(range) = &payload {
                    assert!(
                        range.end <= used,
                        "payload {range:?} beyond the {used} bytes consumed"
                    );
                }
                let bytes = rx.payload(rest, &payload).to_vec();
                check_event(kind, &bytes, max);
                if payload == Payload::Message && split.coin() {
                    // What the server does with an assembled message.
                    let mut scratch = Vec::new();
                    rx.swap_message(&mut scratch);
                    assert_eq!(scratch, bytes);
                    assert!(rx.heap_bytes() <= limit);
                }
                out.events.push((kind, bytes));
            }
            off += used;
        }
    }
    out
}

/// What every event must satisfy.
fn check_event(kind: Kind, payload: &[u8], max: u64) {
    match kind {
        Kind::Text | Kind::Binary => {
            assert!(payload.len() as u64 <= max, "message over the limit");
            if kind == Kind::Text {
                assert!(std::str::from_utf8(payload).is_ok(), "text is not UTF-8");
            }
        }
        Kind::Ping | Kind::Pong => assert!(payload.len() <= 125),
        Kind::Close => {
            assert!(payload.len() <= 125);
            assert!(rookery::proto::close::parse_close(payload).is_ok());
        }
    }
}

// ---- message assembly --------------------------------------------------------

/// How a test frame encodes its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LenCode {
    /// The shortest encoding (RFC 6455 requires it of senders).
    Minimal,
    /// 126 and a 16-bit length, even for a short payload.
    Sixteen,
    /// 127 and a 64-bit length, even for a short payload.
    SixtyFour,
    /// 127 and a 64-bit length with the top bit set (invalid).
    TopBit,
}

/// A frame a client might send.
#[derive(Debug, Clone)]
pub struct TestFrame {
    /// FIN, RSV1–3 and the opcode.
    pub first: u8,
    /// Whether the mask bit is set (and a key sent).
    pub masked: bool,
    /// The length encoding.
    pub len_code: LenCode,
    /// The masking key.
    pub mask: [u8; 4],
    /// The payload, unmasked.
    pub payload: Vec<u8>,
}

impl TestFrame {
    /// A masked frame with the shortest length encoding.
    pub fn new(first: u8, mask: [u8; 4], payload: Vec<u8>) -> TestFrame {
        TestFrame {
            first,
            masked: true,
            len_code: LenCode::Minimal,
            mask,
            payload,
        }
    }

    /// The 7-bit length field as it will be encoded.
    fn len7(&self) -> u8 {
        let len = self.payload.len();
        match self.len_code {
            LenCode::Minimal if len < 126 => len as u8,
            LenCode::Minimal | LenCode::Sixteen if len <= 0xFFFF => 126,
            _ => 127,
        }
    }

    /// Appends the frame's bytes, as a client sends them.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.first);
        let len7 = self.len7();
        out.push(len7 | if self.masked { 0x80 } else { 0 });
        let len = self.payload.len() as u64;
        match len7 {
            126 => out.extend_from_slice(&(len as u16).to_be_bytes()),
            127 => {
                let top = if self.len_code == LenCode::TopBit {
                    1 << 63
                } else {
                    0
                };
                out.extend_from_slice(&(len | top).to_be_bytes());
            }
            _ => {}
        }
        if self.masked {
            out.extend_from_slice(&self.mask);
        }
        let payload_start = out.len();
        out.extend_from_slice(&self.payload);
        if self.masked {
            apply_mask(&mut out[payload_start..], self.mask, 0);
        }
    }
}

/// Close codes to try: valid, never valid on the wire, and out of range.
const CLOSE_CODES: [u16; 16] = [
    1000, 1001, 1002, 1003, 1007, 1011, 3000, 4999, 999, 1004, 1005, 1006, 1012, 1015, 2999, 5000,
];

/// A random valid UTF-8 text of at least `len` bytes, mixing one- to
/// four-byte code points so that fragment cuts fall inside them.
fn random_text(rng: &mut XorShift, len: usize) -> Vec<u8> {
    const SAMPLES: [char; 8] = ['a', 'Z', ' ', '~', 'é', '€', '𝄞', '\u{10FFFF}'];
    let mut text = String::with_capacity(len + 4);
    while text.len() < len {
        let r = rng.next_u64();
        let c = if r & 0x300 == 0 {
            SAMPLES[(r >> 16) as usize % SAMPLES.len()]
        } else {
            char::from(b' ' + (r % 95) as u8)
        };
        text.push(c);
    }
    text.into_bytes()
}

/// A payload length: usually short, sometimes around the 16-bit boundary.
fn random_len(choices: &mut Choices<'_>) -> usize {
    match choices.byte() % 64 {
        0..=3 => 0,
        4..=43 => choices.below(126),
        44..=62 => choices.below(1024),
        // Rarely: around the 16-bit length boundary.
        _ if choices.byte() & 7 == 0 => 65530 + choices.below(12),
        _ => 126 + choices.below(8),
    }
}

/// Frames described by `choices`: whole messages (possibly fragmented, with
/// control frames between fragments), control frames, and now and then a
/// violation.
pub fn generate_frames(choices: &mut Choices<'_>) -> Vec<TestFrame> {
    let mut rng = XorShift::new(choices.u64());
    let mut frames = Vec::new();
    let actions = 1 + choices.below(12);
    for _ in 0..actions {
        let mask = if choices.byte() & 7 == 0 {
            [0; 4]
        } else {
            (rng.next_u64() as u32).to_ne_bytes()
        };
        match choices.byte() % 16 {
            0..=6 => {
                // A whole message in 1–4 fragments.
                let text = choices.byte() & 1 == 0;
                let len = random_len(choices);
                let mut payload = if text {
                    random_text(&mut rng, len)
                } else {
                    let mut p = vec![0; len];
                    rng.fill(&mut p);
                    p
                };
                if text && choices.byte() & 15 == 0 && !payload.is_empty() {
                    // A byte that is never UTF-8, somewhere.
                    let at = rng.below(payload.len());
                    payload[at] = [0xFF, 0xC0, 0x80, 0xF5][rng.below(4)];
                }
                let fragments = 1 + choices.below(4);
                let mut cuts: Vec<usize> = (1..fragments)
                    .map(|_| rng.below(payload.len() + 1))
                    .collect();
                cuts.sort_unstable();
                cuts.push(payload.len());
                let mut start = 0;
                for (i, &end) in cuts.iter().enumerate() {
                    let fin = if i + 1 == cuts.len() { 0x80 } else { 0 };
                    let opcode = match (i, text) {
                        (0, true) => 1,
                        (0, false) => 2,
                        _ => 0,
                    };
                    let mut frame =
                        TestFrame::new(fin | opcode, mask, payload[start..end].to_vec());
                    frame.len_code = match choices.byte() % 16 {
                        0 => LenCode::Sixteen,
                        1 => LenCode::SixtyFour,
                        _ => LenCode::Minimal,
                    };
                    frames.push(frame);
                    start = end;
                    if fin == 0 && choices.byte() & 3 == 0 {
                        let mut p = vec![0; choices.below(126)];
                        rng.fill(&mut p);
                        frames.push(TestFrame::new(0x89, mask, p));
                    }
                }
            }
            7 | 8 => {
                let len = if choices.byte() & 15 == 0 {
                    126 + choices.below(4)
                } else {
                    choices.below(126)
                };
                let mut p = vec![0; len];
                rng.fill(&mut p);
                let opcode = if choices.byte() & 1 == 0 { 0x89 } else { 0x8A };
                frames.push(TestFrame::new(opcode, mask, p));
            }
            9 | 10 => {
                let payload = match choices.byte() % 8 {
                    0 => Vec::new(),
                    1 => vec![0x03],
                    _ => {
                        let code = CLOSE_CODES[choices.below(CLOSE_CODES.len())];
                        let mut p = code.to_be_bytes().to_vec();
                        let reason_len = choices.below(124);
                        if choices.byte() & 7 == 0 {
                            let mut r = vec![0; reason_len];
                            rng.fill(&mut r);
                            p.extend_from_slice(&r);
                        } else {
                            let mut r = random_text(&mut rng, reason_len);
                            // Cutting may split a code point: an invalid reason.
                            r.truncate(reason_len);
                            p.extend_from_slice(&r);
                        }
                        p
                    }
                };
                frames.push(TestFrame::new(0x88, mask, payload));
            }
            11 => {
                // A continuation, perhaps without a message.
                let fin = if choices.byte() & 1 == 0 { 0x80 } else { 0 };
                let mut p = vec![0; choices.below(64)];
                rng.fill(&mut p);
                frames.push(TestFrame::new(fin, mask, p));
            }
            12 => {
                // A message that starts and is left unfinished.
                let opcode = 1 + choices.below(2) as u8;
                let len = choices.below(64);
                frames.push(TestFrame::new(opcode, mask, random_text(&mut rng, len)));
            }
            13 => {
                // One violation of the frame format.
                let mut frame = TestFrame::new(0x81, mask, random_text(&mut rng, 5));
                match choices.byte() % 5 {
                    0 => frame.first |= [0x40, 0x20, 0x10][choices.below(3)],
                    1 => {
                        frame.first =
                            0x80 | [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF][choices.below(10)]
                    }
                    2 => frame.masked = false,
                    3 => frame.first = [0x08, 0x09, 0x0A][choices.below(3)],
                    _ => frame.len_code = LenCode::TopBit,
                }
                frames.push(frame);
            }
            _ => {
                // A control frame with a non-minimal length (too long by the
                // 7-bit field), or an empty data frame.
                if choices.byte() & 1 == 0 {
                    let mut frame = TestFrame::new(0x89, mask, vec![1, 2, 3]);
                    frame.len_code = LenCode::Sixteen;
                    frames.push(frame);
                } else {
                    frames.push(TestFrame::new(0x82, mask, Vec::new()));
                }
            }
        }
    }
    frames
}

/// What RFC 6455 (and rookery's size limit) says a server makes of `frames`:
/// an independent model of the receiver, frame by frame.
pub fn model(frames: &[TestFrame], max: u64) -> Outcome {
    let mut out = Outcome::default();
    let mut message: Option<(Kind, Vec<u8>)> = None;
    let mut message_len: u64 = 0;
    for frame in frames {
        match model_frame(frame, max, &mut message, &mut message_len) {
            Ok(Some(event)) => out.events.push(event),
            Ok(None) => {}
            Err(e) => {
                out.error = Some(e);
                break;
            }
        }
    }
    out
}

fn model_frame(
    frame: &TestFrame,
    max: u64,
    message: &mut Option<(Kind, Vec<u8>)>,
    message_len: &mut u64,
) -> Result<Option<(Kind, Vec<u8>)>, ProtocolError> {
    let fin = frame.first & 0x80 != 0;
    if frame.first & 0x70 != 0 {
        return Err(ProtocolError::ReservedBits);
    }
    let bits = frame.first & 0x0F;
    if !matches!(bits, 0 | 1 | 2 | 8 | 9 | 10) {
        return Err(ProtocolError::UnknownOpcode(bits));
    }
    if !frame.masked {
        return Err(ProtocolError::Unmasked);
    }
    let control = bits >= 8;
    if control {
        if !fin {
            return Err(ProtocolError::ControlFragmented);
        }
        if frame.len7() > 125 {
            return Err(ProtocolError::ControlTooLong);
        }
    } else if bits == 0 {
        if message.is_none() {
            return Err(ProtocolError::UnexpectedContinuation);
        }
    } else if message.is_some() {
        return Err(ProtocolError::ExpectedContinuation);
    }
    if frame.len_code == LenCode::TopBit && frame.len7() == 127 {
        return Err(ProtocolError::InvalidLength);
    }
    let len = frame.payload.len() as u64;
    if !control && message_len.saturating_add(len) > max {
        return Err(ProtocolError::MessageTooBig);
    }
    let payload = frame.payload.clone();
    match bits {
        9 => return Ok(Some((Kind::Ping, payload))),
        10 => return Ok(Some((Kind::Pong, payload))),
        8 => {
            if payload.len() == 1 {
                return Err(ProtocolError::TruncatedClose);
            }
            if payload.len() >= 2 {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                if !matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999) {
                    return Err(ProtocolError::InvalidCloseCode(CloseCode::new(code)));
                }
                if std::str::from_utf8(&payload[2..]).is_err() {
                    return Err(ProtocolError::InvalidUtf8);
                }
            }
            return Ok(Some((Kind::Close, payload)));
        }
        _ => {}
    }
    let kind = if bits == 1 { Kind::Text } else { Kind::Binary };
    let (kind, data) = message.get_or_insert((kind, Vec::new()));
    let kind = *kind;
    data.extend_from_slice(&payload);
    *message_len += len;
    if kind == Kind::Text {
        if let Err(e) = std::str::from_utf8(data) {
            // An invalid byte fails at once; an unfinished code point only at
            // the end of the message.
            if e.error_len().is_some() || fin {
                return Err(ProtocolError::InvalidUtf8);
            }
        }
    }
    if !fin {
        return Ok(None);
    }
    *message_len = 0;
    Ok(message.take())
}

/// Fuzz entry point for the message assembler: a message limit, a split
/// seed, then choices describing the frames.
pub fn message_assembler(data: &[u8]) {
    let mut choices = Choices::new(data);
    let max = pick_max_message(&mut choices);
    let seed = choices.u64();
    let frames = generate_frames(&mut choices);
    let mut wire = Vec::new();
    for frame in &frames {
        frame.encode(&mut wire);
    }
    let want = model(&frames, max);
    let whole = run_receiver(&wire, max, &mut Splitter::Whole);
    assert_eq!(whole, want, "receiver and model disagree on {frames:?}");
    let split = run_receiver(&wire, max, &mut Splitter::new(seed));
    assert_eq!(split, want, "receiver and model disagree when split");
}

/// A transport that takes at most `room` bytes per write, then refuses; it
/// checks that whatever it is given starts as an HTTP response.
struct FuzzSink {
    room: usize,
    seen: usize,
    start: Vec<u8>,
}

impl FuzzSink {
    /// One write of the connection's pending output, as the server makes it.
    fn flush(&mut self, conn: &mut Connection, settings: &Settings, now: Instant) {
        if conn.is_finished() {
            return;
        }
        if !conn.wants_write() {
            let mut n = 0;
            for slice in conn.pending_output() {
                let take = slice.len().min(self.room - n);
                if self.start.len() < 9 {
                    let want = (9 - self.start.len()).min(take);
                    self.start.extend_from_slice(&slice[..want]);
                }
                n += take;
            }
            self.seen += n;
            assert!(
                b"HTTP/1.1 ".starts_with(&self.start) || self.start.starts_with(b"HTTP/1.1 "),
                "output does not begin with a status line: {:?}",
                self.start
            );
            conn.consumed(n);
        }
        let _ = conn.end_write(settings, now, &[], 0, None);
    }
}

/// A valid upgrade request for `/chat`.
const UPGRADE: &[u8] = b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Drives one [`Connection`] through its life from `data` (see the module
/// docs for the checks).
pub fn connection(data: &[u8]) {
    let mut choices = Choices::new(data);
    let max = pick_max_message(&mut choices);
    let settings = Settings {
        max_message: max,
        max_backlog: usize::from(choices.u16()).max(1),
        handshake_timeout: Duration::from_millis(u64::from(choices.byte()) * 20),
        idle_timeout: Duration::from_millis(u64::from(choices.byte()) * 40),
        close_timeout: Duration::from_millis(u64::from(choices.byte()) * 20),
        deflate: choices.byte().is_multiple_of(2),
        ..Settings::default()
    };
    let mut wire = Vec::new();
    match choices.byte() % 5 {
        0 => {}
        1 => wire.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        2 => {
            // An upgrade that offers permessage-deflate.
            let (head, end) = UPGRADE.split_at(UPGRADE.len() - 2);
            wire.extend_from_slice(head);
            wire.extend_from_slice(
                b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
            );
            wire.extend_from_slice(end);
        }
        _ => wire.extend_from_slice(UPGRADE),
    }
    for frame in &generate_frames(&mut choices) {
        frame.encode(&mut wire);
    }
    let t0 = Instant::now();
    let mut now = t0;
    let mut conn = Connection::new(&settings, now);
    let mut codec = Codec::default();
    let mut scratch = Vec::new();
    let mut sink = FuzzSink {
        room: 0,
        seen: 0,
        start: Vec::new(),
    };
    let mut fed = 0;
    let mut closed = 0;
    let limit = heap_limit(max);
    for _ in 0..256 {
        if fed == wire.len() && choices.is_empty() {
            break;
        }
        match choices.byte() % 8 {
            0..=2 => {
                let left = wire.len() - fed;
                let n = (choices.below(left.max(1)) + 1).min(left);
                let mut piece = wire[fed..fed + n].to_vec();
                fed += n;
                let mut off = 0;
                let total = piece.len();
                // Half the pieces go as the server feeds them: the common
                // case through `read_message` first.
                let fast = choices.byte().is_multiple_of(2);
                while off < total {
                    if fast {
                        if let Some((used, message)) =
                            conn.read_message(&settings, now, &mut piece[off..])
                        {
                            assert!(used > 0 && used <= total - off, "read_message took {used}");
                            off += used;
                            assert_eq!(closed, 0, "a message after the end");
                            assert!(message.as_bytes().len() as u64 <= max);
                            if let Message::Text(text) = message {
                                assert!(std::str::from_utf8(text.as_bytes()).is_ok());
                            }
                            continue;
                        }
                    }
                    let (used, event) = conn.handle_input(
                        &settings,
                        now,
                        &mut codec,
                        &mut piece[off..],
                        &mut scratch,
                    );
                    assert!(used <= total - off, "consumed more than given");
                    off += used;
                    match event {
                        None => assert!(used > 0, "no progress and no event"),
                        Some(ConnEvent::Upgrade(req)) => {
                            if choices.byte().is_multiple_of(8) {
                                conn.reject(&settings, now, &Response::status(403)).unwrap();
                            } else {
                                let delayed = choices.byte().is_multiple_of(4);
                                conn.accept(&settings, now, &req, None, delayed).unwrap();
                            }
                        }
                        Some(ConnEvent::Request(_)) => {
                            conn.respond(&settings, now, &Response::status(404))
                                .unwrap();
                        }
                        Some(ConnEvent::Text(text)) => {
                            assert_eq!(closed, 0, "a message after the end");
                            assert!(text.len() as u64 <= max);
                        }
                        Some(ConnEvent::Binary(data)) => {
                            assert_eq!(closed, 0, "a message after the end");
                            assert!(data.len() as u64 <= max);
                        }
                        Some(ConnEvent::Closed { code, reason }) => {
                            closed += 1;
                            assert!(code.get() >= 1000, "close code {code}");
                            assert!(reason.len() <= 123);
                        }
                    }
                    assert!(
                        conn.receive_heap_bytes() <= limit,
                        "receive heap over the limit"
                    );
                }
            }
            3 => {
                now += Duration::from_millis(u64::from(choices.u16() % 4000));
                conn.handle_timeout(&settings, now);
                if let Some(due) = conn.poll_timeout(&settings) {
                    assert!(due > now, "a deadline left in the past");
                }
            }
            4 => {
                sink.room = usize::from(choices.byte()) * 64;
                sink.flush(&mut conn, &settings, now);
            }
            5 => {
                let len = choices.below(3000);
                let payload = vec![b'a'; len];
                let text = std::str::from_utf8(&payload).unwrap_or("");
                let msg = if choices.byte().is_multiple_of(2) {
                    Message::Text(text)
                } else {
                    Message::Binary(&payload)
                };
                let _ = conn.send(&settings, now, &mut codec, msg);
                if choices.byte().is_multiple_of(2) {
                    // A compressed message from the client, valid or cut.
                    if let Some(z) = codec.compress(15, &payload) {
                        let cut = z.len() - choices.below(2).min(z.len());
                        let first = if choices.byte().is_multiple_of(2) {
                            0xC1
                        } else {
                            0xC2
                        };
                        TestFrame::new(first, [1, 2, 3, 4], z[..cut].to_vec()).encode(&mut wire);
                    }
                }
            }
            6 => {
                let code = choices.u16();
                let _ = conn.close(&settings, now, CloseCode::new(code), "fuzz");
                let _ = conn.ping(&settings, now, b"p");
            }
            _ => match choices.byte() % 4 {
                0 => {
                    let _ = conn.kill();
                }
                _ => {
                    let _ = conn.activate();
                }
            },
        }
        while let Some(notice) = conn.poll_event(now) {
            match notice {
                Notice::Activated(mut early) => {
                    // Fed later with the rest of the wire.
                    wire.splice(fed..fed, early.drain(..));
                }
                Notice::Closed(_) => closed += 1,
                _ => {}
            }
        }
        assert!(closed <= 1, "the end reported twice");
    }
    if conn.is_finished() {
        let mut more = b"more".to_vec();
        let (_, event) = conn.handle_input(&settings, now, &mut codec, &mut more, &mut scratch);
        assert!(event.is_none(), "an event after the end");
    }
}
