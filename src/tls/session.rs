//! [`TlsSession`]: one server-side TLS connection over rustls' unbuffered
//! API, bytes in and bytes out.

use std::fmt;
use std::mem;

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};

use super::TlsConfig;

/// The TLS record content type of a handshake record: every TLS client
/// starts with one (`0x16`, then the version `0x03 0x0?`).
const HANDSHAKE_RECORD: u8 = 0x16;

/// The most unfinished ciphertext a session keeps between two reads once
/// the handshake is done: one record of the largest size rustls accepts
/// (16 KiB of plaintext, 2 KiB of room for encryption, a 5-byte header).
/// A peer that leaves more unfinished (a handshake message joined from
/// several records, which after the handshake is never a legitimate one)
/// fails with [`SessionError::TooLarge`]. With [`MAX_HANDSHAKE_INCOMING`],
/// this bounds what [`TlsSession::buffered_bytes`] keeps of the peer's
/// bytes, whatever it sends.
pub const MAX_INCOMING: usize = 16 * 1024 + 2048 + 5;

/// The most unfinished ciphertext a session keeps between two reads while
/// the handshake is on: what a client can have the server hold with a
/// ClientHello that never completes. rustls joins a handshake message of
/// up to 64 KiB from as many records, in the caller's buffer, so without
/// this a ClientHello announcing 65,000 bytes and cut short kept about
/// 64 KiB per connection until the handshake timeout. A real ClientHello
/// is about 0.5 to 2 KiB (a post-quantum key share included); one that
/// announces more than fits in 8 KiB with its headers is refused at its
/// first 9 bytes ([`SessionError::TooLarge`]), as an HTTP request head
/// over 8 KiB is, and so is any handshake flight left unfinished past
/// 8 KiB (a ClientHello cut into many small records).
pub const MAX_HANDSHAKE_INCOMING: usize = 8 * 1024;

/// The most of a read joined to an unfinished record at a time (the rest
/// is joined in further pieces): bounds the session's transient buffer
/// within one [`TlsSession::read_tls`] call, whatever the read's size.
const JOIN_PIECE: usize = 64 * 1024;

/// Room reserved per record when encrypting, before asking rustls for the
/// exact size: header (5) + explicit nonce (8, TLS 1.2 GCM) + content type
/// (1, TLS 1.3) + tag (16), rounded up.
const RECORD_OVERHEAD: usize = 32;

/// Written ciphertext kept at the front of the outgoing buffer before it is
/// dropped (see [`TlsSession::consumed`]).
const COMPACT_AFTER: usize = 64 * 1024;

/// The largest plaintext in one record.
const MAX_FRAGMENT: usize = 16 * 1024;

/// Why a session failed. Every variant means: send what
/// [`TlsSession::pending_output`] holds if you like (at most an alert), then
/// drop the connection.
#[derive(Debug)]
#[non_exhaustive]
pub enum SessionError {
    /// The first bytes are not a TLS handshake record (a plain HTTP request
    /// on the TLS port, a port scanner, noise). Nothing is queued to send.
    NotTls,
    /// The peer broke the TLS protocol (a malformed or undecryptable record,
    /// a failed handshake, a fatal alert from the peer, ...).
    Tls(rustls::Error),
    /// The peer left more of an unfinished record or handshake message
    /// than the session keeps: [`MAX_HANDSHAKE_INCOMING`] bytes during the
    /// handshake (a ClientHello that large), [`MAX_INCOMING`] after it.
    TooLarge,
    /// Plaintext was given after [`TlsSession::close`], or after the
    /// session failed or closed.
    Closed,
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::NotTls => f.write_str("not a TLS connection"),
            SessionError::Tls(e) => write!(f, "TLS error: {e}"),
            SessionError::TooLarge => {
                f.write_str("TLS peer left too large an unfinished record or handshake message")
            }
            SessionError::Closed => f.write_str("TLS session already closed"),
        }
    }
}

impl std::error::Error for SessionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SessionError::Tls(e) => Some(e),
            _ => None,
        }
    }
}

/// What a [`TlsSession::read_tls`] call made of the ciphertext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadOutcome {
    /// Plaintext bytes appended to the caller's buffer.
    pub plaintext: usize,
    /// The peer sent `close_notify` during this call: no more plaintext
    /// will come (treat it as end of stream).
    pub peer_closed: bool,
}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No byte seen yet.
    Fresh,
    /// The first byte was a handshake record's; the ClientHello's length is
    /// not known yet (fewer than 9 bytes came).
    Hello,
    /// The ClientHello's length was checked; handshake or traffic under way.
    Open,
    /// `close` was asked for; no more plaintext is accepted.
    Closing,
    /// Failed: every further call fails.
    Failed,
}

