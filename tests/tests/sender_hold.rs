//! A sink that holds every frame it gets (clients that never catch up) while the sender keeps
//! sending: the sender's frame pool must fall back to new frames and never rebuild one a client
//! still holds. Each held frame is checked against its own image, decoded by the `png` crate.
#![forbid(unsafe_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pngcast_core::png::EncodeOptions;
use pngcast_core::tensor::TensorView;
use pngcast_protocol::sender::{FrameExtra, Sender, POOL_SIZE};
use pngcast_protocol::sink::{FrameSink, SinkError, SinkStats, Target};
use pngcast_protocol::wire::{self, BinaryMessage, TextMessage, WireFrame};

/// Keeps a clone of every frame, as a client queue that never drains would.
#[derive(Default)]
struct Holding {
    frames: Mutex<Vec<WireFrame>>,
}

impl FrameSink for Holding {
    fn send_image(&self, _target: &Target, frame: &WireFrame) -> Result<(), SinkError> {
        self.frames.lock().unwrap().push(frame.clone());
        Ok(())
    }
    fn send_text(&self, _target: &Target, _text: Arc<str>) -> Result<(), SinkError> {
        Ok(())
    }
    fn stats(&self) -> SinkStats {
        SinkStats::default()
    }
    fn shutdown(&self, _deadline: Duration) {}
}

const B: usize = 10;
const H: usize = 5;
const W: usize = 6;
const C: usize = 3;

/// A batch of `B` images, each different, in `seed`'s variant; samples are multiples of 1/64.
fn batch(seed: usize) -> Vec<f32> {
    (0..B * H * W * C)
        .map(|i| ((i * 7 + seed * 13 + i / (H * W * C)) % 65) as f32 / 64.0)
        .collect()
}

/// The RGB8 pixels image `index` of `pixels` must decode to (default conversion truncates).
fn expected(pixels: &[f32], index: usize) -> Vec<u8> {
    let n = H * W * C;
    pixels[index * n..(index + 1) * n]
        .iter()
        .map(|&x| (255.0f32 * x) as u8)
        .collect()
}

fn decode(png: &[u8]) -> Vec<u8> {
    let mut r = png::Decoder::new(std::io::Cursor::new(png))
        .read_info()
        .unwrap();
    let mut out = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut out).unwrap();
    assert_eq!(
        (info.width, info.height, info.color_type, info.bit_depth),
        (
            W as u32,
            H as u32,
            png::ColorType::Rgb,
            png::BitDepth::Eight
        )
    );
    out.truncate(info.buffer_size());
    out
}

/// Checks every byte a client could be sent for `frame`: metadata, PNG pixels, announcement and
/// type-4 prefix.
fn check(frame: &WireFrame, event: &str, extra: &FrameExtra, pixels: &[f32], index: usize) {
    let m = frame.meta();
    assert_eq!(
        (m.event.as_str(), m.index, m.count, m.width, m.height),
        (event, index as u32, B as u32, W as u32, H as u32)
    );
    assert_eq!(m.node_id, extra.node_id);
    assert_eq!(m.prompt_id, extra.prompt_id);
    assert_eq!(
        decode(frame.png()),
        expected(pixels, index),
        "{event} {index}"
    );
    let a = frame.announcement().expect("announcements are on");
    match wire::parse_text(a).unwrap() {
        TextMessage::Announcement(am) => assert_eq!(&am, m),
        other => panic!("{other:?}"),
    }
    let bytes: serde_json::Value = serde_json::from_str(a).unwrap();
    assert_eq!(bytes["data"]["bytes"], frame.png().len());
    let bin = frame.binary_message(true);
    match wire::parse_binary(&bin).unwrap() {
        BinaryMessage::WithMetadata { meta, png, .. } => {
            // `J` always names the node and the display node (the event name when unset).
            let mut want = m.clone();
            let node = want
                .node_id
                .get_or_insert_with(|| want.event.clone())
                .clone();
            want.display_node_id.get_or_insert(node);
            assert_eq!(meta, want);
            assert_eq!(png, frame.png());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(frame.meta_prefix().len() + frame.png().len(), bin.len());
}

#[test]
fn held_frames_stay_intact_and_distinct() {
    let sink = Arc::new(Holding::default());
    let mut sender = Sender::new(sink.clone(), EncodeOptions::default()).unwrap();
    let first_px = batch(0);
    let first = TensorView::bhwc(&first_px[..], [B, H, W, C]).unwrap();
    let extra1 = FrameExtra::default().prompt_id("p-1").node_id("7");
    let r = sender.send("first", &first, &Target::All, &extra1).unwrap();
    // The first frame is new and fills the pool with spare frames, which the next
    // POOL_SIZE - 1 frames take; the rest are new.
    assert_eq!((r.frames, r.buffers_reused), (B, POOL_SIZE - 1));

    // A second batch while all ten are held: the pool has nothing free, so every frame is new,
    // and none of the held ones may change.
    let second_px = batch(1);
    let second = TensorView::bhwc(&second_px[..], [B, H, W, C]).unwrap();
    let extra2 = FrameExtra::default().node_id("longer-node-id-42");
    let r = sender
        .send("second", &second, &Target::All, &extra2)
        .unwrap();
    assert_eq!((r.frames, r.buffers_reused), (B, 0));

    let held = sink.frames.lock().unwrap().clone();
    assert_eq!(held.len(), 2 * B);
    for (i, f) in held[..B].iter().enumerate() {
        check(f, "first", &extra1, &first_px, i);
    }
    for (i, f) in held[B..].iter().enumerate() {
        check(f, "second", &extra2, &second_px, i);
    }
    // Distinct frames: no two share a PNG buffer.
    for (i, a) in held.iter().enumerate() {
        for b in &held[i + 1..] {
            assert!(!Arc::ptr_eq(a.png_arc(), b.png_arc()));
        }
    }

    // Once the clients let go, the pool is reused again, and the new frames are right too.
    drop(held);
    sink.frames.lock().unwrap().clear();
    let r = sender.send("third", &first, &Target::All, &extra2).unwrap();
    assert_eq!(r.frames, B);
    assert_eq!(r.buffers_reused, POOL_SIZE);
    let held = sink.frames.lock().unwrap().clone();
    for (i, f) in held.iter().enumerate() {
        check(f, "third", &extra2, &first_px, i);
    }
}
