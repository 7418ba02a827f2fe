//! Shared helpers for the pngcast benchmarks (corpus loading, peers).
//!
//! Images come from the project corpus (`../shared/corpus` beside the workspace, see its README)
//! when it is there, else from the small copies in `benches/images/`.
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod fpnge;

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

/// The shared corpus directory: `$PNGCAST_CORPUS` if set, else the first `shared/corpus` found
/// beside the workspace or one of its ancestors (`<workspace>/../shared/corpus` in the main
/// checkout; worktrees sit one level deeper).
pub fn corpus_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PNGCAST_CORPUS") {
        return PathBuf::from(dir);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    workspace
        .ancestors()
        .map(|a| a.join("../shared/corpus"))
        .find(|p| p.is_dir())
        .unwrap_or_else(|| workspace.join("../shared/corpus"))
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

/// Side of the photo tiles the photo mosaics are built from.
pub const TILE: u32 = 512;

/// The distinct 512x512 centre crops of corpus photos that the mosaics are made of (the Kodak
/// photos, the astronaut, the Hubble field, the retina).
const PHOTO_TILES: [&str; 7] = [
    "photo/kodim23.png",
    "photo/kodim02.png",
    "photo/kodim07.png",
    "photo/kodim17.png",
    "photo/astronaut.png",
    "photo/hubble_deep_field.png",
    "photo/retina.png",
];

/// A `side x side` RGB photo (side a multiple of 512) made of 512x512 centre crops of different
/// corpus photos, named `photos_<side>`: 512 is the kodim23 crop alone, 1024 four photos, 2048
/// sixteen tiles of seven photos laid out so that no tile repeats within a row of tiles.
///
/// No photo in the corpus is 2048 pixels wide, and mirror-tiling one photo (as the latency bench
/// does) repeats row content at a distance deflate's window reaches, which favours LZ77 coders
/// unfairly; tiles of different photos repeat only 512 rows apart (megabytes, far outside the
/// 32 KiB window). `None` (with a note) when a tile's photo is missing.
pub fn photo_mosaic(side: u32) -> Option<Image> {
    let n = (side / TILE).max(1);
    let mut tiles = Vec::new();
    for rel in PHOTO_TILES.iter().take((n * n) as usize) {
        let img = find_image(rel, rel)?;
        if img.channels != 3 || img.width < TILE || img.height < TILE {
            eprintln!("note: {rel} is not an RGB image of at least {TILE}x{TILE}; skipped");
            return None;
        }
        tiles.push(img.crop_centre(TILE, TILE, rel));
    }
    let side = n * TILE;
    let row_bytes = side as usize * 3;
    let tile_row = TILE as usize * 3;
    let mut pixels = vec![0u8; row_bytes * side as usize];
    for ty in 0..n as usize {
        for tx in 0..n as usize {
            // Consecutive indices modulo 7: the (at most 4) tiles of one row are all different.
            let tile = &tiles[(ty * n as usize + tx) % tiles.len()];
            for y in 0..TILE as usize {
                let dst = (ty * TILE as usize + y) * row_bytes + tx * tile_row;
                pixels[dst..dst + tile_row]
                    .copy_from_slice(&tile.pixels[y * tile_row..(y + 1) * tile_row]);
            }
        }
    }
    Some(Image {
        name: format!("photos_{side}"),
        width: side,
        height: side,
        channels: 3,
        pixels,
    })
}

/// The image set of the encoder comparison, shared by the criterion `encode` and `fast`
/// suites and the `encoders` example: photo mosaics at 512^2, 1024^2 and 2048^2
/// ([`photo_mosaic`]), a 1024x1024 centre crop of the digital painting, the 4K flat graphic, the
/// text screenshot (RGBA), the gray photo (512x512), and 1024x1024 RGB noise and flat fill.
/// Images missing from this checkout are skipped with a note.
pub fn encoder_images() -> Vec<Image> {
    let mut v: Vec<Image> = [512, 1024, 2048]
        .into_iter()
        .filter_map(photo_mosaic)
        .collect();
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
    let mut noise = noise(1024, 1024, 3, 7);
    noise.name = "noise_1024".into();
    v.push(noise);
    let mut flat = flat(1024, 1024, 3);
    flat.name = "flat_1024".into();
    v.push(flat);
    v
}

