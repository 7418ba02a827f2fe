//! The `pngcast` Python package's native module (`pngcast._pngcast`): a thin PyO3 layer over
//! `pngcast-core` (tensor views, conversion, PNG) and pngcast's transports.
//!
//! - `input`: numpy arrays and torch tensors read without copying (`__array_interface__`,
//!   DLPack), turned into core's `TensorView`.
//! - `encoding`: `encode` / `encode_batch`, the GIL released while converting and encoding.
//! - `server`: `Server`, a WebSocket server in background threads (optionally an edge that
//!   serves what Redis delivers).
//! - `relay`: `Publisher`, frames published to Redis pub/sub for edge servers.
//! - `send`: `send` / `send_json`, shared by both.
//! - `errors`: exceptions, and the fence that turns a Rust panic into `pngcast.Error`.
//!
//! `unsafe` lives in `foreign` alone (reading the DLPack structs and memory that numpy or
//! torch own).
#![deny(unsafe_code)]

mod encoding;
mod errors;
#[allow(unsafe_code)]
mod foreign;
mod input;
mod nan;
mod options;
mod relay;
mod send;
mod server;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::encoding::Settings;

/// Encodes one image (``[H,W,C]``, ``[H,W]``, or a batch of one) to PNG bytes.
#[pyfunction]
#[pyo3(signature = (
    image,
    *,
    compression = "fast",
    quantize = "truncate",
    bit_depth = 8,
    text = None,
    threads = None,
    layout = None,
    nan = "zero",
))]
#[allow(clippy::too_many_arguments)]
fn encode<'py>(
    py: Python<'py>,
    image: &Bound<'py, PyAny>,
    compression: &str,
    quantize: &str,
    bit_depth: u32,
    text: Option<&Bound<'py, PyAny>>,
    threads: Option<i64>,
    layout: Option<&str>,
    nan: &str,
) -> PyResult<Bound<'py, PyBytes>> {
    let settings = Settings::parse(compression, quantize, bit_depth, text, threads, layout, nan)?;
    encoding::encode_one(py, image, &settings)
}

/// Encodes every image of a batch ``[B,H,W,C]`` (or masks ``[B,H,W]``, or a list of images)
/// to PNG bytes, in order.
#[pyfunction]
#[pyo3(signature = (
    images,
    *,
    compression = "fast",
    quantize = "truncate",
    bit_depth = 8,
    text = None,
    threads = None,
    layout = None,
    nan = "zero",
))]
#[allow(clippy::too_many_arguments)]
fn encode_batch<'py>(
    py: Python<'py>,
    images: &Bound<'py, PyAny>,
    compression: &str,
    quantize: &str,
    bit_depth: u32,
    text: Option<&Bound<'py, PyAny>>,
    threads: Option<i64>,
    layout: Option<&str>,
    nan: &str,
) -> PyResult<Vec<Bound<'py, PyBytes>>> {
    let settings = Settings::parse(compression, quantize, bit_depth, text, threads, layout, nan)?;
    encoding::encode_many(py, images, &settings)
}

/// The SIMD kernel the conversion uses on this CPU (``"avx512"``, ``"avx2"``, ``"scalar"``...).
#[pyfunction]
fn simd_kernel() -> &'static str {
    pngcast_core::convert::kernel_name()
}

/// Panics inside the fence, for the test that proves a Rust panic reaches Python as
/// `pngcast.Error` (and never as a crash or a `PanicException`). Not part of the API.
#[pyfunction]
fn _test_panic(py: Python<'_>, message: &str) -> PyResult<()> {
    py.detach(|| errors::fenced("_test_panic", || panic!("{message}")))
}

#[pymodule]
fn _pngcast(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(encode, m)?)?;
    m.add_function(wrap_pyfunction!(encode_batch, m)?)?;
    m.add_function(wrap_pyfunction!(simd_kernel, m)?)?;
    m.add_function(wrap_pyfunction!(_test_panic, m)?)?;
    m.add_class::<server::Server>()?;
    m.add_class::<relay::Publisher>()?;
    m.add_function(wrap_pyfunction!(server::_close_all, m)?)?;
    m.add("Error", m.py().get_type::<errors::Error>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
