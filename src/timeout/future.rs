//! The response future: the inner future raced against one `Sleep`, which is
//! only created when the inner future does not answer at once: an answer on the
//! first poll never touches the timer. The `Sleep` is boxed: a request that waits
//! pays one allocation beside registering a timer (the costlier part), and the
//! future every request moves through the outer layers stays small
//! (`benches/README.md` has the sizes).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use http::{Response, StatusCode};
use pin_project::pin_project;
use tokio::time::{Instant, Sleep};

use crate::{Classification, ErrorClass, Problem, ResponseBody, route::RouteName};

/// The `detail` of the timeout answer: what happened, naming no internals.
const DETAIL: &str = "The server did not finish the request in time.";

/// The response future of [`RouteTimeout`](super::RouteTimeout).
///
/// When the deadline passes first, the inner future is dropped at once — the
/// handler's work stops at its next `.await` — and the future answers with the
/// configured timeout problem.
#[pin_project]
pub struct ResponseFuture<F> {
    #[pin]
    state: State<F>,
}

#[pin_project(project = StateProj)]
enum State<F> {
    Limited {
        #[pin]
        future: F,
        /// Created at the first `Pending` of `future`.
        sleep: Option<Pin<Box<Sleep>>>,
        deadline: Instant,
        started: Instant,
        route: RouteName,
        status: StatusCode,
    },
    Unlimited {
        #[pin]
        future: F,
    },
    /// The deadline passed and the inner future was dropped.
    Expired,
}

impl<F> ResponseFuture<F> {
    pub(super) fn limited(
        future: F,
        deadline: Instant,
        started: Instant,
        route: RouteName,
        status: StatusCode,
    ) -> Self {
        Self {
            state: State::Limited {
                future,
                sleep: None,
                deadline,
                started,
                route,
                status,
            },
        }
    }

    pub(super) fn unlimited(future: F) -> Self {
        Self {
            state: State::Unlimited { future },
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("ResponseFuture");
        match &self.state {
            State::Limited {
                deadline, route, ..
            } => d
                .field("route", &route.as_str())
                .field("deadline", deadline),
            State::Unlimited { .. } => d.field("deadline", &None::<Instant>),
            State::Expired => d.field("expired", &true),
        };
        d.finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let (started, route, status, deadline) = match this.state.as_mut().project() {
            StateProj::Unlimited { future } => {
                return future.poll(cx).map_ok(|res| res.map(ResponseBody::Inner));
            }
            StateProj::Limited {
                future,
                sleep,
                deadline,
                started,
                route,
                status,
            } => {
                if let Poll::Ready(result) = future.poll(cx) {
                    return Poll::Ready(result.map(|res| res.map(ResponseBody::Inner)));
                }
                let timer =
                    sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(*deadline)));
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                (*started, route.clone(), *status, *deadline)
            }
            StateProj::Expired => panic!("ResponseFuture polled after completion"),
        };
        // Drop the inner future now, before answering: the work stops here.
        this.state.set(State::Expired);
        Poll::Ready(Ok(timed_out(started, deadline, route.as_str(), status)))
    }
}

/// Logs the timeout once and builds the answer.
fn timed_out<B: http_body::Body>(
    started: Instant,
    deadline: Instant,
    route: &str,
    status: StatusCode,
) -> Response<ResponseBody<B>> {
    tracing::warn!(
        route,
        http.route = route,
        error.type = ErrorClass::Timeout.as_str(),
        limit_ms = millis(deadline.saturating_duration_since(started)),
        elapsed_ms = millis(started.elapsed()),
        status = status.as_u16(),
        class = ErrorClass::Timeout.as_str(),
        "request timed out; its work was cancelled"
    );
    #[cfg(feature = "metrics")]
    ::metrics::counter!(crate::metrics::TIMEOUTS, "route" => route.to_owned()).increment(1);
    let mut res: Response<ResponseBody<B>> = Problem::new(status)
        .with_detail(DETAIL)
        .into_layer_response();
    res.extensions_mut()
        .insert(Classification::new(ErrorClass::Timeout).with_status(status));
    res
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
