//! Conversion: every kernel this CPU can run against the scalar oracle, the oracle against the
//! written rule, protocol.md's golden vectors, half widening, and the image paths (contiguous,
//! padded rows, channels-first strided, parallel whole images, u8 passthrough).

use half::{bf16, f16};
use pngcast_core::convert::{
    self, convert_image, convert_rows, convert_rows_with, kernels, BitDepth, ConvertOptions,
    Kernel, Quantize,
};
use pngcast_core::tensor::{ImageView, TensorView};

const MODES: [(BitDepth, Quantize); 4] = [
    (BitDepth::Eight, Quantize::Truncate),
    (BitDepth::Eight, Quantize::Round),
    (BitDepth::Sixteen, Quantize::Truncate),
    (BitDepth::Sixteen, Quantize::Round),
];

/// The kernels under test: every one this CPU has, the scalar one included.
fn kernels() -> &'static [Kernel] {
    let all = kernels::all();
    assert_eq!(all.last().map(Kernel::name), Some("scalar"));
    all
}

/// Converts `src` with `k` into a destination that starts `dst_off` bytes into its buffer.
fn run_f32(k: Kernel, src: &[f32], depth: BitDepth, q: Quantize, dst_off: usize) -> Vec<u8> {
    let n = src.len() * depth.bytes();
    let mut buf = vec![0xAAu8; n + dst_off];
    let dst = &mut buf[dst_off..];
    match depth {
        BitDepth::Eight => k.f32_to_u8(src, dst, q),
        BitDepth::Sixteen => k.f32_to_u16be(src, dst, q),
    }
    buf.split_off(dst_off)
}

fn run_f16(k: Kernel, src: &[f16], depth: BitDepth, q: Quantize) -> Vec<u8> {
    let mut out = vec![0xAAu8; src.len() * depth.bytes()];
    match depth {
        BitDepth::Eight => k.f16_to_u8(src, &mut out, q),
        BitDepth::Sixteen => k.f16_to_u16be(src, &mut out, q),
    }
    out
}

fn run_bf16(k: Kernel, src: &[bf16], depth: BitDepth, q: Quantize) -> Vec<u8> {
    let mut out = vec![0xAAu8; src.len() * depth.bytes()];
    match depth {
        BitDepth::Eight => k.bf16_to_u8(src, &mut out, q),
        BitDepth::Sixteen => k.bf16_to_u16be(src, &mut out, q),
    }
    out
}

/// Asserts that every kernel converts `src` (taken at offsets 0..4) as the scalar kernel does.
fn assert_all_match(src: &[f32], what: &str) {
    for start in 0..4.min(src.len() + 1) {
        let s = &src[start..];
        for (depth, q) in MODES {
            let want = run_f32(Kernel::scalar(), s, depth, q, 0);
            for &k in kernels() {
                for dst_off in [0, 1, 3] {
                    let got = run_f32(k, s, depth, q, dst_off);
                    if got != want {
                        let bytes = depth.bytes();
                        let i = (0..s.len())
                            .find(|&i| got[i * bytes..][..bytes] != want[i * bytes..][..bytes])
                            .unwrap_or(0);
                        panic!(
                            "{what}: kernel {} {depth:?} {q:?} start {start} dst+{dst_off}: \
                             element {i} = {:e} ({:#010x}) gives {:?}, scalar {:?}",
                            k.name(),
                            s[i],
                            s[i].to_bits(),
                            &got[i * bytes..][..bytes],
                            &want[i * bytes..][..bytes]
                        );
                    }
                }
            }
        }
    }
}

fn up(x: f32) -> f32 {
    // The next representable value towards +inf (x finite).
    if x == 0.0 {
        f32::from_bits(1)
    } else if x > 0.0 {
        f32::from_bits(x.to_bits() + 1)
    } else {
        f32::from_bits(x.to_bits() - 1)
    }
}

fn down(x: f32) -> f32 {
    -up(-x)
}

