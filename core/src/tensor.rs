#![forbid(unsafe_code)]
//! Borrowed views over image tensors: `[B,H,W,C]`, `[H,W,C]` and `[B,H,W]` masks, in f32, f16, bf16
//! or u8, contiguous or strided. A view never copies; it only checks that the shape, the strides
//! and the buffer agree, so that every later index is in bounds.

use crate::error::{Error, Result};
use half::{bf16, f16};

/// PNG allows each side up to 2^31 - 1.
pub const MAX_PNG_SIDE: usize = (1 << 31) - 1;

/// Element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE 754 binary32, ComfyUI's IMAGE type. Values in 0..=1.
    F32,
    /// IEEE 754 binary16. Widened to f32, then quantised as f32.
    F16,
    /// bfloat16. Widened to f32, then quantised as f32.
    BF16,
    /// Already quantised 8-bit samples; passed through.
    U8,
}

impl DType {
    /// Size of one element in bytes.
    pub const fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::U8 => 1,
        }
    }
}

/// A borrowed element buffer of one of the supported types.
#[derive(Debug, Clone, Copy)]
pub enum TensorData<'a> {
    /// f32 elements.
    F32(&'a [f32]),
    /// f16 elements.
    F16(&'a [f16]),
    /// bf16 elements.
    BF16(&'a [bf16]),
    /// u8 elements.
    U8(&'a [u8]),
}

impl<'a> TensorData<'a> {
    /// Element type.
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::F16(_) => DType::F16,
            TensorData::BF16(_) => DType::BF16,
            TensorData::U8(_) => DType::U8,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(s) => s.len(),
            TensorData::F16(s) => s.len(),
            TensorData::BF16(s) => s.len(),
            TensorData::U8(s) => s.len(),
        }
    }

    /// True when the buffer holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sub-buffer `start..start + len`. The caller guarantees the range is in bounds
    /// (views check this once at construction).
    pub(crate) fn slice(&self, start: usize, len: usize) -> TensorData<'a> {
        match *self {
            TensorData::F32(s) => TensorData::F32(&s[start..start + len]),
            TensorData::F16(s) => TensorData::F16(&s[start..start + len]),
            TensorData::BF16(s) => TensorData::BF16(&s[start..start + len]),
            TensorData::U8(s) => TensorData::U8(&s[start..start + len]),
        }
    }
}

impl<'a> From<&'a [f32]> for TensorData<'a> {
    fn from(s: &'a [f32]) -> Self {
        TensorData::F32(s)
    }
}
impl<'a> From<&'a [f16]> for TensorData<'a> {
    fn from(s: &'a [f16]) -> Self {
        TensorData::F16(s)
    }
}
impl<'a> From<&'a [bf16]> for TensorData<'a> {
    fn from(s: &'a [bf16]) -> Self {
        TensorData::BF16(s)
    }
}
impl<'a> From<&'a [u8]> for TensorData<'a> {
    fn from(s: &'a [u8]) -> Self {
        TensorData::U8(s)
    }
}
impl<'a> From<&'a Vec<f32>> for TensorData<'a> {
    fn from(s: &'a Vec<f32>) -> Self {
        TensorData::F32(s)
    }
}
impl<'a> From<&'a Vec<u8>> for TensorData<'a> {
    fn from(s: &'a Vec<u8>) -> Self {
        TensorData::U8(s)
    }
}

/// A validated `[batch, height, width, channels]` view with element strides.
///
/// Construction checks everything once (non-zero sizes, 1..=4 channels, PNG's side limit, no
/// overflow, buffer long enough for the farthest element), so that reading any element of any
/// image afterwards is in bounds. Costs O(1); never copies.
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    data: TensorData<'a>,
    shape: [usize; 4],
    strides: [usize; 4],
}

impl<'a> TensorView<'a> {
    /// A contiguous `[B,H,W,C]` tensor (ComfyUI's IMAGE layout).
    pub fn bhwc(data: impl Into<TensorData<'a>>, shape: [usize; 4]) -> Result<Self> {
        let [_, h, w, c] = shape;
        let strides = contiguous_strides(h, w, c)?;
        Self::strided(data, shape, strides)
    }

    /// A contiguous `[H,W,C]` tensor: one image.
    pub fn hwc(data: impl Into<TensorData<'a>>, shape: [usize; 3]) -> Result<Self> {
        let [h, w, c] = shape;
        Self::bhwc(data, [1, h, w, c])
    }

    /// A contiguous `[B,H,W]` mask tensor: one gray channel.
    pub fn mask(data: impl Into<TensorData<'a>>, shape: [usize; 3]) -> Result<Self> {
        let [b, h, w] = shape;
        Self::bhwc(data, [b, h, w, 1])
    }

