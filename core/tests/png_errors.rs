//! Bad input to the PNG writer gets a typed error, never a panic, and leaves `out` empty.

mod png_util;

use std::num::NonZeroUsize;

use pngcast_core::convert::BitDepth;
use pngcast_core::png::{encode, Compression, EncodeOptions, Encoder, ImageInfo, Threads};
use pngcast_core::Error;

fn info(width: u32, height: u32, channels: u8) -> ImageInfo {
    ImageInfo {
        width,
        height,
        channels,
        bit_depth: BitDepth::Eight,
    }
}

#[test]
fn wrong_buffer_length() {
    let mut enc = Encoder::new(EncodeOptions::default()).unwrap();
    let mut out = vec![1, 2, 3];
    for len in [0, 11, 13, 1000] {
        let err = enc
            .encode_into(&info(2, 2, 3), &vec![0; len], &mut out)
            .unwrap_err();
        assert!(
            matches!(err, Error::PixelBufferSize { need: 12, got, .. } if got == len),
            "{err:?}"
        );
        assert!(out.is_empty());
    }
    let i16 = ImageInfo {
        bit_depth: BitDepth::Sixteen,
        ..info(2, 2, 3)
    };
    assert!(matches!(
        enc.encode_into(&i16, &[0; 12], &mut out),
        Err(Error::PixelBufferSize {
            need: 24,
            got: 12,
            bit_depth: 16,
            ..
        })
    ));
    // The encoder still works afterwards.
    enc.encode_into(&info(2, 2, 3), &[7; 12], &mut out).unwrap();
    assert_eq!(png_util::decode(&out).pixels, [7; 12]);
}

#[test]
fn channels_out_of_range() {
    for c in [0u8, 5, 255] {
        let err = encode(&info(1, 1, c), &[0; 8], &EncodeOptions::default()).unwrap_err();
        assert!(matches!(err, Error::InvalidOption(_)), "{c}: {err:?}");
    }
}

#[test]
fn bad_sides() {
    for (w, h) in [(0, 1), (1, 0), (0, 0), (1 << 31, 1), (1, u32::MAX)] {
        let err = encode(&info(w, h, 1), &[], &EncodeOptions::default()).unwrap_err();
        assert!(
            matches!(err, Error::ImageTooLarge { .. }),
            "{w}x{h}: {err:?}"
        );
    }
    // Sides within PNG's limit whose byte count cannot match any buffer: a size error, not a panic.
    let err = encode(
        &info((1 << 31) - 1, (1 << 31) - 1, 4),
        &[0; 16],
        &EncodeOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::PixelBufferSize { .. } | Error::SizeOverflow(_)),
        "{err:?}"
    );
}

#[test]
fn compact_level_out_of_range() {
    for level in [0u8, 10, 255] {
        let err = Encoder::new(EncodeOptions::default().compression(Compression::Compact(level)))
            .unwrap_err();
        assert!(matches!(err, Error::InvalidOption(_)), "{level}: {err:?}");
    }
    for level in 1..=9u8 {
        let opts = EncodeOptions::default().compression(Compression::Compact(level));
        let out = encode(&info(3, 2, 1), &[1, 2, 3, 4, 5, 6], &opts).unwrap();
        assert_eq!(
            png_util::decode(&out).pixels,
            [1, 2, 3, 4, 5, 6],
            "level {level}"
        );
    }
}

#[test]
fn invalid_text_keys_and_values() {
    // A value outside Latin-1 is fine (it becomes iTXt); a key must be a PNG keyword.
    let bad: [(&str, &str); 8] = [
        ("", "empty key"),
        ("k", "nul \0 in value"),
        ("nul\0key", "v"),
        (" leading", "v"),
        ("smile \u{263a}", "v"),
        ("tab\tkey", "v"),
        ("double  space", "v"),
        ("this key is much longer than the seventy-nine bytes that PNG allows for a tEXt keyword", "v"),
    ];
    let mut out = vec![9];
    for (k, v) in bad {
        let err = Encoder::new(EncodeOptions::default().text(k, v)).unwrap_err();
        assert!(matches!(err, Error::InvalidText(_)), "{k:?}={v:?}: {err:?}");
        // Set after construction: reported when a frame is encoded.
        let mut enc =
            Encoder::new(EncodeOptions::default().threads(Threads::Fixed(NonZeroUsize::MIN)))
                .unwrap();
        enc.set_text(&[("ok".into(), "fine".into()), (k.into(), v.into())]);
        let err = enc.encode_into(&info(1, 1, 1), &[0], &mut out).unwrap_err();
        assert!(matches!(err, Error::InvalidText(_)), "{k:?}={v:?}: {err:?}");
        assert!(out.is_empty());
    }
}

#[test]
fn text_round_trip() {
    let text = [
        (
            "prompt".to_string(),
            r#"{"3": {"inputs": {"seed": 42}, "class_type": "KSampler"}}"#.to_string(),
        ),
        ("workflow".to_string(), "x".repeat(100_000)),
        ("Caf\u{e9}".to_string(), "na\u{ef}ve \u{ff}".to_string()),
        ("empty".to_string(), String::new()),
    ];
    let mut enc = Encoder::new(EncodeOptions::default()).unwrap();
    enc.set_text(&text);
    let mut out = Vec::new();
    enc.encode_into(&info(4, 3, 2), &[5; 24], &mut out).unwrap();
    let d = png_util::decode(&out);
    assert_eq!(d.text, text);
    assert_eq!(d.pixels, [5; 24]);
    png_util::pngcheck(&out, "text");
    // Cleared for the next frame.
    enc.set_text(&[]);
    enc.encode_into(&info(4, 3, 2), &[5; 24], &mut out).unwrap();
    assert!(png_util::decode(&out).text.is_empty());
}
