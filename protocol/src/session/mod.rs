//! One WebSocket client's session, without I/O: the state machine both transports drive.
//!
//! ```text
//! open ──close(reason) / peer Close / bad input──> closing ──close frame written──> closed
//!   │                                                 │
//!   └────────── stall, socket error, EOF ─────────────┴──────────────────────────> ended
//! ```
//!
//! A transport creates a [`Session`] when it answers an upgrade (the HTTP stage is
//! [`crate::http`]), then feeds it:
//! - inbound bytes with [`Session::receive`] (tungstenite parses them; pongs and close replies
//!   it produces become control frames of the client's queue, so they go out between two data
//!   frames); EOF with [`Session::receive_eof`];
//! - frames and texts with [`Session::push_image`] / [`Session::push_text`] (shared `Arc`s,
//!   never copied per client), and closes with [`Session::close`];
//! - the clock with [`Session::tick`] (keepalive pings, stall, silence and partial-message
//!   deadlines);
//!
//! and writes what it asks for, one of two ways:
//! - zero-copy from the queue: [`Session::io_slices`] then [`Session::wrote`] (an event loop
//!   that owns the session);
//! - by lease: [`Session::lease`] takes whole frames out under the caller's lock, the caller
//!   writes them without it and reports with [`Session::lease_done`] (a writer thread whose
//!   queue is shared with the callers' threads).
//!
//! [`Session::state`] says what the transport should do next: write, wait, shut its write side
//! and linger ([`State::Finished`]), or drop the socket ([`State::Ended`]). [`Session::end`]
//! counts the end once, in the server's [`Counters`].
//!
//! Cost: one tungstenite context (a 4 KiB read buffer), the client's queue, a few small buffers
//! for control frames that are reused; steady state allocates nothing.
#![forbid(unsafe_code)]

mod budget;
mod close;
mod counters;
#[cfg(test)]
mod tests;

use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};
use tungstenite::{Error as WsError, Message};

pub use close::{CloseReason, Ending};
pub use counters::Counters;

use crate::http::ServerConfig;
use crate::queue::{ClientQueue, Lease, Outgoing, PushOutcome};
use crate::wire::{self, WireFrame};
use budget::Budget;
use counters::add;

/// Bytes of tungstenite output held back while closing (pongs to a flood give way).
const HELD_MAX: usize = 1024;
/// An empty ping frame, unmasked as a server's frames are.
const PING: [u8; 2] = [0x89, 0x00];

/// What the transport should do with the session's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Bytes are waiting to be written.
    Write,
    /// Nothing to write: wait for input, a push or a timer.
    Idle,
    /// The close frame is out: shut the write side, read and drop input until EOF (bounded),
    /// then [`Session::end`] with [`Ending::Closed`].
    Finished,
    /// The session is over: drop the socket.
    Ended,
}

/// What a timer check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// Nothing to do, or a ping was queued (write it if the socket is not blocked).
    Continue,
    /// Pending output made no progress for the stall timeout: end with [`Ending::Stalled`].
    Stalled,
}

/// Where the close handshake stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    Open,
    /// Send our close frame once the queue is empty.
    Pending(CloseReason),
    /// The peer sent Close: tungstenite's reply goes out once the queue is empty.
    ByPeer,
    /// The closing frame is queued (or written): finished once the queue is empty.
    Queued,
}

/// The socket as tungstenite sees it: reads come from the bytes handed to
/// [`Session::receive`], writes land in the session's control buffer.
struct Feed<'a> {
    input: &'a [u8],
    out: &'a mut Vec<u8>,
}

impl Read for Feed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.input.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.input.len());
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input = &self.input[n..];
        Ok(n)
    }
}

impl Write for Feed<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Timer settings of a session, from [`ServerConfig`].
#[derive(Debug, Clone, Copy)]
struct Timers {
    stall: Duration,
    ping: Duration,
    message: Duration,
}

