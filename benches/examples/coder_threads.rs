//! Thread scaling of f32 tensor -> PNG (the default fast coder), with a per-stage breakdown, as
//! Markdown tables.
//!
//! `cargo run --release -p pngcast-benches --example coder_threads -- --threads 1,2`
//!
//! Frames: RGB photo mosaics ([`pngcast_benches::photo_mosaic`]) of 1 MP (1024^2) and 4 MP
//! (2048^2), and an 8K frame (7680x4320, the 4 MP mosaic tiled), as float32 `[H, W, 3]` tensors in
//! [0, 1]. Per frame and thread count (a private rayon pool of that size, `Threads::Pool`; the
//! calling thread is not a member, so every frame pays the pool's wake-up, as a sender thread
//! outside the pool does), medians of `--runs`:
//! - `f32->PNG`: `Encoder::encode_image_into` (conversion inside each stripe's job);
//! - `u8->PNG`: `Encoder::encode_into` on the converted samples (no conversion);
//! - `convert`: the whole frame's conversion on one thread (`convert_image`), the work the
//!   stripes share;
//! - `wake`: the pool's round trip: `install` of one empty task per thread after 100 us idle;
//! - `serial`: `u8->PNG` minus one thread's `u8->PNG` divided by the threads: what does not
//!   scale (stripe imbalance, wake-up, the join, zlib stream and IDAT assembly).
//!
//! A second table, for the 1 MP frame: `u8->PNG` with the automatic stripe plan beside plans of
//! `threads`, 2x and 4x `threads` stripes (stripe size vs thread count; the plan changes the
//! output bytes a little, which the table also shows).
//!
//! Options: `--threads LIST` (comma-separated; default 1..=16 capped at 2x the cores),
//! `--runs N` (15), `--frames LIST` (of 1mp,4mp,8k; default all).
#![forbid(unsafe_code)]

use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pngcast_benches::{photo_mosaic, Image};
use pngcast_core::convert::{convert_image, BitDepth, ConvertOptions};
use pngcast_core::png::{fast_kernel_name, EncodeOptions, Encoder, ImageInfo, Threads};
use pngcast_core::tensor::ImageView;
use rayon::prelude::*;

fn usage(msg: &str) -> ! {
    eprintln!("coder_threads: {msg}");
    eprintln!("usage: coder_threads [--threads 1,2,4] [--runs N] [--frames 1mp,4mp,8k]");
    std::process::exit(2)
}

