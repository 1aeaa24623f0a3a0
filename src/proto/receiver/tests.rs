//! The receiver's tests: every rule of RFC 6455 it enforces, every split
//! of the input, the payloads' locations and the memory it keeps.

use super::*;
use crate::proto::close::CloseCode;

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const BIG: u64 = 1 << 20;

/// A masked client frame.
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    crate::proto::frame::encode_client_frame(&mut out, first, MASK, payload);
    out
}

/// What a test sees of an event: the kind and the payload bytes.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Vec<u8>),
    Deflated(bool, Vec<u8>),
}

/// Feeds `input` in pieces of `step` bytes and collects the events until
/// the input ends or an error occurs.
fn run(input: &[u8], step: usize, max: u64) -> (Vec<Seen>, Option<ProtocolError>) {
    run_with(input, step, max, false)
}

/// [`run`], with permessage-deflate negotiated or not.
fn run_with(
    input: &[u8],
    step: usize,
    max: u64,
    compression: bool,
) -> (Vec<Seen>, Option<ProtocolError>) {
    let mut rx = Receiver::new();
    let mut seen = Vec::new();
    for piece in input.chunks(step.max(1)) {
        let mut buf = piece.to_vec();
        let mut off = 0;
        while off < buf.len() {
            match rx.read(&mut buf[off..], max, compression) {
                Err(e) => return (seen, Some(e)),
                Ok((n, event)) => {
                    if let Some(event) = event {
                        let data = |p: &Payload| rx.payload(&buf[off..], p).to_vec();
                        seen.push(match &event {
                            Event::Text(p) => Seen::Text(data(p)),
                            Event::Binary(p) => Seen::Binary(data(p)),
                            Event::Ping(p) => Seen::Ping(data(p)),
                            Event::Pong(p) => Seen::Pong(data(p)),
                            Event::Close(p) => Seen::Close(data(p)),
                            Event::Deflated { text, payload } => {
                                Seen::Deflated(*text, data(payload))
                            }
                        });
                    }
                    assert!(n > 0 || buf[off..].is_empty(), "no progress");
                    off += n;
                }
            }
        }
    }
    (seen, None)
}

/// Runs `input` at every piece size that matters and checks each gives
/// the same result.
fn run_all_splits(input: &[u8], max: u64) -> (Vec<Seen>, Option<ProtocolError>) {
    run_all_splits_with(input, max, false)
}

fn run_all_splits_with(
    input: &[u8],
    max: u64,
    compression: bool,
) -> (Vec<Seen>, Option<ProtocolError>) {
    let whole = run_with(input, input.len(), max, compression);
    for step in [1, 2, 3, 5, 7, 13] {
        let (seen, err) = run_with(input, step, max, compression);
        assert_eq!(err, whole.1, "step {step}");
        if err.is_none() {
            assert_eq!(seen, whole.0, "step {step}");
        }
    }
    whole
}

#[test]
fn rfc6455_section_5_7_masked_text() {
    let input = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    let (seen, err) = run_all_splits(&input, BIG);
    assert_eq!(err, None);
    assert_eq!(seen, [Seen::Text(b"Hello".to_vec())]);
}

#[test]
fn rfc6455_section_5_7_fragmented_text_and_ping() {
    let mut input = frame(0x01, b"Hel");
    input.extend(frame(0x89, b"Hello"));
    input.extend(frame(0x80, b"lo"));
    let (seen, err) = run_all_splits(&input, BIG);
    assert_eq!(err, None);
    assert_eq!(
        seen,
        [Seen::Ping(b"Hello".to_vec()), Seen::Text(b"Hello".to_vec())]
    );
}

#[test]
fn lengths_at_every_encoding_boundary() {
    for len in [0usize, 1, 125, 126, 127, 65535, 65536, 100_000] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let input = frame(0x82, &payload);
        let (seen, err) = run(&input, input.len(), BIG);
        assert_eq!(err, None);
        assert_eq!(seen, [Seen::Binary(payload.clone())], "len {len}");
        let (seen, err) = run(&input, 1000, BIG);
        assert_eq!(err, None);
        assert_eq!(seen, [Seen::Binary(payload)], "len {len} in pieces");
    }
}

