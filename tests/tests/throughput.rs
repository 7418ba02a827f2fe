//! Loopback throughput per transport beside a plain tungstenite sender, and the fan-out rate.
//! A measurement, not a test: it asserts only that every frame arrived, and it is `#[ignore]`d.
//!
//! ```text
//! cargo test --release -p pngcast-tests --test throughput -- --ignored --nocapture --test-threads 1
//! ```

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use pngcast_protocol::http::ServerConfig;
use pngcast_protocol::queue::Policy;
use pngcast_protocol::sink::{FrameSink, Target};
use pngcast_protocol::wire::{ImageMeta, WireFrame};

/// Frame sizes and counts of the issue's table: 16 KiB, 1.3 MB, 5 MB.
const CASES: [(usize, usize); 3] = [(16 * 1024, 4000), (1_300_000, 300), (5_000_000, 80)];

fn config() -> ServerConfig {
    ServerConfig::default()
        .addr(SocketAddr::from(([127, 0, 0, 1], 0)))
        .policy(Policy::Reliable)
        .queue_bytes(2 << 30)
        .announce(false)
}

fn frame(size: usize) -> WireFrame {
    let meta = ImageMeta {
        event: "bench".into(),
        count: 1,
        width: 1,
        height: 1,
        ..Default::default()
    };
    WireFrame::new(&meta, Arc::new(vec![0x5a; size]), false)
}

/// A client that reads its status, then `n` binary messages; returns when the last arrived.
fn reader(addr: SocketAddr, n: usize) -> thread::JoinHandle<Instant> {
    thread::spawn(move || {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
        let config =
            tungstenite::protocol::WebSocketConfig::default().max_message_size(Some(64 << 20));
        let (mut ws, _) = tungstenite::client::client_with_config(
            format!("ws://{addr}/ws").as_str(),
            stream,
            Some(config),
        )
        .unwrap();
        let mut got = 0;
        while got < n {
            match ws.read().unwrap() {
                tungstenite::Message::Binary(_) => got += 1,
                tungstenite::Message::Text(_) | tungstenite::Message::Ping(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        Instant::now()
    })
}

/// Sends `n` frames of `size` to `clients` readers through `sink`; returns (seconds, bytes).
fn run(addr: SocketAddr, sink: &dyn FrameSink, clients: usize, size: usize, n: usize) -> f64 {
    let readers: Vec<_> = (0..clients).map(|_| reader(addr, n)).collect();
    while sink.stats().clients < clients {
        thread::sleep(Duration::from_millis(5));
    }
    let f = frame(size);
    let t0 = Instant::now();
    for _ in 0..n {
        sink.send_image(&Target::All, &f).unwrap();
    }
    let end = readers
        .into_iter()
        .map(|r| r.join().unwrap())
        .max()
        .unwrap();
    (end - t0).as_secs_f64()
}

/// The baseline: one tungstenite server socket writing `Message::Binary` (a shared `Bytes`).
fn run_tungstenite(size: usize, n: usize) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let r = reader(addr, n);
    let (stream, _) = listener.accept().unwrap();
    let mut ws = tungstenite::accept(stream).unwrap();
    ws.send(tungstenite::Message::Text("{}".into())).unwrap();
    let payload = tungstenite::Bytes::from(vec![0x5a; size + 8]);
    let t0 = Instant::now();
    for _ in 0..n {
        ws.write(tungstenite::Message::Binary(payload.clone()))
            .unwrap();
    }
    ws.flush().unwrap();
    let end = r.join().unwrap();
    (end - t0).as_secs_f64()
}

fn report(name: &str, clients: usize, size: usize, n: usize, secs: f64) {
    let bytes = (clients * n * size) as f64;
    println!(
        "{name:<12} clients {clients:>3}  frame {:>9} B  frames {n:>5}  {:>7.2} GB/s  {:>9.0} frames/s",
        size,
        bytes / secs / 1e9,
        (clients * n) as f64 / secs
    );
}

#[test]
#[ignore = "measurement; run with --release --ignored --nocapture"]
fn loopback_throughput() {
    for (size, n) in CASES {
        let secs = run_tungstenite(size, n);
        report("tungstenite", 1, size, n, secs);
        let mio = pngcast_mio::Server::bind(config()).unwrap();
        let secs = run(mio.local_addr(), &*mio.sink(), 1, size, n);
        report("mio", 1, size, n, secs);
        FrameSink::shutdown(&mio, Duration::from_secs(1));
        let blocking = pngcast_blocking::Server::bind(config()).unwrap();
        let secs = run(blocking.local_addr(), &*blocking.sink(), 1, size, n);
        report("blocking", 1, size, n, secs);
        blocking.shutdown(Duration::from_secs(1));
    }
}

#[test]
#[ignore = "measurement; run with --release --ignored --nocapture"]
fn fan_out_200_clients() {
    let (clients, size, n) = (200, 64 * 1024, 100);
    let mio = pngcast_mio::Server::bind(config().max_clients(clients + 8)).unwrap();
    let secs = run(mio.local_addr(), &*mio.sink(), clients, size, n);
    report("mio", clients, size, n, secs);
    FrameSink::shutdown(&mio, Duration::from_secs(1));
    let blocking = pngcast_blocking::Server::bind(config().max_clients(clients + 8)).unwrap();
    let secs = run(blocking.local_addr(), &*blocking.sink(), clients, size, n);
    report("blocking", clients, size, n, secs);
    blocking.shutdown(Duration::from_secs(1));
}
