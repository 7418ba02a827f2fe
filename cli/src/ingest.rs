//! `serve`'s ingest worker: the [`IngestHandler`] the transports call on their I/O threads only
//! queues a validated job (a bounded channel; full means 503 "busy"), and one thread of its own
//! decodes, converts, encodes and sends it through a [`Sender`] on the server's sink, so a large
//! `.npy` body never stalls the clients' sockets.
#![forbid(unsafe_code)]

use std::num::NonZeroUsize;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use pngcast_core::png::{EncodeOptions, Threads};
use pngcast_protocol::ingest::{IngestHandle, IngestHandler, IngestJob, SubmitError};
use pngcast_protocol::metrics::Metrics;
use pngcast_protocol::sender::Sender;
use pngcast_protocol::sink::FrameSink;

use crate::error::CliError;

/// Jobs waiting besides the one being encoded: bounds memory to about three bodies.
pub const QUEUE: usize = 2;

/// The handler half: queues jobs for the worker.
struct Queue(SyncSender<IngestJob>);

impl IngestHandler for Queue {
    fn submit(&self, job: IngestJob) -> Result<(), SubmitError> {
        match self.0.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(SubmitError::Busy),
            Err(TrySendError::Disconnected(_)) => Err(SubmitError::ShuttingDown),
        }
    }
}

/// The worker half, started once the server (and so its sink) exists.
pub struct Pending(Receiver<IngestJob>);

/// A handle for [`pngcast_protocol::http::ServerConfig::ingest`] and the worker that serves it.
/// Jobs accepted before [`Pending::start`] wait in the queue.
pub fn channel() -> (IngestHandle, Pending) {
    let (tx, rx) = mpsc::sync_channel(QUEUE);
    (IngestHandle::new(Queue(tx)), Pending(rx))
}

impl Pending {
    /// Starts the worker thread: a sender of its own (encoder, frame pool) with `options`, on
    /// `sink`, recording encode times into `metrics`. It ends when every handle is dropped.
    /// Its encoder gets a private thread pool: the global one is shared with the tick loop.
    pub fn start(
        self,
        sink: Arc<dyn FrameSink>,
        options: EncodeOptions,
        announce: bool,
        metrics: Arc<Metrics>,
    ) -> Result<(), CliError> {
        let threads = std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN);
        let options = options.threads(Threads::Fixed(threads));
        let mut sender = Sender::new(sink, options)?
            .announce(announce)
            .metrics(metrics);
        let rx = self.0;
        std::thread::Builder::new()
            .name("pngcast-ingest".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    let event = job.event.clone();
                    let target = job.target.clone();
                    match job.send(&mut sender) {
                        Ok(r) => log::debug!(
                            "ingest: {} of event {event:?} sent ({} PNG bytes)",
                            crate::serve::plural(r.frames as u64, "frame"),
                            r.png_bytes
                        ),
                        Err(e) => log::warn!("ingest: event {event:?} to {target:?}: {e}"),
                    }
                }
            })
            .map_err(|e| CliError::new(format!("cannot start the ingest thread: {e}")))?;
        Ok(())
    }
}
