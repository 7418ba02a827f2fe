//! One upgraded WebSocket client: its queue, its close state, its tungstenite context.
//!
//! Inbound frames (the feature flags, pings, closes, garbage) go through tungstenite's
//! `WebSocketContext`, which also answers pings and closes. tungstenite never writes to the
//! socket: it writes into a small buffer ([`Tap`]) whose bytes become control frames of the
//! client's [`ClientQueue`], which puts them on the wire at the next WebSocket frame boundary.
//! Data frames are written by us straight from the shared buffers with `write_vectored` over the
//! queue's slices (several queued frames per system call), never copied per client; the event
//! loop hands in the socket as [`pngcast_protocol::io::NoSigPipe`], so that is `sendmsg` with
//! `MSG_NOSIGNAL`.
#![forbid(unsafe_code)]

use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;
use std::time::Instant;

use pngcast_protocol::queue::{ClientQueue, Outgoing, PushOutcome};
use pngcast_protocol::wire;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};
use tungstenite::{Error as WsError, Message};

use crate::shared::Stats;

/// Messages read per readiness event before other clients get a turn.
pub(crate) const READ_BUDGET: usize = 64;
/// Slices handed to one `write_vectored` call (Linux takes up to 1024).
const SLICES: usize = 64;
/// Bytes of tungstenite output held back while closing (see `take_tap`).
const HELD_MAX: usize = 1024;
/// An empty ping frame, unmasked as a server's frames are.
const PING: [u8; 2] = [0x89, 0x00];

/// The socket as tungstenite sees it: reads come from the socket, writes land in `out`.
struct Tap<'a, S> {
    sock: &'a mut S,
    out: &'a mut Vec<u8>,
}

impl<S: Read> Read for Tap<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.read(buf)
    }
}

impl<S> Write for Tap<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Why we close a client, with the WebSocket close code it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseWhy {
    /// Server shutdown: 1001, after the queue drained (within the deadline).
    Shutdown,
    /// A newer connection took this clientId: 1000.
    Replaced,
    /// `Reliable` queue overflow: 1008.
    Overflow,
    /// Inbound message beyond the limit: 1009.
    TooBig,
    /// A binary or otherwise unsupported message: 1003.
    Unsupported,
    /// Text that is not UTF-8: 1007.
    BadUtf8,
    /// A WebSocket protocol violation: 1002.
    Protocol,
}

impl CloseWhy {
    fn frame(self) -> CloseFrame {
        let (code, reason) = match self {
            CloseWhy::Shutdown => (CloseCode::Away, "server shutting down"),
            CloseWhy::Replaced => (CloseCode::Normal, "replaced by a newer connection"),
            CloseWhy::Overflow => (CloseCode::Policy, "client queue overflow"),
            CloseWhy::TooBig => (CloseCode::Size, "message too big"),
            CloseWhy::Unsupported => (CloseCode::Unsupported, "unsupported message"),
            CloseWhy::BadUtf8 => (CloseCode::Invalid, "invalid UTF-8"),
            CloseWhy::Protocol => (CloseCode::Protocol, "protocol error"),
        };
        CloseFrame {
            code,
            reason: reason.into(),
        }
    }

    fn is_bad_input(self) -> bool {
        matches!(
            self,
            CloseWhy::TooBig | CloseWhy::Unsupported | CloseWhy::BadUtf8 | CloseWhy::Protocol
        )
    }
}

/// Where the close handshake stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    Open,
    /// Send our close frame once the queue is empty. Shutdown keeps the queue (flush what we
    /// can before the deadline); every other reason drops what has not started.
    Pending(CloseWhy),
    /// The peer sent Close: tungstenite's reply goes out once the queue is empty.
    ByPeer,
    /// The closing frame is queued: done once the queue is empty.
    Queued,
}

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

/// One WebSocket client.
pub(crate) struct Ws {
    ctx: WebSocketContext,
    pub(crate) client_id: Arc<str>,
    metadata: bool,
    seen_text: bool,
    /// The `101 Switching Protocols` response, written before anything else.
    head: Vec<u8>,
    head_pos: usize,
    queue: ClientQueue,
    /// tungstenite's output of the current call (pongs, close frames).
    tap: Vec<u8>,
    /// A close reply held back until the queue is empty.
    held: Vec<u8>,
    closing: Closing,
    /// tungstenite must not be read from any more (after a close or an error).
    read_stopped: bool,
    /// The last write hit `WouldBlock`; we wait for a WRITABLE event.
    pub(crate) blocked: bool,
    /// Listed in the loop's batch of clients to write after the current commands.
    pub(crate) dirty: bool,
    /// Since when output has been pending without progress (the stall clock).
    pub(crate) stalled_since: Option<Instant>,
    /// When the peer last sent a complete message or control frame (pongs included).
    pub(crate) last_inbound: Instant,
    /// Why we close, once decided (for the counters).
    why: Option<CloseWhy>,
}

