//! Waiting for a connection's input without waking for its output.
//!
//! A client's reader and writer threads share one socket. The writer blocks in `sendmsg` while
//! the send buffer is full, and the kernel wakes it as the client's ACKs free room. A reader
//! blocked in `recv` sleeps on the same wait queue, and those wake-ups do not say what they
//! are for, so every one also woke the reader, which found nothing to read and slept again. At
//! 100 clients of 1 MP frames that was half of all the server's wake-ups (`perf sched`: 4961
//! reader wake-ups against 3831 writer wake-ups). So the reader first waits in its own epoll
//! set for input alone (an epoll wait is woken only for the events it asked for), then reads.
//!
//! mio registers edge-triggered: after a read that filled the buffer, more may be waiting with
//! no new edge to come, so the caller reads again before it waits again ([`InputWait::wait`]
//! only after a short read, which drained the socket).
#![forbid(unsafe_code)]

use std::io;
use std::net::TcpStream;
use std::time::Instant;

/// A wait for input on one socket: an epoll set holding it for readability.
#[cfg(unix)]
pub(crate) struct InputWait {
    poll: mio::Poll,
    events: mio::Events,
}

#[cfg(unix)]
impl InputWait {
    /// An epoll set for `sock`'s input (one more descriptor while the connection lasts).
    pub(crate) fn new(sock: &TcpStream) -> io::Result<InputWait> {
        use std::os::fd::AsRawFd;
        let poll = mio::Poll::new()?;
        poll.registry().register(
            &mut mio::unix::SourceFd(&sock.as_raw_fd()),
            mio::Token(0),
            mio::Interest::READABLE,
        )?;
        Ok(InputWait {
            poll,
            events: mio::Events::with_capacity(1),
        })
    }

    /// Blocks until input, end of input or an error is pending (true), or `until` passes
    /// (false).
    pub(crate) fn wait(&mut self, until: Option<Instant>) -> io::Result<bool> {
        loop {
            let timeout = until.map(|t| t.saturating_duration_since(Instant::now()));
            match self.poll.poll(&mut self.events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if !self.events.is_empty() {
                return Ok(true);
            }
            if until.is_some_and(|t| Instant::now() >= t) {
                return Ok(false);
            }
        }
    }
}

/// Elsewhere the reader blocks in `recv` directly.
#[cfg(not(unix))]
pub(crate) struct InputWait;

#[cfg(not(unix))]
impl InputWait {
    pub(crate) fn new(_sock: &TcpStream) -> io::Result<InputWait> {
        Err(io::ErrorKind::Unsupported.into())
    }

    pub(crate) fn wait(&mut self, _until: Option<Instant>) -> io::Result<bool> {
        Ok(true)
    }
}
