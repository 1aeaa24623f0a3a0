//! Where the C API's log lines go: `rk_set_log` routes them to a function
//! of the program (syslog, its own file, a board's ring buffer); until it
//! is called they go to stderr through `env_logger`, filtered by `RUST_LOG`
//! (errors only when it is unset), as they always did.
//!
//! `log` takes one logger per process, for good, so the one installed (by
//! the first `rk_server_new` or `rk_set_log`) is [`Route`], which looks at
//! the current choice for every line.

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_int, c_void};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once, OnceLock};

use log::{Level, LevelFilter, Log, Metadata, Record};

/// The program's log function: `level` 1 (error) to 5 (trace), `line` a
/// NUL-terminated line without a newline, valid during the call.
#[allow(non_camel_case_types)]
pub type rk_log_fn =
    Option<unsafe extern "C" fn(level: c_int, line: *const c_char, user: *mut c_void)>;

/// The program's choice, once `rk_set_log` was called.
struct Sink {
    log: rk_log_fn,
    user: *mut c_void,
    max: LevelFilter,
}

// SAFETY: `user` is the program's pointer, only ever handed back to its own
// function; the program is told that function may be called from any thread
// that logs (rk_set_log's contract), and calls are serialised by `SINK`.
unsafe impl Send for Sink {}

/// `None` until `rk_set_log`: stderr.
static SINK: Mutex<Option<Sink>> = Mutex::new(None);

/// The stderr logger of the default route (`RUST_LOG`).
static STDERR: OnceLock<env_logger::Logger> = OnceLock::new();

static INSTALL: Once = Once::new();

/// Whether [`Route`] is the process's logger (not some logger the
/// embedding program installed first, whose level is its own business).
static ROUTED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Set while this thread is inside the program's log function: a line
    /// logged from there (an rk_ call made by the function) is dropped
    /// rather than sent back into it.
    static IN_SINK: Cell<bool> = const { Cell::new(false) };
    /// The line being handed over, reused.
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// The process's logger.
struct Route;

fn stderr() -> &'static env_logger::Logger {
    STDERR.get_or_init(|| env_logger::Builder::from_default_env().build())
}

/// Installs [`Route`] as the process's logger, unless some logger (this
/// one, or the embedding program's own) is there already.
pub(crate) fn install() {
    INSTALL.call_once(|| {
        if log::set_logger(&Route).is_ok() {
            ROUTED.store(true, Ordering::SeqCst);
            log::set_max_level(stderr().filter());
        }
    });
}

impl Log for Route {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        match SINK.lock() {
            Ok(sink) => match &*sink {
                Some(sink) => metadata.level() <= sink.max,
                None => stderr().enabled(metadata),
            },
            Err(_) => false,
        }
    }

    fn log(&self, record: &Record<'_>) {
        if IN_SINK.with(Cell::get) {
            return;
        }
        let Ok(sink) = SINK.lock() else {
            return;
        };
        let Some(sink) = &*sink else {
            drop(sink);
            stderr().log(record);
            return;
        };
        let (Some(log), true) = (sink.log, record.level() <= sink.max) else {
            return;
        };
        LINE.with(|line| {
            let Ok(mut line) = line.try_borrow_mut() else {
                return;
            };
            line.clear();
            let _ = write!(line, "{}", record.args());
            escape_controls(&mut line);
            line.push('\0');
            IN_SINK.with(|s| s.set(true));
            // SAFETY: the program gave `log` for this purpose (rk_set_log);
            // the line is NUL-terminated (controls, NUL included, escaped)
            // and lives until the call returns.
            unsafe {
                log(
                    level_number(record.level()),
                    line.as_ptr().cast(),
                    sink.user,
                )
            };
            IN_SINK.with(|s| s.set(false));
            if line.capacity() > 4096 {
                *line = String::new();
            }
        });
    }

    fn flush(&self) {
        stderr().flush();
    }
}

/// Escapes control characters in place (`\n` as `\\n`, NUL as `\\x00`):
/// a line never splits, ends early or carries escape sequences, whatever
/// the network put in it.
fn escape_controls(line: &mut String) {
    if !line.chars().any(char::is_control) {
        return;
    }
    let mut out = String::with_capacity(line.len() + 8);
    for c in line.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    *line = out;
}

/// 1 error, 2 warn, 3 info, 4 debug, 5 trace.
fn level_number(level: Level) -> c_int {
    match level {
        Level::Error => 1,
        Level::Warn => 2,
        Level::Info => 3,
        Level::Debug => 4,
        Level::Trace => 5,
    }
}

fn level_filter(max_level: c_int) -> LevelFilter {
    match max_level {
        i32::MIN..=0 => LevelFilter::Off,
        1 => LevelFilter::Error,
        2 => LevelFilter::Warn,
        3 => LevelFilter::Info,
        4 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

/// Routes the library's log lines to `log(level, line, user)` for every
/// level up to `max_level` (1 error, 2 warn, 3 info, 4 debug, 5 trace; 0
/// or less: none); from then on nothing is written to stderr, whatever
/// `RUST_LOG` says. A NULL `log` drops every line. May be called again to
/// change the function, its pointer or the level (not from inside `log`).
/// `log` is called on the thread that logs (the loop's, or one calling
/// `rk_post`), one call at a time; a line logged from inside it is dropped.
/// (In a process whose own `log` logger was installed first, the lines go
/// to that logger, and this call changes nothing.)
///
/// # Safety
///
/// `log` is NULL or a function that may be called with `user` from any
/// thread until `rk_set_log` is called again.
pub unsafe extern "C" fn rk_set_log(log: rk_log_fn, user: *mut c_void, max_level: c_int) {
    // Not `guard`: nothing here can panic but a poisoned lock, handled.
    install();
    let max = level_filter(max_level);
    let mut sink = match SINK.lock() {
        Ok(sink) => sink,
        Err(poisoned) => poisoned.into_inner(),
    };
    *sink = Some(Sink { log, user, max });
    drop(sink);
    if ROUTED.load(Ordering::SeqCst) {
        log::set_max_level(if log.is_some() { max } else { LevelFilter::Off });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_escapes() {
        assert_eq!(level_filter(-3), LevelFilter::Off);
        assert_eq!(level_filter(0), LevelFilter::Off);
        assert_eq!(level_filter(1), LevelFilter::Error);
        assert_eq!(level_filter(4), LevelFilter::Debug);
        assert_eq!(level_filter(5), LevelFilter::Trace);
        assert_eq!(level_filter(99), LevelFilter::Trace);
        assert_eq!(level_number(Level::Warn), 2);
        let mut line = String::from("a\nb\0c\x1b[31m\u{9b}é");
        escape_controls(&mut line);
        assert_eq!(line, "a\\nb\\x00c\\x1b[31m\\x9bé");
    }
}
