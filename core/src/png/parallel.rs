#![forbid(unsafe_code)]
//! Stripe planning and execution: cut the rows into stripes, code them on rayon, each into its
//! own reusable output slot, then checksum-merge and copy the slots into the PNG as IDAT chunks.
//! Stripes coded one after another on one thread skip the slots: each is coded straight into the
//! PNG buffer behind its IDAT chunk header ([`Stripes::code_in_place`]), with the same bytes.
//!
//! The plan depends only on the image geometry and the options, never on the thread count, so
//! the output bytes are the same on 1 thread or 64.

use std::num::NonZeroU32;
use std::sync::{Mutex, PoisonError};

use rayon::prelude::*;
use rayon::ThreadPool;

use super::adler::adler32_combine;
use super::chunk::{chunk_crc, CHUNK_OVERHEAD, MAX_CHUNK_DATA};
use super::deflate::stored_overhead;
use super::stripe::{StripeOut, StripeScratch};
use super::{fast, Compression};

/// Auto plan: a stripe holds at least this many filtered bytes (smaller images use one stripe;
/// every sync-flushed stripe boundary costs a few bytes and the lost deflate window).
pub(crate) const AUTO_MIN_STRIPE_BYTES: usize = 128 << 10;
/// Auto plan: at most this many stripes (enough to balance 16 threads with 2 stripes each).
pub(crate) const AUTO_MAX_STRIPES: usize = 32;

/// How the rows are cut: `count` stripes of `rows_per` rows, the last one possibly shorter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StripePlan {
    /// Rows per stripe (the last stripe may hold fewer).
    pub rows_per: usize,
    /// Number of stripes, >= 1.
    pub count: usize,
}

impl StripePlan {
    /// Plans `height` rows of `row_bytes` (unfiltered) bytes. `requested` fixes the rows per
    /// stripe; `None` takes one stripe per >= [`AUTO_MIN_STRIPE_BYTES`], at most
    /// [`AUTO_MAX_STRIPES`], rounded down to a multiple of 4 from 4 up. `height >= 1`.
    pub(crate) fn new(height: usize, row_bytes: usize, requested: Option<NonZeroU32>) -> Self {
        let height = height.max(1);
        let rows_per = match requested {
            Some(r) => (r.get() as usize).min(height),
            None => {
                let raw = height.saturating_mul(row_bytes + 1);
                let mut count = (raw / AUTO_MIN_STRIPE_BYTES).clamp(1, AUTO_MAX_STRIPES);
                // From 4 stripes up, a multiple of 4, so 2 and 4 threads get equal shares
                // (9 stripes on 2 threads leave one thread idle for a ninth of the frame).
                if count >= 4 {
                    count -= count % 4;
                }
                let count = count.min(height);
                height.div_ceil(count)
            }
        };
        Self {
            rows_per,
            count: height.div_ceil(rows_per),
        }
    }

    /// Rows `y0..y1` of stripe `i`.
    pub(crate) fn rows(&self, i: usize, height: usize) -> (usize, usize) {
        let y0 = i * self.rows_per;
        (y0, (y0 + self.rows_per).min(height))
    }
}

/// Where stripes run for one frame.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Exec<'p> {
    /// On the calling thread, in order.
    Serial,
    /// On the rayon pool of the calling context.
    Current,
    /// On this pool.
    Pool(&'p ThreadPool),
}

impl Exec<'_> {
    /// Runs `f` where the stripes run; `f` gets `true` when it may use rayon in parallel.
    /// One `install` per frame: entering a pool from outside pushes one job on rayon's injector.
    pub(crate) fn run<R: Send>(self, f: impl FnOnce(bool) -> R + Send) -> R {
        match self {
            Exec::Serial => f(false),
            // Inside a pool already: its workers run the stripes. Outside any pool: enter the
            // global pool once, so that coding and the parallel copy share one injected job.
            Exec::Current if rayon::current_thread_index().is_some() => f(true),
            Exec::Current => rayon::scope(|_| f(true)),
            Exec::Pool(pool) => pool.install(|| f(true)),
        }
    }
}

