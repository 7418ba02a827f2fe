//! The encoder comparison in one run: every encoder on the same images, measured the
//! same way, written as JSON lines (one per encoder x image x threads) and a Markdown table.
//!
//! Encoders: ours (`Fast` `Balanced` and `Fastest`, `Stored` with filter None, `Compact(1)`
//! = miniz_oxide level 1) at 1 and 2 threads; the png crate (`NoCompression`, `Fastest`, `Fast`,
//! `Balanced`); mtpng (`Fast` level) at 1 and 2 threads; lodepng (defaults). Pillow and fpng come
//! from `benches/python/pillow_baseline.py --images DIR`, which reads the images this program
//! writes with `--dump-images DIR`. Images: `pngcast_benches::encoder_images()`.
//!
//! Method: every output is first decoded by the png crate and compared with the input pixels (an
//! encoder that fails this is reported and not timed). Then `--warmup` untimed rounds and `--runs`
//! timed rounds; a round runs every encoder once on the image, in turn, so a change of machine
//! load hits all encoders alike. Reported: the best and the median wall time of the runs, as
//! MP/s (megapixels per second) and ms, and the output size over the raw size.
//!
//! `scripts/encoders.sh` runs this, the Python peers and the chart. By hand:
//! `cargo run --release -p pngcast-benches --example encoders -- --runs 9 --out results.jsonl`
//! Options: `--runs N` (9), `--warmup N` (1), `--out FILE` (JSON lines; default stdout only
//! gets the Markdown table), `--markdown FILE`, `--dump-images DIR`, `--image SUBSTR` and
//! `--encoder SUBSTR` (only matching names; repeatable).
#![forbid(unsafe_code)]

use std::io::Write;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use pngcast_benches::{decodes_to, encoder_images, peers, Image};
use pngcast_core::convert::BitDepth;
use pngcast_core::png::{
    Compression, EncodeOptions, Encoder, FastLevel, Filter, ImageInfo, Threads,
};
use serde_json::json;

/// Command line, parsed by hand (a handful of flags).
struct Args {
    runs: usize,
    warmup: usize,
    out: Option<PathBuf>,
    markdown: Option<PathBuf>,
    dump_images: Option<PathBuf>,
    images: Vec<String>,
    encoders: Vec<String>,
}

fn usage(msg: &str) -> ! {
    eprintln!("encoders: {msg}");
    eprintln!(
        "usage: encoders [--runs N] [--warmup N] [--out FILE.jsonl] [--markdown FILE.md] \
         [--dump-images DIR] [--image SUBSTR]... [--encoder SUBSTR]..."
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        runs: 9,
        warmup: 1,
        out: None,
        markdown: None,
        dump_images: None,
        images: Vec::new(),
        encoders: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--runs" => a.runs = value().parse().unwrap_or_else(|_| usage("bad --runs")),
            "--warmup" => a.warmup = value().parse().unwrap_or_else(|_| usage("bad --warmup")),
            "--out" => a.out = Some(value().into()),
            "--markdown" => a.markdown = Some(value().into()),
            "--dump-images" => a.dump_images = Some(value().into()),
            "--image" => a.images.push(value()),
            "--encoder" => a.encoders.push(value()),
            "-h" | "--help" => usage("help"),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if a.runs == 0 {
        usage("--runs must be at least 1");
    }
    a
}

/// Runs one encoder on its image, writing the PNG into the given buffer.
type RunFn<'a> = Box<dyn FnMut(&mut Vec<u8>) + 'a>;

/// One encoder ready to run on one image; `run` writes the PNG into `out`, which is kept between
/// runs so that encoders that can reuse an output buffer do.
struct Variant<'a> {
    name: String,
    family: &'static str,
    setting: String,
    threads: usize,
    run: RunFn<'a>,
    out: Vec<u8>,
    times: Vec<Duration>,
}

