//! What the loop does with the bytes it read from a connection: one
//! `recv` into the loop-wide buffer ([`receive`]), the bytes fed to the
//! connection's state machine ([`feed`]), and each event that comes out
//! handed to the [`Handler`]: a message, a plain HTTP request answered, an
//! upgrade decided.

use std::io;

use super::core::Core;
use super::handler::{Context, Handler, Upgrade};
use super::slab::ConnId;
use crate::proto::connection::Event;
use crate::proto::http::{Request, Response};

/// One read from a connection's socket: `recv` through rustix (std's
/// `read` is libc's `recv` behind two wrappers of its own: ~26 instructions
/// a read against ~8, callgrind).
pub(super) fn receive(stream: &std::net::TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    rustix::net::recv(stream, buf, rustix::net::RecvFlags::empty())
        .map(|(n, _)| n)
        .map_err(io::Error::from)
}

/// Feeds `input` to connection `id` and hands each event to the handler.
pub(super) fn feed<H: Handler>(
    core: &mut Core,
    handler: &mut H,
    scratch: &mut Vec<u8>,
    id: ConnId,
    input: &mut [u8],
) {
    feed_read(core, handler, scratch, id, input);
}

/// [`feed`], inlined into the read loop ([`super::Server::read_from`]): the call
/// and its set-up were ~11 instructions of every read (callgrind); the
/// other callers (TLS, activation, the ring) share one copy.
#[inline(always)]
pub(super) fn feed_read<H: Handler>(
    core: &mut Core,
    handler: &mut H,
    scratch: &mut Vec<u8>,
    id: ConnId,
    input: &mut [u8],
) {
    let mut offset = 0;
    let end = input.len();
    while offset < end {
        let Some(slot) = core.slots.get_mut(id) else {
            return;
        };
        // The common case first, without the general path's event. It
        // leaves nothing to settle (an open connection heard from, its
        // idle deadline later, which its wheel entry finds when it fires),
        // so the connection is not touched for it: whatever the handler
        // then does to it touches it, if that needs settling.
        if let Some((used, message)) =
            slot.conn
                .read_message(&core.settings, core.now, &mut input[offset..])
        {
            // A read of one whole message (a client that waits for each
            // answer, a low rate): its reply is written at once
            // (`Core::send`). The replies to a read of several messages
            // are queued, and go out in one write when it settles.
            let alone = used == end && core.ring.is_none();
            offset += used;
            if alone {
                core.reply_now();
            }
            hand_message(core, handler, id, message);
            if alone {
                core.reply_later();
            }
            continue;
        }
        match feed_event(core, handler, scratch, id, &mut input[offset..]) {
            Some(used) => offset += used,
            None => return,
        }
    }
}

/// The general path of [`feed`], out of line: its frame and set-up (for
/// requests, upgrades, closes, fragments) were ~60 instructions of every
/// call when inlined, which a lone message does not need. One call of
/// [`Connection::handle_input`](crate::proto::connection::Connection::handle_input)
/// on the rest of the read, its event handed on; returns how many bytes it
/// took, or `None` when the connection takes nothing more now (an upgrade
/// decision is owed first, or it is gone).
#[inline(never)]
fn feed_event<H: Handler>(
    core: &mut Core,
    handler: &mut H,
    scratch: &mut Vec<u8>,
    id: ConnId,
    input: &mut [u8],
) -> Option<usize> {
    // Anything else may change what the connection wants: settled.
    core.touch(id);
    let slot = core.slots.get_mut(id)?;
    let (used, event) =
        slot.conn
            .handle_input(&core.settings, core.now, &mut core.codec, input, scratch);
    let Some(event) = event else {
        return (used != 0).then_some(used);
    };
    match event {
        Event::Text(text) => hand_message(core, handler, id, crate::Message::Text(text)),
        Event::Binary(data) => hand_message(core, handler, id, crate::Message::Binary(data)),
        Event::Closed { code, reason } => {
            core.stats.count_close(code);
            core.touch(id);
            handler.on_close(&mut Context { core }, id, code, reason);
        }
        Event::Request(request) => answer_request(core, handler, id, &request),
        Event::Upgrade(request) => answer_upgrade(core, handler, id, &request),
    }
    Some(used)
}

/// Counts a received message and gives it to the handler.
#[inline(always)]
fn hand_message<H: Handler>(
    core: &mut Core,
    handler: &mut H,
    id: ConnId,
    message: crate::Message<'_>,
) {
    core.stats.messages_received += 1;
    handler.on_message(&mut Context { core }, id, message);
}

/// Answers a plain HTTP request (the handler's answer, or `503` while
/// shutting down).
fn answer_request<H: Handler>(core: &mut Core, handler: &mut H, id: ConnId, request: &Request) {
    let response = if core.stopping {
        Response::status(503)
    } else {
        handler.on_http_with_context(&mut Context { core: &mut *core }, request)
    };
    if let Some(slot) = core.slots.get_mut(id) {
        let _ = slot.conn.respond(&core.settings, core.now, &response);
    }
}

/// Lets the handler decide on a valid upgrade request, and opens the
/// connection if it accepts.
fn answer_upgrade<H: Handler>(core: &mut Core, handler: &mut H, id: ConnId, request: &Request) {
    let decision = if core.stopping {
        Upgrade::reject(503)
    } else {
        handler.on_upgrade(&mut Context { core: &mut *core }, id, request)
    };
    let Some(slot) = core.slots.get_mut(id) else {
        return;
    };
    match decision {
        Upgrade::Reject(response) => {
            let _ = slot.conn.reject(&core.settings, core.now, &response);
        }
        Upgrade::Accept { protocol, delayed } => {
            let accepted = slot.conn.accept(
                &core.settings,
                core.now,
                request,
                protocol.as_deref(),
                delayed,
            );
            core.touch(id);
            if accepted.is_ok() && !delayed {
                handler.on_open(&mut Context { core }, id);
            }
        }
    }
}
