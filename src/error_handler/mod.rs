//! One error handler: every failure becomes an RFC 9457 `application/problem+json` answer.
//!
//! Put [`ErrorHandlerLayer`] near the top of a stack (inside request-id and
//! tracing layers, outside everything that can fail). It guarantees that a
//! client meets one error format, whatever failed:
//!
//! - **Errors** of the inner service become a problem chosen by their
//!   [`ErrorClass`](crate::ErrorClass):
//!
//!   | class | status |
//!   | --- | --- |
//!   | `Timeout` | 504 Gateway Timeout |
//!   | `Overloaded` | 503 Service Unavailable, with `Retry-After` when the error carried one |
//!   | `Connect`, `Network`, `Server` | 502 Bad Gateway |
//!   | `Cancelled` | 503 Service Unavailable |
//!   | `Client` | 400 Bad Request |
//!   | `Panic`, `Internal` | 500 Internal Server Error |
//!
//! - **Panics** in the inner service's `call` or its future become a 500
//!   problem and the server goes on serving (caught with
//!   [`catch_unwind`](std::panic::catch_unwind), as tower-http's `CatchPanic`
//!   does, without boxing the response body).
//! - **Error responses without a problem body** — axum's bare 404 and 405, a 413
//!   from a body limit, the `text/plain` rejections of axum's extractors (400,
//!   415, 422), a 408 — are rewritten into problem+json with the same status and
//!   headers (`Allow`, `WWW-Authenticate` and `Retry-After` survive). The text of
//!   a 4xx `text/plain` body becomes the `detail`, since it describes the
//!   client's own input; a 5xx body never reaches the client. Responses with
//!   another content type (a handler's own JSON, HTML) are left alone.
//! - A handler's own problem+json and every successful response pass through
//!   untouched and unbuffered. Problems written by steadfast's own layers inside
//!   this one (a route timeout, a bad idempotency key) are rendered again with the
//!   request id added, and not logged twice.
//!
//! Every problem the layer writes carries the request id (the `x-request-id`
//! header, which tower-http's `SetRequestIdLayer` sets, whatever its version;
//! another name with [`ErrorHandlerLayer::request_id_header`]) as the
//! `request_id` extension member, and its
//! [`Classification`](crate::Classification) in the response extensions for
//! outer layers (audit). Each failure is logged once through `tracing` with the
//! method, path, status, class, request id and the real error with its source
//! chain: the log gets what the client must not see.
//!
//! The service's error type is `Infallible`, so it fits axum's `Router::layer`
//! and hyper's servers alike.
//!
//! ```
//! use axum::{Router, routing::get};
//! use steadfast::error_handler::ErrorHandlerLayer;
//! use tower_http::request_id::{MakeRequestUuid, SetRequestIdLayer};
//! use tower::ServiceBuilder;
//!
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(
//!         ServiceBuilder::new()
//!             .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
//!             .layer(ErrorHandlerLayer::new()),
//!     );
//! # let _ = app;
//! ```

mod future;
mod rewrite;

use std::{
    convert::Infallible,
    panic::AssertUnwindSafe,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response};
use http_body::Body;
use tower::{Layer, Service};

use crate::{BoxError, ResponseBody};

pub use future::ResponseFuture;

/// The longest `text/plain` 4xx body read to become a problem's `detail`.
const DEFAULT_MAX_DETAIL_BYTES: usize = 1024;

/// Applies [`ErrorHandler`] to a service. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct ErrorHandlerLayer {
    config: Config,
    request_id_header: HeaderName,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Config {
    pub(crate) rewrite_error_responses: bool,
    pub(crate) max_detail_bytes: usize,
}

impl ErrorHandlerLayer {
    /// The layer with its defaults: rewrite bare error responses, read up to 1 KiB
    /// of a 4xx `text/plain` body as the detail, read the request id from
    /// `x-request-id`.
    pub fn new() -> Self {
        Self {
            config: Config {
                rewrite_error_responses: true,
                max_detail_bytes: DEFAULT_MAX_DETAIL_BYTES,
            },
            request_id_header: crate::headers::X_REQUEST_ID.clone(),
        }
    }

    /// Whether error responses without a problem body are rewritten (default true).
    /// Errors and panics always become problems.
    pub fn rewrite_error_responses(mut self, rewrite: bool) -> Self {
        self.config.rewrite_error_responses = rewrite;
        self
    }

    /// The most bytes of a 4xx `text/plain` body used as the `detail` (default 1 KiB);
    /// a longer body is replaced by a generic detail for its status.
    pub fn max_detail_bytes(mut self, max: usize) -> Self {
        self.config.max_detail_bytes = max;
        self
    }

    /// The request header the request id is read from (default `x-request-id`).
    pub fn request_id_header(mut self, name: HeaderName) -> Self {
        self.request_id_header = name;
        self
    }
}

impl Default for ErrorHandlerLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for ErrorHandlerLayer {
    type Service = ErrorHandler<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ErrorHandler {
            inner,
            config: self.config,
            request_id_header: self.request_id_header.clone(),
            ready_error: None,
        }
    }
}

/// The service [`ErrorHandlerLayer`] produces. See the [module docs](self).
#[derive(Debug)]
pub struct ErrorHandler<S> {
    inner: S,
    config: Config,
    request_id_header: HeaderName,
    /// A `poll_ready` failure, answered as a problem by the next `call`.
    ready_error: Option<BoxError>,
}

impl<S> ErrorHandler<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for ErrorHandler<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: self.config,
            request_id_header: self.request_id_header.clone(),
            ready_error: None,
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ErrorHandler<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes>,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.ready_error.is_some() {
            return Poll::Ready(Ok(()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Err(err)) => {
                self.ready_error = Some(err.into());
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }

    #[inline]
    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let context = RequestContext::of(&req, &self.request_id_header);
        if let Some(err) = self.ready_error.take() {
            return ResponseFuture::failed(err, context, self.config);
        }
        let inner = &mut self.inner;
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.call(req))) {
            Ok(future) => ResponseFuture::new(future, context, self.config),
            Err(payload) => ResponseFuture::panicked(panic_message(payload), context, self.config),
        }
    }
}

/// What the log line and the problem need to know of the request, captured
/// before the request moves on: the method (a copy for the standard ones), the
/// path (one reference count on the URI's bytes, not a whole `Uri`), and the
/// request id when there is one.
#[derive(Debug)]
pub(crate) struct RequestContext {
    pub(crate) method: http::Method,
    path: Option<http::uri::PathAndQuery>,
    pub(crate) request_id: Option<HeaderValue>,
}

impl RequestContext {
    #[inline]
    fn of<B>(req: &Request<B>, request_id_header: &HeaderName) -> Self {
        Self {
            method: req.method().clone(),
            path: req.uri().path_and_query().cloned(),
            request_id: crate::headers::get(req.headers(), request_id_header).cloned(),
        }
    }

    /// The request's path, for logs.
    pub(crate) fn path(&self) -> &str {
        self.path.as_ref().map_or("/", |p| p.path())
    }

    pub(crate) fn request_id(&self) -> &str {
        self.request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// The message of a caught panic, for the log (never for the client).
pub(crate) fn panic_message(payload: Box<dyn std::any::Any + Send + 'static>) -> String {
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => payload.downcast_ref::<&str>().map_or_else(
            || "non-string panic payload".to_owned(),
            |s| (*s).to_owned(),
        ),
    }
}
