//! The response future of [`Audit`](super::Audit).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::Response;
use pin_project::{pin_project, pinned_drop};

use super::{AuditContext, context::Ending, writer::SendLater};

/// The response future of [`Audit`](super::Audit).
///
/// Unaudited requests poll the inner future and nothing else. Audited ones
/// record their event when the response head is ready; only when the queue is
/// full does the future wait (as the [`FullPolicy`](super::FullPolicy) allows)
/// before handing the response on. A request dropped before it finished (a
/// client gone, an outer timeout) is recorded with outcome `error` and reason
/// `cancelled`.
#[pin_project(PinnedDrop)]
pub struct ResponseFuture<F: Future> {
    #[pin]
    state: State<F>,
}

#[pin_project(project = StateProj)]
enum State<F: Future> {
    PassThrough {
        #[pin]
        future: F,
    },
    Audited {
        #[pin]
        future: F,
        context: Option<AuditContext>,
    },
    Sending {
        send: SendLater,
        output: Option<F::Output>,
    },
}

impl<F: Future> ResponseFuture<F> {
    pub(super) fn pass_through(future: F) -> Self {
        Self {
            state: State::PassThrough { future },
        }
    }

    pub(super) fn audited(future: F, context: AuditContext) -> Self {
        Self {
            state: State::Audited {
                future,
                context: Some(context),
            },
        }
    }
}

impl<F: Future> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::PassThrough { .. } => "pass-through",
            State::Audited { .. } => "audited",
            State::Sending { .. } => "sending",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::PassThrough { future } => return future.poll(cx),
                StateProj::Audited { future, context } => {
                    let output = ready!(future.poll(cx));
                    let context = context.take().expect("polled after completion");
                    let ending = match &output {
                        Ok(res) => Ending::Response(res),
                        Err(_) => Ending::ServiceError,
                    };
                    match context.finish(ending) {
                        None => return Poll::Ready(output),
                        Some(send) => state.set(State::Sending {
                            send,
                            output: Some(output),
                        }),
                    }
                }
                StateProj::Sending { send, output } => {
                    ready!(send.as_mut().poll(cx));
                    return Poll::Ready(output.take().expect("polled after completion"));
                }
            }
        }
    }
}

#[pinned_drop]
impl<F: Future> PinnedDrop for ResponseFuture<F> {
    fn drop(self: Pin<&mut Self>) {
        if let StateProj::Audited { context, .. } = self.project().state.project()
            && let Some(context) = context.take()
        {
            // Never waits: what does not fit is counted as dropped.
            let _ = context.finish::<()>(Ending::Cancelled);
        }
    }
}
