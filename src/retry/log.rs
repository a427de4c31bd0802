//! The tracing events of retries.

use std::fmt;

use super::{
    Random, RetryEvent, RetryPolicy,
    policy::{Decision, RequestFacts, RetryState, StopReason},
};
use crate::Classification;

impl RetryPolicy {
    /// Decides what to do after a failed attempt, and logs the decision: the
    /// retry (a `WARN` naming `reason`) or the stop (a `DEBUG`). The one step
    /// the layer's future and [`run`](RetryPolicy::run) share.
    #[inline]
    pub(crate) fn decide_and_log<'r, E: fmt::Display + 'r>(
        &self,
        failure: &Classification,
        state: &mut RetryState,
        facts: RequestFacts<'_>,
        rng: &mut impl Random,
        reason: impl FnOnce() -> Reason<'r, E>,
    ) -> Option<RetryEvent> {
        match self.decide(failure, state, facts, rng) {
            Decision::Stop(why) => {
                log_stop(failure, why, state.retries);
                #[cfg(feature = "metrics")]
                count_stop(failure, why);
                None
            }
            Decision::Retry(event) => {
                log_retry(&event, reason());
                #[cfg(feature = "metrics")]
                count_retry(&event);
                Some(event)
            }
        }
    }
}

/// What failed, for the log line.
pub(crate) enum Reason<'a, E> {
    Error(&'a E),
    Response(Option<http::StatusCode>),
    TimedOut,
}

impl<E: fmt::Display> fmt::Display for Reason<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Error(err) => write!(f, "{err}"),
            Self::Response(Some(status)) => write!(f, "status {status}"),
            Self::Response(None) => f.write_str("response classified as a failure"),
            Self::TimedOut => f.write_str("attempt timed out"),
        }
    }
}

/// One `WARN` event per retry, with OpenTelemetry's HTTP fields beside
/// steadfast's own: `http.request.resend_count` (1 for the first retry) and
/// `error.type` (the class of the failure that caused it).
fn log_retry<E: fmt::Display>(event: &RetryEvent, reason: Reason<'_, E>) {
    let c = &event.classification;
    tracing::warn!(
        http.request.resend_count = event.attempt - 1,
        error.type = c.class().as_str(),
        attempt = event.attempt,
        delay_ms = u64::try_from(event.delay.as_millis()).unwrap_or(u64::MAX),
        class = c.class().as_str(),
        status = c.status().map(|s| s.as_u16()),
        delay_source = event.delay_source.as_str(),
        reason = %reason,
        "retrying"
    );
}

/// One `DEBUG` event when a failure is returned without retrying.
fn log_stop(c: &Classification, why: StopReason, retries: u32) {
    tracing::debug!(
        error.type = c.class().as_str(),
        class = c.class().as_str(),
        status = c.status().map(|s| s.as_u16()),
        retries,
        why = why.as_str(),
        "not retrying"
    );
}

/// A retry in the metrics: its cause and its delay.
#[cfg(feature = "metrics")]
fn count_retry(event: &RetryEvent) {
    use crate::metrics::{RETRY_ATTEMPTS, RETRY_DELAY};
    let class = event.classification.class().as_str();
    ::metrics::counter!(RETRY_ATTEMPTS, "class" => class).increment(1);
    ::metrics::histogram!(RETRY_DELAY, "delay_source" => event.delay_source.as_str())
        .record(event.delay.as_secs_f64());
}

/// A retryable failure given up on, in the metrics (one that is not
/// retryable at all is no give-up).
#[cfg(feature = "metrics")]
fn count_stop(c: &Classification, why: StopReason) {
    use crate::metrics::{RETRY_BUDGET_REFUSALS, RETRY_GIVE_UPS};
    let class = c.class().as_str();
    let reason = match why {
        StopReason::NotRetryable => return,
        StopReason::NotIdempotent => "not_idempotent",
        StopReason::Exhausted => "exhausted",
        StopReason::RetryAfterTooLong => "retry_after",
        StopReason::Deadline => "deadline",
        StopReason::Budget => {
            ::metrics::counter!(RETRY_BUDGET_REFUSALS, "class" => class).increment(1);
            "budget"
        }
    };
    ::metrics::counter!(RETRY_GIVE_UPS, "class" => class, "reason" => reason).increment(1);
}
