use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, Limited, combinators::Collect};
use pin_project::pin_project;

use super::{
    Config, ErrorHandlerBody, PanicMessage, RequestContext,
    rewrite::{self, Verdict},
};
use crate::{BoxError, ResponseBody};

type InnerBody = tower_http::body::UnsyncBoxBody<Bytes, BoxError>;

/// The response future of [`ErrorHandler`](super::ErrorHandler).
#[pin_project]
pub struct ResponseFuture<F> {
    #[pin]
    state: State<F>,
    context: RequestContext,
    config: Config,
}

#[pin_project(project = StateProj)]
enum State<F> {
    Calling {
        #[pin]
        future: F,
    },
    /// Reading a 4xx text body for the detail. Boxed: only error responses get here,
    /// and it keeps the common states small.
    ReadingDetail {
        collect: Pin<Box<Collect<Limited<InnerBody>>>>,
        parts: Option<Box<http::response::Parts>>,
    },
    Failed {
        error: Option<BoxError>,
    },
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(future: F, context: RequestContext, config: Config) -> Self {
        Self {
            state: State::Calling { future },
            context,
            config,
        }
    }

    pub(super) fn failed(error: BoxError, context: RequestContext, config: Config) -> Self {
        Self {
            state: State::Failed { error: Some(error) },
            context,
            config,
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("method", &self.context.method)
            .field("path", &self.context.path())
            .finish_non_exhaustive()
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<InnerBody>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<ErrorHandlerBody>, Infallible>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future } => {
                    let res = match ready!(future.poll(cx)) {
                        Ok(res) => res,
                        Err(err) => {
                            return Poll::Ready(Ok(rewrite::from_error(err.into(), this.context)));
                        }
                    };
                    // The success path: nothing to look at (a caught panic is a 500).
                    let status = res.status();
                    if !(status.is_client_error() || status.is_server_error()) {
                        return Poll::Ready(Ok(res.map(ResponseBody::Inner)));
                    }
                    if let Some(PanicMessage(message)) = res.extensions().get::<PanicMessage>() {
                        let message = message.clone();
                        let (parts, _) = res.into_parts();
                        return Poll::Ready(Ok(rewrite::from_panic(&message, this.context, parts)));
                    }
                    match rewrite::verdict(&res, this.config, this.context) {
                        Verdict::PassThrough => {
                            return Poll::Ready(Ok(res.map(ResponseBody::Inner)));
                        }
                        Verdict::CompleteLayerProblem => {
                            let (parts, _) = res.into_parts();
                            return Poll::Ready(Ok(rewrite::from_layer_problem(
                                parts,
                                this.context,
                            )));
                        }
                        Verdict::Rewrite => {
                            let (parts, _) = res.into_parts();
                            return Poll::Ready(Ok(rewrite::from_response(
                                parts,
                                None,
                                this.context,
                            )));
                        }
                        Verdict::ReadDetail => {
                            let (parts, body) = res.into_parts();
                            let collect =
                                Limited::new(body, this.config.max_detail_bytes).collect();
                            this.state.set(State::ReadingDetail {
                                collect: Box::pin(collect),
                                parts: Some(Box::new(parts)),
                            });
                        }
                    }
                }
                StateProj::ReadingDetail { collect, parts } => {
                    let body = ready!(collect.as_mut().poll(cx));
                    let parts = *parts.take().expect("polled after completion");
                    let bytes = body.ok().map(|collected| collected.to_bytes());
                    let text = bytes.as_deref().and_then(|b| std::str::from_utf8(b).ok());
                    return Poll::Ready(Ok(rewrite::from_response(parts, text, this.context)));
                }
                StateProj::Failed { error } => {
                    let error = error.take().expect("polled after completion");
                    return Poll::Ready(Ok(rewrite::from_error(error, this.context)));
                }
            }
        }
    }
}
