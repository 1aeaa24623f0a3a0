//! Which driver moves the loop's bytes, and choosing it at start.
//!
//! Two drivers sit under the same core (SPEC section 11): `epoll`
//! (`super::poller`: readiness, then `read`/`sendmsg` from the loop) and, with
//! the cargo feature `uring` on Linux, `uring` ([`uring`]: completions of
//! multishot accept, multishot receive into a shared buffer ring, one send
//! per connection at a time from its queue's own memory, all submitted with
//! the pass's one wait). The
//! core holds the ring as `Option<Box<Ring>>`: `None` is epoll. Without the
//! feature `Ring` is an empty enum, so no code of the uring path is built
//! and the `Option` is always `None`.
//!
//! Choosing ([`open`]): `--io auto` takes uring when it is built in and the
//! kernel sets up a ring with every operation the driver needs, else epoll,
//! saying why at info; `--io uring` where that fails is an error with the
//! kernel's reason.

use std::fmt;
use std::str::FromStr;

#[cfg(rookery_uring)]
#[allow(unsafe_code)] // the ring's queues and its buffer ring: each use says why.
pub(crate) mod uring;

#[cfg(rookery_uring)]
mod sends;

#[cfg(rookery_uring)]
pub(crate) use self::uring::{accepted_fd, is_for, Done, Ring};

/// Where the core keeps the ring: `Option<Box<Ring>>` with the feature;
/// without it [`NoRing`], which is always empty in a way the compiler sees,
/// so that the uring paths of the core compile away from the default build.
#[cfg(rookery_uring)]
pub(crate) type RingSlot = Option<Box<Ring>>;
#[cfg(not(rookery_uring))]
pub(crate) type RingSlot = NoRing;

#[cfg(rookery_uring)]
fn slot_of(ring: Ring) -> RingSlot {
    Some(Box::new(ring))
}

#[cfg(not(rookery_uring))]
fn slot_of(ring: Ring) -> RingSlot {
    match ring {}
}

/// The ring's place in a build without it: the `Option` methods the core
/// calls, each answering "no ring" as a constant.
#[cfg(not(rookery_uring))]
#[derive(Debug, Default)]
pub(crate) struct NoRing;

#[cfg(not(rookery_uring))]
impl NoRing {
    #[inline(always)]
    pub(crate) fn as_deref_mut(&mut self) -> Option<&mut Ring> {
        None
    }
    #[inline(always)]
    pub(crate) fn as_deref(&self) -> Option<&Ring> {
        None
    }
    #[inline(always)]
    pub(crate) fn is_some(&self) -> bool {
        false
    }
    #[inline(always)]
    pub(crate) fn is_none(&self) -> bool {
        true
    }
}

/// The most bytes of a connection's output taken into one send on the
/// ring (moved out of its queue, or copied: either way the ring keeps the
/// memory the kernel reads until the send's completion, whatever the
/// connection does meanwhile). As much as a loopback socket takes at once:
/// epoll's writes empty a queue (or a paced replay) into the socket within
/// one pass, and one send a pass must keep up with that. The bytes leave
/// the connection's queue, so a connection holds no more than it would with
/// epoll.
pub(crate) const SEND_MAX: usize = 1024 * 1024;

/// The most connections whose output waits for the pass's sends: beyond
/// it their sends start in the middle of the pass (a submission queue's
/// worth).
pub(crate) const SEND_BATCH: usize = 256;

/// A connection's output of at most this many bytes is copied into a
/// reused send buffer; more moves to the ring as it is (its queue's chunks).
pub(crate) const SEND_COPY: usize = 4 * 1024;

/// The most slices one send on the ring hands the kernel (its iovecs). One
/// where the C library's `msghdr` cannot be built field by field (musl's has
/// private padding): a send of one slice needs none.
pub(crate) const SEND_SLICES: usize = if cfg!(target_env = "musl") { 1 } else { 64 };

/// Send buffers up to this capacity are kept for reuse (at most
/// `uring::SPARE_SENDS` of them, or `uring::SPARE_SMALL` of up to
/// [`SEND_COPY`]); larger ones are freed after their send.
#[cfg_attr(not(rookery_uring), allow(dead_code))]
pub(crate) const SEND_KEEP: usize = 64 * 1024;

