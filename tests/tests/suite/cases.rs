//! The conformance cases. Each takes a harness (cases that apply to the memory sink too) or a
//! backend type (cases that need sockets and a special configuration).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use pngcast_core::convert::ConvertOptions;
use pngcast_core::png::EncodeOptions;
use pngcast_core::tensor::TensorView;
use pngcast_protocol::http::ServerConfig;
use pngcast_protocol::queue::Policy;
use pngcast_protocol::sender::{FrameExtra, Sender};
use pngcast_protocol::sink::{FrameSink, SinkError, SinkStats, Target};
use pngcast_protocol::wire::{self, BinaryMessage, TextMessage};
use serde_json::json;

use super::{recv_item, recv_until, test_frame, Backend, Client, Got, Harness, Msg, Net};

/// Polls `f` every 10 ms for up to 20 s (a hang guard for eventually-consistent counters).
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("never happened: {what}");
}

/// Sink stats once `f` holds for them (see [`eventually`]).
fn stats_when(sink: &dyn FrameSink, what: &str, f: impl Fn(&SinkStats) -> bool) -> SinkStats {
    for _ in 0..2000 {
        let s = sink.stats();
        if f(&s) {
            return s;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("never happened: {what}; last stats {:?}", sink.stats());
}

fn end(sink: &dyn FrameSink, target: &Target, marker: &str) {
    sink.send_json(target, marker, &json!({}))
        .expect("send marker");
}

/// A sequence of labels: `img<i>` for images (checking announcement/type-4 metadata against the
/// index carried in the PNG), the event name for JSON events.
fn labels(items: &[Got], event: &str) -> Vec<String> {
    items
        .iter()
        .map(|g| match g {
            Got::Legacy { announced, .. } => {
                let i = g.test_index().unwrap();
                if let Some(m) = announced {
                    assert_eq!(
                        (m.index, m.event.as_str()),
                        (i, event),
                        "announcement matches its frame"
                    );
                }
                format!("img{i}")
            }
            Got::Meta { meta, .. } => {
                let i = g.test_index().unwrap();
                assert_eq!(
                    (meta.index, meta.event.as_str()),
                    (i, event),
                    "type-4 metadata matches its frame"
                );
                format!("img{i}")
            }
            Got::Event(e, data) => match data.get("i") {
                Some(i) => format!("{e}{i}"),
                None => e.clone(),
            },
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

/// Per client, messages arrive in the order they were sent: images and JSON interleaved, for a
/// legacy and a metadata client.
pub fn order_per_client(h: &dyn Harness) {
    let sink = h.sink();
    let mut legacy = h.connect(None, false);
    let mut flagged = h.connect(None, true);
    let mut expected = Vec::new();
    for i in 0..40u32 {
        sink.send_image(
            &Target::All,
            &test_frame("ev", i, 40, 100 + 997 * i as usize, true),
        )
        .unwrap();
        expected.push(format!("img{i}"));
        if i % 7 == 0 {
            sink.send_json(&Target::All, "tick", &json!({ "i": i }))
                .unwrap();
            expected.push(format!("tick{i}"));
        }
    }
    end(&*sink, &Target::All, "end");
    for c in [&mut legacy, &mut flagged] {
        let got = recv_until(&mut **c, "end");
        assert_eq!(labels(&got, "ev"), expected, "{}: order", h.name());
    }
    assert!(got_kinds_match(&mut *legacy, &mut *flagged, &*sink));
}

/// The legacy client got type 1, the flagged one type 4 (checked again on one more frame).
fn got_kinds_match(
    legacy: &mut dyn Client,
    flagged: &mut dyn Client,
    sink: &dyn FrameSink,
) -> bool {
    sink.send_image(&Target::All, &test_frame("ev", 99, 1, 10, true))
        .unwrap();
    matches!(
        recv_item(legacy),
        Got::Legacy {
            announced: Some(_),
            ..
        }
    ) && matches!(recv_item(flagged), Got::Meta { .. })
}

/// `Target::Client` reaches that client only; `Target::All` reaches everyone; an unknown id
/// reaches nobody (the sink may say so with `NoSuchClient`).
pub fn targeting_and_broadcast(h: &dyn Harness) {
    let sink = h.sink();
    let mut a = h.connect(Some("alpha"), false);
    let mut b = h.connect(Some("beta"), true);
    let mut c = h.connect(None, false);
    let c_id: Arc<str> = c.id().into();
    sink.send_image(&Target::client("beta"), &test_frame("ev", 1, 1, 50, true))
        .unwrap();
    sink.send_image(&Target::All, &test_frame("ev", 2, 1, 50, true))
        .unwrap();
    sink.send_json(&Target::client("alpha"), "only_alpha", &json!({}))
        .unwrap();
    sink.send_image(&Target::Client(c_id), &test_frame("ev", 3, 1, 50, true))
        .unwrap();
    match sink.send_image(&Target::client("nobody"), &test_frame("ev", 4, 1, 50, true)) {
        Ok(()) | Err(SinkError::NoSuchClient(_)) => {}
        Err(e) => panic!("{}: unknown client: {e}", h.name()),
    }
    end(&*sink, &Target::All, "end");
    assert_eq!(
        labels(&recv_until(&mut *a, "end"), "ev"),
        ["img2", "only_alpha"],
        "{}",
        h.name()
    );
    assert_eq!(
        labels(&recv_until(&mut *b, "end"), "ev"),
        ["img1", "img2"],
        "{}",
        h.name()
    );
    assert_eq!(
        labels(&recv_until(&mut *c, "end"), "ev"),
        ["img2", "img3"],
        "{}",
        h.name()
    );
}

/// Byte-exact messages: legacy = announcement text + `00000001 00000002 PNG`; flagged = one
/// `00000004 len J PNG` with the event and node keys in `J`.
pub fn legacy_and_metadata_clients(h: &dyn Harness) {
    let sink = h.sink();
    let mut legacy = h.connect(None, false);
    let mut flagged = h.connect(None, true);
    let meta = wire::ImageMeta {
        event: "my_event".into(),
        index: 0,
        count: 1,
        width: 8,
        height: 8,
        prompt_id: Some("prompt-7".into()),
        node_id: Some("12".into()),
        ..Default::default()
    };
    let png = Arc::new(b"\x89PNG\r\n\x1a\nnot-really-a-png".to_vec());
    let frame = wire::WireFrame::new(&meta, png.clone(), true);
    sink.send_image(&Target::All, &frame).unwrap();

    assert_eq!(
        legacy.recv(),
        Msg::Text(frame.announcement().unwrap().to_string()),
        "{}",
        h.name()
    );
    let bin = legacy.recv();
    assert_eq!(
        bin,
        Msg::Binary(frame.binary_message(false)),
        "{}",
        h.name()
    );
    let Msg::Binary(bytes) = bin else {
        unreachable!()
    };
    assert_eq!(&bytes[..8], &[0, 0, 0, 1, 0, 0, 0, 2]);
    assert_eq!(&bytes[8..], &png[..], "out[8:] is the PNG");

    let Msg::Binary(bytes) = flagged.recv() else {
        panic!("{}: flagged client wants binary", h.name())
    };
    assert_eq!(bytes, frame.binary_message(true));
    match wire::parse_binary(&bytes).unwrap() {
        BinaryMessage::WithMetadata {
            meta: got,
            json,
            png: p,
        } => {
            // `J` always names the display node (ComfyUI's frontend reads it): the node id here.
            let mut want = meta.clone();
            want.display_node_id = Some("12".into());
            assert_eq!(got, want);
            let j: serde_json::Value = serde_json::from_str(json).unwrap();
            assert_eq!(j["display_node_id"], "12");
            assert_eq!(j["event"], "my_event");
            assert_eq!(j["image_type"], "image/png");
            assert_eq!(j["prompt_id"], "prompt-7");
            assert_eq!(p, &png[..]);
        }
        other => panic!("{other:?}"),
    }
}

/// With announcements off a legacy client gets exactly what ComfyUI's SaveImageWebsocket sends:
/// one binary message, no text.
pub fn announcements_off(h: &dyn Harness) {
    let sink = h.sink();
    let mut legacy = h.connect(None, false);
    let frame = test_frame("quiet", 5, 6, 300, false);
    sink.send_image(&Target::All, &frame).unwrap();
    end(&*sink, &Target::All, "end");
    assert_eq!(
        legacy.recv(),
        Msg::Binary(frame.binary_message(false)),
        "{}",
        h.name()
    );
    assert!(matches!(recv_item(&mut *legacy), Got::Event(e, _) if e == "end"));
}

/// The sender encodes a batch and every client decodes the same pixels with the `png` crate.
pub fn sender_frames_decode(h: &dyn Harness) {
    let (b, hh, w, c) = (3usize, 17usize, 23usize, 3usize);
    let pixels: Vec<f32> = (0..b * hh * w * c)
        .map(|i| ((i * 7919) % 1000) as f32 / 999.0)
        .collect();
    let tensor = TensorView::bhwc(&pixels[..], [b, hh, w, c]).unwrap();
    let mut legacy = h.connect(None, false);
    let mut flagged = h.connect(None, true);
    let mut sender = Sender::new(h.sink(), EncodeOptions::default())
        .unwrap()
        .convert_options(ConvertOptions::default());
    let extra = FrameExtra::default().prompt_id("p1").node_id("3");
    let report = sender
        .send("preview", &tensor, &Target::All, &extra)
        .unwrap();
    assert_eq!(report.frames, b);
    end(&*h.sink(), &Target::All, "end");
    for client in [&mut legacy, &mut flagged] {
        let got = recv_until(&mut **client, "end");
        assert_eq!(got.len(), b, "{}", h.name());
        for (i, g) in got.iter().enumerate() {
            if let Got::Meta { meta, .. } = g {
                assert_eq!((meta.index as usize, meta.count as usize), (i, b));
                assert_eq!((meta.width as usize, meta.height as usize), (w, hh));
                assert_eq!(meta.prompt_id.as_deref(), Some("p1"));
            }
            let png = g.png().unwrap();
            let decoder = png::Decoder::new(std::io::Cursor::new(png));
            let mut reader = decoder.read_info().expect("valid PNG");
            let mut out = vec![0; reader.output_buffer_size().unwrap()];
            let info = reader.next_frame(&mut out).unwrap();
            assert_eq!((info.width as usize, info.height as usize), (w, hh));
            let want: Vec<u8> = pixels[i * hh * w * c..(i + 1) * hh * w * c]
                .iter()
                .map(|&x| (255.0f32 * x).clamp(0.0, 255.0) as u8)
                .collect();
            assert_eq!(
                &out[..info.buffer_size()],
                &want[..],
                "{}: frame {i} pixels",
                h.name()
            );
        }
    }
}

/// The first message is the status with the sid: the clientId given, or 32 lowercase hex digits.
pub fn status_first_with_sid(h: &Net) {
    let mut c = h.raw("/ws?clientId=given-id");
    assert_eq!(c.recv(), Msg::Text(wire::status_message("given-id")));
    for path in ["/ws", "/api/ws"] {
        let mut c = h.raw(path);
        let first = c.recv();
        match wire::parse_text(first.text()).unwrap() {
            TextMessage::Status { sid: Some(sid), .. } => {
                assert_eq!(first.text(), wire::status_message(&sid));
                assert_eq!(sid.len(), 32);
                assert!(
                    sid.bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                    "{sid}"
                );
            }
            other => panic!("{path}: {other:?}"),
        }
    }
}

/// A reconnect with a live clientId closes the old socket; the new one keeps receiving, also
/// after the old one's cleanup.
pub fn reconnect_replaces_old_socket(h: &Net) {
    let sink = h.sink();
    let mut old = h.connect(Some("same"), false);
    let mut new = h.connect(Some("same"), true);
    // The old socket ends (with a close frame or not); nothing else is sent to it.
    match recv_item(&mut *old) {
        Got::Close(_) | Got::Ended(_) => {}
        other => panic!("old socket got {other:?}"),
    }
    stats_when(&*sink, "one client left", |s| s.clients == 1);
    for i in 0..5 {
        sink.send_image(&Target::client("same"), &test_frame("ev", i, 5, 64, true))
            .unwrap();
        sink.send_image(&Target::All, &test_frame("ev", 100 + i, 5, 64, true))
            .unwrap();
    }
    end(&*sink, &Target::All, "end");
    let got = recv_until(&mut *new, "end");
    let idx: Vec<u32> = got.iter().map(|g| g.test_index().unwrap()).collect();
    assert_eq!(idx, [0, 100, 1, 101, 2, 102, 3, 103, 4, 104]);
    assert!(
        got.iter().all(|g| matches!(g, Got::Meta { .. })),
        "the new socket's flags apply"
    );
}

/// `B::MANY_CLIENTS` clients at once each receive every frame, in order (Reliable policy).
pub fn many_clients_receive_every_frame<B: Backend>() {
    let n = B::MANY_CLIENTS;
    let h = Net::start::<B>(
        ServerConfig::default()
            .policy(Policy::Reliable)
            .max_clients(n + 8),
    );
    let sink = h.sink();
    let mut clients: Vec<Box<dyn Client>> = (0..n).map(|i| h.connect(None, i % 2 == 1)).collect();
    stats_when(&*sink, "all clients registered", |s| s.clients == n);
    const FRAMES: u32 = 20;
    for i in 0..FRAMES {
        sink.send_image(&Target::All, &test_frame("ev", i, FRAMES, 2048, true))
            .unwrap();
    }
    end(&*sink, &Target::All, "end");
    for (k, c) in clients.iter_mut().enumerate() {
        let got = recv_until(&mut **c, "end");
        let idx: Vec<u32> = got.iter().map(|g| g.test_index().unwrap()).collect();
        assert_eq!(idx, (0..FRAMES).collect::<Vec<_>>(), "client {k}");
    }
    let s = stats_when(&*sink, "every frame counted as sent", |s| {
        s.frames_sent >= u64::from(FRAMES) * n as u64
    });
    assert_eq!(s.frames_queued, u64::from(FRAMES) * n as u64);
    assert_eq!(s.frames_dropped, 0);
}

/// A client that never reads does not slow the others: a reading client receives the same
/// number of frames (all of them) with and without a stalled peer, while the stalled peer's
/// frames stay queued.
pub fn stalled_client_does_not_slow_others<B: Backend>() {
    const FRAMES: u32 = 160;
    const SIZE: usize = 256 * 1024; // 40 MiB in all: well past loopback socket buffers
    let config = ServerConfig::default()
        .policy(Policy::LatestWins)
        .queue_bytes(1 << 30)
        .stall_timeout(Duration::from_secs(300));
    let h = Net::start::<B>(config);
    let sink = h.sink();
    let frames: Vec<_> = (0..FRAMES)
        .map(|i| test_frame("ev", i, FRAMES, SIZE, false))
        .collect();
    let mut reader = h.connect(None, false);
    let mut run = |marker: &str| -> usize {
        let sender = {
            let sink = sink.clone();
            let frames = frames.clone();
            let marker = marker.to_owned();
            std::thread::spawn(move || {
                for f in &frames {
                    sink.send_image(&Target::All, f).unwrap();
                }
                end(&*sink, &Target::All, &marker);
            })
        };
        let got = recv_until(&mut *reader, marker);
        sender.join().unwrap();
        let idx: Vec<u32> = got.iter().map(|g| g.test_index().unwrap()).collect();
        assert_eq!(idx, (0..FRAMES).collect::<Vec<_>>());
        got.len()
    };
    let without = run("end1");
    let stalled = h.raw("/ws"); // never reads
    stats_when(&*sink, "stalled client registered", |s| s.clients == 2);
    let with = run("end2");
    assert_eq!(
        with, without,
        "the reader got as many frames with a stalled peer as without"
    );
    // The stalled client really is stalled: most of its frames are still queued.
    let s = sink.stats();
    let pending = s.frames_queued - s.frames_sent - s.frames_dropped;
    assert!(
        pending > u64::from(FRAMES) / 2,
        "stalled client's frames pending: {pending} ({s:?})"
    );
    drop(stalled);
}

/// LatestWins: a client that falls behind loses old frames (counted), never JSON, never half a
/// frame, and always gets the newest frame; per client the order is kept.
pub fn latest_wins_drops_are_counted<B: Backend>() {
    const FRAMES: u32 = 200;
    const SIZE: usize = 256 * 1024;
    let config = ServerConfig::default()
        .policy(Policy::LatestWins)
        .queue_bytes(4 * SIZE)
        .stall_timeout(Duration::from_secs(300));
    let h = Net::start::<B>(config);
    let sink = h.sink();
    let mut slow = h.connect(None, false);
    let mut reader = h.connect(None, true);
    for i in 0..FRAMES {
        sink.send_image(&Target::All, &test_frame("ev", i, FRAMES, SIZE, true))
            .unwrap();
        if i % 20 == 19 {
            sink.send_json(&Target::All, "tick", &json!({ "i": i }))
                .unwrap();
        }
    }
    end(&*sink, &Target::All, "end");
    let mut received = 0u64;
    for c in [&mut reader, &mut slow] {
        let got = recv_until(&mut **c, "end");
        let mut last: Option<u32> = None;
        let mut ticks = Vec::new();
        for g in &got {
            match g {
                Got::Event(e, data) if e == "tick" => {
                    let t = data["i"].as_u64().unwrap() as u32;
                    assert!(last.is_none_or(|l| l <= t), "tick {t} after image {last:?}");
                    ticks.push(t);
                }
                g => {
                    let i = g.test_index().expect("image");
                    assert!(i <= FRAMES);
                    if let Some(t) = ticks.last() {
                        assert!(i > *t, "image {i} after tick {t}");
                    }
                    assert!(last.is_none_or(|l| i > l), "image {i} after {last:?}");
                    if let Got::Legacy { announced, png } = g {
                        assert_eq!(
                            announced.as_ref().unwrap().index,
                            i,
                            "announcement and frame together"
                        );
                        assert_eq!(png.len(), SIZE);
                    }
                    last = Some(i);
                    received += 1;
                }
            }
        }
        assert_eq!(
            ticks,
            (0..FRAMES / 20).map(|k| 20 * k + 19).collect::<Vec<_>>(),
            "JSON never dropped"
        );
        assert_eq!(last, Some(FRAMES - 1), "the newest frame is kept");
    }
    let s = stats_when(&*sink, "counters settle", |s| {
        s.frames_sent + s.frames_dropped == s.frames_queued
    });
    assert_eq!(s.frames_queued, 2 * u64::from(FRAMES), "{s:?}");
    assert!(
        s.frames_dropped > 0,
        "the slow client dropped frames: {s:?}"
    );
    assert_eq!(s.frames_sent, received, "{s:?}");
}

/// Reliable: nothing is dropped; the client whose queue overflows is closed with 1008 after a
/// contiguous run of frames; the reading client gets every frame.
pub fn reliable_overflow_closes_1008<B: Backend>() {
    const FRAMES: u32 = 200;
    const SIZE: usize = 256 * 1024;
    let config = ServerConfig::default()
        .policy(Policy::Reliable)
        .queue_bytes(4 * SIZE)
        .stall_timeout(Duration::from_secs(300));
    let h = Net::start::<B>(config);
    let sink = h.sink();
    let mut slow = h.connect(None, false);
    let mut reader = h.connect(None, false);
    // Lockstep with the reader, so only the stalled client can overflow.
    for i in 0..FRAMES {
        sink.send_image(&Target::All, &test_frame("ev", i, FRAMES, SIZE, true))
            .unwrap();
        assert_eq!(recv_item(&mut *reader).test_index(), Some(i));
    }
    // The slow client reads what it was sent: frames 0..n in order, then Close 1008 (which
    // could only reach it once it read: its socket was full).
    let mut expect = 0;
    loop {
        match recv_item(&mut *slow) {
            Got::Close(code) => {
                assert_eq!(code, Some(1008));
                break;
            }
            Got::Ended(e) => panic!("ended without Close 1008 after {expect} frames: {e}"),
            g => {
                assert_eq!(g.test_index(), Some(expect), "no gap under Reliable");
                expect += 1;
            }
        }
    }
    assert!(expect < FRAMES, "the slow client overflowed before the end");
    let s = stats_when(&*sink, "the slow client is gone and counters settle", |s| {
        s.clients == 1 && s.frames_sent + s.frames_dropped == s.frames_queued
    });
    assert!(s.clients_closed >= 1, "{s:?}");
    // Only the closed client's unsent queue was discarded (SinkStats::frames_dropped counts it).
    assert_eq!(
        s.frames_queued,
        u64::from(FRAMES) + u64::from(expect) + s.frames_dropped,
        "{s:?}"
    );
    assert_eq!(
        s.frames_sent,
        u64::from(FRAMES) + u64::from(expect),
        "{s:?}"
    );
    // The reader goes on.
    sink.send_image(&Target::All, &test_frame("ev", 999, 1, 10, true))
        .unwrap();
    assert_eq!(recv_item(&mut *reader).test_index(), Some(999));
}

/// An inbound message over `max_message_bytes` closes that client with 1009; others go on.
pub fn oversized_inbound_closes_1009<B: Backend>() {
    let h = Net::start::<B>(ServerConfig::default().max_message_bytes(1024));
    let sink = h.sink();
    let mut big_text = h.connect(None, false);
    let mut big_binary = h.connect(None, false);
    let mut fine = h.connect(None, false);
    fine.send_text(&"y".repeat(1000)); // under the limit: ignored
    big_text.send_text(&format!(
        "{{\"type\": \"x\", \"data\": \"{}\"}}",
        "x".repeat(4096)
    ));
    big_binary.send_binary(&vec![7u8; 4096]);
    assert_eq!(recv_close(&mut *big_text), Some(1009));
    assert_eq!(recv_close(&mut *big_binary), Some(1009));
    stats_when(&*sink, "the oversized clients are gone", |s| s.clients == 1);
    sink.send_image(&Target::All, &test_frame("ev", 1, 1, 100, true))
        .unwrap();
    assert_eq!(recv_item(&mut *fine).test_index(), Some(1));
}

/// Skips messages until a close frame; returns its code (panics if the stream ends without one).
fn recv_close(c: &mut dyn Client) -> Option<u16> {
    loop {
        match c.recv() {
            Msg::Close(code) => return code,
            Msg::Ended(e) => panic!("connection ended without a close frame: {e}"),
            _ => {}
        }
    }
}

/// Shutdown flushes what is queued, then sends Close 1001 to every client; later sends fail.
pub fn shutdown_sends_1001<B: Backend>() {
    let h = Net::start::<B>(ServerConfig::default());
    let sink = h.sink();
    let mut a = h.connect(None, false);
    let mut b = h.connect(None, true);
    sink.send_image(&Target::All, &test_frame("ev", 7, 1, 5000, true))
        .unwrap();
    end(&*sink, &Target::All, "last");
    h.shutdown(Duration::from_secs(5));
    for c in [&mut a, &mut b] {
        let got = recv_until(&mut **c, "last");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].test_index(), Some(7));
        assert_eq!(recv_close(&mut **c), Some(1001));
    }
    assert_eq!(
        sink.send_image(&Target::All, &test_frame("ev", 8, 1, 10, true)),
        Err(SinkError::ShutDown)
    );
    assert_eq!(
        sink.send_text(&Target::All, "{}".into()),
        Err(SinkError::ShutDown)
    );
}

/// Plain HTTP: the viewer, the features, and the refusals each transport must give.
pub fn http_routes<B: Backend>() {
    fn ask(addr: std::net::SocketAddr, request: &str) -> (u16, String) {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(super::READ_TIMEOUT)).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = Vec::new();
        // The server answers and closes (a reset after the answer is fine); a 101 keeps the
        // socket open, so stop at the end of its head.
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
            if out.starts_with(b"HTTP/1.1 101") && out.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        (status, text)
    }
    let up = |path: &str, extra: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: HOST\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
        )
    };
    let h = Net::start::<B>(ServerConfig::default().max_clients(1));
    let addr = h.addr();
    let with_host = |r: String| r.replace("HOST", &addr.to_string());
    let (st, body) = ask(
        addr,
        &with_host("GET / HTTP/1.1\r\nHost: HOST\r\n\r\n".into()),
    );
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("text/html") && body.contains("<html"));
    let (st, body) = ask(addr, "GET /features HTTP/1.1\r\n\r\n");
    assert_eq!(st, 200);
    let json_body = body.split("\r\n\r\n").nth(1).unwrap();
    let v: serde_json::Value = serde_json::from_str(json_body).unwrap();
    assert_eq!(v["supports_preview_metadata"], true);
    assert_eq!(ask(addr, "GET /nope HTTP/1.1\r\n\r\n").0, 404);
    assert_eq!(
        ask(addr, "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").0,
        405
    );
    assert_eq!(
        ask(
            addr,
            &with_host(up("/ws", "Origin: http://evil.example\r\n"))
        )
        .0,
        403
    );
    assert_eq!(
        ask(
            addr,
            &with_host(up("/ws", "").replace("Version: 13", "Version: 7"))
        )
        .0,
        400
    );
    let _held = h.raw("/ws");
    stats_when(&*h.sink(), "one client", |s| s.clients == 1);
    assert_eq!(
        ask(addr, &with_host(up("/ws", ""))).0,
        503,
        "max_clients = 1"
    );
    drop(h);
    let h = Net::start::<B>(ServerConfig::default().token(Some("tok".into())));
    let addr = h.addr();
    let with_host = |r: String| r.replace("HOST", &addr.to_string());
    assert_eq!(ask(addr, &with_host(up("/ws", ""))).0, 401);
    assert_eq!(ask(addr, &with_host(up("/ws?token=bad", ""))).0, 401);
    assert_eq!(ask(addr, &with_host(up("/ws?token=tok", ""))).0, 101);
    assert_eq!(
        ask(addr, &with_host(up("/ws", "Authorization: Bearer tok\r\n"))).0,
        101
    );
    // The Origin check passes for the server's own page (Origin matching Host).
    let origin = format!("Origin: http://{addr}\r\nAuthorization: Bearer tok\r\n");
    assert_eq!(ask(addr, &with_host(up("/ws", &origin))).0, 101);
}

