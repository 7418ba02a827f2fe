//! Frame sources for `pngcast serve`: the built-in demo scene, or images loaded from disk.
#![forbid(unsafe_code)]

pub mod demo;
pub mod files;

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use pngcast_core::tensor::TensorView;

use crate::error::CliError;
use demo::{Demo, FrameTime};
use files::Files;

/// Demo size when `--size` is not given.
pub const DEFAULT_DEMO_SIZE: (usize, usize) = (1024, 1024);

/// Where `serve` gets its frames.
#[derive(Debug)]
pub enum Source {
    /// The built-in moving scene.
    Demo {
        /// The renderer and its buffer.
        demo: Demo,
        /// When the source started (drives the motion).
        start: Instant,
        /// Frames rendered so far.
        frame: u64,
    },
    /// Images from a `.npy` file or a directory.
    Files {
        /// The cycling reader.
        files: Files,
        /// The path given.
        path: PathBuf,
    },
}

impl Source {
    /// Opens `spec` (`demo`, a directory or a file). `size` is for the demo only.
    pub fn open(spec: &str, size: Option<(usize, usize)>) -> Result<Self, CliError> {
        if spec == "demo" {
            let (w, h) = size.unwrap_or(DEFAULT_DEMO_SIZE);
            let demo = Demo::new(w, h).map_err(|e| CliError::new(e.to_string()))?;
            return Ok(Source::Demo {
                demo,
                start: Instant::now(),
                frame: 0,
            });
        }
        if size.is_some() {
            return Err(CliError::new(
                "--size applies to the demo source only (files are served at their own size)",
            ));
        }
        let path = Path::new(spec);
        Ok(Source::Files {
            files: Files::open(path)?,
            path: path.to_path_buf(),
        })
    }

    /// One line for the start-up message.
    pub fn describe(&self) -> String {
        match self {
            Source::Demo { demo, .. } => format!("demo {}x{}", demo.width(), demo.height()),
            Source::Files { files, path } if files.file_count() > 1 => {
                format!("{} files from {}", files.file_count(), path.display())
            }
            Source::Files { path, .. } => path.display().to_string(),
        }
    }

    /// The next frame as a one-image tensor.
    pub fn next_frame(&mut self) -> Result<TensorView<'_>, CliError> {
        match self {
            Source::Demo { demo, start, frame } => {
                let clock = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs_f64() % 86_400.0)
                    .unwrap_or(0.0);
                let t = FrameTime {
                    elapsed: start.elapsed().as_secs_f64(),
                    clock,
                    frame: *frame,
                };
                *frame += 1;
                Ok(demo.render(t))
            }
            Source::Files { files, .. } => files.next_frame(),
        }
    }
}

/// Parses `WxH` (e.g. `1024x768`) into `(width, height)`, both at least 1.
pub fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("`{s}` is not WIDTHxHEIGHT (e.g. 1024x1024)"))?;
    let side = |v: &str| -> Result<usize, String> {
        match v.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(format!(
                "`{s}`: `{v}` is not a positive whole number of pixels"
            )),
        }
    };
    Ok((side(w)?, side(h)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_or_explain() {
        assert_eq!(parse_size("1024x768"), Ok((1024, 768)));
        assert_eq!(parse_size("1X2"), Ok((1, 2)));
        for bad in ["", "1024", "0x5", "5x0", "-1x5", "axb", "5x", "x5", "1.5x2"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn demo_source_counts_frames_and_files_refuse_size() {
        let mut s = Source::open("demo", Some((32, 16))).unwrap();
        assert_eq!(s.describe(), "demo 32x16");
        assert_eq!(s.next_frame().unwrap().shape(), [1, 16, 32, 3]);
        assert!(matches!(s, Source::Demo { frame: 1, .. }));
        let e = Source::open("/nonexistent/x.npy", Some((4, 4))).unwrap_err();
        assert!(e.to_string().contains("--size"), "{e}");
        let e = Source::open("/nonexistent/x.npy", None).unwrap_err();
        assert!(e.to_string().contains("cannot open source"), "{e}");
    }

    #[test]
    fn directory_source_cycles_files_and_batches() {
        let dir = std::env::temp_dir().join(format!("pngcast-src-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // b.npy: a u8 batch of two 6x1 RGB images (a shape with one reading); a.png: one 4x5 gray
        // image; c.txt: ignored.
        let mut npy = Vec::new();
        let header = "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 6, 1, 3), }";
        let mut h = header.to_string();
        while !(10 + h.len() + 1).is_multiple_of(64) {
            h.push(' ');
        }
        h.push('\n');
        npy.extend_from_slice(b"\x93NUMPY\x01\x00");
        npy.extend_from_slice(&(h.len() as u16).to_le_bytes());
        npy.extend_from_slice(h.as_bytes());
        npy.extend((0..36u8).map(|v| v * 7));
        std::fs::write(dir.join("b.npy"), &npy).unwrap();
        let mut png_bytes = Vec::new();
        {
            let mut e = png::Encoder::new(&mut png_bytes, 4, 5);
            e.set_color(png::ColorType::Grayscale);
            e.write_header()
                .unwrap()
                .write_image_data(&[9u8; 20])
                .unwrap();
        }
        std::fs::write(dir.join("a.png"), &png_bytes).unwrap();
        std::fs::write(dir.join("c.txt"), b"not an image").unwrap();

        let mut s = Source::open(dir.to_str().unwrap(), None).unwrap();
        assert!(s.describe().starts_with("2 files from"), "{}", s.describe());
        let mut shapes = Vec::new();
        for _ in 0..6 {
            shapes.push(s.next_frame().unwrap().shape());
        }
        let (png_shape, npy_shape) = ([1, 5, 4, 1], [1, 6, 1, 3]);
        assert_eq!(
            shapes,
            [png_shape, npy_shape, npy_shape, png_shape, npy_shape, npy_shape]
        );
        // The second batch item is the second image, not a copy of the first.
        let mut s = Source::open(dir.join("b.npy").to_str().unwrap(), None).unwrap();
        s.next_frame().unwrap();
        let second = s.next_frame().unwrap();
        let img = second.image(0).unwrap();
        match img.data() {
            pngcast_core::tensor::TensorData::U8(d) => assert_eq!(d[0], 18 * 7),
            _ => panic!("u8 expected"),
        }

        std::fs::write(dir.join("b.npy"), b"garbage").unwrap();
        std::fs::remove_file(dir.join("a.png")).unwrap();
        let e = Source::open(dir.to_str().unwrap(), None).unwrap_err();
        assert!(e.to_string().contains("b.npy"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
        let e = Source::open(dir.to_str().unwrap(), None).unwrap_err();
        assert!(e.to_string().contains("cannot open source"), "{e}");
    }
}
