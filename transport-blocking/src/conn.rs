#![forbid(unsafe_code)]
//! One connection: the HTTP stage (in [`crate::handshake`]), then a reader (this thread) and a
//! writer thread driving the client's protocol [`Session`], which lives under the client's lock.
//!
//! The reader waits for input ([`crate::input`]: an epoll set that the writer's waits for
//! send-buffer room do not wake), reads the socket (no lock held) and hands the bytes to the
//! session, which parses them and queues pongs and close replies as control frames. The writer
//! takes a lease of whole frames out of the session under the lock ([`Session::lease`]: a few
//! `Arc` clones; up to 32 items or 4 MiB), writes it with one gathering `write_vectored` loop
//! straight from the shared buffers without the lock, and reports back
//! ([`Session::lease_done`]); a `send` never waits for the network. Control frames only ever go
//! out between two leases, so never inside a data frame.
//!
//! Timers are the session's ([`Session::tick`]): the writer waits on the client's condvar until
//! the session's next deadline. A write that makes no progress for the stall timeout fails
//! through the socket's write timeout and ends the client as stalled.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use pngcast_protocol::http::{self, ServerConfig};
use pngcast_protocol::io::NoSigPipe;
use pngcast_protocol::queue::Lease;
use pngcast_protocol::session::{Ending, State, Tick};

use crate::handshake::{self, Upgraded};
use crate::hub::{ClientHandle, Hub, Refusal};
use crate::input::InputWait;
use crate::server::THREAD_STACK;

/// How long the peer has, after our Close or its bad input, before the socket is cut.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Most items the writer takes per lease (one `write_vectored` loop gathers them all).
const LEASE_ITEMS: usize = 32;
/// The writer stops adding items to a lease past this many bytes.
const LEASE_BYTES: usize = 4 << 20;
/// Longest a single write blocks: the granularity of the stall check.
const STALL_SLICE: Duration = Duration::from_millis(500);
/// Bytes read per system call.
const READ_CHUNK: usize = 16 * 1024;

/// Runs a connection from accept to close (`token`: its entry in the hub's connection list).
pub(crate) fn run(stream: TcpStream, token: u64, config: &ServerConfig, hub: &Arc<Hub>) {
    if let Some(up) = handshake::serve_http(&stream, config, hub) {
        run_websocket(stream, up, token, config, hub);
    }
    hub.untrack(token);
}

fn run_websocket(
    stream: TcpStream,
    up: Upgraded,
    token: u64,
    config: &ServerConfig,
    hub: &Arc<Hub>,
) {
    let client = match hub.register(token, up.client_id, &stream, up.response, up.leftover) {
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
    // Registered (so counted and targetable, with the 101 and the status first in its session):
    // reads block (the writer owns the timers); a write blocks at most a slice of the stall
    // timeout (or of the blocking transport's own `write_timeout`, if shorter), so the writer
    // sees a stall within a slice of it (see `write_lease`).
    let stall = config.stall_timeout.min(config.write_timeout);
    let write_sock = match (
        stream.set_read_timeout(None),
        stream.set_write_timeout(Some(stall.min(STALL_SLICE))),
        stream.set_nodelay(true),
        stream.try_clone(),
    ) {
        (Ok(()), Ok(()), Ok(()), Ok(w)) => w,
        _ => return abandon(&client, hub),
    };
    let writer = {
        let client = Arc::clone(&client);
        thread::Builder::new()
            .name("pngcast-writer".into())
            .stack_size(THREAD_STACK)
            .spawn(move || writer_loop(write_sock, &client, stall))
    };
    let Ok(writer) = writer else {
        return abandon(&client, hub);
    };
    reader_loop(stream, &client);
    let _ = writer.join();
    client.cut();
    client.lock().session.end(Ending::Gone);
    hub.remove(&client);
}

/// The client could not be served after all: cut it and count its end.
fn abandon(client: &ClientHandle, hub: &Hub) {
    client.cut();
    client.lock().session.end(Ending::Gone);
    hub.remove(client);
}

/// Reads until EOF or an error, handing every byte to the session. Once the session stops
/// parsing (it decided to close), input is read and dropped for at most [`CLOSE_GRACE`], so
/// the peer gets our Close before the socket goes (closing with unread input sends RST), and a
/// writer stuck on a misbehaving peer is cut rather than waited for.
///
/// Between reads the thread waits for input in an [`InputWait`], which the writer's
/// send-buffer wake-ups do not reach; without one (no descriptor to spare) it blocks in `recv`
/// as before.
fn reader_loop(mut sock: TcpStream, client: &ClientHandle) {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut grace: Option<Instant> = None;
    let mut input = InputWait::new(&sock).ok();
    // More input may be waiting with no new readiness edge to come: read before waiting.
    let mut full = false;
    loop {
        let waited = match &mut input {
            Some(w) if !full => w.wait(grace),
            _ => Ok(true),
        };
        let read = match waited {
            Ok(true) => sock.read(&mut buf),
            // The grace period is over, or the wait failed: as a failed read.
            Ok(false) => Err(io::ErrorKind::TimedOut.into()),
            Err(e) => Err(e),
        };
        // A full buffer, or an interrupted call that consumed nothing: read again before
        // waiting, since the edge that reported the input has been taken.
        full = match &read {
            Ok(n) => *n == buf.len(),
            Err(e) => e.kind() == io::ErrorKind::Interrupted,
        };
        let mut st = client.lock();
        match read {
            Ok(0) => {
                st.session.receive_eof();
                st.peer_gone = true;
                drop(st);
                client.cond.notify_all();
                return;
            }
            Ok(n) => st.session.receive(&buf[..n], Instant::now()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                // An error, or the grace period over: the connection ends.
                st.peer_gone = true;
                drop(st);
                client.cut();
                client.cond.notify_all();
                return;
            }
        }
        let stopped = !st.session.wants_input();
        let ended = st.session.is_ended();
        drop(st);
        client.cond.notify_all();
        if ended {
            return;
        }
        if stopped && grace.is_none() {
            let until = Instant::now() + CLOSE_GRACE;
            grace = Some(until);
            let _ = sock.set_read_timeout(Some(CLOSE_GRACE));
        }
    }
}

/// What the writer does next, decided under the lock.
enum Job {
    /// Write the lease.
    Write,
    /// The close frame is out: shut the write side, wait for the peer.
    Finished,
    /// Stop: the session ended or the peer is gone.
    Stop(Ending),
}

fn writer_loop(sock: TcpStream, client: &ClientHandle, stall: Duration) {
    // Reused across leases: steady state allocates nothing.
    let mut lease = Lease::new();
    loop {
        let job = next_job(client, &mut lease);
        match job {
            Job::Write => {
                let result = write_lease(&sock, &lease, stall);
                let written = result.as_ref().map_or_else(|e| e.1, |n| *n);
                let mut st = client.lock();
                st.session.lease_done(&mut lease, written, Instant::now());
                if let Err((e, _)) = result {
                    let stalled = matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    );
                    st.session.end(if stalled {
                        Ending::Stalled
                    } else {
                        Ending::Gone
                    });
                    drop(st);
                    client.cut();
                    client.cond.notify_all();
                    return;
                }
            }
            Job::Finished => {
                let _ = sock.shutdown(Shutdown::Write);
                wait_for_peer(client);
                client.lock().session.end(Ending::Closed);
                client.cut();
                return;
            }
            Job::Stop(ending) => {
                client.lock().session.end(ending);
                // The reader may be blocked on a peer that sends nothing: cut both ways.
                client.cut();
                client.cond.notify_all();
                return;
            }
        }
    }
}

