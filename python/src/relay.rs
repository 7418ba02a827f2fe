//! `pngcast.Publisher`: frames encoded once and published to Redis pub/sub for pngcast edges
//! (`pngcast serve --source redis://...`, or `Server(subscribe=...)`), through
//! `pngcast-relay-redis`. Every use of that crate's API lives here and in `server`'s
//! `subscribe=`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use pngcast_core::png::EncodeOptions;
use pngcast_protocol::queue::Policy;
use pngcast_protocol::sender::Sender;
use pngcast_protocol::sink::FrameSink;
use pngcast_relay_redis::{
    EdgeStats, Publisher as RustPublisher, PublisherConfig, RedisUrl, RelayError,
};

use crate::errors::{core_to_py, fenced, Error};
use crate::input::Layout;
use crate::options;
use crate::send::{self, Keys, Owner};

/// How long `close()` keeps publishing what is queued.
const CLOSE_DEADLINE: Duration = Duration::from_secs(2);

/// Parses a Redis URL argument (`arg` names it in errors), with the password from a file.
pub fn parse_url(arg: &str, url: &str, password_file: Option<&Path>) -> PyResult<RedisUrl> {
    let u = RedisUrl::parse(url).map_err(|e| PyValueError::new_err(format!("{arg}: {e}")))?;
    match password_file {
        Some(p) => u.with_password_file(p).map_err(|e| relay_to_py(e, "retry")),
        None => Ok(u),
    }
}

/// A relay error as a Python exception: a bad URL is `ValueError`, an unreadable password file
/// `OSError`, Redis unreachable (or refusing the credentials) `pngcast.Error`, its message naming
/// the `retry_arg` that starts anyway.
pub fn relay_to_py(e: RelayError, retry_arg: &str) -> PyErr {
    match e {
        RelayError::Url(_) => PyValueError::new_err(e.to_string()),
        RelayError::PasswordFile { .. } => PyOSError::new_err(e.to_string()),
        RelayError::Connect { .. } => Error::new_err(format!(
            "{e} (is redis-server running there? pass {retry_arg}=True to start anyway and \
             keep retrying in the background)"
        )),
        other => Error::new_err(other.to_string()),
    }
}

pub fn edge_stats_dict<'py>(py: Python<'py>, s: &EdgeStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("received", s.received)?;
    d.set_item("delivered", s.delivered)?;
    d.set_item("resynced", s.resynced)?;
    d.set_item("garbage", s.garbage)?;
    d.set_item("unknown_client", s.unknown_client)?;
    d.set_item("sink_errors", s.sink_errors)?;
    d.set_item("subscribes", s.subscribes)?;
    d.set_item("disconnects", s.disconnects)?;
    d.set_item("connected", s.connected)?;
    Ok(d)
}

fn seconds(arg: &str, v: f64) -> PyResult<Duration> {
    if v.is_finite() && v > 0.0 && v < 1e9 {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(PyValueError::new_err(format!(
            "{arg} must be a positive number of seconds; got {v}"
        )))
    }
}

struct Running {
    publisher: Arc<RustPublisher>,
    sender: Mutex<Sender>,
}

/// Every publisher started by this process, so that interpreter exit publishes what is queued.
static RUNNING: Mutex<Vec<Weak<Running>>> = Mutex::new(Vec::new());

/// Closes every publisher still open (called by `_close_all` at interpreter exit).
pub fn close_all() {
    let all: Vec<Arc<Running>> = {
        let mut list = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
        let live = list.iter().filter_map(Weak::upgrade).collect();
        list.clear();
        live
    };
    for running in all {
        running.publisher.shutdown(CLOSE_DEADLINE);
    }
}

/// Publishes frames to Redis pub/sub for pngcast edges, with no WebSocket port of its own.
///
/// ``send`` converts and encodes each image once and queues it for a background thread that
/// publishes it on ``pngcast:NAMESPACE:frames`` (and keeps the newest frame of each event under
/// a key, so that a viewer who connects to an edge later sees the current image at once). Edges
/// (``pngcast serve --source redis://...`` or ``Server(subscribe=...)``) deliver the frames to
/// their clients byte for byte as a local server would.
#[pyclass(module = "pngcast", name = "Publisher", frozen, weakref)]
pub struct Publisher {
    running: Mutex<Option<Arc<Running>>>,
    url: RedisUrl,
    max_frame_bytes: usize,
    layout: Layout,
}

