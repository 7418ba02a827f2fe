//! Shared helpers of the PNG writer's integration tests: an independent decode of every output
//! (the `png` crate with CRC and Adler-32 checks on, plus miniz_oxide's inflater over the
//! concatenated IDATs) and deterministic test images.
#![allow(dead_code)]

use std::io::Cursor;
use std::path::{Path, PathBuf};

use pngcast_core::convert::BitDepth;
use pngcast_core::png::ImageInfo;

/// What an independent decoder read back.
#[derive(Debug)]
pub struct Decoded {
    pub width: u32,
    pub height: u32,
    pub channels: u8,
    pub bit_depth: BitDepth,
    /// Tightly packed rows, 16-bit samples big-endian.
    pub pixels: Vec<u8>,
    /// tEXt chunks in file order.
    pub text: Vec<(String, String)>,
    /// Number of IDAT chunks.
    pub idats: usize,
}

/// Decodes `png` with the png crate (CRC and Adler-32 verified) and cross-checks the zlib stream
/// with miniz_oxide (which verifies the Adler-32 too). Panics with a message on any defect.
pub fn decode(png_bytes: &[u8]) -> Decoded {
    // Walk the chunks ourselves: order, lengths, one zlib stream across the IDATs.
    assert_eq!(&png_bytes[..8], b"\x89PNG\r\n\x1a\n");
    let mut pos = 8;
    let mut zlib = Vec::new();
    let mut kinds = Vec::new();
    while pos < png_bytes.len() {
        let len = u32::from_be_bytes(png_bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let kind: [u8; 4] = png_bytes[pos + 4..pos + 8].try_into().unwrap();
        let data = &png_bytes[pos + 8..pos + 8 + len];
        let crc = u32::from_be_bytes(png_bytes[pos + 8 + len..pos + 12 + len].try_into().unwrap());
        assert_eq!(
            crc,
            crc32fast::hash(&png_bytes[pos + 4..pos + 8 + len]),
            "CRC of {:?}",
            std::str::from_utf8(&kind)
        );
        if &kind == b"IDAT" {
            zlib.extend_from_slice(data);
        }
        kinds.push(kind);
        pos += 12 + len;
    }
    assert_eq!(pos, png_bytes.len(), "trailing bytes");
    assert_eq!(&kinds[0], b"IHDR");
    assert_eq!(kinds.last().unwrap(), b"IEND");
    let idats = kinds.iter().filter(|k| *k == b"IDAT").count();
    assert!(idats >= 1);
    let first_idat = kinds.iter().position(|k| k == b"IDAT").unwrap();
    assert!(
        kinds[first_idat..first_idat + idats]
            .iter()
            .all(|k| k == b"IDAT"),
        "IDATs not consecutive"
    );
    let inflated = miniz_oxide::inflate::decompress_to_vec_zlib(&zlib)
        .expect("miniz_oxide inflates the zlib stream (Adler-32 checked)");

    let mut opts = png::DecodeOptions::default();
    opts.set_ignore_adler32(false);
    opts.set_ignore_crc(false);
    let decoder = png::Decoder::new_with_options(Cursor::new(png_bytes), opts);
    let mut reader = decoder.read_info().expect("png reads the header");
    let mut pixels = vec![0; reader.output_buffer_size().expect("sane size")];
    let frame = reader
        .next_frame(&mut pixels)
        .expect("png decodes the frame");
    pixels.truncate(frame.buffer_size());
    let info = reader.info();
    let channels = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected colour type {other:?}"),
    };
    let bit_depth = match info.bit_depth {
        png::BitDepth::Eight => BitDepth::Eight,
        png::BitDepth::Sixteen => BitDepth::Sixteen,
        other => panic!("unexpected bit depth {other:?}"),
    };
    assert!(!info.interlaced);
    let row_bytes = info.width as usize * channels as usize * bit_depth.bytes();
    assert_eq!(
        inflated.len(),
        (row_bytes + 1) * info.height as usize,
        "inflated size"
    );
    let text = info
        .uncompressed_latin1_text
        .iter()
        .map(|t| (t.keyword.clone(), t.text.clone()))
        .collect();
    Decoded {
        width: info.width,
        height: info.height,
        channels,
        bit_depth,
        pixels,
        text,
        idats,
    }
}

