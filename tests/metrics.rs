//! `--metrics`: `GET /metrics` parsed by a strict parser of the Prometheus
//! text format (`tests/prometheus_text`), its families checked against the
//! table in `docs/chat.md`, its counters against the traffic the test made;
//! a slow consumer closed for its backlog counted; `/metrics` a 404 without
//! the flag. Where Python has PyPI `prometheus-client`, its parser
//! (`text_string_to_metric_families`) reads every scrape too and must agree.

mod common;
mod prometheus_text;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use tungstenite::Message;

const WELCOME: &str = "Welcome to Rookery Chat!";

/// Parses with prometheus-client: sample name and sorted labels → value.
const PARSE: &str = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    print("family", family.name, family.type)
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        print("sample", s.name + "{" + labels + "}", repr(float(s.value)))
"#;

struct Scrape {
    head: String,
    /// Family (as its `TYPE` line names it) → type.
    families: HashMap<String, String>,
    samples: HashMap<String, f64>,
}

impl Scrape {
    fn get(&self, key: &str) -> f64 {
        self.samples
            .get(key)
            .copied()
            .unwrap_or_else(|| panic!("no sample {key}: {:?}", self.samples))
    }
}

fn scrape(addr: SocketAddr) -> Scrape {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let parsed = prometheus_text::parse(body)
        .unwrap_or_else(|e| panic!("not the Prometheus text format: {e:?}\n{body}"));
    if python_parser_available() {
        agree_with_prometheus_client(body, &parsed);
    }
    Scrape {
        head: head.to_string(),
        families: parsed.families,
        samples: parsed.samples,
    }
}

/// Whether prometheus-client is there (looked for once per test binary).
fn python_parser_available() -> bool {
    static FOUND: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FOUND.get_or_init(|| require_python("prometheus_client.parser"))
}

/// prometheus-client's reading of `body` must be the same as ours: the same
/// samples with the same values, and the same families (it names a counter
/// family without its `_total`).
fn agree_with_prometheus_client(body: &str, ours: &prometheus_text::Exposition) {
    let mut py = Command::new(python())
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python");
    py.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = py.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus-client failed to parse:\n{body}"
    );
    let mut families = HashMap::new();
    let mut samples = HashMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        match parts[..] {
            ["family", name, kind] => {
                families.insert(name.to_string(), kind.to_string());
            }
            ["sample", key, value] => {
                samples.insert(key.to_string(), value.parse::<f64>().unwrap());
            }
            _ => panic!("{line}"),
        }
    }
    assert_eq!(samples, ours.samples, "prometheus-client and ours differ");
    let theirs_named_ours: HashMap<String, String> = families
        .into_iter()
        .map(|(name, kind)| {
            let name = if kind == "counter" {
                format!("{name}_total")
            } else {
                name
            };
            (name, kind)
        })
        .collect();
    assert_eq!(theirs_named_ours, ours.families);
}

/// The metrics table of `docs/chat.md`: name → type.
fn documented_metrics() -> HashMap<String, String> {
    let doc = include_str!("../docs/chat.md");
    let table = doc
        .split("## Metrics")
        .nth(1)
        .expect("docs/chat.md has a Metrics section");
    table
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix("`rookery_")?;
            let name = name.trim_end_matches('`').split('{').next()?;
            Some((format!("rookery_{name}"), cells.get(2)?.to_string()))
        })
        .collect()
}

fn join(server: &Rookery, path: &str) -> Ws {
    let mut ws = connect(&server.url(path));
    assert_eq!(next_data(&mut ws), Message::text(WELCOME));
    ws
}

