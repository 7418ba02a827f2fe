//! The HTTP side of `pngcast serve` beyond the viewer: the ingest endpoint (`POST /api/send`,
//! a PNG passed through unchanged, a `.npy` array encoded) and `GET /metrics`, on each
//! transport, over raw sockets as `curl` would speak, with a WebSocket client receiving.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::Serve;

const TRANSPORTS: [&str; 2] = ["mio", "blocking"];

/// An HTTP answer: status, head (lowercased names kept as sent), body.
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request (`Connection: close`) and reads the whole answer.
fn http(addr: SocketAddr, method: &str, target: &str, headers: &str, body: &[u8]) -> Answer {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head =
        format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}\r\n");
    s.write_all(head.as_bytes()).unwrap();
    // The server may answer (and close) before the whole body is written: that is fine.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    // Interim answers (100 Continue) come before the final one.
    while raw.starts_with(b"HTTP/1.1 100 ") {
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        raw.drain(..end + 4);
    }
    let text = String::from_utf8_lossy(&raw);
    let end = text
        .find("\r\n\r\n")
        .unwrap_or_else(|| panic!("no answer head: {text:?}"));
    let head = text[..end].to_owned();
    let status = head[9..12].parse().unwrap();
    Answer {
        status,
        head,
        body: raw[end + 4..].to_vec(),
    }
}

/// `POST /api/send` with `Content-Length`.
fn post(addr: SocketAddr, query: &str, headers: &str, body: &[u8]) -> Answer {
    let headers = format!("Content-Length: {}\r\n{headers}", body.len());
    http(addr, "POST", &format!("/api/send?{query}"), &headers, body)
}

/// A real PNG from `pngcast encode`: `w` x `h` RGB, varied pixels.
fn png_file(w: usize, h: usize) -> Vec<u8> {
    let dir = common::scratch(&format!("ingest-png-{w}x{h}"));
    let px: Vec<u8> = (0..w * h * 3).map(|i| (i * 37 % 256) as u8).collect();
    let npy = npy_bytes("|u1", &format!("({h}, {w}, 3)"), &px);
    std::fs::write(dir.join("in.npy"), npy).unwrap();
    let out = common::run_bounded(
        common::pngcast()
            .arg("encode")
            .arg(dir.join("in.npy"))
            .args(["--layout", "hwc"])
            .arg("-o")
            .arg(dir.join("out.png"))
            .arg("-q"),
        "pngcast encode",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(dir.join("out.png")).unwrap()
}

/// A `.npy` file (format 1.0).
fn npy_bytes(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out
}

fn decode(png: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut r = png::Decoder::new(std::io::Cursor::new(png))
        .read_info()
        .unwrap();
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

type Ws = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>;

fn connect(serve: &Serve, query: &str) -> Ws {
    let (ws, _) = tungstenite::connect(format!("{}{query}", serve.ws_url())).unwrap();
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    }
    ws
}

/// The PNGs of the next `n` image frames announced for `event` (legacy form: the announcement
/// text names the event, the binary message after it holds `00000001 00000002 <PNG>`).
fn frames_for(ws: &mut Ws, event: &str, n: usize) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + common::LIVENESS;
    let mut last_type = String::new();
    let mut out = Vec::new();
    while out.len() < n {
        assert!(Instant::now() < deadline, "no frame for {event}");
        match ws.read().unwrap() {
            tungstenite::Message::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                last_type = v["type"].as_str().unwrap_or("").to_owned();
            }
            tungstenite::Message::Binary(b) => {
                if last_type == event {
                    assert_eq!(&b[..8], &[0, 0, 0, 1, 0, 0, 0, 2]);
                    out.push(b[8..].to_vec());
                }
                last_type.clear();
            }
            _ => {}
        }
    }
    out
}

/// The samples of a Prometheus text answer, `name{labels}` -> value.
fn samples(text: &str) -> std::collections::BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            let v = if v == "+Inf" {
                f64::INFINITY
            } else {
                v.parse().unwrap()
            };
            (k.to_owned(), v)
        })
        .collect()
}

