//! Keyword arguments shared by `encode`, `encode_batch` and `Server`, parsed once into core's
//! option types.

use std::num::NonZeroUsize;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use pngcast_core::convert::{BitDepth, ConvertOptions, Quantize};
use pngcast_core::png::{Compression, FastLevel, Threads};

/// `fast` (= `fast=balanced`), `fastest` (= `fast=fastest`), `stored`, `compact` (zlib level 1,
/// ComfyUI's) or `compact=N` (1..=9): the CLI's `--compression` values.
pub fn compression(s: &str) -> PyResult<Compression> {
    let (mode, level) = match s.split_once('=') {
        Some((m, l)) => (m, Some(l)),
        None => (s, None),
    };
    Ok(match (mode, level) {
        ("fast", None | Some("balanced")) | ("balanced", None) => {
            Compression::Fast(FastLevel::Balanced)
        }
        ("fast", Some("fastest")) | ("fastest", None) => Compression::Fast(FastLevel::Fastest),
        ("stored", None) => Compression::Stored,
        ("compact", None) => Compression::Compact(1),
        ("compact", Some(l)) => match l.parse::<u8>() {
            Ok(n @ 1..=9) => Compression::Compact(n),
            _ => {
                return Err(PyValueError::new_err(format!(
                    "compact level must be 1..9, got {l:?}"
                )))
            }
        },
        _ => {
            return Err(PyValueError::new_err(format!(
                "compression must be \"fast\", \"fastest\", \"stored\", \"compact\" or \
                 \"compact=N\" (N in 1..9); got {s:?}"
            )))
        }
    })
}

pub fn convert(quantize: &str, bit_depth: u32) -> PyResult<ConvertOptions> {
    let q = match quantize {
        "truncate" => Quantize::Truncate,
        "round" => Quantize::Round,
        other => {
            return Err(PyValueError::new_err(format!(
                "quantize must be \"truncate\" (ComfyUI's) or \"round\"; got {other:?}"
            )))
        }
    };
    let d = match bit_depth {
        8 => BitDepth::Eight,
        16 => BitDepth::Sixteen,
        other => {
            return Err(PyValueError::new_err(format!(
                "bit_depth must be 8 or 16; got {other}"
            )))
        }
    };
    Ok(ConvertOptions::default().quantize(q).bit_depth(d))
}

/// `None`: rayon's global pool (one thread per core); `n >= 1`: a private pool of `n` threads.
pub fn threads(n: Option<i64>) -> PyResult<Threads> {
    match n {
        None => Ok(Threads::Global),
        Some(n) => usize::try_from(n)
            .ok()
            .and_then(NonZeroUsize::new)
            .map(Threads::Fixed)
            .ok_or_else(|| PyValueError::new_err(format!("threads must be >= 1; got {n}"))),
    }
}

/// `text`: a dict `{key: value}` or an iterable of `(key, value)` pairs; all strings.
pub fn text(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<(String, String)>> {
    let Some(obj) = obj else {
        return Ok(Vec::new());
    };
    if obj.is_none() {
        return Ok(Vec::new());
    }
    let pairs: Vec<(Bound<'_, PyAny>, Bound<'_, PyAny>)> = if let Ok(d) = obj.cast::<PyDict>() {
        d.iter().collect()
    } else if obj.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "text must be a dict of str to str (or (key, value) pairs), not a str",
        ));
    } else {
        obj.try_iter()
            .map_err(|_| PyTypeError::new_err("text must be a dict of str to str"))?
            .map(|item| item?.extract())
            .collect::<PyResult<_>>()
            .map_err(|_| PyTypeError::new_err("text must be a dict of str to str"))?
    };
    pairs
        .into_iter()
        .map(|(k, v)| {
            let k: String = k
                .extract()
                .map_err(|_| PyTypeError::new_err("text keys must be str"))?;
            let v: String = v
                .extract()
                .map_err(|_| PyTypeError::new_err(format!("text value of {k:?} must be str")))?;
            Ok((k, v))
        })
        .collect()
}