/// The peer encoders, called the same way by the criterion suites and the `encoders` example.
pub mod peers {
    use super::Image;

    /// The png crate's colour type for `channels` (1..=4).
    pub fn png_colour(channels: u8) -> png::ColorType {
        match channels {
            1 => png::ColorType::Grayscale,
            2 => png::ColorType::GrayscaleAlpha,
            3 => png::ColorType::Rgb,
            _ => png::ColorType::Rgba,
        }
    }

    /// Encodes `img` with the png crate at `compression` (default adaptive filtering) into `out`
    /// (cleared first; its capacity is reused).
    pub fn png_crate(img: &Image, compression: png::Compression, out: &mut Vec<u8>) {
        out.clear();
        let mut e = png::Encoder::new(&mut *out, img.width, img.height);
        e.set_color(png_colour(img.channels));
        e.set_depth(png::BitDepth::Eight);
        e.set_compression(compression);
        let mut w = e.write_header().expect("png header");
        w.write_image_data(&img.pixels).expect("png image data");
        w.finish().expect("png finish");
    }

    /// Encodes `img` with mtpng at its `Fast` level on `pool` (its thread count is mtpng's).
    pub fn mtpng(img: &Image, pool: &rayon::ThreadPool) -> Vec<u8> {
        use mtpng::{encoder, ColorType, CompressionLevel, Header};
        let mut header = Header::new();
        header.set_size(img.width, img.height).expect("mtpng size");
        let colour = match img.channels {
            1 => ColorType::Greyscale,
            2 => ColorType::GreyscaleAlpha,
            3 => ColorType::Truecolor,
            _ => ColorType::TruecolorAlpha,
        };
        header.set_color(colour, 8).expect("mtpng colour");
        let mut options = encoder::Options::new();
        options.set_thread_pool(pool).expect("mtpng pool");
        options
            .set_compression_level(CompressionLevel::Fast)
            .expect("mtpng level");
        let mut e = encoder::Encoder::new(Vec::new(), &options);
        e.write_header(&header).expect("mtpng header");
        e.write_image_rows(&img.pixels).expect("mtpng rows");
        e.finish().expect("mtpng finish")
    }

    /// Encodes `img` with lodepng's default settings (its own deflate, filter heuristics).
    pub fn lodepng(img: &Image) -> Vec<u8> {
        let colour = match img.channels {
            1 => lodepng::ColorType::GREY,
            2 => lodepng::ColorType::GREY_ALPHA,
            3 => lodepng::ColorType::RGB,
            _ => lodepng::ColorType::RGBA,
        };
        lodepng::encode_memory(
            &img.pixels,
            img.width as usize,
            img.height as usize,
            colour,
            8,
        )
        .expect("lodepng encode")
    }
}

/// Decodes `png_bytes` with the png crate and says whether it holds exactly `img`'s pixels: how
/// every encoder's output is checked before it is timed. Encoders may choose another colour type
/// losslessly (lodepng writes a palette or gray image when the pixels allow), so both sides are
/// compared as 8-bit RGBA after palette and low-depth expansion.
pub fn decodes_to(png_bytes: &[u8], img: &Image) -> bool {
    let mut decoder = png::Decoder::new(Cursor::new(png_bytes));
    decoder.set_transformations(png::Transformations::EXPAND);
    let Ok(mut reader) = decoder.read_info() else {
        return false;
    };
    let Some(size) = reader.output_buffer_size() else {
        return false;
    };
    let mut pixels = vec![0; size];
    let Ok(frame) = reader.next_frame(&mut pixels) else {
        return false;
    };
    pixels.truncate(frame.buffer_size());
    frame.width == img.width
        && frame.height == img.height
        && frame.bit_depth == png::BitDepth::Eight
        && to_rgba(&pixels, frame.color_type.samples())
            == to_rgba(&img.pixels, usize::from(img.channels))
}

/// 8-bit samples with `channels` (1..=4) per pixel as RGBA (opaque where there is no alpha).
fn to_rgba(samples: &[u8], channels: usize) -> Vec<u8> {
    samples
        .chunks_exact(channels.max(1))
        .flat_map(|p| match *p {
            [g] => [g, g, g, 255],
            [g, a] => [g, g, g, a],
            [r, g, b] => [r, g, b, 255],
            [r, g, b, a] => [r, g, b, a],
            _ => [0, 0, 0, 0],
        })
        .collect()
}

