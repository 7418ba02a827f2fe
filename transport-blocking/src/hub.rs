#![forbid(unsafe_code)]
//! The registry of connected clients, their shared per-client state, and the counters.
//!
//! Locks: the registry lock is taken before a client's state lock, never the other way round.
//! Both are held only for queue pushes and bookkeeping, never across socket I/O.

use std::collections::HashMap;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pngcast_protocol::http::ServerConfig;
use pngcast_protocol::queue::{ClientQueue, Outgoing, PushOutcome};
use pngcast_protocol::sink::{SinkError, SinkStats, Target};
use pngcast_protocol::wire::WireFrame;

/// `now + d`, saturating far in the future instead of panicking on huge user-given durations.
pub(crate) fn after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// Close codes this transport sends.
pub(crate) mod code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
    pub const UNSUPPORTED: u16 = 1003;
    pub const INVALID_DATA: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
}

/// A Close the writer must send.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CloseRequest {
    pub code: u16,
    pub reason: &'static str,
    /// `Some(t)`: write what is queued first, until `t` (shutdown). `None`: close now and drop
    /// the queue (policy close, bad input, replacement).
    pub drain_until: Option<Instant>,
}

/// What a client's reader and writer share, under [`ClientHandle::state`].
pub(crate) struct ClientState {
    pub queue: ClientQueue,
    /// The client declared `supports_preview_metadata`.
    pub metadata: bool,
    /// Complete control frames produced by tungstenite on the reader side (pong, close reply),
    /// written by the writer between two data frames.
    pub control: Vec<u8>,
    /// A Close to send (the first request wins).
    pub close: Option<CloseRequest>,
    /// The peer sent Close or the socket ended: the writer flushes `control` and stops.
    pub peer_gone: bool,
    /// The writer has stopped (after a Close, an error or a stall).
    pub writer_done: bool,
    /// The writer sent a Close frame (so a peer Close is only the acknowledgement).
    pub close_sent: bool,
    /// Last time anything arrived from the client (keepalive).
    pub last_inbound: Instant,
    /// The writer is waiting on the condvar: pushes wake it only then (a wake is a syscall).
    pub writer_waiting: bool,
}

/// One connected client.
pub(crate) struct ClientHandle {
    pub id: Arc<str>,
    /// Distinguishes this connection from a later one with the same clientId.
    pub generation: u64,
    pub state: Mutex<ClientState>,
    /// Signalled on every change of `state` the writer or the reader may wait for.
    pub cond: Condvar,
    /// A handle on the socket, to cut it from any thread.
    pub sock: TcpStream,
}

impl ClientHandle {
    pub(crate) fn lock(&self) -> MutexGuard<'_, ClientState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks the writer to send a Close (the first request wins) and wakes it.
    pub(crate) fn request_close(&self, req: CloseRequest) {
        let mut st = self.lock();
        if st.close.is_none() {
            st.close = Some(req);
        }
        drop(st);
        self.cond.notify_all();
    }

    /// Ends the connection at once: both directions shut, blocked reads and writes return.
    pub(crate) fn cut(&self) {
        let _ = self.sock.shutdown(Shutdown::Both);
    }
}

#[derive(Default)]
struct Counters {
    frames_queued: AtomicU64,
    frames_sent: AtomicU64,
    frames_dropped: AtomicU64,
    clients_closed: AtomicU64,
    bytes_sent: AtomicU64,
    texts_queued: AtomicU64,
    clients_accepted: AtomicU64,
    handshakes_refused: AtomicU64,
    closed_overflow: AtomicU64,
    closed_stall: AtomicU64,
    closed_bad_input: AtomicU64,
}

/// Why an upgraded connection could not be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    ShuttingDown,
    Full,
}

/// Why a client ended, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndReason {
    Normal,
    Overflow,
    Stall,
    BadInput,
}

struct Registry {
    clients: HashMap<Arc<str>, Arc<ClientHandle>>,
    /// Every open connection's socket, so shutdown can cut them; `true` once upgraded.
    conns: HashMap<u64, (TcpStream, bool)>,
}

