//! The server's counters: plain integers bumped where the bytes and the
//! events move (the core's writes and accepts, the loop's reads and
//! callbacks), so that counting costs no allocation and no system call.
//! Handshake refusals and close codes go to small fixed tables, with one
//! bucket for whatever falls outside them. Read them with
//! [`crate::Context::stats`].

use crate::proto::close::CloseCode;

/// The statuses refusals are counted under (others: the last bucket).
pub const REFUSAL_STATUSES: [u16; 10] = [400, 403, 404, 405, 408, 426, 431, 500, 501, 503];

/// Close codes 1000 to 1015 have a bucket each; `CLOSE_BUCKETS` is other.
const CLOSE_FIRST: u16 = 1000;
const CLOSE_BUCKETS: usize = 16;

/// What the server has done since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// TCP connections accepted (those dropped at once for the connection
    /// limit included).
    pub connections_accepted: u64,
    /// Complete data messages received.
    pub messages_received: u64,
    /// Data messages sent, one per recipient.
    pub messages_sent: u64,
    /// Bytes read from sockets.
    pub bytes_received: u64,
    /// Bytes written to sockets.
    pub bytes_sent: u64,
    /// Connections closed (1008) for a backlog over the limit.
    pub slow_consumer_closes: u64,
    refused: [u64; REFUSAL_STATUSES.len() + 1],
    closes: [u64; CLOSE_BUCKETS + 1],
}

impl Stats {
    pub(crate) fn count_refusal(&mut self, status: u16) {
        let at = REFUSAL_STATUSES
            .iter()
            .position(|&s| s == status)
            .unwrap_or(REFUSAL_STATUSES.len());
        self.refused[at] += 1;
    }

    pub(crate) fn count_close(&mut self, code: CloseCode) {
        let at = usize::from(code.get().wrapping_sub(CLOSE_FIRST)).min(CLOSE_BUCKETS);
        self.closes[at] += 1;
    }

    /// Requests and upgrades refused, by status (`None`: any status not in
    /// [`REFUSAL_STATUSES`]); only the non-zero counts.
    pub fn handshakes_rejected(&self) -> impl Iterator<Item = (Option<u16>, u64)> + '_ {
        self.refused
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(i, &n)| (REFUSAL_STATUSES.get(i).copied(), n))
    }

    /// Upgraded connections closed, by the code the handler was told
    /// (`None`: a code outside 1000 to 1015); only the non-zero counts.
    pub fn closes(&self) -> impl Iterator<Item = (Option<CloseCode>, u64)> + '_ {
        self.closes
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(i, &n)| {
                let code = (i < CLOSE_BUCKETS).then(|| CloseCode::new(CLOSE_FIRST + i as u16));
                (code, n)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_have_an_other_bucket() {
        let mut s = Stats::default();
        s.count_refusal(404);
        s.count_refusal(404);
        s.count_refusal(418);
        for code in [1000, 1015, 4000, 0] {
            s.count_close(CloseCode::new(code));
        }
        assert_eq!(
            s.handshakes_rejected().collect::<Vec<_>>(),
            [(Some(404), 2), (None, 1)]
        );
        assert_eq!(
            s.closes().collect::<Vec<_>>(),
            [
                (Some(CloseCode::NORMAL), 1),
                (Some(CloseCode::TLS_HANDSHAKE), 1),
                (None, 2)
            ]
        );
    }
}
