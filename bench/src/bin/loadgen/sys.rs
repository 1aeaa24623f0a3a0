//! Small Linux helpers: file-descriptor limit, CPU time and RSS.

use std::time::Duration;

/// Raises RLIMIT_NOFILE's soft limit towards `want` (capped by the hard limit).
/// Returns the soft limit in force afterwards.
// rlim_t is u64 here but 32 bits on some 32-bit targets.
#[allow(clippy::useless_conversion)]
pub fn raise_nofile(want: u64) -> u64 {
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        let cur = u64::from(lim.rlim_cur);
        let max = u64::from(lim.rlim_max);
        if cur < want {
            lim.rlim_cur = libc::rlim_t::try_from(want.min(max)).unwrap_or(lim.rlim_max);
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                return u64::from(lim.rlim_cur);
            }
        }
        cur
    }
}

/// CPU time (user + system) used so far by this process, from getrusage.
pub fn self_cpu() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we own.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut ru) != 0 {
            return Duration::ZERO;
        }
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        tv(ru.ru_utime) + tv(ru.ru_stime)
    }
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// CPU time (utime + stime) of process `pid`, from /proc/<pid>/stat.
pub fn proc_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces: fields start after ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let tck = clock_ticks();
    let ticks = utime + stime;
    Some(Duration::from_nanos(ticks * 1_000_000_000 / tck))
}

/// Resident set size of process `pid` in KiB (VmRSS in /proc/<pid>/status).
pub fn proc_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
