//! The incremental HTTP/1.1 request-head reader and the response writer.
//!
//! [`HeadReader`] is fed whatever bytes the socket produced — one at a time if
//! the client is slow — and answers [`Status::Partial`] until the blank line
//! that ends the head arrives, as `httparse` does. It looks for the end of the
//! head only in bytes it has not scanned before, so a client trickling a head
//! byte by byte costs linear, not quadratic, work. The head is capped at
//! [`MAX_HEAD`] bytes; past that the reader fails with
//! [`HttpError::HeadTooLarge`] (`431`) without buffering more.

use std::fmt;
use std::ops::Range;

/// The largest request head accepted, in bytes, terminator included.
pub const MAX_HEAD: usize = 8 * 1024;

/// The most header fields one request may carry.
const MAX_HEADERS: usize = 64;

/// Outcome of feeding bytes to an incremental parser.
#[derive(Debug, PartialEq, Eq)]
pub enum Status<T> {
    /// More input is needed.
    Partial,
    /// Parsing finished.
    Complete(T),
}

/// Why a request head was refused; each maps to an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpError {
    /// The head did not end within [`MAX_HEAD`] bytes.
    HeadTooLarge,
    /// The request line or a header line is not valid HTTP/1.x.
    Malformed,
    /// More than the supported number of header fields.
    TooManyHeaders,
    /// An HTTP version other than 1.x.
    UnsupportedVersion,
}

impl HttpError {
    /// The status code to answer this error with.
    pub fn status(self) -> u16 {
        match self {
            HttpError::HeadTooLarge | HttpError::TooManyHeaders => 431,
            HttpError::Malformed => 400,
            HttpError::UnsupportedVersion => 505,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HttpError::HeadTooLarge => "request head larger than 8 KiB",
            HttpError::Malformed => "malformed request head",
            HttpError::TooManyHeaders => "too many header fields",
            HttpError::UnsupportedVersion => "unsupported HTTP version",
        })
    }
}

impl std::error::Error for HttpError {}

/// A parsed request head. It owns the head's bytes once; the accessors
/// return slices of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    head: String,
    method: Range<usize>,
    target: Range<usize>,
    minor_version: u8,
    headers: Vec<(Range<usize>, Range<usize>)>,
}

impl Request {
    /// Parses a complete head (request line, header lines, blank line).
    pub fn parse(head: Vec<u8>) -> Result<Request, HttpError> {
        let head = String::from_utf8(head).map_err(|_| HttpError::Malformed)?;
        let mut lines = LineIter {
            text: &head,
            pos: 0,
        };
        let (line, line_start) = lines.next().ok_or(HttpError::Malformed)?;
        let (method, target, minor_version) = parse_request_line(line, line_start)?;
        let mut headers = Vec::new();
        for (line, start) in lines {
            if line.is_empty() {
                break;
            }
            if headers.len() == MAX_HEADERS {
                return Err(HttpError::TooManyHeaders);
            }
            headers.push(parse_header_line(line, start)?);
        }
        Ok(Request {
            head,
            method,
            target,
            minor_version,
            headers,
        })
    }

    /// The request method, e.g. `GET`.
    pub fn method(&self) -> &str {
        &self.head[self.method.clone()]
    }

    /// The request target as sent, query included.
    pub fn target(&self) -> &str {
        &self.head[self.target.clone()]
    }

    /// The request target without its query string.
    pub fn path(&self) -> &str {
        let target = self.target();
        target.split_once('?').map_or(target, |(path, _)| path)
    }

    /// The `x` of `HTTP/1.x`.
    pub fn minor_version(&self) -> u8 {
        self.minor_version
    }