    /// Interprets a shape the way the CLI reads `.npy` arrays: rank 4 is `[B,H,W,C]`; rank 3 is
    /// `[H,W,C]` when its last dimension is 1..=4 and a `[B,H,W]` mask otherwise; rank 2 is one
    /// `[H,W]` gray image.
    pub fn from_dims(data: impl Into<TensorData<'a>>, dims: &[usize]) -> Result<Self> {
        match *dims {
            [b, h, w, c] => Self::bhwc(data, [b, h, w, c]),
            [h, w, c] if (1..=4).contains(&c) => Self::hwc(data, [h, w, c]),
            [b, h, w] => Self::mask(data, [b, h, w]),
            [h, w] => Self::bhwc(data, [1, h, w, 1]),
            _ => Err(Error::UnsupportedRank(dims.len())),
        }
    }

    /// A general strided view: `shape` is `[B,H,W,C]` and `strides` the distance in elements
    /// between neighbours along each axis. A channels-first `[B,C,H,W]` buffer is viewed as
    /// channels-last with strides `[C*H*W, W, 1, H*W]`. To start at an offset, slice `data`.
    pub fn strided(
        data: impl Into<TensorData<'a>>,
        shape: [usize; 4],
        strides: [usize; 4],
    ) -> Result<Self> {
        let data = data.into();
        let [b, h, w, c] = shape;
        for (axis, n) in ["batch", "height", "width", "channels"]
            .into_iter()
            .zip(shape)
        {
            if n == 0 {
                return Err(Error::ZeroDimension { axis });
            }
        }
        if !(1..=4).contains(&c) {
            return Err(Error::UnsupportedChannels(c));
        }
        if h > MAX_PNG_SIDE || w > MAX_PNG_SIDE {
            return Err(Error::ImageTooLarge {
                width: w,
                height: h,
            });
        }
        // Index of the farthest element, plus one.
        let mut last = 0usize;
        for (n, s) in [b, h, w, c].into_iter().zip(strides) {
            let span = (n - 1)
                .checked_mul(s)
                .ok_or(Error::SizeOverflow("stride times dimension"))?;
            last = last
                .checked_add(span)
                .ok_or(Error::SizeOverflow("farthest element index"))?;
        }
        let need = last
            .checked_add(1)
            .ok_or(Error::SizeOverflow("element count"))?;
        // Also the number of pixels and output bytes must be representable.
        h.checked_mul(w)
            .and_then(|p| p.checked_mul(c))
            .and_then(|p| p.checked_mul(2))
            .ok_or(Error::SizeOverflow("image bytes"))?;
        if data.len() < need {
            return Err(Error::BufferTooShort {
                need,
                got: data.len(),
            });
        }
        Ok(Self {
            data,
            shape,
            strides,
        })
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }
    /// `[B,H,W,C]`.
    pub fn shape(&self) -> [usize; 4] {
        self.shape
    }
    /// Element strides along `[B,H,W,C]`.
    pub fn strides(&self) -> [usize; 4] {
        self.strides
    }
    /// Number of images in the batch.
    pub fn batch(&self) -> usize {
        self.shape[0]
    }
    /// Image height in pixels.
    pub fn height(&self) -> usize {
        self.shape[1]
    }
    /// Image width in pixels.
    pub fn width(&self) -> usize {
        self.shape[2]
    }
    /// Channels per pixel, 1..=4.
    pub fn channels(&self) -> usize {
        self.shape[3]
    }

    /// Image `index` of the batch.
    pub fn image(&self, index: usize) -> Result<ImageView<'a>> {
        if index >= self.shape[0] {
            return Err(Error::IndexOutOfRange {
                index,
                batch: self.shape[0],
            });
        }
        let [_, h, w, c] = self.shape;
        let [sb, sh, sw, sc] = self.strides;
        let start = index * sb; // in bounds: checked at construction
        let span = (h - 1) * sh + (w - 1) * sw + (c - 1) * sc + 1;
        Ok(ImageView {
            data: self.data.slice(start, span),
            height: h,
            width: w,
            channels: c,
            strides: [sh, sw, sc],
        })
    }

    /// The images of the batch in order.
    pub fn images(&self) -> impl ExactSizeIterator<Item = ImageView<'a>> + '_ {
        (0..self.batch()).map(move |i| self.image(i).expect("index < batch"))
    }
}

fn contiguous_strides(h: usize, w: usize, c: usize) -> Result<[usize; 4]> {
    let sw = c;
    let sh = w.checked_mul(c).ok_or(Error::SizeOverflow("row length"))?;
    let sb = h
        .checked_mul(sh)
        .ok_or(Error::SizeOverflow("image length"))?;
    Ok([sb, sh, sw, 1])
}

/// One validated `[H,W,C]` image: the unit the converter and the encoder work on.
#[derive(Debug, Clone, Copy)]
pub struct ImageView<'a> {
    data: TensorData<'a>,
    height: usize,
    width: usize,
    channels: usize,
    strides: [usize; 3],
}

