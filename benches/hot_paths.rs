//! Micro-benchmarks of the hot paths of the protocol core, in bytes per
//! second: unmasking, UTF-8 validation, frame decoding (header checks,
//! unmasking and validation together) and server frame encoding.
//!
//! `cargo bench --bench hot_paths` (a release build). Each figure is the
//! median of 7 timed runs after a warm-up; the machine's noise shows in the
//! spread, which is printed too. No external harness: the figures are
//! throughputs over megabytes, where `Instant` is precise enough.

use std::hint::black_box;
use std::time::{Duration, Instant};

use rookery::proto::frame::{
    apply_mask, encode_client_frame, unmask_checking_ascii, OpCode, ServerHeader,
};
use rookery::proto::receiver::Receiver;
use rookery::proto::utf8::Utf8Validator;

/// Runs `f` (which processes `bytes` bytes) enough times for ~200 ms, 7
/// times, and prints the median and the range in MB/s.
fn bench(name: &str, bytes: usize, mut f: impl FnMut()) {
    let start = Instant::now();
    let mut iters = 0u64;
    while start.elapsed() < Duration::from_millis(50) {
        f();
        iters += 1;
    }
    let per_run = (iters * 4).max(1);
    let mut rates: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..per_run {
                f();
            }
            (bytes as f64 * per_run as f64) / t.elapsed().as_secs_f64() / 1e6
        })
        .collect();
    rates.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{name:<40} {:>10.0} MB/s   (range {:.0}–{:.0})",
        rates[3], rates[0], rates[6]
    );
}

/// A masked client frame carrying `payload` (FIN set).
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_client_frame(&mut out, 0x80 | opcode, [0x37, 0xfa, 0x21, 0x3d], payload);
    out
}

/// Decodes every frame of `stream` (a copy of `template`, since decoding
/// unmasks in place) and counts the events.
fn decode_all(template: &[u8], scratch: &mut Vec<u8>) -> usize {
    scratch.clear();
    scratch.extend_from_slice(template);
    let mut rx = Receiver::new();
    let mut off = 0;
    let mut events = 0;
    while off < scratch.len() {
        match rx.read(&mut scratch[off..], u64::MAX >> 1, false) {
            Ok((n, ev)) => {
                off += n;
                events += usize::from(ev.is_some());
            }
            Err(e) => panic!("benchmark input invalid: {e}"),
        }
    }
    events
}

fn main() {
    let big: Vec<u8> = (0..1 << 20).map(|i| (i * 7) as u8).collect();
    let mut data = big.clone();
    bench("unmask 1 MiB (word at a time)", data.len(), || {
        apply_mask(black_box(&mut data), [1, 2, 3, 4], 0)
    });
    bench("unmask 1 MiB byte at a time (baseline)", data.len(), || {
        let mask = [1u8, 2, 3, 4];
        for (i, b) in black_box(&mut data).iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
    });
    bench("unmask 1 MiB at odd offset", data.len() - 1, || {
        apply_mask(black_box(&mut data[1..]), [1, 2, 3, 4], 1)
    });
    // Echo large's message (docs/performance.md, the seventh pass).
    let mut frame = big[..64 * 1024].to_vec();
    bench("unmask 64 KiB", frame.len(), || {
        apply_mask(black_box(&mut frame), [1, 2, 3, 4], 0)
    });
    // A whole small text frame's unmasking with its ASCII test folded in,
    // against the two passes, at both ends of `SHORT_PAYLOAD` and past it.
    for len in [32, 128, 512] {
        let mut small = vec![b'a'; len];
        let times = (1 << 20) / len;
        bench(
            &format!("unmask {len} B checking ASCII"),
            len * times,
            || {
                for _ in 0..times {
                    black_box(unmask_checking_ascii(black_box(&mut small), [1, 2, 3, 4]));
                }
            },
        );
        bench(
            &format!("unmask {len} B then is_ascii"),
            len * times,
            || {
                for _ in 0..times {
                    apply_mask(black_box(&mut small), [1, 2, 3, 4], 0);
                    black_box(small.is_ascii());
                }
            },
        );
    }

    let ascii: Vec<u8> = (0..1 << 20).map(|i| b'a' + (i % 26) as u8).collect();
    let mixed: Vec<u8> = "κόσμε 𝄞 rookery ".repeat(1 << 16).into_bytes();
    bench("utf8 validate 1 MiB ascii", ascii.len(), || {
        let mut v = Utf8Validator::new();
        black_box(v.feed(black_box(&ascii)).is_ok());
    });
    bench("utf8 validate ~1 MiB mixed", mixed.len(), || {
        let mut v = Utf8Validator::new();
        black_box(v.feed(black_box(&mixed)).is_ok());
    });
    bench("utf8 validate mixed in 1000 B pieces", mixed.len(), || {
        let mut v = Utf8Validator::new();
        for piece in mixed.chunks(1000) {
            black_box(v.feed(piece).is_ok());
        }
    });

    let mut scratch = Vec::new();
    let small: Vec<u8> = (0..2000)
        .flat_map(|_| client_frame(0x1, b"hello rookery, 32 bytes of text."))
        .collect();
    bench("decode 2000 × 32 B text frames", small.len(), || {
        black_box(decode_all(&small, &mut scratch));
    });
    let large: Vec<u8> = (0..16)
        .flat_map(|_| client_frame(0x2, &big[..64 * 1024]))
        .collect();
    bench("decode 16 × 64 KiB binary frames", large.len(), || {
        black_box(decode_all(&large, &mut scratch));
    });
    let text_large: Vec<u8> = client_frame(0x1, &ascii);
    bench("decode 1 MiB text frame", text_large.len(), || {
        black_box(decode_all(&text_large, &mut scratch));
    });
    let mut fragmented = Vec::new();
    for (i, piece) in ascii.chunks(4096).enumerate() {
        let last = (i + 1) * 4096 >= ascii.len();
        let op = if i == 0 { 0x1 } else { 0x0 };
        let mut frame = client_frame(op, piece);
        if !last {
            frame[0] &= 0x7F;
        }
        fragmented.extend(frame);
    }
    bench(
        "decode 1 MiB text in 4 KiB fragments",
        fragmented.len(),
        || {
            black_box(decode_all(&fragmented, &mut scratch));
        },
    );

    let mut out = Vec::with_capacity(1 << 21);
    let payload = &big[..32];
    bench("encode 10000 × 32 B frames", 10_000 * 34, || {
        out.clear();
        for _ in 0..10_000 {
            out.extend_from_slice(ServerHeader::new(true, OpCode::Text, payload.len()).as_bytes());
            out.extend_from_slice(black_box(payload));
        }
        black_box(&out);
    });
    bench("encode 64 KiB frame", 64 * 1024 + 4, || {
        out.clear();
        out.extend_from_slice(ServerHeader::new(true, OpCode::Binary, 65536).as_bytes());
        out.extend_from_slice(black_box(&big[..65536]));
        black_box(&out);
    });
}
