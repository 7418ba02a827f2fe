//! Hostile input, table-driven, against both transports.
//!
//! [`TABLE`] is the single list of every hostile case: each [`Row`] names a server
//! configuration, an [`Attack`] made by one peer over a raw socket, and the outcomes accepted
//! for that peer ([`Outcome`]: an HTTP status, a WebSocket close code, a silent close, or the
//! connection staying up). [`run`] starts a fresh server with the row's configuration under the
//! `Reliable` policy, connects a healthy client, and keeps a [`Witness`] pumping numbered frames
//! to every client for the whole attack; afterwards the healthy client must have received every
//! frame in order, and the server's client count must come back to one.
//!
//! `hostile.rs` instantiates the table per transport with [`hostile_suite!`] (one `#[test]`
//! per row and transport). No case has a wall-clock threshold: timeouts in configurations are
//! short so the cases end quickly, and reads have a generous hang guard.
#![allow(dead_code)]

pub mod backends;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use pngcast_protocol::http::ServerConfig;
use pngcast_protocol::queue::Policy;
use pngcast_protocol::sink::{FrameSink, SinkStats, Target};

use super::suite::{recv_until, test_frame, Backend, Client, Got, Harness, Net};

/// Hang guard for raw reads (not a threshold: a correct server answers far sooner).
pub const GUARD: Duration = Duration::from_secs(30);

/// What the attacking peer observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP answer with this status, then the connection ended.
    Status(u16),
    /// The connection ended without any answer (or without a WebSocket close frame after 101).
    Closed,
    /// A WebSocket close frame with this code after the upgrade.
    Close(u16),
    /// The connection is still up and answering (pings get their pong).
    Alive,
}

/// What the attacking peer does.
#[derive(Clone, Copy)]
pub enum Attack {
    /// Sends these bytes as the whole request, then reads the answer to the end.
    Http(fn() -> Vec<u8>),
    /// Connects and sends nothing.
    Silent,
    /// Sends a request head one byte every 20 ms, never finishing it.
    Slowloris,
    /// Upgrades properly (to `/ws`), then sends these bytes (client frames) and reads to the end.
    Ws(fn() -> Vec<u8>),
    /// Upgrades, then sends 2000 pings while reading, then a last ping whose pong must come.
    PingFlood,
    /// Sends the upgrade request and these client frames in one write (frames pipelined right
    /// behind the head, before any 101), then reads to the end.
    Pipelined(fn() -> Vec<u8>),
    /// Sends the upgrade request, half-closes (`shutdown(Write)`) at once, reads to the end.
    HalfClosedUpgrade,
}

/// One hostile case.
pub struct Row {
    /// Test name.
    pub name: &'static str,
    /// Changes to the default configuration (on top of `Reliable` and loopback).
    pub config: fn(ServerConfig) -> ServerConfig,
    /// What the peer does.
    pub attack: Attack,
    /// Outcomes accepted for that peer (the first is the one the transports are meant to give).
    pub expect: &'static [Outcome],
}

const UPGRADE: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

/// A valid upgrade head for `target` with `extra` header lines, optionally dropping one line
/// of the standard upgrade headers (`drop` is a prefix of the line, `""` drops nothing).
pub fn upgrade(target: &str, extra: &str, drop: &str) -> Vec<u8> {
    let std_lines: String = UPGRADE
        .split_inclusive("\r\n")
        .filter(|l| drop.is_empty() || !l.starts_with(drop))
        .collect();
    format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{std_lines}{extra}\r\n").into_bytes()
}

/// A client frame: first byte `b0` (FIN/RSV/opcode), `payload`, masked unless `masked` is false.
pub fn frame(b0: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut f = vec![b0];
    let m = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => f.push(m | n as u8),
        n if n <= 0xffff => {
            f.push(m | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(m | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [0x37u8, 0xfa, 0x21, 0x3d];
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        f.extend_from_slice(payload);
    }
    f
}

/// Reads until the peer ends the connection (EOF or reset); panics past [`GUARD`].
pub fn read_to_end(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(GUARD)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("the server kept the connection open past {GUARD:?}")
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return out, // reset after the answer
        }
    }
}

