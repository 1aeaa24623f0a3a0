//! The walk over the arguments: which flag takes a value, what each value
//! sets in [`Options`], and the checks across flags (TLS's two files, the
//! chat page and the root path, a build's missing features).

use std::ffi::OsString;
use std::net::ToSocketAddrs;
use std::path::PathBuf;

use rookery::Config;

use super::values::{parse_duration, parse_origin, parse_rate, parse_size, path_problem};
use super::{CliError, Command, Mode, Options, Verbosity};

/// The default listening address.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:1984";

/// The default welcome text.
pub(crate) const DEFAULT_WELCOME: &str = "Welcome to Rookery Chat!";

/// The largest `--history`: beyond it, a room's memory bound
/// (`N × --max-message`) stops meaning anything on a small board.
pub(super) const MAX_HISTORY: usize = 100_000;

/// The flags that take a value, by their names.
pub(super) const VALUE_FLAGS: &[&str] = &[
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
    "--io",
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
        "--io" => {
            config.io = value.parse().map_err(|_| invalid("auto, epoll or uring"))?;
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
