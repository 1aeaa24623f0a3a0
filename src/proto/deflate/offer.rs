//! RFC 7692 §5 and §7: reading a client's `permessage-deflate` offers and
//! writing the answer to the one the server takes.
//!
//! `Sec-WebSocket-Extensions` lists offers separated by commas, across
//! repeated header fields; each offer is an extension name and
//! `;`-separated parameters, with or without a value, the value a token or
//! a quoted string (§5 of RFC 6455 and §7 of RFC 7692). The server takes the
//! first `permessage-deflate` offer it can honour and declines the others
//! silently, as the RFC asks: an offer it cannot read (an unknown or
//! repeated parameter, a bad value) is simply not taken.
//!
//! What the server answers, whatever was offered (§7.1.1.1 and §7.1.1.2
//! let a server add both unasked): `server_no_context_takeover` and
//! `client_no_context_takeover`, so each message is compressed on its own
//! and one compressor and one decompressor serve every connection of the
//! loop. `server_max_window_bits=N`, when offered, is honoured for N of 9
//! to 15 (the compressor cannot make an 8-bit window, so such an offer is
//! declined); `client_max_window_bits` needs no answer, since the
//! decompressor takes any window up to 15 bits.

use super::Agreement;
use crate::proto::http::Request;

/// The offer to take among those in `request`, if any.
pub fn negotiate(request: &Request) -> Option<Agreement> {
    request
        .headers()
        .filter(|(name, _)| name.eq_ignore_ascii_case("Sec-WebSocket-Extensions"))
        .flat_map(|(_, value)| split_outside_quotes(value, b','))
        .find_map(agree)
}

/// The agreement for one offer (`name; param; param=value`), if it is a
/// `permessage-deflate` offer the server can honour.
fn agree(offer: &str) -> Option<Agreement> {
    let mut parts = split_outside_quotes(offer, b';');
    let name = parts.next()?.trim();
    if !name.eq_ignore_ascii_case("permessage-deflate") {
        return None;
    }
    let mut seen = [false; 4];
    let mut agreement = Agreement {
        window_bits: 15,
        window_named: false,
    };
    for param in parts {
        let (key, value) = match param.split_once('=') {
            Some((key, value)) => (key.trim(), Some(unquote(value.trim())?)),
            None => (param.trim(), None),
        };
        let which = [
            "server_no_context_takeover",
            "client_no_context_takeover",
            "server_max_window_bits",
            "client_max_window_bits",
        ]
        .iter()
        .position(|known| key.eq_ignore_ascii_case(known))?;
        if std::mem::replace(&mut seen[which], true) {
            return None; // A repeated parameter: §7, decline.
        }
        match (which, value) {
            (0 | 1, None) => {}
            (2, Some(value)) => {
                agreement.window_bits = window_bits(value)?;
                agreement.window_named = true;
            }
            (3, None) => {}
            (3, Some(value)) => {
                window_bits(value)?;
            }
            _ => return None,
        }
    }
    // An 8-bit window is valid in an offer, but our compressor's smallest
    // is 9 bits: decline, so the client may fall back to its next offer.
    (agreement.window_bits >= 9).then_some(agreement)
}

/// A window size value: 8 to 15, decimal, no leading zero (§7.1.2).
fn window_bits(value: &str) -> Option<u8> {
    match value.as_bytes() {
        [d @ b'8'..=b'9'] => Some(d - b'0'),
        [b'1', d @ b'0'..=b'5'] => Some(10 + d - b'0'),
        _ => None,
    }
}

/// A parameter value without its quotes, if it was a quoted string (no
/// escapes: a window size has none), else the token itself.
fn unquote(value: &str) -> Option<&str> {
    match value.strip_prefix('"') {
        Some(rest) => {
            let inner = rest.strip_suffix('"')?;
            (!inner.contains(['"', '\\'])).then_some(inner)
        }
        None => (!value.is_empty()).then_some(value),
    }
}