/// The status of an HTTP answer, or [`Outcome::Closed`] for no answer.
pub fn http_outcome(bytes: &[u8]) -> Outcome {
    if bytes.is_empty() {
        return Outcome::Closed;
    }
    let text = String::from_utf8_lossy(bytes);
    assert!(
        text.starts_with("HTTP/1.1 "),
        "not an HTTP answer: {text:.200}"
    );
    Outcome::Status(text[9..12].parse().expect("status code"))
}

/// Server frames after a `101` head: `(opcode, payload)` for every complete frame.
pub fn server_frames(mut b: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while b.len() >= 2 {
        let op = b[0] & 0x0f;
        assert_eq!(b[1] & 0x80, 0, "server frames are unmasked");
        let (len, hl) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 if b.len() >= 10 => (
                u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
                10,
            ),
            126 | 127 => break,
            l => (l as usize, 2),
        };
        if b.len() < hl + len {
            break;
        }
        out.push((op, b[hl..hl + len].to_vec()));
        b = &b[hl + len..];
    }
    out
}

/// The outcome of a WebSocket conversation's bytes (head included): the first close frame's
/// code, or [`Outcome::Closed`].
pub fn ws_outcome(bytes: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(bytes);
    assert!(
        text.starts_with("HTTP/1.1 101"),
        "upgrade refused: {text:.200}"
    );
    let body = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    server_frames(&bytes[body..])
        .into_iter()
        .find(|(op, _)| *op == 8)
        .map_or(Outcome::Closed, |(_, p)| {
            Outcome::Close(
                p.get(..2)
                    .map_or(1005, |c| u16::from_be_bytes([c[0], c[1]])),
            )
        })
}

/// Carries out `attack` against `addr`; returns what the peer saw.
pub fn perform(attack: Attack, addr: SocketAddr) -> Outcome {
    let mut s = TcpStream::connect(addr).expect("connect");
    match attack {
        Attack::Http(bytes) => {
            // The server may answer and close before reading everything: ignore write errors.
            let _ = s.write_all(&bytes());
            http_outcome(&read_to_end(&mut s))
        }
        Attack::Silent => http_outcome(&read_to_end(&mut s)),
        Attack::Slowloris => {
            let head = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
            s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            // 1500 bytes at one per 20 ms: 30 s, far past any handshake timeout used here.
            for i in 0..1500usize {
                let byte = head.get(i).copied().unwrap_or(b'a');
                if s.write_all(&[byte]).is_err() {
                    break;
                }
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => break,
                }
                assert!(i < 1499, "a trickling head was never cut off");
            }
            got.extend(read_to_end(&mut s));
            http_outcome(&got)
        }
        Attack::Ws(frames) => {
            // The head first, then the frames once the 101 is in (a client may not pipeline
            // more than the handshake limit).
            let mut head = open_ws(&mut s, "attacker");
            let _ = s.write_all(&frames());
            head.extend(read_to_end(&mut s));
            ws_outcome(&head)
        }
        Attack::PingFlood => ping_flood(s),
        Attack::Pipelined(frames) => {
            let mut bytes = upgrade("/ws?clientId=attacker", "", "");
            bytes.extend(frames());
            // The server may close before reading it all: ignore write errors.
            let _ = s.write_all(&bytes);
            ws_outcome(&read_to_end(&mut s))
        }
        Attack::HalfClosedUpgrade => {
            s.write_all(&upgrade("/ws?clientId=attacker", "", ""))
                .unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            // The answer, then the end of the connection (no hang: `read_to_end` has a guard).
            http_outcome(&read_to_end(&mut s))
        }
    }
}

/// Sends an upgrade for `client_id` and reads the answer's head; returns the head.
pub fn open_ws(s: &mut TcpStream, client_id: &str) -> Vec<u8> {
    s.write_all(&upgrade(&format!("/ws?clientId={client_id}"), "", ""))
        .unwrap();
    s.set_read_timeout(Some(GUARD)).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    head
}

