#![forbid(unsafe_code)]
//! Where frames go: the [`FrameSink`] trait every transport implements, and [`MemorySink`], which
//! records everything for tests.
//!
//! A sink is synchronous and object-safe (`Arc<dyn FrameSink>`), and it never blocks its caller on
//! the network: a transport pushes the frame into each target client's bounded queue
//! ([`crate::queue::ClientQueue`]) and returns; its own threads do the writing.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use thiserror::Error;

use crate::queue::Outgoing;
use crate::wire::{json_event, WireFrame};

/// Who gets a message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// Every connected client.
    All,
    /// The client with this clientId.
    Client(Arc<str>),
}

impl Target {
    /// A target for one clientId.
    pub fn client(id: impl Into<Arc<str>>) -> Target {
        Target::Client(id.into())
    }
}

/// Why a sink refused a message. `#[non_exhaustive]`: more kinds may appear.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SinkError {
    /// The sink was shut down; nothing more is accepted.
    #[error("the sink is shut down")]
    ShutDown,
    /// No client with this clientId is connected.
    #[error("no client with id `{0}` is connected")]
    NoSuchClient(String),
    /// The message is larger than the transport can ever send (for instance beyond 2^63 bytes or
    /// beyond a configured limit).
    #[error("message of {0} bytes is too large for this sink")]
    TooLarge(usize),
}

/// Counters of a sink, all since it started. Counts are per client: a frame broadcast to three
/// clients counts three times in `frames_queued`.
///
/// Image accounting is closed: every frame counted in `frames_queued` ends up in exactly one of
/// `frames_sent` and `frames_dropped`, so once every queue is empty
/// `frames_sent + frames_dropped == frames_queued`. A frame that is never queued (the client is
/// already closing, or its push overflowed under `Reliable`) is in none of them.
///
/// `#[non_exhaustive]`: build with `SinkStats::default()` and assign fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SinkStats {
    /// Clients connected now (past the WebSocket handshake).
    pub clients: usize,
    /// Image frames accepted into a client's queue.
    pub frames_queued: u64,
    /// Image frames completely written to a client's socket.
    pub frames_sent: u64,
    /// Image frames dropped by the `LatestWins` policy before they started (announcement and
    /// binary together), or discarded from the queue of a client that closed.
    pub frames_dropped: u64,
    /// Clients whose connection ended after the handshake, for any reason.
    pub clients_closed: u64,
    /// Bytes written to client sockets after the handshake (frame headers included).
    pub bytes_sent: u64,
    /// Text messages (JSON events, status, announcements) accepted into a client's queue.
    pub texts_queued: u64,
    /// WebSocket upgrades completed.
    pub clients_accepted: u64,
    /// Connections refused at the HTTP stage (4xx/5xx answers, handshake timeouts, bad requests).
    pub handshakes_refused: u64,
    /// Clients closed because their queue overflowed (`Reliable` policy, or JSON piling up).
    pub closed_overflow: u64,
    /// Clients closed because writes made no progress for the stall timeout.
    pub closed_stall: u64,
    /// Clients closed for bad input (oversized, malformed, invalid or unfinished messages).
    pub closed_bad_input: u64,
    /// Of `closed_bad_input`, the clients closed for sending beyond their inbound budget
    /// (messages or bytes per second), counted when the close is decided.
    pub closed_flood: u64,
}

/// A destination for frames and JSON events.
///
/// Implementations never block on the network: `send_*` queue and return. Messages to one client
/// arrive in the order of the calls. Object-safe: use `Arc<dyn FrameSink>`.
///
/// A [`Target::Client`] naming no connected client reaches nobody; a sink that knows this at
/// once reports [`SinkError::NoSuchClient`], one that hands sends to another thread may accept
/// the call and drop the message there. Either way, no other client gets it.
pub trait FrameSink: Send + Sync {
    /// Queues an image frame for `target`. Each client gets the legacy or the type-4 form,
    /// according to the flags it declared.
    fn send_image(&self, target: &Target, frame: &WireFrame) -> Result<(), SinkError>;
    /// Queues a text message (already-serialised JSON) for `target`.
    fn send_text(&self, target: &Target, text: Arc<str>) -> Result<(), SinkError>;
    /// A snapshot of the counters.
    fn stats(&self) -> SinkStats;
    /// Sends Close 1001 to every client, flushes what it can until `deadline` has passed, then
    /// drops the connections. Later sends fail with [`SinkError::ShutDown`]. Idempotent.
    fn shutdown(&self, deadline: Duration);

