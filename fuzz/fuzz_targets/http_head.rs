//! The HTTP/upgrade front end both transports share: `RequestHead::parse_with_limit` on
//! arbitrary bytes, then `route` under several configurations, then the answers it leads to.
//! Checks: no panic; a complete head never claims more bytes than it was given or than the
//! limit; every refusal is one of the documented statuses; an upgrade's clientId is bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pngcast_protocol::http::{self, RequestHead, Route, ServerConfig, MAX_CLIENT_ID_LEN};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, bytes)) = data.split_first() else {
        return;
    };
    let limit = 256 + usize::from(sel) * 64;
    let (head, used) = match RequestHead::parse_with_limit(bytes, limit) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            assert!(bytes.len() < limit);
            return;
        }
        Err(e) => {
            assert!(matches!(e.status(), 400 | 431));
            assert!(e.response().starts_with(b"HTTP/1.1 4"));
            return;
        }
    };
    assert!(used <= bytes.len() && used <= limit);
    let _ = (head.path(), head.query("clientId"), head.query("token"));
    let configs = [
        ServerConfig::default(),
        ServerConfig::default().token(Some("tok".into())),
        ServerConfig::default()
            .allowed_origins(vec!["http://a.example".into()])
            .max_clients(1),
    ];
    for (i, config) in configs.iter().enumerate() {
        match http::route(&head, config, usize::from(sel >> 6) + i) {
            Route::Upgrade { client_id } => {
                assert!(!client_id.is_empty() && client_id.len() <= MAX_CLIENT_ID_LEN);
                assert_eq!(head.method, "GET");
                let answer = http::switching_protocols(&head);
                assert!(answer.starts_with(b"HTTP/1.1 101"));
            }
            Route::Refuse { status, reason } => {
                assert!(
                    matches!(
                        status,
                        400 | 401 | 403 | 404 | 405 | 411 | 413 | 415 | 421 | 503
                    ),
                    "{status}"
                );
                let _ = http::refusal_response(status, reason);
            }
            Route::Viewer | Route::Features | Route::Metrics => assert_eq!(head.method, "GET"),
            Route::Ingest(r) => {
                assert!(matches!(head.method.as_str(), "POST" | "PUT"));
                assert!(r.content_length >= 1 && r.content_length <= config.max_ingest_bytes);
                assert!(!r.event.is_empty());
            }
        }
    }
});
