#![forbid(unsafe_code)]
//! The per-client outbound queue of protocol.md section 5, without I/O.
//!
//! A transport keeps one [`ClientQueue`] per client. `send` pushes [`Outgoing`] items (cheap:
//! frames are `Arc`s); the client's writer asks for the bytes to write next with
//! [`ClientQueue::io_slices`] (WebSocket headers included: the queue builds them), writes what the
//! socket takes, and reports it with [`ClientQueue::advance`]. A partly written item is "started"
//! and is never dropped, so the client never sees half a frame.
//!
//! Control frames (pong, ping, close) produced by tungstenite go in with
//! [`ClientQueue::push_control`]; the queue emits them at the next WebSocket frame boundary, so
//! they never land inside a data frame. A transport that lets tungstenite write to the socket
//! directly must do so only when [`ClientQueue::at_frame_boundary`] is true.
//!
//! # Policies when the queue is over `max_bytes`
//! - [`Policy::LatestWins`]: the oldest not-yet-started image items are dropped (a legacy item is
//!   the announcement and the binary message together) until the new item fits; text items are
//!   never dropped. The newest image is always kept, even alone above the limit. A text item that
//!   still does not fit returns [`PushOutcome::Overflow`]: the client does not read and JSON may
//!   not be dropped, so the transport closes it with 1008.
//! - [`Policy::Reliable`]: nothing is dropped; an item that does not fit returns
//!   [`PushOutcome::Overflow`] and the transport closes the client with 1008. An item larger than
//!   `max_bytes` is accepted into an empty queue, so one big frame never closes everyone.
//!
//! Sizes are counted as the bytes this client would be sent (headers, prefix, PNG, announcement),
//! although the PNG itself is shared by every client.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Arc;

use crate::wire::{ws_frame_header, WireFrame, LEGACY_PREFIX, OPCODE_BINARY, OPCODE_TEXT};

/// Control bytes (pongs, close) a queue holds at most; past this, [`ClientQueue::push_control`]
/// reports [`PushOutcome::Overflow`] (a client flooding pings without reading).
pub const MAX_CONTROL_BYTES: usize = 64 * 1024;

/// What happens when a client falls behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Policy {
    /// Drop the oldest not-yet-started image frames (previews). The default.
    #[default]
    LatestWins,
    /// Drop nothing; close a client whose queue overflows with 1008.
    Reliable,
}

impl std::str::FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "latestwins" | "latest" => Ok(Policy::LatestWins),
            "reliable" => Ok(Policy::Reliable),
            _ => Err(format!(
                "unknown policy `{s}` (expected latest-wins or reliable)"
            )),
        }
    }
}

/// One queued message for one client.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// A text message (JSON).
    Text(Arc<str>),
    /// An image: for a legacy client (`metadata: false`) the announcement (when the frame has one)
    /// and the type-1 message; for a flagged client the type-4 message.
    Image {
        /// The shared frame.
        frame: WireFrame,
        /// Whether this client declared `supports_preview_metadata`.
        metadata: bool,
    },
}

impl Outgoing {
    /// True for an image item.
    pub fn is_image(&self) -> bool {
        matches!(self, Outgoing::Image { .. })
    }
}

/// What [`ClientQueue::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// The item is queued; nothing was dropped.
    Queued,
    /// The item is queued after dropping this many older image frames (`LatestWins`).
    DroppedOldest {
        /// Image frames dropped.
        frames: usize,
    },
    /// The item is not queued: close the client with 1008 (policy violation).
    Overflow,
}

/// What [`ClientQueue::advance`] completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Advanced {
    /// Items completely written (texts and images).
    pub items: usize,
    /// Image items completely written.
    pub images: usize,
}

#[derive(Debug)]
struct Entry {
    item: Outgoing,
    /// Header of the first WebSocket frame (text of a Text item or of an announcement, else binary).
    hdr1: [u8; 10],
    hdr1_len: u8,
    /// Header of the binary frame after an announcement (0 bytes when there is none).
    hdr2: [u8; 10],
    hdr2_len: u8,
    /// Length of the first WebSocket frame, header included.
    first_frame: usize,
    total: usize,
}

