//! The hand-rolled PNG writer: chunks, filters, deflate stripes encoded in parallel on rayon.
//!
//! A frame is written as: signature, `IHDR`, the caller's text chunks, one `IDAT` per stripe,
//! `IEND`. The rows are cut into stripes (a plan that depends only on the image and the options,
//! never on the thread count, so the bytes are the same on any pool). Each stripe is filtered
//! (it needs only the row above it), deflated on its own and Adler-32'd on a rayon worker; the
//! stripes' checksums are merged with [`adler32_combine`] into the zlib trailer, and the stripes
//! are copied into the output in parallel.
//!
//! Submodules: `chunk` (framing, CRC-32), `filter` (row filters), `adler` (checksums),
//! `deflate` (stored blocks, miniz_oxide), `stripe` (the per-stripe coder dispatch),
//! `parallel` (planning, execution, assembly), `fast` (the fast coder, with SIMD kernels).
// deny, not forbid: `fast::kernels` holds the fast coder's SIMD kernels (`allow`ed there only).
#![deny(unsafe_code)]

mod adler;
mod chunk;
mod deflate;
mod fast;
mod filter;
mod parallel;
mod stripe;

pub use fast::{FastKernel, FastLevel};

/// The name of the fast coder's kernel used when none is pinned (see [`FastKernel::best`]):
/// `scalar`, `avx2`, `avx512` or `neon`. For version and diagnostic output.
pub fn fast_kernel_name() -> &'static str {
    FastKernel::best().name()
}

use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;

use crate::convert::{BitDepth, ConvertOptions};
use crate::error::{Error, Result};
use crate::tensor::{ImageView, MAX_PNG_SIDE};

pub use adler::adler32_combine;
use parallel::{Exec, StripePlan, Stripes};
use stripe::{code_stripe, StripeJob, StripeOut};

/// How the filtered rows are deflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Compression {
    /// Stored (uncompressed) deflate blocks: the speed ceiling, about raw size.
    Stored,
    /// miniz_oxide at this level (1..=9; 1 is what ComfyUI's Pillow `compress_level=1` uses).
    Compact(u8),
    /// The fast coder: one sampled dynamic Huffman table per stripe, zero-run matches, SIMD
    /// filters and code emission. Several times faster than `Compact(1)`, and smaller than the
    /// png crate's `Fast` on photos. See [`FastLevel`].
    Fast(FastLevel),
}

impl Default for Compression {
    /// The fast coder at its default level ([`FastLevel::Balanced`]).
    fn default() -> Self {
        Compression::Fast(FastLevel::default())
    }
}

/// The PNG row filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Filter {
    /// Filter type 0.
    None,
    /// Filter type 1: difference with the pixel to the left.
    Sub,
    /// Filter type 2: difference with the pixel above.
    Up,
    /// Filter type 3: difference with the mean of left and above.
    Average,
    /// Filter type 4: Paeth predictor.
    Paeth,
    /// Per row, the filter with the minimum sum of absolute residuals (as signed bytes).
    #[default]
    Adaptive,
}

/// Where stripes are encoded.
#[derive(Debug, Clone, Default)]
pub enum Threads {
    /// The rayon pool of the calling context (the global pool unless inside `install`).
    #[default]
    Global,
    /// A private pool with this many threads, built once by the encoder. 1 means no parallelism.
    Fixed(NonZeroUsize),
    /// A caller-supplied pool.
    Pool(Arc<rayon::ThreadPool>),
}

/// What the pixel buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ImageInfo {
    /// Width in pixels, 1..=2^31-1.
    pub width: u32,
    /// Height in pixels, 1..=2^31-1.
    pub height: u32,
    /// Channels per pixel, 1..=4 (colour types 0, 4, 2, 6).
    pub channels: u8,
    /// Bits per sample.
    pub bit_depth: BitDepth,
}

/// Encoder settings. `#[non_exhaustive]`: build with `EncodeOptions::default()` and the setters.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct EncodeOptions {
    /// Deflate strategy. Default: [`Compression::Fast`]`(`[`FastLevel::Balanced`]`)`.
    pub compression: Compression,
    /// Row filter. Default: [`Filter::Adaptive`].
    pub filter: Filter,
    /// Where stripes run. Default: [`Threads::Global`].
    pub threads: Threads,
    /// Rows per stripe; `None` picks a size from the image (small images use one stripe).
    /// The output depends on this value but never on the thread count.
    pub stripe_rows: Option<NonZeroU32>,
    /// Text chunks written before the image data, in order: `tEXt` for a Latin-1 value, an
    /// uncompressed UTF-8 `iTXt` otherwise. Keys are PNG keywords (1..=79 printable Latin-1).
    pub text: Vec<(String, String)>,
    /// The fast coder's kernel; `None` (the default) takes the best this CPU has. Every kernel
    /// writes the same bytes: pinning one is for benchmarks and comparisons.
    pub fast_kernel: Option<FastKernel>,
}

