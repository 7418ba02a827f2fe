//! The client's wire parser: `wire::parse_binary` and `wire::parse_text` on arbitrary bytes.
//! Checks: no panic; a parsed PNG is a suffix of the message; a type-4 message's JSON is the
//! declared slice and re-serialising its metadata parses back to the same metadata (with the
//! node ids `J` always carries filled in).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pngcast_protocol::wire::{self, BinaryMessage};
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    match wire::parse_binary(data) {
        Ok(BinaryMessage::Legacy { png }) => {
            assert!(data.ends_with(png));
            assert_eq!(png.len() + 8, data.len());
        }
        Ok(BinaryMessage::WithMetadata { meta, json, png }) => {
            assert!(data.ends_with(png));
            assert_eq!(8 + json.len() + png.len(), data.len());
            let frame = wire::WireFrame::new(&meta, Arc::new(png.to_vec()), true);
            match wire::parse_binary(&frame.binary_message(true)) {
                Ok(BinaryMessage::WithMetadata {
                    meta: again,
                    png: p,
                    ..
                }) => {
                    // `J` always names a node: a missing `node_id` is the event name, a missing
                    // `display_node_id` the node id (see `ImageMeta::metadata_json`).
                    let mut expected = meta.clone();
                    let node = expected
                        .node_id
                        .get_or_insert_with(|| meta.event.clone())
                        .clone();
                    expected.display_node_id.get_or_insert(node);
                    assert_eq!(again, expected);
                    assert_eq!(p, png);
                }
                other => panic!("re-serialised metadata does not parse: {other:?}"),
            }
        }
        Err(_) => {}
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = wire::parse_text(text);
    }
});