/// One server-side TLS connection, sans-IO: ciphertext from the socket goes
/// in through [`read_tls`](TlsSession::read_tls) and comes out as
/// plaintext; plaintext to send goes in through
/// [`write_plaintext`](TlsSession::write_plaintext) and comes out as
/// ciphertext in [`pending_output`](TlsSession::pending_output).
///
/// Built on `rustls::server::UnbufferedServerConnection`, so the session
/// owns every buffer and frees them when they drain: an idle established
/// session holds only rustls' connection state (keys, key schedule, a few
/// small queues). See `docs/tls.md` for the measured bytes.
pub struct TlsSession {
    /// Boxed so that a server slot holding an `Option<TlsSession>` stays
    /// small whether TLS is on or not.
    conn: Box<UnbufferedServerConnection>,
    /// Ciphertext not yet processed: an incomplete record (or handshake
    /// message) left over from earlier reads. Freed when empty.
    incoming: Vec<u8>,
    /// Ciphertext to send, from `out_start` on. Freed when drained.
    outgoing: Vec<u8>,
    out_start: usize,
    /// Plaintext given during the handshake, encrypted when it completes.
    early_plaintext: Vec<u8>,
    phase: Phase,
    /// `close_notify` requested but not yet encoded (handshake still on).
    close_pending: bool,
    peer_closed: bool,
    closed: bool,
}

impl fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSession")
            .field("handshaking", &self.is_handshaking())
            .field("incoming", &self.incoming.len())
            .field("outgoing", &self.pending_output().len())
            .field("phase", &self.phase)
            .field("peer_closed", &self.peer_closed)
            .field("closed", &self.closed)
            .finish()
    }
}

impl TlsSession {
    /// A new session for a freshly accepted connection.
    pub fn new(config: &TlsConfig) -> Result<TlsSession, SessionError> {
        let conn = UnbufferedServerConnection::new(config.server_config().clone())
            .map_err(SessionError::Tls)?;
        Ok(TlsSession {
            conn: Box::new(conn),
            incoming: Vec::new(),
            outgoing: Vec::new(),
            out_start: 0,
            early_plaintext: Vec::new(),
            phase: Phase::Fresh,
            close_pending: false,
            peer_closed: false,
            closed: false,
        })
    }

    /// Processes ciphertext read from the socket, appending any plaintext it
    /// carries to `plaintext` (a loop-wide scratch buffer is fine: the
    /// session keeps no reference to it).
    ///
    /// `ciphertext` is used as scratch space: rustls decrypts records in
    /// place, and its contents are unspecified afterwards. Only an
    /// incomplete trailing record is copied into the session, to wait for
    /// the rest.
    ///
    /// Handshake messages and alerts to send are queued in
    /// [`pending_output`](TlsSession::pending_output): check
    /// [`wants_write`](TlsSession::wants_write) after every call.
    ///
    /// On error, drop the connection (after sending `pending_output`, which
    /// then holds at most a TLS alert, if you like).
    pub fn read_tls(
        &mut self,
        ciphertext: &mut [u8],
        plaintext: &mut Vec<u8>,
    ) -> Result<ReadOutcome, SessionError> {
        if self.phase == Phase::Failed {
            return Err(SessionError::Closed);
        }
        if ciphertext.is_empty() {
            return Ok(ReadOutcome::default());
        }
        if self.phase == Phase::Fresh {
            if ciphertext[0] != HANDSHAKE_RECORD {
                self.fail_silently();
                return Err(SessionError::NotTls);
            }
            self.phase = Phase::Hello;
        }
        if self.phase == Phase::Hello {
            // Refuse a ClientHello the session would not keep, from its
            // announced length, before any of it is kept: the same refusal
            // whether it comes in one read or in many.
            if let Some(size) = client_hello_size(&self.incoming, ciphertext) {
                if size > MAX_HANDSHAKE_INCOMING {
                    self.fail_silently();
                    return Err(SessionError::TooLarge);
                }
                self.phase = Phase::Open;
            }
        }
        let was_peer_closed = self.peer_closed;
        let before = plaintext.len();
        let mut rest: &mut [u8] = ciphertext;
        let mut result = Ok(());
        // An unfinished record from before: complete it from the new bytes,
        // a bounded piece at a time, until the session's own buffer is
        // empty again; the rest is processed where it lies.
        while !self.incoming.is_empty() && !rest.is_empty() && result.is_ok() {
            let take = JOIN_PIECE.min(rest.len());
            let (piece, tail) = mem::take(&mut rest).split_at_mut(take);
            rest = tail;
            let mut incoming = mem::take(&mut self.incoming);
            incoming.extend_from_slice(piece);
            let (used, r) = self.process(&mut incoming, plaintext, &mut &[][..]);
            result = r;
            if result.is_ok() && used < incoming.len() {
                incoming.drain(..used);
                if incoming.len() > self.incoming_limit() {
                    self.fail_silently();
                    return Err(SessionError::TooLarge);
                }
                if incoming.capacity() > self.incoming_limit()
                    || incoming.capacity() > 2 * incoming.len() + 4096
                {
                    // Keep no more room than the unfinished part needs: a
                    // large read joined in pieces is done with.
                    incoming.shrink_to_fit();
                }
                self.incoming = incoming;
            }
        }
        if self.incoming.is_empty() && !rest.is_empty() && result.is_ok() {
            // The usual case: process in the caller's buffer, keep only the
            // unfinished tail (copied into a buffer of its exact size).
            let (used, r) = self.process(rest, plaintext, &mut &[][..]);
            result = r;
            if result.is_ok() && used < rest.len() {
                if rest.len() - used > self.incoming_limit() {
                    self.fail_silently();
                    return Err(SessionError::TooLarge);
                }
                self.incoming.extend_from_slice(&rest[used..]);
            }
        }
        match result {
            Ok(()) => Ok(ReadOutcome {
                plaintext: plaintext.len() - before,
                peer_closed: self.peer_closed && !was_peer_closed,
            }),
            Err(e) => {
                self.phase = Phase::Failed;
                self.incoming = Vec::new();
                self.early_plaintext = Vec::new();
                Err(e)
            }
        }
    }

