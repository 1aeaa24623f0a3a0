//! The TLS layer (feature `tls`) driven in memory against a rustls client:
//! handshakes, data both ways in tiny and large pieces, close_notify,
//! hostile input, and every way loading a certificate and key can fail.

#![cfg(feature = "tls")]

mod common;
mod tls_support;

#[path = "../fuzz/src/tls.rs"]
mod fuzz_check;

use std::fs;
use std::path::Path;

use common::{require_program, Tool};
use rookery::tls::{
    PemFile, SessionError, TlsConfig, TlsError, TlsSession, MAX_HANDSHAKE_INCOMING, MAX_INCOMING,
};
use tls_support::*;

#[test]
fn handshake_tls13_negotiates_http11() {
    let pair = pair();
    let (client, server) = established(&pair);
    assert_eq!(server.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(client.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(
        server.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert!(!server.wants_write());
    assert_eq!(server.buffered_bytes(), 0, "idle session holds no buffers");
}

#[test]
fn handshake_tls12() {
    let pair = pair();
    let mut client = client_with(&pair.trust, &[&rustls::version::TLS12]);
    let mut server = TlsSession::new(&config(&pair)).unwrap();
    pump(&mut client, &mut server, usize::MAX);
    assert!(!server.is_handshaking());
    assert_eq!(
        server.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    client_send(&mut client, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(
        pump(&mut client, &mut server, usize::MAX),
        b"GET / HTTP/1.1\r\n\r\n"
    );
    server.write_plaintext(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
    pump(&mut client, &mut server, usize::MAX);
    assert_eq!(client_plaintext(&mut client), b"HTTP/1.1 200 OK\r\n\r\n");
}

/// The server asks for no client certificate and so never verifies a
/// signature: its crypto provider carries no verification algorithms, which
/// keeps ring's verifiers out of the binary (57,432 B of the stripped full
/// CLI), while every cipher suite and key exchange group stays.
#[test]
fn the_server_carries_no_signature_verifiers() {
    let config = config(&pair());
    let server = config.server_config();
    let provider = server.crypto_provider();
    assert!(provider.signature_verification_algorithms.all.is_empty());
    assert!(provider
        .signature_verification_algorithms
        .mapping
        .is_empty());
    let full = rustls::crypto::ring::default_provider();
    assert_eq!(provider.cipher_suites, full.cipher_suites);
    assert_eq!(provider.kx_groups.len(), full.kx_groups.len());
}

#[test]
fn handshake_and_data_one_byte_at_a_time() {
    let pair = pair();
    let mut client = client(&pair.trust);
    let mut server = TlsSession::new(&config(&pair)).unwrap();
    pump(&mut client, &mut server, 1);
    assert!(!server.is_handshaking());
    let msg: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    client_send(&mut client, &msg);
    assert_eq!(pump(&mut client, &mut server, 1), msg);
    for b in &msg {
        server.write_plaintext(std::slice::from_ref(b)).unwrap();
    }
    pump(&mut client, &mut server, 1);
    assert_eq!(client_plaintext(&mut client), msg);
    assert_eq!(server.buffered_bytes(), 0);
}

#[test]
fn data_in_64k_pieces_both_ways() {
    let pair = pair();
    let (mut client, mut server) = established(&pair);
    let big: Vec<u8> = (0..4 * 65536u32).map(|i| (i * 7 + 3) as u8).collect();
    let mut got = Vec::new();
    for piece in big.chunks(65536) {
        client_send(&mut client, piece);
        got.extend(pump(&mut client, &mut server, 65536));
    }
    assert_eq!(got, big);
    let mut got = Vec::new();
    for piece in big.chunks(65536) {
        server.write_plaintext(piece).unwrap();
        pump(&mut client, &mut server, 65536);
        got.extend(client_plaintext(&mut client));
    }
    assert_eq!(got, big);
    assert_eq!(server.buffered_bytes(), 0);
}

#[test]
fn a_slow_reader_gets_every_byte_in_order() {
    let pair = pair();
    let (mut client, mut server) = established(&pair);
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    server.write_plaintext(&big).unwrap();
    // The socket takes 1000 bytes at a time, and more is queued meanwhile.
    let mut wire = Vec::new();
    let mut queued_more = false;
    while server.wants_write() {
        let take = server.pending_output().len().min(1000);
        wire.extend_from_slice(&server.pending_output()[..take]);
        server.consumed(take);
        if !queued_more && wire.len() > 100_000 {
            server.write_plaintext(b"tail").unwrap();
            queued_more = true;
        }
        assert!(server.buffered_bytes() < 2 * big.len());
    }
    let mut rd = &wire[..];
    let mut got = Vec::new();
    while !rd.is_empty() {
        client.read_tls(&mut rd).unwrap();
        client.process_new_packets().unwrap();
        got.extend(client_plaintext(&mut client));
    }
    let mut want = big.clone();
    want.extend_from_slice(b"tail");
    assert_eq!(got, want);
    assert_eq!(server.buffered_bytes(), 0);
}

#[test]
fn a_record_cut_in_two_waits_for_the_rest() {
    let pair = pair();
    let (mut client, mut server) = established(&pair);
    client_send(&mut client, b"hello ");
    client_send(&mut client, b"world");
    let mut wire = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut wire).unwrap();
    }
    // Cut inside the first record's header.
    let mut plain = Vec::new();
    let (a, b) = wire.split_at_mut(7);
    server.read_tls(a, &mut plain).unwrap();
    assert!(plain.is_empty());
    assert!(server.buffered_bytes() > 0, "partial record kept");
    server.read_tls(b, &mut plain).unwrap();
    assert_eq!(plain, b"hello world");
    assert_eq!(server.buffered_bytes(), 0, "leftover freed");
}

#[test]
fn vectored_writes_gather_small_slices_into_few_records() {
    let pair = pair();
    let (mut client, mut server) = established(&pair);
    let big = vec![7u8; 40_000];
    let header = [0x82u8, 0x7e];
    let slices: Vec<&[u8]> = vec![&header, b"ab", &big, b"c", &header, b"", b"tail"];
    server.write_plaintext_vectored(&slices).unwrap();
    let wire_len = server.pending_output().len();
    pump(&mut client, &mut server, usize::MAX);
    assert_eq!(client_plaintext(&mut client), slices.concat());
    // 40,011 bytes in 3 TLS 1.3 records (16 KiB + 16 KiB + the rest, 22
    // bytes of overhead each), not one per slice.
    let records = 3;
    assert_eq!(wire_len, slices.concat().len() + records * 22);
    assert_eq!(server.buffered_bytes(), 0);
}

#[test]
fn key_updates_from_the_client_are_answered() {
    let pair = pair();
    let (mut client, mut server) = established(&pair);
    for round in 0..3u8 {
        client.refresh_traffic_keys().unwrap();
        client_send(&mut client, &[round; 100]);
        assert_eq!(pump(&mut client, &mut server, 7), vec![round; 100]);
        server.write_plaintext(&[round + 10; 50]).unwrap();
        pump(&mut client, &mut server, usize::MAX);
        assert_eq!(client_plaintext(&mut client), vec![round + 10; 50]);
    }
}

#[test]
fn a_returning_client_resumes() {
    let pair = pair();
    let config = config(&pair);
    // Reuse one client configuration, so its session cache carries over.
    let cfg = {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pair.trust.clone()).unwrap();
        let mut c = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        std::sync::Arc::new(c)
    };
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let mut c = rustls::ClientConnection::new(cfg.clone(), name.clone()).unwrap();
        let mut s = TlsSession::new(&config).unwrap();
        pump(&mut c, &mut s, usize::MAX);
        client_send(&mut c, b"ping");
        assert_eq!(pump(&mut c, &mut s, usize::MAX), b"ping");
        kinds.push(c.handshake_kind());
    }
    assert_eq!(
        kinds,
        [
            Some(rustls::HandshakeKind::Full),
            Some(rustls::HandshakeKind::Resumed)
        ]
    );
}

#[test]
fn plaintext_written_during_handshake_is_sent_after_it() {
    let pair = pair();
    let mut client = client(&pair.trust);
    let mut server = TlsSession::new(&config(&pair)).unwrap();
    server.write_plaintext(b"early").unwrap();
    pump(&mut client, &mut server, usize::MAX);
    assert_eq!(client_plaintext(&mut client), b"early");
}

#[test]
fn client_close_notify_is_end_of_stream() {
    let pair = pair();
    let (mut client, mut server) = established(&pair);
    client_send(&mut client, b"bye");
    client.send_close_notify();
    let mut wire = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut wire).unwrap();
    }
    let mut plain = Vec::new();
    let r = server.read_tls(&mut wire, &mut plain).unwrap();
    assert_eq!(plain, b"bye");
    assert!(r.peer_closed);
    assert!(server.peer_closed());
    assert!(!server.is_closed());
    server.close();
    assert!(server.wants_write());
    pump(&mut client, &mut server, usize::MAX);
    assert!(server.is_closed() || server.peer_closed());
    assert!(matches!(
        server.write_plaintext(b"late"),
        Err(SessionError::Closed)
    ));
}

