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

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Arc;

use pngcast_core::error::{Error, Result};

/// The 8-byte prefix of a legacy image message: type 1 (preview image), format 2 (PNG).
pub const LEGACY_PREFIX: [u8; 8] = [0, 0, 0, 1, 0, 0, 0, 2];

/// Binary message type of a legacy preview image.
pub const TYPE_PREVIEW_IMAGE: u32 = 1;
/// Binary message type of an image with JSON metadata.
pub const TYPE_PREVIEW_IMAGE_WITH_METADATA: u32 = 4;

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

/// What an image frame is: its event name, its place in the batch, its size and the optional
/// ComfyUI node keys. Serialised into the announcement (legacy) and into `J` (type 4).
#[derive(Debug, PartialEq, Eq, Default)]
pub struct ImageMeta {
    /// Event name (`preview` by default in the CLI); also the JSON `type` of the announcement.
    pub event: String,
    /// Index of this image in its batch, from 0.
    pub index: u32,
    /// Number of images in the batch.
    pub count: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// ComfyUI `prompt_id`, when the sender sets it.
    pub prompt_id: Option<String>,
    /// ComfyUI `node_id`.
    pub node_id: Option<String>,
    /// ComfyUI `display_node_id`.
    pub display_node_id: Option<String>,
    /// ComfyUI `parent_node_id`.
    pub parent_node_id: Option<String>,
    /// ComfyUI `real_node_id`.
    pub real_node_id: Option<String>,
}

impl Clone for ImageMeta {
    fn clone(&self) -> Self {
        ImageMeta {
            event: self.event.clone(),
            index: self.index,
            count: self.count,
            width: self.width,
            height: self.height,
            prompt_id: self.prompt_id.clone(),
            node_id: self.node_id.clone(),
            display_node_id: self.display_node_id.clone(),
            parent_node_id: self.parent_node_id.clone(),
            real_node_id: self.real_node_id.clone(),
        }
    }

    /// Copies `source` field by field, reusing this value's string buffers: no allocation when
    /// they are already large enough (how a pooled frame takes its metadata).
    fn clone_from(&mut self, source: &Self) {
        self.event.clone_from(&source.event);
        self.index = source.index;
        self.count = source.count;
        self.width = source.width;
        self.height = source.height;
        self.prompt_id.clone_from(&source.prompt_id);
        self.node_id.clone_from(&source.node_id);
        self.display_node_id.clone_from(&source.display_node_id);
        self.parent_node_id.clone_from(&source.parent_node_id);
        self.real_node_id.clone_from(&source.real_node_id);
    }
}

