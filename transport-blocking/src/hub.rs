#![forbid(unsafe_code)]
//! The registry of connected clients and their shared per-client state (a protocol
//! [`Session`] under a mutex).
//!
//! Locks: the registry lock is taken before a client's state lock, never the other way round.
//! Both are held only for queue pushes and bookkeeping, never across socket I/O.

use std::collections::HashMap;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pngcast_protocol::http::{self, RequestHead, ServerConfig};
use pngcast_protocol::io::send_now;
use pngcast_protocol::session::{CloseReason, Counters, Session, State};
use pngcast_protocol::sink::{SinkError, SinkStats, Target};
use pngcast_protocol::wire::WireFrame;

/// `now + d`, saturating far in the future instead of panicking on huge user-given durations.
pub(crate) fn after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// What a client's reader and writer share, under [`ClientHandle::state`].
pub(crate) struct ClientState {
    /// The protocol's session: queue, close state, timers, counters.
    pub session: Session,
    /// The reader saw EOF or a read error: the writer stops once it has nothing to write.
    pub peer_gone: bool,
    /// Past this instant (shutdown), what has not started is dropped so the Close goes next.
    pub flush_until: Option<Instant>,
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

    /// Starts closing with `reason` (the first reason wins) and wakes the writer.
    pub(crate) fn close(&self, reason: CloseReason, flush_until: Option<Instant>) {
        let mut st = self.lock();
        st.session.close(reason);
        if st.flush_until.is_none() {
            st.flush_until = flush_until;
        }
        drop(st);
        self.cond.notify_all();
    }

    /// Ends the connection at once: both directions shut, blocked reads and writes return.
    pub(crate) fn cut(&self) {
        let _ = self.sock.shutdown(Shutdown::Both);
    }
}

/// Why an upgraded connection could not be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    ShuttingDown,
    Full,
}

struct Registry {
    clients: HashMap<Arc<str>, Arc<ClientHandle>>,
    /// Every open connection's socket, so shutdown can cut them; `true` once upgraded.
    conns: HashMap<u64, (TcpStream, bool)>,
    /// Connections of `conns` still in their HTTP stage.
    heads: usize,
}

/// The client registry, counters and shutdown state shared by every thread of a server.
pub(crate) struct Hub {
    config: ServerConfig,
    reg: Mutex<Registry>,
    /// Signalled when a connection thread ends (shutdown waits on it).
    changed: Condvar,
    next_generation: AtomicU64,
    shut_down: AtomicBool,
    counters: Arc<Counters>,
}

impl Hub {
    pub(crate) fn new(config: ServerConfig) -> Hub {
        Hub {
            config,
            reg: Mutex::new(Registry {
                clients: HashMap::new(),
                conns: HashMap::new(),
                heads: 0,
            }),
            changed: Condvar::new(),
            next_generation: AtomicU64::new(1),
            shut_down: AtomicBool::new(false),
            counters: Arc::new(Counters::new()),
        }
    }

