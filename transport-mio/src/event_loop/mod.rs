//! An event loop: one thread, one `mio::Poll`, its share of the connections.
//!
//! Loop 0 owns the listener and deals each accepted connection to a loop (itself included; the
//! others get theirs as [`Command::Adopt`]): spread, then pack ([`pick_loop`], by each loop's
//! live connections, counted from the moment they are dealt). Every loop gets every caller command
//! in the same order. A clientId lives in one loop; a client connecting with an id already live
//! in another loop is announced there ([`Command::Evict`], with a generation so the newest wins).
//!
//! Tokens: [`LISTENER`] and [`WAKER`] are constants; a connection's token packs its slot index
//! and the slot's generation, so an event or a clientId entry left over from a closed connection
//! can never reach the connection that reuses its slot. Connections are registered READABLE, and
//! WRITABLE only while a write hit `WouldBlock` (mio is edge-triggered: we read and write until
//! `WouldBlock`, and re-registering reports current readiness).
//!
//! Each iteration: poll; accept until `WouldBlock`; handle each connection's events; swap the
//! command list out and fan commands out to the clients' queues, writing at once to clients that
//! are not blocked; every `tick` sweep the timers (handshake and linger deadlines here, each
//! session's keepalive, stall and message deadlines in [`Session::tick`]).
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use pngcast_protocol::http::ServerConfig;
use pngcast_protocol::io::NoSigPipe;
use pngcast_protocol::session::{CloseReason, Ending, Session, State, Tick};
use pngcast_protocol::sink::Target;

use crate::conn::{Conn, Phase};
use crate::shared::{Command, Shared};
use crate::ws::{Pump, Read_};

mod deal;
mod http_stage;
#[cfg(test)]
mod tests;

pub(crate) use deal::pick_loop;

/// The listening socket's token.
pub(crate) const LISTENER: Token = Token(usize::MAX);
/// The waker's token.
pub(crate) const WAKER: Token = Token(usize::MAX - 1);

/// Bits of a token that hold the slot's generation.
const GEN_BITS: u32 = 16;
const GEN_MASK: usize = (1 << GEN_BITS) - 1;
/// How long a closing connection may linger for the peer's EOF.
const LINGER: Duration = Duration::from_secs(2);
/// Pending bytes at which a client is written during a command batch rather than after it.
const WRITE_BATCH: usize = 256 * 1024;
/// Connections allowed beyond `max_clients` and `max_handshakes` (answers being written,
/// lingering closes).
const SPARE_CONNECTIONS: usize = 64;

/// A connection's identity: slot index plus generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    idx: usize,
    gen: usize,
}

impl Key {
    fn token(self) -> Token {
        Token((self.idx << GEN_BITS) | (self.gen & GEN_MASK))
    }
    fn from_token(t: Token) -> Key {
        Key {
            idx: t.0 >> GEN_BITS,
            gen: t.0 & GEN_MASK,
        }
    }
}

struct Slot {
    gen: usize,
    conn: Option<Conn>,
}

/// The state owned by the loop thread.
pub(crate) struct EventLoop {
    poll: Poll,
    listener: Option<TcpListener>,
    shared: Arc<Shared>,
    /// This loop's index in `shared.inboxes`.
    index: usize,
    /// Every loop's live connections, read afresh for each deal (loop 0 only; allocated once).
    deal_counts: Vec<usize>,
    config: ServerConfig,
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// Live WebSocket clients of this loop by clientId, with their generation.
    by_id: HashMap<Arc<str>, (Key, u64)>,
    /// Open connections of this loop in any phase.
    conns: usize,
    /// Connections that ran out of read budget and must be read again.
    again: Vec<Key>,
    /// This loop's connections in their HTTP stage, oldest first (stale keys are skipped).
    head_order: std::collections::VecDeque<Key>,
    /// The spare command list swapped with the shared one.
    spare: Vec<Command>,
    /// Keys of every live WebSocket client, reused for fan-out.
    targets: Vec<Key>,
    /// Clients with new output from the current command batch.
    dirty: Vec<Key>,
    shutdown_at: Option<Instant>,
    /// Accepting failed for lack of resources: retry at the next sweep.
    accept_retry: bool,
    tick: Duration,
    next_sweep: Instant,
}

