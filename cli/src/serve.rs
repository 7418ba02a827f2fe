//! `pngcast serve`: stream frames from a source to WebSocket clients and serve the live viewer.
//!
//! Each tick takes one image from the source (the demo scene, or files), converts and encodes it
//! once with a reused [`Sender`], and hands the shared frame to the transport, which fans it out
//! without ever blocking this loop. Ticks are paced to `--fps` against a fixed schedule; a tick
//! that runs late starts the next one at once instead of bursting to catch up. The demo source
//! renders nothing while no client is connected (unless `--frames` bounds the run).
//!
//! SIGINT and SIGTERM stop it cleanly: no new frames, Close 1001 to every client once what was
//! queued for it is written (within [`SHUTDOWN_DEADLINE`]), the final stats line, exit 0.
#![forbid(unsafe_code)]

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use pngcast_core::png::{Compression, EncodeOptions};
use pngcast_protocol::http::ServerConfig;
use pngcast_protocol::ingest::DEFAULT_MAX_INGEST_BYTES;
use pngcast_protocol::metrics::Metrics;
use pngcast_protocol::queue::Policy;
use pngcast_protocol::sender::{FrameExtra, Sender};
use pngcast_protocol::sink::{FrameSink, SinkError, SinkStats, Target};
use pngcast_protocol::wire::WireFrame;
use pngcast_relay_redis::{Edge, EdgeConfig, Publisher, PublisherConfig, RedisUrl};

use crate::encode::parse_compression;
use crate::error::CliError;
use crate::logging::{self, LogFormat};
use crate::source::{parse_size, Source};

/// How long shutdown may take to flush queued frames and send Close 1001.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(2);
/// Interval of the progress line on stderr.
const REPORT_EVERY: Duration = Duration::from_secs(10);
/// Ticks kept for the timing medians.
const TIMING_WINDOW: usize = 256;

