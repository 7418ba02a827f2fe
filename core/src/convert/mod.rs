//! Tensor samples to PNG samples: `trunc(clamp(255*x, 0, 255))` in f32, bit-exact with ComfyUI
//! (NaN -> 0), or round-to-nearest; 8-bit or 16-bit big-endian output.
//!
//! CONTRACT (skeleton): the public functions below are the API other modules and crates use.
//! The SIMD kernels (scalar oracle, SSE4.1, AVX2, AVX-512, NEON) and run-time dispatch live in
//! per-ISA submodules.

use crate::tensor::ImageView;

/// How a float sample becomes an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Quantize {
    /// `trunc(clamp(max * x, 0, max))` in f32, NaN -> 0: ComfyUI's `np.clip(255.*x, 0, 255).astype(np.uint8)`.
    #[default]
    Truncate,
    /// `round_ties_even(clamp(max * x, 0, max))` in f32, NaN -> 0: nearest, less banding.
    Round,
}

/// Bits per output sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BitDepth {
    /// 8 bits per sample.
    #[default]
    Eight,
    /// 16 bits per sample, big-endian as PNG requires; `65535 * x`.
    Sixteen,
}

impl BitDepth {
    /// Bits per sample: 8 or 16.
    pub const fn bits(self) -> u8 {
        match self {
            BitDepth::Eight => 8,
            BitDepth::Sixteen => 16,
        }
    }
    /// Bytes per sample: 1 or 2.
    pub const fn bytes(self) -> usize {
        match self {
            BitDepth::Eight => 1,
            BitDepth::Sixteen => 2,
        }
    }
}

/// How to turn a tensor image into PNG sample bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ConvertOptions {
    /// Rounding rule. Default: [`Quantize::Truncate`] (ComfyUI's).
    pub quantize: Quantize,
    /// Output bits per sample. Default: 8. u8 input with 16-bit output is scaled by 257.
    pub bit_depth: BitDepth,
}

impl ConvertOptions {
    /// Sets the rounding rule.
    pub fn quantize(mut self, q: Quantize) -> Self {
        self.quantize = q;
        self
    }
    /// Sets the output bit depth.
    pub fn bit_depth(mut self, d: BitDepth) -> Self {
        self.bit_depth = d;
        self
    }
}

/// Converts `src` into 8-bit samples: `dst[i] = q(255 * src[i])`. Uses the fastest kernel this CPU
/// has. Panics if `dst.len() != src.len()` (programmer error).
pub fn f32_to_u8(src: &[f32], dst: &mut [u8], q: Quantize) {
    assert_eq!(src.len(), dst.len(), "f32_to_u8: length mismatch");
    for (d, &x) in dst.iter_mut().zip(src) {
        let v = 255.0f32 * x;
        *d = match q {
            Quantize::Truncate => v as u8,
            Quantize::Round => v.round_ties_even() as u8,
        };
    }
}

/// Converts `src` into 16-bit big-endian samples: 2 bytes per element.
/// Panics if `dst.len() != 2 * src.len()` (programmer error).
pub fn f32_to_u16be(src: &[f32], dst: &mut [u8], q: Quantize) {
    assert_eq!(src.len() * 2, dst.len(), "f32_to_u16be: length mismatch");
    for (d, &x) in dst.chunks_exact_mut(2).zip(src) {
        let v = 65535.0f32 * x;
        let s = match q {
            Quantize::Truncate => v as u16,
            Quantize::Round => v.round_ties_even() as u16,
        };
        d.copy_from_slice(&s.to_be_bytes());
    }
}

/// Converts one image into tightly packed PNG sample rows (`height * width * channels * bytes`),
/// resizing `out` (its capacity is reused: no allocation once it is large enough). Large images are
/// converted in parallel on the current rayon pool.
pub fn convert_image(img: &ImageView<'_>, opts: ConvertOptions, out: &mut Vec<u8>) {
    let row_bytes = img.row_len() * opts.bit_depth.bytes();
    out.resize(img.height() * row_bytes, 0);
    convert_rows(img, opts, 0, out);
}

/// Converts rows `y0 .. y0 + dst.len() / row_bytes` of `img` into `dst` (tightly packed). Used by
/// the encoder to convert a stripe right before filtering it, while it is hot in cache.
pub fn convert_rows(img: &ImageView<'_>, opts: ConvertOptions, y0: usize, dst: &mut [u8]) {
    let _ = (img, opts, y0, dst);
    unimplemented!("skeleton: implemented by the conversion work")
}
