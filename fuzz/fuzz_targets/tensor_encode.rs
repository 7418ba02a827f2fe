//! Tensor views and the encoder on arbitrary shapes, strides, dtypes, options and element
//! bytes (NaN, infinities, subnormals included). Checks: construction errors are typed, never
//! panics; every image of a valid view encodes; the `png` crate decodes the result to exactly
//! the samples `convert_image` produced (the scalar oracle path for conversion).
#![no_main]

use half::{bf16, f16};
use libfuzzer_sys::fuzz_target;
use pngcast_core::convert::{self, BitDepth, ConvertOptions, Quantize};
use pngcast_core::png::{Compression, EncodeOptions, Encoder, FastLevel, Filter};
use pngcast_core::tensor::{TensorData, TensorView};

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let (h, rest) = data.split_at(16);
    let shape = [
        usize::from(h[1] % 4),
        usize::from(h[2] % 40),
        usize::from(h[3] % 40),
        usize::from(h[4] % 6),
    ];
    let strided = h[5] & 1 == 1;
    let strides = [
        usize::from(u16::from_le_bytes([h[6], h[7]])),
        usize::from(h[8]),
        usize::from(h[9] % 16),
        usize::from(h[10] % 8),
    ];
    let convert = ConvertOptions::default()
        .quantize(if h[11] & 1 == 0 {
            Quantize::Truncate
        } else {
            Quantize::Round
        })
        .bit_depth(if h[11] & 2 == 0 {
            BitDepth::Eight
        } else {
            BitDepth::Sixteen
        });
    let compression = match h[12] % 5 {
        0 => Compression::Stored,
        1 => Compression::Compact(1 + h[13] % 9),
        2 => Compression::Compact(h[13]), // may be invalid: a typed error
        3 => Compression::Fast(FastLevel::Fastest),
        _ => Compression::Fast(FastLevel::Balanced),
    };
    let filter = [
        Filter::None,
        Filter::Sub,
        Filter::Up,
        Filter::Average,
        Filter::Paeth,
        Filter::Adaptive,
    ][usize::from(h[14] % 6)];
    let f32s: Vec<f32>;
    let f16s: Vec<f16>;
    let bf16s: Vec<bf16>;
    let tensor_data = match h[0] % 4 {
        0 => {
            f32s = rest
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            TensorData::F32(&f32s)
        }
        1 => {
            f16s = rest
                .chunks_exact(2)
                .map(|c| f16::from_bits(u16::from_le_bytes([c[0], c[1]])))
                .collect();
            TensorData::F16(&f16s)
        }
        2 => {
            bf16s = rest
                .chunks_exact(2)
                .map(|c| bf16::from_bits(u16::from_le_bytes([c[0], c[1]])))
                .collect();
            TensorData::BF16(&bf16s)
        }
        _ => TensorData::U8(rest),
    };
    let view = if strided {
        TensorView::strided(tensor_data, shape, strides)
    } else {
        TensorView::bhwc(tensor_data, shape)
    };
    let Ok(view) = view else {
        return;
    };
    let options = EncodeOptions::default()
        .compression(compression)
        .filter(filter);
    let Ok(mut encoder) = Encoder::new(options) else {
        return;
    };
    let (mut png, mut want) = (Vec::new(), Vec::new());
    for image in view.images() {
        encoder
            .encode_image_into(&image, convert, &mut png)
            .expect("a valid view encodes");
        convert::convert_image(&image, convert, &mut want);
        let mut reader = png::Decoder::new(std::io::Cursor::new(&png[..]))
            .read_info()
            .expect("our PNG decodes");
        let mut out = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut out).expect("our PNG decodes");
        assert_eq!(
            (info.width as usize, info.height as usize),
            (image.width(), image.height())
        );
        assert_eq!(&out[..info.buffer_size()], &want[..]);
    }
});