/// A whole frame in one read takes `read_whole_message`; in pieces it
/// takes the general path. Both must give the same events and errors.
#[test]
fn the_whole_message_path_agrees_with_the_general_one() {
    let mut unmasked = frame(0x82, b"x");
    unmasked[1] &= 0x7F;
    let mut cases: Vec<(Vec<u8>, u64)> = vec![
        (frame(0x81, b"plain ascii text of thirty-two b"), BIG),
        (frame(0x81, "h\u{e9}llo \u{1F600}".as_bytes()), BIG),
        (frame(0x81, b"bad \xC3\x28 byte"), BIG),
        (frame(0x81, b"cut \xE2\x82"), BIG),
        (frame(0x81, &[b'a'; 126]), BIG),
        // Past SHORT_PAYLOAD: unmasked, then tested as ASCII or UTF-8.
        (frame(0x81, &[b'a'; 300]), BIG),
        (frame(0x81, "\u{e9}".repeat(150).as_bytes()), BIG),
        (
            frame(0x81, &[[b'a'; 299].as_slice(), b"\xff"].concat()),
            BIG,
        ),
        (frame(0x82, &[0xff; 300]), BIG),
        (frame(0x82, &[7; 65535]), BIG),
        (frame(0x82, &[7; 65536]), BIG),
        (frame(0x82, &[7; 100]), 99),
        (frame(0x82, &[7; 100]), 100),
        (frame(0xC1, b"rsv1 without deflate"), BIG),
        (frame(0x83, b"reserved opcode"), BIG),
        (frame(0x02, b"first fragment"), BIG),
        (unmasked, BIG),
    ];
    // Then a second message behind each, read in the same buffer.
    for (input, _) in cases.iter_mut() {
        input.extend(frame(0x81, b"next"));
    }
    // Split every way, the long frames take minutes under Miri (safe
    // code past SHORT_PAYLOAD); the 126-byte one covers the 16-bit
    // length there.
    cases.retain(|(input, _)| !cfg!(miri) || input.len() < 256);
    for (input, max) in &cases {
        let (seen, err) = run_all_splits(input, *max);
        let (stepped, stepped_err) = run(input, 1, *max);
        assert_eq!(err, stepped_err, "{:x?}", &input[..2]);
        assert_eq!(seen, stepped, "{:x?}", &input[..2]);
    }
}

#[test]
// Megabytes of masking are minutes under Miri; the code is safe.
#[cfg_attr(miri, ignore)]
fn a_frame_over_reads_is_gathered_in_one_buffer_if_its_rest_is_small() {
    // 64 KiB in two reads: the first 40 KiB, then the rest. The buffer
    // is sized for the whole frame at the first read, so the second
    // needs no reallocation.
    let payload: Vec<u8> = (0..64 * 1024).map(|i| i as u8).collect();
    let input = frame(0x82, &payload);
    let (first, second) = input.split_at(14 + 40 * 1024);
    let mut rx = Receiver::new();
    let mut first = first.to_vec();
    let (used, event) = rx.read(&mut first, BIG, false).unwrap();
    let (used, event) = match event {
        None if used == 14 => rx.read(&mut first[used..], BIG, false).unwrap(),
        other => (used, other),
    };
    assert!(event.is_none() && used > 0);
    assert_eq!(rx.heap_bytes(), payload.len(), "room for the whole frame");
    let mut second = second.to_vec();
    let (_, event) = rx.read(&mut second, BIG, false).unwrap();
    assert!(matches!(event, Some(Event::Binary(Payload::Message))));
    assert_eq!(rx.message(), &payload[..]);
    assert_eq!(rx.heap_bytes(), payload.len(), "no reallocation");

    // A frame announced as 1 MiB with 1 KiB sent: the buffer holds what
    // came (at most four times it), not the announced length.
    let mut rx = Receiver::new();
    let mut head = frame(0x82, &vec![0; 1 << 20])[..14 + 1024].to_vec();
    let mut off = 0;
    while off < head.len() {
        let (used, event) = rx.read(&mut head[off..], BIG, false).unwrap();
        assert!(event.is_none());
        off += used;
    }
    assert!(rx.heap_bytes() <= 4 * 1024, "{} bytes", rx.heap_bytes());
}

