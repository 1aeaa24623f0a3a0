//! One WebSocket connection as a state machine: bytes and the time go in,
//! checked events and bytes to send come out.
//!
//! [`Connection`] owns everything that happens on one TCP connection after
//! `accept()`: the request head, the upgrade answer, the frame receiver, the
//! automatic pongs, the closing handshake in both directions, failing fast
//! on a protocol error, its deadlines (handshake, idle, close) and the bytes
//! it has yet to send. It never touches a socket or a clock: the caller
//! passes the current [`Instant`] to every call that needs one, asks
//! [`Connection::poll_timeout`] when it next needs attention, and moves its
//! output with [`Connection::write_to`] into any [`Sink`]. A test drives it
//! with a `Vec<u8>` and a made-up `Instant`; the server drives it with a
//! socket and a timer wheel.
//!
//! The life of a connection:
//!
//! ```text
//! Handshake ──request──▶ (Event::Request: respond) ─────────────▶ Draining
//!     │ valid upgrade
//!     ▼
//! Deciding ──accept──▶ Open ◀──activate── Pending (accept, delayed)
//!     │ reject           │ close / idle / backlog      │
//!     ▼                  ▼                             │
//! Draining ◀──peer's close── Closing ◀─────────────────┘
//!     │ peer's EOF, or the close deadline
//!     ▼
//! Finished (the caller drops the socket)
//! ```
//!
//! Every event comes out of [`Connection::handle_input`], carrying the data
//! itself (`Text(&str)`, `Binary(&[u8])`, the close code and reason), borrowed
//! from the caller's input buffer or from the caller's `scratch` buffer (where
//! a message that spanned reads is moved when it completes), never from the
//! connection: the caller may act on any connection while it holds an event.
//! Ends that are not caused by input (a kill, a close deadline, a failed
//! write) are reported once by [`Connection::take_closed`].

use std::cell::OnceCell;
use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::close::{self, parse_close};
use super::deflate::{self, Codec, InflateError};
use super::frame::{encode_close, encode_frame, OpCode, ServerHeader, MAX_CONTROL_PAYLOAD};
use super::handshake::{self, HandshakeError};
use super::http::{HeadReader, HttpError, Request, Response, Status};
use super::output::{OutQueue, Sink};
use super::rate::{Limiter, Limits};
use super::receiver::{Event as RxEvent, Payload, ProtocolError, Receiver};

/// What a connection needs to know of the server's configuration. One value
/// serves every connection; it is passed to the calls that need it, never
/// copied into a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The path WebSocket upgrades are accepted on.
    pub path: String,
    /// Origins allowed to upgrade; empty allows all, `*` allows any.
    pub allowed_origins: Vec<String>,
    /// The largest message accepted, in bytes.
    pub max_message: u64,
    /// Past this many queued bytes a peer that is behind is closed with 1008.
    pub max_backlog: usize,
    /// A connection that has not sent a complete request head this long
    /// after it was accepted is dropped (zero: never).
    pub handshake_timeout: Duration,
    /// An open connection that sent nothing this long is closed with 1001
    /// (zero: never).
    pub idle_timeout: Duration,
    /// How long a closing connection waits for the peer's close frame and
    /// then for its end of the TCP connection. Zero still means one second:
    /// a half-dead peer must not hold its connection forever.
    pub close_timeout: Duration,
    /// Whether a client's permessage-deflate offer is taken (RFC 7692; only
    /// with feature `deflate`, else no offer ever is).
    pub deflate: bool,
    /// What an open connection may send, in messages and in (inflated)
    /// payload bytes a second; past either it is closed with 1008.
    pub rate_limits: Limits,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            path: "/chat".to_string(),
            allowed_origins: Vec::new(),
            max_message: 1 << 20,
            max_backlog: 1 << 20,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(15),
            close_timeout: Duration::from_secs(5),
            deflate: false,
            rate_limits: Limits::default(),
        }
    }
}

impl Settings {
    fn close_wait(&self) -> Duration {
        if self.close_timeout.is_zero() {
            Duration::from_secs(1)
        } else {
            self.close_timeout
        }
    }
}

/// A complete message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message (valid UTF-8).
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl<'a> Message<'a> {
    /// The payload bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        match *self {
            Message::Text(text) => text.as_bytes(),
            Message::Binary(data) => data,
        }
    }

    /// Whether this is a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Message::Text(_))
    }

    /// The frame opcode this message is sent with.
    pub fn opcode(&self) -> OpCode {
        match self {
            Message::Text(_) => OpCode::Text,
            Message::Binary(_) => OpCode::Binary,
        }
    }
}

/// A message encoded once as one unfragmented server frame, to be sent to
/// any number of connections without copying it again; compressed once too,
/// the first time it is sent to a connection that negotiated
/// permessage-deflate.
#[derive(Debug, Clone)]
pub struct SharedFrame(Rc<SharedBytes>);

#[derive(Debug)]
struct SharedBytes {
    plain: Rc<[u8]>,
    /// The compressed frame; `Some(None)` once it is known not to pay.
    deflated: OnceCell<Option<Rc<[u8]>>>,
}

impl SharedFrame {
    /// Encodes `msg`.
    pub fn new(msg: Message<'_>) -> SharedFrame {
        let mut bytes = Vec::with_capacity(super::frame::MAX_SERVER_HEADER + msg.as_bytes().len());
        encode_frame(&mut bytes, msg.opcode(), msg.as_bytes());
        SharedFrame(Rc::new(SharedBytes {
            plain: bytes.into(),
            deflated: OnceCell::new(),
        }))
    }