    /// Encrypts `data` (WebSocket bytes for the peer) into
    /// [`pending_output`](TlsSession::pending_output). During the handshake
    /// the plaintext is kept and encrypted as soon as the handshake
    /// completes.
    pub fn write_plaintext(&mut self, data: &[u8]) -> Result<(), SessionError> {
        if matches!(self.phase, Phase::Closing | Phase::Failed) || self.closed {
            return Err(SessionError::Closed);
        }
        if data.is_empty() {
            return Ok(());
        }
        if self.conn.is_handshaking() {
            self.early_plaintext.extend_from_slice(data);
            return Ok(());
        }
        let mut incoming = mem::take(&mut self.incoming);
        let mut send = data;
        // `read_tls` processed every complete record, so this only reaches
        // the writable state (encoding any handshake message rustls still
        // has, such as a key update) and discards nothing.
        let (used, result) = self.process(&mut incoming, &mut Vec::new(), &mut send);
        incoming.drain(..used.min(incoming.len()));
        self.incoming = incoming;
        if result.is_ok() && !send.is_empty() {
            self.early_plaintext.extend_from_slice(send);
        }
        if result.is_err() {
            self.fail_silently();
        }
        result
    }

    /// Like [`write_plaintext`](TlsSession::write_plaintext) for the
    /// slices of one output queue (a WebSocket header, a shared payload,
    /// ...): small slices are gathered into full records (one copy, into a
    /// scratch buffer freed on return), so a 2-byte header does not cost a
    /// record of its own; a slice of a whole record or more when nothing is
    /// gathered is encrypted straight from where it is.
    pub fn write_plaintext_vectored(&mut self, bufs: &[&[u8]]) -> Result<(), SessionError> {
        let mut gather: Vec<u8> = Vec::new();
        for &buf in bufs {
            if gather.is_empty() && buf.len() >= MAX_FRAGMENT {
                self.write_plaintext(buf)?;
                continue;
            }
            let mut rest = buf;
            while !rest.is_empty() {
                if gather.capacity() == 0 {
                    gather.reserve_exact(MAX_FRAGMENT);
                }
                let take = rest.len().min(MAX_FRAGMENT - gather.len());
                gather.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if gather.len() == MAX_FRAGMENT {
                    self.write_plaintext(&gather)?;
                    gather.clear();
                }
            }
        }
        self.write_plaintext(&gather)
    }

    /// Queues a TLS `close_notify` (after any plaintext given before): the
    /// clean end of the session. Send [`pending_output`], then shut the
    /// socket down. During the handshake nothing can be sent: just drop the
    /// connection.
    ///
    /// [`pending_output`]: TlsSession::pending_output
    pub fn close(&mut self) {
        if matches!(self.phase, Phase::Closing | Phase::Failed) || self.closed {
            return;
        }
        self.phase = Phase::Closing;
        if self.conn.is_handshaking() {
            return;
        }
        self.close_pending = true;
        let mut incoming = mem::take(&mut self.incoming);
        let (used, _) = self.process(&mut incoming, &mut Vec::new(), &mut &[][..]);
        incoming.drain(..used.min(incoming.len()));
        self.incoming = incoming;
    }

