//! pngcast-mio against plain blocking tungstenite clients and raw sockets on loopback.
//! No test has a wall-clock threshold: timeouts only guard against hangs.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use pngcast_protocol::queue::Policy;
use pngcast_protocol::sink::{FrameSink, SinkError, Target};
use pngcast_protocol::wire::TextMessage;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

#[test]
fn status_comes_first_with_the_sid() {
    let server = start(config());
    let (_ws, sid) = connect(&server, "/ws?clientId=abc", false);
    assert_eq!(sid, "abc");
    let (_ws2, sid2) = connect(&server, "/api/ws", false);
    assert_eq!(sid2.len(), 32);
    assert!(
        sid2.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "{sid2}"
    );
    assert!(wait_for(|| server.stats().clients == 2));
}

#[test]
fn legacy_and_metadata_clients_get_their_own_form() {
    let server = start(config());
    let (mut legacy, _) = connect(&server, "/ws?clientId=old", false);
    let (mut flagged, _) = connect(&server, "/ws?clientId=new", true);
    let frames: Vec<_> = (0..5).map(|i| frame(i, 1000 + i as usize * 7)).collect();
    for f in &frames {
        server.send_image(&Target::All, f).unwrap();
    }
    for f in &frames {
        expect_legacy(&mut legacy, f);
        expect_meta(&mut flagged, f);
    }
    // Announcements off: exactly what ComfyUI's SaveImageWebsocket emits (binary only).
    let quiet = frame_with(9, 300, false);
    server.send_image(&Target::All, &quiet).unwrap();
    match next_message(&mut legacy) {
        Got::Legacy(png) => assert!(png == quiet.png()),
        other => panic!("expected type 1 without announcement, got {other:?}"),
    }
    expect_meta(&mut flagged, &quiet);
}

#[test]
fn later_texts_are_ignored_and_malformed_first_text_means_legacy() {
    let server = start(config());
    let (mut ws, _) = connect(&server, "/ws", false);
    ws.send(Message::text("not json at all")).unwrap();
    ws.send(Message::text(
        r#"{"type": "feature_flags", "data": {"supports_preview_metadata": true}}"#,
    ))
    .unwrap();
    // Round trip: a ping is answered after both texts were read.
    ws.send(Message::Ping(vec![1, 2].into())).unwrap();
    loop {
        if let Message::Pong(p) = ws.read().unwrap() {
            assert_eq!(&p[..], &[1, 2]);
            break;
        }
    }
    let f = frame(1, 64);
    server.send_image(&Target::All, &f).unwrap();
    expect_legacy(&mut ws, &f);
}

#[test]
fn broadcast_keeps_order_per_client() {
    let server = start(config().policy(Policy::Reliable));
    let mut clients: Vec<_> = (0..3)
        .map(|i| connect(&server, &format!("/ws?clientId=c{i}"), i == 1).0)
        .collect();
    let frames: Vec<_> = (0..40).map(|i| frame(i, 5000 + i as usize)).collect();
    for f in &frames {
        server
            .send_json(
                &Target::All,
                &format!("before{}", f.meta().index),
                &serde_json::json!({}),
            )
            .unwrap();
        server.send_image(&Target::All, f).unwrap();
    }
    for (c, ws) in clients.iter_mut().enumerate() {
        for f in &frames {
            assert_eq!(expect_event(ws), format!("before{}", f.meta().index));
            if c == 1 {
                expect_meta(ws, f);
            } else {
                expect_legacy(ws, f);
            }
        }
    }
    let st = server.stats();
    assert_eq!(st.frames_queued, 120);
    assert!(wait_for(|| server.stats().frames_sent == 120));
    assert_eq!(server.stats().frames_dropped, 0);
}

