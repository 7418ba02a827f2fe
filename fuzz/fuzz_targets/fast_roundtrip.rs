//! Encodes arbitrary shapes and bytes with the fast coder (every level and filter, one or many
//! stripes) through the public `Encoder`, then checks that the png crate decodes the exact pixels
//! and that miniz_oxide inflates the IDAT stream (zlib checksum included); and that one thread,
//! which codes the stripes straight into the output over a stale buffer, writes the same bytes.
//!
//! Run: `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run fast_roundtrip -- -max_total_time=300
//! -len_control=0 -max_len=8192` (RUSTC_BOOTSTRAP only where no nightly toolchain exists).
#![no_main]

use std::num::{NonZeroU32, NonZeroUsize};

use libfuzzer_sys::fuzz_target;
use pngcast_core::convert::BitDepth;
use pngcast_core::png::{
    Compression, EncodeOptions, Encoder, FastLevel, Filter, ImageInfo, Threads,
};

fuzz_target!(|data: &[u8]| {
    if data.len() < 6 {
        return;
    }
    let (head, body) = data.split_at(6);
    let width = 1 + (head[0] as u32 | (head[1] as u32 & 1) << 8); // 1..=512
    let height = 1 + (head[2] as u32 & 63); // 1..=64
    let channels = 1 + (head[3] & 3);
    let bit_depth = if head[3] & 4 != 0 {
        BitDepth::Sixteen
    } else {
        BitDepth::Eight
    };
    let level = if head[3] & 8 != 0 {
        FastLevel::Fastest
    } else {
        FastLevel::Balanced
    };
    let filter = [
        Filter::Adaptive,
        Filter::None,
        Filter::Sub,
        Filter::Up,
        Filter::Average,
        Filter::Paeth,
    ][(head[4] % 6) as usize];
    let stripe_rows = NonZeroU32::new(head[5] as u32 & 31);
    let info = ImageInfo {
        width,
        height,
        channels,
        bit_depth,
    };
    let n = width as usize * height as usize * channels as usize * bit_depth.bytes();
    if n > 1 << 18 {
        return;
    }
    // The body repeated (or zeros when empty): long inputs give real content, short ones runs.
    let pixels: Vec<u8> = if body.is_empty() {
        vec![0; n]
    } else {
        body.iter().copied().cycle().take(n).collect()
    };
    let opts = EncodeOptions::default()
        .compression(Compression::Fast(level))
        .filter(filter)
        .stripe_rows(stripe_rows);
    let mut enc = Encoder::new(opts.clone()).expect("valid options");
    let mut out = Vec::new();
    enc.encode_into(&info, &pixels, &mut out).expect("encode");

    // png crate: exact pixels.
    let mut dec = png::Decoder::new(std::io::Cursor::new(&out[..]));
    dec.set_transformations(png::Transformations::IDENTITY);
    let mut reader = dec.read_info().expect("png header");
    let mut buf = vec![0u8; reader.output_buffer_size().expect("size")];
    let frame = reader.next_frame(&mut buf).expect("png decode");
    assert_eq!(&buf[..frame.buffer_size()], &pixels[..], "pixels differ");

    // miniz_oxide: the concatenated IDAT data is one valid zlib stream of the right length.
    let mut zlib = Vec::new();
    let mut p = 8;
    while p + 12 <= out.len() {
        let len = u32::from_be_bytes(out[p..p + 4].try_into().unwrap()) as usize;
        if &out[p + 4..p + 8] == b"IDAT" {
            zlib.extend_from_slice(&out[p + 8..p + 8 + len]);
        }
        p += 12 + len;
    }
    let inflated = miniz_oxide::inflate::decompress_to_vec_zlib(&zlib).expect("zlib inflate");
    let row = width as usize * channels as usize * bit_depth.bytes() + 1;
    assert_eq!(inflated.len(), row * height as usize);

    // One thread, over what a previous frame of another length left in the vector.
    let mut serial =
        Encoder::new(opts.threads(Threads::Fixed(NonZeroUsize::MIN))).expect("valid options");
    let stale = n / 2 + head[1] as usize * 37;
    let mut again: Vec<u8> = pixels.iter().rev().copied().cycle().take(stale).collect();
    serial
        .encode_into(&info, &pixels, &mut again)
        .expect("encode");
    assert!(again == out, "one thread wrote other bytes");
});
