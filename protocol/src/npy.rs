#![forbid(unsafe_code)]
//! Reading `.npy` arrays (numpy's own file format) into tensor views, for the CLI's `encode` and
//! file source and for the server's ingest endpoint. The header is parsed by `npyz`; the data is
//! decoded here in bulk.
//!
//! Accepted element types: `f4` (f32), `f2` (f16), `u1` (u8), `f8` (f64, numpy's default float:
//! quantised in f64, see [`NpyArray::quantize_f64`]), little- or big-endian, C or Fortran order.
//! Anything else (other dtypes, structured or pickled arrays, a data section shorter or longer
//! than the shape needs) is refused with a message naming the problem. [`NpyHeader::parse`]
//! checks all of that without decoding the data, so a caller can refuse a bad body cheaply and
//! decode a good one elsewhere.
//!
//! ```
//! use pngcast_protocol::npy::{Layout, NpyArray};
//! let mut file = b"\x93NUMPY\x01\x00".to_vec();
//! let header = "{'descr': '|u1', 'fortran_order': False, 'shape': (5, 3, 1), }\n";
//! file.extend_from_slice(&(header.len() as u16).to_le_bytes());
//! file.extend_from_slice(header.as_bytes());
//! file.extend_from_slice(&[7; 15]);
//! let array = NpyArray::parse(&file).unwrap();
//! let view = array.view(Layout::guess(&array.dims).unwrap()).unwrap();
//! assert_eq!(view.shape(), [1, 5, 3, 1]);
//! ```

use std::fmt;

use half::f16;
use npyz::{DType as NpyDType, Endianness, Order, TypeChar};
use pngcast_core::tensor::{TensorData, TensorView};

/// The magic every `.npy` file starts with.
pub const MAGIC: &[u8] = b"\x93NUMPY";

/// Why an array was refused. Its `Display` is one line naming the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyError {
    malformed: bool,
    message: String,
}

impl NpyError {
    fn malformed(message: impl Into<String>) -> NpyError {
        NpyError {
            malformed: true,
            message: message.into(),
        }
    }
    fn unsupported(message: impl Into<String>) -> NpyError {
        NpyError {
            malformed: false,
            message: message.into(),
        }
    }
    /// True when the bytes are not a well-formed `.npy` file (no magic, truncated, bad header,
    /// bytes past the data); false when the file is well formed but not an image this crate
    /// takes (dtype, shape, size).
    pub fn is_malformed(&self) -> bool {
        self.malformed
    }
}

impl fmt::Display for NpyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for NpyError {}

/// How the axes of an array map onto `[B,H,W,C]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Layout {
    /// `[B,H,W,C]`: a batch of images (ComfyUI's IMAGE).
    Bhwc,
    /// `[H,W,C]`: one image.
    Hwc,
    /// `[B,H,W]`: a batch of one-channel masks (ComfyUI's MASK).
    Bhw,
    /// `[H,W]`: one gray image.
    Hw,
    /// `[C,H,W]`: one channels-first image (read strided, no copy).
    Chw,
    /// `[B,C,H,W]`: a batch of channels-first images (read strided, no copy).
    Bchw,
}

/// Why [`Layout::guess`] found no single reading of a shape.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LayoutError {
    /// Two readings give different images; the caller must choose.
    Ambiguous {
        /// The shape.
        dims: Vec<usize>,
        /// The two readings.
        choices: [Layout; 2],
    },
    /// A 4-D shape with no 1..=4 channel axis in either place.
    NoChannels {
        /// The shape.
        dims: Vec<usize>,
    },
    /// A rank other than 2, 3 or 4.
    Unsupported {
        /// The shape.
        dims: Vec<usize>,
    },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutError::Ambiguous { dims, choices: [a, b] } => write!(
                f,
                "shape {dims:?} is ambiguous: give layout {} or layout {}",
                a.name(),
                b.name()
            ),
            LayoutError::NoChannels { dims } => write!(
                f,
                "shape {dims:?}: neither [B,H,W,C] nor [B,C,H,W] has 1..4 channels"
            ),
            LayoutError::Unsupported { dims } => write!(
                f,
                "unsupported shape {dims:?}: expected [B,H,W,C], [B,C,H,W], [H,W,C], [C,H,W], [B,H,W] or [H,W]"
            ),
        }
    }
}

