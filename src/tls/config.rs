//! [`TlsConfig`]: the certificate chain and key, loaded from PEM files, as a
//! shared rustls server configuration.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::ServerSessionMemoryCache;
use rustls::ServerConfig;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The ALPN protocol offered: the page and the upgrade are both HTTP/1.1.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Largest PEM file read (a certificate chain or a key is a few KiB; this
/// stops `--tls-cert /dev/zero` from eating the board's memory).
pub const MAX_PEM_FILE: u64 = 1024 * 1024;

/// Entries in the shared stateful session-resumption cache (one per issued
/// TLS 1.3 ticket or TLS 1.2 session id, a few hundred bytes each). Shared by
/// every connection of one configuration, not per connection.
pub const SESSION_CACHE_ENTRIES: usize = 256;

/// Which of the two files an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PemFile {
    /// The certificate (chain) file, `--tls-cert`.
    Certificate,
    /// The private key file, `--tls-key`.
    Key,
}

impl fmt::Display for PemFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PemFile::Certificate => "certificate file",
            PemFile::Key => "key file",
        })
    }
}

/// Why a certificate/key pair could not be loaded. [`Display`](fmt::Display)
/// is one line naming the file; [`TlsError::file`] says which flag it was.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsError {
    /// The file does not exist.
    Missing {
        /// Which file.
        file: PemFile,
        /// Its path.
        path: PathBuf,
    },
    /// The file exists but could not be read (permissions, a directory, an
    /// I/O error).
    Unreadable {
        /// Which file.
        file: PemFile,
        /// Its path.
        path: PathBuf,
        /// What the system said.
        error: io::Error,
    },
    /// The file is larger than [`MAX_PEM_FILE`].
    TooLarge {
        /// Which file.
        file: PemFile,
        /// Its path.
        path: PathBuf,
    },
    /// The file is not valid PEM (a section without its end line, bad
    /// base64, ...).
    BadPem {
        /// Which file.
        file: PemFile,
        /// Its path.
        path: PathBuf,
        /// What is wrong, as the PEM parser says it.
        detail: String,
    },
    /// The certificate file holds no `CERTIFICATE` section.
    NoCertificate {
        /// Its path.
        path: PathBuf,
    },
    /// The key file holds no `PRIVATE KEY`, `RSA PRIVATE KEY` or
    /// `EC PRIVATE KEY` section.
    NoKey {
        /// Its path.
        path: PathBuf,
    },
    /// The key is not one the crypto provider can sign with (an unsupported
    /// algorithm or curve, a corrupt key).
    BadKey {
        /// Its path.
        path: PathBuf,
        /// What rustls said.
        detail: String,
    },
    /// The first certificate in the chain is not a certificate rustls can
    /// parse.
    BadCertificate {
        /// Its path.
        path: PathBuf,
        /// What rustls said.
        detail: String,
    },
    /// The key is not the key of the (first) certificate.
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// Any other refusal by rustls to build the configuration.
    Rustls(rustls::Error),
}

impl TlsError {
    /// The file the error is about (a mismatch is reported on the key).
    pub fn file(&self) -> PemFile {
        match self {
            TlsError::Missing { file, .. }
            | TlsError::Unreadable { file, .. }
            | TlsError::TooLarge { file, .. }
            | TlsError::BadPem { file, .. } => *file,
            TlsError::NoCertificate { .. } | TlsError::BadCertificate { .. } => {
                PemFile::Certificate
            }
            TlsError::NoKey { .. }
            | TlsError::BadKey { .. }
            | TlsError::KeyMismatch { .. }
            | TlsError::Rustls(_) => PemFile::Key,
        }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Missing { file, path } => {
                write!(f, "{file} {}: no such file", path.display())
            }
            TlsError::Unreadable { file, path, error } => {
                write!(f, "{file} {}: cannot read: {error}", path.display())
            }
            TlsError::TooLarge { file, path } => write!(
                f,
                "{file} {}: larger than {MAX_PEM_FILE} bytes, not a PEM file",
                path.display()
            ),
            TlsError::BadPem { file, path, detail } => {
                write!(f, "{file} {}: invalid PEM: {detail}", path.display())
            }
            TlsError::NoCertificate { path } => write!(
                f,
                "certificate file {}: no CERTIFICATE section",
                path.display()
            ),
            TlsError::NoKey { path } => write!(
                f,
                "key file {}: no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY section",
                path.display()
            ),
            TlsError::BadKey { path, detail } => {
                write!(f, "key file {}: unusable key: {detail}", path.display())
            }
            TlsError::BadCertificate { path, detail } => write!(
                f,
                "certificate file {}: invalid certificate: {detail}",
                path.display()
            ),
            TlsError::KeyMismatch { cert, key } => write!(
                f,
                "key file {} does not match the certificate in {}",
                key.display(),
                cert.display()
            ),
            TlsError::Rustls(e) => write!(f, "TLS configuration rejected: {e}"),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::Unreadable { error, .. } => Some(error),
            TlsError::Rustls(e) => Some(e),
            _ => None,
        }
    }
}

/// The paths a configuration was loaded from, for [`TlsConfig::reload`].
#[derive(Debug)]
struct Files {
    cert: PathBuf,
    key: PathBuf,
}

