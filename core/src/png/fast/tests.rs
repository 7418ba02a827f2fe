//! Standalone tests of the fast coder: stripes built here, wrapped in a zlib stream, inflated by
//! miniz_oxide (and, as a PNG, decoded by the png crate), unfiltered and compared to the input.
//! Every SIMD kernel's output is compared with the scalar kernel's, byte for byte.
#![forbid(unsafe_code)]

use super::bitwriter::BitWriter;
use super::huffman::{CodeShape, Table, NUM_LITLEN};
use super::kernels::{scalar, Kernel, RunMode};
use super::*;

/// One image's fast-coded zlib stream plus the per-stripe Adler-32s the coder returned.
struct Coded {
    zlib: Vec<u8>,
    stripe_adlers: Vec<u32>,
    stripe_lens: Vec<usize>,
}

#[allow(clippy::too_many_arguments)]
fn code_image(
    pixels: &[u8],
    row_bytes: usize,
    bpp: usize,
    filter: Filter,
    level: FastLevel,
    stripe_rows: usize,
    kernel: Kernel,
    shared: bool,
) -> Coded {
    let nrows = pixels.len() / row_bytes;
    let mut zlib = StripeOut::default();
    zlib.extend_from_slice(&[0x78, 0x01]);
    let mut scratch = FastScratch::with_kernel(kernel);
    // With `shared`, one code sampled over the whole frame (as the encoder does for large
    // frames), else each stripe samples its own.
    let whole = StripeJob {
        prev_row: None,
        rows: pixels,
        row_bytes,
        bpp,
        filter,
        is_last: true,
    };
    let code = shared.then(|| {
        FrameCode::sample(
            &mut JobRows(&whole),
            row_bytes,
            bpp,
            filter,
            level,
            &mut scratch,
        )
    });
    let mut stripe_adlers = Vec::new();
    let mut stripe_lens = Vec::new();
    let mut r = 0;
    while r < nrows {
        let n = stripe_rows.min(nrows - r);
        let job = StripeJob {
            prev_row: (r > 0).then(|| &pixels[(r - 1) * row_bytes..r * row_bytes]),
            rows: &pixels[r * row_bytes..(r + n) * row_bytes],
            row_bytes,
            bpp,
            filter,
            is_last: r + n == nrows,
        };
        stripe_adlers.push(match &code {
            Some(code) => encode_stripe_with(&job, level, code, &mut scratch, &mut zlib),
            None => encode_stripe(&job, level, &mut scratch, &mut zlib),
        });
        stripe_lens.push(n * (row_bytes + 1));
        r += n;
    }
    Coded {
        zlib: zlib.as_slice().to_vec(),
        stripe_adlers,
        stripe_lens,
    }
}

fn adler(data: &[u8]) -> u32 {
    let mut a = simd_adler32::Adler32::new();
    a.write(data);
    a.finish()
}

/// Reverses PNG filtering (the decoder side), independent of the coder's kernels.
fn unfilter(data: &[u8], row_bytes: usize, bpp: usize) -> Vec<u8> {
    let nrows = data.len() / (row_bytes + 1);
    let mut out = vec![0u8; nrows * row_bytes];
    let zeros = vec![0u8; row_bytes];
    for r in 0..nrows {
        let f = data[r * (row_bytes + 1)];
        let src = &data[r * (row_bytes + 1) + 1..(r + 1) * (row_bytes + 1)];
        let (done, cur) = out.split_at_mut(r * row_bytes);
        let prev: &[u8] = if r == 0 {
            &zeros
        } else {
            &done[(r - 1) * row_bytes..]
        };
        let cur = &mut cur[..row_bytes];
        for i in 0..row_bytes {
            let a = if i >= bpp { cur[i - bpp] } else { 0 };
            let b = prev[i];
            let c = if i >= bpp { prev[i - bpp] } else { 0 };
            let pred = match f {
                0 => 0,
                1 => a,
                2 => b,
                3 => ((a as u16 + b as u16) / 2) as u8,
                4 => scalar::paeth(a, b, c),
                _ => panic!("bad filter type {f}"),
            };
            cur[i] = src[i].wrapping_add(pred);
        }
    }
    out
}

