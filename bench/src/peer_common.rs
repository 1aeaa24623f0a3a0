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

/// Runs `serve(stream, id)` for every accepted connection, on a
/// single-threaded tokio runtime (the peers' fairness rule): binds `listen`
/// (exit 1 if it cannot), prints `listening on ADDR`, sets TCP_NODELAY, and
/// backs off on accept errors (EMFILE and friends) instead of spinning.
pub fn serve_forever(name: &str, listen: &str, mut serve: impl FnMut(tokio::net::TcpStream, u64)) {
    raise_nofile();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("{name}: cannot listen on {listen}: {e}");
                std::process::exit(1);
            }
        };
        println!(
            "listening on {}",
            listener.local_addr().expect("local addr")
        );
        let mut next_id = 0u64;
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    eprintln!("{name}: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            next_id += 1;
            serve(stream, next_id);
        }
    });
}
