//! The relay against a real `redis-server` (started by each test on a free port in a temp dir,
//! without persistence, and stopped at the end). Skipped with a message when `redis-server` is
//! not installed, except under CI (`CI=true`), where that is a failure.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use pngcast_protocol::queue::Outgoing;
use pngcast_protocol::sink::{FrameSink, MemorySink, SinkError, SinkStats, Target};
use pngcast_protocol::wire::{ImageMeta, WireFrame};
use pngcast_relay_redis::{Edge, EdgeConfig, Publisher, PublisherConfig, RelayError};

const DEADLINE: Duration = Duration::from_secs(30);

struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    extra: Vec<String>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RedisServer {
    fn start(extra: &[&str]) -> Option<RedisServer> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            assert!(
                std::env::var("CI").is_err(),
                "redis-server is not installed"
            );
            eprintln!("redis-server not installed: skipping");
            return None;
        }
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("pngcast-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = RedisServer {
            port,
            dir,
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        s.spawn();
        Some(s)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let end = Instant::now() + DEADLINE;
        while Instant::now() < end {
            if let Ok(mut c) = redis::Client::open(self.url()).and_then(|c| c.get_connection()) {
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not come up on {}", self.port);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn ns_url(&self, ns: &str) -> String {
        format!("redis://127.0.0.1:{}/?namespace={ns}", self.port)
    }

    fn con(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out waiting for {what}");
}

fn frame(event: &str, index: u32, png_len: usize) -> WireFrame {
    let meta = ImageMeta {
        event: event.into(),
        index,
        count: 1,
        width: 4,
        height: 4,
        prompt_id: Some(format!("p{index}")),
        ..ImageMeta::default()
    };
    let mut png = vec![0u8; png_len.max(4)];
    png[..4].copy_from_slice(&index.to_be_bytes());
    WireFrame::new(&meta, Arc::new(png), true)
}

fn images(mem: &MemorySink) -> Vec<(Target, WireFrame)> {
    mem.log()
        .into_iter()
        .filter_map(|(t, r)| r.as_image().map(|f| (t, f.clone())))
        .collect()
}

fn quick() -> (PublisherConfig, EdgeConfig) {
    let mut p = PublisherConfig::default();
    p.backoff_max = Duration::from_millis(200);
    p.io_timeout = Duration::from_secs(5);
    let mut e = EdgeConfig::default();
    e.backoff_max = Duration::from_millis(200);
    e.poll_interval = Duration::from_millis(50);
    e.io_timeout = Duration::from_secs(5);
    (p, e)
}

#[test]
fn frames_reach_every_edge_exactly_and_targets_cross_machines() {
    let Some(redis) = RedisServer::start(&[]) else {
        return;
    };
    let (pc, ec) = quick();
    let a = Arc::new(MemorySink::new());
    let b = Arc::new(MemorySink::new());
    a.add_client("on-a", true);
    b.add_client("on-b", true);
    let ea = Edge::start(&redis.ns_url("t1"), a.clone(), ec.clone()).unwrap();
    let eb = Edge::start(&redis.ns_url("t1"), b.clone(), ec).unwrap();
    wait_for("both subscribed", || {
        ea.stats().connected && eb.stats().connected
    });
    let publisher = Publisher::connect(&redis.ns_url("t1"), pc).unwrap();
    let sent: Vec<WireFrame> = (0..20).map(|i| frame("preview", i, 1000)).collect();
    for f in &sent {
        publisher.send_image(&Target::All, f).unwrap();
    }
    publisher
        .send_image(&Target::client("on-b"), &frame("private", 99, 100))
        .unwrap();
    publisher
        .send_json(&Target::All, "progress", &serde_json::json!({"value": 3}))
        .unwrap();
    assert!(publisher.flush(DEADLINE));
    for (name, mem, edge) in [("a", &a, &ea), ("b", &b, &eb)] {
        wait_for(name, || edge.stats().received == 22);
        let got = images(mem);
        let all: Vec<_> = got.iter().filter(|(t, _)| *t == Target::All).collect();
        assert_eq!(all.len(), 20);
        for ((_, g), f) in all.iter().zip(&sent) {
            assert_eq!(g.binary_message(true), f.binary_message(true));
            assert_eq!(g.binary_message(false), f.binary_message(false));
            assert_eq!(g.announcement(), f.announcement());
        }
        let text = mem
            .log()
            .into_iter()
            .find_map(|(_, r)| r.as_text().map(str::to_owned))
            .unwrap();
        assert_eq!(text, r#"{"type": "progress", "data": {"value": 3}}"#);
    }
    // The private frame reaches on-b through edge b; edge a's sink has no such client.
    assert_eq!(
        b.client_messages("on-b")
            .unwrap()
            .iter()
            .filter(|m| matches!(m, Outgoing::Image { .. }))
            .count(),
        21
    );
    assert_eq!(
        a.client_messages("on-a")
            .unwrap()
            .iter()
            .filter(|m| matches!(m, Outgoing::Image { .. }))
            .count(),
        20
    );
    let s = publisher.publisher_stats();
    assert_eq!((s.published, s.dropped, s.failed), (22, 0, 0));
    // The newest frame of `preview` is kept; the private one is not.
    let mut con = redis.con();
    let keys: Vec<String> = redis::cmd("SMEMBERS")
        .arg("pngcast:t1:events")
        .query(&mut con)
        .unwrap();
    assert_eq!(keys, ["preview"]);
    let ttl: i64 = redis::cmd("PTTL")
        .arg("pngcast:t1:latest:preview")
        .query(&mut con)
        .unwrap();
    assert!(ttl > 0);
    drop(publisher);
    ea.stop();
    eb.stop();
}

#[test]
fn a_late_edge_starts_with_the_newest_frame() {
    let Some(redis) = RedisServer::start(&[]) else {
        return;
    };
    let (pc, ec) = quick();
    let publisher = Publisher::connect(&redis.ns_url("late"), pc).unwrap();
    for i in 0..5 {
        publisher
            .send_image(&Target::All, &frame("preview", i, 64))
            .unwrap();
        publisher
            .send_image(&Target::All, &frame("final", 100 + i, 64))
            .unwrap();
    }
    assert!(publisher.flush(DEADLINE));
    let mem = Arc::new(MemorySink::new());
    let edge = Edge::start(&redis.ns_url("late"), mem.clone(), ec).unwrap();
    wait_for("resync", || edge.stats().resynced == 2);
    let mut got: Vec<(String, u32)> = images(&mem)
        .iter()
        .map(|(_, f)| (f.meta().event.clone(), f.meta().index))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [("final".to_string(), 104), ("preview".to_string(), 4)]
    );
}

#[test]
fn redis_down_at_start_is_a_clear_error_or_a_retry() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}/");
    let (mut pc, mut ec) = quick();
    let err = Publisher::connect(&url, pc.clone()).unwrap_err();
    assert!(matches!(err, RelayError::Connect { .. }), "{err}");
    assert!(err.to_string().contains(&port.to_string()), "{err}");
    let mem: Arc<dyn FrameSink> = Arc::new(MemorySink::new());
    assert!(matches!(
        Edge::start(&url, mem.clone(), ec.clone()),
        Err(RelayError::Connect { .. })
    ));
    // Asked to retry: both start, and connect once Redis is there.
    pc.start_disconnected = true;
    ec.start_disconnected = true;
    let publisher = Publisher::connect(&url, pc).unwrap();
    let edge = Edge::start(&url, mem, ec).unwrap();
    publisher
        .send_image(&Target::All, &frame("preview", 1, 10))
        .unwrap();
    assert!(!publisher.publisher_stats().connected);
    let Some(mut redis) = RedisServer::start(&[]) else {
        return;
    };
    // Run a server on exactly that port.
    redis.stop();
    redis.port = port;
    redis.spawn();
    wait_for("edge subscribed", || edge.stats().connected);
    wait_for("publisher connected", || {
        publisher.publisher_stats().published >= 1
    });
}