#[test]
fn metrics_are_served_behind_the_token() {
    for t in TRANSPORTS {
        let serve = Serve::start(&[
            "--transport",
            t,
            "--size",
            "16x8",
            "--fps",
            "50",
            "--token",
            "s3cret",
        ]);
        let a = http(serve.addr, "GET", "/metrics", "", b"");
        assert_eq!(a.status, 401, "{t}: {}", a.text());
        let a = http(serve.addr, "GET", "/metrics?token=wrong", "", b"");
        assert_eq!(a.status, 401, "{t}");
        let mut ws = connect(&serve, "?token=s3cret");
        frames_for(&mut ws, "preview", 2);
        let a = http(
            serve.addr,
            "GET",
            "/metrics",
            "Authorization: Bearer s3cret\r\n",
            b"",
        );
        assert_eq!(a.status, 200, "{t}: {}", a.text());
        assert!(
            a.head
                .contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"),
            "{t}: {}",
            a.head
        );
        let s = samples(&a.text());
        assert_eq!(s["pngcast_clients"], 1.0, "{t}");
        assert!(s["pngcast_frames_queued_total"] >= 2.0, "{t}");
        assert!(s["pngcast_sent_bytes_total"] > 0.0, "{t}");
        assert!(s["pngcast_clients_accepted_total"] >= 1.0, "{t}");
        // The refused /metrics requests above.
        assert!(s["pngcast_handshakes_refused_total"] >= 2.0, "{t}");
        assert!(s["pngcast_encode_duration_seconds_count"] >= 2.0, "{t}");
        assert_eq!(
            s["pngcast_encode_duration_seconds_bucket{le=\"+Inf\"}"],
            s["pngcast_encode_duration_seconds_count"],
            "{t}"
        );
        for reason in ["overflow", "stall", "bad_input", "flood", "other"] {
            assert!(
                s.contains_key(&format!(
                    "pngcast_clients_closed_total{{reason=\"{reason}\"}}"
                )),
                "{t}: {reason}"
            );
        }
        let a = http(serve.addr, "GET", "/metrics?token=s3cret", "", b"");
        assert_eq!(a.status, 200, "{t}");
    }
}

/// Refusals decided by the request head alone: they need no body reading.
#[test]
fn ingest_heads_are_refused_before_the_body() {
    for t in TRANSPORTS {
        let serve = Serve::start(&[
            "--transport",
            t,
            "--size",
            "8x8",
            "--fps",
            "5",
            "--max-ingest-bytes",
            "1000",
        ]);
        let off = Serve::start(&["--transport", t, "--size", "8x8", "--no-ingest"]);
        let cases: &[(&str, &str, &str, u16)] = &[
            ("GET", "/api/send?event=x", "", 405),
            ("POST", "/api/send?event=x", "", 411),
            (
                "POST",
                "/api/send?event=x",
                "Transfer-Encoding: chunked\r\n",
                400,
            ),
            ("POST", "/api/send?event=x", "Content-Length: 1001\r\n", 413),
            ("POST", "/api/send?event=x", "Content-Length: 0\r\n", 400),
            ("POST", "/api/send", "Content-Length: 10\r\n", 400),
            (
                "POST",
                "/api/send?event=x",
                "Content-Length: 10\r\nContent-Type: image/jpeg\r\n",
                415,
            ),
            (
                "POST",
                "/api/send?event=x&layout=nchw",
                "Content-Length: 10\r\n",
                400,
            ),
            (
                "POST",
                "/api/send?event=x",
                "Content-Length: 10\r\nOrigin: http://evil.example\r\n",
                403,
            ),
        ];
        for (method, target, headers, want) in cases {
            let a = http(serve.addr, method, target, headers, b"");
            assert_eq!(
                a.status,
                *want,
                "{t}: {method} {target} {headers:?}: {}",
                a.text()
            );
            assert!(
                a.text().ends_with('\n') && !a.text().trim().is_empty(),
                "{t}"
            );
        }
        let a = http(serve.addr, "GET", "/api/send?event=x", "", b"");
        assert!(a.head.contains("Allow: POST, PUT"), "{t}: {}", a.head);
        let a = http(
            off.addr,
            "POST",
            "/api/send?event=x",
            "Content-Length: 10\r\n",
            b"",
        );
        assert_eq!(a.status, 404, "{t}");
        // Loopback-only without a token: another Host is refused.
        let mut s = TcpStream::connect(serve.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(
            b"POST /api/send?event=x HTTP/1.1\r\nHost: rebind.example\r\nContent-Length: 5\r\n\r\n",
        )
        .unwrap();
        let mut raw = String::new();
        let _ = s.read_to_string(&mut raw);
        assert!(raw.starts_with("HTTP/1.1 421"), "{t}: {raw}");
    }
    // With a token, the token is required.
    let serve = Serve::start(&["--size", "8x8", "--token", "s3cret"]);
    let a = post(serve.addr, "event=x", "", b"12345");
    assert_eq!(a.status, 401);
    assert!(a.head.contains("WWW-Authenticate: Bearer"));
}

#[test]
fn ingest_reaches_every_client() {
    for t in TRANSPORTS {
        // One demo frame at the start, then (at 0.01 fps) none for the test's duration.
        let serve = Serve::start(&["--transport", t, "--size", "8x8", "--fps", "0.01"]);
        let mut a = connect(&serve, "?clientId=a");
        let mut b = connect(&serve, "?clientId=b");

        // A PNG, passed through byte for byte, to both clients.
        let png = png_file(13, 7);
        let r = post(
            serve.addr,
            "event=shot",
            "Content-Type: image/png\r\n",
            &png,
        );
        assert_eq!(r.status, 202, "{t}: {}", r.text());
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            (v["kind"].as_str(), v["width"].as_u64()),
            (Some("png"), Some(13))
        );
        assert_eq!(frames_for(&mut a, "shot", 1), vec![png.clone()], "{t}");
        assert_eq!(frames_for(&mut b, "shot", 1), vec![png.clone()], "{t}");

        // PUT, as `curl -T` sends it, with Expect: 100-continue.
        let r = http(
            serve.addr,
            "PUT",
            "/api/send?event=put",
            &format!("Content-Length: {}\r\nExpect: 100-continue\r\n", png.len()),
            &png,
        );
        assert_eq!(r.status, 202, "{t}: {}", r.text());
        assert_eq!(frames_for(&mut a, "put", 1), vec![png.clone()], "{t}");

        // A float32 .npy batch of two [H=5,W=2,C=3] images: pixel-exact after the encode.
        let vals: Vec<f32> = (0..60).map(|i| i as f32 / 59.0).collect();
        let data: Vec<u8> = vals.iter().flat_map(|x| x.to_le_bytes()).collect();
        let npy = npy_bytes("<f4", "(2, 5, 2, 3)", &data);
        let r = post(serve.addr, "event=arr", "", &npy);
        assert_eq!(r.status, 202, "{t}: {}", r.text());
        let got = frames_for(&mut a, "arr", 2);
        for (i, png) in got.iter().enumerate() {
            let (w, h, px) = decode(png);
            assert_eq!((w, h), (2, 5), "{t}");
            let want: Vec<u8> = vals[i * 30..(i + 1) * 30]
                .iter()
                .map(|v| (v * 255.0) as u8)
                .collect();
            assert_eq!(px, want, "{t}: image {i}");
        }
        assert_eq!(frames_for(&mut b, "arr", 2), got, "{t}");

        // To one client only.
        let r = post(serve.addr, "event=only&clientId=b", "", &png);
        assert_eq!(r.status, 202, "{t}");
        assert_eq!(frames_for(&mut b, "only", 1), vec![png.clone()], "{t}");

        let m = samples(&http(serve.addr, "GET", "/metrics", "", b"").text());
        assert!(
            m["pngcast_ingest_requests_total{outcome=\"accepted\"}"] >= 4.0,
            "{t}"
        );
    }
}

