//! WebSocket framing for the transports' own data frames: opcodes, server frame headers and
//! close frames (RFC 6455 section 5.2; close codes in protocol.md section 7).

use tungstenite::protocol::frame::coding::OpCode;
use tungstenite::protocol::frame::FrameHeader;

/// WebSocket opcode of a text frame.
pub const OPCODE_TEXT: u8 = 0x1;
/// WebSocket opcode of a binary frame.
pub const OPCODE_BINARY: u8 = 0x2;
/// WebSocket opcode of a close frame.
pub const OPCODE_CLOSE: u8 = 0x8;
/// WebSocket opcode of a ping frame.
pub const OPCODE_PING: u8 = 0x9;
/// WebSocket opcode of a pong frame.
pub const OPCODE_PONG: u8 = 0xA;

/// Writes the header of an unmasked server-to-client WebSocket frame with FIN set into `out` and
/// returns its length (2, 4 or 10 bytes). `opcode` is one of the `OPCODE_*` constants (only its
/// low four bits are used).
///
/// tungstenite's [`FrameHeader::format`] writes the bytes, into the fixed buffer through
/// `&mut [u8]`'s `Write`: no allocation, and the transports' frames and tungstenite's agree by
/// construction.
pub fn ws_frame_header(opcode: u8, payload_len: u64, out: &mut [u8; 10]) -> usize {
    let header = FrameHeader {
        is_final: true,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode: OpCode::from(opcode & 0x0f),
        mask: None,
    };
    let mut rest = &mut out[..];
    header
        .format(payload_len, &mut rest)
        .expect("an unmasked frame header is at most 10 bytes");
    let left = rest.len();
    out.len() - left
}

/// A complete unmasked close frame with `code` and a reason (truncated to fit 125 bytes).
pub fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut r = reason;
    while r.len() > 123 {
        let mut cut = 123;
        while !r.is_char_boundary(cut) {
            cut -= 1;
        }
        r = &r[..cut];
    }
    let mut hdr = [0u8; 10];
    let n = ws_frame_header(OPCODE_CLOSE, 2 + r.len() as u64, &mut hdr);
    let mut v = Vec::with_capacity(n + 2 + r.len());
    v.extend_from_slice(&hdr[..n]);
    v.extend_from_slice(&code.to_be_bytes());
    v.extend_from_slice(r.as_bytes());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_headers() {
        let mut h = [0u8; 10];
        assert_eq!(ws_frame_header(OPCODE_TEXT, 5, &mut h), 2);
        assert_eq!(&h[..2], &[0x81, 5]);
        assert_eq!(ws_frame_header(OPCODE_BINARY, 125, &mut h), 2);
        assert_eq!(&h[..2], &[0x82, 125]);
        assert_eq!(ws_frame_header(OPCODE_BINARY, 126, &mut h), 4);
        assert_eq!(&h[..4], &[0x82, 126, 0, 126]);
        assert_eq!(ws_frame_header(OPCODE_BINARY, 65535, &mut h), 4);
        assert_eq!(&h[..4], &[0x82, 126, 0xff, 0xff]);
        assert_eq!(ws_frame_header(OPCODE_BINARY, 65536, &mut h), 10);
        assert_eq!(&h[..10], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(ws_frame_header(OPCODE_PING, u64::MAX, &mut h), 10);
        assert_eq!(
            &h[..10],
            &[0x89, 127, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
        // Every opcode, reserved ones included, keeps its bits and never panics.
        for op in 0..=0xffu8 {
            assert_eq!(ws_frame_header(op, 0, &mut h), 2);
            assert_eq!(&h[..2], &[0x80 | (op & 0x0f), 0]);
        }
        let c = close_frame(1001, "going away");
        assert_eq!(&c[..4], &[0x88, 12, 0x03, 0xe9]);
        let long = close_frame(1000, &"é".repeat(100));
        assert!(long.len() - 2 <= 125);
        assert!(std::str::from_utf8(&long[4..]).is_ok());
    }
}