/// Checks the stream inflates to a filtered image equal to `pixels`, with correct Adler-32s,
/// and returns the zlib size.
fn check_roundtrip(coded: &mut Coded, pixels: &[u8], row_bytes: usize, bpp: usize) -> usize {
    // Without the trailer first: the inflated bytes give the expected Adler-32.
    let raw = miniz_oxide::inflate::decompress_to_vec_zlib(&coded.zlib)
        .map(|_| ())
        .err();
    let _ = raw; // missing trailer may or may not be an error; inflate properly below.
    let body = &coded.zlib[2..];
    let inflated = miniz_oxide::inflate::decompress_to_vec(body).expect("raw inflate");
    assert_eq!(inflated.len(), pixels.len() / row_bytes * (row_bytes + 1));
    let mut off = 0;
    for (i, (&a, &len)) in coded
        .stripe_adlers
        .iter()
        .zip(&coded.stripe_lens)
        .enumerate()
    {
        assert_eq!(a, adler(&inflated[off..off + len]), "stripe {i} adler");
        off += len;
    }
    coded
        .zlib
        .extend_from_slice(&adler(&inflated).to_be_bytes());
    let again = miniz_oxide::inflate::decompress_to_vec_zlib(&coded.zlib).expect("zlib inflate");
    assert_eq!(again, inflated);
    assert_eq!(unfilter(&inflated, row_bytes, bpp), pixels, "pixels differ");
    coded.zlib.len()
}

/// Wraps a zlib stream in a PNG and decodes it with the png crate.
fn png_decode(zlib: &[u8], w: u32, h: u32, channels: u8, depth: u8) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let mut h = crc32fast::Hasher::new();
        h.update(kind);
        h.update(data);
        out.extend_from_slice(&h.finalize().to_be_bytes());
    }
    let color = [0u8, 4, 2, 6][channels as usize - 1];
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[depth, color, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", zlib);
    chunk(&mut png, b"IEND", &[]);
    let mut dec = png::Decoder::new(std::io::Cursor::new(png));
    dec.set_transformations(png::Transformations::IDENTITY);
    let mut reader = dec.read_info().expect("png header");
    let mut buf = vec![0u8; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).expect("png decode");
    buf.truncate(info.buffer_size());
    buf
}

struct Shape {
    w: usize,
    h: usize,
    channels: usize,
    depth: usize,
}

impl Shape {
    fn bpp(&self) -> usize {
        self.channels * self.depth / 8
    }
    fn row_bytes(&self) -> usize {
        self.w * self.bpp()
    }
}

/// Full check for every kernel, with per-stripe codes and with one code shared by the frame:
/// roundtrip, png-crate decode, kernels identical to scalar. Returns the per-stripe size.
fn check_all(
    pixels: &[u8],
    s: &Shape,
    filter: Filter,
    level: FastLevel,
    stripe_rows: usize,
) -> usize {
    let shared = check_all_with(pixels, s, filter, level, stripe_rows, true);
    let own = check_all_with(pixels, s, filter, level, stripe_rows, false);
    if stripe_rows >= s.h {
        assert_eq!(shared, own, "one stripe: the frame's code is the stripe's");
    }
    own
}

fn check_all_with(
    pixels: &[u8],
    s: &Shape,
    filter: Filter,
    level: FastLevel,
    stripe_rows: usize,
    shared: bool,
) -> usize {
    let (rb, bpp) = (s.row_bytes(), s.bpp());
    let code = |k| code_image(pixels, rb, bpp, filter, level, stripe_rows, k, shared);
    let mut oracle = code(Kernel::Scalar);
    let size = check_roundtrip(&mut oracle, pixels, rb, bpp);
    let decoded = png_decode(
        &oracle.zlib,
        s.w as u32,
        s.h as u32,
        s.channels as u8,
        s.depth as u8,
    );
    assert_eq!(decoded, pixels, "png crate decode");
    for k in Kernel::all()
        .iter()
        .copied()
        .filter(|&k| k != Kernel::Scalar)
    {
        let mut c = code(k);
        check_roundtrip(&mut c, pixels, rb, bpp);
        assert!(
            c.zlib == oracle.zlib,
            "kernel {} differs from scalar",
            k.name()
        );
    }
    size
}

fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n).map(|_| rng.u8(..)).collect()
}

/// A smooth synthetic "photo": gradients plus mild noise.
fn smooth(s: &Shape, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let rb = s.row_bytes();
    let mut v = vec![0u8; rb * s.h];
    for y in 0..s.h {
        for x in 0..rb {
            let base = (x / s.bpp().max(1) + 2 * y) as i32 + (x % s.bpp()) as i32 * 40;
            v[y * rb + x] = (base + rng.i32(-2..=2)).rem_euclid(256) as u8;
        }
    }
    v
}

