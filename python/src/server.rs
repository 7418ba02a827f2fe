//! `pngcast.Server`: pngcast's WebSocket server (ComfyUI's wire, the live viewer at `/`) running
//! in background threads of this process, fed from Python.
//!
//! Every use of the transport-facing API lives in this module.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use pngcast_core::png::EncodeOptions;
use pngcast_protocol::http::ServerConfig;
use pngcast_protocol::queue::Policy;
use pngcast_protocol::sender::Sender;
use pngcast_protocol::sink::FrameSink;
use pngcast_relay_redis::{Edge, EdgeConfig};

use crate::errors::{core_to_py, fenced, protocol_to_py};
use crate::input::Layout;
use crate::options;
use crate::relay;
use crate::send::{self, Keys, Owner};

/// How long `close()` lets clients take their queued frames and the Close frame.
const CLOSE_DEADLINE: Duration = Duration::from_secs(2);

enum Backend {
    Mio(pngcast_mio::Server),
    Blocking(pngcast_blocking::Server),
}

impl Backend {
    fn shutdown(&self, deadline: Duration) {
        match self {
            Backend::Mio(s) => s.shutdown(deadline),
            Backend::Blocking(s) => s.shutdown(deadline),
        }
    }
}

struct Running {
    backend: Backend,
    sink: Arc<dyn FrameSink>,
    sender: Mutex<Sender>,
    /// With `subscribe=`: the Redis subscriber feeding `sink`.
    edge: Mutex<Option<Edge>>,
}

impl Running {
    /// Stops the subscriber (no new frames from Redis), then closes every client after what
    /// was queued for it.
    fn close(&self, deadline: Duration) {
        let edge = self.edge.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(edge) = edge {
            edge.stop();
        }
        self.backend.shutdown(deadline);
    }
}

/// Every server started by this process, so that interpreter exit can close those still open.
static RUNNING: Mutex<Vec<std::sync::Weak<Running>>> = Mutex::new(Vec::new());

/// Closes every server still open (registered with `atexit` by the package): each client gets
/// Close 1001 after what was queued for it.
#[pyfunction]
pub fn _close_all(py: Python<'_>) -> PyResult<()> {
    let all: Vec<Arc<Running>> = {
        let mut list = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
        let live = list.iter().filter_map(std::sync::Weak::upgrade).collect();
        list.clear();
        live
    };
    py.detach(|| {
        fenced("pngcast at exit", || {
            for running in all {
                running.close(CLOSE_DEADLINE);
            }
            crate::relay::close_all();
            Ok(())
        })
    })
}

/// A pngcast WebSocket server running in background threads.
///
/// Clients connect to ``ws://ADDR/ws`` (or ``/api/ws``, optionally ``?clientId=...``) exactly as
/// to ComfyUI; a browser opens the live viewer at ``http://ADDR/``. ``send`` converts, encodes and
/// queues each image once for every client (a slow client never slows another). Use it as a
/// context manager, or call ``close()``: every client then gets Close 1001 after what was
/// already queued for it. With ``subscribe="redis://HOST:PORT/?namespace=NS"`` it is also an
/// edge: it serves what ``pngcast.Publisher`` workers publish on that namespace.
#[pyclass(module = "pngcast", name = "Server", frozen, weakref)]
pub struct Server {
    running: Mutex<Option<Arc<Running>>>,
    addr: SocketAddr,
    transport: &'static str,
    token: bool,
    layout: Layout,
}

fn parse_addr(addr: &str) -> PyResult<SocketAddr> {
    if let Ok(a) = addr.parse::<SocketAddr>() {
        return Ok(a);
    }
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut it| it.next())
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "addr must be HOST:PORT (e.g. \"127.0.0.1:8189\"); got {addr:?}"
            ))
        })
}

const OWNER: Owner = Owner {
    noun: "server",
    max_bytes: None,
};

impl Server {
    fn running(&self) -> PyResult<Arc<Running>> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| PyValueError::new_err("the server is closed"))
    }
}

