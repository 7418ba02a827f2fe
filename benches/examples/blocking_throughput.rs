//! Loopback throughput of the blocking transport beside the mio transport and a plain
//! tungstenite sender, same run.
//!
//! For 16 KiB, 1.3 MB and 5 MB frames sent to one client: GB/s (payload bytes on the wire) and
//! frames/s, median of repeated runs. Then the fan-out rate: 200 clients each receiving every
//! 64 KiB frame (frames/s per client, and the aggregate GB/s), for both transports. The receiver is the same for both: a raw socket that does
//! the upgrade by hand and then reads and discards bytes until it has seen every frame, so what
//! is measured is the sender.
//!
//! - `pngcast-blocking`: `Server::send_image` of one shared frame N times (Reliable policy, queue
//!   large enough for all of them: the PNG is shared, so this costs N small queue entries);
//!   the writer thread does `write_vectored([ws header][prefix][png])`.
//! - `pngcast-mio`: the same through the event-loop transport.
//! - tungstenite: `WebSocket::send(Message::Binary(bytes))` of the same prefix+PNG payload, on a
//!   blocking socket, as a straightforward server would do it.
//!
//! Run: `cargo run --release -p pngcast-benches --example blocking_throughput [-- --reps 5]`

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use pngcast_blocking::Server;
use pngcast_protocol::http::ServerConfig;
use pngcast_protocol::queue::Policy;
use pngcast_protocol::sink::{FrameSink, Target};
use pngcast_protocol::wire::{
    self, ImageMeta, WireFrame, LEGACY_PREFIX, OPCODE_BINARY, OPCODE_TEXT,
};

fn ws_len(payload: usize) -> usize {
    let mut h = [0u8; 10];
    wire::ws_frame_header(OPCODE_BINARY, payload as u64, &mut h) + payload
}

/// Upgrades by hand, then reads and discards until `expect` bytes of frames have arrived.
/// Returns when the last byte arrived.
fn receiver(addr: SocketAddr, id: &str, expect: usize) -> thread::JoinHandle<Instant> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(
        format!(
            "GET /ws?clientId={id} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0usize;
        while got < expect {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "sender closed early at {got} of {expect}");
            got += n;
        }
        Instant::now()
    })
}

/// A pngcast transport under test: its address and sink (the server lives as long as the box).
type Started = (SocketAddr, Arc<dyn FrameSink>, Box<dyn std::any::Any>);

fn start_blocking(config: ServerConfig) -> Started {
    let server = Server::bind(config).unwrap();
    (server.local_addr(), server.sink(), Box::new(server))
}

fn start_mio(config: ServerConfig) -> Started {
    let server = pngcast_mio::Server::bind(config).unwrap();
    (server.local_addr(), server.sink(), Box::new(server))
}

/// A pngcast transport: seconds to deliver `n` frames to one client.
fn run_ours(start: fn(ServerConfig) -> Started, png: &Arc<Vec<u8>>, n: usize) -> f64 {
    run_fanout(start, png, n, 1)
}

/// Plain tungstenite: seconds to deliver `n` binary messages of prefix+PNG.
fn run_tungstenite(png: &Arc<Vec<u8>>, n: usize) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut payload = LEGACY_PREFIX.to_vec();
    payload.extend_from_slice(png);
    let expect = n * ws_len(payload.len());
    let payload = tungstenite::Bytes::from(payload);
    let sender = thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        sock.set_nodelay(true).unwrap();
        let mut ws = tungstenite::accept(sock).unwrap();
        let start = Instant::now();
        for _ in 0..n {
            ws.send(tungstenite::Message::Binary(payload.clone()))
                .unwrap();
        }
        (start, ws)
    });
    let rx = receiver(addr, "bench", expect);
    let end = rx.join().unwrap();
    let (start, _ws) = sender.join().unwrap();
    end.duration_since(start).as_secs_f64()
}