const ALL_FILTERS: [Filter; 6] = [
    Filter::None,
    Filter::Sub,
    Filter::Up,
    Filter::Average,
    Filter::Paeth,
    Filter::Adaptive,
];

#[test]
fn odd_shapes_all_filters_levels_depths_channels() {
    let dims = [(1, 1), (1, 17), (17, 1), (3, 100), (100, 3), (33, 9)];
    for &(w, h) in &dims {
        for channels in 1..=4 {
            for depth in [8, 16] {
                let s = Shape {
                    w,
                    h,
                    channels,
                    depth,
                };
                let px = smooth(&s, (w * 31 + h) as u64);
                for filter in ALL_FILTERS {
                    for level in [FastLevel::Fastest, FastLevel::Balanced] {
                        for stripe_rows in [1, 4, usize::MAX] {
                            check_all(&px, &s, filter, level, stripe_rows);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn random_sizes_and_contents() {
    let mut rng = fastrand::Rng::with_seed(0xfa57);
    for case in 0..120 {
        let s = Shape {
            w: rng.usize(1..300),
            h: rng.usize(1..40),
            channels: rng.usize(1..=4),
            depth: if rng.bool() { 8 } else { 16 },
        };
        let n = s.row_bytes() * s.h;
        let px = match rng.u8(0..4) {
            0 => noise(n, case),
            1 => smooth(&s, case),
            2 => {
                // sparse: mostly zeros, some random bytes (long and short zero runs)
                (0..n)
                    .map(|_| if rng.u8(0..10) == 0 { rng.u8(..) } else { 0 })
                    .collect()
            }
            _ => {
                // flat blocks of random colours
                let c: Vec<u8> = (0..s.bpp()).map(|_| rng.u8(..)).collect();
                (0..n)
                    .map(|i| c[i % s.bpp()].wrapping_add((i / 997) as u8))
                    .collect()
            }
        };
        let filter = ALL_FILTERS[rng.usize(0..6)];
        let level = if rng.bool() {
            FastLevel::Fastest
        } else {
            FastLevel::Balanced
        };
        let stripe_rows = rng.usize(1..=s.h);
        check_all(&px, &s, filter, level, stripe_rows);
    }
}

#[test]
fn noise_falls_back_to_stored() {
    for (w, h, ch) in [(256, 64, 3), (1000, 100, 4), (5, 5, 1), (70000, 2, 1)] {
        let s = Shape {
            w,
            h,
            channels: ch,
            depth: 8,
        };
        let n = s.row_bytes() * h;
        let px = noise(n, w as u64);
        for stripe_rows in [1, 7, usize::MAX] {
            let size = check_all(&px, &s, Filter::Adaptive, FastLevel::Balanced, stripe_rows);
            let stripes = h.div_ceil(stripe_rows.min(h));
            let data = h * (s.row_bytes() + 1);
            let stored = data + 5 * (data.div_ceil(65535) + stripes);
            // zlib header and trailer: 6 bytes.
            assert!(
                size <= stored + 6,
                "noise {w}x{h}: {size} > stored {stored}"
            );
        }
    }
}

/// A frame whose code, sampled over the whole frame, fits its smooth half and not its noisy
/// half: the noisy stripes fall back to stored blocks on their own, mid-stripe, and every
/// stripe still decodes.
#[test]
fn shared_code_on_a_mixed_frame() {
    let s = Shape {
        w: 300,
        h: 60,
        channels: 3,
        depth: 8,
    };
    let rb = s.row_bytes();
    let mut px = smooth(&s, 9);
    px[30 * rb..].copy_from_slice(&noise(30 * rb, 9));
    for level in [FastLevel::Fastest, FastLevel::Balanced] {
        for stripe_rows in [1, 10, 45] {
            let coded = code_image(
                &px,
                rb,
                3,
                Filter::Adaptive,
                level,
                stripe_rows,
                Kernel::best(),
                true,
            );
            let stripes = s.h.div_ceil(stripe_rows);
            let data = s.h * (rb + 1);
            let stored = data + 5 * (data.div_ceil(65535) + stripes);
            assert!(coded.zlib.len() <= stored + 2, "{level:?} {stripe_rows}");
            check_all_with(&px, &s, Filter::Adaptive, level, stripe_rows, true);
        }
    }
}

#[test]
fn flat_fills_compress_hard() {
    for (w, h, ch) in [(512, 512, 3), (4000, 3, 4), (3, 4000, 1), (1, 1000, 2)] {
        let s = Shape {
            w,
            h,
            channels: ch,
            depth: 8,
        };
        let px = vec![0x5Au8; s.row_bytes() * h];
        let size = check_all(&px, &s, Filter::Adaptive, FastLevel::Balanced, usize::MAX);
        let raw = s.row_bytes() * h;
        // Wide rows: zero runs of whole rows (>= 50x). Rows of a few bytes: the filter byte of
        // every row breaks the run, so only ~4x.
        let bound = if s.row_bytes() >= 64 {
            raw / 50
        } else {
            raw / 4
        } + 300;
        assert!(
            size < bound,
            "flat {w}x{h}x{ch}: {size} bytes for {raw} raw"
        );
        let zeros = vec![0u8; s.row_bytes() * h];
        check_all(&zeros, &s, Filter::None, FastLevel::Fastest, 100);
    }
}

#[test]
fn sixteen_bit_ramp() {
    let s = Shape {
        w: 301,
        h: 50,
        channels: 3,
        depth: 16,
    };
    let mut px = Vec::new();
    for y in 0..s.h {
        for x in 0..s.w * s.channels {
            px.extend_from_slice(&((x * 97 + y * 13) as u16).to_be_bytes());
        }
    }
    for level in [FastLevel::Fastest, FastLevel::Balanced] {
        check_all(&px, &s, Filter::Adaptive, level, 16);
    }
}

fn corpus_files() -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    let root = std::path::Path::new("/work/shared/corpus");
    let Ok(dirs) = std::fs::read_dir(root) else {
        return v;
    };
    for d in dirs.flatten() {
        if let Ok(files) = std::fs::read_dir(d.path()) {
            for f in files.flatten() {
                if f.path().extension().is_some_and(|e| e == "png") {
                    v.push(f.path());
                }
            }
        }
    }
    v.sort();
    v
}

fn load_png(path: &std::path::Path) -> (Vec<u8>, Shape) {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0u8; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    let s = Shape {
        w: info.width as usize,
        h: info.height as usize,
        channels: info.color_type.samples(),
        depth: match info.bit_depth {
            png::BitDepth::Sixteen => 16,
            _ => 8,
        },
    };
    (buf, s)
}

#[test]
fn corpus_roundtrips() {
    let files = corpus_files();
    if files.is_empty() {
        eprintln!("corpus not found: skipping corpus roundtrip");
        return;
    }
    for path in files {
        let (px, s) = load_png(&path);
        for level in [FastLevel::Fastest, FastLevel::Balanced] {
            let size = check_all(&px, &s, Filter::Adaptive, level, 64);
            eprintln!(
                "{}: {level:?} {:.3} of raw",
                path.display(),
                size as f64 / px.len() as f64
            );
        }
    }
}

// ---- kernel-level comparisons against the scalar oracle ----

const LENS: [usize; 22] = [
    0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 66, 127, 128, 129, 200, 1000,
];

#[test]
fn kernels_filter_and_cost_match_scalar() {
    let mut rng = fastrand::Rng::with_seed(3);
    let mut counts = [0u32; NUM_LITLEN];
    for c in counts.iter_mut().take(256) {
        *c = rng.u32(0..1000);
    }
    let table = Table::from_counts(&counts);
    for &k in Kernel::all() {
        for &len in &LENS {
            for bpp in 1..=8 {
                for pat in 0..4 {
                    let gen = |rng: &mut fastrand::Rng| -> Vec<u8> {
                        (0..len + 3)
                            .map(|i| match pat {
                                0 => rng.u8(..),
                                1 => (i as u8).wrapping_mul(3).wrapping_add(rng.u8(0..3)),
                                2 => [0, 255, 128, 127, 1][rng.usize(0..5)],
                                // Flat (every pixel equals its neighbours: the kernels'
                                // flat-block shortcuts) with an island in 1 byte of 300, so
                                // short rows are mostly all flat and long ones mixed.
                                _ if rng.usize(0..300) == 0 => rng.u8(..),
                                _ => 200,
                            })
                            .collect()
                    };
                    let raw_all = gen(&mut rng);
                    let prev_all = gen(&mut rng);
                    // unaligned starts
                    let off = rng.usize(0..=3);
                    let raw = &raw_all[off..off + len];
                    let prev = &prev_all[3 - off..3 - off + len];
                    for cost in [&table.cost, &CostTable::prior()] {
                        assert_eq!(
                            k.filter_costs(raw, prev, bpp, cost),
                            scalar::filter_costs(raw, prev, bpp, cost),
                            "{} costs len {len} bpp {bpp}",
                            k.name()
                        );
                    }
                    for f in 0..5 {
                        let mut a = vec![0xEE; len + 1];
                        let mut b = vec![0xEE; len + 1];
                        k.filter_row(f, raw, prev, bpp, &mut a);
                        scalar::filter_row(f, raw, prev, bpp, &mut b);
                        assert_eq!(a, b, "{} filter {f} len {len} bpp {bpp}", k.name());
                    }
                }
            }
        }
    }
}

/// Long zero runs ending anywhere (the AVX-512 kernel scans them 256 bytes a step, then 64),
/// from any start, against the scalar kernel.
#[test]
fn kernels_long_zero_runs_match_scalar() {
    let mut rng = fastrand::Rng::with_seed(8);
    for &k in Kernel::all() {
        for _ in 0..2000 {
            let len = rng.usize(0..1600);
            let end = rng.usize(0..=len);
            let mut seg = vec![0u8; len];
            for b in &mut seg[end..] {
                *b = rng.u8(..);
            }
            if end < len {
                seg[end] = rng.u8(1..);
            }
            let start = rng.usize(0..=end);
            assert_eq!(
                k.zero_run(&seg, start),
                scalar::zero_run(&seg, start),
                "{} len {len} end {end} start {start}",
                k.name()
            );
        }
    }
}

#[test]
fn kernels_runs_and_literals_match_scalar() {
    let mut rng = fastrand::Rng::with_seed(5);
    let mut counts = [0u32; NUM_LITLEN];
    for c in counts.iter_mut() {
        *c = rng.u32(0..5000);
    }
    let flat = Table::from_counts(&counts);
    // A skewed table (short codes for small residuals, as on photos): eight codes usually fit
    // one 56-bit write, which the AVX-512 kernel merges; the flat one mostly does not.
    for (b, c) in counts.iter_mut().enumerate().take(256) {
        let d = b.min(256 - b) as u32;
        *c = 1_000_000 >> d.min(20);
    }
    let skewed = Table::from_counts(&counts);
    // Codes of at most 8 bits for most of 180 symbols (7 and 8 bits: eight of them may exceed
    // one 56-bit write), longer ones for the rest, which the segments below use rarely: the AVX-512
    // kernel's short path (whole blocks of <= 8-bit codes, packed with `pext`) and its fallback
    // within one stripe.
    for (b, c) in counts.iter_mut().enumerate() {
        *c = if b < 180 { 1000 } else { 1 };
    }
    counts[0] = 5000; // zeros (and zero runs) commoner still
    let near = Table::from_counts(&counts);
    let short_syms: Vec<u8> = (0..=255u8)
        .filter(|&b| near.lens[b as usize] <= 8)
        .collect();
    let long_syms: Vec<u8> = (0..=255u8).filter(|&b| near.lens[b as usize] > 8).collect();
    assert!(near.short_per_mille >= 990 && short_syms.len() > 150 && !long_syms.is_empty());
    assert!(short_syms.iter().any(|&b| near.lens[b as usize] == 8));
    for (k, table) in Kernel::all()
        .iter()
        .copied()
        .flat_map(|k| [(k, &flat), (k, &skewed), (k, &near)])
    {
        let near_symbols = std::ptr::eq(table, &near);
        for _ in 0..400 {
            let len = if rng.bool() {
                LENS[rng.usize(0..LENS.len())]
            } else {
                rng.usize(0..700)
            };
            let density = rng.u8(1..=10);
            let seg: Vec<u8> = (0..len)
                .map(|_| {
                    if near_symbols {
                        // 1 in 40 outside the short codes; zero runs as elsewhere.
                        match rng.u8(0..40) {
                            0 => long_syms[rng.usize(..long_syms.len())],
                            n if n < density => 0,
                            _ => short_syms[rng.usize(..short_syms.len())],
                        }
                    } else if rng.u8(0..10) < density {
                        0
                    } else {
                        rng.u8(..)
                    }
                })
                .collect();
            for (from, min) in [0, len / 3, len.saturating_sub(1), len]
                .into_iter()
                .flat_map(|f| [(f, kernels::MIN_RUN), (f, kernels::LONG_RUN)])
            {
                let got = k.find_run(&seg, from, min);
                assert_eq!(
                    got,
                    scalar::find_run(&seg, from, min),
                    "{} find_run {min}",
                    k.name()
                );
                if let Some(s) = got {
                    assert_eq!(
                        k.zero_run(&seg, s),
                        scalar::zero_run(&seg, s),
                        "{}",
                        k.name()
                    );
                }
            }
            let mut b1 = vec![0u8; len * 2 + 64];
            let mut b2 = vec![0u8; len * 2 + 64];
            let mut w1 = BitWriter::new(&mut b1);
            let mut w2 = BitWriter::new(&mut b2);
            // a few odd bits first so the kernel starts mid-byte
            let lead = rng.u32(0..8);
            w1.write(0, lead);
            w2.write(0, lead);
            k.emit_literals(&seg, table, &mut w1);
            scalar::emit_literals(&seg, table, &mut w2);
            assert_eq!(w1.len_bits(), w2.len_bits());
            let (n1, n2) = (w1.finish(), w2.finish());
            assert_eq!(b1[..n1], b2[..n2], "{} literals len {len}", k.name());
            for mode in [RunMode::Any, RunMode::Long] {
                let mut w1 = BitWriter::new(&mut b1);
                let mut w2 = BitWriter::new(&mut b2);
                w1.write(0, lead);
                w2.write(0, lead);
                k.emit_segment(&seg, table, &mut w1, mode);
                Kernel::Scalar.emit_segment(&seg, table, &mut w2, mode);
                assert_eq!(
                    w1.len_bits(),
                    w2.len_bits(),
                    "{} {mode:?} segment len {len}",
                    k.name()
                );
                let (n1, n2) = (w1.finish(), w2.finish());
                assert_eq!(
                    b1[..n1],
                    b2[..n2],
                    "{} {mode:?} segment len {len}",
                    k.name()
                );
            }
        }
    }
}

#[test]
fn scratch_is_reused_without_growth() {
    let s = Shape {
        w: 200,
        h: 50,
        channels: 3,
        depth: 8,
    };
    let px = smooth(&s, 1);
    let mut scratch = FastScratch::default();
    let mut out = StripeOut::default();
    let job = StripeJob {
        prev_row: None,
        rows: &px,
        row_bytes: s.row_bytes(),
        bpp: 3,
        filter: Filter::Adaptive,
        is_last: true,
    };
    encode_stripe(&job, FastLevel::Balanced, &mut scratch, &mut out);
    let caps = (
        out.capacity(),
        scratch.row.capacity(),
        scratch.zeros.capacity(),
    );
    let first = out.as_slice().to_vec();
    for _ in 0..3 {
        out.clear();
        encode_stripe(&job, FastLevel::Balanced, &mut scratch, &mut out);
        assert_eq!(out.as_slice(), first, "deterministic");
        assert_eq!(
            caps,
            (
                out.capacity(),
                scratch.row.capacity(),
                scratch.zeros.capacity()
            )
        );
    }
}

/// Filtering with the running Adler-32 writes the same row as filtering alone, and extends the
/// checksum exactly by the filter byte and the row: every kernel, filter and pixel size, rows
/// with flat blocks and partial last blocks, any starting checksum.
#[test]
fn filter_row_adler_matches_filter_then_checksum() {
    let mut rng = fastrand::Rng::with_seed(12);
    for &k in Kernel::all() {
        for len in [1usize, 3, 8, 63, 64, 65, 127, 200, 1000, 3000, 5553] {
            for bpp in [1usize, 2, 3, 4, 6, 8] {
                if bpp > len {
                    continue;
                }
                // Half flat (equal bytes, so zero residuals in whole blocks), half noise.
                let raw: Vec<u8> = (0..len)
                    .map(|j| if j < len / 2 { 7 } else { rng.u8(..) })
                    .collect();
                let prev: Vec<u8> = (0..len)
                    .map(|j| if j < len / 2 { 7 } else { rng.u8(..) })
                    .collect();
                for f in 0..5u8 {
                    let start = (rng.u32(..) % 65521) | ((rng.u32(..) % 65521) << 16);
                    let mut want = vec![0u8; len];
                    k.filter_row(f, &raw, &prev, bpp, &mut want);
                    let mut seg = vec![f];
                    seg.extend_from_slice(&want);
                    let want_sum = crate::png::adler::adler32_update(start, &seg);
                    let mut got = vec![0xAAu8; len + 5];
                    let sum = k.filter_row_adler(f, &raw, &prev, bpp, &mut got, start);
                    assert_eq!(
                        got[..len],
                        want[..],
                        "{} f {f} len {len} bpp {bpp}",
                        k.name()
                    );
                    assert_eq!(sum, want_sum, "{} f {f} len {len} bpp {bpp}", k.name());
                }
            }
        }
    }
}

/// One zero run of every length around both minimums (R - 1..=R + 1) and around one and two
/// windows, starting at every offset of the first three 64-byte windows of a segment of
/// nonzero bytes: every kernel codes it as the scalar oracle does in every run mode. (The
/// AVX-512 coder rules windows out by their all-zero aligned 4- and 8-byte groups before it
/// looks at bytes; a run that starts just before a group, or whose groups lie in the next
/// window, must still be found.)
#[test]
fn kernels_find_runs_at_every_offset() {
    let mut counts = [0u32; NUM_LITLEN];
    for (b, c) in counts.iter_mut().enumerate() {
        let d = if b < 256 { b.min(256 - b) } else { 8 } as u32;
        *c = 1_000_000 >> d.min(20);
    }
    let table = Table::from_counts(&counts);
    let mut rng = fastrand::Rng::with_seed(8);
    for len in [150usize, 256, 300] {
        let base: Vec<u8> = (0..len).map(|_| rng.u8(..) | 1).collect();
        for run in (kernels::MIN_RUN - 1..=kernels::MIN_RUN + 1)
            .chain(kernels::LONG_RUN - 1..=kernels::LONG_RUN + 1)
            .chain([63, 64, 65, 127, 128, 129])
        {
            for start in 0..(192usize).min(len.saturating_sub(run)) {
                let mut seg = base.clone();
                seg[start..start + run].fill(0);
                for &k in Kernel::all() {
                    for mode in [RunMode::Any, RunMode::Long, RunMode::Blocks] {
                        let mut b1 = vec![0u8; len * 2 + 64];
                        let mut b2 = vec![0u8; len * 2 + 64];
                        let mut w1 = BitWriter::new(&mut b1);
                        let mut w2 = BitWriter::new(&mut b2);
                        k.emit_segment(&seg, &table, &mut w1, mode);
                        Kernel::Scalar.emit_segment(&seg, &table, &mut w2, mode);
                        let (n1, n2) = (w1.finish(), w2.finish());
                        assert_eq!(
                            b1[..n1],
                            b2[..n2],
                            "{} {mode:?} len {len} run {run} at {start}",
                            k.name()
                        );
                    }
                }
            }
        }
    }
}

/// Segments of literal spans and zero runs of every length around the 64-byte window (runs
/// that cover windows, end windows, start them, and partial tails): every kernel's block-run
/// coder writes the scalar oracle's bytes, and the tokens cover the segment in order.
#[test]
fn kernels_block_runs_match_scalar() {
    let mut rng = fastrand::Rng::with_seed(21);
    let mut counts = [0u32; NUM_LITLEN];
    for (b, c) in counts.iter_mut().enumerate() {
        let d = if b < 256 { b.min(256 - b) } else { 8 } as u32;
        *c = 1_000_000 >> d.min(20);
    }
    let tables = [
        Table::from_counts(&counts),
        Table::from_counts_shaped(&counts, CodeShape::NearShort(16)),
    ];
    for &k in Kernel::all() {
        for table in &tables {
            for _ in 0..300 {
                let mut seg = Vec::new();
                let target = rng.usize(0..1200);
                while seg.len() < target {
                    let n = match rng.u8(0..4) {
                        0 => rng.usize(1..20),
                        1 => rng.usize(50..80),
                        2 => rng.usize(120..300),
                        _ => 64 - seg.len() % 64,
                    };
                    if rng.bool() {
                        seg.extend(std::iter::repeat_n(0u8, n));
                    } else {
                        seg.extend((0..n).map(|_| rng.u8(..) | 1));
                    }
                }
                let mut next = 0;
                scalar::block_tokens(&seg, |t| match t {
                    scalar::Token::Literals(a, b) => {
                        assert!(a == next && a < b);
                        next = b;
                    }
                    scalar::Token::Run(r) => {
                        assert!(r >= 64 && seg[next..next + r].iter().all(|&x| x == 0));
                        next += r;
                    }
                });
                assert_eq!(next, seg.len());
                let len = seg.len();
                let mut b1 = vec![0u8; len * 2 + 64];
                let mut b2 = vec![0u8; len * 2 + 64];
                let mut w1 = BitWriter::new(&mut b1);
                let mut w2 = BitWriter::new(&mut b2);
                let lead = rng.u32(0..8);
                w1.write(0, lead);
                w2.write(0, lead);
                k.emit_segment(&seg, table, &mut w1, RunMode::Blocks);
                Kernel::Scalar.emit_segment(&seg, table, &mut w2, RunMode::Blocks);
                assert_eq!(w1.len_bits(), w2.len_bits(), "{} len {len}", k.name());
                let (n1, n2) = (w1.finish(), w2.finish());
                assert_eq!(b1[..n1], b2[..n2], "{} len {len}", k.name());
            }
        }
    }
}

/// Segments with zero runs around both minimum lengths (10..20 zeros): in [`RunMode::Long`]
/// every kernel's deflate block inflates (miniz_oxide) to the segment, and the sample's
/// [`RunMode::Long`] counts derived from its [`RunMode::Any`] counts ([`long_run_counts`]) are
/// exactly those counted in [`RunMode::Long`].
#[test]
fn long_runs_inflate_and_are_counted_exactly() {
    let mut rng = fastrand::Rng::with_seed(33);
    let mut counts = [0u32; NUM_LITLEN];
    for (b, c) in counts.iter_mut().enumerate() {
        let d = if b < 256 { b.min(256 - b) } else { 8 } as u32;
        *c = 1_000_000 >> d.min(20);
    }
    let table = Table::from_counts(&counts);
    for case in 0..300 {
        let mut seg = Vec::new();
        let target = rng.usize(0..1500);
        while seg.len() < target {
            let n = match rng.u8(0..4) {
                0 => rng.usize(10..20),
                1 => rng.usize(1..12),
                2 => rng.usize(20..300),
                _ => 64 - seg.len() % 64,
            };
            if rng.bool() {
                seg.extend(std::iter::repeat_n(0u8, n));
            } else {
                seg.extend((0..n).map(|_| rng.u8(..) | 1));
            }
        }
        for &k in Kernel::all() {
            let mut any = Histogram::new();
            let mut long = Histogram::new();
            count_tokens(k, &seg, &mut any, RunMode::Any);
            count_tokens(k, &seg, &mut long, RunMode::Long);
            let ((any, short), (long, none)) = (any.finish(), long.finish());
            assert_eq!(none, [0; kernels::LONG_RUN - kernels::MIN_RUN]);
            assert_eq!(
                long_run_counts(&any, &short),
                long,
                "{} case {case}",
                k.name()
            );

            let mut buf = vec![0u8; seg.len() * 2 + 512];
            let mut w = BitWriter::new(&mut buf);
            w.write(1, 1); // BFINAL
            w.write(2, 2); // dynamic Huffman
            write_header(&table, &mut w);
            k.emit_segment(&seg, &table, &mut w, RunMode::Long);
            w.write(table.codes[256] as u64, table.lens[256] as u32);
            let n = w.finish();
            let inflated = miniz_oxide::inflate::decompress_to_vec(&buf[..n]).expect("inflate");
            assert!(inflated == seg, "{} case {case}", k.name());
        }
    }
}

/// [`FastLevel::Balanced`] codes only runs of [`kernels::LONG_RUN`] or more when its sample
/// says that costs little (long runs only), and keeps [`kernels::MIN_RUN`] when many runs are
/// shorter; both frames decode on every kernel.
#[test]
fn balanced_takes_long_runs_only_when_cheap() {
    let s = Shape {
        w: 400,
        h: 40,
        channels: 1,
        depth: 8,
    };
    let mut rng = fastrand::Rng::with_seed(5);
    for (zeros, want) in [(20..40, RunMode::Long), (12..16, RunMode::Any)] {
        let mut px = Vec::new();
        while px.len() < s.w * s.h {
            px.extend(std::iter::repeat_n(0u8, rng.usize(zeros.clone())));
            let lits = rng.usize(4..12);
            px.extend((0..lits).map(|_| rng.u8(1..8)));
        }
        px.truncate(s.w * s.h);
        let whole = StripeJob {
            prev_row: None,
            rows: &px,
            row_bytes: s.w,
            bpp: 1,
            filter: Filter::None,
            is_last: true,
        };
        let code = FrameCode::sample(
            &mut JobRows(&whole),
            s.w,
            1,
            Filter::None,
            FastLevel::Balanced,
            &mut FastScratch::default(),
        );
        assert_eq!(code.runs, want, "zero runs of {zeros:?}");
        check_all(&px, &s, Filter::None, FastLevel::Balanced, 16);
    }
}
