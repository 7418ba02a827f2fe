//! `pngcast serve` under a low descriptor limit: it derives how many clients fit, says so in
//! its start-up line, and answers the rest 503 before their 101, on both transports; no
//! client it let in is cut.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::Serve;

/// The upgrade's status (0 when the connection ended first), and the socket.
fn upgrade(addr: SocketAddr, id: usize) -> (u16, TcpStream) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let req = format!(
        "GET /ws?clientId=c{id} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    let status = String::from_utf8_lossy(&head)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, s)
}

/// Reads WebSocket frames until a binary one (an image) arrives; false if the connection ends.
fn gets_an_image(s: &mut TcpStream) -> bool {
    loop {
        let mut h = [0u8; 2];
        if s.read_exact(&mut h).is_err() {
            return false;
        }
        let len = match h[1] & 0x7f {
            126 => {
                let mut l = [0u8; 2];
                s.read_exact(&mut l).unwrap();
                u16::from_be_bytes(l) as usize
            }
            127 => {
                let mut l = [0u8; 8];
                s.read_exact(&mut l).unwrap();
                u64::from_be_bytes(l) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        if s.read_exact(&mut payload).is_err() {
            return false;
        }
        match h[0] & 0x0f {
            0x2 => return true,
            0x8 => return false,
            _ => {}
        }
    }
}

fn under_limit(transport: &str, nofile: u32) {
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        &format!("ulimit -n {nofile} && exec \"$0\" \"$@\""),
        env!("CARGO_BIN_EXE_pngcast"),
    ]);
    let serve = Serve::start_cmd(
        cmd,
        "127.0.0.1:0",
        &[
            "--transport",
            transport,
            "--source",
            "demo",
            "--size",
            "32x32",
            "--fps",
            "20",
            "--max-clients",
            "1000",
        ],
    );
    let fit: usize = serve
        .line
        .split("up to ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no client count in {:?}", serve.line));
    assert!(fit < 1000 && fit > 0, "{transport}: {fit} clients fit");
    let tries = fit + 5;
    let mut admitted = Vec::new();
    let mut refused = 0;
    for i in 0..tries {
        match upgrade(serve.addr, i) {
            (101, s) => admitted.push(s),
            (503, _) => refused += 1,
            (other, _) => panic!("{transport}: client {i} got {other}"),
        }
    }
    assert_eq!(admitted.len(), fit, "{transport}");
    assert_eq!(refused, 5, "{transport}");
    // Every admitted client is served, none cut.
    for (i, s) in admitted.iter_mut().enumerate() {
        assert!(gets_an_image(s), "{transport}: client {i} was cut");
    }
}

#[test]
fn blocking_refuses_past_the_descriptor_limit_with_503() {
    under_limit("blocking", 400);
}

#[test]
fn mio_refuses_past_the_descriptor_limit_with_503() {
    under_limit("mio", 400);
}
