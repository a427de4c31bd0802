//! Retrying any async operation: [`RetryPolicy::run`].

use std::{
    fmt,
    future::{Future, IntoFuture},
    pin::Pin,
    task::{Context, Poll, ready},
};

use pin_project::pin_project;
use tokio::time::{Instant, Sleep};

use super::{
    Random, RetryPolicy, ThreadRandom,
    log::Reason,
    policy::{RequestFacts, RetryState},
};
use crate::{
    Classification, Deadline, ErrorClass,
    classify::{AsError, Classifier, classify_error},
};

impl RetryPolicy {
    /// Retries `operation` — a database query, a call to a provider, anything
    /// async that is not a tower service — with this policy's backoff,
    /// classification and budget. Await the result:
    ///
    /// ```
    /// use steadfast::retry::RetryPolicy;
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::io;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let policy = RetryPolicy::default();
    /// let calls = AtomicU32::new(0);
    /// let rows = policy
    ///     .run(|| async {
    ///         if calls.fetch_add(1, Ordering::SeqCst) == 0 {
    ///             Err(io::Error::from(io::ErrorKind::ConnectionReset)) // transient: retried
    ///         } else {
    ///             Ok(vec!["row"])
    ///         }
    ///     })
    ///     .await
    ///     .unwrap();
    /// assert_eq!(rows, ["row"]);
    /// assert_eq!(calls.load(Ordering::SeqCst), 2);
    /// # }
    /// ```
    ///
    /// By default `Ok` is success and an error is classified through
    /// [`AsError`] (its `source()` chain, as [`classify_error`] does); give
    /// another [`Classifier`] with [`Run::classifier`]. Each attempt is one call
    /// of `operation`. The policy's [`deadline`](super::RetryPolicy::deadline)
    /// and a [`Run::deadline`] bound the delays; an attempt itself is not timed
    /// out here (its error type is yours): wrap it in `tokio::time::timeout`, or
    /// [`Deadline::run`], if it needs to be.
    pub fn run<F>(&self, operation: F) -> Run<F> {
        Run {
            policy: self.clone(),
            operation,
            classifier: ClassifyErrors,
            rng: ThreadRandom,
            deadline: None,
        }
    }
}

/// Classifies errors through [`AsError`]; every `Ok` is a success.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClassifyErrors;

impl<T, E: AsError> Classifier<T, E> for ClassifyErrors {
    fn classify(&self, outcome: Result<&T, &E>) -> Option<Classification> {
        let err = outcome.err()?;
        Some(
            err.as_error()
                .map_or(Classification::new(ErrorClass::Internal), classify_error),
        )
    }
}

/// An operation to retry, from [`RetryPolicy::run`]; `.await` it.
#[must_use = "a Run does nothing until awaited"]
pub struct Run<F, C = ClassifyErrors, R = ThreadRandom> {
    policy: RetryPolicy,
    operation: F,
    classifier: C,
    rng: R,
    deadline: Option<Deadline>,
}

impl<F, C, R> Run<F, C, R> {
    /// What counts as a failure (default [`ClassifyErrors`]). A closure
    /// `Fn(Result<&T, &E>) -> Option<Classification>` can, for instance, treat
    /// an `Ok` holding a "try later" answer as a failure.
    pub fn classifier<C2>(self, classifier: C2) -> Run<F, C2, R> {
        Run {
            policy: self.policy,
            operation: self.operation,
            classifier,
            rng: self.rng,
            deadline: self.deadline,
        }
    }

    /// Where jitter comes from (default [`ThreadRandom`]).
    pub fn rng<R2: Random>(self, rng: R2) -> Run<F, C, R2> {
        Run {
            policy: self.policy,
            operation: self.operation,
            classifier: self.classifier,
            rng,
            deadline: self.deadline,
        }
    }

    /// No delay is started that would end after `deadline` (typically the
    /// request's own, read with the `Deadline` extractor).
    pub fn deadline(mut self, deadline: Deadline) -> Self {
        self.deadline = Some(deadline);
        self
    }
}

impl<F, C, R> fmt::Debug for Run<F, C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run")
            .field("policy", &self.policy)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl<F, Fut, T, E, C, R> IntoFuture for Run<F, C, R>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: fmt::Display,
    C: Classifier<T, E>,
    R: Random,
{
    type Output = Result<T, E>;
    type IntoFuture = RunFuture<F, Fut, C, R>;

    fn into_future(mut self) -> Self::IntoFuture {
        self.policy.deposit();
        let own = self
            .policy
            .total_limit()
            .and_then(|total| Instant::now().checked_add(total));
        let deadline = crate::deadline::earlier(own, self.deadline.map(|d| d.instant()));
        let future = (self.operation)();
        RunFuture {
            state: RunState::Calling { future },
            operation: self.operation,
            classifier: self.classifier,
            rng: self.rng.fork(),
            policy: self.policy,
            retry: RetryState::default(),
            deadline,
        }
    }
}

/// The future of a [`Run`].
#[pin_project]
pub struct RunFuture<F, Fut, C, R> {
    #[pin]
    state: RunState<Fut>,
    operation: F,
    classifier: C,
    rng: R,
    policy: RetryPolicy,
    retry: RetryState,
    deadline: Option<Instant>,
}

#[pin_project(project = RunStateProj)]
enum RunState<Fut> {
    Calling {
        #[pin]
        future: Fut,
    },
    Sleeping {
        #[pin]
        sleep: Sleep,
    },
}

impl<F, Fut, T, E, C, R> Future for RunFuture<F, Fut, C, R>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: fmt::Display,
    C: Classifier<T, E>,
    R: Random,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                RunStateProj::Calling { future } => {
                    let result = ready!(future.poll(cx));
                    let Some(classification) = this.classifier.classify(result.as_ref()) else {
                        return Poll::Ready(result);
                    };
                    let facts = RequestFacts {
                        deadline: *this.deadline,
                        ..RequestFacts::default()
                    };
                    let reason = || match &result {
                        Err(err) => Reason::Error(err),
                        Ok(_) => Reason::Response(classification.status()),
                    };
                    let decision = this.policy.decide_and_log(
                        &classification,
                        this.retry,
                        facts,
                        this.rng,
                        reason,
                    );
                    match decision {
                        None => return Poll::Ready(result),
                        Some(event) => {
                            drop(result);
                            let sleep = tokio::time::sleep_until(Instant::now() + event.delay);
                            this.state.set(RunState::Sleeping { sleep });
                        }
                    }
                }
                RunStateProj::Sleeping { sleep } => {
                    ready!(sleep.poll(cx));
                    let future = (this.operation)();
                    this.state.set(RunState::Calling { future });
                }
            }
        }
    }
}

impl<F, Fut, C, R> fmt::Debug for RunFuture<F, Fut, C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunFuture")
            .field("retries", &self.retry.retries)
            .finish_non_exhaustive()
    }
}
