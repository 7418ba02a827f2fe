#![forbid(unsafe_code)]
//! The seed node's job: every image of a batch converted, encoded to PNG and handed to a sink, in
//! batch order, named by an event.
//!
//! `send` never blocks on the network: the sink only queues (transports write on their own
//! threads), so while the transport sends frame `i`, `send` is already encoding frame `i + 1`.
//!
//! Whole frames come from a small pool of [`WireFrame`]s, each owning its PNG buffer, its metadata
//! strings, its announcement and its type-4 prefix. A frame is rebuilt in place once every client
//! has written (and dropped) it, which `Arc::get_mut` detects, so in steady state a frame costs no
//! allocation at all (checked by `tests/tests/sender_alloc.rs`: 0 allocations per frame, with
//! announcements on or off and node keys set, and with clients a few frames behind: the first
//! frame fills the whole pool with frames of its shape, so a slot first needed late costs
//! nothing either), plus whatever the sink does to queue it. When every
//! pooled frame is still held (clients far behind), a new frame replaces the oldest pool slot
//! (a handful of allocations); the old one lives on, intact, until its last client drops it, so
//! memory stays bounded by the pool size plus what the clients hold.
//!
//! ```
//! use std::sync::Arc;
//! use pngcast_core::png::EncodeOptions;
//! use pngcast_protocol::sender::{FrameExtra, Sender};
//! use pngcast_protocol::sink::{MemorySink, Target};
//! use pngcast_core::tensor::TensorView;
//!
//! let sink = Arc::new(MemorySink::new()); // a transport's server in real use
//! let mut sender = Sender::new(sink.clone(), EncodeOptions::default()).unwrap();
//! let pixels = vec![0.25f32; 2 * 8 * 8 * 3]; // two 8x8 RGB images
//! let batch = TensorView::bhwc(&pixels[..], [2, 8, 8, 3]).unwrap();
//! let report = sender.send("preview", &batch, &Target::All, &FrameExtra::default()).unwrap();
//! assert_eq!(report.frames, 2);
//! assert_eq!(sink.log()[1].1.as_image().unwrap().meta().index, 1);
//! ```

use std::sync::Arc;
use std::time::Instant;

use thiserror::Error;

use crate::metrics::Metrics;
use crate::sink::{FrameSink, SinkError, Target};
use crate::wire::{ImageMeta, WireFrame};
use pngcast_core::convert::ConvertOptions;
use pngcast_core::error::{Error, Result};
use pngcast_core::png::{EncodeOptions, Encoder};
use pngcast_core::tensor::TensorView;

/// Number of frames (each with its PNG buffer) a [`Sender`] keeps for reuse.
pub const POOL_SIZE: usize = 4;

/// ComfyUI node keys attached to every frame of a send (type-4 `J` and announcements).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct FrameExtra {
    /// `prompt_id`.
    pub prompt_id: Option<String>,
    /// `node_id`.
    pub node_id: Option<String>,
    /// `display_node_id`.
    pub display_node_id: Option<String>,
    /// `parent_node_id`.
    pub parent_node_id: Option<String>,
    /// `real_node_id`.
    pub real_node_id: Option<String>,
}

impl FrameExtra {
    /// Sets `prompt_id`.
    pub fn prompt_id(mut self, v: impl Into<String>) -> Self {
        self.prompt_id = Some(v.into());
        self
    }
    /// Sets `node_id`.
    pub fn node_id(mut self, v: impl Into<String>) -> Self {
        self.node_id = Some(v.into());
        self
    }
    /// Sets `display_node_id`.
    pub fn display_node_id(mut self, v: impl Into<String>) -> Self {
        self.display_node_id = Some(v.into());
        self
    }
    /// Sets `parent_node_id`.
    pub fn parent_node_id(mut self, v: impl Into<String>) -> Self {
        self.parent_node_id = Some(v.into());
        self
    }
    /// Sets `real_node_id`.
    pub fn real_node_id(mut self, v: impl Into<String>) -> Self {
        self.real_node_id = Some(v.into());
        self
    }
}

