//! RFC 6455 §4.2: validating a client's opening handshake and writing the
//! server's `101 Switching Protocols`.

use std::fmt;

use base64::Engine as _;

use super::http::{Request, Response};

/// The GUID every server appends to the client's key (RFC 6455 §1.3).
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why an upgrade request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// Not a `GET`.
    NotGet,
    /// Older than HTTP/1.1.
    OldHttpVersion,
    /// No `Host` header.
    MissingHost,
    /// `Upgrade` does not list `websocket`.
    NotWebSocketUpgrade,
    /// `Connection` does not list `upgrade`.
    NoConnectionUpgrade,
    /// `Sec-WebSocket-Version` missing or not 13.
    UnsupportedVersion,
    /// `Sec-WebSocket-Key` missing, repeated, or not base64 of 16 bytes.
    BadKey,
    /// `Origin` is not in the allowed list.
    OriginNotAllowed,
    /// More than one `Origin` header: which one a check should believe is
    /// anyone's guess, so none is.
    RepeatedOrigin,
}

impl HandshakeError {
    /// The status code to answer with.
    pub fn status(self) -> u16 {
        match self {
            HandshakeError::UnsupportedVersion => 426,
            HandshakeError::OriginNotAllowed => 403,
            _ => 400,
        }
    }

    /// The complete response to send for this error.
    pub fn response(self) -> Response {
        let response = Response::status(self.status());
        match self {
            HandshakeError::UnsupportedVersion => {
                response.with_header("Sec-WebSocket-Version", "13")
            }
            _ => response,
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HandshakeError::NotGet => "method is not GET",
            HandshakeError::OldHttpVersion => "HTTP version older than 1.1",
            HandshakeError::MissingHost => "no Host header",
            HandshakeError::NotWebSocketUpgrade => "Upgrade does not name websocket",
            HandshakeError::NoConnectionUpgrade => "Connection does not name upgrade",
            HandshakeError::UnsupportedVersion => "Sec-WebSocket-Version is not 13",
            HandshakeError::BadKey => "Sec-WebSocket-Key is not base64 of 16 bytes",
            HandshakeError::OriginNotAllowed => "Origin not allowed",
            HandshakeError::RepeatedOrigin => "more than one Origin header",
        })
    }
}

impl std::error::Error for HandshakeError {}

/// Checks `req` against RFC 6455 §4.2.1 and returns the client's key.
pub fn validate(req: &Request) -> Result<&str, HandshakeError> {
    if req.method() != "GET" {
        return Err(HandshakeError::NotGet);
    }
    if req.minor_version() < 1 {
        return Err(HandshakeError::OldHttpVersion);
    }
    if req.header("Host").is_none() {
        return Err(HandshakeError::MissingHost);
    }
    if !req.has_token("Upgrade", "websocket") {
        return Err(HandshakeError::NotWebSocketUpgrade);
    }
    if !req.has_token("Connection", "upgrade") {
        return Err(HandshakeError::NoConnectionUpgrade);
    }
    if !req
        .header_tokens("Sec-WebSocket-Version")
        .any(|v| v == "13")
    {
        return Err(HandshakeError::UnsupportedVersion);
    }
    let mut keys = req
        .headers()
        .filter(|(n, _)| n.eq_ignore_ascii_case("Sec-WebSocket-Key"))
        .map(|(_, v)| v);
    let key = keys.next().ok_or(HandshakeError::BadKey)?;
    if keys.next().is_some() || !is_valid_key(key) {
        return Err(HandshakeError::BadKey);
    }
    let origins = req
        .headers()
        .filter(|(n, _)| n.eq_ignore_ascii_case("Origin"))
        .count();
    if origins > 1 {
        return Err(HandshakeError::RepeatedOrigin);
    }
    Ok(key)
}

/// Whether `origin` passes an allow-list; an empty list allows every origin.
/// Browsers always send `Origin`, so with a list set a request without one
/// (a non-browser client) is allowed: the list guards against cross-site pages,
/// not against programs that can forge any header. The entries are written
/// without their scheme's default port (as `--allow-origin` stores them);
/// the request's origin is compared without it too, so that
/// `https://a.example:443` matches `https://a.example`. A request with more
/// than one `Origin` never gets here: [`validate`] refuses it.
pub fn origin_allowed(req: &Request, allowed: &[String]) -> bool {
    match req.header("Origin") {
        _ if allowed.is_empty() => true,
        None => true,
        Some(origin) => {
            let origin = without_default_port(origin);
            allowed
                .iter()
                .any(|a| a == "*" || without_default_port(a).eq_ignore_ascii_case(origin))
        }
    }
}