impl std::error::Error for LayoutError {}

impl Layout {
    /// Every layout, for listing the choices.
    pub const ALL: [Layout; 6] = [
        Layout::Bhwc,
        Layout::Hwc,
        Layout::Bhw,
        Layout::Hw,
        Layout::Chw,
        Layout::Bchw,
    ];

    /// The layout of an array given without an explicit one. Only shapes with one reading (or
    /// readings that give the same images) are accepted:
    ///
    /// - rank 2 `[H,W]`: hw;
    /// - rank 3 `[A,B,C]`: channels-last is possible when C is 1..=4, channels-first when A is
    ///   1..=4. Both possible: ambiguous. Only channels-last: hwc. Only channels-first: A = 1 is
    ///   bhw (one mask, the same image as chw), A in 2..=4 is ambiguous (chw, or a bhw batch of
    ///   A masks). Neither: bhw;
    /// - rank 4 `[B,X,Y,C]`: bhwc when only C is 1..=4, bchw when only X is 1..=4; both:
    ///   ambiguous; neither: refused.
    pub fn guess(dims: &[usize]) -> Result<Layout, LayoutError> {
        let ch = |n: usize| (1..=4).contains(&n);
        let ambiguous = |a, b| LayoutError::Ambiguous {
            dims: dims.to_vec(),
            choices: [a, b],
        };
        match *dims {
            [_, _] => Ok(Layout::Hw),
            [a, _, c] => match (ch(a), ch(c)) {
                (true, true) => Err(ambiguous(Layout::Hwc, Layout::Chw)),
                (false, true) => Ok(Layout::Hwc),
                (true, false) if a == 1 => Ok(Layout::Bhw),
                (true, false) => Err(ambiguous(Layout::Chw, Layout::Bhw)),
                (false, false) => Ok(Layout::Bhw),
            },
            [_, x, _, c] => match (ch(x), ch(c)) {
                (true, true) => Err(ambiguous(Layout::Bhwc, Layout::Bchw)),
                (false, true) => Ok(Layout::Bhwc),
                (true, false) => Ok(Layout::Bchw),
                (false, false) => Err(LayoutError::NoChannels {
                    dims: dims.to_vec(),
                }),
            },
            _ => Err(LayoutError::Unsupported {
                dims: dims.to_vec(),
            }),
        }
    }

    /// Number of axes.
    pub fn rank(self) -> usize {
        match self {
            Layout::Bhwc | Layout::Bchw => 4,
            Layout::Hwc | Layout::Bhw | Layout::Chw => 3,
            Layout::Hw => 2,
        }
    }

    /// The lowercase name (`bhwc`, `hwc`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Layout::Bhwc => "bhwc",
            Layout::Hwc => "hwc",
            Layout::Bhw => "bhw",
            Layout::Hw => "hw",
            Layout::Chw => "chw",
            Layout::Bchw => "bchw",
        }
    }

    /// The layout with this name (ASCII case-insensitive).
    pub fn from_name(name: &str) -> Option<Layout> {
        Layout::ALL
            .into_iter()
            .find(|l| l.name().eq_ignore_ascii_case(name))
    }

    /// For each of the tensor axes `[B,H,W,C]`, the array axis it comes from (`None`: size 1).
    fn axes(self) -> [Option<usize>; 4] {
        match self {
            Layout::Bhwc => [Some(0), Some(1), Some(2), Some(3)],
            Layout::Hwc => [None, Some(0), Some(1), Some(2)],
            Layout::Bhw => [Some(0), Some(1), Some(2), None],
            Layout::Hw => [None, Some(0), Some(1), None],
            Layout::Chw => [None, Some(1), Some(2), Some(0)],
            Layout::Bchw => [Some(0), Some(2), Some(3), Some(1)],
        }
    }

    /// The `[B,H,W,C]` shape of an array of `dims` read with this layout, or an error when the
    /// rank differs.
    pub fn bhwc_shape(self, dims: &[usize]) -> Result<[usize; 4], NpyError> {
        if self.rank() != dims.len() {
            return Err(NpyError::unsupported(format!(
                "layout {} needs a {}-D array, the input has shape {dims:?}",
                self.name(),
                self.rank()
            )));
        }
        let mut shape = [1usize; 4];
        for (t, axis) in self.axes().into_iter().enumerate() {
            if let Some(a) = axis {
                shape[t] = dims[a];
            }
        }
        Ok(shape)
    }
}