#[test]
fn server_close_notify_reaches_the_client() {
    let pair = pair();
    let (mut client, mut server) = established(&pair);
    server.write_plaintext(b"last words").unwrap();
    server.close();
    server.close(); // twice is harmless
    pump(&mut client, &mut server, usize::MAX);
    assert_eq!(client_plaintext(&mut client), b"last words");
    let mut buf = [0u8; 8];
    use std::io::Read;
    assert_eq!(client.reader().read(&mut buf).unwrap(), 0, "clean EOF");
    // The client answers with its own close_notify.
    client.send_close_notify();
    pump(&mut client, &mut server, usize::MAX);
    assert!(server.peer_closed());
    assert!(server.is_closed());
}

#[test]
fn close_during_handshake_sends_nothing() {
    let pair = pair();
    let mut server = TlsSession::new(&config(&pair)).unwrap();
    server.close();
    assert!(!server.wants_write());
}

#[test]
fn plain_http_request_is_not_tls() {
    let pair = pair();
    let mut server = TlsSession::new(&config(&pair)).unwrap();
    let mut req = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec();
    let mut plain = Vec::new();
    assert!(matches!(
        server.read_tls(&mut req, &mut plain),
        Err(SessionError::NotTls)
    ));
    assert!(plain.is_empty());
    assert!(!server.wants_write(), "nothing to send to an HTTP client");
    // And it stays failed.
    assert!(server.read_tls(&mut [0x16, 3, 1], &mut plain).is_err());
}

