//! The `rookery` command-line server: the chat service by default, or the
//! echo service with `--mode echo`. See `rookery --help`.

#![warn(unreachable_pub)]

mod cli;

use std::io::{self, Write};
use std::process::ExitCode;

use cli::{Command, Mode, Options, Verbosity};
use rookery::chat::Chat;
use rookery::echo::Echo;
use rookery::{Handler, Server};

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
    rookery::stop_on_signals(server.stop_handle())?;
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
