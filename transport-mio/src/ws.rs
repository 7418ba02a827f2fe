//! One upgraded WebSocket client: the protocol's [`Session`] and this loop's socket state.
//!
//! The session decides everything (what to write, when to close and with which code, timers,
//! counters); this module only moves bytes: reads go into the session, writes come from
//! [`Session::io_slices`] straight out of the shared frame buffers with `write_vectored`
//! (several queued frames per system call, never copied per client). The event loop hands in the
//! socket as [`pngcast_protocol::io::NoSigPipe`], so writes are `sendmsg` with `MSG_NOSIGNAL`.
#![forbid(unsafe_code)]

use std::io::{self, IoSlice, Read, Write};
use std::time::Instant;

use pngcast_protocol::session::{Session, State};

/// Reads per readiness event before other clients get a turn.
pub(crate) const READ_BUDGET: usize = 16;
/// Bytes read per system call.
const READ_CHUNK: usize = 16 * 1024;
/// Slices handed to one `write_vectored` call (Linux takes up to 1024).
const SLICES: usize = 64;

/// What a write attempt left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pump {
    /// Nothing left to write.
    Idle,
    /// The socket is full: wait for WRITABLE.
    Blocked,
    /// The close frame is out: shut the write side and linger.
    Finished,
    /// The socket is dead: drop it.
    Dead,
}

/// What reading left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read_ {
    /// Drained until `WouldBlock`.
    Drained,
    /// The read budget ran out with data perhaps left: read again soon.
    More,
    /// The socket is dead (EOF, reset, or a peer that vanished without a close).
    Dead,
}

/// One WebSocket client of an event loop.
pub(crate) struct Ws {
    pub(crate) session: Session,
    /// The last write hit `WouldBlock`; we wait for a WRITABLE event.
    pub(crate) blocked: bool,
    /// Listed in the loop's batch of clients to write after the current commands.
    pub(crate) dirty: bool,
}

impl Ws {
    pub(crate) fn new(session: Session) -> Ws {
        Ws {
            session,
            blocked: false,
            dirty: false,
        }
    }

    /// Reads into the session until `WouldBlock` or the budget runs out. Once the session
    /// stops parsing (it decided to close), input is read and dropped.
    pub(crate) fn on_readable<S: Read>(&mut self, sock: &mut S, now: Instant) -> Read_ {
        let mut buf = [0u8; READ_CHUNK];
        for _ in 0..READ_BUDGET {
            match sock.read(&mut buf) {
                Ok(0) => {
                    self.session.receive_eof();
                    return Read_::Dead;
                }
                Ok(n) => self.session.receive(&buf[..n], now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Read_::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Read_::Dead,
            }
        }
        Read_::More
    }

    /// Writes until the socket is full or nothing is left.
    pub(crate) fn pump<S: Write>(&mut self, sock: &mut S, now: Instant) -> Pump {
        loop {
            match self.session.state() {
                State::Write => {}
                State::Idle => return self.unblocked(Pump::Idle),
                State::Finished => return self.unblocked(Pump::Finished),
                State::Ended => return self.unblocked(Pump::Dead),
            }
            let written = {
                let mut slices = [IoSlice::new(&[]); SLICES];
                let n = self.session.io_slices(&mut slices);
                sock.write_vectored(&slices[..n])
            };
            match written {
                Ok(0) => return Pump::Dead,
                Ok(n) => self.session.wrote(n, false, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.session.wrote(0, true, now);
                    self.blocked = true;
                    return Pump::Blocked;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Pump::Dead,
            }
        }
    }

    fn unblocked(&mut self, p: Pump) -> Pump {
        self.blocked = false;
        p
    }
}

/// Reads and throws away whatever the peer sends, until `WouldBlock`, EOF or an error.
pub(crate) fn discard_input<S: Read>(sock: &mut S) -> Read_ {
    let mut buf = [0u8; READ_CHUNK];
    for _ in 0..READ_BUDGET {
        match sock.read(&mut buf) {
            Ok(0) => return Read_::Dead,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Read_::Drained,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Read_::Dead,
        }
    }
    Read_::More
}
