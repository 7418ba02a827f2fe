//! The one load client: one thread, one epoll set (mio), its own WebSocket upgrade, payloads
//! dropped in the kernel with `recv(MSG_TRUNC)` (Linux TCP discards the bytes without copying
//! them), so on a shared machine the client takes as little CPU from the servers as it can.

use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use mio::{Events, Interest, Poll, Token};

use crate::now_ns;

/// Largest payload piece one `recv(MSG_TRUNC)` drops (the buffer is never written, so its pages
/// are never touched).
const DISCARD_LEN: usize = 4 << 20;

/// Connects and upgrades on `/ws`; returns the blocking stream right after the `101` head (the
/// head is read byte by byte so no frame byte is consumed).
pub fn upgrade(addr: SocketAddr) -> io::Result<TcpStream> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )?;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b)?;
        head.push(b[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(io::Error::other(format!(
            "upgrade refused: {}",
            String::from_utf8_lossy(&head)
        )));
    }
    Ok(s)
}

/// One client connection and where it is in the frame it is reading.
pub struct Conn {
    s: mio::net::TcpStream,
    hdr: [u8; 14],
    hdr_len: usize,
    in_payload: bool,
    remaining: u64,
    /// Opcode of the message being read (continuations keep it).
    msg_opcode: u8,
    fin: bool,
    first_pending: u64,
    /// Binary messages completed.
    pub frames: u64,
    /// When the first byte of the latest binary message was read.
    pub first_ns: u64,
    /// When its last byte was read.
    pub last_ns: u64,
    /// Binary payload bytes completed.
    pub bytes: u64,
    pub closed: bool,
}

/// Header length once its first two bytes are known.
fn header_need(b1: u8) -> usize {
    let ext = match b1 & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + ext + if b1 & 0x80 != 0 { 4 } else { 0 }
}

impl Conn {
    /// Reads until the socket would block; false when it closed or failed.
    fn on_readable(&mut self, scratch: &mut [MaybeUninit<u8>]) -> bool {
        loop {
            if !self.in_payload {
                let need = if self.hdr_len >= 2 {
                    header_need(self.hdr[1])
                } else {
                    2
                };
                let n = match self.s.read(&mut self.hdr[self.hdr_len..need]) {
                    Ok(0) => return false,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return false,
                };
                if self.hdr_len == 0 {
                    self.first_pending = now_ns();
                }
                self.hdr_len += n;
                if self.hdr_len < 2 || self.hdr_len < header_need(self.hdr[1]) {
                    continue;
                }
                let h = &self.hdr;
                let len = match h[1] & 0x7f {
                    126 => u64::from(u16::from_be_bytes([h[2], h[3]])),
                    127 => u64::from_be_bytes(h[2..10].try_into().unwrap()),
                    n => u64::from(n),
                };
                let opcode = h[0] & 0x0f;
                self.fin = h[0] & 0x80 != 0;
                if opcode != 0 && opcode < 8 {
                    self.msg_opcode = opcode;
                    if opcode == 2 {
                        self.first_ns = self.first_pending;
                    }
                }
                if opcode < 8 && self.msg_opcode == 2 {
                    self.bytes += len;
                }
                self.remaining = len;
                self.hdr_len = 0;
                self.in_payload = true;
                if opcode >= 8 {
                    // A control frame (ping, close) between data frames: never counted.
                    self.fin = false;
                }
            } else if self.remaining > 0 {
                let want = (self.remaining as usize).min(scratch.len());
                match socket2::SockRef::from(&self.s)
                    .recv_with_flags(&mut scratch[..want], libc::MSG_TRUNC)
                {
                    Ok(0) => return false,
                    Ok(n) => self.remaining -= n as u64,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return false,
                }
            }
            if self.in_payload && self.remaining == 0 {
                self.in_payload = false;
                if self.fin && self.msg_opcode == 2 {
                    self.last_ns = now_ns();
                    self.frames += 1;
                }
            }
        }
    }
}

/// Every reading client of one measurement, on one poll set.
pub struct Load {
    poll: Poll,
    events: Events,
    pub conns: Vec<Conn>,
    scratch: Box<[MaybeUninit<u8>]>,
    /// Connections that are open but never read (stalled clients).
    stalled: Vec<TcpStream>,
}

impl Load {
    /// Connects `readers` reading clients to `addr` (after `stalled` that never read).
    pub fn connect(addr: SocketAddr, readers: usize, stalled: usize) -> io::Result<Load> {
        let poll = Poll::new()?;
        let mut stalls = Vec::new();
        for _ in 0..stalled {
            stalls.push(upgrade(addr)?);
        }
        let mut conns = Vec::with_capacity(readers);
        for i in 0..readers {
            let s = upgrade(addr)?;
            s.set_nonblocking(true)?;
            let mut s = mio::net::TcpStream::from_std(s);
            poll.registry()
                .register(&mut s, Token(i), Interest::READABLE)?;
            conns.push(Conn {
                s,
                hdr: [0; 14],
                hdr_len: 0,
                in_payload: false,
                remaining: 0,
                msg_opcode: 0,
                fin: false,
                first_pending: 0,
                frames: 0,
                first_ns: 0,
                last_ns: 0,
                bytes: 0,
                closed: false,
            });
        }
        Ok(Load {
            poll,
            events: Events::with_capacity(1024),
            conns,
            scratch: Box::new_uninit_slice(DISCARD_LEN),
            stalled: stalls,
        })
    }

    /// Reads until `done(conns)` or `deadline_ns` (`CLOCK_MONOTONIC`); true when done.
    pub fn pump(&mut self, done: impl Fn(&[Conn]) -> bool, deadline_ns: u64) -> io::Result<bool> {
        loop {
            if done(&self.conns) {
                return Ok(true);
            }
            let now = now_ns();
            if now >= deadline_ns {
                return Ok(false);
            }
            let wait = Duration::from_nanos((deadline_ns - now).min(50_000_000));
            match self.poll.poll(&mut self.events, Some(wait)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for ev in self.events.iter() {
                let c = &mut self.conns[ev.token().0];
                if !c.closed && !c.on_readable(&mut self.scratch) {
                    c.closed = true;
                    let _ = self.poll.registry().deregister(&mut c.s);
                }
            }
            if self.conns.iter().all(|c| c.closed) {
                return Err(io::Error::other("every client was closed"));
            }
        }
    }

    /// Number of stalled clients held open.
    pub fn stalled(&self) -> usize {
        self.stalled.len()
    }
}
