//! The `rookery` command over TLS: the page over https and the chat over
//! wss on one port, with clients nobody here wrote (tungstenite over rustls;
//! Python `websockets` and curl where installed), hostile bytes on the TLS
//! port, the handshake deadline, and SIGHUP reloads.

#![cfg(feature = "tls")]

mod common;
mod tls_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConnection, StreamOwned};
use tungstenite::Message;

type Wss = tungstenite::WebSocket<StreamOwned<ClientConnection, TcpStream>>;

/// A certificate and key written to files in a fresh directory.
struct Files {
    dir: PathBuf,
    pair: tls_support::Pair,
}

impl Files {
    fn new(name: &str) -> Files {
        let dir = tls_support::temp_dir(name);
        let files = Files {
            dir,
            pair: tls_support::pair(),
        };
        files.write(&files.pair);
        files
    }

    fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    fn write(&self, pair: &tls_support::Pair) {
        std::fs::write(self.cert(), &pair.cert_pem).unwrap();
        std::fs::write(self.key(), &pair.key_pem).unwrap();
    }

    fn args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            path(&self.cert()),
            "--tls-key".into(),
            path(&self.key()),
        ]
    }
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn start(files: &Files, extra: &[&str]) -> Rookery {
    let mut args: Vec<String> = files.args();
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Rookery::start(&args)
}

/// A WebSocket over TLS: tungstenite over a rustls client stream.
fn try_wss(addr: SocketAddr, trust: &CertificateDer<'static>) -> Result<Wss, String> {
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let stream = StreamOwned::new(tls_support::client(trust), tcp);
    let url = format!("wss://localhost:{}/chat", addr.port());
    tungstenite::client(url.as_str(), stream)
        .map(|(ws, _)| ws)
        .map_err(|e| e.to_string())
}

fn wss(addr: SocketAddr, trust: &CertificateDer<'static>) -> Wss {
    try_wss(addr, trust).expect("wss handshake")
}

