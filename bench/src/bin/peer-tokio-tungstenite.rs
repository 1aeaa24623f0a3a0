//! Peer server: tokio-tungstenite on a current-thread tokio runtime.
//! `--mode echo`: every message back to its sender (the crate's echo-server
//! example). `--mode chat`: welcome text on connect, every text message to
//! every client, sender included (the crate's chat-server example).

#[path = "../peer_common.rs"]
mod common;

use common::{Mode, WELCOME};
use futures_channel::mpsc::{unbounded, UnboundedSender};
use futures_util::{future, pin_mut, StreamExt, TryStreamExt};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

type Clients = Rc<RefCell<HashMap<u64, UnboundedSender<Message>>>>;

fn main() {
    let args = common::parse_args("peer-tokio-tungstenite");
    common::raise_nofile();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = match TcpListener::bind(&args.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!(
                    "peer-tokio-tungstenite: cannot listen on {}: {e}",
                    args.listen
                );
                std::process::exit(1);
            }
        };
        println!(
            "listening on {}",
            listener.local_addr().expect("local addr")
        );
        let clients = Clients::default();
        let mut next_id = 0u64;
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    eprintln!("peer-tokio-tungstenite: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            match args.mode {
                Mode::Echo => {
                    tokio::task::spawn_local(echo(stream));
                }
                Mode::Chat => {
                    next_id += 1;
                    tokio::task::spawn_local(chat(stream, next_id, clients.clone()));
                }
            }
        }
    });
}

async fn echo(stream: TcpStream) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (write, read) = ws.split();
    let _ = read
        .try_filter(|msg| future::ready(msg.is_text() || msg.is_binary()))
        .forward(write)
        .await;
}

async fn chat(stream: TcpStream, id: u64, clients: Clients) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (tx, rx) = unbounded();
    // Welcome first, then join the broadcast set.
    let _ = tx.unbounded_send(Message::text(WELCOME));
    clients.borrow_mut().insert(id, tx);

    let (outgoing, incoming) = ws.split();
    let broadcast = incoming.try_for_each(|msg| {
        if msg.is_text() {
            for peer in clients.borrow().values() {
                let _ = peer.unbounded_send(msg.clone());
            }
        }
        future::ok(())
    });
    let send = rx.map(Ok).forward(outgoing);
    pin_mut!(broadcast, send);
    future::select(broadcast, send).await;
    clients.borrow_mut().remove(&id);
}
