//! The transport conformance suite: written once, instantiated per backend (rustls's pattern).
//!
//! A backend file (`tests/mio.rs`, `tests/blocking.rs`, `tests/memory.rs`) includes this module
//! with `#[path = "suite/mod.rs"] mod suite;`, implements [`Backend`] for its server (network
//! backends) and calls [`network_suite!`] or [`memory_suite!`] to generate one `#[test]` per case.
//!
//! Cases are generic over a [`Harness`]: something that hands out connected clients and the
//! sink that feeds them. Network harnesses use plain tungstenite clients over blocking std
//! sockets; the memory harness turns [`MemorySink`]'s per-client records into wire bytes with
//! the real [`ClientQueue`], so it checks the same bytes a transport would send.
//!
//! No case has a wall-clock threshold. Reads have a generous timeout only so that a broken
//! transport fails a test instead of hanging it.
#![allow(dead_code)]

pub mod cases;

use std::io::IoSlice;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use pngcast_protocol::http::ServerConfig;
use pngcast_protocol::queue::{ClientQueue, Policy};
use pngcast_protocol::sink::{FrameSink, MemorySink};
use pngcast_protocol::wire::{self, BinaryMessage, ImageMeta, TextMessage, WireFrame};

/// How long a client waits for a message before the test fails (a hang guard, not a threshold).
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A running server of a network backend.
pub trait Server: Send + Sync {
    /// Where it listens.
    fn addr(&self) -> SocketAddr;
    /// Its sink.
    fn sink(&self) -> Arc<dyn FrameSink>;
    /// Close 1001 to every client, flush until the deadline.
    fn shutdown(&self, deadline: Duration);
}

/// A network transport under test.
pub trait Backend: 'static {
    /// Name in messages.
    const NAME: &'static str;
    /// How many concurrent clients the fan-out case connects.
    const MANY_CLIENTS: usize;
    /// Binds a server with `config` (its `addr` is `127.0.0.1:0`).
    fn start(config: ServerConfig) -> Box<dyn Server>;
}

/// A message as a client sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// A close frame with its code (None: no code), or the connection ended (`Some(0)` never
    /// happens; an ended connection without a close frame is [`Msg::Ended`]).
    Close(Option<u16>),
    /// The connection ended without a close frame.
    Ended(String),
}

impl Msg {
    /// The text, or a panic naming what came instead.
    pub fn text(&self) -> &str {
        match self {
            Msg::Text(t) => t,
            other => panic!("expected text, got {}", other.describe()),
        }
    }
    /// Short description (binary payloads are summarised).
    pub fn describe(&self) -> String {
        match self {
            Msg::Text(t) => format!("text {t:.200}"),
            Msg::Binary(b) => format!(
                "binary of {} bytes starting {:?}",
                b.len(),
                &b[..b.len().min(12)]
            ),
            Msg::Close(c) => format!("close {c:?}"),
            Msg::Ended(e) => format!("end of stream ({e})"),
        }
    }
}

/// A connected client.
pub trait Client: Send {
    /// Its clientId (the sid of its status message).
    fn id(&self) -> &str;
    /// The next message; panics after [`READ_TIMEOUT`].
    fn recv(&mut self) -> Msg;
    /// Sends a text message.
    fn send_text(&mut self, text: &str);
    /// Sends a binary message.
    fn send_binary(&mut self, data: &[u8]);
}

/// What every case runs against.
pub trait Harness {
    /// Name in messages.
    fn name(&self) -> &str;
    /// The sink feeding the clients.
    fn sink(&self) -> Arc<dyn FrameSink>;
    /// Connects a client (with this clientId, or a generated one) and consumes the server's
    /// opening: the status message and, with `metadata`, the feature-flags exchange. When this
    /// returns, messages sent to the client's target reach it.
    fn connect(&self, client_id: Option<&str>, metadata: bool) -> Box<dyn Client>;
    /// Stops the server.
    fn shutdown(&self, deadline: Duration) {
        self.sink().shutdown(deadline);
    }
}

// ---------------------------------------------------------------- network harness

/// A network backend's running server as a [`Harness`].
pub struct Net {
    name: &'static str,
    server: Box<dyn Server>,
}

impl Net {
    /// Starts backend `B` with `config` bound to `127.0.0.1:0`.
    pub fn start<B: Backend>(config: ServerConfig) -> Net {
        let config = config.addr(SocketAddr::from(([127, 0, 0, 1], 0)));
        Net {
            name: B::NAME,
            server: B::start(config),
        }
    }
    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }
    /// Opens a WebSocket to `path_and_query` without consuming anything.
    pub fn raw(&self, path_and_query: &str) -> NetClient {
        NetClient::open(self.addr(), path_and_query)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.server.shutdown(Duration::from_millis(200));
    }
}

