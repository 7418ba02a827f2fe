//! `pngcast encode` end to end: the binary is run on `.npy` files whose bytes the tests build by
//! hand (so the reader is checked against the format, not against itself) and on PNGs written
//! by the `png` crate; every output is decoded by the `png` crate and compared pixel for pixel
//! with an independent implementation of ComfyUI's quantisation.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

// ---------------------------------------------------------------------------------------------
// Helpers

/// A fresh, empty directory for one test.
fn tmpdir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("encode-{name}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// The bytes of a version 1.0 `.npy` file, laid out as numpy writes it.
fn npy(descr: &str, fortran: bool, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims = match shape {
        [d] => format!("({d},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let fo = if fortran { "True" } else { "False" };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': {fo}, 'shape': {dims}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&u16::try_from(header.len()).unwrap().to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pngcast"))
        .args(args.iter().map(|a| a.as_ref()))
        .stdin(Stdio::null())
        .output()
        .expect("run pngcast")
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "pngcast failed: {:?}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Decoded {
    width: u32,
    height: u32,
    color: png::ColorType,
    depth: png::BitDepth,
    pixels: Vec<u8>,
    text: Vec<(String, String)>,
}

/// Runs `pngcheck -q` on `path` when pngcheck is installed. CI installs it and sets
/// `PNGCAST_REQUIRE_PNGCHECK=1`, which makes its absence a failure.
fn pngcheck(path: &Path) {
    match Command::new("pngcheck").arg("-q").arg(path).output() {
        Ok(o) => assert!(
            o.status.success(),
            "pngcheck rejects {}: {}",
            path.display(),
            String::from_utf8_lossy(&o.stdout)
        ),
        Err(e) => assert!(
            std::env::var_os("PNGCAST_REQUIRE_PNGCHECK").is_none(),
            "pngcheck is required but cannot run: {e}"
        ),
    }
}

/// Decodes a PNG without any transformation: the samples exactly as we wrote them. Also checks
/// it with pngcheck (see [`pngcheck`]).
fn decode(path: &Path) -> Decoded {
    pngcheck(path);
    let file = fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .expect("valid PNG");
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).expect("PNG data");
    pixels.truncate(info.buffer_size());
    let text = reader
        .info()
        .uncompressed_latin1_text
        .iter()
        .map(|t| (t.keyword.clone(), t.text.clone()))
        .collect();
    Decoded {
        width: info.width,
        height: info.height,
        color: info.color_type,
        depth: info.bit_depth,
        pixels,
        text,
    }
}

/// ComfyUI: `np.clip(255. * x, 0, 255).astype(np.uint8)` in f32, NaN -> 0.
fn comfy8(x: f32) -> u8 {
    let v = 255.0f32 * x;
    if v.is_nan() || v <= 0.0 {
        0
    } else if v >= 255.0 {
        255
    } else {
        v.trunc() as u8
    }
}

fn round8(x: f32) -> u8 {
    let v = 255.0f32 * x;
    if v.is_nan() || v <= 0.0 {
        0
    } else if v >= 255.0 {
        255
    } else {
        v.round_ties_even() as u8
    }
}

fn comfy16(x: f32) -> [u8; 2] {
    let v = 65535.0f32 * x;
    let s = if v.is_nan() || v <= 0.0 {
        0
    } else if v >= 65535.0 {
        65535
    } else {
        v.trunc() as u16
    };
    s.to_be_bytes()
}

/// Test samples: specials, values just around every k/255 boundary, and a pseudo-random rest.
fn samples(n: usize) -> Vec<f32> {
    let mut v = vec![
        0.0,
        -0.0,
        1.0,
        0.5,
        -1.0,
        2.0,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MIN_POSITIVE,
        1.0 - f32::EPSILON,
    ];
    for k in 0..=255u32 {
        let b = k as f32 / 255.0;
        v.extend([
            f32::from_bits(b.to_bits().saturating_sub(1)),
            b,
            f32::from_bits(b.to_bits() + 1),
        ]);
    }
    let mut state = 0x2545_f491_4f6c_dd1du64;
    while v.len() < n {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        v.push((state >> 40) as f32 / (1u64 << 24) as f32 * 1.2 - 0.1);
    }
    v.truncate(n);
    v
}

/// Names of the files in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

// ---------------------------------------------------------------------------------------------
// .npy input

#[test]
fn f32_hwc_matches_comfyui() {
    let dir = tmpdir("f32-hwc");
    let (h, w, c) = (23, 37, 3);
    let x = samples(h * w * c);
    let input = dir.join("in.npy");
    fs::write(&input, npy("<f4", false, &[h, w, c], &f32_bytes(&x))).unwrap();
    let out = dir.join("out.png");
    assert_ok(&run(&[&"encode", &input, &"-o", &out]));
    let d = decode(&out);
    assert_eq!((d.width, d.height), (w as u32, h as u32));
    assert_eq!(
        (d.color, d.depth),
        (png::ColorType::Rgb, png::BitDepth::Eight)
    );
    let want: Vec<u8> = x.iter().map(|&v| comfy8(v)).collect();
    assert_eq!(d.pixels, want);
    assert_eq!(listing(&dir), ["in.npy", "out.png"]);
}

