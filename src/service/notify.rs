//! The service manager's notification protocol (`sd_notify(3)`), without
//! libsystemd: one datagram per state change to the Unix socket named in
//! `NOTIFY_SOCKET` (a path, or `@name` for an abstract socket), and the
//! watchdog's period from `WATCHDOG_USEC` and `WATCHDOG_PID`.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::time::Duration;

/// Where `NOTIFY_SOCKET` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<'a> {
    /// A socket file.
    Path(&'a Path),
    /// A socket in the abstract namespace (`@name`), without the `@`.
    Abstract(&'a [u8]),
}

/// Why `NOTIFY_SOCKET` cannot be used.
#[derive(Debug)]
pub enum NotifyError {
    /// Neither an absolute path nor `@name` (e.g. `vsock:`, not supported).
    BadAddress(String),
    /// The socket could not be made, or the address is too long.
    Socket(io::Error),
}

impl fmt::Display for NotifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotifyError::BadAddress(v) => write!(
                f,
                "NOTIFY_SOCKET={v:?} is neither an absolute path nor @name"
            ),
            NotifyError::Socket(e) => write!(f, "NOTIFY_SOCKET: {e}"),
        }
    }
}

impl std::error::Error for NotifyError {}

/// Reads a `NOTIFY_SOCKET` value. Sans-IO.
pub fn parse_target(value: &OsStr) -> Result<Target<'_>, NotifyError> {
    let bytes = value.as_bytes();
    match bytes.first() {
        Some(b'/') => Ok(Target::Path(Path::new(value))),
        Some(b'@') if bytes.len() > 1 => Ok(Target::Abstract(&bytes[1..])),
        _ => Err(NotifyError::BadAddress(
            value.to_string_lossy().into_owned(),
        )),
    }
}

/// The watchdog's ping period, half of `WATCHDOG_USEC`, if the watchdog is
/// on for this process: `WATCHDOG_USEC` a positive number of microseconds
/// and `WATCHDOG_PID` unset or this process's id (`sd_watchdog_enabled(3)`).
/// Sans-IO.
pub fn watchdog_period(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.parse::<u32>().ok()? != own_pid {
            return None;
        }
    }
    let usec: u64 = usec?.parse().ok().filter(|&u| u > 0)?;
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

/// The watchdog's period for this process, from its environment.
pub fn watchdog_from_env() -> Option<Duration> {
    let var = |name| std::env::var(name).ok();
    watchdog_period(
        var("WATCHDOG_USEC").as_deref(),
        var("WATCHDOG_PID").as_deref(),
        std::process::id(),
    )
}

/// A connection to the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// A notifier for `NOTIFY_SOCKET`, or `None` when it is unset or empty.
    ///
    /// # Errors
    ///
    /// An address that is not a path or `@name`, or no socket.
    pub fn from_env() -> Result<Option<Notifier>, NotifyError> {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(v) if !v.is_empty() => Notifier::new(&v).map(Some),
            _ => Ok(None),
        }
    }

    /// A notifier for the socket a `NOTIFY_SOCKET` value names.
    ///
    /// # Errors
    ///
    /// As [`Notifier::from_env`].
    pub fn new(value: &OsStr) -> Result<Notifier, NotifyError> {
        let addr = match parse_target(value)? {
            Target::Path(path) => SocketAddr::from_pathname(path),
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name)
            }
        }
        .map_err(NotifyError::Socket)?;
        let socket = UnixDatagram::unbound().map_err(NotifyError::Socket)?;
        // A manager that stopped reading must not stall the loop.
        socket.set_nonblocking(true).map_err(NotifyError::Socket)?;
        Ok(Notifier { socket, addr })
    }

    /// Sends one state datagram (`READY=1`, or several `KEY=VALUE` lines).
    ///
    /// # Errors
    ///
    /// The error of `sendto(2)`.
    pub fn send(&self, state: &str) -> io::Result<()> {
        self.socket.send_to_addr(state.as_bytes(), &self.addr)?;
        Ok(())
    }

    /// `READY=1`: serving (at start, and at the end of a reload).
    pub fn ready(&self) {
        self.send_logged("READY=1");
    }

    /// `RELOADING=1` with the monotonic clock's time, as `Type=notify-reload`
    /// expects.
    pub fn reloading(&self) {
        self.send_logged(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
    }

    /// `STOPPING=1`: the shutdown began.
    pub fn stopping(&self) {
        self.send_logged("STOPPING=1");
    }

    /// `WATCHDOG=1`: the loop is alive.
    pub fn watchdog(&self) {
        self.send_logged("WATCHDOG=1");
    }

    fn send_logged(&self, state: &str) {
        if let Err(e) = self.send(state) {
            log::warn!(
                "NOTIFY_SOCKET: cannot send {}: {e}",
                state.replace('\n', " ")
            );
        }
    }
}

