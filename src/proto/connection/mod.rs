//! One WebSocket connection as a state machine: bytes and the time go in,
//! checked events and bytes to send come out.
//!
//! [`Connection`] owns everything that happens on one TCP connection after
//! `accept()`: the request head, the upgrade answer, the frame receiver, the
//! automatic pongs, the closing handshake in both directions, failing fast
//! on a protocol error, its deadlines (handshake, idle, close) and the bytes
//! it has yet to send. It never touches a socket or a clock: the caller
//! passes the current [`Instant`] to every call that needs one, asks
//! [`Connection::poll_timeout`] when it next needs attention, and takes
//! what it wants sent as data ([`Connection::pending_output`]), telling it
//! what went ([`Connection::consumed`], [`Connection::end_write`]) or that
//! the transport failed ([`Connection::write_failed`]): it never calls out.
//! A test drives it with a `Vec<u8>` and a made-up `Instant`; the server
//! drives it with a socket and a timer wheel.
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
//! write) are reported once by [`Connection::poll_event`], with the other
//! things the caller is owed (an activation, a refusal, a backlog close).

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::close::{self, parse_close, CloseCode};
use super::deflate::{self, Codec, InflateError};
use super::frame::{encode_close, encode_frame, OpCode, ServerHeader, MAX_CONTROL_PAYLOAD};
use super::handshake::{self, HandshakeError};
use super::http::{HeadReader, HttpError, Request, Response, Status};
use super::output::{OutQueue, PendingOutput};
use super::rate::Limiter;
use super::receiver::{Event as RxEvent, Payload, ProtocolError, Receiver};

mod message;
mod send;

pub use message::{Message, SendError, Settings, SharedFrame};

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
    /// with). Comes once per upgraded connection, here or as
    /// [`Notice::Closed`].
    Closed {
        /// The close code.
        code: CloseCode,
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
    /// The code of our close frame, reported when the peer answers it
    /// (0: none).
    close_code: u16,
    /// The status a request or an upgrade was refused with, owed to the
    /// caller as [`Notice::Refused`] (0: none).
    refused: u16,
    /// The close code owed to the caller as [`Notice::Closed`] (0: none).
    unreported: u16,
    /// What it is, as bits (see [`UPGRADED`] and the others): one byte for
    /// five answers keeps the connection small.
    flags: u8,
}

/// A bit of [`Connection`]'s flags: the caller knows this connection as
/// upgraded and must be told once when it closes.
const UPGRADED: u8 = 1;
/// A flag: the transport refused bytes that are still queued; the peer is
/// behind, and the backlog cap applies to what is sent next.
const BEHIND: u8 = 2;
/// A flag: our sending direction has been shut down.
const FIN_SENT: u8 = 4;
/// A flag: the request was `HEAD` (answers carry no body).
const HEAD_REQUEST: u8 = 8;
/// A flag: it was closed (1008) for its backlog, and owes the caller
/// [`Notice::BacklogExceeded`].
const BACKLOG_EXCEEDED: u8 = 16;

/// What a connection tells its caller apart from its input's events:
/// [`Connection::poll_event`] hands them out, oldest kind first.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Notice {
    /// A request or an upgrade was refused with this HTTP status (a bad
    /// request, a failed handshake check, a rejected upgrade).
    Refused(u16),
    /// A connection accepted with `delayed` was activated: it is open now,
    /// and these bytes, which arrived with the request, are to be fed to
    /// [`Connection::handle_input`].
    Activated(Vec<u8>),
    /// It was closed (1008) for a backlog over the limit.
    BacklogExceeded,
    /// An upgraded connection ended without its input saying so (a kill, a
    /// deadline, a failed write), with this close code (input-caused ends
    /// come as [`Event::Closed`] instead). Once per connection.
    Closed(CloseCode),
}

impl Connection {
    fn flag(&self, bit: u8) -> bool {
        self.flags & bit != 0
    }

    fn set_flag(&mut self, bit: u8, on: bool) {
        if on {
            self.flags |= bit;
        } else {
            self.flags &= !bit;
        }
    }

    /// Whether `bit` was set, clearing it.
    fn take_flag(&mut self, bit: u8) -> bool {
        let was = self.flag(bit);
        self.flags &= !bit;
        was
    }