/// One stripe's coded output, kept across frames so its capacity is reused.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    /// Raw deflate bytes of this stripe (the first slot starts with the zlib header; the last
    /// slot ends with the Adler-32 trailer once it is merged).
    pub data: StripeOut,
    /// Adler-32 of the stripe's filtered bytes.
    pub adler: u32,
    /// Filtered bytes the stripe contributes to the zlib payload.
    pub filtered_len: u64,
    /// CRC-32 of the IDAT chunk holding `data` (valid when `data` fits one chunk).
    pub crc: u32,
    /// Most bytes any coder writes for this stripe, zlib header and trailer included (the room
    /// it asks for, which may exceed what it keeps).
    pub bound: usize,
}

/// Slots and worker scratch kept by the encoder between frames.
#[derive(Debug, Default)]
pub(crate) struct Stripes {
    /// One per stripe of the current plan.
    pub slots: Vec<Slot>,
    /// Free list of worker scratch: a worker pops one for the stripes it codes and pushes it
    /// back; no lock is held while coding.
    workers: Mutex<Vec<StripeScratch>>,
    /// The fast coder's frame sampler: its buffers, and converted rows for the tensor path.
    pub sampler: fast::FastScratch,
    /// Rows converted for the sampler (tensor path).
    pub sample_rows: Vec<u8>,
}

/// Pops a scratch from the free list on creation and pushes it back on drop.
struct WorkerGuard<'a> {
    list: &'a Mutex<Vec<StripeScratch>>,
    scratch: Option<StripeScratch>,
}

impl<'a> WorkerGuard<'a> {
    fn take(list: &'a Mutex<Vec<StripeScratch>>) -> Self {
        let scratch = list.lock().unwrap_or_else(PoisonError::into_inner).pop();
        // Only when more workers run at once than were prepared (cannot happen after
        // `prepare`, which makes one per thread), a fresh scratch is made.
        Self {
            list,
            scratch: Some(scratch.unwrap_or_default()),
        }
    }

    fn get(&mut self) -> &mut StripeScratch {
        self.scratch.get_or_insert_with(StripeScratch::default)
    }
}

impl Drop for WorkerGuard<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.scratch.take() {
            self.list
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(s);
        }
    }
}

/// Worst-case raw deflate bytes for `filtered` bytes: miniz_oxide and the stored coder both fall
/// back to stored blocks when coding would expand, so stored framing plus slack for the final
/// and sync-flush blocks bounds every coder (+2 for the zlib header, +4 for the trailer).
pub(crate) fn deflate_bound(filtered: usize) -> usize {
    filtered + stored_overhead(filtered) + filtered / 1024 + 64
}

