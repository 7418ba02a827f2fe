//! `pngcast encode`: a `.npy` tensor or a PNG to PNG file(s).
//!
//! The input is recognised by its magic bytes, not its name. Every image is converted
//! ([`convert_image`]) and then encoded ([`Encoder::encode_into`]) with buffers reused from one
//! image (and one `--repeat` round) to the next; outputs are staged and renamed into place only
//! once every image succeeded (see [`crate::output`]).
//!
//! `-` as input reads standard input to its end; `-` as output writes the one PNG to standard
//! output (and nothing else goes there). Otherwise each written file is named on stdout,
//! `wrote PATH (N bytes)`, or one summary line for more than [`LIST_MAX`] files; `--quiet`
//! prints nothing and `--repeat` prints its JSON line only.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use clap::{Args, ValueEnum};
use pngcast_core::convert::{convert_image, BitDepth, ConvertOptions, Quantize};
use pngcast_core::png::{
    Compression, EncodeOptions, Encoder, FastLevel, Filter, ImageInfo, Threads,
};
use pngcast_core::tensor::{ImageView, TensorView};

use crate::error::CliError;
use crate::npy::{Layout, NpyArray};
use crate::output::{batch_path, check_output_path, is_std, Staging};

/// More files than this are reported with one summary line.
const LIST_MAX: usize = 20;
use crate::pngin::DecodedPng;

/// Arguments of `pngcast encode`.
#[derive(Debug, Args)]
pub struct EncodeArgs {
    /// Input: a .npy array (float32, float16 or uint8; [B,H,W,C], [H,W,C], [B,H,W], [H,W] or
    /// channels-first with --layout;
    /// C or Fortran order) or a PNG file (re-encoded, its text chunks kept). `-` reads standard
    /// input.
    #[arg(value_name = "IN")]
    input: PathBuf,

    /// Output PNG. A batch of several images writes OUT_0000.png, OUT_0001.png, ...
    /// `-` writes one image to standard output.
    #[arg(short, long, value_name = "OUT.png")]
    output: PathBuf,

    /// Print nothing on success (by default each written file is named on stdout).
    #[arg(short, long)]
    quiet: bool,

    /// Drop the text chunks of a PNG input (kept by default).
    #[arg(long)]
    strip_text: bool,

    /// Write only image I of the batch, to OUT.png.
    #[arg(long, value_name = "I")]
    index: Option<usize>,

    /// How to read the array's axes (chw and bchw are channels-first). Without it a shape must
    /// have one reading: rank 2 is hw; rank 3 [A,B,C] is hwc when only C is 1..4, bhw when A is 1
    /// or neither A nor C is 1..4, and refused as ambiguous when A is 2..4, or A and C are both
    /// 1..4; rank 4 [B,X,Y,C] is bhwc when only C is 1..4, bchw when only X is 1..4, and refused
    /// when both are. The message names the --layout values to choose from.
    #[arg(long, value_enum)]
    layout: Option<Layout>,

    /// Deflate: `fast` (our own coder, the default; `fast=fastest` trades a little size for
    /// speed), `stored` (no compression, raw size), `compact` (zlib level 1, as ComfyUI's Pillow)
    /// or `compact=LEVEL` (1..9).
    #[arg(long, value_name = "MODE", value_parser = parse_compression)]
    compression: Option<Compression>,

    /// PNG row filter.
    #[arg(long, value_enum, default_value_t = FilterArg::Adaptive)]
    filter: FilterArg,

    /// Threads for conversion and encoding (default: one per core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,

    /// Bits per output sample (default: 8; for a 16-bit PNG input, 16).
    #[arg(long, value_enum)]
    bit_depth: Option<BitDepthArg>,

    /// How floats become integers: `truncate` is ComfyUI's `clip(255*x).astype(uint8)`.
    #[arg(long, value_enum, default_value_t = QuantizeArg::Truncate)]
    quantize: QuantizeArg,

