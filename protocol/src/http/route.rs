//! Routing a request head: the Host allow-list, token, Origin and upgrade checks, the ingest
//! route, and the clientId.

#[allow(unused_imports)]
use super::*;

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

pub(super) fn refuse(status: u16, reason: &'static str) -> Route {
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
pub(super) const INGEST_METHODS: &str = "method not allowed: send the body with POST or PUT";

/// Whether the request carries the configured token (`?token=` or `Authorization: Bearer`);
/// true when no token is configured.
pub(super) fn token_ok(head: &RequestHead, config: &ServerConfig) -> bool {
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
pub(super) fn name_param(
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
pub(super) fn route_ingest(head: &RequestHead, config: &ServerConfig) -> Route {
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
pub(super) fn bearer(value: &str) -> Option<String> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim().to_owned())
}

/// The host part of a `Host` value (`name`, `name:port`, `[v6]`, `[v6]:port`), lowercased.
pub(super) fn host_name(host: &str) -> Option<String> {
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
pub(super) fn host_allowed(host: &str, config: &ServerConfig) -> bool {
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
pub(super) fn valid_ws_key(key: &str) -> bool {
    let b = key.as_bytes();
    b.len() == 24
        && b[22..] == *b"=="
        && b[..22]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}

/// An `Origin` is allowed when listed, or when its `host[:port]` equals the `Host` header.
pub(super) fn origin_allowed(origin: &str, host: Option<&str>, allowed: &[String]) -> bool {
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

pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
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