/// The client registry, counters and shutdown state shared by every thread of a server.
pub(crate) struct Hub {
    config: ServerConfig,
    reg: Mutex<Registry>,
    /// Signalled when a connection thread ends (shutdown waits on it).
    changed: Condvar,
    next_generation: AtomicU64,
    shut_down: AtomicBool,
    stats: Counters,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl Hub {
    pub(crate) fn new(config: ServerConfig) -> Hub {
        Hub {
            config,
            reg: Mutex::new(Registry {
                clients: HashMap::new(),
                conns: HashMap::new(),
            }),
            changed: Condvar::new(),
            next_generation: AtomicU64::new(1),
            shut_down: AtomicBool::new(false),
            stats: Counters::default(),
        }
    }

    fn reg(&self) -> MutexGuard<'_, Registry> {
        self.reg.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::Acquire)
    }

    /// Number of upgraded clients (for the `max_clients` limit).
    pub(crate) fn client_count(&self) -> usize {
        self.reg().clients.len()
    }

    /// Tracks a new connection; returns a token for [`Hub::untrack`].
    /// `None` when the server is shutting down.
    pub(crate) fn track(&self, sock: &TcpStream) -> Option<u64> {
        let clone = sock.try_clone().ok()?;
        let token = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let mut reg = self.reg();
        if self.is_shut_down() {
            return None;
        }
        reg.conns.insert(token, (clone, false));
        Some(token)
    }

    pub(crate) fn untrack(&self, token: u64) {
        self.reg().conns.remove(&token);
    }

    /// Registers an upgraded client whose first queued message is the status message. A live
    /// client with the same id is replaced: it is closed with 1000 and its cleanup will not
    /// remove the new one (generation check in [`Hub::remove`]).
    pub(crate) fn register(
        &self,
        token: u64,
        id: Arc<str>,
        sock: &TcpStream,
        status: Arc<str>,
    ) -> Result<Arc<ClientHandle>, Refusal> {
        let sock = sock.try_clone().map_err(|_| Refusal::Full)?;
        let mut queue = ClientQueue::new(self.config.policy, self.config.queue_bytes);
        let _ = queue.push(Outgoing::Text(status));
        add(&self.stats.texts_queued, 1);
        let handle = Arc::new(ClientHandle {
            id: Arc::clone(&id),
            generation: self.next_generation.fetch_add(1, Ordering::Relaxed),
            state: Mutex::new(ClientState {
                queue,
                metadata: false,
                control: Vec::new(),
                close: None,
                peer_gone: false,
                writer_done: false,
                close_sent: false,
                last_inbound: Instant::now(),
                writer_waiting: false,
            }),
            cond: Condvar::new(),
            sock,
        });
        let mut reg = self.reg();
        if self.is_shut_down() {
            return Err(Refusal::ShuttingDown);
        }
        // The router checked the limit; two upgrades racing past it are caught here, before
        // their 101 (a replacement does not add a client).
        if !reg.clients.contains_key(&id) && reg.clients.len() >= self.config.max_clients {
            return Err(Refusal::Full);
        }
        if let Some(conn) = reg.conns.get_mut(&token) {
            conn.1 = true;
        }
        let old = reg.clients.insert(id, Arc::clone(&handle));
        drop(reg);
        if let Some(old) = old {
            old.request_close(CloseRequest {
                code: code::NORMAL,
                reason: "replaced by a new connection",
                drain_until: None,
            });
        }
        add(&self.stats.clients_accepted, 1);
        Ok(handle)
    }

    /// Removes `client` if the registry still holds this very connection (not a newer one
    /// with the same id), and counts its end.
    pub(crate) fn remove(&self, client: &ClientHandle, reason: EndReason) {
        let mut reg = self.reg();
        if reg
            .clients
            .get(&client.id)
            .is_some_and(|c| c.generation == client.generation)
        {
            reg.clients.remove(&client.id);
        }
        drop(reg);
        add(&self.stats.clients_closed, 1);
        match reason {
            EndReason::Normal => {}
            EndReason::Overflow => add(&self.stats.closed_overflow, 1),
            EndReason::Stall => add(&self.stats.closed_stall, 1),
            EndReason::BadInput => add(&self.stats.closed_bad_input, 1),
        }
    }

    pub(crate) fn count_refused(&self) {
        add(&self.stats.handshakes_refused, 1);
    }

    pub(crate) fn count_sent(&self, frames: u64, bytes: u64) {
        add(&self.stats.frames_sent, frames);
        add(&self.stats.bytes_sent, bytes);
    }

    pub(crate) fn count_text_queued(&self) {
        add(&self.stats.texts_queued, 1);
    }

    pub(crate) fn count_dropped(&self, frames: u64) {
        add(&self.stats.frames_dropped, frames);
    }

    /// Calls `f` for each client `target` names, under the registry lock (pushes are short).
    fn for_targets(
        &self,
        target: &Target,
        mut f: impl FnMut(&ClientHandle),
    ) -> Result<(), SinkError> {
        if self.is_shut_down() {
            return Err(SinkError::ShutDown);
        }
        let reg = self.reg();
        match target {
            Target::All => reg.clients.values().for_each(|c| f(c)),
            Target::Client(id) => f(reg
                .clients
                .get(id)
                .ok_or_else(|| SinkError::NoSuchClient(id.to_string()))?),
        }
        Ok(())
    }

    /// Pushes an item into one client's queue and applies the policy's outcome. `make` builds
    /// the item from the client's metadata flag (legacy or type-4 form).
    fn push(&self, client: &ClientHandle, make: impl FnOnce(bool) -> Outgoing) {
        let mut st = client.lock();
        let item = make(st.metadata);
        let image = item.is_image();
        if st.writer_done || st.close.is_some_and(|c| c.drain_until.is_none()) {
            // The connection is ending: nothing more is accepted (and, never queued, nothing
            // is counted: frames_queued = frames_sent + frames_dropped holds per client).
            return;
        }
        match st.queue.push(item) {
            PushOutcome::Queued => {}
            PushOutcome::DroppedOldest { frames } => add(&self.stats.frames_dropped, frames as u64),
            PushOutcome::Overflow => {
                if st.close.is_none() {
                    st.close = Some(CloseRequest {
                        code: code::POLICY,
                        reason: "queue overflow",
                        drain_until: None,
                    });
                }
                // The item was not queued; the writer closes with 1008 and counts the rest of
                // the queue as dropped.
                drop(st);
                client.cond.notify_all();
                return;
            }
        }
        if image {
            add(&self.stats.frames_queued, 1);
        } else {
            add(&self.stats.texts_queued, 1);
        }
        let wake = st.writer_waiting;
        drop(st);
        if wake {
            client.cond.notify_all();
        }
    }

    pub(crate) fn send_image(&self, target: &Target, frame: &WireFrame) -> Result<(), SinkError> {
        self.for_targets(target, |client| {
            self.push(client, |metadata| Outgoing::Image {
                frame: frame.clone(),
                metadata,
            })
        })
    }

    pub(crate) fn send_text(&self, target: &Target, text: Arc<str>) -> Result<(), SinkError> {
        self.for_targets(target, |client| {
            self.push(client, |_| Outgoing::Text(Arc::clone(&text)))
        })
    }

    pub(crate) fn stats(&self) -> SinkStats {
        let s = &self.stats;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = SinkStats::default();
        out.clients = self.client_count();
        out.frames_queued = get(&s.frames_queued);
        out.frames_sent = get(&s.frames_sent);
        out.frames_dropped = get(&s.frames_dropped);
        out.clients_closed = get(&s.clients_closed);
        out.bytes_sent = get(&s.bytes_sent);
        out.texts_queued = get(&s.texts_queued);
        out.clients_accepted = get(&s.clients_accepted);
        out.handshakes_refused = get(&s.handshakes_refused);
        out.closed_overflow = get(&s.closed_overflow);
        out.closed_stall = get(&s.closed_stall);
        out.closed_bad_input = get(&s.closed_bad_input);
        out
    }

    /// Starts shutdown: later sends fail, every client gets Close 1001 after its queue (until
    /// `until`), connections in the HTTP stage are cut.
    pub(crate) fn begin_shutdown(&self, until: Instant) {
        self.shut_down.store(true, Ordering::Release);
        let reg = self.reg();
        for (sock, upgraded) in reg.conns.values() {
            if !upgraded {
                let _ = sock.shutdown(Shutdown::Both);
            }
        }
        let clients: Vec<_> = reg.clients.values().cloned().collect();
        drop(reg);
        for c in clients {
            c.request_close(CloseRequest {
                code: code::GOING_AWAY,
                reason: "server shutting down",
                drain_until: Some(until),
            });
        }
    }

    /// Cuts every socket still open (past the shutdown deadline).
    pub(crate) fn cut_all(&self) {
        let reg = self.reg();
        for (sock, _) in reg.conns.values() {
            let _ = sock.shutdown(Shutdown::Both);
        }
    }

    /// Wakes [`Hub::wait_change`].
    pub(crate) fn notify_change(&self) {
        let _guard = self.reg();
        self.changed.notify_all();
    }

    /// Waits until a connection thread ends or `until` passes.
    pub(crate) fn wait_change(&self, until: Instant) {
        let reg = self.reg();
        let left = until.saturating_duration_since(Instant::now());
        let _ = self
            .changed
            .wait_timeout(reg, left.min(std::time::Duration::from_millis(50)));
    }
}
