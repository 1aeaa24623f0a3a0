//! A TLS echo server over `rookery::tls`, server side only: blocking, one
//! connection at a time, no WebSocket. It exists to measure what the TLS
//! layer adds to a stripped binary (docs/tls.md) and to poke the layer by
//! hand:
//!
//! ```sh
//! cargo run --release --features tls --example tls_echo -- cert.pem key.pem 127.0.0.1:8443
//! openssl s_client -connect 127.0.0.1:8443 -alpn http/1.1
//! ```
//!
//! It moves bytes the way the server's poll loop will: a read into one
//! buffer, `read_tls` into a scratch plaintext buffer, `write_plaintext`,
//! then `pending_output` to the socket.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::ExitCode;

use rookery::tls::{TlsConfig, TlsSession};

fn serve(stream: &mut TcpStream, config: &TlsConfig) -> Result<(), Box<dyn std::error::Error>> {
    let mut tls = TlsSession::new(config)?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut plain = Vec::new();
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        plain.clear();
        let read = tls.read_tls(&mut buf[..n], &mut plain);
        if read.is_ok() && !plain.is_empty() {
            tls.write_plaintext(&plain)?;
        }
        while tls.wants_write() {
            tls.write_tls(stream)?;
        }
        let read = read?;
        if read.peer_closed {
            tls.close();
            while tls.wants_write() {
                tls.write_tls(stream)?;
            }
            return Ok(());
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: tls_echo CERT.pem KEY.pem [ADDR]");
        return ExitCode::from(2);
    }
    let config = match TlsConfig::from_pem_files(Path::new(&args[1]), Path::new(&args[2])) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tls_echo: {e}");
            return ExitCode::from(2);
        }
    };
    let addr = args.get(3).map_or("127.0.0.1:8443", String::as_str);
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tls_echo: {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("tls_echo: listening on {addr}");
    for stream in listener.incoming() {
        match stream {
            Ok(mut s) => {
                if let Err(e) = serve(&mut s, &config) {
                    eprintln!("tls_echo: connection: {e}");
                }
            }
            Err(e) => eprintln!("tls_echo: accept: {e}"),
        }
    }
    ExitCode::SUCCESS
}
