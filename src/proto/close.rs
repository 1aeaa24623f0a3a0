//! Close codes (RFC 6455 §7.4) and the rules for a received close frame.

/// Normal closure.
pub const NORMAL: u16 = 1000;
/// The endpoint is going away (server shutdown, idle timeout).
pub const GOING_AWAY: u16 = 1001;
/// A protocol error.
pub const PROTOCOL_ERROR: u16 = 1002;
/// A data type the endpoint cannot accept (binary in the chat).
pub const UNSUPPORTED_DATA: u16 = 1003;
/// No status code was present (never sent on the wire).
pub const NO_STATUS: u16 = 1005;
/// The connection dropped without a close frame (never sent on the wire).
pub const ABNORMAL: u16 = 1006;
/// A text payload that is not valid UTF-8.
pub const INVALID_PAYLOAD: u16 = 1007;
/// A message that violates the endpoint's policy (a slow consumer's backlog).
pub const POLICY_VIOLATION: u16 = 1008;
/// A message too big to process.
pub const MESSAGE_TOO_BIG: u16 = 1009;

/// Whether a peer may send `code` in a close frame.
pub fn is_valid_on_wire(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

/// Why a close frame's payload was refused; each maps to a close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseFrameError {
    /// A one-byte payload: too short for a code.
    Truncated,
    /// A code that must not appear on the wire.
    InvalidCode(u16),
    /// A reason that is not UTF-8.
    InvalidReason,
}

/// A validated close frame: the code (if any) and the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseFrame<'a> {
    /// `None` when the frame had no payload.
    pub code: Option<u16>,
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
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_on_wire(code) {
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
            assert_eq!(is_valid_on_wire(code), expected, "{code}");
        }
        for never in [1004, 1005, 1006, 1015, 0, 999, 1012, 1016, 2999, 5000] {
            assert!(!is_valid_on_wire(never));
        }
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
                code: Some(1000),
                reason: "ok"
            })
        );
        assert_eq!(
            parse_close(&[0x03, 0xED]),
            Err(CloseFrameError::InvalidCode(1005))
        );
        assert_eq!(
            parse_close(&[0x03, 0xE8, 0xff]),
            Err(CloseFrameError::InvalidReason)
        );
    }
}
