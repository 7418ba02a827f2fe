//! The fast coder against its peers, per image: `Compression::Fast` at both levels (one thread,
//! and two threads for the 1 MP+ images; the other kernels this CPU has, one thread, as
//! `fast_balanced_1t_<kernel>`), miniz_oxide level 1 through our writer (ComfyUI's
//! Pillow setting), the png crate (`NoCompression`, `Fastest`, `Fast`, `Balanced`), mtpng at 1
//! and 2 threads and lodepng, all in the same run on the same pixels. Throughput is in pixels
//! (reports read in MP/s); each variant's output size over the raw size is printed once
//! (`size ...` lines) since criterion does not report sizes. fpng: see docs/perf.md (no crates.io
//! binding links on Linux; `scripts/encoders.sh` measures it from Python).
//!
//! Images: `pngcast_benches::encoder_images()`: photo mosaics at 512^2, 1024^2 and 2048^2, a
//! 1024^2 crop of the painting, the 4K graphic, the screenshot, the gray photo, 1024^2 noise and
//! flat fill (from the corpus, `$PNGCAST_CORPUS` or `../shared/corpus`; `benches/images/` copies
//! otherwise, and missing images are skipped with a note).
//!
//! Run: `cargo bench -p pngcast-benches --bench fast -- --warm-up-time 1 --measurement-time 3`
//! Times are wall and (on Linux) this thread's CPU time: see `iter_cpu`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pngcast_benches::{encoder_images, peers};
use pngcast_core::convert::BitDepth;
use pngcast_core::png::{
    Compression, EncodeOptions, Encoder, FastKernel, FastLevel, ImageInfo, Threads,
};

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
    let pools = [1, 2].map(|n| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    });
    for img in encoder_images() {
        let raw = img.pixels.len() as f64;
        let pixels = img.pixel_count();
        let info = ImageInfo {
            width: img.width,
            height: img.height,
            channels: img.channels,
            bit_depth: BitDepth::Eight,
        };
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
            enc.encode_into(&info, &img.pixels, &mut out).unwrap();
            eprintln!("size {} {name} {:.4}", img.name, out.len() as f64 / raw);
            g.bench_function(name, |b| {
                let mut f = || {
                    enc.encode_into(&info, black_box(&img.pixels), &mut out)
                        .unwrap()
                };
                if cpu {
                    iter_cpu(b, f)
                } else {
                    b.iter(&mut f)
                }
            });
        }
        // The fast coder's other kernels (the rows above use the best one), one thread: what a
        // CPU without AVX-512 or without SIMD gets. Same bytes as the best kernel (tested).
        let best = FastKernel::best();
        for k in FastKernel::available().into_iter().filter(|&k| k != best) {
            let name = format!("fast_balanced_1t_{}", k.name());
            let opts = EncodeOptions::default()
                .threads(Threads::Fixed(std::num::NonZeroUsize::MIN))
                .fast_kernel(Some(k));
            let mut enc = Encoder::new(opts).unwrap();
            let mut out = Vec::new();
            g.bench_function(&name, |b| {
                iter_cpu(b, || {
                    enc.encode_into(&info, black_box(&img.pixels), &mut out)
                        .unwrap()
                })
            });
        }
        for (name, comp) in [
            ("png_nocompression", png::Compression::NoCompression),
            ("png_fastest", png::Compression::Fastest),
            ("png_fast", png::Compression::Fast),
            ("png_balanced", png::Compression::Balanced),
        ] {
            let mut out = Vec::new();
            peers::png_crate(&img, comp, &mut out);
            eprintln!("size {} {name} {:.4}", img.name, out.len() as f64 / raw);
            g.bench_function(name, |b| {
                iter_cpu(b, || peers::png_crate(&img, comp, &mut out))
            });
        }
        // mtpng works on its pool's threads, not this one: wall time.
        for (i, pool) in pools.iter().enumerate() {
            let name = format!("mtpng_fast_{}t", i + 1);
            let out = peers::mtpng(&img, pool);
            eprintln!("size {} {name} {:.4}", img.name, out.len() as f64 / raw);
            g.bench_function(&name, |b| b.iter(|| peers::mtpng(black_box(&img), pool)));
        }
        let out = peers::lodepng(&img);
        eprintln!("size {} lodepng {:.4}", img.name, out.len() as f64 / raw);
        g.bench_function("lodepng", |b| {
            iter_cpu(b, || {
                black_box(peers::lodepng(black_box(&img)));
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