    /// Add a text chunk (repeatable): tEXt, or UTF-8 iTXt when VALUE is not Latin-1. KEY is a
    /// PNG keyword (1..79 printable Latin-1 characters, no leading, trailing or double spaces);
    /// it replaces a kept chunk of the same key.
    #[arg(long = "text", value_name = "KEY=VALUE", value_parser = parse_text)]
    text: Vec<(String, String)>,

    /// Convert and encode N times in process and print one JSON line with the medians:
    /// {"convert_ms":..,"encode_ms":..,"bytes":..,...}. The output is still written.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    repeat: Option<u32>,
}

/// `--filter` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FilterArg {
    None,
    Sub,
    Up,
    Average,
    Paeth,
    /// Per row, the filter with the smallest sum of absolute residuals.
    Adaptive,
}

impl From<FilterArg> for Filter {
    fn from(f: FilterArg) -> Self {
        match f {
            FilterArg::None => Filter::None,
            FilterArg::Sub => Filter::Sub,
            FilterArg::Up => Filter::Up,
            FilterArg::Average => Filter::Average,
            FilterArg::Paeth => Filter::Paeth,
            FilterArg::Adaptive => Filter::Adaptive,
        }
    }
}

/// `--bit-depth` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BitDepthArg {
    #[value(name = "8")]
    Eight,
    #[value(name = "16")]
    Sixteen,
}

/// `--quantize` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum QuantizeArg {
    /// trunc(clamp(255*x, 0, 255)), NaN -> 0 (ComfyUI's).
    Truncate,
    /// Round to nearest, ties to even.
    Round,
}

/// Parses `stored`, `compact` or `compact=LEVEL`. New modes (such as `fast`) are one more arm.
pub(crate) fn parse_compression(s: &str) -> Result<Compression, String> {
    let (mode, level) = match s.split_once('=') {
        Some((m, l)) => (m, Some(l)),
        None => (s, None),
    };
    match (mode, level) {
        ("stored", None) => Ok(Compression::Stored),
        ("compact", None) => Ok(Compression::Compact(1)),
        ("compact", Some(l)) => match l.parse::<u8>() {
            Ok(n @ 1..=9) => Ok(Compression::Compact(n)),
            _ => Err(format!("compact level must be 1..9, got '{l}'")),
        },
        ("fast", None) => Ok(Compression::Fast(FastLevel::default())),
        ("fast", Some("balanced")) => Ok(Compression::Fast(FastLevel::Balanced)),
        ("fast", Some("fastest")) => Ok(Compression::Fast(FastLevel::Fastest)),
        ("fast", Some(l)) => Err(format!("fast level must be balanced or fastest, got '{l}'")),
        ("stored", Some(_)) => Err("stored takes no level".into()),
        _ => Err("expected fast[=balanced|fastest], stored, compact or compact=LEVEL".into()),
    }
}

/// Parses `KEY=VALUE` (split at the first `=`). The key must be a PNG keyword: 1..79 printable
/// Latin-1 characters without leading, trailing or consecutive spaces; the value any text
/// without NUL (the PNG writer picks tEXt or iTXt).
fn parse_text(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| "expected KEY=VALUE".to_string())?;
    if k.is_empty() || k.chars().count() > 79 {
        return Err("the key must be a PNG keyword of 1..79 characters".into());
    }
    if let Some(c) = k
        .chars()
        .find(|&c| !matches!(u32::from(c), 0x20..=0x7e | 0xa1..=0xff))
    {
        return Err(format!(
            "the key must be a PNG keyword (printable Latin-1), {c:?} is not"
        ));
    }
    if k.starts_with(' ') || k.ends_with(' ') || k.contains("  ") {
        return Err("the key must be a PNG keyword: no leading, trailing or double spaces".into());
    }
    if v.contains('\0') {
        return Err("a text value cannot hold NUL characters".into());
    }
    Ok((k.to_string(), v.to_string()))
}

