//! The blocking client against a scripted fake server: malformed and foreign messages give
//! typed errors or `Other` events, never a panic.

use std::net::TcpListener;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use pngcast_blocking::client::{Client, ClientError, ClientOptions, Event};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::Message;

const STATUS: &str = r#"{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "fake"}}"#;

/// Serves one connection: sends `script`, then closes with 1001, then reads until the end.
/// Returns the texts the client sent.
fn fake_server(script: Vec<Message>) -> (String, JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    let handle = thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut ws = tungstenite::accept(sock).unwrap();
        let mut received = Vec::new();
        for m in script {
            // A client that wants metadata sends its flags after the status: answer them.
            let answer = matches!(&m, Message::Text(t) if t.as_str().contains("\"feature_flags\""));
            if answer {
                if let Ok(Message::Text(t)) = ws.read() {
                    received.push(t.as_str().to_owned());
                }
            }
            if ws.send(m).is_err() {
                return received;
            }
        }
        let _ = ws.close(Some(CloseFrame {
            code: CloseCode::Away,
            reason: "bye".into(),
        }));
        loop {
            match ws.read() {
                Ok(Message::Text(t)) => received.push(t.as_str().to_owned()),
                Ok(_) => {}
                Err(_) => return received,
            }
        }
    });
    (url, handle)
}