impl Harness for Net {
    fn name(&self) -> &str {
        self.name
    }
    fn sink(&self) -> Arc<dyn FrameSink> {
        self.server.sink()
    }
    fn connect(&self, client_id: Option<&str>, metadata: bool) -> Box<dyn Client> {
        let path = match client_id {
            Some(id) => format!("/ws?clientId={id}"),
            None => "/ws".to_owned(),
        };
        let mut c = self.raw(&path);
        let first = c.recv();
        let sid = match wire::parse_text(first.text()) {
            Ok(TextMessage::Status { sid: Some(sid), .. }) => sid,
            other => panic!(
                "{}: first message is not a status with sid: {other:?}",
                self.name
            ),
        };
        if let Some(id) = client_id {
            assert_eq!(sid, id, "{}: status sid", self.name);
        }
        c.id = sid;
        if metadata {
            c.send_text(
                r#"{"type": "feature_flags", "data": {"supports_preview_metadata": true}}"#,
            );
            let reply = c.recv();
            assert_eq!(
                reply.text(),
                wire::feature_flags_reply(),
                "{}: feature flags reply",
                self.name
            );
        }
        Box::new(c)
    }
    fn shutdown(&self, deadline: Duration) {
        self.server.shutdown(deadline);
    }
}

/// A tungstenite client over a blocking std socket.
pub struct NetClient {
    /// The sid.
    pub id: String,
    /// The socket.
    pub ws: tungstenite::WebSocket<TcpStream>,
}

impl NetClient {
    /// Connects and upgrades; panics if the server refuses.
    pub fn open(addr: SocketAddr, path_and_query: &str) -> NetClient {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        let url = format!("ws://{addr}{path_and_query}");
        let (ws, _resp) = tungstenite::client::client(url.as_str(), stream)
            .unwrap_or_else(|e| panic!("upgrade to {url} failed: {e}"));
        NetClient {
            id: String::new(),
            ws,
        }
    }
}

impl Client for NetClient {
    fn id(&self) -> &str {
        &self.id
    }
    fn recv(&mut self) -> Msg {
        use tungstenite::{Error, Message};
        loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => return Msg::Text(t.as_str().to_owned()),
                Ok(Message::Binary(b)) => return Msg::Binary(b.to_vec()),
                Ok(Message::Close(c)) => return Msg::Close(c.map(|c| u16::from(c.code))),
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
                Err(Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    panic!("no message within {READ_TIMEOUT:?}")
                }
                Err(e) => return Msg::Ended(e.to_string()),
            }
        }
    }
    fn send_text(&mut self, text: &str) {
        self.ws
            .send(tungstenite::Message::Text(text.into()))
            .expect("send text");
    }
    fn send_binary(&mut self, data: &[u8]) {
        self.ws
            .send(tungstenite::Message::Binary(data.to_vec().into()))
            .expect("send binary");
    }
}

// ---------------------------------------------------------------- memory harness

/// [`MemorySink`] with simulated clients as a [`Harness`]. Every message a client got is put
/// through a real [`ClientQueue`] and parsed back from WebSocket frame bytes.
pub struct Memory {
    sink: Arc<MemorySink>,
}

impl Memory {
    /// A fresh sink.
    pub fn new() -> Memory {
        Memory {
            sink: Arc::new(MemorySink::new()),
        }
    }
    /// The underlying sink.
    pub fn memory(&self) -> &Arc<MemorySink> {
        &self.sink
    }
}

impl Harness for Memory {
    fn name(&self) -> &str {
        "memory"
    }
    fn sink(&self) -> Arc<dyn FrameSink> {
        self.sink.clone()
    }
    fn connect(&self, client_id: Option<&str>, metadata: bool) -> Box<dyn Client> {
        let id = client_id.map_or_else(pngcast_protocol::http::generate_client_id, str::to_owned);
        self.sink.add_client(&id, metadata);
        Box::new(MemoryClient {
            sink: self.sink.clone(),
            id,
            taken: 0,
            pending: Default::default(),
        })
    }
}

/// A simulated client of [`Memory`].
pub struct MemoryClient {
    sink: Arc<MemorySink>,
    id: String,
    taken: usize,
    pending: std::collections::VecDeque<Msg>,
}

