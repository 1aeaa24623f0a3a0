//! [`Notified`]: a handler wrapper that tells the service manager what the
//! loop does, from the loop itself: `READY=1` when started, `RELOADING=1`
//! … `READY=1` around a reload, `STOPPING=1` when the shutdown begins, and
//! `WATCHDOG=1` from a server timer, so that a loop that is stuck (blocked
//! in a handler, stopped, spinning elsewhere) stops the pings and the
//! manager restarts it.

use std::time::Duration;

use super::Notifier;
use crate::proto::http::{Request, Response};
use crate::{CloseCode, ConnId, Context, Handler, Message, Upgrade};

/// The timer token [`Notified`] keeps for its watchdog: a timer of the
/// inner handler with this token would be taken for the watchdog's.
pub const WATCHDOG_TOKEN: u64 = u64::MAX;

/// `inner`, with the service manager told about the loop (see the module
/// documentation). Every [`Handler`] method is passed on to `inner`.
#[derive(Debug)]
pub struct Notified<H> {
    inner: H,
    /// `None`: no manager to tell; every method is only passed on.
    notifier: Option<Notifier>,
    watchdog: Option<Duration>,
}

impl<H: Handler> Notified<H> {
    /// Wraps `inner`; with `watchdog`, pings at that period once started.
    /// Without a notifier (no `NOTIFY_SOCKET`) nothing is sent and no timer
    /// is set: one handler type either way, so a program is not built twice.
    pub fn new(inner: H, notifier: Option<Notifier>, watchdog: Option<Duration>) -> Notified<H> {
        let watchdog = watchdog.filter(|_| notifier.is_some());
        Notified {
            inner,
            notifier,
            watchdog,
        }
    }

    /// The wrapped handler.
    pub fn inner(&self) -> &H {
        &self.inner
    }

    fn arm(&self, ctx: &mut Context<'_>) {
        if let Some(period) = self.watchdog {
            ctx.set_timer(period, WATCHDOG_TOKEN);
        }
    }
}

impl<H: Handler> Handler for Notified<H> {
    /// Sends `READY=1` and arms the watchdog's first ping: the server
    /// listens already, and calls this before its first pass, so readiness
    /// comes before the first connection is accepted.
    fn on_start(&mut self, ctx: &mut Context<'_>) {
        if let Some(n) = &self.notifier {
            n.ready();
        }
        self.arm(ctx);
        self.inner.on_start(ctx);
    }

    fn on_upgrade(&mut self, ctx: &mut Context<'_>, conn: ConnId, req: &Request) -> Upgrade {
        self.inner.on_upgrade(ctx, conn, req)
    }

    fn on_http(&mut self, req: &Request) -> Response {
        self.inner.on_http(req)
    }

    fn on_http_with_context(&mut self, ctx: &mut Context<'_>, req: &Request) -> Response {
        self.inner.on_http_with_context(ctx, req)
    }

    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        self.inner.on_open(ctx, conn);
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: Message<'_>) {
        self.inner.on_message(ctx, conn, msg);
    }

    fn on_close(&mut self, ctx: &mut Context<'_>, conn: ConnId, code: CloseCode, reason: &str) {
        self.inner.on_close(ctx, conn, code, reason);
    }

    #[cfg(feature = "redis")]
    fn on_cluster(&mut self, ctx: &mut Context<'_>, event: crate::server::ClusterEvent) {
        self.inner.on_cluster(ctx, event);
    }

    fn on_timer(&mut self, ctx: &mut Context<'_>, token: u64) {
        if let (WATCHDOG_TOKEN, Some(_), Some(n)) = (token, self.watchdog, &self.notifier) {
            n.watchdog();
            self.arm(ctx);
        } else {
            self.inner.on_timer(ctx, token);
        }
    }

    fn on_reload(&mut self, ctx: &mut Context<'_>) {
        // The server's own part (TLS) is done; the handler's happens
        // between the two, in this same pass.
        if let Some(n) = &self.notifier {
            n.reloading();
        }
        self.inner.on_reload(ctx);
        if let Some(n) = &self.notifier {
            n.ready();
        }
    }

    fn on_shutdown(&mut self, ctx: &mut Context<'_>) {
        if let Some(n) = &self.notifier {
            n.stopping();
        }
        self.inner.on_shutdown(ctx);
    }
}

#[cfg(test)]
mod tests {
    /// The `fn NAME(` of the trait or impl that starts at `start` in `src`.
    fn methods(src: &str, start: &str) -> Vec<String> {
        let body = &src[src.find(start).expect("start")..];
        let body = &body[..body.find("\n}\n").expect("end")];
        let mut names: Vec<String> = body
            .lines()
            .filter_map(|l| l.strip_prefix("    fn "))
            .filter_map(|l| l.split('(').next())
            .map(String::from)
            .collect();
        names.sort();
        names
    }

    #[test]
    fn every_handler_method_is_passed_on() {
        // A method added to Handler later would otherwise take its default
        // here and never reach the wrapped handler.
        let trait_methods = methods(include_str!("../server/handler.rs"), "pub trait Handler {");
        let wrapper = methods(
            include_str!("watchdog.rs"),
            "impl<H: Handler> Handler for Notified<H> {",
        );
        assert!(trait_methods.len() >= 10, "{trait_methods:?}");
        assert_eq!(wrapper, trait_methods);
    }
}
