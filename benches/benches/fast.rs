//! The fast coder against its peers, per image: `Compression::Fast` at both levels (one thread,
//! and two threads for the 1 MP+ images), miniz_oxide level 1 through our writer (ComfyUI's
//! Pillow setting), and the png crate's `Fast` and `Fastest`, all in the same run on the same
//! pixels. Throughput is in pixels (reports read in MP/s); each variant's output size over the
//! raw size is printed once (`size ...` lines) since criterion does not report sizes.
//!
//! Images: the repo's `benches/images/` copies, plus, when `/work/shared/corpus` (or
//! `$PNGCAST_CORPUS`) exists, 1024x1024 crops of the painting and of a photo, the 4K graphic,
//! and noise and flat fills.
//!
//! Run: `cargo bench -p pngcast-benches --bench fast -- --warm-up-time 1 --measurement-time 3`
//! Times are wall and (on Linux) this thread's CPU time: see `iter_cpu`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pngcast_core::convert::BitDepth;
use pngcast_core::png::{Compression, EncodeOptions, Encoder, FastLevel, ImageInfo, Threads};

struct Image {
    name: String,
    info: ImageInfo,
    pixels: Vec<u8>,
}

fn load(path: &Path) -> Option<(ImageInfo, Vec<u8>)> {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).ok()?));
    let mut r = dec.read_info().ok()?;
    let mut buf = vec![0u8; r.output_buffer_size()?];
    let info = r.next_frame(&mut buf).ok()?;
    buf.truncate(info.buffer_size());
    if info.bit_depth != png::BitDepth::Eight {
        return None;
    }
    let info = ImageInfo {
        width: info.width,
        height: info.height,
        channels: info.color_type.samples() as u8,
        bit_depth: BitDepth::Eight,
    };
    Some((info, buf))
}

/// The top-left `w x h` crop (or the whole image if smaller).
fn crop(info: &ImageInfo, px: &[u8], w: u32, h: u32) -> (ImageInfo, Vec<u8>) {
    let (w, h) = (w.min(info.width), h.min(info.height));
    let c = info.channels as usize;
    let src_rb = info.width as usize * c;
    let mut out = Vec::with_capacity(w as usize * h as usize * c);
    for y in 0..h as usize {
        out.extend_from_slice(&px[y * src_rb..y * src_rb + w as usize * c]);
    }
    (
        ImageInfo {
            width: w,
            height: h,
            ..*info
        },
        out,
    )
}

fn images() -> Vec<Image> {
    let mut v = Vec::new();
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("images");
    for f in ["kodim23.png", "camera.png", "lorem_ipsum_screenshot.png"] {
        if let Some((info, pixels)) = load(&here.join(f)) {
            v.push(Image {
                name: f.trim_end_matches(".png").into(),
                info,
                pixels,
            });
        }
    }
    let corpus = std::env::var_os("PNGCAST_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/shared/corpus"));
    let crops = [
        (
            "art/fantasy_digital_painting.png",
            "painting_1024",
            Some(1024),
        ),
        ("photo/retina.png", "retina_1024", Some(1024)),
        ("photo/hubble_deep_field.png", "hubble", None),
        ("graphic/exoplanet_phase_curve.png", "graphic_4k", None),
    ];
    for (file, name, size) in crops {
        if let Some((info, px)) = load(&corpus.join(file)) {
            let (info, pixels) = match size {
                Some(s) => crop(&info, &px, s, s),
                None => (info, px),
            };
            v.push(Image {
                name: name.into(),
                info,
                pixels,
            });
        }
    }
    let info = ImageInfo {
        width: 1024,
        height: 1024,
        channels: 3,
        bit_depth: BitDepth::Eight,
    };
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let noise = (0..1024 * 1024 * 3)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 56) as u8
        })
        .collect();
    v.push(Image {
        name: "noise_1024".into(),
        info,
        pixels: noise,
    });
    v.push(Image {
        name: "flat_1024".into(),
        info,
        pixels: vec![0x7f; 1024 * 1024 * 3],
    });
    v
}

