//! `pngcast-mio`: pngcast's WebSocket server on mio event loops, one thread each.
//!
//! Each loop serves its share of the connections: plain HTTP (`GET /` viewer, `GET /features`),
//! refusals, and ComfyUI-compatible WebSocket clients on `/ws` and `/api/ws` (protocol.md). The
//! first loop accepts and deals the connections out: spread, then pack (one per loop while some
//! loop has none, then onto the least-loaded of the first [`PACK_LOOPS`]). Any thread hands
//! frames to the server through [`pngcast_protocol::sink::FrameSink`]; a send pushes a command to
//! every loop and wakes them, never touching a socket. Each client has its own bounded queue with
//! the configured policy, so a client that stops reading never slows another. A frame's PNG is
//! shared by every client (`Arc`) and written straight from that buffer with vectored writes.
//!
//! How many loops: [`Server::bind`] runs one per available core (at most [`DEFAULT_LOOPS`]);
//! [`Server::bind_loops`] picks. One loop is the leanest for a few clients; with many clients
//! the kernel's socket copies, made by the writing thread, need more than one core (on 2 vCPUs,
//! 100 clients of 1 MP frames: the one loop thread was the bottleneck). A loop writes each of
//! its clients' frames in turn, so the first clients get a loop each; beyond one per loop, new
//! clients share the first [`PACK_LOOPS`] loops, since more busy loops than that cost more than
//! they give ([`Server::bind_loops_pack`] sets that width).
//!
//! ```no_run
//! use std::{sync::Arc, time::Duration};
//! use pngcast_protocol::http::ServerConfig;
//! use pngcast_protocol::sink::{FrameSink, Target};
//! use pngcast_protocol::wire::{ImageMeta, WireFrame};
//!
//! let server = pngcast_mio::Server::bind(ServerConfig::default()).unwrap();
//! println!("listening on ws://{}/ws", server.local_addr());
//! let meta = ImageMeta { event: "preview".into(), count: 1, width: 1, height: 1, ..Default::default() };
//! let png: Arc<Vec<u8>> = Arc::new(std::fs::read("frame.png").unwrap());
//! server.send_image(&Target::All, &WireFrame::new(&meta, png, true)).unwrap();
//! server.shutdown(Duration::from_secs(1));
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod conn;
mod event_loop;
mod shared;
#[cfg(test)]
mod tests;
mod ws;

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pngcast_protocol::http::ServerConfig;
use pngcast_protocol::sink::{FrameSink, SinkError, SinkStats, Target};
use pngcast_protocol::wire::WireFrame;

use crate::event_loop::{EventLoop, WAKER};
use crate::shared::{Command, Inbox, Shared};

/// Most event loops [`Server::bind`] starts by itself (it starts one per available core up to
/// this).
///
/// Measured on 16 cores (one 1.6 MB frame fanned out to N clients on loopback, one load-client
/// thread): with 8 loops, 10 clients ran at 0.75x of a tokio server, because two loops held two
/// clients each and took twice as long per frame; with 16 loops each of them had its own.
/// Beyond one connection per loop, new ones are packed onto fewer loops: see [`PACK_LOOPS`].
pub const DEFAULT_LOOPS: usize = 16;

/// How many of the first loops take new connections once every loop holds one (spread, then
/// pack): the dealer gives each connection a loop of its own while some loop has none, then the
/// least-loaded of the first `min(loops, PACK_LOOPS)` loops. Ties go to the lowest index; a
/// connection that closes frees its place.
///
/// Measured on 16 cores (as for [`DEFAULT_LOOPS`]): 50-100 clients of 512^2 frames spread over
/// 16 loops ran at half the rate of 8 loops, at twice the CPU per GB. Sixteen busy loops
/// compete for the cores with the clients and the sender, and each frame is read into twice as
/// many caches.
pub const PACK_LOOPS: usize = 8;

/// Most event loops a server runs ([`Server::bind_loops`] clamps to it).
pub const MAX_LOOPS: usize = 32;

/// Why the server could not start. `#[non_exhaustive]`: kinds may be added.
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
        source: std::io::Error,
    },
    /// The poller, the waker or the event-loop thread could not be created.
    #[error("cannot start the event loop: {0}")]
    Setup(#[source] std::io::Error),
}

/// A running server: a listening socket and its event-loop threads.
///
/// It is itself a [`FrameSink`]; [`Server::sink`] gives a cloneable handle for other threads.
/// Dropping the server shuts it down with a one-second deadline.
pub struct Server {
    handle: Arc<MioSink>,
    local_addr: SocketAddr,
    max_clients: usize,
}

/// The [`FrameSink`] handle of a [`Server`]: sending pushes a command and wakes the loop.
struct MioSink {
    shared: Arc<Shared>,
}

impl Server {
    /// Validates `config`, binds its address and starts one event loop per available core (at
    /// most [`DEFAULT_LOOPS`]); connections are spread, then packed onto the first
    /// [`PACK_LOOPS`].
    pub fn bind(config: ServerConfig) -> Result<Server, Error> {
        let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        Self::bind_loops(
            config,
            NonZeroUsize::new(cores.min(DEFAULT_LOOPS)).unwrap_or(NonZeroUsize::MIN),
        )
    }

    /// [`Server::bind`] with `loops` event-loop threads (at most [`MAX_LOOPS`]; more are
    /// clamped); connections are spread, then packed onto the first [`PACK_LOOPS`].
    pub fn bind_loops(config: ServerConfig, loops: NonZeroUsize) -> Result<Server, Error> {
        Self::bind_loops_pack(config, loops, PACK_LOOPS)
    }

