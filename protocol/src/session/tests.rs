//! The session driven without a socket: bytes in, slices out.

use std::io::IoSlice;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::queue::{Lease, Policy};
use crate::wire::{ImageMeta, WireFrame};

/// A masked client frame.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [1u8, 2, 3, 4];
    let mut v = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    v.extend_from_slice(&mask);
    v.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    v
}

/// Splits server output into (opcode, payload) frames, checking every header.
fn frames(mut wire: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while !wire.is_empty() {
        assert_eq!(wire[0] & 0xf0, 0x80, "FIN set, no RSV bits");
        assert_eq!(wire[1] & 0x80, 0, "server frames are unmasked");
        let (len, at) = match wire[1] {
            126 => (u16::from_be_bytes([wire[2], wire[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(wire[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        out.push((wire[0] & 0x0f, wire[at..at + len].to_vec()));
        wire = &wire[at + len..];
    }
    out
}

fn image(i: u32) -> WireFrame {
    let meta = ImageMeta {
        event: "e".into(),
        index: i,
        count: 9,
        width: 1,
        height: 1,
        ..Default::default()
    };
    WireFrame::new(&meta, Arc::new(vec![i as u8; 3000]), true)
}

fn config() -> ServerConfig {
    ServerConfig::default()
        .policy(Policy::Reliable)
        .queue_bytes(1 << 20)
        .max_message_bytes(1024)
}

fn session_with(config: &ServerConfig, counters: &Arc<Counters>) -> Session {
    Session::new(
        "id".into(),
        b"HEAD".to_vec(),
        Vec::new(),
        config,
        counters.clone(),
        None,
        Instant::now(),
    )
}

fn session(counters: &Arc<Counters>) -> Session {
    session_with(&config(), counters)
}

/// Writes at most `budget` bytes of what the session offers; returns the bytes.
fn write(s: &mut Session, budget: usize, out: &mut Vec<u8>) -> usize {
    let mut slices = [IoSlice::new(&[]); 64];
    let n = s.io_slices(&mut slices);
    let mut taken = 0;
    for sl in &slices[..n] {
        let take = sl.len().min(budget - taken);
        out.extend_from_slice(&sl[..take]);
        taken += take;
        if taken == budget {
            break;
        }
    }
    let blocked = taken < s.pending_bytes();
    s.wrote(taken, blocked, Instant::now());
    taken
}

/// Writes in steps of `step` bytes until nothing is left; returns the final state.
fn drain(s: &mut Session, step: usize, out: &mut Vec<u8>) -> State {
    for _ in 0..100_000 {
        match s.state() {
            State::Write => {
                write(s, step, out);
            }
            other => return other,
        }
    }
    panic!("no end");
}

fn ops(wire: &[u8]) -> Vec<u8> {
    frames(wire).iter().map(|f| f.0).collect()
}

#[test]
fn pongs_never_land_inside_a_frame() {
    for step in [1, 7, 100, 1000, 5000] {
        let counters = Arc::new(Counters::new());
        let mut s = session(&counters);
        let mut out = Vec::new();
        for i in 0..3 {
            s.push_image(&image(i));
        }
        // Half of the first image goes out, then a ping arrives.
        write(&mut s, 1500, &mut out);
        s.receive(&client_frame(0x9, b"p1"), Instant::now());
        assert_eq!(drain(&mut s, step, &mut out), State::Idle);
        assert_eq!(&out[..4], b"HEAD");
        let got = frames(&out[4..]);
        let pong = got.iter().position(|f| f.0 == 0xA).expect("a pong");
        assert_eq!(got[pong].1, b"p1");
        let mut rest = ops(&out[4..]);
        rest.remove(pong);
        assert_eq!(rest, [1, 1, 2, 1, 2, 1, 2], "step {step}");
        assert!(pong >= 2, "the pong waited for the frame in flight");
        assert_eq!(counters.snapshot().frames_sent, 3);
    }
}

#[test]
fn close_follows_the_frame_in_flight_and_nothing_follows_it() {
    let counters = Arc::new(Counters::new());
    let mut s = session(&counters);
    let mut out = Vec::new();
    for i in 0..3 {
        s.push_image(&image(i));
    }
    write(&mut s, 200, &mut out); // inside the first announcement + image pair
    s.close(CloseReason::Overflow);
    assert!(!s.is_open());
    s.push_text("late".into()); // ignored once closing
    assert_eq!(drain(&mut s, 64, &mut out), State::Finished);
    let got = frames(&out[4..]);
    assert_eq!(
        ops(&out[4..]),
        [1, 1, 2, 8],
        "status, the started pair, close"
    );
    assert_eq!(&got[3].1[..2], &1008u16.to_be_bytes());
    assert_eq!(counters.snapshot().frames_dropped, 2);
    s.end(Ending::Closed);
    let st = counters.snapshot();
    assert_eq!(
        (st.clients, st.clients_closed, st.closed_overflow),
        (0, 1, 1)
    );
}

#[test]
fn bad_input_closes_with_its_code() {
    let cases: [(Vec<u8>, u16); 4] = [
        (client_frame(0x2, b"bin"), 1003),
        (client_frame(0x1, &[0xff, 0xfe]), 1007),
        (vec![0x81, 0x02, b'h', b'i'], 1002), // unmasked
        (
            {
                // A 2000-byte text against a 1024-byte limit.
                let mut v = vec![0x81, 0x80 | 126, 0x07, 0xd0, 0, 0, 0, 0];
                v.extend_from_slice(&[b'a'; 2000]);
                v
            },
            1009,
        ),
    ];
    for (input, code) in cases {
        let counters = Arc::new(Counters::new());
        let mut s = session(&counters);
        let mut out = Vec::new();
        s.receive(&input, Instant::now());
        assert!(!s.wants_input());
        assert_eq!(drain(&mut s, 1 << 20, &mut out), State::Finished);
        let got = frames(&out[4..]);
        let last = got.last().unwrap();
        assert_eq!(last.0, 8);
        assert_eq!(&last.1[..2], &code.to_be_bytes(), "case {code}");
        s.end(Ending::Closed);
        assert_eq!(counters.snapshot().closed_bad_input, 1);
    }
}

#[test]
fn peer_close_is_answered_after_the_frame_in_flight() {
    let counters = Arc::new(Counters::new());
    let mut s = session(&counters);
    let mut out = Vec::new();
    s.push_image(&image(0));
    s.push_image(&image(1));
    write(&mut s, 300, &mut out);
    let mut close = 1000u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"bye");
    s.receive(&client_frame(0x8, &close), Instant::now());
    assert_eq!(drain(&mut s, 50, &mut out), State::Finished);
    assert_eq!(ops(&out[4..]), [1, 1, 2, 8]);
}

#[test]
fn feature_flags_switch_to_type_4_and_get_a_reply() {
    let counters = Arc::new(Counters::new());
    let mut s = session(&counters);
    let flags = br#"{"type":"feature_flags","data":{"supports_preview_metadata":true}}"#;
    let mut msg = vec![0x81, 0x80 | 126];
    msg.extend_from_slice(&(flags.len() as u16).to_be_bytes());
    msg.extend_from_slice(&[0; 4]); // a zero mask
    msg.extend_from_slice(flags);
    s.receive(&msg, Instant::now());
    assert!(s.metadata());
    s.push_image(&image(5));
    let mut out = Vec::new();
    assert_eq!(drain(&mut s, 1 << 20, &mut out), State::Idle);
    // status, feature-flags reply, one type-4 binary message (no announcement).
    assert_eq!(ops(&out[4..]), [1, 1, 2]);
}

#[test]
fn lease_writes_the_same_bytes_as_slices() {
    let mut wires = Vec::new();
    for lease_mode in [false, true] {
        let counters = Arc::new(Counters::new());
        let mut s = session(&counters);
        for i in 0..4 {
            s.push_image(&image(i));
        }
        s.receive(&client_frame(0x9, b"p"), Instant::now());
        s.close(CloseReason::Shutdown);
        let mut out = Vec::new();
        if lease_mode {
            let mut lease = Lease::new();
            while s.state() == State::Write {
                s.lease(&mut lease, 2, usize::MAX);
                let mut slices = [IoSlice::new(&[]); 16];
                let n = lease.io_slices(0, &mut slices);
                for sl in &slices[..n] {
                    out.extend_from_slice(sl);
                }
                let len = lease.len();
                s.lease_done(&mut lease, len, Instant::now());
            }
        } else {
            drain(&mut s, 777, &mut out);
        }
        assert_eq!(s.state(), State::Finished);
        assert_eq!(counters.snapshot().frames_sent, 4);
        wires.push(out);
    }
    assert_eq!(wires[0], wires[1]);
    let got = ops(&wires[0][4..]);
    assert_eq!(got.last(), Some(&8));
    assert!(got.contains(&0xA));
}

#[test]
fn a_failed_lease_counts_what_did_not_arrive() {
    let counters = Arc::new(Counters::new());
    let mut s = session(&counters);
    for i in 0..3 {
        s.push_image(&image(i));
    }
    let mut lease = Lease::new();
    s.lease(&mut lease, 32, usize::MAX);
    // The 101, the status and the first pair arrive; then the socket fails.
    let first = 4 + 2 + wire::status_message("id").len() + 3200;
    s.lease_done(&mut lease, first, Instant::now());
    let st = counters.snapshot();
    assert_eq!((st.frames_sent, st.frames_dropped), (1, 2));
}

#[test]
fn floods_close_with_1008() {
    let counters = Arc::new(Counters::new());
    let mut s = session_with(&config().inbound_messages(10), &counters);
    let now = Instant::now();
    let mut flood = Vec::new();
    for _ in 0..100 {
        flood.extend(client_frame(0x1, b"x"));
    }
    s.receive(&flood, now);
    assert!(!s.wants_input());
    let mut out = Vec::new();
    assert_eq!(drain(&mut s, 1 << 20, &mut out), State::Finished);
    let last = frames(&out[4..]).pop().unwrap();
    assert_eq!(&last.1[..2], &1008u16.to_be_bytes());
    s.end(Ending::Closed);
    assert_eq!(counters.snapshot().closed_flood, 1);
}

#[test]
fn timers_ping_close_silent_and_incomplete_and_report_stalls() {
    let config = config()
        .ping_interval(Duration::from_secs(1))
        .stall_timeout(Duration::from_secs(2))
        .message_timeout(Duration::from_secs(5));
    let t0 = Instant::now();
    let counters = Arc::new(Counters::new());
    let mut s = session_with(&config, &counters);
    let mut out = Vec::new();
    drain(&mut s, 1 << 20, &mut out);
    // A ping at one interval.
    assert_eq!(s.tick(t0 + Duration::from_millis(1001)), Tick::Continue);
    let before = out.len();
    drain(&mut s, 1 << 20, &mut out);
    assert_eq!(ops(&out[before..]), [9]);
    // Silent for three intervals: 1001.
    s.tick(t0 + Duration::from_millis(3001));
    assert!(!s.is_open());
    assert_eq!(s.close_reason(), Some(CloseReason::Keepalive));

    // Half a frame, then nothing: 1008 at the message timeout.
    let config = config.message_timeout(Duration::from_secs(2));
    let mut s = session_with(&config, &counters);
    s.receive(&client_frame(0x1, b"hello")[..4], t0);
    s.receive(&[0], t0 + Duration::from_millis(500));
    assert!(s.next_deadline() <= t0 + Duration::from_secs(2));
    s.tick(t0 + Duration::from_millis(1999));
    assert!(s.is_open());
    s.tick(t0 + Duration::from_secs(2));
    assert_eq!(s.close_reason(), Some(CloseReason::Incomplete));

    // Output that the socket does not take: stalled after the stall timeout.
    let mut s = session_with(&config, &counters);
    s.push_image(&image(1));
    s.wrote(0, true, t0);
    assert_eq!(s.tick(t0 + Duration::from_millis(1999)), Tick::Continue);
    assert_eq!(s.tick(t0 + Duration::from_secs(2)), Tick::Stalled);
    s.end(Ending::Stalled);
    assert!(counters.snapshot().closed_stall >= 1);
}

#[test]
fn garbage_never_panics() {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for round in 0..300 {
        let counters = Arc::new(Counters::new());
        let mut s = session(&counters);
        let mut out = Vec::new();
        for _ in 0..20 {
            let len = (rng % 64) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng as u8
                })
                .collect();
            s.receive(&bytes, Instant::now());
            s.push_image(&image(round));
            write(&mut s, 100, &mut out);
        }
        let _ = drain(&mut s, 1 << 20, &mut out);
        frames(&out[4..]);
    }
}

#[test]
fn past_the_memory_budget_lagging_clients_let_go_of_old_frames() {
    let big = |i: u32| {
        let meta = ImageMeta {
            event: "e".into(),
            index: i,
            count: 9,
            width: 1,
            height: 1,
            ..Default::default()
        };
        WireFrame::new(&meta, Arc::new(vec![i as u8; 100_000]), false)
    };
    for policy in [Policy::LatestWins, Policy::Reliable] {
        let config = config()
            .policy(policy)
            .queue_bytes(1 << 30)
            .memory_budget(250_000);
        let counters = Arc::new(Counters::new());
        let mut fast = session_with(&config, &counters);
        let mut idle = session_with(&config, &counters); // never written: holds its queue
        let mut midway = session_with(&config, &counters); // part-way through frame 0
        let mut out = Vec::new();
        for s in [&mut fast, &mut idle, &mut midway] {
            drain(s, 1 << 20, &mut out);
        }
        let f0 = big(0);
        for s in [&mut fast, &mut idle, &mut midway] {
            s.push_image(&f0);
        }
        write(&mut midway, 50_000, &mut out);
        drain(&mut fast, 1 << 20, &mut out);
        assert_eq!(counters.snapshot().held_bytes as usize, f0.held_bytes());
        for i in 1..4 {
            let f = big(i);
            for s in [&mut fast, &mut idle, &mut midway] {
                s.push_image(&f);
            }
            drain(&mut fast, 1 << 20, &mut out);
        }
        // The fast client got every frame; the lagging ones let go of the old ones.
        assert!(fast.is_open());
        assert_eq!(midway.state(), State::Ended, "{policy:?}");
        assert_eq!(midway.close_reason(), Some(CloseReason::Memory));
        if policy == Policy::LatestWins {
            // Only the newest frame is left queued for the idle client.
            assert!(idle.is_open());
            assert_eq!(idle.queued_images(), 1);
        } else {
            assert_eq!(idle.close_reason(), Some(CloseReason::Memory));
        }
        midway.end(Ending::Gone);
        drop(midway);
        drop(idle);
        drain(&mut fast, 1 << 20, &mut out);
        let st = counters.snapshot();
        assert_eq!(st.held_bytes, 0, "{policy:?} {st:?}");
        assert!(st.closed_memory >= 1);
    }
}
