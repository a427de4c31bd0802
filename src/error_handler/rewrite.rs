//! Building the problem for each kind of failure, and logging it once.

use http::{HeaderMap, Response, StatusCode, header};

use super::{Config, RequestContext};
use crate::{
    BoxError, Classification, ErrorClass, Problem, ResponseBody,
    classify::{classify_error, classify_status, error_chain},
};

/// The status a failed call is answered with, by class.
pub(crate) fn status_for(class: ErrorClass) -> StatusCode {
    match class {
        ErrorClass::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorClass::Overloaded | ErrorClass::Cancelled => StatusCode::SERVICE_UNAVAILABLE,
        ErrorClass::Connect | ErrorClass::Network | ErrorClass::Server => StatusCode::BAD_GATEWAY,
        ErrorClass::Client => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A detail a person can act on, naming no internals.
pub(crate) fn default_detail(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "The request is malformed.",
        401 => "Authentication is required to access this resource.",
        403 => "You are not allowed to access this resource.",
        404 => "Nothing is served at this path.",
        405 => "This method is not allowed here; the Allow header lists the methods that are.",
        406 => "None of the media types in Accept can be served.",
        408 => "The request took too long to arrive.",
        409 => "The request conflicts with the current state of the resource.",
        411 => "A Content-Length header is required.",
        413 => "The request body is larger than this endpoint accepts.",
        414 => "The request URI is longer than this server accepts.",
        415 => "The request's Content-Type is not supported here.",
        422 => "The request is well-formed but its content is invalid.",
        429 => "Too many requests; wait before trying again.",
        500 => {
            "The server failed to handle the request. The failure was logged under this request's id."
        }
        502 => "An upstream service failed or could not be reached. Try again shortly.",
        503 => "The service is temporarily unavailable. Try again later.",
        504 => "The server did not finish the request in time.",
        s if s >= 500 => "The server failed to handle the request.",
        _ => "The request could not be processed.",
    }
}

/// Adds the request id and builds the response, keeping `headers` but those
/// describing the old body.
pub(crate) fn respond<B: http_body::Body>(
    problem: Problem,
    ctx: &RequestContext,
    classification: Classification,
    mut headers: HeaderMap,
    mut extensions: http::Extensions,
) -> Response<ResponseBody<B>> {
    let problem = match ctx.request_id.as_ref().and_then(|v| v.to_str().ok()) {
        Some(id) => problem.with_extension("request_id", id),
        None => problem,
    };
    let mut res: Response<ResponseBody<B>> = problem.to_response();
    for name in [
        header::CONTENT_TYPE,
        header::CONTENT_LENGTH,
        header::CONTENT_ENCODING,
        header::TRANSFER_ENCODING,
    ] {
        headers.remove(name);
    }
    for (name, value) in res.headers_mut().drain() {
        if let Some(name) = name {
            headers.insert(name, value);
        }
    }
    *res.headers_mut() = headers;
    if extensions.get::<Classification>().is_none() {
        extensions.insert(classification);
    }
    *res.extensions_mut() = extensions;
    res
}

/// An error of the inner service.
pub(crate) fn from_error<B: http_body::Body>(
    err: BoxError,
    ctx: &RequestContext,
) -> Response<ResponseBody<B>> {
    let classification = classify_error(&*err);
    let status = status_for(classification.class());
    tracing::error!(
        method = %ctx.method,
        path = ctx.path(),
        status = status.as_u16(),
        class = classification.class().as_str(),
        request_id = ctx.request_id(),
        error = %error_chain(&*err),
        "request failed"
    );
    let mut problem = Problem::new(status).with_detail(default_detail(status));
    if let Some(delay) = classification.retry_after() {
        problem = problem.with_retry_after(delay);
    }
    respond(
        problem,
        ctx,
        classification.with_status(status),
        HeaderMap::new(),
        http::Extensions::new(),
    )
}

/// A panic of the inner service, caught.
pub(crate) fn from_panic<B: http_body::Body>(
    message: &str,
    ctx: &RequestContext,
) -> Response<ResponseBody<B>> {
    let status = StatusCode::INTERNAL_SERVER_ERROR;
    tracing::error!(
        method = %ctx.method,
        path = ctx.path(),
        status = status.as_u16(),
        class = ErrorClass::Panic.as_str(),
        request_id = ctx.request_id(),
        panic = message,
        "handler panicked"
    );
    let problem = Problem::new(status).with_detail(default_detail(status));
    respond(
        problem,
        ctx,
        Classification::new(ErrorClass::Panic).with_status(status),
        HeaderMap::new(),
        http::Extensions::new(),
    )
}

/// An error response without a problem body; `text` is a 4xx body worth showing.
pub(crate) fn from_response<B: http_body::Body>(
    parts: http::response::Parts,
    text: Option<&str>,
    ctx: &RequestContext,
) -> Response<ResponseBody<B>> {
    let status = parts.status;
    let class = classify_status(status).unwrap_or(ErrorClass::Internal);
    let classification = Classification::new(class)
        .with_status(status)
        .with_retry_after(crate::classify::retry_after_from_headers(&parts.headers));
    if status.is_server_error() {
        tracing::error!(
            method = %ctx.method,
            path = ctx.path(),
            status = status.as_u16(),
            class = class.as_str(),
            request_id = ctx.request_id(),
            "server error response without a problem body"
        );
    } else {
        tracing::debug!(
            method = %ctx.method,
            path = ctx.path(),
            status = status.as_u16(),
            class = class.as_str(),
            request_id = ctx.request_id(),
            detail = text.unwrap_or(""),
            "client error response rewritten as problem"
        );
    }
    let detail = text
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| std::borrow::Cow::Owned(t.to_owned()))
        .unwrap_or(std::borrow::Cow::Borrowed(default_detail(status)));
    let problem = Problem::new(status).with_detail(detail);
    respond(
        problem,
        ctx,
        classification,
        parts.headers,
        parts.extensions,
    )
}

