//! The latency percentile the hedge delay follows.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::time::Instant;

/// Buckets grow by 5 %: a percentile is read to within 5 %.
const GROWTH: f64 = 1.05;
/// 1.05^400 µs is about 80 hours: every latency fits.
const BUCKETS: usize = 400;
/// The percentile is recomputed every this many samples.
const RECOMPUTE_EVERY: u64 = 64;
/// Fewer samples than this and the fallback delay is used.
const MIN_SAMPLES: u64 = 20;
/// Samples count for one to two windows: the histogram of the window before is
/// kept beside the current one.
const WINDOW: Duration = Duration::from_secs(10);

/// Tracks the latency of calls in a log-scale histogram and serves its
/// percentile as the hedge delay.
pub(super) struct LatencyTracker {
    percentile: f64,
    fallback: Duration,
    /// The current delay in nanoseconds, read without the lock.
    delay_nanos: AtomicU64,
    histograms: Mutex<Histograms>,
}

struct Histograms {
    current: Box<[u32; BUCKETS]>,
    previous: Box<[u32; BUCKETS]>,
    samples: u64,
    rotate_at: Instant,
}

impl LatencyTracker {
    pub(super) fn new(percentile: f64, fallback: Duration) -> Self {
        Self {
            percentile,
            fallback,
            delay_nanos: AtomicU64::new(nanos(fallback)),
            histograms: Mutex::new(Histograms {
                current: Box::new([0; BUCKETS]),
                previous: Box::new([0; BUCKETS]),
                samples: 0,
                rotate_at: Instant::now() + WINDOW,
            }),
        }
    }

    pub(super) fn delay(&self) -> Duration {
        Duration::from_nanos(self.delay_nanos.load(Ordering::Relaxed))
    }

    pub(super) fn record(&self, latency: Duration) {
        let mut h = self.histograms.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if now >= h.rotate_at {
            let Histograms {
                current, previous, ..
            } = &mut *h;
            std::mem::swap(current, previous);
            current.fill(0);
            h.rotate_at = now + WINDOW;
        }
        h.current[bucket(latency)] += 1;
        h.samples += 1;
        if h.samples.is_multiple_of(RECOMPUTE_EVERY) || h.samples == MIN_SAMPLES {
            let delay = h.percentile(self.percentile).unwrap_or(self.fallback);
            self.delay_nanos.store(nanos(delay), Ordering::Relaxed);
        }
    }
}

impl Histograms {
    fn percentile(&self, percentile: f64) -> Option<Duration> {
        let count = |i: usize| u64::from(self.current[i]) + u64::from(self.previous[i]);
        let total: u64 = (0..BUCKETS).map(count).sum();
        if total < MIN_SAMPLES {
            return None;
        }
        let rank = ((total as f64) * percentile).ceil().max(1.0) as u64;
        let mut seen = 0;
        for i in 0..BUCKETS {
            seen += count(i);
            if seen >= rank {
                return Some(upper_bound(i));
            }
        }
        None
    }
}

fn bucket(latency: Duration) -> usize {
    let micros = latency.as_secs_f64() * 1e6;
    if micros <= 1.0 {
        return 0;
    }
    ((micros.ln() / GROWTH.ln()) as usize).min(BUCKETS - 1)
}

/// The largest latency bucket `i` holds.
fn upper_bound(i: usize) -> Duration {
    Duration::from_secs_f64(GROWTH.powi(i as i32 + 1) / 1e6)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_delay_follows_the_percentile_within_five_percent() {
        let tracker = LatencyTracker::new(0.9, Duration::from_millis(50));
        assert_eq!(tracker.delay(), Duration::from_millis(50), "fallback first");
        for i in 1..=640u64 {
            // 1..=100 ms, evenly: the 90th percentile is 90 ms.
            tracker.record(Duration::from_millis((i - 1) % 100 + 1));
        }
        let delay = tracker.delay().as_secs_f64();
        assert!(
            (0.090..=0.090 * GROWTH * GROWTH).contains(&delay),
            "{delay}"
        );
    }
}
