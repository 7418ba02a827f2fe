//! Reading `.npy` arrays: the header is parsed by `npyz`, the data is decoded here in bulk.
//!
//! Accepted element types: `f4` (f32), `f2` (f16), `u1` (u8), `f8` (f64, numpy's default float:
//! quantised at load in f64, see [`NpyArray::quantize_f64`]), little- or big-endian, C or
//! Fortran order. Anything else (other dtypes, structured or pickled arrays, a data section
//! shorter or longer than the shape needs) is refused with a message naming the problem.
//! Cost: the file is read once into memory, plus one decoded copy for float types.

use std::path::Path;

use half::f16;
use npyz::{DType as NpyDType, Endianness, NpyHeader, Order, TypeChar};
use pngcast_core::tensor::{TensorData, TensorView};

use crate::error::CliError;

/// The magic every `.npy` file starts with.
pub const MAGIC: &[u8] = b"\x93NUMPY";

/// How the axes of an array are read, when the default guess (see [`Layout::guess`]) is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
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

impl Layout {
    /// The layout of an array given without `--layout`, or a message naming the `--layout` to
    /// give. Only shapes with one reading (or readings that give the same images) are accepted:
    ///
    /// - rank 2 `[H,W]`: hw;
    /// - rank 3 `[A,B,C]`: channels-last is possible when C is 1..=4, channels-first when A is
    ///   1..=4. Both possible: ambiguous. Only channels-last: hwc. Only channels-first: A = 1 is
    ///   bhw (one mask, the same image as chw), A in 2..=4 is ambiguous (chw, or a bhw batch of
    ///   A masks). Neither: bhw;
    /// - rank 4 `[B,X,Y,C]`: bhwc when only C is 1..=4, bchw when only X is 1..=4; both:
    ///   ambiguous; neither: refused.
    pub fn guess(dims: &[usize]) -> Result<Layout, String> {
        let ch = |n: usize| (1..=4).contains(&n);
        let ambiguous = |a: &str, b: &str| {
            format!("shape {dims:?} is ambiguous: give --layout {a} or --layout {b} (see --help)")
        };
        match *dims {
            [_, _] => Ok(Layout::Hw),
            [a, _, c] => match (ch(a), ch(c)) {
                (true, true) => Err(ambiguous("hwc", "chw")),
                (false, true) => Ok(Layout::Hwc),
                (true, false) if a == 1 => Ok(Layout::Bhw),
                (true, false) => Err(ambiguous("chw", "bhw")),
                (false, false) => Ok(Layout::Bhw),
            },
            [_, x, _, c] => match (ch(x), ch(c)) {
                (true, true) => Err(ambiguous("bhwc", "bchw")),
                (false, true) => Ok(Layout::Bhwc),
                (true, false) => Ok(Layout::Bchw),
                (false, false) => Err(format!(
                    "shape {dims:?}: neither [B,H,W,C] nor [B,C,H,W] has 1..4 channels"
                )),
            },
            _ => Err(format!(
                "unsupported shape {dims:?}: expected [B,H,W,C], [B,C,H,W], [H,W,C], [C,H,W], [B,H,W] or [H,W]"
            )),
        }
    }

