//! The breaker's configuration, validated once when the layer is made.

use std::{fmt, sync::Arc, time::Duration};

use super::{BreakerState, KeyFor};

/// Over which calls the failure rate is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last `n` calls.
    Count(u32),
    /// The calls of the last `duration`, in ten slots (a call leaves the window
    /// when its slot does, up to a tenth of `duration` late).
    Time(Duration),
}

/// Called on every state change of a circuit.
///
/// Any `Fn(&str, BreakerState, BreakerState)` closure (key, from, to) is one.
/// It runs after the circuit's lock is released, on the task whose call caused
/// the change: keep it quick.
pub trait OnTransition: Send + Sync + 'static {
    /// The circuit of `key` (empty for the default circuit) went from `from` to `to`.
    fn on_transition(&self, key: &str, from: BreakerState, to: BreakerState);
}

impl<F> OnTransition for F
where
    F: Fn(&str, BreakerState, BreakerState) + Send + Sync + 'static,
{
    fn on_transition(&self, key: &str, from: BreakerState, to: BreakerState) {
        self(key, from, to)
    }
}

/// How a [`BreakerLayer`](super::BreakerLayer) decides; every setter has a default.
///
/// | setting | default |
/// | --- | --- |
/// | [`failure_rate`](Self::failure_rate) | 0.5 |
/// | [`window`](Self::window) | `Window::Count(100)` |
/// | [`min_calls`](Self::min_calls) | 20 |
/// | [`slow_calls`](Self::slow_calls) | off |
/// | [`open_for`](Self::open_for) | 30 s |
/// | [`half_open_probes`](Self::half_open_probes) | 3 |
/// | [`max_retry_after`](Self::max_retry_after) | 5 min |
/// | [`max_keys`](Self::max_keys) | 1024 |
#[derive(Clone)]
#[must_use]
pub struct BreakerConfig {
    pub(super) failure_rate: f64,
    pub(super) window: Window,
    pub(super) min_calls: u32,
    pub(super) slow_calls: Option<(Duration, f64)>,
    pub(super) open_for: Duration,
    pub(super) half_open_probes: u32,
    pub(super) max_retry_after: Duration,
    pub(super) max_keys: usize,
    pub(super) key: Option<Arc<dyn KeyFor>>,
    pub(super) on_transition: Option<Arc<dyn OnTransition>>,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl BreakerConfig {
    /// The defaults in the table above.
    pub fn new() -> Self {
        Self {
            failure_rate: 0.5,
            window: Window::Count(100),
            min_calls: 20,
            slow_calls: None,
            open_for: Duration::from_secs(30),
            half_open_probes: 3,
            max_retry_after: Duration::from_secs(300),
            max_keys: 1024,
            key: None,
            on_transition: None,
        }
    }

    /// The share of failed calls in the window (0 < rate ≤ 1) at or above
    /// which the circuit opens.
    pub fn failure_rate(mut self, rate: f64) -> Self {
        self.failure_rate = rate;
        self
    }

    /// The calls the rates are measured over.
    pub fn window(mut self, window: Window) -> Self {
        self.window = window;
        self
    }

    /// The fewest calls in the window before a rate can open the circuit.
    pub fn min_calls(mut self, calls: u32) -> Self {
        self.min_calls = calls;
        self
    }

    /// A call taking `threshold` or longer is slow, and a share of slow calls
    /// at or above `rate` opens the circuit too.
    pub fn slow_calls(mut self, threshold: Duration, rate: f64) -> Self {
        self.slow_calls = Some((threshold, rate));
        self
    }

    /// How long the circuit stays open before letting probes through.
    pub fn open_for(mut self, duration: Duration) -> Self {
        self.open_for = duration;
        self
    }

    /// How many calls go through at once while half-open; that many successes
    /// in a row close the circuit, one failure opens it again.
    pub fn half_open_probes(mut self, probes: u32) -> Self {
        self.half_open_probes = probes;
        self
    }

    /// The longest an upstream's `Retry-After` may hold the circuit open.
    pub fn max_retry_after(mut self, limit: Duration) -> Self {
        self.max_retry_after = limit;
        self
    }

    /// One circuit per key: per host with [`ByHost`](super::ByHost), per route
    /// with [`ByRoute`](super::ByRoute), or any [`KeyFor`]. Default: one circuit.
    pub fn key_by(mut self, key: impl KeyFor) -> Self {
        self.key = Some(Arc::new(key));
        self
    }

    /// The most keyed circuits kept; requests of further keys share the default
    /// circuit. Keys should be a bounded set (hosts, routes), never client input.
    pub fn max_keys(mut self, keys: usize) -> Self {
        self.max_keys = keys;
        self
    }

    /// Called on every transition of every circuit (after the tracing event).
    pub fn on_transition(mut self, callback: impl OnTransition) -> Self {
        self.on_transition = Some(Arc::new(callback));
        self
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let rate_ok = |r: f64| r > 0.0 && r <= 1.0;
        if !rate_ok(self.failure_rate) {
            return Err(ConfigError("failure_rate must be in (0, 1]"));
        }
        if let Some((_, rate)) = self.slow_calls
            && !rate_ok(rate)
        {
            return Err(ConfigError("the slow-call rate must be in (0, 1]"));
        }
        match self.window {
            Window::Count(0) => return Err(ConfigError("a count window needs at least one call")),
            Window::Time(d) if d < Duration::from_millis(10) => {
                return Err(ConfigError("a time window must be at least 10 ms"));
            }
            _ => {}
        }
        if self.min_calls == 0 {
            return Err(ConfigError("min_calls must be at least 1"));
        }
        if let Window::Count(n) = self.window
            && self.min_calls > n
        {
            return Err(ConfigError(
                "min_calls is larger than the count window: the circuit could never open",
            ));
        }
        if self.half_open_probes == 0 {
            return Err(ConfigError("half_open_probes must be at least 1"));
        }
        if self.open_for.is_zero() {
            return Err(ConfigError("open_for must be longer than zero"));
        }
        Ok(())
    }
}

impl fmt::Debug for BreakerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerConfig")
            .field("failure_rate", &self.failure_rate)
            .field("window", &self.window)
            .field("min_calls", &self.min_calls)
            .field("slow_calls", &self.slow_calls)
            .field("open_for", &self.open_for)
            .field("half_open_probes", &self.half_open_probes)
            .field("max_retry_after", &self.max_retry_after)
            .field("keyed", &self.key.is_some())
            .finish_non_exhaustive()
    }
}

/// A [`BreakerConfig`] that cannot work; the message says which setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(&'static str);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid circuit breaker configuration: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}