#[test]
fn every_channel_count_and_option_decodes_to_the_same_pixels() {
    let dir = tmpdir("options");
    for c in 1..=4usize {
        let (b, h, w) = (1, 9, 130);
        let x = samples(b * h * w * c);
        let input = dir.join(format!("in{c}.npy"));
        fs::write(&input, npy("<f4", false, &[b, h, w, c], &f32_bytes(&x))).unwrap();
        let want: Vec<u8> = x.iter().map(|&v| comfy8(v)).collect();
        let color = [
            png::ColorType::Grayscale,
            png::ColorType::GrayscaleAlpha,
            png::ColorType::Rgb,
            png::ColorType::Rgba,
        ][c - 1];
        let variants: &[&[&str]] = &[
            &[],
            &["--compression", "stored"],
            &["--compression", "compact"],
            &["--compression", "compact=9"],
            &["--filter", "none"],
            &["--filter", "sub"],
            &["--filter", "up"],
            &["--filter", "average"],
            &["--filter", "paeth"],
            &["--filter", "adaptive", "--threads", "1"],
            &["--threads", "2"],
            &[
                "--threads",
                "8",
                "--compression",
                "stored",
                "--filter",
                "paeth",
            ],
        ];
        for extra in variants {
            let out = dir.join("out.png");
            let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"encode", &input, &"-o", &out];
            args.extend(extra.iter().map(|s| s as &dyn AsRef<std::ffi::OsStr>));
            assert_ok(&run(&args));
            let d = decode(&out);
            assert_eq!(
                (d.color, d.depth),
                (color, png::BitDepth::Eight),
                "{extra:?}"
            );
            assert_eq!(d.pixels, want, "channels {c}, options {extra:?}");
            if extra.contains(&"stored") {
                assert!(fs::metadata(&out).unwrap().len() as usize > want.len());
            }
        }
    }
}

#[test]
fn f16_gray_hw() {
    let dir = tmpdir("f16");
    let bits: Vec<u16> = vec![
        0x0000, 0x8000, 0x3c00, 0x3800, 0x3555, 0x7e00, 0x7c00, 0xfc00, 0xbc00, 0x2e66, 0x3bff,
        0x0001,
    ];
    let data: Vec<u8> = bits.iter().flat_map(|b| b.to_le_bytes()).collect();
    let input = dir.join("in.npy");
    fs::write(&input, npy("<f2", false, &[3, 4], &data)).unwrap();
    let out = dir.join("g.png");
    assert_ok(&run(&[&"encode", &input, &"-o", &out]));
    let d = decode(&out);
    assert_eq!(
        (d.width, d.height, d.color),
        (4, 3, png::ColorType::Grayscale)
    );
    let want: Vec<u8> = bits
        .iter()
        .map(|&b| comfy8(half::f16::from_bits(b).to_f32()))
        .collect();
    assert_eq!(d.pixels, want);
    assert_eq!(&want[..4], &[0, 0, 255, 127]);
}

#[test]
fn u8_batch_names_and_index() {
    let dir = tmpdir("u8-batch");
    let (b, h, w, c) = (3, 5, 6, 4);
    let data: Vec<u8> = (0..b * h * w * c).map(|i| (i * 7 % 256) as u8).collect();
    let input = dir.join("batch.npy");
    fs::write(&input, npy("|u1", false, &[b, h, w, c], &data)).unwrap();
    let out = dir.join("frame.png");
    assert_ok(&run(&[&"encode", &input, &"-o", &out]));
    assert_eq!(
        listing(&dir),
        [
            "batch.npy",
            "frame_0000.png",
            "frame_0001.png",
            "frame_0002.png"
        ]
    );
    let image = h * w * c;
    for i in 0..b {
        let d = decode(&dir.join(format!("frame_{i:04}.png")));
        assert_eq!(d.color, png::ColorType::Rgba);
        assert_eq!(d.pixels, &data[i * image..(i + 1) * image], "image {i}");
    }

    let one = dir.join("one.png");
    assert_ok(&run(&[&"encode", &input, &"-o", &one, &"--index", &"2"]));
    assert_eq!(decode(&one).pixels, &data[2 * image..]);
    assert!(!dir.join("one_0002.png").exists());

    // u8 at 16 bits is scaled by 257 (v -> v v).
    let wide = dir.join("wide.png");
    assert_ok(&run(&[
        &"encode",
        &input,
        &"-o",
        &wide,
        &"--index",
        &"0",
        &"--bit-depth",
        &"16",
    ]));
    let d = decode(&wide);
    assert_eq!(d.depth, png::BitDepth::Sixteen);
    let want: Vec<u8> = data[..image].iter().flat_map(|&v| [v, v]).collect();
    assert_eq!(d.pixels, want);
}

#[test]
fn masks_and_layout_override() {
    let dir = tmpdir("layout");
    // [2,4,6] is two 4x6 masks or one channels-first gray+alpha image: refused without --layout.
    let x = samples(2 * 4 * 6);
    let input = dir.join("mask.npy");
    fs::write(&input, npy("<f4", false, &[2, 4, 6], &f32_bytes(&x))).unwrap();
    let out = dir.join("m.png");
    assert_refused(&dir, &[&"encode", &input, &"-o", &out], "--layout bhw");
    assert_ok(&run(&[&"encode", &input, &"-o", &out, &"--layout", &"bhw"]));
    for i in 0..2 {
        let d = decode(&dir.join(format!("m_{i:04}.png")));
        assert_eq!(
            (d.width, d.height, d.color),
            (6, 4, png::ColorType::Grayscale)
        );
        let want: Vec<u8> = x[i * 24..(i + 1) * 24].iter().map(|&v| comfy8(v)).collect();
        assert_eq!(d.pixels, want);
    }

    // [2,4,3] is refused without --layout; hwc makes one 2x4 RGB image, bhw two 4x3 masks.
    let input = dir.join("ambiguous.npy");
    fs::write(&input, npy("<f4", false, &[2, 4, 3], &f32_bytes(&x[..24]))).unwrap();
    let rgb = dir.join("rgb.png");
    assert_refused(&dir, &[&"encode", &input, &"-o", &rgb], "--layout hwc");
    assert_ok(&run(&[&"encode", &input, &"-o", &rgb, &"--layout", &"hwc"]));
    let d = decode(&rgb);
    assert_eq!((d.width, d.height, d.color), (4, 2, png::ColorType::Rgb));
    let masks = dir.join("masks.png");
    assert_ok(&run(&[
        &"encode",
        &input,
        &"-o",
        &masks,
        &"--layout",
        &"bhw",
        &"--index",
        &"1",
    ]));
    let d = decode(&masks);
    assert_eq!(
        (d.width, d.height, d.color),
        (3, 4, png::ColorType::Grayscale)
    );
    let want: Vec<u8> = x[12..24].iter().map(|&v| comfy8(v)).collect();
    assert_eq!(d.pixels, want);

    // [1,4,6,1] read as bhwc is one gray image.
    let input = dir.join("b1.npy");
    fs::write(
        &input,
        npy("<f4", false, &[1, 4, 6, 1], &f32_bytes(&x[..24])),
    )
    .unwrap();
    let one = dir.join("b1.png");
    assert_ok(&run(&[
        &"encode",
        &input,
        &"-o",
        &one,
        &"--layout",
        &"bhwc",
    ]));
    assert_eq!(
        decode(&one).pixels,
        x[..24].iter().map(|&v| comfy8(v)).collect::<Vec<_>>()
    );
}

