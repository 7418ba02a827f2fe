//! The counters every session of a server adds to, behind `FrameSink::stats`.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::session::{CloseReason, Ending};
use crate::sink::SinkStats;

/// Server-wide counters (atomics: sessions on several threads add to them). Relaxed adds, an
/// acquire snapshot: statistics, not synchronisation, except that a client's end moves the
/// `clients` gauge before its reason counter, so a reader that sees the reason sees the client
/// gone.
#[derive(Debug, Default)]
pub struct Counters {
    pub(crate) clients: AtomicU64,
    pub(crate) frames_queued: AtomicU64,
    pub(crate) frames_sent: AtomicU64,
    pub(crate) frames_dropped: AtomicU64,
    pub(crate) clients_closed: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) texts_queued: AtomicU64,
    pub(crate) clients_accepted: AtomicU64,
    pub(crate) handshakes_refused: AtomicU64,
    pub(crate) closed_overflow: AtomicU64,
    pub(crate) closed_stall: AtomicU64,
    pub(crate) closed_bad_input: AtomicU64,
    pub(crate) closed_flood: AtomicU64,
}

pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    /// New counters at zero.
    pub fn new() -> Counters {
        Counters::default()
    }

    /// Counts a connection refused at the HTTP stage.
    pub fn count_refused(&self) {
        add(&self.handshakes_refused, 1);
    }

    /// A snapshot of every counter.
    pub fn snapshot(&self) -> SinkStats {
        let get = |c: &AtomicU64| c.load(Ordering::Acquire);
        SinkStats {
            clients: get(&self.clients) as usize,
            frames_queued: get(&self.frames_queued),
            frames_sent: get(&self.frames_sent),
            frames_dropped: get(&self.frames_dropped),
            clients_closed: get(&self.clients_closed),
            bytes_sent: get(&self.bytes_sent),
            texts_queued: get(&self.texts_queued),
            clients_accepted: get(&self.clients_accepted),
            handshakes_refused: get(&self.handshakes_refused),
            closed_overflow: get(&self.closed_overflow),
            closed_stall: get(&self.closed_stall),
            closed_bad_input: get(&self.closed_bad_input),
            closed_flood: get(&self.closed_flood),
        }
    }

    /// Counts a close decision whose reason is counted at once: a client closed for overflow
    /// or a flood may take until its stall timeout to go, and an operator (or a caller waiting
    /// on the counter) sees the decision now. Every other reason is counted at the end.
    pub(crate) fn closing(&self, why: CloseReason) {
        match why {
            CloseReason::Overflow => add(&self.closed_overflow, 1),
            CloseReason::Flood => add(&self.closed_flood, 1),
            _ => {}
        }
    }

    /// Counts a session's end: the gauge first, then the totals and the reason.
    pub(crate) fn ended(&self, why: Option<CloseReason>, ending: Ending, dropped: u64) {
        self.clients.fetch_sub(1, Ordering::Release);
        add(&self.frames_dropped, dropped);
        add(&self.clients_closed, 1);
        let counter = match why {
            // Counted when decided (see `closing`).
            Some(CloseReason::Overflow) => None,
            // A peer that answers nothing is counted with the stalled ones.
            Some(CloseReason::Keepalive) => Some(&self.closed_stall),
            Some(r) if r.is_bad_input() => Some(&self.closed_bad_input),
            Some(_) => None,
            None if ending == Ending::Stalled => Some(&self.closed_stall),
            None => None,
        };
        if let Some(c) = counter {
            c.fetch_add(1, Ordering::Release);
        }
    }
}