impl Stripes {
    /// Plans the slots and sizes the worker scratch for a frame, so that coding it allocates
    /// nothing: one slot per stripe with its worst case known, and one scratch per concurrent
    /// worker. The slots get their room from [`Stripes::reserve_slots`], unless the stripes are
    /// coded in place ([`Stripes::code_in_place`]).
    pub(crate) fn prepare(
        &mut self,
        plan: StripePlan,
        height: usize,
        row_bytes: usize,
        compression: Compression,
        workers: usize,
        convert_bytes: Option<usize>,
    ) {
        self.slots.resize_with(plan.count, Slot::default);
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let (y0, y1) = plan.rows(i, height);
            slot.filtered_len = ((y1 - y0) * (row_bytes + 1)) as u64;
            slot.data.clear();
            // + 2 for the zlib header (first slot), + 4 for the trailer (last slot).
            let coder = match compression {
                Compression::Fast(_) => fast::out_bound(row_bytes, y1 - y0),
                _ => 0,
            };
            slot.bound = deflate_bound(slot.filtered_len as usize).max(coder) + 6;
        }
        let stripe_bytes = plan.rows_per * (row_bytes + 1);
        let list = self
            .workers
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        let want = workers.clamp(1, plan.count);
        if list.len() < want {
            list.resize_with(want, StripeScratch::default);
        }
        // Capacity for every worker to push its scratch back without growing the list.
        list.reserve(want);
        for s in list.iter_mut() {
            s.reserve(compression, row_bytes, stripe_bytes);
            if let Some(bytes) = convert_bytes {
                // `reserve` counts from the current length: ask for the difference.
                s.convert.reserve(bytes.saturating_sub(s.convert.len()));
            }
        }
    }

    /// Gives every slot room for its stripe's worst case (cheap when already sized), for
    /// [`Stripes::code`].
    pub(crate) fn reserve_slots(&mut self) {
        for slot in &mut self.slots {
            slot.data.reserve(slot.bound);
        }
    }

    /// Worst-case bytes of all IDAT chunks for the current plan (see [`deflate_bound`]),
    /// counting the room coders ask for, so the caller can size the output once and never grow
    /// it when a frame compresses worse, nor when stripes are coded into it in place.
    pub(crate) fn idat_bound(&self) -> usize {
        self.slots
            .iter()
            .map(|s| s.bound + CHUNK_OVERHEAD * s.bound.div_ceil(MAX_CHUNK_DATA).max(1))
            .sum()
    }

    /// True when every stripe of the plan fits one IDAT chunk whatever it codes to, as
    /// [`Stripes::code_in_place`] needs (a stripe over 2 GiB is split into chunks by the copy).
    pub(crate) fn fit_one_chunk_each(&self) -> bool {
        self.slots.iter().all(|s| s.bound <= MAX_CHUNK_DATA)
    }

    /// Codes every stripe in order on this thread, each straight into `out` as one IDAT chunk:
    /// the chunk's length and type, the stripe's raw deflate (the zlib header before the first,
    /// the merged Adler-32 trailer after the last), its CRC. The bytes are those of
    /// [`Stripes::code`], [`Stripes::finish_zlib`] and [`Stripes::write_idats`] together,
    /// without the slots and the copy out of them. Needs [`Stripes::fit_one_chunk_each`].
    pub(crate) fn code_in_place<F>(&self, code: F, out: &mut StripeOut)
    where
        F: Fn(usize, &mut StripeScratch, &mut StripeOut) -> u32,
    {
        let mut g = WorkerGuard::take(&self.workers);
        let mut adler = 1u32;
        let last = self.slots.len().saturating_sub(1);
        for (i, slot) in self.slots.iter().enumerate() {
            let start = out.len();
            out.extend_from_slice(&[0, 0, 0, 0]);
            out.extend_from_slice(b"IDAT");
            adler = adler32_combine(adler, code(i, g.get(), out), slot.filtered_len);
            if i == last {
                out.extend_from_slice(&adler.to_be_bytes());
            }
            let n = out.len() - start - 8;
            assert!(n <= MAX_CHUNK_DATA, "checked by fit_one_chunk_each");
            out.patch(start, &(n as u32).to_be_bytes());
            let crc = chunk_crc(b"IDAT", &out.as_slice()[start + 8..]);
            out.extend_from_slice(&crc.to_be_bytes());
        }
    }

    /// Codes every stripe: `code(i, scratch, out)` appends stripe `i`'s raw deflate to `out` and
    /// returns its Adler-32. Fills the slots (data, adler, IDAT CRC). Runs serially or on the pool.
    pub(crate) fn code<F>(&mut self, parallel: bool, code: F)
    where
        F: Fn(usize, &mut StripeScratch, &mut StripeOut) -> u32 + Sync,
    {
        let one = |g: &mut WorkerGuard<'_>, (i, slot): (usize, &mut Slot)| {
            slot.data.clear();
            slot.adler = code(i, g.get(), &mut slot.data);
            if slot.data.len() <= MAX_CHUNK_DATA {
                slot.crc = chunk_crc(b"IDAT", slot.data.as_slice());
            }
        };
        let workers = &self.workers;
        let slots = &mut self.slots;
        if parallel && slots.len() > 1 {
            // One scratch per stripe while it is coded (not per rayon split: a split's
            // thread may wait in a join and code stolen stripes meanwhile, so per-split
            // scratches could outnumber the threads and force a new one to be allocated).
            slots
                .par_iter_mut()
                .enumerate()
                .for_each(|s| one(&mut WorkerGuard::take(workers), s));
        } else {
            let mut g = WorkerGuard::take(workers);
            slots.iter_mut().enumerate().for_each(|s| one(&mut g, s));
        }
    }

    /// Merges the stripes' Adler-32s into the zlib trailer and appends it to the last slot
    /// (updating that slot's IDAT CRC). O(stripes).
    pub(crate) fn finish_zlib(&mut self) {
        let mut adler = 1u32;
        for s in &self.slots {
            adler = adler32_combine(adler, s.adler, s.filtered_len);
        }
        if let Some(last) = self.slots.last_mut() {
            let trailer = adler.to_be_bytes();
            last.data.extend_from_slice(&trailer);
            let mut crc = crc32fast::Hasher::new_with_initial(last.crc);
            crc.update(&trailer);
            last.crc = crc.finalize();
        }
    }

    /// Bytes the IDAT chunks of all slots take in the file.
    pub(crate) fn idat_len(&self) -> usize {
        self.slots.iter().map(slot_len).sum()
    }

    /// Writes the slots as IDAT chunks into `dst`, which is exactly [`idat_len`](Self::idat_len)
    /// bytes. Copies in parallel (the copies are independent) when `parallel`.
    pub(crate) fn write_idats(&self, parallel: bool, dst: &mut [u8]) {
        write_slots(&self.slots, dst, parallel);
    }
}