/// One WebSocket client. See the module docs.
pub struct Session {
    ctx: WebSocketContext,
    client_id: Arc<str>,
    counters: Arc<Counters>,
    metadata: bool,
    seen_text: bool,
    /// The `101 Switching Protocols` answer, written before anything else.
    head: Vec<u8>,
    head_pos: usize,
    queue: ClientQueue,
    /// tungstenite's output of the current call (pongs, close frames).
    tap: Vec<u8>,
    /// A close reply held back until the queue is empty.
    held: Vec<u8>,
    closing: Closing,
    /// Input is no longer parsed (after a close decision, a peer Close or bad input).
    read_stopped: bool,
    /// Why we close, once decided.
    why: Option<CloseReason>,
    ended: bool,
    /// Dropped mid-frame under memory pressure: the transport drops the socket.
    doomed: bool,
    memory_budget: usize,
    budget: Budget,
    timers: Timers,
    /// The client's address, for the log lines.
    peer: Option<SocketAddr>,
    /// Since when output has been pending without progress.
    stalled_since: Option<Instant>,
    /// When the peer last sent a complete message or control frame (pongs included).
    last_inbound: Instant,
    /// Since when input has arrived without completing a message.
    partial_since: Option<Instant>,
    next_ping: Instant,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("client_id", &self.client_id)
            .field("metadata", &self.metadata)
            .field("closing", &self.closing)
            .field("why", &self.why)
            .field("pending_bytes", &self.pending_bytes())
            .finish_non_exhaustive()
    }
}

/// `at + d`, saturating far in the future instead of panicking on huge durations.
fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .unwrap_or_else(|| at + Duration::from_secs(100 * 365 * 24 * 3600))
}

