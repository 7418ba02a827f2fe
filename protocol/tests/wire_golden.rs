//! Pins the exact bytes pngcast puts on the wire for fixed inputs.
use std::sync::Arc;

use pngcast_protocol::wire::{
    close_frame, feature_flags_reply, status_message, ws_frame_header, ImageMeta, WireFrame,
    OPCODE_BINARY,
};

fn meta() -> ImageMeta {
    ImageMeta {
        event: "preview".into(),
        index: 1,
        count: 2,
        width: 3,
        height: 4,
        prompt_id: Some("p\"1".into()),
        node_id: Some("9".into()),
        display_node_id: None,
        parent_node_id: Some("é".into()),
        real_node_id: None,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn status_and_feature_flags_bytes() {
    assert_eq!(
        status_message("sid-1"),
        r#"{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "sid-1"}}"#
    );
    assert_eq!(
        feature_flags_reply(),
        r#"{"type": "feature_flags", "data": {"supports_preview_metadata": true, "max_upload_size": 0}}"#
    );
}

#[test]
fn announcement_and_binary_frames_bytes() {
    let frame = WireFrame::new(&meta(), Arc::new(b"PNGDATA".to_vec()), true);
    assert_eq!(
        frame.announcement(),
        Some(concat!(
            r#"{"type": "preview", "data": {"event": "preview", "index": 1, "count": 2, "#,
            r#""width": 3, "height": 4, "image_type": "image/png", "prompt_id": "p\"1", "#,
            r#""node_id": "9", "parent_node_id": "é", "bytes": 7}}"#
        ))
    );
    assert_eq!(
        hex(&frame.binary_message(false)),
        "0000000100000002504e4744415441"
    );
    // The type-4 JSON always names the display node (ComfyUI's web frontend reads it): the node
    // id when unset.
    assert_eq!(
        hex(&frame.binary_message(true)),
        concat!(
            "00000004000000b57b226576656e74223a202270726576696577222c2022696e646578223a20312c",
            "2022636f756e74223a20322c20227769647468223a20332c2022686569676874223a20342c202269",
            "6d6167655f74797065223a2022696d6167652f706e67222c202270726f6d70745f6964223a202270",
            "5c2231222c20226e6f64655f6964223a202239222c2022646973706c61795f6e6f64655f6964223a",
            "202239222c2022706172656e745f6e6f64655f6964223a2022c3a9227d504e4744415441",
        )
    );
}

#[test]
fn frame_header_and_close_frame_bytes() {
    let mut h = [0u8; 10];
    let n = ws_frame_header(OPCODE_BINARY, 300, &mut h);
    assert_eq!(hex(&h[..n]), "827e012c");
    let mut h = [0u8; 10];
    let n = ws_frame_header(OPCODE_BINARY, 70_000, &mut h);
    assert_eq!(hex(&h[..n]), "827f0000000000011170");
    let mut h = [0u8; 10];
    let n = ws_frame_header(OPCODE_BINARY, 5, &mut h);
    assert_eq!(hex(&h[..n]), "8205");
    assert_eq!(
        hex(&close_frame(1008, "slow consumer")),
        "880f03f0736c6f7720636f6e73756d6572"
    );
    assert_eq!(hex(&close_frame(1000, "")), "880203e8");
}
