//! Output files that appear whole or not at all.
//!
//! Each file is first written to a hidden temporary file in the destination's directory, then
//! all of them are renamed into place by [`Staging::commit`]. If anything fails before that (or
//! the staging is dropped), every temporary file is removed, so no partial output is left behind.
//! The output `-` is standard output: its bytes are held and written by [`Staging::commit`] too.

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::CliError;

/// The path of image `index` of a batch written to `out`: `dir/stem_0007.ext`.
pub fn batch_path(out: &Path, index: usize) -> PathBuf {
    let stem = out.file_stem().unwrap_or_default();
    let mut name = OsString::from(stem);
    name.push(format!("_{index:04}"));
    if let Some(ext) = out.extension() {
        name.push(".");
        name.push(ext);
    }
    out.with_file_name(name)
}

/// Whether `path` is `-`, standard input or output.
pub fn is_std(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Checks that `out` can name an output file: it has a file name and is not a directory.
pub fn check_output_path(out: &Path) -> Result<(), CliError> {
    if is_std(out) {
        return Ok(());
    }
    if out.file_name().is_none() {
        return Err(CliError::new(format!(
            "output path {} has no file name",
            out.display()
        )));
    }
    if out.is_dir() {
        return Err(CliError::new(format!(
            "output path {} is a directory",
            out.display()
        )));
    }
    Ok(())
}

/// Files written so far, not yet in place.
#[derive(Debug, Default)]
pub struct Staging {
    /// `(temporary, destination)` pairs.
    files: Vec<(PathBuf, PathBuf)>,
    /// Sizes of the files, in the order written.
    sizes: Vec<usize>,
    /// What goes to standard output (the output `-`).
    stdout: Option<Vec<u8>>,
}

impl Staging {
    /// Writes `bytes` to a temporary file beside `dest`.
    /// The output `-` holds `bytes` for standard output instead.
    pub fn write(&mut self, dest: &Path, bytes: &[u8]) -> Result<(), CliError> {
        if is_std(dest) {
            self.stdout = Some(bytes.to_vec());
            return Ok(());
        }
        let mut tmp_name = OsString::from(".");
        tmp_name.push(dest.file_name().unwrap_or_default());
        tmp_name.push(format!(".{}.tmp", std::process::id()));
        let tmp = dest.with_file_name(tmp_name);
        let fail = |e: std::io::Error| {
            CliError::new(format!("cannot write output {}: {e}", dest.display()))
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(fail)?;
        // From here on the temporary file exists: record it so that it is removed on failure.
        self.files.push((tmp, dest.to_path_buf()));
        file.write_all(bytes).map_err(fail)?;
        self.sizes.push(bytes.len());
        Ok(())
    }

    /// Renames every staged file into place (and writes the standard output bytes); returns
    /// each file's destination and size, in the order written.
    pub fn commit(mut self) -> Result<Vec<(PathBuf, usize)>, CliError> {
        if let Some(bytes) = self.stdout.take() {
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes)
                .and_then(|()| out.flush())
                .map_err(|e| CliError::new(format!("cannot write to stdout: {e}")))?;
        }
        let files = std::mem::take(&mut self.files);
        let written: Vec<(PathBuf, usize)> = files
            .iter()
            .map(|(_, dest)| dest.clone())
            .zip(self.sizes.iter().copied())
            .collect();
        let mut iter = files.into_iter();
        while let Some((tmp, dest)) = iter.next() {
            if let Err(e) = fs::rename(&tmp, &dest) {
                let _ = fs::remove_file(&tmp);
                // Restore the rest so that Drop removes them.
                self.files.extend(iter);
                return Err(CliError::new(format!(
                    "cannot write output {}: {e}",
                    dest.display()
                )));
            }
        }
        Ok(written)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        for (tmp, _) in self.files.drain(..) {
            // Best effort: the file may never have been created.
            let _ = fs::remove_file(tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_names() {
        assert_eq!(
            batch_path(Path::new("a/out.png"), 7),
            Path::new("a/out_0007.png")
        );
        assert_eq!(batch_path(Path::new("out"), 12345), Path::new("out_12345"));
        assert_eq!(
            batch_path(Path::new("x.y.png"), 0),
            Path::new("x.y_0000.png")
        );
    }

    #[test]
    fn dropped_staging_leaves_nothing() {
        let dir = std::env::temp_dir().join(format!("pngcast-staging-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let dest = dir.join("a.png");
        let mut s = Staging::default();
        s.write(&dest, b"x").unwrap();
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        drop(s);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
        let mut s = Staging::default();
        s.write(&dest, b"y").unwrap();
        s.commit().unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"y");
        fs::remove_dir_all(&dir).unwrap();
    }
}
