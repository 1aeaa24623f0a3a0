//! The churn scenario: open and close many connections in rounds and record
//! the server's RSS after every round, to see whether memory comes back.
//!
//! Each round opens `--round` connections (at most `--max-pending`
//! handshakes in flight), waits until every one of them has completed its
//! handshake (a checked `101`), so that all of them are open at once, then
//! closes them all: with the close handshake (`--close handshake`, default:
//! a masked close frame 1000, the server's close frame, then its TCP FIN,
//! after which we close) or with a bare TCP close (`--close tcp`: close the
//! socket as soon as the handshake completed, no close frame). Before RSS is
//! read, the loadgen waits (at most `SETTLE_MAX`) until the server holds no
//! more descriptors than before the first round, so the figure is taken
//! with every connection of the round gone on the server side too.
//!
//! After the last round it stays quiet for `--quiet` seconds and reads RSS
//! once a second. Output: one `ROUND` line per round (round 0 is the start),
//! `QUIET` lines, and the usual `RESULT` line. Its exit status is non-zero
//! if any handshake failed, the server closed a connection on its own, or a
//! round did not finish within `--round-timeout`.

use crate::sys;
use crate::ws::{check_response, head_end, Out, OP_CLOSE, OP_PING, OP_PONG};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token};
use std::io::{self, Read};
use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

/// How long to wait after a round for the server to release the round's
/// descriptors before reading its RSS anyway.
const SETTLE_MAX: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CloseMode {
    /// Close frame, the server's close frame, its FIN, then our close.
    Handshake,
    /// Close the socket right after the upgrade: no close frame.
    Tcp,
}

impl CloseMode {
    pub fn parse(s: &str) -> Option<CloseMode> {
        match s {
            "handshake" => Some(CloseMode::Handshake),
            "tcp" => Some(CloseMode::Tcp),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CloseMode::Handshake => "handshake",
            CloseMode::Tcp => "tcp",
        }
    }
}

pub struct ChurnConfig {
    pub addr: SocketAddrV4,
    pub request: Vec<u8>,
    pub server_pid: Option<u32>,
    pub total: usize,
    pub round: usize,
    pub close: CloseMode,
    pub quiet: Duration,
    pub max_pending: usize,
    pub round_timeout: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum St {
    Connecting,
    Handshake,
    Open,
    /// Our close frame is sent; waiting for the server's.
    Closing,
    /// The WebSocket is closed; waiting for the server's FIN.
    AwaitEof,
    Done,
}

struct Conn {
    sock: Option<TcpStream>,
    st: St,
    rbuf: Vec<u8>,
    out: Out,
}

#[derive(Default)]
struct Counts {
    pending: usize,
    ready: usize,
    done: usize,
    errors: u64,
    pings: u64,
    data_frames: u64,
}

impl Counts {
    fn error(&mut self, what: impl FnOnce() -> String) {
        self.errors += 1;
        if self.errors <= 10 {
            eprintln!("loadgen: error: {}", what());
        } else if self.errors == 11 {
            eprintln!("loadgen: (further errors not shown)");
        }
    }
}

fn finish(c: &mut Conn, reg: &Registry, n: &mut Counts, failure: Option<String>) {
    if c.st == St::Done {
        return;
    }
    if matches!(c.st, St::Connecting | St::Handshake) {
        n.pending -= 1;
    }
    if let Some(why) = failure {
        n.error(|| why);
        // A connection that never opened still counts as ready, so the
        // round goes on (and fails at the end).
        if matches!(c.st, St::Connecting | St::Handshake) {
            n.ready += 1;
        }
    }
    if let Some(mut s) = c.sock.take() {
        let _ = reg.deregister(&mut s);
    }
    c.st = St::Done;
    n.done += 1;
}

/// Parses what is buffered: the handshake response, then frames.
fn process(c: &mut Conn, n: &mut Counts) -> Result<(), String> {
    if c.st == St::Handshake {
        let Some(end) = head_end(&c.rbuf) else {
            if c.rbuf.len() > 16 * 1024 {
                return Err("handshake response head too long".into());
            }
            return Ok(());
        };
        check_response(&c.rbuf[..end])?;
        c.rbuf.drain(..end);
        c.st = St::Open;
        n.pending -= 1;
        n.ready += 1;
    }
    let mut at = 0;
    loop {
        let avail = &c.rbuf[at..];
        if avail.len() < 2 {
            break;
        }
        let (b0, b1) = (avail[0], avail[1]);
        if b1 & 0x80 != 0 {
            return Err("masked frame from the server".into());
        }
        let (hl, len) = match b1 & 0x7F {
            126 if avail.len() >= 4 => (4, u16::from_be_bytes([avail[2], avail[3]]) as usize),
            127 if avail.len() >= 10 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&avail[2..10]);
                (10, u64::from_be_bytes(b).min(1 << 30) as usize)
            }
            126 | 127 => break,
            l => (2, l as usize),
        };
        if avail.len() < hl + len {
            break;
        }
        let payload = &avail[hl..hl + len];
        match b0 & 0x0F {
            OP_PING => {
                n.pings += 1;
                if c.st == St::Open {
                    c.out.frame(OP_PONG, payload, &[]);
                }
            }
            OP_PONG => {}
            OP_CLOSE => {
                if c.st == St::Closing {
                    c.st = St::AwaitEof;
                } else if c.st == St::Open {
                    let code = if len >= 2 {
                        u16::from_be_bytes([payload[0], payload[1]])
                    } else {
                        1005
                    };
                    return Err(format!("server closed the connection (code {code})"));
                }
            }
            _ => n.data_frames += 1,
        }
        at += hl + len;
    }
    c.rbuf.drain(..at);
    Ok(())
}