/// The pieces of `s` between separators `sep` that are not inside a quoted
/// string.
fn split_outside_quotes(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let s = rest?;
        let mut quoted = false;
        let mut escaped = false;
        for (i, &b) in s.as_bytes().iter().enumerate() {
            match b {
                _ if escaped => escaped = false,
                b'\\' if quoted => escaped = true,
                b'"' => quoted = !quoted,
                _ if b == sep && !quoted => {
                    rest = Some(&s[i + 1..]);
                    return Some(&s[..i]);
                }
                _ => {}
            }
        }
        rest = None;
        Some(s)
    })
    .filter(|piece| !piece.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::http::{HeadReader, Status};

    fn offered(values: &[&str]) -> Option<Agreement> {
        let mut head = String::from("GET / HTTP/1.1\r\nHost: h\r\n");
        for v in values {
            head.push_str(&format!("Sec-WebSocket-Extensions: {v}\r\n"));
        }
        head.push_str("\r\n");
        match HeadReader::new().feed(head.as_bytes()) {
            Ok(Status::Complete((req, _))) => negotiate(&req),
            _ => panic!("bad test head"),
        }
    }

    fn answer(a: Agreement) -> String {
        let mut out = Vec::new();
        a.write_answer(&mut out);
        String::from_utf8(out).unwrap()
    }

    const PLAIN: &str =
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    #[test]
    fn browsers_offer_is_taken_with_both_no_context_takeover() {
        // What Chromium and Firefox send.
        let a = offered(&["permessage-deflate; client_max_window_bits"]).unwrap();
        assert_eq!(a.window_bits, 15);
        assert_eq!(answer(a), PLAIN);
        assert_eq!(answer(offered(&["permessage-deflate"]).unwrap()), PLAIN);
    }

    #[test]
    fn names_and_parameters_ignore_case_and_spaces() {
        let a = offered(&[
            "  PerMessage-Deflate ;SERVER_NO_CONTEXT_TAKEOVER ;  Client_Max_Window_Bits = 10 ",
        ]);
        assert_eq!(a.map(|a| a.window_bits), Some(15));
    }

    #[test]
    fn server_window_is_honoured_and_confirmed() {
        let a = offered(&["permessage-deflate; server_max_window_bits=10"]).unwrap();
        assert_eq!(a.window_bits, 10);
        assert_eq!(answer(a), format!("{PLAIN}; server_max_window_bits=10"));
        let quoted = offered(&["permessage-deflate; server_max_window_bits=\"9\""]).unwrap();
        assert_eq!(answer(quoted), format!("{PLAIN}; server_max_window_bits=9"));
    }

    #[test]
    fn the_first_offer_we_can_honour_wins() {
        // 8 bits is a valid offer we cannot compress with; the next is taken.
        let a = offered(&[
            "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=12",
        ]);
        assert_eq!(a.map(|a| a.window_bits), Some(12));
        // Across repeated header fields too.
        let a = offered(&[
            "foo; bar=\"a,b\"",
            "permessage-deflate; server_max_window_bits=11",
        ]);
        assert_eq!(a.map(|a| a.window_bits), Some(11));
    }

    #[test]
    fn unreadable_offers_are_declined() {
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=08",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; unknown_param",
            "permessage-deflate; server_max_window_bits=\"10",
            "permessage-deflate; server_max_window_bits=\"\"",
            "permessage-deflate; server_max_window_bits=",
            "permessage-deflate; server_max_window_bits=8",
            "permessage-deflat",
            "deflate-frame",
        ] {
            assert_eq!(offered(&[bad]), None, "{bad}");
        }
        assert_eq!(offered(&[]), None);
        assert_eq!(offered(&[""]), None);
        assert_eq!(offered(&[",,;"]), None);
    }

    #[test]
    fn commas_in_quoted_values_do_not_split_offers() {
        let pieces: Vec<_> = split_outside_quotes("a; b=\"x,\\\"y\", c", b',').collect();
        assert_eq!(pieces, ["a; b=\"x,\\\"y\"", " c"]);
    }
}
