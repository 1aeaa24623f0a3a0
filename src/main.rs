//! The `rookery` command-line server: the chat service by default, or the
//! echo service with `--mode echo`. See `rookery --help`.

#![warn(unreachable_pub)]
#![deny(unsafe_code)]

mod cli;
mod startup;

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use cli::{Command, Mode, Options, Verbosity};
use rookery::chat::{Chat, ChatOptions};
use rookery::echo::Echo;
use rookery::{Handler, Server};

fn main() -> ExitCode {
    fix_malloc_trim_threshold();
    let opts = match cli::parse(std::env::args_os().skip(1)) {
        Ok(Command::Run(opts)) => opts,
        Ok(Command::Help) => {
            print!("{}", cli::help());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("rookery {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("rookery: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(opts.verbosity);
    #[cfg(feature = "tls")]
    let tls = match load_tls(&opts) {
        Ok(tls) => tls,
        Err(line) => {
            eprintln!("rookery: {line}");
            return ExitCode::from(2);
        }
    };
    #[cfg(not(feature = "tls"))]
    let tls = ();
    let result = match opts.mode {
        Mode::Chat => {
            let chat = Chat::new(ChatOptions {
                welcome: opts.welcome.clone(),
                allow_binary: opts.allow_binary,
                page: opts.page,
                path: opts.config.path.clone(),
            })
            .with_rooms(opts.max_rooms, opts.history)
            .with_room_ttl(opts.room_ttl)
            .with_metrics(opts.metrics);
            serve(&opts, tls, chat)
        }
        Mode::Echo => serve(&opts, tls, Echo),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rookery: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Installs the logger: `-v`/`-q` set the level, `RUST_LOG` overrides it.
/// Pins glibc's mmap threshold at 128 KiB, its documented default.
///
/// Left dynamic (glibc's default), the threshold and with it the trim
/// threshold double each time a large mmapped block is freed, and the
/// server frees such blocks by design: a slab or table grown for a burst
/// of connections is given back when the burst ends. After one such free
/// the heap's freed top is no longer returned to the kernel, and under
/// churn RSS steps up by about 1.5 MiB at random rounds (200,000
/// connections in rounds of 10,000 ended at 4,372 to 6,140 KiB; with the
/// threshold fixed, 4,112 to 4,420 KiB, against uWebSockets' 4,220 to
/// 4,296). Setting the threshold turns the dynamic rule off (mallopt(3)).
///
/// Only the `rookery` program does this: for the library and the C API
/// the allocator's tuning is the embedding program's choice
/// (`GLIBC_TUNABLES=glibc.malloc.mmap_threshold=131072` does the same
/// without code).
#[allow(unsafe_code)] // mallopt, below.
fn fix_malloc_trim_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes two plain ints and is called before any
    // thread exists; M_MMAP_THRESHOLD with 128 KiB is within its range
    // (at most 32 MiB on 64-bit). Its result (1 on success) only tells
    // whether glibc took the value; nothing depends on it.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

fn init_logging(verbosity: Verbosity) {
    let level = match verbosity {
        Verbosity::Errors => log::LevelFilter::Error,
        Verbosity::Quiet => log::LevelFilter::Warn,
        Verbosity::Normal => log::LevelFilter::Info,
        Verbosity::Verbose => log::LevelFilter::Debug,
        Verbosity::Trace => log::LevelFilter::Trace,
    };
    let journal = stderr_is_journal();
    env_logger::Builder::new()
        .filter_level(level)
        .parse_env("RUST_LOG")
        .format(move |out, record| {
            let mut line = String::with_capacity(96);
            format_line(
                &mut line,
                journal,
                SystemTime::now(),
                record.level(),
                record.args(),
            );
            out.write_all(line.as_bytes())
        })
        .init();
}

/// Whether stderr is a stream to the systemd journal, which stamps every
/// line itself: systemd sets `JOURNAL_STREAM` to the device and inode of
/// that stream, and the check that stderr is still it keeps a child whose
/// stderr was redirected elsewhere (which inherits the variable) stamping.
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;

    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stderr) = io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(meta) = std::fs::File::from(stderr).metadata() else {
        return false;
    };
    value
        .to_str()
        .is_some_and(|v| names_stream(v, meta.dev(), meta.ino()))
}

/// Whether a `JOURNAL_STREAM` value (`DEVICE:INODE`, decimal) names the
/// stream with this device and inode.
fn names_stream(value: &str, dev: u64, ino: u64) -> bool {
    match value.split_once(':') {
        Some((d, i)) => d.parse() == Ok(dev) && i.parse() == Ok(ino),
        None => false,
    }
}

/// One log line, newline included: `[2026-12-02T05:00:43.123Z INFO ] text`,
/// or for the journal `<6>[INFO ] text` (the journal reads the `<N>` syslog
/// priority and stamps the line itself). Control characters in the text are
/// escaped, so that nothing logged can start a line of its own or reach the
/// terminal as an escape sequence.
fn format_line(
    line: &mut String,
    journal: bool,
    now: SystemTime,
    level: log::Level,
    args: &std::fmt::Arguments<'_>,
) {
    use std::fmt::Write as _;

    if journal {
        let priority = match level {
            log::Level::Error => 3,
            log::Level::Warn => 4,
            log::Level::Info => 6,
            log::Level::Debug | log::Level::Trace => 7,
        };
        let _ = write!(line, "<{priority}>[{level:<5}] ");
    } else {
        line.push('[');
        push_timestamp(line, now);
        let _ = write!(line, " {level:<5}] ");
    }
    let text = match args.as_str() {
        Some(text) => std::borrow::Cow::Borrowed(text),
        None => std::borrow::Cow::Owned(args.to_string()),
    };
    for c in text.chars() {
        push_escaped(line, c);
    }
    line.push('\n');
}

/// Pushes `c`, or for a control character its escape: `\n`, `\r`, `\t`,
/// `\x1b`, `\u{9b}`.
fn push_escaped(out: &mut String, c: char) {
    use std::fmt::Write as _;

    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if c.is_ascii_control() => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if c.is_control() => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

/// Pushes `now` as UTC to the millisecond: `2026-12-02T05:00:43.123Z`
/// (a clock before 1970 shows as 1970-01-01).
fn push_timestamp(out: &mut String, now: SystemTime) {
    use std::fmt::Write as _;

    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    );
}

/// The proleptic Gregorian date (year, month 1–12, day 1–31) of a day
/// counted from 1970-01-01, after Howard Hinnant's `civil_from_days`: the
/// year is taken to begin on 1 March, so that the leap day comes last, and
/// days are split into 400-year eras of 146,097 days.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Days from 0000-03-01 to 1970-01-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097; // day of the era, 0..=146_096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the March year
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = era * 400 + yoe + u64::from(month <= 2);
    (year, month, day)
}

/// The certificate and key of `--tls-cert`/`--tls-key`, if given; a pair
/// that does not load is one line naming the flag of the file at fault.
#[cfg(feature = "tls")]
fn load_tls(opts: &Options) -> Result<Option<rookery::tls::TlsConfig>, String> {
    let Some((cert, key)) = &opts.tls else {
        return Ok(None);
    };
    rookery::tls::TlsConfig::from_pem_files(cert, key)
        .map(Some)
        .map_err(|e| {
            let flag = match e.file() {
                rookery::tls::PemFile::Certificate => "--tls-cert",
                rookery::tls::PemFile::Key => "--tls-key",
            };
            format!("{flag}: {e}")
        })
}

#[cfg(feature = "tls")]
type Tls = Option<rookery::tls::TlsConfig>;
#[cfg(not(feature = "tls"))]
type Tls = ();

fn serve<H: Handler>(opts: &Options, tls: Tls, handler: H) -> io::Result<()> {
    let listener = startup::listener(&opts.listen)?;
    let handler = startup::notified(handler)?;
    let mut server = Server::from_listener(listener, opts.config.clone(), handler)?;
    #[cfg(feature = "tls")]
    if let Some(tls) = tls {
        server.set_tls(tls);
    }
    // Also without TLS: a reload is then only announced to the service
    // manager, and SIGHUP does not end the server.
    rookery::reload_on_sighup(server.reload_handle())?;
    #[cfg(not(feature = "tls"))]
    let () = tls;
    // With TLS, SIGHUP re-reads the pair; without, it is logged and
    // ignored: its default action would end the server without a close
    // frame to anyone (e.g. when the terminal it was started from closes).
    rookery::reload_on_sighup(server.reload_handle())?;
    #[cfg(feature = "redis")]
    if let Some(url) = &opts.redis {
        // Checked when the flags were read; resolved again here.
        match rookery::cluster::RedisConfig::from_url(url) {
            Ok(mut redis) => {
                redis.prefix = opts.redis_prefix.clone();
                redis.max_backlog = opts.config.max_backlog;
                redis.max_message = usize::try_from(opts.config.max_message).unwrap_or(usize::MAX);
                // Each room's stream in Redis keeps what its history keeps.
                redis.history = opts.history;
                server.set_redis(redis);
            }
            Err(e) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("--redis: {e}"),
                ))
            }
        }
    }
    rookery::stop_on_signals(server.stop_handle())?;
    let addr = server.local_addr();
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "listening on {addr}")?;
    stdout.flush()?;
    drop(stdout);
    log::info!("{}", serving_line(opts, addr));
    server.run()?;
    log::info!("stopped");
    Ok(())
}