/// `origin` without a trailing `:443` for `https` or `:80` for `http`
/// (scheme in any case; the port as digits, leading zeros allowed).
fn without_default_port(origin: &str) -> &str {
    let Some((rest, port)) = origin.rsplit_once(':') else {
        return origin;
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) || !rest.contains("://") {
        return origin;
    }
    let default = if rest.len() >= 8 && rest[..8].eq_ignore_ascii_case("https://") {
        443
    } else if rest.len() >= 7 && rest[..7].eq_ignore_ascii_case("http://") {
        80
    } else {
        return origin;
    };
    match port.parse::<u16>() {
        Ok(n) if n == default => rest,
        _ => origin,
    }
}

fn is_valid_key(key: &str) -> bool {
    let mut decoded = [0u8; 18];
    key.len() == 24
        && matches!(
            base64::engine::general_purpose::STANDARD.decode_slice(key, &mut decoded),
            Ok(16)
        )
}

/// The `Sec-WebSocket-Accept` value for a client key.
pub fn accept_key(key: &str) -> String {
    let mut sha1 = sha1_smol::Sha1::new();
    sha1.update(key.as_bytes());
    sha1.update(ACCEPT_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha1.digest().bytes())
}

/// The subprotocols the client offered, in its order of preference.
pub fn offered_protocols(req: &Request) -> impl Iterator<Item = &str> {
    req.header_tokens("Sec-WebSocket-Protocol")
}