/// Median of `runs` timed calls, after warm-up calls for at least 50 ms: on a VM a pool's
/// freshly woken vCPUs run slow for tens of milliseconds (the first 2-thread 1 MP frames took
/// twice as long as the same frames a moment later), which one warm-up call does not cover.
fn time(runs: usize, mut f: impl FnMut()) -> Duration {
    let warm = Instant::now();
    f();
    while warm.elapsed() < Duration::from_millis(50) {
        f();
    }
    pngcast_benches::median(
        &(0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect::<Vec<_>>(),
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `img` tiled to `w x h` (RGB).
fn tiled(img: &Image, w: u32, h: u32, name: &str) -> Image {
    let c = usize::from(img.channels);
    let (sw, sh) = (img.width as usize, img.height as usize);
    let mut pixels = Vec::with_capacity(w as usize * h as usize * c);
    for y in 0..h as usize {
        let src = &img.pixels[(y % sh) * sw * c..(y % sh + 1) * sw * c];
        let mut x = 0;
        while x < w as usize {
            let n = (w as usize - x).min(sw);
            pixels.extend_from_slice(&src[..n * c]);
            x += n;
        }
    }
    Image {
        name: name.into(),
        width: w,
        height: h,
        channels: img.channels,
        pixels,
    }
}

struct Frame {
    name: &'static str,
    img: Image,
    f32s: Vec<f32>,
}

fn frames(wanted: &[String]) -> Vec<Frame> {
    let want = |n: &str| wanted.is_empty() || wanted.iter().any(|w| w == n);
    let mut v = Vec::new();
    let mut add = |name: &'static str, img: Image| {
        // Samples s map back exactly: truncate(255 * s / 255) = s for every 8-bit value.
        let f32s = img.pixels.iter().map(|&b| f32::from(b) / 255.0).collect();
        v.push(Frame { name, img, f32s });
    };
    if want("1mp") {
        if let Some(m) = photo_mosaic(1024) {
            add("1mp", m);
        }
    }
    if want("4mp") || want("8k") {
        if let Some(m) = photo_mosaic(2048) {
            if want("8k") {
                add("8k", tiled(&m, 7680, 4320, "8k"));
            }
            if want("4mp") {
                add("4mp", m);
            }
        }
    }
    v.sort_by_key(|f| f.img.pixel_count());
    v
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let mut threads: Vec<usize> = (1..=16.min(2 * cores)).collect();
    let mut runs = 15usize;
    let mut wanted: Vec<String> = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--threads" => {
                threads = value()
                    .split(',')
                    .map(|t| t.parse().ok().filter(|&t| t > 0))
                    .collect::<Option<_>>()
                    .unwrap_or_else(|| usage("bad --threads"))
            }
            "--runs" => runs = value().parse().unwrap_or_else(|_| usage("bad --runs")),
            "--frames" => wanted = value().split(',').map(String::from).collect::<Vec<_>>(),
            "-h" | "--help" => usage("help"),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if runs == 0 || threads.is_empty() {
        usage("--runs and --threads must not be empty");
    }
    let frames = frames(&wanted);
    if frames.is_empty() {
        usage("no frame (corpus photos not found?)");
    }
    let pools: Vec<(usize, Arc<rayon::ThreadPool>)> = threads
        .iter()
        .map(|&t| {
            let p = rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .expect("rayon pool");
            (t, Arc::new(p))
        })
        .collect();
    let conv = ConvertOptions::default();
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("rayon pool");
    println!(
        "<!-- coder_threads: {cores} cores available, kernel {}, median of {runs} -->\n",
        fast_kernel_name()
    );
    println!(
        "| frame | threads | f32->PNG ms | speed-up | MP/s | u8->PNG ms | convert (1 thread) ms | \
         wake us | serial ms |\n|---|---|---|---|---|---|---|---|---|"
    );
    let mut sweep = Vec::new();
    for f in &frames {
        let img = &f.img;
        let (w, h, c) = (
            img.width as usize,
            img.height as usize,
            usize::from(img.channels),
        );
        let view = ImageView::hwc(&f.f32s[..], [h, w, c]).expect("tensor view");
        let info = ImageInfo {
            width: img.width,
            height: img.height,
            channels: img.channels,
            bit_depth: BitDepth::Eight,
        };
        let mut samples = Vec::new();
        // convert_image runs on the current pool: a one-thread pool makes it one thread.
        let convert = time(runs, || {
            one.install(|| convert_image(&view, conv, &mut samples))
        });
        assert_eq!(samples, img.pixels, "f32 samples convert back exactly");
        let mut base_u8 = None;
        let mut base_f32 = None;
        for (t, pool) in &pools {
            let opts = EncodeOptions::default().threads(Threads::Pool(pool.clone()));
            let mut enc = Encoder::new(opts).expect("encoder");
            let mut out = Vec::new();
            let f32_png = time(runs, || {
                enc.encode_image_into(&view, conv, &mut out)
                    .expect("encode f32")
            });
            let u8_png = time(runs, || {
                enc.encode_into(&info, &img.pixels, &mut out)
                    .expect("encode u8")
            });
            let wake = pngcast_benches::median(
                &(0..runs)
                    .map(|_| {
                        std::thread::sleep(Duration::from_micros(100));
                        let s = Instant::now();
                        pool.install(|| (0..*t).into_par_iter().for_each(|_| ()));
                        s.elapsed()
                    })
                    .collect::<Vec<_>>(),
            );
            let b_u8 = *base_u8.get_or_insert(u8_png);
            let b_f32 = *base_f32.get_or_insert(f32_png);
            let serial = ms(u8_png) - ms(b_u8) / *t as f64;
            println!(
                "| {} | {t} | {:.3} | {:.2}x | {:.0} | {:.3} | {:.3} | {:.0} | {:.3} |",
                f.name,
                ms(f32_png),
                b_f32.as_secs_f64() / f32_png.as_secs_f64(),
                img.pixel_count() as f64 / 1e6 / f32_png.as_secs_f64(),
                ms(u8_png),
                ms(convert),
                wake.as_secs_f64() * 1e6,
                serial.max(0.0),
            );
            if f.name == "1mp" {
                let mut cells = Vec::new();
                for stripes in [None, Some(*t), Some(2 * t), Some(4 * t)] {
                    let rows = stripes.and_then(|s| NonZeroU32::new(h.div_ceil(s.min(h)) as u32));
                    let opts = EncodeOptions::default()
                        .threads(Threads::Pool(pool.clone()))
                        .stripe_rows(rows);
                    let mut enc = Encoder::new(opts).expect("encoder");
                    let d = time(runs, || {
                        enc.encode_into(&info, &img.pixels, &mut out)
                            .expect("encode u8")
                    });
                    cells.push(format!("{:.3} ({} B)", ms(d), out.len()));
                }
                sweep.push(format!("| {t} | {} |", cells.join(" | ")));
            }
        }
    }
    if !sweep.is_empty() {
        println!(
            "\n1 MP u8->PNG ms (bytes) by stripe plan:\n\n| threads | auto | stripes = threads \
             | 2x threads | 4x threads |\n|---|---|---|---|---|"
        );
        for line in sweep {
            println!("{line}");
        }
    }
}