impl Entry {
    fn new(item: Outgoing) -> Entry {
        let mut e = Entry {
            item,
            hdr1: [0; 10],
            hdr1_len: 0,
            hdr2: [0; 10],
            hdr2_len: 0,
            first_frame: 0,
            total: 0,
        };
        match &e.item {
            Outgoing::Text(t) => {
                e.hdr1_len = ws_frame_header(OPCODE_TEXT, t.len() as u64, &mut e.hdr1) as u8;
                e.first_frame = usize::from(e.hdr1_len) + t.len();
                e.total = e.first_frame;
            }
            Outgoing::Image { frame, metadata } => {
                let bin_len = frame.binary_len(*metadata);
                match (frame.announcement(), metadata) {
                    (Some(a), false) => {
                        e.hdr1_len =
                            ws_frame_header(OPCODE_TEXT, a.len() as u64, &mut e.hdr1) as u8;
                        e.hdr2_len =
                            ws_frame_header(OPCODE_BINARY, bin_len as u64, &mut e.hdr2) as u8;
                        e.first_frame = usize::from(e.hdr1_len) + a.len();
                        e.total = e.first_frame + usize::from(e.hdr2_len) + bin_len;
                    }
                    _ => {
                        e.hdr1_len =
                            ws_frame_header(OPCODE_BINARY, bin_len as u64, &mut e.hdr1) as u8;
                        e.first_frame = usize::from(e.hdr1_len) + bin_len;
                        e.total = e.first_frame;
                    }
                }
            }
        }
        e
    }

    /// The item's bytes as up to five slices, in order (some may be empty).
    fn segments(&self) -> [&[u8]; 5] {
        let h1 = &self.hdr1[..usize::from(self.hdr1_len)];
        let h2 = &self.hdr2[..usize::from(self.hdr2_len)];
        match &self.item {
            Outgoing::Text(t) => [h1, t.as_bytes(), &[], &[], &[]],
            Outgoing::Image { frame, metadata } => match (frame.announcement(), metadata) {
                (Some(a), false) => [h1, a.as_bytes(), h2, &LEGACY_PREFIX, frame.png()],
                _ => [h1, frame.prefix(*metadata), frame.png(), &[], &[]],
            },
        }
    }

    /// Offset where the frame containing byte `sent` ends.
    fn frame_end(&self, sent: usize) -> usize {
        if sent < self.first_frame {
            self.first_frame
        } else {
            self.total
        }
    }

    fn at_boundary(&self, sent: usize) -> bool {
        sent == 0 || sent == self.first_frame || sent == self.total
    }
}

/// A bounded per-client outbound queue with frame-boundary tracking. See the module docs.
#[derive(Debug)]
pub struct ClientQueue {
    policy: Policy,
    max_bytes: usize,
    items: VecDeque<Entry>,
    /// Bytes of all queued items, the started one counted whole.
    queued_bytes: usize,
    /// Bytes of the front item already written.
    front_sent: usize,
    control: Vec<u8>,
    control_sent: usize,
    dropped_frames: u64,
}

impl ClientQueue {
    /// An empty queue. `max_bytes` is the per-client budget (`ServerConfig::queue_bytes`).
    pub fn new(policy: Policy, max_bytes: usize) -> ClientQueue {
        ClientQueue {
            policy,
            max_bytes,
            items: VecDeque::new(),
            queued_bytes: 0,
            front_sent: 0,
            control: Vec::new(),
            control_sent: 0,
            dropped_frames: 0,
        }
    }

