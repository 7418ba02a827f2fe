//! ComfyUI's JSON messages (protocol.md section 4): the status and feature-flag texts, the legacy
//! announcement, the type-4 metadata `J`, and [`ImageMeta`] that both describe.
//!
//! Every text is written by serde_json through [`PythonFormatter`], which gives Python's
//! `json.dumps` separators (`", "` and `": "`). Strings keep serde_json's escaping: quotes,
//! backslashes and control characters are escaped and non-ASCII text is written as UTF-8, which is
//! what the golden wire test pins. The writers append to a caller's buffer, so a pooled frame's
//! rebuild allocates nothing once its buffers have grown.

use std::io;
use std::sync::Arc;

use serde::ser::{Serialize, SerializeMap, Serializer};

/// The 8-byte prefix of a legacy image message: type 1 (preview image), format 2 (PNG).
pub const LEGACY_PREFIX: [u8; 8] = [0, 0, 0, 1, 0, 0, 0, 2];

/// Binary message type of a legacy preview image.
pub const TYPE_PREVIEW_IMAGE: u32 = 1;
/// Binary message type of an image with JSON metadata.
pub const TYPE_PREVIEW_IMAGE_WITH_METADATA: u32 = 4;

/// A serde_json [`Formatter`](serde_json::ser::Formatter) with the separators of Python's
/// `json.dumps` defaults: `", "` between items and `": "` after keys, no other whitespace.
/// Everything else (string escapes, number forms) is serde_json's compact formatting.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    /// The same `", "` between members as between array values.
    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.begin_array_value(writer, first)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }
}

/// Appends `value` to `out` as Python-style JSON; nothing is allocated beyond `out`'s growth.
pub(crate) fn write_py_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let mut ser = serde_json::Serializer::with_formatter(out, PythonFormatter);
    value
        .serialize(&mut ser)
        .expect("serialising string-keyed JSON into a Vec cannot fail");
}

/// `value` as a new Python-style JSON string.
fn py_json_string<T: Serialize + ?Sized>(value: &T, capacity: usize) -> String {
    let mut out = Vec::with_capacity(capacity);
    write_py_json(&mut out, value);
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

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
    /// The metadata JSON `J` of a type-4 message (Python separators, fixed key order). `node_id`
    /// and `display_node_id` are always strings there: ComfyUI's web frontend splits
    /// `display_node_id` on every type-4 frame, so a missing one (a stream that names no node)
    /// is the event name, and a missing display id is the node id (what ComfyUI itself reports
    /// for a node that is not part of a subgraph).
    pub fn metadata_json(&self) -> String {
        py_json_string(&self.fields(true, None), 160)
    }

    /// Appends `J` to `out` (no allocation beyond `out`'s growth).
    pub fn write_metadata_json(&self, out: &mut Vec<u8>) {
        write_py_json(out, &self.fields(true, None));
    }

    /// The legacy announcement text sent right before a type-1 binary message.
    pub fn announcement(&self, png_len: usize) -> String {
        py_json_string(&self.announcement_msg(png_len), 192)
    }

    /// Appends the announcement to `out` (no allocation beyond `out`'s growth).
    pub fn write_announcement(&self, png_len: usize, out: &mut Vec<u8>) {
        write_py_json(out, &self.announcement_msg(png_len));
    }

    fn fields(&self, node_ids: bool, bytes: Option<usize>) -> MetaFields<'_> {
        MetaFields {
            meta: self,
            node_ids,
            bytes,
        }
    }

    fn announcement_msg(&self, png_len: usize) -> Event<'_, MetaFields<'_>> {
        Event {
            event: &self.event,
            data: self.fields(false, Some(png_len)),
        }
    }
}

/// The keys of `J` and of an announcement's `data`, in ComfyUI's order: `event`, `index`, `count`,
/// `width`, `height`, `image_type`, the node keys that are set, then `bytes` (announcement only).
/// `node_ids` fills in `node_id` and `display_node_id` when unset (for `J`).
struct MetaFields<'a> {
    meta: &'a ImageMeta,
    node_ids: bool,
    bytes: Option<usize>,
}