impl ImageMeta {
    fn node_keys(&self) -> [(&'static str, Option<&String>); 5] {
        [
            ("prompt_id", self.prompt_id.as_ref()),
            ("node_id", self.node_id.as_ref()),
            ("display_node_id", self.display_node_id.as_ref()),
            ("parent_node_id", self.parent_node_id.as_ref()),
            ("real_node_id", self.real_node_id.as_ref()),
        ]
    }

    /// The metadata JSON `J` of a type-4 message (Python separators, fixed key order). `node_id`
    /// and `display_node_id` are always strings there: ComfyUI's web frontend splits
    /// `display_node_id` on every type-4 frame, so a missing one (a stream that names no node)
    /// is the event name, and a missing display id is the node id (what ComfyUI itself reports
    /// for a node that is not part of a subgraph).
    pub fn metadata_json(&self) -> String {
        let mut j = Vec::with_capacity(160);
        self.write_metadata_json(&mut j);
        String::from_utf8(j).expect("JSON is UTF-8")
    }

    /// Appends `J` to `out` (no allocation beyond `out`'s growth).
    pub fn write_metadata_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"event\": ");
        write_json_str(out, &self.event);
        self.write_common(out, true);
        out.push(b'}');
    }

    /// The legacy announcement text sent right before a type-1 binary message.
    pub fn announcement(&self, png_len: usize) -> String {
        let mut a = Vec::with_capacity(192);
        self.write_announcement(png_len, &mut a);
        String::from_utf8(a).expect("JSON is UTF-8")
    }

    /// Appends the announcement to `out` (no allocation beyond `out`'s growth).
    pub fn write_announcement(&self, png_len: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"type\": ");
        write_json_str(out, &self.event);
        out.extend_from_slice(b", \"data\": {\"event\": ");
        write_json_str(out, &self.event);
        self.write_common(out, false);
        let _ = write!(out, ", \"bytes\": {png_len}}}}}");
    }

    /// The keys after `event` shared by `J` and the announcement; `node_ids` fills in
    /// `node_id` and `display_node_id` when unset (for `J`).
    fn write_common(&self, out: &mut Vec<u8>, node_ids: bool) {
        let _ = write!(
            out,
            ", \"index\": {}, \"count\": {}, \"width\": {}, \"height\": {}, \"image_type\": \"image/png\"",
            self.index, self.count, self.width, self.height
        );
        let node_id = self.node_id.as_deref().unwrap_or(&self.event);
        for (key, value) in self.node_keys() {
            let value = match (key, value) {
                (_, Some(v)) => v.as_str(),
                ("node_id", None) if node_ids => node_id,
                ("display_node_id", None) if node_ids => node_id,
                _ => continue,
            };
            let _ = write!(out, ", \"{key}\": ");
            write_json_str(out, value);
        }
    }

    fn from_json(v: &serde_json::Value) -> Result<Self> {
        let obj = v
            .as_object()
            .ok_or_else(|| Error::Wire("image metadata is not a JSON object".into()))?;
        let opt_num = |k: &str| {
            obj.get(k)
                .and_then(|x| x.as_u64())
                .and_then(|x| u32::try_from(x).ok())
        };
        let opt_str = |k: &str| obj.get(k).and_then(|x| x.as_str()).map(str::to_owned);
        Ok(ImageMeta {
            event: opt_str("event").unwrap_or_default(),
            index: opt_num("index").unwrap_or(0),
            count: opt_num("count").unwrap_or(1),
            width: opt_num("width").unwrap_or(0),
            height: opt_num("height").unwrap_or(0),
            prompt_id: opt_str("prompt_id"),
            node_id: opt_str("node_id"),
            display_node_id: opt_str("display_node_id"),
            parent_node_id: opt_str("parent_node_id"),
            real_node_id: opt_str("real_node_id"),
        })
    }
}

/// Appends `s` as a JSON string literal (quotes and escapes) to `out`, without allocating.
fn write_json_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(out, s).expect("writing a str into a Vec cannot fail");
}

/// Appends `s` as a JSON string literal (quotes and escapes) to `out`.
fn push_json_str(out: &mut String, s: &str) {
    // serde_json's escaping is the reference; writing into a String cannot fail.
    let escaped = serde_json::to_string(s).expect("serialising a str cannot fail");
    out.push_str(&escaped);
}

/// The shared body of a [`WireFrame`]. Every field is a growable buffer, so a pooled frame is
/// rebuilt in place (no allocation once the buffers have grown) when nobody holds it any more.
#[derive(Debug, Default)]
struct FrameInner {
    meta: ImageMeta,
    png: Arc<Vec<u8>>,
    /// Whether `announcement` is part of the frame (legacy announcements on).
    announce: bool,
    announcement: String,
    meta_prefix: Vec<u8>,
}

impl FrameInner {
    /// Rewrites the metadata copy, the announcement and the type-4 prefix for `meta` and the
    /// current PNG, reusing every buffer's capacity.
    fn rebuild(&mut self, meta: &ImageMeta, announce: bool) {
        self.meta.clone_from(meta);
        self.announce = announce;
        if announce {
            // Format straight into the String's own buffer; the UTF-8 check moves it back
            // without copying.
            let mut a = std::mem::take(&mut self.announcement).into_bytes();
            a.clear();
            meta.write_announcement(self.png.len(), &mut a);
            self.announcement = String::from_utf8(a).expect("JSON is UTF-8");
        }
        let p = &mut self.meta_prefix;
        p.clear();
        p.extend_from_slice(&TYPE_PREVIEW_IMAGE_WITH_METADATA.to_be_bytes());
        p.extend_from_slice(&[0; 4]);
        meta.write_metadata_json(p);
        let jlen = u32::try_from(p.len() - 8).expect("metadata JSON under 4 GiB");
        p[4..8].copy_from_slice(&jlen.to_be_bytes());
    }
}