#[test]
fn channels_first_equals_channels_last() {
    let dir = tmpdir("chw");
    // [C=3,H=2,W=4] u8 and the same pixels as [H,W,C].
    let chw: Vec<u8> = (0..24).map(|i| (i * 7 % 256) as u8).collect();
    let mut hwc = vec![0u8; 24];
    for c in 0..3 {
        for p in 0..8 {
            hwc[p * 3 + c] = chw[c * 8 + p];
        }
    }
    let a = dir.join("chw.npy");
    fs::write(&a, npy("|u1", false, &[3, 2, 4], &chw)).unwrap();
    let out = dir.join("chw.png");
    assert_refused(&dir, &[&"encode", &a, &"-o", &out], "--layout chw");
    assert_ok(&run(&[&"encode", &a, &"-o", &out, &"--layout", &"chw"]));
    let d = decode(&out);
    assert_eq!((d.width, d.height, d.color), (4, 2, png::ColorType::Rgb));
    assert_eq!(d.pixels, hwc);
    // [B=1,C=3,H=2,W=5] has one reading (bchw) and needs no --layout.
    let chw5: Vec<u8> = (0..30).map(|i| i as u8).collect();
    let b = dir.join("bchw.npy");
    fs::write(&b, npy("|u1", false, &[1, 3, 2, 5], &chw5)).unwrap();
    let out = dir.join("bchw.png");
    assert_ok(&run(&[&"encode", &b, &"-o", &out]));
    let d = decode(&out);
    assert_eq!((d.width, d.height), (5, 2));
    assert_eq!(&d.pixels[..3], &[0, 10, 20]);
}

#[test]
fn fortran_order_equals_c_order() {
    let dir = tmpdir("fortran");
    let (h, w, c) = (5, 7, 3);
    let x = samples(h * w * c); // C order: (y, x, ch) at (y*w + x)*c + ch
                                // Fortran order: (y, x, ch) at y + h*(x + w*ch).
    let mut f = vec![0f32; x.len()];
    for y in 0..h {
        for xx in 0..w {
            for ch in 0..c {
                f[y + h * (xx + w * ch)] = x[(y * w + xx) * c + ch];
            }
        }
    }
    let input = dir.join("f.npy");
    fs::write(&input, npy("<f4", true, &[h, w, c], &f32_bytes(&f))).unwrap();
    let out = dir.join("f.png");
    assert_ok(&run(&[&"encode", &input, &"-o", &out]));
    let want: Vec<u8> = x.iter().map(|&v| comfy8(v)).collect();
    assert_eq!(decode(&out).pixels, want);
}

#[test]
fn big_endian_round_and_sixteen_bits() {
    let dir = tmpdir("be16");
    let (h, w) = (16, 50);
    let x = samples(h * w);
    let data: Vec<u8> = x.iter().flat_map(|v| v.to_be_bytes()).collect();
    let input = dir.join("be.npy");
    fs::write(&input, npy(">f4", false, &[h, w], &data)).unwrap();

    let out = dir.join("round.png");
    assert_ok(&run(&[
        &"encode",
        &input,
        &"-o",
        &out,
        &"--quantize",
        &"round",
    ]));
    assert_eq!(
        decode(&out).pixels,
        x.iter().map(|&v| round8(v)).collect::<Vec<_>>()
    );

    let out = dir.join("d16.png");
    assert_ok(&run(&[
        &"encode",
        &input,
        &"-o",
        &out,
        &"--bit-depth",
        &"16",
    ]));
    let d = decode(&out);
    assert_eq!(d.depth, png::BitDepth::Sixteen);
    assert_eq!(
        d.pixels,
        x.iter().flat_map(|&v| comfy16(v)).collect::<Vec<_>>()
    );
}

#[test]
fn text_chunks() {
    let dir = tmpdir("text");
    let input = dir.join("t.npy");
    fs::write(&input, npy("|u1", false, &[2, 2], &[1, 2, 3, 4])).unwrap();
    let out = dir.join("t.png");
    assert_ok(&run(&[
        &"encode",
        &input,
        &"-o",
        &out,
        &"--text",
        &"Title=a=b",
        &"--text",
        &"Software=pngcast",
    ]));
    let d = decode(&out);
    assert_eq!(
        d.text,
        [
            ("Title".to_string(), "a=b".to_string()),
            ("Software".to_string(), "pngcast".to_string())
        ]
    );
    assert_eq!(d.pixels, [1, 2, 3, 4]);
}

