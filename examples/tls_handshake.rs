//! How long a server-side TLS handshake takes with `rookery::tls`, in
//! memory against a rustls client (no sockets): the time spent in the
//! server's calls only, per handshake.
//!
//! ```sh
//! cargo run --release --features tls --example tls_handshake            # ECDSA P-256
//! cargo run --release --features tls --example tls_handshake -- cert.pem key.pem
//! ```
//!
//! With a certificate and key given, the certificate must be for
//! `localhost` (and is trusted as is). Prints one line per protocol version.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rookery::tls::{TlsConfig, TlsSession};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

fn handshake(client: &mut ClientConnection, server: &mut TlsSession) -> Duration {
    let mut spent = Duration::ZERO;
    let mut plain = Vec::new();
    loop {
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).expect("client write");
        }
        let mut moved = !wire.is_empty();
        if moved {
            let t = Instant::now();
            server.read_tls(&mut wire, &mut plain).expect("server read");
            spent += t.elapsed();
        }
        if server.wants_write() {
            moved = true;
            let out = server.pending_output().to_vec();
            server.consumed(out.len());
            let mut rd = &out[..];
            while !rd.is_empty() {
                client.read_tls(&mut rd).expect("client read");
                client.process_new_packets().expect("client process");
            }
        }
        if !moved {
            return spent;
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (cert_pem, key_pem) = if args.len() >= 3 {
        let read = |p: &str| {
            let mut v = Vec::new();
            std::fs::File::open(p)
                .and_then(|mut f| f.read_to_end(&mut v))
                .unwrap_or_else(|e| panic!("{p}: {e}"));
            v
        };
        (read(&args[1]), read(&args[2]))
    } else {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        (cert.pem().into_bytes(), key.serialize_pem().into_bytes())
    };
    let config = TlsConfig::from_pem(&cert_pem, &key_pem).expect("config");
    let trust = CertificateDer::from_pem_slice(&cert_pem).expect("cert");
    let mut roots = RootCertStore::empty();
    roots.add(trust).expect("trust");
    let n = 200;
    for (name, version) in [
        ("TLS 1.3", &rustls::version::TLS13),
        ("TLS 1.2", &rustls::version::TLS12),
    ] {
        let mut client_config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(&[version])
                .expect("versions")
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
        // Full handshakes only: no resumption.
        client_config.resumption = rustls::client::Resumption::disabled();
        let client_config = Arc::new(client_config);
        let mut total = Duration::ZERO;
        for _ in 0..n {
            let mut client = ClientConnection::new(
                client_config.clone(),
                ServerName::try_from("localhost").expect("name"),
            )
            .expect("client");
            let mut server = TlsSession::new(&config).expect("session");
            total += handshake(&mut client, &mut server);
            assert!(!server.is_handshaking());
        }
        println!(
            "{name}: {:.0} µs of server time per full handshake ({n} handshakes)",
            total.as_secs_f64() * 1e6 / n as f64
        );
    }
}