/// One encoded image, ready for every client: the PNG, the legacy announcement and the type-4
/// prefix, all shared. `Clone` is one atomic increment; the PNG is never copied per client.
///
/// [`WireFrame::new`] costs a few small allocations (the shared header, the copy of the metadata
/// with its strings, the announcement text and the type-4 prefix) plus formatting about 300 bytes
/// of JSON; the PNG itself is taken by `Arc`. The [`crate::sender::Sender`] instead keeps a small
/// pool of frames and rebuilds one in place once every client has dropped it, so its steady state
/// allocates nothing per frame.
#[derive(Debug, Clone)]
pub struct WireFrame {
    inner: Arc<FrameInner>,
}

impl WireFrame {
    /// Builds the frame for `meta` and `png`. `announce = false` switches the legacy announcement
    /// off (exactly what ComfyUI's `SaveImageWebsocket` emits).
    pub fn new(meta: &ImageMeta, png: Arc<Vec<u8>>, announce: bool) -> WireFrame {
        // Sized for typical JSON so each text is one allocation, not a series of regrowths.
        let mut inner = FrameInner {
            png,
            announcement: String::with_capacity(if announce { 192 } else { 0 }),
            meta_prefix: Vec::with_capacity(168),
            ..FrameInner::default()
        };
        inner.rebuild(meta, announce);
        WireFrame {
            inner: Arc::new(inner),
        }
    }

    /// An empty frame for a sender's pool (no PNG, no text, not yet meant for any client), its
    /// PNG buffer reserving `png_capacity` bytes.
    pub(crate) fn pooled(png_capacity: usize) -> WireFrame {
        WireFrame {
            inner: Arc::new(FrameInner {
                png: Arc::new(Vec::with_capacity(png_capacity)),
                ..FrameInner::default()
            }),
        }
    }

    /// A new pool frame shaped like this one: its PNG buffer reserves this one's capacity and
    /// its texts are copies with some room to grow, so the first frame encoded into it later
    /// allocates nothing (unless the image or its metadata grew).
    pub(crate) fn spare_like(&self) -> WireFrame {
        /// Room for a longer PNG size or index in the texts (a few digits).
        const SLACK: usize = 32;
        let src = &self.inner;
        let mut announcement = String::with_capacity(src.announcement.len() + SLACK);
        announcement.push_str(&src.announcement);
        let mut meta_prefix = Vec::with_capacity(src.meta_prefix.len() + SLACK);
        meta_prefix.extend_from_slice(&src.meta_prefix);
        WireFrame {
            inner: Arc::new(FrameInner {
                png: Arc::new(Vec::with_capacity(src.png.capacity())),
                meta: src.meta.clone(),
                announce: src.announce,
                announcement,
                meta_prefix,
            }),
        }
    }

    /// True when this handle is the only holder of the frame and of its PNG buffer, so
    /// [`WireFrame::png_buf_mut`] and [`WireFrame::rebuild`] may change it in place.
    pub(crate) fn is_unshared(&mut self) -> bool {
        Arc::get_mut(&mut self.inner).is_some_and(|inner| Arc::get_mut(&mut inner.png).is_some())
    }

    /// The PNG buffer to encode the next image into, `None` while the frame or its PNG is shared.
    pub(crate) fn png_buf_mut(&mut self) -> Option<&mut Vec<u8>> {
        Arc::get_mut(&mut self.inner).and_then(|inner| Arc::get_mut(&mut inner.png))
    }

