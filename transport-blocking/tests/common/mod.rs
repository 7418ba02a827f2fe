//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pngcast_blocking::Server;
use pngcast_protocol::http::ServerConfig;
use pngcast_protocol::wire::{ImageMeta, WireFrame};

/// A config on an ephemeral loopback port.
pub fn config() -> ServerConfig {
    ServerConfig::default().addr(SocketAddr::from(([127, 0, 0, 1], 0)))
}

pub fn start(config: ServerConfig) -> Server {
    Server::bind(config).expect("bind")
}

pub fn ws_url(server: &Server) -> String {
    format!("ws://{}/ws", server.local_addr())
}

/// A real PNG of `w`x`h` RGB whose pixels depend on `seed`, made with the `png` crate.
pub fn png_bytes(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let mut pixels = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            pixels.push((x.wrapping_mul(7).wrapping_add(seed)) as u8);
            pixels.push((y.wrapping_mul(13).wrapping_add(seed * 3)) as u8);
            pixels.push((x ^ y ^ seed) as u8);
        }
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Fast);
        let mut writer = enc.write_header().unwrap();
        writer.write_image_data(&pixels).unwrap();
    }
    out
}

/// A frame of a real PNG, or of `len` filler bytes when `len` is given (for volume tests where
/// nobody decodes the PNG).
pub fn frame(event: &str, index: u32, count: u32, announce: bool) -> WireFrame {
    let png = png_bytes(8, 6, index);
    let meta = ImageMeta {
        event: event.into(),
        index,
        count,
        width: 8,
        height: 6,
        ..Default::default()
    };
    WireFrame::new(&meta, Arc::new(png), announce)
}

pub fn big_frame(index: u32, len: usize) -> WireFrame {
    let meta = ImageMeta {
        event: "big".into(),
        index,
        count: 1,
        width: 1,
        height: 1,
        ..Default::default()
    };
    WireFrame::new(&meta, Arc::new(vec![index as u8; len]), true)
}

/// Polls `cond` until it holds; panics after `limit` (a liveness bound, not a speed claim).
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > limit {
            panic!("timed out waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends a raw HTTP request and returns the whole answer (until the server closes).
pub fn raw_http(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

pub fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or("")
}

/// A valid upgrade request head for `target`, with extra header lines.
pub fn upgrade_request(target: &str, extra: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Opens a WebSocket by hand and then never reads: the kernel buffers fill and the server's
/// writes to it stall. Returns the socket (keep it alive) after the `101`.
pub fn never_reading_client(addr: SocketAddr, client_id: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    let mut w = &s;
    w.write_all(upgrade_request(&format!("/ws?clientId={client_id}"), "").as_bytes())
        .unwrap();
    // Read exactly the 101 head, byte by byte, and nothing of the frames.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    let mut r = &s;
    while !head.ends_with(b"\r\n\r\n") {
        r.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}