fn thread_cpu_time() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(Duration::from_nanos(
        s.split_whitespace().next()?.parse().ok()?,
    ))
}

/// Times in this thread's CPU time when the OS reports it, else wall time: on a machine shared
/// with other jobs, time descheduled is not counted. For multi-threaded variants use wall time.
fn iter_cpu(b: &mut criterion::Bencher<'_>, mut f: impl FnMut()) {
    b.iter_custom(|iters| {
        let (c0, w0) = (thread_cpu_time(), Instant::now());
        for _ in 0..iters {
            f();
        }
        match (c0, thread_cpu_time()) {
            (Some(a), Some(b)) if b > a => b - a,
            _ => w0.elapsed(),
        }
    })
}

fn png_crate(img: &Image, c: png::Compression, out: &mut Vec<u8>) {
    out.clear();
    let mut e = png::Encoder::new(&mut *out, img.info.width, img.info.height);
    e.set_color(
        [
            png::ColorType::Grayscale,
            png::ColorType::GrayscaleAlpha,
            png::ColorType::Rgb,
            png::ColorType::Rgba,
        ][img.info.channels as usize - 1],
    );
    e.set_depth(png::BitDepth::Eight);
    e.set_compression(c);
    let mut w = e.write_header().unwrap();
    w.write_image_data(&img.pixels).unwrap();
    w.finish().unwrap();
}

fn bench(c: &mut Criterion) {
    let one = Threads::Fixed(std::num::NonZeroUsize::MIN);
    let two = Threads::Fixed(std::num::NonZeroUsize::new(2).unwrap());
    // Our variants: (name, compression, threads, cpu-timed).
    let ours = [
        (
            "fast_fastest_1t",
            Compression::Fast(FastLevel::Fastest),
            one.clone(),
            true,
        ),
        (
            "fast_balanced_1t",
            Compression::Fast(FastLevel::Balanced),
            one.clone(),
            true,
        ),
        (
            "fast_fastest_2t",
            Compression::Fast(FastLevel::Fastest),
            two.clone(),
            false,
        ),
        (
            "fast_balanced_2t",
            Compression::Fast(FastLevel::Balanced),
            two,
            false,
        ),
        ("miniz1_1t", Compression::Compact(1), one, true),
    ];
    for img in images() {
        let raw = img.pixels.len() as f64;
        let pixels = img.info.width as u64 * img.info.height as u64;
        let mut g = c.benchmark_group(format!("fast/{}", img.name));
        g.throughput(Throughput::Elements(pixels));
        g.sample_size(10);
        for (name, comp, threads, cpu) in ours.iter().cloned() {
            if !cpu && pixels < 1_000_000 {
                continue;
            }
            let mut enc =
                Encoder::new(EncodeOptions::default().compression(comp).threads(threads)).unwrap();
            let mut out = Vec::new();
            enc.encode_into(&img.info, &img.pixels, &mut out).unwrap();
            eprintln!("size {} {name} {:.4}", img.name, out.len() as f64 / raw);
            g.bench_function(name, |b| {
                let mut f = || {
                    enc.encode_into(&img.info, black_box(&img.pixels), &mut out)
                        .unwrap()
                };
                if cpu {
                    iter_cpu(b, f)
                } else {
                    b.iter(&mut f)
                }
            });
        }
        for (name, comp) in [
            ("png_fast", png::Compression::Fast),
            ("png_fastest", png::Compression::Fastest),
        ] {
            let mut out = Vec::new();
            png_crate(&img, comp, &mut out);
            eprintln!("size {} {name} {:.4}", img.name, out.len() as f64 / raw);
            g.bench_function(name, |b| iter_cpu(b, || png_crate(&img, comp, &mut out)));
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
