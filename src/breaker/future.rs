//! The response future: the inner call, whose outcome is counted when it ends,
//! or the refusal of an open circuit.

use std::{
    fmt,
    future::Future,
    marker::PhantomData,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use pin_project::pin_project;
use tokio::time::Instant;

use super::{
    OnOpen,
    circuit::{Circuit, Outcome, Ticket},
    service::Shared,
};
use crate::{ErrorClass, classify::Classifier};

/// The response future of [`Breaker`](super::Breaker).
#[pin_project]
pub struct ResponseFuture<F, M, C> {
    #[pin]
    state: State<F, C>,
    _mode: PhantomData<fn() -> M>,
}

#[pin_project(project = StateProj)]
enum State<F, C> {
    Called {
        #[pin]
        future: F,
        call: Option<Call<C>>,
    },
    Refused {
        retry_after: Duration,
    },
    Done,
}

/// An admitted call: what is needed to count its outcome. Dropped unfinished
/// (the caller gave up), it gives a probe's slot back.
struct Call<C> {
    shared: Arc<Shared>,
    circuit: Arc<Circuit>,
    key: Option<String>,
    ticket: Option<Ticket>,
    started: Instant,
    classifier: C,
}

impl<F, M, C> ResponseFuture<F, M, C> {
    pub(super) fn refused(retry_after: Duration) -> Self {
        Self {
            state: State::Refused { retry_after },
            _mode: PhantomData,
        }
    }

    pub(super) fn called(
        future: F,
        shared: Arc<Shared>,
        circuit: Arc<Circuit>,
        key: Option<String>,
        ticket: Ticket,
        started: Instant,
        classifier: C,
    ) -> Self {
        Self {
            state: State::Called {
                future,
                call: Some(Call {
                    shared,
                    circuit,
                    key,
                    ticket: Some(ticket),
                    started,
                    classifier,
                }),
            },
            _mode: PhantomData,
        }
    }
}

impl<F, M, C> fmt::Debug for ResponseFuture<F, M, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Called { .. } => "called",
            State::Refused { .. } => "refused",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, M, C, Res, E> Future for ResponseFuture<F, M, C>
where
    F: Future<Output = Result<Res, E>>,
    M: OnOpen<Res, E>,
    C: Classifier<Res, E>,
{
    type Output = Result<M::Response, M::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        match this.state.as_mut().project() {
            StateProj::Called { future, call } => {
                let result = std::task::ready!(future.poll(cx));
                if let Some(call) = call.take() {
                    call.finish(result.as_ref());
                }
                this.state.set(State::Done);
                Poll::Ready(M::pass(result))
            }
            StateProj::Refused { retry_after } => {
                let retry_after = *retry_after;
                this.state.set(State::Done);
                Poll::Ready(M::refuse(retry_after))
            }
            StateProj::Done => panic!("ResponseFuture polled after completion"),
        }
    }
}

impl<C> Call<C> {
    fn finish<Res, E>(mut self, result: Result<&Res, &E>)
    where
        C: Classifier<Res, E>,
    {
        let Some(ticket) = self.ticket.take() else {
            return;
        };
        let config = &self.shared.config;
        let classification = self.classifier.classify(result);
        let failed = classification.is_some_and(|c| {
            c.is_transient()
                || matches!(
                    c.class(),
                    ErrorClass::Server | ErrorClass::Internal | ErrorClass::Panic
                )
        });
        let hold_for = classification
            .filter(|c| c.class() == ErrorClass::Overloaded)
            .and_then(|c| c.retry_after());
        let slow = config
            .slow_calls
            .is_some_and(|(threshold, _)| self.started.elapsed() >= threshold);
        let outcome = Outcome {
            failed,
            slow,
            hold_for,
        };
        if let Some(transition) = self.circuit.record(ticket, outcome, config) {
            self.shared.report(self.key.as_deref(), transition);
        }
    }
}

impl<C> Drop for Call<C> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.circuit.release(ticket);
        }
    }
}