#[test]
fn several_messages_in_one_read_are_returned_in_order() {
    let mut input = frame(0x81, b"one");
    input.extend(frame(0x82, b"two"));
    input.extend(frame(0x8A, b"p"));
    input.extend(frame(0x88, &[0x03, 0xE8]));
    let (seen, err) = run_all_splits(&input, BIG);
    assert_eq!(err, None);
    assert_eq!(
        seen,
        [
            Seen::Text(b"one".to_vec()),
            Seen::Binary(b"two".to_vec()),
            Seen::Pong(b"p".to_vec()),
            Seen::Close(vec![0x03, 0xE8]),
        ]
    );
}

#[test]
fn empty_messages_and_fragments() {
    let mut input = frame(0x81, b"");
    input.extend(frame(0x01, b""));
    input.extend(frame(0x00, b""));
    input.extend(frame(0x80, b""));
    input.extend(frame(0x88, b""));
    let (seen, err) = run_all_splits(&input, BIG);
    assert_eq!(err, None);
    assert_eq!(
        seen,
        [Seen::Text(vec![]), Seen::Text(vec![]), Seen::Close(vec![])]
    );
}

#[test]
fn every_violation_maps_to_its_close_code() {
    let long_ping = frame(0x89, &[0; 126]);
    let mut unmasked = frame(0x81, b"hi");
    unmasked[1] &= 0x7F;
    let mut huge = vec![0x82, 0xFF];
    huge.extend_from_slice(&(1u64 << 63).to_be_bytes());
    huge.extend_from_slice(&MASK);
    let mut text_in_fragment = frame(0x01, b"a");
    text_in_fragment.extend(frame(0x81, b"b"));
    let mut split_utf8_bad = frame(0x01, b"\xce");
    split_utf8_bad.extend(frame(0x80, b"\x41"));
    let mut unfinished_utf8 = frame(0x01, b"ok");
    unfinished_utf8.extend(frame(0x80, b"\xe2\x82"));
    let cases: Vec<(Vec<u8>, ProtocolError, u16)> = vec![
        (frame(0xC1, b"x"), ProtocolError::ReservedBits, 1002),
        (frame(0xA1, b"x"), ProtocolError::ReservedBits, 1002),
        (frame(0x91, b"x"), ProtocolError::ReservedBits, 1002),
        (frame(0x83, b"x"), ProtocolError::UnknownOpcode(3), 1002),
        (frame(0x8B, b"x"), ProtocolError::UnknownOpcode(0xB), 1002),
        (unmasked, ProtocolError::Unmasked, 1002),
        (long_ping, ProtocolError::ControlTooLong, 1002),
        (frame(0x09, b"x"), ProtocolError::ControlFragmented, 1002),
        (
            frame(0x80, b"x"),
            ProtocolError::UnexpectedContinuation,
            1002,
        ),
        (text_in_fragment, ProtocolError::ExpectedContinuation, 1002),
        (huge, ProtocolError::InvalidLength, 1002),
        (frame(0x88, &[3]), ProtocolError::TruncatedClose, 1002),
        (
            frame(0x88, &[0x03, 0xED]),
            ProtocolError::InvalidCloseCode(CloseCode::NO_STATUS),
            1002,
        ),
        (
            frame(0x88, &[0x03, 0xE8, 0xFF]),
            ProtocolError::InvalidUtf8,
            1007,
        ),
        (frame(0x81, b"\xff"), ProtocolError::InvalidUtf8, 1007),
        (split_utf8_bad, ProtocolError::InvalidUtf8, 1007),
        (unfinished_utf8, ProtocolError::InvalidUtf8, 1007),
        (frame(0x82, &[0; 11]), ProtocolError::MessageTooBig, 1009),
    ];
    for (input, want, code) in cases {
        let (_, err) = run_all_splits(&input, 10);
        assert_eq!(err, Some(want), "{input:02x?}");
        assert_eq!(want.close_code().get(), code);
    }
}

#[test]
fn fragmented_message_size_is_checked_across_frames() {
    let mut input = frame(0x02, &[0; 6]);
    input.extend(frame(0x80, &[0; 6]));
    assert_eq!(run(&input, input.len(), 12).1, None);
    assert_eq!(
        run(&input, input.len(), 11).1,
        Some(ProtocolError::MessageTooBig)
    );
}

