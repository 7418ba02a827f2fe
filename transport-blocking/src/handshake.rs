#![forbid(unsafe_code)]
//! The HTTP stage of a connection: read the request head within the handshake time and size
//! limits, route it with `pngcast_protocol::http`, answer plain requests and refusals (then close),
//! or hand the upgrade (with its `101` answer, written once the client is registered) to the
//! WebSocket stage.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use pngcast_protocol::http::{self, RequestHead, Route, ServerConfig};
use pngcast_protocol::ingest;

use crate::hub::{after, Hub};
use pngcast_protocol::io::NoSigPipe;

/// A connection that answered `101`.
pub(crate) struct Upgraded {
    pub client_id: Arc<str>,
    /// Bytes the client sent after its request head (the start of its first frames).
    pub leftover: Vec<u8>,
    /// The `101 Switching Protocols` answer, to write once the client is registered.
    pub response: Vec<u8>,
}

/// Serves the HTTP part. `Some` when the connection is now a WebSocket; `None` when it was
/// answered (or dropped) and is done.
pub(crate) fn serve_http(stream: &TcpStream, config: &ServerConfig, hub: &Hub) -> Option<Upgraded> {
    let deadline = after(config.handshake_timeout);
    let limit = config.max_handshake_bytes;
    let mut buf = Vec::with_capacity(1024.min(limit));
    let mut chunk = [0u8; 2048];
    let mut sock = stream;
    let (head, consumed) = loop {
        match RequestHead::parse_with_limit(&buf, limit) {
            Ok(Some(done)) => break done,
            Ok(None) => {}
            Err(e) => {
                refuse_with(sock, &e.response(), hub);
                return None;
            }
        }
        // Time left for the whole head: a slow sender cannot stretch it byte by byte.
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || sock.set_read_timeout(Some(left)).is_err() {
            refuse_with(
                sock,
                &http::refusal_response(408, "request head not received in time"),
                hub,
            );
            return None;
        }
        // Never read past the limit (plus one byte, to tell "too large" from "complete").
        let room = (limit + 1).saturating_sub(buf.len()).clamp(1, chunk.len());
        match sock.read(&mut chunk[..room]) {
            Ok(0) => {
                hub.count_refused();
                return None;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                refuse_with(
                    sock,
                    &http::refusal_response(408, "request head not received in time"),
                    hub,
                );
                return None;
            }
            Err(_) => {
                hub.count_refused();
                return None;
            }
        }
    };

    let answer = |bytes: &[u8]| {
        let _ = sock.set_write_timeout(Some(config.handshake_timeout));
        let _ = NoSigPipe(sock).write_all(bytes);
        let _ = sock.shutdown(Shutdown::Write);
        linger_until_closed(sock, deadline);
    };
    match http::route(&head, config, hub.clients_besides(&head)) {
        Route::Viewer => {
            answer(&http::viewer_response());
            None
        }
        Route::Features => {
            answer(&http::features_response());
            None
        }
        Route::Metrics => {
            answer(&http::metrics_response(&hub.stats(), config));
            None
        }
        Route::Ingest(route) => {
            if route.expect_continue {
                let _ = NoSigPipe(sock).write_all(ingest::CONTINUE);
            }
            let mut body = buf[consumed..].to_vec();
            body.truncate(route.content_length);
            let until = after(ingest::body_time(config, route.content_length));
            if read_body(sock, &mut body, route.content_length, until).is_err() {
                refuse_with(
                    sock,
                    &http::refusal_response(408, "request body not received in time"),
                    hub,
                );
                return None;
            }
            answer(&ingest::respond(&route, body, config));
            None
        }
        Route::Refuse { status, reason } => {
            hub.count_refused();
            answer(&http::refusal_response(status, reason));
            None
        }
        Route::Upgrade { client_id } => {
            if hub.is_shut_down() {
                refuse_with(
                    sock,
                    &http::refusal_response(503, "server shutting down"),
                    hub,
                );
                return None;
            }
            // The 101 goes out once the client is registered (see `conn`), so that a client
            // that saw its 101 is already counted and targetable.
            Some(Upgraded {
                client_id: client_id.into(),
                leftover: buf[consumed..].to_vec(),
                response: http::switching_protocols(&head),
            })
        }
    }
}

/// Reads the rest of a body of `len` bytes by `until`; EOF leaves it short (the answer says
/// so); a timeout or a socket error is an error.
fn read_body(
    mut sock: &TcpStream,
    body: &mut Vec<u8>,
    len: usize,
    until: Instant,
) -> io::Result<()> {
    let mut chunk = [0u8; 16 * 1024];
    while body.len() < len {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        sock.set_read_timeout(Some(left))?;
        let want = (len - body.len()).min(chunk.len());
        match sock.read(&mut chunk[..want]) {
            Ok(0) => return Ok(()),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sends a refusal, counts it and closes cleanly.
pub(crate) fn refuse_with(sock: &TcpStream, response: &[u8], hub: &Hub) {
    hub.count_refused();
    let _ = sock.set_write_timeout(Some(std::time::Duration::from_secs(1)));
    let _ = NoSigPipe(sock).write_all(response);
    let _ = sock.shutdown(Shutdown::Write);
    linger_until_closed(sock, Instant::now() + std::time::Duration::from_secs(1));
}

/// After our answer and FIN: read and discard what the client still sends, until it closes or
/// `until` (bounded by a second past now). Closing a socket with unread input makes the kernel
/// send RST, which can destroy the answer before the client read it.
fn linger_until_closed(mut sock: &TcpStream, until: Instant) {
    let until = until.min(Instant::now() + std::time::Duration::from_secs(1));
    let mut scratch = [0u8; 1024];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || sock.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match sock.read(&mut scratch) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}