    /// Queues `{"type": event, "data": data}` for `target`.
    fn send_json(
        &self,
        target: &Target,
        event: &str,
        data: &serde_json::Value,
    ) -> Result<(), SinkError> {
        self.send_text(target, json_event(event, data))
    }
}

impl<T: FrameSink + ?Sized> FrameSink for Arc<T> {
    fn send_image(&self, target: &Target, frame: &WireFrame) -> Result<(), SinkError> {
        (**self).send_image(target, frame)
    }
    fn send_text(&self, target: &Target, text: Arc<str>) -> Result<(), SinkError> {
        (**self).send_text(target, text)
    }
    fn stats(&self) -> SinkStats {
        (**self).stats()
    }
    fn shutdown(&self, deadline: Duration) {
        (**self).shutdown(deadline)
    }
}

/// One message as a [`MemorySink`] recorded it.
#[derive(Debug, Clone)]
pub enum Recorded {
    /// An image frame.
    Image(WireFrame),
    /// A text message.
    Text(Arc<str>),
}

impl Recorded {
    /// The frame, if this is an image.
    pub fn as_image(&self) -> Option<&WireFrame> {
        match self {
            Recorded::Image(f) => Some(f),
            Recorded::Text(_) => None,
        }
    }
    /// The text, if this is a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Recorded::Text(t) => Some(t),
            Recorded::Image(_) => None,
        }
    }
}

#[derive(Debug, Default)]
struct MemoryState {
    log: Vec<(Target, Recorded)>,
    clients: BTreeMap<Arc<str>, (bool, Vec<Outgoing>)>,
    stats: SinkStats,
    shut_down: bool,
}

/// A sink that records every message with its target, in call order, and delivers it to
/// simulated clients registered with [`MemorySink::add_client`] (each gets what a real transport
/// would queue for it: an [`Outgoing`] with its metadata flag). For tests and the conformance suite.
///
/// With no client registered, `Target::Client` sends are recorded and succeed; once any client
/// is registered, a send to an unknown clientId fails with [`SinkError::NoSuchClient`], as a
/// transport's does. Records keep their frames alive: call [`MemorySink::take_log`] to let a
/// sender recycle its PNG buffers.
#[derive(Debug, Default)]
pub struct MemorySink {
    state: Mutex<MemoryState>,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> MemorySink {
        MemorySink::default()
    }

    fn lock(&self) -> MutexGuard<'_, MemoryState> {
        // A panic in another test thread must not hide this sink's records.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a simulated client; `metadata` is whether it declared `supports_preview_metadata`.
    /// Replaces (and forgets the messages of) a client with the same id.
    pub fn add_client(&self, id: &str, metadata: bool) {
        let mut s = self.lock();
        s.clients.insert(id.into(), (metadata, Vec::new()));
        s.stats.clients = s.clients.len();
        s.stats.clients_accepted += 1;
    }

    /// Removes a simulated client. Returns whether it existed.
    pub fn remove_client(&self, id: &str) -> bool {
        let mut s = self.lock();
        let existed = s.clients.remove(id).is_some();
        if existed {
            s.stats.clients = s.clients.len();
            s.stats.clients_closed += 1;
        }
        existed
    }

    /// What a simulated client has received, in order.
    pub fn client_messages(&self, id: &str) -> Option<Vec<Outgoing>> {
        self.lock().clients.get(id).map(|(_, m)| m.clone())
    }

    /// Every message with its target, in call order.
    pub fn log(&self) -> Vec<(Target, Recorded)> {
        self.lock().log.clone()
    }

    /// Takes the log (and clears every simulated client's messages), releasing the frames.
    pub fn take_log(&self) -> Vec<(Target, Recorded)> {
        let mut s = self.lock();
        for (_, msgs) in s.clients.values_mut() {
            msgs.clear();
        }
        std::mem::take(&mut s.log)
    }

    /// True once [`FrameSink::shutdown`] was called.
    pub fn is_shut_down(&self) -> bool {
        self.lock().shut_down
    }

