//! What the core's tests with a real server share: an echo handler (the
//! echo service, which the server's modules do not name) and one client
//! connection upgraded against a server driven pass by pass.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::{Config, ConnId, Context, Handler, Message, Server};

#[path = "../../../tests/common/descriptor_limit.rs"]
mod descriptor_limit;
use descriptor_limit::raise_descriptor_limit;

/// Sends every message back.
pub(crate) struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: Message<'_>) {
        let _ = ctx.send(conn, msg);
    }
}

/// A server with `config` and one client whose upgrade it has accepted
/// (the passes run until the connection is open; the response may still
/// be on its way: [`read_head`]). The error is the server's bind, e.g. a
/// driver this kernel refuses.
pub(crate) fn open_one(config: Config) -> io::Result<(Server<Echo>, TcpStream)> {
    let (server, mut clients) = open_many(config, 1)?;
    let client = clients.pop().expect("one client");
    Ok((server, client))
}

/// [`open_one`] with `n` clients (the soft limit on descriptors raised
/// for their two ends, where the hard limit allows).
pub(crate) fn open_many(config: Config, n: usize) -> io::Result<(Server<Echo>, Vec<TcpStream>)> {
    raise_descriptor_limit(2 * n + 256);
    let mut server = Server::bind("127.0.0.1:0", config, Echo)?;
    let mut clients = Vec::with_capacity(n);
    let now = Instant::now();
    for i in 0..n {
        // Accepts between the connects: the listener's queue is shorter
        // than a few hundred, and with epoll nothing accepts meanwhile.
        if i % 64 == 63 {
            server.run_once_at(now, Some(Duration::ZERO)).expect("pass");
        }
        let mut client = TcpStream::connect(server.local_addr()).expect("connect");
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        client
            .write_all(
                b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
                  Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                  Sec-WebSocket-Version: 13\r\n\r\n",
            )
            .expect("request");
        clients.push(client);
    }
    for _ in 0..20 + n {
        if server.core.open_connections() == n {
            break;
        }
        server
            .run_once_at(now, Some(Duration::from_secs(1)))
            .expect("pass");
    }
    assert_eq!(server.core.open_connections(), n);
    Ok((server, clients))
}

/// Reads the response head byte by byte (nothing after it is taken).
pub(crate) fn read_head(client: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        client.read_exact(&mut byte).expect("head");
        head.push(byte[0]);
    }
    head
}
