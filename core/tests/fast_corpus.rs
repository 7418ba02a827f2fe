//! The fast coder through the public writer on real images: every corpus image (and the repo's
//! bench copies) at both levels, one stripe and many, decodes pixel-exact with the png crate, is
//! byte-identical on one and two threads, and is never larger than the png crate's
//! `Compression::Fast` output for the same pixels (a size guarantee of the coder; sizes are
//! deterministic, so this is a real test, not a timing).

mod png_util;

use std::num::{NonZeroU32, NonZeroUsize};

use pngcast_core::png::{
    Compression, EncodeOptions, Encoder, FastKernel, FastLevel, ImageInfo, Threads,
};

fn png_crate_fast(info: &ImageInfo, pixels: &[u8]) -> usize {
    let mut out = Vec::new();
    let mut e = png::Encoder::new(&mut out, info.width, info.height);
    e.set_color(
        [
            png::ColorType::Grayscale,
            png::ColorType::GrayscaleAlpha,
            png::ColorType::Rgb,
            png::ColorType::Rgba,
        ][info.channels as usize - 1],
    );
    e.set_depth(if info.bit_depth.bits() == 16 {
        png::BitDepth::Sixteen
    } else {
        png::BitDepth::Eight
    });
    e.set_compression(png::Compression::Fast);
    let mut w = e.write_header().unwrap();
    w.write_image_data(pixels).unwrap();
    w.finish().unwrap();
    out.len()
}

#[test]
fn corpus_decodes_and_beats_png_fast() {
    let mut files = png_util::corpus_files();
    // `PNGCAST_CORPUS=/path/to/corpus` adds a corpus that is not at `../shared/corpus`.
    if let Some(dir) = std::env::var_os("PNGCAST_CORPUS") {
        for sub in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            for f in std::fs::read_dir(sub.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if f.path().extension().is_some_and(|e| e == "png") {
                    files.push(f.path());
                }
            }
        }
    }
    assert!(
        !files.is_empty(),
        "benches/images must hold the bench copies"
    );
    for path in files {
        let (info, pixels) = png_util::load_png(&path);
        let peer = png_crate_fast(&info, &pixels);
        for level in [FastLevel::Fastest, FastLevel::Balanced] {
            for stripes in [None, NonZeroU32::new(64)] {
                let what = format!("{} {level:?} {stripes:?}", path.display());
                let mut outs = Vec::new();
                for threads in [1, 2] {
                    let opts = EncodeOptions::default()
                        .compression(Compression::Fast(level))
                        .stripe_rows(stripes)
                        .threads(Threads::Fixed(NonZeroUsize::new(threads).unwrap()));
                    let mut out = Vec::new();
                    Encoder::new(opts)
                        .unwrap()
                        .encode_into(&info, &pixels, &mut out)
                        .unwrap();
                    png_util::assert_decodes_to(&out, &info, &pixels, &what);
                    outs.push(out);
                }
                assert!(outs[0] == outs[1], "{what}: thread count changed the bytes");
                // With the default stripes, never larger than the png crate's Fast
                // (`Fastest`: by at most 5%, its block runs and shaped code trade size for
                // speed; fpnge's Paeth level is 4.6% over png Fast on the painting).
                if stripes.is_none() {
                    let ours = outs[0].len();
                    let bound = match level {
                        FastLevel::Fastest => peer + peer / 20,
                        _ => peer,
                    };
                    if std::env::var_os("PNGCAST_SIZES").is_some() {
                        eprintln!("{what}: {ours} vs png Fast {peer}");
                    }
                    assert!(
                        ours <= bound,
                        "{what}: {ours} bytes > {bound} (png Fast {peer})"
                    );
                }
            }
        }
    }
}

#[test]
fn default_compression_is_fast() {
    assert_eq!(
        Compression::default(),
        Compression::Fast(FastLevel::Balanced)
    );
    assert_eq!(EncodeOptions::default().compression, Compression::default());
}

#[test]
fn every_kernel_writes_the_same_file() {
    let kernels = FastKernel::available();
    // Fastest first, the scalar oracle last (as `convert::kernels::all`).
    assert_eq!(kernels.last().map(FastKernel::name), Some("scalar"));
    assert!(kernels.contains(&FastKernel::best()));
    for path in png_util::corpus_files() {
        let (info, pixels) = png_util::load_png(&path);
        let mut first: Option<Vec<u8>> = None;
        for &k in kernels.iter().rev() {
            let opts = EncodeOptions::default().fast_kernel(Some(k));
            let mut out = Vec::new();
            Encoder::new(opts)
                .unwrap()
                .encode_into(&info, &pixels, &mut out)
                .unwrap();
            let what = format!("{} kernel {}", path.display(), k.name());
            png_util::assert_decodes_to(&out, &info, &pixels, &what);
            match &first {
                None => first = Some(out),
                Some(f) => assert!(*f == out, "{what}: bytes differ from the scalar kernel's"),
            }
        }
    }
}
