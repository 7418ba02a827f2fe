//! [`Publisher`]: a [`FrameSink`] that publishes to Redis from its own thread.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::{Backoff, RedisUrl, RelayError};
use crate::core_api::{FrameSink, Policy, SinkError, SinkStats, Target, WireFrame};
use crate::envelope;

/// Settings of a [`Publisher`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PublisherConfig {
    /// Messages waiting for the publisher thread, at most. Past it the oldest waiting image is
    /// dropped (texts are kept unless the queue holds only texts, then the new one is refused).
    pub queue_len: usize,
    /// Largest PNG (or text) accepted, in bytes; larger ones are refused with
    /// [`SinkError::TooLarge`]. Keep it under Redis' `proto-max-bulk-len` (512 MB) and the
    /// edges' `max_payload`.
    pub max_frame_bytes: usize,
    /// How long the newest frame of an event stays under its key (`SET ... PX`).
    pub latest_ttl: Duration,
    /// Connect, read and write timeout of one Redis call.
    pub io_timeout: Duration,
    /// First and longest wait between reconnection attempts.
    pub backoff_min: Duration,
    /// See `backoff_min`.
    pub backoff_max: Duration,
    /// When false, [`Publisher::connect`] fails at once if Redis is unreachable; when true it
    /// starts anyway and keeps retrying in the background.
    pub start_disconnected: bool,
    /// The policy written into each envelope (advisory for the edges).
    pub policy: Policy,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        PublisherConfig {
            queue_len: 64,
            max_frame_bytes: 64 << 20,
            latest_ttl: Duration::from_secs(60),
            io_timeout: Duration::from_secs(2),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            start_disconnected: false,
            policy: Policy::LatestWins,
        }
    }
}

/// Counters of a [`Publisher`], all since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PublisherStats {
    /// Messages (images and texts) accepted into the queue.
    pub queued: u64,
    /// Messages Redis acknowledged (PUBLISH answered).
    pub published: u64,
    /// Messages dropped because the queue was full (the oldest image goes first).
    pub dropped: u64,
    /// Messages lost because a Redis call failed (the connection is then reopened).
    pub failed: u64,
    /// Frames refused for being larger than `max_frame_bytes`.
    pub too_large: u64,
    /// Connections opened to Redis (the first one included).
    pub connects: u64,
    /// Edges that received the last published message, summed (PUBLISH's answer).
    pub receivers: u64,
    /// True while the publisher thread holds a working connection.
    pub connected: bool,
}

enum Item {
    Image(Target, WireFrame),
    Text(Target, Arc<str>),
}

#[derive(Default)]
struct Counters {
    queued: AtomicU64,
    published: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    too_large: AtomicU64,
    connects: AtomicU64,
    receivers: AtomicU64,
    connected: AtomicBool,
}

struct State {
    queue: VecDeque<Item>,
    /// No more sends; the thread drains until `deadline` then stops.
    closing: bool,
    deadline: Option<Instant>,
    /// The thread has taken an item and not finished it.
    busy: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    counters: Counters,
    config: PublisherConfig,
    url: RedisUrl,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Publishes frames to Redis. A [`FrameSink`]: `send_*` queue and return at once.
pub struct Publisher {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("url", &self.shared.url)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Parses `url` and starts publishing. Unless `config.start_disconnected`, fails with
    /// [`RelayError::Connect`] when Redis cannot be reached (or refuses the credentials).
    pub fn connect(url: &str, config: PublisherConfig) -> Result<Publisher, RelayError> {
        Publisher::with_url(RedisUrl::parse(url)?, config)
    }

