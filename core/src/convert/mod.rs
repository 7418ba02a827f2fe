//! Tensor samples to PNG samples: `trunc(clamp(255*x, 0, 255))` in f32, bit-exact with ComfyUI
//! (NaN -> 0), or round-to-nearest; 8-bit or 16-bit big-endian output.
//!
//! The work is done by a [`kernels::Kernel`]: the scalar oracle ([`kernels::Kernel::scalar`]),
//! or an SSE4.1, AVX2 (+F16C), AVX-512 (F+BW) or NEON kernel, each in its own module and
//! bit-exact with the scalar one. The fastest kernel the CPU has is picked on first use and
//! cached ([`kernels::best`]); `--cfg pngcast_force_scalar` forces the scalar one.
//! [`kernels::all`] lists every kernel this CPU can run, for tests and benchmarks.
//!
//! Cost: memory-bound; about 0.1 ns per sample with AVX-512 when the input is in cache (see
//! `benches/benches/convert.rs`). f16/bf16 are widened in registers, never in a buffer.

mod generic;
mod image;
pub mod kernels;
mod scalar;

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "x86_64")]
mod x86_64;

use half::{bf16, f16};

pub use kernels::Kernel;

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

/// Converts `src` into 8-bit samples: `dst[i] = q(255 * src[i])`, clamped, NaN -> 0. Uses the
/// fastest kernel this CPU has. Panics if `dst.len() != src.len()` (programmer error).
pub fn f32_to_u8(src: &[f32], dst: &mut [u8], q: Quantize) {
    kernels::best().f32_to_u8(src, dst, q)
}

/// Converts `src` into 16-bit big-endian samples: 2 bytes per element, `q(65535 * src[i])`.
/// Panics if `dst.len() != 2 * src.len()` (programmer error).
pub fn f32_to_u16be(src: &[f32], dst: &mut [u8], q: Quantize) {
    kernels::best().f32_to_u16be(src, dst, q)
}

/// Widens f16 to f32 exactly (F16C where present), bit-identical with `half::f16::to_f32`.
/// Panics if `dst.len() != src.len()` (programmer error).
pub fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
    kernels::best().f16_to_f32(src, dst)
}

/// Widens bf16 to f32 exactly (a 16-bit shift in SIMD), bit-identical with `half::bf16::to_f32`.
/// Panics if `dst.len() != src.len()` (programmer error).
pub fn bf16_to_f32(src: &[bf16], dst: &mut [f32]) {
    kernels::best().bf16_to_f32(src, dst)
}

/// The name of the kernel the conversion functions use (`avx512`, `avx2`, `sse4.1`, `neon` or
/// `scalar`).
pub fn kernel_name() -> &'static str {
    kernels::best().name()
}

/// Converts one image into tightly packed PNG sample rows (`height * width * channels * bytes`),
/// resizing `out` (its capacity is reused: no allocation once it is large enough, and no
/// zero-fill when its length already matches). Images of 256 Ki samples or more are converted
/// in parallel, in row chunks, on the current rayon pool.
pub fn convert_image(img: &ImageView<'_>, opts: ConvertOptions, out: &mut Vec<u8>) {
    image::convert_image(kernels::best(), img, opts, out)
}

/// Converts rows `y0 .. y0 + dst.len() / row_bytes` of `img` into `dst` (tightly packed), on the
/// calling thread. Used by the encoder to convert a stripe right before filtering it, while it
/// is hot in cache. Contiguous rows go straight through the kernel; strided ones are gathered
/// in small stack blocks first. Never allocates.
///
/// Panics if `dst.len()` is not a whole number of rows or the rows run past the image
/// (programmer errors).
pub fn convert_rows(img: &ImageView<'_>, opts: ConvertOptions, y0: usize, dst: &mut [u8]) {
    image::convert_rows(kernels::best(), img, opts, y0, dst)
}

/// [`convert_rows`] with an explicit kernel (for tests and benchmarks).
pub fn convert_rows_with(
    kernel: Kernel,
    img: &ImageView<'_>,
    opts: ConvertOptions,
    y0: usize,
    dst: &mut [u8],
) {
    image::convert_rows(kernel, img, opts, y0, dst)
}
