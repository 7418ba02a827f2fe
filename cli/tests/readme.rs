//! The README's library example, compiled and run. `readme_block_is_this_code` keeps the two in
//! step: the README's ```rust block must equal the code between the markers below.

#[test]
fn readme_example_runs() -> Result<(), pngcast_core::Error> {
    // BEGIN README EXAMPLE
    use pngcast_core::convert::ConvertOptions;
    use pngcast_core::png::{Compression, EncodeOptions, Encoder, FastLevel};
    use pngcast_core::tensor::TensorView;

    // A ComfyUI IMAGE batch: [B, H, W, C] float32 in 0..1 (two 64x48 RGB frames here).
    let data = vec![0.25f32; 2 * 48 * 64 * 3];
    let batch = TensorView::bhwc(&data[..], [2, 48, 64, 3])?;

    // One encoder for every frame: it keeps its scratch buffers between frames.
    // The default compression is pngcast's own fast deflate coder (`Compression::Fast`);
    // `Compression::Compact(1)` is zlib level 1, what ComfyUI's Pillow uses.
    let mut encoder = Encoder::new(
        EncodeOptions::default()
            .compression(Compression::Fast(FastLevel::Balanced))
            .text("Software", "pngcast"),
    )?;
    let mut png = Vec::new();
    for image in batch.images() {
        // Quantises like ComfyUI (trunc(clamp(255 * x, 0, 255))) and writes a complete PNG into `png`.
        encoder.encode_image_into(&image, ConvertOptions::default(), &mut png)?;
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }
    // END README EXAMPLE

    // The last frame decodes to 0.25 quantised the ComfyUI way: trunc(63.75) = 63.
    let mut reader = png::Decoder::new(std::io::Cursor::new(&png))
        .read_info()
        .unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((info.width, info.height), (64, 48));
    assert!(pixels[..info.buffer_size()].iter().all(|&p| p == 63));
    Ok(())
}

#[test]
fn readme_block_is_this_code() {
    let readme = include_str!("../../README.md");
    let this = include_str!("readme.rs");
    let block: Vec<&str> = readme
        .split("```rust\n")
        .nth(1)
        .expect("README has a ```rust block")
        .split("\n```")
        .next()
        .unwrap()
        .lines()
        .collect();
    let code: Vec<&str> = this
        .split("// BEGIN README EXAMPLE\n")
        .nth(1)
        .unwrap()
        .split("    // END README EXAMPLE")
        .next()
        .unwrap()
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect();
    assert_eq!(
        block, code,
        "README.md's example and cli/tests/readme.rs differ"
    );
}