/// NaNs of every kind, infinities, signed zeros, subnormals, huge values that would overflow a
/// 32-bit conversion, and the f32 extremes.
fn specials() -> Vec<f32> {
    let mut v = vec![
        f32::NAN,
        -f32::NAN,
        f32::from_bits(0x7f80_0001), // signalling NaN
        f32::from_bits(0xffc0_1234),
        f32::from_bits(0x7fff_ffff),
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
        f32::from_bits(1),
        f32::from_bits(0x8000_0001),
        f32::from_bits(0x007f_ffff),
        f32::MIN_POSITIVE,
        -f32::MIN_POSITIVE,
        f32::MAX,
        f32::MIN,
        f32::EPSILON,
        1e-30,
        -1e-30,
        2147483648.0,
        4294967296.0,
        -2147483648.0,
        1e10,
        -1e10,
        8421504.0, // 2^31 / 255
        16777216.0,
        0.99999994,
        1.0000001,
        -1.0,
        2.0,
        255.0,
        65535.0,
        -0.001,
    ];
    // Pad to several blocks so specials sit in every lane position of the widest kernel.
    let base = v.clone();
    for r in 1..5 {
        v.extend(base.iter().skip(r));
    }
    v
}

/// Values just below, at and above every `k / max` and (for rounding) `(k + 0.5) / max`.
fn boundaries(max: u32) -> Vec<f32> {
    let mut v = Vec::new();
    for k in 0..=max + 1 {
        for b in [k as f32 / max as f32, (k as f32 + 0.5) / max as f32] {
            v.extend([down(down(b)), down(b), b, up(b), up(up(b))]);
        }
    }
    v
}

#[test]
fn scalar_oracle_follows_the_rule() {
    // The rule written out independently: NaN -> 0, else trunc/round of clamp(max * x, 0, max).
    fn rule(x: f32, max: f32, q: Quantize) -> u32 {
        if x.is_nan() {
            return 0;
        }
        let c = (max * x).clamp(0.0, max);
        (match q {
            Quantize::Truncate => c.trunc(),
            Quantize::Round => c.round_ties_even(),
        }) as u32
    }
    let mut values = specials();
    values.extend(boundaries(255));
    values.extend(boundaries(65535).into_iter().step_by(7));
    for (depth, q) in MODES {
        let out = run_f32(Kernel::scalar(), &values, depth, q, 0);
        for (i, &x) in values.iter().enumerate() {
            let (got, max) = match depth {
                BitDepth::Eight => (u32::from(out[i]), 255.0),
                BitDepth::Sixteen => (u32::from(u16::from_be_bytes([out[2 * i], out[2 * i + 1]])), 65535.0),
            };
            assert_eq!(got, rule(x, max, q), "{x:e} {depth:?} {q:?}");
        }
    }
}

#[test]
fn golden_vectors_from_protocol() {
    // protocol.md section 1.
    let cases: [(f32, u8); 11] = [
        (0.00392, 0),
        (0.5, 127),
        (0.9961, 254),
        (1.0, 255),
        (-0.25, 0),
        (-0.0, 0),
        (1.5, 255),
        (f32::INFINITY, 255),
        (f32::NEG_INFINITY, 0),
        (f32::NAN, 0),
        (0.0, 0),
    ];
    let src: Vec<f32> = cases.iter().map(|c| c.0).collect();
    let want: Vec<u8> = cases.iter().map(|c| c.1).collect();
    let mut out = vec![0u8; src.len()];
    convert::f32_to_u8(&src, &mut out, Quantize::Truncate);
    assert_eq!(out, want, "dispatched kernel {}", convert::kernel_name());
    for &k in kernels() {
        assert_eq!(run_f32(k, &src, BitDepth::Eight, Quantize::Truncate, 0), want, "{}", k.name());
        // Round: 0.5 -> 127.5 -> 128 (half to even), 0.9961 -> 254.0055 -> 254.
        let r = run_f32(k, &[0.5, 0.9961, 0.00392, 0.0019], BitDepth::Eight, Quantize::Round, 0);
        assert_eq!(r, [128, 254, 1, 0], "{}", k.name());
        // 16 bits, big-endian: 1.0 -> 65535, 0.5 -> 32767 (trunc) / 32768 (round), NaN -> 0.
        let src16 = [1.0, 0.5, f32::NAN, 2.0, -1.0];
        let t = run_f32(k, &src16, BitDepth::Sixteen, Quantize::Truncate, 0);
        assert_eq!(t, [0xff, 0xff, 0x7f, 0xff, 0, 0, 0xff, 0xff, 0, 0], "{}", k.name());
        let r = run_f32(k, &src16, BitDepth::Sixteen, Quantize::Round, 0);
        assert_eq!(r, [0xff, 0xff, 0x80, 0x00, 0, 0, 0xff, 0xff, 0, 0], "{}", k.name());
    }
}

