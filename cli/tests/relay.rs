//! A pipeline of plain CLI processes through a real `redis-server` (started on a free port in a
//! scratch directory, without persistence): `pngcast serve --publish redis://... --no-local`
//! publishes a file's images, two edges (`pngcast serve --source redis://...`, one per
//! transport) serve them, and `pngcast recv` on each edge saves frames whose pixels are exactly
//! the file's. Skipped with a message when `redis-server` is not installed, except under CI
//! (`CI` set), where that is a failure.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{decode_png, pngcast, run_bounded, scratch, Serve, LIVENESS};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `redis-server` child, killed on drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start(dir: &Path) -> Option<Redis> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            assert!(
                std::env::var_os("CI").is_none(),
                "redis-server is not installed"
            );
            eprintln!("redis-server not installed: skipping");
            return None;
        }
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let redis = Redis { child, port };
        let end = Instant::now() + LIVENESS;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < end, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(redis)
    }

    fn url(&self, namespace: &str) -> String {
        format!("redis://127.0.0.1:{}/?namespace={namespace}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `[b, h, w, c]` float32 `.npy` file of known values; returns them.
fn write_npy(path: &Path, (b, h, w, c): (usize, usize, usize, usize)) -> Vec<f32> {
    let values: Vec<f32> = (0..b * h * w * c)
        .map(|i| ((i * 37) % 256) as f32 / 255.5)
        .collect();
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({b}, {h}, {w}, {c}), }}");
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
    npy.extend_from_slice(header.as_bytes());
    for v in &values {
        npy.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, npy).unwrap();
    values
}

/// `pngcast serve --source FILE --publish URL --no-local`: a worker with no port. Killed on drop.
struct Worker(Child);

impl Worker {
    fn start(source: &Path, url: &str) -> Worker {
        let mut child = pngcast()
            .arg("serve")
            .arg("--source")
            .arg(source)
            .args(["--publish", url, "--no-local", "--fps", "40"])
            .args(["--event", "relayed"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the publishing pngcast serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("pngcast: publishing "), "{line:?}");
        assert!(line.contains("namespace"), "{line:?}");
        Worker(child)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pngs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "png"))
        .collect();
    v.sort();
    v
}

#[test]
fn publisher_to_two_edges_to_clients_pixel_exact() {
    let dir = scratch("relay-pipeline");
    let Some(redis) = Redis::start(&dir) else {
        return;
    };
    let url = redis.url("pipeline");
    let shape = (3usize, 17usize, 33usize, 4usize);
    let values = write_npy(&dir.join("batch.npy"), shape);
    let (b, h, w, c) = shape;
    let item = |i: usize| -> Vec<u8> {
        values[i * h * w * c..(i + 1) * h * w * c]
            .iter()
            .map(|v| (255.0f32 * v).clamp(0.0, 255.0) as u8)
            .collect()
    };

    let edges = [
        Serve::start(&["--source", &url, "--transport", "mio"]),
        Serve::start(&["--source", &url, "--transport", "blocking"]),
    ];
    for e in &edges {
        assert!(e.line.contains("(namespace pipeline)"), "{}", e.line);
    }
    // The receivers connect first; the worker streams until each has saved its frames.
    let receivers: Vec<_> = edges
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let out = dir.join(format!("recv-{i}"));
            let ws = e.ws_url();
            let metadata = i == 1;
            std::thread::spawn(move || {
                let mut cmd = pngcast();
                cmd.arg("recv").arg(&ws).arg("--output").arg(&out);
                cmd.args(["--count", "6"]);
                if metadata {
                    cmd.arg("--metadata");
                }
                (run_bounded(&mut cmd, "pngcast recv"), out)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let worker = Worker::start(&dir.join("batch.npy"), &url);
    for r in receivers {
        let (result, out) = r.join().unwrap();
        assert!(
            result.status.success(),
            "{}",
            String::from_utf8_lossy(&result.stderr)
        );
        let names = pngs(&out);
        assert_eq!(names.len(), 6, "{names:?}");
        let mut seen = vec![0usize; b];
        for p in &names {
            let name = p.file_name().unwrap().to_str().unwrap();
            assert!(name.starts_with("relayed_0_"), "{name}");
            let (pw, ph, color, _, pixels) = decode_png(p);
            assert_eq!((pw, ph, color), (w as u32, h as u32, png::ColorType::Rgba));
            let which = (0..b).find(|&i| pixels == item(i));
            seen[which.unwrap_or_else(|| panic!("{name} matches no image of the batch"))] += 1;
        }
        // One image per tick, cycling: six consecutive frames hold every image twice.
        assert!(seen.iter().all(|&n| n >= 1), "{seen:?}");
    }
    drop(worker);
    drop(edges);
}

#[test]
fn redis_unreachable_is_one_clear_error() {
    let url = format!("redis://127.0.0.1:{}/", free_port()); // nothing listens there
    for args in [
        vec!["serve", "--source", &url, "--addr", "127.0.0.1:0"],
        vec!["serve", "--size", "8x8", "--publish", &url, "--no-local"],
    ] {
        let start = Instant::now();
        let out = run_bounded(pngcast().args(&args), "pngcast serve");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("cannot reach Redis at 127.0.0.1:"),
            "{args:?}: {err}"
        );
        assert!(start.elapsed() < Duration::from_secs(20), "{args:?}");
    }
}
