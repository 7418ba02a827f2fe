//! The Rust servers of the transport peer benchmark, one per process:
//! `peer-server --server mio|blocking|fastwebsockets|tungstenite --png FILE [--port P]`.
//!
//! Each accepts WebSocket upgrades on `/ws` (loopback) and sends every client the same binary
//! message, the 8-byte ComfyUI prefix + the PNG, when the runner asks on stdin (the line
//! protocol is in the crate docs). pngcast's transports get a `WireFrame` built once from the
//! PNG (legacy type-1, announcements off, `Reliable` policy with a queue budget no burst
//! reaches); the tokio peers get one `Bytes` shared by every client's unbounded channel, each
//! client a task that writes it as its library is meant to be used.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use pngcast_peers::{apply_knobs, apply_knobs_to_port, now_ns, PREFIX};
use pngcast_protocol::http::ServerConfig;
use pngcast_protocol::queue::Policy;
use pngcast_protocol::sink::{FrameSink, Target};
use pngcast_protocol::wire::{ImageMeta, WireFrame};

fn usage() -> ! {
    eprintln!(
        "usage: peer-server --server mio|blocking|fastwebsockets|tungstenite --png FILE [--port P]"
    );
    std::process::exit(2)
}

/// How the control loop hands frames to a server.
trait Broadcast {
    fn clients(&self) -> usize;
    fn send_all(&self);
}

/// pngcast: one shared frame through the transport's sink.
struct Pngcast {
    sink: Arc<dyn FrameSink>,
    frame: WireFrame,
}

impl Broadcast for Pngcast {
    fn clients(&self) -> usize {
        self.sink.stats().clients
    }
    fn send_all(&self) {
        self.sink
            .send_image(&Target::All, &self.frame)
            .expect("send_image");
    }
}

/// The tokio peers: one unbounded channel per client, the message shared (`Bytes` clone).
struct Channels {
    txs: Arc<Mutex<Vec<tokio::sync::mpsc::UnboundedSender<Bytes>>>>,
    msg: Bytes,
}

impl Broadcast for Channels {
    fn clients(&self) -> usize {
        self.txs.lock().unwrap().len()
    }
    fn send_all(&self) {
        for tx in self.txs.lock().unwrap().iter() {
            // A closed client is skipped, as a server would.
            let _ = tx.send(self.msg.clone());
        }
    }
}

/// Reads the runner's commands until `quit` or EOF.
fn control(server: &dyn Broadcast) {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    for line in stdin.lock().lines() {
        let line = line.expect("stdin");
        let mut words = line.split_whitespace();
        match (
            words.next(),
            words.next().and_then(|n| n.parse::<u64>().ok()),
        ) {
            (Some("wait"), Some(n)) => {
                while (server.clients() as u64) < n {
                    std::thread::sleep(Duration::from_millis(1));
                }
                writeln!(out, "ok").unwrap();
            }
            (Some("burst"), Some(k)) => {
                let t0 = now_ns();
                for _ in 0..k {
                    server.send_all();
                }
                writeln!(out, "sent {t0}").unwrap();
            }
            (Some("one"), _) => {
                let t0 = now_ns();
                server.send_all();
                writeln!(out, "{t0}").unwrap();
            }
            (Some("quit"), _) => break,
            _ => eprintln!("peer-server: unknown command {line:?}"),
        }
        out.flush().unwrap();
    }
}

fn announce_ready(port: u16, knobs: &str) {
    if !knobs.is_empty() {
        eprintln!("peer-server: {knobs}");
    }
    println!("ready {port}");
    std::io::stdout().flush().unwrap();
}

/// pngcast's loopback send buffer: the default, or `PEERS_PNGCAST_SNDBUF` (bytes; `0` keeps the
/// kernel's autotuning), to compare settings within one build.
fn loopback_send_buffer() -> Option<usize> {
    let Ok(v) = std::env::var("PEERS_PNGCAST_SNDBUF") else {
        return ServerConfig::default().loopback_send_buffer;
    };
    pngcast_benches::parse_send_buffer(&v).unwrap_or_else(|e| {
        eprintln!("peer-server: PEERS_PNGCAST_SNDBUF {e}");
        std::process::exit(2)
    })
}

