//! The command line of the `rookery` binary: flags, their values, and the
//! help text. Hand-written rather than built on an argument-parsing crate:
//! fourteen flags do not justify the tens of kilobytes such a crate adds to
//! a binary meant for small boards.

use std::ffi::OsString;
use std::fmt;
use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::time::Duration;

use rookery::proto::rate::Rate;
use rookery::Config;

/// Which handler the binary runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The chat broadcaster (default).
    Chat,
    /// Every message back to its sender.
    Echo,
}

/// How much to log, before `RUST_LOG` has its say: each `-v` is one step
/// up from the default, each `-q` one step down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verbosity {
    /// Errors only (`-qq`).
    Errors,
    /// Warnings and errors (`-q`).
    Quiet,
    /// Info and above (default).
    Normal,
    /// Debug and above (`-v`).
    Verbose,
    /// Everything (`-vv`, or more `v`s).
    Trace,
}

impl Verbosity {
    /// The level for `louder` `-v`s and `quieter` `-q`s, which count
    /// against each other; past either end it stays there.
    fn from_counts(louder: u32, quieter: u32) -> Verbosity {
        match i64::from(louder) - i64::from(quieter) {
            i64::MIN..=-2 => Verbosity::Errors,
            -1 => Verbosity::Quiet,
            0 => Verbosity::Normal,
            1 => Verbosity::Verbose,
            2.. => Verbosity::Trace,
        }
    }
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Options {
    /// Where to listen.
    pub(crate) listen: String,
    /// The handler.
    pub(crate) mode: Mode,
    /// The chat's welcome text.
    pub(crate) welcome: String,
    /// Whether the chat relays binary messages instead of refusing them.
    pub(crate) allow_binary: bool,
    /// Whether `GET /` serves the chat page.
    pub(crate) page: bool,
    /// How many messages each chat room keeps for newcomers (0: none).
    pub(crate) history: usize,
    /// The most chat rooms at once.
    pub(crate) max_rooms: usize,
    /// How long a chat room with history but no members is kept.
    pub(crate) room_ttl: Duration,
    /// Whether `GET /metrics` serves the Prometheus metrics.
    pub(crate) metrics: bool,
    /// Logging level.
    pub(crate) verbosity: Verbosity,
    /// The server's limits and timers.
    pub(crate) config: Config,
    /// The TLS certificate (chain) and key, PEM: https and wss.
    pub(crate) tls: Option<(PathBuf, PathBuf)>,
    /// `--redis URL`: topics across nodes (feature `redis`).
    pub(crate) redis: Option<String>,
    /// `--redis-prefix`: channels are `PREFIX:room:R`.
    pub(crate) redis_prefix: String,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    /// Serve with these options.
    Run(Box<Options>),
    /// Print the help text.
    Help,
    /// Print the version.
    Version,
}

/// A command-line mistake; its `Display` is the one line printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CliError {
    /// A flag nobody knows.
    UnknownFlag(String),
    /// A letter nobody knows in a group of short flags (`-vx`).
    UnknownShortFlag {
        /// The letter.
        flag: char,
        /// The whole group.
        group: String,
    },
    /// A flag that needs a value came last.
    MissingValue(&'static str),
    /// A flag's value is not acceptable.
    InvalidValue {
        /// The flag.
        flag: &'static str,
        /// The value given.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A flag's value is refused, for a reason of its own.
    Refused {
        /// The flag.
        flag: &'static str,
        /// The value given.
        value: String,
        /// Why.
        why: String,
    },
    /// An argument that is not a flag.
    UnexpectedArgument(String),
    /// A flag that takes no value was given one (`--no-page=x`).
    UnexpectedValue(&'static str),
    /// A flag for a capability this build does not have.
    NotBuiltIn {
        /// The flag.
        flag: &'static str,
        /// The cargo feature it needs.
        feature: &'static str,
    },
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::UnknownFlag(flag) => write!(f, "unknown flag '{}' (see --help)", shown(flag)),
            CliError::UnknownShortFlag { flag, group } if group.chars().count() == 2 => {
                write!(f, "unknown flag '-{flag}' (see --help)")
            }
            CliError::UnknownShortFlag { flag, group } => {
                write!(
                    f,
                    "unknown flag '-{flag}' in '{}' (see --help)",
                    shown(group)
                )
            }
            CliError::MissingValue(flag) => write!(f, "flag {flag} needs a value (see --help)"),
            CliError::InvalidValue {
                flag,
                value,
                expected,
            } => write!(
                f,
                "invalid value '{}' for {flag}: expected {expected}",
                shown(value)
            ),
            CliError::Refused { flag, value, why } => {
                write!(f, "invalid value '{}' for {flag}: {why}", shown(value))
            }
            CliError::UnexpectedArgument(arg) => {
                write!(f, "unexpected argument '{}' (see --help)", shown(arg))
            }
            CliError::UnexpectedValue(flag) => write!(f, "flag {flag} takes no value"),
            CliError::NotBuiltIn { flag, feature } => write!(
                f,
                "flag {flag} needs a build with the {feature} feature (cargo build --release --features {feature})"
            ),
        }
    }
}

impl std::error::Error for CliError {}

/// `text` with its control characters escaped (`\n`, `\u{1b}`), so that a
/// mistake is always reported on one line.
fn shown(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            c if c.is_control() => c.escape_debug().to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// The default listening address.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:1984";

/// The default welcome text.
pub(crate) const DEFAULT_WELCOME: &str = "Welcome to Rookery Chat!";

/// One flag of the command line, as `--help` and the man page
/// (`docs/rookery.1`, see `man.rs`) both show it: adding a flag is one
/// entry here (and its parsing below).
pub(crate) struct Flag {
    /// The flag's names: `--listen`, or `-v, --verbose`.
    pub(crate) names: &'static str,
    /// Its value's placeholder (`ADDR:PORT`), or `""` for a switch.
    pub(crate) arg: &'static str,
    /// Its default, or `""` when there is none to show.
    pub(crate) default: &'static str,
    /// What it does, one line per line of `--help` (the man page fills
    /// them into one paragraph).
    pub(crate) help: &'static [&'static str],
}

/// Every flag, in the order `--help` lists them.
pub(crate) const FLAGS: &[Flag] = &[
    Flag {
        names: "--listen",
        arg: "ADDR:PORT",
        default: "127.0.0.1:1984",
        help: &["address to listen on (port 0 picks one)"],
    },
    Flag {
        names: "--path",
        arg: "PATH",
        default: "/chat",
        help: &[
            "WebSocket path",
            "(/ only with --no-page or --mode echo; no",
            "trailing / otherwise: rooms are PATH/NAME)",
        ],
    },
    Flag {
        names: "--mode",
        arg: "chat|echo",
        default: "chat",
        help: &["chat: relay every text to everyone; echo: back to sender"],
    },
    Flag {
        names: "--welcome",
        arg: "TEXT",
        default: "Welcome to Rookery Chat!",
        help: &["text sent to each new chat connection"],
    },
    Flag {
        names: "--ping-interval",
        arg: "DUR",
        default: "5s",
        help: &["ping every open connection this often", "(0: no pings)"],
    },
    Flag {
        names: "--idle-timeout",
        arg: "DUR",
        default: "15s",
        help: &[
            "close (1001) connections silent this long",
            "(0: silence never closes a connection)",
        ],
    },
    Flag {
        names: "--handshake-timeout",
        arg: "DUR",
        default: "5s",
        help: &[
            "drop connections that have not upgraded",
            "by then (0: no limit; not for the open internet)",
        ],
    },
    Flag {
        names: "--close-timeout",
        arg: "DUR",
        default: "5s",
        help: &[
            "how long a peer may take to answer our",
            "close frame, and the most a shutdown waits (0: a",
            "shutdown sends its close frames and exits without",
            "waiting; any other close still waits 1s)",
        ],
    },
    Flag {
        names: "--max-message",
        arg: "SIZE",
        default: "1MiB",
        help: &["largest message accepted, else close 1009"],
    },
    Flag {
        names: "--max-backlog",
        arg: "SIZE",
        default: "1MiB",
        help: &["most bytes queued per client, else close 1008"],
    },
    Flag {
        names: "--max-connections",
        arg: "N",
        default: "1024",
        help: &["more connections get 503"],
    },
    Flag {
        names: "--max-connections-per-ip",
        arg: "N",
        default: "0",
        help: &[
            "more connections from one IP address get 503,",
            "handshakes included (0: no limit)",
        ],
    },
    Flag {
        names: "--rate-limit",
        arg: "N[/s][:BURST]",
        default: "0",
        help: &[
            "close (1008) a connection that sends more than N",
            "messages a second, bursts up to BURST (default N)",
            "(0: no limit)",
        ],
    },
    Flag {
        names: "--rate-limit-bytes",
        arg: "SIZE[/s][:BURST]",
        default: "0",
        help: &[
            "the same over message bytes, compressed",
            "ones counted inflated; BURST (a SIZE, default SIZE)",
            "is also the largest message that passes",
        ],
    },
    Flag {
        names: "--allow-origin",
        arg: "ORIGIN",
        default: "any",
        help: &[
            "accept browsers only from ORIGIN (repeatable; else 403)",
            "ORIGIN: scheme://host[:port], scheme http or https, no path",
            "(e.g. https://a.example); * allows any",
        ],
    },
    Flag {
        names: "--allow-binary",
        arg: "",
        default: "",
        help: &["relay binary messages instead of closing with 1003"],
    },
    Flag {
        names: "--no-page",
        arg: "",
        default: "",
        help: &["do not serve the chat page at GET /"],
    },
    Flag {
        names: "--history",
        arg: "N",
        default: "0",
        help: &[
            "messages each chat room keeps for newcomers",
            "(0: none; at most 100000; memory: at most",
            "N x --max-message per room)",
        ],
    },
    Flag {
        names: "--max-rooms",
        arg: "N",
        default: "1024",
        help: &[
            "an upgrade that would create one more room gets 503",
            "(PATH joins the default room, never refused; PATH/NAME",
            "room NAME; a room without members makes way first)",
        ],
    },
    Flag {
        names: "--room-ttl",
        arg: "DUR",
        default: "1h",
        help: &[
            "forget a room with history but no members after DUR",
            "(0: only when a new room needs its place)",
        ],
    },
    Flag {
        names: "--metrics",
        arg: "",
        default: "",
        help: &["serve Prometheus metrics at GET /metrics"],
    },
    Flag {
        names: "--deflate",
        arg: "",
        default: "",
        help: &[
            "take browsers' permessage-deflate offers: messages",
            "compressed one by one, one compressor for all",
            "(builds with the deflate feature)",
        ],
    },
    Flag {
        names: "--tls-cert",
        arg: "FILE",
        default: "",
        help: &[
            "TLS certificate (chain), PEM: https and wss on the",
            "listening port (with --tls-key; builds with the",
            "tls feature; SIGHUP re-reads both files)",
        ],
    },
    Flag {
        names: "--tls-key",
        arg: "FILE",
        default: "",
        help: &["its private key, PEM (PKCS#8, PKCS#1 or SEC1)"],
    },
    Flag {
        names: "--redis",
        arg: "URL",
        default: "",
        help: &[
            "share rooms with the other nodes on this Redis",
            "(redis://[[USER]:PASSWORD@]HOST[:PORT][/DB];",
            "builds with the redis feature; see docs/cluster.md)",
        ],
    },
    Flag {
        names: "--redis-prefix",
        arg: "PREFIX",
        default: "rookery",
        help: &["Redis channels are PREFIX:room:R"],
    },
    Flag {
        names: "-v, --verbose",
        arg: "",
        default: "",
        help: &["more logging: -v debug, -vv (or more) trace"],
    },
    Flag {
        names: "-q, --quiet",
        arg: "",
        default: "",
        help: &[
            "less logging: -q warnings and errors, -qq errors only",
            "(each -v and -q counts against the other: -vq is the default)",
        ],
    },
    Flag {
        names: "-h, --help",
        arg: "",
        default: "",
        help: &["print this help"],
    },
    Flag {
        names: "-V, --version",
        arg: "",
        default: "",
        help: &["print the version"],
    },
];

/// What `--help` says after the flags, and the man page in its DETAILS
/// section: paragraphs separated by blank lines.
pub(crate) const NOTES: &str = "\
DUR is a number with a unit: 250ms, 5s, 2m, 1h, or 0 (what 0 means is
given for each flag above).
SIZE is bytes (65536), or a number with KiB, MiB, GiB (powers of 1024; also
K, M, G) or KB, MB, GB (powers of 1000): 64KiB, 1MiB, 10MB.