/// xorshift64*, so the garbage is the same on every run.
fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed | 1;
    move || {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let pair = pair();
    let config = config(&pair);
    let mut next = rng(0x5eed);
    for round in 0..500 {
        let mut server = TlsSession::new(&config).unwrap();
        let len = (next() % 3000) as usize + 1;
        let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if round % 2 == 0 {
            // Looks like a handshake record, so rustls parses the rest.
            bytes[0] = 0x16;
            if len > 2 {
                bytes[1] = 3;
                bytes[2] = (round % 5) as u8;
            }
        }
        let mut plain = Vec::new();
        let mut failed = false;
        for piece in bytes.chunks_mut((next() % 700) as usize + 1) {
            if server.read_tls(piece, &mut plain).is_err() {
                failed = true;
                break;
            }
        }
        assert!(plain.is_empty(), "no plaintext from garbage");
        assert!(
            failed || server.is_handshaking(),
            "garbage either fails or waits for more"
        );
        assert!(server.buffered_bytes() <= MAX_HANDSHAKE_INCOMING + 4096);
    }
}

#[test]
fn a_client_hello_then_garbage_is_an_error_not_a_panic() {
    let pair = pair();
    let config = config(&pair);
    let rounds: u64 = std::env::var("ROOKERY_TLS_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let mut next = rng(0xc1e7);
    for _ in 0..rounds {
        let mut client = client(&pair.trust);
        let mut wire = Vec::new();
        client.write_tls(&mut wire).unwrap();
        // Keep a prefix of the real hello (maybe all of it), flip a few
        // bytes, append noise that often looks like more records.
        let keep = (next() as usize) % (wire.len() + 1);
        wire.truncate(keep);
        for _ in 0..(next() % 4) {
            if !wire.is_empty() {
                let at = (next() as usize) % wire.len();
                wire[at] ^= next() as u8 | 1;
            }
        }
        for _ in 0..(next() % 6) {
            let len = (next() % 300) as usize;
            let typ = [0x14, 0x15, 0x16, 0x17, next() as u8][(next() % 5) as usize];
            wire.extend_from_slice(&[typ, 3, (next() % 4) as u8]);
            wire.extend_from_slice(&(len as u16).to_be_bytes());
            wire.extend((0..len).map(|_| next() as u8));
        }
        if wire.is_empty() {
            continue;
        }
        let mut server = TlsSession::new(&config).unwrap();
        let mut plain = Vec::new();
        for piece in wire.chunks_mut((next() % 400) as usize + 1) {
            if server.read_tls(piece, &mut plain).is_err() {
                break;
            }
            let _ = server.write_plaintext(b"x");
            let out = server.pending_output().len();
            server.consumed(out);
        }
        server.close();
        assert!(plain.is_empty(), "no plaintext without a handshake");
    }
}

/// The `tls_session` fuzz target's check, on seeded random bytes and on
/// real ClientHellos with bytes flipped, so every `cargo test` runs it.
/// `ROOKERY_TLS_CORPUS=DIR` also writes a few real ClientHellos there as
/// seeds for the fuzzer (fuzz/corpus/tls_session was made so).
#[test]
fn fuzz_check_on_random_bytes_and_mangled_hellos() {
    let pair = pair();
    let config = config(&pair);
    let mut next = rng(0xf022);
    let corpus = std::env::var_os("ROOKERY_TLS_CORPUS").map(std::path::PathBuf::from);
    for round in 0..400u32 {
        let mut input = vec![next() as u8];
        if round % 2 == 0 {
            let versions: &[&'static rustls::SupportedProtocolVersion] = match round % 3 {
                0 => &[&rustls::version::TLS12],
                _ => rustls::DEFAULT_VERSIONS,
            };
            let mut c = client_with(&pair.trust, versions);
            c.write_tls(&mut input).unwrap();
            if let (Some(dir), true) = (&corpus, round < 6) {
                fs::write(dir.join(format!("client-hello-{round}")), &input).unwrap();
            }
            for _ in 0..(next() % 5) {
                let at = 1 + (next() as usize) % (input.len() - 1);
                input[at] ^= next() as u8 | 1;
            }
        } else {
            input.extend((0..next() % 2000).map(|_| next() as u8));
        }
        fuzz_check::tls_session(&config, &input);
    }
}

#[test]
fn garbage_after_the_handshake_fails_with_an_alert() {
    let pair = pair();
    let (_client, mut server) = established(&pair);
    // A well-framed application-data record that does not decrypt.
    let mut rec = vec![0x17, 3, 3, 0, 40];
    rec.extend_from_slice(&[0xAB; 40]);
    let mut plain = Vec::new();
    assert!(matches!(
        server.read_tls(&mut rec, &mut plain),
        Err(SessionError::Tls(_))
    ));
    assert!(plain.is_empty());
    assert!(server.wants_write(), "a fatal alert is queued");
    assert!(server.pending_output().len() < 64);
    assert!(server.write_plaintext(b"x").is_err());
}

#[test]
fn half_a_client_hello_stays_handshaking_with_no_output() {
    let pair = pair();
    let mut client = client(&pair.trust);
    let mut server = TlsSession::new(&config(&pair)).unwrap();
    let mut hello = Vec::new();
    client.write_tls(&mut hello).unwrap();
    let half = hello.len() / 2;
    let mut plain = Vec::new();
    let r = server.read_tls(&mut hello[..half], &mut plain).unwrap();
    assert_eq!(r.plaintext, 0);
    assert!(server.is_handshaking());
    assert!(!server.wants_write());
    // Byte by byte does not change that either, up to one byte short.
    let mut rest = hello[half..hello.len() - 1].to_vec();
    for b in rest.chunks_mut(1) {
        server.read_tls(b, &mut plain).unwrap();
    }
    assert!(server.is_handshaking());
    assert!(!server.wants_write());
    // The last byte completes it: the server answers.
    let mut last = [hello[hello.len() - 1]];
    server.read_tls(&mut last, &mut plain).unwrap();
    assert!(server.wants_write());
}

#[test]
fn an_endless_record_is_refused() {
    let pair = pair();
    let mut server = TlsSession::new(&config(&pair)).unwrap();
    // A handshake record header claiming the largest length, then filler.
    let mut head = vec![0x16, 3, 1, 0xFF, 0xFF];
    let mut plain = Vec::new();
    let mut result = server.read_tls(&mut head, &mut plain);
    let mut fed = 5;
    while result.is_ok() && fed < 4 * MAX_INCOMING {
        let mut filler = vec![0u8; 4096];
        result = server.read_tls(&mut filler, &mut plain);
        fed += 4096;
    }
    assert!(result.is_err(), "oversized record must fail");
    assert!(server.buffered_bytes() <= MAX_HANDSHAKE_INCOMING + 4096);
}

/// A real client whose ClientHello is about `size` bytes on the wire: it
/// offers `http/1.1` after enough long made-up ALPN protocols.
fn client_with_hello_of(
    trust: &rustls::pki_types::CertificateDer<'static>,
    size: usize,
) -> rustls::ClientConnection {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trust.clone()).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut base = client(trust);
    let mut hello = Vec::new();
    base.write_tls(&mut hello).unwrap();
    let mut alpn: Vec<Vec<u8>> = Vec::new();
    let mut len = hello.len();
    while len + 201 <= size {
        alpn.push(format!("x-{:0198}", alpn.len()).into_bytes());
        len += 201;
    }
    alpn.push(b"http/1.1".to_vec());
    cfg.alpn_protocols = alpn;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).unwrap()
}