/// What a [`Sender::send`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SendReport {
    /// Frames handed to the sink.
    pub frames: usize,
    /// Total PNG bytes of those frames.
    pub png_bytes: usize,
    /// Frames (PNG buffer and texts) taken from the pool (the rest were newly allocated).
    pub buffers_reused: usize,
}

/// Why a send stopped. Frames handed to the sink before the error stay queued.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SendError {
    /// The tensor could not be converted or encoded (bad shape, size, option).
    #[error("encoding frame {index} failed: {source}")]
    Encode {
        /// Batch index of the frame.
        index: usize,
        /// The encoder's error.
        #[source]
        source: Error,
    },
    /// The sink refused the frame (shut down, unknown client).
    #[error("the sink refused frame {index}: {source}")]
    Sink {
        /// Batch index of the frame.
        index: usize,
        /// The sink's error.
        #[source]
        source: SinkError,
    },
}

/// Encodes batches and hands the frames to a sink. Holds the encoder's scratch buffers and a
/// pool of frames, so keep one per stream and reuse it.
pub struct Sender {
    encoder: Encoder,
    convert: ConvertOptions,
    announce: bool,
    sink: Arc<dyn FrameSink>,
    pool: Vec<WireFrame>,
    /// Pool slot replaced next when every frame is busy.
    evict: usize,
    meta: ImageMeta,
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("encoder", &self.encoder)
            .field("convert", &self.convert)
            .field("announce", &self.announce)
            .field("pool", &self.pool.len())
            .finish_non_exhaustive()
    }
}

impl Sender {
    /// A sender with a new encoder built from `options` (validated), default conversion and
    /// announcements on.
    pub fn new(sink: Arc<dyn FrameSink>, options: EncodeOptions) -> Result<Sender> {
        Ok(Sender::with_encoder(sink, Encoder::new(options)?))
    }

    /// A sender around an existing encoder.
    pub fn with_encoder(sink: Arc<dyn FrameSink>, encoder: Encoder) -> Sender {
        Sender {
            encoder,
            convert: ConvertOptions::default(),
            announce: true,
            sink,
            pool: Vec::with_capacity(POOL_SIZE),
            evict: 0,
            meta: ImageMeta::default(),
            metrics: None,
        }
    }

    /// Sets how samples are quantised.
    pub fn convert_options(mut self, convert: ConvertOptions) -> Self {
        self.convert = convert;
        self
    }

    /// Switches the legacy announcement on or off.
    pub fn announce(mut self, announce: bool) -> Self {
        self.announce = announce;
        self
    }

    /// Records the time to convert and encode each frame into `metrics`' encode histogram (a
    /// server's [`crate::http::ServerConfig::metrics`], served at `GET /metrics`). Costs two
    /// clock reads and three relaxed atomic additions per frame.
    pub fn metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// How samples are quantised.
    pub fn convert(&self) -> ConvertOptions {
        self.convert
    }

    /// The sink.
    pub fn sink(&self) -> &Arc<dyn FrameSink> {
        &self.sink
    }

    /// The encoder (to change text chunks between sends, say).
    pub fn encoder_mut(&mut self) -> &mut Encoder {
        &mut self.encoder
    }