Logs go to stderr, each line stamped with the UTC time (not when stderr is
the systemd journal, which stamps lines itself).
RUST_LOG, when set, overrides -v and -q (e.g. RUST_LOG=debug).

SIGINT or SIGTERM stops accepting, closes every connection with 1001, waits
at most --close-timeout for their answers and exits 0; a second SIGINT or
SIGTERM meanwhile exits at once with status 130.
SIGHUP re-reads the TLS certificate and key; without TLS it is logged and
ignored (it never stops the server).

Under systemd: a listening socket passed by socket activation (LISTEN_PID,
LISTEN_FDS; the one named rookery, else the first) is served instead of
--listen; with NOTIFY_SOCKET the server reports READY=1 once serving,
RELOADING=1 and READY=1 around SIGHUP, STOPPING=1 at SIGTERM, and WATCHDOG=1
every half of WATCHDOG_USEC from its loop.
";

/// The one-line summary, first in `--help` and the man page's NAME.
pub(crate) const SUMMARY: &str = "a single-threaded WebSocket chat server (RFC 6455)";

/// The `--help` text: the summary, [`FLAGS`] in two columns, [`NOTES`].
pub(crate) fn help() -> String {
    use std::fmt::Write as _;

    let mut out = format!("rookery — {SUMMARY}\n\nUSAGE:\n    rookery [OPTIONS]\n\nOPTIONS:\n");
    for flag in FLAGS {
        let left = match flag.arg {
            "" => flag.names.to_string(),
            arg => format!("{} {arg}", flag.names),
        };
        let mut lines = flag.help.iter();
        let first = lines.next().copied().unwrap_or_default();
        if left.chars().count() > 25 {
            // A long flag takes a line of its own; its help starts below.
            let _ = writeln!(out, "    {left}");
            let _ = write!(out, "{:30}{first}", "");
            if !flag.default.is_empty() {
                let _ = write!(out, "  [default: {}]", flag.default);
            }
        } else if flag.default.is_empty() {
            let _ = write!(out, "    {left:<25} {first}");
        } else {
            // Defaults line up where the first line is short enough.
            let gap = if first.chars().count() < 41 {
                " "
            } else {
                "  "
            };
            let _ = write!(
                out,
                "    {left:<25} {first:<41}{gap}[default: {}]",
                flag.default
            );
        }
        out.push('\n');
        for line in lines {
            let _ = writeln!(out, "{:30}{line}", "");
        }
    }
    out.push('\n');
    out.push_str(NOTES);
    out
}

