//! Real clients nobody here wrote, against both transports: Python `websocket-client` doing what
//! ComfyUI's `script_examples/websockets_api_example_ws_images.py` does, and Python `websockets`
//! declaring `supports_preview_metadata` (scripts in `tests/python/`).
//!
//! Each run starts a server, starts the script, waits for its `READY` line (status received, and
//! for the metadata client the feature-flags answer too), sends ComfyUI's `executing` messages
//! around a batch of known PNG frames, and requires the script to exit 0: it decodes every frame
//! with Pillow and compares the pixels with the raw files written here.
//!
//! Needs `python3` with `websocket-client`, `websockets`, `pillow` and `numpy`. When they are
//! missing the test fails under `CI=true` (CI installs them) and prints a skip note otherwise.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use pngcast_protocol::http::ServerConfig;
use pngcast_protocol::sink::{FrameSink, Target};
use pngcast_protocol::wire::{ImageMeta, WireFrame};
use serde_json::json;

const NODE: &str = "save_image_websocket_node";
const PROMPT: &str = "prompt-42";

/// One test image: its raw pixels (what Pillow must decode) and PNG.
struct TestImage {
    width: u32,
    height: u32,
    mode: &'static str,
    raw: Vec<u8>,
    png: Vec<u8>,
}

fn make_image(width: u32, height: u32, channels: usize, noise: bool, seed: u64) -> TestImage {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut raw = Vec::with_capacity(width as usize * height as usize * channels);
    for y in 0..height {
        for x in 0..width {
            for c in 0..channels {
                let v = if noise {
                    rng.u8(..)
                } else {
                    (x * 5 + y * 3 + c as u32 * 70 + seed as u32) as u8
                };
                raw.push(v);
            }
        }
    }
    let (color, mode) = match channels {
        1 => (png::ColorType::Grayscale, "L"),
        2 => (png::ColorType::GrayscaleAlpha, "LA"),
        3 => (png::ColorType::Rgb, "RGB"),
        _ => (png::ColorType::Rgba, "RGBA"),
    };
    let mut png_bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut png_bytes, width, height);
        enc.set_color(color);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&raw).unwrap();
    }
    TestImage {
        width,
        height,
        mode,
        raw,
        png: png_bytes,
    }
}

fn images() -> Vec<TestImage> {
    vec![
        make_image(64, 48, 3, false, 1),
        make_image(31, 17, 4, false, 2),
        make_image(20, 10, 1, false, 3),
        make_image(9, 7, 2, false, 4),
        // Noise does not compress: about 1.5 MB, past Python websockets' default 1 MiB cap.
        make_image(700, 700, 3, true, 5),
    ]
}

fn python_ready() -> Result<(), String> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import websocket, websockets, PIL, numpy; from websockets.sync.client import connect",
        ])
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `true` when the test may run; panics in CI when Python or its modules are missing.
fn require_python() -> bool {
    match python_ready() {
        Ok(()) => true,
        Err(why) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "python3 with websocket-client, websockets, pillow and numpy is required in CI: {why}"
                );
            }
            eprintln!(
                "SKIPPED python_clients: {why}\n  install: python3 -m pip install websocket-client websockets pillow numpy"
            );
            false
        }
    }
}

fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python")
}