    /// [`Server::bind_loops`] packing onto the first `pack` loops instead of [`PACK_LOOPS`]:
    /// each new connection goes to a loop without connections while there is one, otherwise to
    /// the least-loaded of the first `pack` loops (ties to the lowest index). `pack` of `loops`
    /// or more deals every connection to the least-loaded loop; 0 counts as 1.
    pub fn bind_loops_pack(
        config: ServerConfig,
        loops: NonZeroUsize,
        pack: usize,
    ) -> Result<Server, Error> {
        config.validate().map_err(Error::Config)?;
        let mut config = config;
        // One descriptor per client.
        if let Some(fit) = pngcast_protocol::io::clients_that_fit(1, config.max_handshakes) {
            config.max_clients = config.max_clients.min(fit.max(1));
        }
        let loops = NonZeroUsize::new(loops.get().min(MAX_LOOPS)).unwrap_or(NonZeroUsize::MIN);
        let addr = config.addr;
        let std_listener =
            std::net::TcpListener::bind(addr).map_err(|source| Error::Bind { addr, source })?;
        std_listener.set_nonblocking(true).map_err(Error::Setup)?;
        let local_addr = std_listener.local_addr().map_err(Error::Setup)?;
        let mut listener = Some(mio::net::TcpListener::from_std(std_listener));
        let mut polls = Vec::with_capacity(loops.get());
        let mut inboxes = Vec::with_capacity(loops.get());
        for _ in 0..loops.get() {
            let poll = mio::Poll::new().map_err(Error::Setup)?;
            let waker = mio::Waker::new(poll.registry(), WAKER).map_err(Error::Setup)?;
            inboxes.push(Inbox {
                commands: Mutex::new(Vec::new()),
                waker,
                clients: Default::default(),
                conns: Default::default(),
            });
            polls.push(poll);
        }
        let shared = Arc::new(Shared {
            inboxes,
            pack: pack.clamp(1, loops.get()),
            order: Mutex::new(()),
            stats: Default::default(),
            closed: Default::default(),
            threads: Mutex::new(Vec::new()),
            conns: Default::default(),
            ids: Default::default(),
            heads: Default::default(),
            next_gen: Default::default(),
        });
        let max_clients = config.max_clients;
        let mut loops_ = Vec::with_capacity(polls.len());
        for (index, poll) in polls.into_iter().enumerate() {
            let event_loop =
                EventLoop::new(poll, index, listener.take(), shared.clone(), config.clone())
                    .map_err(Error::Setup)?;
            loops_.push(event_loop);
        }
        for (index, event_loop) in loops_.into_iter().enumerate() {
            let spawned = std::thread::Builder::new()
                .name(if index == 0 {
                    "pngcast-mio".into()
                } else {
                    format!("pngcast-mio-{index}")
                })
                .spawn(move || event_loop.run());
            match spawned {
                Ok(thread) => shared
                    .threads
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(thread),
                Err(e) => {
                    // Stop the loops already running before reporting.
                    MioSink { shared }.shutdown(Duration::ZERO);
                    return Err(Error::Setup(e));
                }
            }
        }
        Ok(Server {
            handle: Arc::new(MioSink { shared }),
            local_addr,
            max_clients,
        })
    }

    /// Most WebSocket clients served at once: `max_clients`, or fewer when the process's
    /// descriptor limit holds fewer (one per client); one more gets 503 before its 101.
    pub fn max_clients(&self) -> usize {
        self.max_clients
    }

    /// The bound address (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle other threads can send through; it outlives nothing: after shutdown its sends
    /// fail with [`SinkError::ShutDown`].
    pub fn sink(&self) -> Arc<dyn FrameSink> {
        self.handle.clone()
    }
}

impl FrameSink for Server {
    fn send_image(&self, target: &Target, frame: &WireFrame) -> Result<(), SinkError> {
        self.handle.send_image(target, frame)
    }
    fn send_text(&self, target: &Target, text: Arc<str>) -> Result<(), SinkError> {
        self.handle.send_text(target, text)
    }
    fn stats(&self) -> SinkStats {
        self.handle.stats()
    }
    fn shutdown(&self, deadline: Duration) {
        self.handle.shutdown(deadline)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.handle.shutdown(Duration::from_secs(1));
    }
}

impl FrameSink for MioSink {
    fn send_image(&self, target: &Target, frame: &WireFrame) -> Result<(), SinkError> {
        if self
            .shared
            .push(Command::Image(target.clone(), frame.clone()))
        {
            Ok(())
        } else {
            Err(SinkError::ShutDown)
        }
    }

    fn send_text(&self, target: &Target, text: Arc<str>) -> Result<(), SinkError> {
        if self.shared.push(Command::Text(target.clone(), text)) {
            Ok(())
        } else {
            Err(SinkError::ShutDown)
        }
    }

    fn stats(&self) -> SinkStats {
        self.shared.stats.snapshot()
    }

    /// Sends Close 1001 to every client after what is queued for it, waits for the loops to
    /// finish (at most `deadline`, plus a loop's last iteration) and joins their threads.
    fn shutdown(&self, deadline: Duration) {
        {
            let _order = self.shared.lock_order();
            if !self.shared.closed.swap(true, Ordering::AcqRel) {
                let at = Instant::now() + deadline;
                for inbox in &self.shared.inboxes {
                    inbox.push(Command::Shutdown(at));
                }
            }
        }
        // Wake every loop even if shutdown was already pushed (a wake to a gone loop fails
        // harmlessly).
        for inbox in &self.shared.inboxes {
            let _ = inbox.waker.wake();
        }
        let threads = std::mem::take(
            &mut *self
                .shared
                .threads
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for thread in threads {
            // Loop threads do not panic by design; if one did, there is nothing to recover.
            let _ = thread.join();
        }
    }
}