impl Client for MemoryClient {
    fn id(&self) -> &str {
        &self.id
    }
    fn recv(&mut self) -> Msg {
        if self.pending.is_empty() {
            let all = self
                .sink
                .client_messages(&self.id)
                .expect("client registered");
            let mut q = ClientQueue::new(Policy::Reliable, usize::MAX);
            for item in &all[self.taken..] {
                q.push(item.clone());
            }
            self.taken = all.len();
            let mut bytes = Vec::new();
            while !q.is_empty() {
                let mut bufs = [IoSlice::new(&[]); 8];
                let n = q.io_slices(&mut bufs);
                let mut len = 0;
                for b in &bufs[..n] {
                    bytes.extend_from_slice(b);
                    len += b.len();
                }
                q.advance(len);
            }
            self.pending.extend(parse_server_frames(&bytes));
        }
        self.pending
            .pop_front()
            .expect("memory client: nothing was sent to it")
    }
    fn send_text(&mut self, _text: &str) {}
    fn send_binary(&mut self, _data: &[u8]) {}
}

/// Parses unmasked server frames (FIN set, no fragmentation) into messages.
pub fn parse_server_frames(mut wire: &[u8]) -> Vec<Msg> {
    let mut out = Vec::new();
    while !wire.is_empty() {
        assert_eq!(wire[0] & 0xf0, 0x80, "FIN set, no RSV bits");
        assert_eq!(wire[1] & 0x80, 0, "server frames are unmasked");
        let op = wire[0] & 0x0f;
        let (len, hl) = match wire[1] & 0x7f {
            126 => (u16::from_be_bytes([wire[2], wire[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(wire[2..10].try_into().unwrap()) as usize,
                10,
            ),
            l => (l as usize, 2),
        };
        let payload = &wire[hl..hl + len];
        out.push(match op {
            1 => Msg::Text(String::from_utf8(payload.to_vec()).expect("UTF-8 text")),
            2 => Msg::Binary(payload.to_vec()),
            8 => Msg::Close(payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]))),
            other => panic!("unexpected opcode {other}"),
        });
        wire = &wire[hl + len..];
    }
    out
}

// ---------------------------------------------------------------- helpers for cases

/// A frame with a fake PNG of `len` bytes whose bytes encode `index` (transports never decode).
pub fn test_frame(event: &str, index: u32, count: u32, len: usize, announce: bool) -> WireFrame {
    let meta = ImageMeta {
        event: event.into(),
        index,
        count,
        width: 8,
        height: 8,
        ..Default::default()
    };
    let mut png = vec![0u8; len.max(8)];
    png[..4].copy_from_slice(&index.to_be_bytes());
    for (i, b) in png[4..].iter_mut().enumerate() {
        *b = (i as u32).wrapping_mul(31).wrapping_add(index) as u8;
    }
    WireFrame::new(&meta, Arc::new(png), announce)
}

/// What a client received, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Got {
    /// A legacy image: its announcement (if any) and the PNG.
    Legacy {
        /// The announcement's metadata, when one preceded the binary message.
        announced: Option<ImageMeta>,
        /// The PNG bytes.
        png: Vec<u8>,
    },
    /// A type-4 image.
    Meta {
        /// The metadata.
        meta: ImageMeta,
        /// The PNG bytes.
        png: Vec<u8>,
    },
    /// A JSON event (not status, not an announcement).
    Event(String, serde_json::Value),
    /// A close with a code.
    Close(Option<u16>),
    /// The connection ended without a close frame.
    Ended(String),
}

impl Got {
    /// The PNG of an image.
    pub fn png(&self) -> Option<&[u8]> {
        match self {
            Got::Legacy { png, .. } | Got::Meta { png, .. } => Some(png),
            _ => None,
        }
    }
    /// The index encoded by [`test_frame`] in the PNG's first four bytes.
    pub fn test_index(&self) -> Option<u32> {
        self.png()
            .map(|p| u32::from_be_bytes(p[..4].try_into().unwrap()))
    }
}