#[test]
fn targeting_by_client_id() {
    let server = start(config());
    let (mut a, _) = connect(&server, "/ws?clientId=a", false);
    let (mut b, _) = connect(&server, "/ws?clientId=b", true);
    let only_a = frame(1, 100);
    let only_b = frame(2, 100);
    server.send_image(&Target::client("a"), &only_a).unwrap();
    server.send_image(&Target::client("b"), &only_b).unwrap();
    server
        .send_text(
            &Target::client("b"),
            r#"{"type": "just_b", "data": {}}"#.into(),
        )
        .unwrap();
    server
        .send_json(&Target::All, "marker", &serde_json::json!({"n": 1}))
        .unwrap();
    expect_legacy(&mut a, &only_a);
    assert_eq!(expect_event(&mut a), "marker");
    expect_meta(&mut b, &only_b);
    assert_eq!(expect_event(&mut b), "just_b");
    assert_eq!(expect_event(&mut b), "marker");
    // An unknown id reaches nobody and disturbs nobody.
    server
        .send_image(&Target::client("nobody"), &only_a)
        .unwrap();
    server
        .send_json(&Target::All, "marker2", &serde_json::json!({}))
        .unwrap();
    assert_eq!(expect_event(&mut a), "marker2");
    assert_eq!(expect_event(&mut b), "marker2");
}

#[test]
fn two_hundred_clients_receive_every_frame() {
    let server = start(config().policy(Policy::Reliable));
    let mut clients: Vec<_> = (0..200).map(|_| connect(&server, "/ws", false).0).collect();
    assert_eq!(server.stats().clients, 200);
    let frames: Vec<_> = (0..20).map(|i| frame(i, 16 * 1024)).collect();
    for f in &frames {
        server.send_image(&Target::All, f).unwrap();
    }
    for ws in &mut clients {
        for f in &frames {
            expect_legacy(ws, f);
        }
    }
    assert!(wait_for(|| server.stats().frames_sent == 200 * 20));
    assert_eq!(server.stats().frames_dropped, 0);
}

/// A client that never reads must not hold back a reader: the reader gets every frame, one at a
/// time in lockstep (it could not if the loop blocked on the stuck socket), and the stuck client's
/// queue drops (LatestWins) and counts.
#[test]
fn a_client_that_never_reads_does_not_slow_the_others() {
    let server = start(config().queue_bytes(1 << 20));
    let (_stuck, _) = connect(&server, "/ws?clientId=stuck", false);
    let (mut reader, _) = connect(&server, "/ws?clientId=reader", false);
    let n = 150;
    let mut received = 0;
    for i in 0..n {
        let f = frame(i, 256 * 1024);
        server.send_image(&Target::All, &f).unwrap();
        expect_legacy(&mut reader, &f);
        received += 1;
    }
    assert_eq!(received, n);
    // The reader may see the last frame before the loop queued it for the stuck client.
    assert!(
        wait_for(|| server.stats().frames_queued == 2 * n as u64),
        "{:?}",
        server.stats()
    );
    let st = server.stats();
    // 150 x 256 KiB = 37.5 MiB cannot fit in a 1 MiB queue plus the socket buffers.
    assert!(st.frames_dropped > 0, "{st:?}");
    assert_eq!(st.clients, 2);
}

