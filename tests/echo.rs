//! The echo service over real sockets, against tungstenite (a client
//! written elsewhere) and a raw client for what tungstenite will not send.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;
use tungstenite::Message;

fn echo_server(extra: &[&str]) -> Rookery {
    let mut args = vec!["--mode", "echo", "--ping-interval", "0"];
    args.extend_from_slice(extra);
    Rookery::start(&args)
}

/// The echo service in process on a virtual clock, with the command's
/// defaults but no pings and `config`'s other fields.
fn virtual_echo(config: rookery::Config) -> Virtual {
    Virtual::start(
        rookery::Config {
            ping_interval: Duration::ZERO,
            ..config
        },
        rookery::echo::Echo,
    )
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn handshake_then_text_and_binary_echo() {
    let server = echo_server(&[]);
    let mut ws = connect(&server.url("/chat"));
    ws.send(Message::text("hello rookery")).unwrap();
    assert_eq!(next_data(&mut ws), Message::text("hello rookery"));
    ws.send(Message::binary(vec![0u8, 1, 2, 255])).unwrap();
    assert_eq!(next_data(&mut ws), Message::binary(vec![0u8, 1, 2, 255]));
}

#[test]
fn echo_of_every_size_from_0_to_16_mib() {
    let server = echo_server(&["--max-message", "32MiB", "--max-backlog", "64MiB"]);
    let mut ws = connect(&server.url("/chat"));
    for len in [0, 1, 125, 126, 127, 65535, 65536, 65537, 1 << 20, 16 << 20] {
        let data = pattern(len);
        ws.send(Message::binary(data.clone())).unwrap();
        assert_eq!(
            next_data(&mut ws),
            Message::binary(data),
            "binary of {len} bytes"
        );
        let text: String = (0..len)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        ws.send(Message::text(text.clone())).unwrap();
        assert_eq!(
            next_data(&mut ws),
            Message::text(text),
            "text of {len} bytes"
        );
    }
}

#[test]
fn fragmented_message_with_interleaved_ping_is_reassembled() {
    let server = echo_server(&[]);
    let (mut raw, head) = raw_upgrade(server.addr, "/chat", "");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut bytes = client_frame(0x01, "κό".as_bytes());
    // A ping between fragments, and a code point split across fragments.
    bytes.extend(client_frame(0x89, b"mid"));
    bytes.extend(client_frame(0x00, &"σμε".as_bytes()[..3]));
    bytes.extend(client_frame(0x80, &"σμε".as_bytes()[3..]));
    raw.write_all(&bytes).unwrap();
    let (first, payload) = read_frame(&mut raw).unwrap();
    assert_eq!(
        (first, payload.as_slice()),
        (0x8A, &b"mid"[..]),
        "pong first"
    );
    let (first, payload) = read_frame(&mut raw).unwrap();
    assert_eq!(first, 0x81);
    assert_eq!(String::from_utf8(payload).unwrap(), "κόσμε");
}

#[test]
fn ping_is_answered_with_the_same_payload() {
    let server = echo_server(&[]);
    let mut ws = connect(&server.url("/chat"));
    ws.send(Message::Ping(b"are you there".to_vec())).unwrap();
    match next(&mut ws) {
        Message::Pong(p) => assert_eq!(&p[..], b"are you there"),
        other => panic!("expected pong, got {other:?}"),
    }
}

#[test]
fn client_close_is_echoed_with_its_code() {
    let server = echo_server(&[]);
    let (mut raw, _) = raw_upgrade(server.addr, "/chat", "");
    raw.write_all(&client_frame(0x88, &[0x0F, 0xA1, b'b', b'y', b'e']))
        .unwrap();
    assert_eq!(read_close(&mut raw).unwrap(), Some(4001));
    // The server then ends the TCP connection.
    let mut rest = Vec::new();
    assert_eq!(raw.read_to_end(&mut rest).unwrap(), 0);

    let mut ws = connect(&server.url("/chat"));
    ws.close(None).unwrap();
    assert_eq!(
        expect_close(&mut ws),
        None,
        "empty close answered with empty close"
    );
}

#[test]
fn server_initiated_close_completes_the_handshake() {
    let server = virtual_echo(rookery::Config {
        idle_timeout: Duration::from_millis(300),
        ..rookery::Config::default()
    });
    let mut ws = connect(&server.url("/chat"));
    server.settle();
    server.advance(Duration::from_millis(350));
    // tungstenite answers the server's close frame; the server then closes.
    assert_eq!(expect_close(&mut ws), Some(1001));
}

#[test]
fn request_and_frames_one_byte_per_write() {
    let server = virtual_echo(rookery::Config::default());
    let mut raw = std::net::TcpStream::connect(server.addr).unwrap();
    raw.set_nodelay(true).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut bytes = upgrade_request("/chat", "").into_bytes();
    bytes.extend(client_frame(0x81, "byte by byte ✓".as_bytes()));
    bytes.extend(client_frame(0x02, b"frag"));
    bytes.extend(client_frame(0x80, b"ments"));
    for b in &bytes {
        raw.write_all(std::slice::from_ref(b)).unwrap();
        // The server reads it before the next is written: one byte a read.
        server.settle();
    }
    let head = read_head(&mut raw);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert_eq!(
        read_frame(&mut raw).unwrap(),
        (0x81, "byte by byte ✓".as_bytes().to_vec())
    );
    assert_eq!(read_frame(&mut raw).unwrap(), (0x82, b"fragments".to_vec()));
}

#[test]
fn sixteen_mib_echo_to_a_slow_reader_arrives_intact() {
    let server = virtual_echo(rookery::Config {
        max_message: 32 << 20,
        max_backlog: 64 << 20,
        ..rookery::Config::default()
    });
    let (mut raw, _) = raw_upgrade(server.addr, "/chat", "");
    let data = pattern(16 << 20);
    let frame = client_frame(0x82, &data);
    let writer = {
        let mut raw = raw.try_clone().unwrap();
        std::thread::spawn(move || raw.write_all(&frame).unwrap())
    };
    // Read the reply a chunk per pass of the server, so that it meets a
    // full socket many times.
    let mut got = Vec::with_capacity(data.len() + 10);
    let mut chunk = vec![0u8; 64 * 1024];
    while got.len() < data.len() + 10 {
        let n = raw.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed after {} bytes", got.len());
        got.extend_from_slice(&chunk[..n]);
        server.settle();
    }
    writer.join().unwrap();
    assert_eq!(&got[..10], &[0x82, 127, 0, 0, 0, 0, 1, 0, 0, 0]);
    assert!(got[10..] == data[..], "payload corrupted");
}

#[test]
fn a_thousand_concurrent_clients() {
    let server = echo_server(&["--max-connections", "2000"]);
    let url = server.url("/chat");
    let mut clients: Vec<Ws> = (0..1000).map(|_| connect(&url)).collect();
    for (i, ws) in clients.iter_mut().enumerate() {
        ws.send(Message::text(format!("client {i}"))).unwrap();
    }
    for (i, ws) in clients.iter_mut().enumerate() {
        assert_eq!(next_data(ws), Message::text(format!("client {i}")));
    }
}

#[test]
fn protocol_violations_get_their_close_codes() {
    let server = echo_server(&["--max-message", "1KiB"]);
    let mut unmasked = client_frame(0x81, b"hi");
    unmasked[1] &= 0x7F;
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (unmasked, 1002),
        (client_frame(0xC1, b"rsv"), 1002),
        (client_frame(0x83, b"op"), 1002),
        (client_frame(0x80, b"cont"), 1002),
        (client_frame(0x81, b"\xff\xfe"), 1007),
        (client_frame(0x82, &[0; 2000]), 1009),
        (client_frame(0x88, &[0x03, 0xEE]), 1002),
    ];
    for (bytes, code) in cases {
        let (mut raw, _) = raw_upgrade(server.addr, "/chat", "");
        raw.write_all(&bytes).unwrap();
        assert_eq!(
            read_close(&mut raw).unwrap(),
            Some(code),
            "{:02x?}",
            &bytes[..2]
        );
    }
    // The server is unharmed.
    let mut ws = connect(&server.url("/chat"));
    ws.send(Message::text("still here")).unwrap();
    assert_eq!(next_data(&mut ws), Message::text("still here"));
}

#[test]
fn requests_that_are_not_upgrades_get_http_errors() {
    let server = echo_server(&[]);
    let plain = "GET /chat HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(http_status(server.addr, plain), 400);
    let v8 = upgrade_request("/chat", "").replace("Version: 13", "Version: 8");
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream.write_all(v8.as_bytes()).unwrap();
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 426"), "{head}");
    assert!(head.contains("Sec-WebSocket-Version: 13\r\n"));
    assert_eq!(
        http_status(server.addr, &upgrade_request("/elsewhere", "")),
        404
    );
    assert_eq!(
        http_status(server.addr, "BREW /chat HTTP/1.1\r\nHost: x\r\n\r\n"),
        400
    );
    assert_eq!(http_status(server.addr, "garbage\r\n\r\n"), 400);
}

#[test]
fn subprotocol_offers_are_not_echoed_by_the_echo_service() {
    let server = echo_server(&[]);
    let (_, head) = raw_upgrade(server.addr, "/chat", "Sec-WebSocket-Protocol: chat\r\n");
    assert!(head.starts_with("HTTP/1.1 101"));
    assert!(!head.to_ascii_lowercase().contains("sec-websocket-protocol"));
}