    /// A connection just accepted, at `now`.
    pub fn new(settings: &Settings, now: Instant) -> Connection {
        Connection {
            phase: Phase::Handshake(Box::default()),
            rx: Receiver::new(),
            out: OutQueue::default(),
            time: after(now, settings.handshake_timeout),
            close_code: 0,
            refused: 0,
            unreported: 0,
            flags: 0,
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
        self.finish(CloseCode::ABNORMAL);
    }

    fn on_request(
        &mut self,
        settings: &Settings,
        now: Instant,
        request: Request,
    ) -> Option<Event<'static>> {
        self.set_flag(HEAD_REQUEST, request.method() == "HEAD");
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
            self.set_flag(HEAD_REQUEST, false);
            self.respond_error(settings, now, HandshakeError::OriginNotAllowed);
            return None;
        }
        self.phase = Phase::Deciding;
        Some(Event::Upgrade(Box::new(request)))
    }

    fn refuse_request(&mut self, settings: &Settings, now: Instant, e: HttpError) {
        log::debug!("bad request: {e}");
        self.refused = e.status();
        self.write_response(settings, now, &Response::status(e.status()));
    }

    fn respond_error(&mut self, settings: &Settings, now: Instant, e: HandshakeError) {
        log::debug!("refused upgrade: {e}");
        let response = e.response();
        self.refused = response.status;
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
        let _ = self.close(settings, now, CloseCode::POLICY, "rate limit exceeded");
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
        code: Option<CloseCode>,
        reason: &'a str,
    ) -> Option<Event<'a>> {
        if matches!(self.phase, Phase::Closing(_)) {
            // The peer answered ours: report the code we began with.
            self.drain(settings, now);
            return self.report(CloseCode::new(self.close_code), "");
        }
        // Echo the peer's code (RFC 6455 §5.5.1).
        let mut frame = Vec::with_capacity(4);
        encode_close(&mut frame, code, "");
        self.queue_last(&frame);
        self.drain(settings, now);
        self.report(code.unwrap_or(CloseCode::NO_STATUS), reason)
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
    fn report<'a>(&mut self, code: CloseCode, reason: &'a str) -> Option<Event<'a>> {
        if !self.flag(UPGRADED) {
            return None;
        }
        self.set_flag(UPGRADED, false);
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
        self.set_flag(UPGRADED, true);
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
        self.set_flag(HEAD_REQUEST, false);
        self.refused = response.status;
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
        response.write_to(&mut bytes, self.flag(HEAD_REQUEST));
        self.out.push_copy(&[&bytes]);
        self.drain(settings, now);
    }

    /// Activates a connection accepted with `delayed`: frames will be read.
    /// The caller learns it from [`Notice::Activated`].
    pub fn activate(&mut self) -> Result<(), SendError> {
        match &mut self.phase {
            Phase::Pending(pending) if !pending.activated => {
                pending.activated = true;
                Ok(())
            }
            _ => Err(SendError::NotPending),
        }
    }

    // ---- time ----------------------------------------------------------------

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
                self.finish(CloseCode::ABNORMAL);
            }
            Phase::Open(..) => {
                log::debug!("idle for {:?}, closing", settings.idle_timeout);
                let _ = self.close(settings, now, CloseCode::GOING_AWAY, "idle timeout");
            }
            Phase::Closing(_) | Phase::Draining => {
                log::debug!("close timed out");
                self.finish(CloseCode::ABNORMAL);
            }
            Phase::Deciding | Phase::Pending(_) | Phase::Finished => {}
        }
    }

    // ---- state -----------------------------------------------------------------

    /// The next thing the caller is owed that is not an event of its input
    /// (see [`Notice`]), each once. Ask after acting on the connection (its
    /// input, a write, a deadline, an activation), until `None`. An
    /// activation opens the connection here, at `now`.
    pub fn poll_event(&mut self, now: Instant) -> Option<Notice> {
        if self.refused != 0 {
            return Some(Notice::Refused(std::mem::take(&mut self.refused)));
        }
        if let Phase::Pending(pending) = &mut self.phase {
            if pending.activated {
                let early = std::mem::take(&mut pending.early);
                let limiter = pending.limiter.take();
                self.phase = Phase::Open(pending.deflate, limiter);
                self.time = Some(now);
                return Some(Notice::Activated(early));
            }
        }
        if self.take_flag(BACKLOG_EXCEEDED) {
            return Some(Notice::BacklogExceeded);
        }
        match std::mem::take(&mut self.unreported) {
            0 => None,
            code => Some(Notice::Closed(CloseCode::new(code))),
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

    /// Whether bytes the transport refused are still queued: the next write
    /// waits for [`Connection::handle_writable`].
    pub fn wants_write(&self) -> bool {
        self.flag(BEHIND)
    }

    /// Whether a write has anything to do: bytes queued, or a finished
    /// exchange whose sending direction is still to be shut.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty() || (matches!(self.phase, Phase::Draining) && !self.flag(FIN_SENT))
    }

    /// Bytes queued that the transport has not taken.
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

    fn finish(&mut self, code: CloseCode) {
        if self.flag(UPGRADED) {
            self.set_flag(UPGRADED, false);
            self.unreported = code.get();
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
