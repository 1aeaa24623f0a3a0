//! Close codes (RFC 6455 §7.4): [`CloseCode`], and the rules for a received
//! close frame.

use std::fmt;

/// A close code (RFC 6455 §7.4, and IANA's registry since): the status a
/// close frame carries, or that the server reports for a connection that
/// ended without one ([`CloseCode::NO_STATUS`], [`CloseCode::ABNORMAL`]).
///
/// Any `u16` converts, unchanged: application codes (3000–4999) need no
/// constant here. Whether one may be sent is
/// [`CloseCode::is_valid_on_wire`]; a close with any other is refused
/// ([`crate::SendError::InvalidCloseCode`]), and a peer's fails the
/// connection with [`CloseCode::PROTOCOL_ERROR`].
///
/// `Display` writes the number, then the name of a registered code:
/// `1001 (going away)`, `4000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CloseCode(u16);

impl CloseCode {
    /// 1000: normal closure.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, idle timeout).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: a protocol error.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a data type the endpoint cannot accept (binary in the chat).
    pub const UNSUPPORTED: CloseCode = CloseCode(1003);
    /// 1005: no status code was present (never sent on the wire).
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: the connection dropped without a close frame (never sent on
    /// the wire).
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: data inconsistent with its type (text that is not UTF-8, a
    /// compressed message that does not inflate).
    pub const INVALID_DATA: CloseCode = CloseCode(1007);
    /// 1008: a message that violates the endpoint's policy (a slow
    /// consumer's backlog, a rate limit).
    pub const POLICY: CloseCode = CloseCode(1008);
    /// 1009: a message too big to process.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client expected an extension the server did not
    /// negotiate (a client's code).
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: the server met an unexpected condition.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: the service is restarting.
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: the service is overloaded for now; try again later.
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 1014: a gateway or proxy had an invalid answer from upstream.
    pub const BAD_GATEWAY: CloseCode = CloseCode(1014);
    /// 1015: the TLS handshake failed (never sent on the wire).
    pub const TLS_HANDSHAKE: CloseCode = CloseCode(1015);

    /// The code `code`, whatever it is (see [`CloseCode::is_valid_on_wire`]).
    pub const fn new(code: u16) -> CloseCode {
        CloseCode(code)
    }

    /// The number.
    pub const fn get(self) -> u16 {
        self.0
    }

    /// Whether this code may appear in a close frame, sent or received:
    /// 1000–1003 and 1007–1011, and the application codes 3000–4999. Never
    /// 1005, 1006 or 1015 (they stand for a missing frame or code), nor the
    /// reserved 1004, nor anything unregistered (0–999, 1016–2999, 5000
    /// and up).
    pub const fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1011 | 3000..=4999)
    }

    /// The registry's name for this code, if it has one.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            1000 => "normal closure",
            1001 => "going away",
            1002 => "protocol error",
            1003 => "unsupported data",
            1005 => "no status",
            1006 => "abnormal closure",
            1007 => "invalid data",
            1008 => "policy violation",
            1009 => "message too big",
            1010 => "mandatory extension",
            1011 => "internal error",
            1012 => "service restart",
            1013 => "try again later",
            1014 => "bad gateway",
            1015 => "TLS handshake",
            _ => return None,
        })
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> CloseCode {
        CloseCode(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        code.0
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{} ({name})", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

/// Why a close frame's payload was refused; each maps to a close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseFrameError {
    /// A one-byte payload: too short for a code.
    Truncated,
    /// A code that must not appear on the wire.
    InvalidCode(CloseCode),
    /// A reason that is not UTF-8.
    InvalidReason,
}

/// A validated close frame: the code (if any) and the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseFrame<'a> {
    /// `None` when the frame had no payload.
    pub code: Option<CloseCode>,
    /// The reason text, possibly empty.
    pub reason: &'a str,
}

