//! System bench: f32 tensor handed to `Sender::send` -> last byte of the frame read by a loopback
//! client, per transport (pngcast-mio, pngcast-blocking), beside ComfyUI's own path measured by
//! `benches/python/comfy_baseline.py` on the same pixels.
//!
//! ```text
//! cargo run --release -p pngcast-benches --example latency [-- --quick]
//! python3 benches/python/comfy_baseline.py
//! ```
//!
//! Prints JSON lines (one object per measurement, field `kind`):
//! - `latency`: per size (512^2, 1024^2, 2048^2, 3840x2160 RGB) and transport, p50/p99 of
//!   `t_recv - t0` over frames sent one at a time (the next frame starts once the previous one
//!   arrived). `t0` is taken just before `Sender::send` (convert + encode with the default
//!   `Compression::Fast` on the global rayon pool + hand to the sink); `t_recv` is taken by the
//!   reader thread when it has read the last payload byte of the binary frame. Also the p50 and
//!   p99 of each part: `send` (t0 to its return), to the first bytes at the reader (the
//!   transport's and the reader's wake-ups, the first write) and from there to the last byte
//!   (the loopback copy in and out).
//! - `fanout`: 1 MP frames encoded back to back by one `Sender` and delivered to 1, 10, 50 and 100
//!   clients (one shared frame per send, `Reliable` policy): frames/s each client received, CPU
//!   per frame (server side: every thread of this process except the readers, from
//!   `/proc/self/task/*/schedstat`; and the whole process), RSS per client. Each row twice:
//!   `"readers":"copy"` (readers copy every payload out, as real clients do, but here on the
//!   server's two cores) and `"readers":"discard"` (readers drop payloads in the kernel with
//!   `recv(MSG_TRUNC)`, Linux: the server's capacity when its clients are elsewhere).
//! - `allocs`: allocations per frame in steady state (1 MP, one client), counted by a wrapping
//!   global allocator over every thread (the reader allocates nothing after warm-up), split into
//!   the sending thread (`Sender::send`: encode + `WireFrame` + queue push) and the rest (rayon
//!   workers, transport threads); plus `Sender::send` into a sink that drops frames, which
//!   isolates the sender's own share.
//!
//! Sections: `latency`, `allocs`, `fanout` (all three when none is named), `fanout100` (only the
//! 100-client rows), `profile1mp` (a long 1 MP latency loop for `perf record`);
//! `--transport=mio|blocking` and `--readers=copy|discard` narrow the rows, `--quick` cuts the
//! frame counts by ten, `--mio-loops=N` sets pngcast-mio's event loops, `--sndbuf=BYTES` both
//! transports' loopback send buffer (`0`: the kernel's autotuning).
//!
//! `--one-thread` encodes on the sending thread alone (`Threads::Fixed(1)`) for the latency rows.
//! The sending (main) thread is worker 0 of the global rayon pool (`use_current_thread`, as in
//! `pngcast serve`); `--caller-outside-pool` leaves it outside, so each frame is injected into
//! the pool from outside (rayon's injector then allocates a block per 63 frames).
//!
//! The client is a raw TCP reader that does the upgrade by hand and parses WebSocket frame
//! headers, reading payloads into one reused buffer: it costs less than any client library, so the
//! figure is the server's path plus the kernel's loopback copy.
#![deny(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpStream};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use pngcast_core::png::{EncodeOptions, Threads};
use pngcast_core::tensor::TensorView;
use pngcast_protocol::http::ServerConfig;
use pngcast_protocol::queue::Policy;
use pngcast_protocol::sender::{FrameExtra, Sender};
use pngcast_protocol::sink::{FrameSink, SinkError, SinkStats, Target};
use pngcast_protocol::wire::WireFrame;
use socket2::SockRef;

// ---------------------------------------------------------------------------------------------
// Counting allocator.

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static ALLOC_BYTES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Allocations made by this thread while counting (const-initialised: no allocation).
    static MINE: Cell<u64> = const { Cell::new(0) };
}

fn count(size: usize) {
    if COUNTING.load(Ordering::Relaxed) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        ALLOC_BYTES.fetch_add(size as u64, Ordering::Relaxed);
        let _ = MINE.try_with(|c| c.set(c.get() + 1));
    }
}