    /// The value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Every header field in order, as `(name, value)`.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers
            .iter()
            .map(|(n, v)| (&self.head[n.clone()], &self.head[v.clone()]))
    }

    /// The comma-separated tokens of every header called `name`, trimmed,
    /// across repeated fields.
    pub fn header_tokens<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
    }

    /// Whether header `name` lists `token` (case-insensitive), as
    /// `Connection: keep-alive, Upgrade` lists `upgrade`.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.header_tokens(name)
            .any(|t| t.eq_ignore_ascii_case(token))
    }
}

/// Iterates over CRLF- (or bare LF-) terminated lines with their offsets.
struct LineIter<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Iterator for LineIter<'a> {
    type Item = (&'a str, usize);

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.text.get(self.pos..)?;
        let nl = rest.find('\n')?;
        let start = self.pos;
        self.pos += nl + 1;
        let line = &rest[..nl];
        Some((line.strip_suffix('\r').unwrap_or(line), start))
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

type RequestLine = (Range<usize>, Range<usize>, u8);

fn parse_request_line(line: &str, base: usize) -> Result<RequestLine, HttpError> {
    let mut parts = line.split(' ');
    let method = parts.next().ok_or(HttpError::Malformed)?;
    let target = parts.next().ok_or(HttpError::Malformed)?;
    let version = parts.next().ok_or(HttpError::Malformed)?;
    if parts.next().is_some() || method.is_empty() || target.is_empty() {
        return Err(HttpError::Malformed);
    }
    if !method.bytes().all(is_token_byte) || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(HttpError::Malformed);
    }
    let minor = match version.strip_prefix("HTTP/") {
        Some("1.0") => 0,
        Some("1.1") => 1,
        Some(v) if v.len() == 3 && v.as_bytes()[1] == b'.' => {
            return Err(HttpError::UnsupportedVersion)
        }
        _ => return Err(HttpError::Malformed),
    };
    let method_start = base;
    let target_start = method_start + method.len() + 1;
    Ok((
        method_start..method_start + method.len(),
        target_start..target_start + target.len(),
        minor,
    ))
}

fn parse_header_line(line: &str, base: usize) -> Result<(Range<usize>, Range<usize>), HttpError> {
    let (name, value) = line.split_once(':').ok_or(HttpError::Malformed)?;
    // An empty name, or whitespace before the colon or at the start (obsolete
    // line folding), is rejected as RFC 9112 §5 requires.
    if name.is_empty() || !name.bytes().all(is_token_byte) {
        return Err(HttpError::Malformed);
    }
    if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Err(HttpError::Malformed);
    }
    let trimmed = value.trim_matches(|c| c == ' ' || c == '\t');
    let value_start =
        base + name.len() + 1 + (value.len() - value.trim_start_matches([' ', '\t']).len());
    Ok((
        base..base + name.len(),
        value_start..value_start + trimmed.len(),
    ))
}

/// Accumulates a request head from arbitrary pieces of input.
#[derive(Debug, Default)]
pub struct HeadReader {
    buf: Vec<u8>,
    /// How far `buf` has been searched for the end of the head.
    scanned: usize,
}

impl HeadReader {
    /// A reader with nothing buffered.
    pub fn new() -> HeadReader {
        HeadReader::default()
    }

    /// Bytes buffered so far.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Feeds `input`. On completion returns the request and how many bytes of
    /// `input` belonged to the head; the rest is the start of the next layer.
    pub fn feed(&mut self, input: &[u8]) -> Result<Status<(Request, usize)>, HttpError> {
        let before = self.buf.len();
        // Never hold more than one byte past the cap: that byte proves the
        // head is too large.
        let room = (MAX_HEAD + 1).saturating_sub(before);
        let take = input.len().min(room);
        self.buf.extend_from_slice(&input[..take]);
        let from = self.scanned.saturating_sub(3);
        if let Some(end) = find_head_end(&self.buf[from..]) {
            let end = from + end;
            if end > MAX_HEAD {
                return Err(HttpError::HeadTooLarge);
            }
            let mut head = std::mem::take(&mut self.buf);
            head.truncate(end);
            self.scanned = 0;
            let consumed = end - before;
            return Request::parse(head).map(|r| Status::Complete((r, consumed)));
        }
        self.scanned = self.buf.len();
        if self.buf.len() > MAX_HEAD {
            return Err(HttpError::HeadTooLarge);
        }
        Ok(Status::Partial)
    }
}

