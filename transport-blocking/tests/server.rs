//! The blocking server against protocol.md, through the blocking client and raw sockets.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;
use pngcast_blocking::client::{Client, ClientError, ClientOptions, Event};
use pngcast_protocol::queue::Policy;
use pngcast_protocol::sink::{FrameSink, SinkError, Target};
use pngcast_protocol::wire::json_event;

const LIMIT: Duration = Duration::from_secs(20);

fn connect(server: &pngcast_blocking::Server, opts: ClientOptions) -> Client {
    Client::connect(&ws_url(server), opts).expect("connect")
}

/// Reads events until one matches, returning everything read (the match last).
fn read_until(client: &mut Client, mut done: impl FnMut(&Event) -> bool) -> Vec<Event> {
    let mut out = Vec::new();
    loop {
        let ev = client
            .next_event()
            .expect("read")
            .expect("connection ended early");
        let stop = done(&ev);
        out.push(ev);
        if stop {
            return out;
        }
    }
}

fn is_json(ev: &Event, kind: &str) -> bool {
    matches!(ev, Event::Json { kind: k, .. } if k == kind)
}

#[test]
fn status_first_with_requested_or_generated_sid() {
    let server = start(config());
    let mut c = connect(&server, ClientOptions::default().client_id("abc-1"));
    assert_eq!(c.sid(), "abc-1");
    match c.next_event().unwrap().unwrap() {
        Event::Json { kind, data, .. } => {
            assert_eq!(kind, "status");
            assert_eq!(data["sid"], "abc-1");
            assert_eq!(data["status"]["exec_info"]["queue_remaining"], 0);
        }
        other => panic!("first event {other:?}"),
    }
    let c2 = connect(&server, ClientOptions::default());
    assert_eq!(c2.sid().len(), 32);
    assert!(c2
        .sid()
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    wait_until("two clients", LIMIT, || server.stats().clients == 2);
}

#[test]
fn status_bytes_are_exactly_the_protocol_text() {
    let server = start(config());
    let (mut ws, _) = tungstenite::connect(format!("{}?clientId=x", ws_url(&server))).unwrap();
    let first = ws.read().unwrap();
    assert_eq!(
        first.into_text().unwrap().as_str(),
        r#"{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "x"}}"#
    );
}

#[test]
fn legacy_client_gets_announcement_then_type1() {
    let server = start(config());
    let (mut ws, _) = tungstenite::connect(format!("{}?clientId=legacy", ws_url(&server))).unwrap();
    let _status = ws.read().unwrap();
    let f = frame("preview", 2, 5, true);
    server.send_image(&Target::All, &f).unwrap();
    let ann = ws.read().unwrap().into_text().unwrap();
    let v: serde_json::Value = serde_json::from_str(ann.as_str()).unwrap();
    assert_eq!(v["type"], "preview");
    assert_eq!(v["data"]["event"], "preview");
    assert_eq!(v["data"]["index"], 2);
    assert_eq!(v["data"]["count"], 5);
    assert_eq!(v["data"]["bytes"], f.png().len());
    let bin = ws.read().unwrap().into_data();
    assert_eq!(&bin[..8], &[0, 0, 0, 1, 0, 0, 0, 2]);
    assert_eq!(&bin[8..], f.png());

    // Through the client: one Image event with the announcement folded in.
    let mut c = connect(&server, ClientOptions::default());
    read_until(&mut c, |e| is_json(e, "status"));
    server.send_image(&Target::All, &f).unwrap();
    match c.next_event().unwrap().unwrap() {
        Event::Image {
            event,
            index,
            metadata,
            png,
            ..
        } => {
            assert_eq!(event.as_deref(), Some("preview"));
            assert_eq!(index, Some(2));
            assert_eq!(metadata.unwrap().count, 5);
            assert_eq!(png, f.png());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn announcements_off_sends_exactly_comfyui_frames() {
    let server = start(config().announce(false));
    let (mut ws, _) = tungstenite::connect(ws_url(&server)).unwrap();
    let _status = ws.read().unwrap();
    let f = frame("preview", 0, 1, false);
    server.send_image(&Target::All, &f).unwrap();
    let bin = ws.read().unwrap();
    assert!(bin.is_binary(), "{bin:?}");
    assert_eq!(&bin.into_data()[8..], f.png());
}

#[test]
fn flagged_client_gets_type4_with_event() {
    let server = start(config());
    let mut c = connect(&server, ClientOptions::default().metadata(true));
    let early = read_until(&mut c, |e| is_json(e, "feature_flags"));
    match early.last().unwrap() {
        Event::Json { data, .. } => assert_eq!(data["supports_preview_metadata"], true),
        _ => unreachable!(),
    }
    let f = frame("my_event", 1, 3, true);
    server.send_image(&Target::All, &f).unwrap();
    match c.next_event().unwrap().unwrap() {
        Event::Image {
            event,
            index,
            metadata,
            png,
            ..
        } => {
            assert_eq!(event.as_deref(), Some("my_event"));
            assert_eq!(index, Some(1));
            let m = metadata.unwrap();
            assert_eq!((m.count, m.width, m.height), (3, 8, 6));
            assert_eq!(png, f.png());
        }
        other => panic!("{other:?}"),
    }

    // Raw bytes: 00000004 <len J> J PNG, and no announcement before it.
    let (mut ws, _) = tungstenite::connect(ws_url(&server)).unwrap();
    let _status = ws.read().unwrap();
    ws.send(tungstenite::Message::text(
        r#"{"type": "feature_flags", "data": {"supports_preview_metadata": true}}"#,
    ))
    .unwrap();
    let reply = ws.read().unwrap().into_text().unwrap();
    assert!(reply.contains("feature_flags"), "{reply}");
    server.send_image(&Target::All, &f).unwrap();
    let bin = ws.read().unwrap().into_data();
    assert_eq!(&bin[..4], &[0, 0, 0, 4]);
    let jlen = u32::from_be_bytes(bin[4..8].try_into().unwrap()) as usize;
    let j: serde_json::Value = serde_json::from_slice(&bin[8..8 + jlen]).unwrap();
    assert_eq!(j["event"], "my_event");
    assert_eq!(j["image_type"], "image/png");
    assert_eq!(&bin[8 + jlen..], f.png());
}

#[test]
fn order_per_client_is_send_order() {
    let server = start(config().policy(Policy::Reliable));
    let mut a = connect(&server, ClientOptions::default());
    let mut b = connect(&server, ClientOptions::default().metadata(true));
    read_until(&mut a, |e| is_json(e, "status"));
    read_until(&mut b, |e| is_json(e, "feature_flags"));
    let n = 60u32;
    for i in 0..n {
        server
            .send_image(&Target::All, &frame("ev", i, n, true))
            .unwrap();
        server
            .send_json(&Target::All, "tick", &serde_json::json!({ "i": i }))
            .unwrap();
    }
    for c in [&mut a, &mut b] {
        for i in 0..n {
            match c.next_event().unwrap().unwrap() {
                Event::Image { index, .. } => assert_eq!(index, Some(i)),
                other => panic!("expected image {i}, got {other:?}"),
            }
            match c.next_event().unwrap().unwrap() {
                Event::Json { kind, data, .. } => {
                    assert_eq!(kind, "tick");
                    assert_eq!(data["i"], i);
                }
                other => panic!("expected tick {i}, got {other:?}"),
            }
        }
    }
    // Stats: every image written to both clients, nothing dropped.
    wait_until("stats settle", LIMIT, || {
        server.stats().frames_sent == u64::from(2 * n)
    });
    let s = server.stats();
    assert_eq!(
        (s.frames_queued, s.frames_dropped, s.clients),
        (u64::from(2 * n), 0, 2),
        "{s:?}"
    );
    // Two status messages, one feature-flags reply, the ticks.
    assert_eq!(s.texts_queued, u64::from(2 * n) + 3, "{s:?}");
}

#[test]
fn targeting_one_client_and_broadcast() {
    let server = start(config());
    let mut a = connect(&server, ClientOptions::default().client_id("a"));
    let mut b = connect(&server, ClientOptions::default().client_id("b"));
    read_until(&mut a, |e| is_json(e, "status"));
    read_until(&mut b, |e| is_json(e, "status"));
    server
        .send_json(&Target::client("a"), "only_a", &serde_json::json!(1))
        .unwrap();
    server
        .send_image(&Target::client("b"), &frame("only_b", 0, 1, true))
        .unwrap();
    server
        .send_json(&Target::All, "everyone", &serde_json::json!(2))
        .unwrap();
    let ea = read_until(&mut a, |e| is_json(e, "everyone"));
    let eb = read_until(&mut b, |e| is_json(e, "everyone"));
    assert_eq!(ea.len(), 2);
    assert!(is_json(&ea[0], "only_a"));
    assert_eq!(eb.len(), 2);
    assert!(matches!(&eb[0], Event::Image { event: Some(e), .. } if e == "only_b"));
    assert_eq!(
        server.send_json(&Target::client("nobody"), "x", &serde_json::json!(0)),
        Err(SinkError::NoSuchClient("nobody".into()))
    );
}

#[test]
fn reconnect_replaces_old_socket_and_keeps_new_one() {
    let server = start(config());
    let mut old = connect(&server, ClientOptions::default().client_id("same"));
    read_until(&mut old, |e| is_json(e, "status"));
    let mut new = connect(&server, ClientOptions::default().client_id("same"));
    read_until(&mut new, |e| is_json(e, "status"));
    // The old one is closed cleanly...
    while old.next_event().unwrap().is_some() {}
    assert_eq!(old.close_code(), Some(1000));
    // ...and its cleanup (done by now: the old reader saw the close) did not remove the new one.
    wait_until("old connection counted closed", LIMIT, || {
        server.stats().clients_closed == 1
    });
    assert_eq!(server.stats().clients, 1);
    server
        .send_json(&Target::client("same"), "hello", &serde_json::json!("new"))
        .unwrap();
    let got = read_until(&mut new, |e| is_json(e, "hello"));
    assert_eq!(got.len(), 1);
}

#[test]
fn slow_reader_does_not_slow_others() {
    // The same run twice, without and with a client that never reads; the fast client's count
    // of received frames must be the same (all of them). No clock is involved: the sender stays
    // at most 8 frames ahead of the fast client (flow control by the test), so the fast client
    // never needs to drop, while the stuck one falls behind without bound and drops.
    fn run(with_stuck: bool) -> (usize, u64) {
        let server = start(
            config()
                .queue_bytes(4 << 20)
                .stall_timeout(Duration::from_secs(60)),
        );
        let _stuck = with_stuck.then(|| never_reading_client(server.local_addr(), "stuck"));
        let mut fast = connect(&server, ClientOptions::default().client_id("fast"));
        read_until(&mut fast, |e| is_json(e, "status"));
        wait_until("clients", LIMIT, || {
            server.stats().clients == 1 + usize::from(with_stuck)
        });
        let n = 200u32;
        let received = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&received);
        let reader = thread::spawn(move || {
            let mut images = 0usize;
            loop {
                match fast.next_event().unwrap().unwrap() {
                    Event::Image { .. } => {
                        images += 1;
                        seen.store(images, Ordering::Release);
                    }
                    Event::Json { kind, .. } if kind == "done" => return images,
                    _ => {}
                }
            }
        });
        for i in 0..n {
            wait_until("fast client keeps up", Duration::from_secs(60), || {
                received.load(Ordering::Acquire) + 8 > i as usize
            });
            server
                .send_image(&Target::All, &big_frame(i, 128 << 10))
                .unwrap();
        }
        server
            .send_json(&Target::client("fast"), "done", &serde_json::json!(null))
            .unwrap();
        let images = reader.join().unwrap();
        (images, server.stats().frames_dropped)
    }
    let (alone, dropped_alone) = run(false);
    let (beside_stuck, dropped) = run(true);
    assert_eq!(alone, 200);
    assert_eq!(dropped_alone, 0);
    assert_eq!(
        beside_stuck, alone,
        "the stuck client changed what the fast one received"
    );
    assert!(
        dropped > 0,
        "the stuck client's queue never filled (its drops are counted)"
    );
}

#[test]
fn latest_wins_drops_are_counted() {
    let server = start(
        config()
            .queue_bytes(1 << 20)
            .stall_timeout(Duration::from_secs(60)),
    );
    let _stuck = never_reading_client(server.local_addr(), "stuck");
    wait_until("client", LIMIT, || server.stats().clients == 1);
    let n = 200u32;
    for i in 0..n {
        server
            .send_image(&Target::All, &big_frame(i, 128 << 10))
            .unwrap();
    }
    let s = server.stats();
    assert!(s.frames_dropped > 0, "{s:?}");
    assert_eq!(s.frames_queued, u64::from(n), "{s:?}");
    assert!(s.frames_sent + s.frames_dropped <= u64::from(n), "{s:?}");
}

#[test]
fn latest_wins_reader_sees_newest_frame_in_order() {
    let server = start(
        config()
            .queue_bytes(600 << 10)
            .stall_timeout(Duration::from_secs(30)),
    );
    let mut c = connect(&server, ClientOptions::default().client_id("late"));
    read_until(&mut c, |e| is_json(e, "status"));
    let n = 300u32;
    for i in 0..n {
        server
            .send_image(&Target::All, &big_frame(i, 100 << 10))
            .unwrap();
    }
    server
        .send_json(&Target::All, "done", &serde_json::json!(null))
        .unwrap();
    let events = read_until(&mut c, |e| is_json(e, "done"));
    let indices: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            Event::Image { index, .. } => *index,
            _ => None,
        })
        .collect();
    assert!(
        indices.windows(2).all(|w| w[0] < w[1]),
        "out of order: {indices:?}"
    );
    assert_eq!(
        indices.last(),
        Some(&(n - 1)),
        "the newest frame must arrive"
    );
    let s = server.stats();
    assert_eq!(
        indices.len() as u64 + s.frames_dropped,
        u64::from(n),
        "{s:?}"
    );
}

#[test]
fn reliable_overflow_closes_with_1008_and_others_go_on() {
    let server = start(config().policy(Policy::Reliable).queue_bytes(1 << 20));
    let _stuck = never_reading_client(server.local_addr(), "stuck");
    let mut lazy = connect(&server, ClientOptions::default().client_id("lazy"));
    let mut good = connect(&server, ClientOptions::default().client_id("good"));
    read_until(&mut good, |e| is_json(e, "status"));
    wait_until("clients", LIMIT, || server.stats().clients == 3);
    // Fill "lazy" (it reads nothing yet) and the stuck one far past 1 MiB.
    for i in 0..100 {
        let f = big_frame(i, 256 << 10);
        server.send_image(&Target::client("lazy"), &f).unwrap();
        server.send_image(&Target::client("stuck"), &f).unwrap();
    }
    wait_until("overflow closes", LIMIT, || {
        server.stats().closed_overflow >= 1
    });
    // "lazy" now reads: everything it got is in order, then Close 1008.
    let mut last = None;
    while let Some(ev) = lazy.next_event().unwrap() {
        if let Event::Image { index, .. } = ev {
            assert!(index > last, "out of order");
            last = index;
        }
    }
    assert_eq!(lazy.close_code(), Some(1008));
    // The good client is untouched.
    server
        .send_json(
            &Target::client("good"),
            "still_here",
            &serde_json::json!(true),
        )
        .unwrap();
    assert_eq!(read_until(&mut good, |e| is_json(e, "still_here")).len(), 1);
}

#[test]
fn oversized_inbound_closes_1009_for_that_client_only() {
    let server = start(config().max_message_bytes(1024));
    let mut bad = connect(&server, ClientOptions::default().client_id("bad"));
    let mut good = connect(&server, ClientOptions::default().client_id("good"));
    read_until(&mut good, |e| is_json(e, "status"));
    bad.send_text(&"x".repeat(4096)).unwrap();
    while bad.next_event().unwrap().is_some() {}
    assert_eq!(bad.close_code(), Some(1009));
    server
        .send_image(&Target::All, &frame("after", 0, 1, true))
        .unwrap();
    let got = read_until(&mut good, |e| matches!(e, Event::Image { .. }));
    assert_eq!(got.len(), 1);
    wait_until("bad input counted", LIMIT, || {
        server.stats().closed_bad_input == 1
    });
}

#[test]
fn invalid_utf8_and_protocol_errors_close_that_client() {
    let server = start(config());
    let addr = server.local_addr();
    // An unmasked client frame is a protocol error (1002).
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(upgrade_request("/ws", "").as_bytes()).unwrap();
    s.write_all(&[0x81, 0x02, b'h', b'i']).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    // Last frame: Close with code 1002.
    let close_at = all
        .windows(2)
        .rposition(|w| w[0] == 0x88)
        .expect("a close frame");
    assert_eq!(&all[close_at + 2..close_at + 4], &1002u16.to_be_bytes());
    // Invalid UTF-8 in a text message: 1007 (RFC 6455 section 7.4.1, as the mio transport).
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(upgrade_request("/ws", "").as_bytes()).unwrap();
    let mask = [1u8, 2, 3, 4];
    let payload = [0xffu8, 0xfe];
    let mut f = vec![0x81, 0x80 | 2];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&f).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let close_at = all
        .windows(2)
        .rposition(|w| w[0] == 0x88)
        .expect("a close frame");
    assert_eq!(&all[close_at + 2..close_at + 4], &1007u16.to_be_bytes());
    // A binary message: 1003 (unsupported data).
    let (mut ws, _) = tungstenite::connect(ws_url(&server)).unwrap();
    let _status = ws.read().unwrap();
    ws.send(tungstenite::Message::binary(vec![1u8, 2, 3]))
        .unwrap();
    let close = loop {
        match ws.read() {
            Ok(tungstenite::Message::Close(f)) => break f.map(|f| u16::from(f.code)),
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(close, Some(1003));
    wait_until("bad input counted", LIMIT, || {
        server.stats().closed_bad_input == 3
    });
}

#[test]
fn pings_get_pongs_and_later_texts_are_ignored() {
    let server = start(config());
    let (mut ws, _) = tungstenite::connect(ws_url(&server)).unwrap();
    let _status = ws.read().unwrap();
    ws.send(tungstenite::Message::text("not json at all"))
        .unwrap();
    ws.send(tungstenite::Message::text(
        r#"{"type": "feature_flags", "data": {"supports_preview_metadata": true}}"#,
    ))
    .unwrap();
    ws.send(tungstenite::Message::Ping(b"p1".to_vec().into()))
        .unwrap();
    let pong = ws.read().unwrap();
    assert_eq!(pong, tungstenite::Message::Pong(b"p1".to_vec().into()));
    // The late feature_flags was ignored: images still come as legacy.
    server
        .send_image(&Target::All, &frame("e", 0, 1, false))
        .unwrap();
    let bin = ws.read().unwrap().into_data();
    assert_eq!(&bin[..4], &[0, 0, 0, 1]);
}

#[test]
fn keepalive_pings_idle_clients() {
    let server = start(config().ping_interval(Duration::from_millis(50)));
    let (mut ws, _) = tungstenite::connect(ws_url(&server)).unwrap();
    let _status = ws.read().unwrap();
    let msg = ws.read().unwrap();
    assert!(matches!(msg, tungstenite::Message::Ping(_)), "{msg:?}");
}

#[test]
fn plain_routes_and_refusals() {
    let server = start(config().max_clients(1).token(Some("s3cret".into())));
    let addr = server.local_addr();
    let get = |target: &str, extra: &str| {
        raw_http(
            addr,
            &format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n"),
        )
    };
    let viewer = get("/", "");
    assert!(viewer.starts_with("HTTP/1.1 200"), "{viewer}");
    assert!(viewer.contains("text/html"));
    let features = get("/features", "");
    assert!(features.starts_with("HTTP/1.1 200"));
    let body = features.split("\r\n\r\n").nth(1).unwrap();
    let flags: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(flags["supports_preview_metadata"], true);
    assert!(status_line(&get("/nope", "")).contains("404"));
    assert!(status_line(&raw_http(
        addr,
        "POST /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
    ))
    .contains("405"));
    assert!(status_line(&get("/ws", "")).contains("401"), "no token");
    assert!(status_line(&raw_http(addr, &upgrade_request("/ws?token=wrong", ""))).contains("401"));
    assert!(status_line(&raw_http(
        addr,
        &upgrade_request("/ws?token=s3cret", "Origin: http://evil.example\r\n")
    ))
    .contains("403"));
    assert!(status_line(&raw_http(
        addr,
        "GET /ws?token=s3cret HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    ))
    .contains("400"));
    assert!(status_line(&raw_http(addr, "NOT HTTP AT ALL\r\n\r\n")).contains("400"));
    let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    assert!(status_line(&raw_http(addr, &huge)).contains("431"));
    // One client fits; the second is refused with 503.
    let _one = Client::connect(&ws_url(&server), ClientOptions::default().token("s3cret")).unwrap();
    wait_until("one client", LIMIT, || server.stats().clients == 1);
    match Client::connect(&ws_url(&server), ClientOptions::default().token("s3cret")) {
        Err(ClientError::Refused(503)) => {}
        other => panic!("{other:?}"),
    }
    assert!(
        server.stats().handshakes_refused >= 9,
        "{:?}",
        server.stats()
    );
}

#[test]
fn slow_handshake_is_cut_at_the_timeout() {
    let server = start(config().handshake_timeout(Duration::from_millis(200)));
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    // The server goes on.
    let _c = connect(&server, ClientOptions::default());
}

#[test]
fn shutdown_sends_close_1001_and_later_sends_fail() {
    let server = start(config());
    let mut c = connect(&server, ClientOptions::default());
    read_until(&mut c, |e| is_json(e, "status"));
    let sink = server.sink();
    sink.send_image(&Target::All, &frame("last", 0, 1, true))
        .unwrap();
    let reader = thread::spawn(move || {
        let mut events = Vec::new();
        while let Some(ev) = c.next_event().unwrap() {
            events.push(ev);
        }
        (events, c.close_code())
    });
    server.shutdown(Duration::from_secs(5));
    let (events, code) = reader.join().unwrap();
    assert_eq!(code, Some(1001));
    assert!(
        matches!(events.last(), Some(Event::Image { .. })),
        "queued frame flushed first: {events:?}"
    );
    assert_eq!(
        sink.send_text(&Target::All, json_event("x", &serde_json::json!(0))),
        Err(SinkError::ShutDown)
    );
    assert_eq!(server.stats().clients, 0);
    // New connections are refused.
    assert!(TcpStream::connect(server.local_addr())
        .map(|mut s| {
            let _ = s.write_all(upgrade_request("/ws", "").as_bytes());
            let mut b = [0u8; 16];
            s.set_read_timeout(Some(LIMIT)).unwrap();
            matches!(s.read(&mut b), Ok(0) | Err(_))
        })
        .unwrap_or(true));
}

#[test]
fn stalled_client_is_closed_after_the_stall_timeout() {
    let server = start(
        config()
            .stall_timeout(Duration::from_millis(300))
            .queue_bytes(64 << 20),
    );
    let _stuck = never_reading_client(server.local_addr(), "stuck");
    wait_until("client", LIMIT, || server.stats().clients == 1);
    // Enough to fill the kernel buffers on both sides.
    for i in 0..64 {
        server
            .send_image(&Target::All, &big_frame(i, 512 << 10))
            .unwrap();
    }
    wait_until("stall close", LIMIT, || server.stats().closed_stall == 1);
    wait_until("client gone", LIMIT, || server.stats().clients == 0);
}

#[test]
fn frames_are_shared_not_copied() {
    let server = start(config());
    let _c = connect(&server, ClientOptions::default());
    let f = big_frame(0, 1000);
    let before = Arc::strong_count(f.png_arc());
    server.send_image(&Target::All, &f).unwrap();
    wait_until("frame written", LIMIT, || server.stats().frames_sent == 1);
    wait_until("queue let go of the frame", LIMIT, || {
        Arc::strong_count(f.png_arc()) == before
    });
}

#[test]
fn ping_flood_from_a_non_reader_closes_only_that_client() {
    let server = start(config().stall_timeout(Duration::from_secs(60)));
    let mut good = connect(&server, ClientOptions::default().client_id("good"));
    read_until(&mut good, |e| is_json(e, "status"));
    let s = never_reading_client(server.local_addr(), "flooder");
    wait_until("both clients", LIMIT, || server.stats().clients == 2);
    // Stall its writer first (big frames it never reads), then flood pings whose pongs pile up.
    for i in 0..40 {
        server
            .send_image(&Target::client("flooder"), &big_frame(i, 1 << 20))
            .unwrap();
    }
    let mut w = &s;
    let ping = {
        let mask = [9u8, 8, 7, 6];
        let payload = [0x55u8; 125];
        let mut f = vec![0x89, 0x80 | 125];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    };
    for _ in 0..2000 {
        if w.write_all(&ping).is_err() {
            break;
        }
    }
    wait_until("flood closed", LIMIT, || {
        server.stats().closed_bad_input == 1
    });
    server
        .send_json(&Target::client("good"), "ok", &serde_json::json!(1))
        .unwrap();
    assert_eq!(read_until(&mut good, |e| is_json(e, "ok")).len(), 1);
}

#[test]
fn drop_shuts_the_server_down() {
    let server = start(config());
    let addr = server.local_addr();
    let mut c = connect(&server, ClientOptions::default());
    read_until(&mut c, |e| is_json(e, "status"));
    drop(server);
    while c.next_event().unwrap().is_some() {}
    assert_eq!(c.close_code(), Some(1001));
    // The listener is gone.
    assert!(TcpStream::connect(addr).is_err());
}

#[test]
fn peer_that_never_answers_pings_is_closed() {
    let server = start(config().ping_interval(Duration::from_millis(50)));
    let _silent = never_reading_client(server.local_addr(), "silent");
    let mut alive = connect(&server, ClientOptions::default().client_id("alive"));
    wait_until("two clients", LIMIT, || server.stats().clients == 2);
    // The client answers pings while it reads; the raw socket never does.
    alive
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    wait_until("silent peer closed", LIMIT, || {
        let _ = alive.next_event();
        server.stats().clients == 1
    });
    server
        .send_json(&Target::client("alive"), "still", &serde_json::json!(1))
        .unwrap();
    alive.set_read_timeout(None).unwrap();
    let got = read_until(&mut alive, |e| is_json(e, "still"));
    assert!(
        got.iter().all(|e| matches!(e, Event::Json { .. })),
        "{got:?}"
    );
}

#[test]
fn huge_durations_do_not_panic() {
    let server = start(
        config()
            .ping_interval(Duration::MAX)
            .handshake_timeout(Duration::MAX)
            .stall_timeout(Duration::MAX)
            .write_timeout(Duration::MAX),
    );
    let mut c = connect(&server, ClientOptions::default());
    read_until(&mut c, |e| is_json(e, "status"));
    server
        .send_image(&Target::All, &frame("e", 0, 1, true))
        .unwrap();
    assert!(matches!(c.next_event().unwrap(), Some(Event::Image { .. })));
    server.shutdown(Duration::MAX);
    while c.next_event().unwrap().is_some() {}
    assert_eq!(c.close_code(), Some(1001));
}