/// Asserts that `png_bytes` decodes to exactly `pixels` with the geometry of `info`.
pub fn assert_decodes_to(png_bytes: &[u8], info: &ImageInfo, pixels: &[u8], what: &str) {
    let d = decode(png_bytes);
    assert_eq!(
        (d.width, d.height, d.channels, d.bit_depth),
        (info.width, info.height, info.channels, info.bit_depth),
        "{what}: header"
    );
    if d.pixels != pixels {
        let first = d.pixels.iter().zip(pixels).position(|(a, b)| a != b);
        panic!(
            "{what}: pixels differ (first at byte {first:?}, lengths {} vs {})",
            d.pixels.len(),
            pixels.len()
        );
    }
}

/// A deterministic test image: smooth gradients (so Up/Average/Paeth win on some rows), flat
/// runs, and noisy bands (so Sub/None win on others), in `info`'s sample layout.
pub fn test_image(info: &ImageInfo, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let (w, h) = (info.width as usize, info.height as usize);
    let spp = info.channels as usize * info.bit_depth.bytes();
    let mut out = Vec::with_capacity(w * h * spp);
    for y in 0..h {
        let band = (y / 5) % 4;
        for x in 0..w {
            for s in 0..spp {
                let v = match band {
                    0 => (x * 3 + y * 2 + s * 40) as u8,
                    1 => rng.u8(..),
                    2 => ((x / 7) * 20 + s) as u8,
                    _ => ((x * y) / 3 + s * 17) as u8 ^ (rng.u8(..) & 3),
                };
                out.push(v);
            }
        }
    }
    out
}

/// PNG files to re-encode: the project corpus (`../shared/corpus`, if present) and the copies
/// in `benches/images` (always present).
pub fn corpus_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for dir in [root.join("../shared/corpus"), root.join("benches/images")] {
        collect_pngs(&dir, &mut files);
    }
    files.sort();
    files
}

fn collect_pngs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_pngs(&p, out);
        } else if p.extension().is_some_and(|x| x == "png") {
            out.push(p);
        }
    }
}

/// Reads a PNG file into 8- or 16-bit samples with the png crate (palette and low bit depths
/// expanded to 8 bits).
pub fn load_png(path: &Path) -> (ImageInfo, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let mut decoder = png::Decoder::new(Cursor::new(&bytes[..]));
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut buf).unwrap();
    buf.truncate(frame.buffer_size());
    let channels = frame.color_type.samples() as u8;
    let bit_depth = if frame.bit_depth == png::BitDepth::Sixteen {
        BitDepth::Sixteen
    } else {
        BitDepth::Eight
    };
    (
        ImageInfo {
            width: frame.width,
            height: frame.height,
            channels,
            bit_depth,
        },
        buf,
    )
}

/// Runs `pngcheck -q` on `png_bytes` if pngcheck is installed; returns false (and prints a note)
/// if it is not. Panics if pngcheck reports a problem.
pub fn pngcheck(png_bytes: &[u8], name: &str) -> bool {
    let dir = std::env::temp_dir().join(format!("pngcast-pngcheck-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, png_bytes).unwrap();
    let result = std::process::Command::new("pngcheck")
        .arg("-v")
        .arg(&path)
        .output();
    let _ = std::fs::remove_file(&path);
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("note: pngcheck is not installed; skipping the pngcheck pass for {name} (CI installs it)");
            false
        }
        Err(e) => panic!("cannot run pngcheck: {e}"),
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout);
            assert!(
                o.status.success() && text.contains("No errors detected"),
                "pngcheck on {name}:\n{text}{}",
                String::from_utf8_lossy(&o.stderr)
            );
            true
        }
    }
}