impl EventLoop {
    /// Loop `index`; registers the listener if it gets it (loop 0). The waker is already
    /// registered under [`WAKER`].
    pub(crate) fn new(
        poll: Poll,
        index: usize,
        mut listener: Option<TcpListener>,
        shared: Arc<Shared>,
        config: ServerConfig,
    ) -> io::Result<EventLoop> {
        if let Some(listener) = &mut listener {
            poll.registry()
                .register(listener, LISTENER, Interest::READABLE)?;
        }
        let shortest = [
            config.handshake_timeout,
            config.stall_timeout,
            config.ping_interval,
            config.message_timeout,
        ]
        .into_iter()
        .filter(|d| !d.is_zero())
        .min()
        .unwrap_or(Duration::from_secs(1));
        let tick = (shortest / 4).clamp(Duration::from_millis(5), Duration::from_millis(250));
        let now = Instant::now();
        let deal_counts = Vec::with_capacity(if listener.is_some() {
            shared.inboxes.len()
        } else {
            0
        });
        Ok(EventLoop {
            poll,
            listener,
            shared,
            index,
            deal_counts,
            config,
            slots: Vec::new(),
            free: Vec::new(),
            by_id: HashMap::new(),
            conns: 0,
            again: Vec::new(),
            head_order: Default::default(),
            spare: Vec::new(),
            targets: Vec::new(),
            dirty: Vec::new(),
            shutdown_at: None,
            accept_retry: false,
            tick,
            next_sweep: now + tick,
        })
    }

