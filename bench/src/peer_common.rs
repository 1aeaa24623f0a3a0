//! Shared by the peer servers: command line, welcome text, fd limit.
//! Included with `#[path]` by each peer binary (the package has no library).

pub const WELCOME: &str = "Welcome to Rookery Chat!";

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every message goes back to its sender.
    Echo,
    /// Welcome text on connect; every text message relayed to every client.
    Chat,
}

pub struct Args {
    pub mode: Mode,
    pub listen: String,
}

pub fn parse_args(name: &str) -> Args {
    let usage = format!("usage: {name} [--mode echo|chat] [--listen ADDR:PORT]");
    let mut args = Args {
        mode: Mode::Chat,
        listen: "127.0.0.1:0".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next();
        match (flag.as_str(), value.as_deref()) {
            ("--mode", Some("echo")) => args.mode = Mode::Echo,
            ("--mode", Some("chat")) => args.mode = Mode::Chat,
            ("--listen", Some(addr)) => args.listen = addr.to_string(),
            ("--help" | "-h", _) => {
                println!("{usage}");
                std::process::exit(0);
            }
            _ => {
                eprintln!("{name}: bad argument '{flag}'\n{usage}");
                std::process::exit(2);
            }
        }
    }
    args
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (the idle scenario opens
/// 10,000 connections).
pub fn raise_nofile() {
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
