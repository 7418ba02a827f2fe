//! `pngcast serve` and `pngcast recv` end to end on loopback, for both transports: frames arrive,
//! decode at the right size and with the right pixels, the metadata path works, and bad
//! arguments or unreachable servers give one error line and exit code 2.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{decode_png, pngcast, run_bounded, scratch, Serve};
use serde_json::Value;

const TRANSPORTS: [&str; 2] = ["mio", "blocking"];

/// The lines of `DIR/events.jsonl`, each checked for its receive time `t`; a received message
/// (`raw`) is returned parsed, recv's own lines (`type`) as they are, `pngcast.connected` skipped.
fn events(dir: &Path) -> Vec<Value> {
    raw_lines(dir)
        .into_iter()
        .filter(|l| l["type"] != "pngcast.connected")
        .map(|l| match l["raw"].as_str() {
            Some(raw) => {
                assert!(l.get("type").is_none(), "{l}");
                serde_json::from_str(raw).unwrap()
            }
            None => l,
        })
        .collect()
}

/// The lines of `DIR/events.jsonl` as written.
fn raw_lines(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            assert!(v["t"].as_f64().is_some_and(|t| t > 1.0e9), "{l}");
            v
        })
        .collect()
}

/// Saved PNG files in `dir`, sorted.
fn pngs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".png"))
        .collect();
    v.sort();
    v
}

fn recv(url: &str, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut cmd = pngcast();
    cmd.arg("recv")
        .arg(url)
        .arg("--output")
        .arg(out)
        .args(extra);
    run_bounded(&mut cmd, "pngcast recv")
}

fn demo_roundtrip(transport: &str, metadata: bool) {
    let serve = Serve::start(&[
        "--transport",
        transport,
        "--source",
        "demo",
        "--size",
        "96x64",
        "--fps",
        "40",
    ]);
    assert!(serve.line.contains("demo 96x64"), "{}", serve.line);
    let out = scratch(&format!("recv-{transport}-{metadata}"));
    let flags: &[&str] = if metadata {
        &["--count", "3", "--metadata"]
    } else {
        &["--count", "3"]
    };
    let r = recv(&serve.ws_url(), &out, flags);
    assert!(
        r.status.success(),
        "recv failed: {}",
        String::from_utf8_lossy(&r.stderr)
    );

    let names = pngs(&out);
    assert_eq!(
        names,
        [
            "preview_0_000000.png",
            "preview_0_000001.png",
            "preview_0_000002.png"
        ]
    );
    let printed = String::from_utf8(r.stdout).unwrap();
    assert_eq!(printed.lines().count(), 3, "{printed}");
    for n in &names {
        let (w, h, color, depth, pixels) = decode_png(&out.join(n));
        assert_eq!(
            (w, h, color, depth),
            (96, 64, png::ColorType::Rgb, png::BitDepth::Eight)
        );
        // The scene is not flat: sky above, ground below.
        assert_ne!(pixels[..3], pixels[pixels.len() - 3..]);
    }

    let log = events(&out);
    assert_eq!(log[0]["type"], "status", "{log:?}");
    assert!(log[0]["data"]["sid"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    let flags = log.iter().filter(|l| l["type"] == "feature_flags").count();
    assert_eq!(
        flags,
        usize::from(metadata),
        "feature_flags answer only when asked: {log:?}"
    );
    let images: Vec<&Value> = log
        .iter()
        .filter(|l| l["type"] == "pngcast.image")
        .collect();
    assert_eq!(images.len(), 3);
    for (img, name) in images.iter().zip(&names) {
        let d = &img["data"];
        assert_eq!(d["file"], name.as_str());
        assert_eq!(d["event"], "preview");
        assert_eq!(d["index"], 0);
        assert_eq!(d["metadata"]["width"], 96);
        assert_eq!(d["metadata"]["height"], 64);
        assert_eq!(d["metadata"]["event"], "preview");
        assert_eq!(d["bytes"], std::fs::metadata(out.join(name)).unwrap().len());
    }

    // Runs until killed (dropped): no race between the client's start and the last frame.
    drop(serve);
}

#[test]
fn recv_saves_frames_from_each_transport() {
    for t in TRANSPORTS {
        demo_roundtrip(t, false);
    }
}

#[test]
fn recv_with_metadata_from_each_transport() {
    for t in TRANSPORTS {
        demo_roundtrip(t, true);
    }
}

/// A `.npy` file with known values: the received PNGs hold exactly ComfyUI's quantisation.
#[test]
fn file_source_pixels_arrive_exactly() {
    let dir = scratch("npy-source");
    let (b, h, w, c) = (2usize, 5usize, 7usize, 3usize);
    let values: Vec<f32> = (0..b * h * w * c)
        .map(|i| (i % 256) as f32 / 255.5)
        .collect();
    let mut npy = Vec::new();
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({b}, {h}, {w}, {c}), }}");
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    npy.extend_from_slice(b"\x93NUMPY\x01\x00");
    npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
    npy.extend_from_slice(header.as_bytes());
    for v in &values {
        npy.extend_from_slice(&v.to_le_bytes());
    }
    let file = dir.join("batch.npy");
    std::fs::write(&file, npy).unwrap();

    for t in TRANSPORTS {
        let serve = Serve::start(&[
            "--transport",
            t,
            "--source",
            file.to_str().unwrap(),
            "--fps",
            "50",
            "--policy",
            "reliable",
            "--event",
            "batch item",
        ]);
        let out = dir.join(format!("out-{t}"));
        let r = recv(&serve.ws_url(), &out, &["--count", "4", "--metadata"]);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let names = pngs(&out);
        assert_eq!(names.len(), 4, "{names:?}");
        let item = |i: usize| -> Vec<u8> {
            values[i * h * w * c..(i + 1) * h * w * c]
                .iter()
                .map(|v| (255.0f32 * v).clamp(0.0, 255.0) as u8)
                .collect()
        };
        let mut seen = [0usize; 2];
        for name in &names {
            assert!(name.starts_with("batch_item_0_"), "{name}");
            let (pw, ph, _, _, pixels) = decode_png(&out.join(name));
            assert_eq!((pw, ph), (w as u32, h as u32));
            // One image per tick, cycling through the batch: each frame is one item, exactly.
            let which = (0..b).find(|&i| pixels == item(i));
            seen[which.unwrap_or_else(|| panic!("{t}: {name} matches no batch item"))] += 1;
        }
        assert!(
            seen.iter().all(|&n| n >= 1),
            "{t}: both batch items arrive: {seen:?}"
        );
        drop(serve);
    }
}

