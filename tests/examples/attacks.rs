//! Attacks on a loopback server, measured: what a well-behaved client sees while each attack
//! runs, on both transports. Prints one Markdown table (the "Attacks" table of
//! docs/reliability.md); the pass/fail versions of these attacks are the tests in
//! `tests/tests/attacks/` and `cli/tests/limits.rs`.
//!
//! ```text
//! cargo run --release -p pngcast-tests --example attacks [-- all|mio|blocking [slowloris|flood|stall|slow-readers]]
//! ```
//!
//! - slowloris: 400 connections send a request head one byte per second and never finish it;
//!   then 9 new clients connect one after another: the slowest upgrade (connect to status
//!   message read).
//! - flood: a pump sends 64 KiB frames every 5 ms; a reader counts what it receives for 3 s
//!   alone, then for 3 s while 16 clients send one-byte text frames as fast as they can (and
//!   read): the ratio, and how many flooders were closed 1008.
//! - slow readers: 60 clients reading 1 MB/s each, started 100 ms apart (so each is part-way
//!   through a different frame), while 12.6 MB frames go out every 100 ms for 20 s (the default
//!   256 MiB memory budget): peak and final resident memory of this process above its baseline,
//!   and how many readers were let go.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use pngcast_protocol::http::ServerConfig;
use pngcast_protocol::queue::Policy;
use pngcast_protocol::sink::{FrameSink, Target};
use pngcast_protocol::wire::{ImageMeta, WireFrame};

fn start(transport: &str, config: ServerConfig) -> (Arc<dyn FrameSink>, SocketAddr, Box<dyn Send>) {
    let config = config.addr("127.0.0.1:0".parse().unwrap());
    match transport {
        "mio" => {
            let s = pngcast_mio::Server::bind(config).expect("bind");
            (s.sink(), s.local_addr(), Box::new(s))
        }
        _ => {
            let s = pngcast_blocking::Server::bind(config).expect("bind");
            (s.sink(), s.local_addr(), Box::new(s))
        }
    }
}

fn upgrade_request(id: &str) -> String {
    format!(
        "GET /ws?clientId={id} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
}

/// Upgrades and reads the 101 head and the status message.
fn connect(addr: SocketAddr, id: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(upgrade_request(id).as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).expect("upgrade");
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    read_ws_frame(&mut s);
    s
}

/// Reads one server frame; returns its opcode.
fn read_ws_frame(s: &mut TcpStream) -> u8 {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).expect("frame header");
    let len = match h[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            s.read_exact(&mut l).unwrap();
            u64::from(u16::from_be_bytes(l))
        }
        127 => {
            let mut l = [0u8; 8];
            s.read_exact(&mut l).unwrap();
            u64::from_be_bytes(l)
        }
        n => u64::from(n),
    };
    std::io::copy(&mut s.take(len), &mut std::io::sink()).expect("frame payload");
    h[0] & 0x0f
}

fn frame(len: usize, index: u32) -> WireFrame {
    let meta = ImageMeta {
        event: "attack".into(),
        index,
        count: 0,
        width: 1,
        height: 1,
        ..Default::default()
    };
    let png: Vec<u8> = (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761) as u8)
        .collect();
    WireFrame::new(&meta, Arc::new(png), false)
}

