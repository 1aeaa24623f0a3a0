//! `rookery::stop_on_signals`, in a process of its own (signal handlers are
//! process-wide): a SIGTERM at this test process stops a running server
//! gracefully, and a later call moves the signals to the next server. One
//! test function, so that nothing else runs in this process meanwhile.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::*;
use rookery::echo::Echo;
use rookery::{Config, Server};

/// Runs a server on its own thread with its handle registered; returns its
/// address and a receiver that gets `run()`'s result when it returns.
fn serve_with_signals() -> (std::net::SocketAddr, mpsc::Receiver<std::io::Result<()>>) {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut server = Server::bind("127.0.0.1:0", Config::default(), Echo).expect("bind");
        rookery::stop_on_signals(server.stop_handle()).expect("install");
        ready_tx.send(server.local_addr()).expect("ready");
        let _ = done_tx.send(server.run());
    });
    (ready_rx.recv().expect("server started"), done_rx)
}

fn sigterm_this_process() {
    // SAFETY: kill(2) with our own pid and a valid signal number.
    assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGTERM) }, 0);
}

#[test]
fn sigterm_stops_the_registered_server_and_run_returns() {
    let (addr, done) = serve_with_signals();
    let mut ws = connect(&format!("ws://{addr}/chat"));
    ws.send(tungstenite::Message::text("before")).unwrap();
    assert_eq!(next_data(&mut ws), tungstenite::Message::text("before"));
    assert!(done.try_recv().is_err(), "the server runs until signalled");

    sigterm_this_process();
    assert_eq!(expect_close(&mut ws), Some(1001), "a graceful stop");
    // Our end closes too (the server half-closed and waits for that).
    drop(ws);
    let result = done
        .recv_timeout(Duration::from_secs(4))
        .expect("run() returned after SIGTERM");
    assert!(result.is_ok(), "{result:?}");

    // A second server: calling again moves the signals to it, and the count
    // starts again (this SIGTERM stops it instead of ending the process).
    let (addr, done) = serve_with_signals();
    let mut ws = connect(&format!("ws://{addr}/chat"));
    sigterm_this_process();
    assert_eq!(expect_close(&mut ws), Some(1001));
    drop(ws);
    let result = done
        .recv_timeout(Duration::from_secs(4))
        .expect("the second server's run() returned");
    assert!(result.is_ok(), "{result:?}");
}
