//! Missed messages (SPEC §12) through the binary: the `rookery.v1`
//! envelopes with epoch and offsets, resume with `?since=E:N` (exactly the
//! missed messages, then `recovered`; or `gap` and the history), `400` for
//! a malformed `since`, the seam with messages published during a resume,
//! and plain members unchanged, with tungstenite and Python's `websockets`
//! as clients.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::v1::*;
use common::*;
use tungstenite::Message;

fn chat(extra: &[&str]) -> Rookery {
    let mut args = vec!["--ping-interval", "0"];
    args.extend_from_slice(extra);
    Rookery::start(&args)
}

/// Sends `n` messages `prefix0`, `prefix1`, ... from a plain member of
/// `path` and reads them back after the room's history (so that they are
/// all relayed on return).
fn talk(server: &Rookery, path: &str, prefix: &str, n: usize) {
    let mut ws = join_plain(server, path);
    for i in 0..n {
        ws.send(Message::text(format!("{prefix}{i}"))).unwrap();
    }
    let first = format!("{prefix}0");
    while text(&mut ws) != first {}
    for i in 1..n {
        assert_eq!(text(&mut ws), format!("{prefix}{i}"));
    }
    ws.close(None).unwrap();
}

#[test]
fn welcome_names_room_epoch_and_latest_offset_and_offsets_count_from_one() {
    let server = chat(&["--history", "5"]);
    let (mut ws, protocol) = connect_v1(&server.url("/chat/kitchen")).unwrap();
    assert_eq!(protocol.as_deref(), Some("rookery.v1"));
    let welcome = text(&mut ws);
    let epoch = epoch_of(&welcome);
    assert!((1..=16).contains(&epoch.len()), "{welcome}");
    assert_eq!(
        welcome,
        format!(
            r#"{{"type":"welcome","text":"{WELCOME}","room":"kitchen","epoch":"{epoch}","offset":0}}"#
        )
    );
    for n in 1..=3 {
        ws.send(Message::text(format!("m{n}"))).unwrap();
        assert_eq!(text(&mut ws), message(&epoch, n, &format!("m{n}")));
    }
    // A later member: the same epoch, the latest offset, the history.
    let (mut late, late_epoch, latest) = join_v1(&server, "/chat/kitchen");
    assert_eq!((late_epoch.as_str(), latest), (epoch.as_str(), 3));
    for n in 1..=3 {
        assert_eq!(text(&mut late), message(&epoch, n, &format!("m{n}")));
    }
    // The default room is "" and another room has an epoch of its own.
    let (mut lobby, protocol) = connect_v1(&server.url("/chat")).unwrap();
    assert_eq!(protocol.as_deref(), Some("rookery.v1"));
    let lobby_welcome = text(&mut lobby);
    assert!(lobby_welcome.contains(r#""room":"","#), "{lobby_welcome}");
    assert_ne!(epoch_of(&lobby_welcome), epoch);
}

#[test]
fn texts_are_escaped_as_json_and_binary_comes_as_base64() {
    let server = chat(&["--allow-binary"]);
    let (mut ws, epoch, _) = join_v1(&server, "/chat/j");
    ws.send(Message::text("q\"b\\n\n\t\u{1}\u{1f}é😀")).unwrap();
    assert_eq!(
        text(&mut ws),
        message(&epoch, 1, "q\\\"b\\\\n\\n\\t\\u0001\\u001fé😀")
    );
    ws.send(Message::binary(vec![0u8, 1, 254, 255])).unwrap();
    assert_eq!(
        text(&mut ws),
        format!(r#"{{"type":"message","epoch":"{epoch}","offset":2,"base64":"AAH+/w=="}}"#)
    );
}

#[test]
fn plain_members_get_the_same_bytes_as_ever_beside_v1_ones() {
    let server = chat(&["--history", "4"]);
    let (mut v1, epoch, _) = join_v1(&server, "/chat/mixed");
    let (mut raw, head) = raw_upgrade(server.addr, "/chat/mixed", "");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("sec-websocket-protocol"),
        "{head}"
    );
    assert_eq!(
        read_frame(&mut raw).unwrap(),
        (0x81, WELCOME.as_bytes().to_vec())
    );
    let texts = ["one", "\"two\"\n", "😀"];
    for (n, t) in texts.iter().enumerate() {
        v1.send(Message::text(*t)).unwrap();
        assert_eq!(read_frame(&mut raw).unwrap(), (0x81, t.as_bytes().to_vec()));
        assert_eq!(epoch_of(&text(&mut v1)), epoch);
        let _ = n;
    }
    // A plain newcomer's history is the plain frames too.
    let (mut late, _) = raw_upgrade(server.addr, "/chat/mixed", "");
    assert_eq!(
        read_frame(&mut late).unwrap(),
        (0x81, WELCOME.as_bytes().to_vec())
    );
    for t in texts {
        assert_eq!(
            read_frame(&mut late).unwrap(),
            (0x81, t.as_bytes().to_vec())
        );
    }
    // A `since` from a plain client is only checked, never acted on.
    let mut resumer = join_plain(&server, &format!("/chat/mixed?since={epoch}:1"));
    for t in texts {
        assert_eq!(text(&mut resumer), t);
    }
}

#[test]
fn a_resume_gets_exactly_the_missed_messages_then_recovered_then_live() {
    let server = chat(&["--history", "10", "--metrics"]);
    let (mut ws, epoch, _) = join_v1(&server, "/chat/r");
    talk(&server, "/chat/r", "a", 2);
    assert_eq!(text(&mut ws), message(&epoch, 1, "a0"));
    assert_eq!(text(&mut ws), message(&epoch, 2, "a1"));
    drop(ws);
    talk(&server, "/chat/r", "b", 3);
    let (mut back, back_epoch, latest) = join_v1(&server, &format!("/chat/r?since={epoch}:2"));
    assert_eq!((back_epoch.as_str(), latest), (epoch.as_str(), 5));
    for (n, t) in [(3, "b0"), (4, "b1"), (5, "b2")] {
        assert_eq!(text(&mut back), message(&epoch, n, t));
    }
    assert_eq!(
        text(&mut back),
        format!(r#"{{"type":"recovered","epoch":"{epoch}","offset":5,"missed":3}}"#)
    );
    talk(&server, "/chat/r", "c", 1);
    assert_eq!(text(&mut back), message(&epoch, 6, "c0"));
    // Nothing missed: recovered at once, 0 missed.
    let (mut current, _, _) = join_v1(&server, &format!("/chat/r?since={epoch}:6"));
    assert_eq!(
        text(&mut current),
        format!(r#"{{"type":"recovered","epoch":"{epoch}","offset":6,"missed":0}}"#)
    );
    // The `:` as a browser's URLSearchParams writes it.
    let (mut encoded, _, _) = join_v1(&server, &format!("/chat/r?since={epoch}%3A5"));
    assert_eq!(text(&mut encoded), message(&epoch, 6, "c0"));
    assert!(text(&mut encoded).contains(r#""type":"recovered""#));
    let metrics = get(&server, "/metrics");
    assert!(
        metrics.contains("rookery_resumes_total{result=\"recovered\"} 3\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rookery_resumes_total{result=\"gap\"} 0\n"),
        "{metrics}"
    );
}

#[test]
fn a_gap_when_the_history_no_longer_holds_them_or_the_epoch_differs() {
    let server = chat(&["--history", "3", "--metrics"]);
    let (ws, epoch, _) = join_v1(&server, "/chat/g");
    talk(&server, "/chat/g", "m", 6);
    drop(ws);
    let gap = format!(r#"{{"type":"gap","epoch":"{epoch}","offset":6}}"#);
    // Offset 2 was trimmed: the history (4, 5, 6) is all there is.
    let (mut trimmed, _, _) = join_v1(&server, &format!("/chat/g?since={epoch}:1"));
    assert_eq!(text(&mut trimmed), gap);
    for (n, t) in [(4, "m3"), (5, "m4"), (6, "m5")] {
        assert_eq!(text(&mut trimmed), message(&epoch, n, t));
    }
    // Everything after 3 is still held: recovered.
    let (mut held, _, _) = join_v1(&server, &format!("/chat/g?since={epoch}:3"));
    assert_eq!(text(&mut held), message(&epoch, 4, "m3"));
    // Another epoch, or a position past the latest: a gap.
    for since in ["other:5".to_string(), format!("{epoch}:7")] {
        let (mut wrong, _, _) = join_v1(&server, &format!("/chat/g?since={since}"));
        assert_eq!(text(&mut wrong), gap, "{since}");
        assert_eq!(text(&mut wrong), message(&epoch, 4, "m3"));
    }
    let metrics = get(&server, "/metrics");
    assert!(
        metrics.contains("rookery_resumes_total{result=\"gap\"} 3\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rookery_resumes_total{result=\"recovered\"} 1\n"),
        "{metrics}"
    );
}

#[test]
fn a_malformed_since_gets_400() {
    let server = chat(&["--history", "3"]);
    for since in [
        "",
        "abc",
        "a:b",
        ":1",
        "a-b:1",
        "a:-1",
        "a:1&since=a:2",
        &"x".repeat(17),
        "a:99999999999999999999",
    ] {
        let status = match connect_v1(&server.url(&format!("/chat/r?since={since}"))) {
            Err(e) => match *e {
                tungstenite::Error::Http(response) => response.status().as_u16(),
                other => panic!("{since}: {other}"),
            },
            Ok(_) => panic!("{since:?} was accepted"),
        };
        assert_eq!(status, 400, "{since:?}");
    }
    // Plain clients too.
    assert_eq!(
        http_status(server.addr, &upgrade_request("/chat?since=nope", "")),
        400
    );
}

#[test]
fn a_thousand_messages_published_during_a_resume_arrive_contiguous_none_twice() {
    const BEFORE: usize = 300;
    const DURING: usize = 1000;
    let server = chat(&["--history", "2000"]);
    talk(&server, "/chat/seam", "old", BEFORE);
    let (ws, epoch, _) = join_v1(&server, "/chat/seam");
    drop(ws);
    let url = server.url("/chat/seam");
    let (started, halfway) = std::sync::mpsc::channel();
    let (resuming, resumed) = std::sync::mpsc::channel::<()>();
    let talker = std::thread::spawn(move || {
        let mut ws = connect(&url);
        assert_eq!(next_data(&mut ws), Message::text(WELCOME));
        for i in 0..BEFORE {
            assert_eq!(next_data(&mut ws), Message::text(format!("old{i}")));
        }
        for i in 0..DURING {
            ws.send(Message::text(format!("new{i}"))).unwrap();
            if i == DURING / 2 {
                // The other half only once the resume has begun.
                started.send(()).unwrap();
                resumed.recv().unwrap();
            }
        }
        for i in 0..DURING {
            assert_eq!(next_data(&mut ws), Message::text(format!("new{i}")));
        }
    });
    // Resume from 10 while the talker is at it: what the room held then,
    // then the rest as it comes.
    halfway.recv().unwrap();
    let (mut back, _, latest) = join_v1(&server, &format!("/chat/seam?since={epoch}:10"));
    resuming.send(()).unwrap();
    let total = (BEFORE + DURING) as u64;
    let mut expected = 11;
    let mut recovered = None;
    while expected <= total || recovered.is_none() {
        let got = text(&mut back);
        if got.contains(r#""type":"recovered""#) {
            assert!(recovered.is_none(), "twice: {got}");
            assert_eq!(number(&got, "offset"), latest, "{got}");
            assert_eq!(number(&got, "missed"), latest - 10, "{got}");
            recovered = Some(expected);
            continue;
        }
        let n = number(&got, "offset");
        assert_eq!(n, expected, "a hole or a repeat: {got}");
        let body = if n as usize <= BEFORE {
            format!("old{}", n - 1)
        } else {
            format!("new{}", n as usize - BEFORE - 1)
        };
        assert_eq!(got, message(&epoch, n, &body));
        expected += 1;
    }
    assert_eq!(
        recovered,
        Some(latest + 1),
        "recovered right after the missed ones"
    );
    talker.join().unwrap();
}

#[test]
fn a_python_websockets_client_resumes_and_decodes_every_envelope() {
    if !require_python("websockets") {
        return;
    }
    let server = chat(&["--history", "50"]);
    let script = format!(
        r#"
import asyncio, json, websockets
URL = "{url}"
TEXTS = ["plain", "q\"b\\\\", "\x01\x1f\n\t", "é😀\u2028"]
async def main():
    async with websockets.connect(URL, subprotocols=["rookery.v1"]) as ws:
        assert ws.subprotocol == "rookery.v1", ws.subprotocol
        w = json.loads(await ws.recv())
        assert w["type"] == "welcome" and w["room"] == "py" and w["offset"] == 0, w
        epoch = w["epoch"]
        for t in TEXTS:
            await ws.send(t)
        for n, t in enumerate(TEXTS, 1):
            m = json.loads(await ws.recv())
            assert m == {{"type": "message", "epoch": epoch, "offset": n, "text": t}}, (m, t)
    async with websockets.connect(URL) as other:
        await other.recv()
        for i in range(3):
            await other.send("missed%d" % i)
        for i in range(3):
            await other.recv()
    async with websockets.connect(URL + "?since=%s:2" % epoch, subprotocols=["rookery.v1"]) as ws:
        w = json.loads(await ws.recv())
        assert w["offset"] == 7 and w["epoch"] == epoch, w
        got = [json.loads(await ws.recv()) for _ in range(6)]
        assert [m.get("offset") for m in got] == [3, 4, 5, 6, 7, 7], got
        assert [m.get("text") for m in got[:5]] == TEXTS[2:] + ["missed0", "missed1", "missed2"], got
        assert got[5] == {{"type": "recovered", "epoch": epoch, "offset": 7, "missed": 5}}, got
    async with websockets.connect(URL + "?since=x:1", subprotocols=["rookery.v1"]) as ws:
        await ws.recv()
        g = json.loads(await ws.recv())
        assert g == {{"type": "gap", "epoch": epoch, "offset": 7}}, g
    print("ok")
asyncio.run(main())
"#,
        url = server.url("/chat/py"),
    );
    let out = run_python(&script);
    assert_eq!(out, "ok\n");
}

/// The body of `GET path`.
fn get(server: &Rookery, path: &str) -> String {
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

#[test]
fn a_paced_resume_of_large_messages_keeps_the_live_ones_behind_it() {
    const SIZE: usize = 50_000;
    let server = chat(&["--history", "20", "--max-backlog", "64KiB"]);
    let (ws, epoch, _) = join_v1(&server, "/chat/big");
    let body = |n: usize| format!("{n:06}:{}", "y".repeat(SIZE));
    let mut talker = join_plain(&server, "/chat/big");
    for n in 1..=20 {
        talker.send(Message::text(body(n))).unwrap();
        assert_eq!(text(&mut talker), body(n));
    }
    drop(ws);
    // 1 MB of replay, far more than the socket and --max-backlog take: it
    // waits in the feed while the room goes on.
    let (mut back, _, latest) = join_v1(&server, &format!("/chat/big?since={epoch}:0"));
    assert_eq!(latest, 20);
    for n in 21..=30 {
        talker.send(Message::text(body(n))).unwrap();
        assert_eq!(text(&mut talker), body(n));
    }
    for n in 1..=20u64 {
        assert_eq!(text(&mut back), message(&epoch, n, &body(n as usize)));
    }
    assert_eq!(
        text(&mut back),
        format!(r#"{{"type":"recovered","epoch":"{epoch}","offset":20,"missed":20}}"#)
    );
    for n in 21..=30u64 {
        assert_eq!(text(&mut back), message(&epoch, n, &body(n as usize)));
    }
}

/// With `--redis` and Redis unreachable the offer is taken all the same:
/// the node serves its members under an epoch of its own (SPEC §12;
/// tests/cluster_resume.rs has the cluster's side).
#[cfg(feature = "redis")]
#[test]
fn with_redis_unreachable_the_offer_is_taken_and_offsets_are_the_nodes_own() {
    // Nothing listens on port 1: the bridge is attached and retrying.
    let server = chat(&["--history", "5", "--redis", "redis://127.0.0.1:1"]);
    let (mut raw, head) = raw_upgrade(
        server.addr,
        "/chat/c",
        "Sec-WebSocket-Protocol: rookery.v1\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-protocol: rookery.v1"),
        "{head}"
    );
    let (_, welcome) = read_frame(&mut raw).unwrap();
    let welcome = String::from_utf8(welcome).unwrap();
    let epoch = epoch_of(&welcome);
    assert!(welcome.ends_with(",\"offset\":0}"), "{welcome}");
    raw.write_all(&client_frame(0x81, b"plain")).unwrap();
    assert_eq!(
        read_frame(&mut raw).unwrap(),
        (0x81, message(&epoch, 1, "plain").into_bytes())
    );
}

/// With `--deflate` a kept envelope is compressed once when kept, but only
/// in a room a `rookery.v1` member joined: a room of plain members pays
/// for its plain frames only (tests/history_limits.rs counts those).
#[cfg(feature = "deflate")]
#[test]
fn with_deflate_envelopes_are_compressed_when_kept_where_v1_members_come() {
    let server = chat(&["--deflate", "--history", "10", "--metrics"]);
    let compressed = || {
        let body = get(&server, "/metrics");
        let line = body
            .lines()
            .find(|l| l.starts_with("rookery_compressed_bytes_total "))
            .unwrap_or_else(|| panic!("{body}"))
            .to_string();
        line.rsplit(' ').next().unwrap().parse::<u64>().unwrap()
    };
    let (_v1, epoch, _) = join_v1(&server, "/chat/z");
    let start = compressed();
    talk(&server, "/chat/z", &"x".repeat(1000), 3);
    let envelopes: u64 = (1..=3u64)
        .map(|n| message(&epoch, n, &format!("{}{}", "x".repeat(1000), n - 1)).len() as u64)
        .sum();
    assert_eq!(compressed() - start, 3 * 1001 + envelopes);
}
