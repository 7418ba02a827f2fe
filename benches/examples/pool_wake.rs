//! How long this machine takes to wake the second worker of a two-thread rayon pool: the fixed
//! cost every parallel frame pays after an idle gap (the time a frame spends on the wire, say).
//!
//! `cargo run --release -p pngcast-benches --example pool_wake`
//!
//! The calling thread is worker 0 of the pool (as in `pngcast serve`); after sleeping `gap`, it
//! `join`s two 1 ms spins. Printed per gap: the join's time (ideal 1 ms) and when the second
//! spin started (its wait for the other worker to wake and steal it), p50 and p90 of 200.
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

fn spin(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

fn main() {
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .use_current_thread()
        .build_global()
        .expect("the global pool is built once, here");
    let work = Duration::from_millis(1);
    for gap_us in [0u64, 50, 200, 1000] {
        let mut joins = Vec::with_capacity(200);
        let mut starts = Vec::with_capacity(200);
        for _ in 0..200 {
            if gap_us > 0 {
                std::thread::sleep(Duration::from_micros(gap_us));
            }
            let t0 = Instant::now();
            let ((), start) = rayon::join(
                || spin(work),
                || {
                    let s = t0.elapsed();
                    spin(work);
                    s
                },
            );
            joins.push(t0.elapsed().as_secs_f64() * 1e3);
            starts.push(start.as_secs_f64() * 1e6);
        }
        joins.sort_by(f64::total_cmp);
        starts.sort_by(f64::total_cmp);
        println!(
            "idle gap {gap_us:>5} us: join of two 1 ms halves p50 {:.3} ms p90 {:.3} ms; \
             second half started after p50 {:.0} us p90 {:.0} us",
            joins[100], joins[180], starts[100], starts[180]
        );
    }
}