/// A problem another steadfast layer wrote (a timeout, a bad idempotency key):
/// rendered again with the request id, and not logged again.
pub(crate) fn from_layer_problem<B: http_body::Body>(
    mut parts: http::response::Parts,
    ctx: &RequestContext,
) -> Response<ResponseBody<B>> {
    let problem = parts
        .extensions
        .remove::<crate::problem::LayerProblem>()
        .map(|p| p.0)
        .unwrap_or_else(|| Problem::new(parts.status));
    let class = classify_status(parts.status).unwrap_or(ErrorClass::Internal);
    let classification = Classification::new(class).with_status(parts.status);
    respond(
        problem,
        ctx,
        classification,
        parts.headers,
        parts.extensions,
    )
}

/// Whether a response should be rewritten, and whether its body should be read
/// for the detail.
pub(crate) enum Verdict {
    PassThrough,
    CompleteLayerProblem,
    Rewrite,
    ReadDetail,
}

pub(crate) fn verdict<B: http_body::Body>(
    res: &Response<B>,
    config: &Config,
    ctx: &RequestContext,
) -> Verdict {
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return Verdict::PassThrough;
    }
    if crate::problem::is_problem_json(res.headers()) {
        let ours = res
            .extensions()
            .get::<crate::problem::LayerProblem>()
            .is_some();
        return if ours && ctx.request_id.is_some() {
            Verdict::CompleteLayerProblem
        } else {
            Verdict::PassThrough
        };
    }
    if !config.rewrite_error_responses {
        return Verdict::PassThrough;
    }
    let hint = res.body().size_hint();
    let empty = res.body().is_end_stream() || hint.exact() == Some(0);
    let content_type = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    match content_type {
        None if empty => Verdict::Rewrite,
        None => Verdict::Rewrite,
        Some(ct)
            if ct
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("text/plain") =>
        {
            let small = hint
                .upper()
                .is_some_and(|upper| upper <= config.max_detail_bytes as u64);
            if status.is_client_error() && small && !empty {
                Verdict::ReadDetail
            } else {
                Verdict::Rewrite
            }
        }
        Some(_) if empty => Verdict::Rewrite,
        Some(_) => Verdict::PassThrough,
    }
}
