//! A blocking WebSocket client for pngcast and ComfyUI servers.
//!
//! It speaks protocol.md and nothing more, so it works against a real ComfyUI server as well as
//! against pngcast's own transports: connect to `ws://host:port/ws?clientId=...`, read the status
//! message (its `sid` is the client id), optionally declare `supports_preview_metadata` and wait
//! for the server's `feature_flags` answer, then iterate over [`Event`]s.
//!
//! Cost: one TCP connection, tungstenite's read buffer, and one `Vec<u8>` per received image
//! (the PNG bytes are copied once out of the WebSocket message).
//!
//! ```no_run
//! use pngcast_blocking::client::{Client, ClientOptions, Event};
//! let mut client = Client::connect("ws://127.0.0.1:8188/ws", ClientOptions::default())?;
//! println!("connected as {}", client.sid());
//! while let Some(event) = client.next_event()? {
//!     if let Event::Image { event, png, .. } = event {
//!         println!("{:?}: {} PNG bytes", event, png.len());
//!     }
//! }
//! # Ok::<(), pngcast_blocking::client::ClientError>(())
//! ```

use std::collections::VecDeque;
use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use pngcast_protocol::wire::{self, BinaryMessage, ImageMeta, TextMessage};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{ClientRequestBuilder, Message, WebSocket};

use pngcast_protocol::io::NoSigPipe;

/// What a client that wants type-4 frames sends first (protocol.md section 3).
const FEATURE_FLAGS_REQUEST: &str =
    r#"{"type": "feature_flags", "data": {"supports_preview_metadata": true}}"#;

/// Options for [`Client::connect`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// Declare `supports_preview_metadata` so the server sends type-4 frames with their JSON
    /// metadata (default `false`: behave like ComfyUI's example script).
    pub metadata: bool,
    /// The `clientId` to ask for; `None` lets the server make one.
    pub client_id: Option<String>,
    /// A shared token, sent as `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Largest message accepted from the server (default 256 MiB). Bigger ones end the
    /// connection with [`ClientError::WebSocket`].
    pub max_message_bytes: usize,
    /// How long `connect` waits for the TCP connection, the upgrade, the status message and the
    /// `feature_flags` answer (default 10 s). Once connected, reads block without a limit.
    pub connect_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            metadata: false,
            client_id: None,
            token: None,
            max_message_bytes: 256 << 20,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

impl ClientOptions {
    /// Sets [`ClientOptions::metadata`].
    pub fn metadata(mut self, metadata: bool) -> Self {
        self.metadata = metadata;
        self
    }
    /// Sets [`ClientOptions::client_id`].
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = Some(id.into());
        self
    }
    /// Sets [`ClientOptions::token`].
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }
    /// Sets [`ClientOptions::max_message_bytes`].
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }
    /// Sets [`ClientOptions::connect_timeout`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
}

/// Everything the client can receive.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A JSON text message `{"type": kind, "data": data}` (status, feature_flags, executing,
    /// progress, user events...). Announcements that precede a type-1 frame are folded into
    /// that [`Event::Image`] instead.
    Json {
        /// The `type` field.
        kind: String,
        /// The `data` field (`null` when absent).
        data: serde_json::Value,
        /// The message exactly as received (for logs that must keep every byte).
        raw: String,
    },
    /// One PNG image: a type-1 frame (format 2, PNG) or a type-4 frame.
    Image {
        /// The event name: from the type-4 JSON, or from the announcement that preceded a type-1
        /// frame; `None` for a bare type-1 frame (what ComfyUI's own nodes send).
        event: Option<String>,
        /// The image's index in its batch, when the server said so.
        index: Option<u32>,
        /// Everything the server said about the image, when it said anything.
        metadata: Option<ImageMeta>,
        /// That metadata exactly as the server sent it: the type-4 JSON, or the `data` of the
        /// announcement before a type-1 frame (every key, `null`s kept, nothing added).
        metadata_json: Option<serde_json::Value>,
        /// The announcement text message that preceded a type-1 frame, exactly as received.
        announcement: Option<String>,
        /// The image file: PNG, or JPEG when a type-4 frame says `image/jpeg`.
        png: Vec<u8>,
    },
    /// A binary message that is not a PNG image: other ComfyUI binary types (3: text preview,
    /// 1 with format 1: JPEG preview, ...). Kept whole so callers can read them if they want.
    Other {
        /// The big-endian u32 type at the start of the message (0 if it was shorter than 4 bytes).
        kind: u32,
        /// The whole message.
        bytes: Vec<u8>,
    },
}

