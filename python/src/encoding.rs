//! `pngcast.encode` and `pngcast.encode_batch`: tensors to PNG bytes, the GIL released while
//! converting and encoding.
//!
//! Encoders are kept between calls in a small pool keyed by their settings (an encoder holds its
//! scratch buffers and, for `threads=N`, its thread pool), so repeated calls cost what the Rust
//! encoder costs: no thread start, no fresh scratch memory. Each call takes an encoder out of the
//! pool and puts it back, so concurrent calls from several Python threads never share one.

use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use pngcast_core::convert::ConvertOptions;
use pngcast_core::png::{Compression, EncodeOptions, Encoder, Threads};
use pngcast_core::tensor::TensorView;

use crate::errors::{core_to_py, fenced};
use crate::input::{Layout, Source};
use crate::options;

/// Encoders kept for reuse, at most this many.
const POOL_CAP: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    compression: Compression,
    threads: Option<usize>,
}

struct Pooled {
    key: Key,
    encoder: Encoder,
    out: Vec<u8>,
}

static POOL: Mutex<Vec<Pooled>> = Mutex::new(Vec::new());

fn take(key: Key) -> PyResult<Pooled> {
    let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(i) = pool.iter().rposition(|p| p.key == key) {
        return Ok(pool.swap_remove(i));
    }
    drop(pool);
    let threads = match key.threads {
        None => Threads::Global,
        Some(n) => options::threads(Some(n as i64))?,
    };
    let encoder = Encoder::new(
        EncodeOptions::default()
            .compression(key.compression)
            .threads(threads),
    )
    .map_err(core_to_py)?;
    Ok(Pooled {
        key,
        encoder,
        out: Vec::new(),
    })
}

fn give_back(p: Pooled) {
    let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
    if pool.len() >= POOL_CAP {
        pool.remove(0);
    }
    pool.push(p);
}

/// Parsed keyword arguments of an encode call.
pub struct Settings {
    key: Key,
    convert: ConvertOptions,
    text: Vec<(String, String)>,
    layout: Layout,
    /// Refuse images with NaN samples (`nan="error"`) instead of writing them as 0.
    nan_error: bool,
}

impl Settings {
    pub fn parse(
        compression: &str,
        quantize: &str,
        bit_depth: u32,
        text: Option<&Bound<'_, PyAny>>,
        threads: Option<i64>,
        layout: Option<&str>,
        nan: &str,
    ) -> PyResult<Settings> {
        let nan_error = match nan {
            "zero" => false,
            "error" => true,
            other => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "nan must be \"zero\" (NaN samples become 0, as ComfyUI's cast does) or \
                     \"error\"; got {other:?}"
                )))
            }
        };
        let threads = match threads {
            None => None,
            Some(n) => {
                options::threads(Some(n))?;
                Some(n as usize)
            }
        };
        Ok(Settings {
            key: Key {
                compression: options::compression(compression)?,
                threads,
            },
            convert: options::convert(quantize, bit_depth)?,
            text: options::text(text)?,
            layout: Layout::parse(layout)?,
            nan_error,
        })
    }
}

/// With `nan="error"`: a `ValueError` naming the first image that holds a NaN.
pub fn check_nan(py: Python<'_>, view: &TensorView<'_>, settings: &Settings) -> PyResult<()> {
    if !settings.nan_error {
        return Ok(());
    }
    match py.detach(|| fenced("nan check", || Ok(crate::nan::first_nan_image(view))))? {
        Some(i) => Err(pyo3::exceptions::PyValueError::new_err(format!(
            "image {i} of the batch contains NaN values"
        ))),
        None => Ok(()),
    }
}

/// Encodes the images `range` of `view`, without the GIL, into one `Vec` each.
fn encode_view(
    py: Python<'_>,
    view: &TensorView<'_>,
    settings: &Settings,
) -> PyResult<Vec<Vec<u8>>> {
    check_nan(py, view, settings)?;
    let mut pooled = take(settings.key)?;
    pooled.encoder.set_text(&settings.text);
    let result = py.detach(|| {
        fenced("encode", || {
            let mut pngs = Vec::with_capacity(view.batch());
            for image in view.images() {
                pooled
                    .encoder
                    .encode_image_into(&image, settings.convert, &mut pooled.out)
                    .map_err(core_to_py)?;
                pngs.push(pooled.out.clone());
            }
            Ok(pngs)
        })
    });
    give_back(pooled);
    result
}

/// Encodes one image. A batch of one is accepted; a larger batch is an error.
pub fn encode_one<'py>(
    py: Python<'py>,
    image: &Bound<'py, PyAny>,
    settings: &Settings,
) -> PyResult<Bound<'py, PyBytes>> {
    let source = Source::from_object(image)?;
    let view = source.view(settings.layout)?;
    if view.batch() != 1 {
        let shape = source.shape();
        let why = if shape.len() == 3 {
            format!(
                " (a 3-dimensional input whose last axis {} is not a channel count 1..4 is read \
                 as [B,H,W] masks)",
                shape[2]
            )
        } else {
            String::new()
        };
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "encode() takes one image, got a batch of {} (shape {shape:?}){why}: use \
             encode_batch(), or pass layout=",
            view.batch(),
        )));
    }
    check_nan(py, &view, settings)?;
    let mut pooled = take(settings.key)?;
    pooled.encoder.set_text(&settings.text);
    let result = py.detach(|| {
        fenced("encode", || {
            let image = view.image(0).map_err(core_to_py)?;
            pooled
                .encoder
                .encode_image_into(&image, settings.convert, &mut pooled.out)
                .map_err(core_to_py)
        })
    });
    let bytes = result.map(|()| PyBytes::new(py, &pooled.out));
    give_back(pooled);
    bytes
}

/// Encodes every image of a batch (or of a list of images), in order.
pub fn encode_many<'py>(
    py: Python<'py>,
    images: &Bound<'py, PyAny>,
    settings: &Settings,
) -> PyResult<Vec<Bound<'py, PyBytes>>> {
    let mut out = Vec::new();
    if images.is_instance_of::<pyo3::types::PyList>()
        || images.is_instance_of::<pyo3::types::PyTuple>()
    {
        for item in images.try_iter()? {
            let item = item?;
            let source = Source::from_object(&item)?;
            let view = source.view(settings.layout)?;
            for png in encode_view(py, &view, settings)? {
                out.push(PyBytes::new(py, &png));
            }
        }
        return Ok(out);
    }
    let source = Source::from_object(images)?;
    let view = source.view(settings.layout)?;
    for png in encode_view(py, &view, settings)? {
        out.push(PyBytes::new(py, &png));
    }
    Ok(out)
}
