#![forbid(unsafe_code)]
//! The HTTP/1.1 front end shared by both transports, without I/O: the server configuration, a
//! resumable request-head reader, routing (protocol.md sections 3 and 6) and response bytes.
//!
//! A transport reads bytes into a buffer, calls [`RequestHead::parse_with_limit`] until it returns
//! a head (or an error: answer [`HttpError::response`] and close), then [`route`]s it:
//! [`Route::Viewer`] and [`Route::Features`] are answered with [`viewer_response`] /
//! [`features_response`] and closed; [`Route::Refuse`] with [`refusal_response`];
//! [`Route::Upgrade`] with [`switching_protocols`], after which the socket speaks WebSocket
//! (tungstenite's `WebSocketContext::new(Role::Server, ..)` for inbound frames, no extensions).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;

use crate::error::{Error, Result};
use crate::ingest::{
    BodyKind, IngestHandle, IngestHandler, IngestRoute, DEFAULT_MAX_INGEST_BYTES, INGEST_PATH,
    MAX_EVENT_LEN,
};
use crate::metrics::Metrics;
use crate::npy::Layout;
use crate::queue::Policy;
use crate::sink::SinkStats;
use crate::wire::features_json;

/// The viewer page served at `GET /`: self-contained HTML + JS, connects to `/ws`.
pub const VIEWER_HTML: &str = include_str!("viewer.html");

/// Default request-head limit (8 KiB).
pub const DEFAULT_MAX_HANDSHAKE_BYTES: usize = 8 * 1024;

/// Longest clientId accepted from a query string.
pub const MAX_CLIENT_ID_LEN: usize = 128;

/// Server settings shared by both transports. `#[non_exhaustive]`: start from
/// `ServerConfig::default()` and chain the setters; call [`ServerConfig::validate`] once (the
/// transports' `bind` does).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Listen address. Default `127.0.0.1:8188` (ComfyUI's port, loopback only).
    pub addr: SocketAddr,
    /// What to do with a client that falls behind. Default [`Policy::LatestWins`].
    pub policy: Policy,
    /// Per-client queue budget in bytes (frames are shared, so this bounds how far a client may
    /// fall behind, not memory per client). Default 64 MiB.
    pub queue_bytes: usize,
    /// Most WebSocket clients at once; one more is refused with 503. Default 256.
    pub max_clients: usize,
    /// Time a connection has to send a complete request head (in all, not per byte); past it
    /// the answer is 408. Default 5 s.
    pub handshake_timeout: Duration,
    /// Connections still sending their request head at once; one more evicts the oldest (it
    /// gets 408), so a slow-header flood cannot keep new clients out. Default 128.
    pub max_handshakes: usize,
    /// Largest request head accepted; past it the answer is 431. Default 8 KiB.
    pub max_handshake_bytes: usize,
    /// Largest inbound WebSocket message (and frame); past it the client is closed with 1009.
    /// Default 1 MiB.
    pub max_message_bytes: usize,
    /// Writes that make no progress for this long close the client. Default 10 s.
    pub stall_timeout: Duration,
    /// Interval between keepalive pings to an idle client. Default 20 s.
    pub ping_interval: Duration,
    /// Origins (`scheme://host[:port]`) allowed besides the one matching `Host`. Default empty:
    /// a browser's `Origin` must match the `Host` header. Requests without `Origin` (non-browser
    /// clients) are allowed.
    pub allowed_origins: Vec<String>,
    /// Host names accepted in the `Host` header besides loopback names and addresses and the
    /// bound address (without a token only; see [`route`]). Default empty.
    pub allowed_hosts: Vec<String>,
    /// Shared secret required on upgrades (`?token=` or `Authorization: Bearer`). Default none.
    pub token: Option<String>,
    /// Allow binding beyond loopback without a token. Default false.
    pub insecure: bool,
    /// Send the legacy text announcement before each type-1 image. Default true.
    pub announce: bool,
    /// Socket write timeout of the blocking transport (its stall detector). Default 10 s.
    pub write_timeout: Duration,
    /// Inbound messages (and control frames) a client may send per second, in bursts of two
    /// seconds' worth; past it the client is closed with 1008. Default 100.
    pub inbound_messages: u32,
    /// Inbound bytes a client may send per second, in bursts of two seconds' worth (at least
    /// two messages of `max_message_bytes`); past it the client is closed with 1008.
    /// Default 1 MiB.
    pub inbound_bytes: usize,
    /// Time a client has to complete a message it started; past it the client is closed with
    /// 1008. Default 10 s.
    pub message_timeout: Duration,
    /// Bytes of distinct frames the clients' queues may hold together. Past it, a client that
    /// holds frames older than the newest is closed with 1008 (latest-wins first drops its
    /// waiting frames but the newest); one part-way through an old frame is dropped. Default
    /// 256 MiB.
    pub memory_budget: usize,
    /// Largest ingest body (`POST /api/send`); a larger `Content-Length` is answered 413 before
    /// any byte of the body is read. Default 64 MiB.
    pub max_ingest_bytes: usize,
    /// Takes validated ingest jobs ([`crate::ingest`]). Default none: `/api/send` answers 404.
    pub ingest: Option<IngestHandle>,
    /// `SO_SNDBUF` of connections from a loopback address (`None`: the kernel's autotuned
    /// buffer). On loopback there is no network delay to cover: a buffer of a few hundred KiB
    /// keeps the client reading while the server still writes a frame, where the autotuned
    /// one (up to 4 MiB) lets the server copy whole frames ahead of the reader out of cache.
    /// Measured on 2 cores, 512 KiB against autotuning: 1 MP fan-out +22-47% at 1-100
    /// clients, 512^2 +14-99%; 1 MP latency p50 0.61 -> 0.53 ms. Remote clients keep
    /// autotuning, which a fixed buffer would cap at one buffer per round trip. Default
    /// [`DEFAULT_LOOPBACK_SEND_BUFFER`].
    pub loopback_send_buffer: Option<usize>,
    /// Metrics served at `GET /metrics` together with the sink's counters; share the `Arc`
    /// with the server's senders ([`crate::sender::Sender::metrics`]) so that encode times
    /// show. Default: a fresh, empty set.
    pub metrics: Arc<Metrics>,
}