/// Fan-out: seconds until each of `clients` receivers has all `n` frames.
fn run_fanout(
    start: fn(ServerConfig) -> Started,
    png: &Arc<Vec<u8>>,
    n: usize,
    clients: usize,
) -> f64 {
    let config = ServerConfig::default()
        .addr(SocketAddr::from(([127, 0, 0, 1], 0)))
        .policy(Policy::Reliable)
        .queue_bytes(usize::MAX / 4)
        .max_clients(clients + 8)
        .announce(false);
    let (addr, server, _guard) = start(config);
    let frames = n * ws_len(LEGACY_PREFIX.len() + png.len());
    let rxs: Vec<_> = (0..clients)
        .map(|i| {
            let id = format!("c{i:04}");
            let status = wire::status_message(&id);
            let mut h = [0u8; 10];
            let status_len =
                wire::ws_frame_header(OPCODE_TEXT, status.len() as u64, &mut h) + status.len();
            receiver(addr, &id, status_len + frames)
        })
        .collect();
    while server.stats().clients < clients {
        thread::sleep(Duration::from_millis(1));
    }
    let meta = ImageMeta {
        event: "bench".into(),
        count: 1,
        width: 1,
        height: 1,
        ..Default::default()
    };
    let frame = WireFrame::new(&meta, Arc::clone(png), false);
    let start = Instant::now();
    for _ in 0..n {
        server.send_image(&Target::All, &frame).unwrap();
    }
    let end = rxs.into_iter().map(|rx| rx.join().unwrap()).max().unwrap();
    end.duration_since(start).as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let reps = args
        .iter()
        .position(|a| a == "--reps")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(5usize);
    // About 300 MB per run and size.
    let sizes: [(&str, usize, usize); 3] = [
        ("16 KiB", 16 << 10, 20_000),
        ("1.3 MB", 1_300_000, 240),
        ("5 MB", 5_000_000, 64),
    ];
    println!("loopback, 1 client, median of {reps} runs (payload = 8-byte prefix + PNG bytes)");
    println!(
        "{:<8} {:<18} {:>9} {:>12}",
        "frame", "sender", "GB/s", "frames/s"
    );
    for (label, len, n) in sizes {
        // Incompressible filler stands in for the PNG: the transport never looks inside.
        let mut rng = 0x9e3779b97f4a7c15u64;
        let png: Arc<Vec<u8>> = Arc::new(
            (0..len)
                .map(|_| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng as u8
                })
                .collect(),
        );
        let bytes = (n * (len + LEGACY_PREFIX.len())) as f64;
        let mut blocking = Vec::new();
        let mut mio = Vec::new();
        let mut tung = Vec::new();
        for _ in 0..reps {
            // Interleaved so all three see the same machine load.
            blocking.push(run_ours(start_blocking, &png, n));
            mio.push(run_ours(start_mio, &png, n));
            tung.push(run_tungstenite(&png, n));
        }
        for (name, secs) in [
            ("pngcast-blocking", median(blocking)),
            ("pngcast-mio", median(mio)),
            ("tungstenite send", median(tung)),
        ] {
            println!(
                "{label:<8} {name:<18} {:>9.2} {:>12.0}",
                bytes / secs / 1e9,
                n as f64 / secs
            );
        }
    }

    // Fan-out: 200 clients, 64 KiB frames (every client gets every frame).
    let (clients, len, n) = (200usize, 64 << 10, 200usize);
    let png: Arc<Vec<u8>> = Arc::new((0..len).map(|i| (i * 31 % 251) as u8).collect());
    let fan_reps = reps.min(3);
    println!();
    println!("fan-out: {clients} clients, 64 KiB frames, {n} frames, median of {fan_reps} runs");
    println!(
        "{:<18} {:>14} {:>18}",
        "transport", "frames/s", "aggregate GB/s"
    );
    let mut blocking = Vec::new();
    let mut mio = Vec::new();
    for _ in 0..fan_reps {
        blocking.push(run_fanout(start_blocking, &png, n, clients));
        mio.push(run_fanout(start_mio, &png, n, clients));
    }
    for (name, secs) in [
        ("pngcast-blocking", median(blocking)),
        ("pngcast-mio", median(mio)),
    ] {
        let total = (clients * n * (len + LEGACY_PREFIX.len())) as f64;
        println!(
            "{name:<18} {:>14.0} {:>18.2}",
            n as f64 / secs,
            total / secs / 1e9
        );
    }
}