/// The median of `times` (the mean of the middle two for an even count); zero when empty.
pub fn median(times: &[std::time::Duration]) -> std::time::Duration {
    let mut v = times.to_vec();
    v.sort();
    let n = v.len();
    match n {
        0 => std::time::Duration::ZERO,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2,
    }
}

/// The CPU's model name from `/proc/cpuinfo` (the architecture where there is none), for the
/// header of a benchmark table.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// A loopback send buffer given on a benchmark's command line or environment: a byte count,
/// `0` for the kernel's autotuning (`None`); anything else is an error naming the value.
pub fn parse_send_buffer(v: &str) -> Result<Option<usize>, String> {
    match v.trim().parse::<usize>() {
        Ok(0) => Ok(None),
        Ok(n) => Ok(Some(n)),
        Err(_) => Err(format!("not a byte count: {v:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(channels: u8) -> Image {
        let mut img = noise(37, 11, channels, 3);
        img.name = "small".into();
        img
    }

    #[test]
    fn decodes_to_accepts_every_peer_and_rejects_a_changed_pixel() {
        for channels in 1..=4 {
            let img = small(channels);
            let mut png = Vec::new();
            peers::png_crate(&img, png::Compression::Fast, &mut png);
            assert!(decodes_to(&png, &img), "png crate, {channels} channels");
            assert!(decodes_to(&peers::lodepng(&img), &img), "lodepng");
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .unwrap();
            assert!(decodes_to(&peers::mtpng(&img, &pool), &img), "mtpng");
            let mut other = img.clone();
            other.pixels[200] ^= 1;
            assert!(!decodes_to(&png, &other), "a changed sample must be seen");
            assert!(!decodes_to(&png[..png.len() / 2], &img), "truncated PNG");
            let mut wider = img.clone();
            wider.width += 1;
            assert!(!decodes_to(&png, &wider), "other size");
        }
    }

    #[test]
    fn lodepng_palette_output_counts_as_lossless() {
        // A flat fill: lodepng writes a palette image; the RGBA comparison accepts it.
        let img = flat(64, 64, 3);
        let png = peers::lodepng(&img);
        assert!(decodes_to(&png, &img));
        let mut other = img.clone();
        other.pixels[5] ^= 0x10;
        assert!(!decodes_to(&png, &other));
    }

    #[test]
    fn photo_mosaic_tiles_are_crops_and_differ_within_a_row() {
        // 512: the kodim23 crop, also found in benches/images on a fresh clone.
        let one = photo_mosaic(512).expect("kodim23 is in benches/images");
        let kodim = find_image("photo/kodim23.png", "k").unwrap();
        assert_eq!(one.pixels, kodim.crop_centre(TILE, TILE, "k").pixels);
        if !corpus_dir().join("photo/retina.png").is_file() {
            eprintln!("note: corpus not found; the 1024/2048 mosaics are not checked");
            return;
        }
        let big = photo_mosaic(2048).expect("corpus photos");
        assert_eq!((big.width, big.height, big.channels), (2048, 2048, 3));
        let tile = |tx: usize, ty: usize| -> Vec<u8> {
            (0..TILE as usize)
                .flat_map(|y| {
                    let start = ((ty * 512 + y) * 2048 + tx * 512) * 3;
                    big.pixels[start..start + 512 * 3].to_vec()
                })
                .collect()
        };
        assert_eq!(tile(0, 0), one.pixels, "first tile is the 512 image");
        for ty in 0..4 {
            for a in 0..4 {
                for b in a + 1..4 {
                    assert_ne!(tile(a, ty), tile(b, ty), "row {ty}: tiles {a} and {b}");
                }
            }
        }
    }

    #[test]
    fn send_buffer_values_parse_or_are_refused() {
        assert_eq!(parse_send_buffer("524288"), Ok(Some(524288)));
        assert_eq!(parse_send_buffer(" 0\n"), Ok(None));
        for bad in ["", "-1", "512k", "1e6", "18446744073709551616", "\u{0}"] {
            assert!(parse_send_buffer(bad).is_err(), "{bad:?} accepted");
        }
    }
}