impl EncodeOptions {
    /// Sets the compression.
    pub fn compression(mut self, c: Compression) -> Self {
        self.compression = c;
        self
    }
    /// Sets the filter.
    pub fn filter(mut self, f: Filter) -> Self {
        self.filter = f;
        self
    }
    /// Sets the threads.
    pub fn threads(mut self, t: Threads) -> Self {
        self.threads = t;
        self
    }
    /// Sets the rows per stripe.
    pub fn stripe_rows(mut self, rows: Option<NonZeroU32>) -> Self {
        self.stripe_rows = rows;
        self
    }
    /// Adds a text chunk (`tEXt`, or `iTXt` for a value outside Latin-1).
    pub fn text(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.text.push((key.into(), value.into()));
        self
    }
    /// Pins the fast coder's kernel (see [`FastKernel::available`]); `None` takes the best.
    pub fn fast_kernel(mut self, k: Option<FastKernel>) -> Self {
        self.fast_kernel = k;
        self
    }
}

/// A reusable PNG encoder. Holds per-stripe output slots and per-worker scratch (filter rows,
/// miniz_oxide compressors, conversion buffers) so that encoding another frame of the same size
/// allocates nothing. With [`Threads::Fixed`] it also owns its private rayon pool.
///
/// Allocation, precisely: the first frame of a size sizes everything for the worst case
/// (incompressible data), so later frames of that size allocate nothing in this crate. On a
/// multi-threaded pool entered from outside, rayon pushes one job per frame on its injector
/// queue (crossbeam-deque), which allocates one 63-slot block every 63 pushes: amortised one
/// allocation per 63 frames (`core/tests/png_alloc.rs` checks both facts). Encoding from a
/// thread that is itself a member of the pool injects nothing, so nothing at all is allocated:
/// build the pool (or, in `main`, the global pool) with rayon's
/// `ThreadPoolBuilder::use_current_thread` on the thread that sends, as `pngcast serve` does.
#[derive(Debug)]
pub struct Encoder {
    options: EncodeOptions,
    /// The pool stripes run on for `Threads::Fixed(n >= 2)` (built once) or `Threads::Pool`.
    pool: Option<Arc<rayon::ThreadPool>>,
    stripes: Stripes,
    /// Signature, IHDR and text chunks of the current frame, copied to the front of the output.
    head: Vec<u8>,
}

/// Where a frame's rows come from.
#[derive(Clone, Copy)]
enum Rows<'a> {
    /// Ready PNG sample rows, tightly packed.
    Pixels(&'a [u8]),
    /// A tensor image, converted stripe by stripe inside the stripe's job (hot in cache).
    Image(&'a ImageView<'a>, ConvertOptions),
}

/// A tensor's rows converted on demand for the fast coder's frame sampler: a few rows per
/// sampled piece, into a buffer kept by the encoder.
struct ConvertedRows<'a, 'b> {
    img: &'a ImageView<'b>,
    conv: ConvertOptions,
    row_bytes: usize,
    height: usize,
    buf: &'a mut Vec<u8>,
}

impl fast::RowSource for ConvertedRows<'_, '_> {
    fn height(&self) -> usize {
        self.height
    }

    fn window(&mut self, first: usize, n: usize) -> (&[u8], &[u8]) {
        let lo = first.saturating_sub(1);
        self.buf.resize((first + n - lo) * self.row_bytes, 0);
        crate::convert::convert_rows(self.img, self.conv, lo, self.buf);
        self.buf.split_at((first - lo) * self.row_bytes)
    }
}

/// Checked geometry of a frame.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    width: u32,
    height: u32,
    channels: u8,
    bit_depth: BitDepth,
    /// Bytes per unfiltered row.
    row_bytes: usize,
    /// Bytes per pixel, the filters' left distance.
    bpp: usize,
}