    /// The encoded frame's length, uncompressed.
    pub fn len(&self) -> usize {
        self.0.plain.len()
    }

    /// Whether the frame is empty (never: a frame has a header).
    pub fn is_empty(&self) -> bool {
        self.0.plain.is_empty()
    }

    /// Makes the compressed variant now, if it is not made yet, rather
    /// than when the first connection that takes it is sent the frame: for
    /// a frame kept to be sent later (a history), so that the cost is paid
    /// when it is kept, not on the path of a newcomer.
    pub fn compress_now(&self, codec: &mut Codec) {
        self.0
            .deflated
            .get_or_init(|| codec.compress_shared(&self.0.plain));
    }

    /// The bytes for a connection that compresses with `window_bits` (0:
    /// it does not).
    fn bytes_for(&self, window_bits: u8, codec: &mut Codec) -> &Rc<[u8]> {
        if window_bits != deflate::SHARED_WINDOW_BITS {
            return &self.0.plain;
        }
        self.0
            .deflated
            .get_or_init(|| codec.compress_shared(&self.0.plain))
            .as_ref()
            .unwrap_or(&self.0.plain)
    }
}

/// Why an action on a connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// No such connection, or it is no longer open for messages.
    NotOpen,
    /// The connection is not waiting for activation.
    NotPending,
    /// A close code that may not be sent (RFC 6455 §7.4).
    InvalidCloseCode,
    /// A control payload over 125 bytes.
    ControlTooLong,
    /// The connection is not waiting for an upgrade decision.
    NotDeciding,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::NotOpen => "connection is not open",
            SendError::NotPending => "connection is not waiting for activation",
            SendError::InvalidCloseCode => "close code may not be sent",
            SendError::ControlTooLong => "control payload longer than 125 bytes",
            SendError::NotDeciding => "connection is not waiting for an upgrade decision",
        })
    }
}

impl std::error::Error for SendError {}

