//! The server: bind, the accept thread, the `FrameSink` face and shutdown.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use pngcast_protocol::http::ServerConfig;
use pngcast_protocol::io::clients_that_fit;
use pngcast_protocol::sink::{FrameSink, SinkError, SinkStats, Target};
use pngcast_protocol::wire::WireFrame;

use crate::conn;
use crate::hub::{after, Hub};

/// Why the server could not start. `#[non_exhaustive]`: kinds may be added. The same shape as
/// `pngcast_mio::Error`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration was refused by `ServerConfig::validate` (for instance a bind beyond
    /// loopback without a token and without `insecure`).
    #[error("invalid server configuration: {0}")]
    Config(#[source] pngcast_protocol::Error),
    /// The address could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// The accept thread could not be started.
    #[error("cannot start the accept thread: {0}")]
    Setup(#[source] io::Error),
}

/// Threads of live connections, joined at shutdown. Finished ones are reaped on every accept so
/// the list stays as long as the number of open connections.
#[derive(Default)]
struct Threads {
    handles: Mutex<Vec<JoinHandle<()>>>,
    live: AtomicUsize,
}

pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    pub(crate) hub: Arc<Hub>,
    threads: Threads,
    local_addr: SocketAddr,
    /// The accept thread, taken and joined by the first shutdown.
    accept: Mutex<Option<JoinHandle<()>>>,
}

/// pngcast's WebSocket service on blocking threads. See the [crate docs](crate).
///
/// Threads: one accept thread; per connection one thread that does the HTTP part and then reads
/// the WebSocket, plus one writer thread once upgraded. Memory per client: two thread stacks
/// (64 KiB requested each), tungstenite's read buffer, and the bounded queue of shared frames.
///
/// Dropping the server shuts it down with a one-second deadline.
pub struct Server {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

/// File descriptors one client holds: its socket and the handles of its writer thread, of
/// the connection list (shutdown cuts through it) and of the client registry, and its
/// reader's epoll set (the wait for input that the writer's wake-ups do not reach).
pub const DESCRIPTORS_PER_CLIENT: u64 = 5;

/// Stack size of the per-connection threads: they hold a few small buffers only.
pub(crate) const THREAD_STACK: usize = 128 * 1024;

impl Server {
    /// Validates `config`, binds its address and starts the accept thread.
    pub fn bind(config: ServerConfig) -> Result<Server, Error> {
        config.validate().map_err(Error::Config)?;
        let mut config = config;
        if let Some(fit) = clients_that_fit(DESCRIPTORS_PER_CLIENT, config.max_handshakes) {
            config.max_clients = config.max_clients.min(fit.max(1));
        }
        let listener = TcpListener::bind(config.addr).map_err(|source| Error::Bind {
            addr: config.addr,
            source,
        })?;
        let local_addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: config.addr,
            source,
        })?;
        let shared = Arc::new(Shared {
            hub: Arc::new(Hub::new(config.clone())),
            config,
            threads: Threads::default(),
            local_addr,
            accept: Mutex::new(None),
        });
        let accept_shared = Arc::clone(&shared);
        let accept = thread::Builder::new()
            .name("pngcast-accept".into())
            .stack_size(THREAD_STACK)
            .spawn(move || accept_loop(&listener, &accept_shared))
            .map_err(Error::Setup)?;
        *shared.accept.lock().unwrap_or_else(|p| p.into_inner()) = Some(accept);
        Ok(Server { shared, local_addr })
    }

    /// Most WebSocket clients served at once: `max_clients`, or fewer when the process's
    /// descriptor limit holds fewer (each client takes [`DESCRIPTORS_PER_CLIENT`]); one more
    /// gets 503 before its 101.
    pub fn max_clients(&self) -> usize {
        self.shared.config.max_clients
    }

    /// The address the server listens on (with the real port when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server as a shareable [`FrameSink`] (for a sender running on another thread).
    /// The sink stays usable after the `Server` is dropped; sends then fail with
    /// [`SinkError::ShutDown`].
    pub fn sink(&self) -> Arc<dyn FrameSink> {
        Arc::new(SinkHandle(Arc::clone(&self.shared)))
    }

    /// Sends Close 1001 to every client, lets each writer flush its queue until `deadline` has
    /// passed, then cuts what is left, stops accepting and joins every thread. Idempotent.
    pub fn shutdown(&self, deadline: Duration) {
        shutdown_shared(&self.shared, deadline);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(1));
    }
}

