#![forbid(unsafe_code)]
//! One connection: the HTTP stage (in [`crate::handshake`]), then a reader (this thread) and a
//! writer thread sharing the socket.
//!
//! Only the writer writes to the socket after the upgrade. The reader parses inbound frames with
//! tungstenite through [`ReaderIo`], whose write side is a buffer: the pongs and close replies
//! tungstenite produces land there as complete frames, and the reader hands them to the writer,
//! which sends them between two data frames. So a control frame can never land inside a data
//! frame, and the reader never blocks on a write.
//!
//! The writer takes a batch of items (up to 32, or 4 MiB) out of the client's queue under the
//! lock (a few `Arc` clones), writes them as `[ws header][prefix][png]...` with one gathering
//! `write_vectored` loop straight from the shared buffers, and takes the lock again only to pick
//! the next batch; a `send` never waits for the network. The socket's write timeout is the
//! stall timeout: a write that makes no progress for that long closes the client. The writer
//! also owns the timers: keepalive pings when idle, and the close of a peer that answers no ping
//! for two intervals.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use pngcast_protocol::http::{self, ServerConfig};
use pngcast_protocol::queue::{ClientQueue, Outgoing, PushOutcome, MAX_CONTROL_BYTES};
use pngcast_protocol::wire::{
    self, ws_frame_header, LEGACY_PREFIX, OPCODE_BINARY, OPCODE_PING, OPCODE_TEXT,
};
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};
use tungstenite::Message;

use crate::handshake::{self, Upgraded};
use crate::hub::{after, code, ClientHandle, ClientState, CloseRequest, EndReason, Hub, Refusal};
use crate::server::THREAD_STACK;
use pngcast_protocol::io::NoSigPipe;

/// How long the writer waits for the peer's answer to our Close before cutting the socket.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Runs a connection from accept to close.
pub(crate) fn run(stream: TcpStream, config: &ServerConfig, hub: &Arc<Hub>) {
    let Some(token) = hub.track(&stream) else {
        return;
    };
    if let Some(up) = handshake::serve_http(&stream, config, hub) {
        run_websocket(stream, up, token, config, hub);
    }
    hub.untrack(token);
}

/// The socket as tungstenite sees it on the reader side: reads come from the socket, writes
/// (pongs, close replies) go to `out` for the writer thread.
struct ReaderIo {
    sock: TcpStream,
    out: Vec<u8>,
}

impl Read for ReaderIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.read(buf)
    }
}

impl Write for ReaderIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn run_websocket(
    stream: TcpStream,
    up: Upgraded,
    token: u64,
    config: &ServerConfig,
    hub: &Arc<Hub>,
) {
    let status: Arc<str> = wire::status_message(&up.client_id).into();
    let client = match hub.register(token, Arc::clone(&up.client_id), &stream, status) {
        Ok(c) => c,
        Err(refusal) => {
            // `refuse_with` counts the refusal.
            let why = match refusal {
                Refusal::ShuttingDown => "server shutting down",
                Refusal::Full => "too many clients",
            };
            handshake::refuse_with(&stream, &http::refusal_response(503, why), hub);
            return;
        }
    };
    // Registered (so counted and targetable, with the status first in its queue): now the 101.
    let _ = stream.set_write_timeout(Some(config.handshake_timeout));
    if NoSigPipe(&stream).write_all(&up.response).is_err() {
        client.cut();
        hub.remove(&client, EndReason::Normal);
        return;
    }
    // After the upgrade: reads block (the writer owns the timers), writes time out after the
    // stall timeout (or the blocking transport's own `write_timeout`, if shorter).
    let write_timeout = config.stall_timeout.min(config.write_timeout);
    let write_sock = match (
        stream.set_read_timeout(None),
        stream.set_write_timeout(Some(write_timeout)),
        stream.set_nodelay(true),
        stream.try_clone(),
    ) {
        (Ok(()), Ok(()), Ok(()), Ok(w)) => w,
        _ => {
            client.cut();
            hub.remove(&client, EndReason::Normal);
            return;
        }
    };

    let writer = {
        let client = Arc::clone(&client);
        let hub = Arc::clone(hub);
        let ping = config.ping_interval;
        thread::Builder::new()
            .name("pngcast-writer".into())
            .stack_size(THREAD_STACK)
            .spawn(move || writer_loop(write_sock, &client, &hub, ping))
    };
    let Ok(writer) = writer else {
        client.cut();
        hub.remove(&client, EndReason::Normal);
        return;
    };

    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(config.max_message_bytes))
        .max_frame_size(Some(config.max_message_bytes));
    let ctx = WebSocketContext::from_partially_read(up.leftover, Role::Server, Some(ws_config));
    let io = ReaderIo {
        sock: stream,
        out: Vec::new(),
    };
    let reader_reason = reader_loop(ctx, io, &client, hub);
    if reader_reason == EndReason::BadInput {
        // The reader has let the peer see our Close (or waited the grace out): a writer still
        // stuck mid-frame on this misbehaving peer is cut rather than waited for.
        client.cut();
    }

    let writer_reason = writer.join().unwrap_or(EndReason::Normal);
    client.cut();
    // Whatever is still queued will never go out.
    let left = client.lock().queue.queued_images();
    hub.count_dropped(left as u64);
    let reason = if reader_reason == EndReason::BadInput {
        reader_reason
    } else if writer_reason != EndReason::Normal {
        writer_reason
    } else {
        reader_reason
    };
    hub.remove(&client, reason);
}

