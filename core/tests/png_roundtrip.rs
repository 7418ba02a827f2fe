//! Every output of the PNG writer decodes, through independent decoders, to exactly the pixels
//! given; and the bytes do not depend on the thread count.

mod png_util;

use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::{Arc, OnceLock};

use png_util::{assert_decodes_to, decode, test_image};
use pngcast_core::convert::BitDepth;
use pngcast_core::png::{
    encode, Compression, EncodeOptions, Encoder, FastLevel, Filter, ImageInfo, Threads,
};

const FILTERS: [Filter; 6] = [
    Filter::None,
    Filter::Sub,
    Filter::Up,
    Filter::Average,
    Filter::Paeth,
    Filter::Adaptive,
];
const COMPRESSIONS: [Compression; 5] = [
    Compression::Stored,
    Compression::Compact(1),
    Compression::Compact(6),
    Compression::Fast(FastLevel::Fastest),
    Compression::Fast(FastLevel::Balanced),
];

/// Shared pools of 2 and 8 threads (building a pool per case would dominate the test time).
fn pool(n: usize) -> Threads {
    static POOLS: OnceLock<[Arc<rayon::ThreadPool>; 2]> = OnceLock::new();
    let pools = POOLS.get_or_init(|| {
        let mk = |n| {
            Arc::new(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build()
                    .unwrap(),
            )
        };
        [mk(2), mk(8)]
    });
    match n {
        1 => Threads::Fixed(NonZeroUsize::MIN),
        2 => Threads::Pool(Arc::clone(&pools[0])),
        _ => Threads::Pool(Arc::clone(&pools[1])),
    }
}

