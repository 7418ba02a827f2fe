//! PNG encoding, u8 pixels in -> complete PNG bytes out, ours beside peers in the same group.
//!
//! One criterion group per image of `pngcast_benches::encoder_images()` (photo mosaics at 512^2,
//! 1024^2 and 2048^2, the painting crop, the 4K graphic, the screenshot, the gray photo, noise and
//! a flat fill); `Throughput::Elements(pixels)` so reports read in pixels/s
//! (criterion prints "Melem/s" = MP/s). Peers in every group: the png crate (`NoCompression`,
//! `Fastest`, `Fast`, `Balanced`), mtpng at 1 and 2 threads, lodepng. fpng has no crates.io
//! binding that links on Linux (see docs/perf.md); it is measured from Python by
//! `scripts/encoders.sh`. Output sizes are printed once per variant (stderr) as
//! `size <image> <variant>: <bytes> bytes = <ratio> of raw`, for the ratio tables in docs.
//!
//! Run briefly on a shared machine, e.g.:
//! `cargo bench -p pngcast-benches --bench encode -- --warm-up-time 1 --measurement-time 2`
//! and filter with a substring: `... --bench encode -- photo_kodim23`.

use std::hint::black_box;
use std::num::NonZeroUsize;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use pngcast_benches::{encoder_images, peers, Image};
use pngcast_core::convert::{convert_image, BitDepth, ConvertOptions};
use pngcast_core::png::{
    Compression, EncodeOptions, Encoder, FastLevel, Filter, ImageInfo, Threads,
};
use pngcast_core::tensor::TensorView;

/// Our variants: (name, compression, filter). The fast coder adds one line here.
const OUR_VARIANTS: &[(&str, Compression, Filter)] = &[
    ("stored", Compression::Stored, Filter::None),
    ("stored_adaptive", Compression::Stored, Filter::Adaptive),
    ("compact1", Compression::Compact(1), Filter::Adaptive),
    (
        "fast_fastest",
        Compression::Fast(FastLevel::Fastest),
        Filter::Adaptive,
    ),
    (
        "fast",
        Compression::Fast(FastLevel::Balanced),
        Filter::Adaptive,
    ),
];

/// Thread counts for ours and for mtpng.
const THREADS: [usize; 2] = [1, 2];

/// Prints the output size once per (image, variant): criterion calls a benchmark's closure more
/// than once, so `done` remembers.
fn report_size_once(done: &mut bool, img: &Image, variant: &str, bytes: usize) {
    if std::mem::replace(done, true) {
        return;
    }
    eprintln!(
        "size {} {variant}: {bytes} bytes = {:.4} of raw",
        img.name,
        bytes as f64 / img.raw_bytes() as f64
    );
}

fn ours(g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, img: &Image) {
    let info = ImageInfo {
        width: img.width,
        height: img.height,
        channels: img.channels,
        bit_depth: BitDepth::Eight,
    };
    for &(name, compression, filter) in OUR_VARIANTS {
        for threads in THREADS {
            let t = Threads::Fixed(NonZeroUsize::new(threads).unwrap());
            let opts = EncodeOptions::default()
                .compression(compression)
                .filter(filter)
                .threads(t);
            let mut enc = Encoder::new(opts).unwrap();
            let mut out = Vec::new();
            let id = format!("pngcast_{name}_t{threads}");
            // Sizes are reported from inside the closure, which criterion calls only for the
            // benchmarks its filter selects.
            let mut done = false;
            g.bench_function(&id, |b| {
                enc.encode_into(&info, &img.pixels, &mut out).unwrap();
                report_size_once(&mut done, img, &id, out.len());
                b.iter(|| {
                    enc.encode_into(&info, black_box(&img.pixels), &mut out)
                        .unwrap()
                })
            });
        }
    }
}

fn png_crate(g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, img: &Image) {
    use png::Compression as C;
    for (name, c) in [
        ("nocompression", C::NoCompression),
        ("fastest", C::Fastest),
        ("fast", C::Fast),
        ("balanced", C::Balanced),
    ] {
        let mut out = Vec::new();
        let id = format!("png_{name}");
        let mut done = false;
        g.bench_function(&id, |b| {
            peers::png_crate(img, c, &mut out);
            report_size_once(&mut done, img, &id, out.len());
            b.iter(|| peers::png_crate(black_box(img), c, &mut out))
        });
    }
}

fn mtpng(g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, img: &Image) {
    for threads in THREADS {
        let pool = Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap(),
        );
        let id = format!("mtpng_fast_t{threads}");
        let mut done = false;
        g.bench_function(&id, |b| {
            if !done {
                report_size_once(&mut done, img, &id, peers::mtpng(img, &pool).len());
            }
            b.iter(|| peers::mtpng(black_box(img), &pool))
        });
    }
}

fn lodepng(g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, img: &Image) {
    let mut done = false;
    g.bench_function("lodepng_default", |b| {
        if !done {
            report_size_once(&mut done, img, "lodepng_default", peers::lodepng(img).len());
        }
        b.iter(|| peers::lodepng(black_box(img)))
    });
}

fn encode(c: &mut Criterion) {
    for img in encoder_images() {
        let mut g = c.benchmark_group(format!("encode/{}", img.name));
        g.throughput(Throughput::Elements(img.pixel_count()));
        g.sample_size(10);
        ours(&mut g, &img);
        png_crate(&mut g, &img);
        mtpng(&mut g, &img);
        lodepng(&mut g, &img);
        g.finish();
    }
}

/// f32 tensor in -> PNG out: conversion fused into each stripe (`encode_image_into`) against
/// converting the whole image first (`convert_image`, itself parallel) then `encode_into`.
fn encode_tensor(c: &mut Criterion) {
    let Some(img) = encoder_images()
        .into_iter()
        .find(|i| i.name == "painting_1024" || i.name == "photos_1024")
    else {
        return;
    };
    let tensor: Vec<f32> = img.pixels.iter().map(|&v| f32::from(v) / 255.0).collect();
    let (h, w, ch) = (
        img.height as usize,
        img.width as usize,
        usize::from(img.channels),
    );
    let view = TensorView::hwc(&tensor[..], [h, w, ch])
        .unwrap()
        .image(0)
        .unwrap();
    let conv = ConvertOptions::default();
    let mut g = c.benchmark_group(format!("encode_tensor/{}", img.name));
    g.throughput(Throughput::Elements(img.pixel_count()));
    g.sample_size(10);
    for &(name, compression, filter) in OUR_VARIANTS {
        for threads in THREADS {
            let pool = Arc::new(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap(),
            );
            let opts = EncodeOptions::default()
                .compression(compression)
                .filter(filter)
                .threads(Threads::Pool(Arc::clone(&pool)));
            let mut enc = Encoder::new(opts).unwrap();
            let mut out = Vec::new();
            g.bench_function(format!("fused_{name}_t{threads}"), |b| {
                b.iter(|| {
                    enc.encode_image_into(black_box(&view), conv, &mut out)
                        .unwrap()
                })
            });
            let info = ImageInfo {
                width: img.width,
                height: img.height,
                channels: img.channels,
                bit_depth: BitDepth::Eight,
            };
            let mut samples = Vec::new();
            g.bench_function(format!("convert_first_{name}_t{threads}"), |b| {
                b.iter(|| {
                    pool.install(|| convert_image(black_box(&view), conv, &mut samples));
                    enc.encode_into(&info, &samples, &mut out).unwrap()
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, encode, encode_tensor);
criterion_main!(benches);
