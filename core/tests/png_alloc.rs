//! Steady state allocates nothing: after one warm-up frame, encoding another frame of the same
//! size (different content) performs zero heap allocations, for Stored and Compact, on one
//! thread and on a private two-thread pool. Counted by a global allocator wrapper.
//!
//! This file holds a single test so that no other test thread allocates while we count.

mod png_util;

use std::alloc::{GlobalAlloc, Layout, System};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};

use pngcast_core::convert::{BitDepth, ConvertOptions};
use pngcast_core::png::{
    Compression, EncodeOptions, Encoder, FastLevel, Filter, ImageInfo, Threads,
};
use pngcast_core::tensor::TensorView;

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call unchanged to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs a warm-up frame until three in a row allocate nothing (at most 40 frames). A rayon
/// worker registers with crossbeam-epoch (a handful of small allocations, once per thread) the
/// first time it looks for work; on a loaded machine a new pool's second thread may not have
/// run at all during the first frames, so a single warm-up frame does not always reach the
/// steady state. One-time per-thread setup is not what this test is about.
fn warm_up(mut frame: impl FnMut()) {
    let mut clean = 0;
    for _ in 0..40 {
        clean = if allocations_during(&mut frame) == 0 {
            clean + 1
        } else {
            0
        };
        if clean == 3 {
            return;
        }
    }
}

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCS.load(Ordering::SeqCst);
    f();
    ALLOCS.load(Ordering::SeqCst) - before
}

