//! [`Edge`]: subscribes to a namespace's channel and feeds a local [`FrameSink`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::{Backoff, RedisUrl, RelayError};
use crate::core_api::{FrameSink, SinkError};
use crate::envelope::{self, Payload};

/// Settings of an [`Edge`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EdgeConfig {
    /// Largest PNG or text accepted from the channel; larger envelopes count as garbage.
    pub max_payload: usize,
    /// Connect and command timeout.
    pub io_timeout: Duration,
    /// How often the subscriber wakes to check for [`Edge::stop`] while the channel is quiet.
    pub poll_interval: Duration,
    /// First and longest wait between reconnection attempts.
    pub backoff_min: Duration,
    /// See `backoff_min`.
    pub backoff_max: Duration,
    /// When false, [`Edge::start`] fails at once if Redis is unreachable; when true it starts
    /// anyway and keeps retrying.
    pub start_disconnected: bool,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            max_payload: 64 << 20,
            io_timeout: Duration::from_secs(2),
            poll_interval: Duration::from_millis(200),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            start_disconnected: false,
        }
    }
}

/// Counters of an [`Edge`], all since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct EdgeStats {
    /// Envelopes read from the channel.
    pub received: u64,
    /// Images and texts the local sink accepted (live and resync together).
    pub delivered: u64,
    /// Newest frames replayed from the keys after a (re)subscribe.
    pub resynced: u64,
    /// Messages that were not valid envelopes (ignored).
    pub garbage: u64,
    /// Messages for a clientId the local sink reported unknown ([`SinkError::NoSuchClient`]).
    /// A sink that drops such messages on its own threads (the mio server) reports nothing.
    pub unknown_client: u64,
    /// Other refusals by the local sink (shut down, too large).
    pub sink_errors: u64,
    /// Subscriptions made (the first one included): 2 or more means it reconnected.
    pub subscribes: u64,
    /// Connections that ended with an error (Redis gone, output buffer limit, bad reply).
    pub disconnects: u64,
    /// True while subscribed.
    pub connected: bool,
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    delivered: AtomicU64,
    resynced: AtomicU64,
    garbage: AtomicU64,
    unknown_client: AtomicU64,
    sink_errors: AtomicU64,
    subscribes: AtomicU64,
    disconnects: AtomicU64,
    connected: AtomicBool,
}

struct Shared {
    url: RedisUrl,
    sink: Arc<dyn FrameSink>,
    config: EdgeConfig,
    stop: AtomicBool,
    counters: Counters,
}

/// A subscriber thread that forwards every frame of a namespace to a local sink.
pub struct Edge {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("url", &self.shared.url)
            .finish_non_exhaustive()
    }
}

impl Edge {
    /// Parses `url` and starts forwarding to `sink`. Unless `config.start_disconnected`, fails
    /// with [`RelayError::Connect`] when Redis cannot be reached.
    pub fn start(
        url: &str,
        sink: Arc<dyn FrameSink>,
        config: EdgeConfig,
    ) -> Result<Edge, RelayError> {
        Edge::with_url(RedisUrl::parse(url)?, sink, config)
    }