#[test]
fn hostile_ingest_bodies_get_clear_refusals() {
    for t in TRANSPORTS {
        let serve = Serve::start(&["--transport", t, "--size", "8x8", "--fps", "5"]);
        let png = png_file(4, 4);
        let mut bad_crc = png.clone();
        let n = bad_crc.len();
        bad_crc[n - 20] ^= 1;
        let mut trailing = png.clone();
        trailing.extend_from_slice(b"xx");
        let cases: Vec<(&str, Vec<u8>, &str, u16, &str)> = vec![
            ("noise", b"hello".to_vec(), "", 415, "neither"),
            (
                "truncated PNG",
                png[..png.len() - 5].to_vec(),
                "",
                400,
                "truncated",
            ),
            ("wrong CRC", bad_crc, "", 400, "CRC"),
            ("bytes after IEND", trailing, "", 400, "IEND"),
            (
                "declared PNG, sent text",
                b"not a png".to_vec(),
                "Content-Type: image/png\r\n",
                400,
                "signature",
            ),
            (
                "int32 array",
                npy_bytes("<i4", "(2, 2)", &[0; 16]),
                "",
                422,
                "dtype",
            ),
            (
                "truncated array",
                npy_bytes("<f4", "(4, 4, 3)", &[0; 10]),
                "",
                400,
                "truncated",
            ),
            (
                "huge dims",
                npy_bytes("|u1", "(4294967296, 4294967296, 4294967296)", &[]),
                "",
                422,
                "too large",
            ),
            (
                "ambiguous shape",
                npy_bytes("|u1", "(3, 4, 4)", &[0; 48]),
                "",
                422,
                "layout",
            ),
            (
                "zero size",
                npy_bytes("|u1", "(0, 4)", &[]),
                "",
                422,
                "zero",
            ),
        ];
        for (name, body, headers, want, text) in cases {
            let a = post(serve.addr, "event=x", headers, &body);
            assert_eq!(a.status, want, "{t}: {name}: {}", a.text());
            assert!(a.text().contains(text), "{t}: {name}: {}", a.text());
        }
        // A body shorter than its Content-Length, then silence: the server gives up.
        let mut s = TcpStream::connect(serve.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(
            s,
            "POST /api/send?event=x HTTP/1.1\r\nHost: {}\r\nContent-Length: 100\r\n\r\nshort",
            serve.addr
        )
        .unwrap();
        let mut raw = String::new();
        let _ = s.read_to_string(&mut raw);
        assert!(
            raw.is_empty() || raw.starts_with("HTTP/1.1 4"),
            "{t}: {raw}"
        );
        // Still serving.
        let a = post(serve.addr, "event=x", "", &png);
        assert_eq!(a.status, 202, "{t}: {}", a.text());
    }
}
