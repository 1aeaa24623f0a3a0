//! The command line of the `rookery` binary: flags, their values, and the
//! help text. Hand-written rather than built on an argument-parsing crate:
//! fourteen flags do not justify the tens of kilobytes such a crate adds to
//! a binary meant for small boards.
//!
//! This file owns what a command line becomes ([`Command`], [`Options`]);
//! `flags` the table of flags and the `--help` text made from it, `parse`
//! the walk over the arguments, `values` the readers of sizes, durations,
//! rates, paths and origins, `error` the one-line mistakes, and `man` the
//! man page rendered from the same table.

mod error;
mod flags;
#[cfg(test)]
pub(crate) mod man;
mod parse;
#[cfg(test)]
mod tests;
mod values;

use std::path::PathBuf;
use std::time::Duration;

use rookery::Config;

pub(crate) use error::CliError;
pub(crate) use flags::help;
pub(crate) use parse::parse;

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
