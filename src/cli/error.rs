//! The command line's mistakes: [`CliError`], whose `Display` is the one
//! line printed before the program exits with status 2.

use std::fmt;

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
pub(super) fn shown(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            c if c.is_control() => c.escape_debug().to_string(),
            c => c.to_string(),
        })
        .collect()
}
