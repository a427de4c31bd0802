//! The retry policy: when to retry and how long to wait, shared by the layer and `run`.

use std::{fmt, sync::Arc, time::Duration};

use http::StatusCode;
use tokio::time::Instant;

use super::{Backoff, Jitter, OnRetry, Random, RetryBudget, ShouldRetry};
use crate::{Classification, ErrorClass};

type Predicate = Arc<dyn ShouldRetry>;
type Hook = Arc<dyn OnRetry>;

/// When to retry and how long to wait: backoff, classification, budget, deadlines.
///
/// Make one with [`RetryPolicy::new`] and its setters, then use it in a
/// [`RetryLayer`](super::RetryLayer) or directly with [`run`](RetryPolicy::run).
/// Cloning is cheap (an `Arc`); clones share the budget.
///
/// | setting | default |
/// | --- | --- |
/// | [`max_retries`](RetryPolicy::max_retries) | 3 |
/// | [`base_delay`](RetryPolicy::base_delay) | 100 ms |
/// | [`multiplier`](RetryPolicy::multiplier) | 2 |
/// | [`max_delay`](RetryPolicy::max_delay) | 5 s |
/// | [`jitter`](RetryPolicy::jitter) | [`Jitter::Full`] |
/// | [`budget`](RetryPolicy::budget) | [`RetryBudget::default`]: 20% + 10/s over 10 s |
/// | [`max_retry_after`](RetryPolicy::max_retry_after) | 5 s |
/// | [`retry_internal_server_error`](RetryPolicy::retry_internal_server_error) | no |
/// | [`deadline`](RetryPolicy::deadline), [`attempt_timeout`](RetryPolicy::attempt_timeout) | none |
#[derive(Clone)]
pub struct RetryPolicy {
    config: Arc<Config>,
}

#[derive(Clone)]
struct Config {
    max_retries: u32,
    backoff: Backoff,
    budget: Option<RetryBudget>,
    max_retry_after: Duration,
    retry_500: bool,
    retry_if: Option<Predicate>,
    on_retry: Option<Hook>,
    deadline: Option<Duration>,
    attempt_timeout: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_retries: 3,
            backoff: Backoff::default(),
            budget: Some(RetryBudget::default()),
            max_retry_after: Duration::from_secs(5),
            retry_500: false,
            retry_if: None,
            on_retry: None,
            deadline: None,
            attempt_timeout: None,
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &*self.config;
        f.debug_struct("RetryPolicy")
            .field("max_retries", &c.max_retries)
            .field("backoff", &c.backoff)
            .field("budget", &c.budget)
            .field("max_retry_after", &c.max_retry_after)
            .field("retry_500", &c.retry_500)
            .field("retry_if", &c.retry_if.is_some())
            .field("on_retry", &c.on_retry.is_some())
            .field("deadline", &c.deadline)
            .field("attempt_timeout", &c.attempt_timeout)
            .finish()
    }
}

impl RetryPolicy {
    /// The policy with its defaults (the table above); change them with the
    /// setters below.
    pub fn new() -> Self {
        Self {
            config: Arc::new(Config::default()),
        }
    }

    /// The most retries after the first attempt.
    pub(crate) fn retries_allowed(&self) -> u32 {
        self.config.max_retries
    }

    /// Whether the policy wants to retry a failure, before idempotency, the
    /// retry count, `Retry-After`, the deadline and the budget are considered: the
    /// [`ShouldRetry`] set with [`retry_if`](RetryPolicy::retry_if) or
    /// [`retry_if_with`](RetryPolicy::retry_if_with), or by
    /// default [`Classification::is_transient`] (plus 500 when configured).
    pub fn is_retryable(&self, failure: &Classification) -> bool {
        match &self.config.retry_if {
            Some(predicate) => predicate.should_retry(failure),
            None => self.default_retryable(failure),
        }
    }

    fn default_retryable(&self, failure: &Classification) -> bool {
        failure.is_transient()
            || (self.config.retry_500
                && failure.status() == Some(StatusCode::INTERNAL_SERVER_ERROR))
    }

    pub(crate) fn attempt_limit(&self) -> Option<Duration> {
        self.config.attempt_timeout
    }

    pub(crate) fn total_limit(&self) -> Option<Duration> {
        self.config.deadline
    }

    /// Records a new request in the budget.
    #[inline]
    pub(crate) fn deposit(&self) {
        if let Some(budget) = &self.config.budget {
            budget.deposit();
        }
    }

