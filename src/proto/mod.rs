//! The sans-IO protocol core: bytes in, events out.
//!
//! Nothing in this module touches a socket or a clock. The poll loop in
//! [`crate::server`] moves bytes between sockets and these types; a test, a
//! fuzzer or another event loop can drive them just as well.
//!
//! - [`http`]: the incremental HTTP/1.1 request-head reader and response writer;
//! - [`handshake`]: RFC 6455 §4.2 validation of an upgrade request and the `101` reply;
//! - [`close`]: close codes and the rules for the close frame's payload;
//! - [`deflate`]: permessage-deflate (RFC 7692), the offer and the loop-wide codec;
//! - [`rate`]: token buckets over a client's messages and bytes;
//! - [`connection`]: the whole life of one connection on top of all of these,
//!   the state machine the server drives; it hands what it wants sent to
//!   the caller as data ([`PendingOutput`]) and is told what went.
//!
//! Inside, and not part of the API: `frame` (frame headers, unmasking),
//! `utf8` (validation across splits), `receiver` (frame decoder and message
//! assembler), `output` (a connection's queued bytes) and `block` (the
//! buffer broadcasts are encoded in, shared by range). The fuzz targets,
//! the benchmarks and the tests reach them with the hidden cargo feature
//! `internals`, which makes them public with no promise of stability.

// Three exceptions, measured and explained where they are: the connection
// trusts the receiver's UTF-8 validation (`connection::validated`), a
// reply is copied into the queue with one capacity check
// (`output::put_frame`), and a broadcast block's written bytes are read as
// a slice while it is filled further (`block::Block::get`).
#![deny(unsafe_code)]

pub mod close;
pub mod connection;
pub mod deflate;
pub mod handshake;
pub mod http;
pub mod rate;

/// Declares internal modules: crate-private, or public but hidden and
/// unstable with the feature `internals` (for fuzz/, benches/ and tests/).
/// Without the feature their `pub` items are reachable only from the crate,
/// and some exist only for those outside users.
macro_rules! internal {
    ($($name:ident),*) => {$(
        #[cfg(feature = "internals")]
        #[doc(hidden)]
        pub mod $name;
        #[cfg(not(feature = "internals"))]
        #[allow(unreachable_pub, dead_code)]
        pub(crate) mod $name;
    )*};
}
internal!(block, frame, output, receiver, utf8);

pub use frame::OpCode;
pub use output::{PendingOutput, TakenOutput};