/// Arguments of `pngcast serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on. Port 0 picks a free port; the start-up line shows the one bound.
    /// Beyond loopback, --token is required (or --insecure).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8188")]
    addr: String,

    /// The WebSocket service: `mio` (event loops, a thread per core) or `blocking` (a thread per
    /// client).
    #[arg(long, value_enum, default_value_t = TransportArg::Mio)]
    transport: TransportArg,

    /// `demo` (a moving scene rendered each tick), a directory of .png/.npy files (cycled by
    /// name), or one .npy or .png file (its batch, one image per tick).
    #[arg(long, value_name = "demo|DIR|FILE", default_value = "demo")]
    source: String,

    /// Demo frame size [default: 1024x1024].
    #[arg(long, value_name = "WxH", value_parser = parse_size)]
    size: Option<(usize, usize)>,

    /// Frames per second; 0 sends as fast as frames can be made.
    #[arg(long, default_value_t = 10.0, value_parser = parse_fps)]
    fps: f64,

    /// Event name of the frames (ComfyUI-style; the viewer shows one panel per event).
    #[arg(long, default_value = "preview")]
    event: String,

    /// What happens to a client that falls behind: `latest-wins` drops its oldest waiting
    /// frames; `reliable` drops nothing and closes it (1008) when its queue overflows.
    #[arg(long, value_enum, default_value_t = PolicyArg::LatestWins)]
    policy: PolicyArg,

    /// Most WebSocket clients at once (fewer when the descriptor limit, raised to its hard
    /// limit at start, holds fewer; the start-up line says how many fit). One more gets 503.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    max_clients: u32,

    /// Shared token clients must present (`?token=` or `Authorization: Bearer`). A token on the
    /// command line is visible to every user of this machine (`ps`): prefer --token-file or the
    /// PNGCAST_TOKEN environment variable.
    #[arg(long, value_name = "TOKEN", conflicts_with = "token_file")]
    token: Option<String>,

    /// Read the token from this file (its first line; surrounding whitespace is ignored).
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,

    /// More log lines (`-v` debug, `-vv` trace). `RUST_LOG` overrides both flags.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,

    /// Fewer log lines (`-q` warnings and errors, `-qq` errors only).
    #[arg(short, long, action = clap::ArgAction::Count)]
    quiet: u8,

    /// Log lines as `text` (timestamp, level, message) or `json` (one object per line).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Allow listening beyond loopback without a token.
    #[arg(long)]
    insecure: bool,

    /// A browser origin (`http[s]://host[:port]`) allowed to open the WebSocket besides the one
    /// matching the `Host` header; repeat for several. Other origins get 403.
    #[arg(long = "allowed-origin", value_name = "ORIGIN", value_parser = parse_origin)]
    allowed_origins: Vec<String>,

    /// Without a token, also serve requests whose Host header names HOST (loopback names and
    /// addresses and the bound address always work; any other Host gets 421, which stops DNS
    /// rebinding). Repeatable.
    #[arg(long = "allowed-host", value_name = "HOST")]
    allowed_hosts: Vec<String>,

    /// Deflate: `fast[=balanced|fastest]` (default), `stored`, `compact` or `compact=LEVEL` (as for
    /// `encode`).
    #[arg(long, value_name = "MODE", value_parser = parse_compression)]
    compression: Option<Compression>,

    /// Stop after sending N frames and shut down cleanly (default: run until killed).
    #[arg(long, value_name = "N")]
    frames: Option<u64>,

    /// Wait until N clients are connected before sending the first frame.
    #[arg(long, value_name = "N", default_value_t = 0)]
    wait_clients: usize,

    /// Also publish every frame to Redis pub/sub (`redis://[user:pass@]HOST:PORT/?namespace=NAME`),
    /// for edges started with `--source redis://...`. See docs/scale-out.md.
    #[arg(long, value_name = "URL")]
    publish: Option<String>,

    /// With --publish: do not serve locally (a worker process with no WebSocket port).
    #[arg(long, requires = "publish")]
    no_local: bool,

    /// Read the Redis password from the first line of FILE (instead of the URL).
    #[arg(long, value_name = "FILE")]
    redis_password_file: Option<std::path::PathBuf>,

    /// Largest body accepted by the ingest endpoint (`POST /api/send`), in bytes; larger ones
    /// get 413.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_INGEST_BYTES,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_ingest_bytes: usize,

    /// Switch the ingest endpoint off (`/api/send` answers 404).
    #[arg(long)]
    no_ingest: bool,
}

/// A sink that hands every message to each of several sinks (local server and publisher).
struct Tee(Vec<Arc<dyn FrameSink>>);

impl FrameSink for Tee {
    fn send_image(&self, target: &Target, frame: &WireFrame) -> Result<(), SinkError> {
        let mut result = Ok(());
        for s in &self.0 {
            if let Err(e) = s.send_image(target, frame) {
                result = Err(e);
            }
        }
        result
    }
    fn send_text(&self, target: &Target, text: Arc<str>) -> Result<(), SinkError> {
        let mut result = Ok(());
        for s in &self.0 {
            if let Err(e) = s.send_text(target, Arc::clone(&text)) {
                result = Err(e);
            }
        }
        result
    }
    /// The counters of the first sink (the local server when there is one).
    fn stats(&self) -> SinkStats {
        self.0.first().map(|s| s.stats()).unwrap_or_default()
    }
    fn shutdown(&self, deadline: Duration) {
        for s in &self.0 {
            s.shutdown(deadline);
        }
    }
}

fn redis_url(args: &ServeArgs, url: &str) -> Result<RedisUrl, CliError> {
    let u = RedisUrl::parse(url).map_err(|e| CliError::new(e.to_string()))?;
    match &args.redis_password_file {
        Some(p) => u
            .with_password_file(p)
            .map_err(|e| CliError::new(e.to_string())),
        None => Ok(u),
    }
}

fn is_redis(spec: &str) -> bool {
    spec.starts_with("redis://") || spec.starts_with("rediss://")
}

