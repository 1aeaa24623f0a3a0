//! Socket activation (`sd_listen_fds(3)`): when `LISTEN_PID` names this
//! process and `LISTEN_FDS` is at least 1, systemd (or
//! `systemd-socket-activate`) has passed listening sockets from descriptor
//! 3 on, named in `LISTEN_FDNAMES`. [`listener_from_env`] takes the one
//! named `rookery`, or the first, and unsets the three variables, as
//! `sd_listen_fds(1)` does, so that nothing started later mistakes them for
//! its own.

use std::fmt;
use std::net::TcpListener;
use std::os::fd::{AsFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

/// The first passed descriptor (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: RawFd = 3;

/// The name in `LISTEN_FDNAMES` (a unit's `FileDescriptorName=`) that picks
/// the socket to serve among several.
pub const FD_NAME: &str = "rookery";

/// The most descriptors taken from `LISTEN_FDS`: a larger count is refused
/// rather than trusted (systemd passes a handful at most).
const MAX_FDS: usize = 1024;

/// What the activation variables said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passed {
    /// The descriptor to serve.
    pub fd: RawFd,
    /// How many were passed (`LISTEN_FDS`).
    pub count: usize,
    /// Its name, if `LISTEN_FDNAMES` gave one.
    pub name: Option<String>,
}

/// Why passed sockets could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActivationError {
    /// `LISTEN_FDS` is not a count from 1 to 1024.
    BadCount(String),
    /// `LISTEN_PID` is not a process id.
    BadPid(String),
    /// The chosen descriptor is not a listening TCP socket.
    NotTcpListener {
        /// The descriptor.
        fd: RawFd,
        /// What is wrong with it.
        why: String,
    },
}

impl fmt::Display for ActivationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActivationError::BadCount(v) => {
                write!(f, "LISTEN_FDS={v:?} is not a count of descriptors")
            }
            ActivationError::BadPid(v) => write!(f, "LISTEN_PID={v:?} is not a process id"),
            ActivationError::NotTcpListener { fd, why } => write!(
                f,
                "passed descriptor {fd} is not a listening TCP socket ({why}); \
                 a socket unit needs ListenStream=[ADDRESS:]PORT"
            ),
        }
    }
}

impl std::error::Error for ActivationError {}

/// Which passed descriptor to serve, from the values of `LISTEN_PID`,
/// `LISTEN_FDS` and `LISTEN_FDNAMES` (`None` when unset) and this process's
/// id: `Ok(None)` when nothing was passed to this process (no variables,
/// another pid, a count of 0). Sans-IO: no environment, no descriptor.
pub fn parse(
    pid: Option<&str>,
    fds: Option<&str>,
    names: Option<&str>,
    own_pid: u32,
) -> Result<Option<Passed>, ActivationError> {
    let (Some(pid), Some(fds)) = (pid, fds) else {
        return Ok(None);
    };
    let pid: u32 = pid
        .parse()
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| ActivationError::BadPid(pid.to_string()))?;
    if pid != own_pid {
        // Meant for the process that was started, not for a child of it.
        return Ok(None);
    }
    let count: usize = fds
        .parse()
        .ok()
        .filter(|&n| n <= MAX_FDS)
        .ok_or_else(|| ActivationError::BadCount(fds.to_string()))?;
    if count == 0 {
        return Ok(None);
    }
    let names: Vec<&str> = names.map(|n| n.split(':').collect()).unwrap_or_default();
    let index = names
        .iter()
        .take(count)
        .position(|&n| n == FD_NAME)
        .unwrap_or(0);
    Ok(Some(Passed {
        fd: LISTEN_FDS_START + index as RawFd,
        count,
        name: names
            .get(index)
            .filter(|n| !n.is_empty())
            .map(|n| n.to_string()),
    }))
}

