//! PNG encoding, u8 pixels in -> complete PNG bytes out, ours beside peers in the same group.
//!
//! One criterion group per image; `Throughput::Elements(pixels)` so reports read in pixels/s
//! (criterion prints "Melem/s" = MP/s). Output sizes are printed once per variant (stderr) as
//! `size <image> <variant>: <bytes> bytes = <ratio> of raw`, for the ratio tables in docs.
//!
//! Run briefly on a shared machine, e.g.:
//! `cargo bench -p pngcast-benches --bench encode -- --warm-up-time 1 --measurement-time 2`
//! and filter with a substring: `... --bench encode -- photo_kodim23`.

use std::hint::black_box;
use std::num::NonZeroUsize;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use pngcast_benches::{encode_bench_images, Image};
use pngcast_core::convert::{convert_image, BitDepth, ConvertOptions};
use pngcast_core::png::{Compression, EncodeOptions, Encoder, Filter, ImageInfo, Threads};
use pngcast_core::tensor::TensorView;

/// Our variants: (name, compression, filter). The fast coder adds one line here.
const OUR_VARIANTS: &[(&str, Compression, Filter)] = &[
    ("stored", Compression::Stored, Filter::None),
    ("stored_adaptive", Compression::Stored, Filter::Adaptive),
    ("compact1", Compression::Compact(1), Filter::Adaptive),
];

/// Thread counts for ours and for mtpng.
const THREADS: [usize; 2] = [1, 2];

fn report_size(img: &Image, variant: &str, bytes: usize) {
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
            enc.encode_into(&info, &img.pixels, &mut out).unwrap();
            let id = format!("pngcast_{name}_t{threads}");
            report_size(img, &id, out.len());
            g.bench_function(id, |b| {
                b.iter(|| {
                    enc.encode_into(&info, black_box(&img.pixels), &mut out)
                        .unwrap()
                })
            });
        }
    }
}

fn png_colour(channels: u8) -> png::ColorType {
    match channels {
        1 => png::ColorType::Grayscale,
        2 => png::ColorType::GrayscaleAlpha,
        3 => png::ColorType::Rgb,
        _ => png::ColorType::Rgba,
    }
}

fn png_encode(img: &Image, compression: png::Compression, out: &mut Vec<u8>) {
    out.clear();
    let mut e = png::Encoder::new(&mut *out, img.width, img.height);
    e.set_color(png_colour(img.channels));
    e.set_depth(png::BitDepth::Eight);
    e.set_compression(compression);
    let mut w = e.write_header().unwrap();
    w.write_image_data(&img.pixels).unwrap();
    w.finish().unwrap();
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
        png_encode(img, c, &mut out);
        let id = format!("png_{name}");
        report_size(img, &id, out.len());
        g.bench_function(id, |b| b.iter(|| png_encode(black_box(img), c, &mut out)));
    }
}

fn mtpng_encode(img: &Image, pool: &rayon::ThreadPool) -> Vec<u8> {
    use mtpng::{encoder, ColorType, CompressionLevel, Header};
    let mut header = Header::new();
    header.set_size(img.width, img.height).unwrap();
    let colour = match img.channels {
        1 => ColorType::Greyscale,
        2 => ColorType::GreyscaleAlpha,
        3 => ColorType::Truecolor,
        _ => ColorType::TruecolorAlpha,
    };
    header.set_color(colour, 8).unwrap();
    let mut options = encoder::Options::new();
    options.set_thread_pool(pool).unwrap();
    options
        .set_compression_level(CompressionLevel::Fast)
        .unwrap();
    let mut e = encoder::Encoder::new(Vec::new(), &options);
    e.write_header(&header).unwrap();
    e.write_image_rows(&img.pixels).unwrap();
    e.finish().unwrap()
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
        report_size(img, &id, mtpng_encode(img, &pool).len());
        g.bench_function(id, |b| b.iter(|| mtpng_encode(black_box(img), &pool)));
    }
}

fn lodepng_encode(img: &Image) -> Vec<u8> {
    let colour = match img.channels {
        1 => lodepng::ColorType::GREY,
        2 => lodepng::ColorType::GREY_ALPHA,
        3 => lodepng::ColorType::RGB,
        _ => lodepng::ColorType::RGBA,
    };
    lodepng::encode_memory(
        &img.pixels,
        img.width as usize,
        img.height as usize,
        colour,
        8,
    )
    .unwrap()
}

fn lodepng(g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, img: &Image) {
    report_size(img, "lodepng_default", lodepng_encode(img).len());
    g.bench_function("lodepng_default", |b| {
        b.iter(|| lodepng_encode(black_box(img)))
    });
}

fn encode(c: &mut Criterion) {
    for img in encode_bench_images() {
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
    let Some(img) = encode_bench_images()
        .into_iter()
        .find(|i| i.name == "painting_1024" || i.name == "photo_kodim23")
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
