//! `pngcast-mio`: pngcast's WebSocket server on one mio event-loop thread.
//!
//! One thread serves every connection: plain HTTP (`GET /` viewer, `GET /features`), refusals,
//! and ComfyUI-compatible WebSocket clients on `/ws` and `/api/ws` (protocol.md). Any thread
//! hands frames to the server through [`pngcast_core::sink::FrameSink`]; a send pushes a command
//! and wakes the loop, never touching a socket. Each client has its own bounded queue with the
//! configured policy, so a client that stops reading never slows another. A frame's PNG is shared
//! by every client (`Arc`) and written straight from that buffer with vectored writes.
//!
//! ```no_run
//! use std::{sync::Arc, time::Duration};
//! use pngcast_core::http::ServerConfig;
//! use pngcast_core::sink::{FrameSink, Target};
//! use pngcast_core::wire::{ImageMeta, WireFrame};
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
mod nosigpipe;
mod shared;
mod ws;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pngcast_core::http::ServerConfig;
use pngcast_core::sink::{FrameSink, SinkError, SinkStats, Target};
use pngcast_core::wire::WireFrame;

use crate::event_loop::{EventLoop, WAKER};
use crate::shared::{Command, Shared, Stats};

/// Why the server could not start. `#[non_exhaustive]`: kinds may be added.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration was refused by `ServerConfig::validate` (for instance a bind beyond
    /// loopback without a token and without `insecure`).
    #[error("invalid server configuration: {0}")]
    Config(#[source] pngcast_core::Error),
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

/// A running server: a listening socket and its event-loop thread.
///
/// It is itself a [`FrameSink`]; [`Server::sink`] gives a cloneable handle for other threads.
/// Dropping the server shuts it down with a one-second deadline.
pub struct Server {
    handle: Arc<MioSink>,
    local_addr: SocketAddr,
}

/// The [`FrameSink`] handle of a [`Server`]: sending pushes a command and wakes the loop.
struct MioSink {
    shared: Arc<Shared>,
}

impl Server {
    /// Validates `config`, binds its address and starts the event-loop thread.
    pub fn bind(config: ServerConfig) -> Result<Server, Error> {
        config.validate().map_err(Error::Config)?;
        let addr = config.addr;
        let std_listener =
            std::net::TcpListener::bind(addr).map_err(|source| Error::Bind { addr, source })?;
        std_listener.set_nonblocking(true).map_err(Error::Setup)?;
        let local_addr = std_listener.local_addr().map_err(Error::Setup)?;
        let listener = mio::net::TcpListener::from_std(std_listener);
        let poll = mio::Poll::new().map_err(Error::Setup)?;
        let waker = mio::Waker::new(poll.registry(), WAKER).map_err(Error::Setup)?;
        let shared = Arc::new(Shared {
            commands: Mutex::new(Vec::new()),
            waker,
            stats: Stats::default(),
            closed: Default::default(),
            thread: Mutex::new(None),
        });
        let event_loop =
            EventLoop::new(poll, listener, shared.clone(), config).map_err(Error::Setup)?;
        let thread = std::thread::Builder::new()
            .name("pngcast-mio".into())
            .spawn(move || event_loop.run())
            .map_err(Error::Setup)?;
        *shared.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(thread);
        Ok(Server {
            handle: Arc::new(MioSink { shared }),
            local_addr,
        })
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

    /// Sends Close 1001 to every client after what is queued for it, waits for the loop to
    /// finish (at most `deadline`, plus the loop's last iteration) and joins its thread.
    fn shutdown(&self, deadline: Duration) {
        {
            let mut commands = self.shared.lock_commands();
            if !self.shared.closed.swap(true, Ordering::AcqRel) {
                commands.push(Command::Shutdown(Instant::now() + deadline));
            }
        }
        // If the loop is gone the wake fails harmlessly.
        let _ = self.shared.waker.wake();
        let thread = self
            .shared
            .thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(thread) = thread {
            // The loop thread does not panic by design; if it did, there is nothing to recover.
            let _ = thread.join();
        }
    }
}