#[test]
fn metrics_count_the_traffic_the_test_made() {
    let server = Rookery::start(&["--ping-interval", "0", "--metrics"]);
    let first = scrape(server.addr);
    assert!(
        first
            .head
            .contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"),
        "{}",
        first.head
    );
    assert_eq!(first.get("rookery_connections_accepted_total{}"), 1.0);
    assert_eq!(first.get("rookery_connections_open{}"), 0.0);
    assert_eq!(first.get("rookery_rooms{}"), 0.0);
    // Every family, with the type docs/chat.md gives it, and no other.
    assert_eq!(first.families, documented_metrics());

    let mut a = join(&server, "/chat");
    let mut b = join(&server, "/chat");
    let mut k = join(&server, "/chat/kitchen");
    for i in 0..3 {
        a.send(Message::text(format!("hello {i}"))).unwrap();
    }
    for ws in [&mut a, &mut b] {
        for i in 0..3 {
            assert_eq!(next_data(ws), Message::text(format!("hello {i}")));
        }
    }
    k.send(Message::text("in the kitchen")).unwrap();
    assert_eq!(next_data(&mut k), Message::text("in the kitchen"));
    // Refused: a bad room (404) twice, a bad version (426), a bad request (400).
    for _ in 0..2 {
        assert!(try_connect(&server.url("/chat/no!")).is_err());
    }
    let old = "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n";
    assert_eq!(http_status(server.addr, old), 426);
    assert_eq!(http_status(server.addr, "BLAH\r\n\r\n"), 400);
    // A plain 404 is no refused handshake.
    assert_eq!(
        http_status(server.addr, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"),
        404
    );
    // tungstenite's close(None) sends a close frame without a code: 1005.
    b.close(None).unwrap();
    let _ = expect_close(&mut b);

    let mut m = scrape(server.addr);
    assert!(
        eventually(Duration::from_secs(5), || {
            m = scrape(server.addr);
            m.get("rookery_connections_open{}") == 2.0
                && m.samples.contains_key("rookery_closes_total{code=1005}")
        }),
        "{:?}",
        m.samples
    );
    // 1 scrape, 3 members, 2 bad rooms, the 426, the 400, the 404, and the
    // scrapes since (this one included).
    let scrapes = m.get("rookery_connections_accepted_total{}") - 9.0;
    assert!(scrapes >= 1.0, "{:?}", m.samples);
    assert_eq!(m.get("rookery_messages_received_total{}"), 4.0);
    // Welcomes 3, a's 3 messages to 2 members, the kitchen's 1 to 1.
    assert_eq!(m.get("rookery_messages_sent_total{}"), 3.0 + 6.0 + 1.0);
    assert_eq!(m.get("rookery_handshakes_rejected_total{status=404}"), 2.0);
    assert_eq!(m.get("rookery_handshakes_rejected_total{status=426}"), 1.0);
    assert_eq!(m.get("rookery_handshakes_rejected_total{status=400}"), 1.0);
    assert_eq!(m.get("rookery_closes_total{code=1005}"), 1.0);
    assert_eq!(m.get("rookery_rooms{}"), 2.0);
    assert_eq!(m.get("rookery_slow_consumer_closes_total{}"), 0.0);
    assert_eq!(m.get("rookery_backlog_bytes{}"), 0.0);
    // Bytes: at least the frames (2-byte headers; client frames masked, 6).
    let frames_in = 3.0 * (6.0 + 7.0) + (6.0 + 14.0);
    assert!(m.get("rookery_bytes_received_total{}") > frames_in);
    let frames_out = 3.0 * (2.0 + WELCOME.len() as f64) + 6.0 * 9.0 + 16.0;
    assert!(m.get("rookery_bytes_sent_total{}") > frames_out);
    drop((a, k));
}

#[test]
fn a_slow_consumer_closed_for_its_backlog_is_counted() {
    let server = Rookery::start(&[
        "--ping-interval",
        "0",
        "--metrics",
        "--max-backlog",
        "64KiB",
        "--close-timeout",
        "300ms",
    ]);
    // The slow one upgrades and never reads.
    let (_slow, head) = raw_upgrade(server.addr, "/chat/flood", "");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // The talker reads everything on another thread.
    let (mut talker, head) = raw_upgrade(server.addr, "/chat/flood", "");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut reader = talker.try_clone().unwrap();
    let drain = std::thread::spawn(move || {
        let mut buf = vec![0; 1 << 16];
        while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
    });
    let payload = vec![b'x'; 16 * 1024];
    let frame = client_frame(0x81, &payload);
    let mut closed = false;
    for i in 0..4000 {
        if let Err(e) = talker.write_all(&frame) {
            panic!("talker write {i}: {e}");
        }
        if i % 64 == 63 && scrape_slow(server.addr) {
            closed = true;
            break;
        }
    }
    assert!(closed, "never closed: {:?}", scrape(server.addr).samples);
    // It never answers our close frame (1008): when the close timeout has
    // passed, it is gone without a closing handshake, and on_close says 1006.
    let mut m = scrape(server.addr);
    assert!(eventually(Duration::from_secs(5), || {
        m = scrape(server.addr);
        m.samples.contains_key("rookery_closes_total{code=1006}")
    }));
    assert_eq!(m.get("rookery_slow_consumer_closes_total{}"), 1.0);
    assert_eq!(m.get("rookery_closes_total{code=1006}"), 1.0);
    assert_eq!(m.get("rookery_connections_open{}"), 1.0);
    drop(talker);
    let _ = drain.join();
}

/// Whether the slow consumer was closed yet (a plain text search, to keep
/// the loop fast; the parser checks the final answer).
fn scrape_slow(addr: SocketAddr) -> bool {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    !raw.contains("\nrookery_slow_consumer_closes_total 0\n")
}

#[test]
fn without_the_flag_metrics_is_404() {
    let server = Rookery::start(&["--ping-interval", "0"]);
    assert_eq!(
        http_status(server.addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
        404
    );
}
