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
    /// Metrics served at `GET /metrics` together with the sink's counters; share the `Arc`
    /// with the server's senders ([`crate::sender::Sender::metrics`]) so that encode times
    /// show. Default: a fresh, empty set.
    pub metrics: Arc<Metrics>,
}

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

/// Why a request head could not be read. Each maps to an HTTP answer ([`HttpError::status`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HttpError {
    /// Not an HTTP/1.x request head.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The head grew past the limit without ending.
    #[error("request head exceeds {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
}

impl HttpError {
    /// 400 for malformed requests, 431 for oversized heads.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::Malformed(_) => 400,
            HttpError::TooLarge { .. } => 431,
        }
    }
    /// The complete response to send before closing.
    pub fn response(&self) -> Vec<u8> {
        refusal_response(self.status(), &self.to_string())
    }
}

/// A parsed HTTP request head: method, target, version and headers, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// Method, e.g. `GET`.
    pub method: String,
    /// The request target as sent (path and query).
    pub target: String,
    /// HTTP minor version (`1` for HTTP/1.1).
    pub version: u8,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
}

const MAX_HEADERS: usize = 64;

impl RequestHead {
    /// Reads a head from the start of `buf` with the default 8 KiB limit. See
    /// [`Self::parse_with_limit`].
    pub fn parse(buf: &[u8]) -> std::result::Result<Option<(RequestHead, usize)>, HttpError> {
        Self::parse_with_limit(buf, DEFAULT_MAX_HANDSHAKE_BYTES)
    }

    /// Reads a head from the start of `buf`: `Ok(Some((head, len)))` when complete (`len` bytes
    /// consumed), `Ok(None)` when more bytes are needed, an error for a malformed head, more than
    /// 64 headers, or no end within `max_bytes`.
    pub fn parse_with_limit(
        buf: &[u8],
        max_bytes: usize,
    ) -> std::result::Result<Option<(RequestHead, usize)>, HttpError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(buf) {
            Ok(httparse::Status::Complete(len)) => {
                if len > max_bytes {
                    return Err(HttpError::TooLarge { limit: max_bytes });
                }
                let mut hs = Vec::with_capacity(req.headers.len());
                for h in req.headers.iter() {
                    let v = std::str::from_utf8(h.value).map_err(|_| {
                        HttpError::Malformed(format!("header `{}` is not UTF-8", h.name))
                    })?;
                    hs.push((h.name.to_owned(), v.trim().to_owned()));
                }
                let head = RequestHead {
                    method: req.method.unwrap_or_default().to_owned(),
                    target: req.path.unwrap_or_default().to_owned(),
                    version: req.version.unwrap_or(0),
                    headers: hs,
                };
                Ok(Some((head, len)))
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() >= max_bytes {
                    Err(HttpError::TooLarge { limit: max_bytes })
                } else {
                    Ok(None)
                }
            }
            Err(httparse::Error::TooManyHeaders) => Err(HttpError::Malformed(format!(
                "more than {MAX_HEADERS} headers"
            ))),
            Err(e) => Err(HttpError::Malformed(e.to_string())),
        }
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// How many headers are named `name` (case-insensitive).
    pub fn count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    /// The percent-decoded value of the first query parameter `name`.
    pub fn query(&self, name: &str) -> Option<String> {
        let (_, q) = self.target.split_once('?')?;
        q.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k).as_deref() == Some(name))
                .then(|| percent_decode(v))
                .flatten()
        })
    }

    /// True when a comma-separated header holds `token` (case-insensitive), e.g. `Connection:
    /// keep-alive, Upgrade`.
    fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .any(|(_, v)| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }
}

