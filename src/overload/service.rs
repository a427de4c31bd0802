//! The layer and the service: admit, queue or refuse each request.

use std::{
    fmt,
    sync::{Arc, atomic::Ordering},
    task::{Context, Poll},
};

use http::{Request, Response};
use tower::{Layer, Service};

use super::{
    ConfigError, OverloadConfig, ResponseFuture,
    limiter::{Admission, Limiter},
};
use crate::Deadline;

/// Applies [`Overload`] to a service. See the [module docs](super).
///
/// Every service the layer makes, and every clone, shares one limit and one queue.
#[derive(Clone)]
#[must_use]
pub struct OverloadLayer {
    limiter: Arc<Limiter>,
}

impl Default for OverloadLayer {
    fn default() -> Self {
        Self::new(OverloadConfig::new())
    }
}

impl OverloadLayer {
    /// A layer with `config`.
    ///
    /// # Panics
    ///
    /// When `config` cannot work (see [`try_new`](Self::try_new)).
    pub fn new(config: OverloadConfig) -> Self {
        Self::try_new(config).unwrap_or_else(|err| panic!("{err}"))
    }

    /// A layer with `config`, or what is wrong with it.
    pub fn try_new(config: OverloadConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            limiter: Arc::new(Limiter::new(config)),
        })
    }

    /// The concurrency limit now.
    pub fn limit(&self) -> u32 {
        self.limiter.limit()
    }

    /// Requests running now.
    pub fn in_flight(&self) -> usize {
        self.limiter.in_flight()
    }

    /// Requests waiting for a slot now.
    pub fn queued(&self) -> usize {
        self.limiter.queued()
    }

    /// Requests refused because they could not start in time for their deadline.
    pub fn refused_past_deadline(&self) -> u64 {
        self.limiter.refused_deadline.load(Ordering::Relaxed)
    }

    /// Requests refused because the queue was full.
    pub fn refused_queue_full(&self) -> u64 {
        self.limiter.refused_queue_full.load(Ordering::Relaxed)
    }

    /// Every refused request.
    pub fn refused(&self) -> u64 {
        self.refused_past_deadline() + self.refused_queue_full()
    }
}

impl fmt::Debug for OverloadLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OverloadLayer")
            .field("config", &self.limiter.config)
            .field("limit", &self.limit())
            .field("in_flight", &self.in_flight())
            .field("refused", &self.refused())
            .finish()
    }
}

impl<S> Layer<S> for OverloadLayer {
    type Service = Overload<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Overload {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`OverloadLayer`] produces. See the [module docs](super).
#[derive(Clone, Debug)]
pub struct Overload<S> {
    inner: S,
    layer: OverloadLayer,
}

impl<S> Overload<S> {
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

    /// The layer this service shares its limit, queue and counters with.
    pub fn layer(&self) -> &OverloadLayer {
        &self.layer
    }
}

impl<S, B, ResB> Service<Request<B>> for Overload<S>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone,
    ResB: http_body::Body,
{
    type Response = Response<crate::ResponseBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Request<B>) -> Self::Future {
        let limiter = &self.layer.limiter;
        let now = tokio::time::Instant::now();
        match limiter.admit(Deadline::from_extensions(req.extensions()), now) {
            Admission::Now => ResponseFuture::running(self.inner.call(req), limiter.clone(), now),
            Admission::Queued { waiter, give_up_at } => {
                // Keep the service that is ready for this request; a clone
                // takes its place for the next one.
                let clone = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::queued(limiter.clone(), waiter, give_up_at, ready, req)
            }
            Admission::Refused { why, retry_after } => {
                tracing::debug!(
                    reason = ?why,
                    retry_after_ms = retry_after.as_millis() as u64,
                    "overload: request refused"
                );
                ResponseFuture::refused(why, retry_after)
            }
        }
    }
}
