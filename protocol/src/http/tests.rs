//! Routing, parsing and response tests.

use super::*;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn req(s: &str) -> RequestHead {
    let (h, n) = RequestHead::parse(s.as_bytes()).unwrap().unwrap();
    assert_eq!(n, s.len());
    h
}

fn upgrade(target: &str, extra: &str) -> RequestHead {
    req(&format!(
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1:8188\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n{extra}\r\n"
    ))
}

fn status(r: Route) -> u16 {
    match r {
        Route::Refuse { status, .. } => status,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn parse_incremental_and_limits() {
    let full = b"GET /ws?clientId=a%20b HTTP/1.1\r\nHost: x\r\n\r\nrest";
    for cut in 0..full.len() - 4 {
        assert_eq!(RequestHead::parse(&full[..cut]).unwrap(), None, "cut {cut}");
    }
    let (h, n) = RequestHead::parse(full).unwrap().unwrap();
    assert_eq!(n, full.len() - 4);
    assert_eq!(h.path(), "/ws");
    assert_eq!(h.query("clientId").as_deref(), Some("a b"));
    assert_eq!(h.header("HOST"), Some("x"));
    let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(400));
    assert_eq!(
        RequestHead::parse_with_limit(big.as_bytes(), 300),
        Err(HttpError::TooLarge { limit: 300 })
    );
    let done = format!("{big}\r\n");
    assert_eq!(
        RequestHead::parse_with_limit(done.as_bytes(), 300)
            .unwrap_err()
            .status(),
        431
    );
    assert_eq!(
        RequestHead::parse(b"\x16\x03\x01\x02\x00garbage\r\n\r\n")
            .unwrap_err()
            .status(),
        400
    );
    assert!(RequestHead::parse(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n").is_err());
    let many: String = (0..70).map(|i| format!("H{i}: v\r\n")).collect();
    assert!(matches!(
        RequestHead::parse(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()),
        Err(HttpError::Malformed(_))
    ));
    assert!(RequestHead::parse(b"GET / HTTP/1.1\r\nX: \xff\r\n\r\n").is_err());
}

#[test]
fn routes_plain_http() {
    let c = ServerConfig::default();
    assert_eq!(
        route(&req("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"), &c, 0),
        Route::Viewer
    );
    assert_eq!(
        route(&req("GET /features HTTP/1.1\r\n\r\n"), &c, 0),
        Route::Features
    );
    assert_eq!(
        route(&req("GET /?x=1 HTTP/1.0\r\n\r\n"), &c, 0),
        Route::Viewer
    );
    assert_eq!(
        status(route(&req("GET /nope HTTP/1.1\r\n\r\n"), &c, 0)),
        404
    );
    assert_eq!(status(route(&req("POST / HTTP/1.1\r\n\r\n"), &c, 0)), 405);
    assert_eq!(status(route(&req("PUT /ws HTTP/1.1\r\n\r\n"), &c, 0)), 405);
    assert_eq!(
        status(route(
            &req("GET /ws HTTP/1.1\r\nHost: localhost\r\n\r\n"),
            &c,
            0
        )),
        400
    );
}

#[test]
fn routes_upgrades() {
    let c = ServerConfig::default();
    assert_eq!(
        route(&upgrade("/ws?clientId=abc", ""), &c, 0),
        Route::Upgrade {
            client_id: "abc".into()
        }
    );
    assert_eq!(
        route(&upgrade("/api/ws?foo=1&clientId=x%2Fy", ""), &c, 0),
        Route::Upgrade {
            client_id: "x/y".into()
        }
    );
    for target in ["/ws", "/ws?clientId="] {
        match route(&upgrade(target, ""), &c, 0) {
            Route::Upgrade { client_id } => {
                assert_eq!(client_id.len(), 32);
                assert!(client_id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            }
            other => panic!("{other:?}"),
        }
    }
    assert_ne!(generate_client_id(), generate_client_id());
    assert_eq!(
        status(route(
            &upgrade(&format!("/ws?clientId={}", "a".repeat(200)), ""),
            &c,
            0
        )),
        400
    );
    assert_eq!(
        status(route(&upgrade("/ws?clientId=a%0Ab", ""), &c, 0)),
        400
    );
    // Capacity.
    assert_eq!(status(route(&upgrade("/ws", ""), &c, 256)), 503);
    assert!(matches!(
        route(&upgrade("/ws", ""), &c, 255),
        Route::Upgrade { .. }
    ));
}

#[test]
fn bad_upgrade_headers() {
    let c = ServerConfig::default();
    let base = |skip: &str, replace: (&str, &str)| {
        let lines = [
            "Host: localhost",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Version: 13",
            &format!("Sec-WebSocket-Key: {KEY}"),
        ];
        let mut s = String::from("GET /ws HTTP/1.1\r\n");
        for l in lines {
            if l.starts_with(skip) && !skip.is_empty() {
                continue;
            }
            let l = if l.starts_with(replace.0) && !replace.0.is_empty() {
                replace.1.to_owned()
            } else {
                l.to_owned()
            };
            s.push_str(&l);
            s.push_str("\r\n");
        }
        s.push_str("\r\n");
        req(&s)
    };
    assert!(matches!(
        route(&base("", ("", "")), &c, 0),
        Route::Upgrade { .. }
    ));
    for skip in [
        "Host",
        "Upgrade",
        "Connection",
        "Sec-WebSocket-Version",
        "Sec-WebSocket-Key",
    ] {
        assert_eq!(
            status(route(&base(skip, ("", "")), &c, 0)),
            400,
            "without {skip}"
        );
    }
    for bad in [
        ("Upgrade", "Upgrade: h2c"),
        ("Connection", "Connection: keep-alive"),
        ("Sec-WebSocket-Version", "Sec-WebSocket-Version: 8"),
        ("Sec-WebSocket-Key", "Sec-WebSocket-Key: short"),
        (
            "Sec-WebSocket-Key",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j!!==",
        ),
    ] {
        assert_eq!(status(route(&base("", bad), &c, 0)), 400, "{bad:?}");
    }
    assert_eq!(
        status(route(&req(&format!("GET /ws HTTP/1.0\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n")), &c, 0)),
        400
    );
}

#[test]
fn origin_check() {
    let c = ServerConfig::default();
    assert!(matches!(
        route(&upgrade("/ws", "Origin: http://127.0.0.1:8188\r\n"), &c, 0),
        Route::Upgrade { .. }
    ));
    assert!(matches!(
        route(
            &upgrade("/ws", "Origin: https://127.0.0.1:8188/\r\n"),
            &c,
            0
        ),
        Route::Upgrade { .. }
    ));
    assert_eq!(
        status(route(
            &upgrade("/ws", "Origin: http://evil.example\r\n"),
            &c,
            0
        )),
        403
    );
    assert_eq!(
        status(route(&upgrade("/ws", "Origin: null\r\n"), &c, 0)),
        403
    );
    assert_eq!(
        status(route(
            &upgrade("/ws", "Origin: http://127.0.0.1:8189\r\n"),
            &c,
            0
        )),
        403
    );
    let c2 = c
        .clone()
        .allowed_origins(vec!["http://evil.example".into()]);
    assert!(matches!(
        route(&upgrade("/ws", "Origin: http://evil.example\r\n"), &c2, 0),
        Route::Upgrade { .. }
    ));
}

#[test]
fn token_check() {
    let c = ServerConfig::default().token(Some("s3cret".into()));
    assert_eq!(status(route(&upgrade("/ws", ""), &c, 0)), 401);
    assert_eq!(status(route(&upgrade("/ws?token=wrong", ""), &c, 0)), 401);
    assert_eq!(
        status(route(
            &upgrade("/ws", "Authorization: Bearer nope\r\n"),
            &c,
            0
        )),
        401
    );
    assert_eq!(status(route(&upgrade("/ws?token=s3cre", ""), &c, 0)), 401);
    assert!(matches!(
        route(&upgrade("/ws?token=s3cret", ""), &c, 0),
        Route::Upgrade { .. }
    ));
    assert!(matches!(
        route(&upgrade("/ws", "Authorization: Bearer s3cret\r\n"), &c, 0),
        Route::Upgrade { .. }
    ));
    // Token is checked before anything else on an upgrade path.
    assert_eq!(status(route(&req("GET /ws HTTP/1.1\r\n\r\n"), &c, 0)), 401);
    // The page and the flags stay public.
    assert_eq!(route(&req("GET / HTTP/1.1\r\n\r\n"), &c, 0), Route::Viewer);
}

#[test]
fn responses() {
    let r = String::from_utf8(switching_protocols(&upgrade("/ws", ""))).unwrap();
    // RFC 6455's example key and answer.
    assert!(
        r.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{r}"
    );
    assert!(r.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    assert!(r.ends_with("\r\n\r\n"));
    assert!(!r.to_ascii_lowercase().contains("extensions"));
    let f = String::from_utf8(features_response()).unwrap();
    assert!(f.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(f.contains("Content-Type: application/json\r\n"));
    let body = f.split("\r\n\r\n").nth(1).unwrap();
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["supports_preview_metadata"], true);
    assert!(f.contains(&format!("Content-Length: {}\r\n", body.len())));
    let v = String::from_utf8(viewer_response()).unwrap();
    assert!(v.contains("text/html") && v.contains("<html"));
    for s in [400, 401, 403, 404, 405, 431, 503] {
        let r = String::from_utf8(refusal_response(s, "why")).unwrap();
        assert!(r.starts_with(&format!("HTTP/1.1 {s} ")), "{r}");
        assert!(r.ends_with("\r\n\r\nwhy\n"));
    }
    assert!(String::from_utf8(refusal_response(405, "x"))
        .unwrap()
        .contains("Allow: GET\r\n"));
}

#[test]
fn random_bytes_never_panic() {
    // Mutations of a valid upgrade and plain noise: parse and route either answer or refuse.
    let valid = format!(
        "GET /ws?clientId=a&token=t HTTP/1.1\r\nHost: h\r\nOrigin: http://h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
    )
    .into_bytes();
    let config = ServerConfig::default().token(Some("t".into()));
    let mut rng = fastrand::Rng::with_seed(11);
    for round in 0..20_000 {
        let mut buf = if round % 4 == 0 {
            (0..rng.usize(0..300))
                .map(|_| rng.u8(..))
                .collect::<Vec<u8>>()
        } else {
            valid.clone()
        };
        for _ in 0..rng.usize(0..4) {
            if buf.is_empty() {
                break;
            }
            let i = rng.usize(..buf.len());
            match rng.u8(0..3) {
                0 => buf[i] = rng.u8(..),
                1 => {
                    buf.remove(i);
                }
                _ => buf.insert(i, b"%\r\n:=&?\xff "[rng.usize(0..9)]),
            }
        }
        let cut = rng.usize(0..=buf.len());
        if let Ok(Some((head, n))) = RequestHead::parse_with_limit(&buf[..cut], 512) {
            assert!(n <= cut);
            let _ = route(&head, &config, rng.usize(0..300));
            let _ = head.query("clientId");
        }
    }
}

#[test]
fn config_validation() {
    let c = ServerConfig::default();
    c.validate().unwrap();
    let public: SocketAddr = "0.0.0.0:8188".parse().unwrap();
    assert!(c.clone().addr(public).validate().is_err());
    c.clone()
        .addr(public)
        .token(Some("t".into()))
        .validate()
        .unwrap();
    c.clone().addr(public).insecure(true).validate().unwrap();
    assert!(c.clone().queue_bytes(0).validate().is_err());
    assert!(c.clone().max_clients(0).validate().is_err());
    assert!(c.clone().stall_timeout(Duration::ZERO).validate().is_err());
    assert!(c.clone().token(Some(String::new())).validate().is_err());
    assert!(c.clone().token(Some("a b".into())).validate().is_err());
    assert!(c.clone().max_handshake_bytes(10).validate().is_err());
    assert!(c.clone().max_message_bytes(0).validate().is_err());
    // A zero send buffer is refused; None (the kernel's) and a size are fine.
    assert!(c.clone().loopback_send_buffer(Some(0)).validate().is_err());
    c.clone().loopback_send_buffer(None).validate().unwrap();
    c.clone()
        .loopback_send_buffer(Some(64 << 10))
        .validate()
        .unwrap();
    "::1:0".parse::<SocketAddr>().err();
    c.clone()
        .addr("[::1]:0".parse().unwrap())
        .validate()
        .unwrap();
}

fn head_with(host: &str, extra: &str) -> RequestHead {
    let raw = format!(
        "GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    );
    RequestHead::parse(raw.as_bytes()).unwrap().unwrap().0
}

#[test]
fn dns_rebinding_hosts_are_refused_without_a_token() {
    let c = ServerConfig::default();
    for ok in [
        "127.0.0.1",
        "127.0.0.1:8188",
        "localhost",
        "LOCALHOST:1",
        "localhost.",
        "app.localhost:9",
        "[::1]",
        "[::1]:8188",
        "127.5.6.7:80",
    ] {
        assert!(
            matches!(route(&head_with(ok, ""), &c, 0), Route::Upgrade { .. }),
            "{ok}"
        );
    }
    for bad in [
        "rebind.example",
        "rebind.example:8188",
        "127.0.0.1.rebind.example",
        "localhost.evil.example",
        "192.168.1.9:8188",
        "[::1",
        "[::1]x",
        "host:port",
        "",
    ] {
        let r = route(
            &head_with(bad, "Origin: http://rebind.example:8188\r\n"),
            &c,
            0,
        );
        assert!(
            matches!(
                r,
                Route::Refuse { status: 421, .. } | Route::Refuse { status: 400, .. }
            ),
            "{bad}: {r:?}"
        );
    }
    // The viewer too, before any route runs.
    let viewer = RequestHead::parse(b"GET / HTTP/1.1\r\nHost: rebind.example\r\n\r\n")
        .unwrap()
        .unwrap()
        .0;
    assert!(matches!(
        route(&viewer, &c, 0),
        Route::Refuse { status: 421, .. }
    ));
    // Allowed names, and any IP literal when bound to all interfaces.
    let c2 = ServerConfig::default().allowed_hosts(vec!["studio.lan:8188".into()]);
    assert!(matches!(
        route(&head_with("studio.lan", ""), &c2, 0),
        Route::Upgrade { .. }
    ));
    let c3 = ServerConfig::default()
        .addr("0.0.0.0:8188".parse().unwrap())
        .insecure(true);
    assert!(matches!(
        route(&head_with("10.1.2.3:8188", ""), &c3, 0),
        Route::Upgrade { .. }
    ));
    assert!(matches!(
        route(&head_with("evil.example", ""), &c3, 0),
        Route::Refuse { status: 421, .. }
    ));
    // With a token the token is the guard: any Host.
    let c4 = ServerConfig::default().token(Some("t".into()));
    assert!(matches!(
        route(
            &head_with("rebind.example", "Authorization: Bearer t\r\n"),
            &c4,
            0
        ),
        Route::Upgrade { .. }
    ));
}

#[test]
fn strict_framing_and_bearer_scheme() {
    let c = ServerConfig::default();
    let two_hosts = head_with("127.0.0.1", "Host: evil.example\r\n");
    assert!(matches!(
        route(&two_hosts, &c, 0),
        Route::Refuse { status: 400, .. }
    ));
    let body = head_with("127.0.0.1", "Content-Length: 5\r\n");
    assert!(matches!(
        route(&body, &c, 0),
        Route::Refuse { status: 400, .. }
    ));
    let chunked = head_with("127.0.0.1", "Transfer-Encoding: chunked\r\n");
    assert!(matches!(
        route(&chunked, &c, 0),
        Route::Refuse { status: 400, .. }
    ));
    let two_lengths = head_with("127.0.0.1", "Content-Length: 0\r\nContent-Length: 0\r\n");
    assert!(matches!(
        route(&two_lengths, &c, 0),
        Route::Refuse { status: 400, .. }
    ));
    let zero = head_with("127.0.0.1", "Content-Length: 0\r\n");
    assert!(matches!(route(&zero, &c, 0), Route::Upgrade { .. }));
    let t = ServerConfig::default().token(Some("s3cret".into()));
    for auth in ["Bearer s3cret", "BEARER s3cret", "bearer  s3cret"] {
        let h = head_with("x", &format!("Authorization: {auth}\r\n"));
        assert!(matches!(route(&h, &t, 0), Route::Upgrade { .. }), "{auth}");
    }
    let empty_query = RequestHead::parse(
        b"GET /ws?token= HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Authorization: Bearer s3cret\r\n\r\n",
    )
    .unwrap()
    .unwrap()
    .0;
    assert!(matches!(route(&empty_query, &t, 0), Route::Upgrade { .. }));
    let basic = head_with("x", "Authorization: Basic s3cret\r\n");
    assert!(matches!(
        route(&basic, &t, 0),
        Route::Refuse { status: 401, .. }
    ));
}

/// An ingest handler that takes everything (routing never calls it).
struct Take;
impl IngestHandler for Take {
    fn submit(
        &self,
        _: crate::ingest::IngestJob,
    ) -> std::result::Result<(), crate::ingest::SubmitError> {
        Ok(())
    }
}

fn ingest_config() -> ServerConfig {
    ServerConfig::default().ingest_handler(Take)
}

fn post(method: &str, target: &str, extra: &str) -> RequestHead {
    req(&format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:8188\r\n{extra}\r\n"
    ))
}

fn ingest_route(r: Route) -> IngestRoute {
    match r {
        Route::Ingest(i) => i,
        other => panic!("expected ingest, got {other:?}"),
    }
}

#[test]
fn routes_ingest() {
    let c = ingest_config();
    let i = ingest_route(route(
        &post(
            "POST",
            "/api/send?event=shot&clientId=a%20b",
            "Content-Length: 10\r\n",
        ),
        &c,
        0,
    ));
    assert_eq!(
        i,
        IngestRoute::new("shot", 10).client_id(Some("a b".into()))
    );
    let i = ingest_route(route(
        &post(
            "PUT",
            "/api/send?event=x&layout=CHW",
            "Content-Length: 3\r\nContent-Type: image/png\r\nExpect: 100-continue\r\n",
        ),
        &c,
        0,
    ));
    assert_eq!(
        (i.kind, i.layout, i.expect_continue, i.client_id),
        (BodyKind::Png, Some(Layout::Chw), true, None)
    );
    let i = ingest_route(route(
        &post(
            "POST",
            "/api/send?event=x",
            "Content-Length: 3\r\nContent-Type: application/x-npy\r\n",
        ),
        &c,
        0,
    ));
    assert_eq!(i.kind, BodyKind::Npy);
    // Exactly at the limit, and one past it.
    let c2 = ingest_config().max_ingest_bytes(100);
    assert!(matches!(
        route(
            &post("POST", "/api/send?event=x", "Content-Length: 100\r\n"),
            &c2,
            0
        ),
        Route::Ingest(_)
    ));
    let table: &[(&str, &str, &str, u16)] = &[
        ("GET", "/api/send?event=x", "", 405),
        ("DELETE", "/api/send?event=x", "Content-Length: 1\r\n", 405),
        ("POST", "/api/send?event=x", "", 411),
        (
            "POST",
            "/api/send?event=x",
            "Transfer-Encoding: chunked\r\n",
            400,
        ),
        (
            "POST",
            "/api/send?event=x",
            "Content-Length: 1\r\nTransfer-Encoding: chunked\r\n",
            400,
        ),
        ("POST", "/api/send?event=x", "Content-Length: abc\r\n", 400),
        ("POST", "/api/send?event=x", "Content-Length: +5\r\n", 400),
        ("POST", "/api/send?event=x", "Content-Length: -5\r\n", 400),
        (
            "POST",
            "/api/send?event=x",
            "Content-Length: 99999999999999999999999\r\n",
            400,
        ),
        ("POST", "/api/send?event=x", "Content-Length: 0\r\n", 400),
        (
            "POST",
            "/api/send?event=x",
            "Content-Length: 1\r\nContent-Length: 1\r\n",
            400,
        ),
        ("POST", "/api/send?event=x", "Content-Length: 101\r\n", 413),
        (
            "POST",
            "/api/send?event=x",
            "Content-Length: 18446744073709551615\r\n",
            413,
        ),
        ("POST", "/api/send", "Content-Length: 1\r\n", 400),
        ("POST", "/api/send?event=", "Content-Length: 1\r\n", 400),
        (
            "POST",
            "/api/send?event=a%0Ab",
            "Content-Length: 1\r\n",
            400,
        ),
        (
            "POST",
            "/api/send?event=x&clientId=a%00",
            "Content-Length: 1\r\n",
            400,
        ),
        (
            "POST",
            "/api/send?event=x&layout=nchw",
            "Content-Length: 1\r\n",
            400,
        ),
        (
            "POST",
            "/api/send?event=x",
            "Content-Length: 1\r\nContent-Type: image/jpeg\r\n",
            415,
        ),
        (
            "POST",
            "/api/send?event=x",
            "Content-Length: 1\r\nContent-Type: text/plain\r\n",
            415,
        ),
        (
            "POST",
            "/api/send?event=x",
            "Content-Length: 1\r\nExpect: 200-ok\r\n",
            417,
        ),
        (
            "POST",
            "/api/send?event=x",
            "Content-Length: 1\r\nOrigin: http://evil.example\r\n",
            403,
        ),
        ("POST", "/api/sendx?event=x", "Content-Length: 1\r\n", 400),
        ("POST", "/api/send/?event=x", "Content-Length: 1\r\n", 400),
    ];
    for (method, target, extra, want) in table {
        let r = route(&post(method, target, extra), &c2, 0);
        assert_eq!(status(r), *want, "{method} {target} {extra:?}");
    }
    let long = format!("/api/send?event={}", "e".repeat(MAX_EVENT_LEN + 1));
    assert_eq!(
        status(route(&post("POST", &long, "Content-Length: 1\r\n"), &c, 0)),
        400
    );
    let long = format!(
        "/api/send?event=e&clientId={}",
        "c".repeat(MAX_CLIENT_ID_LEN + 1)
    );
    assert_eq!(
        status(route(&post("POST", &long, "Content-Length: 1\r\n"), &c, 0)),
        400
    );
    // The 405 names the methods the path takes.
    let r = String::from_utf8(refusal_response(405, INGEST_METHODS)).unwrap();
    assert!(r.contains("Allow: POST, PUT\r\n"), "{r}");
    // A browser page on its own origin may post (the Origin matches the Host).
    assert!(matches!(
        route(
            &post(
                "POST",
                "/api/send?event=x",
                "Content-Length: 1\r\nOrigin: http://127.0.0.1:8188\r\n"
            ),
            &c,
            0
        ),
        Route::Ingest(_)
    ));
    // Without a handler the path does not exist.
    assert_eq!(
        status(route(
            &post("POST", "/api/send?event=x", "Content-Length: 1\r\n"),
            &ServerConfig::default(),
            0
        )),
        404
    );
    // Other paths still refuse bodies.
    assert_eq!(
        status(route(
            &post("POST", "/features", "Content-Length: 1\r\n"),
            &c,
            0
        )),
        400
    );
}

#[test]
fn ingest_auth_and_hosts() {
    let c = ingest_config();
    let evil =
        req("POST /api/send?event=x HTTP/1.1\r\nHost: rebind.example\r\nContent-Length: 1\r\n\r\n");
    assert_eq!(status(route(&evil, &c, 0)), 421);
    let no_host = req("POST /api/send?event=x HTTP/1.0\r\nContent-Length: 1\r\n\r\n");
    assert!(matches!(route(&no_host, &c, 0), Route::Ingest(_)));
    let t = ingest_config().token(Some("s3cret".into()));
    for (target, extra, want) in [
        ("/api/send?event=x", "", 401),
        ("/api/send?event=x&token=wrong", "", 401),
        ("/api/send?event=x", "Authorization: Bearer nope\r\n", 401),
        ("/api/send?event=x", "Authorization: Basic s3cret\r\n", 401),
    ] {
        let h = req(&format!(
            "POST {target} HTTP/1.1\r\nHost: any.example\r\nContent-Length: 1\r\n{extra}\r\n"
        ));
        assert_eq!(status(route(&h, &t, 0)), want, "{target} {extra}");
    }
    // Unauthorised callers learn nothing about limits: 401 before 413 or 411.
    let h =
        req("POST /api/send?event=x HTTP/1.1\r\nHost: h\r\nContent-Length: 999999999999\r\n\r\n");
    assert_eq!(status(route(&h, &t, 0)), 401);
    let h = req("POST /api/send HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(status(route(&h, &t, 0)), 401);
    for ok in [
        "POST /api/send?event=x&token=s3cret HTTP/1.1\r\nHost: any.example\r\nContent-Length: 1\r\n\r\n",
        "POST /api/send?event=x HTTP/1.1\r\nHost: any.example\r\nAuthorization: Bearer s3cret\r\nContent-Length: 1\r\n\r\n",
    ] {
        let i = ingest_route(route(&req(ok), &t, 0));
        assert_eq!(i.event, "x");
    }
}

#[test]
fn routes_metrics() {
    let c = ServerConfig::default();
    assert_eq!(
        route(
            &req("GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n"),
            &c,
            0
        ),
        Route::Metrics
    );
    assert_eq!(
        route(&req("GET /metrics?x=1 HTTP/1.0\r\n\r\n"), &c, 0),
        Route::Metrics
    );
    assert_eq!(
        status(route(&req("POST /metrics HTTP/1.1\r\n\r\n"), &c, 0)),
        405
    );
    assert_eq!(
        status(route(&req("GET /metrics/ HTTP/1.1\r\n\r\n"), &c, 0)),
        404
    );
    assert_eq!(
        status(route(
            &req("GET /metrics HTTP/1.1\r\nHost: rebind.example\r\n\r\n"),
            &c,
            0
        )),
        421
    );
    assert_eq!(
        status(route(
            &req("GET /metrics HTTP/1.1\r\nContent-Length: 4\r\n\r\n"),
            &c,
            0
        )),
        400
    );
    let t = ServerConfig::default().token(Some("s3cret".into()));
    assert_eq!(
        status(route(&req("GET /metrics HTTP/1.1\r\n\r\n"), &t, 0)),
        401
    );
    assert_eq!(
        status(route(&req("GET /metrics?token=no HTTP/1.1\r\n\r\n"), &t, 0)),
        401
    );
    assert_eq!(
        route(&req("GET /metrics?token=s3cret HTTP/1.1\r\n\r\n"), &t, 0),
        Route::Metrics
    );
    assert_eq!(
        route(&req("GET /metrics HTTP/1.1\r\nHost: far.example\r\nAuthorization: Bearer s3cret\r\n\r\n"), &t, 0),
        Route::Metrics
    );
    // The viewer and flags stay public with a token.
    assert_eq!(
        route(&req("GET /features HTTP/1.1\r\n\r\n"), &t, 0),
        Route::Features
    );

    let stats = SinkStats {
        clients: 3,
        frames_sent: 9,
        ..SinkStats::default()
    };
    c.metrics.encode.observe(Duration::from_millis(2));
    let r = String::from_utf8(metrics_response(&stats, &c)).unwrap();
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert!(r.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    let body = r.split_once("\r\n\r\n").unwrap().1;
    assert!(r.contains(&format!("Content-Length: {}\r\n", body.len())));
    assert!(body.contains("\npngcast_clients 3\n"));
    assert!(body.contains("\npngcast_frames_sent_total 9\n"));
    assert!(body.contains("\npngcast_encode_duration_seconds_count 1\n"));
}

#[test]
fn ingest_heads_never_panic() {
    let valid = b"POST /api/send?event=e&clientId=c&layout=hwc&token=t HTTP/1.1\r\nHost: h\r\nContent-Type: image/png\r\nExpect: 100-continue\r\nContent-Length: 12\r\n\r\n".to_vec();
    let config = ingest_config().token(Some("t".into()));
    let mut rng = fastrand::Rng::with_seed(12);
    for _ in 0..20_000 {
        let mut buf = valid.clone();
        for _ in 0..rng.usize(0..4) {
            let i = rng.usize(..buf.len());
            match rng.u8(0..3) {
                0 => buf[i] = rng.u8(..),
                1 => {
                    buf.remove(i);
                }
                _ => buf.insert(i, b"%\r\n:=&?\xff 0-"[rng.usize(0..11)]),
            }
        }
        if let Ok(Some((head, _))) = RequestHead::parse_with_limit(&buf, 512) {
            if let Route::Ingest(i) = route(&head, &config, 0) {
                assert!(i.content_length >= 1 && i.content_length <= config.max_ingest_bytes);
                assert!(!i.event.is_empty());
            }
        }
    }
}
