#![forbid(unsafe_code)]
//! Operator metrics: lock-free counters the [`crate::sender::Sender`] and the ingest endpoint
//! record into, and the Prometheus text exposition (format 0.0.4) served at `GET /metrics`.
//!
//! A [`Metrics`] is shared through an `Arc`: [`crate::http::ServerConfig::metrics`] holds one,
//! and a sender gets the same `Arc` through [`crate::sender::Sender::metrics`]. Recording is a
//! few relaxed atomic additions; nothing locks. [`render`] turns a [`SinkStats`] snapshot and a
//! `Metrics` into the text a Prometheus server scrapes.
//!
//! ```
//! use std::time::Duration;
//! use pngcast_protocol::metrics::{render, Metrics};
//! use pngcast_protocol::sink::SinkStats;
//! let m = Metrics::new();
//! m.encode.observe(Duration::from_millis(3));
//! let text = render(&SinkStats::default(), &m);
//! assert!(text.contains("pngcast_encode_duration_seconds_count 1\n"));
//! ```

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::sink::SinkStats;

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of the encode-time histogram's buckets; `+Inf` follows.
pub const ENCODE_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A fixed-bucket histogram of durations, recorded with relaxed atomics.
///
/// Each bucket counts the observations that fell in it alone; [`Histogram::snapshot`] makes the
/// cumulative counts Prometheus expects. A snapshot taken while others record may see an
/// observation in its bucket but not yet in the sum (or the reverse); the count is always the
/// sum of the buckets.
#[derive(Debug)]
pub struct Histogram {
    bounds_ns: Vec<u64>,
    bounds_s: Vec<f64>,
    /// One per bound, then the `+Inf` bucket.
    buckets: Vec<AtomicU64>,
    sum_ns: AtomicU64,
}

