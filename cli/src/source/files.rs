//! Frames from disk: one `.npy` file (its batch, one image per tick) or a directory of PNG and
//! `.npy` files (sorted by name, every image of every file in turn, then round again).
//!
//! Files are read when their turn comes and the current one is kept, so a single file is read
//! once and a directory costs one read and decode per file per round, never all files in memory.
//! A directory is listed again each time the source moves to the next file, so files added while
//! it runs take their turn in name order (a file caught half-written fails to decode, is skipped
//! with a warning and is read again on the next round), and files removed drop out.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use pngcast_core::tensor::TensorView;

use crate::error::CliError;
use crate::npy::{NpyArray, MAGIC as NPY_MAGIC};
use crate::pngin::{DecodedPng, MAGIC as PNG_MAGIC};

/// A decoded file.
#[derive(Debug)]
enum Loaded {
    Npy(NpyArray),
    Png(DecodedPng),
}

impl Loaded {
    fn read(path: &Path) -> Result<Self, CliError> {
        let bytes = std::fs::read(path)
            .map_err(|e| CliError::new(format!("cannot read {}: {e}", path.display())))?;
        let loaded = if bytes.starts_with(NPY_MAGIC) {
            let mut a = NpyArray::parse(&bytes, path)?;
            a.quantize_f64(false);
            Loaded::Npy(a)
        } else if bytes.starts_with(PNG_MAGIC) {
            Loaded::Png(DecodedPng::decode(&bytes, path)?)
        } else {
            return Err(CliError::new(format!(
                "{}: neither a .npy array nor a PNG file",
                path.display()
            )));
        };
        // Check the shape now, so that `view` cannot fail later.
        loaded.view()?;
        Ok(loaded)
    }

    fn view(&self) -> Result<TensorView<'_>, CliError> {
        match self {
            Loaded::Npy(a) => a.view(None),
            Loaded::Png(p) => p.view(),
        }
    }
}

/// Cycles through the images of one file or of every PNG/.npy file in a directory.
#[derive(Debug)]
pub struct Files {
    /// The directory, when the source is one (listed again at every file change).
    dir: Option<PathBuf>,
    paths: Vec<PathBuf>,
    /// Index into `paths` of `current`.
    file: usize,
    /// Next batch item of `current`.
    item: usize,
    current: Loaded,
}

impl Files {
    /// Opens `path`: a file, or a directory holding `.png` / `.npy` files. The first file is
    /// read and checked now, so a bad source fails before the server starts.
    pub fn open(path: &Path) -> Result<Self, CliError> {
        let meta = std::fs::metadata(path)
            .map_err(|e| CliError::new(format!("cannot open source {}: {e}", path.display())))?;
        let dir = meta.is_dir().then(|| path.to_path_buf());
        let paths = match &dir {
            Some(d) => list(d)?,
            None => vec![path.to_path_buf()],
        };
        let current = Loaded::read(&paths[0])?;
        Ok(Files {
            dir,
            paths,
            file: 0,
            item: 0,
            current,
        })
    }

    /// How many files take part.
    pub fn file_count(&self) -> usize {
        self.paths.len()
    }

    /// The next image, as a one-image tensor. A file that has become unreadable since the last
    /// round is reported on stderr and skipped; if no file of a whole round can be read, that
    /// is an error.
    pub fn next_frame(&mut self) -> Result<TensorView<'_>, CliError> {
        let batch = self.current.view()?.batch();
        if self.item >= batch {
            self.advance()?;
        }
        let item = self.item;
        self.item += 1;
        one_image(self.current.view()?, item)
    }

    /// Moves to the next readable file (the current one again when it is the only file).
    fn advance(&mut self) -> Result<(), CliError> {
        self.item = 0;
        if let Some(dir) = &self.dir {
            match list(dir) {
                Ok(paths) => {
                    // Continue after the current file's name, wherever it is in the new list.
                    let current = &self.paths[self.file];
                    let after = paths.partition_point(|p| p <= current);
                    self.file = (after + paths.len() - 1) % paths.len();
                    self.paths = paths;
                }
                Err(e) => eprintln!("pngcast: warning: {e}; keeping the previous file list"),
            }
        }
        if self.paths.len() == 1 {
            if self.dir.is_some() {
                self.file = 0;
                self.current = Loaded::read(&self.paths[0])?;
            }
            return Ok(());
        }
        let mut last_err = None;
        for _ in 0..self.paths.len() {
            self.file = (self.file + 1) % self.paths.len();
            match Loaded::read(&self.paths[self.file]) {
                Ok(l) => {
                    self.current = l;
                    return Ok(());
                }
                Err(e) => {
                    eprintln!("pngcast: warning: skipping {e}");
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| CliError::new("no readable source file")))
    }
}

/// The `.png` and `.npy` files of `dir`, sorted by name; an error when there are none.
fn list(dir: &Path) -> Result<Vec<PathBuf>, CliError> {
    let mut paths = Vec::new();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| CliError::new(format!("cannot list {}: {e}", dir.display())))?;
    for entry in entries {
        let entry =
            entry.map_err(|e| CliError::new(format!("cannot list {}: {e}", dir.display())))?;
        let p = entry.path();
        let ext = p
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        if matches!(ext.as_deref(), Some("png" | "npy")) && p.is_file() {
            paths.push(p);
        }
    }
    paths.sort();
    if paths.is_empty() {
        return Err(CliError::new(format!(
            "source directory {} holds no .png or .npy file",
            dir.display()
        )));
    }
    Ok(paths)
}

/// Image `index` of `t` as a tensor of batch 1 (no copy: same buffer and strides).
pub fn one_image(t: TensorView<'_>, index: usize) -> Result<TensorView<'_>, CliError> {
    let img = t.image(index)?;
    let [sh, sw, sc] = img.strides();
    Ok(TensorView::strided(
        img.data(),
        [1, img.height(), img.width(), img.channels()],
        [1, sh, sw, sc],
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(path: &Path, value: u8) {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, 2, 2);
        enc.set_color(png::ColorType::Grayscale);
        enc.write_header()
            .unwrap()
            .write_image_data(&[value; 4])
            .unwrap();
        std::fs::write(path, out).unwrap();
    }

    fn first_value(files: &mut Files) -> u8 {
        match files.next_frame().unwrap().image(0).unwrap().data() {
            pngcast_core::tensor::TensorData::U8(s) => s[0],
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_directory_picks_up_added_and_removed_files() {
        let dir = std::env::temp_dir().join(format!("pngcast-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        write_png(&dir.join("a.png"), 10);
        write_png(&dir.join("c.png"), 30);
        let mut f = Files::open(&dir).unwrap();
        assert_eq!(first_value(&mut f), 10);
        // Added while running: takes its turn in name order.
        write_png(&dir.join("b.png"), 20);
        assert_eq!(first_value(&mut f), 20);
        assert_eq!(first_value(&mut f), 30);
        // A half-written file is skipped (and retried), a removed one drops out.
        std::fs::write(dir.join("d.png"), b"\x89PNG\r\n\x1a\npartial").unwrap();
        std::fs::remove_file(dir.join("b.png")).unwrap();
        assert_eq!(first_value(&mut f), 10);
        assert_eq!(first_value(&mut f), 30);
        write_png(&dir.join("d.png"), 40);
        assert_eq!(first_value(&mut f), 40);
        assert_eq!(first_value(&mut f), 10);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