/// The offset just past the blank line ending a head, if `buf` holds one.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some(i + 2);
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

/// The reason phrase for the status codes rookery sends.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// An HTTP response for a request that is not upgraded, to be written with
/// [`Response::write_to`]. The connection is closed after it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Extra header fields, written in order after the standard ones.
    pub headers: Vec<(String, String)>,
    /// The body; `Content-Length` is derived from it.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with a plain-text body naming the status.
    pub fn status(status: u16) -> Response {
        let body = format!("{} {}\n", status, reason_phrase(status)).into_bytes();
        Response {
            status,
            headers: vec![("Content-Type".into(), "text/plain; charset=utf-8".into())],
            body,
        }
    }

    /// A `200 OK` with the given content type and body.
    pub fn ok(content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status: 200,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
        }
    }

    /// Adds a header field.
    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Serialises the response; `head_only` omits the body (for `HEAD`).
    pub fn write_to(&self, out: &mut Vec<u8>, head_only: bool) {
        use std::io::Write;
        // Writing to a Vec cannot fail.
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            reason_phrase(self.status),
            self.body.len()
        );
        for (name, value) in &self.headers {
            let _ = write!(out, "{name}: {value}\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(&self.body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE: &[u8] = b"GET /chat?x=1 HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    fn parse_all(bytes: &[u8]) -> Result<(Request, usize), HttpError> {
        match HeadReader::new().feed(bytes)? {
            Status::Complete(done) => Ok(done),
            Status::Partial => panic!("head incomplete"),
        }
    }

    #[test]
    fn parses_a_complete_head() {
        let (req, used) = parse_all(UPGRADE).unwrap();
        assert_eq!(used, UPGRADE.len());
        assert_eq!(req.method(), "GET");
        assert_eq!(req.target(), "/chat?x=1");
        assert_eq!(req.path(), "/chat");
        assert_eq!(req.minor_version(), 1);
        assert_eq!(req.header("HOST"), Some("server.example.com"));
        assert!(req.has_token("connection", "upgrade"));
        assert!(req.has_token("Upgrade", "WebSocket"));
        assert!(!req.has_token("Connection", "close"));
        assert_eq!(req.headers().count(), 5);
    }

    #[test]
    fn one_byte_at_a_time_gives_the_same_request() {
        let mut reader = HeadReader::new();
        for (i, b) in UPGRADE.iter().enumerate() {
            match reader.feed(std::slice::from_ref(b)).unwrap() {
                Status::Partial => assert!(i + 1 < UPGRADE.len()),
                Status::Complete((req, used)) => {
                    assert_eq!(i + 1, UPGRADE.len());
                    assert_eq!(used, 1);
                    assert_eq!(
                        req.header("sec-websocket-key"),
                        Some("dGhlIHNhbXBsZSBub25jZQ==")
                    );
                    return;
                }
            }
        }
        panic!("never completed");
    }

    #[test]
    fn bytes_after_the_head_are_not_consumed() {
        let mut input = UPGRADE.to_vec();
        input.extend_from_slice(&[0x81, 0x80, 1, 2, 3, 4]);
        let (_, used) = parse_all(&input).unwrap();
        assert_eq!(used, UPGRADE.len());
    }

    #[test]
    fn terminator_split_across_feeds() {
        let mut reader = HeadReader::new();
        let (a, b) = UPGRADE.split_at(UPGRADE.len() - 2);
        assert_eq!(reader.feed(a).unwrap(), Status::Partial);
        match reader.feed(b).unwrap() {
            Status::Complete((_, used)) => assert_eq!(used, 2),
            Status::Partial => panic!("should complete"),
        }
    }

    #[test]
    fn head_over_the_cap_is_refused_without_growing() {
        let mut reader = HeadReader::new();
        let line = b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        assert_eq!(reader.feed(b"GET / HTTP/1.1\r\n").unwrap(), Status::Partial);
        let mut result = Ok(Status::Partial);
        for _ in 0..200 {
            result = reader.feed(line);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(HttpError::HeadTooLarge));
        assert!(reader.buffered() <= MAX_HEAD + 1);
        assert_eq!(HttpError::HeadTooLarge.status(), 431);
    }

    #[test]
    fn head_of_exactly_the_cap_is_accepted() {
        let mut head = b"GET / HTTP/1.1\r\nX: ".to_vec();
        head.resize(MAX_HEAD - 4, b'a');
        head.extend_from_slice(b"\r\n\r\n");
        assert_eq!(head.len(), MAX_HEAD);
        assert!(parse_all(&head).is_ok());
        let mut over = b"GET / HTTP/1.1\r\nX: ".to_vec();
        over.resize(MAX_HEAD - 3, b'a');
        over.extend_from_slice(b"\r\n\r\n");
        assert_eq!(HeadReader::new().feed(&over), Err(HttpError::HeadTooLarge));
    }

    #[test]
    fn malformed_heads_are_refused() {
        let cases: &[(&[u8], HttpError)] = &[
            (b"GET /\r\n\r\n", HttpError::Malformed),
            (b"GET / HTTP/1.1 extra\r\n\r\n", HttpError::Malformed),
            (b"GET / FTP/1.1\r\n\r\n", HttpError::Malformed),
            (b"GET / HTTP/2.0\r\n\r\n", HttpError::UnsupportedVersion),
            (b"G(T / HTTP/1.1\r\n\r\n", HttpError::Malformed),
            (b"GET / HTTP/1.1\r\nNoColon\r\n\r\n", HttpError::Malformed),
            (
                b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
                HttpError::Malformed,
            ),
            (
                b"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
                HttpError::Malformed,
            ),
            (b"GET / HTTP/1.1\r\nA: \x01\r\n\r\n", HttpError::Malformed),
            (b"GET / HTTP/1.1\r\nA: \xff\r\n\r\n", HttpError::Malformed),
            (b"\r\n\r\n", HttpError::Malformed),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse_all(input).err(),
                Some(*want),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn too_many_headers() {
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            head.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        assert_eq!(parse_all(&head).err(), Some(HttpError::TooManyHeaders));
    }

    #[test]
    fn header_values_are_trimmed_and_repeated_fields_merge_tokens() {
        let (req, _) = parse_all(
            b"GET / HTTP/1.1\r\nConnection:   keep-alive\t\r\nConnection: Upgrade\r\n\r\n",
        )
        .unwrap();
        assert_eq!(req.header("connection"), Some("keep-alive"));
        let tokens: Vec<_> = req.header_tokens("Connection").collect();
        assert_eq!(tokens, ["keep-alive", "Upgrade"]);
    }

    #[test]
    fn bare_lf_lines_are_accepted() {
        let (req, used) = parse_all(b"GET /x HTTP/1.0\nHost: a\n\nrest").unwrap();
        assert_eq!(used, 25);
        assert_eq!(req.header("host"), Some("a"));
        assert_eq!(req.minor_version(), 0);
    }

    #[test]
    fn response_is_serialised_with_length_and_close() {
        let mut out = Vec::new();
        Response::ok("text/html", "hi")
            .with_header("X-A", "b")
            .write_to(&mut out, false);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\nContent-Type: text/html\r\nX-A: b\r\n\r\nhi"
        );
        let mut head = Vec::new();
        Response::status(404).write_to(&mut head, true);
        assert!(head.starts_with(b"HTTP/1.1 404 Not Found\r\nContent-Length: 14\r\n"));
        assert!(head.ends_with(b"\r\n\r\n"));
    }
}
