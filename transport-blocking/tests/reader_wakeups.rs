//! A connection's reader thread is not woken by its writer's waits for send-buffer room.
//!
//! Both threads share the client's socket. A reader blocked in `recv` sleeps on the same kernel
//! wait queue as a writer blocked in `sendmsg`, and was woken every time the client's ACKs made
//! room, to find nothing to read. The reader now waits for input alone. Its own process (this
//! file holds one test), so the threads counted are this connection's.
#![cfg(target_os = "linux")]

mod common;

use std::sync::Arc;

use common::*;
use pngcast_protocol::sink::{FrameSink, Target};
use pngcast_protocol::wire::{ImageMeta, WireFrame};

/// Voluntary context switches of this process's threads named `name`, summed.
fn switches(name: &str) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        total += status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

#[test]
fn the_writer_waiting_for_room_does_not_wake_the_reader() {
    // A small send buffer: a large frame makes the writer wait for room many times.
    let server = start(
        config()
            .announce(false)
            .loopback_send_buffer(Some(16 * 1024)),
    );
    let (mut ws, _) = tungstenite::connect(format!("{}?clientId=r", ws_url(&server))).unwrap();
    assert!(ws.read().unwrap().is_text(), "status first");
    let (reader0, writer0) = (switches("pngcast-conn"), switches("pngcast-writer"));
    let meta = ImageMeta {
        event: "preview".into(),
        count: 1,
        ..Default::default()
    };
    let frame = WireFrame::new(&meta, Arc::new(vec![7u8; 2 << 20]), false);
    server.send_image(&Target::All, &frame).unwrap();
    let got = ws.read().unwrap();
    assert_eq!(got.len(), 8 + (2 << 20));
    let reader = switches("pngcast-conn") - reader0;
    let writer = switches("pngcast-writer") - writer0;
    // The test needs the writer to have waited: each wait is a sleep in `sendmsg`.
    assert!(
        writer >= 5,
        "the writer waited for room only {writer} times"
    );
    // The client sent nothing: its reader has no reason to run.
    assert!(
        reader <= 2,
        "the reader woke {reader} times while the writer waited {writer} times"
    );
}