    /// Decides what to do after failed attempt number `retries + 1`.
    pub(crate) fn decide(
        &self,
        failure: &Classification,
        state: &mut RetryState,
        request: RequestFacts<'_>,
        rng: &mut impl Random,
    ) -> Decision {
        let c = &*self.config;
        let wanted = match request.retry_if {
            Some(per_request) => per_request.allows(failure),
            None => self.is_retryable(failure),
        };
        if !wanted {
            return Decision::Stop(StopReason::NotRetryable);
        }
        if request.connect_only && failure.class() != ErrorClass::Connect {
            return Decision::Stop(StopReason::NotIdempotent);
        }
        if state.retries >= c.max_retries {
            return Decision::Stop(StopReason::Exhausted);
        }
        let (delay, source) = match failure.retry_after() {
            Some(asked) if asked > c.max_retry_after => {
                return Decision::Stop(StopReason::RetryAfterTooLong);
            }
            Some(asked) => (asked, DelaySource::RetryAfter),
            None => (
                c.backoff
                    .delay(state.retries + 1, state.previous_delay, rng),
                DelaySource::Backoff,
            ),
        };
        if let Some(deadline) = request.deadline {
            let fits = Instant::now()
                .checked_add(delay)
                .is_some_and(|end| end < deadline);
            if !fits {
                return Decision::Stop(StopReason::Deadline);
            }
        }
        if let Some(budget) = &c.budget
            && !budget.withdraw()
        {
            return Decision::Stop(StopReason::Budget);
        }
        state.retries += 1;
        state.previous_delay = delay;
        let event = RetryEvent {
            attempt: state.retries + 1,
            delay,
            classification: *failure,
            delay_source: source,
        };
        if let Some(hook) = &c.on_retry {
            hook.on_retry(&event);
        }
        Decision::Retry(event)
    }
}

/// Counts retries and remembers the last delay, per request.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RetryState {
    pub(crate) retries: u32,
    pub(crate) previous_delay: Duration,
}

/// What the decision needs to know about the request.
#[derive(Clone, Copy, Default)]
pub(crate) struct RequestFacts<'a> {
    pub(crate) connect_only: bool,
    pub(crate) deadline: Option<Instant>,
    pub(crate) retry_if: Option<&'a RetryIf>,
}

pub(crate) enum Decision {
    Retry(RetryEvent),
    Stop(StopReason),
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum StopReason {
    NotRetryable,
    NotIdempotent,
    Exhausted,
    RetryAfterTooLong,
    Deadline,
    Budget,
}

impl StopReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::NotRetryable => "not retryable",
            Self::NotIdempotent => "request not idempotent and it may have been sent",
            Self::Exhausted => "max retries reached",
            Self::RetryAfterTooLong => "retry-after beyond the ceiling",
            Self::Deadline => "the next attempt would outlive the deadline",
            Self::Budget => "retry budget exhausted",
        }
    }
}

/// Where a retry's delay came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelaySource {
    /// The backoff schedule and its jitter.
    Backoff,
    /// The failure's `Retry-After`.
    RetryAfter,
}

impl DelaySource {
    /// `"backoff"` or `"retry-after"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Backoff => "backoff",
            Self::RetryAfter => "retry-after",
        }
    }
}

/// One retry about to happen, as logged and given to the [`OnRetry`] hook
/// (set with [`on_retry`](RetryPolicy::on_retry)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryEvent {
    /// The attempt about to be made: 2 for the first retry.
    pub attempt: u32,
    /// How long the layer waits before it.
    pub delay: Duration,
    /// The failure that caused it.
    pub classification: Classification,
    /// Where the delay came from.
    pub delay_source: DelaySource,
}

/// A per-request override of which failures are retried, as a request extension.
///
/// It replaces the policy's decision for that request only; the idempotency rule,
/// the retry count, the deadline and the budget still apply.
///
/// ```
/// use steadfast::retry::RetryIf;
/// use steadfast::ErrorClass;
///
/// let mut req = http::Request::get("http://upstream/report").body(()).unwrap();
/// // This report is slow to build: a timeout is not worth trying again.
/// req.extensions_mut().insert(RetryIf::new(|c| c.is_transient() && c.class() != ErrorClass::Timeout));
///
/// let mut once = http::Request::get("http://upstream/charge").body(()).unwrap();
/// once.extensions_mut().insert(RetryIf::never());
/// ```
#[derive(Clone)]
pub struct RetryIf(Option<Predicate>);

impl RetryIf {
    /// Retry this request's failures for which `predicate` is true.
    pub fn new(predicate: impl Fn(&Classification) -> bool + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(predicate)))
    }

    /// Never retry this request (it is sent once, and its body is not buffered).
    pub fn never() -> Self {
        Self(None)
    }

    /// Whether this request is never retried.
    pub fn is_never(&self) -> bool {
        self.0.is_none()
    }

    fn allows(&self, failure: &Classification) -> bool {
        self.0
            .as_ref()
            .is_some_and(|predicate| predicate.should_retry(failure))
    }
}

impl fmt::Debug for RetryIf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_never() {
            "RetryIf::never()"
        } else {
            "RetryIf(..)"
        })
    }
}

/// The settings, as tower-http's layers take theirs: each returns the policy
/// changed (a copy of the shared settings when the policy was already cloned).
impl RetryPolicy {
    /// The most retries after the first attempt (default 3); 0 disables retrying.
    pub fn max_retries(mut self, n: u32) -> Self {
        Arc::make_mut(&mut self.config).max_retries = n;
        self
    }