impl Ws {
    /// A client right after a successful upgrade: `head` is the 101 response, `leftover` the
    /// bytes the client sent after its request head. Queues the status message first.
    pub(crate) fn new(
        client_id: Arc<str>,
        head: Vec<u8>,
        leftover: Vec<u8>,
        queue: ClientQueue,
        max_message_bytes: usize,
        stats: &Stats,
        now: Instant,
    ) -> Ws {
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0)
            .max_write_buffer_size(64 * 1024)
            .max_message_size(Some(max_message_bytes))
            .max_frame_size(Some(max_message_bytes));
        let ctx = WebSocketContext::from_partially_read(leftover, Role::Server, Some(config));
        let mut ws = Ws {
            ctx,
            client_id,
            metadata: false,
            seen_text: false,
            head,
            head_pos: 0,
            queue,
            tap: Vec::new(),
            held: Vec::new(),
            closing: Closing::Open,
            read_stopped: false,
            blocked: false,
            dirty: false,
            stalled_since: None,
            last_inbound: now,
            why: None,
        };
        let status: Arc<str> = wire::status_message(&ws.client_id).into();
        ws.push_text(status, stats);
        ws
    }

    /// True while the client takes new messages.
    pub(crate) fn is_open(&self) -> bool {
        self.closing == Closing::Open
    }

    /// Bytes waiting to be written.
    pub(crate) fn pending_bytes(&self) -> usize {
        self.queue.pending_bytes()
    }

    /// Queues an image in the form this client asked for.
    pub(crate) fn push_image(&mut self, frame: &wire::WireFrame, stats: &Stats) {
        let item = Outgoing::Image {
            frame: frame.clone(),
            metadata: self.metadata,
        };
        self.push(item, stats);
    }

    /// Queues a text message.
    pub(crate) fn push_text(&mut self, text: Arc<str>, stats: &Stats) {
        self.push(Outgoing::Text(text), stats);
    }

    fn push(&mut self, item: Outgoing, stats: &Stats) {
        if self.closing != Closing::Open {
            return;
        }
        let image = item.is_image();
        match self.queue.push(item) {
            PushOutcome::Queued => {}
            PushOutcome::DroppedOldest { frames } => {
                Stats::add(&stats.frames_dropped, frames as u64)
            }
            PushOutcome::Overflow => {
                Stats::add(&stats.closed_overflow, 1);
                self.close(CloseWhy::Overflow, stats);
                return;
            }
        }
        Stats::add(
            if image {
                &stats.frames_queued
            } else {
                &stats.texts_queued
            },
            1,
        );
    }

    /// Starts closing with `why`; the close frame follows the frame in flight (and, for a
    /// shutdown, everything queued).
    pub(crate) fn close(&mut self, why: CloseWhy, stats: &Stats) {
        if self.closing != Closing::Open {
            return;
        }
        self.why = Some(why);
        self.closing = Closing::Pending(why);
        if why != CloseWhy::Shutdown {
            let dropped = self.queue.clear_unstarted();
            Stats::add(&stats.frames_dropped, dropped as u64);
        }
    }

    /// True once a close was started for some reason (overflow, shutdown, a protocol error).
    pub(crate) fn is_closing(&self) -> bool {
        self.why.is_some()
    }

    /// Queues a keepalive ping for the next frame boundary.
    pub(crate) fn ping(&mut self, stats: &Stats) {
        if self.closing == Closing::Open && self.queue.push_control(&PING) == PushOutcome::Overflow
        {
            Stats::add(&stats.closed_overflow, 1);
            self.close(CloseWhy::Overflow, stats);
        }
    }

    /// Counts the queued images that will never be sent, once the client is gone.
    pub(crate) fn discard(&mut self, stats: &Stats) {
        Stats::add(&stats.frames_dropped, self.queue.queued_images() as u64);
    }

    /// True for closes caused by the peer's bad input (for the counters).
    pub(crate) fn closed_for_bad_input(&self) -> bool {
        self.why.is_some_and(CloseWhy::is_bad_input)
    }

    /// Reads and handles inbound messages until `WouldBlock` or the budget runs out.
    pub(crate) fn on_readable<S: Read>(
        &mut self,
        sock: &mut S,
        stats: &Stats,
        now: Instant,
    ) -> Read_ {
        if self.read_stopped {
            return discard_input(sock);
        }
        let mut outcome = Read_::More;
        for _ in 0..READ_BUDGET {
            let mut tap = Tap {
                sock: &mut *sock,
                out: &mut self.tap,
            };
            let read = self.ctx.read(&mut tap);
            if read.is_ok() {
                self.last_inbound = now;
            }
            match read {
                Ok(Message::Text(text)) => {
                    if !self.seen_text {
                        self.seen_text = true;
                        self.on_first_text(&text, stats);
                    }
                }
                Ok(Message::Binary(_)) => {
                    self.fail(CloseWhy::Unsupported, stats);
                }
                Ok(Message::Close(_)) => {
                    self.read_stopped = true;
                    if self.closing == Closing::Open || matches!(self.closing, Closing::Pending(_))
                    {
                        self.closing = Closing::ByPeer;
                        let dropped = self.queue.clear_unstarted();
                        Stats::add(&stats.frames_dropped, dropped as u64);
                    }
                }
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    outcome = Read_::Drained;
                }
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(WsError::Capacity(_)) => self.fail(CloseWhy::TooBig, stats),
                Err(WsError::Utf8(_)) => self.fail(CloseWhy::BadUtf8, stats),
                Err(WsError::Protocol(
                    tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                )) => {
                    outcome = Read_::Dead;
                }
                Err(WsError::Protocol(_)) => self.fail(CloseWhy::Protocol, stats),
                Err(_) => outcome = Read_::Dead,
            }
            if self.read_stopped || outcome != Read_::More {
                break;
            }
        }
        // Pull out a pending pong or close reply, then hand it to the queue.
        let mut tap = Tap {
            sock: &mut *sock,
            out: &mut self.tap,
        };
        let _ = self.ctx.flush(&mut tap);
        self.take_tap(stats);
        if outcome == Read_::Dead {
            return Read_::Dead;
        }
        if self.read_stopped {
            return discard_input(sock);
        }
        outcome
    }

    /// The client's first text: feature flags decide the image form and get a reply.
    fn on_first_text(&mut self, text: &str, stats: &Stats) {
        if let Ok(wire::TextMessage::FeatureFlags { data }) = wire::parse_text(text) {
            self.metadata = data
                .get("supports_preview_metadata")
                .and_then(|b| b.as_bool())
                == Some(true);
            self.push_text(wire::feature_flags_reply().into(), stats);
        }
    }

    /// Moves tungstenite's output into the queue (pongs) or holds it (a close reply).
    fn take_tap(&mut self, stats: &Stats) {
        if self.tap.is_empty() {
            return;
        }
        if self.closing == Closing::Open {
            if self.queue.push_control(&self.tap) == PushOutcome::Overflow {
                // Pings faster than the client reads our pongs.
                Stats::add(&stats.closed_overflow, 1);
                self.close(CloseWhy::Overflow, stats);
            }
        } else {
            // Anything after a close decision waits for the queue to drain: a control frame
            // must not land between an announcement and its image. Pongs to a ping flood are
            // not worth keeping while closing: older held bytes give way (the close reply is
            // always the newest output, and the last).
            if self.held.len() + self.tap.len() > HELD_MAX {
                self.held.clear();
            }
            self.held.extend_from_slice(&self.tap);
        }
        self.tap.clear();
    }

    /// Bad input: stop reading through tungstenite (its frame state is no longer trustworthy)
    /// and close with `why`, for this client only.
    fn fail(&mut self, why: CloseWhy, stats: &Stats) {
        self.read_stopped = true;
        self.close(why, stats);
    }

    /// Writes until the socket is full or nothing is left.
    pub(crate) fn pump<S: Read + Write>(
        &mut self,
        sock: &mut S,
        stats: &Stats,
        now: Instant,
    ) -> Pump {
        let mut progress = false;
        let result = self.pump_inner(sock, stats, &mut progress);
        if result == Pump::Blocked {
            self.blocked = true;
            if progress || self.stalled_since.is_none() {
                self.stalled_since = Some(now);
            }
        } else {
            self.blocked = false;
            self.stalled_since = None;
        }
        result
    }

    fn pump_inner<S: Read + Write>(
        &mut self,
        sock: &mut S,
        stats: &Stats,
        progress: &mut bool,
    ) -> Pump {
        loop {
            if self.head_pos < self.head.len() {
                match sock.write(&self.head[self.head_pos..]) {
                    Ok(0) => return Pump::Dead,
                    Ok(n) => {
                        self.head_pos += n;
                        *progress = true;
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Pump::Blocked,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return Pump::Dead,
                }
            }
            if self.queue.is_empty() {
                match self.closing {
                    Closing::Open => return Pump::Idle,
                    Closing::Queued => return Pump::Finished,
                    Closing::ByPeer => {
                        self.closing = Closing::Queued;
                        let held = std::mem::take(&mut self.held);
                        // The reply is at most 127 bytes: it always fits.
                        let _ = self.queue.push_control(&held);
                        continue;
                    }
                    Closing::Pending(why) => {
                        self.closing = Closing::Queued;
                        self.held.clear();
                        let mut tap = Tap {
                            sock: &mut *sock,
                            out: &mut self.tap,
                        };
                        // Into a buffer: this cannot fail for I/O reasons.
                        let _ = self.ctx.close(&mut tap, Some(why.frame()));
                        let _ = self.queue.push_control(&self.tap);
                        self.tap.clear();
                        continue;
                    }
                }
            }
            let written = {
                let mut slices = [IoSlice::new(&[]); SLICES];
                let n = self.queue.io_slices(&mut slices);
                sock.write_vectored(&slices[..n])
            };
            match written {
                Ok(0) => return Pump::Dead,
                Ok(n) => {
                    let done = self.queue.advance(n);
                    Stats::add(&stats.bytes_sent, n as u64);
                    Stats::add(&stats.frames_sent, done.images as u64);
                    *progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Pump::Blocked,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Pump::Dead,
            }
        }
    }
}

/// Reads and throws away whatever the peer sends, until `WouldBlock`, EOF or an error.
pub(crate) fn discard_input<S: Read>(sock: &mut S) -> Read_ {
    let mut buf = [0u8; 4096];
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    use pngcast_protocol::queue::Policy;
    use pngcast_protocol::wire::{ImageMeta, WireFrame};

    /// A socket that takes at most `budget` bytes per `pump` and then reports `WouldBlock`.
    #[derive(Default)]
    struct Mock {
        input: VecDeque<u8>,
        out: Vec<u8>,
        budget: usize,
    }

    impl Read for Mock {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.input.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.input.len());
            for (b, x) in buf.iter_mut().zip(self.input.drain(..n)) {
                *b = x;
            }
            Ok(n)
        }
    }

    impl Write for Mock {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            if self.budget == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.budget);
                self.out.extend_from_slice(&b[..take]);
                self.budget -= take;
                n += take;
                if self.budget == 0 {
                    break;
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A masked client frame.
    fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        assert!(payload.len() < 126);
        let mask = [1u8, 2, 3, 4];
        let mut v = vec![0x80 | opcode, 0x80 | payload.len() as u8];
        v.extend_from_slice(&mask);
        v.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        v
    }

    /// Splits server output into (opcode, payload) frames, checking every header.
    fn frames(mut wire: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while !wire.is_empty() {
            assert_eq!(wire[0] & 0xf0, 0x80, "FIN set, no RSV bits");
            assert_eq!(wire[1] & 0x80, 0, "server frames are unmasked");
            let (len, at) = match wire[1] {
                126 => (u16::from_be_bytes([wire[2], wire[3]]) as usize, 4),
                127 => (
                    u64::from_be_bytes(wire[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                n => (n as usize, 2),
            };
            out.push((wire[0] & 0x0f, wire[at..at + len].to_vec()));
            wire = &wire[at + len..];
        }
        out
    }

    fn image(i: u32) -> WireFrame {
        let meta = ImageMeta {
            event: "e".into(),
            index: i,
            count: 9,
            width: 1,
            height: 1,
            ..Default::default()
        };
        WireFrame::new(&meta, Arc::new(vec![i as u8; 3000]), true)
    }

    fn client(stats: &Stats) -> Ws {
        let queue = ClientQueue::new(Policy::Reliable, 1 << 20);
        Ws::new(
            "id".into(),
            b"HEAD".to_vec(),
            Vec::new(),
            queue,
            1024,
            stats,
            Instant::now(),
        )
    }

    /// Pumps in steps of `step` bytes until idle or finished.
    fn drain(ws: &mut Ws, sock: &mut Mock, stats: &Stats, step: usize) -> Pump {
        for _ in 0..100_000 {
            sock.budget = step;
            match ws.pump(sock, stats, Instant::now()) {
                Pump::Blocked => {}
                other => return other,
            }
        }
        panic!("no end");
    }

    #[test]
    fn pongs_never_land_inside_a_frame() {
        for step in [1, 7, 100, 1000, 5000] {
            let stats = Stats::default();
            let mut ws = client(&stats);
            let mut sock = Mock::default();
            for i in 0..3 {
                ws.push_image(&image(i), &stats);
            }
            // Half of the first image goes out, then a ping arrives.
            sock.budget = 1500;
            assert_eq!(ws.pump(&mut sock, &stats, Instant::now()), Pump::Blocked);
            sock.input.extend(client_frame(0x9, b"p1"));
            assert_eq!(
                ws.on_readable(&mut sock, &stats, Instant::now()),
                Read_::Drained
            );
            assert_eq!(drain(&mut ws, &mut sock, &stats, step), Pump::Idle);
            assert_eq!(&sock.out[..4], b"HEAD");
            let got = frames(&sock.out[4..]);
            let ops: Vec<u8> = got.iter().map(|f| f.0).collect();
            // status, then (announcement, image) x 3, with the pong between two whole frames.
            let pong = ops.iter().position(|&o| o == 0xA).expect("a pong");
            assert_eq!(got[pong].1, b"p1");
            let mut rest = ops.clone();
            rest.remove(pong);
            assert_eq!(rest, [1, 1, 2, 1, 2, 1, 2], "step {step}");
            assert!(pong >= 2, "the pong waited for the frame in flight");
            assert_eq!(
                stats.frames_sent.load(std::sync::atomic::Ordering::Relaxed),
                3
            );
        }
    }

    #[test]
    fn close_follows_the_frame_in_flight_and_nothing_follows_it() {
        let stats = Stats::default();
        let mut ws = client(&stats);
        let mut sock = Mock::default();
        for i in 0..3 {
            ws.push_image(&image(i), &stats);
        }
        sock.budget = 200; // inside the first announcement + image pair
        assert_eq!(ws.pump(&mut sock, &stats, Instant::now()), Pump::Blocked);
        ws.close(CloseWhy::Overflow, &stats);
        assert!(!ws.is_open());
        ws.push_text("late".into(), &stats); // ignored once closing
        assert_eq!(drain(&mut ws, &mut sock, &stats, 64), Pump::Finished);
        let got = frames(&sock.out[4..]);
        let ops: Vec<u8> = got.iter().map(|f| f.0).collect();
        assert_eq!(ops, [1, 1, 2, 8], "status, the started pair, close");
        assert_eq!(&got[3].1[..2], &1008u16.to_be_bytes());
        assert_eq!(
            stats
                .frames_dropped
                .load(std::sync::atomic::Ordering::Relaxed),
            2
        );
    }

    #[test]
    fn bad_input_closes_with_its_code() {
        let cases: [(Vec<u8>, u16); 4] = [
            (client_frame(0x2, b"bin"), 1003),
            (client_frame(0x1, &[0xff, 0xfe]), 1007),
            (vec![0x81, 0x02, b'h', b'i'], 1002), // unmasked
            (
                {
                    // A 2000-byte text against a 1024-byte limit.
                    let mut v = vec![0x81, 0x80 | 126, 0x07, 0xd0, 0, 0, 0, 0];
                    v.extend_from_slice(&[b'a'; 2000]);
                    v
                },
                1009,
            ),
        ];
        for (input, code) in cases {
            let stats = Stats::default();
            let mut ws = client(&stats);
            let mut sock = Mock::default();
            sock.input.extend(input);
            let _ = ws.on_readable(&mut sock, &stats, Instant::now());
            assert_eq!(drain(&mut ws, &mut sock, &stats, 1 << 20), Pump::Finished);
            let got = frames(&sock.out[4..]);
            let last = got.last().unwrap();
            assert_eq!(last.0, 8);
            assert_eq!(&last.1[..2], &code.to_be_bytes(), "case {code}");
            assert!(ws.closed_for_bad_input());
        }
    }

    #[test]
    fn peer_close_is_answered_after_the_frame_in_flight() {
        let stats = Stats::default();
        let mut ws = client(&stats);
        let mut sock = Mock::default();
        ws.push_image(&image(0), &stats);
        ws.push_image(&image(1), &stats);
        sock.budget = 300;
        assert_eq!(ws.pump(&mut sock, &stats, Instant::now()), Pump::Blocked);
        let mut close = 1000u16.to_be_bytes().to_vec();
        close.extend_from_slice(b"bye");
        sock.input.extend(client_frame(0x8, &close));
        let _ = ws.on_readable(&mut sock, &stats, Instant::now());
        assert_eq!(drain(&mut ws, &mut sock, &stats, 50), Pump::Finished);
        let ops: Vec<u8> = frames(&sock.out[4..]).iter().map(|f| f.0).collect();
        assert_eq!(ops, [1, 1, 2, 8]);
    }
}