/// Element type of an array this module reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NpyDtype {
    /// `f4`.
    F32,
    /// `f2`.
    F16,
    /// `u1`.
    U8,
    /// `f8`.
    F64,
}

impl NpyDtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            NpyDtype::F32 => 4,
            NpyDtype::F16 => 2,
            NpyDtype::U8 => 1,
            NpyDtype::F64 => 8,
        }
    }
    /// numpy's name (`float32`, ...).
    pub fn name(self) -> &'static str {
        match self {
            NpyDtype::F32 => "float32",
            NpyDtype::F16 => "float16",
            NpyDtype::U8 => "uint8",
            NpyDtype::F64 => "float64",
        }
    }
}

/// A checked `.npy` header: the element type, the shape and where the data starts. Parsing it
/// also checks that the data section has exactly the size the shape needs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NpyHeader {
    /// The element type.
    pub dtype: NpyDtype,
    /// Big-endian elements.
    pub big_endian: bool,
    /// The shape as written in the file.
    pub dims: Vec<usize>,
    /// Fortran (column-major) order: the first axis varies fastest.
    pub fortran: bool,
    /// Offset of the data section in the file.
    pub data_offset: usize,
}

impl NpyHeader {
    /// Parses the header of a whole `.npy` file held in `bytes` and checks the data size. Costs
    /// the header's length, not the data's.
    pub fn parse(bytes: &[u8]) -> Result<NpyHeader, NpyError> {
        if !bytes.starts_with(MAGIC) {
            return Err(NpyError::malformed("not a .npy file (no \\x93NUMPY magic)"));
        }
        precheck_header(bytes)?;
        let mut rest = bytes;
        let header = npyz::NpyHeader::from_reader(&mut rest).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                NpyError::malformed("truncated .npy header")
            } else {
                NpyError::malformed(format!("malformed .npy header: {e}"))
            }
        })?;
        let NpyDType::Plain(ts) = header.dtype() else {
            return Err(NpyError::unsupported(format!(
                "unsupported dtype {} (structured arrays are not images; expected float32, float16 or uint8)",
                header.dtype().descr()
            )));
        };
        let size = ts.num_bytes().unwrap_or(0);
        let dtype = match (ts.type_char(), size) {
            (TypeChar::Float, 4) => NpyDtype::F32,
            (TypeChar::Float, 2) => NpyDtype::F16,
            (TypeChar::Uint, 1) => NpyDtype::U8,
            (TypeChar::Float, 8) => NpyDtype::F64,
            _ => {
                return Err(NpyError::unsupported(format!(
                    "unsupported dtype {ts} (expected float32 '<f4', float64 '<f8', float16 '<f2' or uint8 '|u1')"
                )))
            }
        };
        let too_large =
            || NpyError::unsupported(format!("shape {:?} is too large", header.shape()));
        let dims: Vec<usize> = header
            .shape()
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<_, _>>()
            .map_err(|_| too_large())?;
        let count = dims
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(too_large)?;
        let need = count.checked_mul(size).ok_or_else(too_large)?;
        if rest.len() < need {
            return Err(NpyError::malformed(format!(
                "truncated: shape {dims:?} of {ts} needs {need} data bytes, the file holds {}",
                rest.len()
            )));
        }
        if rest.len() > need {
            return Err(NpyError::malformed(format!(
                "{} bytes after the data of shape {dims:?} of {ts} (corrupt or not a plain .npy array)",
                rest.len() - need
            )));
        }
        Ok(NpyHeader {
            dtype,
            big_endian: ts.endianness() == Endianness::Big,
            dims,
            fortran: header.order() == Order::Fortran,
            data_offset: bytes.len() - rest.len(),
        })
    }

    /// The `[B,H,W,C]` shape under `layout`, checked as a tensor view would check it (no zero
    /// side, 1..=4 channels, sides below 2^31), without the data. The same checks as
    /// [`NpyArray::view`], for refusing a body before decoding it.
    pub fn check_layout(&self, layout: Layout) -> Result<[usize; 4], NpyError> {
        let shape = layout.bhwc_shape(&self.dims)?;
        // A zero-sized u8 buffer of the right length is free; the view's own checks then run on
        // the shape alone (strides of a C-order array; Fortran strides pass the same checks).
        let [b, h, w, c] = shape;
        if shape.contains(&0) {
            return Err(NpyError::unsupported(format!(
                "shape {:?} read as {}: the array has zero elements",
                self.dims,
                layout.name()
            )));
        }
        if !(1..=4).contains(&c) {
            return Err(NpyError::unsupported(format!(
                "shape {:?} read as {}: {c} channels (1..4 expected)",
                self.dims,
                layout.name()
            )));
        }
        if h > pngcast_core::tensor::MAX_PNG_SIDE || w > pngcast_core::tensor::MAX_PNG_SIDE {
            return Err(NpyError::unsupported(format!(
                "shape {:?} read as {}: {w}x{h} is beyond PNG's 2^31-1 per side",
                self.dims,
                layout.name()
            )));
        }
        if u32::try_from(b).is_err() {
            return Err(NpyError::unsupported(format!(
                "shape {:?}: batch of {b} images is too large",
                self.dims
            )));
        }
        Ok(shape)
    }
}