#[pymethods]
impl Server {
    #[new]
    #[pyo3(signature = (
        addr = "127.0.0.1:8189",
        *,
        transport = "mio",
        token = None,
        policy = "latest-wins",
        allowed_origins = Vec::new(),
        allowed_hosts = Vec::new(),
        compression = "fast",
        quantize = "truncate",
        bit_depth = 8,
        threads = None,
        max_clients = None,
        queue_bytes = None,
        announce = true,
        insecure = false,
        layout = None,
        subscribe = None,
        redis_password_file = None,
        redis_retry = false,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        addr: &str,
        transport: &str,
        token: Option<String>,
        policy: &str,
        allowed_origins: Vec<String>,
        allowed_hosts: Vec<String>,
        compression: &str,
        quantize: &str,
        bit_depth: u32,
        threads: Option<i64>,
        max_clients: Option<usize>,
        queue_bytes: Option<usize>,
        announce: bool,
        insecure: bool,
        layout: Option<&str>,
        subscribe: Option<&str>,
        redis_password_file: Option<std::path::PathBuf>,
        redis_retry: bool,
    ) -> PyResult<Server> {
        let sock_addr = parse_addr(addr)?;
        let subscribe = match subscribe {
            Some(url) => Some(relay::parse_url(
                "subscribe",
                url,
                redis_password_file.as_deref(),
            )?),
            None if redis_password_file.is_some() => {
                return Err(PyValueError::new_err(
                    "redis_password_file needs subscribe=\"redis://...\"",
                ))
            }
            None => None,
        };
        let policy: Policy = policy.parse().map_err(|_| {
            PyValueError::new_err(format!(
                "policy must be \"latest-wins\" or \"reliable\"; got {policy:?}"
            ))
        })?;
        let mut config = ServerConfig::default()
            .addr(sock_addr)
            .policy(policy)
            .token(token.clone())
            .allowed_origins(allowed_origins)
            .allowed_hosts(allowed_hosts)
            .insecure(insecure)
            .announce(announce);
        if let Some(n) = max_clients {
            config = config.max_clients(n);
        }
        if let Some(n) = queue_bytes {
            config = config.queue_bytes(n);
        }
        config.validate().map_err(protocol_to_py)?;
        let encode = EncodeOptions::default()
            .compression(options::compression(compression)?)
            .threads(options::threads(threads)?);
        let convert = options::convert(quantize, bit_depth)?;
        let layout = Layout::parse(layout)?;
        let transport: &'static str = match transport {
            "mio" => "mio",
            "blocking" => "blocking",
            other => {
                return Err(PyValueError::new_err(format!(
                    "transport must be \"mio\" or \"blocking\"; got {other:?}"
                )))
            }
        };
        let running = py.detach(|| {
            fenced("Server()", || {
                let (backend, sink) = match transport {
                    "mio" => {
                        let s = pngcast_mio::Server::bind(config.clone()).map_err(|e| {
                            PyOSError::new_err(bind_message(&e.to_string(), sock_addr))
                        })?;
                        let sink = s.sink();
                        (Backend::Mio(s), sink)
                    }
                    _ => {
                        let s = pngcast_blocking::Server::bind(config.clone()).map_err(|e| {
                            PyOSError::new_err(bind_message(&e.to_string(), sock_addr))
                        })?;
                        let sink = s.sink();
                        (Backend::Blocking(s), sink)
                    }
                };
                let sender = Sender::new(Arc::clone(&sink), encode)
                    .map_err(core_to_py)?
                    .convert_options(convert)
                    .announce(config.announce);
                let edge = match subscribe {
                    Some(url) => {
                        let mut edge_config = EdgeConfig::default();
                        edge_config.start_disconnected = redis_retry;
                        match Edge::with_url(url, Arc::clone(&sink), edge_config) {
                            Ok(edge) => Some(edge),
                            Err(e) => {
                                backend.shutdown(Duration::ZERO);
                                return Err(relay::relay_to_py(e, "redis_retry"));
                            }
                        }
                    }
                    None => None,
                };
                Ok((backend, sink, sender, edge))
            })
        })?;
        let (backend, sink, sender, edge) = running;
        let local = match &backend {
            Backend::Mio(s) => s.local_addr(),
            Backend::Blocking(s) => s.local_addr(),
        };
        let running = Arc::new(Running {
            backend,
            sink,
            sender: Mutex::new(sender),
            edge: Mutex::new(edge),
        });
        {
            let mut list = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
            list.retain(|w| w.strong_count() > 0);
            list.push(Arc::downgrade(&running));
        }
        Ok(Server {
            running: Mutex::new(Some(running)),
            addr: local,
            transport,
            token: token.is_some(),
            layout,
        })
    }

    /// Converts, encodes and queues every image of ``images`` (a batch ``[B,H,W,C]``, one image
    /// ``[H,W,C]``, masks ``[B,H,W]`` or ``[H,W]``) under ``event``, in batch order, for every
    /// client or only the one with ``client_id``. Returns ``{"frames": n, "png_bytes": n}``.
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
            OWNER,
            &running.sender,
            event,
            images,
            keys,
            text,
            layout,
            nan,
        )
    }

    /// Queues a JSON message ``{"type": event, "data": data}`` (``data`` as ``json.dumps`` takes
    /// it) for every client or for ``client_id``.
    #[pyo3(signature = (event, data, *, client_id = None))]
    fn send_json(
        &self,
        py: Python<'_>,
        event: &str,
        data: &Bound<'_, PyAny>,
        client_id: Option<String>,
    ) -> PyResult<()> {
        let running = self.running()?;
        send::send_json(py, OWNER, &*running.sink, event, data, client_id)
    }

    /// Counters since the server started: clients, frames queued/sent/dropped, bytes sent, ...
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let running = self.running()?;
        let s = running.sink.stats();
        let d = PyDict::new(py);
        d.set_item("clients", s.clients)?;
        d.set_item("clients_accepted", s.clients_accepted)?;
        d.set_item("clients_closed", s.clients_closed)?;
        d.set_item("frames_queued", s.frames_queued)?;
        d.set_item("frames_sent", s.frames_sent)?;
        d.set_item("frames_dropped", s.frames_dropped)?;
        d.set_item("texts_queued", s.texts_queued)?;
        d.set_item("bytes_sent", s.bytes_sent)?;
        d.set_item("handshakes_refused", s.handshakes_refused)?;
        d.set_item("closed_overflow", s.closed_overflow)?;
        d.set_item("closed_stall", s.closed_stall)?;
        d.set_item("closed_bad_input", s.closed_bad_input)?;
        Ok(d)
    }

    /// With ``subscribe=``: the Redis subscriber's counters (``received``, ``delivered``,
    /// ``resynced``, ``garbage``, ``subscribes``, ``disconnects``, ``connected``, ...); else
    /// ``None``.
    fn edge_stats<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let running = self.running()?;
        let edge = running.edge.lock().unwrap_or_else(|p| p.into_inner());
        edge.as_ref()
            .map(|e| relay::edge_stats_dict(py, &e.stats()))
            .transpose()
    }

    /// The viewer's address, ``http://HOST:PORT/``.
    #[getter]
    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The WebSocket address clients connect to, ``ws://HOST:PORT/ws``.
    #[getter]
    fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// ``(host, port)`` the server listens on (the real port when ``addr`` asked for port 0).
    #[getter]
    fn address(&self) -> (String, u16) {
        (self.addr.ip().to_string(), self.addr.port())
    }

    /// ``"mio"`` or ``"blocking"``.
    #[getter]
    fn transport(&self) -> &'static str {
        self.transport
    }

    /// Whether the server is closed.
    #[getter]
    fn closed(&self) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }

    /// Sends Close 1001 to every client once what was queued for it is written (or ``timeout``
    /// seconds have passed), then stops the server's threads. Idempotent.
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
                fenced("Server.close", || {
                    running.close(deadline);
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
        let token = if self.token { ", token=<set>" } else { "" };
        format!(
            "<pngcast.Server {} {} transport={}{}>",
            self.url(),
            state,
            self.transport,
            token
        )
    }
}

fn bind_message(err: &str, addr: SocketAddr) -> String {
    if err.contains("in use") {
        format!(
            "{err} (is another server on port {}? pick another addr, or port 0 for a free one)",
            addr.port()
        )
    } else {
        err.to_owned()
    }
}
