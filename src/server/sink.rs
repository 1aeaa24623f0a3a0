//! The socket as a [`Sink`]: the one place bytes meet the kernel on the way
//! out.

use std::io::{self, IoSlice};
use std::net::{Shutdown, TcpStream};

use crate::proto::output::Sink;

impl Sink for TcpStream {
    /// `send` (one buffer) or `sendmsg` with `MSG_NOSIGNAL`: a peer that reset its connection must
    /// give us `EPIPE`, not a `SIGPIPE` that kills a C host program which,
    /// unlike Rust's runtime, does not ignore that signal.
    fn send_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        use rustix::net::{send, sendmsg, SendAncillaryBuffer, SendFlags};
        let sent = if let [one] = slices {
            // One buffer (the usual echo batch): `send`, which spares the
            // kernel copying in a `msghdr` and an iovec array.
            send(&*self, one, SendFlags::NOSIGNAL)
        } else {
            sendmsg(
                &*self,
                slices,
                &mut SendAncillaryBuffer::default(),
                SendFlags::NOSIGNAL,
            )
        };
        sent.map_err(io::Error::from)
    }

    fn shutdown_write(&mut self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}

/// Where a slot's connection writes: its socket, through its TLS session if
/// it has one. The connection sees one [`Sink`] either way.
pub(crate) struct SlotSink<'a> {
    pub(crate) stream: &'a mut TcpStream,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<&'a mut crate::tls::TlsSession>,
}

impl Sink for SlotSink<'_> {
    fn send_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_deref_mut() {
            return tls_send(tls, self.stream, slices);
        }
        self.stream.send_vectored(slices)
    }

    fn shutdown_write(&mut self) {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_deref_mut() {
            // The clean end of the session first; what the socket refuses
            // of it is lost with the half-close, as an unread close frame is.
            tls.close();
            let _ = flush_tls(tls, self.stream);
        }
        self.stream.shutdown_write();
    }
}

/// The most plaintext taken into a TLS session per write: what the socket
/// refuses of its ciphertext waits in the session, so this bounds it.
#[cfg(feature = "tls")]
const TLS_WRITE_MAX: usize = 64 * 1024;

/// Encrypts what the connection hands over and writes the ciphertext. A
/// session still holding ciphertext the socket refused takes nothing more
/// (`WouldBlock`), so that plaintext waits in the connection's queue, where
/// the backlog cap applies.
#[cfg(feature = "tls")]
fn tls_send(
    tls: &mut crate::tls::TlsSession,
    stream: &mut TcpStream,
    slices: &[IoSlice<'_>],
) -> io::Result<usize> {
    if !flush_tls(tls, stream)? {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    let mut bufs: [&[u8]; 32] = [&[]; 32];
    let mut n = 0;
    let mut taken = 0;
    for slice in slices.iter().take(bufs.len()) {
        let take = slice.len().min(TLS_WRITE_MAX - taken);
        bufs[n] = &slice[..take];
        n += 1;
        taken += take;
        if taken == TLS_WRITE_MAX {
            break;
        }
    }
    tls.write_plaintext_vectored(&bufs[..n])
        .map_err(|e| io::Error::new(io::ErrorKind::BrokenPipe, e.to_string()))?;
    flush_tls(tls, stream)?;
    Ok(taken)
}

/// Writes the session's pending ciphertext. Returns whether all of it went.
#[cfg(feature = "tls")]
pub(crate) fn flush_tls(
    tls: &mut crate::tls::TlsSession,
    stream: &mut TcpStream,
) -> io::Result<bool> {
    loop {
        let pending = tls.pending_output();
        if pending.is_empty() {
            return Ok(true);
        }
        match stream.send_vectored(&[IoSlice::new(pending)]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => tls.consumed(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write to a socket whose sending side is shut gets `EPIPE`. With
    /// plain `writev` it would also raise SIGPIPE, which kills a C host
    /// program; the check runs in a forked child with SIGPIPE at its
    /// default action so that a signal shows in its exit status.
    #[test]
    #[allow(unsafe_code)] // fork, signal, _exit, waitpid: the check needs a child process.
    fn a_closed_socket_gives_epipe_not_sigpipe() {
        use std::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_theirs, _) = listener.accept().unwrap();
        ours.shutdown(Shutdown::Write).unwrap();
        // SAFETY: the child only makes async-signal-safe calls (signal,
        // sendmsg, _exit) before it exits; the parent waits for it.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: restores the default action in the forked child only.
            let code = unsafe {
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                // One buffer goes through `send`, two through `sendmsg`.
                let one = ours.send_vectored(&[IoSlice::new(b"x")]);
                let two = ours.send_vectored(&[IoSlice::new(b"x"), IoSlice::new(b"y")]);
                match (one, two) {
                    (Err(a), Err(b))
                        if a.raw_os_error() == Some(libc::EPIPE)
                            && b.raw_os_error() == Some(libc::EPIPE) =>
                    {
                        0
                    }
                    _ => 1,
                }
            };
            // SAFETY: ends the forked child without running the parent's
            // atexit handlers or unwinding its test harness.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(
            libc::WIFEXITED(status),
            "child killed by signal {}",
            libc::WTERMSIG(status)
        );
        assert_eq!(libc::WEXITSTATUS(status), 0, "expected EPIPE");
    }
}
