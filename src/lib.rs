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

#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod chat;
pub mod cli;
pub mod echo;
pub mod ffi;
pub mod proto;
pub mod server;
#[cfg(feature = "tls")]
pub mod tls;

pub use server::{
    Config, ConnId, Context, Handler, Message, SendError, Server, SharedFrame, StopHandle, TimerId,
    Upgrade,
};
