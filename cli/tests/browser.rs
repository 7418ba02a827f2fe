//! The live viewer in headless Chromium: `pngcast serve --source demo` on a free loopback port,
//! the page at `/` opened in Debian's `chromium` and read over CDP. The page must decode frames
//! of the served size into its `preview` panel, over each transport; a screenshot is kept as
//! `<target>/browser/viewer.png` (the CI artifact).
//!
//! Without Chromium the test prints a note and passes, except under `CI=true`, where a missing
//! browser is a failure (CI installs it: `apt-get install -y chromium`).
//! `PNGCAST_DOCS_SCREENSHOT=docs/viewer.png` also writes the README's screenshot there.

mod common;
mod browser {
    pub mod cdp;
}

use std::path::PathBuf;
use std::time::{Duration, Instant};

use browser::cdp::{find_chromium, Browser};
use common::Serve;
use serde_json::Value;

/// What the page reports about its panels (the viewer writes these data attributes).
/// Before the page has loaded (the tab starts on about:blank) it reports state `loading`.
const PANELS_JS: &str = "JSON.stringify({ \
     state: (document.body && document.body.dataset.state) || 'loading', \
     panels: [...document.querySelectorAll('.panel')].map(p => ({ ...p.dataset })) })";

fn chromium_or_skip() -> Option<PathBuf> {
    let exe = find_chromium();
    if exe.is_none() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !ci,
            "CI=true but no chromium found: install it (apt-get install -y chromium)"
        );
        eprintln!(
            "note: chromium not found; skipping the viewer test (set CHROMIUM or install it)"
        );
    }
    exe
}

/// Polls the page until `done` holds for its panel report, for at most a minute (liveness).
/// `PNGCAST_TRACE=1` prints every report.
fn wait_for(b: &mut Browser, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let raw = b.eval(PANELS_JS).unwrap();
        let report: Value = serde_json::from_str(raw.as_str().unwrap()).unwrap();
        if std::env::var_os("PNGCAST_TRACE").is_some() {
            eprintln!("{:?} {report}", start.elapsed());
        }
        if done(&report) {
            return report;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what}; the page says {report}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn frames_of(report: &Value, event: &str) -> u64 {
    report["panels"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["event"] == event))
        .and_then(|p| p["frames"].as_str()?.parse().ok())
        .unwrap_or(0)
}

