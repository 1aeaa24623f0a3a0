//! The echo service: every message goes back to its sender only. This is
//! what the conformance suite runs against (`rookery --mode echo`).

use crate::{ConnId, Context, Handler, Message};

/// Echoes each message to the connection it came from.
#[derive(Debug, Default)]
pub struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: Message<'_>) {
        log::trace!(
            "{conn}: echoing {} of {} bytes",
            if msg.is_text() { "text" } else { "binary" },
            msg.as_bytes().len()
        );
        // A connection that closed meanwhile simply gets nothing.
        let _ = ctx.send(conn, msg);
    }
}