/// The start-up line with URLs one can open: for a wildcard address
/// (`0.0.0.0`, `[::]`) the loopback one, which always works on this host,
/// with a note that every interface listens.
fn serving_line(opts: &Options, addr: SocketAddr) -> String {
    let (host, all) = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST.to_string(), true),
        IpAddr::V6(ip) if ip.is_unspecified() => (format!("[{}]", Ipv6Addr::LOCALHOST), true),
        IpAddr::V4(ip) => (ip.to_string(), false),
        IpAddr::V6(ip) => (format!("[{ip}]"), false),
    };
    let authority = format!("{host}:{}", addr.port());
    let secure = opts.tls.is_some();
    let (ws, http) = if secure {
        ("wss", "https")
    } else {
        ("ws", "http")
    };
    let mut line = format!(
        "serving {} on {ws}://{authority}{}",
        match opts.mode {
            Mode::Chat => "chat",
            Mode::Echo => "echo",
        },
        opts.config.path
    );
    if all {
        line.push_str(" (all interfaces)");
    }
    if opts.config.deflate {
        line.push_str(" with permessage-deflate");
    }
    if opts.mode == Mode::Chat && opts.page {
        line.push_str(&format!(", page at {http}://{authority}/"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn stamp(secs: u64, millis: u64) -> String {
        let mut out = String::new();
        push_timestamp(
            &mut out,
            UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis),
        );
        out
    }

    #[test]
    fn civil_dates_of_known_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(58), (1970, 2, 28));
        assert_eq!(civil_from_days(59), (1970, 3, 1), "1970 is not a leap year");
        assert_eq!(civil_from_days(365), (1971, 1, 1));
        assert_eq!(civil_from_days(789), (1972, 2, 29), "1972 is");
        assert_eq!(civil_from_days(10_956), (1999, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29), "2000 is (÷400)");
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(19_783), (2024, 3, 1));
        assert_eq!(civil_from_days(20_423), (2025, 12, 1));
        assert_eq!(civil_from_days(47_540), (2100, 2, 28));
        assert_eq!(civil_from_days(47_541), (2100, 3, 1), "2100 is not (÷100)");
        assert_eq!(civil_from_days(2_932_896), (9999, 12, 31));
    }

    #[test]
    fn civil_dates_round_trip_day_by_day() {
        // Every day from 1970 to 2400 follows the one before it.
        let mut prev = civil_from_days(0);
        for days in 1..=157_000 {
            let (y, m, d) = civil_from_days(days);
            let (py, pm, pd) = prev;
            let leap = py % 4 == 0 && (py % 100 != 0 || py % 400 == 0);
            let month_len = match pm {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            let want = if pd < month_len {
                (py, pm, pd + 1)
            } else if pm < 12 {
                (py, pm + 1, 1)
            } else {
                (py + 1, 1, 1)
            };
            assert_eq!((y, m, d), want, "day {days}");
            prev = (y, m, d);
        }
    }

    #[test]
    fn timestamps_are_utc_to_the_millisecond() {
        assert_eq!(stamp(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(stamp(951_782_400, 7), "2000-02-29T00:00:00.007Z");
        assert_eq!(stamp(1_709_251_199, 999), "2024-02-29T23:59:59.999Z");
        assert_eq!(stamp(2_147_483_648, 0), "2038-01-19T03:14:08.000Z");
        assert_eq!(stamp(1_796_187_643, 123), "2026-12-02T05:00:43.123Z");
        let mut before = String::new();
        push_timestamp(&mut before, UNIX_EPOCH - Duration::from_secs(1));
        assert_eq!(before, "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn lines_are_stamped_unless_for_the_journal_and_never_split() {
        let at = UNIX_EPOCH + Duration::from_millis(1_796_187_643_123);
        let mut line = String::new();
        format_line(&mut line, false, at, log::Level::Info, &format_args!("hi"));
        assert_eq!(line, "[2026-12-02T05:00:43.123Z INFO ] hi\n");

        let mut line = String::new();
        format_line(&mut line, true, at, log::Level::Warn, &format_args!("hi"));
        assert_eq!(line, "<4>[WARN ] hi\n");

        let mut line = String::new();
        let hostile = "a\n[INFO ] forged\r\x1b[31m\u{9b}\tz";
        format_line(
            &mut line,
            false,
            at,
            log::Level::Debug,
            &format_args!("{hostile}"),
        );
        assert_eq!(
            line,
            "[2026-12-02T05:00:43.123Z DEBUG] a\\n[INFO ] forged\\r\\x1b[31m\\u{9b}\\tz\n"
        );
    }

    #[test]
    fn the_serving_line_names_addresses_one_can_open() {
        let opts = |args: &[&str]| match cli::parse(args.iter().map(std::ffi::OsString::from)) {
            Ok(Command::Run(opts)) => *opts,
            other => panic!("{other:?}"),
        };
        let line = |args: &[&str], addr: &str| serving_line(&opts(args), addr.parse().unwrap());
        assert_eq!(
            line(&[], "127.0.0.1:1984"),
            "serving chat on ws://127.0.0.1:1984/chat, page at http://127.0.0.1:1984/"
        );
        assert_eq!(
            line(&[], "0.0.0.0:1984"),
            "serving chat on ws://127.0.0.1:1984/chat (all interfaces), page at http://127.0.0.1:1984/"
        );
        assert_eq!(
            line(&["--no-page", "--path", "/ws"], "[::]:9"),
            "serving chat on ws://[::1]:9/ws (all interfaces)"
        );
        assert_eq!(
            line(&["--mode", "echo"], "192.168.1.2:80"),
            "serving echo on ws://192.168.1.2:80/chat"
        );
        assert_eq!(
            line(&["--mode", "echo"], "[fe80::1]:80"),
            "serving echo on ws://[fe80::1]:80/chat"
        );
        #[cfg(feature = "deflate")]
        assert_eq!(
            line(&["--deflate"], "0.0.0.0:1984"),
            "serving chat on ws://127.0.0.1:1984/chat (all interfaces) with permessage-deflate, page at http://127.0.0.1:1984/"
        );
    }

    #[test]
    fn journal_stream_must_name_our_stderr() {
        assert!(names_stream("64769:1234", 64769, 1234));
        assert!(!names_stream("64769:1235", 64769, 1234));
        assert!(!names_stream("1:1234", 64769, 1234));
        assert!(!names_stream("", 64769, 1234));
        assert!(!names_stream("64769", 64769, 1234));
        assert!(!names_stream("x:y", 64769, 1234));
    }
}