/// How the loop moves bytes (`--io`, [`crate::Config::io`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Io {
    /// io_uring when it is built in (feature `uring`) and the kernel allows
    /// it, else epoll.
    #[default]
    Auto,
    /// Readiness through epoll.
    Epoll,
    /// Linux io_uring (feature `uring`); the server does not start where the
    /// kernel refuses it.
    ///
    /// When a server on the ring is dropped, the kernel's teardown of the
    /// ring runs work once on each thread that drove it: a blocking system
    /// call of such a thread with a timeout (a socket read with
    /// `set_read_timeout`) may fail at that moment with
    /// [`std::io::ErrorKind::Interrupted`], to be retried, as `read_exact`
    /// and `write_all` do.
    Uring,
}

impl Io {
    /// The variable the tests read to run every server they start under one
    /// driver (`ROOKERY_IO=uring cargo test --features uring`): the default
    /// of [`crate::Config::io`]. A test aid; `--io` and `Config::io` set it
    /// explicitly.
    pub const ENV: &'static str = "ROOKERY_IO";

    /// `ROOKERY_IO` parsed, or `Auto` when it is unset or not a driver's
    /// name.
    pub fn from_env() -> Io {
        std::env::var(Io::ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_default()
    }

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Io::Auto => "auto",
            Io::Epoll => "epoll",
            Io::Uring => "uring",
        }
    }
}

impl fmt::Display for Io {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Io {
    type Err = String;
    fn from_str(s: &str) -> Result<Io, String> {
        match s {
            "auto" => Ok(Io::Auto),
            "epoll" => Ok(Io::Epoll),
            "uring" => Ok(Io::Uring),
            _ => Err(format!("'{s}' is not auto, epoll or uring")),
        }
    }
}

/// Why io_uring cannot drive the loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The build has no `uring` feature (or this is not Linux).
    #[cfg_attr(rookery_uring, allow(dead_code))]
    NotBuilt,
    /// The kernel refused to set up a ring (`io_uring_setup`'s error, with
    /// `kernel.io_uring_disabled` when that is why).
    Setup(String),
    /// The ring lacks an operation or feature the driver needs.
    Missing(&'static str),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotBuilt => f.write_str("rookery was built without the feature `uring`"),
            Refusal::Setup(why) => write!(f, "io_uring_setup: {why}"),
            Refusal::Missing(what) => write!(f, "the kernel's io_uring lacks {what}"),
        }
    }
}

/// The ring for `choice`, or `None` for epoll. `Io::Auto` falls back to
/// epoll when io_uring is refused, logging why at info; `Io::Uring` returns
/// the refusal as an error (`Unsupported`, the message naming the kernel's
/// reason).
pub(crate) fn open(choice: Io, listener: &std::net::TcpListener) -> std::io::Result<RingSlot> {
    if choice == Io::Epoll {
        log::info!("io driver: epoll (--io epoll)");
        return Ok(RingSlot::default());
    }
    match Ring::open(listener) {
        Ok(ring) => {
            log::info!("io driver: uring ({})", ring.describe());
            Ok(slot_of(ring))
        }
        Err(why) if choice == Io::Auto => {
            log::info!("io driver: epoll (io_uring not used: {why})");
            Ok(RingSlot::default())
        }
        Err(why) => Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            format!("--io uring: {why}"),
        )),
    }
}

/// A refusal injected by a test, through the hidden feature `internals`:
/// `ROOKERY_URING_REFUSE=setup` makes setting up the ring fail as a kernel
/// without io_uring does, `=op` as one that lacks multishot receive.
#[cfg_attr(not(rookery_uring), allow(dead_code))]
pub(crate) fn injected_refusal() -> Option<Refusal> {
    if !cfg!(feature = "internals") {
        return None;
    }
    match std::env::var("ROOKERY_URING_REFUSE").ok()?.as_str() {
        "setup" => Some(Refusal::Setup(
            "Function not implemented (os error 38) (injected)".into(),
        )),
        "op" => Some(Refusal::Missing("multishot receive (injected)")),
        _ => None,
    }
}