    /// Rewrites the metadata, announcement and type-4 prefix for `meta` and the PNG now in the
    /// buffer, without allocating once the buffers have grown. Returns false (and changes
    /// nothing) while the frame is shared.
    pub(crate) fn rebuild(&mut self, meta: &ImageMeta, announce: bool) -> bool {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => {
                inner.rebuild(meta, announce);
                true
            }
            None => false,
        }
    }

    /// The image description.
    pub fn meta(&self) -> &ImageMeta {
        &self.inner.meta
    }
    /// The encoded PNG.
    pub fn png(&self) -> &[u8] {
        &self.inner.png
    }
    /// The shared PNG buffer (the sender recycles it once every holder has dropped it).
    pub fn png_arc(&self) -> &Arc<Vec<u8>> {
        &self.inner.png
    }
    /// The legacy announcement text, `None` when announcements are off.
    pub fn announcement(&self) -> Option<&str> {
        self.inner
            .announce
            .then_some(self.inner.announcement.as_str())
    }
    /// `00000001 00000002`: the prefix of the legacy binary message.
    pub fn legacy_prefix(&self) -> &'static [u8] {
        &LEGACY_PREFIX
    }
    /// `00000004 <len J> <J>`: the prefix of the type-4 message.
    pub fn meta_prefix(&self) -> &[u8] {
        &self.inner.meta_prefix
    }
    /// The binary prefix for a client with (`true`) or without the metadata flag.
    pub fn prefix(&self, metadata: bool) -> &[u8] {
        if metadata {
            self.meta_prefix()
        } else {
            &LEGACY_PREFIX
        }
    }
    /// Length of the binary message payload (prefix + PNG) for such a client.
    pub fn binary_len(&self, metadata: bool) -> usize {
        self.prefix(metadata).len() + self.png().len()
    }
    /// The whole binary payload as one new vector: for tests and for transports that have no
    /// vectored write. Copies the PNG.
    pub fn binary_message(&self, metadata: bool) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.binary_len(metadata));
        v.extend_from_slice(self.prefix(metadata));
        v.extend_from_slice(self.png());
        v
    }
}

/// Writes the header of an unmasked server-to-client WebSocket frame with FIN set into `out` and
/// returns its length (2, 4 or 10 bytes). `opcode` is one of the `OPCODE_*` constants.
pub fn ws_frame_header(opcode: u8, payload_len: u64, out: &mut [u8; 10]) -> usize {
    out[0] = 0x80 | (opcode & 0x0f);
    if payload_len < 126 {
        out[1] = payload_len as u8;
        2
    } else if payload_len <= u64::from(u16::MAX) {
        out[1] = 126;
        out[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&payload_len.to_be_bytes());
        10
    }
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

/// The first message a client gets:
/// `{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "<sid>"}}`.
pub fn status_message(sid: &str) -> String {
    let mut s = String::with_capacity(96 + sid.len());
    s.push_str(
        r#"{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "#,
    );
    push_json_str(&mut s, sid);
    s.push_str("}}");
    s
}

/// The server's answer to a client's `feature_flags` message.
pub fn feature_flags_reply() -> String {
    format!(
        r#"{{"type": "feature_flags", "data": {}}}"#,
        features_json()
    )
}

/// The server's feature flags, as served by `GET /features`.
pub fn features_json() -> String {
    r#"{"supports_preview_metadata": true, "max_upload_size": 0}"#.to_owned()
}

/// `{"type": EVENT, "data": DATA}` as shared text.
pub fn json_event(event: &str, data: &serde_json::Value) -> Arc<str> {
    let mut s = String::with_capacity(32 + event.len());
    s.push_str("{\"type\": ");
    push_json_str(&mut s, event);
    s.push_str(", \"data\": ");
    push_py_json(&mut s, data);
    s.push('}');
    s.into()
}

/// Writes `v` as JSON with Python's `json.dumps` separators (`", "`, `": "`).
fn push_py_json(out: &mut String, v: &serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => push_json_str(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                push_py_json(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                push_json_str(out, k);
                out.push_str(": ");
                push_py_json(out, item);
            }
            out.push('}');
        }
    }
}

/// A parsed binary message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BinaryMessage<'a> {
    /// Type 1 with format 2: a PNG preview without metadata.
    Legacy {
        /// The PNG bytes (`out[8..]`).
        png: &'a [u8],
    },
    /// Type 4: metadata and a PNG.
    WithMetadata {
        /// The decoded metadata `J`.
        meta: ImageMeta,
        /// The raw JSON `J`, for keys this crate does not know.
        json: &'a str,
        /// The PNG bytes.
        png: &'a [u8],
    },
}

