//! The event loop's own bookkeeping, on a real poll with loopback sockets: token packing, slot
//! reuse, the head cap and its eviction, clientId admission.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mio::{Poll, Waker};
use pngcast_protocol::http::ServerConfig;

use super::{EventLoop, Key, GEN_MASK, WAKER};
use crate::conn::Phase;
use crate::shared::{Inbox, Shared};

fn event_loop(config: ServerConfig) -> EventLoop {
    let poll = Poll::new().unwrap();
    let waker = Waker::new(poll.registry(), WAKER).unwrap();
    let shared = Arc::new(Shared {
        inboxes: vec![Inbox {
            commands: Mutex::new(Vec::new()),
            waker,
            clients: Default::default(),
            conns: Default::default(),
        }],
        pack: 1,
        order: Mutex::new(()),
        stats: Default::default(),
        closed: Default::default(),
        threads: Mutex::new(Vec::new()),
        conns: Default::default(),
        ids: Default::default(),
        heads: Default::default(),
        next_gen: Default::default(),
    });
    EventLoop::new(poll, 0, None, shared, config).unwrap()
}

/// A connected pair: the client side, and the server side as the loop takes it.
fn pair(listener: &TcpListener) -> (TcpStream, mio::net::TcpStream) {
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    server.set_nonblocking(true).unwrap();
    (client, mio::net::TcpStream::from_std(server))
}

fn live_keys(lp: &EventLoop) -> Vec<Key> {
    lp.slots
        .iter()
        .enumerate()
        .filter(|(_, s)| s.conn.is_some())
        .map(|(idx, s)| Key {
            idx,
            gen: s.gen & GEN_MASK,
        })
        .collect()
}

#[test]
fn tokens_pack_slot_and_generation() {
    for (idx, gen) in [(0, 0), (1, 1), (5000, GEN_MASK), (77, 12345)] {
        let key = Key { idx, gen };
        assert_eq!(Key::from_token(key.token()), key);
    }
    // The token space stays clear of the listener's and the waker's.
    let big = Key {
        idx: 1 << 20,
        gen: GEN_MASK,
    };
    assert_ne!(big.token(), super::LISTENER);
    assert_ne!(big.token(), WAKER);
}

#[test]
fn a_freed_slot_is_reused_with_a_new_generation_and_old_keys_miss() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut lp = event_loop(ServerConfig::default());
    let (_c1, s1) = pair(&listener);
    lp.insert(s1);
    let first = live_keys(&lp)[0];
    let mut conn = lp.take(first).unwrap();
    conn.phase = Phase::Done;
    lp.settle(first, conn);
    assert!(live_keys(&lp).is_empty());
    assert_eq!(lp.shared.heads.load(Ordering::Relaxed), 0);
    let (_c2, s2) = pair(&listener);
    lp.insert(s2);
    let second = live_keys(&lp)[0];
    assert_eq!(second.idx, first.idx);
    assert_ne!(second.gen, first.gen);
    assert!(lp.take(first).is_none(), "a stale key reaches nothing");
    assert!(lp.take(second).is_some());
}

#[test]
fn past_max_handshakes_the_oldest_head_gets_408() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut lp = event_loop(ServerConfig::default().max_handshakes(2));
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (c, s) = pair(&listener);
        lp.insert(s);
        clients.push(c);
    }
    // The first connection was answered 408 and dropped; the two newer ones wait for heads.
    assert_eq!(live_keys(&lp).len(), 2);
    assert_eq!(lp.shared.heads.load(Ordering::Relaxed), 2);
    assert_eq!(lp.shared.stats.snapshot().handshakes_refused, 1);
    let oldest = &mut clients[0];
    oldest
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = oldest.read_to_end(&mut answer);
    assert!(answer.starts_with(b"HTTP/1.1 408 "), "{answer:?}");
    // The newer ones are still served.
    clients[2].write_all(b"GET /features HTTP/1.1\r\n").unwrap();
}

#[test]
fn client_ids_are_admitted_against_the_cap_in_one_step() {
    let lp = event_loop(ServerConfig::default());
    let shared = &lp.shared;
    let (a, b, c): (Arc<str>, Arc<str>, Arc<str>) = ("a".into(), "b".into(), "c".into());
    assert!(shared.admit(&a, 1, 2));
    assert!(shared.admit(&b, 2, 2));
    assert!(!shared.admit(&c, 3, 2), "full");
    assert!(shared.admit(&a, 4, 2), "a replacement adds no client");
    // The replaced generation cannot free the id its successor holds.
    shared.release(&a, 1);
    assert!(!shared.admit(&c, 5, 2));
    shared.release(&a, 4);
    assert!(shared.admit(&c, 6, 2));
}
