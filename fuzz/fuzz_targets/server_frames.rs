//! Each transport's WebSocket front end over a real loopback socket: a server of each kind runs
//! in this process (started once); every input picks one (first byte), upgrades properly, then
//! sends the rest as raw client frame bytes and half-closes. Both transports hand the bytes to
//! the protocol's session (`protocol/src/session/`): this target covers their two drivers of it
//! (the event loop's reads and vectored writes, the blocking reader and lease writer).
//! Checks: no panic in any server thread (libFuzzer aborts on one); every 256 inputs the server
//! still upgrades a fresh client and sends it its status message.
#![no_main]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use pngcast_protocol::http::ServerConfig;

struct Servers {
    mio: pngcast_mio::Server,
    blocking: pngcast_blocking::Server,
}

fn servers() -> &'static Servers {
    static S: OnceLock<Servers> = OnceLock::new();
    S.get_or_init(|| {
        // libFuzzer's `main` is not Rust's, so SIGPIPE keeps its default action here (a Rust
        // binary ignores it before `main`): the transports must never raise it (they send with
        // MSG_NOSIGNAL), and this target would die of signal 13 if one did.
        let config = ServerConfig::default()
            .addr("127.0.0.1:0".parse().unwrap())
            .max_message_bytes(4096)
            .max_clients(4096)
            .handshake_timeout(Duration::from_secs(1))
            .stall_timeout(Duration::from_secs(1))
            .write_timeout(Duration::from_secs(1));
        Servers {
            mio: pngcast_mio::Server::bind(config.clone()).unwrap(),
            blocking: pngcast_blocking::Server::bind(config).unwrap(),
        }
    })
}

const UPGRADE: &str = "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// `read`, retried when a signal interrupts it. libFuzzer's timeout alarm (SIGALRM, every
/// `-timeout / 2 + 1` seconds) lands on whichever thread, and a read with a socket timeout set
/// is never restarted by the kernel: it fails with EINTR (found at the 601st second of a run).
fn read_retrying(s: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match s.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Upgrades; returns the socket once the 101 head has been read.
fn open(addr: SocketAddr) -> TcpStream {
    let mut s = loop {
        match TcpStream::connect(addr) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => break r.unwrap(),
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(UPGRADE.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            read_retrying(&mut s, &mut b).unwrap(),
            1,
            "server closed during the upgrade"
        );
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

fuzz_target!(|data: &[u8]| {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let Some((&which, frames)) = data.split_first() else {
        return;
    };
    let s = servers();
    let addr = if which & 1 == 0 {
        s.mio.local_addr()
    } else {
        s.blocking.local_addr()
    };
    let mut sock = open(addr);
    let _ = sock.write_all(frames);
    let _ = sock.shutdown(Shutdown::Write);
    // Drain what the server answers until it closes (bounded; then just drop).
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while matches!(read_retrying(&mut sock, &mut buf), Ok(n) if n > 0) {}
    drop(sock);
    if RUNS.fetch_add(1, Ordering::Relaxed) % 256 == 0 {
        for addr in [s.mio.local_addr(), s.blocking.local_addr()] {
            let mut c = open(addr);
            let mut first = [0u8; 2];
            c.read_exact(&mut first).unwrap();
            assert_eq!(first[0], 0x81, "status text frame first");
        }
    }
});