/// The ring of a build without io_uring: no value exists, so the core's
/// `Option<Box<Ring>>` is always `None` and the uring paths compile away.
#[cfg(not(rookery_uring))]
pub(crate) enum Ring {}

#[cfg(not(rookery_uring))]
impl Ring {
    fn open(_listener: &std::net::TcpListener) -> Result<Ring, Refusal> {
        Err(Refusal::NotBuilt)
    }

    fn describe(&self) -> String {
        match *self {}
    }
}

#[cfg(not(rookery_uring))]
mod absent {
    //! What the core names of the uring driver, in a build without it:
    //! never reached, since no `Ring` exists.
    #![allow(clippy::unused_self, dead_code)]

    use super::Ring;
    use crate::server::slab::ConnId;
    use std::os::fd::{OwnedFd, RawFd};

    /// A completion (none is ever made).
    #[derive(Clone, Copy)]
    pub(crate) enum Done {}

    pub(crate) fn accepted_fd(_res: i32) -> Option<OwnedFd> {
        None
    }

    pub(crate) fn is_for(_id: ConnId, _generation: u32) -> bool {
        false
    }

    impl std::os::fd::AsRawFd for Ring {
        fn as_raw_fd(&self) -> RawFd {
            match *self {}
        }
    }

    impl std::os::fd::AsFd for Ring {
        fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
            match *self {}
        }
    }

    impl Ring {
        pub(crate) fn watch(&mut self, _epoll: RawFd) {
            match *self {}
        }
        pub(crate) fn set_accepting(&mut self, _on: bool) {
            match *self {}
        }
        pub(crate) fn accept_ended(&mut self) {
            match *self {}
        }
        pub(crate) fn recv(&mut self, _fd: RawFd, _id: ConnId) {
            match *self {}
        }
        pub(crate) fn cancel_recv(&mut self, _id: ConnId) {
            match *self {}
        }
        pub(crate) fn resume(&mut self, _id: ConnId) {
            match *self {}
        }
        pub(crate) fn forget(&mut self, _id: ConnId, _receiving: bool) {
            match *self {}
        }
        pub(crate) fn send_done(&mut self, _index: usize, _generation: u32) {
            match *self {}
        }
        pub(crate) fn send_now(&mut self, _id: ConnId) -> Option<i32> {
            match *self {}
        }
        pub(crate) fn send_finished(&mut self, _id: ConnId) {
            match *self {}
        }
        pub(crate) fn submit(&mut self) {
            match *self {}
        }
        pub(crate) fn wait(
            &mut self,
            _timeout: Option<std::time::Duration>,
        ) -> std::io::Result<()> {
            match *self {}
        }
        pub(crate) fn take_completions(&mut self) -> (Vec<ConnId>, Vec<Done>, bool) {
            match *self {}
        }
        pub(crate) fn take_held(&mut self, _id: ConnId) -> Option<Vec<u8>> {
            match *self {}
        }
        pub(crate) fn hold(&mut self, _id: ConnId, _bytes: &[u8]) {
            match *self {}
        }
        pub(crate) fn set_repoll(&mut self, _again: bool) {
            match *self {}
        }
        pub(crate) fn keep_done(&mut self, _done: Vec<Done>) {
            match *self {}
        }
        pub(crate) fn stuck_sends(&mut self) -> &[ConnId] {
            match *self {}
        }
        pub(crate) fn send_len(&self, _id: ConnId) -> Option<usize> {
            match *self {}
        }
        pub(crate) fn send_rest(&mut self, _fd: RawFd, _id: ConnId, _n: usize) {
            match *self {}
        }
        pub(crate) fn send_buffer(&mut self) -> Vec<u8> {
            match *self {}
        }
        pub(crate) fn output(&mut self) -> crate::proto::TakenOutput {
            match *self {}
        }
        pub(crate) fn recycle_output(&mut self, _out: crate::proto::TakenOutput) {
            match *self {}
        }
        pub(crate) fn recycle(&mut self, _buf: Vec<u8>) {
            match *self {}
        }
        pub(crate) fn send(&mut self, _fd: RawFd, _id: ConnId, _out: crate::proto::TakenOutput) {
            match *self {}
        }
    }
}

#[cfg(not(rookery_uring))]
pub(crate) use self::absent::{accepted_fd, is_for, Done};