fn shutdown_shared(shared: &Shared, deadline: Duration) {
    let until = after(deadline);
    shared.hub.begin_shutdown(until);
    join_connections(shared, until);
    let accept = shared
        .accept
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some(handle) = accept {
        wake_accept(shared.local_addr);
        let _ = handle.join();
    }
    // Connections accepted while we were closing: their threads see the flag and end.
    join_connections(shared, Instant::now() + Duration::from_millis(100));
}

/// Waits until every connection thread is done or `until` has passed; past it, cuts the sockets
/// that are left, then joins.
fn join_connections(shared: &Shared, until: Instant) {
    while shared.threads.live.load(Ordering::Acquire) > 0 && Instant::now() < until {
        shared.hub.wait_change(until);
    }
    shared.hub.cut_all();
    let handles = std::mem::take(
        &mut *shared
            .threads
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner()),
    );
    for h in handles {
        let _ = h.join();
    }
}

/// Unblocks `accept()` by connecting to ourselves (the accept thread then sees the shutdown flag).
fn wake_accept(addr: SocketAddr) {
    let ip = match addr.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let _ = TcpStream::connect_timeout(&SocketAddr::new(ip, addr.port()), Duration::from_secs(1));
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    loop {
        let stream = match listener.accept() {
            Ok((stream, peer)) => {
                pngcast_protocol::io::tune_send_buffer(
                    &stream,
                    &peer,
                    shared.config.loopback_send_buffer,
                );
                stream
            }
            Err(e) => {
                if shared.hub.is_shut_down() {
                    return;
                }
                // EMFILE and friends: back off instead of spinning; ECONNABORTED: go on.
                if e.kind() != io::ErrorKind::ConnectionAborted
                    && e.kind() != io::ErrorKind::Interrupted
                {
                    thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
        };
        if shared.hub.is_shut_down() {
            return;
        }
        reap(shared);
        // Tracking evicts the oldest unfinished head past `max_handshakes` (its thread ends
        // at once), so heads never hold more than their share of the threads.
        let Some(token) = shared.hub.track(&stream) else {
            if shared.hub.is_shut_down() {
                return;
            }
            // Out of descriptors for the connection list's handle: drop this one.
            shared.hub.count_refused();
            continue;
        };
        // Bound the threads an attacker can make us hold: upgraded clients are limited by
        // `max_clients`, heads by `max_handshakes`; evicted heads' threads are on their way out.
        let cap = shared
            .config
            .max_clients
            .saturating_add(shared.config.max_handshakes.saturating_mul(2))
            .saturating_add(64);
        if shared.threads.live.load(Ordering::Acquire) >= cap {
            shared.hub.count_refused();
            shared.hub.untrack(token);
            drop(stream);
            continue;
        }
        shared.threads.live.fetch_add(1, Ordering::AcqRel);
        let conn_shared = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name("pngcast-conn".into())
            .stack_size(THREAD_STACK)
            .spawn(move || {
                conn::run(stream, token, &conn_shared.config, &conn_shared.hub);
                conn_shared.threads.live.fetch_sub(1, Ordering::AcqRel);
                conn_shared.hub.notify_change();
            });
        match spawned {
            Ok(h) => shared
                .threads
                .handles
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(h),
            Err(_) => {
                shared.threads.live.fetch_sub(1, Ordering::AcqRel);
                shared.hub.count_refused();
                shared.hub.untrack(token);
            }
        }
    }
}

/// Joins the connection threads that have finished.
fn reap(shared: &Shared) {
    let mut handles = shared
        .threads
        .handles
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let mut i = 0;
    while i < handles.len() {
        if handles[i].is_finished() {
            let _ = handles.swap_remove(i).join();
        } else {
            i += 1;
        }
    }
}

struct SinkHandle(Arc<Shared>);

impl FrameSink for SinkHandle {
    fn send_image(&self, target: &Target, frame: &WireFrame) -> Result<(), SinkError> {
        self.0.hub.send_image(target, frame)
    }
    fn send_text(&self, target: &Target, text: Arc<str>) -> Result<(), SinkError> {
        self.0.hub.send_text(target, text)
    }
    fn stats(&self) -> SinkStats {
        self.0.hub.stats()
    }
    fn shutdown(&self, deadline: Duration) {
        shutdown_shared(&self.0, deadline);
    }
}

impl FrameSink for Server {
    fn send_image(&self, target: &Target, frame: &WireFrame) -> Result<(), SinkError> {
        self.shared.hub.send_image(target, frame)
    }
    fn send_text(&self, target: &Target, text: Arc<str>) -> Result<(), SinkError> {
        self.shared.hub.send_text(target, text)
    }
    fn stats(&self) -> SinkStats {
        self.shared.hub.stats()
    }
    fn shutdown(&self, deadline: Duration) {
        Server::shutdown(self, deadline);
    }
}
