//! Steady-state allocations of `Sender::send`, counted by a wrapping global allocator.
//!
//! One test per file on purpose: the counter is process-wide (it must see the encoder's rayon
//! threads too), so nothing else may run beside it.
#![deny(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pngcast_core::png::EncodeOptions;
use pngcast_core::tensor::TensorView;
use pngcast_protocol::sender::{FrameExtra, Sender, POOL_SIZE};
use pngcast_protocol::sink::{FrameSink, MemorySink, SinkError, SinkStats, Target};
use pngcast_protocol::wire::WireFrame;

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

#[allow(unsafe_code)]
// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so `System`'s
// guarantees hold; the counters are plain atomics and never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged; `ptr` came from `System` with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A sink standing for a transport's queues: it keeps the last `lag` frames it was given, as the
/// queues do until every client has written them, and drops the rest. `lag` 0: the clients have
/// written every frame at once; `lag` may change from send to send (it never reaches the
/// sender's pool size).
struct Lagging {
    held: Mutex<VecDeque<WireFrame>>,
    lag: AtomicUsize,
    frames: AtomicU64,
}

impl Lagging {
    fn new() -> Self {
        Self {
            held: Mutex::new(VecDeque::with_capacity(POOL_SIZE)),
            lag: AtomicUsize::new(0),
            frames: AtomicU64::new(0),
        }
    }
}

impl FrameSink for Lagging {
    fn send_image(&self, _target: &Target, frame: &WireFrame) -> Result<(), SinkError> {
        assert!(frame.png().starts_with(b"\x89PNG"));
        self.frames.fetch_add(1, Ordering::Relaxed);
        let mut held = self.held.lock().unwrap();
        held.push_back(frame.clone());
        while held.len() > self.lag.load(Ordering::Relaxed) {
            held.pop_front();
        }
        Ok(())
    }
    fn send_text(&self, _target: &Target, _text: Arc<str>) -> Result<(), SinkError> {
        Ok(())
    }
    fn stats(&self) -> SinkStats {
        SinkStats::default()
    }
    fn shutdown(&self, _deadline: Duration) {}
}

/// Allocations and bytes per frame over `rounds` sends of `tensor` with `extra` after a warm-up,
/// and the raw allocation count.
fn measure(
    sender: &mut Sender,
    tensor: &TensorView<'_>,
    extra: &FrameExtra,
    rounds: usize,
    between: impl Fn(),
) -> (f64, f64, u64) {
    for _ in 0..4 {
        sender.send("preview", tensor, &Target::All, extra).unwrap();
        between();
    }
    ALLOCS.store(0, Ordering::SeqCst);
    BYTES.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    for _ in 0..rounds {
        let report = sender.send("preview", tensor, &Target::All, extra).unwrap();
        assert_eq!(report.frames, tensor.batch());
        between();
    }
    COUNTING.store(false, Ordering::SeqCst);
    let frames = (rounds * tensor.batch()) as f64;
    let allocs = ALLOCS.load(Ordering::SeqCst);
    (
        allocs as f64 / frames,
        BYTES.load(Ordering::SeqCst) as f64 / frames,
        allocs,
    )
}

#[test]
fn steady_state_allocations_per_frame() {
    let (b, h, w, c) = (4usize, 128usize, 128usize, 3usize);
    // Smooth gradients plus noise: a photo-like PNG of a realistic size.
    let mut rng = fastrand::Rng::with_seed(42);
    let pixels: Vec<f32> = (0..b * h * w * c)
        .map(|i| {
            let x = (i / c) % w;
            let y = (i / c / w) % h;
            (x + y) as f32 / (w + h) as f32 * 0.8 + rng.f32() * 0.2
        })
        .collect();
    let tensor = TensorView::bhwc(&pixels[..], [b, h, w, c]).unwrap();
    let png_size = {
        let mem = Arc::new(MemorySink::new());
        let mut s = Sender::new(mem.clone(), EncodeOptions::default()).unwrap();
        s.send("preview", &tensor, &Target::All, &FrameExtra::default())
            .unwrap();
        mem.log()[0].1.as_image().unwrap().png().len()
    };

    // Sender alone (the sink releases frames at once): every frame comes from the pool and is
    // rebuilt in place, so nothing is allocated at all, with announcements on or off and with
    // node keys set or not.
    let node_keys = FrameExtra::default()
        .prompt_id("prompt")
        .node_id("7")
        .display_node_id("7")
        .real_node_id("12");
    for (announce, extra, label) in [
        (true, &node_keys, "announce, node keys"),
        (false, &node_keys, "no announce, node keys"),
        (true, &FrameExtra::default(), "announce, no node keys"),
    ] {
        let releasing = Arc::new(Lagging::new());
        let mut sender = Sender::new(releasing.clone(), EncodeOptions::default())
            .unwrap()
            .announce(announce);
        let (allocs, bytes, total) = measure(&mut sender, &tensor, extra, 6, || {});
        println!(
            "sender + releasing sink ({label}): {allocs:.1} allocations, {bytes:.0} bytes per \
             frame (PNG {png_size} bytes)"
        );
        assert_eq!(
            total, 0,
            "{label}: {allocs} allocations, {bytes} bytes per frame"
        );
        assert_eq!(
            releasing.frames.load(Ordering::Relaxed),
            10 * tensor.batch() as u64
        );
    }

    // Clients a frame or three behind, first after a steady stretch: the pool was filled on
    // the stream's first frame, so the slots first needed now allocate nothing either.
    let single = TensorView::bhwc(&pixels[..h * w * c], [1, h, w, c]).unwrap();
    let lagging = Arc::new(Lagging::new());
    let mut sender = Sender::new(lagging.clone(), EncodeOptions::default()).unwrap();
    for _ in 0..3 {
        sender
            .send("preview", &single, &Target::All, &node_keys)
            .unwrap();
    }
    ALLOCS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    for lag in [1, 3, 0, 2, 3, 3, 1, 0, 3, 2] {
        lagging.lag.store(lag, Ordering::Relaxed);
        sender
            .send("preview", &single, &Target::All, &node_keys)
            .unwrap();
    }
    COUNTING.store(false, Ordering::SeqCst);
    let lag_allocs = ALLOCS.load(Ordering::SeqCst);
    println!("sender + lagging sink: {lag_allocs} allocations in 10 frames");
    assert_eq!(lag_allocs, 0, "a slot first used late allocated");

    // Against MemorySink, emptied after each send (its log and records are the sink's own).
    let mem = Arc::new(MemorySink::new());
    mem.add_client("a", false);
    mem.add_client("b", true);
    let mut sender = Sender::new(mem.clone(), EncodeOptions::default()).unwrap();
    let (allocs_mem, bytes_mem, _) =
        measure(&mut sender, &tensor, &node_keys, 6, || drop(mem.take_log()));
    println!("sender + MemorySink: {allocs_mem:.1} allocations, {bytes_mem:.0} bytes per frame");
    assert!(
        bytes_mem < (png_size / 8) as f64,
        "{bytes_mem} bytes per frame for a {png_size}-byte PNG"
    );
}
