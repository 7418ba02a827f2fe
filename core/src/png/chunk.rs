#![forbid(unsafe_code)]
//! PNG chunk framing: `length (u32 BE) | type (4 bytes) | data | CRC-32 (of type and data)`.
//! CRC-32 by `crc32fast` (PCLMULQDQ where the CPU has it).

use crate::error::{Error, Result};

/// The 8-byte PNG signature.
pub(crate) const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

/// Bytes a chunk adds around its data: length, type and CRC.
pub(crate) const CHUNK_OVERHEAD: usize = 12;

/// The largest data length a chunk may declare (PNG limits lengths to 2^31 - 1).
pub(crate) const MAX_CHUNK_DATA: usize = (1 << 31) - 1;

/// Appends a whole chunk to `out`. `data` must be at most [`MAX_CHUNK_DATA`] bytes (the writer's
/// own chunks are far smaller; IDAT data is split before it gets here).
pub(crate) fn write_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    debug_assert!(data.len() <= MAX_CHUNK_DATA);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
}

/// The CRC-32 of a chunk of type `kind` holding `data`, as the chunk's trailer stores it.
pub(crate) fn chunk_crc(kind: &[u8; 4], data: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    crc.finalize()
}

/// PNG colour type for 1..=4 channels: gray, gray+alpha, RGB, RGBA.
pub(crate) fn colour_type(channels: u8) -> Option<u8> {
    match channels {
        1 => Some(0),
        2 => Some(4),
        3 => Some(2),
        4 => Some(6),
        _ => None,
    }
}

/// Appends the IHDR chunk: no interlace, compression method 0, filter method 0.
/// The caller has validated sides (1..=2^31-1), bit depth and channels.
pub(crate) fn write_ihdr(out: &mut Vec<u8>, width: u32, height: u32, bit_depth: u8, colour: u8) {
    let mut data = [0u8; 13];
    data[0..4].copy_from_slice(&width.to_be_bytes());
    data[4..8].copy_from_slice(&height.to_be_bytes());
    data[8] = bit_depth;
    data[9] = colour;
    // data[10..13]: compression 0 (deflate), filter method 0 (adaptive), interlace 0 (none).
    write_chunk(out, b"IHDR", &data);
}

/// Checks a text key/value pair. The key is a PNG keyword: 1..=79 printable Latin-1 characters
/// (U+0020..=U+007E, U+00A1..=U+00FF) without leading, trailing or consecutive spaces. The value
/// is any text without NUL: Latin-1 values become `tEXt`, others UTF-8 `iTXt` ([`write_text`]).
/// Rust strings are UTF-8, so "Latin-1" means every char is at most U+00FF; it is stored as one byte.
pub(crate) fn validate_text(key: &str, value: &str) -> Result<()> {
    let key_len = key.chars().count();
    if key_len == 0 || key_len > 79 {
        return Err(Error::InvalidText(format!(
            "key must be 1..=79 characters, got {key_len}"
        )));
    }
    if let Some(c) = key.chars().find(|&c| !is_keyword_char(c)) {
        return Err(Error::InvalidText(format!(
            "key {key:?} holds {c:?}: a PNG keyword is printable Latin-1 (U+0020..U+007E, U+00A1..U+00FF)"
        )));
    }
    if key.starts_with(' ') || key.ends_with(' ') || key.contains("  ") {
        return Err(Error::InvalidText(format!(
            "key {key:?} has leading, trailing or consecutive spaces"
        )));
    }
    if value.contains('\0') {
        return Err(Error::InvalidText(format!(
            "value of {key:?} holds a NUL character"
        )));
    }
    Ok(())
}

/// A character a PNG keyword may hold: printable Latin-1.
fn is_keyword_char(c: char) -> bool {
    matches!(u32::from(c), 0x20..=0x7e | 0xa1..=0xff)
}

/// Whether `value` fits a `tEXt` chunk (every char is Latin-1).
fn is_latin1(value: &str) -> bool {
    value.chars().all(|c| u32::from(c) <= 0xff)
}

/// Bytes the text chunk for this (validated) pair occupies in the file.
#[cfg(test)]
pub(crate) fn text_chunk_len(key: &str, value: &str) -> usize {
    if is_latin1(value) {
        CHUNK_OVERHEAD + key.chars().count() + 1 + value.chars().count()
    } else {
        CHUNK_OVERHEAD + key.chars().count() + 5 + value.len()
    }
}