fn ping_flood(mut s: TcpStream) -> Outcome {
    let mut bytes = open_ws(&mut s, "flooder");
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let ping = frame(0x89, &[0x55; 125], true);
        for _ in 0..2000 {
            if w.write_all(&ping).is_err() {
                return;
            }
        }
        let _ = w.write_all(&frame(0x89, b"last", true));
    });
    let mut buf = [0u8; 64 * 1024];
    let outcome = loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break None,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
        }
        let Some(head) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let frames = server_frames(&bytes[head + 4..]);
        if frames.iter().any(|(op, p)| *op == 0xA && p == b"last") {
            break Some(Outcome::Alive);
        }
        if let Some((_, p)) = frames.iter().find(|(op, _)| *op == 8) {
            break Some(Outcome::Close(u16::from_be_bytes([p[0], p[1]])));
        }
    };
    writer.join().unwrap();
    let outcome = outcome.unwrap_or_else(|| ws_outcome(&bytes));
    // Leave politely (a masked close), then drop.
    let _ = s.write_all(&frame(0x88, &1000u16.to_be_bytes(), true));
    outcome
}

/// Frames pumped to every client while an attack or fault runs, and a healthy client that must
/// receive all of them in order (`Reliable` policy).
pub struct Witness {
    sink: Arc<dyn FrameSink>,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU32>,
    pump: JoinHandle<()>,
    reader: JoinHandle<Vec<Got>>,
}

/// The marker event ending a witness run.
pub const WITNESS_END: &str = "witness_end";

impl Witness {
    /// Starts pumping `len`-byte frames (one every millisecond) to everyone; `healthy` reads
    /// them in a thread. Returns once a few frames are out.
    pub fn start(sink: Arc<dyn FrameSink>, mut healthy: Box<dyn Client>, len: usize) -> Witness {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU32::new(0));
        let reader = std::thread::spawn(move || recv_until(&mut *healthy, WITNESS_END));
        let pump = {
            let (sink, stop, sent) = (sink.clone(), stop.clone(), sent.clone());
            std::thread::spawn(move || {
                let mut i = 0u32;
                while !stop.load(Ordering::Acquire) {
                    sink.send_image(&Target::All, &test_frame("w", i, 0, len, true))
                        .expect("witness send");
                    i += 1;
                    sent.store(i, Ordering::Release);
                    std::thread::sleep(Duration::from_millis(1));
                }
                sink.send_json(&Target::All, WITNESS_END, &serde_json::json!({}))
                    .expect("witness end");
            })
        };
        let w = Witness {
            sink,
            stop,
            sent,
            pump,
            reader,
        };
        while w.sent() < 3 {
            std::thread::sleep(Duration::from_millis(1));
        }
        w
    }
    /// Frames pumped so far.
    pub fn sent(&self) -> u32 {
        self.sent.load(Ordering::Acquire)
    }
    /// Stops the pump and checks the healthy client got frames `0..n` in order (`Reliable`);
    /// returns `n`.
    pub fn finish(self, what: &str) -> u32 {
        let (n, idx) = self.collect(what);
        assert!(
            idx.iter().copied().eq(0..n),
            "{what}: healthy client got {} of {n} frames, first gap at {:?}",
            idx.len(),
            idx.iter().zip(0..).find(|(a, b)| **a != *b)
        );
        n
    }
    /// Stops the pump and checks what `LatestWins` promises the healthy client: frames in
    /// increasing order (some may have been dropped) ending with the newest one, `n - 1`.
    /// Returns `n` and how many the client received.
    pub fn finish_latest(self, what: &str) -> (u32, usize) {
        let (n, idx) = self.collect(what);
        assert!(
            idx.windows(2).all(|w| w[0] < w[1]),
            "{what}: frames out of order or repeated: {idx:?}"
        );
        assert_eq!(
            idx.last().copied(),
            n.checked_sub(1),
            "{what}: the newest frame is not the last one received ({} of {n} received)",
            idx.len()
        );
        (n, idx.len())
    }
    /// Stops the pump, joins the reader; returns the frames sent and the indices received.
    fn collect(self, what: &str) -> (u32, Vec<u32>) {
        self.stop.store(true, Ordering::Release);
        self.pump.join().expect("pump");
        let n = self.sent.load(Ordering::Acquire);
        let got = self.reader.join().expect("healthy reader");
        let idx: Vec<u32> = got
            .iter()
            .map(|g| match g {
                Got::Legacy {
                    announced: Some(m), ..
                } => {
                    assert_eq!(Some(m.index), g.test_index(), "{what}: announcement");
                    m.index
                }
                other => panic!("{what}: healthy client got {other:?}"),
            })
            .collect();
        let _ = &self.sink;
        (n, idx)
    }
}