/// A certificate chain and its key as a rustls server configuration: TLS 1.2
/// and 1.3 only, ALPN `http/1.1`, the `ring` provider, no client
/// certificates, a bounded shared resumption cache.
///
/// Cheap to clone (two [`Arc`]s). Every [`TlsSession`](super::TlsSession)
/// keeps the configuration it was made with, so after a
/// [`reload`](TlsConfig::reload) new connections use the new pair and
/// established ones keep theirs until they close.
#[derive(Clone)]
pub struct TlsConfig {
    server: Arc<ServerConfig>,
    files: Option<Arc<Files>>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TlsConfig");
        if let Some(files) = &self.files {
            d.field("cert", &files.cert).field("key", &files.key);
        }
        d.finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Loads a PEM certificate file (the end-entity certificate first, then
    /// any intermediates) and a PEM key file (PKCS#8, PKCS#1 or SEC1; the
    /// first key in the file is used) and checks that they belong together.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<TlsConfig, TlsError> {
        let cert_pem = read_pem_file(PemFile::Certificate, cert)?;
        let key_pem = read_pem_file(PemFile::Key, key)?;
        let server = build(&cert_pem, &key_pem, cert, key)?;
        Ok(TlsConfig {
            server,
            files: Some(Arc::new(Files {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            })),
        })
    }

    /// Like [`from_pem_files`](TlsConfig::from_pem_files) from PEM text in
    /// memory (errors name the file `(in memory)`); such a configuration has
    /// nothing to [`reload`](TlsConfig::reload) from.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<TlsConfig, TlsError> {
        let place = Path::new("(in memory)");
        Ok(TlsConfig {
            server: build(cert_pem, key_pem, place, place)?,
            files: None,
        })
    }

    /// Re-reads the files this configuration was loaded from (on SIGHUP).
    /// On success `self` holds the new pair; on failure `self` is unchanged
    /// and the error says why (the server logs it and keeps serving). A
    /// configuration made with [`from_pem`](TlsConfig::from_pem) is left as
    /// it is.
    pub fn reload(&mut self) -> Result<(), TlsError> {
        let Some(files) = self.files.clone() else {
            return Ok(());
        };
        *self = TlsConfig::from_pem_files(&files.cert, &files.key)?;
        Ok(())
    }

    /// The certificate and key paths, when loaded from files.
    pub fn paths(&self) -> Option<(&Path, &Path)> {
        self.files
            .as_deref()
            .map(|f| (f.cert.as_path(), f.key.as_path()))
    }

    /// The rustls configuration (for tests and tools; sessions are made with
    /// [`TlsSession::new`](super::TlsSession::new)).
    pub fn server_config(&self) -> &Arc<ServerConfig> {
        &self.server
    }
}

/// Reads at most [`MAX_PEM_FILE`] bytes of `path`.
fn read_pem_file(file: PemFile, path: &Path) -> Result<Vec<u8>, TlsError> {
    let unreadable = |error: io::Error| {
        if error.kind() == io::ErrorKind::NotFound {
            TlsError::Missing {
                file,
                path: path.to_path_buf(),
            }
        } else {
            TlsError::Unreadable {
                file,
                path: path.to_path_buf(),
                error,
            }
        }
    };
    let f = File::open(path).map_err(unreadable)?;
    let mut data = Vec::new();
    f.take(MAX_PEM_FILE + 1)
        .read_to_end(&mut data)
        .map_err(unreadable)?;
    if data.len() as u64 > MAX_PEM_FILE {
        return Err(TlsError::TooLarge {
            file,
            path: path.to_path_buf(),
        });
    }
    Ok(data)
}

fn pem_detail(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { end_marker } => {
            format!("missing the line {:?}", String::from_utf8_lossy(end_marker))
        }
        pem::Error::IllegalSectionStart { line } => {
            format!("malformed line {:?}", String::from_utf8_lossy(line))
        }
        other => other.to_string(),
    }
}

/// Builds the server configuration; `cert_path` and `key_path` only name
/// the files in errors.
fn build(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
) -> Result<Arc<ServerConfig>, TlsError> {
    let bad_pem = |file: PemFile, path: &Path, e: &pem::Error| TlsError::BadPem {
        file,
        path: path.to_path_buf(),
        detail: pem_detail(e),
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(PemFile::Certificate, cert_path, &e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_path_buf(),
        });
    }
    let key = match PrivateKeyDer::from_pem_slice(key_pem) {
        Ok(key) => key,
        Err(pem::Error::NoItemsFound) => {
            return Err(TlsError::NoKey {
                path: key_path.to_path_buf(),
            })
        }
        Err(e) => return Err(bad_pem(PemFile::Key, key_path, &e)),
    };

    // No client certificates are asked for, so the server never verifies a
    // signature: with no verification algorithms, LTO drops ring's
    // verifiers (RSA, ECDSA, Ed25519).
    let provider = Arc::new(rustls::crypto::CryptoProvider {
        signature_verification_algorithms: rustls::crypto::WebPkiSupportedAlgorithms {
            all: &[],
            mapping: &[],
        },
        ..rustls::crypto::ring::default_provider()
    });
    // Load the key first, so that an unusable key is reported as such and
    // not as a mismatch.
    let signing_key = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| TlsError::BadKey {
            path: key_path.to_path_buf(),
            detail: e.to_string(),
        })?;
    let certified = rustls::sign::CertifiedKey::new(chain.clone(), signing_key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(_)) => {
            return Err(TlsError::KeyMismatch {
                cert: cert_path.to_path_buf(),
                key: key_path.to_path_buf(),
            })
        }
        Err(e) => {
            return Err(TlsError::BadCertificate {
                path: cert_path.to_path_buf(),
                detail: e.to_string(),
            })
        }
    }

    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Rustls)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(TlsError::Rustls)?;
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
    // One TLS 1.3 ticket per connection (rustls sends two by default): a
    // reconnecting browser needs one, and each costs a cache entry.
    config.send_tls13_tickets = 1;
    config.max_early_data_size = 0;
    Ok(Arc::new(config))
}