impl Serialize for MetaFields<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let m = self.meta;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("event", &m.event)?;
        map.serialize_entry("index", &m.index)?;
        map.serialize_entry("count", &m.count)?;
        map.serialize_entry("width", &m.width)?;
        map.serialize_entry("height", &m.height)?;
        map.serialize_entry("image_type", "image/png")?;
        let node_id = m.node_id.as_deref().unwrap_or(&m.event);
        let keys = [
            ("prompt_id", m.prompt_id.as_deref(), None),
            ("node_id", m.node_id.as_deref(), Some(node_id)),
            (
                "display_node_id",
                m.display_node_id.as_deref(),
                Some(node_id),
            ),
            ("parent_node_id", m.parent_node_id.as_deref(), None),
            ("real_node_id", m.real_node_id.as_deref(), None),
        ];
        for (key, value, fallback) in keys {
            let value = match (value, fallback) {
                (Some(v), _) => v,
                (None, Some(f)) if self.node_ids => f,
                _ => continue,
            };
            map.serialize_entry(key, value)?;
        }
        if let Some(bytes) = self.bytes {
            map.serialize_entry("bytes", &bytes)?;
        }
        map.end()
    }
}

/// `{"type": EVENT, "data": DATA}`.
struct Event<'a, D> {
    event: &'a str,
    data: D,
}

impl<D: Serialize> Serialize for Event<'_, D> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("type", self.event)?;
        map.serialize_entry("data", &self.data)?;
        map.end()
    }
}

/// The first message a client gets:
/// `{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "<sid>"}}`.
pub fn status_message(sid: &str) -> String {
    py_json_string(
        &Event {
            event: "status",
            data: Status { sid },
        },
        96 + sid.len(),
    )
}

/// The `data` of a status message: an empty queue and the client's id.
struct Status<'a> {
    sid: &'a str,
}

impl Serialize for Status<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let queue = Object1("queue_remaining", &0u32);
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("status", &Object1("exec_info", &queue))?;
        map.serialize_entry("sid", self.sid)?;
        map.end()
    }
}

/// A one-key object `{KEY: VALUE}`.
struct Object1<'a, V: ?Sized>(&'static str, &'a V);

impl<V: Serialize + ?Sized> Serialize for Object1<'_, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry(self.0, self.1)?;
        map.end()
    }
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

/// `{"type": EVENT, "data": DATA}` as shared text, `DATA` written with Python's separators.
pub fn json_event(event: &str, data: &serde_json::Value) -> Arc<str> {
    py_json_string(&Event { event, data }, 32 + event.len()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{client_wants_metadata, parse_text, TextMessage};

    use crate::wire::test_meta as meta;

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
    fn strings_escape_like_python_without_ascii_escapes() {
        // serde_json's escapes, non-ASCII kept as UTF-8 (json.dumps with ensure_ascii=False).
        let m = ImageMeta {
            event: "é\"\\\n\u{1}✓".into(),
            ..meta()
        };
        let mut a = Vec::new();
        m.write_announcement(7, &mut a);
        let want = concat!(
            r#"{"type": "é\"\\\n\u0001✓", "data": {"event": "é\"\\\n\u0001✓", "index": 1, "#,
            r#""count": 3, "width": 640, "height": 480, "image_type": "image/png", "bytes": 7}}"#
        );
        assert_eq!(std::str::from_utf8(&a).unwrap(), want);
        assert_eq!(m.announcement(7), want);
    }

    #[test]
    fn json_event_every_value_kind() {
        let v = serde_json::json!({
            "f": 1.5, "n": -3, "u": 18446744073709551615u64, "z": null, "t": true, "e": [],
            "o": {}, "s": "q\"\u{7f}é", "nested": [[1], {"k": [false]}]
        });
        // serde_json's map keeps keys sorted (no `preserve_order`); DEL is not escaped, as in
        // Python.
        assert_eq!(
            &*json_event("e\u{1}", &v),
            concat!(
                r#"{"type": "e\u0001", "data": {"e": [], "f": 1.5, "n": -3, "nested": [[1], "#,
                r#"{"k": [false]}], "o": {}, "s": "q\"#,
                "\"\u{7f}é\", ",
                r#""t": true, "#,
                r#""u": 18446744073709551615, "z": null}}"#
            )
        );
    }
}