#[test]
fn second_frame_allocates_nothing() {
    // Big enough for several auto stripes; frame B compresses worse than frame A (noise), so a
    // buffer sized to A's output alone would have to grow.
    let info = ImageInfo {
        width: 1024,
        height: 640,
        channels: 3,
        bit_depth: BitDepth::Eight,
    };
    let frame_a = png_util::test_image(&info, 1);
    let mut rng = fastrand::Rng::with_seed(2);
    let frame_b: Vec<u8> = (0..frame_a.len()).map(|_| rng.u8(..)).collect();
    let two = NonZeroUsize::new(2).unwrap();
    // Encoders are kept alive to the end: dropping one's private pool lets its threads exit (and
    // free/allocate epoch bags) while the next iteration counts.
    let mut keep = Vec::new();
    for compression in [
        Compression::Stored,
        Compression::Compact(1),
        Compression::Fast(FastLevel::Balanced),
    ] {
        for threads in [Threads::Fixed(NonZeroUsize::MIN), Threads::Fixed(two)] {
            let what = format!("{compression:?} {threads:?}");
            let opts = EncodeOptions::default()
                .compression(compression)
                .filter(Filter::Adaptive)
                .threads(threads)
                .text("prompt", "{\"seed\": 1}");
            let mut enc = Encoder::new(opts).unwrap();
            let mut out = Vec::new();
            warm_up(|| enc.encode_into(&info, &frame_a, &mut out).unwrap());
            let n = allocations_during(|| enc.encode_into(&info, &frame_b, &mut out).unwrap());
            assert_eq!(n, 0, "{what}: second frame allocated {n} times");
            assert!(
                png_util::decode(&out).pixels == frame_b,
                "{what}: frame B decodes"
            );
            // And back to the smaller output: still nothing.
            let n = allocations_during(|| enc.encode_into(&info, &frame_a, &mut out).unwrap());
            assert_eq!(n, 0, "{what}: third frame allocated {n} times");
            keep.push(enc);
        }
    }

    // The global pool (entered once per frame through `rayon::scope`).
    let mut enc = Encoder::new(EncodeOptions::default().threads(Threads::Global)).unwrap();
    let mut out = Vec::new();
    warm_up(|| enc.encode_into(&info, &frame_a, &mut out).unwrap());
    let n = allocations_during(|| enc.encode_into(&info, &frame_b, &mut out).unwrap());
    assert_eq!(n, 0, "Threads::Global: second frame allocated {n} times");

    // The tensor path: f32 in, conversion fused into the stripes.
    let (h, w, c) = (480usize, 720usize, 3usize);
    let t_a: Vec<f32> = (0..h * w * c).map(|i| (i % 255) as f32 / 255.0).collect();
    let t_b: Vec<f32> = (0..h * w * c).map(|_| rng.f32()).collect();
    for threads in [Threads::Fixed(NonZeroUsize::MIN), Threads::Fixed(two)] {
        let mut enc = Encoder::new(EncodeOptions::default().threads(threads.clone())).unwrap();
        let mut out = Vec::new();
        let view_a = TensorView::hwc(&t_a[..], [h, w, c])
            .unwrap()
            .image(0)
            .unwrap();
        let view_b = TensorView::hwc(&t_b[..], [h, w, c])
            .unwrap()
            .image(0)
            .unwrap();
        warm_up(|| {
            enc.encode_image_into(&view_a, ConvertOptions::default(), &mut out)
                .unwrap()
        });
        let n = allocations_during(|| {
            enc.encode_image_into(&view_b, ConvertOptions::default(), &mut out)
                .unwrap()
        });
        assert_eq!(
            n, 0,
            "tensor path {threads:?}: second frame allocated {n} times"
        );
    }

    // Long run on two threads: rayon's injector (crossbeam-deque) allocates one 63-slot block
    // each time 63 jobs have been injected into a pool from outside; an encode injects exactly
    // one job (one `install` per frame), so at most one allocation (and one free) per 63 frames.
    let opts = EncodeOptions::default()
        .compression(Compression::Stored)
        .filter(Filter::Sub);
    let mut enc = Encoder::new(opts.clone().threads(Threads::Fixed(two))).unwrap();
    let mut out = Vec::new();
    warm_up(|| enc.encode_into(&info, &frame_a, &mut out).unwrap());
    // More untimed frames, so that both workers have stolen (and registered) at least once.
    for _ in 0..10 {
        enc.encode_into(&info, &frame_b, &mut out).unwrap();
    }
    let frames = 130;
    let n = allocations_during(|| {
        for i in 0..frames {
            let f = if i % 2 == 0 { &frame_b } else { &frame_a };
            enc.encode_into(&info, f, &mut out).unwrap();
        }
    });
    eprintln!("{frames} frames on a 2-thread pool: {n} allocations");
    assert!(n <= frames / 63 + 1, "{n} allocations in {frames} frames");

    // The same run from a thread that is itself worker 0 of the pool (rayon's
    // `use_current_thread`): `install` runs the frame in place and the stripes are pushed on the
    // thread's own deque, so no job is injected and nothing at all is allocated.
    let opts_pool = opts.clone();
    std::thread::scope(|s| {
        s.spawn(|| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .use_current_thread()
                .build()
                .unwrap();
            let mut enc =
                Encoder::new(opts_pool.threads(Threads::Pool(std::sync::Arc::new(pool)))).unwrap();
            let mut out = Vec::new();
            warm_up(|| enc.encode_into(&info, &frame_a, &mut out).unwrap());
            for _ in 0..10 {
                enc.encode_into(&info, &frame_b, &mut out).unwrap();
            }
            // On a loaded machine the other worker may run its first steal (and register with
            // crossbeam-epoch, a one-time allocation per thread) only inside a counted run, so
            // runs of 130 frames repeat until one is clean: the one-time cost may show once,
            // a per-frame cost would show in every run.
            let mut runs = Vec::new();
            for _ in 0..4 {
                let n = allocations_during(|| {
                    for i in 0..frames {
                        let f = if i % 2 == 0 { &frame_b } else { &frame_a };
                        enc.encode_into(&info, f, &mut out).unwrap();
                    }
                });
                runs.push(n);
                if n == 0 {
                    break;
                }
            }
            eprintln!("runs of {frames} frames from a pool member, allocations: {runs:?}");
            assert_eq!(runs.last(), Some(&0), "no clean run: {runs:?}");
            assert!(
                runs.iter().sum::<usize>() <= 2,
                "more than one-time setup: {runs:?}"
            );
            assert!(png_util::decode(&out).pixels == frame_a);
        });
    });
}
