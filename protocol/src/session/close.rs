//! The one table of why a session closes: each reason's WebSocket close code, the reason text
//! the client sees, and the counter it lands in.

/// Why the server closes a WebSocket session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// Server shutdown: 1001, sent after what is queued (until the shutdown deadline).
    Shutdown,
    /// A newer connection took this clientId: 1000.
    Replaced,
    /// The client's queue overflowed (`Reliable`, JSON piling up, or pongs it never reads): 1008.
    Overflow,
    /// The client sends more than its inbound budget (messages or bytes per second): 1008.
    Flood,
    /// A message started and not completed within the deadline: 1008.
    Incomplete,
    /// The peer answered nothing, not even our pings, for three ping intervals: 1001.
    Keepalive,
    /// An inbound message beyond the size limit: 1009.
    TooBig,
    /// A binary or otherwise unsupported message: 1003.
    Unsupported,
    /// Text that is not UTF-8: 1007.
    BadUtf8,
    /// A WebSocket protocol violation: 1002.
    Protocol,
}

impl CloseReason {
    /// The close code sent.
    pub fn code(self) -> u16 {
        match self {
            CloseReason::Replaced => 1000,
            CloseReason::Shutdown | CloseReason::Keepalive => 1001,
            CloseReason::Protocol => 1002,
            CloseReason::Unsupported => 1003,
            CloseReason::BadUtf8 => 1007,
            CloseReason::Overflow | CloseReason::Flood | CloseReason::Incomplete => 1008,
            CloseReason::TooBig => 1009,
        }
    }

    /// The reason text sent with the code (ASCII, well under the 123-byte limit).
    pub fn text(self) -> &'static str {
        match self {
            CloseReason::Shutdown => "server shutting down",
            CloseReason::Replaced => "replaced by a newer connection",
            CloseReason::Overflow => "client queue overflow",
            CloseReason::Flood => "inbound message flood",
            CloseReason::Incomplete => "message not completed in time",
            CloseReason::Keepalive => "keepalive timeout",
            CloseReason::TooBig => "message too big",
            CloseReason::Unsupported => "unsupported message",
            CloseReason::BadUtf8 => "invalid UTF-8",
            CloseReason::Protocol => "protocol error",
        }
    }

    /// A short name for logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            CloseReason::Shutdown => "shutdown",
            CloseReason::Replaced => "replaced",
            CloseReason::Overflow => "overflow",
            CloseReason::Flood => "flood",
            CloseReason::Incomplete => "incomplete",
            CloseReason::Keepalive => "keepalive",
            CloseReason::TooBig => "too_big",
            CloseReason::Unsupported => "unsupported",
            CloseReason::BadUtf8 => "bad_utf8",
            CloseReason::Protocol => "protocol",
        }
    }

    /// True for closes caused by what the peer sent (a malformed, refused or unfinished
    /// message, or too many of them).
    pub fn is_bad_input(self) -> bool {
        matches!(
            self,
            CloseReason::TooBig
                | CloseReason::Flood
                | CloseReason::Unsupported
                | CloseReason::BadUtf8
                | CloseReason::Protocol
                | CloseReason::Incomplete
        )
    }

    /// Closes that drop what is queued and stop reading at once (all but shutdown, which
    /// flushes first).
    pub(crate) fn drops_queue(self) -> bool {
        self != CloseReason::Shutdown
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.text(), self.code())
    }
}

/// How a session ended, as the transport saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The close handshake is done, or the peer closed its side.
    Closed,
    /// Pending output made no progress for the stall timeout: dropped without a close frame.
    Stalled,
    /// The socket failed (reset, broken pipe) or the server dropped it at its deadline.
    Gone,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_a_valid_close_frame() {
        use CloseReason::*;
        for r in [
            Shutdown,
            Replaced,
            Overflow,
            Flood,
            Incomplete,
            Keepalive,
            TooBig,
            Unsupported,
            BadUtf8,
            Protocol,
        ] {
            assert!((1000..=1011).contains(&r.code()) && r.code() != 1004 && r.code() != 1005);
            assert!(r.text().is_ascii() && r.text().len() <= 123);
            assert!(!r.name().contains(' '));
        }
    }
}
