//! Best-of-N encode timings, ours beside the png crate, for machines too loaded for criterion's
//! medians to mean much: the minimum over many runs approximates the unloaded time.
//!
//! `cargo run --release -p pngcast-benches --example encode_best_of -- photo/kodim23.png 100`
//! (a path inside the corpus; falls back to `benches/images/`). Prints MP/s and bytes/raw.
#![forbid(unsafe_code)]

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use pngcast_core::convert::BitDepth;
use pngcast_core::png::{
    Compression, EncodeOptions, Encoder, FastKernel, FastLevel, Filter, ImageInfo, Threads,
};

fn best_of(runs: usize, mut f: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn main() {
    // Main as worker 0 of a two-thread global pool (the `t2pool` line).
    let in_global_pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .use_current_thread()
        .build_global()
        .is_ok();
    let mut args = std::env::args().skip(1);
    let rel = args.next().unwrap_or_else(|| "photo/kodim23.png".into());
    let runs: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(100);
    // Optional: only variants whose label contains this.
    let only = args.next().unwrap_or_default();
    let Some(img) = pngcast_benches::find_image(&rel, &rel) else {
        std::process::exit(2);
    };
    let info = ImageInfo {
        width: img.width,
        height: img.height,
        channels: img.channels,
        bit_depth: BitDepth::Eight,
    };
    let mp = img.pixel_count() as f64 / 1e6;
    let raw = img.raw_bytes() as f64;
    println!(
        "{rel}: {}x{}x{}, best of {runs}",
        img.width, img.height, img.channels
    );
    let wanted = |label: &str| label.contains(only.as_str());
    let report = |label: &str, d: Duration, bytes: usize| {
        println!(
            "{label:<28} {:>9.3} ms {:>8.1} MP/s  {:.4} of raw",
            d.as_secs_f64() * 1e3,
            mp / d.as_secs_f64(),
            bytes as f64 / raw
        );
    };
    for (name, c, f) in [
        ("stored/none", Compression::Stored, Filter::None),
        ("stored/adaptive", Compression::Stored, Filter::Adaptive),
        (
            "compact1/adaptive",
            Compression::Compact(1),
            Filter::Adaptive,
        ),
        (
            "fast_fastest/adaptive",
            Compression::Fast(FastLevel::Fastest),
            Filter::Adaptive,
        ),
        (
            "fast/adaptive",
            Compression::Fast(FastLevel::Balanced),
            Filter::Adaptive,
        ),
    ] {
        for t in [1, 2] {
            let label = format!("pngcast {name} t{t}");
            if !wanted(&label) {
                continue;
            }
            let threads = Threads::Fixed(NonZeroUsize::new(t).unwrap_or(NonZeroUsize::MIN));
            let mut enc = Encoder::new(
                EncodeOptions::default()
                    .compression(c)
                    .filter(f)
                    .threads(threads),
            )
            .unwrap();
            let mut out = Vec::new();
            let d = best_of(runs, || {
                enc.encode_into(&info, &img.pixels, &mut out).unwrap()
            });
            report(&label, d, out.len());
        }
    }
    // Two threads as `pngcast serve` runs them: this (main) thread is worker 0 of the global
    // pool, so a frame starts here at once and only the other worker is woken; the `t2` lines
    // above enter a private pool from outside and wait for two workers to wake.
    let label = "pngcast fast/adaptive t2pool";
    if wanted(label) && in_global_pool {
        let mut enc = Encoder::new(EncodeOptions::default().threads(Threads::Global)).unwrap();
        let mut out = Vec::new();
        let d = best_of(runs, || {
            enc.encode_into(&info, &img.pixels, &mut out).unwrap()
        });
        report(label, d, out.len());
    }
    // The fast coder's other kernels (the lines above use the best one), one thread: what a
    // CPU without AVX-512 (or without SIMD) would see.
    let best = FastKernel::best();
    for k in FastKernel::available().into_iter().filter(|&k| k != best) {
        let label = format!("pngcast fast/adaptive {} t1", k.name());
        if !wanted(&label) {
            continue;
        }
        let mut enc = Encoder::new(
            EncodeOptions::default()
                .fast_kernel(Some(k))
                .threads(Threads::Fixed(NonZeroUsize::MIN)),
        )
        .unwrap();
        let mut out = Vec::new();
        let d = best_of(runs, || {
            enc.encode_into(&info, &img.pixels, &mut out).unwrap()
        });
        report(&label, d, out.len());
    }
    let colour = match img.channels {
        1 => png::ColorType::Grayscale,
        2 => png::ColorType::GrayscaleAlpha,
        3 => png::ColorType::Rgb,
        _ => png::ColorType::Rgba,
    };
    for (name, c) in [
        ("nocompression", png::Compression::NoCompression),
        ("fastest", png::Compression::Fastest),
        ("fast", png::Compression::Fast),
    ] {
        let label = format!("png {name}");
        if !wanted(&label) {
            continue;
        }
        let mut out = Vec::new();
        let d = best_of(runs, || {
            out.clear();
            let mut e = png::Encoder::new(&mut out, img.width, img.height);
            e.set_color(colour);
            e.set_compression(c);
            let mut w = e.write_header().unwrap();
            w.write_image_data(&img.pixels).unwrap();
            w.finish().unwrap();
        });
        report(&label, d, out.len());
    }
}