    /// The ciphertext waiting to be written to the socket (one slice; hand
    /// it to `sendmsg` or `write`), then call
    /// [`consumed`](TlsSession::consumed) with what the socket took.
    pub fn pending_output(&self) -> &[u8] {
        &self.outgoing[self.out_start..]
    }

    /// Marks `n` bytes of [`pending_output`](TlsSession::pending_output) as
    /// written. When everything is written the buffer is freed; while a slow
    /// peer drains it, the written front is dropped once it is over half of
    /// the buffer.
    pub fn consumed(&mut self, n: usize) {
        self.out_start = (self.out_start + n).min(self.outgoing.len());
        if self.out_start == self.outgoing.len() {
            self.outgoing = Vec::new();
            self.out_start = 0;
        } else if self.out_start >= COMPACT_AFTER && self.out_start * 2 >= self.outgoing.len() {
            self.outgoing.drain(..self.out_start);
            self.out_start = 0;
        }
    }

    /// Writes as much of the pending ciphertext as `w` takes (for tests and
    /// for a server that writes through `std::io::Write`).
    pub fn write_tls(&mut self, w: &mut dyn std::io::Write) -> std::io::Result<usize> {
        let n = w.write(self.pending_output())?;
        self.consumed(n);
        Ok(n)
    }

    /// Whether ciphertext is waiting to be written.
    pub fn wants_write(&self) -> bool {
        self.out_start < self.outgoing.len()
    }

    /// Whether the handshake is still under way (the server's handshake
    /// timeout applies).
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Whether the peer has sent `close_notify`.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Whether both sides have sent `close_notify` (the session is over).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The negotiated ALPN protocol, if any (`http/1.1`).
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// The negotiated protocol version, once known.
    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        self.conn.protocol_version()
    }

    /// Heap bytes held by the session's own buffers (not rustls' internal
    /// state, which `docs/tls.md` measures): zero when idle.
    pub fn buffered_bytes(&self) -> usize {
        self.incoming.capacity() + self.outgoing.capacity() + self.early_plaintext.capacity()
    }

    /// The most unfinished ciphertext kept between reads in the current
    /// phase.
    fn incoming_limit(&self) -> usize {
        if self.conn.is_handshaking() {
            MAX_HANDSHAKE_INCOMING
        } else {
            MAX_INCOMING
        }
    }

    /// Marks the session failed with nothing to send.
    fn fail_silently(&mut self) {
        self.phase = Phase::Failed;
        self.incoming = Vec::new();
        self.early_plaintext = Vec::new();
    }

    /// Drives rustls over `buf` (the unprocessed ciphertext) until it needs
    /// more input, appending plaintext to `plaintext`. When the session is
    /// writable it encrypts the plaintext kept from the handshake, then
    /// `send` (and empties `send`), then a requested `close_notify`.
    /// Returns how many bytes of `buf` are done with, and any error (after
    /// queuing the alert rustls wants to send, if any).
    fn process(
        &mut self,
        buf: &mut [u8],
        plaintext: &mut Vec<u8>,
        send: &mut &[u8],
    ) -> (usize, Result<(), SessionError>) {
        let mut done = 0;
        loop {
            let UnbufferedStatus { mut discard, state } =
                self.conn.process_tls_records(&mut buf[done..]);
            let state = match state {
                Ok(state) => state,
                Err(e) => {
                    done = (done + discard).min(buf.len());
                    self.queue_alert(&mut buf[done..]);
                    return (done, Err(SessionError::Tls(e)));
                }
            };
            let mut stop = false;
            let mut result = Ok(());
            match state {
                ConnectionState::ReadTraffic(mut r) => {
                    while let Some(record) = r.next_record() {
                        match record {
                            Ok(record) => {
                                discard += record.discard;
                                plaintext.extend_from_slice(record.payload);
                            }
                            Err(e) => {
                                result = Err(SessionError::Tls(e));
                                break;
                            }
                        }
                    }
                }
                ConnectionState::ReadEarlyData(mut r) => {
                    // Never accepted (max_early_data_size is 0): drain.
                    while let Some(Ok(record)) = r.next_record() {
                        discard += record.discard;
                    }
                }
                ConnectionState::EncodeTlsData(mut e) => {
                    result = encode_into(&mut self.outgoing, |out| e.encode(out));
                }
                ConnectionState::TransmitTlsData(t) => {
                    // The bytes wait in `outgoing` and go out before any
                    // later ones: as good as sent, for ordering.
                    t.done();
                }
                ConnectionState::BlockedHandshake => stop = true,
                ConnectionState::WriteTraffic(mut w) => {
                    if !self.early_plaintext.is_empty() {
                        let data = mem::take(&mut self.early_plaintext);
                        result =
                            encrypt_into(&mut self.outgoing, &data, |d, out| w.encrypt(d, out));
                    }
                    if result.is_ok() && !send.is_empty() {
                        result = encrypt_into(&mut self.outgoing, send, |d, out| w.encrypt(d, out));
                        *send = &[];
                    }
                    if result.is_ok() && self.close_pending {
                        self.close_pending = false;
                        result = encode_into(&mut self.outgoing, |out| {
                            w.queue_close_notify(out).map_err(encrypt_to_encode)
                        });
                    }
                    stop = true;
                }
                ConnectionState::PeerClosed => self.peer_closed = true,
                ConnectionState::Closed => {
                    self.peer_closed = true;
                    self.closed = true;
                    stop = true;
                }
                _ => stop = true,
            }
            // rustls never discards more than it was given; the clamp only
            // keeps a broken promise from becoming a slice panic.
            done = (done + discard).min(buf.len());
            if result.is_err() {
                return (done, result);
            }
            if stop {
                return (done, Ok(()));
            }
        }
    }

    /// After an error: encodes the alert rustls queued, if any. `rest` is
    /// what is left of the buffer the error came from: rustls may still
    /// index into it (a handshake message joined across records), so it
    /// must be that buffer and not an empty one.
    fn queue_alert(&mut self, rest: &mut [u8]) {
        let status = self.conn.process_tls_records(rest);
        if let Ok(ConnectionState::EncodeTlsData(mut e)) = status.state {
            let _ = encode_into(&mut self.outgoing, |out| e.encode(out));
        }
    }
}

