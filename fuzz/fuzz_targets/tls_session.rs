//! Fuzz target: see `fuzz/src/tls.rs` for the input layout and the checks.
//! The certificate is made once, in memory, with rcgen.
#![no_main]

#[path = "../src/tls.rs"]
mod tls;

use std::sync::OnceLock;

use rookery::tls::TlsConfig;

fn config() -> &'static TlsConfig {
    static CONFIG: OnceLock<TlsConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        TlsConfig::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap()
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| tls::tls_session(config(), data));