fn handle(
    c: &mut Conn,
    reg: &Registry,
    n: &mut Counts,
    readable: bool,
    writable: bool,
    request: &[u8],
) {
    if c.st == St::Done {
        return;
    }
    if writable {
        c.out.blocked = false;
    }
    if c.st == St::Connecting {
        let Some(sock) = c.sock.as_ref() else { return };
        match sock.take_error() {
            Ok(Some(e)) | Err(e) => return finish(c, reg, n, Some(format!("connect: {e}"))),
            Ok(None) => {}
        }
        match sock.peer_addr() {
            Ok(_) => {
                c.st = St::Handshake;
                c.out.buf.extend_from_slice(request);
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
            Err(e) => return finish(c, reg, n, Some(format!("connect: {e}"))),
        }
    }
    if readable {
        let mut buf = [0u8; 4096];
        loop {
            let Some(sock) = c.sock.as_ref() else { return };
            match (&*sock).read(&mut buf) {
                Ok(0) => {
                    return match c.st {
                        St::AwaitEof => finish(c, reg, n, None),
                        st => finish(
                            c,
                            reg,
                            n,
                            Some(format!("EOF from the server in state {st:?}")),
                        ),
                    };
                }
                Ok(k) => {
                    c.rbuf.extend_from_slice(&buf[..k]);
                    if let Err(e) = process(c, n) {
                        return finish(c, reg, n, Some(e));
                    }
                    // No stop at a short read: the server's FIN may already
                    // be behind its close frame, and would raise no new edge.
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return match c.st {
                        // A reset after the close handshake: closed all the same.
                        St::AwaitEof => finish(c, reg, n, None),
                        st => finish(c, reg, n, Some(format!("read in state {st:?}: {e}"))),
                    };
                }
            }
        }
    }
    if c.out.pending() {
        if let Some(sock) = c.sock.as_ref() {
            if let Err(e) = c.out.flush(sock) {
                let st = c.st;
                finish(c, reg, n, Some(format!("write in state {st:?}: {e}")));
            }
        }
    }
}

/// Number of open descriptors of `pid`.
fn proc_fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// Waits (at most SETTLE_MAX) until the server holds at most `base`
/// descriptors; returns how many it holds.
fn settle(pid: Option<u32>, base: Option<usize>) -> Option<usize> {
    let (pid, base) = (pid?, base?);
    let until = Instant::now() + SETTLE_MAX;
    loop {
        let fds = proc_fds(pid)?;
        if fds <= base || Instant::now() >= until {
            return Some(fds);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn fmt_rss(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

pub fn run(cfg: &ChurnConfig) -> io::Result<bool> {
    let need = cfg.round as u64 + 64;
    let nofile = sys::raise_nofile(need);
    if nofile < need {
        return Err(io::Error::other(format!(
            "RLIMIT_NOFILE is {nofile}, {need} needed: raise the hard limit (ulimit -Hn)"
        )));
    }
    let rounds = cfg.total.div_ceil(cfg.round);
    let pid = cfg.server_pid;
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(4096);
    let mut n = Counts::default();
    let mut conns: Vec<Conn> = Vec::with_capacity(cfg.round);
    let started = Instant::now();

    let base_fds = pid.and_then(proc_fds);
    let rss0 = pid.and_then(sys::proc_rss_kib);
    let mut rss: Vec<Option<u64>> = vec![rss0];
    println!(
        "# churn: {} connections in {rounds} rounds of {}, close: {}",
        cfg.total,
        cfg.round,
        cfg.close.name()
    );
    println!("# ROUND\tround\tconnections\trss_kib\tserver_fds\topen_s\tclose_s");
    println!(
        "ROUND\t0\t0\t{}\t{}\t0\t0",
        fmt_rss(rss0),
        base_fds.map_or(0, |f| f)
    );
    let mut opened_total = 0usize;
    let mut aborted = false;

    for r in 1..=rounds {
        let this = cfg.round.min(cfg.total - opened_total);
        conns.clear();
        n.pending = 0;
        n.ready = 0;
        n.done = 0;
        let errors_before = n.errors;
        let t0 = Instant::now();
        let deadline = t0 + cfg.round_timeout;
        let mut t_open = None;
        loop {
            while t_open.is_none() && conns.len() < this && n.pending < cfg.max_pending {
                let i = conns.len();
                let mut sock = match TcpStream::connect(SocketAddr::V4(cfg.addr)) {
                    Ok(s) => s,
                    Err(e) => {
                        n.error(|| format!("round {r}: connect #{i}: {e}"));
                        aborted = true;
                        break;
                    }
                };
                let _ = sock.set_nodelay(true);
                poll.registry().register(
                    &mut sock,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                conns.push(Conn {
                    sock: Some(sock),
                    st: St::Connecting,
                    rbuf: Vec::new(),
                    out: Out::new((i as u32).wrapping_mul(2_654_435_761) ^ r as u32, 256),
                });
                n.pending += 1;
            }
            if aborted {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                let (ready, done) = (n.ready, n.done);
                n.error(|| {
                    format!("round {r} timed out: {ready}/{this} opened, {done}/{this} closed")
                });
                aborted = true;
                break;
            }
            let timeout = deadline
                .saturating_duration_since(now)
                .min(Duration::from_millis(100));
            if let Err(e) = poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            for ev in events.iter() {
                let i = ev.token().0;
                let Some(c) = conns.get_mut(i) else { continue };
                let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
                let writable = ev.is_writable() || ev.is_error();
                handle(c, poll.registry(), &mut n, readable, writable, &cfg.request);
            }
            if t_open.is_none() && conns.len() == this && n.ready == this {
                // Every connection of the round is open: close them all.
                t_open = Some(Instant::now());
                for c in conns.iter_mut() {
                    if c.st != St::Open {
                        continue;
                    }
                    match cfg.close {
                        CloseMode::Handshake => {
                            c.out.frame(OP_CLOSE, &1000u16.to_be_bytes(), &[]);
                            c.st = St::Closing;
                            handle(c, poll.registry(), &mut n, false, false, &cfg.request);
                        }
                        // Dropping the socket closes it: a FIN, or a reset
                        // if the server's welcome is still unread.
                        CloseMode::Tcp => finish(c, poll.registry(), &mut n, None),
                    }
                }
            }
            if t_open.is_some() && n.done == this {
                break;
            }
        }
        let t1 = Instant::now();
        // Whatever is left (an aborted round) is closed now.
        for c in conns.iter_mut() {
            if c.st != St::Done {
                finish(c, poll.registry(), &mut n, None);
            }
        }
        conns.clear();
        opened_total += this;
        let fds = settle(pid, base_fds);
        let rss_r = pid.and_then(sys::proc_rss_kib);
        rss.push(rss_r);
        let open_s = t_open.map_or(0.0, |t| (t - t0).as_secs_f64());
        let close_s = t_open.map_or(0.0, |t| (t1 - t).as_secs_f64());
        println!(
            "ROUND\t{r}\t{opened_total}\t{}\t{}\t{open_s:.3}\t{close_s:.3}",
            fmt_rss(rss_r),
            fds.map_or(0, |f| f)
        );
        if n.errors > errors_before && r == 1 {
            eprintln!("loadgen: aborting: the first round failed");
            aborted = true;
        }
        if aborted {
            break;
        }
    }
    let churn_secs = started.elapsed().as_secs_f64();

    let mut quiet_rss = None;
    if !aborted && !cfg.quiet.is_zero() {
        let q0 = Instant::now();
        let mut next = 1u64;
        while q0.elapsed() < cfg.quiet {
            let at = q0 + Duration::from_secs(next).min(cfg.quiet);
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
            quiet_rss = pid.and_then(sys::proc_rss_kib);
            println!(
                "QUIET\t{:.0}\t{}",
                q0.elapsed().as_secs_f64(),
                fmt_rss(quiet_rss)
            );
            next += 1;
        }
    }

    let last = rss.len() - 1;
    let at = |i: usize| rss.get(i).copied().flatten();
    let mut kv: Vec<(&str, String)> = vec![("scenario", "churn".to_string())];
    kv.push(("close", cfg.close.name().to_string()));
    kv.push(("connections", opened_total.to_string()));
    kv.push(("rounds", last.to_string()));
    kv.push((
        "conn_per_s",
        format!("{:.0}", opened_total as f64 / churn_secs.max(1e-9)),
    ));
    for (key, i) in [
        ("rss_start_kib", 0),
        ("rss_round10_kib", 10),
        ("rss_round50_kib", 50),
        ("rss_last_kib", last),
    ] {
        if let Some(v) = at(i) {
            kv.push((key, v.to_string()));
        }
    }
    if let Some(v) = quiet_rss {
        kv.push(("rss_quiet_kib", v.to_string()));
    }
    if let (Some(a), Some(b)) = (at(10), at(last)) {
        let growth = b as i64 - a as i64;
        kv.push(("growth_10_to_last_kib", growth.to_string()));
        // The acceptance bound: RSS after the last round within 2 MiB of
        // RSS after the 10th.
        kv.push(("within_2mib", u8::from(growth.abs() <= 2048).to_string()));
    }
    let ok = n.errors == 0 && !aborted;
    kv.push(("pings", n.pings.to_string()));
    kv.push(("errors", n.errors.to_string()));
    kv.push(("ok", u8::from(ok).to_string()));
    println!(
        "churn: {opened_total} connections in {churn_secs:.1} s; server RSS {} KiB at start, {} after round 10, {} after round {last}, {} after {:.0} s quiet; errors {}",
        fmt_rss(at(0)),
        fmt_rss(at(10)),
        fmt_rss(at(last)),
        fmt_rss(quiet_rss),
        cfg.quiet.as_secs_f64(),
        n.errors
    );
    let line: Vec<String> = kv.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("RESULT {}", line.join(" "));
    Ok(ok)
}