#[test]
fn repeat_prints_one_json_line() {
    let dir = tmpdir("repeat");
    let x = samples(64 * 48 * 3);
    let input = dir.join("r.npy");
    fs::write(&input, npy("<f4", false, &[64, 48, 3], &f32_bytes(&x))).unwrap();
    let out = dir.join("r.png");
    let o = run(&[&"encode", &input, &"-o", &out, &"--repeat", &"5"]);
    assert_ok(&o);
    let stdout = String::from_utf8(o.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(v["convert_ms"].as_f64().unwrap() >= 0.0);
    assert!(v["encode_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(
        v["bytes"].as_u64().unwrap(),
        fs::metadata(&out).unwrap().len()
    );
    assert_eq!(v["repeat"], 5);
    assert_eq!(
        decode(&out).pixels,
        x.iter().map(|&v| comfy8(v)).collect::<Vec<_>>()
    );
    // Without --repeat the file is named on stdout, and the encoder's one-call path (conversion fused
    // into encoding) writes the very same bytes as the timed two-step path.
    let timed = fs::read(&out).unwrap();
    let once = dir.join("once.png");
    let o = run(&[&"encode", &input, &"-o", &once]);
    assert_ok(&o);
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        format!("wrote {} ({} bytes)\n", once.display(), timed.len())
    );
    assert_eq!(fs::read(&once).unwrap(), timed);
}

// ---------------------------------------------------------------------------------------------
// PNG input

fn write_png(
    path: &Path,
    w: u32,
    h: u32,
    color: png::ColorType,
    depth: png::BitDepth,
    palette: Option<&[u8]>,
    data: &[u8],
) {
    let file = fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w, h);
    enc.set_color(color);
    enc.set_depth(depth);
    if let Some(p) = palette {
        enc.set_palette(p.to_vec());
    }
    let mut writer = enc.write_header().unwrap();
    writer.write_image_data(data).unwrap();
    writer.finish().unwrap();
}

#[test]
fn png_input_is_reencoded() {
    let dir = tmpdir("png-in");
    let (w, h) = (17u32, 9u32);
    let n = (w * h) as usize;
    let bytes = |k: usize| (0..k).map(|i| (i * 31 % 251) as u8).collect::<Vec<u8>>();
    let cases = [
        (png::ColorType::Grayscale, 1),
        (png::ColorType::GrayscaleAlpha, 2),
        (png::ColorType::Rgb, 3),
        (png::ColorType::Rgba, 4),
    ];
    for (color, c) in cases {
        // 8-bit: kept exactly.
        let src = dir.join("src8.png");
        let data = bytes(n * c);
        write_png(&src, w, h, color, png::BitDepth::Eight, None, &data);
        let out = dir.join("out8.png");
        assert_ok(&run(&[&"encode", &src, &"-o", &out, &"--filter", &"paeth"]));
        let d = decode(&out);
        assert_eq!(
            (d.width, d.height, d.color, d.depth),
            (w, h, color, png::BitDepth::Eight)
        );
        assert_eq!(d.pixels, data);

        // 16-bit: kept exactly at 16 bits (the default for 16-bit input)...
        let src = dir.join("src16.png");
        let data: Vec<u8> = (0..n * c)
            .flat_map(|i| ((i as u32 * 40_503 % 65_536) as u16).to_be_bytes())
            .collect();
        write_png(&src, w, h, color, png::BitDepth::Sixteen, None, &data);
        let out = dir.join("out16.png");
        assert_ok(&run(&[&"encode", &src, &"-o", &out]));
        let d = decode(&out);
        assert_eq!((d.color, d.depth), (color, png::BitDepth::Sixteen));
        assert_eq!(d.pixels, data);
        // ... and quantised like a tensor at 8 bits.
        let out = dir.join("out16to8.png");
        assert_ok(&run(&[&"encode", &src, &"-o", &out, &"--bit-depth", &"8"]));
        let want: Vec<u8> = data
            .chunks_exact(2)
            .map(|s| comfy8(f32::from(u16::from_be_bytes([s[0], s[1]])) / 65535.0))
            .collect();
        assert_eq!(decode(&out).pixels, want);
    }

    // A palette image is expanded to RGB.
    let palette = [255u8, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30];
    let idx: Vec<u8> = (0..n).map(|i| (i % 4) as u8).collect();
    let src = dir.join("pal.png");
    write_png(
        &src,
        w,
        h,
        png::ColorType::Indexed,
        png::BitDepth::Eight,
        Some(&palette),
        &idx,
    );
    let out = dir.join("pal-out.png");
    assert_ok(&run(&[&"encode", &src, &"-o", &out]));
    let d = decode(&out);
    assert_eq!(d.color, png::ColorType::Rgb);
    let want: Vec<u8> = idx
        .iter()
        .flat_map(|&i| palette[3 * i as usize..3 * i as usize + 3].to_vec())
        .collect();
    assert_eq!(d.pixels, want);

    // A 1-bit gray image becomes 8-bit 0/255.
    let (w1, h1) = (10u32, 3u32);
    let packed: Vec<u8> = vec![0b1010_1100, 0b1100_0000, 0xff, 0x00, 0x0f, 0xc0];
    let src = dir.join("bits.png");
    write_png(
        &src,
        w1,
        h1,
        png::ColorType::Grayscale,
        png::BitDepth::One,
        None,
        &packed,
    );
    let out = dir.join("bits-out.png");
    assert_ok(&run(&[&"encode", &src, &"-o", &out]));
    let d = decode(&out);
    assert_eq!(
        (d.color, d.depth),
        (png::ColorType::Grayscale, png::BitDepth::Eight)
    );
    let mut want = Vec::new();
    for row in packed.chunks(2) {
        for x in 0..w1 as usize {
            let bit = row[x / 8] >> (7 - x % 8) & 1;
            want.push(if bit == 1 { 255 } else { 0 });
        }
    }
    assert_eq!(d.pixels, want);
}