#[test]
fn a_redis_restart_mid_stream_is_survived() {
    let Some(mut redis) = RedisServer::start(&[]) else {
        return;
    };
    let (pc, ec) = quick();
    let mem = Arc::new(MemorySink::new());
    let edge = Edge::start(&redis.ns_url("r"), mem.clone(), ec).unwrap();
    let publisher = Publisher::connect(&redis.ns_url("r"), pc).unwrap();
    wait_for("subscribed", || edge.stats().connected);
    publisher
        .send_image(&Target::All, &frame("preview", 1, 100))
        .unwrap();
    wait_for("first frame", || edge.stats().received == 1);
    redis.restart();
    wait_for("edge resubscribed", || {
        edge.stats().subscribes >= 2 && edge.stats().connected
    });
    // Publish until one gets through: the first ones after the restart may fail on the dead
    // connection (counted), none may crash.
    let mut i = 2;
    wait_for("frames resume", || {
        publisher
            .send_image(&Target::All, &frame("preview", i, 100))
            .unwrap();
        i += 1;
        std::thread::sleep(Duration::from_millis(20));
        edge.stats().received >= 2
    });
    let s = publisher.publisher_stats();
    assert!(s.connects >= 2, "{s:?}");
    assert!(edge.stats().disconnects >= 1);
    let last = images(&mem).last().unwrap().1.meta().index;
    assert!(last >= 2);
    // Threads end: stop returns (joins) and the publisher's shutdown joins its thread.
    edge.stop();
    publisher.shutdown(Duration::from_secs(1));
    assert_eq!(
        publisher.send_image(&Target::All, &frame("x", 0, 1)),
        Err(SinkError::ShutDown)
    );
}

