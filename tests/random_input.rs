//! Seeded random input for the fuzz targets' entry points, so that every
//! `cargo test` (and so every CI run) exercises them, not only the nightly
//! fuzzers. The checks are the fuzz harness itself (`fuzz/src/lib.rs`,
//! included below); this file only makes inputs: pure random bytes, and
//! valid handshakes and masked frame streams put through random mutations.
//!
//! A fixed seed always runs; `ROOKERY_SEED=<n>` (decimal or 0x-hex) adds
//! one. A failure prints the seed and the iteration, and saves the input
//! under `target/tmp/` for replay with `cargo +nightly fuzz run <target> <file>`.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod harness;

use harness::{TestFrame, XorShift};

/// The seed every run uses.
const FIXED_SEED: u64 = 0x5EED_F00D_B00C_1984;

/// The seeds for this run: the fixed one, and `ROOKERY_SEED` if set.
fn seeds() -> Vec<u64> {
    let mut seeds = vec![FIXED_SEED];
    if let Ok(text) = std::env::var("ROOKERY_SEED") {
        let text = text.trim();
        let parsed = match text.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => text.parse(),
        };
        match parsed {
            Ok(seed) => seeds.push(seed),
            Err(e) => panic!("ROOKERY_SEED={text:?} is not a number: {e}"),
        }
    }
    seeds
}

/// Prints what failed, if the test panics while it is alive.
struct Reporter<'a> {
    target: &'static str,
    seed: u64,
    iteration: usize,
    input: &'a [u8],
}

impl Drop for Reporter<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
                "{}-{:x}-{}.bin",
                self.target, self.seed, self.iteration
            ));
            let saved = match std::fs::write(&file, self.input) {
                Ok(()) => format!("saved to {}", file.display()),
                Err(e) => format!("not saved: {e}"),
            };
            eprintln!(
                "{}: failed with seed {:#x} at iteration {}; the {}-byte input is {saved}; \
                 replay it with `cd fuzz && cargo +nightly fuzz run {} <file>`",
                self.target,
                self.seed,
                self.iteration,
                self.input.len(),
                self.target
            );
        }
    }
}

/// Runs `check` on `iterations` inputs made by `make`, for every seed.
fn drive(
    target: &'static str,
    iterations: usize,
    check: fn(&[u8]),
    make: fn(&mut XorShift) -> Vec<u8>,
) {
    for seed in seeds() {
        println!("{target}: seed {seed:#x} ({iterations} inputs)");
        let mut rng = XorShift::new(seed);
        for iteration in 0..iterations {
            let input = make(&mut rng);
            let _reporter = Reporter {
                target,
                seed,
                iteration,
                input: &input,
            };
            check(&input);
        }
    }
}

/// Random bytes, `len` of them.
fn random_bytes(rng: &mut XorShift, len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    rng.fill(&mut bytes);
    bytes
}

/// Tokens worth splicing into HTTP heads and frame streams.
const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\r\n\r\n",
    b"\n\n",
    b"\n\r\n",
    b": ",
    b" ",
    b",",
    b"\t",
    b"\0",
    b"\xff",
    b"\xe2\x82",
    b"HTTP/1.1",
    b"GET / HTTP/1.1\r\n",
    b"Sec-WebSocket-Key: ",
    b"Sec-WebSocket-Version: 13\r\n",
    b"Upgrade: websocket\r\n",
    b"Connection: Upgrade\r\n",
    b"Origin: https://example.com\r\n",
    b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58",
    b"\x82\xff\x00\x00\x01\x00\x00\x00\x00\x00\x01\x02\x03\x04",
    b"\x88\x80\x00\x00\x00\x00",
];

/// Applies 1–8 random mutations to `data`.
fn mutate(rng: &mut XorShift, data: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(8) {
        let len = data.len();
        match rng.below(9) {
            0 if len > 0 => {
                let at = rng.below(len);
                data[at] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let at = rng.below(len);
                data[at] = rng.next_u64() as u8;
            }
            2 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let extra = random_bytes(rng, n);
                data.splice(at..at, extra);
            }
            3 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(32)).min(len);
                data.drain(at..end);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(64)).min(len);
                let copy = data[at..end].to_vec();
                let to = rng.below(len + 1);
                data.splice(to..to, copy);
            }
            5 => {
                let at = rng.below(len + 1);
                let token = TOKENS[rng.below(TOKENS.len())];
                data.splice(at..at, token.iter().copied());
            }
            6 if len > 0 => data.truncate(rng.below(len)),
            7 => {
                // A long run, towards the head's 8 KiB cap.
                let at = rng.below(len + 1);
                let run = vec![b'a'; 1 + rng.below(9000)];
                data.splice(at..at, run);
            }
            _ => {}
        }
    }
}