// ---------------------------------------------------------------------------------------------
// Bad input: exit code 2, one line on stderr, nothing left behind.

/// Runs a failing command in `dir` and checks the contract. Returns the stderr line.
fn assert_refused(dir: &Path, args: &[&dyn AsRef<std::ffi::OsStr>], expect: &str) -> String {
    let before = listing(dir);
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "exit code; stderr: {stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "exactly one stderr line: {stderr:?}"
    );
    assert!(stderr.starts_with("pngcast: error: "), "{stderr:?}");
    assert!(
        stderr.to_lowercase().contains(&expect.to_lowercase()),
        "stderr {stderr:?} should mention {expect:?}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.stdout.is_empty());
    assert_eq!(listing(dir), before, "no file may be left behind");
    stderr
}

#[test]
fn bad_inputs_are_refused_cleanly() {
    let dir = tmpdir("bad");
    let out = dir.join("out.png");
    let put = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        fs::write(&p, bytes).unwrap();
        p
    };
    let good = put(
        "good.npy",
        &npy("<f4", false, &[6, 3, 1], &f32_bytes(&[0.5; 18])),
    );

    assert_refused(
        &dir,
        &[&"encode", &dir.join("missing.npy"), &"-o", &out],
        "missing.npy",
    );
    let p = put("empty.npy", b"");
    assert_refused(&dir, &[&"encode", &p, &"-o", &out], "empty");
    let p = put("text.npy", b"hello, world\n");
    assert_refused(&dir, &[&"encode", &p, &"-o", &out], "neither a .npy");
    let full = npy("<f4", false, &[4, 4, 3], &f32_bytes(&[0.25; 48]));
    let p = put("short-data.npy", &full[..full.len() - 5]);
    assert_refused(&dir, &[&"encode", &p, &"-o", &out], "truncated");
    let p = put("short-header.npy", &full[..40]);
    assert_refused(&dir, &[&"encode", &p, &"-o", &out], "truncated");
    let p = put("long.npy", &[&full[..], &[0u8; 3]].concat());
    assert_refused(&dir, &[&"encode", &p, &"-o", &out], "after the data");
    let mut garbled = full.clone();
    garbled[12..20].copy_from_slice(b"!!!!!!!!");
    let p = put("garbled.npy", &garbled);
    assert_refused(&dir, &[&"encode", &p, &"-o", &out], "header");
    // float64 is read (numpy's default float), complex is not.
    let p = put("c8.npy", &npy("<c8", false, &[2, 2], &[0; 32]));
    assert_refused(&dir, &[&"encode", &p, &"-o", &out], "dtype");
    let p = put("i4.npy", &npy("<i4", false, &[2, 2], &[0; 16]));
    assert_refused(&dir, &[&"encode", &p, &"-o", &out], "dtype");
    let p = put("bool.npy", &npy("|b1", false, &[2, 2], &[0; 4]));
    assert_refused(&dir, &[&"encode", &p, &"-o", &out], "dtype");
    let p = put("rank1.npy", &npy("|u1", false, &[6], &[0; 6]));
    assert_refused(&dir, &[&"encode", &p, &"-o", &out], "shape");
    let p = put("rank5.npy", &npy("|u1", false, &[1, 1, 2, 2, 1], &[0; 4]));
    assert_refused(&dir, &[&"encode", &p, &"-o", &out], "shape");
    let p = put("c5.npy", &npy("|u1", false, &[1, 5, 2, 5], &[0; 50]));
    assert_refused(&dir, &[&"encode", &p, &"-o", &out], "channel");
    let p = put("zero.npy", &npy("<f4", false, &[0, 4, 3], &[]));
    assert_refused(&dir, &[&"encode", &p, &"-o", &out], "zero");
    let p = put(
        "huge.npy",
        &npy("<f4", false, &[1 << 32, 1 << 32, 1 << 32], &[]),
    );
    assert_refused(&dir, &[&"encode", &p, &"-o", &out], "too large");
    let p = put("badpng.png", b"\x89PNG\r\n\x1a\nthis is not a PNG at all");
    assert_refused(&dir, &[&"encode", &p, &"-o", &out], "PNG");

    // Options.
    assert_refused(
        &dir,
        &[&"encode", &good, &"-o", &out, &"--index", &"1"],
        "index",
    );
    assert_refused(
        &dir,
        &[&"encode", &good, &"-o", &out, &"--layout", &"bhwc"],
        "layout",
    );
    assert_refused(
        &dir,
        &[&"encode", &good, &"-o", &out, &"--filter", &"best"],
        "--filter",
    );
    assert_refused(
        &dir,
        &[
            &"encode",
            &good,
            &"-o",
            &out,
            &"--compression",
            &"compact=0",
        ],
        "level",
    );
    assert_refused(
        &dir,
        &[&"encode", &good, &"-o", &out, &"--compression", &"zip"],
        "compression",
    );
    assert_refused(
        &dir,
        &[&"encode", &good, &"-o", &out, &"--bit-depth", &"12"],
        "bit-depth",
    );
    assert_refused(
        &dir,
        &[&"encode", &good, &"-o", &out, &"--threads", &"0"],
        "threads",
    );
    assert_refused(
        &dir,
        &[&"encode", &good, &"-o", &out, &"--repeat", &"0"],
        "repeat",
    );
    assert_refused(
        &dir,
        &[&"encode", &good, &"-o", &out, &"--text", &"nokey"],
        "KEY=VALUE",
    );
    assert_refused(
        &dir,
        &[&"encode", &good, &"-o", &out, &"--text", &" lead=x"],
        "keyword",
    );
    assert_refused(
        &dir,
        &[&"encode", &good, &"-o", &out, &"--text", &"\u{2603}=x"],
        "keyword",
    );
    assert_refused(
        &dir,
        &[&"encode", &good, &"-o", &out, &"--text", &"a  b=x"],
        "keyword",
    );
    assert_refused(
        &dir,
        &[
            &"encode",
            &good,
            &"-o",
            &out,
            &"--text",
            &format!("{}=x", "k".repeat(80)),
        ],
        "keyword",
    );
    assert_refused(
        &dir,
        &[&"encode", &good, &"-o", &out, &"--quantize", &"up"],
        "quantize",
    );
    assert_refused(&dir, &[&"encode", &good], "--output");
    assert_refused(
        &dir,
        &[&"encode", &good, &"-o", &out, &"--bogus"],
        "--bogus",
    );
    assert_refused(&dir, &[&"frobnicate"], "frobnicate");

    // Unwritable outputs.
    let under_file = good.join("out.png");
    assert_refused(&dir, &[&"encode", &good, &"-o", &under_file], "out.png");
    let no_dir = dir.join("no-such-dir").join("out.png");
    assert_refused(&dir, &[&"encode", &good, &"-o", &no_dir], "no-such-dir");
    assert_refused(&dir, &[&"encode", &good, &"-o", &dir], "directory");
    // A batch whose second output cannot be written leaves neither output nor temporary files.
    let batch = put("batch.npy", &npy("|u1", false, &[2, 5, 2, 1], &[7; 20]));
    fs::create_dir(dir.join("b_0001.png")).unwrap();
    assert_refused(
        &dir,
        &[&"encode", &batch, &"-o", &dir.join("b.png")],
        "b_0001.png",
    );
    fs::remove_dir(dir.join("b_0001.png")).unwrap();

    // The good input itself works (the refusals above were about the cases, not the file).
    assert_ok(&run(&[&"encode", &good, &"-o", &out]));
}

