//! The HTTP stage of a connection on the event loop: reading and routing the request head,
//! ingest bodies, plain answers and refusals, and the eviction of unfinished heads past
//! `max_handshakes` (a slow-header flood).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use pngcast_protocol::http::{self, HttpError, RequestHead, Route};
use pngcast_protocol::ingest;
use pngcast_protocol::session::Session;

use super::{EventLoop, Key};
use crate::conn::{Conn, HeadRead, Phase, Reply};
use crate::shared::Command;
use crate::ws::Ws;

impl EventLoop {
    /// Too many request heads at once (a slow-header flood): the oldest of this loop gets 408,
    /// so a new client is never kept out by connections that never finish their heads.
    pub(super) fn evict_oldest_head(&mut self, newest: Key) {
        while let Some(key) = self.head_order.pop_front() {
            if key == newest {
                self.head_order.push_front(key);
                return;
            }
            let mut evicted = false;
            self.with(key, |lp, conn, now| {
                if matches!(conn.phase, Phase::Head(_) | Phase::Body(_)) {
                    lp.time_out_head(conn, now);
                    evicted = true;
                }
            });
            if evicted {
                return;
            }
        }
    }

    /// Answers 408 to a connection whose request head did not arrive in time (or was evicted)
    /// and closes it at once: what it sent was read, and a slow-header flood must not fill the
    /// connection limit with lingering sockets.
    pub(super) fn time_out_head(&mut self, conn: &mut Conn, _now: Instant) {
        self.shared.stats.count_refused();
        let reply = http::refusal_response(408, "request head not received in time");
        let _ = pngcast_protocol::io::send_now(&conn.sock, &reply);
        conn.phase = Phase::Done;
    }

    /// Reads and routes the request head.
    pub(super) fn on_head(&mut self, key: Key, conn: &mut Conn, now: Instant) {
        let read = conn.read_head(self.config.max_handshake_bytes);
        let eof = matches!(read, HeadRead::Eof);
        match read {
            HeadRead::Pending | HeadRead::Eof => {}
            HeadRead::Gone => {
                conn.phase = Phase::Done;
                return;
            }
            HeadRead::TooLarge => {
                let limit = self.config.max_handshake_bytes;
                return self.refuse(conn, HttpError::TooLarge { limit }.response());
            }
        }
        let Phase::Head(buf) = &conn.phase else {
            return;
        };
        let (head, used) = match RequestHead::parse_with_limit(buf, self.config.max_handshake_bytes)
        {
            Ok(Some(parsed)) => parsed,
            Ok(None) => {
                if eof {
                    conn.phase = Phase::Done;
                }
                return;
            }
            Err(e) => return self.refuse(conn, e.response()),
        };
        let leftover = buf[used..].to_vec();
        let live = self.shared.clients_besides(&head);
        match http::route(&head, &self.config, live) {
            Route::Viewer => self.reply(conn, http::viewer_response()),
            Route::Features => self.reply(conn, http::features_response()),
            Route::Metrics => self.reply(
                conn,
                http::metrics_response(&self.shared.stats.snapshot(), &self.config),
            ),
            Route::Ingest(route) => {
                if route.expect_continue {
                    // A 25-byte interim answer into an empty send buffer.
                    let _ = pngcast_protocol::io::send_now(&conn.sock, ingest::CONTINUE);
                }
                let mut body = leftover;
                body.truncate(route.content_length);
                conn.deadline = now + ingest::body_time(&self.config, route.content_length);
                conn.phase = Phase::Body(Box::new((route, body)));
                self.on_body(conn);
            }
            Route::Refuse { status, reason } => {
                self.refuse(conn, http::refusal_response(status, reason))
            }
            Route::Upgrade { client_id } => {
                let client_id: Arc<str> = client_id.into();
                let gen = self.shared.next_gen.fetch_add(1, Ordering::Relaxed);
                if !self.shared.admit(&client_id, gen, self.config.max_clients) {
                    // Another loop took the last place since the route was checked.
                    return self.refuse(conn, http::refusal_response(503, "too many clients"));
                }
                let response = http::switching_protocols(&head);
                let session = Session::new(
                    client_id.clone(),
                    response,
                    leftover,
                    &self.config,
                    self.shared.stats.clone(),
                    conn.sock.peer_addr().ok(),
                    now,
                );
                conn.phase = Phase::Ws(Box::new(Ws::new(session)));
                match self.by_id.insert(client_id.clone(), (key, gen)) {
                    Some((old, _)) => self.replace(old),
                    None => self.loop_clients(1),
                }
                // The same id may be live in another loop.
                for (i, inbox) in self.shared.inboxes.iter().enumerate() {
                    if i != self.index {
                        inbox.push(Command::Evict(client_id.clone(), gen));
                    }
                }
            }
        }
    }

    /// Reads an ingest body; once complete, hands it to the ingest handler and answers.
    pub(super) fn on_body(&mut self, conn: &mut Conn) {
        match conn.read_body() {
            Ok(false) => {}
            Ok(true) => {
                let Phase::Body(body) = std::mem::replace(&mut conn.phase, Phase::Done) else {
                    return;
                };
                let (route, buf) = *body;
                self.reply(conn, ingest::respond(&route, buf, &self.config));
            }
            Err(_) => conn.phase = Phase::Done,
        }
    }

    pub(super) fn reply(&mut self, conn: &mut Conn, out: Vec<u8>) {
        conn.phase = Phase::Reply(Reply { out, pos: 0 });
    }

    pub(super) fn refuse(&mut self, conn: &mut Conn, out: Vec<u8>) {
        self.shared.stats.count_refused();
        self.reply(conn, out);
    }

    pub(super) fn write_reply(&mut self, conn: &mut Conn, now: Instant) {
        match conn.write_reply() {
            Ok(true) => conn.linger(self.linger_deadline(now)),
            Ok(false) => {}
            Err(_) => conn.phase = Phase::Done,
        }
    }
}