    fn deliver(&self, target: &Target, rec: Recorded) -> Result<(), SinkError> {
        let mut s = self.lock();
        if s.shut_down {
            return Err(SinkError::ShutDown);
        }
        let is_image = matches!(rec, Recorded::Image(_));
        let item = |metadata: bool| match &rec {
            Recorded::Image(f) => Outgoing::Image {
                frame: f.clone(),
                metadata,
            },
            Recorded::Text(t) => Outgoing::Text(t.clone()),
        };
        let mut delivered = 0u64;
        match target {
            Target::All => {
                for (metadata, msgs) in s.clients.values_mut() {
                    msgs.push(item(*metadata));
                    delivered += 1;
                }
            }
            Target::Client(id) => {
                if let Some((metadata, msgs)) = s.clients.get_mut(id) {
                    msgs.push(item(*metadata));
                    delivered += 1;
                } else if !s.clients.is_empty() {
                    return Err(SinkError::NoSuchClient(id.to_string()));
                }
            }
        }
        if is_image {
            s.stats.frames_queued += delivered;
            s.stats.frames_sent += delivered;
        } else {
            s.stats.texts_queued += delivered;
        }
        s.log.push((target.clone(), rec));
        Ok(())
    }
}

impl FrameSink for MemorySink {
    fn send_image(&self, target: &Target, frame: &WireFrame) -> Result<(), SinkError> {
        self.deliver(target, Recorded::Image(frame.clone()))
    }
    fn send_text(&self, target: &Target, text: Arc<str>) -> Result<(), SinkError> {
        self.deliver(target, Recorded::Text(text))
    }
    fn stats(&self) -> SinkStats {
        self.lock().stats
    }
    fn shutdown(&self, _deadline: Duration) {
        let mut s = self.lock();
        s.shut_down = true;
        let n = s.clients.len() as u64;
        s.clients.clear();
        s.stats.clients = 0;
        s.stats.clients_closed += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ImageMeta;

    fn frame(i: u32) -> WireFrame {
        let meta = ImageMeta {
            event: "e".into(),
            index: i,
            count: 9,
            width: 1,
            height: 1,
            ..Default::default()
        };
        WireFrame::new(&meta, Arc::new(vec![i as u8]), true)
    }

    #[test]
    fn object_safe_and_records_in_order() {
        let mem = Arc::new(MemorySink::new());
        let sink: Arc<dyn FrameSink> = mem.clone();
        sink.send_text(&Target::All, "a".into()).unwrap();
        sink.send_image(&Target::All, &frame(0)).unwrap();
        sink.send_json(&Target::client("x"), "ev", &serde_json::json!({"k": 1}))
            .unwrap();
        let log = mem.log();
        assert_eq!(log.len(), 3);
        assert_eq!(log[0].1.as_text(), Some("a"));
        assert_eq!(log[1].1.as_image().unwrap().meta().index, 0);
        assert_eq!(log[2].0, Target::client("x"));
        assert_eq!(
            log[2].1.as_text(),
            Some(r#"{"type": "ev", "data": {"k": 1}}"#)
        );
    }

    #[test]
    fn targeting_with_clients() {
        let mem = MemorySink::new();
        mem.add_client("a", false);
        mem.add_client("b", true);
        mem.send_image(&Target::All, &frame(0)).unwrap();
        mem.send_image(&Target::client("b"), &frame(1)).unwrap();
        assert_eq!(
            mem.send_text(&Target::client("zz"), "t".into()),
            Err(SinkError::NoSuchClient("zz".into()))
        );
        let a = mem.client_messages("a").unwrap();
        let b = mem.client_messages("b").unwrap();
        assert_eq!(a.len(), 1);
        assert!(matches!(
            &a[0],
            Outgoing::Image {
                metadata: false,
                ..
            }
        ));
        assert_eq!(b.len(), 2);
        assert!(
            matches!(&b[1], Outgoing::Image { metadata: true, frame } if frame.meta().index == 1)
        );
        let st = mem.stats();
        assert_eq!((st.clients, st.frames_queued), (2, 3));
        mem.shutdown(Duration::ZERO);
        assert_eq!(
            mem.send_text(&Target::All, "t".into()),
            Err(SinkError::ShutDown)
        );
        assert_eq!(mem.stats().clients_closed, 2);
    }
}
