//! `nan="error"`: finds the first image of a batch that holds a NaN, so that callers that must
//! refuse NaN (ComfyUI's node) pay one parallel read of the batch in Rust, not a second
//! framework call (torch's reductions run on OpenMP threads whose spin-wait then competes with
//! the encoder's threads for the cores).

use half::{bf16, f16};
use rayon::prelude::*;

use pngcast_core::tensor::{ImageView, TensorData, TensorView};

/// Index of the first image with a NaN sample, if any (u8 images have none).
pub fn first_nan_image(view: &TensorView<'_>) -> Option<usize> {
    let images: Vec<ImageView<'_>> = view.images().collect();
    images
        .par_iter()
        .enumerate()
        .filter(|(_, img)| image_has_nan(img))
        .map(|(i, _)| i)
        .min()
}

fn image_has_nan(img: &ImageView<'_>) -> bool {
    if matches!(img.data(), TensorData::U8(_)) {
        return false;
    }
    (0..img.height())
        .into_par_iter()
        .any(|y| row_has_nan(img, y))
}

fn row_has_nan(img: &ImageView<'_>, y: usize) -> bool {
    if let Some(row) = img.row(y) {
        return match row {
            TensorData::F32(s) => any_nan(s, |v| v.is_nan()),
            TensorData::F16(s) => any_nan(s, |v: &f16| v.is_nan()),
            TensorData::BF16(s) => any_nan(s, |v: &bf16| v.is_nan()),
            TensorData::U8(_) => false,
        };
    }
    // Strided rows: sample by sample.
    let [sh, sw, sc] = img.strides();
    let base = y * sh;
    let data = img.data();
    (0..img.width()).any(|x| {
        (0..img.channels()).any(|c| {
            let i = base + x * sw + c * sc;
            match data {
                TensorData::F32(s) => s[i].is_nan(),
                TensorData::F16(s) => s[i].is_nan(),
                TensorData::BF16(s) => s[i].is_nan(),
                TensorData::U8(_) => false,
            }
        })
    })
}

/// Branch-free over chunks (vectorises), early exit between chunks.
fn any_nan<T>(s: &[T], is_nan: impl Fn(&T) -> bool) -> bool {
    s.chunks(256)
        .any(|c| c.iter().fold(false, |acc, v| acc | is_nan(v)))
}
