//! Reading `.npy` arrays for `encode` and the file source: `pngcast_protocol::npy` does the work
//! (the same reader the server's ingest endpoint uses); this module adds the `--layout` flag
//! and messages that name the file and the flag.
//!
//! Accepted element types: `f4` (f32), `f2` (f16), `u1` (u8), `f8` (f64, numpy's default float:
//! quantised at load in f64, see [`NpyArray::quantize_f64`]), little- or big-endian, C or
//! Fortran order. Anything else is refused with a message naming the problem.
//! Cost: the file is read once into memory, plus one decoded copy for float types.

use std::path::Path;

use pngcast_core::tensor::TensorView;
use pngcast_protocol::npy::{self as pnpy, LayoutError};

use crate::error::CliError;

pub use pngcast_protocol::npy::MAGIC;

#[cfg(test)]
use pngcast_core::tensor::TensorData;
#[cfg(test)]
use pngcast_protocol::npy::Elements;

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

impl From<Layout> for pnpy::Layout {
    fn from(l: Layout) -> Self {
        match l {
            Layout::Bhwc => pnpy::Layout::Bhwc,
            Layout::Hwc => pnpy::Layout::Hwc,
            Layout::Bhw => pnpy::Layout::Bhw,
            Layout::Hw => pnpy::Layout::Hw,
            Layout::Chw => pnpy::Layout::Chw,
            Layout::Bchw => pnpy::Layout::Bchw,
        }
    }
}

impl Layout {
    /// The layout of an array given without `--layout` ([`pnpy::Layout::guess`]'s rule), or a
    /// message naming the `--layout` values to choose from.
    pub fn guess(dims: &[usize]) -> Result<Layout, String> {
        let found = pnpy::Layout::guess(dims).map_err(|e| match e {
            LayoutError::Ambiguous {
                dims,
                choices: [a, b],
            } => format!(
                "shape {dims:?} is ambiguous: give --layout {} or --layout {} (see --help)",
                a.name(),
                b.name()
            ),
            other => other.to_string(),
        })?;
        Ok(*<Layout as clap::ValueEnum>::value_variants()
            .iter()
            .find(|l| pnpy::Layout::from(**l) == found)
            .expect("every layout has a --layout value"))
    }
}

/// A `.npy` array held in memory.
#[derive(Debug)]
pub struct NpyArray(pnpy::NpyArray);

impl NpyArray {
    /// Parses a whole `.npy` file. `name` is used in messages.
    pub fn parse(bytes: &[u8], name: &Path) -> Result<Self, CliError> {
        pnpy::NpyArray::parse(bytes)
            .map(NpyArray)
            .map_err(|e| CliError::new(format!("{}: {e}", name.display())))
    }

    /// Whether the array holds float64 elements (not yet quantised).
    pub fn is_f64(&self) -> bool {
        self.0.is_f64()
    }

    /// Quantises float64 elements to 8-bit samples in f64, bit-exact with numpy's own
    /// `np.clip(255 * x, 0, 255).astype(np.uint8)`; `round` applies `np.rint` first.
    pub fn quantize_f64(&mut self, round: bool) {
        self.0.quantize_f64(round)
    }

    /// A validated tensor view over the array: `layout` if given (its rank must match), else
    /// the [`Layout::guess`]. Fortran-order arrays become strided views (no copy).
    pub fn view(&self, layout: Option<Layout>) -> Result<TensorView<'_>, CliError> {
        let dims = &self.0.dims;
        let layout = match layout {
            Some(l) => {
                let l = pnpy::Layout::from(l);
                if l.rank() != dims.len() {
                    return Err(CliError::new(format!(
                        "--layout {} needs a {}-D array, the input has shape {dims:?}",
                        l.name(),
                        l.rank()
                    )));
                }
                l
            }
            None => Layout::guess(dims).map_err(CliError::new)?.into(),
        };
        self.0
            .view(layout)
            .map_err(|e| CliError::new(e.to_string()))
    }

    #[cfg(test)]
    fn elements(&self) -> &Elements {
        &self.0.elements
    }
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
        let Elements::F32(v) = a.elements() else {
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