/// `--source redis://...`: an edge. Serves what the namespace's workers publish until killed
/// (or until --frames messages were delivered).
fn run_edge(args: &ServeArgs, token: Option<String>, stop: &AtomicBool) -> Result<(), CliError> {
    if args.publish.is_some() {
        return Err(CliError::new(
            "--publish and --source redis:// do not combine",
        ));
    }
    let url = redis_url(args, &args.source)?;
    let config = ServerConfig::default()
        .addr(resolve(&args.addr)?)
        .policy(args.policy.into())
        .token(token.clone())
        .insecure(args.insecure)
        .allowed_origins(args.allowed_origins.clone())
        .allowed_hosts(args.allowed_hosts.clone())
        .max_clients(args.max_clients as usize);
    let server = Running::bind(args.transport, config)?;
    let sink = server.sink();
    let edge = Edge::with_url(url, Arc::clone(&sink), EdgeConfig::default())
        .map_err(|e| CliError::new(e.to_string()))?;
    print_start_line(
        &edge.url().to_string(),
        server.local_addr(),
        token.is_some(),
        server.max_clients(),
    );
    let mut last = Instant::now();
    while args.frames.is_none_or(|n| edge.stats().delivered < n) && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
        if last.elapsed() >= REPORT_EVERY {
            let s = edge.stats();
            log::info!(
                "edge: {} received, {} delivered, {} resynced, {} garbage, {} subscribes, {}",
                s.received,
                s.delivered,
                s.resynced,
                s.garbage,
                s.subscribes,
                plural(sink.stats().clients as u64, "client")
            );
            last = Instant::now();
        }
    }
    if stop.load(Ordering::Relaxed) {
        log::info!("signal received: closing every client (1001) and stopping");
    }
    edge.stop();
    sink.shutdown(SHUTDOWN_DEADLINE);
    let stats = sink.stats();
    log::info!(
        "stopped; {} sent to clients, {} dropped, {} closed",
        plural(stats.frames_sent, "frame"),
        stats.frames_dropped,
        plural(stats.clients_closed, "client")
    );
    Ok(())
}

/// `--transport` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TransportArg {
    /// pngcast-mio: event loops (a thread per core) sharing the clients.
    Mio,
    /// pngcast-blocking: std sockets, a thread per client.
    Blocking,
}

/// `--policy` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PolicyArg {
    /// Drop a slow client's oldest waiting frames.
    LatestWins,
    /// Drop nothing; close a client whose queue overflows.
    Reliable,
}

impl From<PolicyArg> for Policy {
    fn from(p: PolicyArg) -> Self {
        match p {
            PolicyArg::LatestWins => Policy::LatestWins,
            PolicyArg::Reliable => Policy::Reliable,
        }
    }
}

/// An `--allowed-origin` value: `http://` or `https://`, a host and an optional port, nothing
/// else (a browser's `Origin` never has a path). A trailing `/` is dropped.
fn parse_origin(s: &str) -> Result<String, String> {
    let origin = s.strip_suffix('/').unwrap_or(s);
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    match authority {
        Some(a)
            if !a.is_empty()
                && !a.contains(['/', '?', '#', '@'])
                && a.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(origin.to_owned())
        }
        _ => Err(format!(
            "`{s}` is not an origin like http://host:port or https://host"
        )),
    }
}

fn parse_fps(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() && (0.0..=10_000.0).contains(&f) => Ok(f),
        _ => Err(format!("`{s}` is not a frame rate between 0 and 10000")),
    }
}

/// A running server of either transport.
enum Running {
    Mio(pngcast_mio::Server),
    Blocking(pngcast_blocking::Server),
}

