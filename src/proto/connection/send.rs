//! What a connection sends, and its output as data: messages, shared and
//! paced frames, pings and closes queued (under the backlog cap), and the
//! calls its caller makes around a write ([`Connection::pending_output`],
//! [`Connection::consumed`], [`Connection::end_write`],
//! [`Connection::write_failed`]).

use super::*;

impl Connection {
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
    #[inline(always)]
    pub(super) fn frame<'m>(
        &self,
        codec: &'m mut Codec,
        msg: Message<'m>,
    ) -> (ServerHeader, &'m [u8]) {
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

    /// The header and payload of `msg` as [`Connection::send`] would
    /// queue it, for a caller that hands a large message to its transport
    /// right after [`Connection::pending_output`], in the same write, so that
    /// it is never copied when the transport takes it; the caller then gives
    /// it to [`Connection::end_write`] with what was taken.
    pub fn message_parts<'m>(
        &self,
        codec: &'m mut Codec,
        msg: Message<'m>,
    ) -> Result<(ServerHeader, &'m [u8]), SendError> {
        if !self.can_send() {
            return Err(SendError::NotOpen);
        }
        Ok(self.frame(codec, msg))
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
        let was_behind = self.flag(BEHIND);
        self.out
            .push_shared(frame.bytes_for(self.deflate(), codec), 0);
        self.check_backlog(settings, now, was_behind);
        Ok(())
    }

    /// Queues broadcast frames encoded in a shared block, `block[range]`
    /// (compressed or not as [`Connection::takes_shared_deflate`] says), as
    /// a reference to the block, under the backlog cap (which a peer that is
    /// behind meets with the whole blocks its queue keeps alive, if that is
    /// more than its bytes). Nothing if it is not open.
    pub(crate) fn send_span(
        &mut self,
        settings: &Settings,
        now: Instant,
        block: &Rc<crate::proto::block::Block>,
        range: std::ops::Range<usize>,
    ) {
        if !self.is_open() {
            return;
        }
        let was_behind = self.flag(BEHIND);
        self.out.push_span(block, range);
        self.check_backlog(settings, now, was_behind);
    }

    /// [`Connection::send_span`] when `block[range]` continues the span
    /// queued last and the peer keeps up: the range is extended, and
    /// nothing else is to be checked (a peer that keeps up is not under the
    /// backlog cap). Says whether it was; if not, `send_span` is the way.
    #[inline]
    pub(crate) fn extend_span(
        &mut self,
        block: &Rc<crate::proto::block::Block>,
        range: std::ops::Range<usize>,
    ) -> bool {
        !self.flag(BEHIND) && self.is_open() && self.out.extend_span(block, range)
    }

    /// Attaches the queue to a live range of broadcasts from `start` (see
    /// `proto::block::Live`), if the peer keeps up and the connection is
    /// open, and says whether it did: then every extension of `live` is
    /// owed to it without a visit, until the queue is sealed.
    #[inline]
    pub(crate) fn attach(&mut self, live: &Rc<crate::proto::block::Live>, start: usize) -> bool {
        if self.flag(BEHIND) || !self.is_open() {
            return false;
        }
        self.out.attach(live, start);
        true
    }

    /// Whether the queue is attached to `live`.
    #[inline]
    pub(crate) fn is_attached_to(&self, live: &Rc<crate::proto::block::Live>) -> bool {
        self.out.is_attached_to(live)
    }

    /// Seals the queue's attachment, if any, into a queued range, under
    /// the backlog cap: before the queue is written, and before bytes are
    /// written around it.
    #[inline]
    pub(crate) fn seal(&mut self, settings: &Settings, now: Instant) {
        let was_behind = self.flag(BEHIND);
        self.out.seal();
        self.check_backlog(settings, now, was_behind);
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
        code: CloseCode,
        reason: &str,
    ) -> Result<(), SendError> {
        if !code.is_valid_on_wire() {
            return Err(SendError::InvalidCloseCode);
        }
        if !self.can_send() {
            return Err(SendError::NotOpen);
        }
        let mut frame = Vec::with_capacity(4 + reason.len().min(MAX_CONTROL_PAYLOAD));
        encode_close(&mut frame, Some(code), reason);
        self.queue_last(&frame);
        self.phase = Phase::Closing(self.deflate());
        self.close_code = code.get();
        self.time = after(now, settings.close_wait());
        Ok(())
    }

    /// Drops the connection at once: the caller closes the transport.
    pub fn kill(&mut self) -> Result<(), SendError> {
        if matches!(self.phase, Phase::Finished) {
            return Err(SendError::NotOpen);
        }
        self.finish(CloseCode::ABNORMAL);
        Ok(())
    }

    /// What it wants sent, oldest first: slices for one vectored write.
    /// Report what the transport took with [`Connection::consumed`], then
    /// end the write with [`Connection::end_write`].
    pub fn pending_output(&self) -> PendingOutput<'_> {
        self.out.pending()
    }

    /// Moves what it wants sent, whole chunks from the front while fewer
    /// than `max` bytes and `max_chunks` chunks are in `into`, to a
    /// transport that keeps the bytes until the kernel is done with them
    /// (see [`crate::proto::TakenOutput`]): taken, as [`Connection::consumed`] says.
    /// Returns how many bytes moved.
    pub fn take_output(
        &mut self,
        max: usize,
        max_chunks: usize,
        into: &mut crate::proto::TakenOutput,
    ) -> usize {
        self.out.take_front(max, max_chunks, into)
    }

    /// The transport took the first `n` bytes of [`Connection::pending_output`].
    #[inline(always)]
    pub fn consumed(&mut self, n: usize) {
        self.out.consume(n);
    }

    /// The transport failed: the connection is finished (reported as 1006).
    pub fn write_failed(&mut self, error: &std::io::Error) {
        if matches!(self.phase, Phase::Finished) {
            return;
        }
        log::debug!("write failed: {error}");
        self.finish(CloseCode::ABNORMAL);
    }

    /// Ends a write. `extra` are the parts handed to the transport after the
    /// pending output (a large message from [`Connection::message_parts`],
    /// frames shared by many; at most three parts), of which
    /// it took `written`: the rest is queued (as one shared buffer for every
    /// member that must wait, if `shared` is given: see
    /// `OutQueue::push_rest`). A connection that did not
    /// write because it was behind (see [`Connection::wants_write`]) passes
    /// 0. Bytes left queued after a write mean the peer is behind, and the
    /// backlog cap applies to what it is sent next.
    ///
    /// Returns whether the transport's sending direction is to be shut now
    /// (the exchange is over and everything is out), once.
    pub fn end_write(
        &mut self,
        settings: &Settings,
        now: Instant,
        extra: &[&[u8]],
        written: usize,
        shared: Option<&mut Option<Rc<[u8]>>>,
    ) -> bool {
        if matches!(self.phase, Phase::Finished) {
            return false;
        }
        let was_behind = self.flag(BEHIND);
        self.out.push_rest(extra, written, shared);
        if !was_behind && !self.out.is_empty() {
            // Behind from now on: what waits is held as what it counts.
            self.set_flag(BEHIND, true);
            self.out.unpin();
        }
        self.check_backlog(settings, now, was_behind);
        if self.out.is_empty() && matches!(self.phase, Phase::Draining) && !self.flag(FIN_SENT) {
            self.set_flag(FIN_SENT, true);
            return true;
        }
        false
    }

    /// The transport can take bytes again: a write may follow.
    pub fn handle_writable(&mut self) {
        self.set_flag(BEHIND, false);
    }

    /// Queues bytes for the peer, under the backlog cap.
    pub(super) fn queue(&mut self, settings: &Settings, now: Instant, parts: &[&[u8]]) {
        let was_behind = self.flag(BEHIND);
        self.out.push_copy(parts);
        self.check_backlog(settings, now, was_behind);
    }

    /// Queues a frame, under the backlog cap. Inlined, as `frame` and
    /// `consumed` are: each was a call with its registers saved and
    /// restored on the path of every message (callgrind).
    #[inline(always)]
    pub(super) fn queue_frame(
        &mut self,
        settings: &Settings,
        now: Instant,
        header: &ServerHeader,
        payload: &[u8],
    ) {
        let was_behind = self.flag(BEHIND);
        self.out.push_frame(header, payload);
        self.check_backlog(settings, now, was_behind);
    }

    /// Queues a close frame: past the backlog limit all the same, as it is
    /// small and the last data this connection is sent.
    pub(super) fn queue_last(&mut self, frame: &[u8]) {
        self.out.push_copy(&[frame]);
    }

    /// The cap applies to a peer that is behind: one whose transport refused
    /// bytes still queued when this output came. A single message larger
    /// than the cap, sent to a peer that has kept up, is let through, so the
    /// largest message accepted can always be echoed; memory stays bounded by
    /// the cap plus one message.
    pub(super) fn check_backlog(&mut self, settings: &Settings, now: Instant, was_behind: bool) {
        if !was_behind {
            return;
        }
        if self.out.held() > settings.max_backlog {
            self.close_for_backlog(settings, now);
        }
    }

    /// Closes (1008) a peer that is behind with more than the backlog
    /// limit waiting for it, and owes the caller
    /// [`Notice::BacklogExceeded`]. Nothing if it cannot send.
    pub fn close_for_backlog(&mut self, settings: &Settings, now: Instant) {
        if !self.can_send() {
            return;
        }
        // Logged by whoever holds the connection, which can name it (see
        // `Notice::BacklogExceeded`).
        self.set_flag(BACKLOG_EXCEEDED, true);
        let _ = self.close(settings, now, CloseCode::POLICY, "backlog limit exceeded");
    }
}
