//! A fixed-window rate limiter keyed by client IP, on an injectable clock.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::{clock::Clock, config::RateLimit};

/// Counts requests per IP in fixed windows.
pub struct RateLimiter {
    limit: RateLimit,
    clock: Arc<dyn Clock>,
    windows: Mutex<HashMap<IpAddr, Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: i64,
    count: u32,
}

/// Past this many tracked addresses, expired windows are swept.
const SWEEP_AT: usize = 10_000;

impl RateLimiter {
    /// A limiter allowing `limit.max` requests per `limit.window`.
    pub fn new(limit: RateLimit, clock: Arc<dyn Clock>) -> Self {
        Self {
            limit,
            clock,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request from `ip`; `Err(retry_after)` when it is over the limit.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let now = self.clock.now();
        let window = self.limit.window.as_secs().max(1) as i64;
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= SWEEP_AT {
            windows.retain(|_, w| now - w.start < window);
        }
        let entry = windows.entry(ip).or_insert(Window {
            start: now,
            count: 0,
        });
        if now - entry.start >= window {
            *entry = Window {
                start: now,
                count: 0,
            };
        }
        if entry.count >= self.limit.max {
            let left = (entry.start + window - now).max(1) as u64;
            return Err(Duration::from_secs(left));
        }
        entry.count += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn allows_max_per_window_then_reopens() {
        let clock = Arc::new(ManualClock::new());
        let limiter = RateLimiter::new(
            RateLimit {
                max: 2,
                window: Duration::from_secs(60),
            },
            clock.clone(),
        );
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        assert!(limiter.check(a).is_ok());
        assert!(limiter.check(a).is_ok());
        let retry = limiter.check(a).unwrap_err();
        assert!(retry <= Duration::from_secs(60) && retry >= Duration::from_secs(59));
        assert!(
            limiter.check(b).is_ok(),
            "another address has its own window"
        );
        clock.advance(Duration::from_secs(60));
        assert!(limiter.check(a).is_ok(), "a new window opens");
    }
}