/// A point-in-time reading of a [`Histogram`].
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound in seconds, observations <= bound)`, cumulative, ascending; the last entry
    /// is `(f64::INFINITY, count)`.
    pub cumulative: Vec<(f64, u64)>,
    /// Sum of the observations in seconds.
    pub sum_seconds: f64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    /// A histogram with these upper bounds in seconds. Panics unless they are finite, positive
    /// and strictly ascending (a programmer error).
    pub fn new(bounds_seconds: &[f64]) -> Histogram {
        assert!(
            bounds_seconds.iter().all(|b| b.is_finite() && *b > 0.0)
                && bounds_seconds.windows(2).all(|w| w[0] < w[1]),
            "histogram bounds must be finite, positive and ascending"
        );
        Histogram {
            bounds_ns: bounds_seconds
                .iter()
                .map(|s| (s * 1e9).round() as u64)
                .collect(),
            bounds_s: bounds_seconds.to_vec(),
            buckets: (0..=bounds_seconds.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = self.bounds_ns.partition_point(|&b| b < ns);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// The cumulative counts, sum and count now.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0u64;
        let mut cumulative = Vec::with_capacity(self.buckets.len());
        for (i, b) in self.buckets.iter().enumerate() {
            total += b.load(Ordering::Relaxed);
            let bound = self.bounds_s.get(i).copied().unwrap_or(f64::INFINITY);
            cumulative.push((bound, total));
        }
        HistogramSnapshot {
            cumulative,
            sum_seconds: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            count: total,
        }
    }
}

/// What became of ingest requests that reached their body (route-level refusals such as 401 or
/// 413 are counted with the other refused requests in [`SinkStats::handshakes_refused`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IngestOutcome {
    /// Validated and handed to the ingest handler.
    Accepted,
    /// Refused for its body (400, 415, 422).
    BadBody,
    /// The handler was busy or shutting down (503).
    Busy,
}

impl IngestOutcome {
    const ALL: [IngestOutcome; 3] = [
        IngestOutcome::Accepted,
        IngestOutcome::BadBody,
        IngestOutcome::Busy,
    ];

    /// The `outcome` label value.
    pub fn label(self) -> &'static str {
        match self {
            IngestOutcome::Accepted => "accepted",
            IngestOutcome::BadBody => "bad_body",
            IngestOutcome::Busy => "busy",
        }
    }
}

/// The metrics a server shares with its senders and its ingest endpoint.
#[derive(Debug)]
#[non_exhaustive]
pub struct Metrics {
    /// Time to convert and encode one frame (recorded by the sender).
    pub encode: Histogram,
    ingest: [AtomicU64; 3],
    ingest_bytes: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Empty metrics with the [`ENCODE_BUCKETS`].
    pub fn new() -> Metrics {
        Metrics {
            encode: Histogram::new(&ENCODE_BUCKETS),
            ingest: Default::default(),
            ingest_bytes: AtomicU64::new(0),
        }
    }

    /// Counts one ingest request that reached its body, of `body_bytes` bytes.
    pub fn record_ingest(&self, outcome: IngestOutcome, body_bytes: usize) {
        let i = IngestOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(0);
        self.ingest[i].fetch_add(1, Ordering::Relaxed);
        if outcome == IngestOutcome::Accepted {
            self.ingest_bytes
                .fetch_add(body_bytes as u64, Ordering::Relaxed);
        }
    }

    /// Ingest requests so far with this outcome.
    pub fn ingest_count(&self, outcome: IngestOutcome) -> u64 {
        let i = IngestOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(0);
        self.ingest[i].load(Ordering::Relaxed)
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "{name}{labels} {value}");
}

/// A Prometheus bucket bound or sum: shortest round-trip form, `+Inf` for infinity.
fn float(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".to_owned()
    } else {
        format!("{v:?}")
    }
}

/// The Prometheus text exposition (format 0.0.4) of a sink's counters and these metrics. Every
/// family has `# HELP` and `# TYPE`; counters end in `_total`; client closes are one family
/// with a `reason` label that splits them: `overflow`, `stall`, `flood` (past the inbound
/// budget), `bad_input` (any other bad input), and `other` for the rest (the client left, was
/// replaced, or the server shut down).
pub fn render(stats: &SinkStats, metrics: &Metrics) -> String {
    let mut out = String::with_capacity(4096);
    let counters: [(&str, &str, u64); 8] = [
        (
            "pngcast_frames_queued_total",
            "Image frames accepted into a client's queue (one per client).",
            stats.frames_queued,
        ),
        (
            "pngcast_frames_sent_total",
            "Image frames completely written to a client's socket.",
            stats.frames_sent,
        ),
        (
            "pngcast_frames_dropped_total",
            "Image frames dropped before they were written (slow client, or closed).",
            stats.frames_dropped,
        ),
        (
            "pngcast_texts_queued_total",
            "Text messages (JSON events, announcements) accepted into a client's queue.",
            stats.texts_queued,
        ),
        (
            "pngcast_sent_bytes_total",
            "Bytes written to client sockets after the handshake.",
            stats.bytes_sent,
        ),
        (
            "pngcast_clients_accepted_total",
            "WebSocket upgrades completed.",
            stats.clients_accepted,
        ),
        (
            "pngcast_handshakes_refused_total",
            "Requests refused at the HTTP stage (4xx/5xx answers, timeouts, bad requests).",
            stats.handshakes_refused,
        ),
        (
            "pngcast_ingest_accepted_bytes_total",
            "Body bytes of accepted ingest requests.",
            metrics.ingest_bytes.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, value) in counters {
        family(&mut out, name, "counter", help);
        sample(&mut out, name, "", value);
    }

    family(
        &mut out,
        "pngcast_clients",
        "gauge",
        "WebSocket clients connected now.",
    );
    sample(&mut out, "pngcast_clients", "", stats.clients);
    family(
        &mut out,
        "pngcast_queued_frame_bytes",
        "gauge",
        "Bytes of distinct frames held by the clients' queues (what the memory budget bounds).",
    );
    sample(&mut out, "pngcast_queued_frame_bytes", "", stats.held_bytes);

    let name = "pngcast_clients_closed_total";
    family(
        &mut out,
        name,
        "counter",
        "Clients whose connection ended after the handshake, by reason.",
    );
    // `closed_flood` is a part of `closed_bad_input`: the labels split the closes, so that
    // `sum by () (pngcast_clients_closed_total)` is every close.
    let named =
        stats.closed_overflow + stats.closed_stall + stats.closed_bad_input + stats.closed_memory;
    for (reason, n) in [
        ("overflow", stats.closed_overflow),
        ("memory", stats.closed_memory),
        ("stall", stats.closed_stall),
        (
            "bad_input",
            stats.closed_bad_input.saturating_sub(stats.closed_flood),
        ),
        ("flood", stats.closed_flood),
        ("other", stats.clients_closed.saturating_sub(named)),
    ] {
        sample(&mut out, name, &format!("{{reason=\"{reason}\"}}"), n);
    }

    let name = "pngcast_ingest_requests_total";
    family(
        &mut out,
        name,
        "counter",
        "Ingest requests that reached their body, by outcome.",
    );
    for o in IngestOutcome::ALL {
        sample(
            &mut out,
            name,
            &format!("{{outcome=\"{}\"}}", o.label()),
            metrics.ingest_count(o),
        );
    }

    let name = "pngcast_encode_duration_seconds";
    family(
        &mut out,
        name,
        "histogram",
        "Time to convert and encode one frame.",
    );
    let h = metrics.encode.snapshot();
    for (bound, n) in &h.cumulative {
        sample(
            &mut out,
            &format!("{name}_bucket"),
            &format!("{{le=\"{}\"}}", float(*bound)),
            n,
        );
    }
    sample(&mut out, &format!("{name}_sum"), "", float(h.sum_seconds));
    sample(&mut out, &format!("{name}_count"), "", h.count);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A strict reader of the subset of the text format `render` writes: every sample belongs
    /// to a family declared just before with `# HELP` and `# TYPE`; names and label values are
    /// well formed; values parse as floats. Returns `(family -> type, sample key -> value)`.
    fn parse(text: &str) -> (BTreeMap<String, String>, BTreeMap<String, f64>) {
        let mut types = BTreeMap::new();
        let mut samples = BTreeMap::new();
        let mut current: Option<String> = None;
        let mut helped = None;
        assert!(text.ends_with('\n'));
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap();
                assert!(!help.is_empty());
                helped = Some(name.to_owned());
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert_eq!(helped.as_deref(), Some(name), "HELP before TYPE");
                assert!(["counter", "gauge", "histogram"].contains(&kind));
                assert!(
                    types.insert(name.to_owned(), kind.to_owned()).is_none(),
                    "{name} twice"
                );
                current = Some(name.to_owned());
                continue;
            }
            assert!(!line.starts_with('#'), "{line}");
            let (key, value) = line.rsplit_once(' ').unwrap();
            let v: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap(),
            };
            let name = key.split('{').next().unwrap();
            assert!(name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':'));
            if let Some(labels) = key.strip_prefix(name) {
                if !labels.is_empty() {
                    let inner = labels.strip_prefix('{').unwrap().strip_suffix('}').unwrap();
                    for pair in inner.split(',') {
                        let (k, v) = pair.split_once('=').unwrap();
                        assert!(k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
                        assert!(v.starts_with('"') && v.ends_with('"') && v.len() >= 2);
                    }
                }
            }
            let fam = current.as_deref().unwrap();
            let ok = name == fam
                || (types[fam] == "histogram"
                    && [
                        format!("{fam}_bucket"),
                        format!("{fam}_sum"),
                        format!("{fam}_count"),
                    ]
                    .contains(&name.to_owned()));
            assert!(ok, "{name} outside its family {fam}");
            assert!(samples.insert(key.to_owned(), v).is_none(), "{key} twice");
        }
        (types, samples)
    }

    #[test]
    fn histogram_buckets() {
        let h = Histogram::new(&[0.001, 0.01]);
        for ms in [0.5, 1.0, 1.5, 20.0] {
            h.observe(Duration::from_secs_f64(ms / 1e3));
        }
        let s = h.snapshot();
        assert_eq!(
            s.cumulative,
            vec![(0.001, 2), (0.01, 3), (f64::INFINITY, 4)]
        );
        assert_eq!(s.count, 4);
        assert!((s.sum_seconds - 0.023).abs() < 1e-9);
        h.observe(Duration::MAX);
        assert_eq!(h.snapshot().count, 5);
    }

    #[test]
    #[should_panic(expected = "ascending")]
    fn histogram_bounds_must_ascend() {
        Histogram::new(&[0.1, 0.1]);
    }

    #[test]
    fn renders_parsable_text() {
        let st = SinkStats {
            clients: 2,
            frames_queued: 30,
            frames_sent: 25,
            frames_dropped: 5,
            bytes_sent: 123_456,
            clients_accepted: 7,
            clients_closed: 6,
            closed_overflow: 1,
            closed_stall: 1,
            closed_bad_input: 3,
            closed_flood: 1,
            handshakes_refused: 3,
            ..SinkStats::default()
        };
        let m = Metrics::new();
        for ms in [0.2, 3.0, 3.0, 70.0, 20_000.0] {
            m.encode.observe(Duration::from_secs_f64(ms / 1e3));
        }
        m.record_ingest(IngestOutcome::Accepted, 100);
        m.record_ingest(IngestOutcome::BadBody, 5);
        let text = render(&st, &m);
        let (types, s) = parse(&text);
        assert_eq!(types["pngcast_clients"], "gauge");
        assert_eq!(types["pngcast_encode_duration_seconds"], "histogram");
        for (name, kind) in &types {
            assert_eq!(name.ends_with("_total"), kind == "counter", "{name}");
        }
        assert_eq!(s["pngcast_clients"], 2.0);
        assert_eq!(s["pngcast_frames_queued_total"], 30.0);
        assert_eq!(s["pngcast_frames_sent_total"], 25.0);
        assert_eq!(s["pngcast_frames_dropped_total"], 5.0);
        assert_eq!(s["pngcast_sent_bytes_total"], 123_456.0);
        assert_eq!(s["pngcast_clients_accepted_total"], 7.0);
        assert_eq!(s["pngcast_handshakes_refused_total"], 3.0);
        assert_eq!(s["pngcast_clients_closed_total{reason=\"overflow\"}"], 1.0);
        assert_eq!(s["pngcast_clients_closed_total{reason=\"stall\"}"], 1.0);
        assert_eq!(s["pngcast_clients_closed_total{reason=\"bad_input\"}"], 2.0);
        assert_eq!(s["pngcast_clients_closed_total{reason=\"flood\"}"], 1.0);
        assert_eq!(s["pngcast_clients_closed_total{reason=\"other\"}"], 1.0);
        assert_eq!(
            s["pngcast_ingest_requests_total{outcome=\"accepted\"}"],
            1.0
        );
        assert_eq!(
            s["pngcast_ingest_requests_total{outcome=\"bad_body\"}"],
            1.0
        );
        assert_eq!(s["pngcast_ingest_requests_total{outcome=\"busy\"}"], 0.0);
        assert_eq!(s["pngcast_ingest_accepted_bytes_total"], 100.0);
        // The histogram: ascending bounds, monotonic counts, +Inf == _count, the sum.
        let buckets: Vec<(f64, f64)> = s
            .iter()
            .filter_map(|(k, v)| {
                let le = k
                    .strip_prefix("pngcast_encode_duration_seconds_bucket{le=\"")?
                    .strip_suffix("\"}")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                Some((le, *v))
            })
            .collect();
        let mut sorted = buckets.clone();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert_eq!(sorted.len(), ENCODE_BUCKETS.len() + 1);
        assert!(sorted.windows(2).all(|w| w[0].1 <= w[1].1));
        assert_eq!(sorted.last().unwrap(), &(f64::INFINITY, 5.0));
        assert_eq!(
            sorted.iter().find(|b| b.0 == 0.005).unwrap().1,
            3.0,
            "0.2 ms and twice 3 ms"
        );
        assert_eq!(sorted.iter().find(|b| b.0 == 10.0).unwrap().1, 4.0);
        assert_eq!(s["pngcast_encode_duration_seconds_count"], 5.0);
        assert!((s["pngcast_encode_duration_seconds_sum"] - 20.0762).abs() < 1e-6);
    }

    #[test]
    fn closes_never_go_negative() {
        let st = SinkStats {
            closed_stall: 3,
            ..SinkStats::default()
        };
        let text = render(&st, &Metrics::new());
        assert!(text.contains("pngcast_clients_closed_total{reason=\"other\"} 0\n"));
    }
}