impl Geometry {
    /// Validates `info`: channels 1..=4, sides 1..=2^31-1, sizes that fit `usize`.
    fn new(info: &ImageInfo) -> Result<Self> {
        if !(1..=4).contains(&info.channels) {
            return Err(Error::InvalidOption(format!(
                "channels must be 1..=4, got {}",
                info.channels
            )));
        }
        let (w, h) = (info.width as usize, info.height as usize);
        if w == 0 || h == 0 || w > MAX_PNG_SIDE || h > MAX_PNG_SIDE {
            return Err(Error::ImageTooLarge {
                width: w,
                height: h,
            });
        }
        let bpp = usize::from(info.channels) * info.bit_depth.bytes();
        let row_bytes = w
            .checked_mul(bpp)
            .filter(|rb| rb.checked_add(1).and_then(|f| f.checked_mul(h)).is_some())
            .ok_or(Error::SizeOverflow("image bytes exceed usize"))?;
        Ok(Self {
            width: info.width,
            height: info.height,
            channels: info.channels,
            bit_depth: info.bit_depth,
            row_bytes,
            bpp,
        })
    }

    fn pixel_bytes(&self) -> usize {
        self.row_bytes * self.height as usize
    }
}

/// The two zlib header bytes: deflate with a 32 KiB window, FLEVEL as a hint of the level, and
/// the check bits making the 16-bit value a multiple of 31.
fn zlib_header(c: Compression) -> [u8; 2] {
    let flevel = match c {
        Compression::Stored | Compression::Compact(0..=1) | Compression::Fast(_) => 0u8,
        Compression::Compact(2..=5) => 1,
        Compression::Compact(6) => 2,
        Compression::Compact(_) => 3,
    };
    let cmf = 0x78u8;
    let flg = flevel << 6;
    let check = 31 - ((u16::from(cmf) << 8 | u16::from(flg)) % 31);
    [cmf, flg | (check % 31) as u8]
}