    /// As [`Publisher::connect`], with an already parsed URL (e.g. with a password file).
    pub fn with_url(url: RedisUrl, config: PublisherConfig) -> Result<Publisher, RelayError> {
        let first = match url.connect(config.io_timeout) {
            Ok(mut con) => {
                redis::cmd("PING")
                    .query::<()>(&mut con)
                    .map_err(|e| url.err(e))?;
                Some(con)
            }
            Err(e) if !config.start_disconnected => return Err(e),
            Err(_) => None,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::with_capacity(config.queue_len),
                closing: false,
                deadline: None,
                busy: false,
            }),
            wake: Condvar::new(),
            counters: Counters::default(),
            config,
            url,
        });
        if first.is_some() {
            shared.counters.connects.fetch_add(1, Ordering::Relaxed);
            shared.counters.connected.store(true, Ordering::Relaxed);
        }
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("pngcast-redis-pub".into())
            .spawn(move || run(&s, first))
            .map_err(RelayError::Thread)?;
        Ok(Publisher {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// A snapshot of the counters.
    pub fn publisher_stats(&self) -> PublisherStats {
        let c = &self.shared.counters;
        PublisherStats {
            queued: c.queued.load(Ordering::Relaxed),
            published: c.published.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            too_large: c.too_large.load(Ordering::Relaxed),
            connects: c.connects.load(Ordering::Relaxed),
            receivers: c.receivers.load(Ordering::Relaxed),
            connected: c.connected.load(Ordering::Relaxed),
        }
    }

    /// The broker address (without password) and namespace.
    pub fn url(&self) -> &RedisUrl {
        &self.shared.url
    }

    /// Blocks until everything queued so far was handled (published, failed or dropped) or
    /// `timeout` passed; true when the queue is empty. For tests and orderly hand-offs.
    pub fn flush(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        let mut st = self.shared.lock();
        loop {
            if st.queue.is_empty() && !st.busy {
                return true;
            }
            let now = Instant::now();
            if now >= end {
                return false;
            }
            st = self
                .shared
                .wake
                .wait_timeout(st, (end - now).min(Duration::from_millis(50)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn push(&self, item: Item, len: usize) -> Result<(), SinkError> {
        let c = &self.shared.counters;
        if len > self.shared.config.max_frame_bytes {
            c.too_large.fetch_add(1, Ordering::Relaxed);
            return Err(SinkError::TooLarge(len));
        }
        let mut st = self.shared.lock();
        if st.closing {
            return Err(SinkError::ShutDown);
        }
        if st.queue.len() >= self.shared.config.queue_len.max(1) {
            match st.queue.iter().position(|i| matches!(i, Item::Image(..))) {
                Some(at) => {
                    st.queue.remove(at);
                    c.dropped.fetch_add(1, Ordering::Relaxed);
                }
                None if matches!(item, Item::Image(..)) => {
                    c.dropped.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                None => {
                    c.dropped.fetch_add(1, Ordering::Relaxed);
                    return Err(SinkError::TooLarge(len));
                }
            }
        }
        st.queue.push_back(item);
        c.queued.fetch_add(1, Ordering::Relaxed);
        drop(st);
        self.shared.wake.notify_all();
        Ok(())
    }
}

impl FrameSink for Publisher {
    fn send_image(&self, target: &Target, frame: &WireFrame) -> Result<(), SinkError> {
        self.push(
            Item::Image(target.clone(), frame.clone()),
            frame.png().len(),
        )
    }

    fn send_text(&self, target: &Target, text: Arc<str>) -> Result<(), SinkError> {
        let len = text.len();
        self.push(Item::Text(target.clone(), text), len)
    }

    /// `frames_queued`: messages queued; `frames_sent`: published; `frames_dropped`: dropped
    /// or failed. `clients` is 0: a publisher has no clients of its own.
    fn stats(&self) -> SinkStats {
        let p = self.publisher_stats();
        let mut s = SinkStats::default();
        s.frames_queued = p.queued;
        s.frames_sent = p.published;
        s.frames_dropped = p.dropped + p.failed;
        s
    }

    /// Publishes what is queued until `deadline`, then stops the thread and joins it.
    fn shutdown(&self, deadline: Duration) {
        {
            let mut st = self.shared.lock();
            if !st.closing {
                st.closing = true;
                st.deadline = Some(Instant::now() + deadline);
            }
        }
        self.shared.wake.notify_all();
        let handle = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.shutdown(Duration::from_millis(500));
    }
}

/// Waits for the next item; `None` once closing and drained or past the deadline.
fn next_item(shared: &Shared) -> Option<Item> {
    let mut st = shared.lock();
    st.busy = false;
    shared.wake.notify_all();
    loop {
        if st.closing && st.deadline.is_none_or(|d| Instant::now() >= d) {
            return None;
        }
        if let Some(item) = st.queue.pop_front() {
            st.busy = true;
            return Some(item);
        }
        if st.closing {
            return None;
        }
        st = shared.wake.wait(st).unwrap_or_else(|e| e.into_inner());
    }
}

/// Sleeps `d` unless the publisher is closing.
fn pause(shared: &Shared, d: Duration) -> bool {
    let st = shared.lock();
    if st.closing {
        return false;
    }
    let _ = shared.wake.wait_timeout(st, d);
    !shared.lock().closing
}

fn run(shared: &Shared, mut con: Option<redis::Connection>) {
    let cfg = &shared.config;
    let c = &shared.counters;
    let channel = shared.url.channel();
    let events_key = shared.url.events_key();
    let ttl_ms = u64::try_from(cfg.latest_ttl.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let mut backoff = Backoff::new(cfg.backoff_min, cfg.backoff_max);
    let mut buf = Vec::new();
    let mut latest_key = String::new();
    while let Some(item) = next_item(shared) {
        let encoded = match &item {
            Item::Image(t, f) => envelope::encode_image(&mut buf, t, cfg.policy, f),
            Item::Text(t, s) => envelope::encode_text(&mut buf, t, cfg.policy, s),
        };
        if encoded.is_err() {
            c.failed.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        // Connect (with backoff) until it works or the publisher closes. Items keep queueing
        // meanwhile; the bounded queue drops the oldest images.
        while con.is_none() {
            match shared.url.connect(cfg.io_timeout) {
                Ok(k) => {
                    c.connects.fetch_add(1, Ordering::Relaxed);
                    c.connected.store(true, Ordering::Relaxed);
                    backoff.reset();
                    con = Some(k);
                }
                Err(_) => {
                    if !pause(shared, backoff.next_delay()) {
                        break;
                    }
                }
            }
        }
        let Some(k) = con.as_mut() else {
            c.failed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let mut pipe = redis::pipe();
        pipe.cmd("PUBLISH").arg(&channel).arg(&buf[..]);
        if let Item::Image(Target::All, f) = &item {
            latest_key.clear();
            latest_key.push_str(&shared.url.latest_key(&f.meta().event));
            pipe.cmd("SET")
                .arg(&latest_key)
                .arg(&buf[..])
                .arg("PX")
                .arg(ttl_ms)
                .ignore();
            pipe.cmd("SADD")
                .arg(&events_key)
                .arg(&f.meta().event)
                .ignore();
            pipe.cmd("PEXPIRE").arg(&events_key).arg(ttl_ms).ignore();
        }
        match pipe.query::<(u64,)>(k) {
            Ok((receivers,)) => {
                c.published.fetch_add(1, Ordering::Relaxed);
                c.receivers.fetch_add(receivers, Ordering::Relaxed);
            }
            Err(_) => {
                c.failed.fetch_add(1, Ordering::Relaxed);
                c.connected.store(false, Ordering::Relaxed);
                con = None;
                pause(shared, backoff.next_delay());
            }
        }
    }
    c.connected.store(false, Ordering::Relaxed);
}