/// Counts binary messages read from `s` until `stop`.
fn count_frames(mut s: TcpStream, count: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut pending: Vec<u8> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(_) => continue,
        }
        // Parse whole frames out of `pending`.
        loop {
            if pending.len() < 2 {
                break;
            }
            let (len, at) = match pending[1] & 0x7f {
                126 if pending.len() >= 4 => {
                    (u16::from_be_bytes([pending[2], pending[3]]) as usize, 4)
                }
                127 if pending.len() >= 10 => (
                    u64::from_be_bytes(pending[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                126 | 127 => break,
                n => (n as usize, 2),
            };
            if pending.len() < at + len {
                break;
            }
            if pending[0] & 0x0f == 0x2 {
                count.fetch_add(1, Ordering::Relaxed);
            }
            pending.drain(..at + len);
        }
    }
}

fn rss_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn slowloris(transport: &str) -> String {
    let (sink, addr, _server) = start(transport, ServerConfig::default());
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut slow: Vec<TcpStream> = (0..400)
                .filter_map(|_| TcpStream::connect(addr).ok())
                .collect();
            let head = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let byte = head.get(i).copied().unwrap_or(b'a');
                slow.retain_mut(|s| s.write_all(&[byte]).is_ok());
                i += 1;
                thread::sleep(Duration::from_secs(1));
            }
            slow.len()
        })
    };
    thread::sleep(Duration::from_secs(2));
    let mut worst = Duration::ZERO;
    let mut clients = Vec::new();
    for i in 0..9 {
        let t = Instant::now();
        clients.push(connect(addr, &format!("new{i}")));
        worst = worst.max(t.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    let _ = trickle.join();
    format!(
        "| slowloris | 400 heads at 1 byte/s, default limits | oldest unfinished heads evicted with 408 past `max_handshakes` (128); 408 at the 5 s head deadline | 9 of 9 new clients in, slowest upgrade {:.1} ms; {} heads refused |",
        worst.as_secs_f64() * 1e3,
        sink.stats().handshakes_refused
    )
}

fn flood(transport: &str) -> String {
    let (sink, addr, _server) = start(transport, ServerConfig::default());
    let good = connect(addr, "good");
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (count, stop) = (count.clone(), stop.clone());
        thread::spawn(move || count_frames(good, count, stop))
    };
    let pump_stop = Arc::new(AtomicBool::new(false));
    let pump = {
        let (sink, stop) = (sink.clone(), pump_stop.clone());
        thread::spawn(move || {
            let f = frame(64 << 10, 0);
            while !stop.load(Ordering::Relaxed) {
                let _ = sink.send_image(&Target::client("good"), &f);
                thread::sleep(Duration::from_millis(5));
            }
        })
    };
    thread::sleep(Duration::from_secs(1));
    let window = Duration::from_secs(3);
    let c0 = count.load(Ordering::Relaxed);
    thread::sleep(window);
    let alone = count.load(Ordering::Relaxed) - c0;
    let flooders: Vec<_> = (0..16)
        .map(|i| {
            let mut s = connect(addr, &format!("flood{i}"));
            thread::spawn(move || {
                let mask = [1u8, 2, 3, 4];
                let one = [
                    0x81u8,
                    0x81,
                    mask[0],
                    mask[1],
                    mask[2],
                    mask[3],
                    b'x' ^ mask[0],
                ];
                let burst: Vec<u8> = one.iter().copied().cycle().take(one.len() * 512).collect();
                let mut r = s.try_clone().unwrap();
                let drain = thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while matches!(r.read(&mut buf), Ok(n) if n > 0) {}
                });
                let t = Instant::now();
                while t.elapsed() < Duration::from_secs(4) && s.write_all(&burst).is_ok() {}
                let _ = s.shutdown(std::net::Shutdown::Both);
                let _ = drain.join();
            })
        })
        .collect();
    let c1 = count.load(Ordering::Relaxed);
    thread::sleep(window);
    let during = count.load(Ordering::Relaxed) - c1;
    for f in flooders {
        let _ = f.join();
    }
    pump_stop.store(true, Ordering::Relaxed);
    let _ = pump.join();
    stop.store(true, Ordering::Relaxed);
    let _ = reader.join();
    let s = sink.stats();
    format!(
        "| inbound flood | 16 clients sending 1-byte text frames flat out while reading; a reader of 64 KiB frames at 200/s | budget of 100 messages/s (bursts of 200) and 1 MiB/s per client, then 1008; input of a closing client is no longer parsed | reader {:.2}x of its rate alone ({alone} vs {during} frames in 3 s); {} of 16 flooders closed 1008 |",
        during as f64 / alone.max(1) as f64,
        s.closed_flood
    )
}