/// Writes the `101 Switching Protocols` reply for `key`, with the chosen
/// subprotocol and the accepted extensions (a `Sec-WebSocket-Extensions`
/// value), if any.
pub fn write_accept(
    out: &mut Vec<u8>,
    key: &str,
    protocol: Option<&str>,
    extensions: Option<&[u8]>,
) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept_key(key).as_bytes());
    if let Some(protocol) = protocol {
        out.extend_from_slice(b"\r\nSec-WebSocket-Protocol: ");
        out.extend_from_slice(protocol.as_bytes());
    }
    if let Some(extensions) = extensions {
        out.extend_from_slice(b"\r\nSec-WebSocket-Extensions: ");
        out.extend_from_slice(extensions);
    }
    out.extend_from_slice(b"\r\n\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::http::{HeadReader, Status};

    fn request(head: &str) -> Request {
        match HeadReader::new().feed(head.as_bytes()).unwrap() {
            Status::Complete((req, _)) => req,
            Status::Partial => panic!("incomplete"),
        }
    }

    const GOOD: &str = "GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

    fn with(extra: &str) -> Request {
        if extra.is_empty() {
            request(&format!("{GOOD}\r\n"))
        } else {
            request(&format!("{GOOD}{extra}\r\n\r\n"))
        }
    }

    fn replaced(from: &str, to: &str) -> Request {
        request(&format!("{}\r\n", GOOD.replace(from, to)))
    }

    #[test]
    fn rfc6455_section_1_3_accept_key() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn accepts_a_valid_request() {
        assert_eq!(validate(&with("")), Ok("dGhlIHNhbXBsZSBub25jZQ=="));
        let mixed = replaced("Upgrade: websocket", "UPGRADE: WebSocket, foo");
        assert!(validate(&mixed).is_ok());
        let listed = replaced("Connection: Upgrade", "connection: keep-alive,  upgrade ");
        assert!(validate(&listed).is_ok());
    }

    #[test]
    fn refusals_map_to_status_codes() {
        let cases = [
            (replaced("GET", "POST"), HandshakeError::NotGet, 400),
            (
                replaced("HTTP/1.1", "HTTP/1.0"),
                HandshakeError::OldHttpVersion,
                400,
            ),
            (
                replaced("Host: h\r\n", ""),
                HandshakeError::MissingHost,
                400,
            ),
            (
                replaced("websocket", "h2c"),
                HandshakeError::NotWebSocketUpgrade,
                400,
            ),
            (
                replaced("Connection: Upgrade", "Connection: close"),
                HandshakeError::NoConnectionUpgrade,
                400,
            ),
            (
                replaced("Version: 13", "Version: 8"),
                HandshakeError::UnsupportedVersion,
                426,
            ),
            (
                replaced("Sec-WebSocket-Version: 13\r\n", ""),
                HandshakeError::UnsupportedVersion,
                426,
            ),
            (
                replaced("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZQ=="),
                HandshakeError::BadKey,
                400,
            ),
            (
                replaced("dGhlIHNhbXBsZSBub25jZQ==", "!!!!!!!!!!!!!!!!!!!!!!=="),
                HandshakeError::BadKey,
                400,
            ),
            (
                replaced("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
                HandshakeError::BadKey,
                400,
            ),
            (
                with("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="),
                HandshakeError::BadKey,
                400,
            ),
        ];
        for (req, err, status) in cases {
            assert_eq!(validate(&req), Err(err), "{}", req.headers().count());
            assert_eq!(err.status(), status);
        }
    }

    #[test]
    fn version_error_names_the_supported_version() {
        let r = HandshakeError::UnsupportedVersion.response();
        assert_eq!(r.status, 426);
        assert!(r
            .headers
            .iter()
            .any(|(n, v)| n == "Sec-WebSocket-Version" && v == "13"));
    }

    #[test]
    fn origin_allow_list() {
        let req = with("Origin: https://good.example");
        assert!(origin_allowed(&req, &[]));
        assert!(origin_allowed(&req, &["https://GOOD.example".into()]));
        assert!(!origin_allowed(&req, &["https://evil.example".into()]));
        assert!(origin_allowed(&req, &["*".into()]));
        assert!(origin_allowed(&with(""), &["https://evil.example".into()]));
    }

    #[test]
    fn a_default_port_in_the_origin_matches_the_entry_without_it() {
        let allowed = |origin: &str, entry: &str| {
            origin_allowed(&with(&format!("Origin: {origin}")), &[entry.into()])
        };
        assert!(allowed("https://a.example:443", "https://a.example"));
        assert!(allowed("HTTPS://A.example:443", "https://a.example"));
        assert!(allowed("http://a.example:80", "http://a.example"));
        assert!(allowed("http://[::1]:80", "http://[::1]"));
        assert!(allowed("https://a.example:0443", "https://a.example"));
        // Another port, or the other scheme's default, is another origin.
        assert!(!allowed("https://a.example:80", "https://a.example"));
        assert!(!allowed("http://a.example:443", "http://a.example"));
        assert!(!allowed("https://a.example:8443", "https://a.example"));
        assert!(allowed("https://a.example:8443", "https://a.example:8443"));
        assert!(!allowed("https://a.example:", "https://a.example"));
        assert!(!allowed("https://evil.example:443", "https://a.example"));
        // An entry a library user wrote with the default port matches too.
        assert!(allowed("https://a.example", "https://a.example:443"));
        assert!(allowed("https://a.example:443", "https://a.example:443"));
        assert_eq!(without_default_port("https:443"), "https:443");
        assert_eq!(without_default_port("null"), "null");
    }

    #[test]
    fn more_than_one_origin_is_refused_with_400() {
        let two = with("Origin: https://good.example\r\nOrigin: https://evil.example");
        assert_eq!(validate(&two), Err(HandshakeError::RepeatedOrigin));
        assert_eq!(HandshakeError::RepeatedOrigin.status(), 400);
        let same = with("Origin: https://good.example\r\norigin: https://good.example");
        assert_eq!(validate(&same), Err(HandshakeError::RepeatedOrigin));
        assert!(validate(&with("Origin: https://good.example")).is_ok());
    }

    #[test]
    fn protocols_and_accept_reply() {
        let req = with("Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Protocol: v2");
        let offered: Vec<_> = offered_protocols(&req).collect();
        assert_eq!(offered, ["chat", "superchat", "v2"]);
        let mut out = Vec::new();
        write_accept(&mut out, "dGhlIHNhbXBsZSBub25jZQ==", Some("chat"), None);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
        );
    }
}