fn be(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

fn bin(parts: &[&[u8]]) -> Message {
    Message::binary(parts.concat())
}

#[test]
fn every_message_kind_and_malformed_ones() {
    let png = b"\x89PNG fake".to_vec();
    let j = br#"{"event": "ev4", "index": 3, "count": 4, "width": 2, "height": 1, "image_type": "image/png"}"#;
    let script = vec![
        Message::text(STATUS),
        // A bare type-1 frame (ComfyUI's SaveImageWebsocket).
        bin(&[&be(1), &be(2), &png]),
        // Announcement + type 1: folded into one image.
        Message::text(
            r#"{"type": "ev1", "data": {"event": "ev1", "index": 1, "count": 2, "width": 2, "height": 1, "image_type": "image/png", "bytes": 9}}"#,
        ),
        bin(&[&be(1), &be(2), &png]),
        // Type 4.
        bin(&[&be(4), &be(j.len() as u32), j, &png]),
        // ComfyUI's other binary kinds: a text preview (3), a JPEG preview (1, format 1).
        bin(&[&be(3), &be(4), b"node", b"hello"]),
        bin(&[&be(1), &be(1), b"\xff\xd8jpeg"]),
        // An announcement that no frame follows: surfaced as JSON.
        Message::text(
            r#"{"type": "ev9", "data": {"event": "ev9", "index": 0, "count": 1, "width": 1, "height": 1, "image_type": "image/png", "bytes": 1}}"#,
        ),
        Message::text(r#"{"type": "progress", "data": {"value": 1, "max": 2}}"#),
        // Malformed: each is one error, and the client reads on.
        Message::text("not json"),
        Message::text(r#"["no", "type"]"#),
        bin(&[b"\x00\x00"]),
        bin(&[&be(4), &be(u32::MAX), b"{}"]),
        bin(&[&be(4), &be(2), b"\xff\xfe"]),
        bin(&[&be(4), &be(2), b"[]"]),
        Message::text(r#"{"type": "executing", "data": {"node": null}}"#),
    ];
    let (url, server) = fake_server(script);
    let mut c = Client::connect(&url, ClientOptions::default()).unwrap();
    assert_eq!(c.sid(), "fake");
    let mut events = Vec::new();
    let mut errors = 0;
    loop {
        match c.next_event() {
            Ok(Some(ev)) => events.push(ev),
            Ok(None) => break,
            Err(ClientError::Protocol(_)) => errors += 1,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(c.close_code(), Some(1001));
    assert_eq!(errors, 6, "{events:#?}");
    let mut it = events.into_iter();
    assert!(matches!(it.next(), Some(Event::Json { kind, .. }) if kind == "status"));
    assert_eq!(
        it.next(),
        Some(Event::Image {
            event: None,
            index: None,
            metadata: None,
            metadata_json: None,
            announcement: None,
            png: png.clone()
        })
    );
    match it.next() {
        Some(Event::Image {
            event,
            index,
            metadata,
            metadata_json,
            announcement,
            png: p,
        }) => {
            assert_eq!(event.as_deref(), Some("ev1"));
            // The announcement's text, byte for byte.
            assert_eq!(
                announcement.as_deref(),
                Some(
                    r#"{"type": "ev1", "data": {"event": "ev1", "index": 1, "count": 2, "width": 2, "height": 1, "image_type": "image/png", "bytes": 9}}"#
                )
            );
            // The announcement's data, as sent.
            assert_eq!(metadata_json.as_ref().unwrap()["count"], 2);
            assert_eq!(index, Some(1));
            assert_eq!(metadata.unwrap().count, 2);
            assert_eq!(p, png);
        }
        other => panic!("{other:?}"),
    }
    match it.next() {
        Some(Event::Image {
            event,
            index,
            metadata,
            metadata_json,
            announcement,
            png: p,
        }) => {
            assert_eq!(event.as_deref(), Some("ev4"));
            assert_eq!(announcement, None);
            assert_eq!(metadata_json.as_ref().unwrap()["width"], 2);
            assert_eq!(index, Some(3));
            assert_eq!(metadata.unwrap().width, 2);
            assert_eq!(p, png);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(it.next(), Some(Event::Other { kind: 3, .. })));
    assert!(matches!(it.next(), Some(Event::Other { kind: 1, .. })));
    assert!(matches!(it.next(), Some(Event::Json { kind, .. }) if kind == "ev9"));
    assert!(matches!(it.next(), Some(Event::Json { kind, raw, .. })
        if kind == "progress" && raw == r#"{"type": "progress", "data": {"value": 1, "max": 2}}"#));
    assert!(matches!(it.next(), Some(Event::Json { kind, .. }) if kind == "executing"));
    assert_eq!(it.next(), None);
    server.join().unwrap();
}

#[test]
fn connect_requires_the_status_message_first() {
    for first in [
        Message::binary(vec![0, 0, 0, 1, 0, 0, 0, 2]),
        Message::text(r#"{"type": "status", "data": {}}"#),
        Message::text(r#"{"type": "executing", "data": {}}"#),
        Message::text("garbage"),
    ] {
        let (url, server) = fake_server(vec![first.clone()]);
        match Client::connect(&url, ClientOptions::default()) {
            Err(ClientError::Protocol(_)) => {}
            other => panic!("{first:?}: {other:?}"),
        }
        server.join().unwrap();
    }
    // A server that closes at once.
    let (url, server) = fake_server(vec![]);
    assert!(Client::connect(&url, ClientOptions::default()).is_err());
    server.join().unwrap();
}

#[test]
fn metadata_client_sends_flags_and_waits_for_the_answer() {
    let (url, server) = fake_server(vec![
        Message::text(STATUS),
        Message::text(r#"{"type": "feature_flags", "data": {"supports_preview_metadata": true}}"#),
    ]);
    let c = Client::connect(
        &url,
        ClientOptions::default().metadata(true).client_id("me"),
    )
    .unwrap();
    let events: Vec<Event> = c.map(|r| r.unwrap()).collect();
    assert_eq!(events.len(), 2);
    assert!(
        matches!(&events[1], Event::Json { kind, data, .. } if kind == "feature_flags" && data["supports_preview_metadata"] == true)
    );
    let sent = server.join().unwrap();
    assert_eq!(sent.len(), 1);
    let v: serde_json::Value = serde_json::from_str(&sent[0]).unwrap();
    assert_eq!(v["type"], "feature_flags");
    assert_eq!(v["data"]["supports_preview_metadata"], true);
}

#[test]
fn oversized_server_message_is_an_error_not_a_panic() {
    let (url, server) = fake_server(vec![
        Message::text(STATUS),
        Message::binary(vec![0u8; 4096]),
    ]);
    let mut c = Client::connect(&url, ClientOptions::default().max_message_bytes(1024)).unwrap();
    assert!(matches!(c.next_event(), Ok(Some(Event::Json { .. }))));
    assert!(matches!(c.next_event(), Err(ClientError::WebSocket(_))));
    assert!(c.next().is_none(), "the connection is over");
    drop(c);
    server.join().unwrap();
}

#[test]
fn bad_urls_and_refused_connections() {
    for url in [
        "http://127.0.0.1/ws",
        "wss://127.0.0.1/ws",
        "ws://",
        "ws://h:notaport/",
    ] {
        assert!(
            matches!(
                Client::connect(url, ClientOptions::default()),
                Err(ClientError::BadUrl { .. })
            ),
            "{url}"
        );
    }
    // Nothing listens on this port (bound, then closed).
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    assert!(matches!(
        Client::connect(
            &format!("ws://127.0.0.1:{port}/ws"),
            ClientOptions::default()
        ),
        Err(ClientError::Io(_))
    ));
}

#[test]
fn connect_times_out_against_a_silent_server() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    let opts = ClientOptions::default().connect_timeout(Duration::from_millis(300));
    assert!(matches!(
        Client::connect(&url, opts),
        Err(ClientError::Timeout)
    ));
    drop(listener);
}