/// What a ClientHello takes on the wire in one record (record header,
/// handshake header, body), from its announced length in the first 9 bytes
/// of the stream (`kept`, then `new`): `None` until 9 bytes have come, 0
/// if they do not say (the first message is not a ClientHello, which
/// rustls refuses, or the first record is too short to hold the handshake
/// header, which the cap on unfinished bytes still bounds).
fn client_hello_size(kept: &[u8], new: &[u8]) -> Option<usize> {
    const CLIENT_HELLO: u8 = 1;
    let mut head = [0u8; 9];
    let mut bytes = kept.iter().chain(new);
    for b in head.iter_mut() {
        *b = *bytes.next()?;
    }
    let record = usize::from(u16::from_be_bytes([head[3], head[4]]));
    if head[5] != CLIENT_HELLO || record < 4 {
        return Some(0);
    }
    let body = usize::from(head[6]) << 16 | usize::from(head[7]) << 8 | usize::from(head[8]);
    Some(head.len() + body)
}

/// Either error of `queue_close_notify`, in `encode`'s terms.
fn encrypt_to_encode(e: EncryptError) -> EncodeError {
    match e {
        EncryptError::InsufficientSize(s) => EncodeError::InsufficientSize(s),
        // The encrypter is used up: there is nothing left to say.
        EncryptError::EncryptExhausted => EncodeError::AlreadyEncoded,
    }
}

/// Appends what `encode` writes to `out`, growing it to the size rustls asks
/// for.
fn encode_into(
    out: &mut Vec<u8>,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>,
) -> Result<(), SessionError> {
    let start = out.len();
    let mut room = 512;
    loop {
        out.resize(start + room, 0);
        match encode(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(s)) if s.required_size > room => {
                room = s.required_size;
            }
            Err(_) => {
                out.truncate(start);
                return Ok(());
            }
        }
    }
}

/// Appends the records that `encrypt` makes of `data` to `out`.
fn encrypt_into(
    out: &mut Vec<u8>,
    data: &[u8],
    mut encrypt: impl FnMut(&[u8], &mut [u8]) -> Result<usize, EncryptError>,
) -> Result<(), SessionError> {
    let start = out.len();
    let mut room = data.len() + (data.len() / MAX_FRAGMENT + 1) * RECORD_OVERHEAD;
    loop {
        out.resize(start + room, 0);
        match encrypt(data, &mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(EncryptError::InsufficientSize(s)) if s.required_size > room => {
                room = s.required_size;
            }
            Err(e) => {
                out.truncate(start);
                return Err(SessionError::Tls(rustls::Error::General(e.to_string())));
            }
        }
    }
}
