//! Shared pieces of the transport peer benchmark: the clock every process stamps with, the
//! message every server sends, the control protocol and the socket knobs.
//!
//! Every server (`peer-server --server NAME`, `benches/python/aiohttp_peer.py`) is a child
//! process of the runner (`peers`) and speaks one line protocol on its stdin and stdout:
//!
//! | runner writes | server does | server answers |
//! |---|---|---|
//! | (start) | binds 127.0.0.1:`--port` (0: any) | `ready <port>` |
//! | `wait <n>` | waits until `n` WebSocket clients are registered | `ok` |
//! | `burst <k>` | hands `k` copies of the message to every client, back to back | `sent <t0>` |
//! | `one` | stamps `t0` then hands one message to every client | `<t0>` |
//! | `quit` or EOF | exits | |
//!
//! `t0` is `CLOCK_MONOTONIC` in nanoseconds ([`now_ns`], Python's `time.monotonic_ns`), taken on
//! the server's own control thread immediately before it hands the frame to the server (the
//! same point for every server: the application's call), so the runner, which reads the same
//! clock when the last byte arrives, measures the server's whole delivery path.
//!
//! Socket knobs for experiments (every server, set on the listening socket, which accepted
//! sockets inherit): `PEERS_SNDBUF=<bytes>` (`SO_SNDBUF`), `PEERS_NOTSENT_LOWAT=<bytes>`
//! (`TCP_NOTSENT_LOWAT`).

pub mod client;

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

/// The 8-byte ComfyUI prefix of a legacy preview message: event 1 (`PREVIEW_IMAGE`), image type
/// 2 (PNG).
pub const PREFIX: [u8; 8] = [0, 0, 0, 1, 0, 0, 0, 2];

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process on the machine.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn env_bytes(name: &str) -> Option<u32> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Applies `PEERS_SNDBUF` and `PEERS_NOTSENT_LOWAT` to a socket (a listening socket: the
/// connections it accepts inherit both). Returns what was set, for the log.
pub fn apply_knobs(fd: BorrowedFd<'_>) -> io::Result<String> {
    let sock = socket2::SockRef::from(&fd);
    let mut set = Vec::new();
    if let Some(b) = env_bytes("PEERS_SNDBUF") {
        sock.set_send_buffer_size(b as usize)?;
        set.push(format!(
            "SO_SNDBUF={b} (reads {})",
            sock.send_buffer_size()?
        ));
    }
    if let Some(b) = env_bytes("PEERS_NOTSENT_LOWAT") {
        let v: libc::c_int = b as libc::c_int;
        // SAFETY: a valid socket fd borrowed for the call; `v` outlives it and its size is passed.
        #[allow(unsafe_code)]
        let rc = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                libc::IPPROTO_TCP,
                libc::TCP_NOTSENT_LOWAT,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        set.push(format!("TCP_NOTSENT_LOWAT={b}"));
    }
    Ok(set.join(", "))
}

/// Applies the knobs to the listening TCP socket of this process bound to `port`, found among
/// this process's file descriptors (for servers that bind their own listener, such as the
/// pngcast transports).
pub fn apply_knobs_to_port(port: u16) -> io::Result<String> {
    if env_bytes("PEERS_SNDBUF").is_none() && env_bytes("PEERS_NOTSENT_LOWAT").is_none() {
        return Ok(String::new());
    }
    for e in std::fs::read_dir("/proc/self/fd")?.flatten() {
        let Some(fd) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        // SAFETY: `fd` is open in this process (listed in /proc/self/fd) and is only borrowed
        // for the calls below while the server that owns it keeps running; a descriptor closed
        // meanwhile makes the calls fail with EBADF, which is skipped.
        #[allow(unsafe_code)]
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let sock = socket2::SockRef::from(&borrowed);
        let listening = matches!(sock.r#type(), Ok(socket2::Type::STREAM))
            && sock
                .local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .map(|a| a.port())
                == Some(port)
            && sock.peer_addr().is_err();
        if listening {
            return apply_knobs(borrowed.as_fd());
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("no listening socket on port {port}"),
    ))
}