/// The ClientHello `client` sends first.
fn first_flight(client: &mut rustls::ClientConnection) -> Vec<u8> {
    let mut hello = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut hello).unwrap();
    }
    hello
}

#[test]
fn a_client_hello_of_7_kib_completes_in_small_pieces() {
    let pair = pair();
    let mut probe = client_with_hello_of(&pair.trust, 7 * 1024);
    let size = first_flight(&mut probe).len();
    assert!((6 * 1024..MAX_HANDSHAKE_INCOMING).contains(&size), "{size}");
    let mut client = client_with_hello_of(&pair.trust, 7 * 1024);
    let mut server = TlsSession::new(&config(&pair)).unwrap();
    pump(&mut client, &mut server, 100);
    assert!(!server.is_handshaking());
    assert_eq!(server.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(server.buffered_bytes(), 0);
}

#[test]
fn a_client_hello_over_8_kib_is_refused_at_once_whole_or_in_pieces() {
    let pair = pair();
    let mut client = client_with_hello_of(&pair.trust, 9 * 1024);
    let hello = first_flight(&mut client);
    assert!(hello.len() > MAX_HANDSHAKE_INCOMING, "{}", hello.len());
    // A ClientHello announcing 65,000 bytes, its first 16 KiB record.
    let mut huge = vec![0x16, 3, 1, 0x40, 0, 1, 0, 0xFD, 0xE8, 3, 3];
    huge.resize(5 + 16 * 1024, 0);
    for wire in [hello, huge] {
        let mut whole = wire.clone();
        let mut server = TlsSession::new(&config(&pair)).unwrap();
        let e = server.read_tls(&mut whole, &mut Vec::new()).unwrap_err();
        assert!(matches!(e, SessionError::TooLarge), "{e:?}");
        assert_eq!(server.buffered_bytes(), 0);
        assert!(!server.wants_write());
        // In pieces: refused once the length is in, nothing kept.
        let mut server = TlsSession::new(&config(&pair)).unwrap();
        let mut pieces = wire.clone();
        let mut result = Ok(Default::default());
        let mut fed = 0;
        for piece in pieces.chunks_mut(4) {
            result = server.read_tls(piece, &mut Vec::new());
            fed += piece.len();
            if result.is_err() {
                break;
            }
        }
        assert!(matches!(result, Err(SessionError::TooLarge)), "{result:?}");
        assert!(fed <= 12, "refused after {fed} bytes");
        assert_eq!(server.buffered_bytes(), 0);
    }
}

#[test]
fn a_client_hello_in_one_byte_records_completes() {
    let pair = pair();
    let mut client = client(&pair.trust);
    let hello = first_flight(&mut client);
    // The same handshake bytes, one to a record: the first record is too
    // short to announce the ClientHello's length.
    let mut wire = Vec::new();
    for record in hello.chunks(5 + 16 * 1024) {
        for &b in &record[5..] {
            wire.extend_from_slice(&[record[0], record[1], record[2], 0, 1, b]);
        }
    }
    let mut server = TlsSession::new(&config(&pair)).unwrap();
    for piece in wire.chunks_mut(7) {
        server.read_tls(piece, &mut Vec::new()).unwrap();
    }
    assert!(server.wants_write(), "answered");
}

#[test]
fn a_client_hello_in_many_small_records_is_kept_to_8_kib_at_most() {
    let pair = pair();
    // A ClientHello announcing 8,000 bytes, in records of 100 bytes: it
    // fits the announced limit, but its records take more than 8 KiB. All
    // but its last byte: it never completes.
    let mut message = vec![1, 0, 0x1F, 0x40, 3, 3];
    message.resize(4 + 8000, 0);
    let mut wire = Vec::new();
    for record in message.chunks(100) {
        wire.extend_from_slice(&[0x16, 3, 1, 0, record.len() as u8]);
        wire.extend_from_slice(record);
    }
    assert!(wire.len() > MAX_HANDSHAKE_INCOMING);
    wire.pop();
    let mut server = TlsSession::new(&config(&pair)).unwrap();
    let mut result = Ok(Default::default());
    for piece in wire.chunks_mut(1000) {
        result = server.read_tls(piece, &mut Vec::new());
        assert!(server.buffered_bytes() <= MAX_HANDSHAKE_INCOMING);
        if result.is_err() {
            break;
        }
    }
    assert!(matches!(result, Err(SessionError::TooLarge)), "{result:?}");
}

// --- keys and certificates -------------------------------------------------

/// The handshake works with `cert_pem` and `key_pem` written to files.
fn handshake_with_files(
    cert_pem: &[u8],
    key_pem: &[u8],
    trust: &rustls::pki_types::CertificateDer<'static>,
) {
    let dir = temp_dir("keys");
    fs::write(dir.join("cert.pem"), cert_pem).unwrap();
    fs::write(dir.join("key.pem"), key_pem).unwrap();
    let config = TlsConfig::from_pem_files(&dir.join("cert.pem"), &dir.join("key.pem")).unwrap();
    let mut client = client(trust);
    let mut server = TlsSession::new(&config).unwrap();
    pump(&mut client, &mut server, usize::MAX);
    assert!(!server.is_handshaking());
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn ecdsa_p256_pkcs8_key() {
    let pair = pair();
    assert!(pair.key_pem.contains("BEGIN PRIVATE KEY"));
    handshake_with_files(
        pair.cert_pem.as_bytes(),
        pair.key_pem.as_bytes(),
        &pair.trust,
    );
}

#[test]
fn ecdsa_p384_and_ed25519_keys() {
    for alg in [&rcgen::PKCS_ECDSA_P384_SHA384, &rcgen::PKCS_ED25519] {
        let pair = pair_for(alg);
        handshake_with_files(
            pair.cert_pem.as_bytes(),
            pair.key_pem.as_bytes(),
            &pair.trust,
        );
    }
}

#[test]
fn ecdsa_sec1_key() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let sec1 = pem("EC PRIVATE KEY", &pkcs8_to_sec1(&key.serialize_der()));
    handshake_with_files(cert.pem().as_bytes(), sec1.as_bytes(), cert.der());
}

#[test]
fn certificate_chain_with_intermediate() {
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "rookery test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let leaf_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let chain = format!("{}{}", leaf.pem(), ca.pem());
    // The client trusts only the CA: the leaf alone would not verify.
    handshake_with_files(
        chain.as_bytes(),
        leaf_key.serialize_pem().as_bytes(),
        ca.der(),
    );
}

#[test]
fn rsa_pkcs1_and_pkcs8_and_openssl_sec1_keys() {
    // rcgen on ring cannot make RSA keys: openssl makes them.
    if !require_program(Tool::Openssl, "openssl", &["version"]) {
        return;
    }
    let dir = temp_dir("openssl");
    let d = dir.as_path();
    // RSA 2048, PKCS#1 ("RSA PRIVATE KEY") and PKCS#8 ("PRIVATE KEY").
    openssl(d, &["genrsa", "-traditional", "-out", "rsa1.pem", "2048"]);
    openssl(
        d,
        &[
            "pkcs8", "-topk8", "-nocrypt", "-in", "rsa1.pem", "-out", "rsa8.pem",
        ],
    );
    // P-256 in SEC1 with the curve parameters, as openssl writes it.
    openssl(
        d,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "ec.pem",
        ],
    );
    for (key, marker) in [
        ("rsa1.pem", "BEGIN RSA PRIVATE KEY"),
        ("rsa8.pem", "BEGIN PRIVATE KEY"),
        ("ec.pem", "BEGIN EC PRIVATE KEY"),
    ] {
        let key_pem = fs::read(d.join(key)).unwrap();
        assert!(String::from_utf8_lossy(&key_pem).contains(marker), "{key}");
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                key,
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=DNS:localhost",
                "-addext",
                "basicConstraints=critical,CA:FALSE",
                "-days",
                "2",
                "-out",
                "cert.pem",
            ],
        );
        let cert_pem = fs::read(d.join("cert.pem")).unwrap();
        let trust = rustls::pki_types::CertificateDer::from(
            rustls_pki_types::pem::PemObject::from_pem_slice(&cert_pem)
                .map(|c: rustls::pki_types::CertificateDer<'_>| c.to_vec())
                .unwrap(),
        );
        handshake_with_files(&cert_pem, &key_pem, &trust);
    }
    let _ = fs::remove_dir_all(dir);
}

