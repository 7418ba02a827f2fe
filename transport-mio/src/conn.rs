//! One accepted TCP connection and the phase it is in.
//!
//! ```text
//! Head ──parse──> Reply (viewer, features, refusals) ──written──> Linger ──EOF/timeout──> gone
//!   └──upgrade──> Ws (status, flags, frames, pings) ──close sent──> Linger
//! ```
//! Every phase ends in `Linger`: the write side is shut down (the peer sees our last bytes, then
//! EOF) and whatever the peer still sends is read and dropped until it closes or a short timer
//! expires, so our last bytes are never lost to a reset caused by unread input.
#![forbid(unsafe_code)]

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::Instant;

use mio::net::TcpStream;
use pngcast_protocol::http::RequestHead;
use pngcast_protocol::ingest::IngestRoute;

use crate::ws::{discard_input, Read_, Ws};
use pngcast_protocol::io::NoSigPipe;

/// The bytes of a plain HTTP response being written, after which the connection closes.
pub(crate) struct Reply {
    pub(crate) out: Vec<u8>,
    pub(crate) pos: usize,
}

/// The phase of a connection.
pub(crate) enum Phase {
    /// Reading the request head (bytes so far).
    Head(Vec<u8>),
    /// Reading an ingest request's body (the route and the bytes so far).
    Body(Box<(IngestRoute, Vec<u8>)>),
    /// Writing a plain HTTP response.
    Reply(Reply),
    /// An upgraded WebSocket client.
    Ws(Box<Ws>),
    /// Write side shut; dropping input until EOF or the deadline.
    Linger,
    /// Nothing left: deregister and drop.
    Done,
}

/// An accepted connection.
pub(crate) struct Conn {
    pub(crate) sock: TcpStream,
    pub(crate) phase: Phase,
    /// Deadline of the current phase: handshake (Head, Reply) or linger.
    pub(crate) deadline: Instant,
    /// Whether WRITABLE is part of the registered interest.
    pub(crate) writable_registered: bool,
    /// Counted in the server's connections in their HTTP stage.
    pub(crate) in_head: bool,
}

/// What reading the request head produced.
pub(crate) enum HeadRead {
    /// More bytes needed.
    Pending,
    /// The peer finished sending (EOF): what was read is all there is. HTTP/1.1 allows a
    /// client to half-close after its request; it still gets the answer.
    Eof,
    /// The socket failed.
    Gone,
    /// The head is larger than the limit.
    TooLarge,
}

impl Conn {
    /// Reads request-head bytes until `WouldBlock`, EOF, or the end of the head; more than
    /// `max` bytes without an end is `TooLarge`.
    ///
    /// Only the head counts against `max`: reading stops at the first chunk that holds the
    /// head's end, so frames a client pipelines behind its upgrade request are not read here
    /// (beyond that chunk, which becomes the WebSocket layer's leftover) and stay in the socket
    /// for the WebSocket reader, which reads a fresh client at once (no readiness edge needed).
    pub(crate) fn read_head(&mut self, max: usize) -> HeadRead {
        let Phase::Head(buf) = &mut self.phase else {
            return HeadRead::Pending;
        };
        let mut chunk = [0u8; 2048];
        loop {
            if head_ended(buf, max) {
                return HeadRead::Pending;
            }
            if buf.len() > max {
                return HeadRead::TooLarge;
            }
            match self.sock.read(&mut chunk) {
                Ok(0) => return HeadRead::Eof,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return HeadRead::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return HeadRead::Gone,
            }
        }
    }

    /// Writes what is left of a plain HTTP reply; true once all of it is out.
    /// An I/O error ends the connection.
    pub(crate) fn write_reply(&mut self) -> io::Result<bool> {
        let Phase::Reply(reply) = &mut self.phase else {
            return Ok(true);
        };
        while reply.pos < reply.out.len() {
            match NoSigPipe(&self.sock).write(&reply.out[reply.pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => reply.pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Reads body bytes until `WouldBlock`, EOF or the declared length; true once complete.
    /// EOF before the end leaves the body short (the answer says so).
    pub(crate) fn read_body(&mut self) -> io::Result<bool> {
        let Phase::Body(body) = &mut self.phase else {
            return Ok(true);
        };
        let (route, buf) = &mut **body;
        let mut chunk = [0u8; 16 * 1024];
        while buf.len() < route.content_length {
            let want = (route.content_length - buf.len()).min(chunk.len());
            match self.sock.read(&mut chunk[..want]) {
                Ok(0) => return Ok(true),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Shuts the write side and starts lingering until `deadline`.
    pub(crate) fn linger(&mut self, deadline: Instant) {
        // An error here means the peer is already gone; lingering then ends at the next read.
        let _ = self.sock.shutdown(Shutdown::Write);
        self.phase = Phase::Linger;
        self.deadline = deadline;
    }

    /// Drops input while lingering; the connection is done at EOF or on error.
    pub(crate) fn read_linger(&mut self) -> Read_ {
        let r = discard_input(&mut self.sock);
        if r == Read_::Dead {
            self.phase = Phase::Done;
        }
        r
    }

    /// Whether WRITABLE interest is needed now.
    pub(crate) fn wants_writable(&self) -> bool {
        match &self.phase {
            Phase::Reply(r) => r.pos < r.out.len(),
            Phase::Ws(ws) => ws.blocked,
            Phase::Head(_) | Phase::Body(_) | Phase::Linger | Phase::Done => false,
        }
    }
}

/// Whether `buf` holds a request head the parser is done with (complete, or malformed, or over
/// `max` by its own length): anything but "need more bytes". The parser only runs once an
/// empty line (`\n\n` or `\n\r\n`, the ends it accepts) is in the buffer.
fn head_ended(buf: &[u8], max: usize) -> bool {
    let empty_line = buf.windows(2).any(|w| w == b"\n\n") || buf.windows(3).any(|w| w == b"\n\r\n");
    empty_line && !matches!(RequestHead::parse_with_limit(buf, max), Ok(None))
}