fn target_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp.
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn viewer_shows_decoded_frames() {
    let Some(exe) = chromium_or_skip() else {
        return;
    };
    let scratch = common::scratch("browser");
    for transport in ["mio", "blocking"] {
        let serve = Serve::start(&[
            "--transport",
            transport,
            "--source",
            "demo",
            "--size",
            "256x192",
            "--fps",
            "15",
            "--token",
            "viewer-token",
        ]);
        // The page must carry the token from its own URL to the WebSocket.
        let url = format!("http://{}/?token=viewer-token", serve.addr);
        let mut b = Browser::launch(&exe, &url, 1000, 720, &scratch).unwrap();
        let report = wait_for(&mut b, "five decoded preview frames", |r| {
            frames_of(r, "preview") >= 5
        });
        assert_eq!(report["state"], "open", "{transport}: {report}");
        let panels = report["panels"].as_array().unwrap();
        assert_eq!(
            panels.len(),
            1,
            "{transport}: one panel per event: {report}"
        );
        let p = &panels[0];
        assert_eq!(p["width"], "256", "{transport}: {report}");
        assert_eq!(p["height"], "192", "{transport}: {report}");
        assert!(
            p.get("errors").is_none(),
            "{transport}: decode errors: {report}"
        );
        let bytes: u64 = p["bytes"].as_str().unwrap().parse().unwrap();
        assert!(
            bytes > 1000,
            "{transport}: a 256x192 photo-like PNG is not {bytes} bytes"
        );

        // The canvas really holds the picture: its pixels are not one flat colour.
        let distinct = b
            .eval(
                "(() => { const c = document.querySelector('.panel canvas'); \
                 const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; \
                 const s = new Set(); for (let i = 0; i < d.length; i += 4 * 97) s.add(d[i] << 16 | d[i+1] << 8 | d[i+2]); \
                 return s.size; })()",
            )
            .unwrap();
        assert!(
            distinct.as_u64().unwrap() > 50,
            "{transport}: canvas looks flat: {distinct}"
        );

        // Frames keep coming, and the fps readout follows them.
        let before = frames_of(&report, "preview");
        let later = wait_for(&mut b, "more frames", |r| {
            frames_of(r, "preview") >= before + 5
        });
        let fps: f64 = later["panels"][0]["fps"].as_str().unwrap().parse().unwrap();
        assert!(fps > 0.0, "{transport}: {later}");

        let png = b.screenshot().unwrap();
        let dir = target_dir().join("browser");
        std::fs::create_dir_all(&dir).unwrap();
        let shot = dir.join(format!("viewer-{transport}.png"));
        std::fs::write(&shot, &png).unwrap();
        if transport == "mio" {
            std::fs::write(dir.join("viewer.png"), &png).unwrap();
        }
        let (w, h, _, _, _) = common::decode_png(&shot);
        assert!(w >= 800 && h >= 400, "screenshot {w}x{h}");
        eprintln!("screenshot: {}", shot.display());

        // The server going away shows as disconnected; the page retries with backoff and picks
        // up a new server on the same address.
        let addr = serve.addr;
        drop(serve);
        wait_for(&mut b, "the page to notice the server left", |r| {
            r["state"] == "closed"
        });
        let seen = frames_of(&wait_for(&mut b, "report", |_| true), "preview");
        let again = Serve::start_at(
            &addr.to_string(),
            &[
                "--transport",
                transport,
                "--size",
                "256x192",
                "--fps",
                "15",
                "--token",
                "viewer-token",
            ],
        );
        wait_for(&mut b, "frames after reconnecting", |r| {
            r["state"] == "open" && frames_of(r, "preview") >= seen + 3
        });
        drop(again);
    }
}

/// Writes the README screenshot: a larger demo in a wide window. Runs only when asked
/// (`PNGCAST_DOCS_SCREENSHOT=path`); `PNGCAST_DOCS_BIN` may name a release build of pngcast, so
/// that the figures on the page are release figures.
#[test]
fn docs_screenshot() {
    let Some(dest) = std::env::var_os("PNGCAST_DOCS_SCREENSHOT") else {
        return;
    };
    let Some(exe) = chromium_or_skip() else {
        return;
    };
    let bin = std::env::var_os("PNGCAST_DOCS_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_pngcast")),
        PathBuf::from,
    );
    let args = ["--source", "demo", "--size", "640x480", "--fps", "10"];
    let serve = Serve::start_bin(&bin, "127.0.0.1:0", &args);
    let url = format!("http://{}/", serve.addr);
    let mut b = Browser::launch(&exe, &url, 1100, 760, &common::scratch("docs-shot")).unwrap();
    wait_for(&mut b, "frames", |r| frames_of(r, "preview") >= 40);
    std::fs::write(dest, b.screenshot().unwrap()).unwrap();
}