/// Decoded elements of an array, in file order.
#[derive(Debug)]
#[non_exhaustive]
pub enum Elements {
    /// `f4`.
    F32(Vec<f32>),
    /// `f2`.
    F16(Vec<f16>),
    /// `u1`.
    U8(Vec<u8>),
    /// `f8`, until [`NpyArray::quantize_f64`] turns it into `U8`.
    F64(Vec<f64>),
}

/// numpy's `np.clip(255 * x, 0, 255).astype(np.uint8)` on a float64 `x`, computed in f64 as numpy
/// does (`round`: `np.rint` before the cast); NaN becomes 0, as for the f32 path.
pub fn quantize_f64_sample(x: f64, round: bool) -> u8 {
    let y = (255.0 * x).clamp(0.0, 255.0);
    let y = if round {
        y.round_ties_even()
    } else {
        y.trunc()
    };
    if y.is_nan() {
        0
    } else {
        y as u8
    }
}

/// A `.npy` array held in memory.
#[derive(Debug)]
#[non_exhaustive]
pub struct NpyArray {
    /// The shape as written in the file.
    pub dims: Vec<usize>,
    /// Fortran (column-major) order: the first axis varies fastest.
    pub fortran: bool,
    /// The elements.
    pub elements: Elements,
}

impl NpyArray {
    /// Parses a whole `.npy` file.
    pub fn parse(bytes: &[u8]) -> Result<Self, NpyError> {
        let header = NpyHeader::parse(bytes)?;
        Ok(NpyArray::decode(&header, bytes))
    }

