//! Faults against both transports: peers that vanish mid-frame, half-open peers, one-byte
//! readers, connect/disconnect churn, shutdown under load, and bad tensors through the sender.
//!
//! Each case keeps a healthy client (the [`hostile::Witness`]) receiving numbered frames during
//! the fault. Under `Reliable` it must get every one in order; the key faults (vanish mid-frame,
//! half-open non-readers, 1,000 connect/disconnect cycles) also run under `LatestWins`, where it
//! must get an increasing sequence ending with the newest frame, and every frame queued to any
//! client must end up counted as sent or dropped (`frames_queued == frames_sent +
//! frames_dropped` once the server is down). Then the case checks the server's client count,
//! this process's open file descriptors (`/proc/self/fd`) and thread count return to their
//! baseline (polled for a bounded time), and its resident memory to within [`RSS_MARGIN_KB`] of
//! the baseline (a generous bound, not a timing: the allocator may keep freed pages). The cases
//! share one process, so they take a lock: descriptor counts are only meaningful one case at a
//! time.

#[path = "suite/mod.rs"]
mod suite;

#[path = "hostile/mod.rs"]
mod hostile;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use pngcast_protocol::http::ServerConfig;
use pngcast_protocol::queue::Policy;
use pngcast_protocol::sink::{FrameSink, SinkStats, Target};

use hostile::{connect_healthy, open_ws, stats_until, Witness};
use suite::{Backend, Harness, Net};

static LOCK: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Open file descriptors of this process (server and test sockets alike).
fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Server threads of this process: both transports name theirs `pngcast-*` (the test
/// harness's own threads come and go with the tests, so they are not counted).
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("pngcast"))
        .count()
}

/// Resident memory of this process in KiB (`VmRSS` of `/proc/self/status`: the resident pages
/// of `/proc/self/statm`, in KiB).
fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS line");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// How far above its baseline resident memory may end after a case (32 MiB).
const RSS_MARGIN_KB: u64 = 32 * 1024;

