//! The runner of the transport peer benchmark: every server as a child process, one load
//! client for all (`pngcast_peers::client`), rounds interleaved, Markdown out.
//!
//! ```text
//! peers prepare --out DIR                   # photo_512.png, photo_1024.png (pngcast Fast)
//! peers table --png-dir DIR [--rounds 3] [--servers mio,blocking,...] [--quick]
//!             (`mio16`, pngcast-mio with 16 event loops that only spread, never pack, and
//!             `mio8`, 8 loops dealt to the least loaded, run only when named)
//!             [--raw FILE.jsonl] [--sections fanout,stall,latency] [--burst-gb 3]
//! peers strace --png-dir DIR --server mio [--size 1024] [--clients 1] [--frames 200] [--paced]
//! ```
//!
//! Workloads (the same message to every server: 8-byte ComfyUI prefix + the PNG):
//! - fan-out: N = 1, 10, 50, 100 reading clients, one `burst k` (every client gets every frame,
//!   `k` sized so each burst delivers about 3 GB (`--burst-gb`, a positive number), at least 10
//!   frames): frames/s per client = k / (last byte at the last client - the runner's command),
//!   server CPU per delivered GB
//!   (`/proc/<pid>/task/*/schedstat`, every thread of the server process), context switches per
//!   delivered frame (`/proc/<pid>/task/*/status`).
//! - stall: 10 readers at 1024^2 with and without one more client that upgraded and never
//!   reads (connected first), back to back; the ratio of the readers' frames/s.
//! - latency: one client, one frame every 50 ms (20 fps); from the server's stamp (taken on its
//!   control thread right before it hands the frame over) to the last byte at the client, and
//!   the spread from the frame's first byte to its last at the client.
//!
//! In each round every cell runs every server (in an order rotated per round); ratios are taken
//! inside a round, then the median and range over rounds are printed.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use pngcast_core::convert::BitDepth;
use pngcast_core::png::{encode, EncodeOptions, ImageInfo};
use pngcast_peers::client::Load;
use pngcast_peers::now_ns;

const SERVERS: [(&str, &str); 5] = [
    ("mio", "pngcast-mio"),
    ("blocking", "pngcast-blocking"),
    ("fastwebsockets", "fastwebsockets"),
    ("tungstenite", "tokio-tungstenite"),
    ("aiohttp", "aiohttp (ComfyUI-style)"),
];

/// Servers run only when named in `--servers`: pngcast-mio with 16 event loops that deal every
/// connection to the least-loaded loop (spread only, `Server::bind_loops_pack`), to compare in
/// one run with the default, which on 16 cores also runs 16 loops but packs connections beyond
/// one per loop onto the first 8.
/// `mio8`: 8 loops, each connection to the least-loaded (round-robin while all stay open), the
/// default before spread-then-pack.
const EXTRA_SERVERS: [(&str, &str); 2] = [
    ("mio16", "pngcast-mio, 16 loops"),
    ("mio8", "pngcast-mio, 8 loops"),
];

fn display(server: &str) -> &'static str {
    SERVERS
        .iter()
        .chain(&EXTRA_SERVERS)
        .find(|s| s.0 == server)
        .map(|s| s.1)
        .unwrap_or("?")
}

struct Opts {
    png_dir: PathBuf,
    server_bin: PathBuf,
    python: String,
    aiohttp: PathBuf,
    rounds: usize,
    servers: Vec<String>,
    sections: Vec<String>,
    raw: Option<PathBuf>,
    target_bytes: f64,
    latency_frames: usize,
    sizes: Vec<u32>,
    clients: Vec<usize>,
    /// Start no round that would end past this many seconds (estimated from the rounds done).
    budget_s: f64,
    // strace
    server: String,
    size: u32,
    nclients: usize,
    frames: u64,
    paced: bool,
    out: PathBuf,
}

