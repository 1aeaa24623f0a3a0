//! rookery: a single-threaded WebSocket (RFC 6455) server for small
//! embedded Linux boards.
//!
//! Two layers, in the manner of `rustls` and `quinn-proto`:
//!
//! - [`proto`], the sans-IO core: the HTTP request-head parser, the
//!   handshake, the frame codec and the message assembler. Bytes in, events
//!   out; no sockets, no clock.
//! - [`server`], the poll loop: one thread owns every connection in a slab
//!   and every timer in a hashed wheel, moves bytes between the sockets and
//!   the core, and calls your [`Handler`].
//!
//! ```no_run
//! use rookery::{Config, ConnId, Context, Handler, Message, Server};
//!
//! /// Sends every message back to its sender.
//! struct Echo;
//!
//! impl Handler for Echo {
//!     fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: Message<'_>) {
//!         let _ = ctx.send(conn, msg);
//!     }
//! }
//!
//! let config = Config { path: "/echo".into(), ..Config::default() };
//! let mut server = Server::bind("127.0.0.1:0", config, Echo)?;
//! println!("listening on {}", server.local_addr());
//! server.run()?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Clients of this example connect to `ws://127.0.0.1:PORT/echo`: upgrades
//! are accepted on [`Config::path`] only (`/chat` by default), and other
//! paths get what [`Handler::on_http`] answers (`404` by default).
//!
//! # Logging
//!
//! The library logs through the [`log`](https://docs.rs/log) facade (the
//! server's warnings, such as a failed accept or a client cut off for
//! falling behind; connection events at debug level) and prints nothing by
//! itself: install a logger in your program to see them. With
//! `env_logger` as a dependency, one line at the start of `main` does it:
//!
//! ```no_run
//! env_logger::init(); // then RUST_LOG=debug shows each connection's events
//! ```
//!
//! # Stopping
//!
//! [`Server::stop_handle`] gives a [`StopHandle`] that stops the server
//! gracefully from another thread or a signal handler;
//! [`stop_on_signals`] installs SIGINT and SIGTERM handlers that use it,
//! as the `rookery` command does.

// On docs.rs (`--cfg docsrs`, see `[package.metadata.docs.rs]`), items
// behind a cargo feature are labelled with it.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_op_in_unsafe_fn)]
// Unsafe code only where it is needed: each place says why with `allow`.
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![warn(unreachable_pub)]

// The loop is built on Linux's epoll, timerfd and eventfd (and io_uring),
// the service face on systemd's protocols: the boards it is for run Linux.
#[cfg(not(target_os = "linux"))]
compile_error!("rookery runs on Linux only");

pub mod chat;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod cluster;
pub mod echo;
// The C API's Rust side, for capi/ and tests/ffi.rs only: C programs use
// include/rookery.h and librookery.a, so it stays out of the documentation.
#[cfg(feature = "ffi")]
#[doc(hidden)]
#[allow(unsafe_code)] // the C boundary: raw pointers from C, each use says why.
pub mod ffi;
mod log_text;
pub mod proto;
pub mod server;
pub mod service;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub mod tls;

pub use proto::close::CloseCode;
pub use proto::connection::{Message, SendError, SharedFrame};
pub use proto::http::{Request, Response};
pub use proto::rate::Rate;
pub use server::{reload_on_sighup, stop_on_signals};
pub use server::{
    Config, ConnId, Context, Handler, Io, ReloadHandle, Server, Stats, StopHandle, TimerId, Upgrade,
};
pub use server::{PostError, Poster};
