#![forbid(unsafe_code)]
//! The ingest endpoint, without I/O: `POST` (or `PUT`) `/api/send?event=NAME[&clientId=ID]` with
//! a PNG or `.npy` body feeds a running server from any process (`curl -T frame.png ...`).
//!
//! The flow, for a transport:
//!
//! 1. [`crate::http::route`] checks the head (Host, token, Origin, method, `Content-Length`
//!    against [`crate::http::ServerConfig::max_ingest_bytes`], `Content-Type`, query) and gives
//!    [`crate::http::Route::Ingest`] with an [`IngestRoute`], or a refusal.
//! 2. If [`IngestRoute::expect_continue`], the transport writes [`CONTINUE`] first.
//! 3. It reads exactly [`IngestRoute::content_length`] body bytes (the bytes after the head
//!    first), within a deadline of its choosing (a slow body is answered 408 and closed).
//! 4. It writes [`respond`]`(&route, body, &config)` (a complete response, `Connection: close`)
//!    and closes.
//!
//! [`respond`] validates the body here, cheaply (a PNG's chunks and CRCs, a `.npy` header and
//! size: never a pixel decode), then hands an [`IngestJob`] to the configured
//! [`IngestHandler`], which must not block: it queues the job for a thread of its own that
//! decodes, encodes and sends ([`IngestJob::send`]), or says it is busy (503). A PNG is passed
//! to clients unchanged; a `.npy` array is converted and encoded like `pngcast encode` does.
//!
//! Answers: `202` with a short JSON description on success (the frame is queued, not yet sent);
//! `400` for a malformed body, `415` for a body that is neither PNG nor `.npy`, `422` for a
//! well-formed body that is not an image this server takes (dtype, shape, size), `503` when the
//! handler is busy (with `Retry-After`); each refusal with a one-line plain-text reason.

use std::fmt;
use std::sync::Arc;

use crate::http::{response_with, ServerConfig};
use crate::metrics::IngestOutcome;
use crate::npy::{Layout, NpyArray, NpyError, NpyHeader};
use crate::sender::{FrameExtra, SendError, SendReport, Sender};
use crate::sink::Target;
use pngcast_core::convert::Quantize;

/// The path of the ingest endpoint.
pub const INGEST_PATH: &str = "/api/send";

/// Default largest ingest body: 64 MiB.
pub const DEFAULT_MAX_INGEST_BYTES: usize = 64 << 20;

/// Largest image accepted, in pixels per frame (2^28, e.g. 16384 x 16384): a bound on what a
/// client (a browser) is asked to decode.
pub const MAX_INGEST_PIXELS: u64 = 1 << 28;

/// Longest event name accepted.
pub const MAX_EVENT_LEN: usize = 128;

/// The interim answer to `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Time a body of `len` bytes has to arrive once its head is read: the handshake timeout plus
/// a second per MiB (a slow uploader is not a slow-header attack; a stalled one still ends, with
/// 408).
pub fn body_time(config: &ServerConfig, len: usize) -> std::time::Duration {
    config.handshake_timeout + std::time::Duration::from_secs((len >> 20) as u64)
}

/// What the body is declared to be by its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyKind {
    /// No type, `application/octet-stream` or a form type (curl's default for `--data-binary`):
    /// recognised by its magic bytes.
    Sniff,
    /// `image/png`.
    Png,
    /// `application/x-npy` (also `application/npy`, `application/x-numpy`).
    Npy,
}

impl BodyKind {
    /// The kind a `Content-Type` value declares; `None` for a type this endpoint never takes.
    pub fn from_content_type(value: Option<&str>) -> Option<BodyKind> {
        let Some(value) = value else {
            return Some(BodyKind::Sniff);
        };
        let media = value.split(';').next().unwrap_or("").trim();
        let is = |t: &str| media.eq_ignore_ascii_case(t);
        if media.is_empty()
            || is("application/octet-stream")
            || is("application/x-www-form-urlencoded")
        {
            Some(BodyKind::Sniff)
        } else if is("image/png") {
            Some(BodyKind::Png)
        } else if is("application/x-npy") || is("application/npy") || is("application/x-numpy") {
            Some(BodyKind::Npy)
        } else {
            None
        }
    }
}

/// An ingest request that passed routing: what [`crate::http::Route::Ingest`] carries.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IngestRoute {
    /// The event name (`?event=`), non-empty.
    pub event: String,
    /// `?clientId=`: only this client gets the frame. `None`: every client.
    pub client_id: Option<String>,
    /// What the `Content-Type` declares.
    pub kind: BodyKind,
    /// `?layout=` for `.npy` bodies; `None`: the same rule as `pngcast encode` without
    /// `--layout` ([`Layout::guess`]).
    pub layout: Option<Layout>,
    /// Exact body length to read, from `Content-Length` (at least 1, at most the limit).
    pub content_length: usize,
    /// The client sent `Expect: 100-continue`: write [`CONTINUE`] before reading the body.
    pub expect_continue: bool,
}

