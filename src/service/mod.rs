//! Running under systemd without libsystemd: socket activation
//! ([`activation`]: serve the listening socket systemd passed), and the
//! notification protocol ([`notify`]: `READY=1`, `RELOADING=1`,
//! `STOPPING=1`, and `WATCHDOG=1` from the loop through [`Notified`]).
//!
//! Each part reads its environment variables once, through a parser that
//! takes them as plain values (unit-tested without a process of its own),
//! and then does one system call per action: no thread, no allocation after
//! start-up. See docs/embedded.md for the units that use them.

pub mod activation;
pub mod notify;
mod watchdog;

pub use self::activation::{listener_from_env, ActivationError};
pub use self::notify::Notifier;
pub use self::watchdog::{Notified, WATCHDOG_TOKEN};