/// A valid upgrade request with some optional extras.
fn handshake_request(rng: &mut XorShift) -> Vec<u8> {
    let mut head = String::from("GET /chat HTTP/1.1\r\nHost: 127.0.0.1:1984\r\n");
    let mut lines = vec![
        "Upgrade: websocket\r\n",
        "Connection: keep-alive, Upgrade\r\n",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        "Sec-WebSocket-Version: 13\r\n",
    ];
    let extras = [
        "Origin: https://example.com\r\n",
        "Sec-WebSocket-Protocol: chat, superchat\r\n",
        "User-Agent: random_input\r\n",
        "Cookie: a=b; c=d\r\n",
    ];
    for extra in extras {
        if rng.below(2) == 0 {
            lines.push(extra);
        }
    }
    // Header order does not matter to a correct parser.
    for i in (1..lines.len()).rev() {
        lines.swap(i, rng.below(i + 1));
    }
    for line in lines {
        head.push_str(line);
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    if rng.below(4) == 0 {
        // Frames pipelined after the head, or a second request.
        bytes.extend_from_slice(TOKENS[18]);
    }
    bytes
}

/// A stream of valid masked client frames.
fn frame_stream(rng: &mut XorShift) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..1 + rng.below(6) {
        let mask = (rng.next_u64() as u32).to_ne_bytes();
        let len = match rng.below(8) {
            0 => 0,
            1..=5 => rng.below(126),
            6 => rng.below(2000),
            _ => 65530 + rng.below(12),
        };
        let payload = random_bytes(rng, len);
        let frame = match rng.below(6) {
            0 => TestFrame::new(0x81, mask, b"Hello, \xc3\xa9\xe2\x82\xac".to_vec()),
            1 => TestFrame::new(0x89, mask, payload[..len.min(125)].to_vec()),
            2 => TestFrame::new(0x88, mask, b"\x03\xe8bye".to_vec()),
            3 => {
                // A fragmented binary message with a ping in the middle.
                let cut = rng.below(len + 1);
                TestFrame::new(0x02, mask, payload[..cut].to_vec()).encode(&mut out);
                TestFrame::new(0x8A, mask, b"pong".to_vec()).encode(&mut out);
                TestFrame::new(0x80, mask, payload[cut..].to_vec())
            }
            _ => TestFrame::new(0x82, mask, payload),
        };
        frame.encode(&mut out);
    }
    out
}

/// A message-limit choice byte (see the harness) and a split seed.
fn receiver_prefix(rng: &mut XorShift) -> Vec<u8> {
    let mut prefix = random_bytes(rng, 11);
    if rng.below(2) == 0 {
        // One of the edge limits, mostly 1 MiB and unlimited.
        prefix[0] = [6, 7, 4, 0][rng.below(4)];
    }
    prefix
}

#[test]
fn http_head_random_input() {
    drive("http_head", 8000, harness::http_head, |rng| {
        let mut data = random_bytes(rng, 8);
        match rng.below(4) {
            0 => {
                let len = rng.below(400);
                data.extend(random_bytes(rng, len));
            }
            _ => {
                let mut head = handshake_request(rng);
                if rng.below(8) != 0 {
                    mutate(rng, &mut head);
                }
                data.extend(head);
            }
        }
        data
    });
}

#[test]
fn frame_decoder_random_input() {
    drive("frame_decoder", 5000, harness::frame_decoder, |rng| {
        let mut data = receiver_prefix(rng);
        match rng.below(4) {
            0 => {
                let len = rng.below(600);
                data.extend(random_bytes(rng, len));
            }
            _ => {
                let mut stream = frame_stream(rng);
                if rng.below(4) != 0 {
                    mutate(rng, &mut stream);
                }
                data.extend(stream);
            }
        }
        data
    });
}

#[test]
fn connection_random_input() {
    drive("connection", 4000, harness::connection, |rng| {
        let len = rng.below(600);
        random_bytes(rng, len)
    });
}

#[test]
fn message_assembler_random_input() {
    drive(
        "message_assembler",
        5000,
        harness::message_assembler,
        |rng| {
            let len = rng.below(300);
            random_bytes(rng, len)
        },
    );
}

/// The harness itself must catch what it is there to catch: a receiver that
/// disagreed with the model, or a split that changed the result, would
/// otherwise go unnoticed by a harness that checks nothing.
#[test]
fn the_model_agrees_with_known_answers() {
    use harness::{model, run_receiver, Kind, Splitter};
    let mask = [1, 2, 3, 4];
    let frames = vec![
        TestFrame::new(0x01, mask, "h\u{e9}".as_bytes()[..2].to_vec()),
        TestFrame::new(0x89, mask, b"ping".to_vec()),
        TestFrame::new(0x80, mask, "h\u{e9}".as_bytes()[2..].to_vec()),
        TestFrame::new(0x88, mask, b"\x03\xe8".to_vec()),
    ];
    let mut wire = Vec::new();
    for frame in &frames {
        frame.encode(&mut wire);
    }
    let want = model(&frames, 1 << 20);
    assert_eq!(
        want.events,
        [
            (Kind::Ping, b"ping".to_vec()),
            (Kind::Text, "h\u{e9}".as_bytes().to_vec()),
            (Kind::Close, b"\x03\xe8".to_vec()),
        ]
    );
    assert_eq!(want.error, None);
    for seed in 0..50 {
        assert_eq!(run_receiver(&wire, 1 << 20, &mut Splitter::new(seed)), want);
    }
    // Over a 1-byte limit the first fragment (2 bytes) already fails.
    let small = model(&frames, 1);
    assert_eq!(small.events, []);
    assert_eq!(
        small.error,
        Some(rookery::proto::receiver::ProtocolError::MessageTooBig)
    );
    assert_eq!(run_receiver(&wire, 1, &mut Splitter::Whole), small);
}