#[test]
fn reliable_overflow_closes_that_client_with_1008() {
    let server = start(config().policy(Policy::Reliable).queue_bytes(512 * 1024));
    let (mut stuck, _) = connect(&server, "/ws?clientId=stuck", false);
    let (mut fine, _) = connect(&server, "/ws?clientId=fine", false);
    let mut sent = 0;
    while server.stats().closed_overflow == 0 && sent < 2000 {
        let f = frame(sent, 128 * 1024);
        server.send_image(&Target::client("stuck"), &f).unwrap();
        sent += 1;
        if sent % 20 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    assert!(
        wait_for(|| server.stats().closed_overflow == 1),
        "{:?}",
        server.stats()
    );
    // The stuck client gets the frames that were in flight, in order, then Close 1008.
    let mut next = 0;
    loop {
        match next_message(&mut stuck) {
            Got::Text(TextMessage::Announcement(meta)) => assert_eq!(meta.index, next),
            Got::Legacy(_) => next += 1,
            Got::Close(code) => {
                assert_eq!(code, Some(CloseCode::Policy));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(next < sent);
    // The other client is untouched.
    let f = frame(7, 10);
    server.send_image(&Target::All, &f).unwrap();
    expect_legacy(&mut fine, &f);
    assert_eq!(server.stats().clients, 1);
}

#[test]
fn oversized_inbound_message_closes_that_client_with_1009() {
    let server = start(config().max_message_bytes(1024));
    let (mut big, _) = connect(&server, "/ws?clientId=big", false);
    let (mut other, _) = connect(&server, "/ws?clientId=other", false);
    big.send(Message::text("x".repeat(5000))).unwrap();
    assert_eq!(read_until_close(&mut big), Some(CloseCode::Size));
    let f = frame(3, 2000);
    server.send_image(&Target::All, &f).unwrap();
    expect_legacy(&mut other, &f);
    assert!(wait_for(|| server.stats().closed_bad_input == 1));
    assert_eq!(server.stats().clients, 1);
}

#[test]
fn bad_frames_close_only_their_client() {
    let server = start(config());
    let (mut binary, _) = connect(&server, "/ws", false);
    binary.send(Message::binary(vec![1, 2, 3])).unwrap();
    assert_eq!(read_until_close(&mut binary), Some(CloseCode::Unsupported));

    // An unmasked frame (clients must mask): a protocol error, 1002.
    let mut raw = TcpStream::connect(server.local_addr()).unwrap();
    raw.set_read_timeout(Some(HANG_GUARD)).unwrap();
    // Pipelined in one write: the frame arrives with the head and must still be read.
    let mut bytes = upgrade_request("/ws", "");
    bytes.extend_from_slice(&[0x81, 0x02, b'h', b'i']);
    raw.write_all(&bytes).unwrap();
    let mut bytes = Vec::new();
    let _ = raw.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    // The last frame is a close with code 1002.
    let close_at = bytes
        .windows(2)
        .rposition(|w| w[0] == 0x88)
        .expect("close frame");
    assert_eq!(&bytes[close_at + 2..close_at + 4], &1002u16.to_be_bytes());

    let (mut ok, _) = connect(&server, "/ws", false);
    let f = frame(1, 10);
    server.send_image(&Target::All, &f).unwrap();
    expect_legacy(&mut ok, &f);
}

#[test]
fn http_routes_and_refusals() {
    let server = start(config().max_handshake_bytes(1024));
    let viewer = http(&server, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert_eq!(status_of(&viewer), 200);
    assert!(viewer.to_ascii_lowercase().contains("text/html"));
    assert!(
        viewer.contains("<html") || viewer.contains("<!DOCTYPE") || viewer.contains("<!doctype")
    );
    let features = http(
        &server,
        b"GET /features HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    );
    assert_eq!(status_of(&features), 200);
    let body = features.split("\r\n\r\n").nth(1).unwrap();
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["supports_preview_metadata"], true);

    assert_eq!(
        status_of(&http(
            &server,
            b"GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        )),
        404
    );
    assert_eq!(
        status_of(&http(
            &server,
            b"POST /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
        )),
        405
    );
    assert_eq!(
        status_of(&http(&server, b"\x16\x03\x01 garbage\r\n\r\n")),
        400
    );
    let foreign = upgrade_request("/ws", "Origin: http://evil.example\r\n");
    assert_eq!(status_of(&http(&server, &foreign)), 403);
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(4000)
    );
    assert_eq!(status_of(&http(&server, huge.as_bytes())), 431);
    // Same-origin browsers are welcome.
    let addr = server.local_addr();
    let same = upgrade_request("/ws", &format!("Origin: http://{addr}\r\n")).to_vec();
    let same = String::from_utf8(same)
        .unwrap()
        .replace("Host: 127.0.0.1", &format!("Host: {addr}"));
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(HANG_GUARD)).unwrap();
    s.write_all(same.as_bytes()).unwrap();
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"HTTP/1.1 101");
    // Nothing of this disturbed the server.
    let (_ws, _) = connect(&server, "/ws", false);
    assert_eq!(server.stats().handshakes_refused, 5);
}

#[test]
fn a_request_followed_by_a_half_close_is_still_answered() {
    let server = start(config());
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(HANG_GUARD)).unwrap();
    s.write_all(b"GET /features HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert_eq!(status_of(&out), 200);
    // A truncated head followed by EOF is just dropped.
    let mut t = TcpStream::connect(server.local_addr()).unwrap();
    t.set_read_timeout(Some(HANG_GUARD)).unwrap();
    t.write_all(b"GET /features HTT").unwrap();
    t.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = Vec::new();
    let _ = t.read_to_end(&mut out);
    assert!(out.is_empty());
}

#[test]
fn token_is_required_when_configured() {
    let server = start(config().token(Some("s3cret".into())));
    assert_eq!(status_of(&http(&server, &upgrade_request("/ws", ""))), 401);
    assert_eq!(
        status_of(&http(&server, &upgrade_request("/ws?token=wrong", ""))),
        401
    );
    let (_ws, _) = connect(&server, "/ws?token=s3cret", false);
    let bearer = connect_raw(&server, "/ws", &[("Authorization", "Bearer s3cret")]);
    assert!(bearer.is_ok());
}

#[test]
fn over_the_client_limit_is_503() {
    let server = start(config().max_clients(2));
    let (_a, _) = connect(&server, "/ws", false);
    let (_b, _) = connect(&server, "/ws", false);
    assert_eq!(status_of(&http(&server, &upgrade_request("/ws", ""))), 503);
    drop(_a);
    assert!(wait_for(|| server.stats().clients == 1));
    let (_c, _) = connect(&server, "/ws", false);
}

#[test]
fn slow_handshake_is_dropped_at_the_timeout() {
    let server = start(config().handshake_timeout(Duration::from_millis(200)));
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(HANG_GUARD)).unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    let mut buf = Vec::new();
    // The server answers 408 and closes (as the blocking transport does).
    let _ = s.read_to_end(&mut buf);
    assert!(
        buf.starts_with(b"HTTP/1.1 408 "),
        "{:?}",
        String::from_utf8_lossy(&buf)
    );
    assert!(wait_for(|| server.stats().handshakes_refused == 1));
}

#[test]
fn reconnect_replaces_the_old_connection() {
    let server = start(config());
    let (mut old, _) = connect(&server, "/ws?clientId=same", false);
    let (mut new, _) = connect(&server, "/ws?clientId=same", true);
    assert_eq!(read_until_close(&mut old), Some(CloseCode::Normal));
    // The old connection's cleanup has run once the server counts one client.
    assert!(wait_for(|| server.stats().clients == 1));
    let f = frame(5, 100);
    server.send_image(&Target::client("same"), &f).unwrap();
    expect_meta(&mut new, &f);
    drop(old);
    let g = frame(6, 100);
    server.send_image(&Target::client("same"), &g).unwrap();
    expect_meta(&mut new, &g);
    assert_eq!(server.stats().clients, 1);
}

#[test]
fn dead_sockets_only_end_their_client() {
    let server = start(config().policy(Policy::Reliable));
    let (mut keeper, _) = connect(&server, "/ws?clientId=keeper", false);
    let mut doomed: Vec<_> = (0..10).map(|_| connect(&server, "/ws", false).0).collect();
    for i in 0..30 {
        if i == 10 {
            doomed.clear();
        }
        server
            .send_image(&Target::All, &frame(i, 64 * 1024))
            .unwrap();
    }
    for i in 0..30 {
        expect_legacy(&mut keeper, &frame(i, 64 * 1024));
    }
    assert!(
        wait_for(|| server.stats().clients == 1),
        "{:?}",
        server.stats()
    );
    assert_eq!(server.stats().clients_closed, 10);
}

#[test]
fn stalled_client_is_closed_after_the_stall_timeout() {
    let server = start(
        config()
            .stall_timeout(Duration::from_millis(300))
            .queue_bytes(64 << 20),
    );
    let (_stuck, _) = connect(&server, "/ws", false);
    // Enough to fill the socket buffers; the queue keeps the rest (no overflow).
    for i in 0..64 {
        server
            .send_image(&Target::All, &frame(i, 256 * 1024))
            .unwrap();
    }
    assert!(
        wait_for(|| server.stats().closed_stall == 1),
        "{:?}",
        server.stats()
    );
    assert_eq!(server.stats().clients, 0);
    assert!(server.stats().frames_dropped > 0);
}

#[test]
fn idle_clients_get_pings() {
    let server = start(config().ping_interval(Duration::from_millis(50)));
    let (mut ws, _) = connect(&server, "/ws", false);
    let mut pings = 0;
    while pings < 2 {
        if let Message::Ping(_) = ws.read().unwrap() {
            pings += 1;
        }
    }
}

#[test]
fn shutdown_sends_1001_after_what_is_queued() {
    let server = start(config().policy(Policy::Reliable));
    let (mut a, _) = connect(&server, "/ws", false);
    let (mut b, _) = connect(&server, "/ws", true);
    let frames: Vec<_> = (0..5).map(|i| frame(i, 300 * 1024)).collect();
    for f in &frames {
        server.send_image(&Target::All, f).unwrap();
    }
    let sink = server.sink();
    let reader = std::thread::spawn(move || {
        for f in &frames {
            expect_legacy(&mut a, f);
            expect_meta(&mut b, f);
        }
        (read_until_close(&mut a), read_until_close(&mut b))
    });
    sink.shutdown(Duration::from_secs(10));
    let (ca, cb) = reader.join().unwrap();
    assert_eq!(ca, Some(CloseCode::Away));
    assert_eq!(cb, Some(CloseCode::Away));
    assert_eq!(
        server.send_image(&Target::All, &frame(9, 1)),
        Err(SinkError::ShutDown)
    );
    assert_eq!(server.stats().clients, 0);
    assert_eq!(server.stats().frames_sent, 10);
    // The listener is closed.
    assert!(TcpStream::connect(server.local_addr()).is_err());
}

#[test]
fn bind_refuses_bad_configs() {
    let open = pngcast_protocol::http::ServerConfig::default().addr("0.0.0.0:0".parse().unwrap());
    assert!(matches!(
        pngcast_mio::Server::bind(open),
        Err(pngcast_mio::Error::Config(_))
    ));
    let taken = start(config());
    let again = config().addr(taken.local_addr());
    assert!(matches!(
        pngcast_mio::Server::bind(again),
        Err(pngcast_mio::Error::Bind { .. })
    ));
    let sink: Arc<dyn FrameSink> = taken.sink();
    drop(taken);
    assert_eq!(
        sink.send_text(&Target::All, "x".into()),
        Err(SinkError::ShutDown)
    );
}

/// A peer that never answers our pings (half-open, or a dead host) is dropped after three ping
/// intervals plus the stall timeout; a peer that answers them stays.
#[test]
fn silent_peers_are_dropped_and_answering_ones_stay() {
    let config = config()
        .ping_interval(Duration::from_millis(50))
        .stall_timeout(Duration::from_millis(200));
    let server = start(config);
    let mut silent = TcpStream::connect(server.local_addr()).unwrap();
    silent
        .write_all(&upgrade_request("/ws?clientId=silent", ""))
        .unwrap();
    let (mut live, _) = connect(&server, "/ws?clientId=live", false);
    assert!(wait_for(|| server.stats().clients_accepted == 2));
    // The live client reads (and so answers pings) until the silent one is gone.
    let mut pings = 0;
    while server.stats().clients_closed == 0 {
        if let Message::Ping(_) = live.read().unwrap() {
            pings += 1;
        }
        assert!(
            pings < 2000,
            "the silent peer was never dropped: {:?}",
            server.stats()
        );
    }
    let st = server.stats();
    assert_eq!(
        (st.clients, st.clients_closed, st.closed_stall),
        (1, 1, 1),
        "{st:?}"
    );
    // The live client is still served.
    let f = frame(1, 10);
    server.send_image(&Target::client("live"), &f).unwrap();
    expect_legacy(&mut live, &f);
    drop(silent);
}

/// Random bytes before and after the handshake, random disconnects: every peer gets a refusal,
/// a close or nothing, and the server goes on serving a well-behaved client.
#[test]
fn garbage_never_hurts_the_server() {
    let server = start(config().max_message_bytes(4096));
    let (mut good, _) = connect(&server, "/ws?clientId=good", false);
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    for round in 0..200 {
        let mut s = TcpStream::connect(server.local_addr()).unwrap();
        s.set_read_timeout(Some(HANG_GUARD)).unwrap();
        let mut bytes = Vec::new();
        if round % 2 == 0 {
            bytes.extend_from_slice(&upgrade_request("/ws", ""));
        }
        let len = rng.usize(0..6000);
        bytes.extend((0..len).map(|_| rng.u8(..)));
        // Some peers finish their request with the blank line the parser waits for.
        if round % 3 == 0 {
            bytes.extend_from_slice(b"\r\n\r\n");
        }
        let _ = s.write_all(&bytes);
        if round % 4 == 0 {
            // Vanish without reading anything.
            continue;
        }
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    let f = frame(1, 1000);
    server.send_image(&Target::All, &f).unwrap();
    expect_legacy(&mut good, &f);
    assert!(
        wait_for(|| server.stats().clients == 1),
        "{:?}",
        server.stats()
    );
}

/// Shutdown with a client that never reads: the deadline ends the flush and the loop still stops.
#[test]
fn shutdown_ends_at_the_deadline_with_a_stuck_client() {
    let server = start(config());
    let (_stuck, _) = connect(&server, "/ws", false);
    for i in 0..64 {
        server
            .send_image(&Target::All, &frame(i, 256 * 1024))
            .unwrap();
    }
    server.shutdown(Duration::from_millis(100));
    let st = server.stats();
    assert_eq!((st.clients, st.clients_closed), (0, 1), "{st:?}");
    assert!(st.frames_sent < 64);
}

#[test]
fn one_loop_serves_replaces_and_limits() {
    let server = start_loops(config().max_clients(2), 1);
    let (mut a, _) = connect(&server, "/ws?clientId=a", false);
    let (mut a2, _) = connect(&server, "/ws?clientId=a", true);
    assert_eq!(read_until_close(&mut a), Some(CloseCode::Normal));
    let (_b, _) = connect(&server, "/ws?clientId=b", false);
    assert!(wait_for(|| server.stats().clients == 2));
    assert_eq!(
        status_of(&http(&server, &upgrade_request("/ws?clientId=c", ""))),
        503
    );
    let f = frame(1, 100);
    server.send_image(&Target::client("a"), &f).unwrap();
    expect_meta(&mut a2, &f);
}

#[test]
fn a_client_id_moving_between_loops_keeps_one_live_client() {
    let server = start(config().max_clients(2));
    // Six connections with one id land in every loop in turn; each replaces the one before.
    let mut old = connect(&server, "/ws?clientId=x", false).0;
    for _ in 0..5 {
        let (new, _) = connect(&server, "/ws?clientId=x", true);
        assert_eq!(read_until_close(&mut old), Some(CloseCode::Normal));
        old = new;
    }
    assert!(wait_for(|| server.stats().clients == 1));
    // One id counts once against the limit: a second id fits, a third does not.
    let (_y, _) = connect(&server, "/ws?clientId=y", false);
    assert_eq!(
        status_of(&http(&server, &upgrade_request("/ws?clientId=z", ""))),
        503
    );
    let f = frame(3, 100);
    server.send_image(&Target::client("x"), &f).unwrap();
    expect_meta(&mut old, &f);
    let reader = std::thread::spawn(move || read_until_close(&mut old));
    server.sink().shutdown(Duration::from_secs(5));
    assert_eq!(reader.join().unwrap(), Some(CloseCode::Away));
    assert_eq!(server.stats().clients, 0);
}

#[test]
fn loops_beyond_the_maximum_are_clamped() {
    // More loops than MAX_LOOPS: the server runs MAX_LOOPS, and clients in every one of them
    // get the frames (the callers' wake mask has one bit per loop).
    let server = start_loops(config(), 1000);
    let mut clients: Vec<_> = (0..pngcast_mio::MAX_LOOPS + 2)
        .map(|i| connect(&server, &format!("/ws?clientId=c{i}"), true).0)
        .collect();
    assert!(wait_for(|| server.stats().clients == clients.len()));
    let f = frame(7, 1000);
    server.send_image(&Target::All, &f).unwrap();
    for c in &mut clients {
        expect_meta(c, &f);
    }
}
