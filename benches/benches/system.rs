//! Criterion view of the system path: f32 tensor handed to `Sender::send` -> the whole frame
//! returned by pngcast's own blocking client (`pngcast_blocking::client::Client`) on loopback, per
//! transport, for 512^2 and 1024^2 RGB photo content (the Kodak image mirror-tiled, as
//! `examples/latency.rs` and `python/comfy_baseline.py` build it).
//!
//! The client reads on the bench thread right after `send` returns (`send` only queues), so one
//! iteration is: convert + encode + queue, the transport thread's write, the client's read and
//! frame parse. `examples/latency.rs` gives p50/p99 with a raw reader and the Python baseline;
//! this bench gives criterion's confidence intervals for the same path.
//!
//! `cargo bench -p pngcast-benches --bench system -- --warm-up-time 1 --measurement-time 5`
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pngcast_blocking::client::{Client, ClientOptions, Event};
use pngcast_core::png::EncodeOptions;
use pngcast_core::tensor::TensorView;
use pngcast_protocol::http::ServerConfig;
use pngcast_protocol::queue::Policy;
use pngcast_protocol::sender::{FrameExtra, Sender};
use pngcast_protocol::sink::{FrameSink, Target};

fn reflect(i: usize, n: usize) -> usize {
    let p = i % (2 * n);
    if p < n {
        p
    } else {
        2 * n - 1 - p
    }
}

/// The Kodak photo mirror-tiled to `width` x `height`, as f32 in 0..1.
fn tensor(width: usize, height: usize) -> Vec<f32> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/images/kodim23.png");
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(path).expect("benches/images/kodim23.png"),
    ));
    let mut reader = decoder.read_info().expect("png header");
    let mut px = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut px).expect("png data");
    assert_eq!(info.color_type, png::ColorType::Rgb);
    let (w0, h0) = (info.width as usize, info.height as usize);
    let mut out = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        let sy = reflect(y, h0);
        for x in 0..width {
            let s = (sy * w0 + reflect(x, w0)) * 3;
            out.extend(px[s..s + 3].iter().map(|&v| f32::from(v) / 255.0));
        }
    }
    out
}

/// Reads events until the next image; returns its PNG size.
fn next_image(client: &mut Client) -> usize {
    loop {
        match client.next_event().expect("read").expect("open") {
            Event::Image { png, .. } => return png.len(),
            _ => continue,
        }
    }
}

fn bench_transport(
    c: &mut Criterion,
    name: &str,
    sink: Arc<dyn FrameSink>,
    addr: std::net::SocketAddr,
) {
    let mut client = Client::connect(&format!("ws://{addr}/ws"), ClientOptions::default())
        .expect("client connects");
    let start = Instant::now();
    while sink.stats().clients < 1 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "client not counted"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut sender = Sender::new(sink.clone(), EncodeOptions::default()).expect("sender");
    let mut group = c.benchmark_group("system/tensor_to_client");
    for (w, h) in [(512usize, 512usize), (1024, 1024)] {
        let t = tensor(w, h);
        let view = TensorView::bhwc(&t[..], [1, h, w, 3]).expect("view");
        group.throughput(Throughput::Elements((w * h) as u64));
        group.bench_function(BenchmarkId::new(name, format!("{w}x{h}")), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t0 = Instant::now();
                    sender
                        .send("preview", &view, &Target::All, &FrameExtra::default())
                        .expect("send");
                    std::hint::black_box(next_image(&mut client));
                    total += t0.elapsed();
                }
                total
            })
        });
    }
    group.finish();
    sink.shutdown(Duration::from_secs(1));
}

fn config() -> ServerConfig {
    ServerConfig::default()
        .addr("127.0.0.1:0".parse().expect("addr"))
        .policy(Policy::Reliable)
}

fn system(c: &mut Criterion) {
    let mio = pngcast_mio::Server::bind(config()).expect("bind mio");
    bench_transport(c, "pngcast-mio", mio.sink(), mio.local_addr());
    let blocking = pngcast_blocking::Server::bind(config()).expect("bind blocking");
    bench_transport(
        c,
        "pngcast-blocking",
        blocking.sink(),
        blocking.local_addr(),
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = system
}
criterion_main!(benches);
