//! The chat service: the broadcaster of the classic Restbed and RESTinio
//! WebSocket examples.
//!
//! Each new connection is sent the welcome text, and only then joins the
//! broadcast set; every text message goes to every member, sender included,
//! in arrival order, encoded once; binary messages are refused with 1003
//! unless relaying them is allowed. Pings, pongs, idle timeouts and the
//! closing handshake are the server's business, configured in
//! [`crate::Config`]. `GET /` serves the chat page.

use log::info;

use crate::proto::close;
use crate::proto::http::{Request, Response};
use crate::{ConnId, Context, Handler, Message};

/// The chat page, with `{{WS_PATH}}` where the WebSocket path goes.
const PAGE_TEMPLATE: &str = include_str!("chat_page.html");

/// The chat broadcaster.
#[derive(Debug, Clone)]
pub struct Chat {
    welcome: String,
    allow_binary: bool,
    /// The rendered page, or `None` when it is turned off.
    page: Option<Vec<u8>>,
}

impl Chat {
    /// A chat that greets with `welcome` and serves its page for the
    /// WebSocket path `ws_path`, if `page` is set.
    pub fn new(welcome: &str, allow_binary: bool, page: bool, ws_path: &str) -> Chat {
        Chat {
            welcome: welcome.to_string(),
            allow_binary,
            page: page.then(|| render_page(ws_path).into_bytes()),
        }
    }
}

/// The chat page for `ws_path`, quoted for the script string it lands in.
pub fn render_page(ws_path: &str) -> String {
    let mut quoted = String::with_capacity(ws_path.len());
    for c in ws_path.chars() {
        match c {
            '"' | '\\' | '<' | '>' | '&' | '\'' => quoted.push_str(&format!("\\u{:04x}", c as u32)),
            c => quoted.push(c),
        }
    }
    PAGE_TEMPLATE.replace("{{WS_PATH}}", &quoted)
}

impl Handler for Chat {
    fn on_http(&mut self, req: &Request) -> Response {
        match (&self.page, req.path(), req.method()) {
            (Some(page), "/", "GET" | "HEAD") => {
                Response::ok("text/html; charset=utf-8", page.clone())
                    .with_header("Cache-Control", "no-cache")
                    .with_header("X-Content-Type-Options", "nosniff")
            }
            (Some(_), "/", _) => Response::status(405).with_header("Allow", "GET, HEAD"),
            _ => Response::status(404),
        }
    }

    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        match ctx.peer_addr(conn) {
            Some(addr) => info!("Opened connection to {conn} ({addr})"),
            None => info!("Opened connection to {conn}"),
        }
        // The welcome is queued before the connection can be part of any
        // broadcast, so it is always the first message a member sees.
        let _ = ctx.send_text(conn, &self.welcome);
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: Message<'_>) {
        match msg {
            Message::Text(text) => {
                info!("Received message '{text}' from {conn}");
                ctx.broadcast(msg);
            }
            Message::Binary(data) if self.allow_binary => {
                info!("Received {} binary bytes from {conn}", data.len());
                ctx.broadcast(msg);
            }
            Message::Binary(_) => {
                info!("Refusing binary message from {conn}");
                let _ = ctx.close(
                    conn,
                    close::UNSUPPORTED_DATA,
                    "binary messages are not supported",
                );
            }
        }
    }

    fn on_close(&mut self, _ctx: &mut Context<'_>, conn: ConnId, code: u16, _reason: &str) {
        info!("Closed connection to {conn} (code {code})");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_gets_the_path_quoted_for_its_script() {
        let page = render_page("/chat");
        assert!(page.contains("\"/chat\""));
        assert!(!page.contains("{{WS_PATH}}"));
        let hostile = render_page("/a\"</script>");
        assert!(!hostile.contains("\"</script>"));
        assert!(hostile.contains("\\u0022\\u003c/script\\u003e"));
    }
}