#[test]
fn kernels_match_scalar_on_specials() {
    assert_all_match(&specials(), "specials");
}

#[test]
fn kernels_match_scalar_at_every_8_bit_boundary() {
    assert_all_match(&boundaries(255), "k/255 boundaries");
}

#[test]
fn kernels_match_scalar_at_every_16_bit_boundary() {
    assert_all_match(&boundaries(65535), "k/65535 boundaries");
}

#[test]
fn kernels_match_scalar_over_lengths_and_offsets() {
    let mut rng = fastrand::Rng::with_seed(0x5eed_c0de);
    let specials = specials();
    let mut lengths: Vec<usize> = (0..=130).collect();
    for lanes in [16usize, 32, 64, 128, 256] {
        lengths.extend([lanes - 1, lanes, lanes + 1, 2 * lanes - 1, 2 * lanes + 3]);
    }
    lengths.extend([1000, 3072, 4099]);
    for len in lengths {
        let mut v: Vec<f32> = (0..len + 3).map(|_| rng.f32() * 2.0 - 0.5).collect();
        // A few specials at random places.
        for _ in 0..len / 16 {
            let i = rng.usize(..v.len());
            v[i] = specials[rng.usize(..specials.len())];
        }
        for start in 0..=3 {
            assert_all_match(&v[start..start + len], &format!("random len {len} start {start}"));
        }
    }
}

#[test]
fn f16_widening_is_exact_for_every_bit_pattern() {
    let all: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
    let want: Vec<u32> = all.iter().map(|h| h.to_f32().to_bits()).collect();
    for &k in kernels() {
        for start in 0..3 {
            let mut out = vec![0f32; all.len() - start];
            k.f16_to_f32(&all[start..], &mut out);
            let got: Vec<u32> = out.iter().map(|x| x.to_bits()).collect();
            assert!(got == want[start..], "{} f16 widening differs at start {start}", k.name());
        }
    }
    let mut out = vec![0f32; all.len()];
    convert::f16_to_f32(&all, &mut out);
    assert!(out.iter().map(|x| x.to_bits()).eq(want.iter().copied()));
}

#[test]
fn bf16_widening_is_exact_for_every_bit_pattern() {
    let all: Vec<bf16> = (0..=u16::MAX).map(bf16::from_bits).collect();
    let want: Vec<u32> = all.iter().map(|h| h.to_f32().to_bits()).collect();
    for &k in kernels() {
        for start in 0..3 {
            let mut out = vec![0f32; all.len() - start];
            k.bf16_to_f32(&all[start..], &mut out);
            let got: Vec<u32> = out.iter().map(|x| x.to_bits()).collect();
            assert!(got == want[start..], "{} bf16 widening differs at start {start}", k.name());
        }
    }
    let mut out = vec![0f32; all.len()];
    convert::bf16_to_f32(&all, &mut out);
    assert!(out.iter().map(|x| x.to_bits()).eq(want.iter().copied()));
}

#[test]
fn half_inputs_equal_widening_then_f32_conversion() {
    let f16s: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
    let bf16s: Vec<bf16> = (0..=u16::MAX).map(bf16::from_bits).collect();
    let wide16: Vec<f32> = f16s.iter().map(|h| h.to_f32()).collect();
    let wideb: Vec<f32> = bf16s.iter().map(|h| h.to_f32()).collect();
    for (depth, q) in MODES {
        let want16 = run_f32(Kernel::scalar(), &wide16, depth, q, 0);
        let wantb = run_f32(Kernel::scalar(), &wideb, depth, q, 0);
        for &k in kernels() {
            assert!(run_f16(k, &f16s, depth, q) == want16, "{} f16 {depth:?} {q:?}", k.name());
            assert!(run_bf16(k, &bf16s, depth, q) == wantb, "{} bf16 {depth:?} {q:?}", k.name());
            // Short and unaligned runs take the tail path.
            for len in [0, 1, 7, 17, 63, 65] {
                let b = depth.bytes();
                assert_eq!(
                    run_f16(k, &f16s[0x3bf0..0x3bf0 + len], depth, q),
                    want16[0x3bf0 * b..(0x3bf0 + len) * b],
                    "{} f16 tail {len}",
                    k.name()
                );
                assert_eq!(
                    run_bf16(k, &bf16s[0x3f70 + 1..0x3f71 + len], depth, q),
                    wantb[(0x3f71) * b..(0x3f71 + len) * b],
                    "{} bf16 tail {len}",
                    k.name()
                );
            }
        }
    }
}