/// The page at phone width, its Pause and Save buttons, and what it says when the token is
/// missing or wrong.
#[test]
fn viewer_controls_phone_width_and_token_help() {
    let Some(exe) = chromium_or_skip() else {
        return;
    };
    let scratch = common::scratch("browser-controls");
    let serve = Serve::start(&[
        "--source", "demo", "--size", "320x240", "--fps", "20", "--token", "t0ken",
    ]);

    // No token in the page's address: the page says a token is needed and how to give it.
    let url = format!("http://{}/", serve.addr);
    let mut b = Browser::launch(&exe, &url, 390, 800, &scratch).unwrap();
    wait_for(&mut b, "the page to explain the missing token", |r| {
        r["state"] == "unauthorized"
    });
    let help = b
        .eval("document.getElementById('help').textContent")
        .unwrap();
    assert!(
        help.as_str().unwrap().contains("?token=YOUR_TOKEN"),
        "{help}"
    );
    drop(b);

    // A wrong token is named as such.
    let url = format!("http://{}/?token=wrong", serve.addr);
    let mut b = Browser::launch(&exe, &url, 390, 800, &scratch).unwrap();
    wait_for(&mut b, "the page to refuse the wrong token", |r| {
        r["state"] == "unauthorized"
    });
    let conn = b
        .eval("document.getElementById('conn').textContent")
        .unwrap();
    assert_eq!(conn, "wrong token");
    drop(b);

    // The right token, at phone width (390 px): nothing runs off the page.
    let url = format!("http://{}/?token=t0ken", serve.addr);
    let mut b = Browser::launch(&exe, &url, 390, 800, &scratch).unwrap();
    wait_for(&mut b, "frames", |r| frames_of(r, "preview") >= 3);
    let overflow = b
        .eval(
            "(() => { const w = document.documentElement.clientWidth; \
             const over = [...document.querySelectorAll('header *, .panel, .panel *')] \
               .filter(e => e.getBoundingClientRect().right > w + 0.5).map(e => e.tagName + '.' + e.className); \
             return JSON.stringify({ scroll: document.documentElement.scrollWidth, w, over }); })()",
        )
        .unwrap();
    let o: Value = serde_json::from_str(overflow.as_str().unwrap()).unwrap();
    assert!(
        o["scroll"].as_u64() <= o["w"].as_u64() && o["over"].as_array().unwrap().is_empty(),
        "content wider than the phone screen: {o}"
    );
    // Each stat stays on one line (no value broken mid-way).
    let wrapped = b
        .eval(
            "[...document.querySelectorAll('dd')].filter(d => d.getClientRects().length > 1 || \
              d.scrollWidth > d.clientWidth + 1).length",
        )
        .unwrap();
    assert_eq!(wrapped, 0, "a stat value wraps or overflows");
    let shot = b.screenshot().unwrap();
    std::fs::write(target_dir().join("browser").join("viewer-phone.png"), &shot)
        .or_else(|_| {
            std::fs::create_dir_all(target_dir().join("browser"))?;
            std::fs::write(target_dir().join("browser").join("viewer-phone.png"), &shot)
        })
        .unwrap();

    // Pause: frames keep arriving but the picture stops; Resume: it moves again.
    b.eval("document.getElementById('pause').click()").unwrap();
    let panel_js = "JSON.stringify({...document.querySelector('.panel').dataset})";
    let read = |b: &mut Browser| -> Value {
        serde_json::from_str(b.eval(panel_js).unwrap().as_str().unwrap()).unwrap()
    };
    std::thread::sleep(Duration::from_millis(300));
    let p0 = read(&mut b);
    std::thread::sleep(Duration::from_millis(1000));
    let p1 = read(&mut b);
    let num = |v: &Value, k: &str| v[k].as_str().unwrap().parse::<u64>().unwrap();
    assert_eq!(
        num(&p0, "frames"),
        num(&p1, "frames"),
        "paused: {p0} -> {p1}"
    );
    assert!(
        num(&p1, "received") > num(&p0, "received"),
        "still receiving: {p1}"
    );
    assert_eq!(b.eval("document.body.dataset.paused").unwrap(), "true");
    b.eval("document.getElementById('pause').click()").unwrap();
    wait_for(&mut b, "frames after resuming", |r| {
        frames_of(r, "preview") >= num(&p1, "frames") + 3
    });

    // Save this frame: the PNG that arrived, under the event's name.
    b.eval("document.querySelector('.panel .save').click()")
        .unwrap();
    let p = read(&mut b);
    assert_eq!(p["saved"], "1", "{p}");
    assert!(num(&p, "savedBytes") > 1000, "{p}");
    let name = p["savedName"].as_str().unwrap();
    assert!(
        name.starts_with("preview_") && name.ends_with(".png"),
        "{name}"
    );
}