/// Why the client failed. Bad server messages give [`ClientError::Protocol`], never a panic.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL is not `ws://host[:port]/path[?query]`.
    #[error("bad URL `{url}`: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// TCP connect or socket I/O failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The server refused the upgrade with this HTTP status (401 token, 403 origin, 503 full...).
    #[error("server refused the upgrade with HTTP {0}")]
    Refused(u16),
    /// The WebSocket layer failed (handshake, framing, message too big, connection reset).
    #[error("WebSocket error: {0}")]
    WebSocket(String),
    /// The server sent something protocol.md does not allow.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// `connect` did not finish within [`ClientOptions::connect_timeout`].
    #[error("timed out while connecting")]
    Timeout,
}

impl From<tungstenite::Error> for ClientError {
    fn from(e: tungstenite::Error) -> Self {
        match e {
            tungstenite::Error::Io(io) => ClientError::Io(io),
            tungstenite::Error::Http(resp) => ClientError::Refused(resp.status().as_u16()),
            other => ClientError::WebSocket(other.to_string()),
        }
    }
}

/// A connected client. See the [module docs](self).
pub struct Client {
    ws: WebSocket<NoSigPipe<TcpStream>>,
    sid: String,
    close_code: Option<u16>,
    pending: VecDeque<Event>,
    /// A legacy announcement waiting for its type-1 frame.
    announced: Option<(ImageMeta, String, serde_json::Value, String)>,
    finished: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("sid", &self.sid)
            .finish_non_exhaustive()
    }
}

/// `ws://host:port/path?query` split into the parts we need.
struct WsUrl {
    host: String,
    port: u16,
    path_and_query: String,
}