/// Appends the text chunk of a validated pair: `tEXt` when the value is Latin-1 (each char
/// transcoded to its Latin-1 byte), otherwise an uncompressed `iTXt` (keyword, NUL, compression
/// flag 0, method 0, empty language tag, NUL, empty translated keyword, NUL, the UTF-8 text).
/// Writes in place (no temporary buffer) so that steady-state encoding allocates nothing.
pub(crate) fn write_text(out: &mut Vec<u8>, key: &str, value: &str) -> Result<()> {
    let latin1 = is_latin1(value);
    let key_len = key.chars().count();
    let data_len = if latin1 {
        key_len + 1 + value.chars().count()
    } else {
        key_len + 5 + value.len()
    };
    if data_len > MAX_CHUNK_DATA {
        return Err(Error::InvalidText(format!(
            "value of {key:?} is longer than a PNG chunk can hold"
        )));
    }
    out.extend_from_slice(&(data_len as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(if latin1 { b"tEXt" } else { b"iTXt" });
    // Validated: every key char is <= U+00FF, so the cast is the Latin-1 byte.
    out.extend(key.chars().map(|c| c as u8));
    out.push(0);
    if latin1 {
        out.extend(value.chars().map(|c| c as u8));
    } else {
        // Compression flag, compression method, empty language tag, empty translated keyword.
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(value.as_bytes());
    }
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iend_is_the_well_known_bytes() {
        let mut out = Vec::new();
        write_chunk(&mut out, b"IEND", &[]);
        assert_eq!(
            out,
            [0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xae, 0x42, 0x60, 0x82]
        );
    }

    #[test]
    fn text_validation() {
        assert!(validate_text("prompt", "{\"a\": 1}").is_ok());
        assert!(validate_text("Caf\u{e9}", "na\u{ef}ve").is_ok());
        assert!(validate_text(&"k".repeat(79), "").is_ok());
        for bad in ["", " lead", "trail ", "dou  ble", "nul\0", "\u{263a}"] {
            assert!(
                matches!(validate_text(bad, "v"), Err(Error::InvalidText(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            validate_text(&"k".repeat(80), "v"),
            Err(Error::InvalidText(_))
        ));
        assert!(matches!(
            validate_text("k", "a\0b"),
            Err(Error::InvalidText(_))
        ));
        assert!(validate_text("k", "\u{1F600}").is_ok());
        for bad in ["tab\t", "nl\n", "del\u{7f}", "c1\u{85}", "nbsp\u{a0}"] {
            assert!(
                matches!(validate_text(bad, "v"), Err(Error::InvalidText(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn text_chunk_latin1_bytes_and_crc() {
        let mut out = Vec::new();
        write_text(&mut out, "k\u{e9}", "v\u{ff}").unwrap();
        assert_eq!(out.len(), text_chunk_len("k\u{e9}", "v\u{ff}"));
        assert_eq!(&out[..8], &[0, 0, 0, 5, b't', b'E', b'X', b't']);
        assert_eq!(&out[8..13], &[b'k', 0xe9, 0, b'v', 0xff]);
        assert_eq!(&out[13..], &chunk_crc(b"tEXt", &out[8..13]).to_be_bytes());
    }

    /// Encodes a 1x1 gray PNG carrying `text` and decodes it with the `png` crate.
    fn decode_text(text: &[(&str, &str)]) -> (Vec<u8>, png::Info<'static>) {
        let mut options = crate::png::EncodeOptions::default();
        for (k, v) in text {
            options = options.text(*k, *v);
        }
        let info = crate::png::ImageInfo {
            width: 1,
            height: 1,
            channels: 1,
            bit_depth: crate::convert::BitDepth::Eight,
        };
        let mut png_bytes = Vec::new();
        crate::png::Encoder::new(options)
            .unwrap()
            .encode_into(&info, &[7], &mut png_bytes)
            .unwrap();
        let mut reader = png::Decoder::new(std::io::Cursor::new(png_bytes.clone()))
            .read_info()
            .unwrap();
        let mut px = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut px).unwrap();
        assert_eq!(px[0], 7);
        reader.finish().unwrap();
        (png_bytes, reader.info().clone())
    }

    #[test]
    fn non_latin1_values_are_uncompressed_itxt() {
        let pairs = [
            ("Title", "caf\u{e9}"),
            ("prompt", "a \u{1F600} \u{732b} on a mat"),
            ("Comment", "plain"),
        ];
        let (bytes, info) = decode_text(&pairs);
        let latin1: Vec<_> = info
            .uncompressed_latin1_text
            .iter()
            .map(|t| (t.keyword.as_str(), t.text.as_str()))
            .collect();
        assert_eq!(latin1, [("Title", "caf\u{e9}"), ("Comment", "plain")]);
        assert!(info.compressed_latin1_text.is_empty());
        assert_eq!(info.utf8_text.len(), 1);
        let itxt = &info.utf8_text[0];
        assert_eq!(itxt.keyword, "prompt");
        assert!(!itxt.compressed);
        assert!(itxt.language_tag.is_empty());
        assert!(itxt.translated_keyword.is_empty());
        assert_eq!(itxt.get_text().unwrap(), pairs[1].1);
        // Order in the file is the order given.
        let pos = |kind: &[u8]| bytes.windows(4).position(|w| w == kind).unwrap();
        assert!(pos(b"tEXt") < pos(b"iTXt"));
        let mut out = Vec::new();
        write_text(&mut out, pairs[1].0, pairs[1].1).unwrap();
        assert_eq!(out.len(), text_chunk_len(pairs[1].0, pairs[1].1));
        let n = out.len();
        assert_eq!(
            &out[n - 4..],
            &chunk_crc(b"iTXt", &out[8..n - 4]).to_be_bytes()
        );
    }

    #[test]
    fn pngcheck_accepts_itxt() {
        let (bytes, _) = decode_text(&[("Title", "\u{732b}\u{1F600}"), ("Author", "x")]);
        let path = std::env::temp_dir().join(format!("pngcast-itxt-{}.png", std::process::id()));
        std::fs::write(&path, &bytes).unwrap();
        let run = std::process::Command::new("pngcheck")
            .arg("-q")
            .arg(&path)
            .output();
        let _ = std::fs::remove_file(&path);
        match run {
            Ok(o) => assert!(
                o.status.success(),
                "pngcheck: {}",
                String::from_utf8_lossy(&o.stdout)
            ),
            Err(e) if std::env::var_os("PNGCAST_REQUIRE_PNGCHECK").is_some() => {
                panic!("pngcheck required but not runnable: {e}")
            }
            Err(_) => {}
        }
    }
}
