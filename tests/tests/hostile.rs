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
        );
    };
}

mod mio {
    per_transport!(super::hostile::backends::Mio);
}

mod blocking {
    per_transport!(super::hostile::backends::Blocking);
}