/// Waits under the lock until the session has something for the writer.
fn next_job(client: &ClientHandle, lease: &mut Lease) -> Job {
    let mut st = client.lock();
    loop {
        let now = Instant::now();
        if st.flush_until.is_some_and(|t| now >= t) {
            st.flush_until = None;
            st.session.abandon_queue();
        }
        if st.session.tick(now) == Tick::Stalled {
            return Job::Stop(Ending::Stalled);
        }
        match st.session.state() {
            State::Write => {
                st.session.lease(lease, LEASE_ITEMS, LEASE_BYTES);
                return Job::Write;
            }
            State::Finished => return Job::Finished,
            State::Ended => return Job::Stop(Ending::Gone),
            State::Idle if st.peer_gone => return Job::Stop(Ending::Gone),
            State::Idle => {}
        }
        let mut until = st.session.next_deadline();
        if let Some(t) = st.flush_until {
            until = until.min(t);
        }
        let wait = until
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
        st.writer_waiting = true;
        st = client
            .cond
            .wait_timeout(st, wait)
            .map(|(g, _)| g)
            .unwrap_or_else(|p| p.into_inner().0);
        st.writer_waiting = false;
    }
}

/// After our Close: wait (bounded) for the peer's EOF, seen by the reader.
fn wait_for_peer(client: &ClientHandle) {
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

/// Writes a whole lease with `write_vectored` straight from the shared buffers. Returns the
/// bytes written, or the error with the bytes written before it; a stall (no byte taken for
/// `stall`) is a `TimedOut` error.
///
/// Each call blocks at most [`STALL_SLICE`] (the socket's write timeout). A call that returns
/// some bytes after waiting may have moved them at its start, so progress is dated at the
/// call's return: a stall is seen at most one slice late, never early.
fn write_lease(
    sock: &TcpStream,
    lease: &Lease,
    stall: Duration,
) -> Result<usize, (io::Error, usize)> {
    let total = lease.len();
    let mut done = 0usize;
    let mut slices = [IoSlice::new(&[]); 64];
    let mut progress = Instant::now();
    while done < total {
        let n = lease.io_slices(done, &mut slices);
        match NoSigPipe(sock).write_vectored(&slices[..n]) {
            Ok(0) => return Err((io::ErrorKind::WriteZero.into(), done)),
            Ok(k) => {
                done += k;
                progress = Instant::now();
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) && progress.elapsed() < stall => {}
            Err(e) => return Err((e, done)),
        }
    }
    Ok(total)
}
