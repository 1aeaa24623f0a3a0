//! The `rookery` command-line server: the chat service by default, or the
//! echo service with `--mode echo`. See `rookery --help`.

#![warn(unreachable_pub)]

mod cli;

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::OnceLock;

use rookery::chat::Chat;
use cli::{Command, Mode, Options, Verbosity};
use rookery::echo::Echo;
use rookery::{Handler, Server, StopHandle};

/// The running server's stop handle, for the signal handler.
static STOP: OnceLock<StopHandle> = OnceLock::new();

fn main() -> ExitCode {
    let opts = match cli::parse(std::env::args_os().skip(1)) {
        Ok(Command::Run(opts)) => opts,
        Ok(Command::Help) => {
            print!("{}", cli::HELP);
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
    let result = match opts.mode {
        Mode::Chat => {
            let chat = Chat::new(
                &opts.welcome,
                opts.allow_binary,
                opts.page,
                &opts.config.path,
            );
            serve(&opts, chat)
        }
        Mode::Echo => serve(&opts, Echo),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rookery: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(verbosity: Verbosity) {
    let level = match verbosity {
        Verbosity::Quiet => log::LevelFilter::Warn,
        Verbosity::Normal => log::LevelFilter::Info,
        Verbosity::Verbose => log::LevelFilter::Debug,
        Verbosity::Trace => log::LevelFilter::Trace,
    };
    env_logger::Builder::new()
        .filter_level(level)
        .parse_env("RUST_LOG")
        .format_target(false)
        .init();
}

fn serve<H: Handler>(opts: &Options, handler: H) -> io::Result<()> {
    let mut server = Server::bind(&opts.listen, opts.config.clone(), handler)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {}: {e}", opts.listen)))?;
    let _ = STOP.set(server.stop_handle());
    install_signal_handlers()?;
    let addr = server.local_addr();
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "listening on {addr}")?;
    stdout.flush()?;
    drop(stdout);
    log::info!(
        "serving {} on ws://{addr}{}",
        match opts.mode {
            Mode::Chat => "chat",
            Mode::Echo => "echo",
        },
        opts.config.path
    );
    server.run()?;
    log::info!("stopped");
    Ok(())
}

/// Turns SIGINT and SIGTERM into a graceful stop. The handler only calls
/// [`StopHandle::stop`], which stores a flag and writes to an eventfd; a
/// second signal while stopping exits at once.
fn install_signal_handlers() -> io::Result<()> {
    extern "C" fn on_signal(_signal: libc::c_int) {
        static SEEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if SEEN.swap(true, std::sync::atomic::Ordering::SeqCst) {
            // SAFETY: _exit is async-signal-safe and takes no pointers.
            unsafe { libc::_exit(130) };
        }
        if let Some(stop) = STOP.get() {
            stop.stop();
        }
    }
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `action` is fully initialised (zeroed, then the handler set)
        // before sigaction reads it; the handler is an `extern "C"` function
        // that lives for the whole program and only does async-signal-safe
        // work; passing a null old-action pointer is allowed.
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
