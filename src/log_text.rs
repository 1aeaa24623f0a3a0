//! Text from outside (a client, Redis) made safe to put in a log line.
//!
//! Log lines are read in terminals and editors and split into entries at
//! line breaks, so text that came from the network must not be able to
//! start a line of its own, send escape sequences, or reorder what is shown
//! around it. [`escape_for_log`] writes such text with every control
//! character, every invisible format character (Unicode category Cf: the
//! bidirectional marks, embeddings, overrides and isolates, zero-width
//! characters, the byte order mark, the soft hyphen, tag characters, …) and
//! the line and paragraph separators escaped, and a backslash doubled, so
//! the escaped form cannot be forged by the text itself.

use std::fmt::{self, Write};

/// `text` as a log line may show it (see the module's doc): `\n`, `\r`,
/// `\t`, `\\`, `\x1b` for ASCII controls, `\u{202e}` for the others.
pub(crate) fn escape_for_log(text: &str) -> impl fmt::Display + '_ {
    Escaped(text)
}

struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if c.is_ascii_control() => write!(f, "\\x{:02x}", c as u32)?,
                c if c.is_control() || is_format(c) || matches!(c, '\u{2028}' | '\u{2029}') => {
                    write!(f, "\\u{{{:x}}}", c as u32)?
                }
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// Whether `c` is in Unicode's general category Cf (format characters:
/// invisible, and some of them reorder text), as of Unicode 15.1.
pub(crate) fn is_format(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061c}'
            | '\u{06dd}'
            | '\u{070f}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08e2}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{110bd}'
            | '\u{110cd}'
            | '\u{13430}'..='\u{1343f}'
            | '\u{1bca0}'..='\u{1bca3}'
            | '\u{1d173}'..='\u{1d17a}'
            | '\u{e0001}'
            | '\u{e0020}'..='\u{e007f}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_format_characters_are_escaped_the_rest_kept() {
        let raw = "a\nb\r\tc\\d\u{1b}[31m\u{7f}\u{9b}\u{202e}\u{2028}\u{200f}\u{61c}\u{feff}\u{ad}\u{2066}\u{e0041}é日";
        let shown = escape_for_log(raw).to_string();
        assert_eq!(
            shown,
            "a\\nb\\r\\tc\\\\d\\x1b[31m\\x7f\\u{9b}\\u{202e}\\u{2028}\\u{200f}\\u{61c}\\u{feff}\\u{ad}\\u{2066}\\u{e0041}é日"
        );
        assert!(shown.chars().all(|c| !c.is_control() && !is_format(c)));
    }

    #[test]
    fn the_format_table_is_exactly_category_cf_where_it_matters() {
        // Neighbours of the ranges are ordinary text.
        for c in [
            '\u{ac}', '\u{ae}', '\u{200a}', '\u{2010}', '\u{2065}', '\u{fefe}', 'a',
        ] {
            assert!(!is_format(c), "{c:?}");
        }
        for c in [
            '\u{200b}',
            '\u{200e}',
            '\u{2064}',
            '\u{2069}',
            '\u{206f}',
            '\u{e007f}',
        ] {
            assert!(is_format(c), "{c:?}");
        }
    }
}
