//! Both network transports as [`suite::Backend`]s: the one place that adapts them, shared by the
//! conformance binaries (`mio.rs`, `blocking.rs`) and the hostile-input and fault binaries
//! (`hostile.rs`, `faults.rs`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pngcast_protocol::http::ServerConfig;
use pngcast_protocol::sink::FrameSink;

use crate::suite;

/// The mio event-loop transport.
pub struct Mio;

impl suite::Server for pngcast_mio::Server {
    fn addr(&self) -> SocketAddr {
        self.local_addr()
    }
    fn sink(&self) -> Arc<dyn FrameSink> {
        pngcast_mio::Server::sink(self)
    }
    fn shutdown(&self, deadline: Duration) {
        FrameSink::shutdown(self, deadline)
    }
}

impl suite::Backend for Mio {
    const NAME: &'static str = "mio";
    const MANY_CLIENTS: usize = 200;
    fn start(config: ServerConfig) -> Box<dyn suite::Server> {
        Box::new(pngcast_mio::Server::bind(config).expect("bind mio server"))
    }
}

/// The thread-per-client transport.
pub struct Blocking;

impl suite::Server for pngcast_blocking::Server {
    fn addr(&self) -> SocketAddr {
        self.local_addr()
    }
    fn sink(&self) -> Arc<dyn FrameSink> {
        pngcast_blocking::Server::sink(self)
    }
    fn shutdown(&self, deadline: Duration) {
        pngcast_blocking::Server::shutdown(self, deadline)
    }
}

impl suite::Backend for Blocking {
    const NAME: &'static str = "blocking";
    // A thread per client: the fan-out case runs with fewer clients than the mio one.
    const MANY_CLIENTS: usize = 100;
    fn start(config: ServerConfig) -> Box<dyn suite::Server> {
        Box::new(pngcast_blocking::Server::bind(config).expect("bind blocking server"))
    }
}
