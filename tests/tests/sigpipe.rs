//! SIGPIPE: a host whose `main` is not Rust's (a C program embedding pngcast, libFuzzer) keeps
//! SIGPIPE at its default action, which kills the process on the first write to a socket whose
//! peer is gone, unless the write says `MSG_NOSIGNAL`. Every Rust binary, this test harness
//! included, ignores SIGPIPE before `main`; this binary puts the default action back first, so a
//! single un-flagged socket write to a reset peer kills it (the test run then fails with
//! "signal: 13, SIGPIPE").
//!
//! Per transport: a witness receives numbered 64 KiB frames while 40 victims upgrade and reset
//! their connection (SO_LINGER 0) in the middle of the flow, some after reading part of a frame,
//! some without reading at all (the server is then blocked in a write when the reset comes);
//! then a fresh client must still be served, and finally the server is shut down while a client
//! that stopped reading holds a write in flight (the blocking transport shuts that socket down
//! under its writer). The process surviving all of it, with the witness's frames complete, is
//! the result.
#![deny(unsafe_code)]

#[path = "suite/mod.rs"]
mod suite;

#[path = "hostile/mod.rs"]
mod hostile;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Mutex, Once};
use std::time::Duration;

use pngcast_protocol::http::ServerConfig;
use pngcast_protocol::queue::Policy;
use pngcast_protocol::sink::Target;
use socket2::{Domain, SockRef, Socket, Type};

use hostile::{connect_healthy, open_ws, stats_until, Witness};
use suite::{Backend, Harness, Net};

/// The cases change a process-wide setting and count clients: one at a time.
static LOCK: Mutex<()> = Mutex::new(());

/// Restores SIGPIPE's default action (terminate) for the whole process, once.
#[allow(unsafe_code)]
fn sigpipe_default() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: `signal` with `SIG_DFL` installs no handler (no code runs on the signal, so
        // there is nothing async-signal-unsafe); it only changes the disposition, which is what
        // a C host's process has from the start.
        let old = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        assert_ne!(old, libc::SIG_ERR, "signal(SIGPIPE, SIG_DFL) failed");
    });
}

/// Closes `s` with RST: SO_LINGER 0 discards anything unsent and resets the connection.
fn reset(s: TcpStream) {
    SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
    drop(s);
}

/// A client socket with a 4 KiB receive buffer: a server writing to it while it does not read
/// blocks after a few KiB (instead of filling megabytes of loopback buffers first).
fn connect_small(addr: SocketAddr) -> TcpStream {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.connect(&addr.into()).unwrap();
    s.into()
}

fn survives_resets<B: Backend>() {
    let _serial = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    sigpipe_default();
    let name = format!("sigpipe on {}", B::NAME);
    let config = ServerConfig::default()
        .policy(Policy::Reliable)
        .max_clients(4096)
        .queue_bytes(16 << 20);
    let h = Net::start::<B>(config.clone());
    let sink = h.sink();
    let healthy = connect_healthy(&h, &config, "healthy");
    stats_until(&*sink, "healthy registered", |s| s.clients == 1);
    let witness = Witness::start(sink.clone(), healthy, 64 * 1024);
    let mut victims = 0;
    for i in 0..60 {
        let mut s = connect_small(h.addr());
        assert!(open_ws(&mut s, &format!("victim{i}")).starts_with(b"HTTP/1.1 101"));
        victims += 1;
        match i % 3 {
            0 => {
                // Part of the status and a frame, then the reset mid-frame.
                let mut buf = vec![0u8; 3000 + 101 * i];
                s.read_exact(&mut buf).unwrap();
            }
            1 => {
                // No reads: the server is blocked in a write when the reset arrives (the
                // blocking transport's reader thread sees the reset too, racing its writer).
                std::thread::sleep(Duration::from_millis(100));
            }
            _ => {
                // No reads, then bad input (an unmasked frame): the server cuts the socket
                // while its writer is blocked mid-frame, then the peer resets.
                std::thread::sleep(Duration::from_millis(100));
                // (A write error here would only mean the server already let go: fine.)
                let _ = s.write_all(&hostile::frame(0x81, b"unmasked", false));
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        reset(s);
    }
    stats_until(&*sink, "the victims are gone", |s| {
        s.clients == 1 && s.clients_accepted > victims
    });
    // Still serving: a new client is registered and gets frames.
    let mut late = h.connect(Some("late"), false);
    for k in 0..3 {
        match suite::recv_item(&mut *late) {
            g if g.test_index().is_some() => {}
            other => panic!("{name}: late client, item {k}: {other:?}"),
        }
    }
    drop(late);
    let n = witness.finish(&name);
    eprintln!("{name}: {n} frames to the witness, {:?}", sink.stats());

    // Shutdown past its deadline while a non-reader's writer is blocked mid-frame: the server
    // cuts the socket under the write.
    let accepted = sink.stats().clients_accepted;
    let mute: Vec<TcpStream> = (0..4)
        .map(|i| {
            let mut s = connect_small(h.addr());
            assert!(open_ws(&mut s, &format!("mute{i}")).starts_with(b"HTTP/1.1 101"));
            s
        })
        .collect();
    stats_until(&*sink, "mute registered", |s| {
        s.clients_accepted == accepted + 4
    });
    let frame = suite::test_frame("x", 0, 0, 256 * 1024, true);
    for _ in 0..48 {
        sink.send_image(&Target::All, &frame).unwrap();
    }
    std::thread::sleep(Duration::from_millis(50));
    h.shutdown(Duration::from_millis(100));
    drop(h);
    for s in mute {
        reset(s);
    }
}

#[test]
fn mio_survives_resets_with_sigpipe_default() {
    survives_resets::<hostile::backends::Mio>();
}

#[test]
fn blocking_survives_resets_with_sigpipe_default() {
    survives_resets::<hostile::backends::Blocking>();
}
