//! Helpers shared by the TLS tests: certificates made with rcgen, a rustls
//! client, and a pump that moves bytes between the client and a
//! [`TlsSession`] in memory.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use base64::Engine;
use rookery::tls::{TlsConfig, TlsSession};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

/// A certificate (PEM), its key (PEM) and the DER to trust it.
pub struct Pair {
    pub cert_pem: String,
    pub key_pem: String,
    pub trust: CertificateDer<'static>,
}

/// A self-signed certificate for `localhost` with a key of `alg`.
pub fn pair_for(alg: &'static rcgen::SignatureAlgorithm) -> Pair {
    let key = rcgen::KeyPair::generate_for(alg).unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    Pair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        trust: cert.der().clone(),
    }
}

/// ECDSA P-256, PKCS#8 key.
pub fn pair() -> Pair {
    pair_for(&rcgen::PKCS_ECDSA_P256_SHA256)
}

/// The server configuration of `pair`.
pub fn config(pair: &Pair) -> TlsConfig {
    TlsConfig::from_pem(pair.cert_pem.as_bytes(), pair.key_pem.as_bytes()).unwrap()
}

/// A rustls client trusting `trust`, for the given versions.
pub fn client_with(
    trust: &CertificateDer<'static>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> ClientConnection {
    let mut roots = RootCertStore::empty();
    roots.add(trust.clone()).unwrap();
    let mut cfg =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    ClientConnection::new(Arc::new(cfg), ServerName::try_from("localhost").unwrap()).unwrap()
}

/// A TLS 1.2 + 1.3 client.
pub fn client(trust: &CertificateDer<'static>) -> ClientConnection {
    client_with(trust, rustls::DEFAULT_VERSIONS)
}

/// Moves bytes both ways until neither side has anything to send. The
/// client's ciphertext reaches the server in pieces of `piece` bytes.
/// Returns the plaintext the server decrypted.
pub fn pump(client: &mut ClientConnection, server: &mut TlsSession, piece: usize) -> Vec<u8> {
    let mut plain = Vec::new();
    for _ in 0..10_000 {
        let mut moved = false;
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        if !wire.is_empty() {
            moved = true;
            for chunk in wire.chunks_mut(piece) {
                server.read_tls(chunk, &mut plain).unwrap();
            }
        }
        if server.wants_write() {
            moved = true;
            let out = server.pending_output().to_vec();
            server.consumed(out.len());
            let mut rd = &out[..];
            while !rd.is_empty() {
                client.read_tls(&mut rd).unwrap();
                client.process_new_packets().unwrap();
                let got = drain_client(client);
                CLIENT_GOT.with(|c| c.borrow_mut().extend(got));
            }
        }
        if !moved {
            return plain;
        }
    }
    panic!("pump did not settle");
}

/// A completed handshake with the default client.
pub fn established(pair: &Pair) -> (ClientConnection, TlsSession) {
    let mut client = client(&pair.trust);
    let mut server = TlsSession::new(&config(pair)).unwrap();
    pump(&mut client, &mut server, usize::MAX);
    assert!(!server.is_handshaking());
    assert!(!client.is_handshaking());
    (client, server)
}

thread_local! {
    /// Plaintext the pump took from the client (so that its receive buffer
    /// never fills), until `client_plaintext` hands it out.
    static CLIENT_GOT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// All the plaintext the client has received since the last call (one
/// client per test thread at a time).
pub fn client_plaintext(client: &mut ClientConnection) -> Vec<u8> {
    let mut out = CLIENT_GOT.with(|c| std::mem::take(&mut *c.borrow_mut()));
    out.extend(drain_client(client));
    out
}

fn drain_client(client: &mut ClientConnection) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match client.reader().read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("client read: {e}"),
        }
    }
    out
}

/// Queues plaintext on the client.
pub fn client_send(client: &mut ClientConnection, data: &[u8]) {
    client.writer().write_all(data).unwrap();
}

/// A fresh, empty directory under the system temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "rookery-tls-{}-{}-{}",
        name,
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// PEM text of one section.
pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// One DER TLV: (tag, content, rest).
fn der_tlv(b: &[u8]) -> (u8, &[u8], &[u8]) {
    let tag = b[0];
    let (len, hdr) = match b[1] {
        n if n < 0x80 => (n as usize, 2),
        0x81 => (b[2] as usize, 3),
        0x82 => (((b[2] as usize) << 8) | b[3] as usize, 4),
        n => panic!("DER length form {n:#x}"),
    };
    (tag, &b[hdr..hdr + len], &b[hdr + len..])
}

/// The SEC1 `ECPrivateKey` inside an EC PKCS#8 key (as ring writes it:
/// without the optional curve parameters, which rustls does not need).
pub fn pkcs8_to_sec1(pkcs8: &[u8]) -> Vec<u8> {
    let (tag, body, _) = der_tlv(pkcs8);
    assert_eq!(tag, 0x30);
    let (_, _, rest) = der_tlv(body); // version
    let (_, _, rest) = der_tlv(rest); // algorithm
    let (tag, key, _) = der_tlv(rest);
    assert_eq!(tag, 0x04);
    key.to_vec()
}

/// Runs openssl with `args` in `dir`; panics on failure.
pub fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