    fn rank(self) -> usize {
        match self {
            Layout::Bhwc | Layout::Bchw => 4,
            Layout::Hwc | Layout::Bhw | Layout::Chw => 3,
            Layout::Hw => 2,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Layout::Bhwc => "bhwc",
            Layout::Hwc => "hwc",
            Layout::Bhw => "bhw",
            Layout::Hw => "hw",
            Layout::Chw => "chw",
            Layout::Bchw => "bchw",
        }
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
}

/// Decoded elements of an array, in file order.
#[derive(Debug)]
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

impl Elements {
    fn data(&self) -> Result<TensorData<'_>, CliError> {
        Ok(match self {
            Elements::F32(v) => TensorData::F32(v),
            Elements::F16(v) => TensorData::F16(v),
            Elements::U8(v) => TensorData::U8(v),
            Elements::F64(_) => {
                return Err(CliError::new(
                    "float64 arrays are quantised before use (internal order error)",
                ))
            }
        })
    }
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
pub struct NpyArray {
    /// The shape as written in the file.
    pub dims: Vec<usize>,
    /// Fortran (column-major) order: the first axis varies fastest.
    pub fortran: bool,
    /// The elements.
    pub elements: Elements,
}

impl NpyArray {
    /// Parses a whole `.npy` file. `name` is used in messages.
    pub fn parse(bytes: &[u8], name: &Path) -> Result<Self, CliError> {
        let name = name.display();
        if !bytes.starts_with(MAGIC) {
            return Err(CliError::new(format!(
                "{name}: not a .npy file (no \\x93NUMPY magic)"
            )));
        }
        precheck_header(bytes, &name)?;
        let mut rest = bytes;
        let header = NpyHeader::from_reader(&mut rest).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                CliError::new(format!("{name}: truncated .npy header"))
            } else {
                CliError::new(format!("{name}: malformed .npy header: {e}"))
            }
        })?;
        let NpyDType::Plain(ts) = header.dtype() else {
            return Err(CliError::new(format!(
                "{name}: unsupported dtype {} (structured arrays are not images; expected float32, float16 or uint8)",
                header.dtype().descr()
            )));
        };
        let big = ts.endianness() == Endianness::Big;
        let size = ts.num_bytes().unwrap_or(0);
        #[derive(Clone, Copy)]
        enum Kind {
            F32,
            F16,
            U8,
            F64,
        }
        let kind = match (ts.type_char(), size) {
            (TypeChar::Float, 4) => Kind::F32,
            (TypeChar::Float, 2) => Kind::F16,
            (TypeChar::Uint, 1) => Kind::U8,
            (TypeChar::Float, 8) => Kind::F64,
            _ => {
                return Err(CliError::new(format!(
                    "{name}: unsupported dtype {ts} (expected float32 '<f4', float64 '<f8', float16 '<f2' or uint8 '|u1')"
                )))
            }
        };
        let dims: Vec<usize> = header
            .shape()
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<_, _>>()
            .map_err(|_| {
                CliError::new(format!("{name}: shape {:?} is too large", header.shape()))
            })?;
        let count = dims
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| CliError::new(format!("{name}: shape {dims:?} is too large")))?;
        let need = count
            .checked_mul(size)
            .ok_or_else(|| CliError::new(format!("{name}: shape {dims:?} is too large")))?;
        if rest.len() < need {
            return Err(CliError::new(format!(
                "{name}: truncated: shape {dims:?} of {ts} needs {need} data bytes, the file holds {}",
                rest.len()
            )));
        }
        if rest.len() > need {
            return Err(CliError::new(format!(
                "{name}: {} bytes after the data of shape {dims:?} of {ts} (corrupt or not a plain .npy array)",
                rest.len() - need
            )));
        }
        let elements = match kind {
            Kind::F32 => Elements::F32(
                rest.chunks_exact(4)
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
            Kind::F16 => Elements::F16(
                rest.chunks_exact(2)
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
            Kind::U8 => Elements::U8(rest.to_vec()),
            Kind::F64 => Elements::F64(
                rest.chunks_exact(8)
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
        Ok(NpyArray {
            dims,
            fortran: header.order() == Order::Fortran,
            elements,
        })
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

    /// A validated tensor view over the array: `layout` if given (its rank must match), else
    /// the [`Layout::guess`]. Fortran-order arrays become strided views (no copy).
    pub fn view(&self, layout: Option<Layout>) -> Result<TensorView<'_>, CliError> {
        let dims = &self.dims;
        let layout = match layout {
            Some(l) if l.rank() != dims.len() => {
                return Err(CliError::new(format!(
                    "--layout {} needs a {}-D array, the input has shape {dims:?}",
                    l.name(),
                    l.rank()
                )))
            }
            Some(l) => l,
            None => Layout::guess(dims).map_err(CliError::new)?,
        };
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
        let mut shape = [1usize; 4];
        let mut tstrides = [1usize; 4];
        for (t, axis) in layout.axes().into_iter().enumerate() {
            if let Some(a) = axis {
                shape[t] = dims[a];
                tstrides[t] = strides[a];
            }
        }
        // A missing channel axis keeps stride 1 so that mask rows stay contiguous.
        TensorView::strided(self.elements.data()?, shape, tstrides)
            .map_err(|e| CliError::new(format!("shape {dims:?} read as {}: {e}", layout.name())))
    }
}

/// Checks what `npyz` trusts: that the declared header length fits in the file (it allocates
/// that much) and that the shape's product fits in u64 (it multiplies without checking, which
/// panics in debug builds). The header text itself is parsed by `npyz` afterwards; this scan
/// only looks for the `shape` tuple's integers and leaves anything unusual to `npyz`.
fn precheck_header(bytes: &[u8], name: &impl std::fmt::Display) -> Result<(), CliError> {
    let truncated = || CliError::new(format!("{name}: truncated .npy header"));
    let prefix = match bytes.get(6) {
        Some(1) => 10,
        Some(2 | 3) => 12,
        Some(v) => {
            return Err(CliError::new(format!(
                "{name}: unsupported .npy format version {v}"
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
                    .ok_or_else(|| CliError::new(format!("{name}: shape is too large")))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut h = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
            if fortran { "True" } else { "False" }
        );
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out
    }

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
        // Two readings that give different images: refused, naming the --layout values.
        for (d, a, b) in [
            (&[3usize, 8, 8][..], "chw", "bhw"),
            (&[3, 8, 3][..], "hwc", "chw"),
            (&[1, 8, 4][..], "hwc", "chw"),
            (&[2, 3, 8, 4][..], "bhwc", "bchw"),
        ] {
            let e = Layout::guess(d).unwrap_err();
            assert!(
                e.contains("ambiguous")
                    && e.contains(&format!("--layout {a}"))
                    && e.contains(&format!("--layout {b}")),
                "{d:?}: {e}"
            );
        }
    }

    #[test]
    fn channels_first_is_a_strided_view() {
        // [C=3,H=1,W=2] u8: channel c of pixel x is 10c + x.
        let data = [0u8, 1, 10, 11, 20, 21];
        let a = NpyArray::parse(&npy("|u1", false, "(3, 1, 2)", &data), Path::new("t")).unwrap();
        assert!(a.view(None).unwrap_err().to_string().contains("ambiguous"));
        let v = a.view(Some(Layout::Chw)).unwrap();
        assert_eq!(v.shape(), [1, 1, 2, 3]);
        let img = v.image(0).unwrap();
        let TensorData::U8(d) = img.data() else {
            panic!("u8")
        };
        let [_, sw, sc] = img.strides();
        assert_eq!(d[sw + 2 * sc], 21);
        assert_eq!(d[sc], 10);
        // The same pixels as a [B=1,C,H,W] batch.
        let b = npy("|u1", false, "(1, 3, 1, 2)", &data);
        let a = NpyArray::parse(&b, Path::new("t")).unwrap();
        let v = a.view(Some(Layout::Bchw)).unwrap();
        assert_eq!(v.shape(), [1, 1, 2, 3]);
        assert!(a
            .view(Some(Layout::Chw))
            .unwrap_err()
            .to_string()
            .contains("3-D"));
    }

    #[test]
    fn fortran_order_is_a_strided_view() {
        // A [H=2,W=3,C=1] u8 array in Fortran order: element (y,x) is at y + 2x.
        let data = [0u8, 10, 1, 11, 2, 12];
        let a = NpyArray::parse(&npy("|u1", true, "(2, 3, 1)", &data), Path::new("t")).unwrap();
        let v = a.view(Some(Layout::Hwc)).unwrap();
        assert_eq!(v.shape(), [1, 2, 3, 1]);
        let img = v.image(0).unwrap();
        let TensorData::U8(d) = img.data() else {
            panic!("u8")
        };
        let [sh, sw, _] = img.strides();
        assert_eq!(d[sh + 2 * sw], 12);
        assert_eq!(d[2 * sw], 2);
    }

    #[test]
    fn big_endian_f32() {
        let data: Vec<u8> = [0.5f32, 1.0].iter().flat_map(|x| x.to_be_bytes()).collect();
        let a = NpyArray::parse(&npy(">f4", false, "(1, 2)", &data), Path::new("t")).unwrap();
        let Elements::F32(v) = &a.elements else {
            panic!("f32")
        };
        assert_eq!(v, &[0.5, 1.0]);
    }

    #[test]
    fn refusals() {
        let p = Path::new("t");
        let msg = |b: &[u8]| NpyArray::parse(b, p).unwrap_err().to_string();
        assert!(msg(b"hello").contains("not a .npy"));
        assert!(msg(&npy("<f4", false, "(1, 2)", &[0; 8])[..20]).contains("truncated .npy header"));
        assert!(msg(&npy("<f4", false, "(1, 2)", &[0; 7])).contains("truncated"));
        assert!(msg(&npy("<f4", false, "(1, 2)", &[0; 9])).contains("after the data"));
        assert!(msg(&npy("<i4", false, "(1, 2)", &[0; 8])).contains("unsupported dtype"));
        assert!(msg(&npy("<c8", false, "(1, 2)", &[0; 16])).contains("unsupported dtype"));
        let huge = npy("<f4", false, "(4294967296, 4294967296, 4294967296)", &[]);
        assert!(msg(&huge).contains("too large"));
        // The product overflows before a later zero would make it 0.
        let huge = npy("<f4", false, "(4294967296, 4294967296, 0)", &[]);
        assert!(msg(&huge).contains("too large"));
        let mut long = npy("<f4", false, "(1, 2)", &[0; 8]);
        long[8] = 0xff;
        long[9] = 0xff;
        assert!(msg(&long).contains("truncated .npy header"));
        let mut v9 = npy("<f4", false, "(1, 2)", &[0; 8]);
        v9[6] = 9;
        assert!(msg(&v9).contains("version 9"));
        let a = NpyArray::parse(&npy("|u1", false, "(2,)", &[0; 2]), p).unwrap();
        assert!(a
            .view(None)
            .unwrap_err()
            .to_string()
            .contains("unsupported shape"));
        let a = NpyArray::parse(&npy("|u1", false, "(2, 3)", &[0; 6]), p).unwrap();
        assert!(a
            .view(Some(Layout::Hwc))
            .unwrap_err()
            .to_string()
            .contains("needs a 3-D"));
        let a = NpyArray::parse(&npy("|u1", false, "(0, 3)", &[]), p).unwrap();
        assert!(a.view(None).unwrap_err().to_string().contains("zero"));
    }
}