/// Decodes `%XX` escapes and `+` (as a space); `None` for bad escapes or invalid UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
                out.push(v);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /`: answer [`viewer_response`] and close.
    Viewer,
    /// `GET /features`: answer [`features_response`] and close.
    Features,
    /// A valid WebSocket upgrade on `/ws` or `/api/ws`: answer [`switching_protocols`].
    Upgrade {
        /// The clientId: the `clientId` query parameter, or a generated 32-hex-digit id.
        client_id: String,
    },
    /// `POST` or `PUT` `/api/send` (authorised, `Content-Length` within the limit): write
    /// [`crate::ingest::CONTINUE`] if [`IngestRoute::expect_continue`], read exactly
    /// [`IngestRoute::content_length`] body bytes (those after the head first), answer
    /// [`crate::ingest::respond`]`(&route, body, config)` and close. See [`crate::ingest`].
    Ingest(IngestRoute),
    /// `GET /metrics` (authorised): answer [`metrics_response`]`(&sink_stats, config)` and close.
    Metrics,
    /// Answer [`refusal_response`]`(status, reason)` and close.
    Refuse {
        /// HTTP status: 400, 401, 403, 404, 405, 411, 413, 415, 417, 421 or 503.
        status: u16,
        /// A short human-readable reason (sent as the body).
        reason: &'static str,
    },
}

fn refuse(status: u16, reason: &'static str) -> Route {
    Route::Refuse { status, reason }
}

/// Routes a request (protocol.md sections 3 and 6). Checks, in order: a repeated `Host`,
/// `Content-Length` or `Transfer-Encoding` (400); a body on anything but ingest (400); without a
/// token, a `Host` that names neither a loopback name or address, nor the bound address, nor an
/// allowed host (421: a page under DNS rebinding controls both `Host` and `Origin`, so the
/// `Origin` check alone cannot stop it); path (404); then per path:
///
/// - `/`, `/features`, `/api/features`: method (405); public.
/// - `/metrics`: method (405), token (401).
/// - `/api/send` (ingest): method `POST` or `PUT` (405), token (401), Origin (403), a handler
///   configured (404), no `Transfer-Encoding` (400), `Content-Length` present (411), a number
///   (400), not zero (400), within [`ServerConfig::max_ingest_bytes`] (413), `?event=` (400),
///   `?clientId=` (400), `?layout=` (400), `Content-Type` (415), `Expect` (417).
/// - `/ws`, `/api/ws`: method (405), token (401), Origin (403), upgrade headers, version and key
///   (400), clientId length (400), and `current_clients >= max_clients` (503).
///
/// `current_clients` leaves out a live client that this request's clientId replaces (see
/// [`clients_besides`]): a replacement adds no client, so a client can reclaim its id while
/// the server is full.
pub fn route(head: &RequestHead, config: &ServerConfig, current_clients: usize) -> Route {
    for name in ["host", "content-length", "transfer-encoding"] {
        if head.count(name) > 1 {
            return refuse(
                400,
                "repeated Host, Content-Length or Transfer-Encoding header",
            );
        }
    }
    let path = head.path();
    let ingest = path == INGEST_PATH;
    if !ingest
        && (head.header("transfer-encoding").is_some()
            || head
                .header("content-length")
                .is_some_and(|n| n.trim() != "0"))
    {
        return refuse(400, "a GET request carries no body");
    }
    if config.token.is_none() {
        if let Some(host) = head.header("host") {
            if !host_allowed(host, config) {
                return refuse(
                    421,
                    "unknown Host: without a token only loopback names, the bound address and \
                     --allowed-host names are served",
                );
            }
        }
    }
    let is_ws = matches!(path, "/ws" | "/api/ws");
    if !is_ws && !ingest && !matches!(path, "/" | "/features" | "/api/features" | "/metrics") {
        return refuse(404, "not found");
    }
    if ingest {
        return route_ingest(head, config);
    }
    if head.method != "GET" {
        return refuse(405, "method not allowed");
    }
    match path {
        "/" => return Route::Viewer,
        "/features" | "/api/features" => return Route::Features,
        _ => {}
    }
    if !token_ok(head, config) {
        return refuse(401, "missing or wrong token");
    }
    if path == "/metrics" {
        return Route::Metrics;
    }
    if let Some(origin) = head.header("origin") {
        if !origin_allowed(origin, head.header("host"), &config.allowed_origins) {
            return refuse(403, "origin not allowed");
        }
    }
    if head.version < 1 || head.header("host").is_none() {
        return refuse(400, "WebSocket upgrade needs HTTP/1.1 and a Host header");
    }
    if !head.header_has_token("upgrade", "websocket")
        || !head.header_has_token("connection", "upgrade")
    {
        return refuse(400, "expected a WebSocket upgrade");
    }
    if head.header("sec-websocket-version") != Some("13") {
        return refuse(400, "unsupported Sec-WebSocket-Version (need 13)");
    }
    if !head.header("sec-websocket-key").is_some_and(valid_ws_key) {
        return refuse(400, "missing or malformed Sec-WebSocket-Key");
    }
    let client_id = match head.query("clientId") {
        Some(id) if id.len() > MAX_CLIENT_ID_LEN => return refuse(400, "clientId too long"),
        Some(id) if id.chars().any(char::is_control) => {
            return refuse(400, "clientId has control characters")
        }
        Some(id) if !id.is_empty() => id,
        _ => generate_client_id(),
    };
    if current_clients >= config.max_clients {
        return refuse(503, "too many clients");
    }
    Route::Upgrade { client_id }
}

/// The reason of a 405 on the ingest path (its answer says `Allow: POST, PUT`).
const INGEST_METHODS: &str = "method not allowed: send the body with POST or PUT";

/// Whether the request carries the configured token (`?token=` or `Authorization: Bearer`);
/// true when no token is configured.
fn token_ok(head: &RequestHead, config: &ServerConfig) -> bool {
    let Some(expected) = &config.token else {
        return true;
    };
    // RFC 7235: the scheme is case-insensitive. An empty `?token=` does not hide a header.
    let given = head
        .query("token")
        .filter(|t| !t.is_empty())
        .or_else(|| head.header("authorization").and_then(bearer));
    given.is_some_and(|g| constant_time_eq(g.as_bytes(), expected.as_bytes()))
}

/// A query value that names something (an event, a client): at most `max` bytes, no control
/// characters. `Ok(None)` when absent or empty.
fn name_param(
    head: &RequestHead,
    key: &str,
    max: usize,
    too_long: &'static str,
    control: &'static str,
) -> std::result::Result<Option<String>, Route> {
    match head.query(key) {
        Some(v) if v.len() > max => Err(refuse(400, too_long)),
        Some(v) if v.chars().any(char::is_control) => Err(refuse(400, control)),
        Some(v) if !v.is_empty() => Ok(Some(v)),
        _ => Ok(None),
    }
}

/// The ingest path's checks (see [`route`]).
fn route_ingest(head: &RequestHead, config: &ServerConfig) -> Route {
    if head.method != "POST" && head.method != "PUT" {
        return refuse(405, INGEST_METHODS);
    }
    if !token_ok(head, config) {
        return refuse(401, "missing or wrong token");
    }
    if let Some(origin) = head.header("origin") {
        if !origin_allowed(origin, head.header("host"), &config.allowed_origins) {
            return refuse(403, "origin not allowed");
        }
    }
    if config.ingest.is_none() {
        return refuse(404, "ingest is not enabled on this server");
    }
    if head.header("transfer-encoding").is_some() {
        return refuse(
            400,
            "Transfer-Encoding (chunked bodies) is not supported: send Content-Length",
        );
    }
    let Some(length) = head.header("content-length") else {
        return refuse(411, "Content-Length required");
    };
    let content_length = match length.parse::<u64>() {
        Ok(n) if length.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => return refuse(400, "malformed Content-Length"),
    };
    if content_length == 0 {
        return refuse(400, "empty body: send a PNG or a .npy array");
    }
    if content_length > config.max_ingest_bytes as u64 {
        return refuse(413, "body exceeds the ingest size limit");
    }
    let event = match name_param(
        head,
        "event",
        MAX_EVENT_LEN,
        "event name too long",
        "event name has control characters",
    ) {
        Ok(Some(e)) => e,
        Ok(None) => return refuse(400, "missing ?event=NAME"),
        Err(r) => return r,
    };
    let client_id = match name_param(
        head,
        "clientId",
        MAX_CLIENT_ID_LEN,
        "clientId too long",
        "clientId has control characters",
    ) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let layout = match head.query("layout").filter(|l| !l.is_empty()) {
        None => None,
        Some(l) => match Layout::from_name(&l) {
            Some(l) => Some(l),
            None => {
                return refuse(
                    400,
                    "unknown ?layout= (expected bhwc, hwc, bhw, hw, chw or bchw)",
                )
            }
        },
    };
    let Some(kind) = BodyKind::from_content_type(head.header("content-type")) else {
        return refuse(
            415,
            "unsupported Content-Type: send image/png, application/x-npy or \
             application/octet-stream",
        );
    };
    let expect_continue = match head.header("expect") {
        None => false,
        Some(e) if e.eq_ignore_ascii_case("100-continue") => true,
        Some(_) => return refuse(417, "unsupported Expect (only 100-continue)"),
    };
    Route::Ingest(IngestRoute {
        event,
        client_id,
        kind,
        layout,
        content_length: content_length as usize,
        expect_continue,
    })
}

/// The clients that would remain besides this request's: `live` minus one when the request
/// names a clientId that `is_live` says is connected (its new connection replaces it).
pub fn clients_besides(
    head: &RequestHead,
    live: usize,
    is_live: impl FnOnce(&str) -> bool,
) -> usize {
    match head.query("clientId") {
        Some(id) if !id.is_empty() && is_live(&id) => live.saturating_sub(1),
        _ => live,
    }
}

/// The credentials of `Authorization: Bearer <token>`, the scheme in any case.
fn bearer(value: &str) -> Option<String> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim().to_owned())
}

/// The host part of a `Host` value (`name`, `name:port`, `[v6]`, `[v6]:port`), lowercased.
fn host_name(host: &str) -> Option<String> {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.starts_with(':')) {
            return None;
        }
        return Some(format!("[{}]", inside.to_ascii_lowercase()));
    } else {
        match host.rsplit_once(':') {
            Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) => n,
            Some(_) => return None,
            None => host,
        }
    };
    (!name.is_empty()).then(|| name.trim_end_matches('.').to_ascii_lowercase())
}

/// Whether a `Host` names this server: `localhost`, a loopback address, the bound address (any
/// IP literal when bound to all interfaces), or a configured allowed host; ports are not
/// compared.
fn host_allowed(host: &str, config: &ServerConfig) -> bool {
    let Some(name) = host_name(host) else {
        return false;
    };
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    if config
        .allowed_hosts
        .iter()
        .any(|a| host_name(a).is_some_and(|a| a == name))
    {
        return true;
    }
    let ip = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(&name)
        .parse::<std::net::IpAddr>();
    match ip {
        Ok(ip) => ip.is_loopback() || ip == config.addr.ip() || config.addr.ip().is_unspecified(),
        Err(_) => false,
    }
}

/// A `Sec-WebSocket-Key` must be base64 of 16 bytes: 22 base64 characters and `==`.
fn valid_ws_key(key: &str) -> bool {
    let b = key.as_bytes();
    b.len() == 24
        && b[22..] == *b"=="
        && b[..22]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}

/// An `Origin` is allowed when listed, or when its `host[:port]` equals the `Host` header.
fn origin_allowed(origin: &str, host: Option<&str>, allowed: &[String]) -> bool {
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
        return true;
    }
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .map(|rest| rest.trim_end_matches('/'));
    match (authority, host) {
        (Some(a), Some(h)) => !a.is_empty() && !a.contains('/') && a.eq_ignore_ascii_case(h),
        _ => false,
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A fresh clientId: 32 lowercase hex digits, unpredictable enough to not be guessed by another
/// client (std's per-process random hash keys over a counter and the time; not cryptographic).
pub fn generate_client_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut id = String::with_capacity(32);
    for half in 0..2u8 {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(n);
        h.write_u128(nanos);
        h.write_u8(half);
        id.push_str(&format!("{:016x}", h.finish()));
    }
    id
}

/// The reason phrase of the statuses this server answers.
fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        202 => "Accepted",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// A complete `HTTP/1.1` response with `Connection: close`.
pub fn http_response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    response_with(status, content_type, &[], body)
}

pub(crate) fn response_with(
    status: u16,
    content_type: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
        reason_phrase(status),
        body.len()
    );
    for (k, v) in extra {
        head.push_str(k);
        head.push_str(": ");
        head.push_str(v);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

/// A refusal with a plain-text body (adds `Allow: GET` to 405 (`Allow: POST, PUT` on the ingest
/// path), `WWW-Authenticate: Bearer` to 401, `Sec-WebSocket-Version: 13` to 400 and
/// `Retry-After: 1` to 503).
pub fn refusal_response(status: u16, reason: &str) -> Vec<u8> {
    let extra: &[(&str, &str)] = match status {
        405 if reason == INGEST_METHODS => &[("Allow", "POST, PUT")],
        405 => &[("Allow", "GET")],
        503 => &[("Retry-After", "1")],
        401 => &[("WWW-Authenticate", "Bearer")],
        400 => &[("Sec-WebSocket-Version", "13")],
        _ => &[],
    };
    let mut body = reason.to_owned();
    body.push('\n');
    response_with(status, "text/plain; charset=utf-8", extra, body.as_bytes())
}

/// `200` with the viewer page.
pub fn viewer_response() -> Vec<u8> {
    http_response(200, "text/html; charset=utf-8", VIEWER_HTML.as_bytes())
}

/// `200` with the metrics in Prometheus text format 0.0.4 ([`crate::metrics::render`]):
/// `stats` is the transport's [`crate::sink::FrameSink::stats`] snapshot, the encode-time
/// histogram and ingest counters come from [`ServerConfig::metrics`].
pub fn metrics_response(stats: &SinkStats, config: &ServerConfig) -> Vec<u8> {
    http_response(
        200,
        crate::metrics::CONTENT_TYPE,
        crate::metrics::render(stats, &config.metrics).as_bytes(),
    )
}

/// `200` with the feature flags as `application/json`.
pub fn features_response() -> Vec<u8> {
    http_response(200, "application/json", features_json().as_bytes())
}

/// The `101 Switching Protocols` answer to an upgrade ([`Route::Upgrade`]); no extension and no
/// subprotocol are negotiated. Call only for a head that routed to `Upgrade` (it has a key).
pub fn switching_protocols(head: &RequestHead) -> Vec<u8> {
    let key = head.header("sec-websocket-key").unwrap_or_default();
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn req(s: &str) -> RequestHead {
        let (h, n) = RequestHead::parse(s.as_bytes()).unwrap().unwrap();
        assert_eq!(n, s.len());
        h
    }

    fn upgrade(target: &str, extra: &str) -> RequestHead {
        req(&format!(
            "GET {target} HTTP/1.1\r\nHost: 127.0.0.1:8188\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n{extra}\r\n"
        ))
    }

    fn status(r: Route) -> u16 {
        match r {
            Route::Refuse { status, .. } => status,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn parse_incremental_and_limits() {
        let full = b"GET /ws?clientId=a%20b HTTP/1.1\r\nHost: x\r\n\r\nrest";
        for cut in 0..full.len() - 4 {
            assert_eq!(RequestHead::parse(&full[..cut]).unwrap(), None, "cut {cut}");
        }
        let (h, n) = RequestHead::parse(full).unwrap().unwrap();
        assert_eq!(n, full.len() - 4);
        assert_eq!(h.path(), "/ws");
        assert_eq!(h.query("clientId").as_deref(), Some("a b"));
        assert_eq!(h.header("HOST"), Some("x"));
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(400));
        assert_eq!(
            RequestHead::parse_with_limit(big.as_bytes(), 300),
            Err(HttpError::TooLarge { limit: 300 })
        );
        let done = format!("{big}\r\n");
        assert_eq!(
            RequestHead::parse_with_limit(done.as_bytes(), 300)
                .unwrap_err()
                .status(),
            431
        );
        assert_eq!(
            RequestHead::parse(b"\x16\x03\x01\x02\x00garbage\r\n\r\n")
                .unwrap_err()
                .status(),
            400
        );
        assert!(RequestHead::parse(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n").is_err());
        let many: String = (0..70).map(|i| format!("H{i}: v\r\n")).collect();
        assert!(matches!(
            RequestHead::parse(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()),
            Err(HttpError::Malformed(_))
        ));
        assert!(RequestHead::parse(b"GET / HTTP/1.1\r\nX: \xff\r\n\r\n").is_err());
    }

    #[test]
    fn routes_plain_http() {
        let c = ServerConfig::default();
        assert_eq!(
            route(&req("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"), &c, 0),
            Route::Viewer
        );
        assert_eq!(
            route(&req("GET /features HTTP/1.1\r\n\r\n"), &c, 0),
            Route::Features
        );
        assert_eq!(
            route(&req("GET /?x=1 HTTP/1.0\r\n\r\n"), &c, 0),
            Route::Viewer
        );
        assert_eq!(
            status(route(&req("GET /nope HTTP/1.1\r\n\r\n"), &c, 0)),
            404
        );
        assert_eq!(status(route(&req("POST / HTTP/1.1\r\n\r\n"), &c, 0)), 405);
        assert_eq!(status(route(&req("PUT /ws HTTP/1.1\r\n\r\n"), &c, 0)), 405);
        assert_eq!(
            status(route(
                &req("GET /ws HTTP/1.1\r\nHost: localhost\r\n\r\n"),
                &c,
                0
            )),
            400
        );
    }

    #[test]
    fn routes_upgrades() {
        let c = ServerConfig::default();
        assert_eq!(
            route(&upgrade("/ws?clientId=abc", ""), &c, 0),
            Route::Upgrade {
                client_id: "abc".into()
            }
        );
        assert_eq!(
            route(&upgrade("/api/ws?foo=1&clientId=x%2Fy", ""), &c, 0),
            Route::Upgrade {
                client_id: "x/y".into()
            }
        );
        for target in ["/ws", "/ws?clientId="] {
            match route(&upgrade(target, ""), &c, 0) {
                Route::Upgrade { client_id } => {
                    assert_eq!(client_id.len(), 32);
                    assert!(client_id
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
                }
                other => panic!("{other:?}"),
            }
        }
        assert_ne!(generate_client_id(), generate_client_id());
        assert_eq!(
            status(route(
                &upgrade(&format!("/ws?clientId={}", "a".repeat(200)), ""),
                &c,
                0
            )),
            400
        );
        assert_eq!(
            status(route(&upgrade("/ws?clientId=a%0Ab", ""), &c, 0)),
            400
        );
        // Capacity.
        assert_eq!(status(route(&upgrade("/ws", ""), &c, 256)), 503);
        assert!(matches!(
            route(&upgrade("/ws", ""), &c, 255),
            Route::Upgrade { .. }
        ));
    }

    #[test]
    fn bad_upgrade_headers() {
        let c = ServerConfig::default();
        let base = |skip: &str, replace: (&str, &str)| {
            let lines = [
                "Host: localhost",
                "Upgrade: websocket",
                "Connection: Upgrade",
                "Sec-WebSocket-Version: 13",
                &format!("Sec-WebSocket-Key: {KEY}"),
            ];
            let mut s = String::from("GET /ws HTTP/1.1\r\n");
            for l in lines {
                if l.starts_with(skip) && !skip.is_empty() {
                    continue;
                }
                let l = if l.starts_with(replace.0) && !replace.0.is_empty() {
                    replace.1.to_owned()
                } else {
                    l.to_owned()
                };
                s.push_str(&l);
                s.push_str("\r\n");
            }
            s.push_str("\r\n");
            req(&s)
        };
        assert!(matches!(
            route(&base("", ("", "")), &c, 0),
            Route::Upgrade { .. }
        ));
        for skip in [
            "Host",
            "Upgrade",
            "Connection",
            "Sec-WebSocket-Version",
            "Sec-WebSocket-Key",
        ] {
            assert_eq!(
                status(route(&base(skip, ("", "")), &c, 0)),
                400,
                "without {skip}"
            );
        }
        for bad in [
            ("Upgrade", "Upgrade: h2c"),
            ("Connection", "Connection: keep-alive"),
            ("Sec-WebSocket-Version", "Sec-WebSocket-Version: 8"),
            ("Sec-WebSocket-Key", "Sec-WebSocket-Key: short"),
            (
                "Sec-WebSocket-Key",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j!!==",
            ),
        ] {
            assert_eq!(status(route(&base("", bad), &c, 0)), 400, "{bad:?}");
        }
        assert_eq!(
            status(route(&req(&format!("GET /ws HTTP/1.0\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n")), &c, 0)),
            400
        );
    }

    #[test]
    fn origin_check() {
        let c = ServerConfig::default();
        assert!(matches!(
            route(&upgrade("/ws", "Origin: http://127.0.0.1:8188\r\n"), &c, 0),
            Route::Upgrade { .. }
        ));
        assert!(matches!(
            route(
                &upgrade("/ws", "Origin: https://127.0.0.1:8188/\r\n"),
                &c,
                0
            ),
            Route::Upgrade { .. }
        ));
        assert_eq!(
            status(route(
                &upgrade("/ws", "Origin: http://evil.example\r\n"),
                &c,
                0
            )),
            403
        );
        assert_eq!(
            status(route(&upgrade("/ws", "Origin: null\r\n"), &c, 0)),
            403
        );
        assert_eq!(
            status(route(
                &upgrade("/ws", "Origin: http://127.0.0.1:8189\r\n"),
                &c,
                0
            )),
            403
        );
        let c2 = c
            .clone()
            .allowed_origins(vec!["http://evil.example".into()]);
        assert!(matches!(
            route(&upgrade("/ws", "Origin: http://evil.example\r\n"), &c2, 0),
            Route::Upgrade { .. }
        ));
    }

    #[test]
    fn token_check() {
        let c = ServerConfig::default().token(Some("s3cret".into()));
        assert_eq!(status(route(&upgrade("/ws", ""), &c, 0)), 401);
        assert_eq!(status(route(&upgrade("/ws?token=wrong", ""), &c, 0)), 401);
        assert_eq!(
            status(route(
                &upgrade("/ws", "Authorization: Bearer nope\r\n"),
                &c,
                0
            )),
            401
        );
        assert_eq!(status(route(&upgrade("/ws?token=s3cre", ""), &c, 0)), 401);
        assert!(matches!(
            route(&upgrade("/ws?token=s3cret", ""), &c, 0),
            Route::Upgrade { .. }
        ));
        assert!(matches!(
            route(&upgrade("/ws", "Authorization: Bearer s3cret\r\n"), &c, 0),
            Route::Upgrade { .. }
        ));
        // Token is checked before anything else on an upgrade path.
        assert_eq!(status(route(&req("GET /ws HTTP/1.1\r\n\r\n"), &c, 0)), 401);
        // The page and the flags stay public.
        assert_eq!(route(&req("GET / HTTP/1.1\r\n\r\n"), &c, 0), Route::Viewer);
    }

    #[test]
    fn responses() {
        let r = String::from_utf8(switching_protocols(&upgrade("/ws", ""))).unwrap();
        // RFC 6455's example key and answer.
        assert!(
            r.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
            "{r}"
        );
        assert!(r.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(r.ends_with("\r\n\r\n"));
        assert!(!r.to_ascii_lowercase().contains("extensions"));
        let f = String::from_utf8(features_response()).unwrap();
        assert!(f.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(f.contains("Content-Type: application/json\r\n"));
        let body = f.split("\r\n\r\n").nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["supports_preview_metadata"], true);
        assert!(f.contains(&format!("Content-Length: {}\r\n", body.len())));
        let v = String::from_utf8(viewer_response()).unwrap();
        assert!(v.contains("text/html") && v.contains("<html"));
        for s in [400, 401, 403, 404, 405, 431, 503] {
            let r = String::from_utf8(refusal_response(s, "why")).unwrap();
            assert!(r.starts_with(&format!("HTTP/1.1 {s} ")), "{r}");
            assert!(r.ends_with("\r\n\r\nwhy\n"));
        }
        assert!(String::from_utf8(refusal_response(405, "x"))
            .unwrap()
            .contains("Allow: GET\r\n"));
    }

    #[test]
    fn random_bytes_never_panic() {
        // Mutations of a valid upgrade and plain noise: parse and route either answer or refuse.
        let valid = format!(
            "GET /ws?clientId=a&token=t HTTP/1.1\r\nHost: h\r\nOrigin: http://h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
        )
        .into_bytes();
        let config = ServerConfig::default().token(Some("t".into()));
        let mut rng = fastrand::Rng::with_seed(11);
        for round in 0..20_000 {
            let mut buf = if round % 4 == 0 {
                (0..rng.usize(0..300))
                    .map(|_| rng.u8(..))
                    .collect::<Vec<u8>>()
            } else {
                valid.clone()
            };
            for _ in 0..rng.usize(0..4) {
                if buf.is_empty() {
                    break;
                }
                let i = rng.usize(..buf.len());
                match rng.u8(0..3) {
                    0 => buf[i] = rng.u8(..),
                    1 => {
                        buf.remove(i);
                    }
                    _ => buf.insert(i, b"%\r\n:=&?\xff "[rng.usize(0..9)]),
                }
            }
            let cut = rng.usize(0..=buf.len());
            if let Ok(Some((head, n))) = RequestHead::parse_with_limit(&buf[..cut], 512) {
                assert!(n <= cut);
                let _ = route(&head, &config, rng.usize(0..300));
                let _ = head.query("clientId");
            }
        }
    }

    #[test]
    fn config_validation() {
        let c = ServerConfig::default();
        c.validate().unwrap();
        let public: SocketAddr = "0.0.0.0:8188".parse().unwrap();
        assert!(c.clone().addr(public).validate().is_err());
        c.clone()
            .addr(public)
            .token(Some("t".into()))
            .validate()
            .unwrap();
        c.clone().addr(public).insecure(true).validate().unwrap();
        assert!(c.clone().queue_bytes(0).validate().is_err());
        assert!(c.clone().max_clients(0).validate().is_err());
        assert!(c.clone().stall_timeout(Duration::ZERO).validate().is_err());
        assert!(c.clone().token(Some(String::new())).validate().is_err());
        assert!(c.clone().token(Some("a b".into())).validate().is_err());
        assert!(c.clone().max_handshake_bytes(10).validate().is_err());
        assert!(c.clone().max_message_bytes(0).validate().is_err());
        "::1:0".parse::<SocketAddr>().err();
        c.clone()
            .addr("[::1]:0".parse().unwrap())
            .validate()
            .unwrap();
    }

    fn head_with(host: &str, extra: &str) -> RequestHead {
        let raw = format!(
            "GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
        );
        RequestHead::parse(raw.as_bytes()).unwrap().unwrap().0
    }

    #[test]
    fn dns_rebinding_hosts_are_refused_without_a_token() {
        let c = ServerConfig::default();
        for ok in [
            "127.0.0.1",
            "127.0.0.1:8188",
            "localhost",
            "LOCALHOST:1",
            "localhost.",
            "app.localhost:9",
            "[::1]",
            "[::1]:8188",
            "127.5.6.7:80",
        ] {
            assert!(
                matches!(route(&head_with(ok, ""), &c, 0), Route::Upgrade { .. }),
                "{ok}"
            );
        }
        for bad in [
            "rebind.example",
            "rebind.example:8188",
            "127.0.0.1.rebind.example",
            "localhost.evil.example",
            "192.168.1.9:8188",
            "[::1",
            "[::1]x",
            "host:port",
            "",
        ] {
            let r = route(
                &head_with(bad, "Origin: http://rebind.example:8188\r\n"),
                &c,
                0,
            );
            assert!(
                matches!(
                    r,
                    Route::Refuse { status: 421, .. } | Route::Refuse { status: 400, .. }
                ),
                "{bad}: {r:?}"
            );
        }
        // The viewer too, before any route runs.
        let viewer = RequestHead::parse(b"GET / HTTP/1.1\r\nHost: rebind.example\r\n\r\n")
            .unwrap()
            .unwrap()
            .0;
        assert!(matches!(
            route(&viewer, &c, 0),
            Route::Refuse { status: 421, .. }
        ));
        // Allowed names, and any IP literal when bound to all interfaces.
        let c2 = ServerConfig::default().allowed_hosts(vec!["studio.lan:8188".into()]);
        assert!(matches!(
            route(&head_with("studio.lan", ""), &c2, 0),
            Route::Upgrade { .. }
        ));
        let c3 = ServerConfig::default()
            .addr("0.0.0.0:8188".parse().unwrap())
            .insecure(true);
        assert!(matches!(
            route(&head_with("10.1.2.3:8188", ""), &c3, 0),
            Route::Upgrade { .. }
        ));
        assert!(matches!(
            route(&head_with("evil.example", ""), &c3, 0),
            Route::Refuse { status: 421, .. }
        ));
        // With a token the token is the guard: any Host.
        let c4 = ServerConfig::default().token(Some("t".into()));
        assert!(matches!(
            route(
                &head_with("rebind.example", "Authorization: Bearer t\r\n"),
                &c4,
                0
            ),
            Route::Upgrade { .. }
        ));
    }

    #[test]
    fn strict_framing_and_bearer_scheme() {
        let c = ServerConfig::default();
        let two_hosts = head_with("127.0.0.1", "Host: evil.example\r\n");
        assert!(matches!(
            route(&two_hosts, &c, 0),
            Route::Refuse { status: 400, .. }
        ));
        let body = head_with("127.0.0.1", "Content-Length: 5\r\n");
        assert!(matches!(
            route(&body, &c, 0),
            Route::Refuse { status: 400, .. }
        ));
        let chunked = head_with("127.0.0.1", "Transfer-Encoding: chunked\r\n");
        assert!(matches!(
            route(&chunked, &c, 0),
            Route::Refuse { status: 400, .. }
        ));
        let two_lengths = head_with("127.0.0.1", "Content-Length: 0\r\nContent-Length: 0\r\n");
        assert!(matches!(
            route(&two_lengths, &c, 0),
            Route::Refuse { status: 400, .. }
        ));
        let zero = head_with("127.0.0.1", "Content-Length: 0\r\n");
        assert!(matches!(route(&zero, &c, 0), Route::Upgrade { .. }));
        let t = ServerConfig::default().token(Some("s3cret".into()));
        for auth in ["Bearer s3cret", "BEARER s3cret", "bearer  s3cret"] {
            let h = head_with("x", &format!("Authorization: {auth}\r\n"));
            assert!(matches!(route(&h, &t, 0), Route::Upgrade { .. }), "{auth}");
        }
        let empty_query = RequestHead::parse(
            b"GET /ws?token= HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Authorization: Bearer s3cret\r\n\r\n",
        )
        .unwrap()
        .unwrap()
        .0;
        assert!(matches!(route(&empty_query, &t, 0), Route::Upgrade { .. }));
        let basic = head_with("x", "Authorization: Basic s3cret\r\n");
        assert!(matches!(
            route(&basic, &t, 0),
            Route::Refuse { status: 401, .. }
        ));
    }

    /// An ingest handler that takes everything (routing never calls it).
    struct Take;
    impl IngestHandler for Take {
        fn submit(
            &self,
            _: crate::ingest::IngestJob,
        ) -> std::result::Result<(), crate::ingest::SubmitError> {
            Ok(())
        }
    }

    fn ingest_config() -> ServerConfig {
        ServerConfig::default().ingest_handler(Take)
    }

    fn post(method: &str, target: &str, extra: &str) -> RequestHead {
        req(&format!(
            "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:8188\r\n{extra}\r\n"
        ))
    }

    fn ingest_route(r: Route) -> IngestRoute {
        match r {
            Route::Ingest(i) => i,
            other => panic!("expected ingest, got {other:?}"),
        }
    }

    #[test]
    fn routes_ingest() {
        let c = ingest_config();
        let i = ingest_route(route(
            &post(
                "POST",
                "/api/send?event=shot&clientId=a%20b",
                "Content-Length: 10\r\n",
            ),
            &c,
            0,
        ));
        assert_eq!(
            i,
            IngestRoute::new("shot", 10).client_id(Some("a b".into()))
        );
        let i = ingest_route(route(
            &post(
                "PUT",
                "/api/send?event=x&layout=CHW",
                "Content-Length: 3\r\nContent-Type: image/png\r\nExpect: 100-continue\r\n",
            ),
            &c,
            0,
        ));
        assert_eq!(
            (i.kind, i.layout, i.expect_continue, i.client_id),
            (BodyKind::Png, Some(Layout::Chw), true, None)
        );
        let i = ingest_route(route(
            &post(
                "POST",
                "/api/send?event=x",
                "Content-Length: 3\r\nContent-Type: application/x-npy\r\n",
            ),
            &c,
            0,
        ));
        assert_eq!(i.kind, BodyKind::Npy);
        // Exactly at the limit, and one past it.
        let c2 = ingest_config().max_ingest_bytes(100);
        assert!(matches!(
            route(
                &post("POST", "/api/send?event=x", "Content-Length: 100\r\n"),
                &c2,
                0
            ),
            Route::Ingest(_)
        ));
        let table: &[(&str, &str, &str, u16)] = &[
            ("GET", "/api/send?event=x", "", 405),
            ("DELETE", "/api/send?event=x", "Content-Length: 1\r\n", 405),
            ("POST", "/api/send?event=x", "", 411),
            (
                "POST",
                "/api/send?event=x",
                "Transfer-Encoding: chunked\r\n",
                400,
            ),
            (
                "POST",
                "/api/send?event=x",
                "Content-Length: 1\r\nTransfer-Encoding: chunked\r\n",
                400,
            ),
            ("POST", "/api/send?event=x", "Content-Length: abc\r\n", 400),
            ("POST", "/api/send?event=x", "Content-Length: +5\r\n", 400),
            ("POST", "/api/send?event=x", "Content-Length: -5\r\n", 400),
            (
                "POST",
                "/api/send?event=x",
                "Content-Length: 99999999999999999999999\r\n",
                400,
            ),
            ("POST", "/api/send?event=x", "Content-Length: 0\r\n", 400),
            (
                "POST",
                "/api/send?event=x",
                "Content-Length: 1\r\nContent-Length: 1\r\n",
                400,
            ),
            ("POST", "/api/send?event=x", "Content-Length: 101\r\n", 413),
            (
                "POST",
                "/api/send?event=x",
                "Content-Length: 18446744073709551615\r\n",
                413,
            ),
            ("POST", "/api/send", "Content-Length: 1\r\n", 400),
            ("POST", "/api/send?event=", "Content-Length: 1\r\n", 400),
            (
                "POST",
                "/api/send?event=a%0Ab",
                "Content-Length: 1\r\n",
                400,
            ),
            (
                "POST",
                "/api/send?event=x&clientId=a%00",
                "Content-Length: 1\r\n",
                400,
            ),
            (
                "POST",
                "/api/send?event=x&layout=nchw",
                "Content-Length: 1\r\n",
                400,
            ),
            (
                "POST",
                "/api/send?event=x",
                "Content-Length: 1\r\nContent-Type: image/jpeg\r\n",
                415,
            ),
            (
                "POST",
                "/api/send?event=x",
                "Content-Length: 1\r\nContent-Type: text/plain\r\n",
                415,
            ),
            (
                "POST",
                "/api/send?event=x",
                "Content-Length: 1\r\nExpect: 200-ok\r\n",
                417,
            ),
            (
                "POST",
                "/api/send?event=x",
                "Content-Length: 1\r\nOrigin: http://evil.example\r\n",
                403,
            ),
            ("POST", "/api/sendx?event=x", "Content-Length: 1\r\n", 400),
            ("POST", "/api/send/?event=x", "Content-Length: 1\r\n", 400),
        ];
        for (method, target, extra, want) in table {
            let r = route(&post(method, target, extra), &c2, 0);
            assert_eq!(status(r), *want, "{method} {target} {extra:?}");
        }
        let long = format!("/api/send?event={}", "e".repeat(MAX_EVENT_LEN + 1));
        assert_eq!(
            status(route(&post("POST", &long, "Content-Length: 1\r\n"), &c, 0)),
            400
        );
        let long = format!(
            "/api/send?event=e&clientId={}",
            "c".repeat(MAX_CLIENT_ID_LEN + 1)
        );
        assert_eq!(
            status(route(&post("POST", &long, "Content-Length: 1\r\n"), &c, 0)),
            400
        );
        // The 405 names the methods the path takes.
        let r = String::from_utf8(refusal_response(405, INGEST_METHODS)).unwrap();
        assert!(r.contains("Allow: POST, PUT\r\n"), "{r}");
        // A browser page on its own origin may post (the Origin matches the Host).
        assert!(matches!(
            route(
                &post(
                    "POST",
                    "/api/send?event=x",
                    "Content-Length: 1\r\nOrigin: http://127.0.0.1:8188\r\n"
                ),
                &c,
                0
            ),
            Route::Ingest(_)
        ));
        // Without a handler the path does not exist.
        assert_eq!(
            status(route(
                &post("POST", "/api/send?event=x", "Content-Length: 1\r\n"),
                &ServerConfig::default(),
                0
            )),
            404
        );
        // Other paths still refuse bodies.
        assert_eq!(
            status(route(
                &post("POST", "/features", "Content-Length: 1\r\n"),
                &c,
                0
            )),
            400
        );
    }

    #[test]
    fn ingest_auth_and_hosts() {
        let c = ingest_config();
        let evil = req(
            "POST /api/send?event=x HTTP/1.1\r\nHost: rebind.example\r\nContent-Length: 1\r\n\r\n",
        );
        assert_eq!(status(route(&evil, &c, 0)), 421);
        let no_host = req("POST /api/send?event=x HTTP/1.0\r\nContent-Length: 1\r\n\r\n");
        assert!(matches!(route(&no_host, &c, 0), Route::Ingest(_)));
        let t = ingest_config().token(Some("s3cret".into()));
        for (target, extra, want) in [
            ("/api/send?event=x", "", 401),
            ("/api/send?event=x&token=wrong", "", 401),
            ("/api/send?event=x", "Authorization: Bearer nope\r\n", 401),
            ("/api/send?event=x", "Authorization: Basic s3cret\r\n", 401),
        ] {
            let h = req(&format!(
                "POST {target} HTTP/1.1\r\nHost: any.example\r\nContent-Length: 1\r\n{extra}\r\n"
            ));
            assert_eq!(status(route(&h, &t, 0)), want, "{target} {extra}");
        }
        // Unauthorised callers learn nothing about limits: 401 before 413 or 411.
        let h = req(
            "POST /api/send?event=x HTTP/1.1\r\nHost: h\r\nContent-Length: 999999999999\r\n\r\n",
        );
        assert_eq!(status(route(&h, &t, 0)), 401);
        let h = req("POST /api/send HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(status(route(&h, &t, 0)), 401);
        for ok in [
            "POST /api/send?event=x&token=s3cret HTTP/1.1\r\nHost: any.example\r\nContent-Length: 1\r\n\r\n",
            "POST /api/send?event=x HTTP/1.1\r\nHost: any.example\r\nAuthorization: Bearer s3cret\r\nContent-Length: 1\r\n\r\n",
        ] {
            let i = ingest_route(route(&req(ok), &t, 0));
            assert_eq!(i.event, "x");
        }
    }

    #[test]
    fn routes_metrics() {
        let c = ServerConfig::default();
        assert_eq!(
            route(
                &req("GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n"),
                &c,
                0
            ),
            Route::Metrics
        );
        assert_eq!(
            route(&req("GET /metrics?x=1 HTTP/1.0\r\n\r\n"), &c, 0),
            Route::Metrics
        );
        assert_eq!(
            status(route(&req("POST /metrics HTTP/1.1\r\n\r\n"), &c, 0)),
            405
        );
        assert_eq!(
            status(route(&req("GET /metrics/ HTTP/1.1\r\n\r\n"), &c, 0)),
            404
        );
        assert_eq!(
            status(route(
                &req("GET /metrics HTTP/1.1\r\nHost: rebind.example\r\n\r\n"),
                &c,
                0
            )),
            421
        );
        assert_eq!(
            status(route(
                &req("GET /metrics HTTP/1.1\r\nContent-Length: 4\r\n\r\n"),
                &c,
                0
            )),
            400
        );
        let t = ServerConfig::default().token(Some("s3cret".into()));
        assert_eq!(
            status(route(&req("GET /metrics HTTP/1.1\r\n\r\n"), &t, 0)),
            401
        );
        assert_eq!(
            status(route(&req("GET /metrics?token=no HTTP/1.1\r\n\r\n"), &t, 0)),
            401
        );
        assert_eq!(
            route(&req("GET /metrics?token=s3cret HTTP/1.1\r\n\r\n"), &t, 0),
            Route::Metrics
        );
        assert_eq!(
            route(&req("GET /metrics HTTP/1.1\r\nHost: far.example\r\nAuthorization: Bearer s3cret\r\n\r\n"), &t, 0),
            Route::Metrics
        );
        // The viewer and flags stay public with a token.
        assert_eq!(
            route(&req("GET /features HTTP/1.1\r\n\r\n"), &t, 0),
            Route::Features
        );

        let stats = SinkStats {
            clients: 3,
            frames_sent: 9,
            ..SinkStats::default()
        };
        c.metrics.encode.observe(Duration::from_millis(2));
        let r = String::from_utf8(metrics_response(&stats, &c)).unwrap();
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
        let body = r.split_once("\r\n\r\n").unwrap().1;
        assert!(r.contains(&format!("Content-Length: {}\r\n", body.len())));
        assert!(body.contains("\npngcast_clients 3\n"));
        assert!(body.contains("\npngcast_frames_sent_total 9\n"));
        assert!(body.contains("\npngcast_encode_duration_seconds_count 1\n"));
    }

    #[test]
    fn ingest_heads_never_panic() {
        let valid = b"POST /api/send?event=e&clientId=c&layout=hwc&token=t HTTP/1.1\r\nHost: h\r\nContent-Type: image/png\r\nExpect: 100-continue\r\nContent-Length: 12\r\n\r\n".to_vec();
        let config = ingest_config().token(Some("t".into()));
        let mut rng = fastrand::Rng::with_seed(12);
        for _ in 0..20_000 {
            let mut buf = valid.clone();
            for _ in 0..rng.usize(0..4) {
                let i = rng.usize(..buf.len());
                match rng.u8(0..3) {
                    0 => buf[i] = rng.u8(..),
                    1 => {
                        buf.remove(i);
                    }
                    _ => buf.insert(i, b"%\r\n:=&?\xff 0-"[rng.usize(0..11)]),
                }
            }
            if let Ok(Some((head, _))) = RequestHead::parse_with_limit(&buf, 512) {
                if let Route::Ingest(i) = route(&head, &config, 0) {
                    assert!(i.content_length >= 1 && i.content_length <= config.max_ingest_bytes);
                    assert!(!i.event.is_empty());
                }
            }
        }
    }
}
