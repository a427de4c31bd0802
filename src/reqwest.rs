//! steadfast's retry for reqwest: a [`reqwest-middleware`](reqwest_middleware)
//! middleware, [`RetryMiddleware`] (feature `reqwest`).
//!
//! It applies the rules of the [retry layer](crate::retry) to a
//! `reqwest_middleware::ClientWithMiddleware`, with the same
//! [`RetryPolicy`]: the same backoff and jitter, the same budget (share it
//! with tower layers by cloning the policy or its [`RetryBudget`](crate::retry::RetryBudget)),
//! the same `Retry-After`, deadline, hooks, tracing events and metrics.
//!
//! - **What failed.** A response by its status ([`crate::classify`]: 408, 429,
//!   502, 503, 504 are transient); a reqwest error by its kind: a connect
//!   error (a connect timeout too) is [`Connect`](ErrorClass::Connect), a
//!   timeout [`Timeout`](ErrorClass::Timeout), a reset or a closed connection
//!   [`Network`](ErrorClass::Network) (through its cause, hyper's or the io
//!   error), a body that failed in transit `Network`. Give another
//!   [`Classifier`] with [`classifier`](RetryMiddleware::classifier).
//! - **Is it safe to send again.** GET, HEAD, OPTIONS, TRACE, PUT and DELETE
//!   are; so is a request with an `Idempotency-Key` header. Any other request
//!   (a POST without a key) is resent only after a `Connect` failure, which
//!   proves it never left.
//! - **Can it be sent again.** A body given as bytes (`.body(…)`, `.json(…)`,
//!   `.form(…)`) up to [`max_body_bytes`](RetryMiddleware::max_body_bytes)
//!   (64 KiB) is replayed; a bigger one, or a stream, is sent once and never
//!   retried.
//! - **Time.** No delay starts that would end after the policy's
//!   [`deadline`](RetryPolicy::deadline) or a [`Deadline`] in the request's
//!   middleware extensions; [`attempt_timeout`](RetryPolicy::attempt_timeout)
//!   bounds each attempt. A [`RetryIf`] in the extensions overrides what is
//!   retried for that request.
//!
//! Each retry after the first attempt carries an [`Attempt`] extension (and
//! the [`attempt_header`](RetryMiddleware::attempt_header), when set) for the
//! middlewares after this one.
//!
//! # Cost
//!
//! Per request: one budget deposit, a copy of the request when it can be
//! retried (`Request::try_clone`: the head, and the body's `Bytes` by
//! reference), and the boxed future every reqwest-middleware middleware costs.
//!
//! ```
//! use reqwest_middleware::ClientBuilder;
//! use steadfast::{reqwest::RetryMiddleware, retry::RetryPolicy};
//! use std::time::Duration;
//!
//! let client = ClientBuilder::new(reqwest::Client::new())
//!     .with(RetryMiddleware::new(
//!         RetryPolicy::new()
//!             .max_retries(3)
//!             .deadline(Duration::from_secs(10)),
//!     ))
//!     .build();
//! // client.get("http://upstream/orders/17").send().await …
//! # let _ = client;
//! ```

use std::{fmt, sync::Mutex};

use ::reqwest::{Request, Response};
use http::{Extensions, HeaderName, HeaderValue, Method};
use reqwest_middleware::{Middleware, Next};
use tokio::time::Instant;

use crate::{
    Classification, Deadline, ErrorClass,
    classify::{Classifier, DefaultClassifier, classify_error, classify_head},
    deadline::earlier,
    retry::{
        Attempt, HttpOptions, Random, Reason, RequestFacts, RetryIf, RetryPolicy, RetryState,
        ThreadRandom,
    },
};

/// The retry layer's rules as a reqwest-middleware [`Middleware`]. See the
/// [module docs](self).
///
/// `C` decides what counts as a failure (default [`DefaultClassifier`]:
/// statuses and errors as [`crate::classify`] sorts them), `R` where jitter
/// comes from.
pub struct RetryMiddleware<C = DefaultClassifier, R = ThreadRandom> {
    policy: RetryPolicy,
    http: HttpOptions,
    classifier: C,
    rng: Mutex<R>,
}

impl RetryMiddleware {
    /// A middleware retrying with `policy`.
    pub fn new(policy: RetryPolicy) -> Self {
        Self {
            policy,
            http: HttpOptions::default(),
            classifier: DefaultClassifier,
            rng: Mutex::new(ThreadRandom),
        }
    }
}

impl<C, R> RetryMiddleware<C, R> {
    /// What counts as a failure; any closure
    /// `Fn(Result<&reqwest::Response, &reqwest_middleware::Error>) -> Option<Classification>`
    /// is a classifier.
    pub fn classifier<C2>(self, classifier: C2) -> RetryMiddleware<C2, R> {
        RetryMiddleware {
            policy: self.policy,
            http: self.http,
            classifier,
            rng: self.rng,
        }
    }

    /// Where jitter comes from (default [`ThreadRandom`]); a seeded rand
    /// generator makes delays reproducible.
    pub fn rng<R2: Random>(self, rng: R2) -> RetryMiddleware<C, R2> {
        RetryMiddleware {
            policy: self.policy,
            http: self.http,
            classifier: self.classifier,
            rng: Mutex::new(rng),
        }
    }

    /// The biggest request body kept to be sent again (default 64 KiB); a
    /// bigger one is sent once.
    pub fn max_body_bytes(mut self, limit: usize) -> Self {
        self.http.max_body_bytes = limit;
        self
    }