    /// Decodes the data of a file whose header [`NpyHeader::parse`] accepted (`bytes` is the
    /// whole file, as given to it).
    pub fn decode(header: &NpyHeader, bytes: &[u8]) -> NpyArray {
        let data = &bytes[header.data_offset.min(bytes.len())..];
        let big = header.big_endian;
        let elements = match header.dtype {
            NpyDtype::F32 => Elements::F32(
                data.chunks_exact(4)
                    .map(|c| {
                        let b = [c[0], c[1], c[2], c[3]];
                        if big {
                            f32::from_be_bytes(b)
                        } else {
                            f32::from_le_bytes(b)
                        }
                    })
                    .collect(),
            ),
            NpyDtype::F16 => Elements::F16(
                data.chunks_exact(2)
                    .map(|c| {
                        let b = [c[0], c[1]];
                        if big {
                            f16::from_be_bytes(b)
                        } else {
                            f16::from_le_bytes(b)
                        }
                    })
                    .collect(),
            ),
            NpyDtype::U8 => Elements::U8(data.to_vec()),
            NpyDtype::F64 => Elements::F64(
                data.chunks_exact(8)
                    .map(|c| {
                        let b = [c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]];
                        if big {
                            f64::from_be_bytes(b)
                        } else {
                            f64::from_le_bytes(b)
                        }
                    })
                    .collect(),
            ),
        };
        NpyArray {
            dims: header.dims.clone(),
            fortran: header.fortran,
            elements,
        }
    }

    /// Whether the array holds float64 elements (not yet quantised).
    pub fn is_f64(&self) -> bool {
        matches!(self.elements, Elements::F64(_))
    }

    /// Quantises float64 elements to 8-bit samples in f64, bit-exact with numpy's own
    /// `np.clip(255 * x, 0, 255).astype(np.uint8)` on the float64 array (converting to f32 first
    /// would round some values differently); `round` applies `np.rint` first. Other element types
    /// are left alone.
    pub fn quantize_f64(&mut self, round: bool) {
        if let Elements::F64(v) = &self.elements {
            let u8s = v.iter().map(|&x| quantize_f64_sample(x, round)).collect();
            self.elements = Elements::U8(u8s);
        }
    }

    /// A validated tensor view over the array read with `layout` (its rank must match).
    /// Fortran-order arrays become strided views (no copy). Float64 arrays must be quantised
    /// first ([`NpyArray::quantize_f64`]).
    pub fn view(&self, layout: Layout) -> Result<TensorView<'_>, NpyError> {
        let dims = &self.dims;
        let shape = layout.bhwc_shape(dims)?;
        // Element strides of the array's own axes. Overflow is impossible: the product of the
        // dimensions was checked when the file was parsed.
        let mut strides = vec![1usize; dims.len()];
        if self.fortran {
            for i in 1..dims.len() {
                strides[i] = strides[i - 1] * dims[i - 1];
            }
        } else {
            for i in (0..dims.len().saturating_sub(1)).rev() {
                strides[i] = strides[i + 1] * dims[i + 1];
            }
        }
        let mut tstrides = [1usize; 4];
        for (t, axis) in layout.axes().into_iter().enumerate() {
            if let Some(a) = axis {
                tstrides[t] = strides[a];
            }
        }
        let data = match &self.elements {
            Elements::F32(v) => TensorData::F32(v),
            Elements::F16(v) => TensorData::F16(v),
            Elements::U8(v) => TensorData::U8(v),
            Elements::F64(_) => {
                return Err(NpyError::unsupported(
                    "float64 arrays are quantised before use (internal order error)",
                ))
            }
        };
        // A missing channel axis keeps stride 1 so that mask rows stay contiguous.
        TensorView::strided(data, shape, tstrides).map_err(|e| {
            NpyError::unsupported(format!("shape {dims:?} read as {}: {e}", layout.name()))
        })
    }
}

/// Checks what `npyz` trusts: that the declared header length fits in the file (it allocates
/// that much) and that the shape's product fits in u64 (it multiplies without checking, which
/// panics in debug builds). The header text itself is parsed by `npyz` afterwards; this scan
/// only looks for the `shape` tuple's integers and leaves anything unusual to `npyz`.
fn precheck_header(bytes: &[u8]) -> Result<(), NpyError> {
    let truncated = || NpyError::malformed("truncated .npy header");
    let prefix = match bytes.get(6) {
        Some(1) => 10,
        Some(2 | 3) => 12,
        Some(v) => {
            return Err(NpyError::malformed(format!(
                "unsupported .npy format version {v}"
            )))
        }
        None => return Err(truncated()),
    };
    let len_bytes = bytes.get(8..prefix).ok_or_else(truncated)?;
    let header_len = len_bytes
        .iter()
        .rev()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    let text = bytes
        .get(prefix..prefix.saturating_add(header_len))
        .ok_or_else(truncated)?;
    let text = String::from_utf8_lossy(text);
    let Some(after) = text
        .find("'shape'")
        .or_else(|| text.find("\"shape\""))
        .map(|i| &text[i + 7..])
    else {
        return Ok(());
    };
    let Some(open) = after.find(['(', '[']) else {
        return Ok(());
    };
    let Some(close) = after[open..].find([')', ']']) else {
        return Ok(());
    };
    let mut product = 1u64;
    for part in after[open + 1..open + close].split(',') {
        if let Ok(d) = part.trim().parse::<u64>() {
            if d != 0 {
                product = product
                    .checked_mul(d)
                    .ok_or_else(|| NpyError::unsupported("shape is too large"))?;
            }
        }
    }
    Ok(())
}