#[allow(unsafe_code)]
// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so `System`'s
// guarantees hold; the counters are atomics and a const thread-local `Cell`, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: forwarded unchanged; `ptr` came from `System` with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

// ---------------------------------------------------------------------------------------------
// Content: the Kodak photo mirror-tiled to size, as comfy_baseline.py builds it.

/// 0,1,..,n-1,n-1,..,0,0,1,.. (numpy: `p = i % 2n; p if p < n else 2n-1-p`).
fn reflect(i: usize, n: usize) -> usize {
    let p = i % (2 * n);
    if p < n {
        p
    } else {
        2 * n - 1 - p
    }
}

fn load_source() -> (Vec<u8>, usize, usize) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/images/kodim23.png");
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(path).expect("benches/images/kodim23.png"),
    ));
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("png data");
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    (buf, info.width as usize, info.height as usize)
}

/// `[H, W, 3]` f32 in 0..1: `u8 as f32 / 255.0`, as numpy does in float32.
fn tensor(src: &(Vec<u8>, usize, usize), width: usize, height: usize) -> Vec<f32> {
    let (px, w0, h0) = (&src.0, src.1, src.2);
    let mut out = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        let sy = reflect(y, h0);
        for x in 0..width {
            let s = (sy * w0 + reflect(x, w0)) * 3;
            out.extend(px[s..s + 3].iter().map(|&v| f32::from(v) / 255.0));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Transports.

#[derive(Clone, Copy, Debug)]
enum Kind {
    Mio,
    Blocking,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Mio => "pngcast-mio",
            Kind::Blocking => "pngcast-blocking",
        }
    }
}

enum Server {
    Mio(pngcast_mio::Server),
    Blocking(pngcast_blocking::Server),
}

impl Server {
    fn start(kind: Kind, clients: usize) -> Server {
        let config = ServerConfig::default()
            .addr("127.0.0.1:0".parse().unwrap())
            .policy(Policy::Reliable)
            .queue_bytes(1 << 30)
            .max_clients(clients + 8)
            .loopback_send_buffer(loopback_send_buffer());
        match kind {
            Kind::Mio => Server::Mio(match mio_loops() {
                Some(n) => pngcast_mio::Server::bind_loops(config, n).expect("bind"),
                None => pngcast_mio::Server::bind(config).expect("bind"),
            }),
            Kind::Blocking => {
                Server::Blocking(pngcast_blocking::Server::bind(config).expect("bind"))
            }
        }
    }
    fn sink(&self) -> Arc<dyn FrameSink> {
        match self {
            Server::Mio(s) => s.sink(),
            Server::Blocking(s) => s.sink(),
        }
    }
    fn addr(&self) -> SocketAddr {
        match self {
            Server::Mio(s) => s.local_addr(),
            Server::Blocking(s) => s.local_addr(),
        }
    }
    fn wait_clients(&self, n: usize) {
        let sink = self.sink();
        let start = Instant::now();
        while sink.stats().clients < n {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "clients did not connect"
            );
            thread::sleep(Duration::from_millis(2));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The reader.

/// What a reader thread publishes: binary frames completed and when the last one completed.
struct Progress {
    frames: AtomicUsize,
    /// When the reader had the first bytes (the WebSocket header) of the latest binary frame.
    first_ns: AtomicU64,
    last_ns: AtomicU64,
    base: Instant,
    waiter: thread::Thread,
}

fn connect(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(
        s,
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).expect("handshake");
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "upgrade refused");
    s
}

/// How a reader takes a frame's payload off its socket.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Payload {
    /// `read` into one reused buffer, as a real client does (the kernel copies every byte out).
    Copy,
    /// `recv(MSG_TRUNC)`: Linux TCP drops the bytes without copying them. For the fan-out
    /// rows that measure the server: on this 2-core machine the readers of 100 clients would
    /// otherwise spend as much CPU copying 150 MB per frame out of loopback as the server
    /// spends putting it in, which real clients on other machines do not take from the server.
    Discard,
}

impl Payload {
    fn name(self) -> &'static str {
        match self {
            Payload::Copy => "copy",
            Payload::Discard => "discard",
        }
    }
}

