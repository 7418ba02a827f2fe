//! Hostile input against both transports: the table in `hostile/mod.rs`, one test per row and
//! transport. A healthy `Reliable` client receives every frame sent during each attack.

#[path = "suite/mod.rs"]
mod suite;

#[path = "hostile/mod.rs"]
mod hostile;

macro_rules! per_transport {
    ($b:ty) => {
        crate::hostile_suite!(
            $b,
            binary_garbage,
            tls_client_hello,
            request_line_without_target,
            request_line_bad_version,
            request_line_nul_in_method,
            header_without_colon,
            header_value_not_utf8,
            headers_over_size_limit,
            too_many_headers,
            silent_past_handshake_timeout,
            slowloris_past_handshake_timeout,
            unknown_path_404,
            path_traversal_404,
            post_405,
            put_upgrade_405,
            missing_websocket_key_400,
            malformed_websocket_key_400,
            missing_websocket_version_400,
            wrong_websocket_version_400,
            missing_upgrade_header_400,
            client_id_too_long_400,
            client_id_control_chars_400,
            foreign_origin_403,
            dns_rebinding_upgrade_421,
            dns_rebinding_viewer_421,
            repeated_host_400,
            upgrade_with_body_400,
            null_origin_403,
            origin_with_path_trick_403,
            missing_token_401,
            wrong_token_401,
            wrong_bearer_401,
            over_client_limit_503,
            unmasked_frame_1002,
            invalid_utf8_text_1007,
            invalid_utf8_across_fragments_1007,
            oversized_message_1009,
            huge_declared_length_1009,
            fragmented_flood_1009,
            empty_fragment_flood_stays_bounded,
            control_frame_over_125_bytes_1002,
            fragmented_control_frame_1002,
            reserved_bits_1002,
            reserved_opcode_1002,
            continuation_without_start_1002,
            new_message_inside_fragmented_one_1002,
            binary_message_1003,
            close_with_invalid_code_1002,
            close_with_one_byte_payload_1002,
            ping_flood_answered,
            frames_pipelined_behind_upgrade,
            half_close_after_upgrade_101,
        );
    };
}

mod mio {
    per_transport!(super::hostile::backends::Mio);
}

mod blocking {
    per_transport!(super::hostile::backends::Blocking);
}

/// Security defaults (protocol.md section 6), checked on both transports' `bind`.
mod security_defaults {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    use pngcast_protocol::http::ServerConfig;

    use crate::hostile::upgrade;

    fn beyond_loopback() -> ServerConfig {
        ServerConfig::default().addr("0.0.0.0:0".parse().unwrap())
    }

    #[test]
    fn loopback_by_default_and_no_token_beyond_it() {
        let d = ServerConfig::default();
        assert!(d.addr.ip().is_loopback(), "{}", d.addr);
        assert!(d.token.is_none() && !d.insecure && d.allowed_origins.is_empty());
        assert!(d.validate().is_ok());
        for addr in ["0.0.0.0:0", "[::]:0", "192.0.2.1:0", "[::ffff:127.0.0.1]:0"] {
            let c = ServerConfig::default().addr(addr.parse().unwrap());
            assert!(
                c.validate().is_err(),
                "{addr} without a token must be refused"
            );
            assert!(c.clone().token(Some("t".into())).validate().is_ok());
            assert!(c.insecure(true).validate().is_ok());
        }
        assert!(ServerConfig::default()
            .addr("[::1]:0".parse().unwrap())
            .validate()
            .is_ok());
        // Both transports refuse to bind it.
        assert!(pngcast_mio::Server::bind(beyond_loopback()).is_err());
        assert!(pngcast_blocking::Server::bind(beyond_loopback()).is_err());
        // An empty or invisible token is refused too.
        for bad in ["", "a b", "tok\n"] {
            assert!(beyond_loopback()
                .token(Some(bad.into()))
                .validate()
                .is_err());
        }
    }

    #[test]
    fn no_permessage_deflate() {
        let mio =
            pngcast_mio::Server::bind(ServerConfig::default().addr("127.0.0.1:0".parse().unwrap()))
                .unwrap();
        let blocking = pngcast_blocking::Server::bind(
            ServerConfig::default().addr("127.0.0.1:0".parse().unwrap()),
        )
        .unwrap();
        for addr in [mio.local_addr(), blocking.local_addr()] {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(&upgrade(
                "/ws",
                "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
                "",
            ))
            .unwrap();
            s.set_read_timeout(Some(crate::hostile::GUARD)).unwrap();
            let mut answer = Vec::new();
            let mut byte = [0u8; 1];
            while !answer.ends_with(b"\r\n\r\n") {
                assert_eq!(s.read(&mut byte).unwrap(), 1, "connection ended");
                answer.push(byte[0]);
            }
            let text = String::from_utf8_lossy(&answer);
            let head = &text[..text.find("\r\n\r\n").unwrap()];
            assert!(head.starts_with("HTTP/1.1 101"), "{head}");
            assert!(
                !head
                    .to_ascii_lowercase()
                    .contains("sec-websocket-extensions"),
                "{head}"
            );
        }
    }
}
