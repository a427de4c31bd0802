//! The response future of [`Retry`](super::Retry): a named state machine, no `Box`.

use std::{
    fmt,
    future::Future,
    marker::PhantomData,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use pin_project::pin_project;
use tokio::time::{Instant, Sleep};
use tower::Service;

use super::{
    CloneReplay, HttpReplay, Random, RetryBody, RetryPolicy,
    log::Reason,
    policy::{RequestFacts, RetryState},
    replay::{HttpOptions, Replay},
};
use crate::{BoxError, Classification, ErrorClass, classify::Classifier, deadline::earlier};

/// What every service made by one layer shares.
pub(super) struct Shared<C> {
    pub(super) policy: RetryPolicy,
    pub(super) http: HttpOptions,
    pub(super) classifier: C,
}

/// The state machine behind both response futures of [`Retry`](super::Retry),
/// generic over how the request is kept ([`Replay`], private to the crate).
///
/// States: reading the body (HTTP requests that need it), calling the inner
/// service (with an optional attempt timer), sleeping before a retry, and
/// waiting for the inner service to be ready again.
#[pin_project]
pub(crate) struct RetryFuture<S, K, Req, C, R>
where
    K: Replay<Req>,
    S: Service<K::Request>,
{
    #[pin]
    state: State<K::Prepare, S::Future>,
    /// The backoff sleep, or the attempt's timeout while calling; one timer,
    /// reset. Boxed, and made only when needed, to keep the future small.
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether `timer` bounds the attempt in flight.
    timed_attempt: bool,
    /// The service to call again; `None` when the request cannot be retried.
    service: Option<S>,
    copy: Option<K::Copy>,
    shared: Arc<Shared<C>>,
    rng: R,
    retry: RetryState,
    /// The policy's own overall deadline, if it has one.
    deadline: Option<Instant>,
    _request: PhantomData<fn(Req)>,
}

#[pin_project(project = StateProj)]
enum State<P, F> {
    /// Being set up by `Retry::call`; never polled.
    Starting,
    Preparing {
        #[pin]
        prepare: P,
    },
    Calling {
        #[pin]
        future: F,
    },
    Sleeping,
    Readying,
    Failed {
        error: Option<BoxError>,
    },
}

enum Outcome<T, E> {
    Done(Result<T, E>),
    TimedOut,
}

impl<S, K, Req, C, R> RetryFuture<S, K, Req, C, R>
where
    K: Replay<Req>,
    S: Service<K::Request>,
{
    /// A future not started yet: [`Retry::call`](super::Retry) fills in the
    /// copy, then starts it. Built first so the copy is written in place.
    #[inline(always)]
    pub(super) fn new(shared: Arc<Shared<C>>, rng: R) -> Self {
        let deadline = shared
            .policy
            .total_limit()
            .and_then(|total| Instant::now().checked_add(total));
        Self {
            state: State::Starting,
            timer: None,
            timed_attempt: false,
            service: None,
            copy: None,
            shared,
            rng,
            retry: RetryState::default(),
            deadline,
            _request: PhantomData,
        }
    }

    /// Where the copy for retries goes.
    #[inline(always)]
    pub(super) fn copy_slot(&mut self) -> &mut Option<K::Copy> {
        &mut self.copy
    }

    /// Whether the request can be sent again.
    #[inline(always)]
    pub(super) fn has_copy(&self) -> bool {
        self.copy.is_some()
    }

    /// The first attempt is under way.
    #[inline(always)]
    pub(super) fn start_calling(&mut self, future: S::Future, service: Option<S>) {
        if let Some(end) = attempt_end(&self.shared.policy, self.deadline) {
            self.timer = Some(Box::pin(tokio::time::sleep_until(end)));
            self.timed_attempt = true;
        }
        self.service = service;
        self.state = State::Calling { future };
    }

    /// The body is read first; `service` is ready and makes the first attempt.
    pub(super) fn start_preparing(&mut self, prepare: K::Prepare, service: S) {
        self.service = Some(service);
        self.state = State::Preparing { prepare };
    }

    /// The request failed before any attempt.
    pub(super) fn start_failed(&mut self, error: BoxError) {
        self.copy = None;
        self.state = State::Failed { error: Some(error) };
    }
}

/// When an attempt started now must end: the attempt timeout or the overall
/// deadline, whichever is first.
#[inline(always)]
fn attempt_end(policy: &RetryPolicy, deadline: Option<Instant>) -> Option<Instant> {
    if deadline.is_none() && policy.attempt_limit().is_none() {
        return None;
    }
    attempt_end_slow(policy, deadline)
}

#[cold]
fn attempt_end_slow(policy: &RetryPolicy, deadline: Option<Instant>) -> Option<Instant> {
    let by_timeout = policy
        .attempt_limit()
        .and_then(|timeout| Instant::now().checked_add(timeout));
    earlier(by_timeout, deadline)
}

fn set_timer(timer: &mut Option<Pin<Box<Sleep>>>, at: Instant) {
    match timer {
        Some(sleep) => sleep.as_mut().reset(at),
        None => *timer = Some(Box::pin(tokio::time::sleep_until(at))),
    }
}

#[inline(always)]
fn finish<T, E: Into<BoxError>>(
    outcome: Outcome<T, E>,
    deadline: Option<Instant>,
) -> Result<T, BoxError> {
    match outcome {
        Outcome::Done(result) => result.map_err(Into::into),
        Outcome::TimedOut => Err(timed_out(deadline)),
    }
}

#[cold]
fn timed_out(deadline: Option<Instant>) -> BoxError {
    let message = if deadline.is_some_and(|d| Instant::now() >= d) {
        "the retry deadline elapsed during an attempt"
    } else {
        "the attempt timed out"
    };
    crate::Error::new(ErrorClass::Timeout, message).into()
}

impl<S, K, Req, C, R> Future for RetryFuture<S, K, Req, C, R>
where
    K: Replay<Req>,
    S: Service<K::Request>,
    S::Error: Into<BoxError> + fmt::Display,
    C: Classifier<S::Response, S::Error>,
    R: Random,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Starting => {
                    unreachable!("a retry future is started before it is returned")
                }
                StateProj::Failed { error } => {
                    let error = error.take().expect("polled after completion");
                    return Poll::Ready(Err(error));
                }
                StateProj::Preparing { prepare } => {
                    let output = ready!(prepare.poll(cx));
                    let request = K::prepared(output, this.copy)?;
                    let service = this
                        .service
                        .as_mut()
                        .expect("the ready service waits for the body");
                    let future = service.call(request);
                    if this.copy.is_none() {
                        // Nothing to send again: let the service go now.
                        *this.service = None;
                    }
                    *this.timed_attempt = false;
                    if let Some(end) = attempt_end(&this.shared.policy, *this.deadline) {
                        set_timer(this.timer, end);
                        *this.timed_attempt = true;
                    }
                    this.state.set(State::Calling { future });
                }
                StateProj::Calling { future } => {
                    let outcome = match future.poll(cx) {
                        Poll::Ready(result) => Outcome::Done(result),
                        Poll::Pending => match this.timer.as_mut() {
                            Some(timer) if *this.timed_attempt => {
                                ready!(timer.as_mut().poll(cx));
                                Outcome::TimedOut
                            }
                            _ => return Poll::Pending,
                        },
                    };
                    let classification = match &outcome {
                        Outcome::Done(result) => this.shared.classifier.classify(result.as_ref()),
                        Outcome::TimedOut => Some(Classification::new(ErrorClass::Timeout)),
                    };
                    let Some(classification) = classification else {
                        return Poll::Ready(finish(outcome, *this.deadline));
                    };
                    let Some(copy) = this.copy.as_ref() else {
                        return Poll::Ready(finish(outcome, *this.deadline));
                    };
                    let facts = RequestFacts {
                        connect_only: K::connect_only(copy, &this.shared.http),
                        deadline: earlier(*this.deadline, K::deadline(copy).map(|d| d.instant())),
                        retry_if: K::retry_if(copy),
                    };
                    let reason = || match &outcome {
                        Outcome::Done(Err(err)) => Reason::Error(err),
                        Outcome::Done(Ok(_)) => Reason::Response(classification.status()),
                        Outcome::TimedOut => Reason::TimedOut,
                    };
                    let decision = this.shared.policy.decide_and_log(
                        &classification,
                        this.retry,
                        facts,
                        this.rng,
                        reason,
                    );
                    match decision {
                        None => return Poll::Ready(finish(outcome, *this.deadline)),
                        Some(event) => {
                            drop(outcome);
                            *this.timed_attempt = false;
                            if event.delay == Duration::ZERO {
                                this.state.set(State::Readying);
                            } else {
                                set_timer(this.timer, Instant::now() + event.delay);
                                this.state.set(State::Sleeping);
                            }
                        }
                    }
                }
                StateProj::Sleeping => {
                    if let Some(timer) = this.timer.as_mut() {
                        ready!(timer.as_mut().poll(cx));
                    }
                    this.state.set(State::Readying);
                }
                StateProj::Readying => {
                    let service = this
                        .service
                        .as_mut()
                        .expect("a retried request keeps its service");
                    if let Err(err) = ready!(service.poll_ready(cx)) {
                        return Poll::Ready(Err(err.into()));
                    }
                    let copy = this
                        .copy
                        .as_ref()
                        .expect("a retried request keeps its copy");
                    let request = K::replay(copy, this.retry.retries + 1, &this.shared.http);
                    let future = service.call(request);
                    if let Some(end) = attempt_end(&this.shared.policy, *this.deadline) {
                        set_timer(this.timer, end);
                        *this.timed_attempt = true;
                    }
                    this.state.set(State::Calling { future });
                }
            }
        }
    }
}