/// Parses a duration: `250ms`, `5s`, `2m`, `1h`, or `0`.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let ms = match unit {
        "ms" => n,
        "s" => n.checked_mul(1000)?,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

/// Parses a size: `65536`, `64KiB`, `1MiB`, `2GiB`, `10KB`, `1MB`.
pub(crate) fn parse_size(text: &str) -> Option<u64> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let factor: u64 = match unit {
        "" | "B" => 1,
        "KiB" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(factor)
}

/// Parses a rate: `N`, `N/s`, `N:BURST` or `N/s:BURST`, each number read
/// by `number` (a count, or a SIZE); `0` alone is no limit (`Ok(None)`).
/// The burst defaults to `N`.
fn parse_rate(text: &str, number: fn(&str) -> Option<u64>) -> Result<Option<Rate>, ()> {
    if text == "0" {
        return Ok(None);
    }
    let (average, burst) = match text.split_once(':') {
        Some((average, burst)) => (average, Some(burst)),
        None => (text, None),
    };
    let average = average.strip_suffix("/s").unwrap_or(average);
    let per_second = number(average).ok_or(())?;
    let burst = match burst {
        Some(burst) => number(burst).ok_or(())?,
        None => per_second,
    };
    Rate::new(per_second, burst).map(Some).ok_or(())
}

/// Why `path` cannot be a WebSocket path, if it cannot: it must be
/// absolute, and free of anything that would need escaping in a URL or in
/// the chat page's script.
fn path_problem(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return Some("expected a path starting with '/', e.g. /chat".into());
    }
    // Rooms are PATH/NAME: under `/chat/` they would be `/chat//NAME`,
    // which no client asks for. Refused rather than trimmed, so that the
    // URL clients are given is the one the server answers.
    if path.len() > 1 && path.ends_with('/') {
        return Some(format!(
            "a path cannot end with '/' (rooms are PATH/NAME): write '{}'",
            match path.trim_end_matches('/') {
                "" => "/".to_string(),
                trimmed => shown(trimmed),
            }
        ));
    }
    let bad = path
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "/-._~!$&'()*+,;=:@%".contains(c)))?;
    Some(match bad {
        '?' => "a path cannot hold '?': what follows it is a query, which is not part of the path".into(),
        '#' => "a path cannot hold '#': what follows it is a fragment, which never reaches the server".into(),
        ' ' => "a path cannot hold spaces".into(),
        c => format!(
            "a path cannot hold '{}' (letters, digits and - . _ ~ ! $ & ' ( ) * + , ; = : @ % only)",
            shown(&c.to_string())
        ),
    })
}

