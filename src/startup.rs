//! How the `rookery` command gets its listening socket and its service
//! manager: the socket systemd passed (socket activation) or one bound to
//! `--listen`, and the handler wrapped so that `NOTIFY_SOCKET`, when set,
//! hears of readiness, reloads, the shutdown and the watchdog's pings
//! (`rookery::service`).

use std::io;
use std::net::TcpListener;

use rookery::service::{self, notify, Notified};
use rookery::Handler;

/// The socket systemd passed, or else a new one bound to `listen`; the
/// passed one is logged, since `--listen` is then not what is served.
pub(crate) fn listener(listen: &str) -> io::Result<TcpListener> {
    match service::listener_from_env() {
        Ok(Some((listener, passed))) => {
            let addr = listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "?".into());
            log::info!(
                "serving the socket passed by systemd (descriptor {}{}, {addr}) instead of --listen {listen}",
                passed.fd,
                passed
                    .name
                    .as_deref()
                    .map(|n| format!(" named {n}"))
                    .unwrap_or_default(),
            );
            Ok(listener)
        }
        Ok(None) => TcpListener::bind(listen)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {listen}: {e}"))),
        Err(e) => Err(io::Error::new(io::ErrorKind::InvalidInput, e.to_string())),
    }
}

/// `handler` wrapped for the service manager named in the environment (if
/// any: else the wrapper only passes calls on).
pub(crate) fn notified<H: Handler>(handler: H) -> io::Result<Notified<H>> {
    let notifier = service::Notifier::from_env()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let watchdog = notify::watchdog_from_env();
    if let (Some(period), Some(_)) = (watchdog, &notifier) {
        log::debug!("watchdog: a ping every {period:?}");
    }
    Ok(Notified::new(handler, notifier, watchdog))
}