fn scratch_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pngcast-py-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes the raw pixel files and the expectation JSON; returns its path.
fn write_expectation(dir: &Path, imgs: &[TestImage], event: &str) -> PathBuf {
    let mut frames = Vec::new();
    for (i, img) in imgs.iter().enumerate() {
        let raw = dir.join(format!("{i}.raw"));
        std::fs::write(&raw, &img.raw).unwrap();
        frames.push(json!({
            "width": img.width, "height": img.height, "mode": img.mode,
            "raw": raw.to_str().unwrap(), "index": i, "count": imgs.len(),
        }));
    }
    let expect = json!({ "prompt_id": PROMPT, "node": NODE, "event": event, "frames": frames });
    let path = dir.join("expect.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&expect).unwrap()).unwrap();
    path
}

/// Runs `script` against a server at `addr` whose sink is `sink`.
fn run_script(script: &str, tag: &str, addr: SocketAddr, sink: &dyn FrameSink, announce: bool) {
    let imgs = images();
    let event = "preview";
    let dir = scratch_dir(tag);
    let expect = write_expectation(&dir, &imgs, event);
    let client_id = format!("py-{tag}");
    let mut child = Command::new("python3")
        .arg(scripts_dir().join(script))
        .args([
            "--server",
            &addr.to_string(),
            "--client-id",
            &client_id,
            "--expect",
        ])
        .arg(&expect)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python3");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        if stdout.read_line(&mut line).unwrap() == 0 {
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            let _ = child.wait();
            panic!("{script} ({tag}) ended before READY:\n{err}");
        }
        if line.trim() == "READY" {
            break;
        }
        if line.starts_with("FAIL") {
            panic!("{script} ({tag}): {line}");
        }
    }

    // What ComfyUI sends around a SaveImageWebsocket node, with our frames in the middle.
    let target = Target::client(client_id.as_str());
    sink.send_json(
        &target,
        "executing",
        &json!({ "node": NODE, "prompt_id": PROMPT }),
    )
    .unwrap();
    let count = imgs.len() as u32;
    for (i, img) in imgs.iter().enumerate() {
        let meta = ImageMeta {
            event: event.into(),
            index: i as u32,
            count,
            width: img.width,
            height: img.height,
            prompt_id: Some(PROMPT.into()),
            node_id: Some(NODE.into()),
            ..Default::default()
        };
        sink.send_image(
            &target,
            &WireFrame::new(&meta, Arc::new(img.png.clone()), announce),
        )
        .unwrap();
    }
    sink.send_json(
        &target,
        "executing",
        &json!({ "node": null, "prompt_id": PROMPT }),
    )
    .unwrap();

    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    let status = child.wait().unwrap();
    eprintln!("{script} ({tag}): {}", rest.trim());
    assert!(status.success(), "{script} ({tag}) failed: {rest}\n{err}");
    assert!(rest.contains("OK"), "{rest}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn config(announce: bool) -> ServerConfig {
    ServerConfig::default()
        .addr(SocketAddr::from(([127, 0, 0, 1], 0)))
        .announce(announce)
}

/// The two servers, as far as these tests need them.
trait Transport: FrameSink + Sized {
    const NAME: &'static str;
    fn bind(config: ServerConfig) -> Self;
    fn addr(&self) -> SocketAddr;
}

impl Transport for pngcast_blocking::Server {
    const NAME: &'static str = "blocking";
    fn bind(config: ServerConfig) -> Self {
        pngcast_blocking::Server::bind(config).unwrap()
    }
    fn addr(&self) -> SocketAddr {
        self.local_addr()
    }
}

impl Transport for pngcast_mio::Server {
    const NAME: &'static str = "mio";
    fn bind(config: ServerConfig) -> Self {
        pngcast_mio::Server::bind(config).unwrap()
    }
    fn addr(&self) -> SocketAddr {
        self.local_addr()
    }
}

/// ComfyUI's example script, with and without the legacy announcements.
fn comfy_example_client<T: Transport>() {
    if !require_python() {
        return;
    }
    for announce in [true, false] {
        let server = T::bind(config(announce));
        let tag = format!("comfy-{}-{announce}", T::NAME);
        run_script(
            "comfy_example_client.py",
            &tag,
            server.addr(),
            &server,
            announce,
        );
    }
}

/// A `websockets` client declaring `supports_preview_metadata`.
fn metadata_client<T: Transport>() {
    if !require_python() {
        return;
    }
    let server = T::bind(config(true));
    let tag = format!("meta-{}", T::NAME);
    run_script("metadata_client.py", &tag, server.addr(), &server, true);
}

#[test]
fn comfy_example_client_blocking() {
    comfy_example_client::<pngcast_blocking::Server>();
}

#[test]
fn metadata_client_blocking() {
    metadata_client::<pngcast_blocking::Server>();
}

#[test]
fn comfy_example_client_mio() {
    comfy_example_client::<pngcast_mio::Server>();
}

#[test]
fn metadata_client_mio() {
    metadata_client::<pngcast_mio::Server>();
}