/// The listening socket systemd passed to this process, if any, with what
/// the variables said; the variables are unset either way (call this
/// before any thread starts: it changes the environment). Every passed
/// descriptor is marked close-on-exec.
///
/// # Errors
///
/// Malformed variables, or a chosen descriptor that is not a listening TCP
/// socket (a `ListenDatagram=` or a Unix socket).
#[allow(unsafe_code)] // taking ownership of the passed descriptors, below.
pub fn listener_from_env() -> Result<Option<(TcpListener, Passed)>, ActivationError> {
    let var = |name| std::env::var(name).ok();
    let (pid, fds, names) = (var("LISTEN_PID"), var("LISTEN_FDS"), var("LISTEN_FDNAMES"));
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(name);
    }
    let Some(passed) = parse(
        pid.as_deref(),
        fds.as_deref(),
        names.as_deref(),
        std::process::id(),
    )?
    else {
        return Ok(None);
    };
    let mut owned: Vec<Option<OwnedFd>> = (0..passed.count)
        .map(|i| {
            let fd = LISTEN_FDS_START + i as RawFd;
            // SAFETY: F_GETFD only reads the flags of a descriptor number,
            // and fails (EBADF) for one that is not open, which is then not
            // taken. An open one was passed to this process for it to own
            // (sd_listen_fds(3): LISTEN_PID names this process, checked by
            // `parse`), and nothing else in the process takes it: the
            // variables that name it were removed above, before this, so a
            // second call finds none. The `OwnedFd` is its one owner.
            unsafe { (libc::fcntl(fd, libc::F_GETFD) >= 0).then(|| OwnedFd::from_raw_fd(fd)) }
        })
        .collect();
    for fd in owned.iter().flatten() {
        // Not inherited by anything the process starts; a descriptor that
        // refuses the flag is left as it is, as sd_listen_fds(3) does.
        let _ = rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC);
    }
    let index = usize::try_from(passed.fd - LISTEN_FDS_START).unwrap_or(usize::MAX);
    let chosen = owned.get_mut(index).and_then(Option::take);
    // The others stay open for the process, unowned, as they were passed.
    for fd in owned.into_iter().flatten() {
        let _ = fd.into_raw_fd();
    }
    let Some(chosen) = chosen else {
        return Err(ActivationError::NotTcpListener {
            fd: passed.fd,
            why: "not an open descriptor".into(),
        });
    };
    check_tcp_listener(&chosen)
        .map_err(|why| ActivationError::NotTcpListener { fd: passed.fd, why })?;
    Ok(Some((TcpListener::from(chosen), passed)))
}

/// Checks that `fd` is a listening stream socket of IPv4 or IPv6; the
/// error says what it is not.
fn check_tcp_listener(fd: impl AsFd) -> Result<(), String> {
    use rustix::net::{sockopt, AddressFamily, SocketType};
    let fd = fd.as_fd();
    let io = |e: rustix::io::Errno| std::io::Error::from(e).to_string();
    if sockopt::socket_type(fd).map_err(io)? != SocketType::STREAM {
        return Err("not a stream socket".into());
    }
    let domain = sockopt::socket_domain(fd).map_err(io)?;
    if domain != AddressFamily::INET && domain != AddressFamily::INET6 {
        return Err("not an IPv4 or IPv6 socket".into());
    }
    if !sockopt::socket_acceptconn(fd).map_err(io)? {
        return Err("not listening".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd(pid: &str, fds: &str, names: Option<&str>) -> Result<Option<RawFd>, ActivationError> {
        parse(Some(pid), Some(fds), names, 42).map(|p| p.map(|p| p.fd))
    }

    #[test]
    fn nothing_passed_without_both_variables_or_for_another_process() {
        assert_eq!(parse(None, None, None, 42), Ok(None));
        assert_eq!(parse(Some("42"), None, None, 42), Ok(None));
        assert_eq!(parse(None, Some("1"), None, 42), Ok(None));
        assert_eq!(fd("41", "1", None), Ok(None), "another process's");
        assert_eq!(fd("42", "0", None), Ok(None));
    }

    #[test]
    fn the_first_or_the_one_named_rookery() {
        assert_eq!(fd("42", "1", None), Ok(Some(3)));
        assert_eq!(fd("42", "2", None), Ok(Some(3)));
        assert_eq!(fd("42", "2", Some("web:rookery")), Ok(Some(4)));
        assert_eq!(fd("42", "3", Some("a:b:rookery")), Ok(Some(5)));
        assert_eq!(fd("42", "2", Some("a:b")), Ok(Some(3)), "no name matches");
        assert_eq!(
            fd("42", "1", Some("a:rookery")),
            Ok(Some(3)),
            "a name past the count is not a descriptor"
        );
        let passed = parse(Some("42"), Some("2"), Some("x:rookery"), 42)
            .unwrap()
            .unwrap();
        assert_eq!(passed.name.as_deref(), Some("rookery"));
        assert_eq!(passed.count, 2);
        let unnamed = parse(Some("42"), Some("1"), None, 42).unwrap().unwrap();
        assert_eq!(unnamed.name, None);
    }

    #[test]
    fn malformed_values_are_errors_not_guesses() {
        assert!(matches!(
            fd("x", "1", None),
            Err(ActivationError::BadPid(_))
        ));
        assert!(matches!(
            fd("0", "1", None),
            Err(ActivationError::BadPid(_))
        ));
        assert!(matches!(
            fd("42", "-1", None),
            Err(ActivationError::BadCount(_))
        ));
        assert!(matches!(
            fd("42", "1025", None),
            Err(ActivationError::BadCount(_))
        ));
        assert!(matches!(
            fd("42", "99999999999999999999", None),
            Err(ActivationError::BadCount(_))
        ));
        assert_eq!(fd("42", "1024", None), Ok(Some(3)));
    }

    #[test]
    fn only_a_listening_tcp_socket_is_taken() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(check_tcp_listener(&listener), Ok(()));
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(
            check_tcp_listener(&udp),
            Err("not a stream socket".to_string())
        );
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(
            check_tcp_listener(&a),
            Err("not an IPv4 or IPv6 socket".to_string())
        );
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        assert_eq!(
            check_tcp_listener(&client),
            Err("not listening".to_string()),
            "connected"
        );
    }
}
