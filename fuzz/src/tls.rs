//! The check behind the `tls_session` fuzz target: arbitrary bytes, in
//! arbitrary pieces, into a fresh [`TlsSession`].
//!
//! Not part of `lib.rs` (which depends on rookery without features): the
//! fuzz target and rookery's `tests/tls.rs` include this file with `#[path]`
//! and hand it a [`TlsConfig`]. It depends on nothing but `rookery` (with
//! the feature `tls`) and `std`.
//!
//! Layout: byte 0 seeds the piece sizes; the rest is the peer's bytes.
//! Invariants: no panic; no plaintext ever comes out (a handshake cannot
//! complete without a client that knows the keys); what the session holds
//! stays under [`MAX_INCOMING`] plus one read; once a call fails, every
//! later `read_tls` fails too; `write_plaintext`, `close`, `pending_output`
//! and `consumed` are safe to call at any point.

use rookery::tls::{TlsConfig, TlsSession, MAX_INCOMING};

/// Feeds `data` to a fresh session of `config`.
pub fn tls_session(config: &TlsConfig, data: &[u8]) {
    let Some((&seed, bytes)) = data.split_first() else {
        return;
    };
    let Ok(mut session) = TlsSession::new(config) else {
        return;
    };
    let mut bytes = bytes.to_vec();
    let mut plain = Vec::new();
    let mut state = u32::from(seed) | 0x100;
    let mut failed = false;
    let mut rest = &mut bytes[..];
    while !rest.is_empty() {
        // A small LCG picks the next piece size: 1..=1024.
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let len = ((state >> 16) as usize % 1024 + 1).min(rest.len());
        let (piece, tail) = rest.split_at_mut(len);
        rest = tail;
        let result = session.read_tls(piece, &mut plain);
        assert!(
            !(failed && result.is_ok()),
            "read_tls succeeded after a failure"
        );
        failed |= result.is_err();
        assert!(
            session.buffered_bytes() <= MAX_INCOMING + 1024,
            "session holds {} bytes",
            session.buffered_bytes()
        );
        if state & 0x3000 == 0 {
            let _ = session.write_plaintext(b"\x81\x02hi");
        }
        if state & 0x0c00 == 0 {
            let n = session.pending_output().len();
            session.consumed(n / 2 + 1);
        }
    }
    assert!(plain.is_empty(), "plaintext without a handshake");
    session.close();
    let _ = session.write_plaintext(b"after close");
    let n = session.pending_output().len();
    session.consumed(n);
    assert!(!session.wants_write());
}