/// `--frames N` ends the stream: serve exits 0 after Close 1001, and a `recv` without `--count`
/// ends cleanly when the server closes.
#[test]
fn frames_limit_shuts_down_cleanly() {
    for t in TRANSPORTS {
        let serve = Serve::start(&[
            "--transport",
            t,
            "--size",
            "32x24",
            "--fps",
            "20",
            "--frames",
            "5",
            "--wait-clients",
            "1",
        ]);
        let out = scratch(&format!("frames-{t}"));
        let r = recv(&serve.ws_url(), &out, &[]);
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(r.status.success(), "{t}: {err}");
        assert!(
            err.contains("closed the connection (code 1001)"),
            "{t}: {err}"
        );
        let saved = pngs(&out).len();
        assert!((1..=5).contains(&saved), "{t}: {saved} images");
        let (status, stderr) = serve.wait();
        assert!(status.success(), "{t}: {stderr}");
        assert!(stderr.contains("pngcast: 5 frames"), "{t}: {stderr}");
    }
}

/// events.jsonl keeps each JSON message as its verbatim text with a receive time; a second run
/// into the same directory is refused (nothing touched) unless --append, which continues the
/// numbering and appends to the log.
#[test]
fn recv_logs_raw_messages_and_never_mixes_runs() {
    let serve = Serve::start(&["--size", "16x16", "--fps", "40"]);
    let out = scratch("recv-runs");
    let r = recv(&serve.ws_url(), &out, &["--count", "2", "--metadata"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let first = std::fs::read_to_string(out.join("events.jsonl")).unwrap();
    let lines = raw_lines(&out);
    assert_eq!(lines[0]["type"], "pngcast.connected");
    assert_eq!(lines[0]["data"]["first_seq"], 0);
    let raws: Vec<&str> = lines.iter().filter_map(|l| l["raw"].as_str()).collect();
    // The status and the feature_flags answer, each the server's text as sent.
    assert!(raws.len() >= 2, "{first}");
    for raw in &raws {
        let v: Value = serde_json::from_str(raw).unwrap();
        assert!(v["type"].is_string(), "{raw}");
    }
    assert!(raws[0].contains("\"status\""), "{}", raws[0]);
    let before = pngs(&out);
    assert_eq!(before, ["preview_0_000000.png", "preview_0_000001.png"]);

    let r = recv(&serve.ws_url(), &out, &["--count", "1"]);
    assert_eq!(r.status.code(), Some(2));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.lines().count() == 1 && err.contains("--append") && err.contains("not empty"),
        "{err}"
    );
    assert!(r.stdout.is_empty());
    assert_eq!(pngs(&out), before);
    assert_eq!(
        std::fs::read_to_string(out.join("events.jsonl")).unwrap(),
        first
    );

    let r = recv(&serve.ws_url(), &out, &["--count", "2", "--append"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(
        pngs(&out),
        [
            "preview_0_000000.png",
            "preview_0_000001.png",
            "preview_0_000002.png",
            "preview_0_000003.png"
        ]
    );
    let all = std::fs::read_to_string(out.join("events.jsonl")).unwrap();
    assert!(
        all.starts_with(&first),
        "the earlier lines are kept as they were"
    );
    let runs: Vec<Value> = raw_lines(&out)
        .into_iter()
        .filter(|l| l["type"] == "pngcast.connected")
        .collect();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1]["data"]["first_seq"], 2);
    let files: Vec<Value> = events(&out)
        .into_iter()
        .filter(|l| l["type"] == "pngcast.image")
        .map(|l| l["data"]["file"].clone())
        .collect();
    assert_eq!(files.len(), 4);
    assert_eq!(files[3], "preview_0_000003.png");
    drop(serve);
}

#[test]
fn token_is_required_when_set() {
    for t in TRANSPORTS {
        let serve = Serve::start(&[
            "--transport",
            t,
            "--size",
            "16x16",
            "--token",
            "s3cret",
            "--fps",
            "20",
        ]);
        // The start-up line shows where the token goes, never the token.
        assert!(
            serve.line.contains("?token=REDACTED") && !serve.line.contains("s3cret"),
            "{}",
            serve.line
        );
        let out = scratch(&format!("token-{t}"));
        let r = recv(&serve.ws_url(), &out, &["--count", "1"]);
        assert_eq!(r.status.code(), Some(2));
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(err.contains("401") && err.lines().count() == 1, "{err}");
        let r = recv(
            &serve.ws_url(),
            &out,
            &["--count", "1", "--token", "s3cret"],
        );
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        assert_eq!(pngs(&out).len(), 1);
    }
}

/// Runs pngcast with `args` and checks for exit code 2 and one error line mentioning `needle`.
fn fails(args: &[&str], needle: &str) {
    let out = run_bounded(pngcast().args(args), "pngcast");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(err.starts_with("pngcast: error: "), "{args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: wanted {needle:?} in {err}");
}

#[test]
fn bad_arguments_exit_2() {
    fails(&["serve", "--addr", "0.0.0.0:0"], "--token");
    fails(&["serve", "--addr", "nonsense"], "--addr");
    fails(&["serve", "--size", "0x5"], "size");
    fails(&["serve", "--size", "100000x100000"], "limit");
    fails(&["serve", "--fps=-1"], "frame rate");
    fails(
        &["serve", "--transport", "carrier-pigeon"],
        "carrier-pigeon",
    );
    fails(&["serve", "--policy", "maybe"], "maybe");
    fails(
        &["serve", "--source", "/nonexistent/dir"],
        "/nonexistent/dir",
    );
    fails(
        &["serve", "--source", "/nonexistent.npy", "--size", "8x8"],
        "--size",
    );
    fails(&["serve", "--compression", "zstd"], "zstd");
    for bad in ["ftp://x", "example.org", "http://", "http://h/path", "null"] {
        fails(&["serve", "--allowed-origin", bad], bad);
    }
    let never = scratch("never").join("out");
    let never = never.to_str().unwrap();
    fails(&["recv", "ws://127.0.0.1:9/ws"], "--output");
    fails(
        &["recv", "ws://127.0.0.1:1/ws", "--output", never],
        "cannot connect",
    );
    fails(
        &["recv", "not a url at all", "--output", never],
        "cannot connect",
    );
    let zero = [
        "recv",
        "ws://127.0.0.1:1/ws",
        "--output",
        never,
        "--count",
        "0",
    ];
    fails(&zero, "count");
    assert!(
        !Path::new(never).exists(),
        "a failed recv leaves no directory"
    );

    // A port already taken by another server is a clean error too.
    let first = Serve::start(&["--size", "8x8"]);
    fails(
        &["serve", "--size", "8x8", "--addr", &first.addr.to_string()],
        &first.addr.to_string(),
    );
}

#[test]
fn insecure_allows_a_wildcard_bind() {
    let out = run_bounded(
        pngcast().args([
            "serve",
            "--addr",
            "0.0.0.0:0",
            "--insecure",
            "--size",
            "8x8",
            "--frames",
            "1",
        ]),
        "pngcast serve",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("pngcast: serving demo 8x8 on http://0.0.0.0:"),
        "{stdout}"
    );
}

#[test]
fn serve_serves_the_viewer_page() {
    use std::io::{Read, Write};
    for t in TRANSPORTS {
        let serve = Serve::start(&["--transport", t, "--size", "8x8", "--fps", "5"]);
        let mut s = std::net::TcpStream::connect(serve.addr).unwrap();
        write!(
            s,
            "GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            serve.addr
        )
        .unwrap();
        let mut page = String::new();
        s.read_to_string(&mut page).unwrap();
        assert!(page.starts_with("HTTP/1.1 200"), "{t}: {page:.200}");
        assert!(page.contains("<title>pngcast viewer</title>"), "{t}");
        assert!(page.contains("supports_preview_metadata"), "{t}");
    }
}

/// The HTTP status a WebSocket upgrade with this `Origin` header gets.
fn upgrade_status(addr: std::net::SocketAddr, origin: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    write!(
        s,
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nOrigin: {origin}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap() == 1 {
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 "), "{head}");
    head[9..12].parse().unwrap()
}

#[test]
fn allowed_origin_flag_feeds_the_allow_list() {
    for t in TRANSPORTS {
        let open = Serve::start(&["--transport", t, "--size", "8x8", "--fps", "5"]);
        let listed = Serve::start(&[
            "--transport",
            t,
            "--size",
            "8x8",
            "--fps",
            "5",
            "--allowed-origin",
            "http://studio.example:8080",
            "--allowed-origin",
            "https://other.example/",
        ]);
        let own = format!("http://{}", listed.addr);
        // Without the flag only the origin matching Host passes.
        assert_eq!(
            upgrade_status(open.addr, "http://studio.example:8080"),
            403,
            "{t}"
        );
        assert_eq!(
            upgrade_status(open.addr, &format!("http://{}", open.addr)),
            101,
            "{t}"
        );
        // With it, each listed origin passes too (case-insensitive, trailing `/` dropped);
        // others are still refused.
        assert_eq!(
            upgrade_status(listed.addr, "http://studio.example:8080"),
            101,
            "{t}"
        );
        assert_eq!(
            upgrade_status(listed.addr, "HTTP://Studio.Example:8080"),
            101,
            "{t}"
        );
        assert_eq!(
            upgrade_status(listed.addr, "https://other.example"),
            101,
            "{t}"
        );
        assert_eq!(upgrade_status(listed.addr, &own), 101, "{t}");
        assert_eq!(
            upgrade_status(listed.addr, "http://studio.example:8081"),
            403,
            "{t}"
        );
        assert_eq!(
            upgrade_status(listed.addr, "https://evil.example"),
            403,
            "{t}"
        );
        assert_eq!(upgrade_status(listed.addr, "null"), 403, "{t}");
    }
}

/// Sends `signal` (`TERM`, `INT`) to the serve process.
fn signal(serve: &Serve, signal: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &serve.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{signal}");
}

#[test]
fn sigterm_and_sigint_close_clients_with_1001_and_exit_0() {
    for (t, sig) in [
        ("mio", "TERM"),
        ("blocking", "INT"),
        ("mio", "INT"),
        ("blocking", "TERM"),
    ] {
        let serve = Serve::start(&["--transport", t, "--size", "32x24", "--fps", "50"]);
        let out = scratch(&format!("signal-{t}-{sig}"));
        let ws = serve.ws_url();
        let recv_thread = std::thread::spawn(move || recv(&ws, &out, &[]));
        // Frames flow once the client is in; then the signal.
        std::thread::sleep(Duration::from_millis(700));
        signal(&serve, sig);
        let r = recv_thread.join().unwrap();
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(r.status.success(), "{t} {sig}: {err}");
        assert!(
            err.contains("closed the connection (code 1001)"),
            "{t} {sig}: {err}"
        );
        let (status, stderr) = serve.wait();
        assert!(status.success(), "{t} {sig}: {stderr}");
        assert!(stderr.contains("signal received"), "{stderr}");
        assert!(stderr.contains("stopped after"), "{stderr}");
        assert!(stderr.contains("1 client closed"), "{stderr}");
    }
}

#[test]
fn token_file_and_env_are_used_and_never_printed() {
    let dir = scratch("token-file");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    std::fs::write(&file, "s3cret-from-file\n").unwrap();
    let serve = Serve::start(&["--size", "16x16", "--token-file", file.to_str().unwrap()]);
    assert!(!serve.line.contains("s3cret"), "{}", serve.line);
    assert!(serve.line.contains("?token=REDACTED"), "{}", serve.line);
    let out = scratch("token-file-out");
    let denied = recv(&serve.ws_url(), &out, &["--count", "1"]);
    assert!(!denied.status.success());
    assert!(String::from_utf8_lossy(&denied.stderr).contains("401"));
    let ok = recv(
        &serve.ws_url(),
        &out,
        &["--count", "1", "--token", "s3cret-from-file"],
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    signal(&serve, "TERM");
    let (_, stderr) = serve.wait();
    assert!(!stderr.contains("s3cret"), "{stderr}");

    let empty = dir.join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let r = run_bounded(
        pngcast().args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--token-file",
            empty.to_str().unwrap(),
        ]),
        "pngcast serve",
    );
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("holds no token"));
    let r = run_bounded(
        pngcast().args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--token-file",
            "/nonexistent/token",
        ]),
        "pngcast serve",
    );
    assert_eq!(r.status.code(), Some(2));

    let out = scratch("token-env-out");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pngcast"));
    cmd.env("PNGCAST_TOKEN", "env-s3cret");
    let serve = Serve::start_cmd(cmd, "127.0.0.1:0", &["--size", "16x16"]);
    assert!(!serve.line.contains("env-s3cret") && serve.line.contains("REDACTED"));
    let denied = recv(&serve.ws_url(), &out, &["--count", "1"]);
    assert!(!denied.status.success());
    let ok = recv(
        &serve.ws_url(),
        &out,
        &["--count", "1", "--token", "env-s3cret"],
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[test]
fn the_demo_renders_nothing_without_clients() {
    let serve = Serve::start(&["--size", "64x64", "--fps", "0"]);
    std::thread::sleep(Duration::from_millis(800));
    signal(&serve, "INT");
    let (status, stderr) = serve.wait();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("stopped after 0 frames"), "{stderr}");
}

#[test]
fn a_port_in_use_is_named() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    let r = run_bounded(pngcast().args(["serve", "--addr", &addr]), "pngcast serve");
    assert_eq!(r.status.code(), Some(2));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("another program listens there"), "{err}");
    // 8188 is ComfyUI's port: the hint says so (held here, or by whatever holds it already).
    let _comfy = std::net::TcpListener::bind("127.0.0.1:8188");
    let r = run_bounded(
        pngcast().args(["serve", "--addr", "127.0.0.1:8188"]),
        "pngcast serve",
    );
    assert_eq!(r.status.code(), Some(2));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("is ComfyUI running?"), "{err}");
}