/// The text chunks to write: `kept` (from a PNG input), each `added` pair replacing the kept ones
/// of its key (at the first one's place) or appended.
fn merge_text(
    mut kept: Vec<(String, String)>,
    added: &[(String, String)],
) -> Vec<(String, String)> {
    for (k, v) in added {
        match kept.iter().position(|(kk, _)| kk == k) {
            Some(i) => {
                kept[i].1.clone_from(v);
                let mut j = i + 1;
                while j < kept.len() {
                    if kept[j].0 == *k {
                        kept.remove(j);
                    } else {
                        j += 1;
                    }
                }
            }
            None => kept.push((k.clone(), v.clone())),
        }
    }
    kept
}

/// The input held in memory; tensor views borrow from it.
enum Input {
    Npy(NpyArray),
    Png(DecodedPng),
}

impl Input {
    fn read(path: &Path) -> Result<Self, CliError> {
        let bytes = if is_std(path) {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut bytes)
                .map_err(|e| CliError::new(format!("cannot read standard input: {e}")))?;
            bytes
        } else {
            std::fs::read(path)
                .map_err(|e| CliError::new(format!("cannot read {}: {e}", path.display())))?
        };
        let path = if is_std(path) {
            Path::new("standard input")
        } else {
            path
        };
        if bytes.starts_with(crate::pngin::MAGIC) {
            DecodedPng::decode(&bytes, path).map(Input::Png)
        } else if bytes.starts_with(crate::npy::MAGIC) {
            NpyArray::parse(&bytes, path).map(Input::Npy)
        } else if bytes.is_empty() {
            Err(CliError::new(format!("{}: empty file", path.display())))
        } else {
            Err(CliError::new(format!(
                "{}: neither a .npy array nor a PNG (unknown magic bytes)",
                path.display()
            )))
        }
    }
}