/// An `--allow-origin` value as browsers send it in `Origin`, or why it
/// can never match one: `*` (any origin), or `scheme://host[:port]` with the
/// scheme `http` or `https`, nothing after the port, and the host in ASCII.
/// The result is lowercase and without the scheme's default port, as
/// browsers write it (`HTTPS://A.Example:443` is `https://a.example`).
fn parse_origin(value: &str) -> Result<String, String> {
    const EXAMPLE: &str = "e.g. https://a.example or http://192.168.1.2:8080, or * for any";
    if value == "*" {
        return Ok(value.to_string());
    }
    let lower = value.to_ascii_lowercase();
    let Some((scheme, rest)) = lower.split_once("://") else {
        return Err(format!(
            "an origin starts with http:// or https:// ({EXAMPLE})"
        ));
    };
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        _ => {
            return Err(format!(
                "an origin's scheme is http or https, that of the page a browser shows ({EXAMPLE})"
            ))
        }
    };
    if let Some(at) = rest.find(['/', '?', '#']) {
        return Err(format!(
            "an origin has no path (nor anything after the host and port): write '{}'",
            shown(&value[..scheme.len() + 3 + at])
        ));
    }
    if rest.contains('@') {
        return Err(format!("an origin holds no user name ({EXAMPLE})"));
    }
    let (host, port) = if rest.starts_with('[') {
        const V6: &str = "'[' opens an IPv6 address, e.g. http://[::1]:8080";
        let end = rest.find(']').ok_or(V6)?;
        let (host, tail) = rest.split_at(end + 1);
        if host[1..end].parse::<std::net::Ipv6Addr>().is_err() {
            return Err(V6.into());
        }
        match tail {
            "" => (host, None),
            _ => (host, Some(tail.strip_prefix(':').ok_or(V6)?)),
        }
    } else {
        match rest.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    if !host.starts_with('[') {
        let label_ok = |l: &str| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !host.split('.').all(label_ok) {
            return Err(format!(
                "'{}' is not a host name (ASCII letters, digits, '-' and dots; an international name in its xn-- form)",
                shown(&value[scheme.len() + 3..scheme.len() + 3 + host.len()])
            ));
        }
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => return Err(format!("'{}' is not a port (1 to 65535)", shown(p))),
        },
    };
    Ok(match port {
        Some(n) if n != default_port => format!("{scheme}://{host}:{n}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// The largest `--history`: beyond it, a room's memory bound
/// (`N × --max-message`) stops meaning anything on a small board.
const MAX_HISTORY: usize = 100_000;

/// The flags that take a value, by their names.
const VALUE_FLAGS: &[&str] = &[
    "--listen",
    "--path",
    "--mode",
    "--welcome",
    "--ping-interval",
    "--idle-timeout",
    "--handshake-timeout",
    "--close-timeout",
    "--max-message",
    "--max-backlog",
    "--max-connections",
    "--max-connections-per-ip",
    "--rate-limit",
    "--rate-limit-bytes",
    "--allow-origin",
    "--history",
    "--max-rooms",
    "--room-ttl",
    "--tls-cert",
    "--tls-key",
    "--redis",
    "--redis-prefix",
];

/// Parses the arguments after the program name.
pub(crate) fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, CliError> {
    let mut opts = Options {
        listen: DEFAULT_LISTEN.to_string(),
        mode: Mode::Chat,
        welcome: DEFAULT_WELCOME.to_string(),
        allow_binary: false,
        page: true,
        history: 0,
        max_rooms: rookery::chat::DEFAULT_MAX_ROOMS,
        room_ttl: rookery::chat::DEFAULT_ROOM_TTL,
        metrics: false,
        verbosity: Verbosity::Normal,
        config: Config::default(),
        tls: None,
        redis: None,
        redis_prefix: "rookery".into(),
    };
    let (mut tls_cert, mut tls_key) = (None, None);
    let (mut louder, mut quieter) = (0u32, 0u32);
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let arg = arg
            .into_string()
            .map_err(|a| CliError::UnexpectedArgument(a.to_string_lossy().into_owned()))?;
        // A group of short flags, none of which takes a value: -v, -vv, -vq.
        if let Some(group) = arg.strip_prefix('-') {
            if !group.is_empty() && !group.starts_with('-') {
                for flag in group.chars() {
                    match flag {
                        'v' => louder = louder.saturating_add(1),
                        'q' => quieter = quieter.saturating_add(1),
                        'h' => return Ok(Command::Help),
                        'V' => return Ok(Command::Version),
                        _ => return Err(CliError::UnknownShortFlag { flag, group: arg }),
                    }
                }
                continue;
            }
        }
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => {
                (name.to_string(), Some(value.to_string()))
            }
            _ => (arg.clone(), None),
        };
        if let Some(&flag) = VALUE_FLAGS.iter().find(|f| **f == name) {
            let value = match inline {
                Some(v) => v,
                None => args
                    .next()
                    .and_then(|v| v.into_string().ok())
                    .ok_or(CliError::MissingValue(flag))?,
            };
            match flag {
                "--tls-cert" => tls_cert = Some(PathBuf::from(value)),
                "--tls-key" => tls_key = Some(PathBuf::from(value)),
                "--redis" => opts.redis = Some(value),
                "--redis-prefix" => opts.redis_prefix = value,
                _ => apply_value(&mut opts, flag, value)?,
            }
            continue;
        }
        let flag: &'static str = match name.as_str() {
            "--allow-binary" => "--allow-binary",
            "--no-page" => "--no-page",
            "--metrics" => "--metrics",
            "--deflate" => "--deflate",
            "--verbose" => "--verbose",
            "--quiet" => "--quiet",
            "--help" => return Ok(Command::Help),
            "--version" => return Ok(Command::Version),
            other if other.starts_with('-') && other != "-" => {
                return Err(CliError::UnknownFlag(other.to_string()))
            }
            other => return Err(CliError::UnexpectedArgument(other.to_string())),
        };
        if inline.is_some() {
            return Err(CliError::UnexpectedValue(flag));
        }
        match flag {
            "--allow-binary" => opts.allow_binary = true,
            "--no-page" => opts.page = false,
            "--metrics" => opts.metrics = true,
            "--deflate" if cfg!(feature = "deflate") => opts.config.deflate = true,
            "--deflate" => {
                return Err(CliError::NotBuiltIn {
                    flag: "--deflate",
                    feature: "deflate",
                })
            }
            "--verbose" => louder = louder.saturating_add(1),
            _ => quieter = quieter.saturating_add(1),
        }
    }
    opts.verbosity = Verbosity::from_counts(louder, quieter);
    opts.tls = match (tls_cert, tls_key) {
        (None, None) => None,
        (Some(cert), Some(key)) if cfg!(feature = "tls") => Some((cert, key)),
        (Some(cert), Some(_)) => {
            return Err(CliError::Refused {
                flag: "--tls-cert",
                value: cert.display().to_string(),
                why: "this build has no TLS: build with --features tls".into(),
            })
        }
        (Some(cert), None) => {
            return Err(CliError::Refused {
                flag: "--tls-cert",
                value: cert.display().to_string(),
                why: "needs --tls-key too".into(),
            })
        }
        (None, Some(key)) => {
            return Err(CliError::Refused {
                flag: "--tls-key",
                value: key.display().to_string(),
                why: "needs --tls-cert too".into(),
            })
        }
    };
    if let Some(url) = &opts.redis {
        #[cfg(feature = "redis")]
        if let Err(e) = rookery::cluster::RedisConfig::from_url(url) {
            return Err(CliError::Refused {
                flag: "--redis",
                value: url.clone(),
                why: e.to_string(),
            });
        }
        #[cfg(not(feature = "redis"))]
        return Err(CliError::Refused {
            flag: "--redis",
            value: url.clone(),
            why: "this build has no Redis: build with --features redis".into(),
        });
    }
    if opts.mode == Mode::Chat && opts.page && opts.config.path == "/" {
        return Err(CliError::Refused {
            flag: "--path",
            value: opts.config.path,
            why: "the chat page is served at /; give the WebSocket another path (e.g. /chat), or add --no-page".into(),
        });
    }
    Ok(Command::Run(Box::new(opts)))
}