// --- what from_pem_files refuses -------------------------------------------

fn load(dir: &Path, cert: &str, key: &str) -> Result<TlsConfig, TlsError> {
    TlsConfig::from_pem_files(&dir.join(cert), &dir.join(key))
}

/// Display is one line and names the file.
fn one_line(e: &TlsError, names: &str) {
    let s = e.to_string();
    assert!(!s.contains('\n'), "{s}");
    assert!(s.contains(names), "{s:?} should name {names}");
}

#[test]
fn missing_files() {
    let dir = temp_dir("missing");
    let pair = pair();
    fs::write(dir.join("cert.pem"), &pair.cert_pem).unwrap();
    fs::write(dir.join("key.pem"), &pair.key_pem).unwrap();
    let e = load(&dir, "nope.pem", "key.pem").unwrap_err();
    assert!(
        matches!(
            e,
            TlsError::Missing {
                file: PemFile::Certificate,
                ..
            }
        ),
        "{e:?}"
    );
    one_line(&e, "nope.pem");
    assert_eq!(e.file(), PemFile::Certificate);
    let e = load(&dir, "cert.pem", "nope.pem").unwrap_err();
    assert!(
        matches!(
            e,
            TlsError::Missing {
                file: PemFile::Key,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.file(), PemFile::Key);
    one_line(&e, "nope.pem");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn unreadable_files() {
    let dir = temp_dir("unreadable");
    let pair = pair();
    fs::write(dir.join("key.pem"), &pair.key_pem).unwrap();
    fs::create_dir(dir.join("adir")).unwrap();
    let e = load(&dir, "adir", "key.pem").unwrap_err();
    assert!(
        matches!(
            e,
            TlsError::Unreadable {
                file: PemFile::Certificate,
                ..
            }
        ),
        "{e:?}"
    );
    one_line(&e, "adir");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn empty_and_wrong_files() {
    let dir = temp_dir("wrong");
    let pair = pair();
    fs::write(dir.join("cert.pem"), &pair.cert_pem).unwrap();
    fs::write(dir.join("key.pem"), &pair.key_pem).unwrap();
    fs::write(dir.join("empty.pem"), "").unwrap();
    fs::write(dir.join("text.pem"), "hello, not PEM\n").unwrap();

    let e = load(&dir, "empty.pem", "key.pem").unwrap_err();
    assert!(matches!(e, TlsError::NoCertificate { .. }), "{e:?}");
    one_line(&e, "empty.pem");
    let e = load(&dir, "text.pem", "key.pem").unwrap_err();
    assert!(matches!(e, TlsError::NoCertificate { .. }), "{e:?}");
    // A key where the certificate should be, and the other way round.
    let e = load(&dir, "key.pem", "key.pem").unwrap_err();
    assert!(matches!(e, TlsError::NoCertificate { .. }), "{e:?}");
    let e = load(&dir, "cert.pem", "cert.pem").unwrap_err();
    assert!(matches!(e, TlsError::NoKey { .. }), "{e:?}");
    one_line(&e, "cert.pem");
    let e = load(&dir, "cert.pem", "empty.pem").unwrap_err();
    assert!(matches!(e, TlsError::NoKey { .. }), "{e:?}");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn malformed_pem() {
    let dir = temp_dir("pem");
    let pair = pair();
    fs::write(dir.join("key.pem"), &pair.key_pem).unwrap();
    fs::write(dir.join("cert.pem"), &pair.cert_pem).unwrap();
    // Cut before the END line.
    let cut = &pair.cert_pem[..pair.cert_pem.len() - 30];
    fs::write(dir.join("cut.pem"), cut).unwrap();
    let e = load(&dir, "cut.pem", "key.pem").unwrap_err();
    assert!(
        matches!(
            e,
            TlsError::BadPem {
                file: PemFile::Certificate,
                ..
            }
        ),
        "{e:?}"
    );
    one_line(&e, "cut.pem");
    // Bad base64 in the key.
    fs::write(
        dir.join("b64.pem"),
        "-----BEGIN PRIVATE KEY-----\n!!!!****\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let e = load(&dir, "cert.pem", "b64.pem").unwrap_err();
    assert!(
        matches!(
            e,
            TlsError::BadPem {
                file: PemFile::Key,
                ..
            }
        ),
        "{e:?}"
    );
    one_line(&e, "b64.pem");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn garbage_key_and_certificate() {
    let dir = temp_dir("garbage");
    let pair = pair();
    fs::write(dir.join("key.pem"), &pair.key_pem).unwrap();
    fs::write(dir.join("cert.pem"), &pair.cert_pem).unwrap();
    fs::write(
        dir.join("badkey.pem"),
        pem("PRIVATE KEY", b"not a key at all"),
    )
    .unwrap();
    fs::write(
        dir.join("badcert.pem"),
        pem("CERTIFICATE", b"not a certificate"),
    )
    .unwrap();
    let e = load(&dir, "cert.pem", "badkey.pem").unwrap_err();
    assert!(matches!(e, TlsError::BadKey { .. }), "{e:?}");
    one_line(&e, "badkey.pem");
    let e = load(&dir, "badcert.pem", "key.pem").unwrap_err();
    assert!(matches!(e, TlsError::BadCertificate { .. }), "{e:?}");
    one_line(&e, "badcert.pem");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn key_that_does_not_match_the_certificate() {
    let dir = temp_dir("mismatch");
    let a = pair();
    let b = pair();
    fs::write(dir.join("a.crt"), &a.cert_pem).unwrap();
    fs::write(dir.join("b.key"), &b.key_pem).unwrap();
    let e = load(&dir, "a.crt", "b.key").unwrap_err();
    assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e:?}");
    one_line(&e, "b.key");
    one_line(&e, "a.crt");
    assert_eq!(e.file(), PemFile::Key);
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn huge_file_is_refused() {
    let dir = temp_dir("huge");
    let pair = pair();
    fs::write(dir.join("key.pem"), &pair.key_pem).unwrap();
    fs::write(dir.join("huge.pem"), vec![b'A'; 1024 * 1024 + 10]).unwrap();
    let e = load(&dir, "huge.pem", "key.pem").unwrap_err();
    assert!(matches!(e, TlsError::TooLarge { .. }), "{e:?}");
    one_line(&e, "huge.pem");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn reload_takes_a_new_pair_and_keeps_the_old_on_error() {
    let dir = temp_dir("reload");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let old = pair();
    fs::write(&cert, &old.cert_pem).unwrap();
    fs::write(&key, &old.key_pem).unwrap();
    let mut config = TlsConfig::from_pem_files(&cert, &key).unwrap();
    assert_eq!(config.paths(), Some((cert.as_path(), key.as_path())));

    // An established session on the old pair.
    let mut old_client = client(&old.trust);
    let mut old_session = TlsSession::new(&config).unwrap();
    pump(&mut old_client, &mut old_session, usize::MAX);

    // A broken pair on disk: reload fails, the old pair stays.
    let new = pair();
    fs::write(&cert, &new.cert_pem).unwrap(); // key still the old one
    assert!(matches!(config.reload(), Err(TlsError::KeyMismatch { .. })));
    let mut c = client(&old.trust);
    let mut s = TlsSession::new(&config).unwrap();
    pump(&mut c, &mut s, usize::MAX);
    assert!(!s.is_handshaking(), "still serving the old pair");

    // The whole new pair: new sessions use it.
    fs::write(&key, &new.key_pem).unwrap();
    config.reload().unwrap();
    let mut c = client(&new.trust);
    let mut s = TlsSession::new(&config).unwrap();
    pump(&mut c, &mut s, usize::MAX);
    assert!(!s.is_handshaking(), "serving the new pair");

    // The old session goes on with its keys.
    client_send(&mut old_client, b"still here");
    assert_eq!(
        pump(&mut old_client, &mut old_session, usize::MAX),
        b"still here"
    );

    // from_pem has nothing to reload.
    let mut mem = TlsConfig::from_pem(new.cert_pem.as_bytes(), new.key_pem.as_bytes()).unwrap();
    assert!(mem.reload().is_ok());
    assert!(mem.paths().is_none());
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn errors_are_one_line() {
    let e = TlsConfig::from_pem(b"", b"").unwrap_err();
    one_line(&e, "(in memory)");
    for e in [
        SessionError::NotTls,
        SessionError::TooLarge,
        SessionError::Closed,
        SessionError::Tls(rustls::Error::DecryptError),
    ] {
        assert!(!e.to_string().contains('\n'));
    }
}

/// A read that ends inside a record and a next read far larger than
/// `MAX_INCOMING` (the server reads up to 256 KiB at once) that finishes it
/// and carries many more: every record is processed, nothing is refused.
#[test]
fn a_partial_record_followed_by_a_large_read_is_all_processed() {
    let pair = tls_support::pair();
    let (mut client, mut server) = tls_support::established(&pair);
    let data = vec![b'z'; 300 * 1024];
    let mut wire = Vec::new();
    for chunk in data.chunks(16 * 1024) {
        tls_support::client_send(&mut client, chunk);
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
    }
    let mut plain = Vec::new();
    let (first, second) = wire.split_at_mut(1000);
    server.read_tls(first, &mut plain).unwrap();
    server.read_tls(second, &mut plain).unwrap();
    assert_eq!(plain.len(), data.len());
    assert!(plain == data);
}
