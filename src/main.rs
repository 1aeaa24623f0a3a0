//! The `rookery` command-line server: the chat service by default, or the
//! echo service with `--mode echo`. See `rookery --help`.

#![warn(unreachable_pub)]
#![deny(unsafe_code)]

mod cli;
mod logger;
mod served;
mod startup;

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;

use cli::{Command, Mode, Options};
use rookery::chat::{Chat, ChatOptions};
use rookery::echo::Echo;
use rookery::Server;
use served::Service;

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
    logger::install(opts.verbosity);
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
    let service = match opts.mode {
        Mode::Chat => Service::Chat(Box::new(
            Chat::new(ChatOptions {
                welcome: opts.welcome.clone(),
                allow_binary: opts.allow_binary,
                page: opts.page,
                path: opts.config.path.clone(),
            })
            .with_rooms(opts.max_rooms, opts.history)
            .with_room_ttl(opts.room_ttl)
            .with_metrics(opts.metrics),
        )),
        Mode::Echo => Service::Echo(Echo),
    };
    match serve(&opts, tls, service) {
        Ok(()) => ExitCode::SUCCESS,
        // `--io uring` where the kernel (or the build) refuses io_uring: a
        // usage error, as a flag the build lacks is.
        Err(e)
            if opts.config.io == rookery::Io::Uring
                && e.kind() == std::io::ErrorKind::Unsupported =>
        {
            eprintln!("rookery: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("rookery: {e}");
            ExitCode::FAILURE
        }
    }
}

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

/// Gives the heap's free pages back to the system, wherever they are
/// (glibc's `malloc_trim(0)`), once a burst of connections has ended
/// (`Server::set_memory_release`). Pinning the mmap threshold keeps the
/// freed top of the heap returned; this returns the free pages below a
/// block still in use, which churn under the uring driver left at random
/// rounds (about 2.4 MiB). It walks the heap's free blocks: a fraction of
/// a millisecond for a heap of a few MiB, once a burst.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // malloc_trim, below.
fn release_free_memory() {
    // SAFETY: malloc_trim takes a plain size and only returns free memory
    // to the system; the loop's thread calls it between passes, holding
    // no allocation in a state glibc does not know. Its result (1 if
    // anything was returned) is only informative.
    unsafe {
        libc::malloc_trim(0);
    }
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

fn serve(opts: &Options, tls: Tls, handler: Service) -> io::Result<()> {
    let listener = startup::listener(&opts.listen)?;
    let handler = startup::notified(handler)?;
    let mut server = Server::from_listener(listener, opts.config.clone(), handler)?;
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    server.set_memory_release(release_free_memory);
    #[cfg(feature = "tls")]
    if let Some(tls) = tls {
        server.set_tls(tls);
    }
    #[cfg(not(feature = "tls"))]
    let () = tls;
    // With TLS, SIGHUP re-reads the pair; without, the reload is only
    // logged and announced to the service manager: SIGHUP's default action
    // would end the server without a close frame to anyone (e.g. when the
    // terminal it was started from closes).
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
}
