//! Added relay latency and edge throughput. Starts its own `redis-server` on a free port
//! (argument 1: its path, default `redis-server`), without persistence.
//!
//! - latency: one frame at a time, sink -> loopback WebSocket client, direct (local server sink)
//!   vs relayed (Publisher -> Redis -> Edge -> local server sink); p50/p99 over 200 frames, for
//!   512x512 and 1 MP payload sizes (PNG-sized byte payloads: the relay never decodes them);
//! - throughput: 1 MP frames published as fast as the publisher takes them, to 1, 2 and 4
//!   edges with 10 clients each; frames per second received by all clients.
//!
//! `cargo run --release -p pngcast-relay-redis --example relay`

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pngcast_protocol::http::ServerConfig;
use pngcast_protocol::sink::{FrameSink, Target};
use pngcast_protocol::wire::{ImageMeta, WireFrame};
use pngcast_relay_redis::{Edge, EdgeConfig, Publisher, PublisherConfig};
use tungstenite::{Message, WebSocket};

struct Redis(Child);
impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn frame(index: u32, bytes: usize) -> WireFrame {
    let meta = ImageMeta {
        event: "preview".into(),
        index,
        count: 1,
        width: 1,
        height: 1,
        ..ImageMeta::default()
    };
    let mut png = vec![0u8; bytes];
    png[..4].copy_from_slice(&index.to_be_bytes());
    WireFrame::new(&meta, Arc::new(png), false)
}

fn server() -> pngcast_mio::Server {
    let mut cfg = ServerConfig::default();
    cfg.addr = "127.0.0.1:0".parse().unwrap();
    cfg.queue_bytes = 64 << 20;
    pngcast_mio::Server::bind(cfg).unwrap()
}

fn client(s: &pngcast_mio::Server) -> WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>> {
    let (ws, _) = tungstenite::connect(format!("ws://{}/ws", s.local_addr())).unwrap();
    ws
}

fn next_index(ws: &mut WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>) -> u32 {
    loop {
        if let Message::Binary(b) = ws.read().unwrap() {
            return u32::from_be_bytes([b[8], b[9], b[10], b[11]]);
        }
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p) as usize]
}

fn main() {
    let bin = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "redis-server".into());
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("pngcast-relay-bench-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let _redis = Redis(
        Command::new(bin)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let url = format!("redis://127.0.0.1:{port}/?namespace=bench");

    println!("latency (ms), sink call -> client has the frame, 200 frames each");
    for (name, bytes) in [("512^2 (~250 KB)", 250_000), ("1 MP (~1 MB)", 1_000_000)] {
        let s = server();
        let sink = s.sink();
        let mut ws = client(&s);
        while sink.stats().clients < 1 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut direct = Vec::new();
        for i in 0..200 {
            let f = frame(i, bytes);
            let t = Instant::now();
            sink.send_image(&Target::All, &f).unwrap();
            assert_eq!(next_index(&mut ws), i);
            direct.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let edge = Edge::start(&url, s.sink(), EdgeConfig::default()).unwrap();
        while !edge.stats().connected {
            std::thread::sleep(Duration::from_millis(5));
        }
        let publisher = Publisher::connect(&url, PublisherConfig::default()).unwrap();
        let mut relayed = Vec::new();
        for i in 1000..1200 {
            let f = frame(i, bytes);
            let t = Instant::now();
            publisher.send_image(&Target::All, &f).unwrap();
            while next_index(&mut ws) != i {}
            relayed.push(t.elapsed().as_secs_f64() * 1e3);
        }
        println!(
            "  {name}: direct p50 {:.2} p99 {:.2}; relayed p50 {:.2} p99 {:.2}",
            pct(&mut direct, 0.5),
            pct(&mut direct, 0.99),
            pct(&mut relayed, 0.5),
            pct(&mut relayed, 0.99)
        );
    }

    println!("throughput, 1 MB frames, 300 published, 10 clients per edge");
    for edges in [1usize, 2, 4] {
        // Each round ends on its own index: an edge that subscribes replays the newest frame
        // kept in Redis, which is the previous round's last frame.
        let end = u32::MAX - edges as u32;
        let received = Arc::new(AtomicU64::new(0));
        let mut servers = Vec::new();
        let mut relays = Vec::new();
        let mut readers = Vec::new();
        for _ in 0..edges {
            let s = server();
            relays.push(Edge::start(&url, s.sink(), EdgeConfig::default()).unwrap());
            for _ in 0..10 {
                let mut ws = client(&s);
                // A reader that has seen nothing for 10 s stops (a client that missed the last
                // frame must not hang the run; the missing frames show in the count).
                if let tungstenite::stream::MaybeTlsStream::Plain(t) = ws.get_ref() {
                    t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                }
                let r = Arc::clone(&received);
                readers.push(std::thread::spawn(move || {
                    while let Ok(m) = ws.read() {
                        if let Message::Binary(b) = m {
                            r.fetch_add(1, Ordering::Relaxed);
                            if u32::from_be_bytes([b[8], b[9], b[10], b[11]]) == end {
                                return;
                            }
                        }
                    }
                }));
            }
            while s.sink().stats().clients < 10 {
                std::thread::sleep(Duration::from_millis(5));
            }
            servers.push(s);
        }
        while relays.iter().any(|e| !e.stats().connected) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut pc = PublisherConfig::default();
        pc.queue_len = 8;
        let publisher = Publisher::connect(&url, pc).unwrap();
        let t = Instant::now();
        for i in 0..300 {
            publisher
                .send_image(&Target::All, &frame(i, 1_000_000))
                .unwrap();
            // Keep the publisher queue from dropping: measure what the pipeline carries.
            while publisher.publisher_stats().queued - publisher.publisher_stats().published > 4 {
                std::thread::yield_now();
            }
        }
        publisher
            .send_image(&Target::All, &frame(end, 1_000_000))
            .unwrap();
        for r in readers {
            let _ = r.join();
        }
        let secs = t.elapsed().as_secs_f64();
        let got = received.load(Ordering::Relaxed);
        let dropped: u64 = servers
            .iter()
            .map(|s| s.sink().stats().frames_dropped)
            .sum();
        let subs: u64 = relays.iter().map(|e| e.stats().subscribes).sum();
        println!(
            "  {edges} edge(s): {:.0} frames/s published, {:.0} frames/s delivered to {} clients ({} dropped by LatestWins, {got} of {} frames received, {subs} subscribes)",
            301.0 / secs,
            got as f64 / secs,
            edges * 10,
            dropped,
            301 * edges as u64 * 10
        );
        drop(publisher);
        drop(relays);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