/// The full matrix on one shape: channels 1..=4 x 8/16 bits x every filter x every compression x
/// stripes of 1 row, 7 rows and auto; decoded at 1 thread, byte-compared at 2 and 8 threads.
fn matrix(width: u32, height: u32) {
    let mut out = Vec::new();
    for channels in 1..=4u8 {
        for bit_depth in [BitDepth::Eight, BitDepth::Sixteen] {
            let info = ImageInfo {
                width,
                height,
                channels,
                bit_depth,
            };
            let pixels = test_image(&info, u64::from(width * 31 + height + u32::from(channels)));
            for filter in FILTERS {
                for compression in COMPRESSIONS {
                    for stripe_rows in [NonZeroU32::new(1), NonZeroU32::new(7), None] {
                        let what = format!("{width}x{height} c{channels} {bit_depth:?} {filter:?} {compression:?} stripes {stripe_rows:?}");
                        let opts = EncodeOptions::default()
                            .filter(filter)
                            .compression(compression)
                            .stripe_rows(stripe_rows);
                        let mut enc = Encoder::new(opts.clone().threads(pool(1))).unwrap();
                        enc.encode_into(&info, &pixels, &mut out).unwrap();
                        assert_decodes_to(&out, &info, &pixels, &what);
                        for threads in [2, 8] {
                            let mut enc =
                                Encoder::new(opts.clone().threads(pool(threads))).unwrap();
                            let mut other = Vec::new();
                            enc.encode_into(&info, &pixels, &mut other).unwrap();
                            assert!(other == out, "{what}: {threads} threads changed the bytes");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn one_by_one() {
    matrix(1, 1);
}

#[test]
fn one_column() {
    matrix(1, 257);
}

#[test]
fn one_row() {
    matrix(257, 1);
}

#[test]
fn three_by_thousand() {
    matrix(3, 1000);
}

#[test]
fn thousand_by_three() {
    matrix(1000, 3);
}

/// A 2 MP image: several auto stripes, each filter and compression, 1 vs 2 vs 8 threads, and the
/// global pool; 16-bit RGBA once.
#[test]
fn two_megapixels() {
    let info = ImageInfo {
        width: 1632,
        height: 1224,
        channels: 3,
        bit_depth: BitDepth::Eight,
    };
    let pixels = test_image(&info, 2);
    let mut first = Vec::new();
    for (filter, compression) in [
        (Filter::Adaptive, Compression::Compact(1)),
        (Filter::Paeth, Compression::Stored),
        (Filter::Sub, Compression::Compact(6)),
        (Filter::Up, Compression::Compact(1)),
        (Filter::Average, Compression::Stored),
        (Filter::None, Compression::Compact(1)),
    ] {
        let opts = EncodeOptions::default()
            .filter(filter)
            .compression(compression);
        Encoder::new(opts.clone().threads(pool(1)))
            .unwrap()
            .encode_into(&info, &pixels, &mut first)
            .unwrap();
        let d = decode(&first);
        assert!(d.idats > 2, "auto plan should cut 2 MP into stripes");
        assert!(d.pixels == pixels, "2 MP {filter:?} {compression:?}");
        for threads in [Threads::Global, pool(2), pool(8)] {
            let again = encode(&info, &pixels, &opts.clone().threads(threads.clone())).unwrap();
            assert!(
                again == first,
                "2 MP {filter:?} {compression:?}: {threads:?} changed the bytes"
            );
        }
    }
    let info = ImageInfo {
        width: 1000,
        height: 700,
        channels: 4,
        bit_depth: BitDepth::Sixteen,
    };
    let pixels = test_image(&info, 3);
    let out = encode(&info, &pixels, &EncodeOptions::default().threads(pool(2))).unwrap();
    assert_decodes_to(&out, &info, &pixels, "16-bit RGBA 0.7 MP");
}

/// Reusing one encoder and one output vector across frames of different sizes and settings.
#[test]
fn encoder_reuse_across_sizes() {
    let mut enc = Encoder::new(
        EncodeOptions::default()
            .threads(pool(2))
            .compression(Compression::Stored),
    )
    .unwrap();
    let mut out = Vec::new();
    for (w, h, c) in [
        (640, 480, 3),
        (17, 5, 1),
        (1200, 900, 4),
        (640, 480, 3),
        (1, 1, 2),
    ] {
        let info = ImageInfo {
            width: w,
            height: h,
            channels: c,
            bit_depth: BitDepth::Eight,
        };
        let pixels = test_image(&info, u64::from(w));
        enc.encode_into(&info, &pixels, &mut out).unwrap();
        assert_decodes_to(&out, &info, &pixels, &format!("reuse {w}x{h}x{c}"));
    }
}

/// One thread codes the stripes straight into the output vector, over what the previous frame
/// left there. Frames that shrink and grow, smooth and noisy (the noise falls back to stored
/// blocks), through one serial encoder and one vector: each decodes, and equals the bytes of a
/// two-thread encoder, which codes into its slots and copies them out.
#[test]
fn serial_frames_code_over_the_previous_frame() {
    for compression in COMPRESSIONS {
        let opts = EncodeOptions::default().compression(compression);
        let mut serial = Encoder::new(opts.clone().threads(pool(1))).unwrap();
        let mut parallel = Encoder::new(opts.threads(pool(2))).unwrap();
        let mut out = Vec::new();
        let mut expect = Vec::new();
        for (w, h, c, noise) in [
            (900, 700, 3, true),
            (300, 200, 4, false),
            (1200, 900, 3, false),
            (1200, 900, 3, true),
            (5, 3, 1, true),
            (640, 480, 2, false),
        ] {
            let info = ImageInfo {
                width: w,
                height: h,
                channels: c,
                bit_depth: BitDepth::Eight,
            };
            let mut pixels = test_image(&info, u64::from(w + h));
            if noise {
                let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(w);
                for p in &mut pixels {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *p = (x >> 32) as u8;
                }
            }
            let what = format!("{compression:?} {w}x{h}x{c} noise {noise}");
            serial.encode_into(&info, &pixels, &mut out).unwrap();
            assert_decodes_to(&out, &info, &pixels, &what);
            parallel.encode_into(&info, &pixels, &mut expect).unwrap();
            assert!(out == expect, "{what}: the serial bytes differ");
        }
    }
}

/// Re-encodes every corpus image (decode with png, encode, decode, compare) with the default
/// settings and with Stored on 2 threads.
#[test]
fn corpus_roundtrip() {
    let files = png_util::corpus_files();
    assert!(
        files.len() >= 3,
        "benches/images holds at least three images"
    );
    for path in files {
        let (info, pixels) = png_util::load_png(&path);
        for opts in [
            EncodeOptions::default(),
            EncodeOptions::default()
                .compression(Compression::Stored)
                .filter(Filter::Paeth)
                .threads(pool(2)),
        ] {
            let out = encode(&info, &pixels, &opts).unwrap();
            assert_decodes_to(
                &out,
                &info,
                &pixels,
                &format!("{} {:?}", path.display(), opts.compression),
            );
        }
    }
}