/// Runs `pngcast encode`.
pub fn run(args: EncodeArgs) -> Result<(), CliError> {
    check_output_path(&args.output)?;
    let to_stdout = is_std(&args.output);
    if to_stdout && args.repeat.is_some() {
        return Err(CliError::new(
            "--repeat prints its JSON line on stdout: write the PNG to a file, not '-'",
        ));
    }
    let mut input = Input::read(&args.input)?;
    if let Input::Npy(a) = &mut input {
        if a.is_f64() {
            // Quantised now, in f64, as numpy would: 8-bit output only.
            if matches!(args.bit_depth, Some(BitDepthArg::Sixteen)) {
                return Err(CliError::new(format!(
                    "{}: float64 input is written as 8-bit samples (numpy's clip(255*x).astype(uint8)); \
                     for 16-bit output convert it to float32 first",
                    args.input.display()
                )));
            }
            a.quantize_f64(matches!(args.quantize, QuantizeArg::Round));
        }
    }
    let (tensor, source_bits) = match &input {
        Input::Npy(a) => {
            let view = a
                .view(args.layout)
                .map_err(|e| CliError::new(format!("{}: {e}", args.input.display())))?;
            (view, 8)
        }
        Input::Png(p) => {
            if args.layout.is_some() {
                return Err(CliError::new("--layout applies to .npy input only"));
            }
            (p.view()?, p.bit_depth)
        }
    };
    let bit_depth = match args.bit_depth {
        Some(BitDepthArg::Eight) => BitDepth::Eight,
        Some(BitDepthArg::Sixteen) => BitDepth::Sixteen,
        None if source_bits == 16 => BitDepth::Sixteen,
        None => BitDepth::Eight,
    };
    let quantize = match args.quantize {
        QuantizeArg::Truncate => Quantize::Truncate,
        QuantizeArg::Round => Quantize::Round,
    };
    let convert = ConvertOptions::default()
        .quantize(quantize)
        .bit_depth(bit_depth);

    // Which images go where.
    let jobs: Vec<(usize, PathBuf)> = match args.index {
        Some(i) => {
            tensor.image(i)?;
            vec![(i, args.output.clone())]
        }
        None if tensor.batch() == 1 => vec![(0, args.output.clone())],
        None if to_stdout => {
            let n = tensor.batch();
            return Err(CliError::new(format!(
                "the input holds {n} images and standard output takes one: \
                 choose one with --index I, or name an output file"
            )));
        }
        None => (0..tensor.batch())
            .map(|i| (i, batch_path(&args.output, i)))
            .collect(),
    };

    for (_, path) in &jobs {
        check_output_path(path)?;
    }

    let pool = match args.threads {
        Some(n) => Some(Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(usize::from(n))
                .build()
                .map_err(|e| CliError::new(format!("cannot start {n} threads: {e}")))?,
        )),
        None => None,
    };
    let mut options = EncodeOptions::default()
        .compression(args.compression.unwrap_or_default())
        .filter(args.filter.into())
        .threads(match &pool {
            Some(p) => Threads::Pool(Arc::clone(p)),
            None => Threads::Global,
        });
    let kept = match &input {
        Input::Png(p) if !args.strip_text => p.text.clone(),
        _ => Vec::new(),
    };
    for (k, v) in merge_text(kept, &args.text) {
        options = options.text(k, v);
    }
    let mut encoder = Encoder::new(options)?;

    let mut work = || match args.repeat {
        None => encode_once(&tensor, &jobs, convert, &mut encoder).map(|s| (s, None)),
        Some(n) => {
            encode_timed(&tensor, &jobs, convert, &mut encoder, n).map(|(s, t)| (s, Some(t)))
        }
    };
    let (staging, stats) = match &pool {
        Some(p) => p.install(work)?,
        None => work()?,
    };
    let written = staging.commit()?;
    if stats.is_none() && !args.quiet && !written.is_empty() {
        report(&written).map_err(|e| CliError::new(format!("cannot write to stdout: {e}")))?;
    }
    if let Some(stats) = stats {
        let [w, h, c] = [tensor.width(), tensor.height(), tensor.channels()];
        let line = serde_json::json!({
            "convert_ms": stats.convert_ms,
            "encode_ms": stats.encode_ms,
            "bytes": stats.bytes,
            "images": jobs.len(),
            "width": w,
            "height": h,
            "channels": c,
            "repeat": args.repeat,
        });
        writeln!(std::io::stdout().lock(), "{line}")
            .map_err(|e| CliError::new(format!("cannot write to stdout: {e}")))?;
    }
    Ok(())
}

/// Names the written files on stdout: one line each, or one summary line for many.
fn report(written: &[(PathBuf, usize)]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match written {
        [(first, _), .., (last, _)] if written.len() > LIST_MAX => {
            let total: usize = written.iter().map(|(_, n)| n).sum();
            writeln!(
                out,
                "wrote {} files, {} .. {} ({total} bytes)",
                written.len(),
                first.display(),
                last.display()
            )?;
        }
        _ => {
            for (path, n) in written {
                writeln!(out, "wrote {} ({n} bytes)", path.display())?;
            }
        }
    }
    out.flush()
}

/// Converts and encodes every selected image once, on the encoder's fastest path (conversion
/// fused into the stripes where the encoder does that), staging each PNG.
fn encode_once(
    tensor: &TensorView<'_>,
    jobs: &[(usize, PathBuf)],
    convert: ConvertOptions,
    encoder: &mut Encoder,
) -> Result<Staging, CliError> {
    let mut staging = Staging::default();
    let mut png = Vec::new();
    for (index, path) in jobs {
        encoder.encode_image_into(&tensor.image(*index)?, convert, &mut png)?;
        staging.write(path, &png)?;
    }
    Ok(staging)
}

/// Medians over the `--repeat` rounds; each round converts and encodes every selected image.
struct Stats {
    convert_ms: f64,
    encode_ms: f64,
    /// PNG bytes of one round.
    bytes: usize,
}

