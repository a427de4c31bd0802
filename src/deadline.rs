use std::time::Duration;

use http::Extensions;
use tokio::time::{Instant, Sleep};

/// The moment by which a request must be answered.
///
/// The per-route [`timeout`](crate::timeout) layer puts one in the request's
/// extensions before the inner service runs; the [`retry`](crate::retry) layer
/// never sleeps past it; handlers and database calls read it to avoid starting
/// work that cannot finish. Time is tokio time, so `tokio::time::pause()` governs it.
///
/// ```
/// use steadfast::Deadline;
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let mut req = http::Request::new(());
/// Deadline::after(Duration::from_secs(15)).insert_into(req.extensions_mut());
///
/// let deadline = Deadline::from_extensions(req.extensions()).unwrap();
/// assert!(deadline.remaining() <= Duration::from_secs(15));
/// assert!(!deadline.is_expired());
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    /// A deadline at `instant`.
    pub fn at(instant: Instant) -> Self {
        Self { at: instant }
    }

    /// A deadline `timeout` from now.
    pub fn after(timeout: Duration) -> Self {
        Self::at(Instant::now() + timeout)
    }

    /// The instant of the deadline.
    pub fn instant(&self) -> Instant {
        self.at
    }

    /// The time left; zero once expired.
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Whether the deadline has passed.
    pub fn is_expired(&self) -> bool {
        Instant::now() >= self.at
    }

    /// Whether `duration` from now still falls before the deadline.
    pub fn allows(&self, duration: Duration) -> bool {
        Instant::now()
            .checked_add(duration)
            .is_some_and(|end| end < self.at)
    }

    /// The earlier of two deadlines.
    pub fn earliest(self, other: Deadline) -> Deadline {
        self.min(other)
    }

    /// A sleep that ends at the deadline.
    pub fn sleep(&self) -> Sleep {
        tokio::time::sleep_until(self.at)
    }

    /// Runs `future` until the deadline; `Err` (a tokio `Elapsed`, classified as a
    /// timeout) when the deadline comes first.
    pub async fn run<F: Future>(
        &self,
        future: F,
    ) -> Result<F::Output, tokio::time::error::Elapsed> {
        tokio::time::timeout_at(self.at, future).await
    }

    /// The deadline in `extensions`, if a layer put one there.
    pub fn from_extensions(extensions: &Extensions) -> Option<Deadline> {
        extensions.get::<Deadline>().copied()
    }

    /// Puts this deadline into `extensions`, keeping an earlier one already there:
    /// a deadline can be shortened by an inner layer, never lengthened.
    pub fn insert_into(self, extensions: &mut Extensions) -> Deadline {
        // One map operation in the usual case (no deadline yet); an earlier one
        // that was replaced goes back.
        match extensions.insert(self) {
            Some(existing) if existing < self => {
                extensions.insert(existing);
                existing
            }
            _ => self,
        }
    }
}

/// The earlier of two optional limits (instants or durations): either one when
/// the other is absent.
#[cfg(any(feature = "retry", feature = "timeout"))]
#[inline]
pub(crate) fn earlier<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(feature = "axum")]
impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for Deadline {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(Deadline::from_extensions(&parts.extensions))
    }
}

#[cfg(feature = "axum")]
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Deadline {
    type Rejection = crate::Problem;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Deadline::from_extensions(&parts.extensions).ok_or_else(|| {
            crate::Problem::new(http::StatusCode::INTERNAL_SERVER_ERROR)
                .with_detail("The server is misconfigured: this route has no deadline.")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn insert_into_keeps_the_earlier_deadline() {
        let early = Deadline::after(Duration::from_secs(2));
        let late = Deadline::after(Duration::from_secs(9));
        let mut extensions = Extensions::new();

        assert_eq!(late.insert_into(&mut extensions), late);
        assert_eq!(early.insert_into(&mut extensions), early);
        assert_eq!(Deadline::from_extensions(&extensions), Some(early));
        assert_eq!(late.insert_into(&mut extensions), early);
        assert_eq!(Deadline::from_extensions(&extensions), Some(early));
    }
}