/// Reads frames until the socket closes; after each complete binary frame, bumps `frames`,
/// stores the time and unparks the waiter. Allocates nothing after start.
fn read_loop(mut s: TcpStream, p: Arc<Progress>, buf_len: usize, payload: Payload) {
    // One `recv` into one buffer either way; with MSG_TRUNC the kernel never writes it, so its
    // pages are never touched: only its length counts.
    let (size, flags) = match payload {
        Payload::Copy => (buf_len, 0),
        Payload::Discard => (DISCARD_LEN, libc::MSG_TRUNC),
    };
    let mut buf: Box<[MaybeUninit<u8>]> = Box::new_uninit_slice(size);
    loop {
        let mut h = [0u8; 2];
        if s.read_exact(&mut h).is_err() {
            return;
        }
        let mut len = match h[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                s.read_exact(&mut b).unwrap();
                u64::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                s.read_exact(&mut b).unwrap();
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        if h[0] & 0x0f == 0x2 {
            let now = p.base.elapsed().as_nanos() as u64;
            p.first_ns.store(now, Ordering::Release);
        }
        while len > 0 {
            let want = len.min(buf.len() as u64) as usize;
            match SockRef::from(&s).recv_with_flags(&mut buf[..want], flags) {
                Ok(0) | Err(_) => return,
                Ok(n) => len -= n as u64,
            }
        }
        if h[0] & 0x0f == 0x2 {
            let now = p.base.elapsed().as_nanos() as u64;
            p.last_ns.store(now, Ordering::Release);
            p.frames.fetch_add(1, Ordering::AcqRel);
            p.waiter.unpark();
        }
    }
}

/// Largest payload piece one `recv(MSG_TRUNC)` may drop.
const DISCARD_LEN: usize = 4 << 20;

struct Readers {
    progress: Vec<Arc<Progress>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Readers {
    fn start(
        addr: SocketAddr,
        n: usize,
        base: Instant,
        buf_len: usize,
        payload: Payload,
    ) -> Readers {
        let mut progress = Vec::new();
        let mut threads = Vec::new();
        for i in 0..n {
            let s = connect(addr);
            let p = Arc::new(Progress {
                frames: AtomicUsize::new(0),
                first_ns: AtomicU64::new(0),
                last_ns: AtomicU64::new(0),
                base,
                waiter: thread::current(),
            });
            progress.push(p.clone());
            threads.push(
                thread::Builder::new()
                    .name(format!("reader-{i}"))
                    .stack_size(64 * 1024)
                    .spawn(move || read_loop(s, p, buf_len, payload))
                    .unwrap(),
            );
        }
        Readers { progress, threads }
    }

    /// Parks until every reader has completed `frames` binary frames.
    fn wait_all(&self, frames: usize) {
        let start = Instant::now();
        for p in &self.progress {
            while p.frames.load(Ordering::Acquire) < frames {
                thread::park_timeout(Duration::from_millis(5));
                assert!(start.elapsed() < Duration::from_secs(300), "frames lost");
            }
        }
    }

    fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Measurements.

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let i = ((q * (sorted.len() - 1) as f64).round() as usize).min(sorted.len() - 1);
    sorted[i]
}

/// One `Sender::send` of a one-image batch; returns the PNG size.
fn send_one(sender: &mut Sender, t: &[f32], w: usize, h: usize) -> usize {
    let view = TensorView::bhwc(t, [1, h, w, 3]).expect("view");
    sender
        .send("preview", &view, &Target::All, &FrameExtra::default())
        .expect("send")
        .png_bytes
}

/// `--sndbuf=BYTES`: both transports' loopback send buffer (`0`: the kernel's autotuning;
/// default: `ServerConfig`'s).
fn loopback_send_buffer() -> Option<usize> {
    match std::env::args().find_map(|a| a.strip_prefix("--sndbuf=").map(str::to_owned)) {
        None => ServerConfig::default().loopback_send_buffer,
        Some(v) => pngcast_benches::parse_send_buffer(&v).unwrap_or_else(|e| {
            eprintln!("latency: --sndbuf {e}");
            std::process::exit(2)
        }),
    }
}

/// `--mio-loops=N`: the mio server's event loops (default: `Server::bind`'s, one per core).
fn mio_loops() -> Option<NonZeroUsize> {
    std::env::args()
        .find_map(|a| a.strip_prefix("--mio-loops=").map(str::to_owned))
        .and_then(|n| n.parse().ok())
}

/// `--one-thread`: encode on the calling thread (`Threads::Fixed(1)`) instead of the global
/// rayon pool; on a loaded machine this avoids waiting for a second worker to be scheduled.
fn one_thread() -> bool {
    std::env::args().any(|a| a == "--one-thread")
}

fn options() -> EncodeOptions {
    if one_thread() {
        EncodeOptions::default().threads(Threads::Fixed(NonZeroUsize::MIN))
    } else {
        EncodeOptions::default()
    }
}

fn latency(kind: Kind, t: &[f32], w: usize, h: usize, frames: usize, warmup: usize) {
    let server = Server::start(kind, 1);
    let base = Instant::now();
    let readers = Readers::start(server.addr(), 1, base, 1 << 20, Payload::Copy);
    server.wait_clients(1);
    let mut sender = Sender::new(server.sink(), options()).expect("sender");
    let p = readers.progress[0].clone();
    let mut lat = Vec::with_capacity(frames);
    // Time inside `send` (convert + encode + hand-off), the rest being delivery: from `send`'s
    // return to the reader's first bytes (the transport's wake-up, its first write, the
    // reader's wake-up), then to the last byte (the loopback copy in and out).
    let mut send = Vec::with_capacity(frames);
    let mut first = Vec::with_capacity(frames);
    let mut rest = Vec::with_capacity(frames);
    let mut png_bytes = 0;
    for k in 0..warmup + frames {
        let t0 = base.elapsed().as_nanos() as u64;
        png_bytes = send_one(&mut sender, t, w, h);
        let t_sent = base.elapsed().as_nanos() as u64;
        while p.frames.load(Ordering::Acquire) < k + 1 {
            thread::park_timeout(Duration::from_millis(2));
        }
        let t_first = p.first_ns.load(Ordering::Acquire);
        let t1 = p.last_ns.load(Ordering::Acquire);
        if k >= warmup {
            let ms = |a: u64, b: u64| b.saturating_sub(a) as f64 / 1e6;
            lat.push(ms(t0, t1));
            send.push(ms(t0, t_sent));
            first.push(ms(t_sent, t_first));
            rest.push(ms(t_first, t1));
        }
    }
    server.sink().shutdown(Duration::from_secs(1));
    readers.join();
    for v in [&mut lat, &mut send, &mut first, &mut rest] {
        v.sort_by(f64::total_cmp);
    }
    let mean = lat.iter().sum::<f64>() / lat.len() as f64;
    println!(
        "{{\"kind\":\"latency\",\"impl\":\"pngcast\",\"threads\":\"{}\",\"transport\":\"{}\",\"width\":{w},\"height\":{h},\
         \"frames\":{frames},\"png_bytes\":{png_bytes},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\
         \"mean_ms\":{mean:.3},\"min_ms\":{:.3},\"send_p50_ms\":{:.3},\
         \"to_first_byte_p50_ms\":{:.3},\"first_to_last_byte_p50_ms\":{:.3},\
         \"send_p99_ms\":{:.3},\"to_first_byte_p99_ms\":{:.3},\"first_to_last_byte_p99_ms\":{:.3}}}",
        if one_thread() { "1" } else { "global pool" },
        kind.name(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat[0],
        percentile(&send, 0.5),
        percentile(&first, 0.5),
        percentile(&rest, 0.5),
        percentile(&send, 0.99),
        percentile(&first, 0.99),
        percentile(&rest, 0.99)
    );
}

/// CPU nanoseconds of this process's threads (`/proc/self/task/*/schedstat`): (server side =
/// every thread not named `reader-*`, all threads).
fn cpu_ns() -> (u64, u64) {
    let mut server = 0;
    let mut all = 0;
    for e in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let dir = e.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let ns: u64 = std::fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        all += ns;
        if !comm.starts_with("reader-") {
            server += ns;
        }
    }
    (server, all)
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn fanout(
    kind: Kind,
    t: &[f32],
    w: usize,
    h: usize,
    clients: usize,
    frames: usize,
    payload: Payload,
) {
    let rss0 = rss_bytes();
    let server = Server::start(kind, clients);
    let base = Instant::now();
    let readers = Readers::start(server.addr(), clients, base, 64 * 1024, payload);
    server.wait_clients(clients);
    let mut sender = Sender::new(server.sink(), EncodeOptions::default()).expect("sender");
    // Warm-up: two frames through.
    for _ in 0..2 {
        send_one(&mut sender, t, w, h);
    }
    readers.wait_all(2);
    let rss1 = rss_bytes();
    let (srv0, all0) = cpu_ns();
    let start = Instant::now();
    for _ in 0..frames {
        send_one(&mut sender, t, w, h);
    }
    readers.wait_all(frames + 2);
    let secs = start.elapsed().as_secs_f64();
    let (srv1, all1) = cpu_ns();
    let rss2 = rss_bytes();
    server.sink().shutdown(Duration::from_secs(2));
    readers.join();
    println!(
        "{{\"kind\":\"fanout\",\"transport\":\"{}\",\"readers\":\"{}\",\"width\":{w},\"height\":{h},\"clients\":{clients},\
         \"frames\":{frames},\"fps_per_client\":{:.1},\"delivered_frames_s\":{:.0},\
         \"server_cpu_ms_per_frame\":{:.3},\"process_cpu_ms_per_frame\":{:.3},\
         \"rss_per_client_kib_connected\":{:.0},\"rss_per_client_kib_streaming\":{:.0}}}",
        kind.name(),
        payload.name(),
        frames as f64 / secs,
        (frames * clients) as f64 / secs,
        (srv1 - srv0) as f64 / 1e6 / frames as f64,
        (all1 - all0) as f64 / 1e6 / frames as f64,
        rss1.saturating_sub(rss0) as f64 / 1024.0 / clients as f64,
        rss2.max(rss1).saturating_sub(rss0) as f64 / 1024.0 / clients as f64,
    );
}

fn allocs(kind: Kind, t: &[f32], w: usize, h: usize, frames: usize) {
    let server = Server::start(kind, 1);
    let base = Instant::now();
    let readers = Readers::start(server.addr(), 1, base, 1 << 20, Payload::Copy);
    server.wait_clients(1);
    let mut sender = Sender::new(server.sink(), EncodeOptions::default()).expect("sender");
    let p = readers.progress[0].clone();
    let run = |sender: &mut Sender, from: usize, n: usize| {
        for k in from..from + n {
            send_one(sender, t, w, h);
            while p.frames.load(Ordering::Acquire) < k + 1 {
                thread::park_timeout(Duration::from_millis(2));
            }
        }
    };
    run(&mut sender, 0, 30);
    MINE.with(|c| c.set(0));
    ALLOCS.store(0, Ordering::SeqCst);
    ALLOC_BYTES.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    run(&mut sender, 30, frames);
    COUNTING.store(false, Ordering::SeqCst);
    let all = ALLOCS.load(Ordering::SeqCst);
    let bytes = ALLOC_BYTES.load(Ordering::SeqCst);
    let mine = MINE.with(Cell::get);
    server.sink().shutdown(Duration::from_secs(1));
    readers.join();
    println!(
        "{{\"kind\":\"allocs\",\"transport\":\"{}\",\"width\":{w},\"height\":{h},\"frames\":{frames},\
         \"allocs_per_frame\":{:.2},\"bytes_per_frame\":{:.0},\"sending_thread\":{:.2},\"other_threads\":{:.2}}}",
        kind.name(),
        all as f64 / frames as f64,
        bytes as f64 / frames as f64,
        mine as f64 / frames as f64,
        (all - mine) as f64 / frames as f64,
    );
}

/// A sink whose clients have written every frame at once: the sender's own allocations.
#[derive(Default)]
struct Dropping;

impl FrameSink for Dropping {
    fn send_image(&self, _: &Target, _: &WireFrame) -> Result<(), SinkError> {
        Ok(())
    }
    fn send_text(&self, _: &Target, _: Arc<str>) -> Result<(), SinkError> {
        Ok(())
    }
    fn stats(&self) -> SinkStats {
        SinkStats::default()
    }
    fn shutdown(&self, _: Duration) {}
}

fn allocs_sender_only(t: &[f32], w: usize, h: usize, frames: usize) {
    let mut sender = Sender::new(Arc::new(Dropping), EncodeOptions::default()).expect("sender");
    for _ in 0..30 {
        send_one(&mut sender, t, w, h);
    }
    MINE.with(|c| c.set(0));
    ALLOCS.store(0, Ordering::SeqCst);
    ALLOC_BYTES.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    let start = Instant::now();
    for _ in 0..frames {
        send_one(&mut sender, t, w, h);
    }
    let secs = start.elapsed().as_secs_f64();
    COUNTING.store(false, Ordering::SeqCst);
    let all = ALLOCS.load(Ordering::SeqCst);
    let mine = MINE.with(Cell::get);
    println!(
        "{{\"kind\":\"allocs\",\"transport\":\"none (sender into a dropping sink)\",\"width\":{w},\"height\":{h},\
         \"frames\":{frames},\"allocs_per_frame\":{:.2},\"bytes_per_frame\":{:.0},\"sending_thread\":{:.2},\
         \"other_threads\":{:.2},\"encode_ms_mean\":{:.3}}}",
        all as f64 / frames as f64,
        ALLOC_BYTES.load(Ordering::SeqCst) as f64 / frames as f64,
        mine as f64 / frames as f64,
        (all - mine) as f64 / frames as f64,
        secs * 1e3 / frames as f64,
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--caller-outside-pool") {
        // The sending thread as worker 0 of the global pool, as `pngcast serve` runs: a frame
        // then enters the pool without injecting a job (no allocation, one thread less to wake).
        rayon::ThreadPoolBuilder::new()
            .use_current_thread()
            .build_global()
            .expect("the global pool is built once, here");
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let only = |name: &str| {
        let args: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| !a.starts_with("--"))
            .collect();
        args.is_empty() || args.iter().any(|a| a == name)
    };
    let src = load_source();
    // `--transport=mio|blocking` and `--readers=copy|discard` narrow the rows (for profiling).
    let arg = |key: &str| std::env::args().find_map(|a| a.strip_prefix(key).map(str::to_owned));
    let kinds: Vec<Kind> = [Kind::Mio, Kind::Blocking]
        .into_iter()
        .filter(|k| arg("--transport=").is_none_or(|t| k.name() == format!("pngcast-{t}")))
        .collect();
    let payloads: Vec<Payload> = [Payload::Copy, Payload::Discard]
        .into_iter()
        .filter(|p| arg("--readers=").is_none_or(|r| p.name() == r))
        .collect();
    if only("latency") {
        for (w, h, n) in [
            (512, 512, 200),
            (1024, 1024, 150),
            (2048, 2048, 60),
            (3840, 2160, 40),
        ] {
            let t = tensor(&src, w, h);
            let n = if quick { n / 10 } else { n };
            for &kind in &kinds {
                latency(kind, &t, w, h, n, 5);
            }
        }
    }
    let t = tensor(&src, 1024, 1024);
    if only("profile1mp") && !only("latency") {
        // For `perf record`: only the 1 MP latency loop, long enough to sample.
        let t = tensor(&src, 1024, 1024);
        latency(Kind::Mio, &t, 1024, 1024, 400, 5);
        return;
    }
    if only("allocs") {
        allocs_sender_only(&t, 1024, 1024, if quick { 10 } else { 100 });
        for &kind in &kinds {
            allocs(kind, &t, 1024, 1024, if quick { 10 } else { 100 });
        }
    }
    if only("fanout") || only("fanout100") {
        // `fanout100`: only the 100-client rows (for `perf record`).
        let counts: &[usize] = if only("fanout") {
            &[1, 10, 50, 100]
        } else {
            &[100]
        };
        for &clients in counts {
            let frames = if quick { 10 } else { 60 };
            for &payload in &payloads {
                for &kind in &kinds {
                    fanout(kind, &t, 1024, 1024, clients, frames, payload);
                }
            }
        }
    }
}
