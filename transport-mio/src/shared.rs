//! State shared between the callers' threads and the event-loop threads.
//!
//! Callers never touch sockets: `send_image`/`send_text` push a [`Command`] into every loop's
//! [`Inbox`] (one mutex each) and wake the loops through their `mio::Waker` (one `write(2)` on an
//! eventfd, only when the inbox was empty, so a burst costs one wake per loop). A loop swaps its
//! whole list out for a spare one, so in steady state neither side allocates. The counters are the protocol's
//! [`Counters`] (atomics).
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use pngcast_protocol::session::Counters;
use pngcast_protocol::sink::Target;
use pngcast_protocol::wire::WireFrame;

/// Work handed to an event loop.
pub(crate) enum Command {
    /// Queue an image for the target's clients.
    Image(Target, WireFrame),
    /// Queue a text (JSON) message for the target's clients.
    Text(Target, Arc<str>),
    /// Close every client with 1001, flush until the deadline, then stop the loop.
    Shutdown(Instant),
    /// A connection accepted by the first loop for this one to serve.
    Adopt(mio::net::TcpStream),
    /// A client with this clientId connected to another loop with this generation: a client of
    /// that id with an older generation here is replaced (closed), as within one loop.
    Evict(Arc<str>, u64),
}

impl Command {
    /// A copy for another loop (frames and texts are shared, not copied); `None` for the
    /// commands meant for one loop.
    fn dup(&self) -> Option<Command> {
        match self {
            Command::Image(t, f) => Some(Command::Image(t.clone(), f.clone())),
            Command::Text(t, x) => Some(Command::Text(t.clone(), x.clone())),
            Command::Shutdown(at) => Some(Command::Shutdown(*at)),
            Command::Adopt(_) | Command::Evict(..) => None,
        }
    }
}

/// One loop's command list and the waker of its poll.
pub(crate) struct Inbox {
    pub(crate) commands: Mutex<Vec<Command>>,
    pub(crate) waker: mio::Waker,
    /// The loop's live WebSocket clients (its clientIds): images and texts skip a loop that has
    /// none, so a loop without clients is not woken for every frame.
    pub(crate) clients: AtomicUsize,
    /// The loop's live connections in any phase (HTTP requests, handshakes, clients, closing
    /// ones), counting those dealt to it and not yet adopted: the dealer's measure of load
    /// ([`crate::event_loop::pick_loop`]). Added to by the dealer when it deals a connection,
    /// taken from by the loop when the connection closes, whatever the reason.
    pub(crate) conns: AtomicUsize,
}

impl Inbox {
    /// Locks the command list; a poisoned lock (a panic elsewhere) still yields the list.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Vec<Command>> {
        self.commands.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a command and wakes the loop if it may be asleep.
    pub(crate) fn push(&self, command: Command) {
        if self.enqueue(command) {
            self.wake();
        }
    }

    /// Queues a command without waking the loop; true when the loop may be asleep (the list
    /// was empty), i.e. the caller must [`Inbox::wake`] it.
    pub(crate) fn enqueue(&self, command: Command) -> bool {
        let mut commands = self.lock();
        let was_empty = commands.is_empty();
        commands.push(command);
        was_empty
    }

    /// Wakes the loop.
    pub(crate) fn wake(&self) {
        // A failed wake means the loop is gone; its exit path sets `closed`.
        let _ = self.waker.wake();
    }
}

