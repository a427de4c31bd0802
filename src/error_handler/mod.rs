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
//! - **Panics** become a 500 problem and the server goes on serving; panic
//!   catching is tower-http's [`CatchPanicLayer`](tower_http::catch_panic::CatchPanicLayer).
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
//! Every problem the layer writes carries the request id (tower-http's
//! [`RequestId`] extension, or the
//! `x-request-id` header) as the `request_id` extension member, and its
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
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body::Body;
use tower::{Layer, Service};
use tower_http::body::UnsyncBoxBody;
use tower_http::{
    catch_panic::{CatchPanic, ResponseForPanic},
    request_id::RequestId,
};

use crate::{BoxError, ResponseBody};

pub use future::ResponseFuture;

/// The longest `text/plain` 4xx body read to become a problem's `detail`.
const DEFAULT_MAX_DETAIL_BYTES: usize = 1024;

/// Applies [`ErrorHandler`] to a service. See the [module docs](self).
#[derive(Debug, Clone, Copy)]
pub struct ErrorHandlerLayer {
    config: Config,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Config {
    pub(crate) rewrite_error_responses: bool,
    pub(crate) max_detail_bytes: usize,
}

impl ErrorHandlerLayer {
    /// The layer with its defaults: rewrite bare error responses, read up to 1 KiB
    /// of a 4xx `text/plain` body as the detail.
    pub fn new() -> Self {
        Self {
            config: Config {
                rewrite_error_responses: true,
                max_detail_bytes: DEFAULT_MAX_DETAIL_BYTES,
            },
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
            inner: CatchPanic::custom(inner, PanicToProblem),
            config: self.config,
            ready_error: None,
        }
    }
}

/// The service [`ErrorHandlerLayer`] produces. See the [module docs](self).
#[derive(Debug)]
pub struct ErrorHandler<S> {
    inner: CatchPanic<S, PanicToProblem>,
    config: Config,
    /// A `poll_ready` failure, answered as a problem by the next `call`.
    ready_error: Option<BoxError>,
}

impl<S: Clone> Clone for ErrorHandler<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: self.config,
            ready_error: None,
        }
    }
}

/// The body of responses from [`ErrorHandler`]: the inner body (boxed by
/// tower-http's panic catcher) or a problem document.
pub type ErrorHandlerBody = ResponseBody<UnsyncBoxBody<Bytes, BoxError>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ErrorHandler<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<ErrorHandlerBody>;
    type Error = Infallible;
    type Future =
        ResponseFuture<tower_http::catch_panic::ResponseFuture<S::Future, PanicToProblem>>;

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
        let context = RequestContext::of(&req);
        match self.ready_error.take() {
            Some(err) => ResponseFuture::failed(err, context, self.config),
            None => ResponseFuture::new(self.inner.call(req), context, self.config),
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

/// The request id header read when tower-http's `RequestId` extension is absent.
static X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

impl RequestContext {
    #[inline]
    fn of<B>(req: &Request<B>) -> Self {
        let request_id = match req.extensions().get::<RequestId>() {
            Some(id) => Some(id.header_value().clone()),
            None => request_id_header(req.headers()),
        };
        Self {
            method: req.method().clone(),
            path: req.uri().path_and_query().cloned(),
            request_id,
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

/// The `x-request-id` header. A usual request has a dozen headers or fewer,
/// mostly standard ones: comparing names is cheaper than hashing this one.
#[inline]
fn request_id_header(headers: &http::HeaderMap) -> Option<HeaderValue> {
    if headers.keys_len() <= 16 && !headers.keys().any(|name| *name == X_REQUEST_ID) {
        return None;
    }
    headers.get(&X_REQUEST_ID).cloned()
}

/// Marks the 500 response tower-http's panic catcher produces, with the panic message.
#[derive(Debug, Clone)]
pub(crate) struct PanicMessage(pub(crate) String);

/// Turns a caught panic into a marked, empty 500 that the response future rewrites.
#[derive(Debug, Clone, Copy)]
pub struct PanicToProblem;

impl ResponseForPanic for PanicToProblem {
    type ResponseBody = http_body_util::Empty<Bytes>;

    fn response_for_panic(
        &mut self,
        payload: Box<dyn std::any::Any + Send + 'static>,
    ) -> Response<Self::ResponseBody> {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_owned());
        let mut res = Response::new(http_body_util::Empty::new());
        *res.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        res.extensions_mut().insert(PanicMessage(message));
        res
    }
}
