//! The layer and the service: decide whether a request may be hedged, keep a
//! copy of it and start the race.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use http::{HeaderName, Method, Request};
use tower::{Layer, Service};

use super::{ResponseFuture, future::Spare, latency::LatencyTracker};
use crate::{Deadline, classify::DefaultClassifier, retry::RetryBudget};

/// When to send the second attempt.
#[derive(Clone)]
pub(super) enum Delay {
    Fixed(Duration),
    Percentile(Arc<LatencyTracker>),
}

impl Delay {
    fn get(&self) -> Duration {
        match self {
            Delay::Fixed(d) => *d,
            Delay::Percentile(tracker) => tracker.delay(),
        }
    }
}

/// A percentile outside (0, 1).
#[derive(Debug, Clone, PartialEq)]
pub struct PercentileError(f64);

impl fmt::Display for PercentileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a hedge percentile must be in (0, 1), got {}", self.0)
    }
}

impl std::error::Error for PercentileError {}

/// What the layer counts, shared by its services and their clones.
#[derive(Debug, Default)]
pub(super) struct Stats {
    pub(super) sent: AtomicU64,
    pub(super) won: AtomicU64,
    pub(super) refused_by_budget: AtomicU64,
}

/// Applies [`Hedge`] to a client service. See the [module docs](super).
#[derive(Clone)]
#[must_use]
pub struct HedgeLayer<C = DefaultClassifier> {
    delay: Delay,
    budget: RetryBudget,
    key_header: Option<HeaderName>,
    stats: Arc<Stats>,
    classifier: C,
}

impl HedgeLayer {
    /// Hedges after a fixed `delay`.
    pub fn fixed(delay: Duration) -> Self {
        Self::with_delay(Delay::Fixed(delay))
    }

    /// Hedges after the `percentile` (0.95 = p95) of the latency this layer
    /// has seen over the last 10 to 20 seconds, read to within 5 %;
    /// `fallback` until 20 calls have been seen.
    ///
    /// # Panics
    ///
    /// When `percentile` is not in (0, 1); see [`try_percentile`](Self::try_percentile).
    pub fn percentile(percentile: f64, fallback: Duration) -> Self {
        Self::try_percentile(percentile, fallback).unwrap_or_else(|err| panic!("{err}"))
    }

    /// [`percentile`](Self::percentile), or an error for a percentile not in (0, 1).
    pub fn try_percentile(percentile: f64, fallback: Duration) -> Result<Self, PercentileError> {
        if !(percentile > 0.0 && percentile < 1.0) {
            return Err(PercentileError(percentile));
        }
        Ok(Self::with_delay(Delay::Percentile(Arc::new(
            LatencyTracker::new(percentile, fallback),
        ))))
    }

    fn with_delay(delay: Delay) -> Self {
        Self {
            delay,
            budget: RetryBudget::default(),
            key_header: Some(HeaderName::from_static("idempotency-key")),
            stats: Arc::default(),
            classifier: DefaultClassifier,
        }
    }
}

impl<C> HedgeLayer<C> {
    /// The budget hedges are paid from (default: a fresh
    /// [`RetryBudget::default`]). Pass a clone of the [`RetryLayer`](crate::retry::RetryLayer)'s
    /// budget so that retries and hedges together stay within one bound.
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = budget;
        self
    }

    /// The header that makes any request idempotent, and so hedgeable (default
    /// `Idempotency-Key`); `None` to hedge GET, HEAD and OPTIONS only.
    pub fn idempotency_key_header(mut self, name: Option<HeaderName>) -> Self {
        self.key_header = name;
        self
    }

    /// What is an answer worth waiting for (default [`DefaultClassifier`]): an
    /// attempt that ends in a transient failure while the other is still
    /// running does not end the race.
    pub fn classifier<C2>(self, classifier: C2) -> HedgeLayer<C2> {
        HedgeLayer {
            delay: self.delay,
            budget: self.budget,
            key_header: self.key_header,
            stats: self.stats,
            classifier,
        }
    }

    /// The delay a request made now would wait before its hedge.
    pub fn current_delay(&self) -> Duration {
        self.delay.get()
    }

    /// Hedges sent, by every service of this layer.
    pub fn hedges_sent(&self) -> u64 {
        self.stats.sent.load(Ordering::Relaxed)
    }

    /// Hedges whose answer was used (it came first).
    pub fn hedges_won(&self) -> u64 {
        self.stats.won.load(Ordering::Relaxed)
    }

    /// Hedges not sent because the budget was empty.
    pub fn hedges_refused_by_budget(&self) -> u64 {
        self.stats.refused_by_budget.load(Ordering::Relaxed)
    }
}

impl<C: fmt::Debug> fmt::Debug for HedgeLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgeLayer")
            .field("current_delay", &self.current_delay())
            .field("budget", &self.budget)
            .field("key_header", &self.key_header)
            .field("stats", &self.stats)
            .field("classifier", &self.classifier)
            .finish()
    }
}

impl<S, C: Clone> Layer<S> for HedgeLayer<C> {
    type Service = Hedge<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Hedge {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`HedgeLayer`] produces. See the [module docs](super).
#[derive(Clone, Debug)]
pub struct Hedge<S, C = DefaultClassifier> {
    inner: S,
    layer: HedgeLayer<C>,
}

impl<S, C> Hedge<S, C> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Hedges sent, by every service of the same layer.
    pub fn hedges_sent(&self) -> u64 {
        self.layer.hedges_sent()
    }

    /// Hedges whose answer was used.
    pub fn hedges_won(&self) -> u64 {
        self.layer.hedges_won()
    }

    /// Hedges not sent because the budget was empty.
    pub fn hedges_refused_by_budget(&self) -> u64 {
        self.layer.hedges_refused_by_budget()
    }
}

impl<S, C, B> Service<Request<B>> for Hedge<S, C>
where
    S: Service<Request<B>> + Clone,
    B: Clone,
    C: crate::classify::Classifier<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S, Request<B>, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let layer = &self.layer;
        let tracker = match &layer.delay {
            Delay::Percentile(tracker) => Some(tracker.clone()),
            Delay::Fixed(_) => None,
        };
        if !is_idempotent(&req, layer.key_header.as_ref()) {
            return ResponseFuture::single(self.inner.call(req), tracker);
        }
        layer.budget.deposit();
        let delay = layer.delay.get();
        let hedge_at = tokio::time::Instant::now() + delay;
        let deadline = Deadline::from_extensions(req.extensions());
        if deadline.is_some_and(|d| hedge_at >= d.instant()) {
            // The hedge would start at or past the deadline: it could not help.
            return ResponseFuture::single(self.inner.call(req), tracker);
        }
        let copy = copy_request(&req);
        // The service that took this request is ready; the clone for the hedge
        // is made ready when the hedge is due.
        let spare_service = self.inner.clone();
        let primary = self.inner.call(req);
        ResponseFuture::hedged(
            primary,
            Spare {
                service: spare_service,
                request: copy,
                budget: layer.budget.clone(),
                deadline,
            },
            hedge_at,
            layer.stats.clone(),
            tracker,
            layer.classifier.clone(),
        )
    }
}

fn is_idempotent<B>(req: &Request<B>, key_header: Option<&HeaderName>) -> bool {
    matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        || key_header.is_some_and(|name| req.headers().contains_key(name))
}

fn copy_request<B: Clone>(req: &Request<B>) -> Request<B> {
    let mut copy = Request::new(req.body().clone());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    *copy.extensions_mut() = req.extensions().clone();
    copy
}
