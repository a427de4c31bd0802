//! The response future: waiting in the queue, running with a slot, or refused.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::{Request, Response, StatusCode};
use pin_project::pin_project;
use tokio::time::{Instant, Sleep};
use tower::Service;

use super::limiter::{Limiter, Refusal, Waiter};
use crate::{Classification, ErrorClass, Problem, ResponseBody};

/// The response future of [`Overload`](super::Overload).
#[pin_project]
pub struct ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    #[pin]
    state: State<S, B>,
}

#[pin_project(project = StateProj)]
enum State<S, B>
where
    S: Service<Request<B>>,
{
    Running {
        #[pin]
        future: S::Future,
        slot: Slot,
    },
    /// Boxed: the queued path allocates anyway (its timer), and the future
    /// every admitted request moves stays the size of the inner one.
    Queued(Pin<Box<Queued<S, B>>>),
    Refused {
        why: Refusal,
        retry_after: Duration,
    },
    Done,
}

#[pin_project(project = QueuedProj)]
struct Queued<S, B> {
    place: Place,
    /// The service that was ready for this request (a clone took its place).
    service: S,
    request: Option<Request<B>>,
    #[pin]
    give_up: Sleep,
}

/// A slot held by a running request; given back when it ends or is dropped.
struct Slot {
    limiter: Arc<Limiter>,
    admitted: Instant,
    released: bool,
}

impl Slot {
    #[inline]
    fn new(limiter: Arc<Limiter>, admitted: Instant) -> Self {
        Self {
            limiter,
            admitted,
            released: false,
        }
    }

    fn release(&mut self, overloaded: Option<bool>) {
        if !self.released {
            self.released = true;
            self.limiter
                .release(self.admitted, self.admitted.elapsed(), overloaded);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Dropped unanswered (a timeout outside, a client gone): the slot comes
        // back, and a latency over the target still cuts the limit.
        self.release(None);
    }
}

/// A place in the queue; leaving it (or giving back a slot granted meanwhile)
/// when dropped.
struct Place {
    limiter: Arc<Limiter>,
    waiter: Arc<Waiter>,
    active: bool,
}

impl Drop for Place {
    fn drop(&mut self) {
        if self.active && self.limiter.leave_queue(&self.waiter) {
            self.limiter.release(Instant::now(), Duration::ZERO, None);
        }
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    #[inline]
    pub(super) fn running(future: S::Future, limiter: Arc<Limiter>, admitted: Instant) -> Self {
        Self {
            state: State::Running {
                future,
                slot: Slot::new(limiter, admitted),
            },
        }
    }

    pub(super) fn queued(
        limiter: Arc<Limiter>,
        waiter: Arc<Waiter>,
        give_up_at: Instant,
        service: S,
        request: Request<B>,
    ) -> Self {
        Self {
            state: State::Queued(Box::pin(Queued {
                place: Place {
                    limiter,
                    waiter,
                    active: true,
                },
                service,
                request: Some(request),
                give_up: tokio::time::sleep_until(give_up_at),
            })),
        }
    }

    pub(super) fn refused(why: Refusal, retry_after: Duration) -> Self {
        Self {
            state: State::Refused { why, retry_after },
        }
    }
}

impl<S, B> fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Running { .. } => "running",
            State::Queued(_) => "queued",
            State::Refused { .. } => "refused",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<S, B, ResB> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    ResB: http_body::Body,
{
    type Output = Result<Response<ResponseBody<ResB>>, S::Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Running { future, slot } => {
                    let result = std::task::ready!(future.poll(cx));
                    let overloaded = match &result {
                        Ok(res) => {
                            crate::classify::classify_status(res.status()).is_some_and(|class| {
                                matches!(class, ErrorClass::Overloaded | ErrorClass::Timeout)
                            }) || res.status() == StatusCode::GATEWAY_TIMEOUT
                        }
                        Err(_) => false,
                    };
                    slot.release(Some(overloaded));
                    this.state.set(State::Done);
                    return Poll::Ready(result.map(|res| res.map(ResponseBody::Inner)));
                }
                StateProj::Queued(queued) => {
                    let QueuedProj {
                        place,
                        service,
                        request,
                        give_up,
                    } = queued.as_mut().project();
                    if !place.waiter.is_granted(cx.waker()) {
                        if give_up.poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                        if !place.limiter.leave_queue(&place.waiter) {
                            place.active = false;
                            let (why, retry_after) = match place.limiter.refused_while_queued() {
                                super::limiter::Admission::Refused { why, retry_after } => {
                                    (why, retry_after)
                                }
                                _ => (Refusal::Deadline, Duration::from_secs(1)),
                            };
                            this.state.set(State::Refused { why, retry_after });
                            continue;
                        }
                    }
                    // Granted a slot: the request runs now.
                    place.active = false;
                    let limiter = place.limiter.clone();
                    let Some(request) = request.take() else {
                        this.state.set(State::Done);
                        continue;
                    };
                    let future = service.call(request);
                    this.state.set(State::Running {
                        future,
                        slot: Slot::new(limiter, Instant::now()),
                    });
                }
                StateProj::Refused { why, retry_after } => {
                    let response = refusal(*why, *retry_after);
                    this.state.set(State::Done);
                    return Poll::Ready(Ok(response));
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            }
        }
    }
}

/// The 503 problem a refused request is answered with.
fn refusal<B: http_body::Body>(why: Refusal, retry_after: Duration) -> Response<ResponseBody<B>> {
    let detail = match why {
        Refusal::Deadline => {
            "The server is overloaded and could not start this request in time. Try again after the delay in Retry-After."
        }
        Refusal::QueueFull => "The server is overloaded. Try again after the delay in Retry-After.",
    };
    let status = StatusCode::SERVICE_UNAVAILABLE;
    let mut res: Response<ResponseBody<B>> = Problem::new(status)
        .with_detail(detail)
        .with_retry_after(retry_after)
        .into_layer_response();
    res.extensions_mut().insert(
        Classification::new(ErrorClass::Overloaded)
            .with_status(status)
            .with_retry_after(Some(retry_after)),
    );
    res
}
