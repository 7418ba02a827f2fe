//! Loopback throughput of pngcast-mio, beside a plain tungstenite sender in the same run.
//!
//! ```text
//! cargo run --release -p pngcast-benches --example mio_throughput [-- --quick]
//! ```
//!
//! For each case the sender queues every frame at once and the clock runs until every client has
//! read the last one; figures are the median of three runs. Clients are raw TCP readers that parse
//! WebSocket frame headers and discard payloads, so the figure is the server's, not a client
//! library's. The tungstenite peer serves one client from a blocking socket with
//! `WebSocket::send(Message::Binary(..))` (one copy of prefix + PNG per send, as a plain server does).
//! Frames are incompressible random bytes of the given size: the transport never looks inside.
//!
//! Besides wall-clock rates, each line gives the CPU time the sending thread used per GB
//! (Linux `schedstat` of the event-loop thread, or of the tungstenite sender thread): on a shared,
//! loaded machine that figure is steadier than the rates, which then measure the scheduler.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pngcast_protocol::http::ServerConfig;
use pngcast_protocol::queue::Policy;
use pngcast_protocol::sink::{FrameSink, Target};
use pngcast_protocol::wire::{ImageMeta, WireFrame};
use tungstenite::Message;

/// Connects to a WebSocket server and discards everything after the handshake, counting binary
/// frames. Returns once `frames` binary frames were read.
struct Reader {
    inner: BufReader<TcpStream>,
}

impl Reader {
    fn connect(addr: std::net::SocketAddr, path: &str) -> Reader {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let mut inner = BufReader::with_capacity(256 * 1024, s);
        let mut line = String::new();
        loop {
            line.clear();
            inner.read_line(&mut line).expect("handshake");
            if line == "\r\n" {
                break;
            }
            assert!(!line.is_empty(), "server closed during handshake");
        }
        Reader { inner }
    }

    /// Reads frames until `frames` binary frames were seen; returns their payload bytes.
    fn drain(&mut self, frames: usize) -> io::Result<u64> {
        let mut seen = 0;
        let mut bytes = 0u64;
        while seen < frames {
            let mut h = [0u8; 2];
            self.inner.read_exact(&mut h)?;
            let len = match h[1] & 0x7f {
                126 => {
                    let mut b = [0u8; 2];
                    self.inner.read_exact(&mut b)?;
                    u64::from(u16::from_be_bytes(b))
                }
                127 => {
                    let mut b = [0u8; 8];
                    self.inner.read_exact(&mut b)?;
                    u64::from_be_bytes(b)
                }
                n => u64::from(n),
            };
            let copied = io::copy(&mut (&mut self.inner).take(len), &mut io::sink())?;
            if copied != len {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            if h[0] & 0x0f == 0x2 {
                seen += 1;
                bytes += len;
            }
        }
        Ok(bytes)
    }
}

fn frames(size: usize, count: usize) -> Vec<WireFrame> {
    let mut rng = fastrand_like(size as u64);
    let png: Arc<Vec<u8>> = Arc::new((0..size).map(|_| rng()).collect());
    (0..count)
        .map(|i| {
            let meta = ImageMeta {
                event: "preview".into(),
                index: i as u32,
                count: count as u32,
                width: 1024,
                height: 1024,
                ..Default::default()
            };
            WireFrame::new(&meta, png.clone(), false)
        })
        .collect()
}

/// A tiny xorshift byte generator (no extra dependency for an example).
fn fastrand_like(seed: u64) -> impl FnMut() -> u8 {
    let mut x = seed | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    }
}

