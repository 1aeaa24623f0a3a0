//! The sans-IO protocol core: bytes in, events out.
//!
//! Nothing in this module touches a socket or a clock. The poll loop in
//! [`crate::server`] moves bytes between sockets and these types; a test, a
//! fuzzer or another event loop can drive them just as well.
//!
//! - [`http`]: the incremental HTTP/1.1 request-head reader and response writer;
//! - [`handshake`]: RFC 6455 §4.2 validation of an upgrade request and the `101` reply;
//! - [`frame`]: frame header encoding and word-at-a-time unmasking;
//! - [`utf8`]: a UTF-8 validator that accepts input in arbitrary pieces;
//! - [`close`]: close codes and the rules for the close frame's payload;
//! - [`receiver`]: the frame decoder and message assembler that turns masked
//!   client bytes into validated messages and control frames;
//! - [`output`]: a connection's queued bytes and the one way they leave, into
//!   a [`output::Sink`];
//! - [`deflate`]: permessage-deflate (RFC 7692), the offer and the loop-wide codec;
//! - [`rate`]: token buckets over a client's messages and bytes;
//! - [`connection`]: the whole life of one connection on top of all of these,
//!   the state machine the server drives.

// Two exceptions, measured and explained where they are: the connection
// trusts the receiver's UTF-8 validation (`connection::validated`), and a
// reply is copied into the queue with one capacity check
// (`output::put_frame`).
#![deny(unsafe_code)]

pub mod close;
pub mod connection;
pub mod deflate;
pub mod frame;
pub mod handshake;
pub mod http;
pub mod output;
pub mod rate;
pub mod receiver;
pub mod utf8;
