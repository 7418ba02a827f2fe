//! State shared between the callers' threads and the event-loop thread.
//!
//! Callers never touch sockets: `send_image`/`send_text` push a [`Command`] under a mutex and
//! wake the loop through the `mio::Waker` (one `write(2)` on an eventfd, only when the command list
//! was empty, so a burst costs one wake). The loop swaps the whole list out for a spare one, so in
//! steady state neither side allocates. Stats are atomics written by the loop only.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use pngcast_core::sink::{SinkStats, Target};
use pngcast_core::wire::WireFrame;

/// Work handed to the event loop.
pub(crate) enum Command {
    /// Queue an image for the target's clients.
    Image(Target, WireFrame),
    /// Queue a text (JSON) message for the target's clients.
    Text(Target, Arc<str>),
    /// Close every client with 1001, flush until the deadline, then stop the loop.
    Shutdown(Instant),
}

/// Counters behind `FrameSink::stats`.
#[derive(Default)]
pub(crate) struct Stats {
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
}

impl Stats {
    /// Adds `n` to a counter (relaxed: these are statistics, not synchronisation).
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// A snapshot of all counters.
    pub(crate) fn snapshot(&self) -> SinkStats {
        let get = |c: &AtomicU64| c.load(Ordering::Acquire);
        let mut stats = SinkStats::default();
        stats.clients = get(&self.clients) as usize;
        stats.frames_queued = get(&self.frames_queued);
        stats.frames_sent = get(&self.frames_sent);
        stats.frames_dropped = get(&self.frames_dropped);
        stats.clients_closed = get(&self.clients_closed);
        stats.bytes_sent = get(&self.bytes_sent);
        stats.texts_queued = get(&self.texts_queued);
        stats.clients_accepted = get(&self.clients_accepted);
        stats.handshakes_refused = get(&self.handshakes_refused);
        stats.closed_overflow = get(&self.closed_overflow);
        stats.closed_stall = get(&self.closed_stall);
        stats.closed_bad_input = get(&self.closed_bad_input);
        stats
    }
}

/// Everything both sides hold through an `Arc`.
pub(crate) struct Shared {
    pub(crate) commands: Mutex<Vec<Command>>,
    pub(crate) waker: mio::Waker,
    pub(crate) stats: Stats,
    /// Set once shutdown was requested or the loop ended: sends are refused from then on.
    pub(crate) closed: AtomicBool,
    pub(crate) thread: Mutex<Option<JoinHandle<()>>>,
}

impl Shared {
    /// Locks the command list; a poisoned lock (a panic elsewhere) still yields the list.
    pub(crate) fn lock_commands(&self) -> MutexGuard<'_, Vec<Command>> {
        self.commands.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a command and wakes the loop if it may be asleep. Returns false when closed.
    pub(crate) fn push(&self, command: Command) -> bool {
        let was_empty = {
            let mut commands = self.lock_commands();
            if self.closed.load(Ordering::Acquire) {
                return false;
            }
            let was_empty = commands.is_empty();
            commands.push(command);
            was_empty
        };
        if was_empty {
            // A failed wake means the loop is gone; its exit path sets `closed`.
            let _ = self.waker.wake();
        }
        true
    }
}