fn usage() -> ! {
    eprintln!(
        "usage: peers prepare --out DIR | peers table --png-dir DIR [--rounds N] [--servers a,b] \
         [--sections fanout,stall,latency] [--sizes 512,1024] [--clients 1,10,50,100] [--quick] [--burst-gb 3] \
         [--raw FILE] [--budget-s S] [--server-bin PATH] [--python PY] [--aiohttp SCRIPT] | peers strace \
         --png-dir DIR --server NAME [--size 1024] [--clients 1] [--frames 200] [--paced]"
    );
    std::process::exit(2)
}

fn parse(args: &[String]) -> Opts {
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let mut o = Opts {
        png_dir: PathBuf::from("target/peers-png"),
        server_bin: exe_dir.join("peer-server"),
        python: "python3".into(),
        aiohttp: PathBuf::from("benches/python/aiohttp_peer.py"),
        rounds: 3,
        servers: SERVERS.iter().map(|s| s.0.to_string()).collect(),
        sections: vec!["fanout".into(), "stall".into(), "latency".into()],
        raw: None,
        target_bytes: 3e9,
        latency_frames: 100,
        sizes: vec![512, 1024],
        clients: vec![1, 10, 50, 100],
        budget_s: f64::INFINITY,
        server: "mio".into(),
        size: 1024,
        nclients: 1,
        frames: 200,
        paced: false,
        out: PathBuf::from("target/peers-png"),
    };
    let list = |v: String| v.split(',').map(str::to_owned).collect::<Vec<_>>();
    let mut it = args.iter().cloned();
    while let Some(a) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--png-dir" => o.png_dir = value().into(),
            "--out" => o.out = value().into(),
            "--server-bin" => o.server_bin = value().into(),
            "--python" => o.python = value(),
            "--aiohttp" => o.aiohttp = value().into(),
            "--rounds" => o.rounds = value().parse().unwrap_or_else(|_| usage()),
            "--servers" => o.servers = list(value()),
            "--sections" => o.sections = list(value()),
            "--raw" => o.raw = Some(value().into()),
            "--sizes" => o.sizes = list(value()).iter().map(|s| s.parse().unwrap()).collect(),
            "--clients" => {
                let v = list(value());
                o.clients = v.iter().map(|s| s.parse().unwrap()).collect();
                o.nclients = o.clients[0];
            }
            "--quick" => {
                o.target_bytes = 0.6e9;
                o.latency_frames = 40;
            }
            "--burst-gb" => {
                let gb = value().parse::<f64>().unwrap_or_else(|_| usage());
                if !(gb.is_finite() && gb > 0.0) {
                    usage();
                }
                o.target_bytes = gb * 1e9;
            }
            "--budget-s" => o.budget_s = value().parse().unwrap_or_else(|_| usage()),
            "--latency-frames" => o.latency_frames = value().parse().unwrap(),
            "--server" => o.server = value(),
            "--size" => o.size = value().parse().unwrap(),
            "--frames" => o.frames = value().parse().unwrap(),
            "--paced" => o.paced = true,
            _ => usage(),
        }
    }
    o
}

// ---------------------------------------------------------------------------------------------
// The PNGs.

fn prepare(out: &Path) {
    std::fs::create_dir_all(out).expect("create --out");
    for side in [512u32, 1024] {
        let img = pngcast_benches::photo_mosaic(side).expect("corpus photos (set PNGCAST_CORPUS)");
        let info = ImageInfo {
            width: img.width,
            height: img.height,
            channels: img.channels,
            bit_depth: BitDepth::Eight,
        };
        let png = encode(&info, &img.pixels, &EncodeOptions::default()).expect("encode");
        let path = out.join(format!("photo_{side}.png"));
        std::fs::write(&path, &png).expect("write png");
        eprintln!("{}: {} bytes ({})", path.display(), png.len(), img.name);
    }
}

fn png_path(o: &Opts, size: u32) -> PathBuf {
    o.png_dir.join(format!("photo_{size}.png"))
}

fn msg_len(o: &Opts, size: u32) -> u64 {
    std::fs::metadata(png_path(o, size))
        .unwrap_or_else(|e| panic!("{}: {e} (run `peers prepare`)", png_path(o, size).display()))
        .len()
        + 8
}

// ---------------------------------------------------------------------------------------------
// Servers as child processes.

struct Server {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    addr: SocketAddr,
    pid: u32,
}