impl IngestRoute {
    /// A route for `event` with a body of `content_length` bytes, to every client, the kind
    /// sniffed. For tests and for callers that route by other means.
    pub fn new(event: impl Into<String>, content_length: usize) -> IngestRoute {
        IngestRoute {
            event: event.into(),
            client_id: None,
            kind: BodyKind::Sniff,
            layout: None,
            content_length,
            expect_continue: false,
        }
    }
    /// Sets the target client.
    pub fn client_id(mut self, id: Option<String>) -> Self {
        self.client_id = id;
        self
    }
    /// Sets the declared body kind.
    pub fn kind(mut self, kind: BodyKind) -> Self {
        self.kind = kind;
        self
    }
    /// Sets the `.npy` layout.
    pub fn layout(mut self, layout: Option<Layout>) -> Self {
        self.layout = layout;
        self
    }
}

/// Why a body was refused: an HTTP status and a one-line reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestError {
    status: u16,
    message: String,
}

impl IngestError {
    fn new(status: u16, message: impl Into<String>) -> IngestError {
        IngestError {
            status,
            message: message.into(),
        }
    }
    /// 400, 415 or 422 (503 when the handler refused the job).
    pub fn status(&self) -> u16 {
        self.status
    }
    /// The complete response.
    pub fn response(&self) -> Vec<u8> {
        let body = format!("{}\n", self.message);
        let extra: &[(&str, &str)] = if self.status == 503 {
            &[("Retry-After", "1")]
        } else {
            &[]
        };
        response_with(
            self.status,
            "text/plain; charset=utf-8",
            extra,
            body.as_bytes(),
        )
    }
}

impl fmt::Display for IngestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for IngestError {}

impl From<NpyError> for IngestError {
    fn from(e: NpyError) -> Self {
        let status = if e.is_malformed() { 400 } else { 422 };
        IngestError::new(status, format!(".npy body: {e}"))
    }
}

/// What a PNG's `IHDR` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PngInfo {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bits per sample (1, 2, 4, 8 or 16).
    pub bit_depth: u8,
    /// PNG colour type (0, 2, 3, 4 or 6).
    pub color_type: u8,
}

/// The PNG signature.
pub const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Checks a whole PNG file without decoding its pixels: the signature; every chunk's length,
/// type and CRC; `IHDR` first with valid fields and a size within [`MAX_INGEST_PIXELS`]; `PLTE`
/// for palette images; at least one `IDAT`, the `IDAT`s consecutive; no unknown critical
/// chunk; `IEND` last, empty, and nothing after it. The zlib stream inside `IDAT` is not
/// inflated. Errors are 400 (malformed) or 422 (too large).
pub fn validate_png(bytes: &[u8]) -> Result<PngInfo, IngestError> {
    let bad = |m: String| IngestError::new(400, format!("PNG body: {m}"));
    if !bytes.starts_with(PNG_SIGNATURE) {
        return Err(bad("bad signature".into()));
    }
    let mut pos = PNG_SIGNATURE.len();
    let mut info: Option<PngInfo> = None;
    let (mut plte, mut idat_state) = (false, 0u8); // 0 none yet, 1 in the run, 2 after it
    loop {
        let Some(head) = bytes.get(pos..pos + 8) else {
            return Err(bad(format!("truncated at byte {pos}: no IEND chunk")));
        };
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let kind: [u8; 4] = [head[4], head[5], head[6], head[7]];
        let name = String::from_utf8_lossy(&kind).into_owned();
        if len > (1 << 31) - 1 {
            return Err(bad(format!("chunk length {len} beyond 2^31-1")));
        }
        if !kind.iter().all(u8::is_ascii_alphabetic) {
            return Err(bad(format!("bad chunk type {kind:?} at byte {pos}")));
        }
        let data_end = pos + 8 + len as usize;
        let Some(crc) = bytes.get(data_end..data_end + 4) else {
            return Err(bad(format!("truncated inside chunk {name}")));
        };
        let want = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
        let got = crc32fast::hash(&bytes[pos + 4..data_end]);
        if want != got {
            return Err(bad(format!("CRC mismatch in chunk {name}")));
        }
        let data = &bytes[pos + 8..data_end];
        if info.is_none() && &kind != b"IHDR" {
            return Err(bad(format!("first chunk is {name}, not IHDR")));
        }
        if &kind != b"IDAT" && idat_state == 1 {
            idat_state = 2;
        }
        match &kind {
            b"IHDR" => {
                if info.is_some() {
                    return Err(bad("a second IHDR".into()));
                }
                info = Some(ihdr(data).map_err(bad)?);
            }
            b"PLTE" => {
                if plte || idat_state != 0 {
                    return Err(bad("PLTE repeated or after IDAT".into()));
                }
                plte = true;
            }
            b"IDAT" => {
                if idat_state == 2 {
                    return Err(bad("IDAT chunks are not consecutive".into()));
                }
                if info.is_some_and(|i| i.color_type == 3) && !plte {
                    return Err(bad("palette image without PLTE".into()));
                }
                idat_state = 1;
            }
            b"IEND" => {
                if idat_state == 0 {
                    return Err(bad("no IDAT chunk".into()));
                }
                if len != 0 {
                    return Err(bad("IEND is not empty".into()));
                }
                let end = data_end + 4;
                if end != bytes.len() {
                    return Err(bad(format!("{} bytes after IEND", bytes.len() - end)));
                }
                // `info` is set: IHDR is checked to come first.
                return info.ok_or_else(|| bad("no IHDR".into()));
            }
            _ if kind[0].is_ascii_uppercase() => {
                return Err(bad(format!("unknown critical chunk {name}")));
            }
            _ => {}
        }
        pos = data_end + 4;
    }
}

