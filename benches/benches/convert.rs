//! Tensor to PNG samples: 1 MP RGB (1024 x 1024 x 3) through every kernel this CPU has, one
//! thread, beside a naive Rust loop; `convert_image` on the rayon pool; f16 and bf16 input;
//! 16-bit output; a channels-first (strided) view. Throughput is in pixels, so reports read in
//! MP/s (1 MP in 0.4 ms = 2621 MP/s).
//!
//! Run: `cargo bench -p pngcast-benches --bench convert -- --warm-up-time 1 --measurement-time 3`
//! (numpy's figure for the same conversion: `python3 benches/python/numpy_convert.py`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use half::{bf16, f16};
use pngcast_core::convert::{
    convert_image, convert_rows, kernels, ConvertOptions, Kernel, Quantize,
};
use pngcast_core::tensor::{ImageView, TensorView};

const W: usize = 1024;
const H: usize = 1024;
const C: usize = 3;
const N: usize = W * H * C;

/// Deterministic samples in [-0.05, 1.05] (a few out of range, as real tensors have).
fn input() -> Vec<f32> {
    let mut s = 0x2545_f491_4f6c_dd1du64;
    (0..N)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 * 1.1 - 0.05
        })
        .collect()
}

/// What one writes without thinking: per element, clamp and cast.
fn naive(src: &[f32], dst: &mut [u8]) {
    for (d, &x) in dst.iter_mut().zip(src) {
        *d = (255.0 * x).clamp(0.0, 255.0) as u8;
    }
}

/// Time this thread has spent on a CPU (Linux `/proc/thread-self/schedstat`, which advances in
/// scheduler ticks of a few ms), or `None` elsewhere.
fn thread_cpu_time() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(Duration::from_nanos(s.split_whitespace().next()?.parse().ok()?))
}

/// Times `f` in CPU time of this thread when the OS tells it (falls back to wall time): on a
/// machine shared with other jobs, time spent descheduled is not counted. Use with few, long
/// samples so the scheduler-tick granularity stays below 1%.
fn iter_cpu(b: &mut criterion::Bencher<'_>, mut f: impl FnMut()) {
    b.iter_custom(|iters| {
        let (c0, w0) = (thread_cpu_time(), Instant::now());
        for _ in 0..iters {
            f();
        }
        match (c0, thread_cpu_time()) {
            (Some(a), Some(b)) => b - a,
            _ => w0.elapsed(),
        }
    })
}

fn group<'a>(c: &'a mut Criterion, name: &str) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements((W * H) as u64));
    g
}

fn f32_to_u8(c: &mut Criterion) {
    let src = input();
    let mut dst = vec![0u8; N];
    let mut g = group(c, "convert_1mp_rgb_f32_u8");
    g.bench_function("naive_loop", |b| b.iter(|| naive(black_box(&src), &mut dst)));
    for &k in kernels::all() {
        g.bench_function(k.name(), |b| {
            b.iter(|| k.f32_to_u8(black_box(&src), &mut dst, Quantize::Truncate))
        });
    }
    let best = kernels::best();
    g.bench_function(format!("{}_round", best.name()), |b| {
        b.iter(|| best.f32_to_u8(black_box(&src), &mut dst, Quantize::Round))
    });
    let img = ImageView::hwc(&src[..], [H, W, C]).unwrap();
    let mut out = Vec::new();
    g.bench_function(format!("convert_image_{}_threads", rayon::current_num_threads()), |b| {
        b.iter(|| convert_image(black_box(&img), ConvertOptions::default(), &mut out))
    });
    g.finish();
}

/// The same 1 MP f32 -> u8 conversion, timed in thread CPU time (see [`iter_cpu`]).
fn f32_to_u8_cpu_time(c: &mut Criterion) {
    let src = input();
    let mut dst = vec![0u8; N];
    let mut g = group(c, "convert_1mp_rgb_f32_u8_cpu_time");
    g.sample_size(10);
    g.bench_function("naive_loop", |b| iter_cpu(b, || naive(black_box(&src), &mut dst)));
    for &k in kernels::all() {
        g.bench_function(k.name(), |b| {
            iter_cpu(b, || k.f32_to_u8(black_box(&src), &mut dst, Quantize::Truncate))
        });
    }
    g.finish();
}

fn f32_to_u16be(c: &mut Criterion) {
    let src = input();
    let mut dst = vec![0u8; 2 * N];
    let mut g = group(c, "convert_1mp_rgb_f32_u16be");
    for &k in kernels::all() {
        g.bench_function(k.name(), |b| {
            b.iter(|| k.f32_to_u16be(black_box(&src), &mut dst, Quantize::Truncate))
        });
    }
    g.finish();
}

fn half_to_u8(c: &mut Criterion) {
    let wide = input();
    let h: Vec<f16> = wide.iter().map(|&x| f16::from_f32(x)).collect();
    let b16: Vec<bf16> = wide.iter().map(|&x| bf16::from_f32(x)).collect();
    let mut dst = vec![0u8; N];
    let mut g = group(c, "convert_1mp_rgb_f16_u8");
    for &k in kernels::all() {
        g.bench_function(k.name(), |b| {
            b.iter(|| k.f16_to_u8(black_box(&h), &mut dst, Quantize::Truncate))
        });
    }
    g.finish();
    let mut g = group(c, "convert_1mp_rgb_bf16_u8");
    let k: Kernel = kernels::best();
    g.bench_function(k.name(), |b| {
        b.iter(|| k.bf16_to_u8(black_box(&b16), &mut dst, Quantize::Truncate))
    });
    g.finish();
}

fn strided(c: &mut Criterion) {
    // The same image stored channels-first ([C,H,W]) and viewed as [H,W,C].
    let src = input();
    let mut planar = vec![0f32; N];
    for (i, &x) in src.iter().enumerate() {
        let (p, ch) = (i / C, i % C);
        planar[ch * W * H + p] = x;
    }
    let img = TensorView::strided(&planar[..], [1, H, W, C], [N, W, 1, W * H])
        .unwrap()
        .image(0)
        .unwrap();
    let mut dst = vec![0u8; N];
    let mut g = group(c, "convert_1mp_rgb_f32_u8_channels_first");
    g.bench_function(format!("convert_rows_{}", kernels::best().name()), |b| {
        b.iter(|| convert_rows(black_box(&img), ConvertOptions::default(), 0, &mut dst))
    });
    g.finish();
}

criterion_group!(benches, f32_to_u8, f32_to_u8_cpu_time, f32_to_u16be, half_to_u8, strided);
criterion_main!(benches);
