//! The client side of protocol.md section 4: text and binary messages parsed back into
//! [`TextMessage`] and [`BinaryMessage`], with typed errors for anything malformed.

use super::comfy::{ImageMeta, TYPE_PREVIEW_IMAGE, TYPE_PREVIEW_IMAGE_WITH_METADATA};
use crate::error::{Error, Result};

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
            let meta = meta_from_json(&value)?;
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
            let mut meta = meta_from_json(&data)?;
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

/// Reads [`ImageMeta`] from a JSON object; missing or mistyped keys take their defaults.
fn meta_from_json(v: &serde_json::Value) -> Result<ImageMeta> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::WireFrame;
    use std::sync::Arc;

    use crate::wire::test_meta as meta;

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
}
