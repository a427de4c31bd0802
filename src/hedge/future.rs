//! The response future: the first attempt, a timer, and the hedge once due.
//! The attempt that loses the race is dropped the moment the other answers.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, atomic::Ordering},
    task::{Context, Poll},
};

use pin_project::pin_project;
use tokio::time::{Instant, Sleep};
use tower::Service;

use super::{latency::LatencyTracker, service::Stats};
use crate::{Deadline, classify::Classifier, retry::RetryBudget};

/// What the hedge needs until it is sent.
pub(super) struct Spare<S, Req> {
    pub(super) service: S,
    pub(super) request: Req,
    pub(super) budget: RetryBudget,
    pub(super) deadline: Option<Deadline>,
}

/// The response future of [`Hedge`](super::Hedge).
#[pin_project]
pub struct ResponseFuture<S, Req, C>
where
    S: Service<Req>,
{
    #[pin]
    primary: Option<S::Future>,
    #[pin]
    hedge: Option<S::Future>,
    /// Until the hedge is sent or given up.
    spare: Option<Spare<S, Req>>,
    hedge_at: Instant,
    /// Made when the first attempt is still running at its first poll.
    timer: Option<Pin<Box<Sleep>>>,
    /// The budget paid for the hedge; it waits for its service to be ready.
    paid: bool,
    /// A transient failure of one attempt, kept while the other runs.
    failed: Option<Result<S::Response, S::Error>>,
    started: Instant,
    stats: Option<Arc<Stats>>,
    tracker: Option<Arc<LatencyTracker>>,
    classifier: Option<C>,
}

impl<S, Req, C> ResponseFuture<S, Req, C>
where
    S: Service<Req>,
{
    pub(super) fn single(future: S::Future, tracker: Option<Arc<LatencyTracker>>) -> Self {
        Self {
            primary: Some(future),
            hedge: None,
            spare: None,
            hedge_at: Instant::now(),
            timer: None,
            paid: false,
            failed: None,
            started: Instant::now(),
            stats: None,
            tracker,
            classifier: None,
        }
    }

    pub(super) fn hedged(
        primary: S::Future,
        spare: Spare<S, Req>,
        hedge_at: Instant,
        stats: Arc<Stats>,
        tracker: Option<Arc<LatencyTracker>>,
        classifier: C,
    ) -> Self {
        Self {
            primary: Some(primary),
            hedge: None,
            spare: Some(spare),
            hedge_at,
            timer: None,
            paid: false,
            failed: None,
            started: Instant::now(),
            stats: Some(stats),
            tracker,
            classifier: Some(classifier),
        }
    }
}

impl<S, Req, C> fmt::Debug for ResponseFuture<S, Req, C>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("primary_running", &self.primary.is_some())
            .field("hedge_running", &self.hedge.is_some())
            .field("hedge_pending", &self.spare.is_some())
            .finish_non_exhaustive()
    }
}

impl<S, Req, C> Future for ResponseFuture<S, Req, C>
where
    S: Service<Req>,
    C: Classifier<S::Response, S::Error>,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();

        if let Some(primary) = this.primary.as_mut().as_pin_mut()
            && let Poll::Ready(result) = primary.poll(cx)
        {
            this.primary.set(None);
            if let Some(tracker) = this.tracker {
                tracker.record(this.started.elapsed());
            }
            let hedge_running = this.hedge.is_some();
            if !hedge_running || is_final(this.classifier.as_ref(), &result) {
                // The hedge, running or not yet sent, is dropped here.
                this.hedge.set(None);
                *this.spare = None;
                *this.timer = None;
                return Poll::Ready(result);
            }
            *this.failed = Some(result);
        }

        if let Some(hedge) = this.hedge.as_mut().as_pin_mut()
            && let Poll::Ready(result) = hedge.poll(cx)
        {
            this.hedge.set(None);
            let primary_running = this.primary.is_some();
            if !primary_running || is_final(this.classifier.as_ref(), &result) {
                if primary_running {
                    // The first attempt loses: dropped now, its latency is
                    // at least this long.
                    this.primary.set(None);
                    if let Some(tracker) = this.tracker {
                        tracker.record(this.started.elapsed());
                    }
                    if let Some(stats) = this.stats {
                        stats.won.fetch_add(1, Ordering::Relaxed);
                    }
                }
                return Poll::Ready(result);
            }
            *this.failed = Some(result);
        }

        if this.primary.is_none() && this.hedge.is_none() {
            // Unreachable in practice (the second answer returns above); kept
            // so the future can never hang.
            if let Some(result) = this.failed.take() {
                return Poll::Ready(result);
            }
        }

        if this.spare.is_some() {
            if !*this.paid {
                let hedge_at = *this.hedge_at;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(hedge_at)));
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                *this.timer = None;
                let Some(spare) = this.spare.as_ref() else {
                    return Poll::Pending;
                };
                if spare.deadline.is_some_and(|d| d.is_expired()) {
                    *this.spare = None;
                    return Poll::Pending;
                }
                if !spare.budget.withdraw() {
                    if let Some(stats) = this.stats {
                        stats.refused_by_budget.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::debug!("hedge not sent: the retry budget is empty");
                    #[cfg(feature = "metrics")]
                    ::metrics::counter!(crate::metrics::HEDGES, "outcome" => "budget_refused")
                        .increment(1);
                    *this.spare = None;
                    return Poll::Pending;
                }
                *this.paid = true;
            }
            let Some(spare) = this.spare.as_mut() else {
                return Poll::Pending;
            };
            match spare.service.poll_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => {
                    // The hedge is an extra; an unready upstream is not the caller's error.
                    *this.spare = None;
                    return Poll::Pending;
                }
                Poll::Ready(Ok(())) => {}
            }
            let Some(Spare {
                mut service,
                request,
                ..
            }) = this.spare.take()
            else {
                return Poll::Pending;
            };
            this.hedge.set(Some(service.call(request)));
            if let Some(stats) = this.stats {
                stats.sent.fetch_add(1, Ordering::Relaxed);
            }
            tracing::debug!(
                after_ms = this.started.elapsed().as_millis() as u64,
                "hedge sent"
            );
            #[cfg(feature = "metrics")]
            ::metrics::counter!(crate::metrics::HEDGES, "outcome" => "sent").increment(1);
            // Poll the new attempt at once.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

/// Whether an outcome ends the race: anything but a transient failure.
fn is_final<C, Res, E>(classifier: Option<&C>, result: &Result<Res, E>) -> bool
where
    C: Classifier<Res, E>,
{
    classifier.is_none_or(|c| {
        c.classify(result.as_ref())
            .is_none_or(|c| !c.is_transient())
    })
}
