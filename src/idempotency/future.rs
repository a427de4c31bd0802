//! [`ResponseFuture`]: the response future of [`Idempotency`](super::Idempotency).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::Response;
use http_body::Body;
use pin_project::pin_project;

use super::{
    IdempotencyBody,
    flow::{KeyedFuture, pass},
};

/// The response future of [`Idempotency`](super::Idempotency).
///
/// A request the layer does not deduplicate polls the inner future in place,
/// with no allocation. A keyed request runs its whole path (buffering,
/// fingerprint, store round trips, the handler) in one boxed future: one
/// allocation beside the body buffer and the store calls it needs anyway.
#[pin_project]
pub struct ResponseFuture<F, B: Body, E> {
    #[pin]
    kind: Kind<F, B, E>,
}

#[pin_project(project = KindProj)]
enum Kind<F, B: Body, E> {
    /// Not deduplicated: the inner future, untouched.
    Inner {
        #[pin]
        future: F,
    },
    /// Answered without the store (an invalid or missing key). Boxed so the
    /// future stays as small as the inner one on the pass-through path.
    Ready {
        response: Option<Box<Response<IdempotencyBody<B>>>>,
    },
    /// The keyed path.
    Keyed { future: KeyedFuture<B, E> },
}

impl<F, B: Body, E> ResponseFuture<F, B, E> {
    #[inline]
    pub(crate) fn inner(future: F) -> Self {
        Self {
            kind: Kind::Inner { future },
        }
    }

    /// The future of a request the layer handles itself.
    #[inline]
    pub(crate) fn answered(answer: Answer<B, E>) -> Self {
        Self {
            kind: match answer {
                Answer::Ready(response) => Kind::Ready {
                    response: Some(response),
                },
                Answer::Keyed(future) => Kind::Keyed { future },
            },
        }
    }
}

/// How the layer handles a request it does not pass through: two pointers at
/// most, so that building it out of line costs the pass-through path nothing.
pub(crate) enum Answer<B: Body, E> {
    /// Answered without the store.
    Ready(Box<Response<IdempotencyBody<B>>>),
    /// The keyed path.
    Keyed(KeyedFuture<B, E>),
}

impl<B: Body, E> Answer<B, E> {
    pub(crate) fn ready(response: Response<IdempotencyBody<B>>) -> Self {
        Self::Ready(Box::new(response))
    }
}

impl<F, B: Body, E> std::fmt::Debug for ResponseFuture<F, B, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Ready { .. } => "ready",
            Kind::Keyed { .. } => "keyed",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
{
    type Output = Result<Response<IdempotencyBody<B>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => Poll::Ready(ready!(future.poll(cx)).map(pass)),
            KindProj::Ready { response } => {
                Poll::Ready(Ok(*response.take().expect("polled after completion")))
            }
            KindProj::Keyed { future } => future.as_mut().poll(cx),
        }
    }
}
