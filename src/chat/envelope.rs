//! The `rookery.v1` subprotocol's side of the chat: the JSON envelopes a
//! member that offered it is sent (`welcome`, `message`, `recovered`,
//! `gap`, SPEC §12) and the position it may resume from (`?since=E:N` on
//! the upgrade).
//!
//! Envelopes are written by hand: four fixed shapes do not need a JSON
//! crate. Strings are escaped as RFC 8259 asks (`"`, `\` and every control
//! character below U+0020), everything else, characters outside the BMP
//! included, stays UTF-8 as it came.

use std::fmt::Write as _;

use base64::Engine as _;

use crate::server::{Epoch, Since, SinceError};
use crate::Message;

/// The subprotocol a client offers to get envelopes.
pub(super) const PROTOCOL: &str = "rookery.v1";

/// The topic of a room's `rookery.v1` members: `v1/NAME` (a room's name
/// holds no `/`, so it is never another room's).
pub(super) fn topic(room: &str) -> String {
    format!("v1/{room}")
}

/// `text` as a JSON string, quotes included, appended to `out`.
fn push_string(out: &mut String, text: &str) {
    out.push('"');
    let mut rest = text;
    // Runs of characters that need no escape are copied at once.
    while let Some(at) = rest.find(|c: char| c < ' ' || c == '"' || c == '\\') {
        out.push_str(&rest[..at]);
        let c = rest[at..].chars().next().unwrap_or(' ');
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
        }
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
    out.push('"');
}

/// The first envelope: the welcome text, the room (`""`: the default one),
/// its epoch and the offset of its latest message (0: none).
pub(super) fn welcome(text: &str, room: &str, epoch: &Epoch, offset: u64) -> String {
    let mut out = String::with_capacity(64 + text.len() + room.len());
    out.push_str("{\"type\":\"welcome\",\"text\":");
    push_string(&mut out, text);
    out.push_str(",\"room\":");
    push_string(&mut out, room);
    let _ = write!(out, ",\"epoch\":\"{epoch}\",\"offset\":{offset}}}");
    out
}

/// A chat message at `offset`: its text, or a binary one in base64.
pub(super) fn message(epoch: &Epoch, offset: u64, msg: Message<'_>) -> String {
    let mut out = String::with_capacity(64 + msg.as_bytes().len() * 4 / 3);
    let _ = write!(
        out,
        "{{\"type\":\"message\",\"epoch\":\"{epoch}\",\"offset\":{offset},"
    );
    match msg {
        Message::Text(text) => {
            out.push_str("\"text\":");
            push_string(&mut out, text);
        }
        Message::Binary(data) => {
            out.push_str("\"base64\":\"");
            base64::engine::general_purpose::STANDARD.encode_string(data, &mut out);
            out.push('"');
        }
    }
    out.push('}');
    out
}

/// After a resume's missed messages: `missed` of them were sent.
pub(super) fn recovered(epoch: &Epoch, offset: u64, missed: usize) -> String {
    format!(
        "{{\"type\":\"recovered\",\"epoch\":\"{epoch}\",\"offset\":{offset},\"missed\":{missed}}}"
    )
}

/// Instead: what was missed cannot be given back.
pub(super) fn gap(epoch: &Epoch, offset: u64) -> String {
    format!("{{\"type\":\"gap\",\"epoch\":\"{epoch}\",\"offset\":{offset}}}")
}

/// The position an upgrade's target asks to resume from: `Ok(None)`
/// without a `since` parameter; an error for one that is not `E:N` (the
/// `:` may come as `%3A`, as a browser's `URLSearchParams` writes it), or
/// for more than one.
pub(super) fn since(target: &str) -> Result<Option<Since>, SinceError> {
    let Some((_, query)) = target.split_once('?') else {
        return Ok(None);
    };
    let mut found = None;
    for pair in query.split('&') {
        let Some(value) = pair.strip_prefix("since=") else {
            if pair == "since" {
                return Err(SinceError::NoColon);
            }
            continue;
        };
        if found.is_some() {
            return Err(SinceError::BadOffset);
        }
        let value = match value.find('%') {
            None => value.parse()?,
            Some(_) => value
                .replacen("%3A", ":", 1)
                .replacen("%3a", ":", 1)
                .parse()?,
        };
        found = Some(value);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch() -> Epoch {
        Epoch::parse("E1").unwrap()
    }

    #[test]
    fn strings_are_escaped_as_json_wants() {
        let mut out = String::new();
        push_string(&mut out, "a\"b\\c\n\r\t\u{0}\u{1f}\u{7f}é😀\u{2028}");
        assert_eq!(
            out,
            "\"a\\\"b\\\\c\\n\\r\\t\\u0000\\u001f\u{7f}é😀\u{2028}\""
        );
        let mut plain = String::new();
        push_string(&mut plain, "");
        assert_eq!(plain, "\"\"");
    }

    #[test]
    fn envelopes_are_the_shapes_of_the_spec() {
        let e = epoch();
        assert_eq!(
            welcome("Hi \"you\"", "kitchen", &e, 7),
            r#"{"type":"welcome","text":"Hi \"you\"","room":"kitchen","epoch":"E1","offset":7}"#
        );
        assert_eq!(
            message(&e, 8, Message::Text("x")),
            r#"{"type":"message","epoch":"E1","offset":8,"text":"x"}"#
        );
        assert_eq!(
            message(&e, 9, Message::Binary(&[0, 255, 1])),
            r#"{"type":"message","epoch":"E1","offset":9,"base64":"AP8B"}"#
        );
        assert_eq!(
            recovered(&e, 9, 2),
            r#"{"type":"recovered","epoch":"E1","offset":9,"missed":2}"#
        );
        assert_eq!(gap(&e, 0), r#"{"type":"gap","epoch":"E1","offset":0}"#);
    }

    #[test]
    fn since_comes_from_the_query() {
        assert_eq!(since("/chat"), Ok(None));
        assert_eq!(since("/chat?x=1"), Ok(None));
        let at = since("/chat/r?since=abc:5").unwrap().unwrap();
        assert_eq!((at.epoch.as_str(), at.offset), ("abc", 5));
        let at = since("/chat?x=1&since=abc%3A5&y").unwrap().unwrap();
        assert_eq!((at.epoch.as_str(), at.offset), ("abc", 5));
        assert_eq!(
            since("/chat?since=abc%3a0").map(|s| s.map(|s| s.offset)),
            Ok(Some(0))
        );
        for bad in [
            "/chat?since=",
            "/chat?since",
            "/chat?since=abc",
            "/chat?since=abc:x",
            "/chat?since=a%2Db:1",
            "/chat?since=a:1&since=a:2",
            "/chat?since=:1",
        ] {
            assert!(since(bad).is_err(), "{bad}");
        }
    }
}