impl Session {
    /// A session right after a successful upgrade: `head` is the 101 answer, `leftover` the
    /// bytes the client sent after its request head, `peer` its address (for the log lines).
    /// Counts the client, logs it at info level and queues the status message first.
    pub fn new(
        client_id: Arc<str>,
        head: Vec<u8>,
        leftover: Vec<u8>,
        config: &ServerConfig,
        counters: Arc<Counters>,
        peer: Option<SocketAddr>,
        now: Instant,
    ) -> Session {
        log::info!(
            "client {client_id} connected from {}",
            peer.map_or_else(|| "?".to_owned(), |p| p.to_string())
        );
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0)
            .max_write_buffer_size(64 * 1024)
            .max_message_size(Some(config.max_message_bytes))
            .max_frame_size(Some(config.max_message_bytes));
        let ctx = WebSocketContext::new(Role::Server, Some(ws_config));
        add(&counters.clients_accepted, 1);
        counters
            .clients
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let queue = ClientQueue::new(config.policy, config.queue_bytes)
            .with_ledger(Arc::clone(&counters.ledger));
        let mut s = Session {
            ctx,
            client_id,
            counters,
            metadata: false,
            seen_text: false,
            head,
            head_pos: 0,
            queue,
            memory_budget: config.memory_budget,
            tap: Vec::new(),
            held: Vec::new(),
            closing: Closing::Open,
            read_stopped: false,
            why: None,
            ended: false,
            doomed: false,
            budget: Budget::new(
                config.inbound_messages,
                config.inbound_bytes,
                config.max_message_bytes,
                now,
            ),
            timers: Timers {
                stall: config.stall_timeout,
                ping: config.ping_interval,
                message: config.message_timeout,
            },
            peer,
            stalled_since: None,
            last_inbound: now,
            partial_since: None,
            next_ping: later(now, config.ping_interval),
        };
        let status: Arc<str> = wire::status_message(&s.client_id).into();
        s.push_text(status);
        if !leftover.is_empty() {
            s.receive(&leftover, now);
        }
        s
    }

    /// The client's id.
    pub fn client_id(&self) -> &Arc<str> {
        &self.client_id
    }

    /// True when the client declared `supports_preview_metadata`.
    pub fn metadata(&self) -> bool {
        self.metadata
    }

    /// True while the client takes new messages.
    pub fn is_open(&self) -> bool {
        self.closing == Closing::Open && !self.ended
    }

    /// Why the server closes this client, once decided.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.why
    }

    /// True while input should be parsed; after a close decision the transport may read and
    /// drop input instead (no parsing cost for a client on its way out).
    pub fn wants_input(&self) -> bool {
        !self.read_stopped && !self.ended
    }

    /// Bytes waiting to be written.
    pub fn pending_bytes(&self) -> usize {
        (self.head.len() - self.head_pos) + self.queue.pending_bytes()
    }

    /// Queued image frames (the one being written included).
    pub fn queued_images(&self) -> usize {
        self.queue.queued_images()
    }

    /// What the transport should do next.
    pub fn state(&self) -> State {
        if self.ended || self.doomed {
            State::Ended
        } else if self.pending_bytes() > 0 {
            State::Write
        } else if self.closing == Closing::Queued {
            State::Finished
        } else {
            State::Idle
        }
    }

    /// Queues an image in the form this client asked for. Past the server's memory budget, a
    /// client holding older frames gives them up (see [`CloseReason::Memory`]).
    pub fn push_image(&mut self, frame: &WireFrame) {
        let metadata = self.metadata;
        self.push(Outgoing::Image {
            frame: frame.clone(),
            metadata,
        });
        if self.is_open() && self.counters.ledger.held() > self.memory_budget {
            self.relieve(frame);
        }
    }

    /// The server holds more frame bytes than its budget: this client lets go of every frame
    /// older than `newest`. Latest-wins drops its waiting ones; a client still holding an older
    /// frame (one part-way out, or any under `Reliable`) is closed, or dropped at once when it
    /// is part-way through one (a close frame cannot interrupt it).
    fn relieve(&mut self, newest: &WireFrame) {
        if self.queue.policy() == crate::queue::Policy::LatestWins {
            let dropped = self.queue.drop_unstarted_except(newest);
            add(&self.counters.frames_dropped, dropped as u64);
        }
        if !self.queue.holds_older_than(newest) {
            return;
        }
        if self.queue.front_started() {
            self.why = Some(CloseReason::Memory);
            self.counters.closing(CloseReason::Memory);
            self.closing = Closing::Queued;
            self.read_stopped = true;
            self.doomed = true;
        } else {
            self.close(CloseReason::Memory);
        }
    }

    /// Queues a text message.
    pub fn push_text(&mut self, text: Arc<str>) {
        self.push(Outgoing::Text(text));
    }

    fn push(&mut self, item: Outgoing) {
        if !self.is_open() {
            return;
        }
        let image = item.is_image();
        match self.queue.push(item) {
            PushOutcome::Queued => {}
            PushOutcome::DroppedOldest { frames } => {
                add(&self.counters.frames_dropped, frames as u64)
            }
            PushOutcome::Overflow => return self.close(CloseReason::Overflow),
        }
        let c = &self.counters;
        add(
            if image {
                &c.frames_queued
            } else {
                &c.texts_queued
            },
            1,
        );
    }

    /// Starts closing with `reason` (the first reason wins). The close frame follows the
    /// frame in flight and, for a shutdown, everything queued; any other reason drops what has
    /// not started and stops parsing input.
    pub fn close(&mut self, reason: CloseReason) {
        if !self.is_open() {
            return;
        }
        self.why = Some(reason);
        self.counters.closing(reason);
        self.closing = Closing::Pending(reason);
        if reason.drops_queue() {
            self.read_stopped = true;
            let dropped = self.queue.clear_unstarted();
            add(&self.counters.frames_dropped, dropped as u64);
        }
        self.settle();
    }

    /// Past the shutdown deadline: drop what has not started, so the close frame goes next.
    pub fn abandon_queue(&mut self) {
        let dropped = self.queue.clear_unstarted();
        add(&self.counters.frames_dropped, dropped as u64);
        self.settle();
    }

    /// Handles bytes read from the socket.
    pub fn receive(&mut self, data: &[u8], now: Instant) {
        if data.is_empty() || self.ended {
            return;
        }
        if !self.budget.bytes(data.len(), now) {
            return self.fail(CloseReason::Flood);
        }
        if self.read_stopped {
            return;
        }
        // tungstenite writes pongs and close replies into `tap` (taken out of `self` while the
        // loop also updates the session).
        let mut tap = std::mem::take(&mut self.tap);
        let mut feed = Feed {
            input: data,
            out: &mut tap,
        };
        let mut completed = false;
        let mut fail = None;
        loop {
            let read = self.ctx.read(&mut feed);
            if read.is_ok() {
                completed = true;
                self.last_inbound = now;
                if !self.budget.message(now) {
                    fail = Some(CloseReason::Flood);
                }
            }
            let bad = match read {
                Ok(Message::Text(text)) => {
                    if !self.seen_text {
                        self.seen_text = true;
                        self.on_first_text(&text);
                    }
                    None
                }
                Ok(Message::Binary(_)) => Some(CloseReason::Unsupported),
                Ok(Message::Close(_)) => {
                    self.read_stopped = true;
                    if matches!(self.closing, Closing::Open | Closing::Pending(_)) {
                        self.closing = Closing::ByPeer;
                        let dropped = self.queue.clear_unstarted();
                        add(&self.counters.frames_dropped, dropped as u64);
                    }
                    None
                }
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => None,
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(WsError::Capacity(_)) => Some(CloseReason::TooBig),
                Err(WsError::Utf8(_)) => Some(CloseReason::BadUtf8),
                Err(WsError::Protocol(_)) => Some(CloseReason::Protocol),
                // Closed or already closed: nothing more to parse.
                Err(_) => {
                    self.read_stopped = true;
                    None
                }
            };
            fail = fail.or(bad);
            if self.read_stopped || fail.is_some() {
                break;
            }
        }
        self.partial_since = if completed {
            None
        } else {
            self.partial_since.or(Some(now))
        };
        self.tap = tap;
        if let Some(reason) = fail {
            self.fail(reason);
        }
        // Pull out a pending pong or close reply, then hand it to the queue (or hold it).
        let mut feed = Feed {
            input: &[],
            out: &mut self.tap,
        };
        let _ = self.ctx.flush(&mut feed);
        self.take_tap();
        self.settle();
    }

    /// The peer closed its side (EOF) or the socket failed on read.
    pub fn receive_eof(&mut self) {
        self.read_stopped = true;
    }

    /// The client's first text: feature flags decide the image form and get a reply.
    fn on_first_text(&mut self, text: &str) {
        if let Ok(wire::TextMessage::FeatureFlags { data }) = wire::parse_text(text) {
            self.metadata = data
                .get("supports_preview_metadata")
                .and_then(|b| b.as_bool())
                == Some(true);
            self.push_text(wire::feature_flags_reply().into());
        }
    }

    /// Moves tungstenite's output into the queue (pongs) or holds it (a close reply).
    fn take_tap(&mut self) {
        if self.tap.is_empty() {
            return;
        }
        if self.closing == Closing::Open {
            if self.queue.push_control(&self.tap) == PushOutcome::Overflow {
                // Pings faster than the client reads our pongs.
                self.tap.clear();
                return self.close(CloseReason::Overflow);
            }
        } else {
            // Anything after a close decision waits for the queue to drain: a control frame
            // must not land between an announcement and its image. Pongs to a ping flood are
            // not worth keeping while closing: older held bytes give way (the close reply is
            // always the newest output, and the last).
            if self.held.len() + self.tap.len() > HELD_MAX {
                self.held.clear();
            }
            self.held.extend_from_slice(&self.tap);
        }
        self.tap.clear();
    }

    /// Bad input: stop parsing (tungstenite's frame state is no longer trustworthy) and close.
    fn fail(&mut self, reason: CloseReason) {
        self.read_stopped = true;
        self.close(reason);
    }

    /// Once the queue is empty while closing, queues the closing frame.
    fn settle(&mut self) {
        if !self.queue.is_empty() || self.ended {
            return;
        }
        match self.closing {
            Closing::Open | Closing::Queued => {}
            Closing::ByPeer => {
                self.closing = Closing::Queued;
                let held = std::mem::take(&mut self.held);
                // The reply is at most 127 bytes: it always fits.
                let _ = self.queue.push_control(&held);
            }
            Closing::Pending(reason) => {
                self.closing = Closing::Queued;
                self.held.clear();
                let mut feed = Feed {
                    input: &[],
                    out: &mut self.tap,
                };
                let frame = CloseFrame {
                    code: CloseCode::from(reason.code()),
                    reason: reason.text().into(),
                };
                // Into a buffer: this cannot fail for I/O reasons.
                let _ = self.ctx.close(&mut feed, Some(frame));
                let _ = self.ctx.flush(&mut feed);
                let _ = self.queue.push_control(&self.tap);
                self.tap.clear();
            }
        }
    }

    /// The next bytes to write, in order, without copying: the 101 answer, then the queue.
    /// Returns how many slices of `out` it filled.
    pub fn io_slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        if out.is_empty() {
            return 0;
        }
        let mut n = 0;
        if self.head_pos < self.head.len() {
            out[0] = IoSlice::new(&self.head[self.head_pos..]);
            n = 1;
        }
        n + self.queue.io_slices(&mut out[n..])
    }

    /// Records a write of what [`Session::io_slices`] gave: `n` bytes taken by the socket, and
    /// whether it then refused more (`WouldBlock`), which starts the stall clock.
    pub fn wrote(&mut self, n: usize, blocked: bool, now: Instant) {
        let head = n.min(self.head.len() - self.head_pos);
        self.head_pos += head;
        if self.head_pos == self.head.len() && !self.head.is_empty() {
            self.head = Vec::new();
            self.head_pos = 0;
        }
        let rest = n - head;
        if rest > 0 {
            let done = self.queue.advance(rest);
            add(&self.counters.frames_sent, done.images as u64);
        }
        add(&self.counters.bytes_sent, n as u64);
        self.progress(n > 0, blocked, now);
        self.settle();
    }

    fn progress(&mut self, progress: bool, blocked: bool, now: Instant) {
        if blocked {
            if progress || self.stalled_since.is_none() {
                self.stalled_since = Some(now);
            }
        } else {
            self.stalled_since = None;
        }
    }

    /// Takes the next bytes to write into `lease` (up to `max_items` whole items, stopping past
    /// `max_bytes`), as if written: see [`ClientQueue::lease`]. The caller writes them without
    /// holding its lock and reports with [`Session::lease_done`].
    pub fn lease(&mut self, lease: &mut Lease, max_items: usize, max_bytes: usize) {
        if self.head_pos < self.head.len() {
            lease.push_prefix(&self.head[self.head_pos..]);
            self.head = Vec::new();
            self.head_pos = 0;
        }
        self.queue.lease(lease, max_items, max_bytes);
    }

    /// Records how a lease went: `written` bytes of it reached the socket, all of it unless
    /// the write failed. Images not wholly written count as dropped. Clears the lease.
    pub fn lease_done(&mut self, lease: &mut Lease, written: usize, now: Instant) {
        let (sent, lost) = lease.images_split(written);
        add(&self.counters.frames_sent, sent as u64);
        add(&self.counters.frames_dropped, lost as u64);
        add(&self.counters.bytes_sent, written as u64);
        self.progress(written > 0, written < lease.len(), now);
        lease.clear();
        self.settle();
    }

    /// Checks the timers at `now`: queues a keepalive ping when one is due, closes a peer
    /// silent for three ping intervals (1001) or one that left a message incomplete past the
    /// message timeout (1008), and reports a stall.
    pub fn tick(&mut self, now: Instant) -> Tick {
        if self.ended {
            return Tick::Continue;
        }
        if self
            .stalled_since
            .is_some_and(|t| now.saturating_duration_since(t) >= self.timers.stall)
        {
            return Tick::Stalled;
        }
        if self.is_open() {
            let silence = self.timers.ping.saturating_mul(3);
            if now.saturating_duration_since(self.last_inbound) >= silence {
                self.close(CloseReason::Keepalive);
            } else if self
                .partial_since
                .is_some_and(|t| now.saturating_duration_since(t) >= self.timers.message)
            {
                self.fail(CloseReason::Incomplete);
            } else if now >= self.next_ping {
                self.next_ping = later(now, self.timers.ping);
                if self.queue.push_control(&PING) == PushOutcome::Overflow {
                    self.close(CloseReason::Overflow);
                }
            }
        }
        Tick::Continue
    }

    /// The next instant [`Session::tick`] has something to check.
    pub fn next_deadline(&self) -> Instant {
        let mut at = self.next_ping;
        if let Some(t) = self.stalled_since {
            at = at.min(later(t, self.timers.stall));
        }
        if let Some(t) = self.partial_since {
            at = at.min(later(t, self.timers.message));
        }
        at.min(later(self.last_inbound, self.timers.ping.saturating_mul(3)))
    }

    /// Ends the session and counts its end once: the gauge, the closes by reason, the queued
    /// images that will never be sent. Later calls do nothing.
    pub fn end(&mut self, ending: Ending) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.read_stopped = true;
        let dropped = self.queue.queued_images() as u64;
        self.queue.clear_unstarted();
        self.counters.ended(self.why, ending, dropped);
        let why = match (self.why, ending) {
            (Some(r), _) => r.text(),
            (None, Ending::Closed) => "closed by the client",
            (None, Ending::Stalled) => "stalled (no write progress within the stall timeout)",
            (None, Ending::Gone) => "connection lost",
        };
        let peer = self.peer.map_or_else(|| "?".to_owned(), |p| p.to_string());
        log::info!("client {} ({peer}) left: {why}", self.client_id);
    }

    /// True once [`Session::end`] ran.
    pub fn is_ended(&self) -> bool {
        self.ended
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.end(Ending::Gone);
    }
}