/// Everything both sides hold through an `Arc`.
pub(crate) struct Shared {
    /// One per event loop; loop 0 also accepts.
    pub(crate) inboxes: Vec<Inbox>,
    /// How many of the first loops take connections once every loop has one
    /// ([`crate::event_loop::pick_loop`]); at least 1, at most the number of loops.
    pub(crate) pack: usize,
    /// Held while a command is pushed to every inbox, so that every loop sees the callers'
    /// commands in the same order; guards the `closed` transition too. Loops never take it.
    pub(crate) order: Mutex<()>,
    /// The counters every session adds to.
    pub(crate) stats: Arc<Counters>,
    /// Set once shutdown was requested or a loop ended: sends are refused from then on.
    pub(crate) closed: AtomicBool,
    pub(crate) threads: Mutex<Vec<JoinHandle<()>>>,
    /// Open connections in all loops (the accept limit).
    pub(crate) conns: AtomicUsize,
    /// The live clientIds of all loops with the generation of the client holding each: the
    /// `max_clients` limit, checked and reserved in one step (no two upgrades race past it).
    pub(crate) ids: Mutex<HashMap<Arc<str>, u64>>,
    /// Connections in their HTTP stage in all loops (the `max_handshakes` limit).
    pub(crate) heads: AtomicUsize,
    /// Generation of the next WebSocket client: of two clients with one clientId, the newer
    /// (higher) one stays.
    pub(crate) next_gen: AtomicU64,
}

impl Shared {
    fn ids(&self) -> MutexGuard<'_, HashMap<Arc<str>, u64>> {
        self.ids.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Live clients other than one that a request for `head`'s clientId would replace.
    pub(crate) fn clients_besides(&self, head: &pngcast_protocol::http::RequestHead) -> usize {
        let ids = self.ids();
        pngcast_protocol::http::clients_besides(head, ids.len(), |id| ids.contains_key(id))
    }

    /// Reserves `id` for the client of generation `gen`: true when it replaces a live client of
    /// that id or fits under `max`; false when the server is full.
    pub(crate) fn admit(&self, id: &Arc<str>, gen: u64, max: usize) -> bool {
        let mut ids = self.ids();
        if !ids.contains_key(id) && ids.len() >= max {
            return false;
        }
        ids.insert(id.clone(), gen);
        true
    }

    /// Frees `id` if the client of generation `gen` still holds it.
    pub(crate) fn release(&self, id: &Arc<str>, gen: u64) {
        let mut ids = self.ids();
        if ids.get(id) == Some(&gen) {
            ids.remove(id);
        }
    }

    /// A connection of loop `index` closed (or was dropped unserved): it leaves the server's
    /// count (the accept limit) and the loop's (the dealer's).
    pub(crate) fn conn_closed(&self, index: usize) {
        self.conns.fetch_sub(1, Ordering::Relaxed);
        self.inboxes[index].conns.fetch_sub(1, Ordering::Relaxed);
    }

    /// Takes the ordering lock; a poisoned lock still yields it.
    pub(crate) fn lock_order(&self) -> MutexGuard<'_, ()> {
        self.order.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a command for every loop (a copy each: frames are shared). Returns false when
    /// closed.
    ///
    /// The commands go in under the ordering lock (every loop sees callers' commands in one
    /// order); the wakes (an eventfd write each) are made after it is released, so a caller
    /// never holds up the next one with system calls.
    pub(crate) fn push(&self, command: Command) -> bool {
        const _: () = assert!(crate::MAX_LOOPS <= u32::BITS as usize);
        let mut wake = 0u32;
        {
            let _order = self.lock_order();
            if self.closed.load(Ordering::Acquire) {
                return false;
            }
            // Images and texts only reach clients: a loop without any needs neither the
            // command nor the wake (a client that upgrades there later gets the next one, as a
            // client that upgrades just after a frame would anyway).
            let for_clients = matches!(command, Command::Image(..) | Command::Text(..));
            let wanted = |inbox: &Inbox| !for_clients || inbox.clients.load(Ordering::Acquire) > 0;
            let (last, rest) = self.inboxes.split_last().expect("at least one loop");
            for (i, inbox) in rest.iter().enumerate().filter(|(_, i)| wanted(i)) {
                if let Some(copy) = command.dup() {
                    wake |= u32::from(inbox.enqueue(copy)) << i;
                }
            }
            if wanted(last) {
                wake |= u32::from(last.enqueue(command)) << rest.len();
            }
        }
        for (i, inbox) in self.inboxes.iter().enumerate() {
            if wake & (1 << i) != 0 {
                inbox.wake();
            }
        }
        true
    }
}
