//! TLS for https and wss (feature `tls`): a sans-IO layer between the socket
//! and the WebSocket connection, on rustls with the `ring` provider.
//!
//! This module owns two things and nothing else:
//!
//! - [`TlsConfig`]: the certificate chain and key, read from PEM files
//!   ([`TlsConfig::from_pem_files`]), checked to belong together, and made
//!   into a shared rustls server configuration (TLS 1.2 and 1.3 only, ALPN
//!   `http/1.1`, no client certificates). Cheap to clone; on SIGHUP,
//!   [`TlsConfig::reload`] re-reads the files and, only if the new pair is
//!   valid, replaces the configuration that *new* sessions are made with.
//! - [`TlsSession`]: one connection's TLS state. Ciphertext in, plaintext
//!   out, and the reverse. It never touches a socket, a clock or a thread;
//!   it owns its buffers (rustls' unbuffered API) and frees them as soon as
//!   they drain, so an idle session is only rustls' keys and state.
//!
//! It knows nothing of HTTP or WebSocket, and nothing above it knows TLS
//! beyond "these bytes go through the session first".
//!
//! # How the server uses it
//!
//! A slot is `{ socket, tls: Option<TlsSession>, conn }`. On accept, when a
//! [`TlsConfig`] is set: `tls = Some(TlsSession::new(&config)?)`. Then, in
//! each pass of the loop:
//!
//! ```text
//! readable:
//!     n = read(socket, &mut loop_buf)             // the loop-wide buffer
//!     n == 0: EOF (as over plain TCP)
//!     plain.clear()                               // a loop-wide Vec<u8>
//!     match tls.read_tls(&mut loop_buf[..n], &mut plain):
//!         Err(_) => send tls.pending_output() once if you like (an alert),
//!                   then drop the connection: no WebSocket close, no log
//!                   above debug for NotTls
//!         Ok(r)  => conn.handle_input(now, &mut plain)
//!                   r.peer_closed: treat as EOF after that input
//!     if tls.wants_write(): mark dirty           // handshake bytes
//! flush (dirty):
//!     tls.write_plaintext_vectored(&conn's pending slices)?   // full records
//!     conn.consumed(all of it)                   // now owned by the session
//!     sendmsg(socket, [tls.pending_output()]); tls.consumed(sent)
//!     still tls.wants_write(): keep writable interest
//! closing:
//!     tls.close() after the WebSocket close frame, flush, then shutdown
//! handshake deadline:
//!     while tls.is_handshaking() the handshake timeout runs (slowloris over
//!     TLS is a ClientHello that never completes: no output, no plaintext)
//! ```
//!
//! Encrypting copies the connection's output once into ciphertext; a shared
//! broadcast frame is encrypted separately for each member (TLS keys are
//! per connection), so over TLS a broadcast costs one encryption per
//! member.
//!
//! # Memory
//!
//! `docs/tls.md` has the measured figures: the bytes an idle established
//! session holds, the transient buffers, and the binary sizes.

mod config;
mod session;

pub use config::{PemFile, TlsConfig, TlsError, ALPN_HTTP11, MAX_PEM_FILE, SESSION_CACHE_ENTRIES};
pub use session::{ReadOutcome, SessionError, TlsSession, MAX_HANDSHAKE_INCOMING, MAX_INCOMING};
