//! Helpers shared by the `serve` and `browser` tests: start `pngcast serve` on a free loopback
//! port, read the address it prints, and make sure every child process ends with the test.

#![allow(dead_code)] // each test binary uses a different subset

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn pngcast() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pngcast"))
}

/// Upper bound for any child to finish: a hang fails the test instead of blocking CI forever.
/// (A bound on liveness, not a performance threshold.)
pub const LIVENESS: Duration = Duration::from_secs(120);

/// A fresh, empty scratch directory under the target dir.
pub fn scratch(name: &str) -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running `pngcast serve`; killed on drop if it is still running.
pub struct Serve {
    pub child: Child,
    pub addr: SocketAddr,
    pub line: String,
    stdout: BufReader<ChildStdout>,
}

impl Serve {
    /// Starts `pngcast serve --addr 127.0.0.1:0 ARGS...` and waits for its start-up line.
    pub fn start(args: &[&str]) -> Serve {
        Serve::start_at("127.0.0.1:0", args)
    }

    /// Starts `pngcast serve --addr ADDR ARGS...` and waits for its start-up line.
    pub fn start_at(addr: &str, args: &[&str]) -> Serve {
        Serve::start_bin(Path::new(env!("CARGO_BIN_EXE_pngcast")), addr, args)
    }

    /// Starts `BIN serve --addr ADDR ARGS...` and waits for its start-up line.
    pub fn start_bin(bin: &Path, addr: &str, args: &[&str]) -> Serve {
        Serve::start_cmd(Command::new(bin), addr, args)
    }

    /// Starts `CMD serve --addr ADDR ARGS...` (a command with its own environment) and waits
    /// for its start-up line.
    pub fn start_cmd(mut cmd: Command, addr: &str, args: &[&str]) -> Serve {
        let mut child = cmd
            .arg("serve")
            .args(["--addr", addr])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pngcast serve");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let addr = match parse_start_line(&line) {
            Some(a) => a,
            None => {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "no start-up line from serve: {line:?}; stderr: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        };
        Serve {
            child,
            addr,
            line,
            stdout,
        }
    }

    /// `ws://ADDR/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Waits (bounded by [`LIVENESS`]) for serve to exit by itself; returns status and stderr.
    pub fn wait(mut self) -> (ExitStatus, String) {
        let status = wait_bounded(&mut self.child, "pngcast serve");
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let mut rest = String::new();
        let _ = self.stdout.read_to_string(&mut rest);
        (status, err)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `pngcast: serving ... on http://ADDR/... (ws://ADDR/ws...)` -> ADDR.
pub fn parse_start_line(line: &str) -> Option<SocketAddr> {
    let rest = line.strip_prefix("pngcast: serving ")?;
    let at = rest.find(" on http://")?;
    let addr = &rest[at + " on http://".len()..];
    addr[..addr.find('/')?].parse().ok()
}

/// Waits for `child` at most [`LIVENESS`]; kills it and panics past that.
pub fn wait_bounded(child: &mut Child, what: &str) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if start.elapsed() > LIVENESS {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {LIVENESS:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a command to completion within [`LIVENESS`], capturing its output.
pub fn run_bounded(cmd: &mut Command, what: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read pipes on threads so a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = wait_bounded(&mut child, what);
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// Decodes a PNG file with the `png` crate: (width, height, color type, bit depth, pixels).
pub fn decode_png(path: &Path) -> (u32, u32, png::ColorType, png::BitDepth, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (
        info.width,
        info.height,
        info.color_type,
        info.bit_depth,
        buf,
    )
}