    /// Encodes every image of `tensor` in batch order and hands each frame to the sink for
    /// `target` as soon as it is encoded. Stops at the first error; earlier frames stay queued.
    pub fn send(
        &mut self,
        event: &str,
        tensor: &TensorView<'_>,
        target: &Target,
        extra: &FrameExtra,
    ) -> std::result::Result<SendReport, SendError> {
        let count = u32::try_from(tensor.batch()).map_err(|_| SendError::Encode {
            index: 0,
            source: Error::SizeOverflow("batch beyond u32"),
        })?;
        // Dimensions were checked by the view (each side < 2^31).
        let (width, height) = (tensor.width() as u32, tensor.height() as u32);
        self.meta.event.clear();
        self.meta.event.push_str(event);
        self.meta.count = count;
        self.meta.width = width;
        self.meta.height = height;
        set_opt(&mut self.meta.prompt_id, &extra.prompt_id);
        set_opt(&mut self.meta.node_id, &extra.node_id);
        set_opt(&mut self.meta.display_node_id, &extra.display_node_id);
        set_opt(&mut self.meta.parent_node_id, &extra.parent_node_id);
        set_opt(&mut self.meta.real_node_id, &extra.real_node_id);

        let mut report = SendReport::default();
        for (index, image) in tensor.images().enumerate() {
            let (slot, reused) = self.free_frame();
            report.buffers_reused += usize::from(reused);
            let frame = &mut self.pool[slot];
            let buf = frame
                .png_buf_mut()
                .expect("free_frame returns an unshared frame");
            let started = self.metrics.is_some().then(Instant::now);
            self.encoder
                .encode_image_into(&image, self.convert, buf)
                .map_err(|source| SendError::Encode { index, source })?;
            if let (Some(m), Some(t)) = (&self.metrics, started) {
                m.encode.observe(t.elapsed());
            }
            self.meta.index = index as u32;
            let rebuilt = frame.rebuild(&self.meta, self.announce);
            debug_assert!(rebuilt, "the frame is still unshared");
            report.png_bytes += frame.png().len();
            self.prime_pool(slot);
            let frame = &self.pool[slot];
            self.sink
                .send_image(target, frame)
                .map_err(|source| SendError::Sink { index, source })?;
            report.frames += 1;
        }
        Ok(report)
    }

    /// Hands an already-encoded PNG of `width` x `height` pixels to the sink as it is (no
    /// decoding, no re-encoding: the caller vouches that the bytes are a PNG of that size, see
    /// [`crate::ingest::validate_png`]), as image 0 of a batch of 1 named `event`. Costs a new
    /// frame (a few small allocations); the PNG itself is moved, not copied.
    pub fn send_png(
        &mut self,
        event: &str,
        png: Vec<u8>,
        width: u32,
        height: u32,
        target: &Target,
        extra: &FrameExtra,
    ) -> std::result::Result<SendReport, SendError> {
        let meta = ImageMeta {
            event: event.to_owned(),
            index: 0,
            count: 1,
            width,
            height,
            prompt_id: extra.prompt_id.clone(),
            node_id: extra.node_id.clone(),
            display_node_id: extra.display_node_id.clone(),
            parent_node_id: extra.parent_node_id.clone(),
            real_node_id: extra.real_node_id.clone(),
        };
        let png_bytes = png.len();
        let frame = WireFrame::new(&meta, Arc::new(png), self.announce);
        self.sink
            .send_image(target, &frame)
            .map_err(|source| SendError::Sink { index: 0, source })?;
        Ok(SendReport {
            frames: 1,
            png_bytes,
            buffers_reused: 0,
        })
    }

    /// Queues `{"type": event, "data": data}` for `target` on the sink.
    pub fn send_json(
        &self,
        target: &Target,
        event: &str,
        data: &serde_json::Value,
    ) -> std::result::Result<(), SinkError> {
        self.sink.send_json(target, event, data)
    }

    /// Fills the pool up to [`POOL_SIZE`] with frames shaped like the one in `slot` (its PNG
    /// capacity, its texts). Done once, on a stream's first frame, so that a slot first needed
    /// later (the clients briefly a frame or two behind) allocates nothing then. The reserved PNG
    /// buffers are not touched until used, so they cost address space, not resident memory.
    fn prime_pool(&mut self, slot: usize) {
        while self.pool.len() < POOL_SIZE {
            let spare = self.pool[slot].spare_like();
            self.pool.push(spare);
        }
    }