fn next_text(ws: &mut Wss) -> String {
    loop {
        match ws.read().expect("read") {
            Message::Text(t) => return t.to_string(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn chat_over_wss_and_the_page_over_https_on_one_port() {
    let files = Files::new("chat");
    let mut server = start(&files, &["-v"]);
    let mut a = wss(server.addr, &files.pair.trust);
    assert_eq!(next_text(&mut a), "Welcome to Rookery Chat!");
    let mut b = wss(server.addr, &files.pair.trust);
    assert_eq!(next_text(&mut b), "Welcome to Rookery Chat!");
    // 64 KiB crosses several TLS records both ways.
    let big = "x".repeat(64 * 1024);
    a.send(Message::text(big.clone())).unwrap();
    assert_eq!(next_text(&mut a), big);
    assert_eq!(next_text(&mut b), big);

    // Python's websockets, trusting the test certificate.
    if require_python("websockets.asyncio.client") {
        python_chats_over_wss(&files, server.addr);
        assert_eq!(next_text(&mut a), "from python");
    }

    // curl, verifying the certificate.
    if require_program(Tool::Curl, "curl", &["--version"]) {
        curl_gets_the_page_over_https(&files, server.addr);
    }
    assert!(server.stderr_text().contains(&format!(
        "serving chat on wss://127.0.0.1:{}/chat",
        server.addr.port()
    )));
}

/// Python's `websockets` joins over wss, gets the welcome, and says
/// `from python`.
fn python_chats_over_wss(files: &Files, addr: SocketAddr) {
    let script = format!(
        "import asyncio, ssl, websockets\n\
         async def main():\n\
         \x20   ctx = ssl.create_default_context(cafile={:?})\n\
         \x20   async with websockets.connect('wss://localhost:{}/chat', ssl=ctx) as ws:\n\
         \x20       print(await ws.recv())\n\
         \x20       await ws.send('from python')\n\
         \x20       print(await ws.recv())\n\
         asyncio.run(main())\n",
        path(&files.cert()),
        addr.port()
    );
    let out = run_python(&script);
    assert_eq!(out, "Welcome to Rookery Chat!\nfrom python\n");
}

/// curl fetches the page over https, verifying the test certificate.
fn curl_gets_the_page_over_https(files: &Files, addr: SocketAddr) {
    let out = Command::new("curl")
        .args(["-sS", "--cacert", &path(&files.cert())])
        .arg(format!("https://localhost:{}/", addr.port()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("<!DOCTYPE html>"));
}

/// Reads until EOF or `limit`; returns what came and whether EOF came.
fn read_to_eof(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (got, true),
            Err(_) => return (got, false),
        }
    }
}

#[test]
fn plain_http_and_garbage_on_the_tls_port_are_dropped_and_others_go_on() {
    let files = Files::new("garbage");
    let mut server = start(&files, &["-v"]);
    let mut member = wss(server.addr, &files.pair.trust);
    assert_eq!(next_text(&mut member), "Welcome to Rookery Chat!");
    let inputs: [&[u8]; 3] = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x00\x05hello, not a client hello at all",
        &[0xAB; 3000],
    ];
    let mut peers = Vec::new();
    for input in inputs {
        let mut tcp = TcpStream::connect(server.addr).unwrap();
        peers.push(tcp.local_addr().unwrap().to_string());
        tcp.write_all(input).unwrap();
        let (reply, eof) = read_to_eof(&mut tcp, Duration::from_secs(3));
        assert!(eof, "not dropped after {:?}", &input[..8]);
        assert!(
            !reply.windows(5).any(|w| w == b"HTTP/"),
            "answered in plain HTTP: {reply:?}"
        );
        // At most a TLS alert record.
        assert!(reply.is_empty() || reply[0] == 0x15, "{reply:?}");
    }
    member.send(Message::text("still here")).unwrap();
    assert_eq!(next_text(&mut member), "still here");
    // Each is logged at debug with the peer's address: the plain HTTP
    // request and the noise as not TLS, the broken record as a TLS error.
    // (The lines reach `stderr_text` through a reader thread: wait for
    // them a little.)
    let expected = [
        format!("{} sent bytes that are not TLS (plain http://", peers[0]),
        format!("{}: TLS error: ", peers[1]),
        format!("{} sent bytes that are not TLS (plain http://", peers[2]),
    ];
    let mut log = String::new();
    eventually(Duration::from_secs(5), || {
        log = server.stderr_text();
        expected.iter().all(|line| log.contains(line.as_str()))
    });
    for line in &expected {
        assert!(log.contains(line.as_str()), "{line}: {log}");
    }
}

/// The first `len` bytes of a real ClientHello.
fn client_hello_part(trust: &CertificateDer<'static>, len: usize) -> Vec<u8> {
    let mut client = tls_support::client(trust);
    let mut hello = Vec::new();
    client.write_tls(&mut hello).unwrap();
    hello.truncate(len.min(hello.len()));
    hello
}

#[test]
fn half_a_client_hello_is_closed_at_the_handshake_timeout() {
    let files = Files::new("slowloris");
    let server = start(&files, &["--handshake-timeout", "400ms"]);
    let half = client_hello_part(&files.pair.trust, 100);
    let mut tcp = TcpStream::connect(server.addr).unwrap();
    let start = Instant::now();
    tcp.write_all(&half).unwrap();
    let (reply, eof) = read_to_eof(&mut tcp, Duration::from_secs(5));
    let took = start.elapsed();
    assert!(eof, "still open after {took:?}");
    assert!(reply.is_empty(), "{reply:?}");
    assert!(took >= Duration::from_millis(350), "closed early: {took:?}");
    assert!(took < Duration::from_secs(3), "closed late: {took:?}");
}

#[test]
fn a_thousand_abandoned_handshakes_leave_the_server_serving() {
    let files = Files::new("abandoned");
    let server = start(
        &files,
        &["--handshake-timeout", "300ms", "--max-connections", "2000"],
    );
    let hello = client_hello_part(&files.pair.trust, usize::MAX);
    for round in 0..10 {
        let mut open = Vec::new();
        for i in 0..100 {
            let Ok(mut tcp) = TcpStream::connect(server.addr) else {
                continue;
            };
            // Half of them stop midway through the ClientHello, the others
            // after it, without ever answering the server's flight.
            let cut = if i % 2 == 0 {
                hello.len() / 2
            } else {
                hello.len()
            };
            let _ = tcp.write_all(&hello[..cut]);
            open.push(tcp);
        }
        if round % 2 == 0 {
            drop(open);
        } else {
            // Kept until the server has dropped a later connection that
            // sent plain HTTP: it has accepted these and read their bytes.
            let mut probe = TcpStream::connect(server.addr).unwrap();
            probe.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
            let (_, eof) = read_to_eof(&mut probe, Duration::from_secs(5));
            assert!(eof, "a plain HTTP request kept open");
        }
    }
    let mut member = wss(server.addr, &files.pair.trust);
    assert_eq!(next_text(&mut member), "Welcome to Rookery Chat!");
    member.send(Message::text("after the storm")).unwrap();
    assert_eq!(next_text(&mut member), "after the storm");
}

#[test]
fn sighup_takes_a_new_pair_and_keeps_the_old_one_when_the_new_is_broken() {
    let files = Files::new("reload");
    let mut server = start(&files, &["-v"]);
    let old = files.pair.trust.clone();
    assert!(try_wss(server.addr, &old).is_ok());
    let new = tls_support::pair();
    files.write(&new);
    server.signal(libc::SIGHUP);
    assert!(eventually(Duration::from_secs(5), || server
        .stderr_text()
        .contains("reloaded the TLS certificate and key")));
    assert!(
        try_wss(server.addr, &new.trust).is_ok(),
        "new pair not in use"
    );
    assert!(try_wss(server.addr, &old).is_err(), "old pair still in use");

    std::fs::write(files.key(), "not a key").unwrap();
    server.signal(libc::SIGHUP);
    assert!(eventually(Duration::from_secs(5), || server
        .stderr_text()
        .contains("TLS reload failed, keeping the old pair")));
    let mut ws = wss(server.addr, &new.trust);
    assert_eq!(next_text(&mut ws), "Welcome to Rookery Chat!");
}

#[test]
fn a_missing_or_bad_file_exits_2_naming_its_flag() {
    let files = Files::new("bad");
    let cases = [
        (files.dir.join("missing.pem"), files.key(), "--tls-cert"),
        (files.cert(), files.dir.join("missing.pem"), "--tls-key"),
        (files.key(), files.key(), "--tls-cert"),
    ];
    for (cert, key, flag) in cases {
        let out = rookery_command()
            .args(["--listen", "127.0.0.1:0", "--tls-cert", &path(&cert)])
            .args(["--tls-key", &path(&key)])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with(&format!("rookery: {flag}: ")), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let out = rookery_command()
        .args(["--tls-cert", &path(&files.cert())])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --tls-key"));
}