impl<S, K, Req, C, R> fmt::Debug for RetryFuture<S, K, Req, C, R>
where
    K: Replay<Req>,
    S: Service<K::Request>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Preparing { .. } => "reading body",
            State::Calling { .. } => "calling",
            State::Sleeping => "sleeping",
            State::Readying => "waiting for the service",
            State::Failed { .. } => "failed",
            State::Starting => "starting",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("retries", &self.retry.retries)
            .finish_non_exhaustive()
    }
}

/// The response future of [`Retry`](super::Retry) for `http::Request<B>`
/// ([`RetryLayer::new`](super::RetryLayer::new)).
#[pin_project]
pub struct ResponseFuture<S, B, C, R>
where
    S: Service<http::Request<RetryBody<B>>>,
    B: http_body::Body<Data = bytes::Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    #[pin]
    inner: RetryFuture<S, HttpReplay, http::Request<B>, C, R>,
}

impl<S, B, C, R> ResponseFuture<S, B, C, R>
where
    S: Service<http::Request<RetryBody<B>>>,
    B: http_body::Body<Data = bytes::Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    #[inline(always)]
    pub(super) fn new(inner: RetryFuture<S, HttpReplay, http::Request<B>, C, R>) -> Self {
        Self { inner }
    }
}

impl<S, B, C, R> Future for ResponseFuture<S, B, C, R>
where
    S: Service<http::Request<RetryBody<B>>>,
    S::Error: Into<BoxError> + fmt::Display,
    B: http_body::Body<Data = bytes::Bytes> + Unpin,
    B::Error: Into<BoxError>,
    C: Classifier<S::Response, S::Error>,
    R: Random,
{
    type Output = Result<S::Response, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}

