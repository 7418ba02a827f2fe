//! The protocol's WebSocket session without a socket: arbitrary client bytes, pushes, closes,
//! partial writes and clock ticks, in an order the input chooses, through both ways of taking
//! output (zero-copy slices, leases).
//! Checks: no panic; whatever the session writes parses as whole, unmasked server frames in
//! order (never a control frame inside a data frame), with nothing after a close frame; the
//! counters add up (`frames_queued = frames_sent + frames_dropped` once it has ended).
#![no_main]

use std::io::IoSlice;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use pngcast_protocol::http::ServerConfig;
use pngcast_protocol::queue::{Lease, Policy};
use pngcast_protocol::session::{CloseReason, Counters, Ending, Session, State};
use pngcast_protocol::wire::{ImageMeta, WireFrame};

fn frame(i: u8, len: usize) -> WireFrame {
    let meta = ImageMeta {
        event: "f".into(),
        index: u32::from(i),
        count: 0,
        width: 1,
        height: 1,
        ..Default::default()
    };
    WireFrame::new(&meta, Arc::new(vec![i; len]), i % 2 == 0)
}

/// Checks the server's output: whole frames (the last may be cut when the session dropped the
/// socket mid-frame, `cut`), unmasked, nothing after a close.
fn check(mut wire: &[u8], cut: bool) {
    let mut closed = false;
    while !wire.is_empty() {
        assert!(!closed, "bytes after a close frame");
        if cut && wire.len() < 10 {
            return;
        }
        assert!(wire.len() >= 2);
        assert_eq!(wire[0] & 0x70, 0, "no RSV bits");
        assert_eq!(wire[1] & 0x80, 0, "server frames are unmasked");
        let (len, at) = match wire[1] & 0x7f {
            126 => (u16::from_be_bytes([wire[2], wire[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(wire[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        if cut && wire.len() < at + len {
            return;
        }
        assert!(wire.len() >= at + len, "a frame cut short");
        closed = wire[0] & 0x0f == 0x8;
        wire = &wire[at + len..];
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, ops)) = data.split_first() else {
        return;
    };
    let config = ServerConfig::default()
        .policy(if mode & 1 == 0 {
            Policy::LatestWins
        } else {
            Policy::Reliable
        })
        .queue_bytes(16 * 1024)
        .max_message_bytes(512)
        .memory_budget(if mode & 2 == 0 { 1 << 30 } else { 8 * 1024 })
        .inbound_messages(20)
        .ping_interval(Duration::from_millis(50))
        .stall_timeout(Duration::from_millis(200))
        .message_timeout(Duration::from_millis(100));
    let counters = Arc::new(Counters::new());
    let t0 = Instant::now();
    let mut now = t0;
    let mut s = Session::new(
        "id".into(),
        b"HEAD".to_vec(),
        Vec::new(),
        &config,
        counters.clone(),
        None,
        now,
    );
    let leases = mode & 4 != 0;
    let mut lease = Lease::new();
    let mut out = Vec::new();
    let mut i = 0;
    while i < ops.len() {
        let op = ops[i];
        i += 1;
        match op % 7 {
            0 | 1 => {
                // Client bytes: the next few input bytes.
                let n = usize::from(op / 7 % 32).min(ops.len() - i);
                s.receive(&ops[i..i + n], now);
                i += n;
            }
            2 => s.push_image(&frame(op, usize::from(op) * 40)),
            3 => s.push_text(Arc::from(format!("{{\"type\":\"t{op}\"}}"))),
            4 => {
                // A write of at most `op * 16` bytes.
                let budget = usize::from(op) * 16;
                if s.state() != State::Write {
                    continue;
                }
                if leases {
                    s.lease(&mut lease, 4, 64 * 1024);
                    let mut slices = [IoSlice::new(&[]); 32];
                    let n = lease.io_slices(0, &mut slices);
                    let mut took = 0;
                    for sl in &slices[..n] {
                        let k = sl.len().min(budget.max(lease.len()) - took);
                        out.extend_from_slice(&sl[..k]);
                        took += k;
                    }
                    s.lease_done(&mut lease, took, now);
                } else {
                    let mut slices = [IoSlice::new(&[]); 32];
                    let n = s.io_slices(&mut slices);
                    let mut took = 0;
                    for sl in &slices[..n] {
                        let k = sl.len().min(budget - took);
                        out.extend_from_slice(&sl[..k]);
                        took += k;
                        if took == budget {
                            break;
                        }
                    }
                    let blocked = took < s.pending_bytes();
                    s.wrote(took, blocked, now);
                }
            }
            5 => {
                now += Duration::from_millis(u64::from(op));
                let _ = s.tick(now);
            }
            _ => s.close(match op % 3 {
                0 => CloseReason::Shutdown,
                1 => CloseReason::Replaced,
                _ => CloseReason::Overflow,
            }),
        }
        if s.state() == State::Ended || s.state() == State::Finished {
            break;
        }
    }
    // Drain what is left (a shutdown flushes), then check every byte written.
    for _ in 0..10_000 {
        if s.state() != State::Write {
            break;
        }
        let mut slices = [IoSlice::new(&[]); 32];
        let n = s.io_slices(&mut slices);
        let mut took = 0;
        for sl in &slices[..n] {
            out.extend_from_slice(sl);
            took += sl.len();
        }
        s.wrote(took, false, now);
    }
    // Past the memory budget a client part-way through an old frame is dropped mid-frame: its
    // output ends wherever the frame was.
    let cut = s.state() == State::Ended && s.close_reason() == Some(CloseReason::Memory);
    assert!(out.starts_with(b"HEAD") || out.len() < 4);
    if out.len() >= 4 {
        check(&out[4..], cut);
    }
    s.end(Ending::Closed);
    let st = counters.snapshot();
    assert_eq!(
        st.frames_queued,
        st.frames_sent + st.frames_dropped,
        "{st:?}"
    );
    assert_eq!(st.clients, 0);
});