#[test]
fn oversized_header_fails_before_any_payload() {
    // A header announcing 2^40 bytes with no payload following.
    let mut header = vec![0x82, 0xFF];
    header.extend_from_slice(&(1u64 << 40).to_be_bytes());
    header.extend_from_slice(&MASK);
    let mut rx = Receiver::new();
    assert_eq!(
        rx.read(&mut header, BIG, false),
        Err(ProtocolError::MessageTooBig)
    );
    assert_eq!(rx.heap_bytes(), 0);
}

#[test]
fn invalid_text_fails_at_the_bad_byte_not_at_the_end() {
    // The first fragment's bad byte fails before the rest arrives.
    let mut input = frame(0x01, b"good \xed\xa0\x80 bad");
    input.truncate(input.len() - 2);
    let (_, err) = run(&input, 4, BIG);
    assert_eq!(err, Some(ProtocolError::InvalidUtf8));
}

#[test]
fn large_buffers_are_released_after_the_message() {
    let mut input = frame(0x02, &[7; 10_000]);
    input.extend(frame(0x80, &[7; 10_000]));
    let mut rx = Receiver::new();
    let mut buf = input.clone();
    let mut off = 0;
    let mut got = None;
    while off < buf.len() {
        let (n, ev) = rx.read(&mut buf[off..], BIG, false).unwrap();
        off += n;
        if ev.is_some() {
            got = ev;
        }
    }
    assert_eq!(got, Some(Event::Binary(Payload::Message)));
    assert_eq!(rx.message().len(), 20_000);
    let mut scratch = vec![0u8; 2 * KEEP_CAPACITY];
    rx.swap_message(&mut scratch);
    assert_eq!(scratch.len(), 20_000);
    assert_eq!(rx.heap_bytes(), 0, "a large caller buffer is not kept");
    assert!(rx.is_idle());
}

#[test]
fn ping_split_across_reads_is_gathered() {
    let input = frame(0x89, b"abcdef");
    let (seen, err) = run(&input, 9, BIG);
    assert_eq!(err, None);
    assert_eq!(seen, [Seen::Ping(b"abcdef".to_vec())]);
}

#[test]
fn rsv1_marks_a_compressed_message_once_negotiated() {
    // Not negotiated: RSV1 is a protocol error (1002).
    assert_eq!(
        run_all_splits(&frame(0xC1, b"\xf2\x48"), BIG).1,
        Some(ProtocolError::ReservedBits)
    );
    // Negotiated: the bytes come out unvalidated (they are not UTF-8),
    // whole or gathered across fragments; plain messages still work.
    let mut input = frame(0xC1, b"\xf2\x48\xcd");
    input.extend(frame(0x42, b"\xff\x01"));
    input.extend(frame(0x80, b"\xfe"));
    input.extend(frame(0x81, b"plain"));
    let (seen, err) = run_all_splits_with(&input, BIG, true);
    assert_eq!(err, None);
    assert_eq!(
        seen,
        [
            Seen::Deflated(true, b"\xf2\x48\xcd".to_vec()),
            Seen::Deflated(false, b"\xff\x01\xfe".to_vec()),
            Seen::Text(b"plain".to_vec()),
        ]
    );
}

#[test]
fn rsv1_only_on_the_first_frame_of_a_data_message() {
    let mut on_continuation = frame(0x41, b"a");
    on_continuation.extend(frame(0xC0, b"b"));
    let mut plain_then_bad = frame(0x01, b"a");
    plain_then_bad.extend(frame(0xC0, b"b"));
    for input in [
        frame(0xC9, b"x"),       // ping
        frame(0xCA, b"x"),       // pong
        frame(0xC8, &[3, 0xE8]), // close
        on_continuation,
        plain_then_bad,
        frame(0xE1, b"x"), // RSV1 + RSV2
        frame(0xA1, b"x"), // RSV2
        frame(0x91, b"x"), // RSV3
    ] {
        assert_eq!(
            run_all_splits_with(&input, BIG, true).1,
            Some(ProtocolError::ReservedBits),
            "{input:02x?}"
        );
    }
    // The wire size of a compressed message counts against the limit.
    assert_eq!(
        run_all_splits_with(&frame(0xC2, &[0; 11]), 10, true).1,
        Some(ProtocolError::MessageTooBig)
    );
}
