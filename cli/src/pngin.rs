//! Reading a PNG to re-encode it: decoded by the `png` crate with its `EXPAND` transformation, so
//! palette images become RGB or RGBA and 1/2/4-bit gray becomes 8-bit. 8-bit samples are kept as
//! `u8`; 16-bit samples become `v / 65535` in f32, which the converter maps back to exactly `v`
//! at 16-bit output (checked for all 65536 values) and quantises like any tensor at 8-bit output.
//! Cost: one decoded copy of the image (four bytes per sample for 16-bit input).
//!
//! Text chunks are kept, in file order, as `(key, value)` pairs: `tEXt` as is, `zTXt` decompressed
//! (at most [`MAX_TEXT`] bytes each), `iTXt` as its UTF-8 text (its language tag and translated
//! keyword are dropped). The encoder writes them back as `tEXt`, or `iTXt` where a value is not
//! Latin-1, so ComfyUI's `prompt`/`workflow` chunks survive a re-encode.

use std::io::Cursor;
use std::path::Path;

use pngcast_core::tensor::{TensorData, TensorView};

use crate::error::CliError;

/// The PNG signature.
pub const MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

/// The largest decompressed `zTXt`/`iTXt` text accepted (a guard against deflate bombs).
pub const MAX_TEXT: usize = 64 << 20;

/// Decoded samples.
#[derive(Debug)]
pub enum Samples {
    /// 8-bit input.
    U8(Vec<u8>),
    /// 16-bit input, as `v / 65535`.
    F32(Vec<f32>),
}

/// A decoded PNG image.
#[derive(Debug)]
pub struct DecodedPng {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Channels per pixel after expansion, 1..=4.
    pub channels: usize,
    /// Bits per sample of the source after expansion: 8 or 16.
    pub bit_depth: u8,
    /// The samples, `[H,W,C]` order.
    pub samples: Samples,
    /// The text chunks, in file order.
    pub text: Vec<(String, String)>,
}

impl DecodedPng {
    /// Decodes the first image of a PNG held in memory. `name` is used in messages.
    pub fn decode(bytes: &[u8], name: &Path) -> Result<Self, CliError> {
        let name = name.display();
        let bad = |e: png::DecodingError| CliError::new(format!("{name}: cannot decode PNG: {e}"));
        // No decoder-side memory limit: the only large buffer is ours, reserved fallibly below.
        let limits = png::Limits { bytes: usize::MAX };
        let mut decoder = png::Decoder::new_with_limits(Cursor::new(bytes), limits);
        decoder.set_transformations(png::Transformations::EXPAND);
        let mut reader = decoder.read_info().map_err(bad)?;
        let (color, depth) = reader.output_color_type();
        let channels = match color {
            png::ColorType::Grayscale => 1,
            png::ColorType::GrayscaleAlpha => 2,
            png::ColorType::Rgb => 3,
            png::ColorType::Rgba => 4,
            png::ColorType::Indexed => {
                return Err(CliError::new(format!(
                    "{name}: palette image was not expanded"
                )))
            }
        };
        let bit_depth = match depth {
            png::BitDepth::Eight => 8,
            png::BitDepth::Sixteen => 16,
            other => {
                return Err(CliError::new(format!(
                    "{name}: unexpected bit depth {other:?} after expansion"
                )))
            }
        };
        let size = reader
            .output_buffer_size()
            .ok_or_else(|| CliError::new(format!("{name}: image is too large to decode")))?;
        let mut buf = Vec::new();
        buf.try_reserve_exact(size).map_err(|_| {
            CliError::new(format!(
                "{name}: not enough memory to decode the image ({size} bytes)"
            ))
        })?;
        buf.resize(size, 0);
        let info = reader.next_frame(&mut buf).map_err(bad)?;
        buf.truncate(info.buffer_size());
        // Reads the chunks after the image data too (text may follow IDAT).
        reader.finish().map_err(bad)?;
        let text = text_chunks(bytes, reader.info())
            .map_err(|e| CliError::new(format!("{name}: cannot read a text chunk: {e}")))?;
        let (width, height) = (info.width as usize, info.height as usize);
        let row = width * channels * usize::from(bit_depth / 8);
        if info.line_size != row {
            return Err(CliError::new(format!(
                "{name}: unexpected decoded row size {} (expected {row})",
                info.line_size
            )));
        }
        let samples = if bit_depth == 8 {
            Samples::U8(buf)
        } else {
            Samples::F32(
                buf.chunks_exact(2)
                    .map(|c| f32::from(u16::from_be_bytes([c[0], c[1]])) / 65535.0)
                    .collect(),
            )
        };
        Ok(DecodedPng {
            width,
            height,
            channels,
            bit_depth,
            samples,
            text,
        })
    }

    /// The image as a one-image tensor.
    pub fn view(&self) -> Result<TensorView<'_>, CliError> {
        let data = match &self.samples {
            Samples::U8(v) => TensorData::U8(v),
            Samples::F32(v) => TensorData::F32(v),
        };
        Ok(TensorView::hwc(
            data,
            [self.height, self.width, self.channels],
        )?)
    }
}

/// The text chunks of `info` in the order their chunks appear in `bytes` (the decoder keeps one
/// list per chunk type; the chunk walk restores the order across types).
fn text_chunks(bytes: &[u8], info: &png::Info<'_>) -> Result<Vec<(String, String)>, String> {
    let mut latin1 = info.uncompressed_latin1_text.iter();
    let mut compressed = info.compressed_latin1_text.iter();
    let mut utf8 = info.utf8_text.iter();
    let mut out = Vec::new();
    let mut at = MAGIC.len();
    while let Some(head) = bytes.get(at..at + 8) {
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let pair = match &head[4..8] {
            b"tEXt" => latin1
                .next()
                .map(|t| Ok((t.keyword.clone(), t.text.clone()))),
            b"zTXt" => compressed.next().map(|t| {
                let mut t = t.clone();
                t.decompress_text_with_limit(MAX_TEXT)
                    .and_then(|()| t.get_text())
                    .map(|v| (t.keyword.clone(), v))
                    .map_err(|e| format!("zTXt {:?}: {e}", t.keyword))
            }),
            b"iTXt" => utf8.next().map(|t| {
                let mut t = t.clone();
                t.decompress_text_with_limit(MAX_TEXT)
                    .and_then(|()| t.get_text())
                    .map(|v| (t.keyword.clone(), v))
                    .map_err(|e| format!("iTXt {:?}: {e}", t.keyword))
            }),
            b"IEND" => break,
            _ => None,
        };
        if let Some(pair) = pair {
            out.push(pair?);
        }
        at = at.saturating_add(12).saturating_add(len);
    }
    Ok(out)
}
