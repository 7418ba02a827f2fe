//! pngcheck (an independent validator) finds nothing wrong with a sample of outputs: every
//! channel count and bit depth, stored and compressed, one stripe and many, with tEXt chunks.
//! Skipped with a printed note when pngcheck is not installed (CI installs it).

mod png_util;

use std::num::NonZeroU32;

use pngcast_core::convert::BitDepth;
use pngcast_core::png::{encode, Compression, EncodeOptions, FastLevel, Filter, ImageInfo};

#[test]
fn pngcheck_clean() {
    let mut checked = 0;
    for channels in 1..=4u8 {
        for bit_depth in [BitDepth::Eight, BitDepth::Sixteen] {
            for (compression, stripes) in [
                (Compression::Stored, None),
                (Compression::Compact(1), NonZeroU32::new(7)),
                (Compression::Compact(9), NonZeroU32::new(1)),
                (Compression::Fast(FastLevel::Balanced), NonZeroU32::new(5)),
                (Compression::Fast(FastLevel::Fastest), None),
            ] {
                let info = ImageInfo {
                    width: 61,
                    height: 45,
                    channels,
                    bit_depth,
                };
                let pixels = png_util::test_image(&info, 9);
                let opts = EncodeOptions::default()
                    .compression(compression)
                    .stripe_rows(stripes)
                    .filter(Filter::Adaptive)
                    .text("prompt", "{\"a\": [1, 2]}")
                    .text("Comment", "caf\u{e9}");
                let out = encode(&info, &pixels, &opts).unwrap();
                let name = format!(
                    "c{channels}-{}-{compression:?}-{stripes:?}",
                    bit_depth.bits()
                );
                if !png_util::pngcheck(&out, &name) {
                    return;
                }
                checked += 1;
            }
        }
    }
    let one = encode(
        &ImageInfo {
            width: 1,
            height: 1,
            channels: 1,
            bit_depth: BitDepth::Eight,
        },
        &[0],
        &EncodeOptions::default(),
    )
    .unwrap();
    assert!(png_util::pngcheck(&one, "1x1"));
    assert_eq!(checked, 4 * 2 * 5);
}