    /// A pool slot whose frame nobody else holds, and whether it is a reused frame.
    fn free_frame(&mut self) -> (usize, bool) {
        if let Some(i) = self.pool.iter_mut().position(WireFrame::is_unshared) {
            return (i, true);
        }
        if self.pool.len() < POOL_SIZE {
            self.pool.push(WireFrame::pooled(0));
            return (self.pool.len() - 1, false);
        }
        // Every frame is still queued somewhere: replace the oldest slot with a new frame; the
        // old one lives on, unchanged, until its last client drops it.
        let slot = self.evict;
        self.evict = (self.evict + 1) % POOL_SIZE;
        let cap = self.pool[slot].png_arc().capacity();
        self.pool[slot] = WireFrame::pooled(cap);
        (slot, false)
    }
}

/// Copies `src` into `dst`, reusing `dst`'s allocation when both are set.
fn set_opt(dst: &mut Option<String>, src: &Option<String>) {
    match (dst.as_mut(), src) {
        (Some(d), Some(s)) => {
            d.clear();
            d.push_str(s);
        }
        (_, None) => *dst = None,
        (None, Some(s)) => *dst = Some(s.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::MemorySink;

    #[test]
    fn frame_pool_reuses_released_frames() {
        let mem = Arc::new(MemorySink::new());
        let mut s = Sender::new(mem.clone(), EncodeOptions::default()).unwrap();
        // Take all slots while they are held, then release them.
        let (a, ra) = s.free_frame();
        let held_a = s.pool[a].clone();
        let (b, rb) = s.free_frame();
        assert_ne!(a, b);
        assert!(!ra && !rb);
        drop(held_a);
        let (c, rc) = s.free_frame();
        // Slot a is free again (slot b was never shared, so it may be found first).
        assert!(rc);
        assert!(c == a || c == b);
    }

    #[test]
    fn a_held_png_keeps_its_frame_out_of_the_pool() {
        let mem = Arc::new(MemorySink::new());
        let mut s = Sender::new(mem, EncodeOptions::default()).unwrap();
        let (a, _) = s.free_frame();
        let png = s.pool[a].png_arc().clone();
        let (b, rb) = s.free_frame();
        assert_ne!(a, b);
        assert!(!rb);
        drop(png);
        let (c, rc) = s.free_frame();
        assert!(rc);
        assert_eq!(c, a);
    }

    #[test]
    fn pool_is_bounded_when_everything_is_held() {
        let mem = Arc::new(MemorySink::new());
        let mut s = Sender::new(mem, EncodeOptions::default()).unwrap();
        let mut held = Vec::new();
        for _ in 0..3 * POOL_SIZE {
            let (i, _) = s.free_frame();
            held.push(s.pool[i].clone());
        }
        assert_eq!(s.pool.len(), POOL_SIZE);
    }

    fn tensor(b: usize) -> Vec<f32> {
        (0..b * 5 * 7 * 4).map(|i| (i % 97) as f32 / 96.0).collect()
    }

    #[test]
    fn sends_each_image_in_order_and_recycles_buffers() {
        let mem = Arc::new(MemorySink::new());
        let mut s = Sender::new(mem.clone(), EncodeOptions::default()).unwrap();
        let px = tensor(3);
        let t = TensorView::bhwc(&px[..], [3, 5, 7, 4]).unwrap();
        let extra = FrameExtra::default().prompt_id("p").real_node_id("r");
        let r = s.send("ev", &t, &Target::All, &extra).unwrap();
        // The first frame is new; it primes the pool, so the next two come from the pool.
        assert_eq!((r.frames, r.buffers_reused), (3, 2));
        assert_eq!(s.pool.len(), POOL_SIZE);
        let log = mem.take_log();
        for (i, (target, rec)) in log.iter().enumerate() {
            assert_eq!(target, &Target::All);
            let f = rec.as_image().unwrap();
            assert_eq!(
                (
                    f.meta().index,
                    f.meta().count,
                    f.meta().width,
                    f.meta().height
                ),
                (i as u32, 3, 7, 5)
            );
            assert_eq!(f.meta().prompt_id.as_deref(), Some("p"));
            assert_eq!(f.meta().real_node_id.as_deref(), Some("r"));
            assert_eq!(f.meta().event, "ev");
            assert!(f.png().starts_with(b"\x89PNG\r\n\x1a\n"));
            assert!(f.announcement().is_some());
        }
        drop(log);
        // Every frame released: the next send reuses pooled buffers.
        let r = s
            .send("ev", &t, &Target::All, &FrameExtra::default())
            .unwrap();
        assert_eq!(r.buffers_reused, 3);
        assert!(mem.log().iter().all(|(_, rec)| rec
            .as_image()
            .unwrap()
            .meta()
            .prompt_id
            .is_none()));
        let mut quiet = Sender::new(mem.clone(), EncodeOptions::default())
            .unwrap()
            .announce(false);
        quiet
            .send("ev", &t, &Target::All, &FrameExtra::default())
            .unwrap();
        assert!(mem
            .log()
            .last()
            .unwrap()
            .1
            .as_image()
            .unwrap()
            .announcement()
            .is_none());
    }

    #[test]
    fn sink_errors_stop_the_send() {
        let mem = Arc::new(MemorySink::new());
        mem.add_client("a", false);
        let mut s = Sender::new(mem.clone(), EncodeOptions::default()).unwrap();
        let px = tensor(2);
        let t = TensorView::bhwc(&px[..], [2, 5, 7, 4]).unwrap();
        match s.send("ev", &t, &Target::client("b"), &FrameExtra::default()) {
            Err(SendError::Sink {
                index: 0,
                source: SinkError::NoSuchClient(id),
            }) => assert_eq!(id, "b"),
            other => panic!("{other:?}"),
        }
        // The sender stays usable.
        assert_eq!(
            s.send("ev", &t, &Target::client("a"), &FrameExtra::default())
                .unwrap()
                .frames,
            2
        );
        mem.shutdown(std::time::Duration::ZERO);
        assert!(matches!(
            s.send("ev", &t, &Target::All, &FrameExtra::default()),
            Err(SendError::Sink {
                index: 0,
                source: SinkError::ShutDown
            })
        ));
    }

    #[test]
    fn records_encode_times_and_passes_pngs_through() {
        let mem = Arc::new(MemorySink::new());
        let metrics = Arc::new(Metrics::new());
        let mut s = Sender::new(mem.clone(), EncodeOptions::default())
            .unwrap()
            .metrics(Arc::clone(&metrics));
        let px = tensor(3);
        let t = TensorView::bhwc(&px[..], [3, 5, 7, 4]).unwrap();
        s.send("ev", &t, &Target::All, &FrameExtra::default())
            .unwrap();
        assert_eq!(metrics.encode.snapshot().count, 3);
        let png = mem.log()[0].1.as_image().unwrap().png().to_vec();
        let r = s
            .send_png(
                "copy",
                png.clone(),
                7,
                5,
                &Target::All,
                &FrameExtra::default(),
            )
            .unwrap();
        assert_eq!((r.frames, r.png_bytes), (1, png.len()));
        // A passed-through PNG is not an encode.
        assert_eq!(metrics.encode.snapshot().count, 3);
        let log = mem.log();
        let f = log.last().unwrap().1.as_image().unwrap();
        assert_eq!(f.png(), &png[..]);
        assert_eq!(
            (
                f.meta().event.as_str(),
                f.meta().index,
                f.meta().count,
                f.meta().width,
                f.meta().height
            ),
            ("copy", 0, 1, 7, 5)
        );
    }

    #[test]
    fn set_opt_reuses() {
        let mut d = Some(String::with_capacity(64));
        let p = d.as_ref().unwrap().as_ptr();
        set_opt(&mut d, &Some("abc".into()));
        assert_eq!(d.as_deref(), Some("abc"));
        assert_eq!(d.as_ref().unwrap().as_ptr(), p);
        set_opt(&mut d, &None);
        assert_eq!(d, None);
    }
}