fn slow_readers(transport: &str, budget: usize) -> String {
    let config = ServerConfig::default()
        .policy(Policy::LatestWins)
        .memory_budget(budget)
        .stall_timeout(Duration::from_secs(60));
    let base = rss_kb("VmRSS:");
    let (sink, addr, server) = start(transport, config);
    let stop = Arc::new(AtomicBool::new(false));
    // Each reader takes 1 MB/s, starting 100 ms after the previous one: each is part-way
    // through a different frame, the case where memory grows with lagging clients.
    let readers: Vec<_> = (0..60)
        .map(|i| {
            let mut s = connect(addr, &format!("slow{i}"));
            let stop = stop.clone();
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(100 * i));
                let mut buf = vec![0u8; 64 << 10];
                while !stop.load(Ordering::Relaxed) {
                    if !matches!(s.read(&mut buf), Ok(n) if n > 0) {
                        break;
                    }
                    thread::sleep(Duration::from_millis(64));
                }
            })
        })
        .collect();
    let started = Instant::now();
    let mut i = 0;
    let mut peak_held = 0u64;
    let mut peak_rss = 0u64;
    while started.elapsed() < Duration::from_secs(20) {
        // A fresh 12.6 MB frame each time (as an encoder's output would be).
        let f = frame(12_600_000, i);
        let _ = sink.send_image(&Target::All, &f);
        drop(f);
        i += 1;
        peak_held = peak_held.max(sink.stats().held_bytes);
        peak_rss = peak_rss.max(rss_kb("VmRSS:"));
        thread::sleep(Duration::from_millis(100));
    }
    let s = sink.stats();
    stop.store(true, Ordering::Relaxed);
    drop(server);
    for r in readers {
        let _ = r.join();
    }
    thread::sleep(Duration::from_secs(1));
    let after = rss_kb("VmRSS:");
    format!(
        "| slow readers | 60 clients reading 1 MB/s each (started 100 ms apart), 12.6 MB frames every 100 ms for 20 s, latest-wins, memory budget {} | past the budget of distinct queued frame bytes, a client holding older frames drops them, or is closed 1008 (dropped mid-frame) | peak RSS {} MB above baseline (queued frames peak {} MB); {} readers let go; {} MB above baseline 1 s after the server stopped |",
        if budget == usize::MAX { "off".to_owned() } else { format!("{} MiB", budget >> 20) },
        peak_rss.saturating_sub(base) / 1024,
        peak_held >> 20,
        s.closed_memory,
        after.saturating_sub(base) / 1024
    )
}

fn stalled_reader(transport: &str) -> String {
    let stall = Duration::from_secs(10);
    let (sink, addr, _server) = start(
        transport,
        ServerConfig::default()
            .policy(Policy::LatestWins)
            .stall_timeout(stall),
    );
    let stalled = connect(addr, "stalled");
    let started = Instant::now();
    let f = frame(1 << 20, 0);
    // Frames until the server gives up on the client; the socket's buffers fill within the
    // first few frames, after which no byte moves.
    let mut last_progress = started;
    let mut last_sent = 0;
    while sink.stats().closed_stall == 0 && started.elapsed() < Duration::from_secs(60) {
        let _ = sink.send_image(&Target::All, &f);
        let sent = sink.stats().bytes_sent;
        if sent != last_sent {
            last_sent = sent;
            last_progress = Instant::now();
        }
        thread::sleep(Duration::from_millis(10));
    }
    let closed = started.elapsed();
    drop(stalled);
    format!(
        "| stalled reader | a client that stops reading, 1 MiB frames every 10 ms, stall timeout 10 s | no write progress for the stall timeout: the client is dropped | dropped {:.1} s after its last byte moved ({:.1} s after the first frame) |",
        (closed - last_progress.duration_since(started)).as_secs_f64(),
        closed.as_secs_f64()
    )
}

fn main() {
    // `attacks [mio|blocking] [slowloris|flood|stall|slow-readers]`
    let only: Option<String> = std::env::args().nth(1);
    let attack: Option<String> = std::env::args().nth(2);
    let run = |name: &str| attack.as_deref().is_none_or(|a| a == name);
    println!("| transport | attack | parameters | what the server does | measured |");
    println!("|---|---|---|---|---|");
    for transport in ["mio", "blocking"] {
        if only
            .as_deref()
            .is_some_and(|o| o != transport && o != "all")
        {
            continue;
        }
        let mut rows = Vec::new();
        if run("slowloris") {
            rows.push(slowloris(transport));
        }
        if run("flood") {
            rows.push(flood(transport));
        }
        if run("stall") {
            rows.push(stalled_reader(transport));
        }
        if run("slow-readers") {
            rows.push(slow_readers(transport, 256 << 20));
            rows.push(slow_readers(transport, usize::MAX));
        }
        for row in rows {
            println!("| {transport} {row}");
        }
    }
}
