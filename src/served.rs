//! The handler the `rookery` command serves: the chat or the echo service,
//! as one type.
//!
//! One type, so that the server (`Server::run`, its feed and settle
//! passes, the request and upgrade answers) is compiled once into the
//! binary instead of once per service: about 15 KB less on a board. The
//! match per callback costs a compare against a loop pass of a syscall.

use rookery::chat::Chat;
use rookery::echo::Echo;
use rookery::{CloseCode, ConnId, Context, Handler, Message, Request, Response, Upgrade};

/// The service `--mode` chose.
pub(crate) enum Service {
    Chat(Box<Chat>),
    Echo(Echo),
}

/// Runs `$call` on the chosen service's handler, named `$h`.
macro_rules! each {
    ($service:expr, $h:ident => $call:expr) => {
        match $service {
            Service::Chat($h) => $call,
            Service::Echo($h) => $call,
        }
    };
}

impl Handler for Service {
    fn on_start(&mut self, ctx: &mut Context<'_>) {
        each!(self, h => h.on_start(ctx))
    }

    fn on_upgrade(&mut self, ctx: &mut Context<'_>, conn: ConnId, req: &Request) -> Upgrade {
        each!(self, h => h.on_upgrade(ctx, conn, req))
    }

    fn on_http(&mut self, req: &Request) -> Response {
        each!(self, h => h.on_http(req))
    }

    fn on_http_with_context(&mut self, ctx: &mut Context<'_>, req: &Request) -> Response {
        each!(self, h => h.on_http_with_context(ctx, req))
    }

    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        each!(self, h => h.on_open(ctx, conn))
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: Message<'_>) {
        each!(self, h => h.on_message(ctx, conn, msg))
    }

    fn on_close(&mut self, ctx: &mut Context<'_>, conn: ConnId, code: CloseCode, reason: &str) {
        each!(self, h => h.on_close(ctx, conn, code, reason))
    }

    #[cfg(feature = "redis")]
    fn on_cluster(&mut self, ctx: &mut Context<'_>, event: rookery::server::ClusterEvent) {
        each!(self, h => h.on_cluster(ctx, event))
    }

    fn on_timer(&mut self, ctx: &mut Context<'_>, token: u64) {
        each!(self, h => h.on_timer(ctx, token))
    }

    fn on_reload(&mut self, ctx: &mut Context<'_>) {
        each!(self, h => h.on_reload(ctx))
    }

    fn on_shutdown(&mut self, ctx: &mut Context<'_>) {
        each!(self, h => h.on_shutdown(ctx))
    }
}