impl Encoder {
    /// Validates `options` and builds an encoder: `Compact` level 1..=9 and valid text pairs,
    /// else [`Error::InvalidOption`] / [`Error::InvalidText`]. `Threads::Fixed(n)` with n >= 2
    /// builds a private pool of n threads here, once.
    pub fn new(options: EncodeOptions) -> Result<Self> {
        validate_options(&options)?;
        let pool = match &options.threads {
            Threads::Global => None,
            Threads::Fixed(n) if n.get() == 1 => None,
            Threads::Fixed(n) => Some(Arc::new(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n.get())
                    .thread_name(|i| format!("pngcast-enc-{i}"))
                    .build()
                    .map_err(|e| {
                        Error::InvalidOption(format!("cannot start {n} encoder threads: {e}"))
                    })?,
            )),
            Threads::Pool(p) => Some(Arc::clone(p)),
        };
        Ok(Self {
            options,
            pool,
            stripes: Stripes::default(),
            head: Vec::new(),
        })
    }

    /// The settings.
    pub fn options(&self) -> &EncodeOptions {
        &self.options
    }

    /// Replaces the text chunks for the next frames (reuses the vector). The pairs are checked
    /// when a frame is encoded ([`Error::InvalidText`]).
    pub fn set_text(&mut self, text: &[(String, String)]) {
        self.options.text.clear();
        self.options.text.extend_from_slice(text);
    }

    /// Encodes tightly packed sample rows (8-bit, or 16-bit big-endian) into a complete PNG,
    /// replacing the contents of `out` (its capacity is reused: once `out` and the encoder have
    /// seen a frame of this size, this allocates nothing).
    ///
    /// Errors: [`Error::InvalidOption`] for channels outside 1..=4, [`Error::ImageTooLarge`] for
    /// a zero side or one beyond 2^31-1, [`Error::PixelBufferSize`] when `pixels` is not exactly
    /// `width * height * channels * bytes_per_sample` long, [`Error::InvalidText`].
    /// On error `out` is left empty.
    pub fn encode_into(
        &mut self,
        info: &ImageInfo,
        pixels: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let geom = Geometry::new(info).inspect_err(|_| out.clear())?;
        if pixels.len() != geom.pixel_bytes() {
            out.clear();
            return Err(Error::PixelBufferSize {
                width: info.width,
                height: info.height,
                channels: info.channels,
                bit_depth: info.bit_depth.bits(),
                need: geom.pixel_bytes(),
                got: pixels.len(),
            });
        }
        self.encode_rows(&geom, Rows::Pixels(pixels), out)
    }

    /// Converts a tensor image (see [`crate::convert`]) and encodes it, replacing the contents of
    /// `out`. Each stripe is converted inside its job, right before it is filtered, so the samples
    /// are still in cache; no full-image sample buffer is kept.
    pub fn encode_image_into(
        &mut self,
        img: &ImageView<'_>,
        convert: ConvertOptions,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        out.clear();
        let too_large = || Error::ImageTooLarge {
            width: img.width(),
            height: img.height(),
        };
        let info = ImageInfo {
            width: u32::try_from(img.width()).map_err(|_| too_large())?,
            height: u32::try_from(img.height()).map_err(|_| too_large())?,
            channels: u8::try_from(img.channels())
                .map_err(|_| Error::UnsupportedChannels(img.channels()))?,
            bit_depth: convert.bit_depth,
        };
        let geom = Geometry::new(&info).inspect_err(|_| out.clear())?;
        self.encode_rows(&geom, Rows::Image(img, convert), out)
    }

    /// Writes the signature, IHDR and text chunks into `self.head`.
    fn write_head(&mut self, geom: &Geometry) -> Result<()> {
        let head = &mut self.head;
        head.clear();
        head.extend_from_slice(&chunk::SIGNATURE);
        let colour = chunk::colour_type(geom.channels).unwrap_or(0);
        chunk::write_ihdr(head, geom.width, geom.height, geom.bit_depth.bits(), colour);
        // Validated by `validate_options` just before.
        for (k, v) in &self.options.text {
            chunk::write_text(head, k, v)?;
        }
        Ok(())
    }

    fn encode_rows(&mut self, geom: &Geometry, rows: Rows<'_>, out: &mut Vec<u8>) -> Result<()> {
        if let Err(e) = validate_options(&self.options).and_then(|()| self.write_head(geom)) {
            out.clear();
            return Err(e);
        }
        let opts = &self.options;
        let height = geom.height as usize;
        let plan = StripePlan::new(height, geom.row_bytes, opts.stripe_rows);
        let exec = match (&opts.threads, self.pool.as_deref()) {
            _ if plan.count == 1 => Exec::Serial,
            (Threads::Global, _) if rayon::current_num_threads() > 1 => Exec::Current,
            (Threads::Fixed(_) | Threads::Pool(_), Some(pool))
                if pool.current_num_threads() > 1 =>
            {
                Exec::Pool(pool)
            }
            _ => Exec::Serial,
        };
        let workers = match exec {
            Exec::Serial => 1,
            Exec::Current => rayon::current_num_threads(),
            Exec::Pool(p) => p.current_num_threads(),
        };
        let convert_bytes = match rows {
            Rows::Pixels(_) => None,
            Rows::Image(..) => Some((plan.rows_per + 1) * geom.row_bytes),
        };
        let compression = opts.compression;
        self.stripes.prepare(
            plan,
            height,
            geom.row_bytes,
            compression,
            workers,
            convert_bytes,
        );
        // Stripes coded one after another go straight into `out`; parallel ones into slots.
        let in_place = matches!(exec, Exec::Serial) && self.stripes.fit_one_chunk_each();
        if !in_place {
            self.stripes.reserve_slots();
        }

        // Room for the worst case (incompressible data) up front: a frame that compresses worse
        // than the last one must not reallocate.
        let bound = self.head.len() + self.stripes.idat_bound() + chunk::CHUNK_OVERHEAD;
        out.reserve(bound.saturating_sub(out.len()));

        let header = zlib_header(compression);
        let (filter, row_bytes, bpp) = (opts.filter, geom.row_bytes, geom.bpp);
        let kernel = opts.fast_kernel;
        // The fast coder's code is sampled once from the whole frame and shared by its stripes.
        let frame_code = match compression {
            Compression::Fast(level) if plan.count > 1 && fast::shares_code(height, row_bytes) => {
                let stripes = &mut self.stripes;
                stripes.sampler.pin_kernel(kernel);
                Some(match rows {
                    Rows::Pixels(px) => {
                        let whole = StripeJob {
                            prev_row: None,
                            rows: px,
                            row_bytes,
                            bpp,
                            filter,
                            is_last: true,
                        };
                        fast::FrameCode::sample(
                            &mut fast::JobRows(&whole),
                            row_bytes,
                            bpp,
                            filter,
                            level,
                            &mut stripes.sampler,
                        )
                    }
                    Rows::Image(img, conv) => fast::FrameCode::sample(
                        &mut ConvertedRows {
                            img,
                            conv,
                            row_bytes,
                            height,
                            buf: &mut stripes.sample_rows,
                        },
                        row_bytes,
                        bpp,
                        filter,
                        level,
                        &mut stripes.sampler,
                    ),
                })
            }
            _ => None,
        };
        let frame_code = frame_code.as_ref();
        let code = move |i: usize, scratch: &mut stripe::StripeScratch, data: &mut StripeOut| {
            scratch.fast.pin_kernel(kernel);
            if i == 0 {
                data.extend_from_slice(&header);
            }
            let (y0, y1) = plan.rows(i, height);
            let is_last = y1 == height;
            match rows {
                Rows::Pixels(px) => {
                    let job = StripeJob {
                        prev_row: (y0 > 0).then(|| &px[(y0 - 1) * row_bytes..y0 * row_bytes]),
                        rows: &px[y0 * row_bytes..y1 * row_bytes],
                        row_bytes,
                        bpp,
                        filter,
                        is_last,
                    };
                    code_stripe(&job, compression, frame_code, scratch, data)
                }
                Rows::Image(img, conv) => {
                    // Convert the row above too (the filter needs it); one extra row per stripe.
                    let first = y0.saturating_sub(1);
                    let mut buf = std::mem::take(&mut scratch.convert);
                    buf.resize((y1 - first) * row_bytes, 0);
                    crate::convert::convert_rows(img, conv, first, &mut buf);
                    let split = (y0 - first) * row_bytes;
                    let job = StripeJob {
                        prev_row: (y0 > 0).then(|| &buf[..split]),
                        rows: &buf[split..],
                        row_bytes,
                        bpp,
                        filter,
                        is_last,
                    };
                    let adler = code_stripe(&job, compression, frame_code, scratch, data);
                    scratch.convert = buf;
                    adler
                }
            }
        };
        let stripes = &mut self.stripes;
        let head = &self.head;
        if in_place {
            // One thread codes the stripes in order: straight into `out`, over what the previous
            // frame left there (initialised, so no memset; the room reserved above, so no
            // reallocation), instead of into the slots and then copying them in.
            let mut png = StripeOut::from_vec(std::mem::take(out));
            png.extend_from_slice(head);
            stripes.code_in_place(code, &mut png);
            png.extend_from_slice(&IEND);
            *out = png.into_vec();
            return Ok(());
        }
        exec.run(|parallel| {
            stripes.code(parallel, code);
            stripes.finish_zlib();
            let idat_start = head.len();
            let idat_end = idat_start + stripes.idat_len();
            let total = idat_end + chunk::CHUNK_OVERHEAD;
            // Overwrite in place: a buffer already long enough (the previous frame) is truncated,
            // not cleared and refilled with zeros, so steady-state frames skip a memset.
            if out.len() < total {
                out.resize(total, 0);
            } else {
                out.truncate(total);
            }
            out[..idat_start].copy_from_slice(head);
            stripes.write_idats(parallel, &mut out[idat_start..idat_end]);
            out[idat_end..].copy_from_slice(&IEND);
        });
        Ok(())
    }
}