fn pngcast(kind: &str, addr: SocketAddr, png: Vec<u8>) {
    let config = ServerConfig::default()
        .addr(addr)
        .policy(Policy::Reliable)
        // A budget no burst reaches: every client gets every frame (frames are shared, so this
        // is accounting, not memory per client).
        .queue_bytes(1 << 40)
        .max_clients(1024)
        .announce(false)
        .loopback_send_buffer(loopback_send_buffer());
    let meta = ImageMeta {
        event: "preview".into(),
        count: 1,
        ..ImageMeta::default()
    };
    let frame = WireFrame::new(&meta, Arc::new(png), false);
    let (sink, port, _keep): (_, _, Box<dyn std::any::Any>) = match kind {
        "mio" | "mio16" | "mio8" => {
            // mio16: 16 loops that spread every connection (packing as wide as the loops);
            // mio8: 8 loops dealt to the least loaded (the earlier default on 16 cores); both
            // to compare with the default's spread-then-pack.
            let fixed = match kind {
                "mio16" => std::num::NonZeroUsize::new(16),
                "mio8" => std::num::NonZeroUsize::new(8),
                _ => None,
            };
            let s = match fixed {
                Some(loops) => pngcast_mio::Server::bind_loops_pack(config, loops, loops.get()),
                None => pngcast_mio::Server::bind(config),
            }
            .expect("bind");
            (s.sink(), s.local_addr().port(), Box::new(s))
        }
        _ => {
            let s = pngcast_blocking::Server::bind(config).expect("bind");
            (s.sink(), s.local_addr().port(), Box::new(s))
        }
    };
    let knobs = apply_knobs_to_port(port).expect("socket knobs");
    announce_ready(port, &knobs);
    control(&Pngcast { sink, frame });
}

/// The tokio peers' listener, knobs applied.
fn tokio_listener(addr: SocketAddr) -> (std::net::TcpListener, u16, String) {
    let l = std::net::TcpListener::bind(addr).expect("bind");
    l.set_nonblocking(true).unwrap();
    let knobs = apply_knobs(std::os::fd::AsFd::as_fd(&l)).expect("socket knobs");
    let port = l.local_addr().unwrap().port();
    (l, port, knobs)
}

type Clients = Arc<Mutex<Vec<tokio::sync::mpsc::UnboundedSender<Bytes>>>>;

fn tungstenite(addr: SocketAddr, msg: Bytes) {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let txs: Clients = Arc::default();
    let (l, port, knobs) = tokio_listener(addr);
    let accept_txs = txs.clone();
    rt.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(l).unwrap();
        loop {
            let Ok((s, _)) = listener.accept().await else {
                continue;
            };
            let _ = s.set_nodelay(true);
            let txs = accept_txs.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(s).await else {
                    return;
                };
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
                txs.lock().unwrap().push(tx);
                while let Some(m) = rx.recv().await {
                    if ws.send(Message::Binary(m)).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    announce_ready(port, &knobs);
    control(&Channels { txs, msg });
}

fn fastwebsockets(addr: SocketAddr, msg: Bytes) {
    use fastwebsockets::{upgrade, Frame, Payload};
    use http_body_util::Empty;
    use hyper::body::Incoming;
    use hyper::{Request, Response};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let txs: Clients = Arc::default();
    let (l, port, knobs) = tokio_listener(addr);
    let accept_txs = txs.clone();
    rt.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(l).unwrap();
        loop {
            let Ok((s, _)) = listener.accept().await else {
                continue;
            };
            let _ = s.set_nodelay(true);
            let txs = accept_txs.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                    let txs = txs.clone();
                    async move {
                        let (response, fut) = upgrade::upgrade(&mut req)?;
                        tokio::spawn(async move {
                            let Ok(mut ws) = fut.await else {
                                return;
                            };
                            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
                            txs.lock().unwrap().push(tx);
                            while let Some(m) = rx.recv().await {
                                let frame = Frame::binary(Payload::Borrowed(&m));
                                if ws.write_frame(frame).await.is_err() {
                                    return;
                                }
                            }
                        });
                        Ok::<Response<Empty<Bytes>>, fastwebsockets::WebSocketError>(response)
                    }
                });
                let io = hyper_util::rt::TokioIo::new(s);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    announce_ready(port, &knobs);
    control(&Channels { txs, msg });
}

fn main() {
    let mut server = None;
    let mut png = None;
    let mut port = 0u16;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--server" => server = Some(value()),
            "--png" => png = Some(value()),
            "--port" => port = value().parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    let (Some(server), Some(png)) = (server, png) else {
        usage()
    };
    let png = std::fs::read(&png).unwrap_or_else(|e| panic!("{png}: {e}"));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let message = || {
        let mut m = Vec::with_capacity(PREFIX.len() + png.len());
        m.extend_from_slice(&PREFIX);
        m.extend_from_slice(&png);
        Bytes::from(m)
    };
    match server.as_str() {
        "mio" | "mio16" | "mio8" | "blocking" => pngcast(&server, addr, png),
        "tungstenite" => tungstenite(addr, message()),
        "fastwebsockets" => fastwebsockets(addr, message()),
        _ => usage(),
    }
}
