//! The chat service: the broadcaster of the classic Restbed and RESTinio
//! WebSocket examples.
//!
//! Each new connection is sent the welcome text, and only then joins the
//! broadcast set; every text message goes to every member, sender included,
//! in arrival order, encoded once; binary messages are refused with 1003
//! unless relaying them is allowed. Pings, pongs, idle timeouts and the
//! closing handshake are the server's business, configured in
//! [`crate::Config`]. `GET /` serves the chat page.

use std::fmt::Write as _;

use log::{debug, info, trace};

use crate::proto::close;
use crate::proto::http::{Request, Response};
use crate::{ConnId, Context, Handler, Message};

/// The most characters of a client's text that one log line shows.
const LOG_EXCERPT: usize = 200;

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

    /// The answer to a plain HTTP request: the page at `/`, else 404.
    fn answer(&self, req: &Request) -> Response {
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
        let response = self.answer(req);
        if log::log_enabled!(log::Level::Trace) {
            let (path, cut) = excerpt(req.path(), LOG_EXCERPT);
            let more = if cut { "…" } else { "" };
            trace!(
                "HTTP {} '{path}{more}': {}",
                excerpt(req.method(), 16).0,
                response.status
            );
        }
        response
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
                // The text is the client's: at debug level only, escaped
                // and cut, so that it can neither flood the log nor forge
                // lines or terminal escapes in it.
                if log::log_enabled!(log::Level::Debug) {
                    match excerpt(text, LOG_EXCERPT) {
                        (shown, false) => debug!("Received message '{shown}' from {conn}"),
                        (shown, true) => debug!(
                            "Received message '{shown}…' from {conn} (cut: {} bytes in all)",
                            text.len()
                        ),
                    }
                }
                let members = ctx.broadcast(msg);
                trace!(
                    "{conn}: text of {} bytes broadcast, recipients: {members}",
                    text.len()
                );
            }
            Message::Binary(data) if self.allow_binary => {
                debug!("Received {} binary bytes from {conn}", data.len());
                let members = ctx.broadcast(msg);
                trace!(
                    "{conn}: binary of {} bytes broadcast, recipients: {members}",
                    data.len()
                );
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

/// `text` as a log line may show it: escaped so that it holds no control
/// character (`\n`, `\t`, `\x1b`, `\u{9b}`; a backslash doubled, and the
/// characters that reorder or break lines as `\u{202e}`, `\u{2028}`), and
/// at most `limit` characters long, never cutting an escape in two. The
/// flag tells whether something was left off.
fn excerpt(text: &str, limit: usize) -> (String, bool) {
    let mut out = String::with_capacity(text.len().min(limit));
    let mut shown = 0;
    let mut piece = String::new();
    for c in text.chars() {
        piece.clear();
        match c {
            '\\' => piece.push_str("\\\\"),
            '\n' => piece.push_str("\\n"),
            '\r' => piece.push_str("\\r"),
            '\t' => piece.push_str("\\t"),
            c if c.is_ascii_control() => {
                let _ = write!(piece, "\\x{:02x}", c as u32);
            }
            c if c.is_control() || is_layout_control(c) => {
                let _ = write!(piece, "\\u{{{:x}}}", c as u32);
            }
            c => piece.push(c),
        }
        let len = piece.chars().count();
        if shown + len > limit {
            return (out, true);
        }
        out.push_str(&piece);
        shown += len;
    }
    (out, false)
}

/// Characters that, printed raw, move text around in a terminal or an
/// editor: the bidirectional embeddings, overrides and isolates, and the
/// Unicode line and paragraph separators.
fn is_layout_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
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

    #[test]
    fn log_excerpts_escape_control_characters_and_stop_at_the_limit() {
        assert_eq!(excerpt("hello", 200), ("hello".to_string(), false));
        assert_eq!(
            excerpt("a\nb\r\tc\\d\u{1b}[31m\u{7f}\u{9b}\u{202e}\u{2028}é", 200),
            (
                "a\\nb\\r\\tc\\\\d\\x1b[31m\\x7f\\u{9b}\\u{202e}\\u{2028}é".to_string(),
                false
            )
        );
        assert_eq!(excerpt("abcdef", 4), ("abcd".to_string(), true));
        assert_eq!(excerpt("abcd", 4), ("abcd".to_string(), false));
        // An escape is never cut in two: "ab\x1b" would be 6 characters.
        assert_eq!(excerpt("ab\u{1b}", 5), ("ab".to_string(), true));
        let (long, cut) = excerpt(&"\n".repeat(100_000), 200);
        assert!(cut);
        assert_eq!(long, "\\n".repeat(100));
        let (wide, cut) = excerpt(&"é".repeat(1000), 200);
        assert!(cut && wide.chars().count() == 200);
    }
}
