//! The limiter's configuration, validated once when the layer is made.

use std::{fmt, time::Duration};

/// How an [`OverloadLayer`](super::OverloadLayer) adapts its limit and queues;
/// every setter has a default.
///
/// | setting | default |
/// | --- | --- |
/// | [`initial_limit`](Self::initial_limit) | 20 |
/// | [`min_limit`](Self::min_limit) | 1 |
/// | [`max_limit`](Self::max_limit) | 1000 |
/// | [`latency_target`](Self::latency_target) | 250 ms |
/// | [`decrease_factor`](Self::decrease_factor) | 0.9 |
/// | [`max_queue`](Self::max_queue) | 100 |
/// | [`max_wait`](Self::max_wait) | 1 s |
#[derive(Debug, Clone)]
#[must_use]
pub struct OverloadConfig {
    pub(super) initial_limit: u32,
    pub(super) min_limit: u32,
    pub(super) max_limit: u32,
    pub(super) latency_target: Duration,
    pub(super) decrease_factor: f64,
    pub(super) max_queue: usize,
    pub(super) max_wait: Duration,
}

impl Default for OverloadConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl OverloadConfig {
    /// The defaults in the table above.
    pub fn new() -> Self {
        Self {
            initial_limit: 20,
            min_limit: 1,
            max_limit: 1000,
            latency_target: Duration::from_millis(250),
            decrease_factor: 0.9,
            max_queue: 100,
            max_wait: Duration::from_secs(1),
        }
    }

    /// The concurrency limit to start from.
    pub fn initial_limit(mut self, limit: u32) -> Self {
        self.initial_limit = limit;
        self
    }

    /// The limit never falls below this.
    pub fn min_limit(mut self, limit: u32) -> Self {
        self.min_limit = limit;
        self
    }

    /// The limit never rises above this.
    pub fn max_limit(mut self, limit: u32) -> Self {
        self.max_limit = limit;
        self
    }

    /// A request taking longer than this (or answered 503, 429 or 504) means
    /// too much concurrency: the limit is multiplied by the
    /// [`decrease_factor`](Self::decrease_factor). Set it well under the route
    /// timeout, above the handler's usual latency.
    pub fn latency_target(mut self, target: Duration) -> Self {
        self.latency_target = target;
        self
    }

    /// What the limit is multiplied by on a latency over the target (0 < f < 1).
    pub fn decrease_factor(mut self, factor: f64) -> Self {
        self.decrease_factor = factor;
        self
    }

    /// The most requests waiting for a slot; more are refused at once.
    pub fn max_queue(mut self, requests: usize) -> Self {
        self.max_queue = requests;
        self
    }

    /// The longest a request without a [`Deadline`](crate::Deadline) waits for a slot.
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.min_limit == 0 {
            return Err(ConfigError("min_limit must be at least 1"));
        }
        if !(self.min_limit <= self.initial_limit && self.initial_limit <= self.max_limit) {
            return Err(ConfigError(
                "the limits must be ordered: min_limit <= initial_limit <= max_limit",
            ));
        }
        if !(self.decrease_factor > 0.0 && self.decrease_factor < 1.0) {
            return Err(ConfigError("decrease_factor must be in (0, 1)"));
        }
        if self.latency_target.is_zero() {
            return Err(ConfigError("latency_target must be longer than zero"));
        }
        Ok(())
    }
}

/// An [`OverloadConfig`] that cannot work; the message says which setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(&'static str);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid overload configuration: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}
