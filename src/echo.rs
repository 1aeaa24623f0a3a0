//! The echo service: every message goes back to its sender only. This is
//! what the conformance suite runs against (`rookery --mode echo`). Opens
//! and closes are logged at info, as the chat logs them.

use crate::{CloseCode, ConnId, Context, Handler, Message};

/// Echoes each message to the connection it came from.
#[derive(Debug, Default)]
pub struct Echo;

impl Handler for Echo {
    /// Logged at info, as the chat logs it.
    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        match ctx.peer_addr(conn) {
            Some(addr) => log::info!("Opened connection to {conn} ({addr})"),
            None => log::info!("Opened connection to {conn}"),
        }
    }

    fn on_close(&mut self, _ctx: &mut Context<'_>, conn: ConnId, code: CloseCode, _reason: &str) {
        log::info!("Closed connection to {conn} (code {})", code.get());
    }

    // Into the server's read loop: a call per message would be a tenth of
    // an echo's instructions at a low rate.
    #[inline(always)]
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: Message<'_>) {
        if log::log_enabled!(log::Level::Trace) {
            trace_echo(conn, &msg);
        }
        // A connection that closed meanwhile simply gets nothing.
        let _ = ctx.send(conn, msg);
    }
}

/// The trace line of an echo, out of line: the message path stays small
/// enough for the server's read loop to take it in.
#[cold]
#[inline(never)]
fn trace_echo(conn: ConnId, msg: &Message<'_>) {
    log::trace!(
        "{conn}: echoing {} of {} bytes",
        if msg.is_text() { "text" } else { "binary" },
        msg.as_bytes().len()
    );
}