/// Polls for up to 20 s until descriptors and threads are back at (or below) the baseline.
fn back_to_baseline(what: &str, base_fds: usize, base_threads: usize) {
    for _ in 0..2000 {
        if fds() <= base_fds && threads() <= base_threads {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!(
        "{what}: fds {} (baseline {base_fds}), threads {} (baseline {base_threads})",
        fds(),
        threads()
    );
}

/// A running fault case: the server, its healthy witness and the baselines.
struct Case {
    _serial: MutexGuard<'static, ()>,
    name: String,
    policy: Policy,
    h: Net,
    sink: Arc<dyn FrameSink>,
    witness: Witness,
    base_fds: usize,
    base_threads: usize,
    base_rss_kb: u64,
}

impl Case {
    fn start<B: Backend>(
        name: &str,
        policy: Policy,
        config: ServerConfig,
        frame_len: usize,
    ) -> Case {
        Self::start_with::<B, ()>(name, policy, config, frame_len, |_| ()).0
    }
    /// As [`Case::start`], running `pre` (e.g. connecting more clients) before the witness
    /// starts pumping.
    fn start_with<B: Backend, T>(
        name: &str,
        policy: Policy,
        config: ServerConfig,
        frame_len: usize,
        pre: impl FnOnce(&Net) -> T,
    ) -> (Case, T) {
        let serial = serial();
        let config = config.policy(policy);
        let h = Net::start::<B>(config.clone());
        let sink = h.sink();
        let healthy = connect_healthy(&h, &config, "healthy");
        stats_until(&*sink, "healthy registered", |s| s.clients == 1);
        let extra = pre(&h);
        let witness = Witness::start(sink.clone(), healthy, frame_len);
        let case = Case {
            _serial: serial,
            name: format!("{name} on {} ({policy:?})", B::NAME),
            policy,
            base_fds: fds(),
            base_threads: threads(),
            base_rss_kb: rss_kb(),
            h,
            sink,
            witness,
        };
        (case, extra)
    }
    /// Waits until only the healthy client is left and descriptors and threads are back, then
    /// checks the witness got what the policy promises and (once the server is down) that every
    /// queued frame was counted sent or dropped, and that resident memory is back within
    /// [`RSS_MARGIN_KB`] of the baseline. Returns the server's final stats.
    fn finish(self) -> SinkStats {
        stats_until(&*self.sink, "only the healthy client is left", |s| {
            s.clients == 1
        });
        back_to_baseline(&self.name, self.base_fds, self.base_threads);
        let got = match self.policy {
            Policy::Reliable => {
                let n = self.witness.finish(&self.name);
                format!("all {n} frames")
            }
            _ => {
                let (n, got) = self.witness.finish_latest(&self.name);
                format!("{got} of {n} frames, ending with the newest")
            }
        };
        drop(self.h);
        let s = stats_until(&*self.sink, "every queued frame sent or dropped", |s| {
            s.clients == 0 && s.frames_queued == s.frames_sent + s.frames_dropped
        });
        let rss = rss_kb();
        eprintln!(
            "{}: witness got {got}; rss {} -> {rss} kB; {s:?}",
            self.name, self.base_rss_kb
        );
        assert!(
            rss <= self.base_rss_kb + RSS_MARGIN_KB,
            "{}: resident memory {rss} kB, baseline {} kB",
            self.name,
            self.base_rss_kb
        );
        s
    }
}

/// 50 clients each read part of a 16 KiB frame and vanish: half drop the socket with unread
/// data (the kernel sends RST), half shut down writing first (FIN, then RST).
fn vanish_mid_frame<B: Backend>(policy: Policy) {
    let case = Case::start::<B>(
        "vanish_mid_frame",
        policy,
        ServerConfig::default(),
        16 * 1024,
    );
    for i in 0..50 {
        let mut s = TcpStream::connect(case.h.addr()).unwrap();
        let head = open_ws(&mut s, &format!("victim{i}"));
        assert!(head.starts_with(b"HTTP/1.1 101"));
        let mut buf = vec![0u8; 1024 + 17 * i];
        s.read_exact(&mut buf).unwrap(); // the status and part of a frame
        if i % 2 == 1 {
            s.shutdown(Shutdown::Write).unwrap();
        }
        drop(s);
    }
    case.finish();
}

/// 10 clients upgrade and then neither read nor close. The server closes them (queue overflow
/// under `Reliable`, or the stall timeout); the witness is unaffected. Under `LatestWins` their
/// queues drop the oldest frames instead of overflowing, so frames are counted dropped.
fn half_open_never_read<B: Backend>(policy: Policy) {
    let config = ServerConfig::default()
        .queue_bytes(1 << 20)
        .stall_timeout(Duration::from_millis(300))
        .write_timeout(Duration::from_millis(300));
    let case = Case::start::<B>("half_open_never_read", policy, config, 32 * 1024);
    let held: Vec<TcpStream> = (0..10)
        .map(|i| {
            let mut s = TcpStream::connect(case.h.addr()).unwrap();
            assert!(open_ws(&mut s, &format!("mute{i}")).starts_with(b"HTTP/1.1 101"));
            s
        })
        .collect();
    let s = stats_until(&*case.sink, "the server closed the mute clients", |s| {
        s.clients == 1 && s.clients_accepted >= 11
    });
    // Each mute client is closed once, for one reason (overflow, or the stall timer).
    assert_eq!(s.closed_overflow + s.closed_stall, 10, "{s:?}");
    drop(held);
    let s = case.finish();
    assert!(s.frames_dropped > 0, "{s:?}");
}

/// A reader that takes one byte per `read` call.
struct OneByte(TcpStream);

impl Read for OneByte {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(1);
        self.0.read(&mut buf[..n])
    }
}

impl Write for OneByte {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// A client reading one byte at a time gets every frame in order too (it only falls behind),
/// and the witness is not slowed.
fn one_byte_reader<B: Backend>() {
    let _serial = serial();
    let h = Net::start::<B>(ServerConfig::default().policy(Policy::Reliable));
    let sink = h.sink();
    // Handshake on the plain socket (tungstenite's handshake rejects one-byte reads as an
    // attack), then read the WebSocket one byte per call.
    let mut stream = TcpStream::connect(h.addr()).unwrap();
    assert!(open_ws(&mut stream, "slowpoke").starts_with(b"HTTP/1.1 101"));
    let mut ws = tungstenite::WebSocket::from_raw_socket(
        OneByte(stream),
        tungstenite::protocol::Role::Client,
        None,
    );
    let slow = std::thread::spawn(move || {
        let mut idx = Vec::new();
        loop {
            match ws.read().expect("one-byte reader") {
                tungstenite::Message::Binary(b) => {
                    match pngcast_protocol::wire::parse_binary(&b).unwrap() {
                        pngcast_protocol::wire::BinaryMessage::Legacy { png } => {
                            idx.push(u32::from_be_bytes(png[..4].try_into().unwrap()))
                        }
                        other => panic!("{other:?}"),
                    }
                }
                tungstenite::Message::Text(t) if t.contains(hostile::WITNESS_END) => return idx,
                _ => {}
            }
        }
    });
    let healthy = connect_healthy(&h, &ServerConfig::default(), "healthy");
    stats_until(&*sink, "both registered", |s| s.clients == 2);
    let witness = Witness::start(sink.clone(), healthy, 512);
    while witness.sent() < 500 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let n = witness.finish(&format!("one_byte_reader on {}", B::NAME));
    let idx = slow.join().unwrap();
    assert!(
        idx.iter().copied().eq(0..n),
        "one-byte reader got {} of {n}",
        idx.len()
    );
}

/// 1000 connect/disconnect cycles while frames flow, four ways: a clean WebSocket close, a drop
/// right after the upgrade request, a TCP connect with nothing sent, a drop after the 101.
fn churn_1000<B: Backend>(policy: Policy) {
    let config = ServerConfig::default()
        .max_clients(4096)
        .handshake_timeout(Duration::from_millis(500));
    let case = Case::start::<B>("churn_1000", policy, config, 1024);
    let addr = case.h.addr();
    for i in 0..1000 {
        match i % 4 {
            0 => {
                let s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(hostile::GUARD)).unwrap();
                let url = format!("ws://{addr}/ws?clientId=c{i}");
                let (mut ws, _) = tungstenite::client::client(url.as_str(), s).unwrap();
                let _status = ws.read().unwrap();
                ws.close(None).unwrap();
                // Read until the server's close answer (frames may come first).
                while ws.read().is_ok() {}
            }
            1 => {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(&hostile::upgrade(&format!("/ws?clientId=c{i}"), "", ""))
                    .unwrap();
            }
            2 => drop(TcpStream::connect(addr).unwrap()),
            _ => {
                let mut s = TcpStream::connect(addr).unwrap();
                assert!(open_ws(&mut s, &format!("c{i}")).starts_with(b"HTTP/1.1 101"));
            }
        }
    }
    let s = case.sink.stats();
    eprintln!("churn_1000 on {}: after the cycles {s:?}", B::NAME);
    case.finish();
}

/// Shutdown while a sender pumps 8 KiB frames as fast as it can to 20 reading clients: each
/// client gets a gap-free prefix of the frames and then Close 1001; sends after it fail with
/// `ShutDown`; the server's descriptors and threads are all released once it is dropped.
fn shutdown_under_load<B: Backend>() {
    let _serial = serial();
    let (base_fds, base_threads) = (fds(), threads());
    {
        let h = Net::start::<B>(ServerConfig::default().policy(Policy::Reliable));
        let sink = h.sink();
        let readers: Vec<_> = (0..20)
            .map(|i| {
                let mut c = h.connect(Some(&format!("r{i}")), false);
                std::thread::spawn(move || {
                    let mut idx = Vec::new();
                    loop {
                        match suite::recv_item(&mut *c) {
                            suite::Got::Close(code) => return (idx, Some(code)),
                            suite::Got::Ended(_) => return (idx, None),
                            g => idx.push(g.test_index().unwrap()),
                        }
                    }
                })
            })
            .collect();
        stats_until(&*sink, "20 clients", |s| s.clients == 20);
        let pump = {
            let sink = sink.clone();
            std::thread::spawn(move || {
                let mut i = 0u32;
                loop {
                    match sink.send_image(&Target::All, &suite::test_frame("s", i, 0, 8192, true)) {
                        Ok(()) => i += 1,
                        Err(pngcast_protocol::sink::SinkError::ShutDown) => return i,
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        };
        while sink.stats().frames_queued < 20 * 200 {
            std::thread::sleep(Duration::from_millis(1));
        }
        h.shutdown(Duration::from_secs(5));
        let sent = pump.join().unwrap();
        for (k, r) in readers.into_iter().enumerate() {
            let (idx, close) = r.join().unwrap();
            assert!(
                idx.iter().copied().eq(0..idx.len() as u32),
                "client {k}: a gap in {} frames",
                idx.len()
            );
            assert!(idx.len() as u32 <= sent);
            assert_eq!(
                close,
                Some(Some(1001)),
                "client {k} after {} frames",
                idx.len()
            );
        }
        eprintln!(
            "shutdown_under_load on {}: {sent} frames sent, {:?}",
            B::NAME,
            sink.stats()
        );
    }
    back_to_baseline(
        &format!("shutdown_under_load on {}", B::NAME),
        base_fds,
        base_threads,
    );
}

/// Bad tensors and bad options through `Sender`: typed errors, never a panic; frames queued
/// before stay queued and are delivered, and the sender and sink go on working.
fn bad_tensors_through_sender<B: Backend>() {
    use pngcast_core::error::Error;
    use pngcast_core::png::EncodeOptions;
    use pngcast_core::tensor::TensorView;
    use pngcast_protocol::sender::{FrameExtra, SendError, Sender};

    // The type-4 client connects before the witness pumps (its flags exchange comes first).
    let (case, mut flagged) = Case::start_with::<B, _>(
        "bad_tensors_through_sender",
        Policy::Reliable,
        ServerConfig::default(),
        256,
        |h| h.connect(Some("flagged"), true),
    );
    let mut sender = Sender::new(case.sink.clone(), EncodeOptions::default()).unwrap();
    let good: Vec<f32> = (0..2 * 5 * 7 * 3).map(|i| (i % 11) as f32 / 10.0).collect();
    let only = Target::client("flagged");
    let extra = FrameExtra::default();
    let send_good = |s: &mut Sender| {
        let t = TensorView::bhwc(&good[..], [2, 5, 7, 3]).unwrap();
        assert_eq!(s.send("good", &t, &only, &extra).unwrap().frames, 2);
    };
    send_good(&mut sender);

    // Shape, size and dtype errors are typed at the view.
    let v = vec![0.5f32; 64];
    assert!(matches!(
        TensorView::bhwc(&v[..], [1, 0, 4, 3]),
        Err(Error::ZeroDimension { axis: "height" })
    ));
    assert!(matches!(
        TensorView::bhwc(&v[..], [0, 2, 2, 3]),
        Err(Error::ZeroDimension { axis: "batch" })
    ));
    assert!(matches!(
        TensorView::bhwc(&v[..], [1, 2, 2, 5]),
        Err(Error::UnsupportedChannels(5))
    ));
    assert!(matches!(
        TensorView::bhwc(&v[..], [1, 8, 8, 3]),
        Err(Error::BufferTooShort { need: 192, got: 64 })
    ));
    assert!(matches!(
        TensorView::bhwc(&v[..], [usize::MAX, 2, 2, 3]),
        Err(Error::SizeOverflow(_))
    ));
    assert!(matches!(
        TensorView::bhwc(&v[..], [1, 1 << 31, 1, 1]),
        Err(Error::ImageTooLarge { .. })
    ));
    assert!(matches!(
        TensorView::strided(&v[..], [2, 2, 2, 3], [usize::MAX, 6, 3, 1]),
        Err(Error::SizeOverflow(_))
    ));
    assert!(matches!(
        TensorView::from_dims(&v[..], &[1, 1, 2, 2, 3]),
        Err(Error::UnsupportedRank(5))
    ));
    assert!(matches!(
        TensorView::from_dims(&v[..], &[64]),
        Err(Error::UnsupportedRank(1))
    ));

    // NaN, infinities and out-of-range values encode (clamped), never panic.
    let odd = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -3.0, 7.0, 0.5];
    let t = TensorView::bhwc(&odd[..], [1, 1, 2, 3]).unwrap();
    assert_eq!(sender.send("odd", &t, &only, &extra).unwrap().frames, 1);

    // An encoder error mid-stream (an invalid tEXt key) is typed and sends nothing.
    sender
        .encoder_mut()
        .set_text(&[("bad\0key".to_owned(), "v".to_owned())]);
    let t = TensorView::bhwc(&good[..], [2, 5, 7, 3]).unwrap();
    match sender.send("bad", &t, &only, &extra) {
        Err(SendError::Encode {
            index: 0,
            source: Error::InvalidText(_),
        }) => {}
        other => panic!("{other:?}"),
    }
    sender.encoder_mut().set_text(&[]);
    // An unknown target is refused or ignored, never a panic.
    match sender.send("nobody", &t, &Target::client("nobody"), &extra) {
        Ok(_) | Err(SendError::Sink { index: 0, .. }) => {}
        Err(e) => panic!("{e}"),
    }
    send_good(&mut sender);
    case.sink
        .send_json(&only, "end", &serde_json::json!({}))
        .unwrap();
    let got = suite::recv_until(&mut *flagged, "end");
    // The witness's frames reach this client too (they are not PNGs): skip them.
    let events: Vec<(String, u32)> = got
        .iter()
        .filter(|g| !matches!(g, suite::Got::Meta { meta, .. } if meta.event == "w"))
        .map(|g| match g {
            suite::Got::Meta { meta, png } => {
                let mut r = png::Decoder::new(std::io::Cursor::new(png))
                    .read_info()
                    .unwrap_or_else(|e| {
                        panic!(
                            "{} {}: {e}; PNG starts {:?}, {} bytes",
                            meta.event,
                            meta.index,
                            &png[..png.len().min(16)],
                            png.len()
                        )
                    });
                let mut out = vec![0; r.output_buffer_size().unwrap()];
                let info = r.next_frame(&mut out).unwrap();
                assert_eq!((info.width, info.height), (meta.width, meta.height));
                if meta.event == "odd" {
                    // NaN -> 0, +inf -> 255, -inf -> 0, -3 -> 0, 7 -> 255, 0.5 -> 127.
                    assert_eq!(&out[..6], &[0, 255, 0, 0, 255, 127]);
                }
                (meta.event.clone(), meta.index)
            }
            other => panic!("{other:?}"),
        })
        .collect();
    let want: Vec<(String, u32)> = [
        ("good", 0),
        ("good", 1),
        ("odd", 0),
        ("good", 0),
        ("good", 1),
    ]
    .iter()
    .map(|(e, i)| (e.to_string(), *i))
    .collect();
    assert_eq!(events, want);
    drop(flagged);
    case.finish();
}

macro_rules! faults_suite {
    ($b:ty) => {
        #[test]
        fn vanish_mid_frame() {
            super::vanish_mid_frame::<$b>(Policy::Reliable);
        }
        #[test]
        fn vanish_mid_frame_latest_wins() {
            super::vanish_mid_frame::<$b>(Policy::LatestWins);
        }
        #[test]
        fn half_open_never_read() {
            super::half_open_never_read::<$b>(Policy::Reliable);
        }
        #[test]
        fn half_open_never_read_latest_wins() {
            super::half_open_never_read::<$b>(Policy::LatestWins);
        }
        #[test]
        fn one_byte_reader() {
            super::one_byte_reader::<$b>();
        }
        #[test]
        fn churn_1000() {
            super::churn_1000::<$b>(Policy::Reliable);
        }
        #[test]
        fn churn_1000_latest_wins() {
            super::churn_1000::<$b>(Policy::LatestWins);
        }
        #[test]
        fn shutdown_under_load() {
            super::shutdown_under_load::<$b>();
        }
        #[test]
        fn bad_tensors_through_sender() {
            super::bad_tensors_through_sender::<$b>();
        }
    };
}

mod mio {
    use pngcast_protocol::queue::Policy;
    faults_suite!(crate::hostile::backends::Mio);
}

mod blocking {
    use pngcast_protocol::queue::Policy;
    faults_suite!(crate::hostile::backends::Blocking);
}