#[test]
#[should_panic(expected = "length mismatch")]
fn length_mismatch_is_a_programmer_error() {
    convert::f32_to_u8(&[0.5; 4], &mut [0u8; 3], Quantize::Truncate);
}

/// Deterministic pseudo-random samples in [-0.5, 1.5] with a few specials.
fn samples(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let sp = specials();
    (0..n)
        .map(|i| if i % 97 == 5 { sp[i % sp.len()] } else { rng.f32() * 2.0 - 0.5 })
        .collect()
}

/// The reference for an image: convert its contiguous `[H,W,C]` copy with the scalar kernel.
fn reference(hwc: &ImageView<'_>, opts: ConvertOptions) -> Vec<u8> {
    assert!(hwc.is_contiguous());
    let mut out = vec![0u8; hwc.height() * hwc.row_len() * opts.bit_depth.bytes()];
    convert_rows_with(Kernel::scalar(), hwc, opts, 0, &mut out);
    out
}

fn all_opts() -> impl Iterator<Item = ConvertOptions> {
    MODES
        .into_iter()
        .map(|(d, q)| ConvertOptions::default().bit_depth(d).quantize(q))
}

/// `[C,H,W]` planar copy of a `[H,W,C]` buffer.
fn planar<T: Copy>(hwc: &[T], h: usize, w: usize, c: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(hwc.len());
    for ch in 0..c {
        for y in 0..h {
            for x in 0..w {
                out.push(hwc[(y * w + x) * c + ch]);
            }
        }
    }
    out
}

#[test]
fn strided_views_equal_their_contiguous_copy() {
    for &(h, w, c) in &[(1, 1, 1), (7, 13, 3), (3, 1000, 4), (5, 300, 2), (2, 700, 3)] {
        let n = h * w * c;
        let f = samples(n, (h * 1000 + w) as u64);
        let halfs: Vec<f16> = f.iter().map(|&x| f16::from_f32(x)).collect();
        let bhalfs: Vec<bf16> = f.iter().map(|&x| bf16::from_f32(x)).collect();
        let bytes: Vec<u8> = (0..n).map(|i| (i * 31 % 251) as u8).collect();
        macro_rules! check {
            ($buf:expr) => {{
                let buf = &$buf[..];
                let dense = TensorView::hwc(buf, [h, w, c]).unwrap().image(0).unwrap();
                let pl = planar(buf, h, w, c);
                let strided = TensorView::strided(&pl[..], [1, h, w, c], [n, w, 1, h * w])
                    .unwrap()
                    .image(0)
                    .unwrap();
                assert!(c == 1 || !strided.rows_contiguous());
                // Rows padded by 5 elements: rows contiguous, image not.
                let pad = w * c + 5;
                let mut padded = vec![buf[0]; h * pad];
                for y in 0..h {
                    padded[y * pad..y * pad + w * c].copy_from_slice(&buf[y * w * c..(y + 1) * w * c]);
                }
                let rows = TensorView::strided(&padded[..], [1, h, w, c], [h * pad, pad, c, 1])
                    .unwrap()
                    .image(0)
                    .unwrap();
                assert!(rows.rows_contiguous() && (h == 1 || !rows.is_contiguous()));
                for opts in all_opts() {
                    let want = reference(&dense, opts);
                    let size = want.len();
                    for &k in kernels() {
                        for (name, view) in [("dense", &dense), ("channels-first", &strided), ("padded", &rows)] {
                            let mut got = vec![0xAA; size];
                            convert_rows_with(k, view, opts, 0, &mut got);
                            assert!(got == want, "{} {name} {h}x{w}x{c} {opts:?}", k.name());
                        }
                    }
                    let mut out = Vec::new();
                    convert_image(&strided, opts, &mut out);
                    assert!(out == want, "convert_image channels-first {h}x{w}x{c} {opts:?}");
                }
            }};
        }
        check!(f);
        check!(halfs);
        check!(bhalfs);
        check!(bytes);
    }
}

