//! The problem+json answers the layer writes itself. Each `type` is the
//! configured documentation page plus the anchor of the section describing it.

use http::{Response, StatusCode};
use http_body::Body;

use super::{KeyError, layer::Config};
use crate::Problem;
use crate::ResponseBody;

fn problem(config: &Config, status: StatusCode, anchor: &str, title: &'static str) -> Problem {
    Problem::new(status)
        .with_type(format!("{}#{anchor}", config.documentation))
        .with_title(title)
}

pub(crate) fn missing_key<B: Body>(config: &Config) -> Response<ResponseBody<B>> {
    problem(config, StatusCode::BAD_REQUEST, "missing-key", "Idempotency-Key required")
        .with_detail("This endpoint requires an Idempotency-Key header: send a unique key (a UUID, for instance) with each new request, and the same key when retrying it.")
        .into_layer_response()
}

pub(crate) fn invalid_key<B: Body>(config: &Config, err: KeyError) -> Response<ResponseBody<B>> {
    problem(
        config,
        StatusCode::BAD_REQUEST,
        "invalid-key",
        "Invalid Idempotency-Key",
    )
    .with_detail(err.detail())
    .into_layer_response()
}

pub(crate) fn unscoped<B: Body>(config: &Config) -> Response<ResponseBody<B>> {
    problem(config, StatusCode::BAD_REQUEST, "unscoped-request", "Idempotency-Key without a client identity")
        .with_detail("This request carries an Idempotency-Key but no client identity to keep the key apart from other clients' keys (it is not authenticated, for instance).")
        .into_layer_response()
}

pub(crate) fn request_too_large<B: Body>(config: &Config) -> Response<ResponseBody<B>> {
    problem(
        config,
        StatusCode::PAYLOAD_TOO_LARGE,
        "request-too-large",
        "Request body too large",
    )
    .with_detail(format!(
        "A request with an Idempotency-Key may carry at most {} bytes of body here.",
        config.max_request_bytes
    ))
    .into_layer_response()
}

pub(crate) fn unreadable_body<B: Body>(config: &Config) -> Response<ResponseBody<B>> {
    problem(
        config,
        StatusCode::BAD_REQUEST,
        "unreadable-body",
        "Request body unreadable",
    )
    .with_detail("The request body could not be read to the end.")
    .into_layer_response()
}

pub(crate) fn key_reused<B: Body>(config: &Config) -> Response<ResponseBody<B>> {
    problem(config, StatusCode::UNPROCESSABLE_ENTITY, "key-reused", "Idempotency-Key reused")
        .with_detail("This Idempotency-Key was already used for a different request (another method, path, query, body or fingerprinted header). Use a new key for a new request.")
        .into_layer_response()
}

pub(crate) fn in_flight<B: Body>(config: &Config) -> Response<ResponseBody<B>> {
    problem(config, StatusCode::CONFLICT, "request-in-flight", "Request in progress")
        .with_detail("A request with this Idempotency-Key is still being processed. Retry after the delay in Retry-After to get its response.")
        .with_retry_after(config.retry_after)
        .into_layer_response()
}

pub(crate) fn not_stored<B: Body>(
    config: &Config,
    status: StatusCode,
) -> Response<ResponseBody<B>> {
    problem(config, StatusCode::CONFLICT, "response-not-stored", "Request already processed")
        .with_detail("The request with this Idempotency-Key was processed, but its response was too large to keep for replay. It is not processed again; use a new key for a new request.")
        .with_extension("original_status", status.as_u16())
        .into_layer_response()
}

pub(crate) fn store_unavailable<B: Body>(config: &Config) -> Response<ResponseBody<B>> {
    problem(config, StatusCode::SERVICE_UNAVAILABLE, "store-unavailable", "Idempotency store unavailable")
        .with_detail("Requests with an Idempotency-Key cannot be processed safely right now. Retry with the same key after the delay in Retry-After.")
        .with_retry_after(config.retry_after)
        .into_layer_response()
}
