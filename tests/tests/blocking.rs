//! The conformance suite against `pngcast-blocking` (a thread per client).

#[path = "suite/mod.rs"]
mod suite;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pngcast_core::http::ServerConfig;
use pngcast_core::sink::FrameSink;

struct Blocking;

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

network_suite!(Blocking);
