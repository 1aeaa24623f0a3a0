//! The server's limits and timers.

use std::time::Duration;

use super::driver::Io;
use crate::proto::rate::{Limits, Rate};

/// Limits, timers and options for a [`crate::Server`]. `Default` gives the
/// `rookery` command's defaults; a zero duration turns that timer off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The path WebSocket upgrades are accepted on (default `/chat`).
    pub path: String,
    /// A ping is sent to every open connection this often (default 5 s).
    pub ping_interval: Duration,
    /// An open connection silent this long is closed with 1001 (default 15 s).
    pub idle_timeout: Duration,
    /// A connection that has not finished its handshake this long after
    /// connecting is dropped (default 5 s).
    pub handshake_timeout: Duration,
    /// How long a closing connection may take to answer our close frame, and
    /// how long a graceful shutdown waits in all (default 5 s).
    pub close_timeout: Duration,
    /// The largest message accepted, in bytes (default 1 MiB).
    pub max_message: u64,
    /// The most bytes queued for a connection that is not keeping up before
    /// it is closed with 1008 (default 1 MiB). One message larger than this
    /// still goes to a peer that has read everything sent before it.
    pub max_backlog: usize,
    /// The most connections at once, handshakes included (default 1024).
    pub max_connections: usize,
    /// The most connections at once from one IP address, handshakes
    /// included (an IPv6 address counts whole); a further one is answered
    /// `503` (default 0: no limit).
    pub max_connections_per_ip: usize,
    /// The most messages a second an open connection may send, with a
    /// burst; past it the connection is closed with 1008 (default `None`:
    /// no limit).
    pub rate_limit: Option<Rate>,
    /// The most payload bytes a second an open connection may send,
    /// counting a compressed message at its inflated size, with a burst
    /// (which is also the largest message that can pass); past it the
    /// connection is closed with 1008 (default `None`: no limit).
    pub rate_limit_bytes: Option<Rate>,
    /// Origins allowed to upgrade; empty allows all (default empty).
    pub allowed_origins: Vec<String>,
    /// The most bytes that posts from other threads ([`crate::Poster`]) may
    /// hold waiting for the loop, payloads plus a small overhead per post
    /// (default 1 MiB).
    pub max_posted: usize,
    /// Take clients' permessage-deflate offers (RFC 7692; default off). Needs
    /// the cargo feature `deflate`: without it, [`crate::Server::bind`]
    /// refuses a config that asks for it. See docs/compression.md.
    pub deflate: bool,
    /// How the loop moves bytes: `Auto` (io_uring where it is built in and
    /// the kernel allows it, else epoll), `Epoll` or `Uring` (SPEC section
    /// 11). The default is `Auto`, or what the variable `ROOKERY_IO` names
    /// ([`Io::ENV`]): a test aid, so that one test run covers every server
    /// under one driver.
    pub io: Io,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            path: "/chat".to_string(),
            ping_interval: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(15),
            handshake_timeout: Duration::from_secs(5),
            close_timeout: Duration::from_secs(5),
            max_message: 1 << 20,
            max_backlog: 1 << 20,
            max_connections: 1024,
            max_connections_per_ip: 0,
            rate_limit: None,
            rate_limit_bytes: None,
            allowed_origins: Vec::new(),
            max_posted: 1 << 20,
            deflate: false,
            io: Io::from_env(),
        }
    }
}

impl Config {
    /// What each connection needs to know of this configuration.
    pub(crate) fn settings(&self) -> crate::proto::connection::Settings {
        crate::proto::connection::Settings {
            path: self.path.clone(),
            allowed_origins: self.allowed_origins.clone(),
            max_message: self.max_message,
            max_backlog: self.max_backlog,
            handshake_timeout: self.handshake_timeout,
            idle_timeout: self.idle_timeout,
            close_timeout: self.close_timeout,
            deflate: self.deflate,
            rate_limits: Limits {
                messages: self.rate_limit,
                bytes: self.rate_limit_bytes,
            },
        }
    }
}
