//! Helpers for the pngcast-mio tests: a server on 127.0.0.1:0, blocking tungstenite clients,
//! frames with recognisable bytes, and raw HTTP requests.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use pngcast_mio::Server;
use pngcast_protocol::http::ServerConfig;
use pngcast_protocol::wire::{self, BinaryMessage, ImageMeta, TextMessage, WireFrame};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

/// A client socket.
pub type Ws = WebSocket<TcpStream>;

/// Guards every blocking read so a broken server fails a test instead of hanging it.
pub const HANG_GUARD: Duration = Duration::from_secs(20);

/// A config bound to an ephemeral loopback port.
pub fn config() -> ServerConfig {
    ServerConfig::default().addr("127.0.0.1:0".parse().unwrap())
}

/// Event loops of the servers the tests start: more than one, so that consecutive connections
/// land in different loops (with no more loops than `PACK_LOOPS`, each accepted connection goes
/// to the loop with the fewest open ones, the lowest first) and every test also covers the
/// cross-loop paths (clientId replacement, targeting, limits, shutdown).
pub const LOOPS: usize = 3;

/// Starts a server with `config` on [`LOOPS`] event loops.
pub fn start(config: ServerConfig) -> Server {
    start_loops(config, LOOPS)
}

/// Starts a server with `config` on `loops` event loops.
pub fn start_loops(config: ServerConfig, loops: usize) -> Server {
    Server::bind_loops(config, std::num::NonZeroUsize::new(loops).unwrap()).expect("bind")
}

/// A frame `index` of `count` whose PNG is `len` bytes of a pattern derived from `index`.
pub fn frame(index: u32, len: usize) -> WireFrame {
    frame_with(index, len, true)
}

/// As [`frame`], choosing whether legacy clients get the announcement.
pub fn frame_with(index: u32, len: usize, announce: bool) -> WireFrame {
    let meta = ImageMeta {
        event: "preview".into(),
        index,
        count: 1000,
        width: 4,
        height: 2,
        ..Default::default()
    };
    let png: Vec<u8> = (0..len)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(index) as u8)
        .collect();
    WireFrame::new(&meta, Arc::new(png), announce)
}

/// Connects to `path` (e.g. `/ws?clientId=a`) with extra headers; returns the socket without
/// reading anything.
pub fn connect_raw(
    server: &Server,
    path: &str,
    headers: &[(&str, &str)],
) -> tungstenite::Result<Ws> {
    let addr = server.local_addr();
    let mut req = format!("ws://{addr}{path}").into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(HANG_GUARD)).unwrap();
    match tungstenite::client(req, stream) {
        Ok((ws, _resp)) => Ok(ws),
        Err(tungstenite::HandshakeError::Failure(e)) => Err(e),
        Err(tungstenite::HandshakeError::Interrupted(_)) => {
            panic!("blocking handshake interrupted")
        }
    }
}

/// Connects, checks that the first message is the status with the sid, optionally declares
/// `supports_preview_metadata` and waits for the server's reply. Returns the socket and the sid.
pub fn connect(server: &Server, path: &str, metadata: bool) -> (Ws, String) {
    let mut ws = connect_raw(server, path, &[]).expect("upgrade");
    let sid = match ws.read().expect("status") {
        Message::Text(t) => match wire::parse_text(&t).expect("status JSON") {
            TextMessage::Status { sid: Some(sid), .. } => sid,
            other => panic!("first message is not the status: {other:?}"),
        },
        other => panic!("first message is not text: {other:?}"),
    };
    if metadata {
        let flags = r#"{"type": "feature_flags", "data": {"supports_preview_metadata": true}}"#;
        ws.send(Message::text(flags)).unwrap();
        match next_message(&mut ws) {
            Got::Text(TextMessage::FeatureFlags { data }) => {
                assert_eq!(data["supports_preview_metadata"], true)
            }
            other => panic!("expected the feature_flags reply, got {other:?}"),
        }
    }
    (ws, sid)
}

/// What a client received.
#[derive(Debug)]
pub enum Got {
    /// A text message (announcements included).
    Text(TextMessage),
    /// A type-1 image (PNG bytes).
    Legacy(Vec<u8>),
    /// A type-4 image.
    Meta(ImageMeta, Vec<u8>),
    /// A close frame with its code.
    Close(Option<CloseCode>),
}

/// The next data or close message, skipping pings and pongs.
pub fn next_message(ws: &mut Ws) -> Got {
    loop {
        match ws.read().expect("read") {
            Message::Text(t) => return Got::Text(wire::parse_text(&t).expect("JSON text")),
            Message::Binary(b) => {
                return match wire::parse_binary(&b).expect("binary message") {
                    BinaryMessage::Legacy { png } => Got::Legacy(png.to_vec()),
                    BinaryMessage::WithMetadata { meta, png, .. } => Got::Meta(meta, png.to_vec()),
                }
            }
            Message::Close(c) => return Got::Close(c.map(|c| c.code)),
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
}

/// Reads until a Close arrives (skipping data) and returns its code.
pub fn read_until_close(ws: &mut Ws) -> Option<CloseCode> {
    loop {
        match ws.read() {
            Ok(Message::Close(c)) => return c.map(|c| c.code),
            Ok(_) => {}
            Err(e) => panic!("connection ended without a close frame: {e}"),
        }
    }
}

/// Reads one legacy image (announcement + type 1) and checks it against `frame`.
pub fn expect_legacy(ws: &mut Ws, expected: &WireFrame) {
    match next_message(ws) {
        Got::Text(TextMessage::Announcement(meta)) => {
            assert_eq!(meta.index, expected.meta().index);
            assert_eq!(meta.event, expected.meta().event);
        }
        other => panic!(
            "expected an announcement for {}, got {other:?}",
            expected.meta().index
        ),
    }
    match next_message(ws) {
        Got::Legacy(png) => assert!(
            png == expected.png(),
            "PNG bytes of frame {}",
            expected.meta().index
        ),
        other => panic!("expected a type-1 image, got {other:?}"),
    }
}

/// Reads one type-4 image and checks it against `frame`.
pub fn expect_meta(ws: &mut Ws, expected: &WireFrame) {
    match next_message(ws) {
        Got::Meta(meta, png) => {
            assert_eq!(meta.index, expected.meta().index);
            assert_eq!(meta.event, "preview");
            assert!(
                png == expected.png(),
                "PNG bytes of frame {}",
                expected.meta().index
            );
        }
        other => panic!("expected a type-4 image, got {other:?}"),
    }
}

/// Reads one text event and returns its `type`.
pub fn expect_event(ws: &mut Ws) -> String {
    match next_message(ws) {
        Got::Text(TextMessage::Event { event, .. }) => event,
        other => panic!("expected a JSON event, got {other:?}"),
    }
}

/// Sends raw bytes as an HTTP request and returns the whole response (until EOF).
pub fn http(server: &Server, request: &[u8]) -> String {
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(HANG_GUARD)).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    // A reset after the response is fine: keep what arrived.
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of an HTTP response.
pub fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"))
}

/// An upgrade request for `path` with extra header lines.
pub fn upgrade_request(path: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// Polls `cond` (bounded: about 20 s) until it holds; the value is returned for the assertion.
pub fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..2000 {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}