    /// The delay before the first retry, before jitter (default 100 ms).
    pub fn base_delay(mut self, base: Duration) -> Self {
        let config = Arc::make_mut(&mut self.config);
        config.backoff = config.backoff.with_base(base);
        self
    }

    /// The factor between successive delays (default 2; below 1 is taken as 1).
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        let config = Arc::make_mut(&mut self.config);
        config.backoff = config.backoff.with_multiplier(multiplier);
        self
    }

    /// The cap on any backoff delay (default 5 s).
    pub fn max_delay(mut self, max: Duration) -> Self {
        let config = Arc::make_mut(&mut self.config);
        config.backoff = config.backoff.with_max(max);
        self
    }

    /// The jitter (default [`Jitter::Full`]); see [`Jitter`] for the formulas.
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        let config = Arc::make_mut(&mut self.config);
        config.backoff = config.backoff.with_jitter(jitter);
        self
    }

    /// The whole schedule at once.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        Arc::make_mut(&mut self.config).backoff = backoff;
        self
    }

    /// The retry budget; share one between layers by cloning it (default
    /// [`RetryBudget::default`], one per policy).
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        Arc::make_mut(&mut self.config).budget = Some(budget);
        self
    }

    /// No budget: only `max_retries` limits retries. Think twice.
    pub fn without_budget(mut self) -> Self {
        Arc::make_mut(&mut self.config).budget = None;
        self
    }

    /// The longest `Retry-After` honoured (default 5 s). A shorter one sets the
    /// next delay exactly, instead of the backoff; a longer one means no retry:
    /// the failure is returned as it is, for the caller to decide.
    pub fn max_retry_after(mut self, ceiling: Duration) -> Self {
        Arc::make_mut(&mut self.config).max_retry_after = ceiling;
        self
    }

    /// Also retry `500 Internal Server Error` (default no: a 500 is usually a bug
    /// that fails again).
    pub fn retry_internal_server_error(mut self, retry: bool) -> Self {
        Arc::make_mut(&mut self.config).retry_500 = retry;
        self
    }

    /// Replaces the default choice of which failures to retry
    /// ([`Classification::is_transient`]). Widen or narrow it from there:
    ///
    /// ```
    /// use steadfast::retry::RetryPolicy;
    /// use steadfast::ErrorClass;
    /// use http::StatusCode;
    ///
    /// let policy = RetryPolicy::new()
    ///     .retry_if(|c| {
    ///         (c.is_transient() && c.class() != ErrorClass::Timeout)
    ///             || c.status() == Some(StatusCode::CONFLICT)
    ///     });
    /// # let _ = policy;
    /// ```
    ///
    /// A non-idempotent request is still only retried after a connect failure.
    ///
    /// This setter takes a closure, so that its argument's type is inferred; a
    /// type implementing [`ShouldRetry`] goes to
    /// [`retry_if_with`](RetryPolicy::retry_if_with), which this calls.
    pub fn retry_if(
        self,
        predicate: impl Fn(&Classification) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.retry_if_with(predicate)
    }

    /// Replaces the default choice of which failures to retry with any
    /// [`ShouldRetry`]: a type of your own that carries state, or a closure
    /// (whose argument then needs its type written: `|c: &Classification|`;
    /// [`retry_if`](RetryPolicy::retry_if) infers it).
    pub fn retry_if_with(mut self, predicate: impl ShouldRetry) -> Self {
        Arc::make_mut(&mut self.config).retry_if = Some(Arc::new(predicate));
        self
    }

    /// Called before every retry, with what is about to happen (each retry is
    /// also a `tracing` event at `WARN`).
    ///
    /// This setter takes a closure, so that its argument's type is inferred; a
    /// type implementing [`OnRetry`] goes to
    /// [`on_retry_with`](RetryPolicy::on_retry_with), which this calls.
    pub fn on_retry(self, hook: impl Fn(&RetryEvent) + Send + Sync + 'static) -> Self {
        self.on_retry_with(hook)
    }

    /// Calls any [`OnRetry`] before every retry: a type of your own that
    /// carries state (a metrics handle, a counter), or a closure (whose
    /// argument then needs its type written: `|e: &RetryEvent|`;
    /// [`on_retry`](RetryPolicy::on_retry) infers it).
    pub fn on_retry_with(mut self, hook: impl OnRetry) -> Self {
        Arc::make_mut(&mut self.config).on_retry = Some(Arc::new(hook));
        self
    }

    /// The most time all attempts and the delays between them may take,
    /// counted from the call. An attempt still running at the deadline is
    /// dropped and a `Timeout` error returned; no delay is started that would
    /// end after it. (A [`Deadline`](crate::Deadline) in the request's
    /// extensions is honoured as well, whichever is earlier.)
    pub fn deadline(mut self, total: Duration) -> Self {
        Arc::make_mut(&mut self.config).deadline = Some(total);
        self
    }

    /// The most time one attempt may take; a slower attempt is dropped and
    /// counts as a `Timeout` failure, which is retried like any other.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        Arc::make_mut(&mut self.config).attempt_timeout = Some(timeout);
        self
    }
}