    /// The policy.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Queues `item` according to the policy.
    pub fn push(&mut self, item: Outgoing) -> PushOutcome {
        let entry = Entry::new(item);
        let need = entry.total;
        if self.queued_bytes + need <= self.max_bytes || self.items.is_empty() {
            self.queued_bytes += need;
            self.items.push_back(entry);
            return PushOutcome::Queued;
        }
        match self.policy {
            Policy::Reliable => PushOutcome::Overflow,
            Policy::LatestWins => {
                let is_image = entry.item.is_image();
                // Drop the oldest unstarted images while the item does not fit. Index 0 is
                // protected when it has started.
                let mut dropped = 0usize;
                let mut i = usize::from(self.front_sent > 0);
                while self.queued_bytes + need > self.max_bytes && i < self.items.len() {
                    if self.items[i].item.is_image() {
                        let e = self.items.remove(i).expect("index in range");
                        self.queued_bytes -= e.total;
                        dropped += 1;
                    } else {
                        i += 1;
                    }
                }
                self.dropped_frames += dropped as u64;
                if self.queued_bytes + need > self.max_bytes && !is_image {
                    // JSON is never dropped; the client cannot keep up even with no images.
                    return PushOutcome::Overflow;
                }
                self.queued_bytes += need;
                self.items.push_back(entry);
                if dropped == 0 {
                    PushOutcome::Queued
                } else {
                    PushOutcome::DroppedOldest { frames: dropped }
                }
            }
        }
    }

    /// Queues complete control frames (as tungstenite writes them) to go out at the next frame
    /// boundary, ahead of the remaining items. [`PushOutcome::Overflow`] past
    /// [`MAX_CONTROL_BYTES`] pending (the bytes are not queued).
    pub fn push_control(&mut self, frames: &[u8]) -> PushOutcome {
        if self.control.len() - self.control_sent + frames.len() > MAX_CONTROL_BYTES {
            return PushOutcome::Overflow;
        }
        self.control.extend_from_slice(frames);
        PushOutcome::Queued
    }

    /// Drops every item that has not started (for a close with 1008 or 1001 without flushing).
    /// Returns the number of image items dropped (also added to [`Self::dropped_frames`]).
    pub fn clear_unstarted(&mut self) -> usize {
        let keep = usize::from(self.front_sent > 0).min(self.items.len());
        let mut images = 0;
        while self.items.len() > keep {
            let e = self.items.pop_back().expect("len > keep");
            self.queued_bytes -= e.total;
            images += usize::from(e.item.is_image());
        }
        self.dropped_frames += images as u64;
        images
    }

    /// The item being written or to be written next.
    pub fn front(&self) -> Option<&Outgoing> {
        self.items.front().map(|e| &e.item)
    }

    /// True when the front item has been partly written.
    pub fn front_started(&self) -> bool {
        self.front_sent > 0
    }

    /// True when the next byte to write starts a WebSocket frame (or nothing is pending from an
    /// item): the only moments at which anything else may write to the socket.
    pub fn at_frame_boundary(&self) -> bool {
        self.control_sent == 0
            && self
                .items
                .front()
                .is_none_or(|e| e.at_boundary(self.front_sent))
    }

