//! `send` and `send_json`, shared by `Server` and `Publisher`: the same arguments, checks and
//! errors whichever sink the frames go to.

use std::sync::Mutex;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use pngcast_protocol::sender::{FrameExtra, SendError, Sender};
use pngcast_protocol::sink::{FrameSink, SinkError, Target};

use crate::errors::{core_to_py, fenced, Error};
use crate::input::{Layout, Source};
use crate::options;

/// Who refused a message, for the error texts.
#[derive(Debug, Clone, Copy)]
pub struct Owner {
    /// `"server"` or `"publisher"`.
    pub noun: &'static str,
    /// The largest message the sink takes, when it has a configured limit.
    pub max_bytes: Option<usize>,
}

/// A sink's refusal as a Python exception: a closed sink is the caller's mistake (`ValueError`),
/// anything else `pngcast.Error`.
pub fn sink_error(e: SinkError, owner: Owner) -> PyErr {
    match (e, owner.max_bytes) {
        (SinkError::ShutDown, _) => PyValueError::new_err(format!("the {} is closed", owner.noun)),
        (SinkError::TooLarge(n), Some(max)) => Error::new_err(format!(
            "the {} refused a message of {n} bytes (larger than max_frame_bytes={max}, or its \
             queue is full of texts)",
            owner.noun
        )),
        (other, _) => Error::new_err(other.to_string()),
    }
}

/// The node and client keys of `send`.
#[derive(Debug, Default)]
pub struct Keys {
    pub client_id: Option<String>,
    pub prompt_id: Option<String>,
    pub node_id: Option<String>,
    pub display_node_id: Option<String>,
    pub parent_node_id: Option<String>,
    pub real_node_id: Option<String>,
}

/// Everything `send` does once the sink is known: parse and check the arguments, read the
/// tensor without copying, then (GIL released) convert, encode and hand each frame to the sink.
#[allow(clippy::too_many_arguments)]
pub fn send_images<'py>(
    py: Python<'py>,
    owner: Owner,
    sender: &Mutex<Sender>,
    event: &str,
    images: &Bound<'py, PyAny>,
    keys: Keys,
    text: Option<&Bound<'py, PyAny>>,
    layout: Layout,
    nan: &str,
) -> PyResult<Bound<'py, PyDict>> {
    if event.is_empty() {
        return Err(PyValueError::new_err("event must be a non-empty string"));
    }
    let text = options::text(text)?;
    let source = Source::from_object(images)?;
    let view = source.view(layout)?;
    let nan_error = match nan {
        "zero" => false,
        "error" => true,
        other => {
            return Err(PyValueError::new_err(format!(
                "nan must be \"zero\" or \"error\"; got {other:?}"
            )))
        }
    };
    if nan_error {
        if let Some(i) =
            py.detach(|| fenced("nan check", || Ok(crate::nan::first_nan_image(&view))))?
        {
            return Err(PyValueError::new_err(format!(
                "image {i} of the batch contains NaN values"
            )));
        }
    }
    let target = match keys.client_id {
        Some(id) => Target::client(id),
        None => Target::All,
    };
    let mut extra = FrameExtra::default();
    if let Some(v) = keys.prompt_id {
        extra = extra.prompt_id(v);
    }
    if let Some(v) = keys.node_id {
        extra = extra.node_id(v);
    }
    if let Some(v) = keys.display_node_id {
        extra = extra.display_node_id(v);
    }
    if let Some(v) = keys.parent_node_id {
        extra = extra.parent_node_id(v);
    }
    if let Some(v) = keys.real_node_id {
        extra = extra.real_node_id(v);
    }
    let report = py.detach(|| {
        fenced("send", || {
            let mut sender = sender.lock().unwrap_or_else(|p| p.into_inner());
            sender.encoder_mut().set_text(&text);
            sender
                .send(event, &view, &target, &extra)
                .map_err(|e| match e {
                    SendError::Encode { source, .. } => core_to_py(source),
                    SendError::Sink { source, .. } => sink_error(source, owner),
                    other => Error::new_err(other.to_string()),
                })
        })
    })?;
    let d = PyDict::new(py);
    d.set_item("frames", report.frames)?;
    d.set_item("png_bytes", report.png_bytes)?;
    Ok(d)
}

/// `send_json`: `data` through Python's `json.dumps`, queued as `{"type": event, "data": data}`.
pub fn send_json(
    py: Python<'_>,
    owner: Owner,
    sink: &dyn FrameSink,
    event: &str,
    data: &Bound<'_, PyAny>,
    client_id: Option<String>,
) -> PyResult<()> {
    let json = py.import("json")?;
    let text: String = json
        .call_method1("dumps", (data,))
        .map_err(|e| PyTypeError::new_err(format!("data is not JSON-serialisable: {e}")))?
        .extract()?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| PyValueError::new_err(format!("data is not valid JSON: {e}")))?;
    let target = match client_id {
        Some(id) => Target::client(id),
        None => Target::All,
    };
    sink.send_json(&target, event, &value)
        .map_err(|e| sink_error(e, owner))
}
