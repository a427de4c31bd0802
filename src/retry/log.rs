//! The tracing events of retries.

use std::fmt;

use super::{RetryEvent, policy::StopReason};
use crate::Classification;

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
pub(super) fn log_retry<E: fmt::Display>(event: &RetryEvent, reason: Reason<'_, E>) {
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
pub(super) fn log_stop(c: &Classification, why: StopReason, retries: u32) {
    tracing::debug!(
        class = c.class().as_str(),
        status = c.status().map(|s| s.as_u16()),
        retries,
        why = why.as_str(),
        "not retrying"
    );
}
