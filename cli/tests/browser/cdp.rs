//! A small headless-Chromium driver over the Chrome DevTools Protocol, for the viewer test.
//!
//! Starts Debian's `chromium` with the flags this machine needs (no sandbox as root, no GPU, no
//! background networking), a fresh profile directory and `--remote-debugging-port=0`, reads the
//! chosen port from the profile's `DevToolsActivePort` file, finds the page target through
//! `/json/list` and speaks CDP to it over one tungstenite WebSocket: `Runtime.evaluate` to read
//! the DOM and `Page.captureScreenshot` for the artifact. Dropping the driver closes the browser
//! (politely through CDP, then by killing the child it started) and removes the profile.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use tungstenite::WebSocket;

/// Where the browser is: `$CHROMIUM`, else the first of the usual names found in `PATH`.
pub fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in [
            "chromium",
            "chromium-browser",
            "google-chrome",
            "google-chrome-stable",
        ] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// One headless browser with one page, driven over CDP.
pub struct Browser {
    child: Child,
    profile: PathBuf,
    ws: WebSocket<TcpStream>,
    next_id: u64,
}

type Error = Box<dyn std::error::Error>;

impl Browser {
    /// Starts `exe` showing `url` in a `width` x `height` window; `scratch` is a directory the
    /// profile is created under.
    pub fn launch(
        exe: &Path,
        url: &str,
        width: u32,
        height: u32,
        scratch: &Path,
    ) -> Result<Self, Error> {
        let profile = scratch.join(format!(
            "chromium-profile-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos() ^ (url.len() as u128)
        ));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile)?;
        let child = Command::new(exe)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-quic",
                "--disable-sync",
                "--hide-scrollbars",
                "--disable-background-timer-throttling",
                "--disable-renderer-backgrounding",
                "--disable-backgrounding-occluded-windows",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--window-size={width},{height}"))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        // From here on, a failure must still stop the child: build the guard first.
        let mut guard = ChildGuard(Some(child), Some(profile.clone()));
        let port = wait_for_port(&profile.join("DevToolsActivePort"), Duration::from_secs(60))?;
        let page = page_ws_url(port, Duration::from_secs(30))?;
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let (ws, _) = tungstenite::client(page.as_str(), stream)
            .map_err(|e| format!("CDP handshake: {e}"))?;
        let child = guard.0.take().expect("guard holds the child");
        guard.1 = None;
        Ok(Self {
            child,
            profile,
            ws,
            next_id: 1,
        })
    }

    /// Sends one CDP command and waits for its answer, skipping events.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, Error> {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({ "id": id, "method": method, "params": params });
        self.ws.send(tungstenite::Message::text(msg.to_string()))?;
        loop {
            let reply = self.ws.read()?;
            let tungstenite::Message::Text(text) = reply else {
                continue;
            };
            let v: Value = serde_json::from_str(text.as_str())?;
            if v["id"].as_u64() != Some(id) {
                continue;
            }
            if let Some(err) = v.get("error") {
                return Err(format!("{method}: {err}").into());
            }
            return Ok(v["result"].clone());
        }
    }

    /// Evaluates a JavaScript expression in the page and returns its JSON value.
    pub fn eval(&mut self, expr: &str) -> Result<Value, Error> {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expr, "returnByValue": true }),
        )?;
        if let Some(ex) = r.get("exceptionDetails") {
            return Err(format!("page threw: {ex}").into());
        }
        Ok(r["result"]["value"].clone())
    }

    /// A PNG screenshot of the viewport.
    pub fn screenshot(&mut self) -> Result<Vec<u8>, Error> {
        let r = self.call("Page.captureScreenshot", json!({ "format": "png" }))?;
        let data = r["data"].as_str().ok_or("no screenshot data")?;
        Ok(base64::engine::general_purpose::STANDARD.decode(data)?)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.call("Browser.close", json!({}));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Kills the browser if launching fails half way.
struct ChildGuard(Option<Child>, Option<PathBuf>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(p) = self.1.take() {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

fn wait_for_port(file: &Path, limit: Duration) -> Result<u16, Error> {
    let start = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(file) {
            if let Some(port) = s.lines().next().and_then(|l| l.trim().parse().ok()) {
                return Ok(port);
            }
        }
        if start.elapsed() > limit {
            return Err(format!("chromium wrote no {} within {limit:?}", file.display()).into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The page target's debugger URL, from `GET /json/list`.
fn page_ws_url(port: u16, limit: Duration) -> Result<String, Error> {
    let start = Instant::now();
    loop {
        let body = http_get(port, "/json/list")?;
        let list: Value = serde_json::from_str(&body)?;
        let page = list.as_array().and_then(|a| {
            a.iter()
                .find(|t| t["type"] == "page")
                .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(str::to_owned))
        });
        if let Some(url) = page {
            return Ok(url);
        }
        if start.elapsed() > limit {
            return Err(format!("no page target in {body}").into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn http_get(port: u16, path: &str) -> Result<String, Error> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    // DevTools keeps the connection open: read the head, then exactly Content-Length bytes.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head_len, body_len) = loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err("DevTools closed the connection early".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end])?.to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .ok_or("no Content-Length from DevTools")?
                .trim()
                .parse::<usize>()?;
            break (end + 4, len);
        }
    };
    while buf.len() < head_len + body_len {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err("DevTools answer truncated".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8(
        buf[head_len..head_len + body_len].to_vec(),
    )?)
}
