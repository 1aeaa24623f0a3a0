//! A `rookery.v1` client for the resume tests (tests/resume.rs, one node;
//! tests/cluster_resume.rs, nodes through Redis): joining, and reading the
//! fields of the JSON envelopes the server sends (SPEC section 12).

use tungstenite::client::IntoClientRequest;
use tungstenite::Message;

use super::{connect, next_data, try_handshake, Rookery, Ws};

/// The chat's welcome to a plain member.
pub const WELCOME: &str = "Welcome to Rookery Chat!";

/// A tungstenite client that offers `rookery.v1`, and the protocol the
/// server chose.
pub fn connect_v1(url: &str) -> Result<(Ws, Option<String>), Box<tungstenite::Error>> {
    let mut request = url.into_client_request().expect("request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "rookery.v1".parse().expect("header"),
    );
    let (ws, response) = try_handshake(request)?;
    let protocol = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok((ws, protocol))
}

/// Joins `path` (with `?since=` if given) as a `rookery.v1` member: the
/// client and its welcome's epoch and latest offset.
pub fn join_v1(server: &Rookery, path: &str) -> (Ws, String, u64) {
    let (mut ws, protocol) = connect_v1(&server.url(path)).expect("connect");
    assert_eq!(protocol.as_deref(), Some("rookery.v1"));
    let welcome = text(&mut ws);
    assert_eq!(kind(&welcome), "welcome", "{welcome}");
    (ws, epoch_of(&welcome), number(&welcome, "offset"))
}

/// Joins `path` as a plain member, past its welcome.
pub fn join_plain(server: &Rookery, path: &str) -> Ws {
    let mut ws = connect(&server.url(path));
    assert_eq!(next_data(&mut ws), Message::text(WELCOME));
    ws
}

/// The next data message, which must be text.
pub fn text(ws: &mut Ws) -> String {
    match next_data(ws) {
        Message::Text(t) => t.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// The digits after `"name":` in an envelope.
pub fn number(json: &str, name: &str) -> u64 {
    let key = format!("\"{name}\":");
    let at = json
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {json}"))
        + key.len();
    let digits: String = json[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("{name} in {json}"))
}

/// The epoch of an envelope.
pub fn epoch_of(json: &str) -> String {
    let at = json.find("\"epoch\":\"").expect("epoch") + 9;
    json[at..]
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect()
}

/// The type of an envelope.
pub fn kind(json: &str) -> &str {
    json.strip_prefix("{\"type\":\"")
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("not an envelope: {json}"))
}

/// The envelope of a text chat message.
pub fn message(epoch: &str, offset: u64, text: &str) -> String {
    format!(r#"{{"type":"message","epoch":"{epoch}","offset":{offset},"text":"{text}"}}"#)
}