impl Publisher {
    fn running(&self) -> PyResult<Arc<Running>> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| PyValueError::new_err("the publisher is closed"))
    }

    fn owner(&self) -> Owner {
        Owner {
            noun: "publisher",
            max_bytes: Some(self.max_frame_bytes),
        }
    }
}

#[pymethods]
impl Publisher {
    #[new]
    #[pyo3(signature = (
        url,
        *,
        password_file = None,
        retry = false,
        timeout = 2.0,
        queue_len = 64,
        max_frame_bytes = 64 << 20,
        latest_ttl = 60.0,
        policy = "latest-wins",
        compression = "fast",
        quantize = "truncate",
        bit_depth = 8,
        threads = None,
        announce = true,
        layout = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        url: &str,
        password_file: Option<PathBuf>,
        retry: bool,
        timeout: f64,
        queue_len: usize,
        max_frame_bytes: usize,
        latest_ttl: f64,
        policy: &str,
        compression: &str,
        quantize: &str,
        bit_depth: u32,
        threads: Option<i64>,
        announce: bool,
        layout: Option<&str>,
    ) -> PyResult<Publisher> {
        let url = parse_url("url", url, password_file.as_deref())?;
        let policy: Policy = policy.parse().map_err(|_| {
            PyValueError::new_err(format!(
                "policy must be \"latest-wins\" or \"reliable\"; got {policy:?}"
            ))
        })?;
        if queue_len == 0 {
            return Err(PyValueError::new_err("queue_len must be >= 1; got 0"));
        }
        if max_frame_bytes == 0 {
            return Err(PyValueError::new_err("max_frame_bytes must be >= 1; got 0"));
        }
        let mut config = PublisherConfig::default();
        config.queue_len = queue_len;
        config.max_frame_bytes = max_frame_bytes;
        config.latest_ttl = seconds("latest_ttl", latest_ttl)?;
        config.io_timeout = seconds("timeout", timeout)?;
        config.start_disconnected = retry;
        config.policy = policy;
        let encode = EncodeOptions::default()
            .compression(options::compression(compression)?)
            .threads(options::threads(threads)?);
        let convert = options::convert(quantize, bit_depth)?;
        let layout = Layout::parse(layout)?;
        let shown = url.clone();
        let running = py.detach(|| {
            fenced("Publisher()", || {
                let publisher = Arc::new(
                    RustPublisher::with_url(url, config).map_err(|e| relay_to_py(e, "retry"))?,
                );
                let sink: Arc<dyn FrameSink> = Arc::clone(&publisher) as Arc<dyn FrameSink>;
                let sender = Sender::new(sink, encode)
                    .map_err(core_to_py)?
                    .convert_options(convert)
                    .announce(announce);
                Ok(Arc::new(Running {
                    publisher,
                    sender: Mutex::new(sender),
                }))
            })
        })?;
        {
            let mut list = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
            list.retain(|w| w.strong_count() > 0);
            list.push(Arc::downgrade(&running));
        }
        Ok(Publisher {
            running: Mutex::new(Some(running)),
            url: shown,
            max_frame_bytes,
            layout,
        })
    }

    /// As ``Server.send``: converts and encodes every image of ``images`` under ``event`` and
    /// queues it for publishing, for every client of every edge or only the one with
    /// ``client_id`` (on whichever edge it is). Returns ``{"frames": n, "png_bytes": n}``.
    /// Does not wait for Redis: when the queue is full the oldest waiting image is dropped.
    #[pyo3(signature = (
        event,
        images,
        *,
        client_id = None,
        prompt_id = None,
        node_id = None,
        display_node_id = None,
        parent_node_id = None,
        real_node_id = None,
        text = None,
        layout = None,
        nan = "zero",
    ))]
    #[allow(clippy::too_many_arguments)]
    fn send<'py>(
        &self,
        py: Python<'py>,
        event: &str,
        images: &Bound<'py, PyAny>,
        client_id: Option<String>,
        prompt_id: Option<String>,
        node_id: Option<String>,
        display_node_id: Option<String>,
        parent_node_id: Option<String>,
        real_node_id: Option<String>,
        text: Option<&Bound<'py, PyAny>>,
        layout: Option<&str>,
        nan: &str,
    ) -> PyResult<Bound<'py, PyDict>> {
        let layout = match layout {
            Some(_) => Layout::parse(layout)?,
            None => self.layout,
        };
        let running = self.running()?;
        let keys = Keys {
            client_id,
            prompt_id,
            node_id,
            display_node_id,
            parent_node_id,
            real_node_id,
        };
        send::send_images(
            py,
            self.owner(),
            &running.sender,
            event,
            images,
            keys,
            text,
            layout,
            nan,
        )
    }

    /// As ``Server.send_json``: publishes ``{"type": event, "data": data}``.
    #[pyo3(signature = (event, data, *, client_id = None))]
    fn send_json(
        &self,
        py: Python<'_>,
        event: &str,
        data: &Bound<'_, PyAny>,
        client_id: Option<String>,
    ) -> PyResult<()> {
        let running = self.running()?;
        let sink: &dyn FrameSink = &*running.publisher;
        send::send_json(py, self.owner(), sink, event, data, client_id)
    }

    /// Waits until everything queued so far was published (or failed, or was dropped), at most
    /// ``timeout`` seconds; ``True`` when the queue is empty.
    #[pyo3(signature = (timeout = 5.0))]
    fn flush(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let timeout = if timeout == 0.0 {
            Duration::ZERO
        } else {
            seconds("timeout", timeout)?
        };
        let running = self.running()?;
        py.detach(|| fenced("Publisher.flush", || Ok(running.publisher.flush(timeout))))
    }

    /// Counters since the publisher started: ``queued``, ``published``, ``dropped`` (queue
    /// full), ``failed`` (a Redis call failed), ``too_large``, ``connects``, ``receivers``
    /// (edges that got the messages, summed) and ``connected``.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let running = self.running()?;
        let s = running.publisher.publisher_stats();
        let d = PyDict::new(py);
        d.set_item("queued", s.queued)?;
        d.set_item("published", s.published)?;
        d.set_item("dropped", s.dropped)?;
        d.set_item("failed", s.failed)?;
        d.set_item("too_large", s.too_large)?;
        d.set_item("connects", s.connects)?;
        d.set_item("receivers", s.receivers)?;
        d.set_item("connected", s.connected)?;
        Ok(d)
    }

    /// The namespace (the URL's ``?namespace=``, default ``"default"``).
    #[getter]
    fn namespace(&self) -> &str {
        self.url.namespace()
    }

    /// The pub/sub channel, ``pngcast:NAMESPACE:frames``.
    #[getter]
    fn channel(&self) -> String {
        self.url.channel()
    }

    /// Whether the publisher is closed.
    #[getter]
    fn closed(&self) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }

    /// Publishes what is queued (for at most ``timeout`` seconds, default 2), then stops the
    /// publisher thread. Idempotent.
    #[pyo3(signature = (timeout = None))]
    fn close(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let deadline = match timeout {
            None => CLOSE_DEADLINE,
            Some(t) if t.is_finite() && t >= 0.0 => Duration::from_secs_f64(t),
            Some(t) => {
                return Err(PyValueError::new_err(format!(
                    "timeout must be a non-negative number of seconds; got {t}"
                )))
            }
        };
        let running = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(running) = running {
            py.detach(|| {
                fenced("Publisher.close", || {
                    running.publisher.shutdown(deadline);
                    Ok(())
                })
            })?;
        }
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close(py, None)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        let state = if self.closed() { "closed" } else { "open" };
        format!("<pngcast.Publisher redis {} {state}>", self.url)
    }
}