/// Builds a `.npy` file (format 1.0) from a header's `descr`, order, shape text and raw data:
/// for tests and examples.
#[doc(hidden)]
pub fn build(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut h = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
        if fortran { "True" } else { "False" }
    );
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use build as npy;

    #[test]
    fn guesses_layouts() {
        let g = |d: &[usize]| Layout::guess(d).ok();
        assert_eq!(g(&[2, 8, 8, 3]), Some(Layout::Bhwc));
        assert_eq!(g(&[2, 3, 8, 8]), Some(Layout::Bchw));
        assert_eq!(g(&[8, 8, 3]), Some(Layout::Hwc));
        assert_eq!(g(&[8, 8, 5]), Some(Layout::Bhw));
        assert_eq!(g(&[1, 8, 8]), Some(Layout::Bhw));
        assert_eq!(g(&[3, 4]), Some(Layout::Hw));
        assert_eq!(g(&[3]), None);
        assert_eq!(g(&[1, 2, 3, 4, 5]), None);
        assert_eq!(g(&[2, 8, 8, 8]), None);
        for (d, a, b) in [
            (&[3usize, 8, 8][..], Layout::Chw, Layout::Bhw),
            (&[3, 8, 3][..], Layout::Hwc, Layout::Chw),
            (&[1, 8, 4][..], Layout::Hwc, Layout::Chw),
            (&[2, 3, 8, 4][..], Layout::Bhwc, Layout::Bchw),
        ] {
            let e = Layout::guess(d).unwrap_err();
            assert_eq!(
                e,
                LayoutError::Ambiguous {
                    dims: d.to_vec(),
                    choices: [a, b]
                }
            );
            assert!(e.to_string().contains("ambiguous"), "{e}");
        }
        for l in Layout::ALL {
            assert_eq!(Layout::from_name(&l.name().to_uppercase()), Some(l));
        }
        assert_eq!(Layout::from_name("nchw"), None);
    }

    #[test]
    fn channels_first_is_a_strided_view() {
        // [C=3,H=1,W=2] u8: channel c of pixel x is 10c + x.
        let data = [0u8, 1, 10, 11, 20, 21];
        let a = NpyArray::parse(&npy("|u1", false, "(3, 1, 2)", &data)).unwrap();
        let v = a.view(Layout::Chw).unwrap();
        assert_eq!(v.shape(), [1, 1, 2, 3]);
        let img = v.image(0).unwrap();
        let TensorData::U8(d) = img.data() else {
            panic!("u8")
        };
        let [_, sw, sc] = img.strides();
        assert_eq!(d[sw + 2 * sc], 21);
        assert_eq!(d[sc], 10);
        assert!(a
            .view(Layout::Bchw)
            .unwrap_err()
            .to_string()
            .contains("4-D"));
    }

    #[test]
    fn fortran_order_is_a_strided_view() {
        // A [H=2,W=3,C=1] u8 array in Fortran order: element (y,x) is at y + 2x.
        let data = [0u8, 10, 1, 11, 2, 12];
        let a = NpyArray::parse(&npy("|u1", true, "(2, 3, 1)", &data)).unwrap();
        let v = a.view(Layout::Hwc).unwrap();
        let img = v.image(0).unwrap();
        let TensorData::U8(d) = img.data() else {
            panic!("u8")
        };
        let [sh, sw, _] = img.strides();
        assert_eq!(d[sh + 2 * sw], 12);
        assert_eq!(d[2 * sw], 2);
    }

    #[test]
    fn big_endian_and_half() {
        let data: Vec<u8> = [0.5f32, 1.0].iter().flat_map(|x| x.to_be_bytes()).collect();
        let a = NpyArray::parse(&npy(">f4", false, "(1, 2)", &data)).unwrap();
        let Elements::F32(v) = &a.elements else {
            panic!("f32")
        };
        assert_eq!(v, &[0.5, 1.0]);
        let data: Vec<u8> = [f16::from_f32(0.25), f16::ONE]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let a = NpyArray::parse(&npy("<f2", false, "(1, 2)", &data)).unwrap();
        let Elements::F16(v) = &a.elements else {
            panic!("f16")
        };
        assert_eq!(v[0].to_f32(), 0.25);
    }

    #[test]
    fn refusals() {
        let msg = |b: &[u8]| NpyHeader::parse(b).unwrap_err();
        let cases: Vec<(Vec<u8>, &str, bool)> = vec![
            (b"hello".to_vec(), "not a .npy", true),
            (
                npy("<f4", false, "(1, 2)", &[0; 8])[..20].to_vec(),
                "truncated .npy header",
                true,
            ),
            (npy("<f4", false, "(1, 2)", &[0; 7]), "truncated", true),
            (npy("<f4", false, "(1, 2)", &[0; 9]), "after the data", true),
            (
                npy("<i4", false, "(1, 2)", &[0; 8]),
                "unsupported dtype",
                false,
            ),
            (
                npy("<c8", false, "(1, 2)", &[0; 16]),
                "unsupported dtype",
                false,
            ),
            (
                npy("<f4", false, "(4294967296, 4294967296, 4294967296)", &[]),
                "too large",
                false,
            ),
            (
                npy("<f4", false, "(4294967296, 4294967296, 0)", &[]),
                "too large",
                false,
            ),
        ];
        for (bytes, want, malformed) in cases {
            let e = msg(&bytes);
            assert!(e.to_string().contains(want), "{e} lacks {want}");
            assert_eq!(e.is_malformed(), malformed, "{e}");
        }
        let mut long = npy("<f4", false, "(1, 2)", &[0; 8]);
        long[8] = 0xff;
        long[9] = 0xff;
        assert!(msg(&long).to_string().contains("truncated .npy header"));
        let mut v9 = npy("<f4", false, "(1, 2)", &[0; 8]);
        v9[6] = 9;
        assert!(msg(&v9).to_string().contains("version 9"));
        let a = NpyArray::parse(&npy("|u1", false, "(0, 3)", &[])).unwrap();
        assert!(a.view(Layout::Hw).unwrap_err().to_string().contains("zero"));
    }

    #[test]
    fn header_checks_agree_with_views() {
        let h = NpyHeader::parse(&npy("|u1", false, "(0, 3)", &[])).unwrap();
        assert!(h
            .check_layout(Layout::Hw)
            .unwrap_err()
            .to_string()
            .contains("zero"));
        let h = NpyHeader::parse(&npy("|u1", false, "(2, 3, 5)", &[0; 30])).unwrap();
        assert!(h.check_layout(Layout::Hwc).is_err());
        assert_eq!(h.check_layout(Layout::Bhw).unwrap(), [2, 3, 5, 1]);
        let h = NpyHeader::parse(&npy("<f4", false, "(2, 3, 4)", &[0; 96])).unwrap();
        assert_eq!(h.check_layout(Layout::Hwc).unwrap(), [1, 2, 3, 4]);
        assert!(h.check_layout(Layout::Bhwc).is_err());
        let a = NpyArray::decode(&h, &npy("<f4", false, "(2, 3, 4)", &[0; 96]));
        assert_eq!(a.view(Layout::Hwc).unwrap().shape(), [1, 2, 3, 4]);
    }
}