/// Parses a binary message. Type 1 needs format 2 (PNG); type 4 needs a length that fits and a
/// UTF-8 JSON object. Keys ComfyUI's own type-4 messages lack (`event`, `index`, `count`,
/// `width`, `height`) default to empty, 0, 1, 0, 0. Other types and formats are typed errors
/// ([`Error::Wire`]).
pub fn parse_binary(msg: &[u8]) -> Result<BinaryMessage<'_>> {
    let word = |at: usize| -> Result<u32> {
        msg.get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| {
                Error::Wire(format!(
                    "binary message of {} bytes is too short",
                    msg.len()
                ))
            })
    };
    match word(0)? {
        TYPE_PREVIEW_IMAGE => {
            let format = word(4)?;
            if format != 2 {
                return Err(Error::Wire(format!(
                    "preview image format {format} is not PNG (2)"
                )));
            }
            Ok(BinaryMessage::Legacy { png: &msg[8..] })
        }
        TYPE_PREVIEW_IMAGE_WITH_METADATA => {
            let len = word(4)? as usize;
            let end = 8usize
                .checked_add(len)
                .filter(|&e| e <= msg.len())
                .ok_or_else(|| Error::Wire(format!("metadata length {len} exceeds the message")))?;
            let json = std::str::from_utf8(&msg[8..end])
                .map_err(|_| Error::Wire("metadata is not UTF-8".into()))?;
            let value: serde_json::Value = serde_json::from_str(json)
                .map_err(|e| Error::Wire(format!("metadata is not JSON: {e}")))?;
            let meta = ImageMeta::from_json(&value)?;
            Ok(BinaryMessage::WithMetadata {
                meta,
                json,
                png: &msg[end..],
            })
        }
        other => Err(Error::Wire(format!("unknown binary message type {other}"))),
    }
}

/// A parsed text message.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TextMessage {
    /// The server's status message, with the client's id.
    Status {
        /// The `sid`, when present (ComfyUI omits it in later status updates).
        sid: Option<String>,
        /// The whole `data` object.
        data: serde_json::Value,
    },
    /// A `feature_flags` message (from either side).
    FeatureFlags {
        /// The flags object.
        data: serde_json::Value,
    },
    /// A legacy image announcement (`data` holds `image_type` and `bytes`).
    Announcement(ImageMeta),
    /// Any other event.
    Event {
        /// The `type`.
        event: String,
        /// The `data` (null when absent).
        data: serde_json::Value,
    },
}