    /// Runs until shutdown completes (or the poll itself fails), then drops every connection.
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            let mut timeout = self.next_sweep.saturating_duration_since(now);
            if let Some(at) = self.shutdown_at {
                timeout = timeout.min(at.saturating_duration_since(now));
            }
            if !self.again.is_empty() {
                timeout = Duration::ZERO;
            }
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                break;
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    WAKER => {}
                    token => {
                        let readable =
                            event.is_readable() || event.is_read_closed() || event.is_error();
                        let writable =
                            event.is_writable() || event.is_write_closed() || event.is_error();
                        self.on_event(Key::from_token(token), readable, writable);
                    }
                }
            }
            for key in std::mem::take(&mut self.again) {
                self.on_event(key, true, false);
            }
            self.run_commands();
            let now = Instant::now();
            if now >= self.next_sweep {
                self.sweep(now);
                self.next_sweep = now + self.tick;
            }
            if let Some(at) = self.shutdown_at {
                if self.conns == 0 || now >= at {
                    break;
                }
            }
        }
        self.shared.closed.store(true, Ordering::Release);
        for slot in &mut self.slots {
            if let Some(mut conn) = slot.conn.take() {
                self.shared.conn_closed(self.index);
                if let Phase::Ws(ws) = &mut conn.phase {
                    ws.session.end(Ending::Gone);
                }
            }
        }
        for (id, (_, gen)) in self.by_id.drain() {
            self.shared.release(&id, gen);
        }
        self.shared.inboxes[self.index]
            .clients
            .store(0, Ordering::Release);
    }

    fn accept_all(&mut self) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((sock, peer)) => {
                    let open = self.shared.conns.load(Ordering::Relaxed);
                    let cap = self
                        .config
                        .max_clients
                        .saturating_add(self.config.max_handshakes)
                        .saturating_add(SPARE_CONNECTIONS);
                    if open >= cap {
                        // Beyond every limit: not even a 503, the socket just closes.
                        self.shared.stats.count_refused();
                        continue;
                    }
                    self.shared.conns.fetch_add(1, Ordering::Relaxed);
                    // Frames are written whole with vectored writes: no need to wait for ACKs.
                    let _ = sock.set_nodelay(true);
                    pngcast_protocol::io::tune_send_buffer(
                        &sock,
                        &peer,
                        self.config.loopback_send_buffer,
                    );
                    let to = self.deal();
                    if to == self.index {
                        self.insert(sock);
                    } else {
                        self.shared.inboxes[to].push(Command::Adopt(sock));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                    ) => {}
                // Out of descriptors (EMFILE/ENFILE) or memory: the backlog stays unread and no
                // new readiness edge may come, so the sweep retries.
                Err(_) => {
                    self.accept_retry = true;
                    return;
                }
            }
        }
    }

    /// Picks the loop for a connection just accepted and counts it there at once, so that
    /// connections dealt and not yet adopted weigh on the next choice.
    fn deal(&mut self) -> usize {
        let inboxes = &self.shared.inboxes;
        self.deal_counts.clear();
        self.deal_counts
            .extend(inboxes.iter().map(|i| i.conns.load(Ordering::Relaxed)));
        let to = pick_loop(&self.deal_counts, self.shared.pack);
        inboxes[to].conns.fetch_add(1, Ordering::Relaxed);
        to
    }

    fn insert(&mut self, mut sock: mio::net::TcpStream) {
        let idx = self.free.pop().unwrap_or_else(|| {
            self.slots.push(Slot { gen: 0, conn: None });
            self.slots.len() - 1
        });
        let key = Key {
            idx,
            gen: self.slots[idx].gen,
        };
        if self
            .poll
            .registry()
            .register(&mut sock, key.token(), Interest::READABLE)
            .is_err()
        {
            self.free.push(idx);
            self.shared.conn_closed(self.index);
            return;
        }
        let deadline = Instant::now() + self.config.handshake_timeout;
        self.slots[idx].conn = Some(Conn {
            sock,
            phase: Phase::Head(Vec::new()),
            deadline,
            writable_registered: false,
            in_head: true,
        });
        self.conns += 1;
        // Heads end in about arrival order and within the handshake timeout: dropping the
        // finished ones from the front keeps the list near the number of open heads.
        while let Some(&front) = self.head_order.front() {
            let live_head = self.slots[front.idx].gen & GEN_MASK == front.gen
                && matches!(
                    self.slots[front.idx].conn.as_ref().map(|c| &c.phase),
                    Some(Phase::Head(_))
                );
            if live_head {
                break;
            }
            self.head_order.pop_front();
        }
        self.head_order.push_back(key);
        let heads = self.shared.heads.fetch_add(1, Ordering::AcqRel) + 1;
        if heads > self.config.max_handshakes {
            self.evict_oldest_head(key);
        }
    }

    /// Takes a connection out of its slot (stale keys give `None`).
    fn take(&mut self, key: Key) -> Option<Conn> {
        let slot = self.slots.get_mut(key.idx)?;
        if slot.gen & GEN_MASK != key.gen {
            return None;
        }
        slot.conn.take()
    }

    /// Puts a connection back after work on it: frees it when done, otherwise fixes its interest.
    fn settle(&mut self, key: Key, mut conn: Conn) {
        if conn.in_head && !matches!(conn.phase, Phase::Head(_) | Phase::Body(_)) {
            conn.in_head = false;
            self.shared.heads.fetch_sub(1, Ordering::AcqRel);
        }
        if let Phase::Done = conn.phase {
            let _ = self.poll.registry().deregister(&mut conn.sock);
            self.conns -= 1;
            self.shared.conn_closed(self.index);
            let slot = &mut self.slots[key.idx];
            slot.gen = slot.gen.wrapping_add(1);
            self.free.push(key.idx);
            return;
        }
        let want = conn.wants_writable();
        if want != conn.writable_registered {
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if self
                .poll
                .registry()
                .reregister(&mut conn.sock, key.token(), interest)
                .is_err()
            {
                self.end_ws(key, &mut conn, Phase::Done, Ending::Gone);
                conn.phase = Phase::Done;
                return self.settle(key, conn);
            }
            conn.writable_registered = want;
        }
        self.slots[key.idx].conn = Some(conn);
    }

    fn on_event(&mut self, key: Key, readable: bool, writable: bool) {
        let Some(mut conn) = self.take(key) else {
            return;
        };
        let now = Instant::now();
        // Bytes that followed the request head (a client may pipeline its first frames) sit in
        // tungstenite's buffer with no readiness edge to come: a fresh client is read at once.
        let mut readable = readable;
        if let Phase::Head(_) = conn.phase {
            if readable {
                self.on_head(key, &mut conn, now);
            }
            match conn.phase {
                Phase::Reply(_) => self.write_reply(&mut conn, now),
                Phase::Ws(_) => {
                    // The 101 (and the status) go out before anything is read, so a client
                    // that half-closed right after its request still gets its answer before
                    // its EOF ends the connection (the blocking transport behaves the same).
                    self.pump(key, &mut conn, now);
                    readable = true;
                }
                _ => {}
            }
        }
        if readable && matches!(conn.phase, Phase::Body(_)) {
            self.on_body(&mut conn);
            if matches!(conn.phase, Phase::Reply(_)) {
                self.write_reply(&mut conn, now);
            }
            readable = false;
        }
        match &mut conn.phase {
            Phase::Head(_) | Phase::Body(_) => {}
            Phase::Reply(_) => {
                if writable {
                    self.write_reply(&mut conn, now);
                }
                if readable {
                    // Ignore anything else the peer sends; EOF is fine before the reply is out.
                    let _ = crate::ws::discard_input(&mut conn.sock);
                }
            }
            Phase::Ws(ws) => {
                if readable {
                    match ws.on_readable(&mut NoSigPipe(&conn.sock), now) {
                        Read_::Drained => {}
                        Read_::More => self.again.push(key),
                        Read_::Dead => self.end_ws(key, &mut conn, Phase::Done, Ending::Gone),
                    }
                }
                if matches!(conn.phase, Phase::Ws(_)) {
                    let ws_blocked = matches!(&conn.phase, Phase::Ws(ws) if ws.blocked);
                    if writable || !ws_blocked {
                        self.pump(key, &mut conn, now);
                    }
                }
            }
            Phase::Linger => {
                if readable && conn.read_linger() == Read_::More {
                    self.again.push(key);
                }
            }
            Phase::Done => {}
        }
        self.settle(key, conn);
    }

    /// Adds `n` (may be negative) to this loop's client count: callers skip a loop without
    /// clients.
    fn loop_clients(&self, n: isize) {
        let clients = &self.shared.inboxes[self.index].clients;
        if n >= 0 {
            clients.fetch_add(n as usize, Ordering::Release);
        } else {
            clients.fetch_sub(n.unsigned_abs(), Ordering::Release);
        }
    }

    /// Closes a client whose clientId a newer client took (it is no longer in `by_id`).
    fn replace(&mut self, old: Key) {
        self.with(old, |lp, old_conn, now| {
            if let Phase::Ws(ws) = &mut old_conn.phase {
                ws.session.close(CloseReason::Replaced);
            }
            lp.pump(old, old_conn, now);
        });
    }

    /// Another loop took `id` with generation `gen`: an older client of that id here goes.
    fn evict(&mut self, id: &Arc<str>, gen: u64) {
        if let Some(&(old, old_gen)) = self.by_id.get(id) {
            if old_gen < gen {
                self.by_id.remove(id);
                self.loop_clients(-1);
                self.replace(old);
            }
        }
    }

    fn linger_deadline(&self, now: Instant) -> Instant {
        let end = now + LINGER;
        self.shutdown_at.map_or(end, |at| end.min(at))
    }

    /// Writes a WebSocket client's pending output and acts on the outcome.
    fn pump(&mut self, key: Key, conn: &mut Conn, now: Instant) {
        let Phase::Ws(ws) = &mut conn.phase else {
            return;
        };
        match ws.pump(&mut NoSigPipe(&conn.sock), now) {
            Pump::Idle | Pump::Blocked => {}
            Pump::Finished => {
                let deadline = self.linger_deadline(now);
                self.end_ws(key, conn, Phase::Linger, Ending::Closed);
                if matches!(conn.phase, Phase::Linger) {
                    conn.linger(deadline);
                }
            }
            Pump::Dead => self.end_ws(key, conn, Phase::Done, Ending::Gone),
        }
    }

    /// A WebSocket client stops being one: its session's end is counted, its clientId freed.
    fn end_ws(&mut self, key: Key, conn: &mut Conn, next: Phase, ending: Ending) {
        let Phase::Ws(mut ws) = std::mem::replace(&mut conn.phase, next) else {
            return;
        };
        let id = ws.session.client_id();
        if let Some(&(k, gen)) = self.by_id.get(id) {
            if k == key {
                self.by_id.remove(id);
                self.loop_clients(-1);
                self.shared.release(id, gen);
            }
        }
        ws.session.end(ending);
    }

    /// Runs `f` on the live connection `key` (if any), then settles it.
    fn with(&mut self, key: Key, f: impl FnOnce(&mut Self, &mut Conn, Instant)) {
        if let Some(mut conn) = self.take(key) {
            f(self, &mut conn, Instant::now());
            self.settle(key, conn);
        }
    }

    fn run_commands(&mut self) {
        {
            let mut commands = self.shared.inboxes[self.index].lock();
            if commands.is_empty() {
                return;
            }
            std::mem::swap(&mut *commands, &mut self.spare);
        }
        let mut commands = std::mem::take(&mut self.spare);
        for command in commands.drain(..) {
            match command {
                Command::Image(target, frame) => self.fan_out(&target, |s| s.push_image(&frame)),
                Command::Text(target, text) => self.fan_out(&target, |s| s.push_text(text.clone())),
                Command::Shutdown(at) => self.begin_shutdown(at),
                Command::Adopt(sock) => {
                    if self.shutdown_at.is_some() {
                        // Closing down: the connection closes unserved.
                        self.shared.conn_closed(self.index);
                    } else {
                        self.insert(sock);
                    }
                }
                Command::Evict(id, gen) => self.evict(&id, gen),
            }
        }
        self.spare = commands;
        self.flush_dirty();
    }

    /// Queues an item for each targeted client and writes at once to clients not blocked.
    fn fan_out(&mut self, target: &Target, push: impl Fn(&mut Session)) {
        let mut targets = std::mem::take(&mut self.targets);
        targets.clear();
        match target {
            Target::All => targets.extend(self.by_id.values().map(|e| e.0)),
            Target::Client(id) => targets.extend(self.by_id.get(id).map(|e| e.0)),
        }
        for &key in &targets {
            self.with(key, |lp, conn, now| {
                let Phase::Ws(ws) = &mut conn.phase else {
                    return;
                };
                if !ws.session.is_open() {
                    return;
                }
                push(&mut ws.session);
                if ws.session.state() == State::Ended {
                    // Dropped mid-frame under the memory budget.
                    return lp.end_ws(key, conn, Phase::Done, Ending::Gone);
                }
                if ws.blocked {
                    return;
                }
                // Small frames are batched into one vectored write after the command batch;
                // a client with plenty pending is written at once to keep its queue short.
                if ws.session.pending_bytes() >= WRITE_BATCH {
                    lp.pump(key, conn, now);
                } else if !ws.dirty {
                    ws.dirty = true;
                    lp.dirty.push(key);
                }
            });
        }
        self.targets = targets;
    }

    /// Writes to every client that got something in this command batch.
    fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &key in &dirty {
            self.with(key, |lp, conn, now| {
                if let Phase::Ws(ws) = &mut conn.phase {
                    ws.dirty = false;
                    if !ws.blocked {
                        lp.pump(key, conn, now);
                    }
                }
            });
        }
        dirty.clear();
        self.dirty = dirty;
    }

    fn begin_shutdown(&mut self, at: Instant) {
        if self.shutdown_at.is_some() {
            return;
        }
        self.shutdown_at = Some(at);
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        for idx in 0..self.slots.len() {
            let key = Key {
                idx,
                gen: self.slots[idx].gen & GEN_MASK,
            };
            self.with(key, |lp, conn, now| match &mut conn.phase {
                Phase::Head(_) | Phase::Body(_) => conn.phase = Phase::Done,
                Phase::Ws(ws) => {
                    ws.session.close(CloseReason::Shutdown);
                    if !ws.blocked {
                        lp.pump(key, conn, now);
                    }
                }
                Phase::Reply(_) | Phase::Linger | Phase::Done => {}
            });
        }
    }

    /// Checks every connection's timers: handshake and linger deadlines here, the sessions'
    /// own timers (keepalive, stall, message deadline) in [`Session::tick`].
    fn sweep(&mut self, now: Instant) {
        if std::mem::take(&mut self.accept_retry) {
            self.accept_all();
        }
        for idx in 0..self.slots.len() {
            let key = Key {
                idx,
                gen: self.slots[idx].gen & GEN_MASK,
            };
            self.with(key, |lp, conn, _| match &mut conn.phase {
                Phase::Head(_) | Phase::Body(_) if now >= conn.deadline => {
                    lp.time_out_head(conn, now)
                }
                Phase::Head(_) | Phase::Body(_) => {}
                Phase::Reply(_) | Phase::Linger => {
                    if now >= conn.deadline {
                        conn.phase = Phase::Done;
                    }
                }
                Phase::Ws(ws) => match ws.session.tick(now) {
                    Tick::Stalled => lp.end_ws(key, conn, Phase::Done, Ending::Stalled),
                    Tick::Continue => {
                        if !ws.blocked {
                            lp.pump(key, conn, now);
                        }
                    }
                },
                Phase::Done => {}
            });
        }
    }
}
