#![forbid(unsafe_code)]
//! The bytes of protocol.md section 4, built once per frame and parsed back for clients and tests.
//!
//! Text messages use Python's `json.dumps` separators (`", "` and `": "`), so a status message is
//! byte-identical to ComfyUI's. Binary messages are a prefix plus the PNG:
//!
//! - legacy (type 1, format 2): `00000001 00000002 <PNG>`, preceded by a text announcement unless
//!   announcements are off;
//! - metadata (type 4): `00000004 <len J> <J> <PNG>`, for clients that declared
//!   `supports_preview_metadata`.
//!
//! A [`WireFrame`] holds the PNG and both prefixes behind one `Arc`: every client's queue holds a
//! clone (one reference-count increment), and a transport writes `[ws header][prefix][png]` straight
//! from the shared buffers. It never builds a per-client copy.
//!
//! # Transport contract for data frames
//! tungstenite's `Message` owns its payload, so writing a frame through it would copy the PNG once
//! per client. The transports instead use tungstenite for the handshake, for parsing inbound frames
//! and for control frames (ping, pong, close), and write outbound data frames themselves: a header
//! from [`ws_frame_header`] followed by the payload slices, with `write`/`write_vectored`, at frame
//! boundaries only. [`crate::queue::ClientQueue`] tracks those boundaries and splices control-frame
//! bytes produced by tungstenite in between whole frames.
//!
//! # Modules
//! - `comfy`: ComfyUI's JSON messages and image metadata, written with Python's separators.
//! - `frame`: [`WireFrame`], the shared per-image bytes, and its in-place rebuild for a pool.
//! - `ws`: WebSocket frame headers, opcodes and close frames for the transports.
//! - `parse`: the client side, parsing text and binary messages back.
//!
//! Every item is re-exported here: `pngcast_protocol::wire::*` is the whole API.

mod comfy;
mod frame;
mod parse;
mod ws;

pub use comfy::{
    feature_flags_reply, features_json, json_event, status_message, ImageMeta, LEGACY_PREFIX,
    TYPE_PREVIEW_IMAGE, TYPE_PREVIEW_IMAGE_WITH_METADATA,
};
pub use frame::WireFrame;
pub use parse::{client_wants_metadata, parse_binary, parse_text, BinaryMessage, TextMessage};
pub use ws::{
    close_frame, ws_frame_header, OPCODE_BINARY, OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG,
    OPCODE_TEXT,
};

/// The image metadata the wire modules' unit tests share.
#[cfg(test)]
pub(crate) fn test_meta() -> ImageMeta {
    ImageMeta {
        event: "preview".into(),
        index: 1,
        count: 3,
        width: 640,
        height: 480,
        ..Default::default()
    }
}
