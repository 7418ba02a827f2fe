//! Shared helpers for the pngcast benchmarks (corpus loading, peers).
//!
//! Images come from the project corpus (`../shared/corpus` beside the workspace, see its README)
//! when it is there, else from the small copies in `benches/images/`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::io::Cursor;
use std::path::{Path, PathBuf};

/// An 8-bit image, tightly packed rows.
#[derive(Debug, Clone)]
pub struct Image {
    /// Short name for bench ids.
    pub name: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Channels per pixel (1..=4).
    pub channels: u8,
    /// `height * width * channels` samples.
    pub pixels: Vec<u8>,
}

impl Image {
    /// Pixels in the image (for `Throughput::Elements`, so criterion reports pixels per second).
    pub fn pixel_count(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }

    /// Bytes of raw samples.
    pub fn raw_bytes(&self) -> usize {
        self.pixels.len()
    }

    /// The `(width - x0) x (height - y0)`-bounded crop of `w x h` at the centre.
    pub fn crop_centre(&self, w: u32, h: u32, name: &str) -> Image {
        let (w, h) = (w.min(self.width), h.min(self.height));
        let (x0, y0) = ((self.width - w) / 2, (self.height - h) / 2);
        let c = usize::from(self.channels);
        let row = self.width as usize * c;
        let mut pixels = Vec::with_capacity(w as usize * h as usize * c);
        for y in y0..y0 + h {
            let start = y as usize * row + x0 as usize * c;
            pixels.extend_from_slice(&self.pixels[start..start + w as usize * c]);
        }
        Image {
            name: name.to_string(),
            width: w,
            height: h,
            channels: self.channels,
            pixels,
        }
    }
}

/// The shared corpus directory (`<workspace>/../shared/corpus`).
pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus")
}

/// `benches/images/`: the copies a fresh clone has.
pub fn images_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("images")
}

/// Decodes a PNG file to 8-bit samples (palette and low depths expanded, 16-bit stripped).
pub fn load_png(path: &Path, name: &str) -> Option<Image> {
    let bytes = std::fs::read(path).ok()?;
    let mut decoder = png::Decoder::new(Cursor::new(&bytes[..]));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().ok()?;
    let mut pixels = vec![0; reader.output_buffer_size()?];
    let frame = reader.next_frame(&mut pixels).ok()?;
    pixels.truncate(frame.buffer_size());
    Some(Image {
        name: name.to_string(),
        width: frame.width,
        height: frame.height,
        channels: frame.color_type.samples() as u8,
        pixels,
    })
}

/// Loads `rel` (e.g. `photo/kodim23.png`) from the corpus, else its file name from
/// `benches/images/`; `None` (with a note on stderr) if neither exists.
pub fn find_image(rel: &str, name: &str) -> Option<Image> {
    let in_corpus = corpus_dir().join(rel);
    let file = Path::new(rel).file_name()?;
    let img = load_png(&in_corpus, name).or_else(|| load_png(&images_dir().join(file), name));
    if img.is_none() {
        eprintln!(
            "note: {rel} is in neither {} nor benches/images; skipped",
            corpus_dir().display()
        );
    }
    img
}

/// Uniform noise (incompressible): the worst case for every coder.
pub fn noise(width: u32, height: u32, channels: u8, seed: u64) -> Image {
    let mut state = seed | 1;
    let n = width as usize * height as usize * usize::from(channels);
    // xorshift64*: fast, deterministic, good enough to defeat deflate.
    let pixels = (0..n)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect();
    Image {
        name: "noise".into(),
        width,
        height,
        channels,
        pixels,
    }
}

/// One flat colour: the best case.
pub fn flat(width: u32, height: u32, channels: u8) -> Image {
    let px = [40u8, 120, 200, 255];
    let pixels = (0..width as usize * height as usize)
        .flat_map(|_| px[..usize::from(channels)].iter().copied())
        .collect();
    Image {
        name: "flat".into(),
        width,
        height,
        channels,
        pixels,
    }
}

/// The encode bench's images: a photo, a 1024x1024 crop of the digital painting, the 4K flat
/// graphic, the text screenshot (RGBA), the gray photo, and 1024x1024 RGB noise and flat fill.
/// Images missing from this checkout are skipped with a note.
pub fn encode_bench_images() -> Vec<Image> {
    let mut v = Vec::new();
    v.extend(find_image("photo/kodim23.png", "photo_kodim23"));
    if let Some(p) = find_image("art/fantasy_digital_painting.png", "painting") {
        v.push(p.crop_centre(1024, 1024, "painting_1024"));
    }
    v.extend(find_image(
        "graphic/exoplanet_phase_curve.png",
        "graphic_4k",
    ));
    v.extend(find_image(
        "screen/lorem_ipsum_screenshot.png",
        "screenshot_rgba",
    ));
    v.extend(find_image("gray/camera.png", "gray_camera"));
    v.push(noise(1024, 1024, 3, 7));
    v.push(flat(1024, 1024, 3));
    v
}