/// Bytes one slot takes as IDAT chunk(s).
fn slot_len(s: &Slot) -> usize {
    s.data.len() + CHUNK_OVERHEAD * s.data.len().div_ceil(MAX_CHUNK_DATA).max(1)
}

/// Writes `slots` into `dst` (exactly their size), halving with `rayon::join` when `parallel`.
fn write_slots(slots: &[Slot], dst: &mut [u8], parallel: bool) {
    if parallel && slots.len() > 1 {
        let mid = slots.len() / 2;
        let (left, right) = slots.split_at(mid);
        let left_len: usize = left.iter().map(slot_len).sum();
        let (dl, dr) = dst.split_at_mut(left_len);
        rayon::join(
            || write_slots(left, dl, true),
            || write_slots(right, dr, true),
        );
        return;
    }
    let mut pos = 0;
    for s in slots {
        if s.data.len() <= MAX_CHUNK_DATA {
            pos = put_idat(dst, pos, s.data.as_slice(), s.crc);
        } else {
            // Over 2 GiB in one stripe: split into several chunks, CRC computed here.
            for piece in s.data.as_slice().chunks(MAX_CHUNK_DATA) {
                pos = put_idat(dst, pos, piece, chunk_crc(b"IDAT", piece));
            }
        }
    }
    debug_assert_eq!(pos, dst.len());
}

/// Writes one IDAT chunk at `dst[pos..]`, returns the position after it.
fn put_idat(dst: &mut [u8], pos: usize, data: &[u8], crc: u32) -> usize {
    let n = data.len();
    dst[pos..pos + 4].copy_from_slice(&(n as u32).to_be_bytes());
    dst[pos + 4..pos + 8].copy_from_slice(b"IDAT");
    dst[pos + 8..pos + 8 + n].copy_from_slice(data);
    dst[pos + 8 + n..pos + 12 + n].copy_from_slice(&crc.to_be_bytes());
    pos + 12 + n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans() {
        let nz = |n| NonZeroU32::new(n);
        assert_eq!(
            StripePlan::new(1, 3, None),
            StripePlan {
                rows_per: 1,
                count: 1
            }
        );
        assert_eq!(StripePlan::new(100, 30, None).count, 1);
        assert_eq!(
            StripePlan::new(10, 3, nz(7)),
            StripePlan {
                rows_per: 7,
                count: 2
            }
        );
        assert_eq!(
            StripePlan::new(10, 3, nz(1000)),
            StripePlan {
                rows_per: 10,
                count: 1
            }
        );
        let p = StripePlan::new(1024, 3072, None);
        assert!(p.count > 1 && p.count <= AUTO_MAX_STRIPES, "{p:?}");
        assert!(p.rows_per * 3073 >= AUTO_MIN_STRIPE_BYTES);
        assert_eq!(p.rows(p.count - 1, 1024).1, 1024);
        // kodim23 (768x512 RGB, 9 x 128 KiB): 8 stripes, 4 per thread on 2 threads.
        assert_eq!(StripePlan::new(512, 2304, None).count, 8);
        // Huge images stay within the stripe cap.
        assert_eq!(
            StripePlan::new(100_000, 100_000, None).count,
            AUTO_MAX_STRIPES
        );
    }

    #[test]
    fn crc_continues_across_appends() {
        let mut h = crc32fast::Hasher::new_with_initial(chunk_crc(b"IDAT", b"abc"));
        h.update(b"defg");
        assert_eq!(h.finalize(), chunk_crc(b"IDAT", b"abcdefg"));
    }
}
