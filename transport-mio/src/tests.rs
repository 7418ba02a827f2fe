//! The dealing of connections to loops on a running server, seen through each loop's count of
//! live connections: spread, then pack, and every kind of connection leaves its loop's count
//! when it closes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::num::NonZeroUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;

use pngcast_protocol::http::ServerConfig;
use pngcast_protocol::sink::FrameSink;
use tungstenite::WebSocket;

use crate::{Server, PACK_LOOPS};

/// Bounds every blocking read and every wait, so a broken server fails the test, not hangs it.
const GUARD: Duration = Duration::from_secs(20);

impl Server {
    /// Each loop's live connections, as the dealer sees them.
    fn loop_conns(&self) -> Vec<usize> {
        let inboxes = &self.handle.shared.inboxes;
        inboxes
            .iter()
            .map(|i| i.conns.load(Ordering::Relaxed))
            .collect()
    }

    /// Each loop's live WebSocket clients (what frames go by).
    fn loop_clients(&self) -> Vec<usize> {
        let inboxes = &self.handle.shared.inboxes;
        inboxes
            .iter()
            .map(|i| i.clients.load(Ordering::Relaxed))
            .collect()
    }
}

/// Polls `cond` until it holds or [`GUARD`] passes; the value is returned for the assertion.
fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + GUARD;
    while std::time::Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cond()
}

/// A WebSocket client with clientId `id`, upgraded (the server has dealt it by then).
fn client(server: &Server, id: &str) -> WebSocket<TcpStream> {
    let stream = TcpStream::connect(server.local_addr()).unwrap();
    stream.set_read_timeout(Some(GUARD)).unwrap();
    let url = format!("ws://{}/ws?clientId={id}", server.local_addr());
    match tungstenite::client(url, stream) {
        Ok((ws, _)) => ws,
        Err(e) => panic!("upgrade: {e}"),
    }
}

/// Sends `request` on a fresh connection and reads the answer to its end, then closes.
fn http(server: &Server, request: &[u8]) -> String {
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(GUARD)).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// `n` ones, then zeros up to `loops`, with `extra` added to the first loops in turn.
fn counts(loops: usize, n: usize, extra: &[usize]) -> Vec<usize> {
    let mut c: Vec<usize> = (0..loops).map(|i| usize::from(i < n)).collect();
    for &i in extra {
        c[i] += 1;
    }
    c
}

#[test]
fn connections_spread_then_pack_and_leave_their_loops_count_when_they_close() {
    const LOOPS: usize = PACK_LOOPS + 2;
    let config = ServerConfig::default().addr("127.0.0.1:0".parse().unwrap());
    let server = Server::bind_loops(config, NonZeroUsize::new(LOOPS).unwrap()).unwrap();
    assert_eq!(server.loop_conns(), [0; LOOPS]);

    // Spread: client i gets loop i to itself.
    let mut clients = Vec::new();
    for i in 0..LOOPS {
        clients.push(client(&server, &format!("c{i}")));
        assert!(wait_for(|| server.loop_conns() == counts(LOOPS, i + 1, &[])));
    }
    assert!(wait_for(|| server.loop_clients() == [1; LOOPS]));

    // Pack: the next ones share the first PACK_LOOPS loops, lowest index first.
    clients.push(client(&server, "p0"));
    clients.push(client(&server, "p1"));
    let packed = counts(LOOPS, LOOPS, &[0, 1]);
    assert!(wait_for(|| server.loop_conns() == packed));

    // The client alone on the last loop leaves: that loop is free for the next client.
    drop(clients.remove(LOOPS - 1));
    let freed = counts(LOOPS, LOOPS - 1, &[0, 1]);
    assert!(wait_for(|| server.loop_conns() == freed));
    assert!(wait_for(|| server.loop_clients()[LOOPS - 1] == 0));
    clients.push(client(&server, "again"));
    assert!(wait_for(|| server.loop_conns() == packed));

    // Plain HTTP requests, a refused upgrade and a connection that sends nothing count while
    // they are open (on loop 2, the lightest of the pack) and leave no trace.
    let answer = http(
        &server,
        b"GET /features HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(wait_for(|| server.loop_conns() == packed));
    let answer = http(&server, b"GET /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 404 "), "{answer}");
    assert!(wait_for(|| server.loop_conns() == packed));
    let answer = http(
        &server,
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    assert!(wait_for(|| server.loop_conns() == packed));
    let silent = TcpStream::connect(server.local_addr()).unwrap();
    assert!(wait_for(
        || server.loop_conns() == counts(LOOPS, LOOPS, &[0, 1, 2])
    ));
    drop(silent);
    assert!(wait_for(|| server.loop_conns() == packed));

    // Everyone leaves: every count is back to 0 and spreading starts over from loop 0.
    clients.clear();
    assert!(wait_for(|| server.loop_conns() == [0; LOOPS]));
    assert!(wait_for(|| server.loop_clients() == [0; LOOPS]));
    assert!(wait_for(|| server.stats().clients == 0));
    let _c = client(&server, "last");
    assert!(wait_for(|| server.loop_conns() == counts(LOOPS, 1, &[])));
}

#[test]
fn a_pack_as_wide_as_the_loops_deals_to_the_least_loaded() {
    let config = ServerConfig::default().addr("127.0.0.1:0".parse().unwrap());
    let server = Server::bind_loops_pack(config, NonZeroUsize::new(3).unwrap(), 3).unwrap();
    let mut clients: Vec<_> = (0..5).map(|i| client(&server, &format!("c{i}"))).collect();
    assert!(wait_for(|| server.loop_conns() == [2, 2, 1]));
    // Loop 0's first client leaves: it is the least-loaded with loop 2, and first.
    drop(clients.remove(0));
    assert!(wait_for(|| server.loop_conns() == [1, 2, 1]));
    clients.push(client(&server, "c5"));
    assert!(wait_for(|| server.loop_conns() == [2, 2, 1]));
    clients.push(client(&server, "c6"));
    assert!(wait_for(|| server.loop_conns() == [2, 2, 2]));
}