/// CPU nanoseconds a thread has run, from `/proc/<path>/schedstat` (0 where unavailable).
fn cpu_ns(task: &str) -> u64 {
    std::fs::read_to_string(format!("{task}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The `/proc` directory of this process's thread named `name`.
fn find_thread(name: &str) -> Option<String> {
    std::fs::read_dir("/proc/self/task")
        .ok()?
        .flatten()
        .find_map(|e| {
            let dir = e.path().to_string_lossy().into_owned();
            let comm = std::fs::read_to_string(format!("{dir}/comm")).ok()?;
            (comm.trim_end() == name).then_some(dir)
        })
}

/// One measurement: wall seconds and sender CPU seconds.
#[derive(Clone, Copy)]
struct Run {
    secs: f64,
    cpu: f64,
}

/// pngcast-mio: `clients` readers, `count` frames of `size` bytes.
fn run_mio(size: usize, count: usize, clients: usize) -> Run {
    let config = ServerConfig::default()
        .addr("127.0.0.1:0".parse().unwrap())
        .policy(Policy::Reliable)
        .queue_bytes(usize::MAX / 2)
        .max_clients(clients + 8);
    let server = pngcast_mio::Server::bind(config).expect("bind");
    let addr = server.local_addr();
    let mut readers: Vec<Reader> = (0..clients).map(|_| Reader::connect(addr, "/ws")).collect();
    let frames = frames(size, count);
    // Wait until the server counts every client, so no frame is sent before a client exists.
    while server.stats().clients < clients {
        std::thread::sleep(Duration::from_millis(1));
    }
    let task = find_thread("pngcast-mio");
    let cpu0 = task.as_deref().map_or(0, cpu_ns);
    let start = Instant::now();
    let threads: Vec<_> = readers
        .drain(..)
        .map(|mut r| std::thread::spawn(move || r.drain(count).expect("drain")))
        .collect();
    for f in &frames {
        server.send_image(&Target::All, f).unwrap();
    }
    for t in threads {
        t.join().unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = task.as_deref().map_or(0, cpu_ns).saturating_sub(cpu0) as f64 / 1e9;
    server.shutdown(Duration::from_secs(1));
    Run { secs, cpu }
}

/// A plain tungstenite server sending the same binary messages to one client.
fn run_tungstenite(size: usize, count: usize) -> Run {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let frames = frames(size, count);
    let server = std::thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        sock.set_nodelay(true).unwrap();
        let mut ws = tungstenite::accept(sock).expect("accept");
        // Wait for the go signal (any message), so the timer and the sends start together.
        let _ = ws.read();
        let cpu0 = cpu_ns("/proc/thread-self");
        for f in &frames {
            ws.send(Message::Binary(f.binary_message(false).into()))
                .unwrap();
        }
        let cpu = cpu_ns("/proc/thread-self").saturating_sub(cpu0) as f64 / 1e9;
        (ws, cpu)
    });
    let mut reader = Reader::connect(addr, "/");
    // The go signal: a masked empty text frame.
    reader
        .inner
        .get_mut()
        .write_all(&[0x81, 0x80, 0, 0, 0, 0])
        .unwrap();
    let start = Instant::now();
    reader.drain(count).expect("drain");
    let secs = start.elapsed().as_secs_f64();
    let (_ws, cpu) = server.join().unwrap();
    Run { secs, cpu }
}

/// The run with the median wall time.
fn median(mut v: Vec<Run>) -> Run {
    v.sort_by(|a, b| a.secs.total_cmp(&b.secs));
    v[v.len() / 2]
}

fn report(name: &str, size: usize, count: usize, clients: usize, run: Run) {
    let bytes = (size + 8) as f64 * count as f64 * clients as f64;
    let gb = bytes / 1e9;
    println!(
        "{name:<12} {clients:>3} client(s) {size:>8} B x {count:>5}: {:>6.3} GB/s {:>8.0} frames/s ({:>7.0} per client) | sender CPU {:>6.3} s/GB",
        gb / run.secs,
        (count * clients) as f64 / run.secs,
        count as f64 / run.secs,
        run.cpu / gb,
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runs = if quick { 1 } else { 3 };
    // (frame size, frames per run): about 200-400 MB per single-client run.
    let single = [(16 * 1024, 20_000), (1_300_000, 250), (5_000_000, 64)];
    for (size, count) in single {
        let count = if quick { count / 4 } else { count };
        let mio = median((0..runs).map(|_| run_mio(size, count, 1)).collect());
        report("pngcast-mio", size, count, 1, mio);
        let tung = median((0..runs).map(|_| run_tungstenite(size, count)).collect());
        report("tungstenite", size, count, 1, tung);
    }
    for (size, count) in [(16 * 1024, 200), (1_300_000, 10)] {
        let mio = median((0..runs).map(|_| run_mio(size, count, 200)).collect());
        report("pngcast-mio", size, count, 200, mio);
    }
}