/// Parses and validates a close frame's payload.
pub fn parse_close(payload: &[u8]) -> Result<CloseFrame<'_>, CloseFrameError> {
    match payload {
        [] => Ok(CloseFrame {
            code: None,
            reason: "",
        }),
        [_] => Err(CloseFrameError::Truncated),
        [hi, lo, reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
            if !code.is_valid_on_wire() {
                return Err(CloseFrameError::InvalidCode(code));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| CloseFrameError::InvalidReason)?;
            Ok(CloseFrame {
                code: Some(code),
                reason,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_allowed_on_the_wire() {
        for code in 0..=u16::MAX {
            let expected = (1000..=1003).contains(&code)
                || (1007..=1011).contains(&code)
                || (3000..=4999).contains(&code);
            assert_eq!(CloseCode::new(code).is_valid_on_wire(), expected, "{code}");
        }
        for never in [1004, 1005, 1006, 1015, 0, 999, 1012, 1016, 2999, 5000] {
            assert!(!CloseCode::from(never).is_valid_on_wire());
        }
        for named in [
            CloseCode::NO_STATUS,
            CloseCode::ABNORMAL,
            CloseCode::TLS_HANDSHAKE,
        ] {
            assert!(!named.is_valid_on_wire(), "{named}");
        }
    }

    #[test]
    fn every_code_survives_the_round_trip() {
        for code in 0..=u16::MAX {
            assert_eq!(u16::from(CloseCode::from(code)), code);
            assert_eq!(CloseCode::new(code).get(), code);
        }
        // Application codes keep their number, not a catch-all.
        assert_eq!(CloseCode::from(4000), CloseCode::new(4000));
        assert_ne!(CloseCode::from(4000), CloseCode::from(4001));
    }

    #[test]
    fn the_constants_are_the_registry_numbers() {
        let table = [
            (CloseCode::NORMAL, 1000),
            (CloseCode::GOING_AWAY, 1001),
            (CloseCode::PROTOCOL_ERROR, 1002),
            (CloseCode::UNSUPPORTED, 1003),
            (CloseCode::NO_STATUS, 1005),
            (CloseCode::ABNORMAL, 1006),
            (CloseCode::INVALID_DATA, 1007),
            (CloseCode::POLICY, 1008),
            (CloseCode::TOO_BIG, 1009),
            (CloseCode::MANDATORY_EXTENSION, 1010),
            (CloseCode::INTERNAL_ERROR, 1011),
            (CloseCode::SERVICE_RESTART, 1012),
            (CloseCode::TRY_AGAIN_LATER, 1013),
            (CloseCode::BAD_GATEWAY, 1014),
            (CloseCode::TLS_HANDSHAKE, 1015),
        ];
        for (constant, number) in table {
            assert_eq!(constant.get(), number);
            assert!(constant.name().is_some(), "{number} has no name");
        }
        assert_eq!(CloseCode::from(1004).name(), None, "reserved");
        assert_eq!(CloseCode::from(4000).name(), None);
    }

    #[test]
    fn display_gives_the_number_and_the_name() {
        assert_eq!(CloseCode::GOING_AWAY.to_string(), "1001 (going away)");
        assert_eq!(CloseCode::TOO_BIG.to_string(), "1009 (message too big)");
        assert_eq!(CloseCode::from(4000).to_string(), "4000");
        assert_eq!(CloseCode::from(0).to_string(), "0");
    }

    #[test]
    fn close_payloads() {
        assert_eq!(
            parse_close(&[]),
            Ok(CloseFrame {
                code: None,
                reason: ""
            })
        );
        assert_eq!(parse_close(&[3]), Err(CloseFrameError::Truncated));
        assert_eq!(
            parse_close(&[0x03, 0xE8, b'o', b'k']),
            Ok(CloseFrame {
                code: Some(CloseCode::NORMAL),
                reason: "ok"
            })
        );
        assert_eq!(
            parse_close(&[0x0F, 0xA0]),
            Ok(CloseFrame {
                code: Some(CloseCode::from(4000)),
                reason: ""
            })
        );
        assert_eq!(
            parse_close(&[0x03, 0xED]),
            Err(CloseFrameError::InvalidCode(CloseCode::NO_STATUS))
        );
        assert_eq!(
            parse_close(&[0x03, 0xE8, 0xff]),
            Err(CloseFrameError::InvalidReason)
        );
    }
}