/// A sink that blocks in `send_image` until opened: an edge too slow to read its socket.
struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
    inner: MemorySink,
}

impl FrameSink for Gate {
    fn send_image(&self, target: &Target, frame: &WireFrame) -> Result<(), SinkError> {
        let mut g = self.open.lock().unwrap();
        while !*g {
            g = self.cv.wait(g).unwrap();
        }
        drop(g);
        self.inner.send_image(target, frame)
    }
    fn send_text(&self, target: &Target, text: Arc<str>) -> Result<(), SinkError> {
        self.inner.send_text(target, text)
    }
    fn stats(&self) -> SinkStats {
        self.inner.stats()
    }
    fn shutdown(&self, deadline: Duration) {
        self.inner.shutdown(deadline)
    }
}

#[test]
fn an_edge_over_the_output_buffer_limit_is_dropped_and_resyncs() {
    let Some(redis) = RedisServer::start(&["--client-output-buffer-limit", "pubsub 256kb 128kb 1"])
    else {
        return;
    };
    let (pc, ec) = quick();
    let gate = Arc::new(Gate {
        open: Mutex::new(false),
        cv: Condvar::new(),
        inner: MemorySink::new(),
    });
    let edge = Edge::start(&redis.ns_url("slow"), gate.clone(), ec).unwrap();
    wait_for("subscribed", || edge.stats().connected);
    let publisher = Publisher::connect(&redis.ns_url("slow"), pc).unwrap();
    let mut con = redis.con();
    let mut i = 0;
    // Publish 64 KiB frames while the edge is stuck until Redis cuts it off.
    wait_for("Redis drops the slow edge", || {
        for _ in 0..16 {
            publisher
                .send_image(&Target::All, &frame("preview", i, 64 << 10))
                .unwrap();
            i += 1;
        }
        publisher.flush(DEADLINE);
        // Redis 7.0 has no counter for these disconnections: the channel's subscriber count
        // falling to 0 while the edge is stuck says Redis closed it.
        let (_, subscribers): (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg("pngcast:slow:frames")
            .query(&mut con)
            .unwrap();
        subscribers == 0
    });
    let last = i - 1;
    *gate.open.lock().unwrap() = true;
    gate.cv.notify_all();
    wait_for("resubscribed and resynced to the newest frame", || {
        images(&gate.inner)
            .last()
            .is_some_and(|(_, f)| f.meta().index == last)
            && edge.stats().subscribes >= 2
    });
    assert!(edge.stats().disconnects >= 1);
    assert!(edge.stats().resynced >= 1);
}

#[test]
fn an_oversized_frame_is_refused_and_the_others_pass() {
    let Some(redis) = RedisServer::start(&[]) else {
        return;
    };
    let (mut pc, ec) = quick();
    pc.max_frame_bytes = 1000;
    let mem = Arc::new(MemorySink::new());
    let edge = Edge::start(&redis.ns_url("big"), mem.clone(), ec).unwrap();
    wait_for("subscribed", || edge.stats().connected);
    let publisher = Publisher::connect(&redis.ns_url("big"), pc).unwrap();
    publisher
        .send_image(&Target::All, &frame("preview", 1, 1000))
        .unwrap();
    assert_eq!(
        publisher.send_image(&Target::All, &frame("preview", 2, 1001)),
        Err(SinkError::TooLarge(1001))
    );
    publisher
        .send_image(&Target::All, &frame("preview", 3, 10))
        .unwrap();
    wait_for("two frames", || edge.stats().received == 2);
    let idx: Vec<u32> = images(&mem).iter().map(|(_, f)| f.meta().index).collect();
    assert_eq!(idx, [1, 3]);
    assert_eq!(publisher.publisher_stats().too_large, 1);
}

#[test]
fn garbage_on_the_channel_is_counted_and_ignored() {
    let Some(redis) = RedisServer::start(&[]) else {
        return;
    };
    let (pc, mut ec) = quick();
    ec.max_payload = 4096;
    let mem = Arc::new(MemorySink::new());
    let edge = Edge::start(&redis.ns_url("junk"), mem.clone(), ec).unwrap();
    wait_for("subscribed", || edge.stats().connected);
    let mut con = redis.con();
    let mut rng = fastrand::Rng::with_seed(11);
    // A valid envelope, taken from what a publisher wrote to the newest-frame key.
    let publisher = Publisher::connect(&redis.ns_url("junk"), pc).unwrap();
    publisher
        .send_image(&Target::All, &frame("preview", 1, 300))
        .unwrap();
    assert!(publisher.flush(DEADLINE));
    let valid: Vec<u8> = redis::cmd("GET")
        .arg("pngcast:junk:latest:preview")
        .query(&mut con)
        .unwrap();
    let mut sent_bad = 0u64;
    for n in 0..300 {
        let msg: Vec<u8> = match n % 3 {
            0 => valid[..rng.usize(..valid.len())].to_vec(),
            1 => (0..rng.usize(..200)).map(|_| rng.u8(..)).collect(),
            _ => {
                let mut v = valid.clone();
                v[rng.usize(..12)] ^= 0xFF; // the header: magic, version, kind, flags, policy, target
                v
            }
        };
        let _: i64 = redis::cmd("PUBLISH")
            .arg("pngcast:junk:frames")
            .arg(msg)
            .query(&mut con)
            .unwrap();
        sent_bad += 1;
    }
    // Over the edge's max_payload: garbage too.
    publisher
        .send_image(&Target::All, &frame("preview", 2, 5000))
        .unwrap();
    publisher
        .send_image(&Target::All, &frame("preview", 3, 300))
        .unwrap();
    wait_for("all read", || edge.stats().received == sent_bad + 3);
    let s = edge.stats();
    assert_eq!(s.garbage, sent_bad + 1, "{s:?}");
    let idx: Vec<u32> = images(&mem).iter().map(|(_, f)| f.meta().index).collect();
    assert_eq!(idx, [1, 3]);
    assert!(s.connected);
}

#[test]
fn edge_feeds_a_real_server_and_its_websocket_client() {
    let Some(redis) = RedisServer::start(&[]) else {
        return;
    };
    let (pc, ec) = quick();
    let mut cfg = pngcast_protocol::http::ServerConfig::default();
    cfg.addr = "127.0.0.1:0".parse().unwrap();
    let server = pngcast_mio::Server::bind(cfg).unwrap();
    let edge = Edge::start(&redis.ns_url("ws"), server.sink(), ec).unwrap();
    wait_for("subscribed", || edge.stats().connected);
    let url = format!("ws://{}/ws?clientId=viewer", server.local_addr());
    let (mut ws, _) = tungstenite::connect(url).unwrap();
    ws.send(tungstenite::Message::text(
        r#"{"type":"feature_flags","data":{"supports_preview_metadata":true}}"#,
    ))
    .unwrap();
    let publisher = Publisher::connect(&redis.ns_url("ws"), pc).unwrap();
    let f = frame("preview", 7, 500);
    // Wait for the server to register the client, then send to it by clientId.
    wait_for("client registered", || server.sink().stats().clients == 1);
    publisher.send_image(&Target::client("viewer"), &f).unwrap();
    let want = f.binary_message(true);
    let end = Instant::now() + DEADLINE;
    loop {
        assert!(Instant::now() < end, "no frame");
        if let tungstenite::Message::Binary(b) = ws.read().unwrap() {
            assert_eq!(&b[..], &want[..]);
            break;
        }
    }
    drop(publisher);
    edge.stop();
}
