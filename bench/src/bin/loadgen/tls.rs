//! The client side of `wss://`: rustls (ring provider) over the loadgen's
//! non-blocking mio sockets.
//!
//! The server's certificate is not checked against any trust anchor: the
//! verifier below accepts whatever certificate the server presents (it still
//! checks the handshake signature with it, so the client does the same
//! public-key work as a real one). This is a benchmark on loopback with a
//! throw-away self-signed certificate that `run.sh` makes: chain building
//! would only add a once-per-connection cost on the client side, and no
//! flag or file has to be kept in step with the server's certificate.
//! Never use this verifier anywhere else.

use mio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{
    ring, verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms,
};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};
use std::io;
use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::ws::Out;

/// Accepts any server certificate; verifies handshake signatures with it.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// What every `wss://` connection of a run shares.
#[derive(Clone)]
pub struct Tls {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl Tls {
    /// TLS 1.3 and 1.2 (rustls' safe defaults), ring's cipher suites, the
    /// server named by its IPv4 address (SNI is not sent for an address).
    pub fn new(ip: Ipv4Addr) -> Tls {
        let provider = Arc::new(ring::default_provider());
        let algs = provider.signature_verification_algorithms;
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(algs)))
            .with_no_client_auth();
        Tls {
            config: Arc::new(config),
            name: ServerName::IpAddress(ip.into()),
        }
    }

    /// A new client session; its plaintext buffer is unbounded, since what
    /// the loadgen queues is bounded by its own windows.
    pub fn connect(&self) -> Box<ClientConnection> {
        let mut c = ClientConnection::new(self.config.clone(), self.name.clone())
            .expect("a valid client configuration");
        c.set_buffer_limit(None);
        Box::new(c)
    }
}

/// "TLSv1_3/TLS13_AES_256_GCM_SHA384" once the handshake is done.
pub fn describe(c: &ClientConnection) -> Option<String> {
    if c.is_handshaking() {
        return None;
    }
    let v = c.protocol_version()?;
    let s = c.negotiated_cipher_suite()?;
    Some(format!("{v:?}/{:?}", s.suite()))
}

/// Moves the queued plaintext into the session and writes out ciphertext
/// until the socket would block (then `out.blocked` is set, as for plain
/// TCP, and the next writable edge resumes).
pub fn flush(out: &mut Out, tls: &mut ClientConnection, mut sock: &TcpStream) -> io::Result<()> {
    if out.blocked {
        return Ok(());
    }
    if out.pending() {
        // Never blocks: the session takes everything (no buffer limit).
        out.flush(tls.writer())?;
    }
    while tls.wants_write() {
        match tls.write_tls(&mut sock) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                out.blocked = true;
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