fn ihdr(data: &[u8]) -> Result<PngInfo, String> {
    if data.len() != 13 {
        return Err(format!("IHDR of {} bytes (13 expected)", data.len()));
    }
    let width = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
    let height = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
    let (bit_depth, color_type) = (data[8], data[9]);
    if width == 0 || height == 0 || width > (1 << 31) - 1 || height > (1 << 31) - 1 {
        return Err(format!("size {width}x{height} out of range"));
    }
    let depth_ok = match color_type {
        0 => matches!(bit_depth, 1 | 2 | 4 | 8 | 16),
        3 => matches!(bit_depth, 1 | 2 | 4 | 8),
        2 | 4 | 6 => matches!(bit_depth, 8 | 16),
        _ => return Err(format!("colour type {color_type}")),
    };
    if !depth_ok {
        return Err(format!(
            "bit depth {bit_depth} with colour type {color_type}"
        ));
    }
    if data[10] != 0 || data[11] != 0 || data[12] > 1 {
        return Err("compression, filter or interlace method out of range".into());
    }
    Ok(PngInfo {
        width,
        height,
        bit_depth,
        color_type,
    })
}

/// A validated body, ready for an [`IngestHandler`].
#[derive(Debug)]
#[non_exhaustive]
pub enum IngestBody {
    /// A PNG, sent to clients as it is.
    Png {
        /// The file.
        png: Vec<u8>,
        /// Its header.
        info: PngInfo,
    },
    /// A `.npy` array, converted and encoded when sent.
    Npy {
        /// The whole file.
        bytes: Vec<u8>,
        /// Its checked header.
        header: NpyHeader,
        /// The layout it is read with.
        layout: Layout,
        /// `[B,H,W,C]` under that layout.
        shape: [usize; 4],
    },
}

/// One validated ingest request: an event, a target and a body.
#[derive(Debug)]
#[non_exhaustive]
pub struct IngestJob {
    /// The event name.
    pub event: String,
    /// Who gets the frames.
    pub target: Target,
    /// The body.
    pub body: IngestBody,
}

impl IngestJob {
    /// Number of frames this job sends.
    pub fn frames(&self) -> usize {
        match &self.body {
            IngestBody::Png { .. } => 1,
            IngestBody::Npy { shape, .. } => shape[0],
        }
    }

    /// `(width, height)` of its frames.
    pub fn size(&self) -> (usize, usize) {
        match &self.body {
            IngestBody::Png { info, .. } => (info.width as usize, info.height as usize),
            IngestBody::Npy { shape, .. } => (shape[2], shape[1]),
        }
    }

    /// Sends the job through `sender`: a PNG unchanged ([`Sender::send_png`]), a `.npy` array
    /// decoded, converted with the sender's options and encoded ([`Sender::send`]; float64 is
    /// quantised in f64 first, as `pngcast encode` does). The costly part of ingest: call it off
    /// the transport's I/O threads.
    pub fn send(self, sender: &mut Sender) -> Result<SendReport, SendError> {
        let extra = FrameExtra::default();
        match self.body {
            IngestBody::Png { png, info } => sender.send_png(
                &self.event,
                png,
                info.width,
                info.height,
                &self.target,
                &extra,
            ),
            IngestBody::Npy {
                bytes,
                header,
                layout,
                ..
            } => {
                let mut array = NpyArray::decode(&header, &bytes);
                drop(bytes);
                array.quantize_f64(sender.convert().quantize == Quantize::Round);
                let view = array.view(layout).map_err(|e| SendError::Encode {
                    index: 0,
                    source: pngcast_core::Error::InvalidOption(format!(".npy body: {e}")),
                })?;
                sender.send(&self.event, &view, &self.target, &extra)
            }
        }
    }
}