/// What [`Connection::handle_input`] produced.
#[derive(Debug)]
pub enum Event<'a> {
    /// A request for a path other than the WebSocket path or one below it
    /// (see [`is_upgrade_path`]): answer it with [`Connection::respond`].
    /// Boxed, as is `Upgrade`'s: one allocation per request keeps the event
    /// three words, which every message event is returned as.
    Request(Box<Request>),
    /// A valid upgrade request for the WebSocket path or one below it
    /// (`PATH/NAME`; origin checked):
    /// answer it with [`Connection::accept`] or [`Connection::reject`]
    /// before feeding more input.
    Upgrade(Box<Request>),
    /// A complete text message.
    Text(&'a str),
    /// A complete binary message.
    Binary(&'a [u8]),
    /// The WebSocket is closed: `code` is the one of the close frame that
    /// began the closing handshake (the peer's, with its reason, 1005 if its
    /// frame had no code; ours if we began; the one we failed the connection
    /// with). Comes once per upgraded connection, here or from
    /// [`Connection::take_closed`].
    Closed {
        /// The close code.
        code: u16,
        /// The peer's reason, or empty.
        reason: &'a str,
    },
}

/// Where the connection is in its life.
#[derive(Debug)]
enum Phase {
    /// Reading the request head. Boxed, like `Pending`, so that the open
    /// phases, where connections spend their lives, stay small.
    Handshake(Box<HeadReader>),
    /// A valid upgrade was reported; waiting for accept or reject.
    Deciding,
    /// Upgraded, waiting for activation; input is kept, not read.
    Pending(Box<Pending>),
    /// Exchanging messages, compressed with this window (bits; 0: no
    /// permessage-deflate), and counted by the limiter if there are rate
    /// limits. Kept in the phase, where they fit beside the other phases'
    /// boxes, so the connection stays its size.
    Open(u8, Option<Box<Limiter>>),
    /// We sent a close frame and wait for the peer's; its data is dropped.
    /// The window, as in `Open`, so the peer's compressed frames in flight
    /// still parse.
    Closing(u8),
    /// Done: flush what is queued, half-close, and discard input until the
    /// peer closes too (so that unread input never turns our last bytes into
    /// a reset) or the close deadline passes.
    Draining,
    /// The transport should be closed now.
    Finished,
}

#[derive(Debug, Default)]
struct Pending {
    /// Frame bytes that arrived with the request.
    early: Vec<u8>,
    /// Set by [`Connection::activate`] until the caller takes the activation.
    activated: bool,
    /// The compression window agreed, for `Open` once activated.
    deflate: u8,
    /// The rate limiter, for `Open` once activated.
    limiter: Option<Box<Limiter>>,
}

/// Output beyond which a connection stops taking input, so that a client
/// that sends without reading cannot make us queue without bound.
const READ_PAUSE: usize = 64 * 1024;

/// One client connection.
#[derive(Debug)]
pub struct Connection {
    phase: Phase,
    rx: Receiver,
    out: OutQueue,
    /// One instant whose meaning the phase gives, to keep the connection
    /// small: while open, when the peer last sent anything (the idle clock);
    /// while reading the head, closing or draining, the deadline (`None`:
    /// that timer is off).
    time: Option<Instant>,
    /// Once upgraded, the code of our close frame, reported when the peer
    /// answers it; before, the status a request or an upgrade was refused
    /// with (0: none). One field for both keeps the connection small.
    close_code: u16,
    /// The close code owed to the caller by [`Connection::take_closed`]
    /// (0: none).
    unreported: u16,
    /// Whether the caller knows this connection as upgraded and must be told
    /// once when it closes.
    upgraded: bool,
    /// Whether the sink refused bytes that are still queued: the peer is
    /// behind, and the backlog cap applies to what is sent next.
    behind: bool,
    /// Whether our direction has been shut down.
    fin_sent: bool,
    /// Before the upgrade, whether the request was `HEAD` (answers carry no
    /// body); once upgraded (always after a `GET`), whether it was closed
    /// (1008) for its backlog. One field for both keeps the connection small.
    head_request: bool,
}

impl Connection {
    /// A connection just accepted, at `now`.
    pub fn new(settings: &Settings, now: Instant) -> Connection {
        Connection {
            phase: Phase::Handshake(Box::default()),
            rx: Receiver::new(),
            out: OutQueue::default(),
            time: after(now, settings.handshake_timeout),
            close_code: 0,
            unreported: 0,
            upgraded: false,
            behind: false,
            fin_sent: false,
            head_request: false,
        }
    }

    // ---- input -----------------------------------------------------------

    /// The common case of [`Connection::handle_input`], taken apart for a
    /// caller that wants it cheap: on an open connection between messages,
    /// the message that `input` starts with, if it is one whole
    /// unfragmented, uncompressed text or binary frame that `handle_input`
    /// would accept, with how many bytes it took. For anything else, `None`,
    /// having consumed nothing and changed nothing the general path would
    /// see: call `handle_input` then. Either way the outcome is what
    /// `handle_input` alone would give (`read_message_agrees_with_handle_input`).
    #[inline(always)]
    pub fn read_message<'a>(
        &mut self,
        settings: &Settings,
        now: Instant,
        input: &'a mut [u8],
    ) -> Option<(usize, Message<'a>)> {
        let Phase::Open(_, limiter) = &self.phase else {
            return None;
        };
        // A message over a rate limit is left to `handle_input`, which
        // closes the connection for it.
        let most = match limiter {
            None => settings.max_message,
            Some(limiter) => limiter
                .allowance(&settings.rate_limits, now)?
                .min(settings.max_message),
        };
        let frame = self.rx.read_simple_message(input, most)?;
        if let Phase::Open(_, Some(limiter)) = &mut self.phase {
            // Within the allowance: this counts it.
            limiter.take(&settings.rate_limits, now, frame.payload.len() as u64);
        }
        self.time = Some(now);
        let input: &'a [u8] = input;
        let payload = &input[frame.payload];
        let message = if frame.text {
            Message::Text(validated(payload))
        } else {
            Message::Binary(payload)
        };
        Some((frame.end, message))
    }

    /// Consumes bytes from `input` (unmasking frames in place) up to and
    /// including the next event, and returns how many it consumed and the
    /// event. Call again with the rest until everything is consumed; a call
    /// that consumes nothing and returns no event means the connection takes
    /// no input now (an upgrade decision is owed). Protocol violations are
    /// answered here (a close frame with the right code, or an HTTP status)
    /// and come out as [`Event::Closed`] for an upgraded connection.
    ///
    /// `scratch` is the caller's buffer, reused across connections: a
    /// message gathered across reads is moved there when it completes (or
    /// inflated there, if compressed), and the event borrows it. `codec` is
    /// the loop's, shared by every connection.
    pub fn handle_input<'a>(
        &mut self,
        settings: &Settings,
        now: Instant,
        codec: &mut Codec,
        input: &'a mut [u8],
        scratch: &'a mut Vec<u8>,
    ) -> (usize, Option<Event<'a>>) {
        if !input.is_empty() && matches!(self.phase, Phase::Open(..)) {
            self.time = Some(now);
        }
        match &mut self.phase {
            Phase::Handshake(reader) => match reader.feed(input) {
                Ok(Status::Partial) => (input.len(), None),
                Ok(Status::Complete((request, used))) => {
                    (used, self.on_request(settings, now, request))
                }
                Err(e) => {
                    self.refuse_request(settings, now, e);
                    (input.len(), None)
                }
            },
            Phase::Deciding => (0, None),
            Phase::Pending(pending) => {
                // Only bytes that came with the request get here: the caller
                // stops reading until activation.
                pending.early.extend_from_slice(input);
                (input.len(), None)
            }
            Phase::Open(..) | Phase::Closing(_) => {
                self.read_frames(settings, now, codec, input, scratch)
            }
            Phase::Draining | Phase::Finished => (input.len(), None),
        }
    }

    /// The peer's end of the transport is gone (EOF or a read error).
    pub fn handle_eof(&mut self) {
        self.finish(close::ABNORMAL);
    }

    fn on_request(
        &mut self,
        settings: &Settings,
        now: Instant,
        request: Request,
    ) -> Option<Event<'static>> {
        self.head_request = request.method() == "HEAD";
        // Below the WebSocket path only upgrade attempts are the handler's
        // to decide; a plain request there is like one for any other path.
        let candidate = request.path() == settings.path
            || (is_upgrade_path(request.path(), &settings.path)
                && request.header("Upgrade").is_some());
        if !candidate {
            self.phase = Phase::Deciding;
            return Some(Event::Request(Box::new(request)));
        }
        if let Err(e) = handshake::validate(&request) {
            self.respond_error(settings, now, e);
            return None;
        }
        if !handshake::origin_allowed(&request, &settings.allowed_origins) {
            self.head_request = false;
            self.respond_error(settings, now, HandshakeError::OriginNotAllowed);
            return None;
        }
        self.phase = Phase::Deciding;
        Some(Event::Upgrade(Box::new(request)))
    }

    fn refuse_request(&mut self, settings: &Settings, now: Instant, e: HttpError) {
        log::debug!("bad request: {e}");
        self.close_code = e.status();
        self.write_response(settings, now, &Response::status(e.status()));
    }

    fn respond_error(&mut self, settings: &Settings, now: Instant, e: HandshakeError) {
        log::debug!("refused upgrade: {e}");
        let response = e.response();
        self.close_code = response.status;
        self.write_response(settings, now, &response);
    }

    fn read_frames<'a>(
        &mut self,
        settings: &Settings,
        now: Instant,
        codec: &mut Codec,
        input: &'a mut [u8],
        scratch: &'a mut Vec<u8>,
    ) -> (usize, Option<Event<'a>>) {
        let open = matches!(self.phase, Phase::Open(..));
        let (used, event) = match self
            .rx
            .read(input, settings.max_message, self.deflate() != 0)
        {
            Ok(read) => read,
            Err(e) => return (input.len(), self.fail(settings, now, e)),
        };
        let input: &'a [u8] = input;
        let Some(event) = event else {
            return (used, None);
        };
        let event = match event {
            // Closing: RFC 6455 lets us drop data after our close frame.
            RxEvent::Text(_) | RxEvent::Binary(_) | RxEvent::Deflated { .. } if !open => None,
            RxEvent::Deflated { text, payload } => {
                // Inflated no further than the rate limits allow: a small
                // frame that inflates to a megabyte costs only what the
                // limit lets through.
                let Some(allowed) = self.rate_allowance(settings, now) else {
                    return (used, self.rate_exceeded(settings, now));
                };
                scratch.clear();
                let most = allowed.min(settings.max_message);
                let limit = usize::try_from(most).unwrap_or(usize::MAX);
                let inflated = codec.inflate(self.rx.payload(input, &payload), scratch, limit);
                if inflated.is_ok() {
                    self.count_message(settings, now, scratch.len());
                }
                match inflated {
                    Err(InflateError::TooBig) if allowed < settings.max_message => {
                        self.rate_exceeded(settings, now)
                    }
                    Err(InflateError::TooBig) => {
                        self.fail(settings, now, ProtocolError::MessageTooBig)
                    }
                    Err(InflateError::Corrupt) => {
                        self.fail(settings, now, ProtocolError::BadCompression)
                    }
                    Ok(()) if !text => Some(Event::Binary(&scratch[..])),
                    Ok(()) => match std::str::from_utf8(scratch) {
                        Ok(text) => Some(Event::Text(text)),
                        Err(_) => self.fail(settings, now, ProtocolError::InvalidUtf8),
                    },
                }
            }
            RxEvent::Text(payload) => {
                let bytes = self.take_payload(input, payload, scratch);
                match self.count_message(settings, now, bytes.len()) {
                    true => Some(Event::Text(validated(bytes))),
                    false => self.rate_exceeded(settings, now),
                }
            }
            RxEvent::Binary(payload) => {
                let bytes = self.take_payload(input, payload, scratch);
                match self.count_message(settings, now, bytes.len()) {
                    true => Some(Event::Binary(bytes)),
                    false => self.rate_exceeded(settings, now),
                }
            }
            RxEvent::Ping(payload) => {
                if open {
                    let mut pong = Vec::with_capacity(2 + MAX_CONTROL_PAYLOAD);
                    encode_frame(&mut pong, OpCode::Pong, self.rx.payload(input, &payload));
                    self.queue(settings, now, &[&pong]);
                }
                None
            }
            RxEvent::Pong(_) => None,
            RxEvent::Close(payload) => {
                let bytes = match payload {
                    Payload::Input(range) => &input[range],
                    other => {
                        scratch.clear();
                        scratch.extend_from_slice(self.rx.payload(input, &other));
                        &scratch[..]
                    }
                };
                // The receiver validated the frame.
                let frame = parse_close(bytes).unwrap_or(close::CloseFrame {
                    code: None,
                    reason: "",
                });
                self.on_close_frame(settings, now, frame.code, frame.reason)
            }
        };
        (used, event)
    }

    /// The largest message the rate limits let through at `now` (`None`:
    /// none at all; no limits: any).
    fn rate_allowance(&self, settings: &Settings, now: Instant) -> Option<u64> {
        match &self.phase {
            Phase::Open(_, Some(limiter)) => limiter.allowance(&settings.rate_limits, now),
            _ => Some(u64::MAX),
        }
    }

    /// Counts a message of `len` bytes received at `now` against the rate
    /// limits; whether it is within them.
    fn count_message(&mut self, settings: &Settings, now: Instant, len: usize) -> bool {
        match &mut self.phase {
            Phase::Open(_, Some(limiter)) => limiter.take(&settings.rate_limits, now, len as u64),
            _ => true,
        }
    }

    /// Closes the connection (1008) for a message over a rate limit; the
    /// message is dropped, and [`Event::Closed`] follows the peer's answer.
    fn rate_exceeded(&mut self, settings: &Settings, now: Instant) -> Option<Event<'static>> {
        let limits = &settings.rate_limits;
        log::warn!(
            "over the rate limit ({} messages/s, {} bytes/s): closing (1008)",
            limits.messages.map_or("any".into(), |r| format!(
                "{} burst {}",
                r.per_second(),
                r.burst()
            )),
            limits.bytes.map_or("any".into(), |r| format!(
                "{} burst {}",
                r.per_second(),
                r.burst()
            )),
        );
        let _ = self.close(
            settings,
            now,
            close::POLICY_VIOLATION,
            "rate limit exceeded",
        );
        None
    }

    /// The payload of a data event: in the input, or the gathered message,
    /// which moves into `scratch`.
    fn take_payload<'a>(
        &mut self,
        input: &'a [u8],
        payload: Payload,
        scratch: &'a mut Vec<u8>,
    ) -> &'a [u8] {
        match payload {
            Payload::Input(range) => &input[range],
            _ => {
                self.rx.swap_message(scratch);
                &scratch[..]
            }
        }
    }

    fn on_close_frame<'a>(
        &mut self,
        settings: &Settings,
        now: Instant,
        code: Option<u16>,
        reason: &'a str,
    ) -> Option<Event<'a>> {
        if matches!(self.phase, Phase::Closing(_)) {
            // The peer answered ours: report the code we began with.
            self.drain(settings, now);
            return self.report(self.close_code, "");
        }
        // Echo the peer's code (RFC 6455 §5.5.1).
        let mut frame = Vec::with_capacity(4);
        encode_close(&mut frame, code, "");
        self.queue_last(&frame);
        self.drain(settings, now);
        self.report(code.unwrap_or(close::NO_STATUS), reason)
    }

    /// Fails the connection after a protocol violation: a close frame with
    /// the error's code (unless ours is already out), then drain without
    /// reading another frame.
    fn fail(
        &mut self,
        settings: &Settings,
        now: Instant,
        e: ProtocolError,
    ) -> Option<Event<'static>> {
        let code = e.close_code();
        log::debug!("failing with {code}: {e}");
        if !matches!(self.phase, Phase::Closing(_)) {
            let mut frame = Vec::with_capacity(4);
            encode_close(&mut frame, Some(code), "");
            self.queue_last(&frame);
        }
        self.drain(settings, now);
        self.report(code, "")
    }

    /// The event that tells the caller an upgraded connection is closed, once.
    fn report<'a>(&mut self, code: u16, reason: &'a str) -> Option<Event<'a>> {
        if !self.upgraded {
            return None;
        }
        self.upgraded = false;
        self.unreported = 0;
        self.close_code = 0;
        Some(Event::Closed { code, reason })
    }

    // ---- answering the request ---------------------------------------------

    /// Accepts the upgrade reported by [`Event::Upgrade`] for `request`:
    /// writes the `101` (with `protocol` if the client offered it; another
    /// is left out with a warning) and opens the connection, or, if
    /// `delayed`, waits for [`Connection::activate`].
    pub fn accept(
        &mut self,
        settings: &Settings,
        now: Instant,
        request: &Request,
        protocol: Option<&str>,
        delayed: bool,
    ) -> Result<(), SendError> {
        if !matches!(self.phase, Phase::Deciding) {
            return Err(SendError::NotDeciding);
        }
        let Some(key) = request.header("Sec-WebSocket-Key") else {
            self.respond_error(settings, now, HandshakeError::BadKey);
            return Ok(());
        };
        let protocol = protocol.filter(|p| {
            let offered = handshake::offered_protocols(request).any(|o| o == *p);
            if !offered {
                log::warn!("handler chose subprotocol {p:?}, which the client did not offer");
            }
            offered
        });
        let agreement = if settings.deflate {
            deflate::negotiate(request)
        } else {
            None
        };
        let mut extensions = Vec::new();
        if let Some(agreement) = agreement {
            agreement.write_answer(&mut extensions);
        }
        let window = agreement.map_or(0, |a| a.window_bits);
        let limiter = settings
            .rate_limits
            .is_set()
            .then(|| Box::new(Limiter::default()));
        let mut reply = Vec::with_capacity(160 + extensions.len());
        handshake::write_accept(
            &mut reply,
            key,
            protocol,
            agreement.map(|_| &extensions[..]),
        );
        self.queue(settings, now, &[&reply]);
        self.upgraded = true;
        self.time = Some(now);
        self.phase = if delayed {
            Phase::Pending(Box::new(Pending {
                deflate: window,
                limiter,
                ..Pending::default()
            }))
        } else {
            Phase::Open(window, limiter)
        };
        Ok(())
    }

    /// Refuses the upgrade reported by [`Event::Upgrade`] with `response`.
    pub fn reject(
        &mut self,
        settings: &Settings,
        now: Instant,
        response: &Response,
    ) -> Result<(), SendError> {
        if !matches!(self.phase, Phase::Deciding) {
            return Err(SendError::NotDeciding);
        }
        self.head_request = false;
        self.close_code = response.status;
        self.write_response(settings, now, response);
        Ok(())
    }

    /// Answers the plain request reported by [`Event::Request`] (or any
    /// connection still reading its head, e.g. with `503` when the server is
    /// full), then finishes the connection.
    pub fn respond(
        &mut self,
        settings: &Settings,
        now: Instant,
        response: &Response,
    ) -> Result<(), SendError> {
        if !matches!(self.phase, Phase::Deciding | Phase::Handshake(_)) {
            return Err(SendError::NotDeciding);
        }
        self.write_response(settings, now, response);
        Ok(())
    }

    fn write_response(&mut self, settings: &Settings, now: Instant, response: &Response) {
        let mut bytes = Vec::new();
        response.write_to(&mut bytes, self.head_request);
        self.out.push_copy(&[&bytes]);
        self.drain(settings, now);
    }

    /// Activates a connection accepted with `delayed`: frames will be read.
    /// The caller learns it from [`Connection::take_activation`].
    pub fn activate(&mut self) -> Result<(), SendError> {
        match &mut self.phase {
            Phase::Pending(pending) if !pending.activated => {
                pending.activated = true;
                Ok(())
            }
            _ => Err(SendError::NotPending),
        }
    }

    /// After [`Connection::activate`]: opens the connection and returns the
    /// bytes that arrived with the request, to be fed to
    /// [`Connection::handle_input`]. `None` if no activation is pending.
    pub fn take_activation(&mut self, now: Instant) -> Option<Vec<u8>> {
        let Phase::Pending(pending) = &mut self.phase else {
            return None;
        };
        if !pending.activated {
            return None;
        }
        let early = std::mem::take(&mut pending.early);
        let limiter = pending.limiter.take();
        self.phase = Phase::Open(pending.deflate, limiter);
        self.time = Some(now);
        Some(early)
    }

    // ---- output ------------------------------------------------------------

    /// Queues a message (compressed, if permessage-deflate was agreed and
    /// it pays).
    pub fn send(
        &mut self,
        settings: &Settings,
        now: Instant,
        codec: &mut Codec,
        msg: Message<'_>,
    ) -> Result<(), SendError> {
        if !self.can_send() {
            return Err(SendError::NotOpen);
        }
        let (header, payload) = self.frame(codec, msg);
        self.queue_frame(settings, now, &header, payload);
        Ok(())
    }

    /// The header and payload `msg` is sent with: compressed with the
    /// agreed window when that pays, else as it is.
    fn frame<'m>(&self, codec: &'m mut Codec, msg: Message<'m>) -> (ServerHeader, &'m [u8]) {
        if self.deflate() != 0 {
            if let Some(z) = codec.compress(self.deflate(), msg.as_bytes()) {
                return (
                    ServerHeader::new(true, msg.opcode(), z.len()).with_rsv1(),
                    z,
                );
            }
        }
        let header = ServerHeader::new(true, msg.opcode(), msg.as_bytes().len());
        (header, msg.as_bytes())
    }

    /// Sends a message straight through `sink` after what is queued, in one
    /// vectored write, queueing only what the sink refuses: a large reply is
    /// never copied when the socket takes it.
    pub fn send_through(
        &mut self,
        settings: &Settings,
        now: Instant,
        codec: &mut Codec,
        sink: &mut dyn Sink,
        msg: Message<'_>,
    ) -> Result<(), SendError> {
        if !self.can_send() {
            return Err(SendError::NotOpen);
        }
        let (header, payload) = self.frame(codec, msg);
        self.write_to(settings, now, sink, &[header.as_bytes(), payload], None);
        Ok(())
    }

    /// Queues a frame encoded once for many connections.
    pub fn send_shared(
        &mut self,
        settings: &Settings,
        now: Instant,
        codec: &mut Codec,
        frame: &SharedFrame,
    ) -> Result<(), SendError> {
        if !self.can_send() {
            return Err(SendError::NotOpen);
        }
        let was_behind = self.behind;
        self.out
            .push_shared(frame.bytes_for(self.deflate(), codec), 0);
        self.check_backlog(settings, now, was_behind);
        Ok(())
    }

    /// The bytes of `frame` as this connection takes them: its compressed
    /// variant (made on the first need, once for every connection) if it
    /// negotiated the shared window, else the plain frame.
    pub fn shared_bytes(&self, codec: &mut Codec, frame: &SharedFrame) -> Rc<[u8]> {
        Rc::clone(frame.bytes_for(self.deflate(), codec))
    }

    /// `msg` encoded as [`Connection::send`] would queue it (compressed
    /// when that pays), as one buffer: for a caller that must hold it back
    /// behind other output (the server's paced feed).
    pub fn encode(&self, codec: &mut Codec, msg: Message<'_>) -> Rc<[u8]> {
        let (header, payload) = self.frame(codec, msg);
        let mut bytes = Vec::with_capacity(header.as_bytes().len() + payload.len());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(payload);
        bytes.into()
    }

    /// Queues encoded frame bytes (from [`Connection::shared_bytes`] or
    /// [`Connection::encode`]) without the backlog check: for a caller that
    /// bounds what it queues itself, as the server's paced feed does (it
    /// hands a connection more only while its backlog is under the limit).
    pub fn queue_paced(&mut self, bytes: &Rc<[u8]>) -> Result<(), SendError> {
        if !self.can_send() {
            return Err(SendError::NotOpen);
        }
        self.out.push_shared(bytes, 0);
        Ok(())
    }

    /// Whether it takes the compressed variant of broadcasts and shared
    /// frames (see [`deflate::SHARED_WINDOW_BITS`]).
    pub fn takes_shared_deflate(&self) -> bool {
        self.deflate() == deflate::SHARED_WINDOW_BITS
    }

    /// Queues frames already encoded for many connections (a broadcast
    /// batch, compressed or not as [`Connection::takes_shared_deflate`]
    /// says), if the connection is open.
    pub fn send_frames(&mut self, settings: &Settings, now: Instant, frames: &[u8]) {
        if self.is_open() {
            self.queue(settings, now, &[frames]);
        }
    }

    /// Queues a ping (at most 125 bytes of payload).
    pub fn ping(
        &mut self,
        settings: &Settings,
        now: Instant,
        payload: &[u8],
    ) -> Result<(), SendError> {
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(SendError::ControlTooLong);
        }
        if !self.can_send() {
            return Err(SendError::NotOpen);
        }
        let header = ServerHeader::new(true, OpCode::Ping, payload.len());
        self.queue_frame(settings, now, &header, payload);
        Ok(())
    }

    /// Begins the closing handshake: a close frame now, then wait for the
    /// peer's (at most the close timeout); [`Event::Closed`] follows.
    pub fn close(
        &mut self,
        settings: &Settings,
        now: Instant,
        code: u16,
        reason: &str,
    ) -> Result<(), SendError> {
        if !close::is_valid_on_wire(code) {
            return Err(SendError::InvalidCloseCode);
        }
        if !self.can_send() {
            return Err(SendError::NotOpen);
        }
        let mut frame = Vec::with_capacity(4 + reason.len().min(MAX_CONTROL_PAYLOAD));
        encode_close(&mut frame, Some(code), reason);
        self.queue_last(&frame);
        self.phase = Phase::Closing(self.deflate());
        self.close_code = code;
        self.time = after(now, settings.close_wait());
        Ok(())
    }

    /// Drops the connection at once: the caller closes the transport.
    pub fn kill(&mut self) -> Result<(), SendError> {
        if matches!(self.phase, Phase::Finished) {
            return Err(SendError::NotOpen);
        }
        self.finish(close::ABNORMAL);
        Ok(())
    }

    /// Moves queued bytes, then `extra`, into `sink` in one vectored write,
    /// queueing what it refuses (as one shared buffer for every member that
    /// must wait, if `shared` is given: see [`super::output::OutQueue::push_rest`]).
    /// A sink that fails finishes the connection. Once a draining
    /// connection's output is all out, its sending direction is shut.
    pub fn write_to(
        &mut self,
        settings: &Settings,
        now: Instant,
        sink: &mut dyn Sink,
        extra: &[&[u8]],
        shared: Option<&mut Option<Rc<[u8]>>>,
    ) {
        if matches!(self.phase, Phase::Finished) {
            return;
        }
        let was_behind = self.behind;
        let written = if was_behind {
            // The sink refused bytes before: wait for it to drain.
            0
        } else {
            match self.out.write_through(sink, extra) {
                Ok(n) => n,
                Err(e) => {
                    log::debug!("write failed: {e}");
                    self.finish(close::ABNORMAL);
                    return;
                }
            }
        };
        self.out.push_rest(extra, written, shared);
        if !was_behind {
            self.behind = !self.out.is_empty();
        }
        self.check_backlog(settings, now, was_behind);
        if self.out.is_empty() && matches!(self.phase, Phase::Draining) && !self.fin_sent {
            self.fin_sent = true;
            sink.shutdown_write();
        }
    }

    /// The sink can take bytes again: writes what is queued.
    pub fn handle_writable(&mut self, settings: &Settings, now: Instant, sink: &mut dyn Sink) {
        self.behind = false;
        self.write_to(settings, now, sink, &[], None);
    }

    /// Queues bytes for the peer, under the backlog cap.
    fn queue(&mut self, settings: &Settings, now: Instant, parts: &[&[u8]]) {
        let was_behind = self.behind;
        self.out.push_copy(parts);
        self.check_backlog(settings, now, was_behind);
    }

    /// Queues a frame, under the backlog cap.
    fn queue_frame(
        &mut self,
        settings: &Settings,
        now: Instant,
        header: &ServerHeader,
        payload: &[u8],
    ) {
        let was_behind = self.behind;
        self.out.push_frame(header, payload);
        self.check_backlog(settings, now, was_behind);
    }

    /// Queues a close frame: past the backlog limit all the same, as it is
    /// small and the last data this connection is sent.
    fn queue_last(&mut self, frame: &[u8]) {
        self.out.push_copy(&[frame]);
    }

    /// The cap applies to a peer that is behind: one whose sink refused
    /// bytes still queued when this output came. A single message larger
    /// than the cap, sent to a peer that has kept up, is let through, so the
    /// largest message accepted can always be echoed; memory stays bounded by
    /// the cap plus one message.
    fn check_backlog(&mut self, settings: &Settings, now: Instant, was_behind: bool) {
        if !was_behind {
            return;
        }
        let queued = self.out.len();
        if queued > settings.max_backlog {
            self.close_for_backlog(settings, now);
        }
    }

    /// Closes (1008) a peer that is behind with more than the backlog
    /// limit waiting for it, and marks it for
    /// [`Connection::take_backlog_closed`]. Nothing if it cannot send.
    pub fn close_for_backlog(&mut self, settings: &Settings, now: Instant) {
        if !self.can_send() {
            return;
        }
        // Logged by whoever holds the connection, which can name it (see
        // `Connection::take_backlog_closed`).
        // Open, so upgraded: the field means "closed for its backlog".
        self.head_request = true;
        let _ = self.close(
            settings,
            now,
            close::POLICY_VIOLATION,
            "backlog limit exceeded",
        );
    }

    // ---- time ----------------------------------------------------------------

    /// The status of the error response it refused a request or an upgrade
    /// with (a bad request, a failed handshake check, a rejected upgrade),
    /// if it did.
    pub fn refused(&self) -> Option<u16> {
        (!self.upgraded && self.close_code != 0).then_some(self.close_code)
    }

    /// Whether it was closed (1008) for a backlog over the limit since
    /// this was last asked (ask before [`Connection::take_closed`]).
    pub fn take_backlog_closed(&mut self) -> bool {
        let closed = self.upgraded && self.head_request;
        if closed {
            self.head_request = false;
        }
        closed
    }

    /// When the connection next needs [`Connection::handle_timeout`], if ever.
    pub fn poll_timeout(&self, settings: &Settings) -> Option<Instant> {
        match self.phase {
            Phase::Open(..) => self
                .time
                .and_then(|heard| after(heard, settings.idle_timeout)),
            Phase::Handshake(_) | Phase::Closing(_) | Phase::Draining => self.time,
            Phase::Deciding | Phase::Pending(_) | Phase::Finished => None,
        }
    }

    /// Acts on whatever deadline has passed at `now`: a handshake that took
    /// too long is dropped, an idle connection is closed with 1001, a close
    /// that went unanswered is dropped.
    pub fn handle_timeout(&mut self, settings: &Settings, now: Instant) {
        let Some(due) = self.poll_timeout(settings) else {
            return;
        };
        if now < due {
            return;
        }
        match self.phase {
            Phase::Handshake(_) => {
                // Logged by whoever holds the connection, which can name it.
                self.finish(close::ABNORMAL);
            }
            Phase::Open(..) => {
                log::debug!("idle for {:?}, closing", settings.idle_timeout);
                let _ = self.close(settings, now, close::GOING_AWAY, "idle timeout");
            }
            Phase::Closing(_) | Phase::Draining => {
                log::debug!("close timed out");
                self.finish(close::ABNORMAL);
            }
            Phase::Deciding | Phase::Pending(_) | Phase::Finished => {}
        }
    }

    // ---- state -----------------------------------------------------------------

    /// The close code owed to the caller, once: for an upgraded connection
    /// that ended by a kill, a deadline or a failed write (input-caused ends
    /// come as [`Event::Closed`] instead).
    pub fn take_closed(&mut self) -> Option<u16> {
        match std::mem::take(&mut self.unreported) {
            0 => None,
            code => Some(code),
        }
    }

    /// Whether messages may be sent (open, or accepted and not yet active).
    pub fn can_send(&self) -> bool {
        matches!(self.phase, Phase::Open(..) | Phase::Pending(_))
    }

    /// Whether the connection is open for messages both ways.
    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open(..))
    }

    /// The window (bits) it compresses messages with, once permessage-deflate
    /// is agreed (0: not agreed).
    fn deflate(&self) -> u8 {
        match &self.phase {
            Phase::Open(window, _) | Phase::Closing(window) => *window,
            Phase::Pending(pending) => pending.deflate,
            _ => 0,
        }
    }

    /// Whether the connection is still reading its request head.
    pub fn is_handshaking(&self) -> bool {
        matches!(self.phase, Phase::Handshake(_))
    }

    /// Whether the transport should be closed now.
    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Finished)
    }

    /// Whether the caller should read input now.
    pub fn wants_read(&self, settings: &Settings) -> bool {
        match self.phase {
            Phase::Deciding | Phase::Pending(_) | Phase::Finished => false,
            Phase::Draining => true,
            Phase::Handshake(_) | Phase::Open(..) | Phase::Closing(_) => {
                self.out.len() < READ_PAUSE.min(settings.max_backlog.max(1))
            }
        }
    }

    /// Whether bytes wait for the sink to take them.
    pub fn wants_write(&self) -> bool {
        self.behind
    }

    /// Whether [`Connection::write_to`] has anything to do: bytes queued, or
    /// a finished exchange whose sending direction is still to be shut.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty() || (matches!(self.phase, Phase::Draining) && !self.fin_sent)
    }

    /// Bytes queued that the sink has not taken.
    pub fn backlog(&self) -> usize {
        self.out.len()
    }

    /// Heap bytes held for received data (for tests and memory accounting).
    pub fn receive_heap_bytes(&self) -> usize {
        self.rx.heap_bytes()
    }

    fn drain(&mut self, settings: &Settings, now: Instant) {
        if matches!(self.phase, Phase::Draining | Phase::Finished) {
            return;
        }
        self.phase = Phase::Draining;
        self.time = after(now, settings.close_wait());
    }

    fn finish(&mut self, code: u16) {
        if self.upgraded {
            self.upgraded = false;
            self.unreported = code;
            self.close_code = 0;
        }
        self.phase = Phase::Finished;
        self.time = None;
    }
}

