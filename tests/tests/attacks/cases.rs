//! The attack cases, generic over the backend.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use pngcast_protocol::http::ServerConfig;
use pngcast_protocol::sink::Target;

use crate::suite::{recv_item, test_frame, Backend, Client, Harness, Msg, Net, READ_TIMEOUT};

/// A raw upgrade request for `path`.
fn upgrade(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
}

/// Sends a request and returns the status of the answer (0 when the connection ended first).
fn status_of(addr: SocketAddr, request: &str) -> (u16, TcpStream) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&head);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, s)
}

/// A masked client frame.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [1u8, 2, 3, 4];
    let mut v = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    v.extend_from_slice(&mask);
    v.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    v
}

/// Slowloris: far more connections than `max_handshakes` trickle their heads and never finish.
/// New clients still get their 101 at once (each new head evicts the oldest unfinished one,
/// which gets 408), long before the slow heads' own deadline.
pub fn slow_heads_do_not_keep_new_clients_out<B: Backend>() {
    let config = ServerConfig::default()
        .max_clients(8)
        .max_handshakes(16)
        .handshake_timeout(Duration::from_secs(60));
    let h = Net::start::<B>(config);
    let started = Instant::now();
    let mut slow: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut s = TcpStream::connect(h.addr()).unwrap();
            s.write_all(b"GET /ws HTTP/1.1\r\nHo").unwrap();
            s
        })
        .collect();
    // A byte more from each, as a slowloris client does.
    for s in &mut slow {
        let _ = s.write_all(b"s");
    }
    let mut good = Vec::new();
    for i in 0..5 {
        let mut c = h.connect(Some(&format!("good{i}")), false);
        h.sink()
            .send_json(&Target::client(format!("good{i}")), "hi", &1.into())
            .unwrap();
        assert!(c.recv().text().contains("\"hi\""));
        good.push(c);
    }
    // Long before the heads' own deadline: only eviction let them in.
    assert!(started.elapsed() < Duration::from_secs(60));
    // The evicted heads got 408 (or were closed): the oldest one is gone.
    let mut first = slow.remove(0);
    first.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let mut answer = Vec::new();
    let _ = first.read_to_end(&mut answer);
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 408 "),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

/// Clients flooding one-byte text frames while reading are closed with 1008; a reading client
/// gets every frame.
pub fn text_flooders_are_closed_1008<B: Backend>() {
    let config = ServerConfig::default().inbound_messages(50);
    let h = Net::start::<B>(config);
    let sink = h.sink();
    let mut good = h.connect(Some("good"), false);
    let flooders: Vec<_> = (0..8)
        .map(|i| {
            let c = h.raw(&format!("/ws?clientId=flood{i}"));
            std::thread::spawn(move || {
                let mut c = c;
                let frame = client_frame(0x1, b"x");
                let mut burst = Vec::new();
                for _ in 0..64 {
                    burst.extend_from_slice(&frame);
                }
                let sock = c.ws.get_mut();
                for _ in 0..200 {
                    if sock.write_all(&burst).is_err() {
                        break;
                    }
                }
                // Read what it was sent: the status, then the close.
                loop {
                    match c.recv() {
                        Msg::Text(_) | Msg::Binary(_) => {}
                        Msg::Close(code) => return code,
                        Msg::Ended(_) => return None,
                    }
                }
            })
        })
        .collect();
    for i in 0..50 {
        sink.send_image(
            &Target::client("good"),
            &test_frame("ev", i, 50, 1000, false),
        )
        .unwrap();
    }
    for i in 0..50 {
        assert_eq!(recv_item(&mut *good).test_index(), Some(i));
    }
    let mut closed = 0;
    for f in flooders {
        let code = f.join().unwrap();
        // A flooder whose socket was reset under its writes may miss the close frame itself.
        assert!(matches!(code, Some(1008) | None), "{code:?}");
        closed += usize::from(code == Some(1008));
    }
    assert!(closed >= 1);
    let s = sink.stats();
    assert_eq!(s.closed_flood, 8, "{s:?}");
}