impl Server {
    fn start(o: &Opts, name: &str, size: u32, wrap: &[String]) -> Server {
        let png = png_path(o, size);
        let mut argv: Vec<String> = wrap.to_vec();
        if name == "aiohttp" {
            argv.push(o.python.clone());
            argv.push(o.aiohttp.display().to_string());
        } else {
            argv.push(o.server_bin.display().to_string());
            argv.push("--server".into());
            argv.push(name.into());
        }
        argv.push("--png".into());
        argv.push(png.display().to_string());
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", argv[0]));
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).expect("server stdout");
        let port: u16 = line
            .strip_prefix("ready ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name}: expected `ready <port>`, got {line:?}"));
        let pid = child.id();
        Server {
            child,
            stdin,
            stdout,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            pid,
        }
    }

    fn send(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").expect("server stdin");
        self.stdin.flush().unwrap();
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("server stdout");
        assert!(!line.is_empty(), "server exited");
        line.trim().to_owned()
    }

    fn wait_clients(&mut self, n: usize) {
        self.send(&format!("wait {n}"));
        assert_eq!(self.line(), "ok");
    }

    /// CPU nanoseconds of every live thread, and their context switches.
    fn cpu(&self) -> (u64, u64) {
        let mut ns = 0;
        let mut cs = 0;
        let dir = format!("/proc/{}/task", self.pid);
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            ns += std::fs::read_to_string(p.join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0);
            for l in std::fs::read_to_string(p.join("status"))
                .unwrap_or_default()
                .lines()
            {
                if l.contains("ctxt_switches:") {
                    cs += l
                        .split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0);
                }
            }
        }
        (ns, cs)
    }

    fn stop(mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        drop(self.stdin);
        for _ in 0..200 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Workloads.

#[derive(Clone, Debug, Default)]
struct Burst {
    frames: u64,
    secs: f64,
    fps: f64,
    cpu_s_per_gb: f64,
    cs_per_frame: f64,
    completed: bool,
}

/// Every reader gets `k` frames; `stalled` extra clients never read.
fn burst(
    o: &Opts,
    name: &str,
    size: u32,
    readers: usize,
    stalled: usize,
    k: u64,
    timeout_s: f64,
) -> Burst {
    let mut srv = Server::start(o, name, size, &[]);
    let mut load = Load::connect(srv.addr, readers, stalled).expect("connect");
    srv.wait_clients(readers + stalled);
    // Warm-up: two frames through.
    srv.send("burst 2");
    srv.line();
    let ok = load
        .pump(
            |c| c.iter().all(|c| c.frames >= 2),
            now_ns() + 30_000_000_000,
        )
        .expect("warm-up");
    let (frames0, bytes0): (u64, u64) = (
        load.conns.iter().map(|c| c.frames).sum(),
        load.conns.iter().map(|c| c.bytes).sum(),
    );
    let mut b = Burst::default();
    if ok {
        let (cpu0, cs0) = srv.cpu();
        let t0 = now_ns();
        srv.send(&format!("burst {k}"));
        let deadline = t0 + (timeout_s * 1e9) as u64;
        let done = load
            .pump(|c| c.iter().all(|c| c.frames >= k + 2), deadline)
            .unwrap_or(false);
        let t1 = if done {
            load.conns.iter().map(|c| c.last_ns).max().unwrap()
        } else {
            now_ns()
        };
        let (cpu1, cs1) = srv.cpu();
        let frames: u64 = load.conns.iter().map(|c| c.frames).sum::<u64>() - frames0;
        let bytes: u64 = load.conns.iter().map(|c| c.bytes).sum::<u64>() - bytes0;
        b.secs = (t1 - t0) as f64 / 1e9;
        b.frames = frames;
        b.fps = frames as f64 / readers as f64 / b.secs;
        b.cpu_s_per_gb = (cpu1 - cpu0) as f64 / 1e9 / (bytes.max(1) as f64 / 1e9);
        b.cs_per_frame = (cs1 - cs0) as f64 / frames.max(1) as f64;
        b.completed = done;
    }
    drop(load);
    srv.stop();
    b
}

#[derive(Clone, Debug, Default)]
struct Latency {
    p50: f64,
    p99: f64,
    spread_p50: f64,
    spread_p99: f64,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let i = ((q * (sorted.len() - 1) as f64).round() as usize).min(sorted.len() - 1);
    sorted[i]
}

fn latency(o: &Opts, name: &str, size: u32, frames: usize) -> Latency {
    let mut srv = Server::start(o, name, size, &[]);
    let mut load = Load::connect(srv.addr, 1, 0).expect("connect");
    srv.wait_clients(1);
    let warmup = 10;
    let mut lat = Vec::new();
    let mut spread = Vec::new();
    let period = 50_000_000u64;
    let mut next = now_ns() + period;
    for i in 0..(warmup + frames) as u64 {
        while now_ns() < next {
            std::thread::sleep(Duration::from_nanos(next.saturating_sub(now_ns())));
        }
        next += period;
        srv.send("one");
        let ok = load
            .pump(|c| c[0].frames > i, now_ns() + 10_000_000_000)
            .expect("latency");
        assert!(ok, "{name}: a frame did not arrive");
        let t0: u64 = srv.line().parse().expect("t0");
        let c = &load.conns[0];
        if i >= warmup as u64 {
            lat.push((c.last_ns - t0) as f64 / 1e6);
            spread.push((c.last_ns - c.first_ns) as f64 / 1e6);
        }
    }
    drop(load);
    srv.stop();
    lat.sort_by(f64::total_cmp);
    spread.sort_by(f64::total_cmp);
    Latency {
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
        spread_p50: percentile(&spread, 0.5),
        spread_p99: percentile(&spread, 0.99),
    }
}

// ---------------------------------------------------------------------------------------------
// Statistics and tables.

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn fmt(x: f64) -> String {
    if !x.is_finite() {
        "n/a".into()
    } else if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// `median [min-max]` over rounds.
fn med_range(v: &[f64]) -> String {
    if v.is_empty() {
        return "n/a".into();
    }
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if v.len() == 1 {
        fmt(v[0])
    } else {
        format!("{} [{}-{}]", fmt(median(v)), fmt(lo), fmt(hi))
    }
}

/// Per round, `a / b` where both exist.
fn ratios(a: &[Option<f64>], b: &[Option<f64>]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .filter_map(|(x, y)| Some(x.as_ref()? / y.as_ref()?))
        .filter(|r| r.is_finite())
        .collect()
}

fn raw(o: &Opts, line: String) {
    eprintln!("{line}");
    if let Some(p) = &o.raw {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .expect("--raw");
        writeln!(f, "{line}").unwrap();
    }
}

fn aiohttp_ok(o: &Opts) -> bool {
    o.aiohttp.is_file()
        && Command::new(&o.python)
            .args(["-c", "import aiohttp"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// Servers in the order of round `r` (rotated so no server always runs first).
fn rotated(servers: &[String], r: usize) -> Vec<String> {
    let mut v = servers.to_vec();
    if !v.is_empty() {
        let k = r % v.len();
        v.rotate_left(k);
    }
    v
}

fn frames_for(o: &Opts, size: u32, n: usize) -> u64 {
    ((o.target_bytes / (n as f64 * msg_len(o, size) as f64)).ceil() as u64).clamp(10, 3000)
}

/// Key: (section, size, n, server) -> per-round values.
type Results = BTreeMap<(String, u32, usize, String), Vec<Option<f64>>>;

fn put(res: &mut Results, rounds: usize, key: (&str, u32, usize, &str), r: usize, v: f64) {
    let e = res
        .entry((key.0.into(), key.1, key.2, key.3.into()))
        .or_insert_with(|| vec![None; rounds]);
    e[r] = Some(v);
}

fn values(res: &Results, key: (&str, u32, usize, &str)) -> Vec<f64> {
    get(res, key).into_iter().flatten().collect()
}

fn get(res: &Results, key: (&str, u32, usize, &str)) -> Vec<Option<f64>> {
    res.get(&(key.0.into(), key.1, key.2, key.3.into()))
        .cloned()
        .unwrap_or_default()
}

fn table(mut o: Opts) {
    if o.servers.iter().any(|s| s == "aiohttp") && !aiohttp_ok(&o) {
        eprintln!(
            "note: aiohttp peer skipped ({} -c 'import aiohttp' failed or {} missing)",
            o.python,
            o.aiohttp.display()
        );
        o.servers.retain(|s| s != "aiohttp");
    }
    let rounds = o.rounds;
    let mut res = Results::new();
    let has = |s: &str| o.sections.iter().any(|x| x == s);
    let started = now_ns();
    let mut done_rounds = rounds;
    for r in 0..rounds {
        let spent = (now_ns() - started) as f64 / 1e9;
        if r > 0 && spent + spent / r as f64 > o.budget_s {
            eprintln!(
                "note: stopping after {r} rounds (--budget-s {})",
                o.budget_s
            );
            done_rounds = r;
            break;
        }
        if has("fanout") {
            for &size in &o.sizes {
                for &n in &o.clients {
                    let k = frames_for(&o, size, n);
                    for s in rotated(&o.servers, r) {
                        let b = burst(&o, &s, size, n, 0, k, 120.0);
                        raw(&o, format!(
                            "{{\"kind\":\"fanout\",\"round\":{r},\"server\":\"{s}\",\"size\":{size},\"clients\":{n},\
                             \"frames\":{k},\"secs\":{:.3},\"fps_per_client\":{:.2},\"cpu_s_per_gb\":{:.4},\
                             \"ctxsw_per_frame\":{:.3},\"completed\":{}}}",
                            b.secs, b.fps, b.cpu_s_per_gb, b.cs_per_frame, b.completed
                        ));
                        if b.completed {
                            put(&mut res, rounds, ("fps", size, n, &s), r, b.fps);
                            put(&mut res, rounds, ("cpu", size, n, &s), r, b.cpu_s_per_gb);
                            put(&mut res, rounds, ("cs", size, n, &s), r, b.cs_per_frame);
                        }
                    }
                }
            }
        }
        if has("stall") {
            let size = *o.sizes.last().unwrap();
            let k = frames_for(&o, size, 10);
            for s in rotated(&o.servers, r) {
                let base = burst(&o, &s, size, 10, 0, k, 120.0);
                let timeout = (base.secs * 4.0).max(2.0);
                let st = burst(&o, &s, size, 10, 1, k, timeout);
                let ratio = st.fps / base.fps;
                raw(&o, format!(
                    "{{\"kind\":\"stall\",\"round\":{r},\"server\":\"{s}\",\"size\":{size},\"readers\":10,\
                     \"frames\":{k},\"fps_no_staller\":{:.2},\"fps_staller\":{:.2},\"staller_completed\":{},\"ratio\":{ratio:.3}}}",
                    base.fps, st.fps, st.completed
                ));
                if base.completed {
                    put(&mut res, rounds, ("stall", size, 10, &s), r, ratio);
                }
            }
        }
        if has("latency") {
            for &size in &o.sizes {
                for s in rotated(&o.servers, r) {
                    let l = latency(&o, &s, size, o.latency_frames);
                    raw(&o, format!(
                        "{{\"kind\":\"latency\",\"round\":{r},\"server\":\"{s}\",\"size\":{size},\"fps\":20,\
                         \"frames\":{},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"spread_p50_ms\":{:.3},\"spread_p99_ms\":{:.3}}}",
                        o.latency_frames, l.p50, l.p99, l.spread_p50, l.spread_p99
                    ));
                    put(&mut res, rounds, ("p50", size, 1, &s), r, l.p50);
                    put(&mut res, rounds, ("p99", size, 1, &s), r, l.p99);
                    put(&mut res, rounds, ("spread", size, 1, &s), r, l.spread_p50);
                }
            }
        }
    }
    let minutes = (now_ns() - started) as f64 / 60e9;
    o.rounds = done_rounds;
    print_tables(&o, &res, minutes);
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{cpu}, {cores} cores, load average {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

fn print_tables(o: &Opts, res: &Results, minutes: f64) {
    let sv = &o.servers;
    let peers: Vec<&String> = sv
        .iter()
        .filter(|s| !matches!(s.as_str(), "mio" | "mio16" | "mio8" | "blocking"))
        .collect();
    println!(
        "<!-- {}; {} rounds; {minutes:.1} min -->\n",
        machine(),
        o.rounds
    );
    let header = |first: &str, extra: &[String]| {
        let mut h = format!("| {first} |");
        for s in sv {
            h += &format!(" {} |", display(s));
        }
        for e in extra {
            h += &format!(" {e} |");
        }
        let cols = 1 + sv.len() + extra.len();
        println!("{h}\n|{}", "---|".repeat(cols));
    };
    let mut ratio_cols: Vec<(String, String, String)> = Vec::new();
    if sv.iter().any(|s| s == "mio") {
        for p in &peers {
            ratio_cols.push(("mio".into(), (*p).clone(), format!("mio / {}", short(p))));
        }
        if sv.iter().any(|s| s == "blocking") {
            ratio_cols.push(("blocking".into(), "mio".into(), "blocking / mio".into()));
        }
        for extra in ["mio16", "mio8"] {
            if sv.iter().any(|s| s == extra) {
                ratio_cols.push((extra.into(), "mio".into(), format!("{extra} / mio")));
            }
        }
    }
    let names: Vec<String> = ratio_cols.iter().map(|c| c.2.clone()).collect();
    if res.keys().any(|k| k.0 == "fps") {
        println!(
            "#### Fan-out: frames/s per client, median [range]; ratios taken inside each round\n"
        );
        header("size, clients", &names);
        for &size in &o.sizes {
            for &n in &o.clients {
                let mut row = format!("| {size}^2, {n} |");
                for s in sv {
                    row += &format!(" {} |", med_range(&values(res, ("fps", size, n, s))));
                }
                for (a, b, _) in &ratio_cols {
                    let r = ratios(
                        &get(res, ("fps", size, n, a)),
                        &get(res, ("fps", size, n, b)),
                    );
                    row += &format!(" {} |", med_range(&r));
                }
                println!("{row}");
            }
        }
        println!("\n#### Server CPU seconds per delivered GB (median) / context switches per delivered frame\n");
        header("size, clients", &[]);
        for &size in &o.sizes {
            for &n in &o.clients {
                let mut row = format!("| {size}^2, {n} |");
                for s in sv {
                    row += &format!(
                        " {} / {} |",
                        fmt(median(&values(res, ("cpu", size, n, s)))),
                        fmt(median(&values(res, ("cs", size, n, s))))
                    );
                }
                println!("{row}");
            }
        }
        println!();
    }
    if res.keys().any(|k| k.0 == "stall") {
        println!("#### 10 readers + 1 stalled client: readers' frames/s over the same without it, median [range]\n");
        header("size", &[]);
        let size = *o.sizes.last().unwrap();
        let mut row = format!("| {size}^2 |");
        for s in sv {
            row += &format!(" {} |", med_range(&values(res, ("stall", size, 10, s))));
        }
        println!("{row}\n");
    }
    if res.keys().any(|k| k.0 == "p50") {
        println!("#### Latency, one client at 20 fps: p50 / p99 ms (median over rounds), first-to-last-byte spread p50 ms\n");
        let lat_ratio: Vec<String> = ratio_cols
            .iter()
            .filter(|c| c.0 == "mio")
            .map(|c| format!("{} p50 / p99", c.2))
            .collect();
        header("size", &lat_ratio);
        for &size in &o.sizes {
            let mut row = format!("| {size}^2 |");
            for s in sv {
                row += &format!(
                    " {} / {} ({}) |",
                    fmt(median(&values(res, ("p50", size, 1, s)))),
                    fmt(median(&values(res, ("p99", size, 1, s)))),
                    fmt(median(&values(res, ("spread", size, 1, s))))
                );
            }
            for (a, b, _) in ratio_cols.iter().filter(|c| c.0 == "mio") {
                let r50 = ratios(
                    &get(res, ("p50", size, 1, a)),
                    &get(res, ("p50", size, 1, b)),
                );
                let r99 = ratios(
                    &get(res, ("p99", size, 1, a)),
                    &get(res, ("p99", size, 1, b)),
                );
                row += &format!(" {} / {} |", fmt(median(&r50)), fmt(median(&r99)));
            }
            println!("{row}");
        }
        println!();
    }
}

fn short(s: &str) -> &str {
    match s {
        "tungstenite" => "tokio-tungstenite",
        other => other,
    }
}

// ---------------------------------------------------------------------------------------------
// strace: syscalls per frame of one server.

/// `strace -c` summary: syscall -> calls.
fn strace_counts(path: &Path) -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut m = BTreeMap::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        // % time, seconds, usecs/call, calls, [errors], syscall
        if f.len() >= 5 && f[0].parse::<f64>().is_ok() && f[3].parse::<u64>().is_ok() {
            let name = f.last().unwrap().to_string();
            if name != "total" {
                m.insert(name, f[3].parse().unwrap());
            }
        }
    }
    m
}

fn strace_run(o: &Opts, frames: u64, file: &Path) -> BTreeMap<String, u64> {
    let wrap: Vec<String> = ["strace", "-f", "-c", "-o"]
        .iter()
        .map(|s| s.to_string())
        .chain([file.display().to_string(), "--".into()])
        .collect();
    let mut srv = Server::start(o, &o.server, o.size, &wrap);
    let mut load = Load::connect(srv.addr, o.nclients, 0).expect("connect");
    srv.wait_clients(o.nclients);
    let n = o.nclients;
    if o.paced {
        for i in 0..frames {
            std::thread::sleep(Duration::from_millis(50));
            srv.send("one");
            load.pump(
                |c| c.iter().all(|c| c.frames > i),
                now_ns() + 30_000_000_000,
            )
            .expect("frames");
            srv.line();
        }
    } else if frames > 0 {
        srv.send(&format!("burst {frames}"));
        srv.line();
        load.pump(
            |c| c.iter().all(|c| c.frames >= frames),
            now_ns() + 120_000_000_000,
        )
        .expect("frames");
    }
    let _ = n;
    drop(load);
    let mut child = srv.child;
    let _ = writeln!(srv.stdin, "quit");
    drop(srv.stdin);
    let _ = child.wait();
    strace_counts(file)
}

fn strace(o: &Opts) {
    let dir = std::env::temp_dir();
    let f0 = dir.join(format!("peers-strace-{}-0.txt", std::process::id()));
    let f1 = dir.join(format!("peers-strace-{}-1.txt", std::process::id()));
    let base = strace_run(o, 0, &f0);
    let run = strace_run(o, o.frames, &f1);
    let delivered = (o.frames * o.nclients as u64) as f64;
    let mut rows: Vec<(String, f64)> = run
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                (*v as f64 - *base.get(k).unwrap_or(&0) as f64) / delivered,
            )
        })
        .filter(|r| r.1 > 0.005)
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = rows.iter().map(|r| r.1).sum();
    eprintln!(
        "{{\"kind\":\"strace\",\"server\":\"{}\",\"size\":{},\"clients\":{},\"frames\":{},\"paced\":{},\
         \"syscalls_per_delivered_frame\":{total:.2},\"per_call\":{{{}}}}}",
        o.server,
        o.size,
        o.nclients,
        o.frames,
        o.paced,
        rows.iter()
            .map(|(k, v)| format!("\"{k}\":{v:.2}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    // Markdown row: server, size, clients, mode, total, the calls.
    println!(
        "| {} | {}^2 | {} | {} | {total:.2} | {} |",
        display(&o.server),
        o.size,
        o.nclients,
        if o.paced { "20 fps" } else { "burst" },
        rows.iter()
            .map(|(k, v)| format!("{k} {v:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = std::fs::remove_file(f0);
    let _ = std::fs::remove_file(f1);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else { usage() };
    let o = parse(&args[1..]);
    match cmd.as_str() {
        "prepare" => prepare(&o.out),
        "table" => table(o),
        "strace" => strace(&o),
        _ => usage(),
    }
}