impl Running {
    fn bind(transport: TransportArg, config: ServerConfig) -> Result<Self, CliError> {
        let addr = config.addr;
        let hint = if !addr.ip().is_loopback() && config.token.is_none() && !config.insecure {
            " (pass --token TOKEN, or --insecure to serve without one)"
        } else {
            ""
        };
        let in_use = |e: &dyn std::error::Error| {
            let mut source = e.source();
            while let Some(s) = source {
                if let Some(io) = s.downcast_ref::<std::io::Error>() {
                    return io.kind() == std::io::ErrorKind::AddrInUse;
                }
                source = s.source();
            }
            false
        };
        let hint_for = |e: &dyn std::error::Error| -> String {
            if in_use(e) && addr.port() == 8188 {
                " (8188 is ComfyUI's port: is ComfyUI running? use --addr 127.0.0.1:PORT, or port 0 \
                 for a free one)"
                    .to_owned()
            } else if in_use(e) {
                " (another program listens there: use --addr with another port, or port 0)"
                    .to_owned()
            } else {
                hint.to_owned()
            }
        };
        let err = |e: &dyn std::error::Error| CliError::new(format!("{e}{}", hint_for(e)));
        Ok(match transport {
            TransportArg::Mio => {
                Running::Mio(pngcast_mio::Server::bind(config).map_err(|e| err(&e))?)
            }
            TransportArg::Blocking => {
                Running::Blocking(pngcast_blocking::Server::bind(config).map_err(|e| err(&e))?)
            }
        })
    }

    fn local_addr(&self) -> SocketAddr {
        match self {
            Running::Mio(s) => s.local_addr(),
            Running::Blocking(s) => s.local_addr(),
        }
    }

    fn max_clients(&self) -> usize {
        match self {
            Running::Mio(s) => s.max_clients(),
            Running::Blocking(s) => s.max_clients(),
        }
    }

    fn sink(&self) -> Arc<dyn FrameSink> {
        match self {
            Running::Mio(s) => s.sink(),
            Running::Blocking(s) => s.sink(),
        }
    }
}

/// Resolves `--addr` (an IP address or a host name, with a port).
fn resolve(addr: &str) -> Result<SocketAddr, CliError> {
    if let Ok(a) = addr.parse() {
        return Ok(a);
    }
    addr.to_socket_addrs()
        .map_err(|e| CliError::new(format!("--addr {addr}: {e}")))?
        .next()
        .ok_or_else(|| CliError::new(format!("--addr {addr}: no address found")))
}

/// Last [`TIMING_WINDOW`] durations of one stage, in milliseconds; no allocation per tick.
struct Window {
    ms: Vec<f64>,
    next: usize,
    scratch: Vec<f64>,
}

impl Window {
    fn new() -> Self {
        Window {
            ms: Vec::with_capacity(TIMING_WINDOW),
            next: 0,
            scratch: Vec::with_capacity(TIMING_WINDOW),
        }
    }

    fn push(&mut self, d: Duration) {
        let v = d.as_secs_f64() * 1e3;
        if self.ms.len() < TIMING_WINDOW {
            self.ms.push(v);
        } else {
            self.ms[self.next] = v;
        }
        self.next = (self.next + 1) % TIMING_WINDOW;
    }

    fn median(&mut self) -> f64 {
        self.scratch.clear();
        self.scratch.extend_from_slice(&self.ms);
        self.scratch.sort_by(f64::total_cmp);
        self.scratch
            .get(self.scratch.len() / 2)
            .copied()
            .unwrap_or(0.0)
    }
}

