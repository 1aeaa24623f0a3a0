//! One socket to Redis ([`Link`]): its non-blocking connect, its buffers,
//! the replies it owes, writing what it queued and decoding what it read,
//! and why it was given up ([`LinkError`]).

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::resp::{self, Decoder, Reply};
use crate::log_text::escape_for_log;
use crate::server::poller::{Event, PollMode, Poller};

/// What a sent command's reply is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expect {
    Auth,
    Select,
    Subscribe,
    Publish,
    Ping,
    /// A read of a topic's log ([`super::numbering`]).
    Read,
}

/// One socket to Redis with its buffers.
pub(super) struct Link {
    pub(super) key: usize,
    pub(super) stream: TcpStream,
    pub(super) out: Vec<u8>,
    pub(super) input: Vec<u8>,
    pub(super) expect: VecDeque<Expect>,
    /// Set once its handshake replies are all in.
    pub(super) ready: bool,
    /// Whether WRITE interest is registered.
    pub(super) writing: bool,
    /// Bytes of an oversized bulk string still to discard as they come.
    pub(super) skip: usize,
    /// Bytes of input held when an unfinished reply was last looked at.
    pub(super) looked: usize,
    /// When it last read anything (or was opened).
    pub(super) heard: Instant,
}

/// Why a connection to Redis was given up.
#[derive(Debug)]
pub(super) enum LinkError {
    Io(io::Error),
    Closed,
    Protocol(resp::RespError),
    Refused(String),
    Unexpected,
    Timeout,
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkError::Io(e) => write!(f, "{e}"),
            LinkError::Closed => f.write_str("connection closed by Redis"),
            LinkError::Protocol(e) => write!(f, "not RESP: {e}"),
            LinkError::Refused(e) => write!(f, "Redis answered: {}", escape_for_log(e)),
            LinkError::Unexpected => f.write_str("unexpected reply"),
            LinkError::Timeout => f.write_str("no answer in time"),
        }
    }
}

/// Decodes the replies complete in `link`'s input into `replies`, leaving
/// the start of an unfinished one; the bytes of an oversized bulk string
/// are discarded, those not read yet as they come (`Link::skip`).
pub(super) fn decode_into(
    decoder: &Decoder,
    link: &mut Link,
    replies: &mut Vec<Reply>,
) -> Result<(), LinkError> {
    let mut used = 0;
    while let Some(got) = decoder
        .decode(&link.input[used..])
        .map_err(LinkError::Protocol)?
    {
        used += got.used;
        let here = got.skip.min(link.input.len() - used);
        used += here;
        link.skip = got.skip - here;
        replies.push(got.reply);
    }
    link.input.drain(..used);
    Ok(())
}

/// Writes what `link` has queued, as far as the socket takes it.
pub(super) fn flush(link: &mut Link) -> Result<(), LinkError> {
    let mut written = 0;
    while written < link.out.len() {
        match link.stream.write(&link.out[written..]) {
            Ok(0) => return Err(LinkError::Closed),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(LinkError::Io(e)),
        }
    }
    link.out.drain(..written);
    Ok(())
}

/// Bytes in `stream`'s send queue that the peer has not acknowledged
/// (`SIOCOUTQ`; 0 where the call fails). rustix has no safe call for it.
#[allow(unsafe_code)]
pub(super) fn unacknowledged(stream: &TcpStream) -> usize {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (= TIOCOUTQ) on a TCP socket we own writes one int
    // through the pointer given, to `n`, which outlives the call.
    let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    if rc == 0 {
        usize::try_from(n).unwrap_or(0)
    } else {
        0
    }
}

/// Makes closing `stream` send a reset and discard its unsent bytes
/// (`SO_LINGER` 0), so that what [`unacknowledged`] counted never reaches
/// Redis after the connection is given up.
pub(super) fn reset_on_close(stream: &TcpStream) {
    let _ = rustix::net::sockopt::set_socket_linger(stream, Some(Duration::ZERO));
}

/// A non-blocking TCP connect (the loop never waits for it), registered
/// for readiness under `key`.
pub(super) fn open(poller: &Poller, addr: SocketAddr, key: usize) -> io::Result<TcpStream> {
    use rustix::net::{socket_with, AddressFamily, SocketFlags, SocketType};
    let family = if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let fd = socket_with(
        family,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    match rustix::net::connect(&fd, &addr) {
        Ok(()) | Err(rustix::io::Errno::INPROGRESS) => {}
        Err(e) => return Err(e.into()),
    }
    let stream = TcpStream::from(fd);
    let _ = stream.set_nodelay(true);
    // Deleted from the poller before it is dropped (`Bridge::fail`, and the
    // bridge is dropped with the server's poller).
    poller.add_with_mode(&stream, Event::all(key), PollMode::Level)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redis_error_is_shown_with_format_characters_escaped() {
        let e = LinkError::Refused("ERR \u{202e}txt.exe\n[fake]".into()).to_string();
        assert_eq!(e, "Redis answered: ERR \\u{202e}txt.exe\\n[fake]");
    }
}