impl<'a> Variant<'a> {
    fn new(
        name: String,
        family: &'static str,
        setting: String,
        threads: usize,
        run: impl FnMut(&mut Vec<u8>) + 'a,
    ) -> Self {
        Variant {
            name,
            family,
            setting,
            threads,
            run: Box::new(run),
            out: Vec::new(),
            times: Vec::new(),
        }
    }

    fn run_once(&mut self) {
        (self.run)(&mut self.out);
    }
}

fn threads(n: usize) -> Threads {
    Threads::Fixed(NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN))
}

fn pool(n: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .expect("rayon pool")
}

/// Every encoder of the comparison on `img`, in a fixed order.
fn variants<'a>(img: &'a Image, pools: &'a [rayon::ThreadPool; 2]) -> Vec<Variant<'a>> {
    let info = ImageInfo {
        width: img.width,
        height: img.height,
        channels: img.channels,
        bit_depth: BitDepth::Eight,
    };
    let mut v = Vec::new();
    let ours = [
        (
            "fast-balanced",
            "Fast(Balanced), adaptive",
            Compression::Fast(FastLevel::Balanced),
            Filter::Adaptive,
        ),
        (
            "fast-fastest",
            "Fast(Fastest), adaptive",
            Compression::Fast(FastLevel::Fastest),
            Filter::Adaptive,
        ),
        (
            "stored",
            "Stored, filter None",
            Compression::Stored,
            Filter::None,
        ),
        (
            "compact1",
            "Compact(1) = miniz_oxide 1, adaptive",
            Compression::Compact(1),
            Filter::Adaptive,
        ),
    ];
    for (name, setting, compression, filter) in ours {
        for t in [1, 2] {
            let opts = EncodeOptions::default()
                .compression(compression)
                .filter(filter)
                .threads(threads(t));
            let mut enc = Encoder::new(opts).expect("encoder options");
            v.push(Variant::new(
                format!("pngcast {name}"),
                "pngcast",
                setting.into(),
                t,
                move |out| {
                    enc.encode_into(&info, &img.pixels, out)
                        .expect("pngcast encode")
                },
            ));
        }
    }
    for (name, c) in [
        ("nocompression", png::Compression::NoCompression),
        ("fastest", png::Compression::Fastest),
        ("fast", png::Compression::Fast),
        ("balanced", png::Compression::Balanced),
    ] {
        v.push(Variant::new(
            format!("png {name}"),
            "png",
            format!("png crate Compression::{c:?}"),
            1,
            move |out| peers::png_crate(img, c, out),
        ));
    }
    for (i, p) in pools.iter().enumerate() {
        v.push(Variant::new(
            "mtpng fast".into(),
            "mtpng",
            "mtpng CompressionLevel::Fast".into(),
            i + 1,
            move |out| *out = peers::mtpng(img, p),
        ));
    }
    v.push(Variant::new(
        "lodepng".into(),
        "lodepng",
        "lodepng defaults".into(),
        1,
        move |out| *out = peers::lodepng(img),
    ));
    v
}

fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Writes `img` as a PNG (our `Fast` coder; any lossless PNG does) for the Python peers.
fn dump(dir: &std::path::Path, img: &Image) -> std::io::Result<()> {
    let info = ImageInfo {
        width: img.width,
        height: img.height,
        channels: img.channels,
        bit_depth: BitDepth::Eight,
    };
    let mut enc = Encoder::new(EncodeOptions::default()).map_err(std::io::Error::other)?;
    let mut out = Vec::new();
    enc.encode_into(&info, &img.pixels, &mut out)
        .map_err(std::io::Error::other)?;
    std::fs::write(dir.join(format!("{}.png", img.name)), out)
}

