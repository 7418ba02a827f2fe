//! Soak: streams 1 MP PNG frames to a churning population of clients for a set time and prints
//! frames sent, delivered, drops, closes by reason, RSS, open fds and threads every interval.
//!
//! ```text
//! cargo run --release -p pngcast-tests --example soak -- <mio|blocking> [seconds=600]
//!     [fps=10] [steady=8] [churners=4] [reliable]
//! ```
//!
//! One 1024x1024 RGB frame is encoded once and shared (the transports never copy it); the
//! sender pushes it `fps` times a second to everyone. `steady` clients read everything (they
//! are what "delivered" counts); each of `churners` threads connects a client, reads a random
//! number of messages, and leaves one of four ways (clean close, drop, drop mid-frame, stop
//! reading until the server closes it), over and over. Not a test: no pass/fail, figures only.
#![forbid(unsafe_code)]

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pngcast_core::png::{encode, EncodeOptions, ImageInfo};
use pngcast_protocol::http::ServerConfig;
use pngcast_protocol::queue::Policy;
use pngcast_protocol::sink::{FrameSink, Target};
use pngcast_protocol::wire::{ImageMeta, WireFrame};

fn proc_status(key: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_owned()))
        .unwrap_or_default()
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn churner(addr: SocketAddr, stop: Arc<AtomicBool>, cycles: Arc<AtomicU64>, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    while !stop.load(Ordering::Relaxed) {
        let Ok(s) = TcpStream::connect(addr) else {
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
        let url = format!("ws://{addr}/ws");
        let Ok((mut ws, _)) = tungstenite::client::client(url.as_str(), s) else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let reads = rng.usize(1..40);
        for _ in 0..reads {
            if ws.read().is_err() {
                break;
            }
        }
        match rng.u8(0..4) {
            0 => {
                let _ = ws.close(None);
                while ws.read().is_ok() {}
            }
            1 => drop(ws),
            2 => {
                // Read a few bytes of the next frame, then vanish (RST: unread data).
                let mut s = ws.into_inner();
                let mut b = [0u8; 100];
                let _ = s.read(&mut b);
            }
            _ => {
                // Stop reading: the server's queue limit or stall timeout closes it.
                std::thread::sleep(Duration::from_millis(rng.u64(200..3000)));
            }
        }
        cycles.fetch_add(1, Ordering::Relaxed);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let transport = args.first().map_or("mio", String::as_str).to_owned();
    let num = |i: usize, d: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let (secs, fps, steady, churners) = (num(1, 600), num(2, 10), num(3, 8), num(4, 4));
    let reliable = args.iter().any(|a| a == "reliable");
    let config = ServerConfig::default()
        .addr("127.0.0.1:0".parse().unwrap())
        .policy(if reliable {
            Policy::Reliable
        } else {
            Policy::LatestWins
        })
        .queue_bytes(32 << 20)
        .stall_timeout(Duration::from_secs(2))
        .write_timeout(Duration::from_secs(2));
    let (server_addr, sink, shutdown): (SocketAddr, Arc<dyn FrameSink>, Box<dyn Fn()>) =
        match transport.as_str() {
            "mio" => {
                let s = Arc::new(pngcast_mio::Server::bind(config).expect("bind"));
                let s2 = s.clone();
                (
                    s.local_addr(),
                    pngcast_mio::Server::sink(&s),
                    Box::new(move || FrameSink::shutdown(&*s2, Duration::from_secs(2))),
                )
            }
            "blocking" => {
                let s = Arc::new(pngcast_blocking::Server::bind(config).expect("bind"));
                let s2 = s.clone();
                (
                    s.local_addr(),
                    s.sink(),
                    Box::new(move || s2.shutdown(Duration::from_secs(2))),
                )
            }
            other => panic!("transport must be mio or blocking, not {other}"),
        };

    // One 1 MP frame with some structure (not a flat colour), encoded once.
    let (w, h) = (1024u32, 1024u32);
    let pixels: Vec<u8> = (0..w * h * 3)
        .map(|i| ((i % 3071) ^ (i / 3072)) as u8)
        .collect();
    let info = ImageInfo {
        width: w,
        height: h,
        channels: 3,
        bit_depth: Default::default(),
    };
    let png = Arc::new(encode(&info, &pixels, &EncodeOptions::default()).expect("encode"));
    println!(
        "soak: {transport}, {secs}s, {fps} fps of a {w}x{h} PNG ({} bytes), {steady} steady readers, {churners} churners, {}",
        png.len(),
        if reliable { "Reliable" } else { "LatestWins" }
    );

    let stop = Arc::new(AtomicBool::new(false));
    let delivered = Arc::new(AtomicU64::new(0));
    let cycles = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for _ in 0..steady {
        let (delivered, stop) = (delivered.clone(), stop.clone());
        let s = TcpStream::connect(server_addr).unwrap();
        let url = format!("ws://{server_addr}/ws");
        let (mut ws, _) = tungstenite::client::client(url.as_str(), s).unwrap();
        handles.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match ws.read() {
                    Ok(tungstenite::Message::Binary(_)) => {
                        delivered.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        }));
    }
    for k in 0..churners {
        let (stop, cycles) = (stop.clone(), cycles.clone());
        handles.push(std::thread::spawn(move || {
            churner(server_addr, stop, cycles, k)
        }));
    }

    let start = Instant::now();
    let period = Duration::from_secs_f64(1.0 / fps.max(1) as f64);
    let mut sent = 0u64;
    let mut next_report = Duration::from_secs(10);
    println!("t_s\tsent\tdelivered_steady\tqueued\twritten\tdropped\tclients\tclosed\toverflow\tstall\tbad_input\trefused\tchurn_cycles\trss\tfds\tthreads");
    while start.elapsed() < Duration::from_secs(secs) {
        let meta = ImageMeta {
            event: "soak".into(),
            index: sent as u32,
            count: 0,
            width: w,
            height: h,
            ..Default::default()
        };
        sink.send_image(&Target::All, &WireFrame::new(&meta, png.clone(), true))
            .expect("send");
        sent += 1;
        if start.elapsed() >= next_report {
            let s = sink.stats();
            println!(
                "{}\t{sent}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                start.elapsed().as_secs(),
                delivered.load(Ordering::Relaxed),
                s.frames_queued,
                s.frames_sent,
                s.frames_dropped,
                s.clients,
                s.clients_closed,
                s.closed_overflow,
                s.closed_stall,
                s.closed_bad_input,
                s.handshakes_refused,
                cycles.load(Ordering::Relaxed),
                proc_status("VmRSS:"),
                fds(),
                proc_status("Threads:"),
            );
            next_report += Duration::from_secs(10);
        }
        std::thread::sleep(period.saturating_sub(Duration::from_micros(200)));
    }
    stop.store(true, Ordering::Relaxed);
    shutdown();
    for h in handles {
        let _ = h.join();
    }
    let s = sink.stats();
    println!(
        "end: sent {sent}, steady readers got {} of {} (per-reader frames x readers), stats {s:?}, rss {}, fds {}, threads {}",
        delivered.load(Ordering::Relaxed),
        sent * steady,
        proc_status("VmRSS:"),
        fds(),
        proc_status("Threads:")
    );
}