/// `CLOCK_MONOTONIC` in microseconds, the clock systemd compares with
/// (0 if it cannot be read).
///
/// Read as how far a deadline at a fixed absolute time on that clock, set
/// on a timerfd, is from now: three system calls on a rare path (a reload),
/// through the timerfd calls the poller already links. rustix's
/// `clock_gettime` would add its vDSO parser (5,512 B of the stripped
/// release binary), and libc's needs an `unsafe` block.
fn monotonic_usec() -> u64 {
    use rustix::time::{
        timerfd_create, timerfd_gettime, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags,
        TimerfdTimerFlags, Timespec,
    };
    /// The deadline, in seconds: later than any uptime (136 years), and
    /// within the kernel's 292 years of nanoseconds, past which it would
    /// be cut to that.
    const FAR: i64 = 1 << 32;
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let far = Itimerspec {
        it_interval: zero,
        it_value: Timespec {
            tv_sec: FAR,
            tv_nsec: 0,
        },
    };
    let Ok(timer) = timerfd_create(TimerfdClockId::Monotonic, TimerfdFlags::CLOEXEC) else {
        return 0;
    };
    if timerfd_settime(&timer, TimerfdTimerFlags::ABSTIME, &far).is_err() {
        return 0;
    }
    let Ok(left) = timerfd_gettime(&timer) else {
        return 0;
    };
    let usec = |ts: Timespec| {
        let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
        let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
        secs.saturating_mul(1_000_000).saturating_add(nanos / 1000)
    };
    usec(far.it_value).saturating_sub(usec(left.it_value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            parse_target(OsStr::new("/run/systemd/notify")).unwrap(),
            Target::Path(Path::new("/run/systemd/notify"))
        );
        assert_eq!(
            parse_target(OsStr::new("@abc")).unwrap(),
            Target::Abstract(b"abc")
        );
        for bad in ["", "@", "relative", "vsock:2:1"] {
            assert!(parse_target(OsStr::new(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_watchdog_pings_at_half_its_timeout_and_only_for_its_process() {
        let half = Some(Duration::from_secs(5));
        assert_eq!(watchdog_period(Some("10000000"), None, 7), half);
        assert_eq!(watchdog_period(Some("10000000"), Some("7"), 7), half);
        assert_eq!(watchdog_period(Some("10000000"), Some("8"), 7), None);
        assert_eq!(watchdog_period(Some("10000000"), Some("x"), 7), None);
        assert_eq!(watchdog_period(None, Some("7"), 7), None);
        assert_eq!(watchdog_period(Some("0"), None, 7), None);
        assert_eq!(watchdog_period(Some("-1"), None, 7), None);
        assert_eq!(watchdog_period(Some("soon"), None, 7), None);
        assert_eq!(
            watchdog_period(Some("1"), None, 7),
            Some(Duration::from_millis(1)),
            "never a zero period"
        );
    }

    #[test]
    fn datagrams_reach_a_path_and_an_abstract_socket() {
        let dir = std::env::temp_dir().join(format!("rookery-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let by_path = UnixDatagram::bind(&path).unwrap();
        Notifier::new(path.as_os_str()).unwrap().ready();
        let mut buf = [0; 64];
        let n = by_path.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("rookery-notify-test-{}", std::process::id());
        let by_name =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let notifier = Notifier::new(OsStr::new(&format!("@{name}"))).unwrap();
        notifier.reloading();
        let n = by_name.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        let usec: u64 = text
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .unwrap()
            .parse()
            .unwrap();
        assert!(usec > 0 && usec <= monotonic_usec());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
