//! Our fast coder beside fpnge (C++, every level) and the png crate's `Fast`, one thread, on the
//! same pixels in the same run, printed as Markdown tables.
//!
//! `cargo run --release -p pngcast-benches --example vs_fpnge -- --runs 21`
//!
//! fpnge is built by `benches/build.rs` from `shared/peers/fpnge` beside the workspace (or
//! `$PNGCAST_FPNGE_DIR`) when a C++ compiler is present; without it the fpnge rows are left out
//! (a note says so). Images (from the corpus, `$PNGCAST_CORPUS` to point elsewhere): kodim23, the
//! digital painting and the retina photo (1024x1024 centre crops), the Hubble deep field, the
//! text screenshot (RGBA) and the 4K flat graphic.
//!
//! Method: every output is decoded by the png crate and compared with the input first (a coder
//! that fails is reported and not timed). Then `--warmup` untimed and `--runs` timed rounds; a
//! round runs every coder once, in turn, so machine load hits all alike. Reported: the median,
//! as MP/s, and the output bytes. Ours run through `Encoder::encode_into` on one thread, output
//! buffer reused (as fpnge's and png's are).
//!
//! Options: `--runs N` (15), `--warmup N` (2), `--image SUBSTR` (repeatable), `--markdown FILE`.
#![forbid(unsafe_code)]

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use pngcast_benches::{decodes_to, find_image, fpnge, peers, Image};
use pngcast_core::convert::BitDepth;
use pngcast_core::png::{
    fast_kernel_name, Compression, EncodeOptions, Encoder, FastLevel, ImageInfo, Threads,
};

fn usage(msg: &str) -> ! {
    eprintln!("vs_fpnge: {msg}");
    eprintln!("usage: vs_fpnge [--runs N] [--warmup N] [--image SUBSTR]... [--markdown FILE]");
    std::process::exit(2)
}

/// The image set (photos, a painting, text, a flat graphic): (corpus path, name, centre crop side or 0 for the whole image).
const IMAGES: [(&str, &str, u32); 6] = [
    ("photo/kodim23.png", "kodim23", 0),
    ("art/fantasy_digital_painting.png", "painting_1024", 1024),
    ("photo/retina.png", "retina_1024", 1024),
    ("photo/hubble_deep_field.png", "hubble", 0),
    ("screen/lorem_ipsum_screenshot.png", "screenshot_rgba", 0),
    ("graphic/exoplanet_phase_curve.png", "graphic_4k", 0),
];

type RunFn<'a> = Box<dyn FnMut(&mut Vec<u8>) + 'a>;

struct Coder<'a> {
    name: String,
    run: RunFn<'a>,
    out: Vec<u8>,
    times: Vec<Duration>,
}

fn ours(level: FastLevel) -> Encoder {
    let opts = EncodeOptions::default()
        .compression(Compression::Fast(level))
        .threads(Threads::Fixed(NonZeroUsize::MIN));
    Encoder::new(opts).expect("encoder options")
}

fn coders<'a>(img: &'a Image) -> Vec<Coder<'a>> {
    let info = ImageInfo {
        width: img.width,
        height: img.height,
        channels: img.channels,
        bit_depth: BitDepth::Eight,
    };
    let mut v: Vec<Coder<'a>> = Vec::new();
    let mut push = |name: String, run: RunFn<'a>| {
        v.push(Coder {
            name,
            run,
            out: Vec::new(),
            times: Vec::new(),
        })
    };
    for (name, level) in [
        ("ours Fastest", FastLevel::Fastest),
        ("ours Balanced", FastLevel::Balanced),
    ] {
        let mut enc = ours(level);
        push(
            name.into(),
            Box::new(move |out| enc.encode_into(&info, &img.pixels, out).expect("encode")),
        );
    }
    if fpnge::available() {
        for level in fpnge::LEVELS {
            push(
                format!("fpnge L{level}"),
                Box::new(move |out| {
                    assert!(fpnge::encode(img, level, out));
                }),
            );
        }
    }
    push(
        "png Fast".into(),
        Box::new(move |out| peers::png_crate(img, png::Compression::Fast, out)),
    );
    v
}

/// One image's results: (name, median MP/s, bytes) per coder.
struct Row {
    image: String,
    results: Vec<(String, f64, usize)>,
}

impl Row {
    fn get(&self, name: &str) -> Option<(f64, usize)> {
        self.results
            .iter()
            .find(|r| r.0 == name)
            .map(|r| (r.1, r.2))
    }
}

