//! The conformance suite against `pngcast-mio`.

#[path = "suite/mod.rs"]
mod suite;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pngcast_core::http::ServerConfig;
use pngcast_core::sink::FrameSink;

struct Mio;

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

network_suite!(Mio);
