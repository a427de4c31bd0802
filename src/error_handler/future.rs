use std::{
    convert::Infallible,
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::Response;
use http_body::Body;
use pin_project::pin_project;

use super::{
    Config, RequestContext, panic_message,
    rewrite::{self, Verdict},
};
use crate::{BoxError, ResponseBody};

/// The response future of [`ErrorHandler`](super::ErrorHandler): the inner
/// future (`F`, answering with a `B` body), with its panics caught.
#[pin_project]
pub struct ResponseFuture<F, B> {
    #[pin]
    state: State<F, B>,
    context: RequestContext,
    config: Config,
}

#[pin_project(project = StateProj)]
enum State<F, B> {
    Calling {
        #[pin]
        future: F,
    },
    /// Reading a 4xx text body for the detail. Boxed: only error responses get here,
    /// and it keeps the common states small.
    ReadingDetail {
        body: Pin<Box<B>>,
        read: Vec<u8>,
        parts: Option<Box<http::response::Parts>>,
    },
    Failed {
        error: Option<BoxError>,
    },
    /// The inner service panicked in `call`.
    Panicked {
        message: Option<String>,
    },
}

impl<F, B> ResponseFuture<F, B> {
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

    pub(super) fn panicked(message: String, context: RequestContext, config: Config) -> Self {
        Self {
            state: State::Panicked {
                message: Some(message),
            },
            context,
            config,
        }
    }
}

impl<F, B> std::fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("method", &self.context.method)
            .field("path", &self.context.path())
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<ResponseBody<B>>, Infallible>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future } => {
                    let polled = std::panic::catch_unwind(AssertUnwindSafe(|| future.poll(cx)));
                    let res = match polled {
                        Ok(Poll::Pending) => return Poll::Pending,
                        Ok(Poll::Ready(Ok(res))) => res,
                        Ok(Poll::Ready(Err(err))) => {
                            return Poll::Ready(Ok(rewrite::from_error(err.into(), this.context)));
                        }
                        Err(payload) => {
                            let message = panic_message(payload);
                            return Poll::Ready(Ok(rewrite::from_panic(&message, this.context)));
                        }
                    };
                    // The success path: nothing to look at.
                    let status = res.status();
                    if !(status.is_client_error() || status.is_server_error()) {
                        return Poll::Ready(Ok(res.map(ResponseBody::Inner)));
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
                            this.state.set(State::ReadingDetail {
                                body: Box::pin(body),
                                read: Vec::new(),
                                parts: Some(Box::new(parts)),
                            });
                        }
                    }
                }
                StateProj::ReadingDetail { body, read, parts } => {
                    let within_limit = loop {
                        match ready!(body.as_mut().poll_frame(cx)) {
                            None => break true,
                            Some(Err(_)) => break false,
                            Some(Ok(frame)) => {
                                let Ok(data) = frame.into_data() else {
                                    continue;
                                };
                                if read.len() + data.len() > this.config.max_detail_bytes {
                                    break false;
                                }
                                read.extend_from_slice(&data);
                            }
                        }
                    };
                    let parts = *parts.take().expect("polled after completion");
                    let text = within_limit
                        .then(|| std::str::from_utf8(read).ok())
                        .flatten();
                    return Poll::Ready(Ok(rewrite::from_response(parts, text, this.context)));
                }
                StateProj::Failed { error } => {
                    let error = error.take().expect("polled after completion");
                    return Poll::Ready(Ok(rewrite::from_error(error, this.context)));
                }
                StateProj::Panicked { message } => {
                    let message = message.take().expect("polled after completion");
                    return Poll::Ready(Ok(rewrite::from_panic(&message, this.context)));
                }
            }
        }
    }
}
