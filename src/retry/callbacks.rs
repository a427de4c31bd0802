//! The policy's two callbacks as traits: which failures to retry
//! ([`ShouldRetry`]) and what to do before each retry ([`OnRetry`]).
//!
//! Closures implement both, as tower-http's callbacks do; a type of your own
//! implements them when the callback carries state worth naming (a counter, a
//! metrics handle, a set of statuses read from configuration).

use super::RetryEvent;
use crate::Classification;

/// Decides whether a failure is worth another attempt.
///
/// The policy's choice of what to retry: by default
/// [`Classification::is_transient`]. Any closure `Fn(&Classification) -> bool`
/// is one; give a closure to [`RetryPolicy::retry_if`](super::RetryPolicy::retry_if)
/// (its argument's type is inferred there) and a type of your own to
/// [`RetryPolicy::retry_if_with`](super::RetryPolicy::retry_if_with).
///
/// The idempotency rule, the retry count, `Retry-After`, the deadline and the
/// budget apply after it: `true` means "retry if allowed", never "retry no matter what".
///
/// ```
/// use http::StatusCode;
/// use steadfast::retry::{RetryPolicy, ShouldRetry};
/// use steadfast::Classification;
///
/// /// Transient failures, plus the statuses this upstream uses for "try again".
/// struct TransientOr {
///     also: Vec<StatusCode>,
/// }
///
/// impl ShouldRetry for TransientOr {
///     fn should_retry(&self, failure: &Classification) -> bool {
///         failure.is_transient() || failure.status().is_some_and(|s| self.also.contains(&s))
///     }
/// }
///
/// let policy = RetryPolicy::new().retry_if_with(TransientOr { also: vec![StatusCode::CONFLICT] });
/// # let _ = policy;
/// ```
pub trait ShouldRetry: Send + Sync + 'static {
    /// Whether `failure` is retried (if the other rules allow it).
    fn should_retry(&self, failure: &Classification) -> bool;
}

impl<F> ShouldRetry for F
where
    F: Fn(&Classification) -> bool + Send + Sync + 'static,
{
    fn should_retry(&self, failure: &Classification) -> bool {
        self(failure)
    }
}

/// Told of every retry just before its delay starts.
///
/// Any closure `Fn(&RetryEvent)` is one; give a closure to
/// [`RetryPolicy::on_retry`](super::RetryPolicy::on_retry) (its argument's type
/// is inferred there) and a type of your own to
/// [`RetryPolicy::on_retry_with`](super::RetryPolicy::on_retry_with). It runs
/// inside the request's future: keep it quick and never block.
///
/// ```
/// use std::{io, sync::{Arc, atomic::{AtomicU64, Ordering}}};
/// use steadfast::retry::{OnRetry, RetryEvent, RetryPolicy};
///
/// /// Counts retries for a metrics endpoint; clones share the count.
/// #[derive(Clone, Default)]
/// struct RetryCounter(Arc<AtomicU64>);
///
/// impl OnRetry for RetryCounter {
///     fn on_retry(&self, _event: &RetryEvent) {
///         self.0.fetch_add(1, Ordering::Relaxed);
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let retries = RetryCounter::default();
/// let policy = RetryPolicy::new().on_retry_with(retries.clone());
///
/// // Reset once, then answers: one retry.
/// let calls = AtomicU64::new(0);
/// let answer = policy
///     .run(|| async {
///         match calls.fetch_add(1, Ordering::SeqCst) {
///             0 => Err(io::Error::from(io::ErrorKind::ConnectionReset)),
///             _ => Ok("done"),
///         }
///     })
///     .await
///     .unwrap();
/// assert_eq!(answer, "done");
/// assert_eq!(retries.0.load(Ordering::Relaxed), 1);
/// # }
/// ```
pub trait OnRetry: Send + Sync + 'static {
    /// Called once per retry, with what is about to happen.
    fn on_retry(&self, event: &RetryEvent);
}

impl<F> OnRetry for F
where
    F: Fn(&RetryEvent) + Send + Sync + 'static,
{
    fn on_retry(&self, event: &RetryEvent) {
        self(event)
    }
}
