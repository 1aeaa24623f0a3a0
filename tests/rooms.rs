//! Chat rooms and history through the binary, with tungstenite
//! clients: rooms are isolated, ordered per sender, capped by
//! `--max-rooms` (503, never for the default room; a room without members
//! makes way), named by the rules (else 404), and `--history` hands a
//! newcomer the last messages with no gap and no duplicate at the seam with
//! live ones.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use tungstenite::Message;

const WELCOME: &str = "Welcome to Rookery Chat!";

fn chat(extra: &[&str]) -> Rookery {
    let mut args = vec!["--ping-interval", "0"];
    args.extend_from_slice(extra);
    Rookery::start(&args)
}

fn join(server: &Rookery, path: &str) -> Ws {
    let mut ws = connect(&server.url(path));
    assert_eq!(next_data(&mut ws), Message::text(WELCOME));
    ws
}

fn text(ws: &mut Ws) -> String {
    match next_data(ws) {
        Message::Text(t) => t.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

fn refused_with(server: &Rookery, path: &str) -> u16 {
    match try_connect(&server.url(path)) {
        Err(e) => match *e {
            tungstenite::Error::Http(response) => response.status().as_u16(),
            other => panic!("unexpected error {other}"),
        },
        Ok(_) => panic!("{path} was accepted"),
    }
}

#[test]
fn members_of_one_room_never_see_another_rooms_messages() {
    let server = chat(&[]);
    let mut a1 = join(&server, "/chat/a");
    let mut a2 = join(&server, "/chat/a");
    let mut b1 = join(&server, "/chat/b");
    let mut lobby = join(&server, "/chat");
    b1.send(Message::text("for b")).unwrap();
    assert_eq!(text(&mut b1), "for b");
    lobby.send(Message::text("for the lobby")).unwrap();
    assert_eq!(text(&mut lobby), "for the lobby");
    a1.send(Message::text("for a")).unwrap();
    assert_eq!(text(&mut a1), "for a");
    assert_eq!(text(&mut a2), "for a");
    a2.send(Message::text("a again")).unwrap();
    assert_eq!(text(&mut a1), "a again");
    assert_eq!(text(&mut a2), "a again");
    // b1 and the lobby got nothing of a's: their next message is theirs.
    b1.send(Message::text("b again")).unwrap();
    assert_eq!(text(&mut b1), "b again");
    lobby.send(Message::text("lobby again")).unwrap();
    assert_eq!(text(&mut lobby), "lobby again");
}

#[test]
fn three_rooms_of_five_members_200_messages_each_none_lost_order_kept() {
    let server = chat(&[]);
    let rooms = ["red", "green", "blue"];
    let mut members = Vec::new();
    for room in rooms {
        for m in 0..5 {
            members.push((room, m, join(&server, &format!("/chat/{room}"))));
        }
    }
    // Everyone has joined before anyone speaks.
    let threads: Vec<_> = members
        .into_iter()
        .map(|(room, m, mut ws)| {
            std::thread::spawn(move || {
                for i in 0..200 {
                    ws.send(Message::text(format!("{room}:{m}:{i}"))).unwrap();
                }
                let mut next: HashMap<u32, u32> = HashMap::new();
                for _ in 0..1000 {
                    let t = text(&mut ws);
                    let mut parts = t.split(':');
                    let (r, s, i) = (parts.next(), parts.next(), parts.next());
                    assert_eq!(r, Some(room), "{t} reached room {room}");
                    let s: u32 = s.unwrap().parse().unwrap();
                    let i: u32 = i.unwrap().parse().unwrap();
                    let want = next.entry(s).or_insert(0);
                    assert_eq!(i, *want, "sender {s} of {room} out of order");
                    *want += 1;
                }
                assert_eq!(next.values().copied().collect::<Vec<_>>(), vec![200; 5]);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn max_rooms_refuses_one_more_with_503_and_bad_names_with_404() {
    let server = chat(&["--max-rooms", "2"]);
    let mut a = join(&server, "/chat/a");
    let _b = join(&server, "/chat/b");
    // Joining an existing room is fine; a third room is not.
    let _a2 = join(&server, "/chat/a");
    assert_eq!(refused_with(&server, "/chat/c"), 503);
    // The default room is never refused for the limit.
    let mut lobby = join(&server, "/chat");
    lobby.send(Message::text("lobby")).unwrap();
    assert_eq!(text(&mut lobby), "lobby");
    for bad in [
        "/chat/",
        "/chat/.",
        "/chat/..",
        "/chat/a%20b",
        "/chat/a/b",
        "/chat/caf%C3%A9",
        "/chat/a!",
        "/chatroom",
    ] {
        assert_eq!(refused_with(&server, bad), 404, "{bad}");
    }
    // A plain request below the path is like one for any other path.
    assert_eq!(
        http_status(server.addr, "GET /chat/a HTTP/1.1\r\nHost: x\r\n\r\n"),
        404
    );
    let long = format!("/chat/{}", "x".repeat(65));
    assert_eq!(refused_with(&server, &long), 404);
    // A room without members (and no history) is gone: room a empties,
    // and a new room fits again.
    a.close(None).unwrap();
    let _ = expect_close(&mut a);
    drop(_a2);
    let mut c = None;
    assert!(eventually(Duration::from_secs(5), || {
        c = try_connect(&server.url(&format!("/chat/{}", "c".repeat(64)))).ok();
        c.is_some()
    }));
}

#[test]
fn history_hands_a_newcomer_the_last_messages_then_live_ones() {
    let server = chat(&["--history", "5"]);
    let mut talker = join(&server, "/chat/h");
    let mut other_room = join(&server, "/chat/elsewhere");
    other_room.send(Message::text("not for h")).unwrap();
    assert_eq!(text(&mut other_room), "not for h");
    for i in 1..=12 {
        talker.send(Message::text(format!("m{i}"))).unwrap();
    }
    for i in 1..=12 {
        assert_eq!(text(&mut talker), format!("m{i}"));
    }
    let mut late = join(&server, "/chat/h");
    for i in 8..=12 {
        assert_eq!(text(&mut late), format!("m{i}"));
    }
    talker.send(Message::text("live")).unwrap();
    assert_eq!(text(&mut late), "live");
    assert_eq!(text(&mut talker), "live");
    // The default room has its own (empty) history.
    let mut lobby = join(&server, "/chat");
    lobby.send(Message::text("lobby")).unwrap();
    assert_eq!(text(&mut lobby), "lobby");
}

#[test]
fn a_newcomer_joining_mid_stream_sees_no_gap_and_no_duplicate() {
    let server = chat(&["--history", "5"]);
    let mut talker = join(&server, "/chat/flow");
    const N: u32 = 3000;
    // Four newcomers join while the talker's messages are on their way:
    // each join waits for its welcome while the server is still reading
    // the messages sent before it.
    let mut joiners = Vec::new();
    for i in 0..N {
        talker.send(Message::text(i.to_string())).unwrap();
        if i % 500 == 250 && joiners.len() < 4 {
            joiners.push(join(&server, "/chat/flow"));
        }
    }
    for i in 0..N {
        assert_eq!(text(&mut talker), i.to_string());
    }
    let mut mid_stream = 0;
    for mut ws in joiners {
        let first: u32 = text(&mut ws).parse().unwrap();
        if first + 5 < N {
            mid_stream += 1;
        }
        let mut expected = first + 1;
        while expected < N {
            let got: u32 = text(&mut ws).parse().unwrap();
            assert_eq!(got, expected, "gap or duplicate after {first}");
            expected += 1;
        }
    }
    assert!(mid_stream > 0, "every joiner came after the stream");
}

#[test]
fn echo_mode_keeps_sub_paths_at_404() {
    let server = chat(&["--mode", "echo"]);
    assert_eq!(refused_with(&server, "/chat/room"), 404);
    let mut ws = connect(&server.url("/chat"));
    ws.send(Message::text("x")).unwrap();
    assert_eq!(text(&mut ws), "x");
}
