//! The socket as a [`Sink`]: the one place bytes meet the kernel on the way
//! out.

use std::io::{self, IoSlice};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;

use crate::proto::output::Sink;

impl Sink for TcpStream {
    /// `sendmsg` with `MSG_NOSIGNAL`: a peer that reset its connection must
    /// give us `EPIPE`, not a `SIGPIPE` that kills a C host program which,
    /// unlike Rust's runtime, does not ignore that signal.
    fn send_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        // SAFETY: `msghdr` is plain data, so all-zero is a valid value; the
        // iovec pointer and count describe `slices`, and `IoSlice` is
        // documented to be ABI-compatible with `iovec` on Unix; `slices` and
        // the buffers they point into outlive the call, and the kernel only
        // reads them. The descriptor belongs to `self` and is open.
        let sent = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = slices.as_ptr() as *mut libc::iovec;
            msg.msg_iovlen = slices.len() as _;
            libc::sendmsg(self.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
        };
        if sent < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(sent as usize)
        }
    }

    fn shutdown_write(&mut self) {
        let _ = self.shutdown(Shutdown::Write);
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
                match ours.send_vectored(&[IoSlice::new(b"x")]) {
                    Err(e) if e.raw_os_error() == Some(libc::EPIPE) => 0,
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