/// Runs `pngcast serve`.
pub fn run(args: ServeArgs) -> Result<(), CliError> {
    // This thread sends every frame: make it worker 0 of the global rayon pool, so a frame's
    // stripes start here at once and no job is injected from outside (rayon's injector would
    // allocate a block every 63 frames). Fails only if something built the pool already.
    if let Err(e) = rayon::ThreadPoolBuilder::new()
        .use_current_thread()
        .build_global()
    {
        eprintln!("pngcast: encoding on the existing rayon pool ({e})");
    }
    logging::init(logging::level(args.verbose, args.quiet), args.log_format);
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| CliError::new(format!("cannot handle signal {signal}: {e}")))?;
    }
    let token = token(&args)?;
    if is_redis(&args.source) {
        return run_edge(&args, token, &stop);
    }
    let mut source = Source::open(&args.source, args.size)?;
    let publisher = match &args.publish {
        Some(u) => Some(Arc::new(
            Publisher::with_url(redis_url(&args, u)?, PublisherConfig::default())
                .map_err(|e| CliError::new(e.to_string()))?,
        )),
        None => None,
    };
    let addr = resolve(&args.addr)?;
    let metrics = Arc::new(Metrics::new());
    let (ingest, ingest_worker) = if args.no_ingest || args.no_local {
        (None, None)
    } else {
        let (handle, worker) = crate::ingest::channel();
        (Some(handle), Some(worker))
    };
    let config = ServerConfig::default()
        .addr(addr)
        .policy(args.policy.into())
        .token(token.clone())
        .insecure(args.insecure)
        .allowed_origins(args.allowed_origins.clone())
        .allowed_hosts(args.allowed_hosts.clone())
        .max_clients(args.max_clients as usize)
        .max_ingest_bytes(args.max_ingest_bytes)
        .ingest(ingest)
        .metrics(Arc::clone(&metrics));
    let server = if args.no_local {
        None
    } else {
        Some(Running::bind(args.transport, config)?)
    };
    let sink: Arc<dyn FrameSink> = match (&server, &publisher) {
        (Some(s), Some(p)) => Arc::new(Tee(vec![s.sink(), Arc::clone(p) as Arc<dyn FrameSink>])),
        (Some(s), None) => s.sink(),
        (None, Some(p)) => Arc::clone(p) as Arc<dyn FrameSink>,
        (None, None) => return Err(CliError::new("--no-local needs --publish")),
    };
    let mut options = EncodeOptions::default();
    if let Some(c) = args.compression {
        options = options.compression(c);
    }
    if let Some(worker) = ingest_worker {
        worker.start(
            Arc::clone(&sink),
            options.clone(),
            true,
            Arc::clone(&metrics),
        )?;
    }
    let mut sender = Sender::new(Arc::clone(&sink), options)?.metrics(metrics);

    if let Some(p) = &publisher {
        println!("pngcast: publishing {} to {}", source.describe(), p.url());
    }
    match &server {
        Some(server) => print_start_line(
            &source.describe(),
            server.local_addr(),
            token.is_some(),
            server.max_clients(),
        ),
        None => {
            let _ = std::io::stdout().flush();
        }
    }

    if args.wait_clients > 0 {
        log::info!("waiting for {}", plural(args.wait_clients as u64, "client"));
        while sink.stats().clients < args.wait_clients && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    let result = stream(&args, &mut source, &mut sender, &stop);
    if stop.load(Ordering::Relaxed) {
        log::info!("signal received: closing every client (1001) and stopping");
    }
    sink.shutdown(SHUTDOWN_DEADLINE);
    let stats = sink.stats();
    let made = *result.as_ref().unwrap_or(&0);
    log::info!(
        "stopped after {}; {} sent to clients, {} dropped, {} closed",
        plural(made, "frame"),
        plural(stats.frames_sent, "frame"),
        stats.frames_dropped,
        plural(stats.clients_closed, "client")
    );
    if let Some(p) = &publisher {
        let s = p.publisher_stats();
        eprintln!(
            "pngcast: published {}, dropped {}, failed {}, too large {}",
            s.published, s.dropped, s.failed, s.too_large
        );
    }
    drop(server);
    result.map(|_| ())
}

/// The start-up line, `pngcast: serving WHAT on http://ADDR/ (ws://ADDR/ws)`, flushed at once
/// (tests and scripts read the address from it). The token itself never reaches a terminal or a
/// log: with one, the URLs show `?token=REDACTED`.
fn print_start_line(what: &str, bound: SocketAddr, token: bool, max_clients: usize) {
    let query = if token { "?token=REDACTED" } else { "" };
    println!(
        "pngcast: serving {what} on http://{bound}/{query} (ws://{bound}/ws{query}), up to {}",
        plural(max_clients as u64, "client")
    );
    let _ = std::io::stdout().flush();
}