impl<S, B, C, R> fmt::Debug for ResponseFuture<S, B, C, R>
where
    S: Service<http::Request<RetryBody<B>>>,
    B: http_body::Body<Data = bytes::Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

/// The response future of [`Retry`](super::Retry) for `Clone` requests
/// ([`RetryLayer::for_clone_requests`](super::RetryLayer::for_clone_requests)).
#[pin_project]
pub struct CloneResponseFuture<S, Req, C, R>
where
    S: Service<Req>,
    Req: Clone,
{
    #[pin]
    inner: RetryFuture<S, CloneReplay, Req, C, R>,
}

impl<S, Req, C, R> CloneResponseFuture<S, Req, C, R>
where
    S: Service<Req>,
    Req: Clone,
{
    #[inline(always)]
    pub(super) fn new(inner: RetryFuture<S, CloneReplay, Req, C, R>) -> Self {
        Self { inner }
    }
}

impl<S, Req, C, R> Future for CloneResponseFuture<S, Req, C, R>
where
    S: Service<Req>,
    S::Error: Into<BoxError> + fmt::Display,
    Req: Clone,
    C: Classifier<S::Response, S::Error>,
    R: Random,
{
    type Output = Result<S::Response, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}

impl<S, Req, C, R> fmt::Debug for CloneResponseFuture<S, Req, C, R>
where
    S: Service<Req>,
    Req: Clone,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloneResponseFuture")
            .finish_non_exhaustive()
    }
}
