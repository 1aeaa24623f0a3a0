//! Peer server: fastwebsockets (hyper upgrade) on a current-thread tokio
//! runtime. `--mode echo` follows the crate's echo_server example; `--mode
//! chat` sends the welcome text on connect and relays every text message to
//! every client, sender included, through one writer task per client that
//! buffers frames and flushes when its queue runs dry.

#[path = "../peer_common.rs"]
mod common;

use bytes::Bytes;
use common::{Mode, WELCOME};
use fastwebsockets::{
    upgrade, FragmentCollector, FragmentCollectorRead, Frame, OpCode, Payload, WebSocketError,
};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use tokio::io::BufWriter;
use tokio::net::TcpStream;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

/// What a client's writer task sends.
enum Out {
    Text(Bytes),
    Pong(Vec<u8>),
    Close(Vec<u8>),
}

type Clients = Rc<RefCell<HashMap<u64, UnboundedSender<Out>>>>;

fn main() {
    let args = common::parse_args("peer-fastwebsockets");
    let clients = Clients::default();
    common::serve_forever("peer-fastwebsockets", &args.listen, |stream, id| {
        tokio::task::spawn_local(serve(stream, args.mode, id, clients.clone()));
    });
}

async fn serve(stream: TcpStream, mode: Mode, id: u64, clients: Clients) {
    let service = service_fn(move |mut req: Request<Incoming>| {
        let clients = clients.clone();
        async move {
            let (response, fut) = upgrade::upgrade(&mut req)?;
            tokio::task::spawn_local(async move {
                let _ = match mode {
                    Mode::Echo => tokio::task::unconstrained(echo(fut)).await,
                    Mode::Chat => chat(fut, id, clients).await,
                };
            });
            Ok::<Response<Empty<Bytes>>, WebSocketError>(response)
        }
    });
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
}

async fn echo(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = FragmentCollector::new(fut.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
    Ok(())
}

async fn chat(fut: upgrade::UpgradeFut, id: u64, clients: Clients) -> Result<(), WebSocketError> {
    let ws = fut.await?;
    // Buffered write half: the writer task flushes once its queue is empty,
    // so a burst of broadcasts costs one syscall, like tungstenite's
    // feed-then-flush.
    let (rx, mut tx) = ws.split(|s| {
        let (r, w) = tokio::io::split(s);
        (r, BufWriter::new(w))
    });
    let mut rx = FragmentCollectorRead::new(rx);
    let (qtx, mut qrx) = unbounded_channel::<Out>();
    // Welcome first, then join the broadcast set.
    let _ = qtx.send(Out::Text(Bytes::from_static(WELCOME.as_bytes())));
    clients.borrow_mut().insert(id, qtx.clone());

    let writer = tokio::task::spawn_local(async move {
        while let Some(mut out) = qrx.recv().await {
            loop {
                let res = match &out {
                    Out::Text(b) => tx.write_frame(Frame::text(Payload::Borrowed(b))).await,
                    Out::Pong(p) => tx.write_frame(Frame::pong(Payload::Borrowed(p))).await,
                    Out::Close(p) => {
                        let _ = tx.write_frame(Frame::close_raw(Payload::Borrowed(p))).await;
                        let _ = tx.flush().await;
                        return;
                    }
                };
                if res.is_err() {
                    return;
                }
                match qrx.try_recv() {
                    Ok(next) => out = next,
                    Err(_) => break,
                }
            }
            if tx.flush().await.is_err() {
                return;
            }
        }
    });

    let own = qtx;
    let result = loop {
        // Pongs and close replies the reader owes go through the writer.
        let frame = rx
            .read_frame(&mut |f: Frame<'_>| {
                let res = match f.opcode {
                    OpCode::Pong => own.send(Out::Pong(f.payload.to_vec())),
                    OpCode::Close => own.send(Out::Close(f.payload.to_vec())),
                    _ => Ok(()),
                };
                async move { res.map_err(|_| "client writer gone") }
            })
            .await;
        match frame {
            Ok(frame) => match frame.opcode {
                OpCode::Text => {
                    let msg = Bytes::copy_from_slice(&frame.payload);
                    for peer in clients.borrow().values() {
                        let _ = peer.send(Out::Text(msg.clone()));
                    }
                }
                OpCode::Close => break Ok(()),
                _ => {}
            },
            Err(e) => break Err(e),
        }
    };
    clients.borrow_mut().remove(&id);
    drop(own);
    let _ = writer.await;
    result
}