/// `--repeat`: converts ([`convert_image`]) and then encodes ([`Encoder::encode_into`]) every
/// selected image `repeat` times, timing the two steps apart; the last round's PNGs are staged.
fn encode_timed(
    tensor: &TensorView<'_>,
    jobs: &[(usize, PathBuf)],
    convert: ConvertOptions,
    encoder: &mut Encoder,
    repeat: u32,
) -> Result<(Staging, Stats), CliError> {
    let mut staging = Staging::default();
    let mut pixels = Vec::new();
    let mut png = Vec::new();
    let mut convert_ms = Vec::with_capacity(repeat as usize);
    let mut encode_ms = Vec::with_capacity(repeat as usize);
    let mut bytes = 0;
    for round in 0..repeat {
        let last = round + 1 == repeat;
        let (mut c_ms, mut e_ms) = (0.0, 0.0);
        bytes = 0;
        for (index, path) in jobs {
            let img = tensor.image(*index)?;
            let t0 = Instant::now();
            convert_image(&img, convert, &mut pixels);
            let t1 = Instant::now();
            encoder.encode_into(&image_info(&img, convert)?, &pixels, &mut png)?;
            let t2 = Instant::now();
            c_ms += (t1 - t0).as_secs_f64() * 1e3;
            e_ms += (t2 - t1).as_secs_f64() * 1e3;
            bytes += png.len();
            if last {
                staging.write(path, &png)?;
            }
        }
        convert_ms.push(c_ms);
        encode_ms.push(e_ms);
    }
    let stats = Stats {
        convert_ms: median(&mut convert_ms),
        encode_ms: median(&mut encode_ms),
        bytes,
    };
    Ok((staging, stats))
}

fn image_info(img: &ImageView<'_>, convert: ConvertOptions) -> Result<ImageInfo, CliError> {
    // The view was validated: sides fit PNG's 2^31-1 and channels are 1..=4.
    let side = |n: usize| u32::try_from(n).map_err(|_| CliError::new("image too large for PNG"));
    Ok(ImageInfo {
        width: side(img.width())?,
        height: side(img.height())?,
        channels: u8::try_from(img.channels()).map_err(|_| CliError::new("too many channels"))?,
        bit_depth: convert.bit_depth,
    })
}

/// Median in milliseconds, rounded to microseconds (the mean of the middle two for even counts).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let m = if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (m * 1e3).round() / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_values() {
        assert_eq!(parse_compression("stored"), Ok(Compression::Stored));
        assert_eq!(parse_compression("compact"), Ok(Compression::Compact(1)));
        assert_eq!(parse_compression("compact=9"), Ok(Compression::Compact(9)));
        assert!(parse_compression("compact=0").is_err());
        assert!(parse_compression("compact=10").is_err());
        assert!(parse_compression("compact=").is_err());
        assert!(parse_compression("stored=1").is_err());
        assert!(parse_compression("zip").is_err());
        assert_eq!(
            parse_compression("fast"),
            Ok(Compression::Fast(FastLevel::Balanced))
        );
        assert_eq!(
            parse_compression("fast=fastest"),
            Ok(Compression::Fast(FastLevel::Fastest))
        );
        assert!(parse_compression("fast=3").is_err());
    }

    #[test]
    fn text_values() {
        assert_eq!(parse_text("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_text("Title="), Ok(("Title".into(), String::new())));
        assert!(parse_text("novalue").is_err());
        assert!(parse_text("=v").is_err());
        assert!(parse_text(&format!("{}=v", "k".repeat(80))).is_err());
        assert_eq!(
            parse_text("k=\u{2603}"),
            Ok(("k".into(), "\u{2603}".into()))
        );
        for bad in [" k=v", "k =v", "a  b=v", "\u{2603}=v", "t\tab=v", "k=a\0b"] {
            assert!(parse_text(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn added_text_replaces_kept_keys() {
        let p = |k: &str, v: &str| (k.to_string(), v.to_string());
        let kept = vec![p("prompt", "1"), p("workflow", "2"), p("prompt", "3")];
        assert_eq!(
            merge_text(kept, &[p("prompt", "new"), p("Title", "t")]),
            [p("prompt", "new"), p("workflow", "2"), p("Title", "t")]
        );
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
