//! A client's inbound budget: token buckets for messages and bytes per second.
//!
//! A ComfyUI client sends one `feature_flags` message and answers pings; nothing it needs comes
//! close to the budget. A client that floods (tiny frames, pings it never reads the pongs of,
//! megabytes of text) spends parsing time the server owes every other client: past the budget it
//! is closed with 1008. The buckets start full, so a burst (a reconnecting client's first
//! messages) passes.

use std::time::Instant;

/// Token buckets for one client.
#[derive(Debug, Clone)]
pub(crate) struct Budget {
    messages: Bucket,
    bytes: Bucket,
}

#[derive(Debug, Clone)]
struct Bucket {
    /// Tokens per second.
    rate: f64,
    capacity: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: f64, capacity: f64, now: Instant) -> Bucket {
        Bucket {
            rate,
            capacity,
            tokens: capacity,
            at: now,
        }
    }

    /// Takes `n` tokens; false when the bucket cannot cover them.
    fn take(&mut self, n: f64, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now.max(self.at);
        self.tokens = (self.tokens + dt * self.rate).min(self.capacity) - n;
        self.tokens >= 0.0
    }
}

impl Budget {
    /// `messages` and `bytes` per second; bursts of two seconds' worth, and at least two
    /// messages of the largest size accepted.
    pub(crate) fn new(messages: u32, bytes: usize, max_message: usize, now: Instant) -> Budget {
        let m = f64::from(messages.max(1));
        let b = bytes.max(1) as f64;
        Budget {
            messages: Bucket::new(m, (2.0 * m).max(16.0), now),
            bytes: Bucket::new(b, (2.0 * b).max(2.0 * max_message as f64), now),
        }
    }

    /// Charges `n` received bytes; false past the budget.
    pub(crate) fn bytes(&mut self, n: usize, now: Instant) -> bool {
        self.bytes.take(n as f64, now)
    }

    /// Charges one parsed message or control frame; false past the budget.
    pub(crate) fn message(&mut self, now: Instant) -> bool {
        self.messages.take(1.0, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_pass_floods_do_not() {
        let t0 = Instant::now();
        let mut b = Budget::new(50, 1 << 20, 1 << 20, t0);
        // A burst of 100 messages at once passes (two seconds' worth).
        assert!((0..100).all(|_| b.message(t0)));
        assert!(!b.message(t0));
        // Refilled at the rate.
        let mut b = Budget::new(50, 1 << 20, 1 << 20, t0);
        for i in 0..1000u64 {
            assert!(b.message(t0 + Duration::from_millis(20 * i)), "at {i}");
        }
        // Twice the rate for long enough runs out.
        let mut b = Budget::new(50, 1 << 20, 1 << 20, t0);
        let ok = (0..1000u64).all(|i| b.message(t0 + Duration::from_millis(10 * i)));
        assert!(!ok);
        // Bytes: two max-size messages at once pass, a third does not.
        let mut b = Budget::new(50, 1000, 1 << 20, t0);
        assert!(b.bytes(1 << 20, t0) && b.bytes(1 << 20, t0));
        assert!(!b.bytes(1 << 20, t0));
    }
}