/// Why an [`IngestHandler`] did not take a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubmitError {
    /// Its queue is full: the client should retry later (503 with `Retry-After: 1`).
    Busy,
    /// It is shutting down (503).
    ShuttingDown,
}

/// Takes validated ingest jobs. Supplied by the application (the CLI's `serve`), carried in
/// [`ServerConfig::ingest`], called by [`respond`] on a transport's I/O thread: `submit` must
/// return at once (queue the job for another thread, or refuse it), never decode or encode.
pub trait IngestHandler: Send + Sync {
    /// Queues `job`, or says why not.
    fn submit(&self, job: IngestJob) -> Result<(), SubmitError>;
}

/// A shared [`IngestHandler`], as [`ServerConfig`] holds it. Two handles are equal when they
/// share one handler.
#[derive(Clone)]
pub struct IngestHandle(Arc<dyn IngestHandler>);

impl IngestHandle {
    /// Wraps a handler.
    pub fn new(handler: impl IngestHandler + 'static) -> IngestHandle {
        IngestHandle(Arc::new(handler))
    }
    /// Wraps a shared handler.
    pub fn from_arc(handler: Arc<dyn IngestHandler>) -> IngestHandle {
        IngestHandle(handler)
    }
    /// The handler.
    pub fn handler(&self) -> &dyn IngestHandler {
        &*self.0
    }
}

impl fmt::Debug for IngestHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IngestHandle(..)")
    }
}