    /// True when nothing is left to write (no items, no control bytes).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty() && self.control_pending() == 0
    }

    /// Number of queued items (the started one included).
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Bytes of the queued items (the started one counted whole).
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Image frames this queue has dropped since it was created.
    pub fn dropped_frames(&self) -> u64 {
        self.dropped_frames
    }

    /// Number of queued image items (the started one included): what a transport discards and
    /// counts as dropped when the client goes away.
    pub fn queued_images(&self) -> usize {
        self.items.iter().filter(|e| e.item.is_image()).count()
    }

    fn control_pending(&self) -> usize {
        self.control.len() - self.control_sent
    }

    /// Bytes left to write: pending control bytes plus the rest of every item.
    pub fn pending_bytes(&self) -> usize {
        self.control_pending() + self.queued_bytes - self.front_sent
    }

    /// Fills `out` with the next bytes to write, in order, and returns how many slices it used.
    /// Stops when `out` is full; write them with `write_vectored` and report the count with
    /// [`Self::advance`]. Nothing is copied.
    pub fn io_slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        let mut push = |s: &'a [u8], n: &mut usize| -> bool {
            if *n == out.len() {
                return false;
            }
            if !s.is_empty() {
                out[*n] = IoSlice::new(s);
                *n += 1;
            }
            true
        };
        let control = &self.control[self.control_sent..];
        let mut control_done = control.is_empty();
        if !control_done && self.at_frame_boundary_for_control() {
            if !push(control, &mut n) {
                return n;
            }
            control_done = true;
        }
        for (idx, entry) in self.items.iter().enumerate() {
            let start = if idx == 0 { self.front_sent } else { 0 };
            let limit = if control_done {
                entry.total
            } else {
                entry.frame_end(start)
            };
            let mut off = 0usize;
            for seg in entry.segments() {
                let (lo, hi) = (off, off + seg.len());
                off = hi;
                let a = lo.max(start);
                let b = hi.min(limit);
                if a < b && !push(&seg[a - lo..b - lo], &mut n) {
                    return n;
                }
            }
            if !control_done {
                if !push(control, &mut n) {
                    return n;
                }
                control_done = true;
                // The rest of this item after its current frame.
                let mut off = 0usize;
                for seg in entry.segments() {
                    let (lo, hi) = (off, off + seg.len());
                    off = hi;
                    let a = lo.max(limit);
                    if a < hi && !push(&seg[a - lo..], &mut n) {
                        return n;
                    }
                }
            }
        }
        n
    }

    /// Control bytes may go now: either they already started, or the front item is at a frame
    /// boundary.
    fn at_frame_boundary_for_control(&self) -> bool {
        self.control_sent > 0
            || self
                .items
                .front()
                .is_none_or(|e| e.at_boundary(self.front_sent))
    }

    /// Records that `n` bytes of what [`Self::io_slices`] returned were written.
    ///
    /// Panics if `n` exceeds [`Self::pending_bytes`] (a transport bug).
    pub fn advance(&mut self, mut n: usize) -> Advanced {
        assert!(
            n <= self.pending_bytes(),
            "advance({n}) past the {} pending bytes",
            self.pending_bytes()
        );
        let mut done = Advanced::default();
        while n > 0 {
            let control_left = self.control_pending();
            if control_left > 0 && self.at_frame_boundary_for_control() {
                let take = n.min(control_left);
                self.control_sent += take;
                n -= take;
                if self.control_sent == self.control.len() {
                    self.control.clear();
                    self.control_sent = 0;
                }
                continue;
            }
            let front = self.items.front().expect("pending bytes remain in items");
            let limit = if control_left > 0 {
                front.frame_end(self.front_sent)
            } else {
                front.total
            };
            let take = n.min(limit - self.front_sent);
            self.front_sent += take;
            n -= take;
            if self.front_sent == front.total {
                let e = self.items.pop_front().expect("front exists");
                self.queued_bytes -= e.total;
                self.front_sent = 0;
                done.items += 1;
                done.images += usize::from(e.item.is_image());
            }
        }
        done
    }

    /// Moves the pending control bytes and whole items (up to `max_items`, stopping once
    /// `max_bytes` are taken) out of the queue into `lease`, as if written: for a writer that
    /// writes without holding the lock the queue lives under. The lease keeps the wire order;
    /// everything it holds starts at a frame boundary, so control bytes pushed meanwhile go
    /// out with the next lease, between two frames.
    ///
    /// A queue is drained either with [`Self::io_slices`]/[`Self::advance`] or with leases, not
    /// both: while an item is part-written by `advance`, `lease` takes only control bytes.
    pub fn lease(&mut self, lease: &mut Lease, max_items: usize, max_bytes: usize) {
        if self.front_sent == 0 {
            let control = &self.control[self.control_sent..];
            lease.prefix.extend_from_slice(control);
            lease.total += control.len();
            self.control.clear();
            self.control_sent = 0;
        }
        let mut bytes = 0;
        while self.front_sent == 0 && lease.items.len() < max_items && bytes < max_bytes {
            let Some(e) = self.items.pop_front() else {
                break;
            };
            self.queued_bytes -= e.total;
            bytes += e.total;
            lease.total += e.total;
            lease.items.push(e);
        }
    }
}

/// Bytes taken out of a [`ClientQueue`] by [`ClientQueue::lease`], to be written outside the
/// queue's lock: first its prefix (bytes the session adds, control frames), then whole items.
/// Reused from one lease to the next, so steady state allocates nothing.
#[derive(Debug, Default)]
pub struct Lease {
    prefix: Vec<u8>,
    items: Vec<Entry>,
    total: usize,
}

impl Lease {
    /// An empty lease.
    pub fn new() -> Lease {
        Lease::default()
    }

