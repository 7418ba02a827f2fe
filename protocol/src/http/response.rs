//! Response bytes: plain answers, refusals, the viewer, metrics, the features JSON and the 101.

#[allow(unused_imports)]
use super::*;

/// The reason phrase of the statuses this server answers.
pub(super) fn reason_phrase(status: u16) -> &'static str {
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