/// The IEND chunk: empty data, fixed CRC.
const IEND: [u8; 12] = [0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xae, 0x42, 0x60, 0x82];

/// The one validation of [`EncodeOptions`].
fn validate_options(o: &EncodeOptions) -> Result<()> {
    if let Compression::Compact(level) = o.compression {
        if !(1..=9).contains(&level) {
            return Err(Error::InvalidOption(format!(
                "Compact level must be 1..=9, got {level}"
            )));
        }
    }
    for (k, v) in &o.text {
        chunk::validate_text(k, v)?;
    }
    Ok(())
}

/// One-shot convenience: encodes into a new vector.
pub fn encode(info: &ImageInfo, pixels: &[u8], options: &EncodeOptions) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    Encoder::new(options.clone())?.encode_into(info, pixels, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zlib_headers_pass_the_check() {
        let all = [Compression::Stored]
            .into_iter()
            .chain((1..=9).map(Compression::Compact));
        for c in all {
            let [cmf, flg] = zlib_header(c);
            assert_eq!(cmf, 0x78, "{c:?}");
            assert_eq!((u16::from(cmf) << 8 | u16::from(flg)) % 31, 0, "{c:?}");
            assert_eq!(flg & 0x20, 0, "no preset dictionary");
        }
        assert_eq!(zlib_header(Compression::Compact(1)), [0x78, 0x01]);
        assert_eq!(zlib_header(Compression::Compact(6)), [0x78, 0x9c]);
        assert_eq!(zlib_header(Compression::Compact(9)), [0x78, 0xda]);
    }
}
