//! `encode_image_into` (conversion fused into each stripe's job) writes exactly the bytes that
//! `convert_image` followed by `encode_into` writes, and they decode to the converted samples.

mod png_util;

use std::num::{NonZeroU32, NonZeroUsize};

use half::f16;
use pngcast_core::convert::{convert_image, BitDepth, ConvertOptions, Quantize};
use pngcast_core::png::{
    Compression, EncodeOptions, Encoder, FastLevel, Filter, ImageInfo, Threads,
};
use pngcast_core::tensor::{ImageView, TensorView};

fn check(img: &ImageView<'_>, conv: ConvertOptions, what: &str) {
    let mut samples = Vec::new();
    convert_image(img, conv, &mut samples);
    let info = ImageInfo {
        width: img.width() as u32,
        height: img.height() as u32,
        channels: img.channels() as u8,
        bit_depth: conv.bit_depth,
    };
    for threads in [
        Threads::Fixed(NonZeroUsize::MIN),
        Threads::Fixed(NonZeroUsize::new(2).unwrap()),
    ] {
        for stripes in [NonZeroU32::new(1), NonZeroU32::new(7), None] {
            for compression in [
                Compression::Stored,
                Compression::Compact(1),
                Compression::Fast(FastLevel::Balanced),
            ] {
                let opts = EncodeOptions::default()
                    .threads(threads.clone())
                    .stripe_rows(stripes)
                    .compression(compression)
                    .filter(Filter::Adaptive);
                let mut enc = Encoder::new(opts).unwrap();
                let (mut fused, mut plain) = (Vec::new(), Vec::new());
                enc.encode_image_into(img, conv, &mut fused).unwrap();
                enc.encode_into(&info, &samples, &mut plain).unwrap();
                let what = format!("{what} {threads:?} {stripes:?} {compression:?}");
                assert!(fused == plain, "{what}: fused conversion changed the bytes");
                png_util::assert_decodes_to(&fused, &info, &samples, &what);
            }
        }
    }
}

#[test]
fn f32_every_channel_count_and_depth() {
    let mut rng = fastrand::Rng::with_seed(4);
    for c in 1..=4usize {
        let (h, w) = (37, 23);
        let mut data: Vec<f32> = (0..h * w * c)
            .map(|i| (i % 97) as f32 / 96.0 + rng.f32() * 0.01)
            .collect();
        data[0] = f32::NAN;
        data[1] = -1.0;
        data[2] = 2.0;
        let t = TensorView::bhwc(&data[..], [1, h, w, c]).unwrap();
        for depth in [BitDepth::Eight, BitDepth::Sixteen] {
            for q in [Quantize::Truncate, Quantize::Round] {
                let conv = ConvertOptions::default().bit_depth(depth).quantize(q);
                check(
                    &t.image(0).unwrap(),
                    conv,
                    &format!("f32 c{c} {depth:?} {q:?}"),
                );
            }
        }
    }
}

/// Frames large enough that the fast coder samples one code for the whole frame before the
/// stripes run (the tensor path converts the sampled rows on their own for it).
#[test]
fn f32_frames_with_a_shared_code() {
    let mut rng = fastrand::Rng::with_seed(5);
    let (h, w, c) = (520, 260, 3);
    let data: Vec<f32> = (0..h * w * c)
        .map(|i| ((i / c) % w + (i / (w * c))) as f32 / 800.0 + rng.f32() * 0.02)
        .collect();
    let t = TensorView::bhwc(&data[..], [1, h, w, c]).unwrap();
    for depth in [BitDepth::Eight, BitDepth::Sixteen] {
        let conv = ConvertOptions::default().bit_depth(depth);
        check(
            &t.image(0).unwrap(),
            conv,
            &format!("f32 {h}x{w} {depth:?}"),
        );
    }
}

#[test]
fn batch_u8_f16_and_strided() {
    // The second image of a batch.
    let (b, h, w, c) = (2, 40, 30, 3);
    let u8s: Vec<u8> = (0..b * h * w * c).map(|i| (i * 7 % 251) as u8).collect();
    let t = TensorView::bhwc(&u8s[..], [b, h, w, c]).unwrap();
    check(
        &t.image(1).unwrap(),
        ConvertOptions::default(),
        "u8 batch[1]",
    );
    let f16s: Vec<f16> = (0..h * w * c)
        .map(|i| f16::from_f32((i % 50) as f32 / 49.0))
        .collect();
    let t = TensorView::bhwc(&f16s[..], [1, h, w, c]).unwrap();
    check(
        &t.image(0).unwrap(),
        ConvertOptions::default().bit_depth(BitDepth::Sixteen),
        "f16",
    );
    // Channels-first data [C,H,W] viewed as [1,H,W,C] through strides.
    let planar: Vec<f32> = (0..c * h * w).map(|i| (i % 61) as f32 / 60.0).collect();
    let t = TensorView::strided(&planar[..], [1, h, w, c], [c * h * w, w, 1, h * w]).unwrap();
    check(
        &t.image(0).unwrap(),
        ConvertOptions::default(),
        "strided CHW",
    );
}