/// Reads until the peer closes, the socket fails, or bad input; returns why it ended.
fn reader_loop(
    mut ctx: WebSocketContext,
    mut io: ReaderIo,
    client: &ClientHandle,
    hub: &Hub,
) -> EndReason {
    let mut first_text = true;
    loop {
        let result = ctx.read(&mut io);
        // Pongs and close replies tungstenite queued: render them into `io.out` now.
        let _ = ctx.flush(&mut io);
        let mut st = client.lock();
        st.last_inbound = Instant::now();
        if !io.out.is_empty() && !st.close_sent {
            st.control.extend_from_slice(&io.out);
        }
        io.out.clear();
        if st.control.len() > MAX_CONTROL_BYTES {
            // Pings flooding in while the writer cannot send the pongs: close this client.
            st.control.clear();
            return fail(st, client, &io.sock, code::POLICY, "control frame flood");
        }
        match result {
            Ok(Message::Text(text)) => {
                if first_text {
                    first_text = false;
                    // Only the first text message counts (protocol.md section 3); anything
                    // else, malformed JSON included, is ignored as ComfyUI does.
                    if let Ok(wire::TextMessage::FeatureFlags { data }) =
                        wire::parse_text(text.as_str())
                    {
                        if data
                            .get("supports_preview_metadata")
                            .and_then(|b| b.as_bool())
                            == Some(true)
                        {
                            st.metadata = true;
                        }
                        let reply = Outgoing::Text(wire::feature_flags_reply().into());
                        if push_reply(&mut st.queue, reply) {
                            hub.count_text_queued();
                        }
                    }
                }
            }
            Ok(Message::Binary(_)) => {
                // Clients have nothing binary to say in this protocol (as the mio transport).
                return fail(
                    st,
                    client,
                    &io.sock,
                    code::UNSUPPORTED,
                    "binary messages are not accepted",
                );
            }
            Ok(Message::Ping(_)) | Ok(Message::Pong(_)) | Ok(Message::Frame(_)) => {}
            Ok(Message::Close(_)) => {
                // Our Close acknowledged, or the peer's Close: its reply is in `control`.
                st.peer_gone = true;
                drop(st);
                client.cond.notify_all();
                return EndReason::Normal;
            }
            Err(e) => {
                use tungstenite::error::ProtocolError as P;
                let (code, why) = match e {
                    tungstenite::Error::Capacity(_) => (code::TOO_BIG, "message too big"),
                    tungstenite::Error::Utf8(_) => (code::INVALID_DATA, "invalid UTF-8"),
                    tungstenite::Error::Protocol(P::ResetWithoutClosingHandshake) => (0, ""),
                    tungstenite::Error::Protocol(_) => (code::PROTOCOL, "protocol error"),
                    _ => (0, ""),
                };
                if code == 0 || st.close_sent {
                    // The socket ended (or failed) under us: nothing more to say.
                    st.peer_gone = true;
                    drop(st);
                    client.cond.notify_all();
                    return EndReason::Normal;
                }
                return fail(st, client, &io.sock, code, why);
            }
        }
        drop(st);
        client.cond.notify_all();
    }
}

