//! Wall-clock time in unix seconds, injectable so tests can move it.

use std::sync::atomic::{AtomicI64, Ordering};

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// Seconds since the unix epoch.
    fn now(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }
}

/// A clock for tests: it starts at the system time and moves only when
/// advanced, so that what a test computes from it (a `Retry-After`, an
/// expiry) does not depend on a second boundary passing while it runs.
#[derive(Debug)]
pub struct ManualClock {
    now: AtomicI64,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self {
            now: AtomicI64::new(SystemClock.now()),
        }
    }
}

impl ManualClock {
    /// A clock standing at the system time.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: std::time::Duration) {
        self.now.fetch_add(by.as_secs() as i64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
}
