//! Choosing the driver (`--io`, `Config::io`, SPEC section 11): `auto`
//! falls back to epoll where io_uring is refused and says why, `uring` there
//! is an error naming the reason (exit 2 from the command), and whichever
//! runs serves the same. The kernel's refusal is injected
//! (`ROOKERY_URING_REFUSE`, read with the hidden feature `internals`) so
//! that the fallback is tested on a machine whose kernel has io_uring too.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::descriptor_limit::raise_descriptor_limit;
use common::Rookery;
use rookery::{echo::Echo, Config, Io, Server};
use tungstenite::Message;

/// Whether this build has the uring driver.
const BUILT: bool = cfg!(rookery_uring);

fn rookery_with(refuse: Option<&str>, args: &[&str]) -> std::process::Command {
    let mut cmd = common::rookery_command();
    cmd.args(["--listen", "127.0.0.1:0", "--mode", "echo"])
        .args(args)
        .env_remove(Io::ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match refuse {
        Some(what) => cmd.env("ROOKERY_URING_REFUSE", what),
        None => cmd.env_remove("ROOKERY_URING_REFUSE"),
    };
    cmd
}

/// `--io uring` where the ring is refused: exit 2 and the reason, before
/// listening.
#[test]
fn uring_where_it_is_refused_exits_2_with_the_reason() {
    let out = rookery_with(Some("setup"), &["--io", "uring"])
        .output()
        .expect("run rookery");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let why = if BUILT {
        "io_uring_setup: Function not implemented"
    } else {
        "built without the feature `uring`"
    };
    assert!(stderr.contains(why), "{stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).is_empty(),
        "it listened"
    );
}

/// `--io auto` where the ring is refused (no io_uring, or an operation
/// missing): epoll runs, the log says why, and it serves.
#[test]
fn auto_falls_back_to_epoll_and_says_why() {
    for (refuse, why) in [
        ("setup", "io_uring_setup: Function not implemented"),
        ("op", "lacks multishot receive"),
    ] {
        let cmd = rookery_with(Some(refuse), &["--io", "auto"]);
        let mut server = Rookery::spawn(cmd);
        echo_once(&server);
        server.signal(libc::SIGTERM);
        server.wait_exit(Duration::from_secs(10)).expect("stopped");
        let log = server.stderr_text();
        assert!(
            log.contains("io driver: epoll (io_uring not used: "),
            "{log}"
        );
        let why = if BUILT {
            why
        } else {
            "built without the feature `uring`"
        };
        assert!(log.contains(why), "{log}");
    }
}

/// Each driver by name serves the same, and the log names it. `uring`
/// where this kernel refuses it (qemu-user, a seccomp filter) must say so.
#[test]
fn each_driver_named_serves_and_is_logged() {
    let mut server = Rookery::spawn(rookery_with(None, &["--io", "epoll"]));
    echo_once(&server);
    server.signal(libc::SIGTERM);
    server.wait_exit(Duration::from_secs(10)).expect("stopped");
    assert!(server
        .stderr_text()
        .contains("io driver: epoll (--io epoll)"));

    let out = rookery_with(None, &["--io", "uring", "--version"])
        .output()
        .expect("run rookery");
    assert!(out.status.success());
    if !BUILT {
        return;
    }
    let mut cmd = rookery_with(None, &["--io", "uring"]);
    let Some(mut server) = Rookery::try_spawn(&mut cmd) else {
        let out = cmd.output().expect("run rookery");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("--io uring: "), "{stderr}");
        println!("SKIPPED: io_uring refused by this kernel: {stderr}");
        return;
    };
    echo_once(&server);
    server.signal(libc::SIGTERM);
    server.wait_exit(Duration::from_secs(10)).expect("stopped");
    assert!(server.stderr_text().contains("io driver: uring ("));
}

/// The library: `Config::io` chooses; `Uring` where it is not built in is
/// an `Unsupported` error, `Epoll` always serves.
#[test]
fn config_io_chooses_the_driver() {
    let config = |io| Config {
        io,
        ..Config::default()
    };
    let epoll = Server::bind("127.0.0.1:0", config(Io::Epoll), Echo);
    assert!(epoll.is_ok());
    let uring = Server::bind("127.0.0.1:0", config(Io::Uring), Echo);
    if !BUILT {
        let e = uring.err().expect("uring is not built in");
        assert_eq!(e.kind(), std::io::ErrorKind::Unsupported);
        assert!(e.to_string().contains("--io uring: "), "{e}");
    }
    assert_eq!("uring".parse::<Io>(), Ok(Io::Uring));
    assert_eq!("epoll".parse::<Io>(), Ok(Io::Epoll));
    assert_eq!("auto".parse::<Io>(), Ok(Io::Auto));
    assert!("kqueue".parse::<Io>().is_err());
    assert_eq!(Io::default(), Io::Auto);
}

/// One message echoed by `server`.
fn echo_once(server: &Rookery) {
    let stream = std::net::TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (mut ws, _) = tungstenite::client(server.url("/chat"), stream).expect("handshake");
    ws.send(Message::text("over the driver")).unwrap();
    loop {
        match ws.read().expect("read") {
            Message::Text(t) => {
                assert_eq!(t.as_str(), "over the driver");
                return;
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// A burst of connections set up at once, each sending a message before
/// any answer is read: every one is answered, in order, under each driver
/// built. On the ring, a pass that gives output to more connections than
/// one submission takes sends it in batches, and the sends that completed
/// give their bytes back as soon as they are seen.
#[test]
fn a_burst_of_connections_set_up_at_once_is_answered_whole() {
    use std::io::Write;
    const N: usize = 1500;
    let drivers: &[&str] = if BUILT {
        &["epoll", "uring"]
    } else {
        &["epoll"]
    };
    raise_descriptor_limit(2 * N + 64);
    for io in drivers {
        let mut cmd = rookery_with(None, &["--io", io, "--max-connections", "2000"]);
        let Some(mut server) = Rookery::try_spawn(&mut cmd) else {
            println!("SKIPPED: io_uring refused by this kernel");
            continue;
        };
        let mut burst = common::upgrade_request("/chat", "").into_bytes();
        burst.extend(common::client_frame(0x81, b"in the burst"));
        let mut clients: Vec<std::net::TcpStream> = (0..N)
            .map(|_| {
                let mut s = std::net::TcpStream::connect(server.addr).expect("connect");
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                s.write_all(&burst).expect("write");
                s
            })
            .collect();
        for (n, client) in clients.iter_mut().enumerate() {
            let head = common::read_head(client);
            assert!(head.starts_with("HTTP/1.1 101"), "{io} #{n}: {head}");
            let (first, payload) = common::read_frame(client).expect("echo");
            assert_eq!(
                (first, payload.as_slice()),
                (0x81, &b"in the burst"[..]),
                "{io} #{n}"
            );
        }
        drop(clients);
        server.signal(libc::SIGTERM);
        server.wait_exit(Duration::from_secs(10)).expect("stopped");
    }
}