/// Reads the next logical item: an announcement is joined with the binary message after it
/// (which must follow immediately).
pub fn recv_item(c: &mut dyn Client) -> Got {
    match c.recv() {
        Msg::Text(t) => {
            match wire::parse_text(&t).unwrap_or_else(|e| panic!("bad text {t}: {e}")) {
                TextMessage::Announcement(meta) => match c.recv() {
                    Msg::Binary(b) => {
                        match wire::parse_binary(&b).expect("binary after announcement") {
                            BinaryMessage::Legacy { png } => {
                                assert!(
                                    t.contains(&format!("\"bytes\": {}", png.len())),
                                    "announcement bytes match the PNG"
                                );
                                Got::Legacy {
                                    announced: Some(meta),
                                    png: png.to_vec(),
                                }
                            }
                            other => panic!("announcement followed by {other:?}"),
                        }
                    }
                    other => panic!("announcement followed by {}", other.describe()),
                },
                TextMessage::Event { event, data } => Got::Event(event, data),
                other => panic!("unexpected text message {other:?}"),
            }
        }
        Msg::Binary(b) => {
            match wire::parse_binary(&b).unwrap_or_else(|e| panic!("bad binary: {e}")) {
                BinaryMessage::Legacy { png } => Got::Legacy {
                    announced: None,
                    png: png.to_vec(),
                },
                BinaryMessage::WithMetadata { meta, png, .. } => Got::Meta {
                    meta,
                    png: png.to_vec(),
                },
            }
        }
        Msg::Close(c) => Got::Close(c),
        Msg::Ended(e) => Got::Ended(e),
    }
}

/// Reads items until the JSON event named `marker`; returns what came before it.
pub fn recv_until(c: &mut dyn Client, marker: &str) -> Vec<Got> {
    let mut out = Vec::new();
    loop {
        match recv_item(c) {
            Got::Event(e, _) if e == marker => return out,
            g @ (Got::Close(_) | Got::Ended(_)) => panic!(
                "connection ended before `{marker}`: {g:?} after {} items",
                out.len()
            ),
            g => out.push(g),
        }
    }
}

/// Generates one `#[test]` per network case for backend `$b`.
#[macro_export]
macro_rules! network_suite {
    ($b:ty) => {
        mod conformance {
            use super::suite::{cases, Net};
            use super::*;
            fn start(config: pngcast_protocol::http::ServerConfig) -> Net {
                Net::start::<$b>(config)
            }
            #[test]
            fn order_per_client() {
                cases::order_per_client(&start(Default::default()));
            }
            #[test]
            fn targeting_and_broadcast() {
                cases::targeting_and_broadcast(&start(Default::default()));
            }
            #[test]
            fn legacy_and_metadata_clients() {
                cases::legacy_and_metadata_clients(&start(Default::default()));
            }
            #[test]
            fn announcements_off() {
                cases::announcements_off(&start(Default::default()));
            }
            #[test]
            fn sender_frames_decode() {
                cases::sender_frames_decode(&start(Default::default()));
            }
            #[test]
            fn status_first_with_sid() {
                cases::status_first_with_sid(&start(Default::default()));
            }
            #[test]
            fn reconnect_replaces_old_socket() {
                cases::reconnect_replaces_old_socket(&start(Default::default()));
            }
            #[test]
            fn many_clients_receive_every_frame() {
                cases::many_clients_receive_every_frame::<$b>();
            }
            #[test]
            fn stalled_client_does_not_slow_others() {
                cases::stalled_client_does_not_slow_others::<$b>();
            }
            #[test]
            fn latest_wins_drops_are_counted() {
                cases::latest_wins_drops_are_counted::<$b>();
            }
            #[test]
            fn reliable_overflow_closes_1008() {
                cases::reliable_overflow_closes_1008::<$b>();
            }
            #[test]
            fn oversized_inbound_closes_1009() {
                cases::oversized_inbound_closes_1009::<$b>();
            }
            #[test]
            fn shutdown_sends_1001() {
                cases::shutdown_sends_1001::<$b>();
            }
            #[test]
            fn http_routes() {
                cases::http_routes::<$b>();
            }
            #[test]
            fn keepalive_pings() {
                cases::keepalive_pings::<$b>();
            }
            #[test]
            fn stall_timeout_closes_stalled_client() {
                cases::stall_timeout_closes_stalled_client::<$b>();
            }
            #[test]
            fn handshake_limits() {
                cases::handshake_limits::<$b>();
            }
            #[test]
            fn only_first_text_counts() {
                cases::only_first_text_counts::<$b>();
            }
        }
    };
}

/// Generates the cases that apply to [`Memory`].
#[macro_export]
macro_rules! memory_suite {
    () => {
        mod conformance {
            use super::suite::{cases, Memory};
            #[test]
            fn order_per_client() {
                cases::order_per_client(&Memory::new());
            }
            #[test]
            fn targeting_and_broadcast() {
                cases::targeting_and_broadcast(&Memory::new());
            }
            #[test]
            fn legacy_and_metadata_clients() {
                cases::legacy_and_metadata_clients(&Memory::new());
            }
            #[test]
            fn announcements_off() {
                cases::announcements_off(&Memory::new());
            }
            #[test]
            fn sender_frames_decode() {
                cases::sender_frames_decode(&Memory::new());
            }
        }
    };
}