/// A client that starts a message and never finishes it is closed with 1008 at the message
/// timeout (its partial message no longer holds memory until the keepalive gives up).
pub fn unfinished_message_is_closed_1008<B: Backend>() {
    let config = ServerConfig::default().message_timeout(Duration::from_millis(300));
    let h = Net::start::<B>(config);
    let mut c = h.raw("/ws?clientId=partial");
    assert!(c.recv().text().contains("\"status\""));
    // A 100-byte text frame of which only the header and 10 bytes arrive.
    let mut frame = vec![0x81, 0x80 | 100, 1, 2, 3, 4];
    frame.extend_from_slice(&[b'a' ^ 1; 10]);
    c.ws.get_mut().write_all(&frame).unwrap();
    assert_eq!(c.recv(), Msg::Close(Some(1008)));
}

/// With the server full, a client reconnecting with its own clientId gets in (it replaces its
/// old connection, which gets 1000), while a new id gets 503.
pub fn reclaim_id_while_full<B: Backend>() {
    let h = Net::start::<B>(ServerConfig::default().max_clients(2));
    let mut a = h.connect(Some("a"), false);
    let _b = h.connect(Some("b"), false);
    let (status, _) = status_of(h.addr(), &upgrade("/ws?clientId=c"));
    assert_eq!(status, 503);
    let mut a2 = h.connect(Some("a"), false);
    assert_eq!(a.recv(), Msg::Close(Some(1000)));
    h.sink()
        .send_json(&Target::client("a"), "back", &1.into())
        .unwrap();
    assert!(a2.recv().text().contains("\"back\""));
}

/// Many upgrades at once against the last places: never more 101s than `max_clients`.
pub fn racing_upgrades_never_pass_the_cap<B: Backend>() {
    const MAX: usize = 6;
    const TRIES: usize = 40;
    for _round in 0..3 {
        let h = Net::start::<B>(ServerConfig::default().max_clients(MAX));
        let addr = h.addr();
        let barrier = Arc::new(Barrier::new(TRIES));
        let tries: Vec<_> = (0..TRIES)
            .map(|i| {
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let request = upgrade(&format!("/ws?clientId=r{i}"));
                    barrier.wait();
                    status_of(addr, &request)
                })
            })
            .collect();
        let results: Vec<(u16, TcpStream)> = tries.into_iter().map(|t| t.join().unwrap()).collect();
        let upgraded = results.iter().filter(|r| r.0 == 101).count();
        let refused = results.iter().filter(|r| r.0 == 503).count();
        assert_eq!(
            upgraded,
            MAX,
            "statuses: {:?}",
            results.iter().map(|r| r.0).collect::<Vec<_>>()
        );
        assert_eq!(upgraded + refused, TRIES);
        assert_eq!(h.sink().stats().clients, MAX);
        drop(results);
    }
}

/// A client that stops reading is dropped within a second of the stall timeout after its last
/// byte moved (a bound on the stall detector's granularity, not on speed).
pub fn stalled_reader_is_dropped_near_the_stall_timeout<B: Backend>() {
    let stall = Duration::from_secs(2);
    let h = Net::start::<B>(
        ServerConfig::default()
            .policy(pngcast_protocol::queue::Policy::LatestWins)
            .stall_timeout(stall),
    );
    let sink = h.sink();
    let stalled = h.raw("/ws?clientId=stalled");
    let frame = test_frame("ev", 1, 1, 256 * 1024, false);
    let mut last = (Instant::now(), 0u64);
    let started = Instant::now();
    while sink.stats().closed_stall == 0 {
        assert!(started.elapsed() < Duration::from_secs(60), "never dropped");
        let _ = sink.send_image(&Target::All, &frame);
        let sent = sink.stats().bytes_sent;
        if sent != last.1 {
            last = (Instant::now(), sent);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let after = last.0.elapsed();
    assert!(
        after <= stall + Duration::from_millis(1500),
        "dropped {after:?} after the last byte moved (stall timeout {stall:?})"
    );
    drop(stalled);
}