#[test]
fn help_and_version_exit_zero() {
    let o = run(&[&"--help"]);
    assert_ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("encode"));
    let o = run(&[&"encode", &"--help"]);
    assert_ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("--compression"));
    assert_ok(&run(&[&"--version"]));
}

#[test]
fn version_names_the_build_and_the_kernels() {
    let out = run(&[&"--version"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("pngcast "), "{text}");
    assert!(text.contains("conversion kernel: "), "{text}");
    assert!(text.contains("fast coder kernel: "), "{text}");
    assert!(text.contains(" build for "), "{text}");
}

/// Runs `python3 -c script`; true when it exits 0.
fn python3(script: &str) -> bool {
    Command::new("python3")
        .args(["-c", script])
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether `python3` with numpy and Pillow is here (CI installs both: there it must be).
fn python_with_numpy() -> bool {
    let ok = python3("import numpy, PIL");
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but python3 with numpy and Pillow is missing"
        );
        eprintln!("note: python3 with numpy and Pillow not found; skipping");
    }
    ok
}

/// float64 `.npy` (numpy's default dtype) is quantised exactly as numpy does it on the float64
/// array, including values where going through float32 would round differently.
#[test]
fn float64_npy_matches_numpy_bit_exact() {
    if !python_with_numpy() {
        return;
    }
    let dir = tmpdir("f64");
    let npy = dir.join("x.npy");
    let want = dir.join("want.npy");
    let script = format!(
        r#"
import numpy as np
rng = np.random.default_rng(3)
x = rng.uniform(-0.25, 1.25, size=(2, 40, 50, 3))
edge = np.array([k / 255 for k in range(256)] + [(k + 0.5) / 255 for k in range(255)]
                + [np.nextafter(k / 255, -1) for k in range(1, 256)] + [1 - 1e-12, 1e-300, -0.0, 2.0, np.inf, -np.inf])
x.reshape(-1)[: edge.size] = edge
x[1, 0, 0, 0] = np.nan
np.save("{npy}", x)
with np.errstate(invalid="ignore"):
    w = np.clip(255 * x, 0, 255)
np.save("{want}", np.where(np.isnan(w), 0, w).astype(np.uint8))
# Going through float32 differs on some of these values: the test would catch that path.
with np.errstate(invalid="ignore"):
    f32 = np.clip(np.float32(255) * x.astype(np.float32), 0, 255)
assert (np.where(np.isnan(f32), 0, f32).astype(np.uint8) != np.where(np.isnan(w), 0, w).astype(np.uint8)).any()
"#,
        npy = npy.display(),
        want = want.display()
    );
    let ok = python3(&script);
    assert!(ok, "numpy script failed");
    let out = dir.join("out.png");
    assert_ok(&run(&[&"encode", &npy, &"-o", &out, &"--layout", &"bhwc"]));
    let check = format!(
        r#"
import numpy as np
from PIL import Image
w = np.load("{want}")
for i in range(2):
    got = np.asarray(Image.open("{dir}/out_{{:04d}}.png".format(i)))
    assert (got == w[i]).all(), i
"#,
        want = want.display(),
        dir = dir.display()
    );
    let ok = python3(&check);
    assert!(ok, "pngcast's float64 output differs from numpy's");
    // 16-bit output from float64 is refused with a clear message.
    let r = run(&[
        &"encode",
        &npy,
        &"-o",
        &out,
        &"--bit-depth",
        &"16",
        &"--layout",
        &"bhwc",
    ]);
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("float64"));
}

// ---------------------------------------------------------------------------------------------
// Standard input and output, what is printed, text chunks