fn main() {
    let args = parse_args();
    let wanted = |list: &[String], name: &str| {
        list.is_empty() || list.iter().any(|s| name.contains(s.as_str()))
    };
    let images: Vec<Image> = encoder_images()
        .into_iter()
        .filter(|i| wanted(&args.images, &i.name))
        .collect();
    if images.is_empty() {
        usage("no image selected (or none found)");
    }
    if let Some(dir) = &args.dump_images {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| usage(&format!("{}: {e}", dir.display())));
        for img in &images {
            dump(dir, img).unwrap_or_else(|e| usage(&format!("dump {}: {e}", img.name)));
        }
    }
    let mut jsonl: Box<dyn Write> = match &args.out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).unwrap_or_else(|e| usage(&format!("{}: {e}", p.display()))),
        )),
        None => Box::new(std::io::sink()),
    };
    let machine = pngcast_benches::cpu_model();
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let pools = [pool(1), pool(2)];
    let mut table = vec![
        "| image | encoder | threads | median MP/s | best MP/s | median ms | bytes / raw |"
            .to_string(),
        "|---|---|---|---|---|---|---|".to_string(),
    ];
    for img in &images {
        let mp = img.pixel_count() as f64 / 1e6;
        let raw = img.raw_bytes() as f64;
        eprintln!(
            "{}: {}x{}x{}, {} runs",
            img.name, img.width, img.height, img.channels, args.runs
        );
        let mut vs: Vec<Variant<'_>> = variants(img, &pools)
            .into_iter()
            .filter(|v| wanted(&args.encoders, &v.name))
            .collect();
        // Check every encoder's output once, untimed; drop the ones that fail.
        vs.retain_mut(|v| {
            v.run_once();
            let ok = decodes_to(&v.out, img);
            if !ok {
                eprintln!(
                    "  {} t{}: output does not decode to the input pixels; not timed",
                    v.name, v.threads
                );
            }
            ok
        });
        let load_before = load_average();
        for round in 0..args.warmup + args.runs {
            for v in vs.iter_mut() {
                let t = Instant::now();
                v.run_once();
                let d = t.elapsed();
                std::hint::black_box(&v.out);
                if round >= args.warmup {
                    v.times.push(d);
                }
            }
        }
        let load_after = load_average();
        for v in vs.iter_mut() {
            v.times.sort();
            let best = v.times[0];
            let med = pngcast_benches::median(&v.times);
            let mp_s = |d: Duration| mp / d.as_secs_f64().max(1e-9);
            let line = json!({
                "kind": "encode",
                "source": "encoders.rs",
                "encoder": v.name,
                "family": v.family,
                "setting": v.setting,
                "threads": v.threads,
                "image": img.name,
                "width": img.width,
                "height": img.height,
                "channels": img.channels,
                "runs": args.runs,
                "best_ms": (best.as_secs_f64() * 1e6).round() / 1e3,
                "median_ms": (med.as_secs_f64() * 1e6).round() / 1e3,
                "best_mp_s": (mp_s(best) * 10.0).round() / 10.0,
                "median_mp_s": (mp_s(med) * 10.0).round() / 10.0,
                "bytes": v.out.len(),
                "bytes_per_raw": (v.out.len() as f64 / raw * 1e4).round() / 1e4,
                "verified": true,
                "machine": machine,
                "cores": cores,
                "load_before": load_before,
                "load_after": load_after,
                "unix_time": started,
            });
            writeln!(jsonl, "{line}").unwrap_or_else(|e| usage(&format!("write: {e}")));
            let row = format!(
                "| {} | {} | {} | {:.1} | {:.1} | {:.3} | {:.4} |",
                img.name,
                v.name,
                v.threads,
                mp_s(med),
                mp_s(best),
                med.as_secs_f64() * 1e3,
                v.out.len() as f64 / raw
            );
            eprintln!("  {row}");
            table.push(row);
        }
        jsonl
            .flush()
            .unwrap_or_else(|e| usage(&format!("write: {e}")));
    }
    let md = table.join("\n") + "\n";
    print!("{md}");
    if let Some(p) = &args.markdown {
        std::fs::write(p, md).unwrap_or_else(|e| usage(&format!("{}: {e}", p.display())));
    }
}