/// The default [`ServerConfig::loopback_send_buffer`]: 512 KiB (Linux doubles it for its
/// bookkeeping). 128 KiB and 256 KiB measured alike within the noise; 512 KiB leaves the most
/// room for a client that reads in bursts.
pub const DEFAULT_LOOPBACK_SEND_BUFFER: usize = 512 << 10;

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8188)),
            policy: Policy::LatestWins,
            queue_bytes: 64 << 20,
            max_clients: 256,
            handshake_timeout: Duration::from_secs(5),
            max_handshakes: 128,
            max_handshake_bytes: DEFAULT_MAX_HANDSHAKE_BYTES,
            max_message_bytes: 1 << 20,
            stall_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(20),
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            token: None,
            insecure: false,
            announce: true,
            write_timeout: Duration::from_secs(10),
            inbound_messages: 100,
            inbound_bytes: 1 << 20,
            message_timeout: Duration::from_secs(10),
            memory_budget: 256 << 20,
            max_ingest_bytes: DEFAULT_MAX_INGEST_BYTES,
            ingest: None,
            loopback_send_buffer: Some(DEFAULT_LOOPBACK_SEND_BUFFER),
            metrics: Arc::new(Metrics::new()),
        }
    }
}

macro_rules! setter {
    ($(#[$doc:meta] $name:ident: $ty:ty),* $(,)?) => {
        $(
            #[$doc]
            pub fn $name(mut self, value: $ty) -> Self {
                self.$name = value;
                self
            }
        )*
    };
}

impl ServerConfig {
    setter! {
        /// Sets the listen address.
        addr: SocketAddr,
        /// Sets the policy.
        policy: Policy,
        /// Sets the per-client queue budget in bytes.
        queue_bytes: usize,
        /// Sets the maximum number of clients.
        max_clients: usize,
        /// Sets the handshake timeout.
        handshake_timeout: Duration,
        /// Sets the number of request heads read at once.
        max_handshakes: usize,
        /// Sets the request-head size limit.
        max_handshake_bytes: usize,
        /// Sets the inbound message size limit.
        max_message_bytes: usize,
        /// Sets the stall timeout.
        stall_timeout: Duration,
        /// Sets the keepalive ping interval.
        ping_interval: Duration,
        /// Sets the extra allowed origins.
        allowed_origins: Vec<String>,
        /// Sets the extra allowed `Host` names.
        allowed_hosts: Vec<String>,
        /// Sets or clears the token.
        token: Option<String>,
        /// Allows a non-loopback bind without token.
        insecure: bool,
        /// Switches legacy announcements on or off.
        announce: bool,
        /// Sets the blocking transport's write timeout.
        write_timeout: Duration,
        /// Sets the inbound message budget per second.
        inbound_messages: u32,
        /// Sets the inbound byte budget per second.
        inbound_bytes: usize,
        /// Sets the deadline for completing a started message.
        message_timeout: Duration,
        /// Sets the memory budget of the clients' queues.
        memory_budget: usize,
        /// Sets the largest ingest body.
        max_ingest_bytes: usize,
        /// Sets or clears the ingest handler.
        ingest: Option<IngestHandle>,
        /// Sets the send buffer of loopback connections (`None`: the kernel's).
        loopback_send_buffer: Option<usize>,
        /// Sets the shared metrics.
        metrics: Arc<Metrics>,
    }

    /// Sets the ingest handler (see [`crate::ingest`]).
    pub fn ingest_handler(self, handler: impl IngestHandler + 'static) -> Self {
        self.ingest(Some(IngestHandle::new(handler)))
    }

    /// Checks the settings: non-zero limits and timeouts, a non-empty token of visible ASCII,
    /// and no bind beyond loopback without a token unless `insecure`.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::InvalidConfig(m.to_owned()));
        if self.queue_bytes == 0 {
            return bad("queue_bytes must be > 0");
        }
        if self.max_clients == 0 {
            return bad("max_clients must be > 0");
        }
        if self.max_handshakes == 0 {
            return bad("max_handshakes must be > 0");
        }
        if self.max_handshake_bytes < 256 {
            return bad("max_handshake_bytes must be at least 256");
        }
        if self.inbound_messages == 0 || self.inbound_bytes == 0 {
            return bad("inbound_messages and inbound_bytes must be > 0");
        }
        if self.max_message_bytes == 0 {
            return bad("max_message_bytes must be > 0");
        }
        if self.max_ingest_bytes == 0 {
            return bad("max_ingest_bytes must be > 0");
        }
        if self.loopback_send_buffer == Some(0) {
            return bad("loopback_send_buffer must be > 0 (None keeps the kernel's)");
        }
        for (name, d) in [
            ("handshake_timeout", self.handshake_timeout),
            ("stall_timeout", self.stall_timeout),
            ("ping_interval", self.ping_interval),
            ("write_timeout", self.write_timeout),
            ("message_timeout", self.message_timeout),
        ] {
            if d.is_zero() {
                return Err(Error::InvalidConfig(format!("{name} must be > 0")));
            }
        }
        if let Some(t) = &self.token {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()) {
                return bad("token must be non-empty visible ASCII");
            }
        }
        if !self.addr.ip().is_loopback() && self.token.is_none() && !self.insecure {
            return Err(Error::InvalidConfig(format!(
                "refusing to bind {} beyond loopback without a token (set a token, or insecure)",
                self.addr
            )));
        }
        Ok(())
    }
}

mod head;
mod response;
mod route;
#[cfg(test)]
mod tests;

pub use head::*;
pub use response::*;
pub use route::*;