/// Runs pngcast with `stdin` fed to its standard input.
fn run_stdin(args: &[&dyn AsRef<std::ffi::OsStr>], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_pngcast"))
        .args(args.iter().map(|a| a.as_ref()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pngcast");
    let mut pipe = child.stdin.take().unwrap();
    let bytes = stdin.to_vec();
    // A writer thread: the child may exit before reading everything (a refused input).
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&bytes);
    });
    let out = child.wait_with_output().expect("wait pngcast");
    writer.join().unwrap();
    out
}

/// Every text chunk of a PNG held in memory, in the decoder's order: tEXt, zTXt, then iTXt,
/// with each chunk's type.
fn text_of(png_bytes: &[u8]) -> Vec<(&'static str, String, String)> {
    let mut reader = png::Decoder::new(std::io::Cursor::new(png_bytes))
        .read_info()
        .expect("valid PNG");
    let mut px = vec![0; reader.output_buffer_size().unwrap()];
    reader.next_frame(&mut px).unwrap();
    reader.finish().unwrap();
    let info = reader.info();
    let mut out = Vec::new();
    for t in &info.uncompressed_latin1_text {
        out.push(("tEXt", t.keyword.clone(), t.text.clone()));
    }
    for t in &info.compressed_latin1_text {
        out.push(("zTXt", t.keyword.clone(), t.get_text().unwrap()));
    }
    for t in &info.utf8_text {
        assert!(!t.compressed);
        out.push(("iTXt", t.keyword.clone(), t.get_text().unwrap()));
    }
    out
}

#[test]
fn stdin_and_stdout() {
    let dir = tmpdir("stdio");
    let x = samples(6 * 5 * 3);
    let arr = npy("<f4", false, &[6, 5, 3], &f32_bytes(&x));
    let file = dir.join("x.png");
    fs::write(dir.join("x.npy"), &arr).unwrap();
    assert_ok(&run(&[&"encode", &dir.join("x.npy"), &"-o", &file, &"-q"]));
    let want = fs::read(&file).unwrap();

    // .npy on stdin, PNG on stdout: the same bytes as file to file, nothing else on stdout.
    let o = run_stdin(&[&"encode", &"-", &"-o", &"-"], &arr);
    assert_ok(&o);
    assert_eq!(o.stdout, want);
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // PNG on stdin (detected by its magic) re-encoded to a file.
    let again = dir.join("again.png");
    let o = run_stdin(&[&"encode", &"-", &"-o", &again], &want);
    assert_ok(&o);
    assert_eq!(decode(&again).pixels, decode(&file).pixels);
    fs::remove_file(&again).unwrap();

    // A batch to stdout needs --index; one image of it goes.
    let batch = npy("|u1", false, &[3, 2, 2], &(0..12).collect::<Vec<u8>>());
    let o = run_stdin(&[&"encode", &"-", &"-o", &"-", &"--layout", &"bhw"], &batch);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("pngcast: error: ") && err.contains("--index"),
        "{err}"
    );
    let o = run_stdin(
        &[
            &"encode",
            &"-",
            &"-o",
            &"-",
            &"--layout",
            &"bhw",
            &"--index",
            &"2",
        ],
        &batch,
    );
    assert_ok(&o);
    let one = dir.join("one.png");
    fs::write(&one, &o.stdout).unwrap();
    assert_eq!(decode(&one).pixels, [8, 9, 10, 11]);
    fs::remove_file(&one).unwrap();

    // Bad input on stdin, and --repeat with stdout: one error line, nothing on stdout or disk.
    let before = listing(&dir);
    for (stdin, args, expect) in [
        (&b""[..], &["encode", "-", "-o", "-"][..], "empty"),
        (&b"GIF89a...."[..], &["encode", "-", "-o", "-"][..], "magic"),
        (
            &want[..want.len() / 2],
            &["encode", "-", "-o", "-"][..],
            "decode",
        ),
        (
            &arr[..arr.len() - 7],
            &["encode", "-", "-o", "-"][..],
            "standard input",
        ),
        (
            &arr[..],
            &["encode", "-", "-o", "-", "--repeat", "2"][..],
            "--repeat",
        ),
    ] {
        let args: Vec<&dyn AsRef<std::ffi::OsStr>> = args
            .iter()
            .map(|a| a as &dyn AsRef<std::ffi::OsStr>)
            .collect();
        let o = run_stdin(&args, stdin);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{expect}: {err}");
        assert!(o.stdout.is_empty(), "{expect}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("pngcast: error: "), "{err}");
        assert!(err.contains(expect), "{err} should mention {expect}");
        assert!(!err.contains("panicked"), "{err}");
    }
    assert_eq!(listing(&dir), before);
}

#[test]
fn written_files_are_named_unless_quiet() {
    let dir = tmpdir("wrote");
    let input = dir.join("b.npy");
    let out = dir.join("o.png");
    fs::write(&input, npy("|u1", false, &[3, 2, 2], &[7; 12])).unwrap();
    let o = run(&[&"encode", &input, &"-o", &out, &"--layout", &"bhw"]);
    assert_ok(&o);
    let lines: Vec<String> = (0..3)
        .map(|i| {
            let p = dir.join(format!("o_000{i}.png"));
            format!(
                "wrote {} ({} bytes)",
                p.display(),
                fs::metadata(&p).unwrap().len()
            )
        })
        .collect();
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        lines.join("\n") + "\n"
    );
    for q in ["-q", "--quiet"] {
        let o = run(&[&"encode", &input, &"-o", &out, &"--layout", &"bhw", &q]);
        assert_ok(&o);
        assert!(o.stdout.is_empty() && o.stderr.is_empty());
    }
    // More than 20 files: one summary line.
    fs::write(&input, npy("|u1", false, &[21, 2, 2], &[7; 84])).unwrap();
    let o = run(&[&"encode", &input, &"-o", &out, &"--layout", &"bhw"]);
    assert_ok(&o);
    let total: u64 = (0..21)
        .map(|i| {
            fs::metadata(dir.join(format!("o_{i:04}.png")))
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        format!(
            "wrote 21 files, {} .. {} ({total} bytes)\n",
            dir.join("o_0000.png").display(),
            dir.join("o_0020.png").display()
        )
    );
}

