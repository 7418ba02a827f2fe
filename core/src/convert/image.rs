//! Whole images and row ranges: picks the kernel entry for the element type and bit depth, runs
//! dense rows straight through it, gathers strided rows through a stack block, and splits large
//! images into row chunks on rayon.
#![forbid(unsafe_code)]

use rayon::prelude::*;

use super::kernels::Kernel;
use super::{BitDepth, ConvertOptions};
use crate::tensor::{ImageView, TensorData};

/// Images with at least this many samples are converted in parallel by `convert_image`.
const PARALLEL_MIN_SAMPLES: usize = 256 * 1024;
/// Samples per rayon job in `convert_image` (about 256 KiB of f32 input): many more jobs than
/// threads, so a slow core does not hold the others up, yet few enough that scheduling is noise.
const JOB_SAMPLES: usize = 64 * 1024;
/// Samples gathered per step on the strided path (a 4 KiB stack block for f32).
const GATHER_SAMPLES: usize = 1024;

/// Converts a dense run of samples (any element type) into `dst`.
fn convert_slice(k: Kernel, src: TensorData<'_>, dst: &mut [u8], opts: ConvertOptions) {
    let q = opts.quantize;
    match (src, opts.bit_depth) {
        (TensorData::F32(s), BitDepth::Eight) => k.f32_to_u8(s, dst, q),
        (TensorData::F32(s), BitDepth::Sixteen) => k.f32_to_u16be(s, dst, q),
        (TensorData::F16(s), BitDepth::Eight) => k.f16_to_u8(s, dst, q),
        (TensorData::F16(s), BitDepth::Sixteen) => k.f16_to_u16be(s, dst, q),
        (TensorData::BF16(s), BitDepth::Eight) => k.bf16_to_u8(s, dst, q),
        (TensorData::BF16(s), BitDepth::Sixteen) => k.bf16_to_u16be(s, dst, q),
        (TensorData::U8(s), BitDepth::Eight) => dst.copy_from_slice(s),
        (TensorData::U8(s), BitDepth::Sixteen) => {
            assert_eq!(2 * s.len(), dst.len(), "u8 to u16be: length mismatch");
            for (d, &v) in dst.chunks_exact_mut(2).zip(s) {
                d.copy_from_slice(&(u16::from(v) * 257).to_be_bytes());
            }
        }
    }
}

/// Gathers row `y` of a strided image block by block into a stack buffer and converts each
/// block. `T` is the element type of `data`.
fn gather_row<T: Copy + Default>(
    k: Kernel,
    data: &[T],
    img: &ImageView<'_>,
    y: usize,
    dst: &mut [u8],
    opts: ConvertOptions,
) where
    for<'a> &'a [T]: Into<TensorData<'a>>,
{
    let [sh, sw, sc] = img.strides();
    let (w, c) = (img.width(), img.channels());
    let out = opts.bit_depth.bytes();
    let mut buf = [T::default(); GATHER_SAMPLES];
    let per_block = GATHER_SAMPLES / c;
    let base = y * sh;
    let mut x = 0;
    while x < w {
        let n = per_block.min(w - x);
        let mut j = 0;
        for px in x..x + n {
            let p = base + px * sw;
            for ch in 0..c {
                buf[j] = data[p + ch * sc];
                j += 1;
            }
        }
        convert_slice(k, (&buf[..j]).into(), &mut dst[x * c * out..(x + n) * c * out], opts);
        x += n;
    }
}

/// See [`super::convert_rows`].
pub(crate) fn convert_rows(
    k: Kernel,
    img: &ImageView<'_>,
    opts: ConvertOptions,
    y0: usize,
    dst: &mut [u8],
) {
    let row_len = img.row_len();
    let row_bytes = row_len * opts.bit_depth.bytes();
    assert!(
        dst.len().is_multiple_of(row_bytes),
        "convert_rows: {} bytes is not a whole number of {row_bytes}-byte rows",
        dst.len()
    );
    let rows = dst.len() / row_bytes;
    assert!(
        y0 <= img.height() && rows <= img.height() - y0,
        "convert_rows: rows {y0}..{} run past the image height {}",
        y0 + rows,
        img.height()
    );
    if rows == 0 {
        return;
    }
    if img.is_contiguous() {
        let src = img.as_contiguous().expect("contiguous");
        let start = y0 * row_len;
        let src = match src {
            TensorData::F32(s) => TensorData::F32(&s[start..start + rows * row_len]),
            TensorData::F16(s) => TensorData::F16(&s[start..start + rows * row_len]),
            TensorData::BF16(s) => TensorData::BF16(&s[start..start + rows * row_len]),
            TensorData::U8(s) => TensorData::U8(&s[start..start + rows * row_len]),
        };
        convert_slice(k, src, dst, opts);
    } else if img.rows_contiguous() {
        for (i, d) in dst.chunks_exact_mut(row_bytes).enumerate() {
            let row = img.row(y0 + i).expect("rows are contiguous");
            convert_slice(k, row, d, opts);
        }
    } else {
        for (i, d) in dst.chunks_exact_mut(row_bytes).enumerate() {
            let y = y0 + i;
            match img.data() {
                TensorData::F32(s) => gather_row(k, s, img, y, d, opts),
                TensorData::F16(s) => gather_row(k, s, img, y, d, opts),
                TensorData::BF16(s) => gather_row(k, s, img, y, d, opts),
                TensorData::U8(s) => gather_row(k, s, img, y, d, opts),
            }
        }
    }
}

/// See [`super::convert_image`].
pub(crate) fn convert_image(
    k: Kernel,
    img: &ImageView<'_>,
    opts: ConvertOptions,
    out: &mut Vec<u8>,
) {
    let row_len = img.row_len();
    let row_bytes = row_len * opts.bit_depth.bytes();
    // Cannot overflow: the view checked that height * row_len * 2 fits in usize.
    out.resize(img.height() * row_bytes, 0);
    if img.height() * row_len < PARALLEL_MIN_SAMPLES || rayon::current_num_threads() < 2 {
        convert_rows(k, img, opts, 0, out);
        return;
    }
    let rows_per_job = (JOB_SAMPLES / row_len).max(1);
    out.par_chunks_mut(rows_per_job * row_bytes)
        .enumerate()
        .for_each(|(i, chunk)| convert_rows(k, img, opts, i * rows_per_job, chunk));
}