/// The text of a [`RxEvent::Text`], which the receiver has validated, as a
/// `str` without a second scan. This is the one `unsafe` block of
/// [`crate::proto`], and it is there because it was measured: converting a
/// 32-byte text again with `std::str::from_utf8` cost about 125 of the
/// roughly 940 user-space instructions an echoed message took (callgrind,
/// `loadgen echo-small`; the standard validator walks a short slice byte by
/// byte). Debug builds, and so the tests and the fuzz targets, check the
/// receiver's claim on every message.
#[allow(unsafe_code)]
fn validated(bytes: &[u8]) -> &str {
    debug_assert!(
        std::str::from_utf8(bytes).is_ok(),
        "receiver passed invalid UTF-8"
    );
    // SAFETY: `bytes` is the payload of an `RxEvent::Text`, resolved in the
    // buffer the event came from (the input of this `read`, untouched since,
    // or the receiver's gathered message, moved out unchanged), or of a text
    // `WholeFrame` in the input `Receiver::read_simple_message` was given,
    // untouched since. The receiver returns `Text` only for a message whose
    // every byte it has validated as UTF-8 (`Utf8Validator` across frames
    // and reads, with the code point at the end complete, or
    // the ASCII test made while unmasking or `from_utf8` on a whole frame:
    // `Receiver::read`), and a text `WholeFrame` only once
    // `WholeFrame::is_utf8` has passed it.
    unsafe { std::str::from_utf8_unchecked(bytes) }
}

/// `now + d`, or `None` for a zero (turned off) duration.
fn after(now: Instant, d: Duration) -> Option<Instant> {
    if d.is_zero() {
        None
    } else {
        now.checked_add(d)
    }
}

/// Whether `path` is one upgrades are considered on: the WebSocket path
/// itself, or below it (`PATH/anything`, which the handler accepts or
/// refuses, e.g. as chat rooms).
pub fn is_upgrade_path(path: &str, ws_path: &str) -> bool {
    match path.strip_prefix(ws_path) {
        Some("") => true,
        Some(rest) => rest.starts_with('/') && !ws_path.ends_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests;