    /// As [`Edge::start`], with an already parsed URL.
    pub fn with_url(
        url: RedisUrl,
        sink: Arc<dyn FrameSink>,
        config: EdgeConfig,
    ) -> Result<Edge, RelayError> {
        let first = match url.connect(config.io_timeout) {
            Ok(con) => Some(con),
            Err(e) if !config.start_disconnected => return Err(e),
            Err(_) => None,
        };
        let shared = Arc::new(Shared {
            url,
            sink,
            config,
            stop: AtomicBool::new(false),
            counters: Counters::default(),
        });
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("pngcast-redis-edge".into())
            .spawn(move || run(&s, first))
            .map_err(RelayError::Thread)?;
        Ok(Edge {
            shared,
            thread: Some(thread),
        })
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> EdgeStats {
        let c = &self.shared.counters;
        EdgeStats {
            received: c.received.load(Ordering::Relaxed),
            delivered: c.delivered.load(Ordering::Relaxed),
            resynced: c.resynced.load(Ordering::Relaxed),
            garbage: c.garbage.load(Ordering::Relaxed),
            unknown_client: c.unknown_client.load(Ordering::Relaxed),
            sink_errors: c.sink_errors.load(Ordering::Relaxed),
            subscribes: c.subscribes.load(Ordering::Relaxed),
            disconnects: c.disconnects.load(Ordering::Relaxed),
            connected: c.connected.load(Ordering::Relaxed),
        }
    }

    /// The broker address (without password) and namespace.
    pub fn url(&self) -> &RedisUrl {
        &self.shared.url
    }

    /// Stops the subscriber and joins its thread (within about `poll_interval` or
    /// `io_timeout`). The local sink is left as it is: what it queued is still delivered.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

fn deliver(shared: &Shared, data: &[u8]) -> bool {
    let c = &shared.counters;
    let env = match envelope::decode(data, shared.config.max_payload) {
        Ok(e) => e,
        Err(_) => {
            c.garbage.fetch_add(1, Ordering::Relaxed);
            return false;
        }
    };
    let r = match &env.payload {
        Payload::Image(f) => shared.sink.send_image(&env.target, f),
        Payload::Text(t) => shared.sink.send_text(&env.target, Arc::clone(t)),
    };
    match r {
        Ok(()) => {
            c.delivered.fetch_add(1, Ordering::Relaxed);
            true
        }
        Err(SinkError::NoSuchClient(_)) => {
            c.unknown_client.fetch_add(1, Ordering::Relaxed);
            false
        }
        Err(_) => {
            c.sink_errors.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

/// Replays the newest frame of every event listed in the namespace's set.
fn resync(shared: &Shared) -> redis::RedisResult<()> {
    let Ok(mut con) = shared.url.connect(shared.config.io_timeout) else {
        return Err(redis::RedisError::from((
            redis::ErrorKind::Io,
            "resync connection failed",
        )));
    };
    let events: Vec<Vec<u8>> = redis::cmd("SMEMBERS")
        .arg(shared.url.events_key())
        .query(&mut con)?;
    for event in events {
        let Ok(event) = String::from_utf8(event) else {
            shared.counters.garbage.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let data: Option<Vec<u8>> = redis::cmd("GET")
            .arg(shared.url.latest_key(&event))
            .query(&mut con)?;
        if let Some(data) = data {
            if deliver(shared, &data) {
                shared.counters.resynced.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Ok(())
}

fn pause(shared: &Shared, d: Duration) {
    let end = std::time::Instant::now() + d;
    while !shared.stop.load(Ordering::Relaxed) {
        let now = std::time::Instant::now();
        if now >= end {
            return;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(20)));
    }
}

fn run(shared: &Shared, mut first: Option<redis::Connection>) {
    let c = &shared.counters;
    let cfg = &shared.config;
    let mut backoff = Backoff::new(cfg.backoff_min, cfg.backoff_max);
    let channel = shared.url.channel();
    while !shared.stop.load(Ordering::Relaxed) {
        let mut con = match first.take() {
            Some(k) => k,
            None => match shared.url.connect(cfg.io_timeout) {
                Ok(k) => k,
                Err(_) => {
                    pause(shared, backoff.next_delay());
                    continue;
                }
            },
        };
        let mut ps = con.as_pubsub();
        if ps.subscribe(&channel).is_err() || ps.set_read_timeout(Some(cfg.poll_interval)).is_err()
        {
            c.disconnects.fetch_add(1, Ordering::Relaxed);
            pause(shared, backoff.next_delay());
            continue;
        }
        c.subscribes.fetch_add(1, Ordering::Relaxed);
        c.connected.store(true, Ordering::Relaxed);
        // Subscribed first, then replayed: a frame published in between arrives twice at
        // worst, never not at all.
        if resync(shared).is_err() {
            c.disconnects.fetch_add(1, Ordering::Relaxed);
            c.connected.store(false, Ordering::Relaxed);
            pause(shared, backoff.next_delay());
            continue;
        }
        backoff.reset();
        while !shared.stop.load(Ordering::Relaxed) {
            match ps.get_message() {
                Ok(msg) => {
                    c.received.fetch_add(1, Ordering::Relaxed);
                    deliver(shared, msg.get_payload_bytes());
                }
                Err(e) if e.is_timeout() => continue,
                Err(_) => {
                    c.disconnects.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
        c.connected.store(false, Ordering::Relaxed);
        drop(ps);
        if !shared.stop.load(Ordering::Relaxed) {
            pause(shared, backoff.next_delay());
        }
    }
}