    /// The methods retried on any transient failure (default GET, HEAD,
    /// OPTIONS, TRACE, PUT, DELETE); others only after a connect failure,
    /// unless they carry an idempotency key.
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

    /// Also sends the attempt number (2, 3, …) in this header on retries.
    pub fn attempt_header(mut self, name: HeaderName) -> Self {
        self.http.attempt_header = Some(name);
        self
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Whether `request` may be resent after a failure that is not a connect failure.
    fn idempotent(&self, request: &Request) -> bool {
        self.http.idempotent_methods.contains(request.method())
            || self
                .http
                .idempotency_key
                .as_ref()
                .is_some_and(|name| request.headers().contains_key(name))
    }

    /// A copy of `request` to send again, when its body allows one.
    fn copy_of(&self, request: &Request) -> Option<Request> {
        let fits = match request.body() {
            None => true,
            Some(body) => body
                .as_bytes()
                .is_some_and(|bytes| bytes.len() <= self.http.max_body_bytes),
        };
        if fits { request.try_clone() } else { None }
    }

    /// Attempt `attempt` (2 for the first retry) from the copy.
    fn replay(&self, copy: &Request, attempt: u32, extensions: &mut Extensions) -> Request {
        let mut request = copy
            .try_clone()
            .expect("a request that was cloned once clones again");
        if let Some(name) = &self.http.attempt_header {
            request
                .headers_mut()
                .insert(name.clone(), HeaderValue::from(attempt));
        }
        extensions.insert(Attempt(attempt));
        request
    }
}

impl<C, R> fmt::Debug for RetryMiddleware<C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryMiddleware")
            .field("policy", &self.policy)
            .field("http", &self.http)
            .finish_non_exhaustive()
    }
}

/// What an attempt ended with.
enum Outcome {
    Done(reqwest_middleware::Result<Response>),
    TimedOut,
}

#[async_trait::async_trait]
impl<C, R> Middleware for RetryMiddleware<C, R>
where
    C: Classifier<Response, reqwest_middleware::Error> + Send + Sync + 'static,
    R: Random + Sync,
{
    async fn handle(
        &self,
        request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let policy = &self.policy;
        policy.deposit();
        let own = policy
            .total_limit()
            .and_then(|total| Instant::now().checked_add(total));
        let never = extensions.get::<RetryIf>().is_some_and(RetryIf::is_never);
        let copy = (!never && policy.retries_allowed() > 0)
            .then(|| self.copy_of(&request))
            .flatten();
        let connect_only = !self.idempotent(&request);
        let mut rng = self
            .rng
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .fork();
        let mut retry = RetryState::default();
        let mut request = request;
        loop {
            // The request's own deadline is read afresh: an earlier middleware may set it.
            let deadline = earlier(
                own,
                Deadline::from_extensions(extensions).map(|d| d.instant()),
            );
            let attempt = next.clone().run(request, extensions);
            let outcome = match attempt_end(policy, deadline) {
                None => Outcome::Done(attempt.await),
                Some(end) => match tokio::time::timeout_at(end, attempt).await {
                    Ok(result) => Outcome::Done(result),
                    Err(_elapsed) => Outcome::TimedOut,
                },
            };
            let classification = match &outcome {
                Outcome::Done(result) => self.classifier.classify(result.as_ref()),
                Outcome::TimedOut => Some(Classification::new(ErrorClass::Timeout)),
            };
            let (Some(classification), Some(copy)) = (classification, copy.as_ref()) else {
                return finish(outcome, deadline);
            };
            let facts = RequestFacts {
                connect_only,
                deadline,
                retry_if: extensions.get::<RetryIf>(),
            };
            let reason = || match &outcome {
                Outcome::Done(Err(err)) => Reason::Error(err),
                Outcome::Done(Ok(_)) => Reason::Response(classification.status()),
                Outcome::TimedOut => Reason::TimedOut,
            };
            let Some(event) =
                policy.decide_and_log(&classification, &mut retry, facts, &mut rng, reason)
            else {
                return finish(outcome, deadline);
            };
            drop(outcome);
            tokio::time::sleep(event.delay).await;
            request = self.replay(copy, event.attempt, extensions);
        }
    }
}

/// When the attempt starting now must end: its own timeout or the deadline.
fn attempt_end(policy: &RetryPolicy, deadline: Option<Instant>) -> Option<Instant> {
    let by_timeout = policy
        .attempt_limit()
        .and_then(|timeout| Instant::now().checked_add(timeout));
    earlier(by_timeout, deadline)
}

fn finish(outcome: Outcome, deadline: Option<Instant>) -> reqwest_middleware::Result<Response> {
    match outcome {
        Outcome::Done(result) => result,
        Outcome::TimedOut => {
            let message = if deadline.is_some_and(|d| Instant::now() >= d) {
                "the retry deadline elapsed during an attempt"
            } else {
                "the attempt timed out"
            };
            Err(reqwest_middleware::Error::middleware(crate::Error::new(
                ErrorClass::Timeout,
                message,
            )))
        }
    }
}

/// reqwest's responses by their status and `Retry-After`; errors (reqwest's,
/// or a middleware's) through their source chain, as [`crate::classify`] sorts them.
impl Classifier<Response, reqwest_middleware::Error> for DefaultClassifier {
    fn classify(
        &self,
        outcome: Result<&Response, &reqwest_middleware::Error>,
    ) -> Option<Classification> {
        match outcome {
            Ok(res) => classify_head(res.status(), res.headers()),
            Err(err) => Some(classify_error(err)),
        }
    }
}
