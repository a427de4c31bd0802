//! The [`Retry`] service and its [`RetryLayer`].

use std::{
    fmt,
    marker::PhantomData,
    sync::Arc,
    task::{Context, Poll},
};

use http::{HeaderName, Method};
use tower::{Layer, Service};

use super::{
    CloneReplay, CloneResponseFuture, HttpReplay, Random, ResponseFuture, RetryBody, RetryPolicy,
    ThreadRandom,
    future::{RetryFuture, Shared},
    replay::{HttpOptions, Replay, Start},
};
use crate::{BoxError, classify::Classifier, classify::DefaultClassifier};

/// Applies [`Retry`] to a service. See the [module docs](super).
///
/// `K` is how requests are kept for retries ([`HttpReplay`] or [`CloneReplay`]),
/// `C` what counts as a failure, `R` where jitter comes from.
///
/// | | [`HttpReplay`] ([`RetryLayer::new`]) | [`CloneReplay`] ([`RetryLayer::for_clone_requests`]) |
/// | --- | --- | --- |
/// | requests | `http::Request<B>`, any body | any `Req: Clone` |
/// | inner service sees | `http::Request<RetryBody<B>>` | `Req` |
/// | kept for retries | the head and the body, buffered up to a limit | a clone, made before the first call |
/// | idempotency | by method or `Idempotency-Key` | every request is taken as idempotent |
/// | [`Attempt`](super::Attempt) / attempt header | on retries | — |
/// | [`Deadline`](crate::Deadline), [`RetryIf`](super::RetryIf) extensions | honoured | — |
/// | response future | [`ResponseFuture`] | [`CloneResponseFuture`] |
#[must_use]
pub struct RetryLayer<K = HttpReplay, C = DefaultClassifier, R = ThreadRandom> {
    policy: RetryPolicy,
    http: HttpOptions,
    classifier: C,
    rng: R,
    _kind: PhantomData<fn() -> K>,
}

impl RetryLayer {
    /// A layer for `http::Request<B>` services (HTTP clients and proxies),
    /// with `policy`.
    pub fn new(policy: RetryPolicy) -> Self {
        Self::with_kind(policy)
    }
}

impl Default for RetryLayer {
    /// [`RetryLayer::new`] with the default [`RetryPolicy`].
    fn default() -> Self {
        Self::new(RetryPolicy::default())
    }
}

impl RetryLayer<CloneReplay> {
    /// A layer for any service whose requests are `Clone` (as tower's `Retry`
    /// needs). Its responses are classified by a classifier you give with
    /// [`classifier`](RetryLayer::classifier) unless they are `http::Response`s;
    /// every request is taken as idempotent.
    pub fn for_clone_requests(policy: RetryPolicy) -> Self {
        Self::with_kind(policy)
    }
}

impl<K> RetryLayer<K> {
    fn with_kind(policy: RetryPolicy) -> Self {
        Self {
            policy,
            http: HttpOptions::default(),
            classifier: DefaultClassifier,
            rng: ThreadRandom,
            _kind: PhantomData,
        }
    }
}

impl<K, C, R> RetryLayer<K, C, R> {
    /// What counts as a failure, and of which class (default
    /// [`DefaultClassifier`]: statuses and errors as [`crate::classify`] sorts them).
    pub fn classifier<C2>(self, classifier: C2) -> RetryLayer<K, C2, R> {
        RetryLayer {
            policy: self.policy,
            http: self.http,
            classifier,
            rng: self.rng,
            _kind: PhantomData,
        }
    }

    /// Where jitter comes from (default [`ThreadRandom`]); a seeded rand
    /// generator makes delays reproducible.
    pub fn rng<R2: Random>(self, rng: R2) -> RetryLayer<K, C, R2> {
        RetryLayer {
            policy: self.policy,
            http: self.http,
            classifier: self.classifier,
            rng,
            _kind: PhantomData,
        }
    }

    /// The most bytes of a request body buffered for replay (default 64 KiB).
    /// A bigger body is sent once, streamed, and never retried.
    pub fn max_body_bytes(mut self, limit: usize) -> Self {
        self.http.max_body_bytes = limit;
        self
    }