#[test]
fn utf8_text_is_itxt_and_latin1_stays_text() {
    let dir = tmpdir("itxt");
    let input = dir.join("t.npy");
    fs::write(&input, npy("|u1", false, &[2, 2], &[1, 2, 3, 4])).unwrap();
    let out = dir.join("t.png");
    let emoji = "a \u{1F431} \u{732b} \u{732b}";
    assert_ok(&run(&[
        &"encode",
        &input,
        &"-o",
        &out,
        &"--text",
        &format!("prompt={emoji}"),
        &"--text",
        &"Title=caf\u{e9}",
    ]));
    pngcheck(&out);
    let bytes = fs::read(&out).unwrap();
    assert_eq!(
        text_of(&bytes),
        [
            ("tEXt", "Title".into(), "caf\u{e9}".into()),
            ("iTXt", "prompt".into(), emoji.into()),
        ]
    );
}

/// A PNG written by Pillow with ComfyUI's `prompt`/`workflow` chunks (tEXt), a zTXt and an iTXt
/// is re-encoded with all of them, in order; --text replaces one and adds one; --strip-text drops
/// them. Pillow reads the results back.
#[test]
fn png_text_chunks_are_kept_or_stripped() {
    if !python_with_numpy() {
        return;
    }
    let dir = tmpdir("keep-text");
    let src = dir.join("comfy.png");
    let script = format!(
        r#"
import json
from PIL import Image, PngImagePlugin
m = PngImagePlugin.PngInfo()
m.add_text("prompt", json.dumps({{"3": {{"class_type": "KSampler", "inputs": {{"seed": 1}}}}}}))
m.add_text("workflow", json.dumps({{"nodes": [{{"id": 3, "title": "caf\u00e9"}}]}}))
m.add_text("Comment", "squeezed " * 50, zip=True)
m.add_itxt("Title", "\u732b \U0001F431", lang="ja", tkey="t")
m.add_itxt("Note", "\u00e9t\u00e9 " * 40, zip=True)
Image.new("RGB", (3, 2), (10, 20, 30)).save({src:?}, pnginfo=m)
"#,
        src = src.to_str().unwrap()
    );
    assert!(python3(&script), "python script failed");
    let read_back = |p: &Path| -> String {
        let o = Command::new("python3")
            .args([
                "-c",
                "import json,sys; from PIL import Image; im=Image.open(sys.argv[1]); im.load(); \
                 print(json.dumps(list(im.text.items())))",
                p.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let want = read_back(&src);
    let kept = dir.join("kept.png");
    assert_ok(&run(&[&"encode", &src, &"-o", &kept, &"-q"]));
    pngcheck(&kept);
    assert_eq!(read_back(&kept), want);
    assert_eq!(decode(&kept).pixels, [10, 20, 30].repeat(6));

    let edited = dir.join("edited.png");
    assert_ok(&run(&[
        &"encode",
        &src,
        &"-o",
        &edited,
        &"-q",
        &"--text",
        &"workflow={}",
        &"--text",
        &"New=1",
    ]));
    let v: Vec<(String, String)> = serde_json::from_str(&read_back(&edited)).unwrap();
    let keys: Vec<&str> = v.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["prompt", "workflow", "Comment", "Title", "Note", "New"]
    );
    assert_eq!(v[1].1, "{}");
    assert_eq!(v[3].1, "\u{732b} \u{1F431}");

    let stripped = dir.join("stripped.png");
    assert_ok(&run(&[
        &"encode",
        &src,
        &"-o",
        &stripped,
        &"-q",
        &"--strip-text",
    ]));
    assert_eq!(read_back(&stripped).trim(), "[]");
}

/// Text chunks after the image data are kept too, in file order.
#[test]
fn text_after_the_image_data_is_kept() {
    let dir = tmpdir("text-after-idat");
    let src = dir.join("late.png");
    {
        let file = fs::File::create(&src).unwrap();
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), 2, 1);
        enc.set_color(png::ColorType::Grayscale);
        enc.add_text_chunk("early".into(), "1".into()).unwrap();
        let mut writer = enc.write_header().unwrap();
        writer.write_image_data(&[5, 6]).unwrap();
        writer
            .write_text_chunk(&png::text_metadata::ITXtChunk::new("late", "\u{732b}"))
            .unwrap();
        writer
            .write_text_chunk(&png::text_metadata::TEXtChunk::new("later", "x"))
            .unwrap();
        writer.finish().unwrap();
    }
    let out = dir.join("out.png");
    assert_ok(&run(&[&"encode", &src, &"-o", &out, &"-q"]));
    let bytes = fs::read(&out).unwrap();
    assert_eq!(
        text_of(&bytes),
        [
            ("tEXt", "early".into(), "1".into()),
            ("tEXt", "later".into(), "x".into()),
            ("iTXt", "late".into(), "\u{732b}".into()),
        ]
    );
    // File order: early, late, later (text_of groups by chunk type).
    let at = |k: &[u8]| bytes.windows(k.len()).position(|w| w == k).unwrap();
    assert!(at(b"early") < at(b"late\0") && at(b"late\0") < at(b"later"));
    assert_eq!(decode(&out).pixels, [5, 6]);
}