/// Polls the sink's stats for up to 20 s until `f` holds.
pub fn stats_until(sink: &dyn FrameSink, what: &str, f: impl Fn(&SinkStats) -> bool) -> SinkStats {
    for _ in 0..2000 {
        let s = sink.stats();
        if f(&s) {
            return s;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("never happened: {what}; last stats {:?}", sink.stats())
}

/// Connects the healthy client (with the token when the configuration requires one) and reads
/// its status message.
pub fn connect_healthy(h: &Net, config: &ServerConfig, id: &str) -> Box<dyn Client> {
    let mut path = format!("/ws?clientId={id}");
    if let Some(t) = &config.token {
        path.push_str(&format!("&token={t}"));
    }
    let mut c = h.raw(&path);
    let first = c.recv();
    assert!(first.text().contains("\"status\""), "{}", first.describe());
    c.id = id.to_owned();
    Box::new(c)
}

/// Runs one row against backend `B`.
pub fn run<B: Backend>(row: &Row) {
    let config = (row.config)(ServerConfig::default().policy(Policy::Reliable));
    let h = Net::start::<B>(config.clone());
    let sink = h.sink();
    let healthy = connect_healthy(&h, &config, "healthy");
    stats_until(&*sink, "healthy registered", |s| s.clients == 1);
    let witness = Witness::start(sink.clone(), healthy, 512);
    let got = perform(row.attack, h.addr());
    eprintln!("{} on {}: {got:?}", row.name, B::NAME);
    assert!(
        row.expect.contains(&got),
        "{} on {}: got {got:?}, expected one of {:?}",
        row.name,
        B::NAME,
        row.expect
    );
    stats_until(&*sink, "only the healthy client is left", |s| {
        s.clients == 1
    });
    let n = witness.finish(&format!("{} on {}", row.name, B::NAME));
    assert!(n >= 3);
}

/// The row named `name` (panics if there is none).
pub fn row(name: &str) -> &'static Row {
    TABLE
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no row {name}"))
}

fn same(c: ServerConfig) -> ServerConfig {
    c
}

fn small_messages(c: ServerConfig) -> ServerConfig {
    c.max_message_bytes(1024)
}

fn fast_handshake(c: ServerConfig) -> ServerConfig {
    c.handshake_timeout(Duration::from_millis(300))
}

fn with_token(c: ServerConfig) -> ServerConfig {
    c.token(Some("s3cret".into()))
}

use Outcome::{Close, Closed, Status};

/// Every hostile case. `hostile.rs` must list each name once per transport (checked by the
/// `table_is_complete` test).
pub const TABLE: &[Row] = &[
    // ---- not HTTP, malformed heads, limits
    Row {
        name: "binary_garbage",
        config: same,
        attack: Attack::Http(|| (0..=255u8).rev().chain(*b"\r\n\r\n").collect()),
        expect: &[Status(400), Closed],
    },
    Row {
        name: "tls_client_hello",
        config: same,
        attack: Attack::Http(|| b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n".to_vec()),
        expect: &[Status(400), Closed],
    },
    Row {
        name: "request_line_without_target",
        config: same,
        attack: Attack::Http(|| b"GET\r\n\r\n".to_vec()),
        expect: &[Status(400)],
    },
    Row {
        name: "request_line_bad_version",
        config: same,
        attack: Attack::Http(|| b"GET /ws HTTP/7.3\r\nHost: 127.0.0.1\r\n\r\n".to_vec()),
        expect: &[Status(400)],
    },
    Row {
        name: "request_line_nul_in_method",
        config: same,
        attack: Attack::Http(|| b"G\0T /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec()),
        expect: &[Status(400)],
    },
    Row {
        name: "header_without_colon",
        config: same,
        attack: Attack::Http(|| b"GET / HTTP/1.1\r\nHost x\r\n\r\n".to_vec()),
        expect: &[Status(400)],
    },
    Row {
        name: "header_value_not_utf8",
        config: same,
        attack: Attack::Http(|| {
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: \xff\xfe\r\n\r\n".to_vec()
        }),
        expect: &[Status(400)],
    },
    Row {
        name: "headers_over_size_limit",
        config: |c| c.max_handshake_bytes(1024),
        attack: Attack::Http(|| {
            format!("GET /ws HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(2000)).into_bytes()
        }),
        expect: &[Status(431), Closed],
    },
    Row {
        name: "too_many_headers",
        config: same,
        attack: Attack::Http(|| {
            let mut r = b"GET / HTTP/1.1\r\n".to_vec();
            for i in 0..80 {
                r.extend(format!("X-{i}: v\r\n").bytes());
            }
            r.extend(b"\r\n");
            r
        }),
        expect: &[Status(400), Status(431)],
    },
    Row {
        name: "silent_past_handshake_timeout",
        config: fast_handshake,
        attack: Attack::Silent,
        expect: &[Status(408), Closed],
    },
    Row {
        name: "slowloris_past_handshake_timeout",
        config: fast_handshake,
        attack: Attack::Slowloris,
        expect: &[Status(408), Closed],
    },
    // ---- routing
    Row {
        name: "unknown_path_404",
        config: same,
        attack: Attack::Http(|| b"GET /etc/passwd HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec()),
        expect: &[Status(404)],
    },
    Row {
        name: "path_traversal_404",
        config: same,
        attack: Attack::Http(|| b"GET /../ws HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec()),
        expect: &[Status(404)],
    },
    Row {
        name: "post_405",
        config: same,
        attack: Attack::Http(|| {
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n".to_vec()
        }),
        expect: &[Status(405)],
    },
    Row {
        name: "put_upgrade_405",
        config: same,
        attack: Attack::Http(|| {
            let mut r = upgrade("/ws", "", "");
            r.splice(..3, *b"PUT");
            r
        }),
        expect: &[Status(405)],
    },
    // ---- upgrade headers
    Row {
        name: "missing_websocket_key_400",
        config: same,
        attack: Attack::Http(|| upgrade("/ws", "", "Sec-WebSocket-Key")),
        expect: &[Status(400)],
    },
    Row {
        name: "malformed_websocket_key_400",
        config: same,
        attack: Attack::Http(|| {
            upgrade(
                "/ws",
                "Sec-WebSocket-Key: not-base64!\r\n",
                "Sec-WebSocket-Key",
            )
        }),
        expect: &[Status(400)],
    },
    Row {
        name: "missing_websocket_version_400",
        config: same,
        attack: Attack::Http(|| upgrade("/ws", "", "Sec-WebSocket-Version")),
        expect: &[Status(400)],
    },
    Row {
        name: "wrong_websocket_version_400",
        config: same,
        attack: Attack::Http(|| {
            upgrade(
                "/ws",
                "Sec-WebSocket-Version: 8\r\n",
                "Sec-WebSocket-Version",
            )
        }),
        expect: &[Status(400)],
    },
    Row {
        name: "missing_upgrade_header_400",
        config: same,
        attack: Attack::Http(|| upgrade("/ws", "", "Upgrade")),
        expect: &[Status(400)],
    },
    Row {
        name: "client_id_too_long_400",
        config: same,
        attack: Attack::Http(|| upgrade(&format!("/ws?clientId={}", "x".repeat(300)), "", "")),
        expect: &[Status(400)],
    },
    Row {
        name: "client_id_control_chars_400",
        config: same,
        attack: Attack::Http(|| upgrade("/ws?clientId=a%0Db", "", "")),
        expect: &[Status(400)],
    },
    // ---- origin and token
    Row {
        name: "foreign_origin_403",
        config: same,
        attack: Attack::Http(|| upgrade("/ws", "Origin: http://evil.example\r\n", "")),
        expect: &[Status(403)],
    },
    Row {
        // DNS rebinding: a page at rebind.example (resolving to 127.0.0.1) controls both Host and
        // Origin, so they match; without a token only loopback Host names are served.
        name: "dns_rebinding_upgrade_421",
        config: same,
        attack: Attack::Http(|| {
            String::from_utf8(upgrade("/ws", "Origin: http://rebind.example:8188\r\n", ""))
                .unwrap()
                .replace("Host: 127.0.0.1", "Host: rebind.example:8188")
                .into_bytes()
        }),
        expect: &[Status(421)],
    },
    Row {
        name: "dns_rebinding_viewer_421",
        config: same,
        attack: Attack::Http(|| {
            b"GET / HTTP/1.1\r\nHost: rebind.example:8188\r\nOrigin: http://rebind.example:8188\r\n\r\n"
                .to_vec()
        }),
        expect: &[Status(421)],
    },
    Row {
        name: "repeated_host_400",
        config: same,
        attack: Attack::Http(|| upgrade("/ws", "Host: rebind.example\r\n", "")),
        expect: &[Status(400)],
    },
    Row {
        name: "upgrade_with_body_400",
        config: same,
        attack: Attack::Http(|| {
            upgrade(
                "/ws",
                "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
                "",
            )
        }),
        expect: &[Status(400)],
    },
    Row {
        name: "null_origin_403",
        config: same,
        attack: Attack::Http(|| upgrade("/ws", "Origin: null\r\n", "")),
        expect: &[Status(403)],
    },
    Row {
        name: "origin_with_path_trick_403",
        config: same,
        attack: Attack::Http(|| upgrade("/ws", "Origin: http://127.0.0.1/.evil.example\r\n", "")),
        expect: &[Status(403)],
    },
    Row {
        name: "missing_token_401",
        config: with_token,
        attack: Attack::Http(|| upgrade("/ws", "", "")),
        expect: &[Status(401)],
    },
    Row {
        name: "wrong_token_401",
        config: with_token,
        attack: Attack::Http(|| upgrade("/ws?token=s3cre", "", "")),
        expect: &[Status(401)],
    },
    Row {
        name: "wrong_bearer_401",
        config: with_token,
        attack: Attack::Http(|| upgrade("/ws", "Authorization: Bearer s3cret2\r\n", "")),
        expect: &[Status(401)],
    },
    Row {
        name: "over_client_limit_503",
        // The healthy client holds the only slot.
        config: |c| c.max_clients(1),
        attack: Attack::Http(|| upgrade("/ws", "", "")),
        expect: &[Status(503)],
    },
    // ---- WebSocket frames after a good upgrade
    Row {
        name: "unmasked_frame_1002",
        config: same,
        attack: Attack::Ws(|| frame(0x81, b"hi", false)),
        expect: &[Close(1002)],
    },
    Row {
        name: "invalid_utf8_text_1007",
        config: same,
        attack: Attack::Ws(|| frame(0x81, b"ok \xff\xfe", true)),
        expect: &[Close(1007)],
    },
    Row {
        name: "invalid_utf8_across_fragments_1007",
        config: same,
        attack: Attack::Ws(|| {
            [frame(0x01, b"ab\xe2", true), frame(0x80, b"\x28\xa1", true)].concat()
        }),
        expect: &[Close(1007)],
    },
    Row {
        name: "oversized_message_1009",
        config: small_messages,
        attack: Attack::Ws(|| frame(0x81, &[b'x'; 2000], true)),
        expect: &[Close(1009)],
    },
    Row {
        name: "huge_declared_length_1009",
        config: small_messages,
        // A header declaring 2^62 bytes, then nothing.
        attack: Attack::Ws(|| {
            let mut f = vec![0x82, 0x80 | 127];
            f.extend_from_slice(&(1u64 << 62).to_be_bytes());
            f.extend_from_slice(&[1, 2, 3, 4]);
            f
        }),
        expect: &[Close(1009), Close(1002)],
    },
    Row {
        name: "fragmented_flood_1009",
        config: small_messages,
        // 1 + 200 continuation frames of 20 bytes: 4020 bytes in one message, never finished.
        attack: Attack::Ws(|| {
            let mut f = frame(0x01, &[b'a'; 20], true);
            for _ in 0..200 {
                f.extend(frame(0x00, &[b'b'; 20], true));
            }
            f
        }),
        expect: &[Close(1009)],
    },
    Row {
        name: "empty_fragment_flood_stays_bounded",
        config: small_messages,
        // Continuation frames with empty payloads: no bytes accumulate, so no limit trips;
        // then a final fragment ends the message normally (ignored text) and the peer leaves.
        attack: Attack::Ws(|| {
            let mut f = frame(0x01, b"{", true);
            for _ in 0..2000 {
                f.extend(frame(0x00, b"", true));
            }
            f.extend(frame(0x80, b"}", true));
            f.extend(frame(0x88, &1000u16.to_be_bytes(), true));
            f
        }),
        expect: &[Close(1000)],
    },
    Row {
        name: "control_frame_over_125_bytes_1002",
        config: same,
        attack: Attack::Ws(|| frame(0x89, &[0u8; 126], true)),
        expect: &[Close(1002)],
    },
    Row {
        name: "fragmented_control_frame_1002",
        config: same,
        attack: Attack::Ws(|| frame(0x09, b"ping", true)),
        expect: &[Close(1002)],
    },
    Row {
        name: "reserved_bits_1002",
        config: same,
        attack: Attack::Ws(|| frame(0x80 | 0x40 | 0x01, b"hi", true)),
        expect: &[Close(1002)],
    },
    Row {
        name: "reserved_opcode_1002",
        config: same,
        attack: Attack::Ws(|| frame(0x83, b"hi", true)),
        expect: &[Close(1002)],
    },
    Row {
        name: "continuation_without_start_1002",
        config: same,
        attack: Attack::Ws(|| frame(0x80, b"hi", true)),
        expect: &[Close(1002)],
    },
    Row {
        name: "new_message_inside_fragmented_one_1002",
        config: same,
        attack: Attack::Ws(|| [frame(0x01, b"a", true), frame(0x81, b"b", true)].concat()),
        expect: &[Close(1002)],
    },
    Row {
        name: "binary_message_1003",
        config: same,
        attack: Attack::Ws(|| frame(0x82, &[1, 2, 3], true)),
        expect: &[Close(1003)],
    },
    Row {
        name: "close_with_invalid_code_1002",
        config: same,
        attack: Attack::Ws(|| frame(0x88, &999u16.to_be_bytes(), true)),
        expect: &[Close(1002)],
    },
    Row {
        name: "close_with_one_byte_payload_1002",
        config: same,
        attack: Attack::Ws(|| frame(0x88, &[3], true)),
        expect: &[Close(1002)],
    },
    Row {
        name: "frames_pipelined_behind_upgrade",
        // 20 KiB of client frames right behind a 170-byte head, against a 1 KiB head limit:
        // only the head counts, the frames reach the WebSocket layer, whose answer to the
        // trailing Close proves it read all of them.
        config: |c| c.max_handshake_bytes(1024),
        attack: Attack::Pipelined(|| {
            let mut f = Vec::new();
            for i in 0..40u8 {
                f.extend(frame(0x81, &[b'a' + i % 26; 500], true));
                f.extend(frame(0x89, &[i], true));
            }
            f.extend(frame(0x88, &1000u16.to_be_bytes(), true));
            f
        }),
        expect: &[Close(1000)],
    },
    Row {
        name: "half_close_after_upgrade_101",
        // A valid upgrade request, then EOF at once: both transports answer 101 (and may send
        // the status message), then close the connection, since the peer can send no more.
        config: same,
        attack: Attack::HalfClosedUpgrade,
        expect: &[Status(101)],
    },
    Row {
        name: "ping_flood_answered",
        config: same,
        attack: Attack::PingFlood,
        // The flooder reads its pongs: it stays up (or is closed as a policy violation).
        expect: &[Outcome::Alive, Close(1008)],
    },
];

/// One `#[test]` per row of [`TABLE`] for backend `$b`, and a check that none is missing.
#[macro_export]
macro_rules! hostile_suite {
    ($b:ty, $($row:ident),* $(,)?) => {
        $(
            #[test]
            fn $row() {
                $crate::hostile::run::<$b>($crate::hostile::row(stringify!($row)));
            }
        )*
        #[test]
        fn table_is_complete() {
            let listed = [$(stringify!($row)),*];
            for r in $crate::hostile::TABLE {
                assert!(listed.contains(&r.name), "row {} has no test", r.name);
            }
            assert_eq!(listed.len(), $crate::hostile::TABLE.len());
        }
    };
}
