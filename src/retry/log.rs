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
    pub(super) fn decide_and_log<'r, E: fmt::Display + 'r>(
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
                None
            }
            Decision::Retry(event) => {
                log_retry(&event, reason());
                Some(event)
            }
        }
    }
}

/// What failed, for the log line.
pub(super) enum Reason<'a, E> {
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

/// One `WARN` event per retry.
fn log_retry<E: fmt::Display>(event: &RetryEvent, reason: Reason<'_, E>) {
    let c = &event.classification;
    tracing::warn!(
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
        class = c.class().as_str(),
        status = c.status().map(|s| s.as_u16()),
        retries,
        why = why.as_str(),
        "not retrying"
    );
}
