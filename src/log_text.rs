//! Text from the network as a log line may show it: every character that
//! could forge a line, drive a terminal, or silently reorder or hide what a
//! reader of the log sees is written as an escape (`\n`, `\x1b`, `\u{200f}`).
//!
//! What is escaped: the C0 and C1 controls and DEL; the backslash (doubled,
//! so that an escape in the log always means one was made); the line and
//! paragraph separators U+2028 and U+2029; and every character of Unicode
//! category Cf (format: the bidirectional marks, embeddings, overrides and
//! isolates, zero-width characters, the soft hyphen, tag characters and the
//! like), whose table is [`FORMAT`].

use std::fmt::Write as _;

/// Unicode's category Cf (format characters), as inclusive ranges in code
/// point order, from the Unicode 15.1 character database
/// (`DerivedGeneralCategory.txt`).
const FORMAT: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
];

/// Whether `c` is a format character (Unicode category Cf).
pub(crate) fn is_format(c: char) -> bool {
    let c = u32::from(c);
    // Everything below the soft hyphen is outside the table: the common
    // case (ASCII, Latin-1) answers without a search.
    if c < 0xAD {
        return false;
    }
    FORMAT
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Whether a log line must show `c` as an escape rather than as itself.
fn needs_escape(c: char) -> bool {
    c == '\\' || c.is_control() || c == '\u{2028}' || c == '\u{2029}' || is_format(c)
}

/// Pushes `c` to `out` as a log line shows it: itself, or its escape
/// (`\\`, `\n`, `\r`, `\t`, `\x1b`, `\u{200f}`).
pub(crate) fn push_for_log(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if c.is_ascii_control() => {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        }
        c if needs_escape(c) => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
        c => out.push(c),
    }
}

/// `text` with every character a log line must not show raw escaped (see
/// the module's documentation), whole: for text already bounded in length
/// (the chat's own lines cut client text with [`excerpt_for_log`]).
#[cfg_attr(not(feature = "redis"), allow(dead_code))] // the Redis bridge's error text (`crate::cluster`)
pub(crate) fn escape_for_log(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        push_for_log(&mut out, c);
    }
    out
}

/// `text` escaped as [`escape_for_log`] does, cut to at most `limit`
/// characters of the result without cutting an escape in two; the flag
/// tells whether something was left off.
pub(crate) fn excerpt_for_log(text: &str, limit: usize) -> (String, bool) {
    let mut out = String::with_capacity(text.len().min(limit));
    let mut shown = 0;
    let mut piece = String::new();
    for c in text.chars() {
        piece.clear();
        push_for_log(&mut piece, c);
        let len = piece.chars().count();
        if shown + len > limit {
            return (out, true);
        }
        out.push_str(&piece);
        shown += len;
    }
    (out, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_disjoint() {
        for pair in FORMAT.windows(2) {
            assert!(pair[0].0 <= pair[0].1 && pair[0].1 < pair[1].0, "{pair:?}");
        }
    }

    #[test]
    fn every_format_character_is_escaped() {
        // The reported ones, the ends of each range and a few inside.
        for c in [
            '\u{200f}',
            '\u{061c}',
            '\u{202e}',
            '\u{00ad}',
            '\u{0600}',
            '\u{0605}',
            '\u{06dd}',
            '\u{070f}',
            '\u{0890}',
            '\u{08e2}',
            '\u{180e}',
            '\u{200b}',
            '\u{200c}',
            '\u{200d}',
            '\u{200e}',
            '\u{202a}',
            '\u{2060}',
            '\u{2064}',
            '\u{2066}',
            '\u{2069}',
            '\u{206f}',
            '\u{feff}',
            '\u{fff9}',
            '\u{fffb}',
            '\u{110bd}',
            '\u{110cd}',
            '\u{13430}',
            '\u{1343f}',
            '\u{1bca0}',
            '\u{1d173}',
            '\u{1d17a}',
            '\u{e0001}',
            '\u{e0020}',
            '\u{e007f}',
        ] {
            assert!(is_format(c), "{:x}", u32::from(c));
            assert_eq!(
                escape_for_log(&format!("a{c}b")),
                format!("a\\u{{{:x}}}b", u32::from(c))
            );
        }
        // Neighbours that are not format characters stay as they are.
        for c in [
            'a',
            'é',
            '\u{00ac}',
            '\u{00ae}',
            '\u{0606}',
            '\u{200a}',
            '\u{2010}',
            '\u{2065}',
            '\u{fefe}',
            '\u{fff8}',
            '\u{fffc}',
            '\u{1d172}',
            '\u{e0002}',
            '\u{e0080}',
            '😀',
        ] {
            assert!(!is_format(c), "{:x}", u32::from(c));
            assert_eq!(escape_for_log(&c.to_string()), c.to_string());
        }
    }

    #[test]
    fn controls_separators_and_backslashes_are_escaped() {
        assert_eq!(
            escape_for_log("a\nb\r\tc\\d\u{1b}[31m\u{7f}\u{9b}\u{2028}\u{2029}é"),
            "a\\nb\\r\\tc\\\\d\\x1b[31m\\x7f\\u{9b}\\u{2028}\\u{2029}é"
        );
    }

    #[test]
    fn excerpts_stop_at_the_limit_without_cutting_an_escape() {
        assert_eq!(excerpt_for_log("hello", 200), ("hello".to_string(), false));
        assert_eq!(excerpt_for_log("abcdef", 4), ("abcd".to_string(), true));
        assert_eq!(excerpt_for_log("abcd", 4), ("abcd".to_string(), false));
        // "ab\x1b" would be 6 characters; "ab\u{200f}" 10.
        assert_eq!(excerpt_for_log("ab\u{1b}", 5), ("ab".to_string(), true));
        assert_eq!(excerpt_for_log("ab\u{200f}", 9), ("ab".to_string(), true));
        let (long, cut) = excerpt_for_log(&"\n".repeat(100_000), 200);
        assert!(cut);
        assert_eq!(long, "\\n".repeat(100));
        let (wide, cut) = excerpt_for_log(&"é".repeat(1000), 200);
        assert!(cut && wide.chars().count() == 200);
    }
}