/// Queues the feature-flags reply; `true` if queued. It is a small text message early in the
/// connection; if even that does not fit, the overflow close comes with the next push.
fn push_reply(queue: &mut ClientQueue, item: Outgoing) -> bool {
    queue.push(item) != PushOutcome::Overflow
}

/// Reads and discards until EOF or an error (the writer cuts the socket after its close grace).
fn drain_until_closed(mut sock: &TcpStream) {
    let _ = sock.set_read_timeout(Some(CLOSE_GRACE));
    let mut buf = [0u8; 4096];
    loop {
        match sock.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// What the writer does next, decided under the lock.
enum Job {
    /// Control bytes from the reader (pong, close reply).
    Control(Vec<u8>),
    /// Queue items taken out of the queue into the writer's batch.
    Items,
    /// Our Close frame; the connection ends after it.
    Close(CloseRequest),
    /// A keepalive ping.
    Ping,
    /// The peer is gone: stop.
    Stop,
}

/// Bytes of `item` on the wire, headers included (what [`ClientQueue`] counts for it).
fn item_wire_len(item: &Outgoing) -> usize {
    fn hdr(len: usize) -> usize {
        if len < 126 {
            2
        } else if len <= usize::from(u16::MAX) {
            4
        } else {
            10
        }
    }
    match item {
        Outgoing::Text(t) => hdr(t.len()) + t.len(),
        Outgoing::Image { frame, metadata } => {
            let bin = frame.binary_len(*metadata);
            let first = match (frame.announcement(), metadata) {
                (Some(a), false) => hdr(a.len()) + a.len(),
                _ => 0,
            };
            first + hdr(bin) + bin
        }
    }
}

/// Most items the writer takes per batch (one `write_vectored` gathers them all).
const BATCH_ITEMS: usize = 32;
/// The writer stops adding items to a batch past this many bytes.
const BATCH_BYTES: usize = 4 << 20;

fn writer_loop(sock: TcpStream, client: &ClientHandle, hub: &Hub, ping: Duration) -> EndReason {
    let mut next_ping = after(ping);
    let keepalive = !ping.is_zero();
    // When the oldest ping not yet followed by any input went out.
    let mut unanswered_ping: Option<Instant> = None;
    // Reused across batches: steady state allocates nothing.
    let mut batch: Vec<Outgoing> = Vec::with_capacity(BATCH_ITEMS);
    loop {
        batch.clear();
        let job = {
            let mut st = client.lock();
            loop {
                if !st.control.is_empty() {
                    break Job::Control(std::mem::take(&mut st.control));
                }
                if st.peer_gone {
                    break Job::Stop;
                }
                if let Some(req) = st.close {
                    let draining = req.drain_until.is_some_and(|t| Instant::now() < t);
                    if !draining || st.queue.is_empty() {
                        st.close_sent = true;
                        break Job::Close(req);
                    }
                }
                if st.queue.front().is_some() {
                    // Take a batch out (a few Arc clones); the lock is not held while writing,
                    // so `send` never waits for the network.
                    let mut bytes = 0;
                    while batch.len() < BATCH_ITEMS && bytes < BATCH_BYTES {
                        let Some(item) = st.queue.front().cloned() else {
                            break;
                        };
                        let n = item_wire_len(&item);
                        let done = st.queue.advance(n);
                        debug_assert_eq!(done.items, 1, "item_wire_len disagrees with the queue");
                        bytes += n;
                        batch.push(item);
                    }
                    break Job::Items;
                }
                let now = Instant::now();
                if keepalive && now >= next_ping {
                    if let Some(sent) = unanswered_ping {
                        if st.last_inbound >= sent {
                            unanswered_ping = None;
                        } else if now.duration_since(sent) > ping.saturating_mul(2) {
                            // Nothing at all (no pong) for two intervals after a ping: the
                            // peer is gone without a FIN.
                            st.close_sent = true;
                            break Job::Close(CloseRequest {
                                code: code::GOING_AWAY,
                                reason: "keepalive timeout",
                                drain_until: None,
                            });
                        }
                    }
                    break Job::Ping;
                }
                let wait = match st.close.and_then(|c| c.drain_until) {
                    Some(t) => t.saturating_duration_since(now),
                    None if keepalive => next_ping.saturating_duration_since(now),
                    None => Duration::from_secs(3600),
                };
                st.writer_waiting = true;
                st = client
                    .cond
                    .wait_timeout(st, wait.max(Duration::from_millis(1)))
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
                st.writer_waiting = false;
            }
        };
        let result = match job {
            Job::Stop => {
                let _ = sock.shutdown(Shutdown::Write);
                mark_done(client);
                return EndReason::Normal;
            }
            Job::Control(bytes) => NoSigPipe(&sock).write_all(&bytes).map(|_| (0, bytes.len())),
            Job::Ping => {
                let now = Instant::now();
                next_ping = after(ping);
                unanswered_ping.get_or_insert(now);
                let mut hdr = [0u8; 10];
                let n = ws_frame_header(OPCODE_PING, 0, &mut hdr);
                NoSigPipe(&sock).write_all(&hdr[..n]).map(|_| (0, n))
            }
            Job::Items => match write_batch(&sock, &batch) {
                Ok(n) => Ok((batch.iter().filter(|i| i.is_image()).count() as u64, n)),
                Err((e, done)) => {
                    // Account for the batch: items wholly written were sent, the rest dropped.
                    let (mut off, mut sent) = (0usize, 0u64);
                    let mut lost = 0u64;
                    for item in &batch {
                        off += item_wire_len(item);
                        if off <= done {
                            sent += u64::from(item.is_image());
                        } else {
                            lost += u64::from(item.is_image());
                        }
                    }
                    hub.count_sent(sent, done as u64);
                    hub.count_dropped(lost);
                    Err(e)
                }
            },
            Job::Close(req) => {
                let bytes = wire::close_frame(req.code, req.reason);
                let _ = NoSigPipe(&sock).write_all(&bytes);
                hub.count_sent(0, bytes.len() as u64);
                let reason = match req.code {
                    code::POLICY => EndReason::Overflow,
                    _ => EndReason::Normal,
                };
                {
                    let mut st = client.lock();
                    let dropped = st.queue.queued_images();
                    st.queue.clear_unstarted();
                    drop(st);
                    hub.count_dropped(dropped as u64);
                }
                wait_for_peer_close(client);
                let _ = sock.shutdown(Shutdown::Both);
                mark_done(client);
                return reason;
            }
        };
        match result {
            Ok((images, bytes)) => hub.count_sent(images, bytes as u64),
            Err(e) => {
                let _ = sock.shutdown(Shutdown::Both);
                mark_done(client);
                let stalled = matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                );
                return if stalled {
                    EndReason::Stall
                } else {
                    EndReason::Normal
                };
            }
        }
    }
}

fn mark_done(client: &ClientHandle) {
    let mut st = client.lock();
    st.writer_done = true;
    drop(st);
    client.cond.notify_all();
}

/// After our Close: wait (bounded) for the peer's answer, seen by the reader.
fn wait_for_peer_close(client: &ClientHandle) {
    let until = Instant::now() + CLOSE_GRACE;
    let mut st = client.lock();
    while !st.peer_gone {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        st.writer_waiting = true;
        st = client
            .cond
            .wait_timeout(st, left)
            .map(|(g, _)| g)
            .unwrap_or_else(|p| p.into_inner().0);
        st.writer_waiting = false;
    }
}

/// Most slices one batch can need: five per item (text header, announcement, binary header,
/// prefix, PNG).
const MAX_PARTS: usize = BATCH_ITEMS * 5;

/// Writes a batch of queue items as their WebSocket frames, straight from the shared buffers
/// (headers live on the stack). Returns the bytes written.
fn write_batch(sock: &TcpStream, batch: &[Outgoing]) -> Result<usize, (io::Error, usize)> {
    let mut headers = [[0u8; 10]; BATCH_ITEMS * 2];
    let mut lens = [0usize; BATCH_ITEMS * 2];
    for (i, item) in batch.iter().enumerate() {
        let (h1, h2) = headers[2 * i..].split_at_mut(1);
        let (l1, l2) = lens[2 * i..].split_at_mut(1);
        match item {
            Outgoing::Text(t) => l1[0] = ws_frame_header(OPCODE_TEXT, t.len() as u64, &mut h1[0]),
            Outgoing::Image { frame, metadata } => {
                let bin = frame.binary_len(*metadata) as u64;
                match (frame.announcement(), metadata) {
                    (Some(a), false) => {
                        l1[0] = ws_frame_header(OPCODE_TEXT, a.len() as u64, &mut h1[0]);
                        l2[0] = ws_frame_header(OPCODE_BINARY, bin, &mut h2[0]);
                    }
                    _ => l1[0] = ws_frame_header(OPCODE_BINARY, bin, &mut h1[0]),
                }
            }
        }
    }
    let mut parts: [&[u8]; MAX_PARTS] = [&[]; MAX_PARTS];
    let mut n = 0;
    for (i, item) in batch.iter().enumerate() {
        let h1 = &headers[2 * i][..lens[2 * i]];
        let h2 = &headers[2 * i + 1][..lens[2 * i + 1]];
        let segs: [&[u8]; 5] = match item {
            Outgoing::Text(t) => [h1, t.as_bytes(), &[], &[], &[]],
            Outgoing::Image { frame, metadata } => match (frame.announcement(), metadata) {
                (Some(a), false) => [h1, a.as_bytes(), h2, &LEGACY_PREFIX, frame.png()],
                _ => [h1, frame.prefix(*metadata), frame.png(), &[], &[]],
            },
        };
        for seg in segs.into_iter().filter(|s| !s.is_empty()) {
            parts[n] = seg;
            n += 1;
        }
    }
    write_all_vectored(&mut NoSigPipe(sock), &parts[..n])
}

/// `write_all` over several buffers with `write_vectored`: the kernel gathers them, nothing is
/// copied here. Returns the total written, or the error with the bytes written before it.
pub(crate) fn write_all_vectored(
    sock: &mut impl Write,
    parts: &[&[u8]],
) -> Result<usize, (io::Error, usize)> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut done = 0usize;
    let mut first = 0usize; // index of the first part not completely written
    let mut skip = 0usize; // bytes of parts[first] already written
    let mut slices: [IoSlice<'_>; 64] = [IoSlice::new(&[]); 64];
    while done < total {
        let mut n = 0;
        for (i, p) in parts[first..].iter().enumerate() {
            if n == slices.len() {
                break;
            }
            slices[n] = IoSlice::new(if i == 0 { &p[skip..] } else { p });
            n += 1;
        }
        match sock.write_vectored(&slices[..n]) {
            Ok(0) => return Err((io::ErrorKind::WriteZero.into(), done)),
            Ok(mut k) => {
                done += k;
                // Advance (first, skip) past the k bytes written.
                while k > 0 {
                    let left = parts[first].len() - skip;
                    if k >= left {
                        k -= left;
                        first += 1;
                        skip = 0;
                    } else {
                        skip += k;
                        k = 0;
                    }
                }
                while first < parts.len() && parts[first].len() == skip {
                    first += 1;
                    skip = 0;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((e, done)),
        }
    }
    Ok(total)
}

/// The peer has closed or is past its grace: wake the writer for good.
fn mark_peer_gone(client: &ClientHandle) {
    let mut st = client.lock();
    st.peer_gone = true;
    drop(st);
    client.cond.notify_all();
}

/// Bad input: ask the writer for a Close with `code`, keep reading (and discarding) so the peer
/// gets it before the socket closes (closing with unread input sends RST), then let go.
fn fail(
    mut st: MutexGuard<'_, ClientState>,
    client: &ClientHandle,
    sock: &TcpStream,
    code: u16,
    reason: &'static str,
) -> EndReason {
    if st.close.is_none() {
        st.close = Some(CloseRequest {
            code,
            reason,
            drain_until: None,
        });
    }
    drop(st);
    client.cond.notify_all();
    drain_until_closed(sock);
    mark_peer_gone(client);
    EndReason::BadInput
}