/// Parses a text message `{"type": ..., "data": ...}`.
pub fn parse_text(text: &str) -> Result<TextMessage> {
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Error::Wire(format!("text message is not JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| Error::Wire("text message is not a JSON object".into()))?;
    let ty = obj
        .get("type")
        .and_then(|t| t.as_str())
        .ok_or_else(|| Error::Wire("text message has no string `type`".into()))?
        .to_owned();
    let data = obj.get("data").cloned().unwrap_or(serde_json::Value::Null);
    Ok(match ty.as_str() {
        "status" => TextMessage::Status {
            sid: data.get("sid").and_then(|s| s.as_str()).map(str::to_owned),
            data,
        },
        "feature_flags" => TextMessage::FeatureFlags { data },
        _ if data.get("image_type").and_then(|t| t.as_str()) == Some("image/png")
            && data.get("bytes").is_some() =>
        {
            let mut meta = ImageMeta::from_json(&data)?;
            if meta.event.is_empty() {
                meta.event = ty;
            }
            TextMessage::Announcement(meta)
        }
        _ => TextMessage::Event { event: ty, data },
    })
}

/// True when a client's first text message declares `supports_preview_metadata: true`.
/// Anything else (other messages, malformed JSON, `false`) means a legacy client.
pub fn client_wants_metadata(first_text: &str) -> bool {
    match parse_text(first_text) {
        Ok(TextMessage::FeatureFlags { data }) => {
            data.get("supports_preview_metadata")
                .and_then(|b| b.as_bool())
                == Some(true)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> ImageMeta {
        ImageMeta {
            event: "preview".into(),
            index: 1,
            count: 3,
            width: 640,
            height: 480,
            ..Default::default()
        }
    }

    #[test]
    fn status_is_comfyui_bytes() {
        assert_eq!(
            status_message("abc"),
            r#"{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "abc"}}"#
        );
        match parse_text(&status_message("a\"b")).unwrap() {
            TextMessage::Status { sid, .. } => assert_eq!(sid.as_deref(), Some("a\"b")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn feature_flags() {
        assert_eq!(
            feature_flags_reply(),
            r#"{"type": "feature_flags", "data": {"supports_preview_metadata": true, "max_upload_size": 0}}"#
        );
        assert!(client_wants_metadata(
            r#"{"type":"feature_flags","data":{"supports_preview_metadata":true}}"#
        ));
        assert!(!client_wants_metadata(
            r#"{"type":"feature_flags","data":{"supports_preview_metadata":false}}"#
        ));
        assert!(!client_wants_metadata(
            r#"{"type":"feature_flags","data":{}}"#
        ));
        assert!(!client_wants_metadata(
            r#"{"type":"other","data":{"supports_preview_metadata":true}}"#
        ));
        assert!(!client_wants_metadata("not json"));
        assert!(!client_wants_metadata("[1,2]"));
    }

    #[test]
    fn legacy_frame_bytes() {
        let png = Arc::new(vec![0x89, b'P', b'N', b'G', 1, 2, 3]);
        let f = WireFrame::new(&meta(), png.clone(), true);
        assert_eq!(
            f.announcement().unwrap(),
            r#"{"type": "preview", "data": {"event": "preview", "index": 1, "count": 3, "width": 640, "height": 480, "image_type": "image/png", "bytes": 7}}"#
        );
        let bin = f.binary_message(false);
        assert_eq!(&bin[..8], &[0, 0, 0, 1, 0, 0, 0, 2]);
        assert_eq!(&bin[8..], &png[..]);
        assert!(Arc::ptr_eq(f.png_arc(), &png));
        assert_eq!(
            parse_binary(&bin).unwrap(),
            BinaryMessage::Legacy { png: &png[..] }
        );
        match parse_text(f.announcement().unwrap()).unwrap() {
            TextMessage::Announcement(m) => assert_eq!(m, meta()),
            other => panic!("{other:?}"),
        }
        let quiet = WireFrame::new(&meta(), png, false);
        assert!(quiet.announcement().is_none());
    }

    #[test]
    fn type4_json_always_names_string_node_ids() {
        // A stream that names no node (pngcast serve): both ids are the event name, as strings,
        // so ComfyUI's web frontend (which splits display_node_id) can read every frame.
        let j: serde_json::Value = serde_json::from_str(&meta().metadata_json()).unwrap();
        assert_eq!(j["node_id"], j["event"]);
        assert_eq!(j["display_node_id"], j["event"]);
        assert!(j["display_node_id"].is_string());
        // The legacy announcement carries only what was set.
        let a: serde_json::Value = serde_json::from_str(&meta().announcement(5)).unwrap();
        assert!(a["data"].get("node_id").is_none());
    }

    #[test]
    fn type4_frame_bytes() {
        let mut m = meta();
        m.prompt_id = Some("p-1".into());
        m.node_id = Some("9".into());
        m.event = "é\"vent".into();
        let png = Arc::new(vec![7u8; 20]);
        let f = WireFrame::new(&m, png, true);
        let bin = f.binary_message(true);
        assert_eq!(&bin[..4], &[0, 0, 0, 4]);
        let jlen = u32::from_be_bytes(bin[4..8].try_into().unwrap()) as usize;
        let j: serde_json::Value = serde_json::from_slice(&bin[8..8 + jlen]).unwrap();
        assert_eq!(j["event"], "é\"vent");
        assert_eq!(j["image_type"], "image/png");
        assert_eq!(j["width"], 640);
        assert_eq!(j["prompt_id"], "p-1");
        // The frontend needs string node ids: unset display id = node id.
        assert_eq!(j["node_id"], "9");
        assert_eq!(j["display_node_id"], "9");
        assert!(j.get("parent_node_id").is_none());
        assert_eq!(&bin[8 + jlen..], &[7u8; 20][..]);
        match parse_binary(&bin).unwrap() {
            BinaryMessage::WithMetadata { meta, png, .. } => {
                let mut want = m.clone();
                want.display_node_id = Some("9".into());
                assert_eq!(meta, want);
                assert_eq!(png, &[7u8; 20][..]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(f.binary_len(true), bin.len());
        assert_eq!(f.binary_len(false), 28);
    }

    #[test]
    fn bad_binary_is_typed_error() {
        for bad in [
            &b""[..],
            &[0, 0, 0, 1][..],
            &[0, 0, 0, 1, 0, 0, 0, 1, 9][..],
            &[0, 0, 0, 2, 0, 0, 0, 2][..],
            &[0, 0, 0, 4, 0, 0, 0, 9, b'{'][..],
            &[0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff][..],
            &[0, 0, 0, 4, 0, 0, 0, 2, 0xff, 0xfe][..],
            &[0, 0, 0, 4, 0, 0, 0, 2, b'[', b']'][..],
        ] {
            assert!(matches!(parse_binary(bad), Err(Error::Wire(_))), "{bad:?}");
        }
    }

    #[test]
    fn comfyui_type4_without_our_keys() {
        let j = br#"{"image_type": "image/png", "display_node_id": "9", "prompt_id": "p"}"#;
        let mut msg = vec![0, 0, 0, 4];
        msg.extend_from_slice(&(j.len() as u32).to_be_bytes());
        msg.extend_from_slice(j);
        msg.extend_from_slice(b"PNG");
        match parse_binary(&msg).unwrap() {
            BinaryMessage::WithMetadata { meta, png, .. } => {
                assert_eq!(meta.display_node_id.as_deref(), Some("9"));
                assert_eq!((meta.event.as_str(), meta.index, meta.count), ("", 0, 1));
                assert_eq!(png, b"PNG");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_text_is_typed_error() {
        for bad in ["", "{", "[]", "{\"data\":1}", "{\"type\":3}"] {
            assert!(matches!(parse_text(bad), Err(Error::Wire(_))), "{bad:?}");
        }
        match parse_text(r#"{"type":"progress","data":{"value":3}}"#).unwrap() {
            TextMessage::Event { event, data } => {
                assert_eq!(event, "progress");
                assert_eq!(data["value"], 3);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn random_messages_never_panic() {
        let f = WireFrame::new(&meta(), Arc::new(vec![1, 2, 3]), true);
        let seeds = [
            f.binary_message(true),
            f.binary_message(false),
            f.announcement().unwrap().as_bytes().to_vec(),
        ];
        let mut rng = fastrand::Rng::with_seed(5);
        for round in 0..20_000 {
            let mut m = seeds[round % 3].clone();
            for _ in 0..rng.usize(1..4) {
                let i = rng.usize(..m.len());
                m[i] = rng.u8(..);
            }
            m.truncate(rng.usize(0..=m.len()));
            let _ = parse_binary(&m);
            if let Ok(t) = std::str::from_utf8(&m) {
                let _ = parse_text(t);
                let _ = client_wants_metadata(t);
            }
        }
    }

    #[test]
    fn json_event_python_style() {
        let v = serde_json::json!({"a": [1, 2], "b": {"c": "x"}});
        assert_eq!(
            &*json_event("ev", &v),
            r#"{"type": "ev", "data": {"a": [1, 2], "b": {"c": "x"}}}"#
        );
        match parse_text(&json_event("ev", &v)).unwrap() {
            TextMessage::Event { event, data } => {
                assert_eq!(event, "ev");
                assert_eq!(data, v);
            }
            other => panic!("{other:?}"),
        }
    }

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
        let c = close_frame(1001, "going away");
        assert_eq!(&c[..4], &[0x88, 12, 0x03, 0xe9]);
        let long = close_frame(1000, &"é".repeat(100));
        assert!(long.len() - 2 <= 125);
        assert!(std::str::from_utf8(&long[4..]).is_ok());
    }
}