    fn reg(&self) -> MutexGuard<'_, Registry> {
        self.reg.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::Acquire)
    }

    /// Upgraded clients other than one a request for `head`'s clientId would replace (for
    /// the `max_clients` limit).
    pub(crate) fn clients_besides(&self, head: &RequestHead) -> usize {
        let reg = self.reg();
        http::clients_besides(head, reg.clients.len(), |id| reg.clients.contains_key(id))
    }

    /// Tracks a new connection; returns a token for [`Hub::untrack`]. `None` when the server
    /// is shutting down. Past `max_handshakes` connections in their HTTP stage, the oldest
    /// gets 408 and is cut (a slow-header flood cannot keep new clients out).
    pub(crate) fn track(&self, sock: &TcpStream) -> Option<u64> {
        let clone = sock.try_clone().ok()?;
        let token = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let mut reg = self.reg();
        if self.is_shut_down() {
            return None;
        }
        reg.conns.insert(token, (clone, false));
        reg.heads += 1;
        if reg.heads > self.config.max_handshakes {
            let oldest = reg
                .conns
                .iter()
                .filter(|(_, (_, upgraded))| !upgraded)
                .map(|(t, _)| *t)
                .min();
            if let Some((sock, _)) = oldest.and_then(|t| reg.conns.get(&t)) {
                let reply = http::refusal_response(408, "request head not received in time");
                send_now(sock, &reply);
                let _ = sock.shutdown(Shutdown::Both);
            }
        }
        Some(token)
    }

    pub(crate) fn untrack(&self, token: u64) {
        let mut reg = self.reg();
        if let Some((_, upgraded)) = reg.conns.remove(&token) {
            if !upgraded {
                reg.heads -= 1;
            }
        }
    }

    /// Registers an upgraded client: its session (with the 101 answer and the status message
    /// queued) starts. A live client with the same id is replaced: it is closed with 1000 and
    /// its cleanup will not remove the new one (generation check in [`Hub::remove`]). A
    /// replacement adds no client, so it is let in when the server is full.
    pub(crate) fn register(
        &self,
        token: u64,
        id: Arc<str>,
        sock: &TcpStream,
        head: Vec<u8>,
        leftover: Vec<u8>,
    ) -> Result<Arc<ClientHandle>, Refusal> {
        let sock = sock.try_clone().map_err(|_| Refusal::Full)?;
        let mut reg = self.reg();
        if self.is_shut_down() {
            return Err(Refusal::ShuttingDown);
        }
        // The router checked the limit; two upgrades racing past it are caught here, before
        // their 101.
        if !reg.clients.contains_key(&id) && reg.clients.len() >= self.config.max_clients {
            return Err(Refusal::Full);
        }
        let now = Instant::now();
        let session = Session::new(
            Arc::clone(&id),
            head,
            leftover,
            &self.config,
            Arc::clone(&self.counters),
            sock.peer_addr().ok(),
            now,
        );
        let handle = Arc::new(ClientHandle {
            id: Arc::clone(&id),
            generation: self.next_generation.fetch_add(1, Ordering::Relaxed),
            state: Mutex::new(ClientState {
                session,
                peer_gone: false,
                flush_until: None,
                writer_waiting: false,
            }),
            cond: Condvar::new(),
            sock,
        });
        if let Some(conn) = reg.conns.get_mut(&token) {
            if !conn.1 {
                conn.1 = true;
                reg.heads -= 1;
            }
        }
        let old = reg.clients.insert(id, Arc::clone(&handle));
        drop(reg);
        if let Some(old) = old {
            old.close(CloseReason::Replaced, None);
        }
        Ok(handle)
    }

    /// Removes `client` from the registry if it still holds this very connection (not a newer
    /// one with the same id).
    pub(crate) fn remove(&self, client: &ClientHandle) {
        let mut reg = self.reg();
        if reg
            .clients
            .get(&client.id)
            .is_some_and(|c| c.generation == client.generation)
        {
            reg.clients.remove(&client.id);
        }
    }

    pub(crate) fn count_refused(&self) {
        self.counters.count_refused();
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

    /// Pushes into one client's session and wakes its writer if it waits.
    fn push(&self, client: &ClientHandle, push: impl FnOnce(&mut Session)) {
        let mut st = client.lock();
        if !st.session.is_open() {
            return;
        }
        push(&mut st.session);
        let doomed = st.session.state() == State::Ended;
        let wake = st.writer_waiting || !st.session.is_open();
        drop(st);
        if doomed {
            // Dropped mid-frame under the memory budget: the writer's write fails at once.
            client.cut();
        }
        if wake {
            client.cond.notify_all();
        }
    }

    pub(crate) fn send_image(&self, target: &Target, frame: &WireFrame) -> Result<(), SinkError> {
        self.for_targets(target, |client| self.push(client, |s| s.push_image(frame)))
    }

    pub(crate) fn send_text(&self, target: &Target, text: Arc<str>) -> Result<(), SinkError> {
        self.for_targets(target, |client| {
            self.push(client, |s| s.push_text(Arc::clone(&text)))
        })
    }

    pub(crate) fn stats(&self) -> SinkStats {
        self.counters.snapshot()
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
            c.close(CloseReason::Shutdown, Some(until));
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
