//! Socket writes that never raise SIGPIPE.
//!
//! `write_vectored` on a socket is `writev`, which raises SIGPIPE when the connection is already
//! broken: reset by the peer after a read saw the reset, or shut down by us under a
//! writer blocked mid-frame (bad input, shutdown deadline). Rust binaries and CPython ignore
//! SIGPIPE, so they only see `EPIPE`; a host whose `main` is not Rust's (a C program embedding
//! pngcast, libFuzzer) keeps the default action and is killed. Every socket write of the transports
//! goes through [`NoSigPipe`], which sends with `send`/`sendmsg` and `MSG_NOSIGNAL`: the error
//! comes back as `EPIPE` and no signal is raised. Costs nothing over `write`/`writev` (the same
//! system call work; std's own `write` on a socket already passes the flag).
//!
//! Targets without `MSG_NOSIGNAL` (macOS, Windows) send with no flags: Windows has no SIGPIPE;
//! on macOS a host that does not ignore SIGPIPE is not protected.

use std::ffi::c_int;
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsFd;

use socket2::SockRef;

#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "netbsd",
    target_os = "openbsd"
))]
const FLAGS: c_int = libc::MSG_NOSIGNAL;
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "netbsd",
    target_os = "openbsd"
)))]
const FLAGS: c_int = 0;

/// A socket (owned or borrowed; any [`AsFd`] stream: std's or mio's `TcpStream`) whose writes
/// never raise SIGPIPE; reads are plain reads.
#[derive(Debug)]
pub struct NoSigPipe<S>(pub S);

impl<S: AsFd> Read for NoSigPipe<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*SockRef::from(&self.0)).read(buf)
    }
}

impl<S: AsFd> Write for NoSigPipe<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        SockRef::from(&self.0).send_with_flags(buf, FLAGS)
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        SockRef::from(&self.0).send_vectored_with_flags(bufs, FLAGS)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Sends what the socket takes of `bytes` at once, without blocking and without SIGPIPE (a
/// short answer to a connection about to be cut, from a thread that does not own it). Returns
/// the bytes sent.
pub fn send_now<S: AsFd>(sock: &S, bytes: &[u8]) -> usize {
    SockRef::from(sock)
        .send_with_flags(bytes, FLAGS | libc::MSG_DONTWAIT)
        .unwrap_or(0)
}

/// Sets `SO_SNDBUF` of a connection accepted from `peer` to `size` when the peer is a loopback
/// address (IPv4-mapped ones included) and `size` is set ([`crate::http::ServerConfig::
/// loopback_send_buffer`]); other connections keep the kernel's autotuning. Best effort: a
/// refusal leaves the kernel's buffer, which only costs speed.
pub fn tune_send_buffer<S: AsFd>(sock: &S, peer: &SocketAddr, size: Option<usize>) {
    if let Some(size) = size {
        if peer.ip().to_canonical().is_loopback() {
            let _ = SockRef::from(sock).set_send_buffer_size(size);
        }
    }
}

/// Descriptors kept for everything but WebSocket clients: the listener, the pollers, the
/// connections still in their HTTP stage (on top of `max_handshakes`), files and the process.
const RESERVED_DESCRIPTORS: u64 = 64;

/// How many WebSocket clients fit in this process's descriptor limit when each costs
/// `per_client` descriptors and `handshakes` more may be in their HTTP stage. Raises the soft
/// `RLIMIT_NOFILE` to the hard limit first where the system allows (a server that would
/// otherwise break at the common 1,024 soft limit). `None` where the limit is unknown or
/// unlimited.
pub fn clients_that_fit(per_client: u64, handshakes: usize) -> Option<usize> {
    let soft = rlimit::increase_nofile_limit(u64::MAX).ok()?;
    if soft == rlimit::INFINITY {
        return None;
    }
    let spare = soft.saturating_sub(RESERVED_DESCRIPTORS + handshakes as u64);
    Some(usize::try_from(spare / per_client.max(1)).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Shutdown, TcpListener, TcpStream};

    /// A connected pair on loopback: (accepted, connecting).
    fn accepted() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        (listener.accept().unwrap().0, client)
    }

    /// Loopback peers (IPv4, IPv6, IPv4-mapped) get the configured send buffer; a remote peer
    /// or `None` leaves the kernel's autotuned one untouched.
    #[test]
    fn send_buffer_is_set_for_loopback_peers_only() {
        let want = 512 << 10;
        for peer in ["127.0.0.1:9", "[::1]:9", "[::ffff:127.0.0.1]:9"] {
            let (s, _c) = accepted();
            tune_send_buffer(&s, &peer.parse().unwrap(), Some(want));
            let got = SockRef::from(&s).send_buffer_size().unwrap();
            // Linux reports twice the value set (its bookkeeping share); others report it.
            assert!(got >= want, "{peer}: {got}");
        }
        for (peer, size) in [("10.1.2.3:80", Some(want)), ("127.0.0.1:9", None)] {
            let (s, _c) = accepted();
            let before = SockRef::from(&s).send_buffer_size().unwrap();
            tune_send_buffer(&s, &peer.parse().unwrap(), size);
            assert_eq!(
                SockRef::from(&s).send_buffer_size().unwrap(),
                before,
                "{peer}"
            );
        }
    }

    #[test]
    fn the_descriptor_limit_bounds_clients() {
        let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        if let Some(fit) = clients_that_fit(4, 128) {
            assert!(fit as u64 * 4 + 128 <= rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap().0);
            assert!(rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap().0 >= soft);
        }
    }

    /// Writes after our own `shutdown(Write)` fail with `EPIPE` (the case that raises SIGPIPE
    /// without the flag); the bytes before it arrive intact through both write paths.
    #[test]
    fn writes_then_epipe_after_shutdown() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        let mut w = NoSigPipe(&s);
        w.write_all(b"ab").unwrap();
        let n = w
            .write_vectored(&[IoSlice::new(b"cd"), IoSlice::new(b"ef")])
            .unwrap();
        assert_eq!(n, 4);
        s.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        NoSigPipe(c).read_to_end(&mut got).unwrap();
        assert_eq!(got, b"abcdef");
        for _ in 0..2 {
            let e = w.write_vectored(&[IoSlice::new(b"x")]).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
            let e = w.write(b"x").unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
        }
    }
}