impl PartialEq for IngestHandle {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for IngestHandle {}

/// Validates `body` for `route` (its declared or sniffed kind) into a job. Cheap: a PNG's
/// chunk walk and CRCs, a `.npy` header; no pixel is decoded.
pub fn validate(route: &IngestRoute, body: Vec<u8>) -> Result<IngestJob, IngestError> {
    if body.is_empty() {
        return Err(IngestError::new(400, "empty body"));
    }
    let is_png = body.starts_with(PNG_SIGNATURE);
    let is_npy = body.starts_with(crate::npy::MAGIC);
    let png = match route.kind {
        BodyKind::Png => true,
        BodyKind::Npy => false,
        BodyKind::Sniff if is_png => true,
        BodyKind::Sniff if is_npy => false,
        BodyKind::Sniff => {
            return Err(IngestError::new(
                415,
                "the body is neither a PNG nor a .npy array (unknown magic bytes)",
            ))
        }
    };
    let target = match &route.client_id {
        Some(id) => Target::client(id.as_str()),
        None => Target::All,
    };
    let body = if png {
        if route.layout.is_some() {
            return Err(IngestError::new(
                400,
                "?layout= applies to .npy bodies only",
            ));
        }
        let info = validate_png(&body)?;
        check_pixels(info.width as u64, info.height as u64)?;
        IngestBody::Png { png: body, info }
    } else {
        let header = NpyHeader::parse(&body)?;
        let layout = match route.layout {
            Some(l) => l,
            None => Layout::guess(&header.dims)
                .map_err(|e| IngestError::new(422, format!(".npy body: {e} (add &layout=NAME)")))?,
        };
        let shape = header.check_layout(layout)?;
        check_pixels(shape[2] as u64, shape[1] as u64)?;
        IngestBody::Npy {
            bytes: body,
            header,
            layout,
            shape,
        }
    };
    Ok(IngestJob {
        event: route.event.clone(),
        target,
        body,
    })
}

fn check_pixels(width: u64, height: u64) -> Result<(), IngestError> {
    if width.saturating_mul(height) > MAX_INGEST_PIXELS {
        return Err(IngestError::new(
            422,
            format!("image of {width}x{height} pixels is beyond the limit of {MAX_INGEST_PIXELS} pixels"),
        ));
    }
    Ok(())
}

/// The whole answer to an ingest request whose body has been read: validates it, hands the job
/// to the configured handler, counts the outcome in [`ServerConfig::metrics`], and returns the
/// complete HTTP response (`Connection: close`). A body whose length is not the route's
/// `content_length` is answered 400; a config without a handler 404.
pub fn respond(route: &IngestRoute, body: Vec<u8>, config: &ServerConfig) -> Vec<u8> {
    let len = body.len();
    let result = (|| {
        if len != route.content_length {
            return Err(IngestError::new(
                400,
                format!(
                    "body of {len} bytes, Content-Length said {}",
                    route.content_length
                ),
            ));
        }
        let Some(handle) = &config.ingest else {
            return Err(IngestError::new(
                404,
                "ingest is not enabled on this server",
            ));
        };
        let job = validate(route, body)?;
        let kind = match job.body {
            IngestBody::Png { .. } => "png",
            IngestBody::Npy { .. } => "npy",
        };
        let (frames, (width, height)) = (job.frames(), job.size());
        handle.handler().submit(job).map_err(|e| match e {
            SubmitError::Busy => IngestError::new(503, "busy: the ingest queue is full, retry"),
            SubmitError::ShuttingDown => IngestError::new(503, "the server is shutting down"),
        })?;
        let mut answer = serde_json::json!({
            "queued": true,
            "event": route.event,
            "kind": kind,
            "frames": frames,
            "width": width,
            "height": height,
            "bytes": len,
        });
        if let Some(id) = &route.client_id {
            answer["clientId"] = id.as_str().into();
        }
        Ok(answer.to_string())
    })();
    match result {
        Ok(json) => {
            config.metrics.record_ingest(IngestOutcome::Accepted, len);
            let mut json = json;
            json.push('\n');
            response_with(202, "application/json", &[], json.as_bytes())
        }
        Err(e) => {
            let outcome = if e.status == 503 {
                IngestOutcome::Busy
            } else {
                IngestOutcome::BadBody
            };
            config.metrics.record_ingest(outcome, len);
            e.response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::MemorySink;
    use pngcast_core::png::{EncodeOptions, Encoder};
    use pngcast_core::tensor::ImageView;
    use std::sync::Mutex;

    /// A handler that keeps the jobs (or refuses them all when `busy`).
    #[derive(Default)]
    struct Keep {
        jobs: Mutex<Vec<IngestJob>>,
        busy: bool,
    }

    impl IngestHandler for Arc<Keep> {
        fn submit(&self, job: IngestJob) -> Result<(), SubmitError> {
            if self.busy {
                return Err(SubmitError::Busy);
            }
            self.jobs.lock().unwrap().push(job);
            Ok(())
        }
    }

    fn config(keep: &Arc<Keep>) -> ServerConfig {
        ServerConfig::default().ingest_handler(Arc::clone(keep))
    }

    /// A real PNG from the encoder: `w` x `h` RGB.
    fn png(w: usize, h: usize) -> Vec<u8> {
        let px: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
        let img = ImageView::hwc(&px[..], [h, w, 3]).unwrap();
        let mut out = Vec::new();
        Encoder::new(EncodeOptions::default())
            .unwrap()
            .encode_image_into(&img, Default::default(), &mut out)
            .unwrap();
        out
    }

    fn chunks(png: &[u8]) -> Vec<([u8; 4], Vec<u8>)> {
        let mut out = Vec::new();
        let mut pos = 8;
        while pos < png.len() {
            let len = u32::from_be_bytes(png[pos..pos + 4].try_into().unwrap()) as usize;
            let kind: [u8; 4] = png[pos + 4..pos + 8].try_into().unwrap();
            out.push((kind, png[pos + 8..pos + 8 + len].to_vec()));
            pos += 12 + len;
        }
        out
    }

    fn assemble(chunks: &[([u8; 4], Vec<u8>)]) -> Vec<u8> {
        let mut out = PNG_SIGNATURE.to_vec();
        for (kind, data) in chunks {
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            out.extend_from_slice(kind);
            out.extend_from_slice(data);
            let mut crc = crc32fast::Hasher::new();
            crc.update(kind);
            crc.update(data);
            out.extend_from_slice(&crc.finalize().to_be_bytes());
        }
        out
    }

    fn with_ihdr(png: &[u8], edit: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
        let mut c = chunks(png);
        edit(&mut c[0].1);
        assemble(&c)
    }

    fn status_of(response: &[u8]) -> u16 {
        std::str::from_utf8(&response[9..12])
            .unwrap()
            .parse()
            .unwrap()
    }

    fn body_of(response: &[u8]) -> String {
        let text = String::from_utf8_lossy(response);
        text.split_once("\r\n\r\n").unwrap().1.to_owned()
    }

    fn f32_npy(shape: &str, values: &[f32]) -> Vec<u8> {
        let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        crate::npy::build("<f4", false, shape, &data)
    }

    /// Sends every kept job through a sender into a memory sink; the PNGs of the frames.
    fn deliver(keep: &Keep) -> Vec<(String, Vec<u8>)> {
        let mem = Arc::new(MemorySink::new());
        let mut sender = Sender::new(mem.clone(), EncodeOptions::default()).unwrap();
        for job in keep.jobs.lock().unwrap().drain(..) {
            job.send(&mut sender).unwrap();
        }
        mem.log()
            .iter()
            .map(|(_, r)| {
                let f = r.as_image().unwrap();
                (f.meta().event.clone(), f.png().to_vec())
            })
            .collect()
    }

    fn decode(png: &[u8]) -> (png::OutputInfo, Vec<u8>) {
        let mut reader = png::Decoder::new(std::io::Cursor::new(png))
            .read_info()
            .unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info, buf)
    }

    #[test]
    fn png_passes_through_unchanged() {
        let keep = Arc::new(Keep::default());
        let c = config(&keep);
        let p = png(5, 3);
        let route = IngestRoute::new("shot", p.len()).kind(BodyKind::Png);
        let r = respond(&route, p.clone(), &c);
        assert_eq!(status_of(&r), 202, "{}", String::from_utf8_lossy(&r));
        let v: serde_json::Value = serde_json::from_str(&body_of(&r)).unwrap();
        assert_eq!(v["kind"], "png");
        assert_eq!(
            (v["width"].as_u64(), v["height"].as_u64()),
            (Some(5), Some(3))
        );
        assert_eq!(v["frames"], 1);
        assert_eq!(v["bytes"], p.len());
        let sent = deliver(&keep);
        assert_eq!(sent, vec![("shot".to_owned(), p.clone())]);
        // Sniffed the same.
        let r = respond(&IngestRoute::new("x", p.len()), p, &c);
        assert_eq!(status_of(&r), 202);
        assert_eq!(
            c.metrics
                .ingest_count(crate::metrics::IngestOutcome::Accepted),
            2
        );
    }

    #[test]
    fn npy_is_converted_and_encoded() {
        let keep = Arc::new(Keep::default());
        let c = config(&keep);
        // f32 [H=5,W=2,C=3] with NaN, negatives and values past 1.
        let mut vals: Vec<f32> = (0..30).map(|i| i as f32 / 29.0).collect();
        vals[0] = f32::NAN;
        vals[1] = -0.5;
        vals[2] = 7.0;
        let body = f32_npy("(5, 2, 3)", &vals);
        let r = respond(&IngestRoute::new("a", body.len()), body, &c);
        assert_eq!(status_of(&r), 202, "{}", body_of(&r));
        // f16 [B=2,H=1,W=2,C=1] and u8 [H=2,W=2] gray.
        let halves: Vec<u8> = [0.0f32, 0.5, 1.0, 0.25]
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect();
        let body = crate::npy::build("<f2", false, "(2, 1, 2, 1)", &halves);
        let r = respond(
            &IngestRoute::new("b", body.len())
                .kind(BodyKind::Npy)
                .layout(Some(Layout::Bhwc)),
            body,
            &c,
        );
        assert_eq!(status_of(&r), 202, "{}", body_of(&r));
        let v: serde_json::Value = serde_json::from_str(&body_of(&r)).unwrap();
        assert_eq!(v["frames"], 2);
        let body = crate::npy::build("|u1", false, "(2, 2)", &[0, 50, 100, 255]);
        let r = respond(&IngestRoute::new("c", body.len()), body, &c);
        assert_eq!(status_of(&r), 202, "{}", body_of(&r));
        // Channels-first with an explicit layout.
        let body = crate::npy::build("|u1", false, "(3, 1, 2)", &[0, 1, 10, 11, 20, 21]);
        let route = IngestRoute::new("d", body.len()).layout(Some(Layout::Chw));
        assert_eq!(status_of(&respond(&route, body, &c)), 202);

        let sent = deliver(&keep);
        let events: Vec<&str> = sent.iter().map(|(e, _)| e.as_str()).collect();
        assert_eq!(events, ["a", "b", "b", "c", "d"]);
        let (info, px) = decode(&sent[0].1);
        assert_eq!((info.width, info.height), (2, 5));
        let want: Vec<u8> = vals
            .iter()
            .map(|v| {
                if v.is_nan() {
                    0
                } else {
                    (v * 255.0).clamp(0.0, 255.0) as u8
                }
            })
            .collect();
        assert_eq!(px, want);
        assert_eq!(decode(&sent[1].1).1, [0, 127]);
        assert_eq!(decode(&sent[2].1).1, [255, 63]);
        assert_eq!(decode(&sent[3].1).1, [0, 50, 100, 255]);
        assert_eq!(decode(&sent[4].1).1, [0, 10, 20, 1, 11, 21]);
    }

    #[test]
    fn hostile_bodies() {
        let keep = Arc::new(Keep::default());
        let c = config(&keep);
        let good = png(4, 4);
        let mut bad_crc = good.clone();
        let n = bad_crc.len();
        bad_crc[n - 20] ^= 0x40; // inside IDAT's data
        let mut trailing = good.clone();
        trailing.extend_from_slice(b"junk");
        let no_iend = {
            let c = chunks(&good);
            assemble(&c[..c.len() - 1])
        };
        let no_idat = {
            let c = chunks(&good);
            assemble(&[c[0].clone(), c[c.len() - 1].clone()])
        };
        let critical = {
            let mut c = chunks(&good);
            c.insert(1, (*b"ABCD", vec![1, 2]));
            assemble(&c)
        };
        let ancillary = {
            let mut c = chunks(&good);
            c.insert(1, (*b"abCD", vec![1, 2]));
            assemble(&c)
        };
        let u8_hwc = crate::npy::build("|u1", false, "(2, 2, 3)", &[9; 12]);
        let cases: Vec<(&str, Vec<u8>, BodyKind, u16, &str)> = vec![
            ("empty", vec![], BodyKind::Sniff, 400, "empty"),
            (
                "noise",
                b"hello world".to_vec(),
                BodyKind::Sniff,
                415,
                "neither",
            ),
            (
                "png declared, npy sent",
                u8_hwc.clone(),
                BodyKind::Png,
                400,
                "signature",
            ),
            (
                "npy declared, png sent",
                good.clone(),
                BodyKind::Npy,
                400,
                "not a .npy",
            ),
            (
                "truncated png",
                good[..good.len() / 2].to_vec(),
                BodyKind::Sniff,
                400,
                "truncated",
            ),
            (
                "signature only",
                PNG_SIGNATURE.to_vec(),
                BodyKind::Sniff,
                400,
                "truncated",
            ),
            ("wrong CRC", bad_crc, BodyKind::Sniff, 400, "CRC"),
            ("after IEND", trailing, BodyKind::Sniff, 400, "after IEND"),
            ("no IEND", no_iend, BodyKind::Sniff, 400, "IEND"),
            ("no IDAT", no_idat, BodyKind::Sniff, 400, "no IDAT"),
            (
                "unknown critical chunk",
                critical,
                BodyKind::Sniff,
                400,
                "critical",
            ),
            (
                "huge dims",
                with_ihdr(&good, |d| d[..8].copy_from_slice(&[0, 1, 0, 0, 0, 1, 0, 0])),
                BodyKind::Sniff,
                422,
                "limit",
            ),
            (
                "zero width",
                with_ihdr(&good, |d| d[..4].copy_from_slice(&[0; 4])),
                BodyKind::Sniff,
                400,
                "out of range",
            ),
            (
                "side past 2^31",
                with_ihdr(&good, |d| d[..4].copy_from_slice(&[0x80, 0, 0, 1])),
                BodyKind::Sniff,
                400,
                "out of range",
            ),
            (
                "bad bit depth",
                with_ihdr(&good, |d| d[8] = 3),
                BodyKind::Sniff,
                400,
                "bit depth",
            ),
            (
                "bad colour type",
                with_ihdr(&good, |d| d[9] = 5),
                BodyKind::Sniff,
                400,
                "colour",
            ),
            (
                "short IHDR",
                with_ihdr(&good, |d| d.truncate(12)),
                BodyKind::Sniff,
                400,
                "IHDR",
            ),
            (
                "truncated npy data",
                f32_npy("(2, 2, 3)", &[0.5; 12])[..100].to_vec(),
                BodyKind::Sniff,
                400,
                "truncated",
            ),
            (
                "truncated npy header",
                f32_npy("(2, 2, 3)", &[0.5; 12])[..30].to_vec(),
                BodyKind::Sniff,
                400,
                "truncated",
            ),
            (
                "npy bytes past the data",
                [f32_npy("(2, 2, 3)", &[0.5; 12]), vec![0; 4]].concat(),
                BodyKind::Sniff,
                400,
                "after the data",
            ),
            (
                "bad dtype",
                crate::npy::build("<i4", false, "(2, 2)", &[0; 16]),
                BodyKind::Sniff,
                422,
                "dtype",
            ),
            (
                "complex dtype",
                crate::npy::build("<c8", false, "(2, 2)", &[0; 32]),
                BodyKind::Sniff,
                422,
                "dtype",
            ),
            (
                "wrong header",
                crate::npy::build("<f4", false, "'nope'", &[]),
                BodyKind::Sniff,
                400,
                "header",
            ),
            (
                "huge npy dims",
                crate::npy::build("<f4", false, "(4294967296, 4294967296, 4294967296)", &[]),
                BodyKind::Sniff,
                422,
                "too large",
            ),
            (
                "huge npy image, small body",
                crate::npy::build("|u1", false, "(1, 100000, 100000, 1)", &[0; 64]),
                BodyKind::Sniff,
                400,
                "truncated",
            ),
            (
                "zero size",
                crate::npy::build("|u1", false, "(0, 3)", &[]),
                BodyKind::Sniff,
                422,
                "zero",
            ),
            (
                "ambiguous shape",
                crate::npy::build("|u1", false, "(3, 2, 2)", &[0; 12]),
                BodyKind::Sniff,
                422,
                "layout",
            ),
            (
                "rank 1",
                crate::npy::build("|u1", false, "(3,)", &[0; 3]),
                BodyKind::Sniff,
                422,
                "shape",
            ),
            (
                "5 channels",
                crate::npy::build("|u1", false, "(1, 5, 5, 5)", &[0; 125]),
                BodyKind::Sniff,
                422,
                "channels",
            ),
        ];
        for (name, body, kind, want, text) in cases {
            let route = IngestRoute::new("e", body.len()).kind(kind);
            let r = respond(&route, body, &c);
            let msg = body_of(&r);
            assert_eq!(status_of(&r), want, "{name}: {msg}");
            assert!(msg.contains(text), "{name}: `{msg}` lacks `{text}`");
            assert!(msg.ends_with('\n') && msg.lines().count() == 1, "{name}");
            assert!(String::from_utf8_lossy(&r).contains("Content-Type: text/plain"));
        }
        // An ancillary chunk unknown to us is fine.
        let route = IngestRoute::new("e", ancillary.len());
        assert_eq!(status_of(&respond(&route, ancillary, &c)), 202);
        assert_eq!(keep.jobs.lock().unwrap().len(), 1);
        // Layout given for a PNG; the wrong rank for a .npy.
        let route = IngestRoute::new("e", good.len()).layout(Some(Layout::Hwc));
        assert_eq!(status_of(&respond(&route, good.clone(), &c)), 400);
        let route = IngestRoute::new("e", u8_hwc.len()).layout(Some(Layout::Bhwc));
        assert_eq!(status_of(&respond(&route, u8_hwc.clone(), &c)), 422);
        // A body shorter than announced.
        let route = IngestRoute::new("e", good.len() + 1);
        assert_eq!(status_of(&respond(&route, good.clone(), &c)), 400);
        assert!(
            c.metrics
                .ingest_count(crate::metrics::IngestOutcome::BadBody)
                >= 30,
            "every refusal counted"
        );
    }

    #[test]
    fn busy_and_disabled() {
        let busy = Arc::new(Keep {
            busy: true,
            ..Keep::default()
        });
        let c = config(&busy);
        let p = png(2, 2);
        let r = respond(&IngestRoute::new("e", p.len()), p.clone(), &c);
        assert_eq!(status_of(&r), 503);
        assert!(String::from_utf8_lossy(&r).contains("Retry-After: 1\r\n"));
        assert_eq!(
            c.metrics.ingest_count(crate::metrics::IngestOutcome::Busy),
            1
        );
        let r = respond(&IngestRoute::new("e", p.len()), p, &ServerConfig::default());
        assert_eq!(status_of(&r), 404);
    }

    #[test]
    fn targets_one_client() {
        let keep = Arc::new(Keep::default());
        let c = config(&keep);
        let p = png(2, 2);
        let route = IngestRoute::new("e", p.len()).client_id(Some("me".into()));
        let r = respond(&route, p, &c);
        let v: serde_json::Value = serde_json::from_str(&body_of(&r)).unwrap();
        assert_eq!(v["clientId"], "me");
        assert_eq!(keep.jobs.lock().unwrap()[0].target, Target::client("me"));
    }

    #[test]
    fn content_types() {
        let k = |v| BodyKind::from_content_type(v);
        assert_eq!(k(None), Some(BodyKind::Sniff));
        assert_eq!(k(Some("image/PNG")), Some(BodyKind::Png));
        assert_eq!(k(Some("application/x-npy; foo=bar")), Some(BodyKind::Npy));
        assert_eq!(k(Some("application/octet-stream")), Some(BodyKind::Sniff));
        assert_eq!(
            k(Some("application/x-www-form-urlencoded")),
            Some(BodyKind::Sniff)
        );
        assert_eq!(k(Some("image/jpeg")), None);
        assert_eq!(k(Some("text/plain")), None);
    }

    #[test]
    fn mutated_bodies_never_panic() {
        let keep = Arc::new(Keep::default());
        let c = config(&keep);
        let seeds = [
            png(3, 2),
            f32_npy("(2, 2, 3)", &[0.5; 12]),
            crate::npy::build("<f2", true, "(1, 2, 2, 1)", &[0; 8]),
        ];
        let mut rng = fastrand::Rng::with_seed(5);
        for round in 0..3000 {
            let mut body = seeds[round % seeds.len()].clone();
            for _ in 0..rng.usize(1..4) {
                let i = rng.usize(..body.len());
                match rng.u8(0..3) {
                    0 => body[i] = rng.u8(..),
                    1 => body.truncate(i.max(1)),
                    _ => body.insert(i, rng.u8(..)),
                }
            }
            let route = IngestRoute::new("e", body.len());
            let s = status_of(&respond(&route, body, &c));
            assert!(matches!(s, 202 | 400 | 415 | 422), "{s}");
        }
        // Whatever was accepted also sends (or fails cleanly), never panics.
        let mem = Arc::new(MemorySink::new());
        let mut sender = Sender::new(mem, EncodeOptions::default()).unwrap();
        for job in keep.jobs.lock().unwrap().drain(..) {
            let _ = job.send(&mut sender);
        }
    }
}