    /// The methods retried on any transient failure (default GET, HEAD,
    /// OPTIONS, TRACE, PUT, DELETE). Other requests are retried only after a
    /// connect failure, unless they carry an idempotency key.
    pub fn idempotent_methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.http.idempotent_methods = methods.into_iter().collect();
        self
    }

    /// The header that makes any request idempotent (default `Idempotency-Key`);
    /// `None` to trust methods alone.
    pub fn idempotency_key_header(mut self, name: Option<HeaderName>) -> Self {
        self.http.idempotency_key = name;
        self
    }

    /// Also sends the attempt number (2, 3, …) in this header on retries
    /// (the [`Attempt`](super::Attempt) extension is always set on retries).
    pub fn attempt_header(mut self, name: HeaderName) -> Self {
        self.http.attempt_header = Some(name);
        self
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }
}

impl<K, C: Clone, R: Clone> Clone for RetryLayer<K, C, R> {
    fn clone(&self) -> Self {
        Self {
            policy: self.policy.clone(),
            http: self.http.clone(),
            classifier: self.classifier.clone(),
            rng: self.rng.clone(),
            _kind: PhantomData,
        }
    }
}

impl<K, C, R> fmt::Debug for RetryLayer<K, C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("kind", &std::any::type_name::<K>())
            .field("policy", &self.policy)
            .field("http", &self.http)
            .finish_non_exhaustive()
    }
}

impl<S, K, C: Clone, R: Clone> Layer<S> for RetryLayer<K, C, R> {
    type Service = Retry<S, K, C, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry {
            inner,
            shared: Arc::new(Shared {
                policy: self.policy.clone(),
                http: self.http.clone(),
                classifier: self.classifier.clone(),
            }),
            rng: self.rng.clone(),
            _kind: PhantomData,
        }
    }
}

/// Retries failed calls to `S` with backoff. See the [module docs](super).
pub struct Retry<S, K = HttpReplay, C = DefaultClassifier, R = ThreadRandom> {
    inner: S,
    shared: Arc<Shared<C>>,
    rng: R,
    _kind: PhantomData<fn() -> K>,
}

impl<S, K, C, R> Retry<S, K, C, R> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, K, C, R: Clone> Clone for Retry<S, K, C, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            rng: self.rng.clone(),
            _kind: PhantomData,
        }
    }
}

impl<S: fmt::Debug, K, C, R> fmt::Debug for Retry<S, K, C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("policy", &self.shared.policy)
            .finish_non_exhaustive()
    }
}

impl<S, C, R, B> Service<http::Request<B>> for Retry<S, HttpReplay, C, R>
where
    B: http_body::Body<Data = bytes::Bytes> + Unpin,
    B::Error: Into<BoxError>,
    S: Service<http::Request<RetryBody<B>>> + Clone,
    S::Error: Into<BoxError> + fmt::Display,
    C: Classifier<S::Response, S::Error>,
    R: Random,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, B, C, R>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        ResponseFuture::new(self.start(request))
    }
}

impl<S, C, R, Req> Service<Req> for Retry<S, CloneReplay, C, R>
where
    Req: Clone,
    S: Service<Req> + Clone,
    S::Error: Into<BoxError> + fmt::Display,
    C: Classifier<S::Response, S::Error>,
    R: Random,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = CloneResponseFuture<S, Req, C, R>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        CloneResponseFuture::new(self.start(request))
    }
}

impl<S, K, C, R: Random> Retry<S, K, C, R> {
    /// The first attempt of `request` (or the work before it), in the future
    /// both kinds of request share.
    #[inline(always)]
    fn start<Req>(&mut self, request: Req) -> RetryFuture<S, K, Req, C, R>
    where
        K: Replay<Req>,
        S: Service<K::Request> + Clone,
    {
        let policy = &self.shared.policy;
        policy.deposit();
        let may_retry = policy.retries_allowed() > 0;
        let mut future = RetryFuture::new(self.shared.clone(), self.rng.fork());
        match K::start(request, &self.shared.http, may_retry, future.copy_slot()) {
            Start::Ready(request) => {
                let called = self.inner.call(request);
                // Only a request that can be sent again needs a service to send it with.
                let service = future.has_copy().then(|| self.inner.clone());
                future.start_calling(called, service);
            }
            Start::Prepare(prepare) => {
                // The body is read before the first call: the future takes the
                // service that was made ready, and leaves a clone in its place.
                let clone = self.inner.clone();
                future.start_preparing(prepare, std::mem::replace(&mut self.inner, clone));
            }
            Start::Failed(error) => future.start_failed(error),
        }
        future
    }
}