fn apply_value(opts: &mut Options, flag: &'static str, value: String) -> Result<(), CliError> {
    let invalid = |expected: &'static str| CliError::InvalidValue {
        flag,
        value: value.clone(),
        expected,
    };
    const DUR: &str = "a duration like 250ms, 5s, 2m, or 0";
    const SIZE: &str = "a size like 65536, 64KiB or 1MiB";
    let duration = || parse_duration(&value).ok_or_else(|| invalid(DUR));
    let size = || {
        parse_size(&value)
            .filter(|&s| s > 0)
            .ok_or_else(|| invalid(SIZE))
    };
    let config = &mut opts.config;
    match flag {
        "--listen" => {
            if value
                .to_socket_addrs()
                .map(|mut a| a.next().is_none())
                .unwrap_or(true)
            {
                return Err(invalid("an address like 127.0.0.1:1984 or [::1]:0"));
            }
            opts.listen = value;
        }
        "--path" => {
            if let Some(why) = path_problem(&value) {
                return Err(CliError::Refused { flag, value, why });
            }
            config.path = value;
        }
        "--mode" => {
            opts.mode = match value.as_str() {
                "chat" => Mode::Chat,
                "echo" => Mode::Echo,
                _ => return Err(invalid("chat or echo")),
            }
        }
        "--welcome" => opts.welcome = value,
        "--ping-interval" => config.ping_interval = duration()?,
        "--idle-timeout" => config.idle_timeout = duration()?,
        "--handshake-timeout" => config.handshake_timeout = duration()?,
        "--close-timeout" => config.close_timeout = duration()?,
        "--max-message" => config.max_message = size()?,
        "--max-backlog" => {
            config.max_backlog = usize::try_from(size()?).map_err(|_| invalid(SIZE))?;
        }
        "--max-connections" => {
            config.max_connections = value
                .parse()
                .ok()
                .filter(|&n: &usize| n > 0)
                .ok_or_else(|| invalid("a whole number of at least 1"))?;
        }
        "--max-connections-per-ip" => {
            config.max_connections_per_ip = value
                .parse()
                .map_err(|_| invalid("a whole number (0: no limit)"))?;
        }
        "--rate-limit" => {
            let count = |n: &str| {
                n.bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| n.parse::<u64>().ok())
                    .flatten()
            };
            config.rate_limit = parse_rate(&value, count).map_err(|()| {
                invalid(
                    "messages a second and a burst, like 100, 100/s or 100/s:500 (at least 1 each, at most 2^40; 0: no limit)",
                )
            })?;
        }
        "--rate-limit-bytes" => {
            config.rate_limit_bytes = parse_rate(&value, parse_size).map_err(|()| {
                invalid(
                    "bytes a second and a burst, like 64KiB, 1MiB/s or 1MiB/s:4MiB (at least 1 each, at most 1TiB; 0: no limit)",
                )
            })?;
        }
        "--history" => {
            opts.history = value
                .parse()
                .ok()
                .filter(|&n: &usize| n <= MAX_HISTORY)
                .ok_or_else(|| invalid("a whole number from 0 to 100000"))?;
        }
        "--max-rooms" => {
            opts.max_rooms = value
                .parse()
                .ok()
                .filter(|&n: &usize| n > 0)
                .ok_or_else(|| invalid("a whole number of at least 1"))?;
        }
        "--room-ttl" => opts.room_ttl = duration()?,
        "--allow-origin" => match parse_origin(&value) {
            Ok(origin) => config.allowed_origins.push(origin),
            Err(why) => return Err(CliError::Refused { flag, value, why }),
        },
        _ => return Err(CliError::UnknownFlag(flag.to_string())),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Options, CliError> {
        match parse(args.iter().map(OsString::from))? {
            Command::Run(opts) => Ok(*opts),
            other => panic!("not a run: {other:?}"),
        }
    }

    #[test]
    fn defaults_match_the_specification() {
        let opts = run(&[]).unwrap();
        assert_eq!(opts.listen, "127.0.0.1:1984");
        assert_eq!(opts.mode, Mode::Chat);
        assert_eq!(opts.welcome, "Welcome to Rookery Chat!");
        assert!(opts.page && !opts.allow_binary);
        assert_eq!(opts.config, Config::default());
        assert_eq!(opts.config.path, "/chat");
        assert_eq!(opts.config.ping_interval, Duration::from_secs(5));
        assert_eq!(opts.config.idle_timeout, Duration::from_secs(15));
        assert_eq!(opts.config.max_message, 1 << 20);
        assert_eq!(opts.config.max_connections, 1024);
        assert_eq!(opts.config.max_connections_per_ip, 0, "off");
        assert_eq!(opts.config.rate_limit, None, "off");
        assert_eq!(opts.config.rate_limit_bytes, None, "off");
        assert_eq!(
            (opts.history, opts.max_rooms, opts.metrics),
            (0, 1024, false)
        );
        assert_eq!(opts.room_ttl, Duration::from_secs(3600));
    }

    #[test]
    fn redis_flags() {
        let refused = |args: &[&str]| match run(args) {
            Err(CliError::Refused { flag, why, .. }) => (flag, why),
            other => panic!("not refused: {other:?}"),
        };
        #[cfg(not(feature = "redis"))]
        assert_eq!(
            refused(&["--redis", "redis://127.0.0.1"]),
            (
                "--redis",
                "this build has no Redis: build with --features redis".to_string()
            )
        );
        #[cfg(feature = "redis")]
        {
            let opts = run(&[
                "--redis",
                "redis://:pw@127.0.0.1:7/1",
                "--redis-prefix",
                "p",
            ])
            .unwrap();
            assert_eq!(opts.redis.as_deref(), Some("redis://:pw@127.0.0.1:7/1"));
            assert_eq!(opts.redis_prefix, "p");
            assert_eq!(refused(&["--redis", "http://x"]).0, "--redis");
            assert_eq!(refused(&["--redis", "redis://127.0.0.1:x"]).0, "--redis");
        }
        assert_eq!(run(&[]).unwrap().redis_prefix, "rookery");
    }

    #[test]
    fn every_flag_is_applied() {
        let opts = run(&[
            "--listen",
            "0.0.0.0:0",
            "--path=/ws",
            "--mode",
            "echo",
            "--welcome",
            "hi",
            "--ping-interval",
            "250ms",
            "--idle-timeout",
            "2m",
            "--handshake-timeout",
            "1s",
            "--close-timeout",
            "0",
            "--max-message",
            "64KiB",
            "--max-backlog",
            "2MiB",
            "--max-connections",
            "10",
            "--allow-origin",
            "https://a",
            "--allow-origin=https://b",
            "--allow-binary",
            "--no-page",
            "--history",
            "5",
            "--max-rooms=2",
            "--room-ttl",
            "90s",
            "--metrics",
            "-v",
        ])
        .unwrap();
        assert_eq!(opts.listen, "0.0.0.0:0");
        assert_eq!(opts.config.path, "/ws");
        assert_eq!(opts.mode, Mode::Echo);
        assert_eq!(opts.welcome, "hi");
        assert_eq!(opts.config.ping_interval, Duration::from_millis(250));
        assert_eq!(opts.config.idle_timeout, Duration::from_secs(120));
        assert_eq!(opts.config.handshake_timeout, Duration::from_secs(1));
        assert_eq!(opts.config.close_timeout, Duration::ZERO);
        assert_eq!(opts.config.max_message, 65536);
        assert_eq!(opts.config.max_backlog, 2 << 20);
        assert_eq!(opts.config.max_connections, 10);
        assert_eq!(opts.config.allowed_origins, ["https://a", "https://b"]);
        assert!(opts.allow_binary && !opts.page);
        assert_eq!((opts.history, opts.max_rooms, opts.metrics), (5, 2, true));
        assert_eq!(opts.room_ttl, Duration::from_secs(90));
        assert_eq!(run(&["--room-ttl", "0"]).unwrap().room_ttl, Duration::ZERO);
        assert_eq!(opts.verbosity, Verbosity::Verbose);
        assert_eq!(run(&["-v", "-v"]).unwrap().verbosity, Verbosity::Trace);
        assert_eq!(run(&["-q"]).unwrap().verbosity, Verbosity::Quiet);
    }

    #[test]
    fn rate_limits_and_the_per_address_cap() {
        let config = |args: &[&str]| run(args).unwrap().config;
        let rate = |n, burst| Rate::new(n, burst);
        for (given, want) in [
            ("100", rate(100, 100)),
            ("100/s", rate(100, 100)),
            ("100:500", rate(100, 500)),
            ("100/s:500", rate(100, 500)),
            ("1/s:1", rate(1, 1)),
            ("0", None),
        ] {
            assert_eq!(config(&["--rate-limit", given]).rate_limit, want, "{given}");
        }
        for (given, want) in [
            ("64KiB", rate(65536, 65536)),
            ("1MiB/s", rate(1 << 20, 1 << 20)),
            ("1MiB/s:4MiB", rate(1 << 20, 4 << 20)),
            ("1000:2000", rate(1000, 2000)),
            ("0", None),
        ] {
            assert_eq!(
                config(&["--rate-limit-bytes", given]).rate_limit_bytes,
                want,
                "{given}"
            );
        }
        assert_eq!(
            config(&["--max-connections-per-ip=8"]).max_connections_per_ip,
            8
        );
        assert_eq!(
            config(&["--max-connections-per-ip", "0"]).max_connections_per_ip,
            0
        );
        for (args, want) in [
            (
                &["--rate-limit", "x"][..],
                "invalid value 'x' for --rate-limit: expected messages a second",
            ),
            (
                &["--rate-limit", "10/m"],
                "invalid value '10/m' for --rate-limit",
            ),
            (
                &["--rate-limit", "10:0"],
                "invalid value '10:0' for --rate-limit",
            ),
            (
                &["--rate-limit", "0:10"],
                "invalid value '0:10' for --rate-limit",
            ),
            (
                &["--rate-limit", "+5"],
                "invalid value '+5' for --rate-limit",
            ),
            (
                &["--rate-limit", "10:"],
                "invalid value '10:' for --rate-limit",
            ),
            (
                &["--rate-limit", "/s"],
                "invalid value '/s' for --rate-limit",
            ),
            (
                &["--rate-limit", "2000000000000"],
                "invalid value '2000000000000' for --rate-limit",
            ),
            (&["--rate-limit"], "flag --rate-limit needs a value"),
            (
                &["--rate-limit-bytes", "1TB"],
                "invalid value '1TB' for --rate-limit-bytes: expected bytes a second",
            ),
            (
                &["--rate-limit-bytes", "1MiB:x"],
                "invalid value '1MiB:x' for --rate-limit-bytes",
            ),
            (
                &["--rate-limit-bytes", "2GiB/s:2TB"],
                "invalid value '2GiB/s:2TB' for --rate-limit-bytes",
            ),
            (
                &["--max-connections-per-ip", "-1"],
                "invalid value '-1' for --max-connections-per-ip",
            ),
            (
                &["--max-connections-per-ip", "many"],
                "invalid value 'many' for --max-connections-per-ip",
            ),
        ] {
            let err = run(args).unwrap_err().to_string();
            assert!(err.starts_with(want), "{args:?}: {err}");
        }
    }

    #[test]
    fn deflate_needs_the_feature() {
        let built_in = cfg!(feature = "deflate");
        match run(&["--deflate"]) {
            Ok(opts) => {
                assert!(built_in);
                assert!(opts.config.deflate);
            }
            Err(e) => {
                assert!(!built_in);
                assert_eq!(
                    e.to_string(),
                    "flag --deflate needs a build with the deflate feature (cargo build --release --features deflate)"
                );
            }
        }
        assert!(!run(&[]).unwrap().config.deflate, "off by default");
        assert!(matches!(
            run(&["--deflate=1"]),
            Err(CliError::UnexpectedValue("--deflate"))
        ));
    }

    #[test]
    fn short_flags_combine_and_v_and_q_count_against_each_other() {
        let cases: &[(&[&str], Verbosity)] = &[
            (&[], Verbosity::Normal),
            (&["-v"], Verbosity::Verbose),
            (&["--verbose"], Verbosity::Verbose),
            (&["-vv"], Verbosity::Trace),
            (&["-vvv"], Verbosity::Trace),
            (&["-vvvvvvvv"], Verbosity::Trace),
            (&["-v", "--verbose"], Verbosity::Trace),
            (&["-q"], Verbosity::Quiet),
            (&["--quiet"], Verbosity::Quiet),
            (&["-qq"], Verbosity::Errors),
            (&["-qqq"], Verbosity::Errors),
            (&["-vq"], Verbosity::Normal),
            (&["-qv"], Verbosity::Normal),
            (&["-v", "-q"], Verbosity::Normal),
            (&["-q", "-v"], Verbosity::Normal),
            (&["-vvq"], Verbosity::Verbose),
            (&["-vvv", "-q"], Verbosity::Trace),
            (&["-vqq"], Verbosity::Quiet),
            (&["-vvvvvvvv", "-q"], Verbosity::Trace),
            (&["-vvvvvvvv", "-qqqqqqq"], Verbosity::Verbose),
        ];
        for (args, want) in cases {
            assert_eq!(run(args).unwrap().verbosity, *want, "{args:?}");
        }
        assert_eq!(parse([OsString::from("-vh")]), Ok(Command::Help));
        assert_eq!(parse([OsString::from("-qV")]), Ok(Command::Version));
        assert_eq!(
            run(&["-vx"]).unwrap_err().to_string(),
            "unknown flag '-x' in '-vx' (see --help)"
        );
        assert_eq!(
            run(&["-x"]).unwrap_err().to_string(),
            "unknown flag '-x' (see --help)"
        );
        assert_eq!(
            run(&["-v=1"]).unwrap_err().to_string(),
            "unknown flag '-=' in '-v=1' (see --help)"
        );
        assert_eq!(
            run(&["-"]).unwrap_err().to_string(),
            "unexpected argument '-' (see --help)"
        );
    }

    #[test]
    fn mistakes_name_the_flag() {
        let cases: &[(&[&str], &str)] = &[
            (&["--bogus"], "unknown flag '--bogus'"),
            (&["--listen"], "flag --listen needs a value"),
            (
                &["--ping-interval", "5"],
                "invalid value '5' for --ping-interval",
            ),
            (
                &["--idle-timeout", "soon"],
                "invalid value 'soon' for --idle-timeout",
            ),
            (
                &["--max-message", "1TB"],
                "invalid value '1TB' for --max-message",
            ),
            (
                &["--max-backlog", "0"],
                "invalid value '0' for --max-backlog",
            ),
            (
                &["--max-connections", "-1"],
                "invalid value '-1' for --max-connections",
            ),
            (&["--max-rooms", "0"], "invalid value '0' for --max-rooms"),
            (&["--history", "x"], "invalid value 'x' for --history"),
            (
                &["--history", "100001"],
                "invalid value '100001' for --history",
            ),
            (&["--metrics=1"], "flag --metrics takes no value"),
            (&["--history"], "flag --history needs a value"),
            (&["--mode", "relay"], "invalid value 'relay' for --mode"),
            (&["--path", "chat"], "invalid value 'chat' for --path"),
            (&["--path", "/a\"b"], "invalid value '/a\"b' for --path"),
            (
                &["--path", "/x?y"],
                "invalid value '/x?y' for --path: a path cannot hold '?'",
            ),
            (
                &["--path", "/x#y"],
                "invalid value '/x#y' for --path: a path cannot hold '#'",
            ),
            (
                &["--path", "/my chat"],
                "invalid value '/my chat' for --path: a path cannot hold spaces",
            ),
            (
                &["--path", "/a\nb"],
                "invalid value '/a\\nb' for --path: a path cannot hold '\\n' (letters",
            ),
            (
                &["--path", "/a<b"],
                "invalid value '/a<b' for --path: a path cannot hold '<' (letters, digits",
            ),
            (
                &["--path", "/"],
                "invalid value '/' for --path: the chat page is served at /",
            ),
            (
                &["--path", "/", "--mode", "chat"],
                "invalid value '/' for --path: the chat page is served at /",
            ),
            (
                &["--path", "/chat/"],
                "invalid value '/chat/' for --path: a path cannot end with '/' (rooms are PATH/NAME): write '/chat'",
            ),
            (
                &["--path", "/a/b//", "--mode", "echo"],
                "invalid value '/a/b//' for --path: a path cannot end with '/' (rooms are PATH/NAME): write '/a/b'",
            ),
            (
                &["--listen", "nowhere"],
                "invalid value 'nowhere' for --listen",
            ),
            (&["stray"], "unexpected argument 'stray'"),
            (&["--no-page=1"], "flag --no-page takes no value"),
        ];
        for (args, want) in cases {
            let err = run(args).unwrap_err().to_string();
            assert!(err.starts_with(want), "{args:?}: {err}");
            assert!(!err.contains('\n'));
        }
    }

    #[test]
    fn origins_are_checked_and_written_as_browsers_send_them() {
        for (given, stored) in [
            ("*", "*"),
            ("https://a.example", "https://a.example"),
            ("HTTPS://A.Example", "https://a.example"),
            ("http://a.example:8080", "http://a.example:8080"),
            ("https://a.example:443", "https://a.example"),
            ("http://a.example:80", "http://a.example"),
            ("http://a.example:443", "http://a.example:443"),
            ("http://192.168.1.2:8080", "http://192.168.1.2:8080"),
            ("http://[::1]:8080", "http://[::1]:8080"),
            ("http://[::1]", "http://[::1]"),
            ("http://localhost", "http://localhost"),
            (
                "https://xn--bcher-kva.example",
                "https://xn--bcher-kva.example",
            ),
        ] {
            assert_eq!(parse_origin(given).as_deref(), Ok(stored), "{given}");
        }
        for (given, why) in [
            (
                "http://a.example/",
                "has no path (nor anything after the host and port): write 'http://a.example'",
            ),
            (
                "https://a.example/app",
                "has no path (nor anything after the host and port): write 'https://a.example'",
            ),
            ("https://a.example?x", "has no path"),
            ("a.example", "an origin starts with http:// or https://"),
            ("", "an origin starts with http:// or https://"),
            ("ws://a.example", "an origin's scheme is http or https"),
            ("file://", "an origin's scheme is http or https"),
            ("null", "an origin starts with http:// or https://"),
            ("**", "an origin starts with http:// or https://"),
            ("https://", "'' is not a host name"),
            ("https://a..example", "'a..example' is not a host name"),
            (
                "https://bücher.example",
                "'bücher.example' is not a host name",
            ),
            ("https://a example", "'a example' is not a host name"),
            ("https://a.example:", "'' is not a port"),
            ("https://a.example:0", "'0' is not a port"),
            ("https://a.example:99999", "'99999' is not a port"),
            ("https://a.example:+80", "'+80' is not a port"),
            ("https://user@a.example", "holds no user name"),
            ("http://[::1", "'[' opens an IPv6 address"),
            ("http://[nope]:80", "'[' opens an IPv6 address"),
            ("http://[::1]x", "'[' opens an IPv6 address"),
        ] {
            let err = parse_origin(given).unwrap_err();
            assert!(err.contains(why), "{given}: {err}");
        }
        let err = run(&["--allow-origin", "http://a.example/"])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("invalid value 'http://a.example/' for --allow-origin: "),
            "{err}"
        );
        assert_eq!(
            run(&[
                "--allow-origin",
                "HTTPS://A.example:443",
                "--allow-origin=*"
            ])
            .unwrap()
            .config
            .allowed_origins,
            ["https://a.example", "*"]
        );
    }

    #[test]
    fn the_root_path_is_fine_where_no_page_is_served() {
        assert_eq!(run(&["--path", "/", "--no-page"]).unwrap().config.path, "/");
        assert_eq!(
            run(&["--path", "/", "--mode", "echo"]).unwrap().config.path,
            "/"
        );
        assert_eq!(
            run(&["--path", "/a/b-c_d.e~f%20"]).unwrap().config.path,
            "/a/b-c_d.e~f%20"
        );
    }

    #[test]
    fn help_and_version() {
        assert_eq!(parse([OsString::from("--help")]), Ok(Command::Help));
        assert_eq!(parse([OsString::from("-V")]), Ok(Command::Version));
        for flag in
            VALUE_FLAGS
                .iter()
                .chain(&["--allow-binary", "--no-page", "--quiet", "--verbose"])
        {
            assert!(help().contains(flag), "help does not explain {flag}");
        }
    }

    #[test]
    fn the_help_table_names_exactly_the_flags_that_take_a_value() {
        let with_arg: Vec<&str> = FLAGS
            .iter()
            .filter(|f| !f.arg.is_empty())
            .map(|f| f.names)
            .collect();
        assert_eq!(with_arg, VALUE_FLAGS, "FLAGS and VALUE_FLAGS disagree");
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        for bad in ["", "5", "s", "-5s", "5 s", "1.5s", "99999999999999999999h"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(parse_size("65536"), Some(65536));
        assert_eq!(parse_size("64KiB"), Some(65536));
        assert_eq!(parse_size("1MiB"), Some(1 << 20));
        assert_eq!(parse_size("1MB"), Some(1_000_000));
        for bad in ["", "MiB", "1 MiB", "1TiB", "-1", "99999999999GiB"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }
}