/// Keepalive: an idle client gets pings at `ping_interval`; answering them keeps it connected.
pub fn keepalive_pings<B: Backend>() {
    let h = Net::start::<B>(ServerConfig::default().ping_interval(Duration::from_millis(100)));
    let sink = h.sink();
    let mut c = h.raw("/ws?clientId=idle");
    let mut pings = 0;
    while pings < 3 {
        match c.ws.read().expect("connection stays up") {
            tungstenite::Message::Ping(_) => pings += 1, // tungstenite queues the pong
            tungstenite::Message::Text(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    sink.send_image(&Target::client("idle"), &test_frame("ev", 3, 1, 10, true))
        .unwrap();
    assert_eq!(recv_item(&mut c).test_index(), Some(3));
}

/// A client whose socket takes nothing for `stall_timeout` is closed; the reader goes on.
pub fn stall_timeout_closes_stalled_client<B: Backend>() {
    const SIZE: usize = 256 * 1024;
    let stall = Duration::from_millis(300);
    let config = ServerConfig::default()
        .policy(Policy::LatestWins)
        .queue_bytes(1 << 30)
        .stall_timeout(stall)
        .write_timeout(stall);
    let h = Net::start::<B>(config);
    let sink = h.sink();
    let mut stalled = h.raw("/ws"); // reads its status, then nothing until the end
    assert!(stalled.recv().text().contains("\"status\""));
    let mut reader = h.connect(None, false);
    let frame = test_frame("ev", 1, 1, SIZE, false);
    let mut sent = 0u32;
    loop {
        sink.send_image(&Target::All, &frame).unwrap();
        assert_eq!(recv_item(&mut *reader).test_index(), Some(1));
        sent += 1;
        if sink.stats().clients == 1 {
            break;
        }
        assert!(
            sent < 20_000,
            "the stalled client was never closed: {:?}",
            sink.stats()
        );
        if sent > 64 {
            // Its socket is surely full by now: give the stall timer time to fire.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let s = sink.stats();
    assert!(s.closed_stall >= 1, "{s:?}");
    // The stalled client gets what fit in its socket, then the connection ends.
    loop {
        match recv_item(&mut stalled) {
            Got::Close(_) | Got::Ended(_) => break,
            g => assert_eq!(g.test_index(), Some(1)),
        }
    }
    sink.send_image(&Target::All, &test_frame("ev", 2, 1, 10, true))
        .unwrap();
    assert_eq!(recv_item(&mut *reader).test_index(), Some(2));
}

/// Handshake limits: silence past `handshake_timeout` and heads over `max_handshake_bytes` are
/// refused for that connection alone; garbage gets 400.
pub fn handshake_limits<B: Backend>() {
    fn answer(mut s: TcpStream) -> String {
        s.set_read_timeout(Some(super::READ_TIMEOUT)).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    let config = ServerConfig::default()
        .handshake_timeout(Duration::from_millis(300))
        .max_handshake_bytes(1024);
    let h = Net::start::<B>(config);
    let addr = h.addr();
    // Silent: closed (with or without a 408) once the timeout passes.
    let silent = TcpStream::connect(addr).unwrap();
    let got = answer(silent);
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 408"), "{got}");
    // Slowloris: a head that trickles in and never ends.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    let got = answer(slow);
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 408"), "{got}");
    // Too large.
    let mut big = TcpStream::connect(addr).unwrap();
    let _ = big.write_all(format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(2048)).as_bytes());
    let got = answer(big);
    assert!(got.starts_with("HTTP/1.1 431"), "{got}");
    // Not HTTP.
    let mut junk = TcpStream::connect(addr).unwrap();
    junk.write_all(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n")
        .unwrap();
    let got = answer(junk);
    assert!(got.starts_with("HTTP/1.1 400"), "{got}");
    // The server goes on.
    let sink = h.sink();
    let mut c = h.connect(None, false);
    sink.send_image(&Target::All, &test_frame("ev", 4, 1, 10, true))
        .unwrap();
    assert_eq!(recv_item(&mut *c).test_index(), Some(4));
}

/// Only a client's first text message can declare flags; later text is ignored.
pub fn only_first_text_counts<B: Backend>() {
    let h = Net::start::<B>(ServerConfig::default());
    let sink = h.sink();
    let flags = |on: bool| {
        format!(r#"{{"type": "feature_flags", "data": {{"supports_preview_metadata": {on}}}}}"#)
    };
    // Flagged, then tries to switch off: stays flagged.
    let mut flagged = h.connect(None, true);
    flagged.send_text(&flags(false));
    // Says something else first, then asks for flags: stays legacy.
    let mut legacy = h.connect(None, false);
    legacy.send_text(r#"{"type": "hello", "data": {}}"#);
    legacy.send_text(&flags(true));
    // Sends malformed JSON first: stays legacy and connected.
    let mut odd = h.connect(None, false);
    odd.send_text("not json at all");
    // Give the server time to read those messages before the frame goes out. If it has not,
    // the expected outcome is the same (so a slow run can hide a bug, never fake one).
    for c in [&mut flagged, &mut legacy, &mut odd] {
        c.send_text(r#"{"type": "later", "data": {}}"#);
    }
    std::thread::sleep(Duration::from_millis(200));
    sink.send_image(&Target::All, &test_frame("ev", 1, 1, 64, true))
        .unwrap();
    end(&*sink, &Target::All, "end");
    assert!(matches!(
        recv_until(&mut *flagged, "end")[..],
        [Got::Meta { .. }]
    ));
    assert!(matches!(
        recv_until(&mut *legacy, "end")[..],
        [Got::Legacy { .. }]
    ));
    assert!(matches!(
        recv_until(&mut *odd, "end")[..],
        [Got::Legacy { .. }]
    ));
}