impl<'a> ImageView<'a> {
    /// A contiguous `[H,W,C]` image.
    pub fn hwc(data: impl Into<TensorData<'a>>, shape: [usize; 3]) -> Result<Self> {
        TensorView::hwc(data, shape)?.image(0)
    }
    /// Element type.
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }
    /// Height in pixels (1..=2^31-1).
    pub fn height(&self) -> usize {
        self.height
    }
    /// Width in pixels (1..=2^31-1).
    pub fn width(&self) -> usize {
        self.width
    }
    /// Channels per pixel, 1..=4.
    pub fn channels(&self) -> usize {
        self.channels
    }
    /// Element strides along `[H,W,C]`.
    pub fn strides(&self) -> [usize; 3] {
        self.strides
    }
    /// Samples in one row (`width * channels`).
    pub fn row_len(&self) -> usize {
        self.width * self.channels
    }
    /// True when each row's samples are adjacent (`[.., C, 1]` strides), so a row is one slice.
    pub fn rows_contiguous(&self) -> bool {
        self.strides[2] == 1 && (self.strides[1] == self.channels || self.width == 1)
    }
    /// True when the whole image is one dense slice in `[H,W,C]` order.
    pub fn is_contiguous(&self) -> bool {
        self.rows_contiguous() && (self.strides[0] == self.row_len() || self.height == 1)
    }
    /// Row `y` as one slice, when rows are contiguous. Panics if `y >= height` (programmer error).
    pub fn row(&self, y: usize) -> Option<TensorData<'a>> {
        assert!(y < self.height, "row {y} out of range");
        self.rows_contiguous()
            .then(|| self.data.slice(y * self.strides[0], self.row_len()))
    }
    /// The whole image as one slice, when it is contiguous.
    pub fn as_contiguous(&self) -> Option<TensorData<'a>> {
        self.is_contiguous()
            .then(|| self.data.slice(0, self.height * self.row_len()))
    }
    /// The underlying buffer, starting at this image's first element; index it with
    /// `y*strides[0] + x*strides[1] + c*strides[2]`.
    pub fn data(&self) -> TensorData<'a> {
        self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_errors() {
        let buf = vec![0.0f32; 2 * 3 * 4 * 3];
        let t = TensorView::bhwc(&buf[..], [2, 3, 4, 3]).unwrap();
        assert_eq!(t.image(1).unwrap().height(), 3);
        assert!(t.image(1).unwrap().is_contiguous());
        assert_eq!(
            t.image(2).unwrap_err(),
            Error::IndexOutOfRange { index: 2, batch: 2 }
        );
        assert_eq!(
            TensorView::bhwc(&buf[..], [2, 3, 4, 5]).unwrap_err(),
            Error::UnsupportedChannels(5)
        );
        assert!(matches!(
            TensorView::bhwc(&buf[..], [0, 3, 4, 3]),
            Err(Error::ZeroDimension { axis: "batch" })
        ));
        assert!(matches!(
            TensorView::bhwc(&buf[..], [3, 3, 4, 3]),
            Err(Error::BufferTooShort { .. })
        ));
        assert!(matches!(
            TensorView::bhwc(&buf[..], [usize::MAX, usize::MAX, 4, 3]),
            Err(Error::SizeOverflow(_)) | Err(Error::ImageTooLarge { .. })
        ));
        assert!(matches!(
            TensorView::bhwc(&buf[..], [1, 1 << 31, 1, 1]),
            Err(Error::ImageTooLarge { .. })
        ));
        assert!(matches!(
            TensorView::strided(&buf[..], [2, 3, 4, 3], [1, usize::MAX / 2, 1, 1]),
            Err(Error::SizeOverflow(_))
        ));
        assert_eq!(
            TensorView::from_dims(&buf[..], &[1]).unwrap_err(),
            Error::UnsupportedRank(1)
        );
        let m = TensorView::from_dims(&buf[..], &[2, 6, 6]).unwrap();
        assert_eq!(m.channels(), 1);
        let hwc = TensorView::from_dims(&buf[..], &[6, 4, 3]).unwrap();
        assert_eq!((hwc.batch(), hwc.channels()), (1, 3));
    }

    #[test]
    fn channels_first_as_strided() {
        // [C=3,H=2,W=2] planar viewed as [1,2,2,3].
        let planar: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let t = TensorView::strided(&planar[..], [1, 2, 2, 3], [12, 2, 1, 4]).unwrap();
        let img = t.image(0).unwrap();
        assert!(!img.rows_contiguous());
        let TensorData::F32(d) = img.data() else {
            panic!()
        };
        let [sh, sw, sc] = img.strides();
        assert_eq!(d[sh + sw + 2 * sc], 11.0);
    }
}
