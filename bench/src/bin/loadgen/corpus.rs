//! Message bodies for `fanout --payload`: realistic text, so compression
//! sees what a chat server would carry, not a repeated pattern. Each
//! message is the 16-byte hex header (sender id, sequence number) followed
//! by body number `seq % len` of a fixed, deterministic set.

/// `chat`: chat lines of 60 to 120 bytes in all (header included), half
/// plain "name: text" lines, half small JSON envelopes.
pub const CHAT_MIN: usize = 60;
pub const CHAT_MAX: usize = 120;
/// `json`: JSON documents of (at most, and nearly) 4 KiB in all.
pub const JSON_SIZE: usize = 4096;

const NAMES: &[&str] = &[
    "maya", "tomas", "priya", "kenji", "olu", "sven", "amelie", "diego", "hana", "lucas", "noor",
    "grace", "ivan", "zoe", "marco", "aisha", "ben", "yuki", "fatima", "leo",
];

const ROOMS: &[&str] = &[
    "general",
    "random",
    "dev",
    "ops-alerts",
    "design",
    "support",
];

const LINES: &[&str] = &[
    "hi all",
    "morning!",
    "anyone up for lunch at noon?",
    "the build on main is green again",
    "brb, coffee",
    "can someone review my PR before 3?",
    "I think the staging box ran out of disk again",
    "lol",
    "thanks, that fixed it",
    "meeting moved to 2:30, same room",
    "who broke the wifi on the second floor?",
    "does anyone know where the spare HDMI cables went?",
    "deploying 1.8.2 to prod in five minutes",
    "+1",
    "the client says the export is still slow on large sheets",
    "I pushed a fix, let me know if you still see it",
    "happy friday everyone",
    "sorry, was on mute",
    "can we move the standup to 10 tomorrow?",
    "the sensor on board 7 reports 41.5 C, is that normal?",
    "nope, back in an hour",
    "ok, I will take the on-call shift this weekend",
    "did the backup job finish last night?",
    "great work on the release notes",
    "the link in the handbook is dead, here is the new one",
    "any idea why the tests time out only on CI?",
    "see you all on monday",
    "first time here, hello from Lisbon!",
    "could you share the slides from yesterday?",
    "restarting the gateway now, expect a short outage",
    "yes",
    "that graph looks wrong, the y axis starts at 40",
    "the cake in the kitchen is for everyone",
    "I can't reproduce it on my machine",
    "ETA for the firmware update is thursday",
    "where do I find the API keys for the test account?",
];

/// The chat lines: every (name, line) pairing in a fixed pseudo-random
/// order, in the two styles, those whose whole message (header included)
/// is 60 to 120 bytes; at least `n` of them (pairs repeat in the other
/// style or room to reach it).
pub fn chat_lines(n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut x: u32 = 0x2F6B_3C1D;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    let mut tries = 0;
    while out.len() < n && tries < 100 * n {
        tries += 1;
        let name = NAMES[next() as usize % NAMES.len()];
        let line = LINES[next() as usize % LINES.len()];
        let body = if next() % 2 == 0 {
            format!(" {name}: {line}")
        } else {
            let room = ROOMS[next() as usize % ROOMS.len()];
            format!(" {{\"room\":\"{room}\",\"from\":\"{name}\",\"text\":\"{line}\"}}")
        };
        let len = 16 + body.len();
        if (CHAT_MIN..=CHAT_MAX).contains(&len) {
            out.push(body.into_bytes());
        }
    }
    out
}

const STATUSES: &[&str] = &["online", "away", "busy", "offline"];
const CLIENTS: &[&str] = &[
    "web/1.8.2",
    "android/1.8.1",
    "ios/1.8.2",
    "desktop/1.7.9",
    "cli/0.4.0",
];

/// `n` JSON documents of a room's state (members with presence, the last
/// messages), each filled with whole entries up to `JSON_SIZE` bytes in all
/// (header included): 3.9 to 4 KiB, no padding.
pub fn json_docs(n: usize) -> Vec<Vec<u8>> {
    let mut x: u32 = 0x1B87_3593;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    let mut docs = Vec::with_capacity(n);
    for d in 0..n {
        let room = ROOMS[d % ROOMS.len()];
        let mut s = format!(
            "{{\"type\":\"room_state\",\"room\":\"{room}\",\"version\":{},\"topic\":\"{}\",\"members\":[",
            1000 + next() % 90_000,
            LINES[next() as usize % LINES.len()]
        );
        let close_members = "],\"recent\":[";
        let mut entries: Vec<String> = Vec::new();
        // Members first, then recent messages, until the document is full.
        let budget = JSON_SIZE - 16 - close_members.len() - 3;
        let mut members = 0;
        loop {
            let e = if members < 18 {
                let name = NAMES[next() as usize % NAMES.len()];
                format!(
                    "{{\"id\":{},\"name\":\"{name}\",\"status\":\"{}\",\"last_seen\":\"2026-12-{:02}T{:02}:{:02}:{:02}Z\",\"client\":\"{}\",\"unread\":{}}}",
                    10_000 + next() % 90_000,
                    STATUSES[next() as usize % STATUSES.len()],
                    1 + next() % 2,
                    next() % 24,
                    next() % 60,
                    next() % 60,
                    CLIENTS[next() as usize % CLIENTS.len()],
                    next() % 40
                )
            } else {
                let name = NAMES[next() as usize % NAMES.len()];
                format!(
                    "{{\"seq\":{},\"from\":\"{name}\",\"at\":{},\"text\":\"{}\"}}",
                    100_000 + next() % 900_000,
                    1_796_000_000 + next() % 500_000,
                    LINES[next() as usize % LINES.len()]
                )
            };
            let used: usize = s.len() + entries.iter().map(|e| e.len() + 1).sum::<usize>();
            if used + e.len() + 1 > budget {
                break;
            }
            entries.push(e);
            members += 1;
        }
        let (m, r) = entries.split_at(entries.len().min(18));
        s.push_str(&m.join(","));
        s.push_str(close_members);
        s.push_str(&r.join(","));
        s.push_str("]}");
        docs.push(s.into_bytes());
    }
    docs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_lines_are_varied_and_in_range() {
        let lines = chat_lines(256);
        assert_eq!(lines.len(), 256);
        let distinct: std::collections::HashSet<_> = lines.iter().collect();
        assert!(distinct.len() > 150, "{} distinct", distinct.len());
        for l in &lines {
            assert!((CHAT_MIN..=CHAT_MAX).contains(&(16 + l.len())));
            assert!(std::str::from_utf8(l).is_ok());
        }
    }

    #[test]
    fn json_docs_are_4k() {
        for d in json_docs(8) {
            let len = 16 + d.len();
            assert!((JSON_SIZE - 200..=JSON_SIZE).contains(&len), "{len}");
            let s = std::str::from_utf8(&d).unwrap();
            assert!(s.starts_with("{\"type\":\"room_state\""), "{s}");
            assert!(s.ends_with("]}"));
        }
    }
}
