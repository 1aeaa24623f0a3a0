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
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

type Clients = Rc<RefCell<HashMap<u64, UnboundedSender<Message>>>>;

fn main() {
    let args = common::parse_args("peer-tokio-tungstenite");
    let clients = Clients::default();
    common::serve_forever("peer-tokio-tungstenite", &args.listen, |stream, id| {
        match args.mode {
            Mode::Echo => tokio::task::spawn_local(echo(stream)),
            Mode::Chat => tokio::task::spawn_local(chat(stream, id, clients.clone())),
        };
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