fn main() {
    let mut runs = 15usize;
    let mut warmup = 2usize;
    let mut wanted: Vec<String> = Vec::new();
    let mut markdown = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--runs" => runs = value().parse().unwrap_or_else(|_| usage("bad --runs")),
            "--warmup" => warmup = value().parse().unwrap_or_else(|_| usage("bad --warmup")),
            "--image" => wanted.push(value()),
            "--markdown" => markdown = Some(value()),
            "-h" | "--help" => usage("help"),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if runs == 0 {
        usage("--runs must be at least 1");
    }
    if !fpnge::available() {
        println!(
            "note: fpnge was not built into this binary (no C++ compiler or no \
             shared/peers/fpnge at build time); its rows are left out"
        );
    }
    let images: Vec<Image> = IMAGES
        .iter()
        .filter(|(_, name, _)| wanted.is_empty() || wanted.iter().any(|w| name.contains(w)))
        .filter_map(|&(rel, name, crop)| {
            let img = find_image(rel, name)?;
            Some(if crop > 0 {
                img.crop_centre(crop, crop, name)
            } else {
                img
            })
        })
        .collect();
    if images.is_empty() {
        usage("no image selected (or none found)");
    }
    let mut all: Vec<Row> = Vec::new();
    for img in &images {
        let mp = img.pixel_count() as f64 / 1e6;
        eprintln!(
            "{}: {}x{}x{}, {runs} runs",
            img.name, img.width, img.height, img.channels
        );
        let mut cs = coders(img);
        cs.retain_mut(|c| {
            (c.run)(&mut c.out);
            let ok = decodes_to(&c.out, img);
            if !ok {
                eprintln!(
                    "  {}: output does not decode to the input; not timed",
                    c.name
                );
            }
            ok
        });
        for round in 0..warmup + runs {
            for c in cs.iter_mut() {
                let t = Instant::now();
                (c.run)(&mut c.out);
                let d = t.elapsed();
                std::hint::black_box(&c.out);
                if round >= warmup {
                    c.times.push(d);
                }
            }
        }
        let results = cs
            .iter_mut()
            .map(|c| {
                c.times.sort();
                let med = pngcast_benches::median(&c.times).as_secs_f64().max(1e-9);
                (c.name.clone(), mp / med, c.out.len())
            })
            .collect();
        all.push(Row {
            image: img.name.clone(),
            results,
        });
    }

    let mut md = String::new();
    md += &format!(
        "<!-- vs_fpnge: {}, {} threads available, one used, kernel {}, median of {runs} -->\n\n",
        pngcast_benches::cpu_model(),
        std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
        fast_kernel_name()
    );
    // Table 1: every coder, with our two levels' ratios against it.
    md += "| image | coder | MP/s | bytes | Fastest speed / this | Fastest bytes / this | \
           Balanced speed / this | Balanced bytes / this |\n|---|---|---|---|---|---|---|---|\n";
    for row in &all {
        let fastest = row.get("ours Fastest");
        let balanced = row.get("ours Balanced");
        for (name, mps, bytes) in &row.results {
            let ratio = |o: Option<(f64, usize)>| match o {
                Some((s, b)) if !name.starts_with("ours") => {
                    format!("{:.2}x | {:.3}", s / mps, b as f64 / *bytes as f64)
                }
                _ => " | ".into(),
            };
            md += &format!(
                "| {} | {name} | {mps:.0} | {bytes} | {} | {} |\n",
                row.image,
                ratio(fastest),
                ratio(balanced)
            );
        }
    }
    // Table 2: the goals.
    md += "\n| image | Fastest MP/s | vs fpnge L2 speed | bytes vs L2 | Balanced MP/s | \
           vs fpnge L4 speed | bytes vs L4 | Balanced vs png Fast speed |\n\
           |---|---|---|---|---|---|---|---|\n";
    for row in &all {
        let cell = |ours: &str, peer: &str| match (row.get(ours), row.get(peer)) {
            (Some((s, b)), Some((ps, pb))) => {
                format!("{:.2}x | {:.3}", s / ps, b as f64 / pb as f64)
            }
            _ => "n/a | n/a".into(),
        };
        let mps = |ours: &str| row.get(ours).map_or(0.0, |r| r.0);
        let png_fast = match (row.get("ours Balanced"), row.get("png Fast")) {
            (Some((s, _)), Some((ps, _))) => format!("{:.2}x", s / ps),
            _ => "n/a".into(),
        };
        md += &format!(
            "| {} | {:.0} | {} | {:.0} | {} | {png_fast} |\n",
            row.image,
            mps("ours Fastest"),
            cell("ours Fastest", "fpnge L2"),
            mps("ours Balanced"),
            cell("ours Balanced", "fpnge L4"),
        );
    }
    print!("{md}");
    if let Some(p) = markdown {
        std::fs::write(&p, &md).unwrap_or_else(|e| usage(&format!("{p}: {e}")));
    }
}
