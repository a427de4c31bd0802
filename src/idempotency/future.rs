//! [`ResponseFuture`]: the response future of [`Idempotency`](super::Idempotency).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::Response;
use http_body::Body;
use pin_project::pin_project;

use super::flow::{AnsweredFuture, pass};
use crate::ResponseBody;

/// The response future of [`Idempotency`](super::Idempotency).
///
/// A request the layer does not deduplicate polls the inner future in place,
/// with no allocation. Any other request runs in one boxed future: the keyed
/// path (buffering, fingerprint, store round trips, the handler), or an answer
/// the layer gave at once (an invalid or missing key). Two variants only, so the
/// pass-through path's poll and drop test one discriminant.
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
    /// Handled by the layer.
    Answered { future: AnsweredFuture<B, E> },
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
    pub(crate) fn answered(future: AnsweredFuture<B, E>) -> Self {
        Self {
            kind: Kind::Answered { future },
        }
    }
}

/// An answer the layer gives without the store, as the boxed future the
/// [`ResponseFuture`] holds for every request it handles.
pub(crate) fn ready<B, E>(response: Response<ResponseBody<B>>) -> AnsweredFuture<B, E>
where
    B: Body + Send + 'static,
    B::Error: Send,
    E: Send + 'static,
{
    Box::pin(std::future::ready(Ok(response)))
}

impl<F, B: Body, E> std::fmt::Debug for ResponseFuture<F, B, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Answered { .. } => "answered",
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
    type Output = Result<Response<ResponseBody<B>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => Poll::Ready(ready!(future.poll(cx)).map(pass)),
            KindProj::Answered { future } => future.as_mut().poll(cx),
        }
    }
}