#[test]
fn u8_passes_through_and_scales_by_257() {
    let px: Vec<u8> = (0..=255).collect();
    let img = ImageView::hwc(&px[..], [16, 4, 4]).unwrap();
    let mut out = Vec::new();
    convert_image(&img, ConvertOptions::default(), &mut out);
    assert_eq!(out, px);
    // Quantize is irrelevant for u8 input.
    convert_image(&img, ConvertOptions::default().quantize(Quantize::Round), &mut out);
    assert_eq!(out, px);
    convert_image(&img, ConvertOptions::default().bit_depth(BitDepth::Sixteen), &mut out);
    let want: Vec<u8> = px.iter().flat_map(|&v| (u16::from(v) * 257).to_be_bytes()).collect();
    assert_eq!(out, want);
    assert_eq!(&out[..4], [0, 0, 1, 1]);
    assert_eq!(&out[510..], [0xff, 0xff]);
}

#[test]
fn row_ranges_are_slices_of_the_whole() {
    let (h, w, c) = (37, 29, 3);
    let f = samples(h * w * c, 7);
    let img = ImageView::hwc(&f[..], [h, w, c]).unwrap();
    for opts in all_opts() {
        let want = reference(&img, opts);
        let rb = w * c * opts.bit_depth.bytes();
        for (y0, rows) in [(0, 1), (5, 10), (36, 1), (0, 37), (20, 17), (3, 0)] {
            let mut got = vec![0u8; rows * rb];
            convert_rows(&img, opts, y0, &mut got);
            assert_eq!(got, want[y0 * rb..(y0 + rows) * rb], "rows {y0}+{rows} {opts:?}");
        }
    }
}

#[test]
#[should_panic(expected = "run past the image")]
fn rows_past_the_end_are_a_programmer_error() {
    let f = vec![0.5f32; 4 * 4 * 3];
    let img = ImageView::hwc(&f[..], [4, 4, 3]).unwrap();
    convert_rows(&img, ConvertOptions::default(), 3, &mut [0u8; 2 * 4 * 3]);
}

#[test]
fn large_images_convert_in_parallel_identically() {
    // 600 x 500 x 3 = 900 K samples: above the parallel threshold, many row jobs.
    let (h, w, c) = (600, 500, 3);
    let f = samples(h * w * c, 11);
    let img = ImageView::hwc(&f[..], [h, w, c]).unwrap();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
    for opts in all_opts() {
        let want = reference(&img, opts);
        let mut out = Vec::new();
        pool.install(|| convert_image(&img, opts, &mut out));
        assert!(out == want, "parallel {opts:?}");
        // A second frame reuses the buffer: same length, same allocation.
        let ptr = out.as_ptr();
        pool.install(|| convert_image(&img, opts, &mut out));
        assert_eq!(out.as_ptr(), ptr);
        assert!(out == want);
        // A smaller image shrinks the length and keeps the allocation.
        let small = ImageView::hwc(&f[..30], [2, 5, 3]).unwrap();
        convert_image(&small, opts, &mut out);
        assert_eq!(out, reference(&small, opts));
        assert_eq!(out.as_ptr(), ptr);
    }
}

#[test]
fn dispatch_is_cached_and_honours_force_scalar() {
    let best = kernels::best();
    assert_eq!(convert::kernel_name(), best.name());
    assert_eq!(kernels::best(), best);
    if cfg!(pngcast_force_scalar) {
        assert_eq!(best.name(), "scalar");
    } else {
        assert_eq!(best, kernels()[0]);
    }
    let names: Vec<&str> = kernels().iter().map(Kernel::name).collect();
    for n in &names {
        assert_eq!(kernels::by_name(n).map(|k| k.name()), Some(*n));
    }
    assert_eq!(kernels::by_name("mmx"), None);
    #[cfg(target_arch = "x86_64")]
    {
        // Each kernel is listed exactly when the CPU has what it needs.
        let has = |f: bool, n: &str| assert_eq!(f, names.contains(&n), "{n}");
        has(is_x86_feature_detected!("sse4.1"), "sse4.1");
        has(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("f16c"), "avx2");
        has(
            is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw"),
            "avx512",
        );
    }
    #[cfg(target_arch = "aarch64")]
    assert!(names.contains(&"neon"), "{names:?}");
}