/// The token from --token, --token-file or PNGCAST_TOKEN (in that order).
fn token(args: &ServeArgs) -> Result<Option<String>, CliError> {
    if let Some(t) = &args.token {
        return Ok(Some(t.clone()));
    }
    if let Some(path) = &args.token_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::new(format!("--token-file {}: {e}", path.display())))?;
        let t = text.lines().next().unwrap_or("").trim();
        if t.is_empty() {
            return Err(CliError::new(format!(
                "--token-file {}: the file holds no token",
                path.display()
            )));
        }
        return Ok(Some(t.to_owned()));
    }
    match std::env::var("PNGCAST_TOKEN") {
        Ok(t) if !t.trim().is_empty() => Ok(Some(t.trim().to_owned())),
        _ => Ok(None),
    }
}

/// `1 client`, `2 clients`.
pub(crate) fn plural(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The tick loop: until `--frames` are sent (or forever).
fn stream(
    args: &ServeArgs,
    source: &mut Source,
    sender: &mut Sender,
    stop: &AtomicBool,
) -> Result<u64, CliError> {
    let period = (args.fps > 0.0).then(|| Duration::from_secs_f64(1.0 / args.fps));
    let extra = FrameExtra::default();
    let (mut make, mut send) = (Window::new(), Window::new());
    let (mut sent, mut bytes) = (0u64, 0u64);
    let mut next_tick = Instant::now();
    let mut last_report = (Instant::now(), 0u64);
    // An unbounded run makes no frame nobody will see (a publisher's viewers are elsewhere).
    let idle_when_alone = args.frames.is_none() && args.publish.is_none();
    while args.frames.is_none_or(|n| sent < n) && !stop.load(Ordering::Relaxed) {
        if idle_when_alone && sender.sink().stats().clients == 0 {
            std::thread::sleep(Duration::from_millis(20));
            next_tick = Instant::now();
            continue;
        }
        let t0 = Instant::now();
        let tensor = source.next_frame()?;
        let t1 = Instant::now();
        let report = sender
            .send(&args.event, &tensor, &Target::All, &extra)
            .map_err(|e| CliError::new(e.to_string()))?;
        let t2 = Instant::now();
        make.push(t1 - t0);
        send.push(t2 - t1);
        sent += 1;
        bytes += report.png_bytes as u64;

        if t2 - last_report.0 >= REPORT_EVERY || args.frames == Some(sent) {
            let fps = (sent - last_report.1) as f64 / (t2 - last_report.0).as_secs_f64();
            let clients = sender.sink().stats().clients;
            // Quiet at zero clients unless asked (-v).
            let level = if clients == 0 && args.frames != Some(sent) {
                log::Level::Debug
            } else {
                log::Level::Info
            };
            log::log!(
                level,
                "{}, {fps:.1} fps, source {:.2} ms/frame, encode+queue {:.2} ms/frame, {} bytes/frame, {}",
                plural(sent, "frame"),
                make.median(),
                send.median(),
                bytes / sent,
                plural(clients as u64, "client")
            );
            last_report = (t2, sent);
        }
        if let Some(p) = period {
            next_tick += p;
            let now = Instant::now();
            if next_tick > now {
                sleep_unless(stop, next_tick - now);
            } else {
                next_tick = now;
            }
        }
    }
    Ok(sent)
}

/// Sleeps for `d`, waking early (within 20 ms) once `stop` is set.
fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let end = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= end {
            break;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(20)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fps_and_addresses_parse() {
        assert_eq!(parse_fps("10"), Ok(10.0));
        assert_eq!(parse_fps("0"), Ok(0.0));
        for bad in ["-1", "nan", "inf", "1e9", "x"] {
            assert!(parse_fps(bad).is_err(), "{bad}");
        }
        assert_eq!(resolve("127.0.0.1:0").unwrap().port(), 0);
        assert!(resolve("localhost:8188").unwrap().ip().is_loopback());
        assert!(resolve("not an address").is_err());
    }

    #[test]
    fn timing_window_keeps_the_last_values() {
        let mut w = Window::new();
        assert_eq!(w.median(), 0.0);
        for ms in 0..1000u64 {
            w.push(Duration::from_millis(ms));
        }
        // The window holds 744..1000: its median is 872.
        assert_eq!(w.ms.len(), TIMING_WINDOW);
        assert_eq!(w.median(), 872.0);
    }
}