fn parse_url(url: &str) -> Result<WsUrl, ClientError> {
    let bad = |reason| ClientError::BadUrl {
        url: url.to_string(),
        reason,
    };
    let rest = url.strip_prefix("ws://").ok_or_else(|| {
        bad(if url.starts_with("wss://") {
            "wss:// is not supported (pngcast has no TLS; use a TLS-terminating proxy)"
        } else {
            "expected ws://"
        })
    })?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(bad("missing host or unsupported user info"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let end = v6.find(']').ok_or_else(|| bad("unclosed IPv6 bracket"))?;
        let port = match &v6[end + 1..] {
            "" => 80,
            p => p
                .strip_prefix(':')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| bad("bad port"))?,
        };
        (v6[..end].to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().map_err(|_| bad("bad port"))?),
            None => (authority.to_string(), 80),
        }
    };
    Ok(WsUrl {
        host,
        port,
        path_and_query: path,
    })
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass through).
fn encode_query_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    /// Connects, upgrades, reads the status message and, with `options.metadata`, declares
    /// `supports_preview_metadata` and waits for the server's `feature_flags` answer (so every
    /// image sent after `connect` returns arrives as type 4 from a server that supports it).
    /// Messages that arrive meanwhile are kept and returned by [`Client::next_event`], the status
    /// message first.
    pub fn connect(url: &str, options: ClientOptions) -> Result<Client, ClientError> {
        let start = Instant::now();
        let parsed = parse_url(url)?;
        let mut path = parsed.path_and_query.clone();
        if let Some(id) = &options.client_id {
            path.push(if path.contains('?') { '&' } else { '?' });
            path.push_str("clientId=");
            path.push_str(&encode_query_value(id));
        }
        let host_header = if parsed.host.contains(':') {
            format!("[{}]:{}", parsed.host, parsed.port)
        } else {
            format!("{}:{}", parsed.host, parsed.port)
        };
        let uri: tungstenite::http::Uri =
            format!("ws://{host_header}{path}")
                .parse()
                .map_err(|_| ClientError::BadUrl {
                    url: url.to_string(),
                    reason: "not a valid URI",
                })?;
        let mut request = ClientRequestBuilder::new(uri);
        if let Some(token) = &options.token {
            request = request.with_header("Authorization", format!("Bearer {token}"));
        }

        let addrs: Vec<_> = (parsed.host.as_str(), parsed.port)
            .to_socket_addrs()?
            .collect();
        let mut last_err = io::Error::new(io::ErrorKind::NotFound, "host resolved to no address");
        let mut stream = None;
        for addr in addrs {
            let left = remaining(start, options.connect_timeout)?;
            match TcpStream::connect_timeout(&addr, left) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last_err = e,
            }
        }
        let stream = stream.ok_or(last_err)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(remaining(start, options.connect_timeout)?))?;
        stream.set_write_timeout(Some(options.connect_timeout))?;

        let config = WebSocketConfig::default()
            .max_message_size(Some(options.max_message_bytes))
            .max_frame_size(Some(options.max_message_bytes));
        let (ws, _response) =
            tungstenite::client::client_with_config(request, NoSigPipe(stream), Some(config))
                .map_err(|e| match e {
                    tungstenite::HandshakeError::Failure(e) => map_timeout(ClientError::from(e)),
                    tungstenite::HandshakeError::Interrupted(_) => ClientError::Timeout,
                })?;
        let mut client = Client {
            ws,
            sid: String::new(),
            close_code: None,
            pending: VecDeque::new(),
            announced: None,
            finished: false,
        };

        // protocol.md: the server's first message is the status with the sid.
        while client.pending.is_empty() {
            if !client.fill_timed(start, options.connect_timeout)? {
                return Err(ClientError::Protocol(
                    "connection closed before the status message".into(),
                ));
            }
        }
        match client.pending.front() {
            Some(Event::Json { kind, data, .. }) if kind == "status" => {
                client.sid = data
                    .get("sid")
                    .and_then(|s| s.as_str())
                    .ok_or_else(|| ClientError::Protocol("status message without a sid".into()))?
                    .to_string();
            }
            _ => {
                return Err(ClientError::Protocol(
                    "the first message was not the status message".into(),
                ))
            }
        }

        if options.metadata {
            client.ws.send(Message::text(FEATURE_FLAGS_REQUEST))?;
            while !client
                .pending
                .iter()
                .any(|ev| matches!(ev, Event::Json { kind, .. } if kind == "feature_flags"))
            {
                if !client.fill_timed(start, options.connect_timeout)? {
                    return Err(ClientError::Protocol(
                        "connection closed before the feature_flags answer".into(),
                    ));
                }
            }
        }
        client.ws.get_ref().0.set_read_timeout(None)?;
        client.ws.get_ref().0.set_write_timeout(None)?;
        Ok(client)
    }

    /// The client id the server assigned (the `sid` of its status message).
    pub fn sid(&self) -> &str {
        &self.sid
    }

    /// The close code the server sent, once the connection has ended with a Close frame
    /// (1001 on server shutdown, 1008 on a Reliable overflow, 1009 for an oversized message...).
    pub fn close_code(&self) -> Option<u16> {
        self.close_code
    }

    /// Sets a read timeout for [`Client::next_event`] (`None`: block forever). When it expires,
    /// `next_event` returns an [`ClientError::Io`] of kind `WouldBlock` or `TimedOut`; the
    /// client stays usable and the next call resumes where the read stopped.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<(), ClientError> {
        self.ws.get_ref().0.set_read_timeout(timeout)?;
        Ok(())
    }

    /// Sends a text message (for example a JSON command of the application's own).
    pub fn send_text(&mut self, text: &str) -> Result<(), ClientError> {
        self.ws.send(Message::text(text))?;
        Ok(())
    }

    /// Starts the closing handshake (code 1000) and reads until the server answers.
    pub fn close(mut self) -> Result<(), ClientError> {
        match self.ws.close(None) {
            Ok(()) | Err(tungstenite::Error::ConnectionClosed) => {}
            Err(e) => return Err(e.into()),
        }
        loop {
            match self.ws.read() {
                Ok(_) => {}
                Err(tungstenite::Error::ConnectionClosed)
                | Err(tungstenite::Error::AlreadyClosed) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Blocks until the next event. `Ok(None)` once the server closed the connection (its close
    /// code is then in [`Client::close_code`]). A malformed message gives one
    /// [`ClientError::Protocol`] and the client stays usable; I/O and WebSocket errors end it.
    pub fn next_event(&mut self) -> Result<Option<Event>, ClientError> {
        self.read_event()
    }

    /// [`Self::fill`] with what is left of the connect timeout.
    fn fill_timed(&mut self, start: Instant, limit: Duration) -> Result<bool, ClientError> {
        let left = remaining(start, limit)?;
        self.ws.get_ref().0.set_read_timeout(Some(left))?;
        self.fill().map_err(map_timeout)
    }

    fn read_event(&mut self) -> Result<Option<Event>, ClientError> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Ok(Some(ev));
            }
            if !self.fill()? {
                return Ok(self
                    .announced
                    .take()
                    .map(|(_, kind, data, raw)| Event::Json { kind, data, raw }));
            }
        }
    }

    /// Reads one WebSocket message and turns it into events in `pending` (zero, one or two).
    /// `Ok(false)` once the connection has ended.
    fn fill(&mut self) -> Result<bool, ClientError> {
        if self.finished {
            return Ok(false);
        }
        let msg = match self.ws.read() {
            Ok(m) => m,
            Err(tungstenite::Error::ConnectionClosed) | Err(tungstenite::Error::AlreadyClosed) => {
                self.finished = true;
                return Ok(false);
            }
            Err(e) => {
                if !matches!(&e, tungstenite::Error::Io(io) if is_timeout(io)) {
                    self.finished = true;
                }
                return Err(e.into());
            }
        };
        match msg {
            Message::Text(text) => self.on_text(text.as_str())?,
            Message::Binary(bytes) => self.on_binary(&bytes)?,
            Message::Close(frame) => {
                self.close_code = Some(frame.map(|f| u16::from(f.code)).unwrap_or(1005));
                // tungstenite answers the Close on the next read, which then ends.
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
        Ok(true)
    }

    /// Flushes a held announcement that no type-1 frame followed as a plain JSON event.
    fn flush_announcement(&mut self) {
        if let Some((_, kind, data, raw)) = self.announced.take() {
            self.pending.push_back(Event::Json { kind, data, raw });
        }
    }

    fn on_text(&mut self, text: &str) -> Result<(), ClientError> {
        let bad = |e: String| ClientError::Protocol(format!("bad text message: {e}"));
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let kind = value
            .get("type")
            .and_then(|t| t.as_str())
            .ok_or_else(|| bad("no string `type`".into()))?
            .to_owned();
        let data = value
            .get("data")
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        let parsed = wire::parse_text(text).map_err(|e| bad(e.to_string()))?;
        self.flush_announcement();
        match parsed {
            TextMessage::Announcement(meta) => {
                self.announced = Some((meta, kind, data, text.to_owned()))
            }
            _ => self.pending.push_back(Event::Json {
                kind,
                data,
                raw: text.to_owned(),
            }),
        }
        Ok(())
    }

    fn on_binary(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let word = |at: usize| {
            bytes
                .get(at..at + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        let Some(kind) = word(0) else {
            return Err(ClientError::Protocol(format!(
                "binary message of {} bytes",
                bytes.len()
            )));
        };
        let is_png = match kind {
            wire::TYPE_PREVIEW_IMAGE => word(4) == Some(2),
            wire::TYPE_PREVIEW_IMAGE_WITH_METADATA => true,
            _ => false,
        };
        if !is_png {
            // Other ComfyUI binary types (3: text, 1 with format 1: JPEG preview, ...).
            self.flush_announcement();
            self.pending.push_back(Event::Other {
                kind,
                bytes: bytes.to_vec(),
            });
            return Ok(());
        }
        let parsed = wire::parse_binary(bytes)
            .map_err(|e| ClientError::Protocol(format!("bad binary message: {e}")))?;
        let ev = match parsed {
            BinaryMessage::Legacy { png } => match self.announced.take() {
                Some((meta, kind, data, raw)) => Event::Image {
                    event: Some(kind),
                    index: Some(meta.index),
                    metadata: Some(meta),
                    metadata_json: Some(data),
                    announcement: Some(raw),
                    png: png.to_vec(),
                },
                None => Event::Image {
                    event: None,
                    index: None,
                    metadata: None,
                    metadata_json: None,
                    announcement: None,
                    png: png.to_vec(),
                },
            },
            BinaryMessage::WithMetadata { meta, json, png } => {
                self.flush_announcement();
                Event::Image {
                    event: Some(meta.event.clone()),
                    index: Some(meta.index),
                    metadata_json: serde_json::from_str(json).ok(),
                    metadata: Some(meta),
                    announcement: None,
                    png: png.to_vec(),
                }
            }
        };
        self.pending.push_back(ev);
        Ok(())
    }
}

impl Iterator for Client {
    type Item = Result<Event, ClientError>;

    /// [`Client::next_event`] as an iterator: ends when the connection ends. A
    /// [`ClientError::Protocol`] (one malformed message) is yielded and iteration goes on; after
    /// an I/O or WebSocket error the connection is over and the iterator ends.
    fn next(&mut self) -> Option<Self::Item> {
        if self.finished && self.pending.is_empty() && self.announced.is_none() {
            return None;
        }
        self.next_event().transpose()
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn map_timeout(e: ClientError) -> ClientError {
    match e {
        ClientError::Io(io) if is_timeout(&io) => ClientError::Timeout,
        other => other,
    }
}

fn remaining(start: Instant, limit: Duration) -> Result<Duration, ClientError> {
    match limit.checked_sub(start.elapsed()) {
        Some(d) if !d.is_zero() => Ok(d),
        _ => Err(ClientError::Timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parsing() {
        let u = parse_url("ws://127.0.0.1:8188/ws?clientId=a").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path_and_query.as_str()),
            ("127.0.0.1", 8188, "/ws?clientId=a")
        );
        let u = parse_url("ws://localhost/ws").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("localhost", 80));
        let u = parse_url("ws://[::1]:9/api/ws").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path_and_query.as_str()),
            ("::1", 9, "/api/ws")
        );
        let u = parse_url("ws://h:1?x=1").unwrap();
        assert_eq!(u.path_and_query, "/?x=1");
        for bad in [
            "http://h/ws",
            "wss://h/ws",
            "ws://",
            "ws://h:99999/ws",
            "ws://u@h/ws",
            "ws://[::1/ws",
        ] {
            assert!(
                matches!(parse_url(bad), Err(ClientError::BadUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn query_encoding() {
        assert_eq!(encode_query_value("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(encode_query_value("Az09-._~"), "Az09-._~");
    }
}