    /// Adds bytes ahead of everything else (the session's handshake answer).
    pub fn push_prefix(&mut self, bytes: &[u8]) {
        self.prefix.extend_from_slice(bytes);
        self.total += bytes.len();
    }

    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Bytes to write.
    pub fn len(&self) -> usize {
        self.total
    }

    /// Fills `out` with the slices to write, in order, skipping the first `skip` bytes (already
    /// written); returns how many slices it used.
    pub fn io_slices<'a>(&'a self, skip: usize, out: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        let mut off = 0usize;
        let items = self.items.iter().flat_map(|e| e.segments());
        for seg in std::iter::once(&self.prefix[..]).chain(items) {
            let (lo, hi) = (off, off + seg.len());
            off = hi;
            if hi <= skip || seg.is_empty() {
                continue;
            }
            if n == out.len() {
                break;
            }
            out[n] = IoSlice::new(&seg[skip.saturating_sub(lo)..]);
            n += 1;
        }
        n
    }

    /// Image items wholly inside the first `written` bytes, and the image items after them.
    pub fn images_split(&self, written: usize) -> (usize, usize) {
        let mut off = self.prefix.len();
        let (mut done, mut lost) = (0, 0);
        for e in &self.items {
            off += e.total;
            let image = usize::from(e.item.is_image());
            if off <= written {
                done += image;
            } else {
                lost += image;
            }
        }
        (done, lost)
    }

    /// Empties the lease, keeping its buffers.
    pub fn clear(&mut self) {
        self.prefix.clear();
        self.items.clear();
        self.total = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{parse_binary, parse_text, BinaryMessage, ImageMeta, TextMessage};

    fn frame(i: u32, png_len: usize, announce: bool) -> WireFrame {
        let meta = ImageMeta {
            event: "ev".into(),
            index: i,
            count: 100,
            width: 2,
            height: 2,
            ..Default::default()
        };
        WireFrame::new(&meta, Arc::new(vec![i as u8; png_len]), announce)
    }

    fn img(i: u32, len: usize) -> Outgoing {
        Outgoing::Image {
            frame: frame(i, len, true),
            metadata: false,
        }
    }

    fn size(item: &Outgoing) -> usize {
        Entry::new(item.clone()).total
    }

    /// Drains the queue with writes of at most `chunk` bytes and `slots` slices per call.
    fn drain(q: &mut ClientQueue, chunk: usize, slots: usize) -> Vec<u8> {
        let mut wire = Vec::new();
        while !q.is_empty() {
            let mut bufs = vec![IoSlice::new(&[]); slots];
            let n = q.io_slices(&mut bufs);
            assert!(n > 0);
            let mut written = 0;
            for b in &bufs[..n] {
                let take = b.len().min(chunk - written);
                wire.extend_from_slice(&b[..take]);
                written += take;
                if written == chunk {
                    break;
                }
            }
            q.advance(written);
        }
        wire
    }

    /// A minimal client-side frame parser: (opcode, payload) of each unmasked frame.
    fn frames(mut wire: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while !wire.is_empty() {
            assert_eq!(wire[0] & 0x80, 0x80, "FIN");
            let op = wire[0] & 0x0f;
            let (len, hl) = match wire[1] {
                126 => (u16::from_be_bytes([wire[2], wire[3]]) as usize, 4),
                127 => (
                    u64::from_be_bytes(wire[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                l => (l as usize, 2),
            };
            out.push((op, wire[hl..hl + len].to_vec()));
            wire = &wire[hl + len..];
        }
        out
    }

    #[test]
    fn bytes_on_the_wire_legacy_and_type4() {
        let mut q = ClientQueue::new(Policy::Reliable, 1 << 20);
        let f = frame(3, 300, true);
        q.push(Outgoing::Text("{\"type\": \"x\"}".into()));
        q.push(Outgoing::Image {
            frame: f.clone(),
            metadata: false,
        });
        q.push(Outgoing::Image {
            frame: f.clone(),
            metadata: true,
        });
        q.push(Outgoing::Image {
            frame: frame(4, 70_000, false),
            metadata: false,
        });
        let total = q.pending_bytes();
        for (chunk, slots) in [(1, 1), (7, 2), (100, 3), (usize::MAX, 16)] {
            let mut q2 = ClientQueue::new(Policy::Reliable, 1 << 20);
            q2.push(Outgoing::Text("{\"type\": \"x\"}".into()));
            q2.push(Outgoing::Image {
                frame: f.clone(),
                metadata: false,
            });
            q2.push(Outgoing::Image {
                frame: f.clone(),
                metadata: true,
            });
            q2.push(Outgoing::Image {
                frame: frame(4, 70_000, false),
                metadata: false,
            });
            let wire = drain(&mut q2, chunk, slots);
            assert_eq!(wire.len(), total);
            let fr = frames(&wire);
            assert_eq!(fr.len(), 5);
            assert_eq!(fr[0].0, OPCODE_TEXT);
            assert_eq!(fr[1].0, OPCODE_TEXT);
            assert!(
                matches!(parse_text(std::str::from_utf8(&fr[1].1).unwrap()).unwrap(), TextMessage::Announcement(m) if m.index == 3)
            );
            assert_eq!(fr[2].0, OPCODE_BINARY);
            assert_eq!(
                parse_binary(&fr[2].1).unwrap(),
                BinaryMessage::Legacy {
                    png: &[3u8; 300][..]
                }
            );
            assert!(
                matches!(parse_binary(&fr[3].1).unwrap(), BinaryMessage::WithMetadata { meta, png, .. } if meta.index == 3 && png.len() == 300)
            );
            assert_eq!(fr[4].0, OPCODE_BINARY);
            assert_eq!(fr[4].1.len(), 8 + 70_000);
            assert_eq!(q2.queued_bytes(), 0);
        }
    }

    #[test]
    fn advance_counts_images() {
        let mut q = ClientQueue::new(Policy::Reliable, 1 << 20);
        q.push(Outgoing::Text("t".into()));
        q.push(img(0, 10));
        let a = q.advance(q.pending_bytes());
        assert_eq!(
            a,
            Advanced {
                items: 2,
                images: 1
            }
        );
        assert!(q.is_empty());
    }

    #[test]
    #[should_panic(expected = "advance")]
    fn advance_past_end_panics() {
        let mut q = ClientQueue::new(Policy::Reliable, 1 << 20);
        q.push(Outgoing::Text("t".into()));
        q.advance(100);
    }

    #[test]
    fn latest_wins_drops_oldest_unstarted_images_keeps_text() {
        let one = size(&img(0, 100));
        let text = Outgoing::Text("{\"type\": \"progress\"}".into());
        let tsize = size(&text);
        let mut q = ClientQueue::new(Policy::LatestWins, 3 * one + tsize);
        assert_eq!(q.push(img(0, 100)), PushOutcome::Queued);
        assert_eq!(q.push(text.clone()), PushOutcome::Queued);
        assert_eq!(q.push(img(1, 100)), PushOutcome::Queued);
        assert_eq!(q.push(img(2, 100)), PushOutcome::Queued);
        // Start writing image 0: it is now protected.
        q.advance(3);
        assert!(q.front_started());
        assert!(!q.at_frame_boundary());
        assert_eq!(
            q.push(img(3, 100)),
            PushOutcome::DroppedOldest { frames: 1 }
        );
        assert_eq!(
            q.push(img(4, 100)),
            PushOutcome::DroppedOldest { frames: 1 }
        );
        assert_eq!(q.dropped_frames(), 2);
        let order: Vec<String> = q
            .items
            .iter()
            .map(|e| match &e.item {
                Outgoing::Text(_) => "t".to_string(),
                Outgoing::Image { frame, .. } => frame.meta().index.to_string(),
            })
            .collect();
        assert_eq!(order, ["0", "t", "3", "4"]);
        // The started frame comes out whole: the rest of image 0, then t, 3, 4.
        let rest = drain(&mut q, 5, 2);
        let mut full = Entry::new(img(0, 100)).segments().concat()[..3].to_vec();
        full.extend(rest);
        let idx: Vec<u8> = frames(&full)
            .iter()
            .filter(|f| f.0 == OPCODE_BINARY)
            .map(|f| f.1[8])
            .collect();
        assert_eq!(idx, [0, 3, 4]);
        assert_eq!(q.queued_bytes(), 0);
    }

    #[test]
    fn latest_wins_big_frames_drop_several() {
        let small = size(&img(0, 10));
        let mut q = ClientQueue::new(Policy::LatestWins, 4 * small);
        for i in 0..4 {
            assert_eq!(q.push(img(i, 10)), PushOutcome::Queued);
        }
        // A frame as large as three small ones drops the three oldest.
        let big = img(9, 10 + 2 * small);
        assert!(size(&big) <= 3 * small + 8);
        match q.push(big) {
            PushOutcome::DroppedOldest { frames } => assert!(frames >= 3, "{frames}"),
            other => panic!("{other:?}"),
        }
        assert!(q.queued_bytes() <= 4 * small);
    }

    #[test]
    fn latest_wins_keeps_newest_image_even_alone_over_limit() {
        let mut q = ClientQueue::new(Policy::LatestWins, 50);
        assert_eq!(q.push(img(0, 10)), PushOutcome::Queued);
        assert_eq!(
            q.push(img(1, 1000)),
            PushOutcome::DroppedOldest { frames: 1 }
        );
        assert_eq!(q.len(), 1);
        // Empty queue: accepted whatever its size.
        let mut q = ClientQueue::new(Policy::LatestWins, 50);
        assert_eq!(q.push(img(1, 1000)), PushOutcome::Queued);
    }

    #[test]
    fn latest_wins_text_overflow_closes() {
        let t = Outgoing::Text("x".repeat(40).into());
        let mut q = ClientQueue::new(Policy::LatestWins, 100);
        assert_eq!(q.push(t.clone()), PushOutcome::Queued);
        assert_eq!(q.push(t.clone()), PushOutcome::Queued);
        assert_eq!(q.push(t.clone()), PushOutcome::Overflow);
        assert_eq!(q.len(), 2);
        // Images are dropped first to make room for text.
        let mut q = ClientQueue::new(Policy::LatestWins, size(&img(0, 20)) + size(&t));
        assert_eq!(q.push(img(0, 20)), PushOutcome::Queued);
        assert_eq!(q.push(t.clone()), PushOutcome::Queued);
        assert_eq!(q.push(t.clone()), PushOutcome::DroppedOldest { frames: 1 });
        assert!(q.items.iter().all(|e| !e.item.is_image()));
    }

    #[test]
    fn reliable_overflows_without_dropping() {
        let one = size(&img(0, 100));
        let mut q = ClientQueue::new(Policy::Reliable, 2 * one);
        assert_eq!(q.push(img(0, 100)), PushOutcome::Queued);
        assert_eq!(q.push(img(1, 100)), PushOutcome::Queued);
        assert_eq!(q.push(img(2, 100)), PushOutcome::Overflow);
        assert_eq!(q.len(), 2);
        assert_eq!(q.dropped_frames(), 0);
        // One oversized item into an empty queue is fine.
        let mut q = ClientQueue::new(Policy::Reliable, 10);
        assert_eq!(q.push(img(0, 100)), PushOutcome::Queued);
        assert_eq!(q.push(img(1, 1)), PushOutcome::Overflow);
    }

    #[test]
    fn control_frames_wait_for_a_frame_boundary() {
        let pong = [0x8A, 0x01, b'p'];
        for split in [0usize, 1, 5, 40, 60] {
            let mut q = ClientQueue::new(Policy::Reliable, 1 << 20);
            q.push(img(1, 100));
            q.push(Outgoing::Text("after".into()));
            let total = q.pending_bytes();
            // Write `split` bytes, then a pong arrives.
            let mut wire = Vec::new();
            let mut bufs = [IoSlice::new(&[]); 8];
            let n = q.io_slices(&mut bufs);
            for b in &bufs[..n] {
                wire.extend_from_slice(b);
            }
            wire.truncate(split);
            q.advance(split);
            assert_eq!(q.push_control(&pong), PushOutcome::Queued);
            wire.extend(drain(&mut q, 3, 3));
            assert_eq!(wire.len(), total + 3);
            let fr = frames(&wire);
            let ops: Vec<u8> = fr.iter().map(|f| f.0).collect();
            // The pong lands between whole frames, never inside one.
            assert!(ops.contains(&0xA), "{ops:?}");
            assert_eq!(
                ops.iter()
                    .filter(|&&o| o != 0xA)
                    .copied()
                    .collect::<Vec<_>>(),
                [1, 2, 1]
            );
            let pos = ops.iter().position(|&o| o == 0xA).unwrap();
            let expected_pos = if split == 0 {
                0
            } else if split <= Entry::new(img(1, 100)).first_frame {
                1
            } else {
                2
            };
            assert_eq!(pos, expected_pos, "split {split}");
        }
    }

    #[test]
    fn control_overflow_and_only_control() {
        let mut q = ClientQueue::new(Policy::LatestWins, 100);
        assert!(q.at_frame_boundary());
        let big = vec![0u8; MAX_CONTROL_BYTES];
        assert_eq!(q.push_control(&big), PushOutcome::Queued);
        assert_eq!(q.push_control(&[1]), PushOutcome::Overflow);
        assert_eq!(drain(&mut q, 1000, 1).len(), MAX_CONTROL_BYTES);
        assert_eq!(q.push_control(&[1]), PushOutcome::Queued);
    }

    #[test]
    fn clear_unstarted_keeps_started_front() {
        let mut q = ClientQueue::new(Policy::Reliable, 1 << 20);
        q.push(img(0, 10));
        q.push(img(1, 10));
        q.push(Outgoing::Text("t".into()));
        q.advance(1);
        assert_eq!(q.clear_unstarted(), 1);
        assert_eq!(q.len(), 1);
        assert_eq!(q.dropped_frames(), 1);
        let rest = q.pending_bytes();
        assert_eq!(
            q.advance(rest),
            Advanced {
                items: 1,
                images: 1
            }
        );
        assert_eq!(q.clear_unstarted(), 0);
    }

    #[test]
    fn randomised_against_model() {
        // Random pushes and partial writes; the wire must always parse into whole frames and the
        // byte accounting must match a recount.
        let mut rng = fastrand::Rng::with_seed(7);
        for round in 0..200 {
            let policy = if round % 2 == 0 {
                Policy::LatestWins
            } else {
                Policy::Reliable
            };
            let mut q = ClientQueue::new(policy, rng.usize(50..2000));
            let mut wire = Vec::new();
            let mut pushed_texts = Vec::new();
            for step in 0..60u32 {
                match rng.u8(0..10) {
                    0..=3 => {
                        let item = Outgoing::Image {
                            frame: frame(step, rng.usize(0..400), rng.bool()),
                            metadata: rng.bool(),
                        };
                        let _ = q.push(item);
                    }
                    4 | 5 => {
                        let t: Arc<str> = format!("{{\"type\": \"t{step}\"}}").into();
                        if q.push(Outgoing::Text(t.clone())) != PushOutcome::Overflow {
                            pushed_texts.push(t);
                        }
                    }
                    6 => {
                        let _ = q.push_control(&[0x89, 0]);
                    }
                    _ => {
                        let mut bufs = [IoSlice::new(&[]); 4];
                        let n = q.io_slices(&mut bufs);
                        let want = rng.usize(0..300);
                        let mut written = 0;
                        for b in &bufs[..n] {
                            let take = b.len().min(want - written);
                            wire.extend_from_slice(&b[..take]);
                            written += take;
                        }
                        q.advance(written);
                    }
                }
                let recount: usize = q.items.iter().map(|e| e.total).sum();
                assert_eq!(recount, q.queued_bytes);
            }
            wire.extend(drain(&mut q, 64, 3));
            let fr = frames(&wire);
            let texts: Vec<String> = fr
                .iter()
                .filter(|f| f.0 == OPCODE_TEXT)
                .map(|f| String::from_utf8(f.1.clone()).unwrap())
                .filter(|t| t.starts_with("{\"type\": \"t"))
                .collect();
            let expected: Vec<String> = pushed_texts.iter().map(|t| t.to_string()).collect();
            assert_eq!(texts, expected, "JSON is never dropped and stays in order");
            for f in &fr {
                if f.0 == OPCODE_BINARY {
                    parse_binary(&f.1).unwrap();
                }
            }
        }
    }
}
