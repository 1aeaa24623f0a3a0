//! The command's logger: lines on stderr, stamped to the millisecond in
//! UTC (or, for the systemd journal, with a syslog priority and no stamp),
//! control characters escaped. `-v`/`-q` set the level; `RUST_LOG`, when
//! set, overrides it, with env_logger's directives (`debug`,
//! `rookery::chat=trace,warn`, `off`) but no `/regex` suffix.
//!
//! A few dozen lines instead of env_logger (kept for the C API's stderr
//! route): the CLI is 14.6 KB smaller without it.

use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use log::{LevelFilter, Log, Metadata, Record};

use crate::cli::Verbosity;

/// Installs the logger: `-v`/`-q` set the level, `RUST_LOG` overrides it.
pub(crate) fn install(verbosity: Verbosity) {
    let level = match verbosity {
        Verbosity::Errors => LevelFilter::Error,
        Verbosity::Quiet => LevelFilter::Warn,
        Verbosity::Normal => LevelFilter::Info,
        Verbosity::Verbose => LevelFilter::Debug,
        Verbosity::Trace => LevelFilter::Trace,
    };
    let spec = std::env::var("RUST_LOG").unwrap_or_default();
    let filter = Filter::parse(level, &spec);
    let max = filter.max();
    let logger = Stderr {
        filter,
        journal: stderr_is_journal(),
    };
    // Leaked: the logger lives as long as the process. set_logger only
    // fails if a logger is installed already: then that one logs.
    if log::set_logger(Box::leak(Box::new(logger))).is_ok() {
        log::set_max_level(max);
    }
}

/// Which levels to log, for all targets and for those under a path.
#[derive(Debug, PartialEq)]
struct Filter {
    /// The level of a target no directive names.
    default: LevelFilter,
    /// `(path, level)`: a target that is the path or under it (by prefix,
    /// as env_logger matches) gets the level of the longest such path.
    paths: Vec<(String, LevelFilter)>,
}

impl Filter {
    /// The filter of `level` with `spec`'s directives over it: a bare
    /// level replaces `level`, `path=level` and `path` (everything under
    /// it) add a path. A directive that does not parse is ignored, as
    /// env_logger ignores it.
    fn parse(level: LevelFilter, spec: &str) -> Filter {
        let mut filter = Filter {
            default: level,
            paths: Vec::new(),
        };
        for directive in spec.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            let (path, level) = match directive.split_once('=') {
                Some((path, level)) => match level.trim().parse() {
                    Ok(level) => (Some(path.trim()), level),
                    Err(_) => continue,
                },
                None => match directive.parse() {
                    Ok(level) => (None, level),
                    Err(_) => (Some(directive), LevelFilter::Trace),
                },
            };
            match path {
                None => filter.default = level,
                Some(path) => {
                    filter.paths.retain(|(p, _)| p != path);
                    filter.paths.push((path.to_owned(), level));
                }
            }
        }
        // Longest first, so that the first match is the most specific.
        filter
            .paths
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        filter
    }

    /// The level for a target.
    fn level(&self, target: &str) -> LevelFilter {
        self.paths
            .iter()
            .find(|(p, _)| target.starts_with(p.as_str()))
            .map_or(self.default, |&(_, level)| level)
    }

    /// The most verbose level any target gets.
    fn max(&self) -> LevelFilter {
        self.paths
            .iter()
            .map(|&(_, level)| level)
            .fold(self.default, Ord::max)
    }
}

/// Lines on stderr, each written whole.
struct Stderr {
    filter: Filter,
    journal: bool,
}

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.filter.level(metadata.target())
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut line = String::with_capacity(96);
        format_line(
            &mut line,
            self.journal,
            SystemTime::now(),
            record.level(),
            record.args(),
        );
        // Nowhere to report a failed write to stderr.
        let _ = io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
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
    fn journal_stream_must_name_our_stderr() {
        assert!(names_stream("64769:1234", 64769, 1234));
        assert!(!names_stream("64769:1235", 64769, 1234));
        assert!(!names_stream("1:1234", 64769, 1234));
        assert!(!names_stream("", 64769, 1234));
        assert!(!names_stream("64769", 64769, 1234));
        assert!(!names_stream("x:y", 64769, 1234));
    }

    #[test]
    fn rust_log_directives_set_levels_by_target() {
        use LevelFilter::*;
        let f = Filter::parse(Info, "");
        assert_eq!((f.level("rookery::chat"), f.max()), (Info, Info));
        let f = Filter::parse(Info, "debug");
        assert_eq!((f.level("rookery::chat"), f.max()), (Debug, Debug));
        let f = Filter::parse(Debug, "off");
        assert_eq!((f.level("rookery"), f.max()), (Off, Off));
        let f = Filter::parse(Warn, "rookery::server=trace, rookery=error");
        assert_eq!(f.level("rookery::server::core"), Trace);
        assert_eq!(f.level("rookery::chat"), Error);
        assert_eq!(f.level("polling"), Warn);
        assert_eq!(f.max(), Trace);
        // A bare path is everything under it; a later directive for the
        // same path wins; what does not parse changes nothing.
        let f = Filter::parse(Info, "rookery::chat,rookery::chat=warn,x=loud,,=");
        assert_eq!(f.level("rookery::chat"), Warn);
        assert_eq!(f.level("x"), Info);
        let f = Filter::parse(Info, "rookery::echo");
        assert_eq!(f.level("rookery::echo"), Trace);
        assert_eq!(f.level("rookery::chat"), Info);
    }
}
