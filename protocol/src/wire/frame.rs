//! [`WireFrame`]: one encoded image with its announcement and type-4 prefix, shared by every
//! client, and the in-place rebuild that lets the sender's pool reuse a frame without allocating.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::comfy::{ImageMeta, LEGACY_PREFIX, TYPE_PREVIEW_IMAGE_WITH_METADATA};

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
    /// Client queue entries holding this frame (see [`WireFrame::hold`]).
    queued: AtomicUsize,
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
                queued: AtomicUsize::new(0),
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

    /// Counts one more client queue entry holding this frame; true when it is the first (the
    /// frame's bytes now count against a server's memory budget).
    pub(crate) fn hold(&self) -> bool {
        self.inner.queued.fetch_add(1, Ordering::AcqRel) == 0
    }

    /// Counts one queue entry fewer; true when it was the last.
    pub(crate) fn release(&self) -> bool {
        self.inner.queued.fetch_sub(1, Ordering::AcqRel) == 1
    }

    /// Bytes this frame holds in memory (its PNG and texts), for memory budgets.
    pub fn held_bytes(&self) -> usize {
        let i = &self.inner;
        i.png.len() + i.announcement.len() + i.meta_prefix.len()
    }

    /// True when both handles are the same frame.
    pub fn same_frame(&self, other: &WireFrame) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{parse_binary, parse_text, BinaryMessage, TextMessage};

    use crate::wire::test_meta as meta;

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
}
