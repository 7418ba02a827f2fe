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

/// Checks a `tEXt` key/value pair: the key is 1..=79 bytes of Latin-1 without NUL (and, as the
/// PNG spec asks, without leading, trailing or double spaces); the value is Latin-1 without NUL.
/// Rust strings are UTF-8, so "Latin-1" means every char is at most U+00FF; it is stored as one byte.
pub(crate) fn validate_text(key: &str, value: &str) -> Result<()> {
    let key_len = key.chars().count();
    if key_len == 0 || key_len > 79 {
        return Err(Error::InvalidText(format!(
            "key must be 1..=79 characters, got {key_len}"
        )));
    }
    if let Some(c) = key.chars().find(|&c| c == '\0' || c as u32 > 0xff) {
        return Err(Error::InvalidText(format!(
            "key {key:?} holds {c:?}, outside Latin-1 without NUL"
        )));
    }
    if key.starts_with(' ') || key.ends_with(' ') || key.contains("  ") {
        return Err(Error::InvalidText(format!(
            "key {key:?} has leading, trailing or consecutive spaces"
        )));
    }
    if let Some(c) = value.chars().find(|&c| c == '\0' || c as u32 > 0xff) {
        return Err(Error::InvalidText(format!(
            "value of {key:?} holds {c:?}, outside Latin-1 without NUL"
        )));
    }
    Ok(())
}

/// Bytes the `tEXt` chunk for this (validated) pair occupies in the file.
#[cfg(test)]
pub(crate) fn text_chunk_len(key: &str, value: &str) -> usize {
    CHUNK_OVERHEAD + key.chars().count() + 1 + value.chars().count()
}

/// Appends a `tEXt` chunk for a validated pair, transcoding each char to its Latin-1 byte.
/// Writes in place (no temporary buffer) so that steady-state encoding allocates nothing.
pub(crate) fn write_text(out: &mut Vec<u8>, key: &str, value: &str) -> Result<()> {
    let data_len = key.chars().count() + 1 + value.chars().count();
    if data_len > MAX_CHUNK_DATA {
        return Err(Error::InvalidText(format!(
            "value of {key:?} is longer than a PNG chunk can hold"
        )));
    }
    out.extend_from_slice(&(data_len as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(b"tEXt");
    // Validated: every char is <= U+00FF, so the cast is the Latin-1 byte.
    out.extend(key.chars().map(|c| c as u8));
    out.push(0);
    out.extend(value.chars().map(|c| c as u8));
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
        assert!(matches!(
            validate_text("k", "\u{1F600}"),
            Err(Error::InvalidText(_))
        ));
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
}
