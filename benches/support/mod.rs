//! What every benchmark shares: a runtime, a request, and the bare service that
//! answers at once, so each group compares layers around the same work.
#![allow(dead_code)]

pub mod audit;
pub mod retry;
pub mod stack;
pub mod timeout;

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tower::{Layer, Service, ServiceExt};

/// A current-thread runtime: no cross-thread wake-ups in the numbers.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A small GET, built fresh per iteration (the same cost in every variant).
pub fn get(path: &'static str) -> Request<Full<Bytes>> {
    Request::get(path).body(Full::default()).unwrap()
}

/// A small JSON POST, with an `Idempotency-Key` when `key` is given.
pub fn post(key: Option<&str>) -> Request<Full<Bytes>> {
    let mut builder = Request::post("/orders").header("content-type", "application/json");
    if let Some(key) = key {
        builder = builder.header("idempotency-key", key);
    }
    builder
        .body(Full::new(Bytes::from_static(br#"{"sku":"A-1","qty":2}"#)))
        .unwrap()
}

/// The bare service: answers 200 with a short body at once.
pub async fn ok(_req: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

/// Calls `svc` once (ready + call), as a server does per request.
pub async fn call<S, B>(svc: &mut S, req: Request<B>) -> S::Response
where
    S: Service<Request<B>>,
    S::Error: std::fmt::Debug,
{
    svc.ready().await.unwrap().call(req).await.unwrap()
}

/// axum's `HandleErrorLayer` around `inner`, answering a service error with a JSON
/// problem (504 for tower's timeout, else 502): what an axum user puts around a
/// tower layer whose errors must become responses. The cheapest form: no extractors.
pub fn handle_error<S>(
    inner: S,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = axum::response::Response,
    Error = Infallible,
    Future = impl Send,
> + Clone
where
    S: Service<Request<Full<Bytes>>> + Clone + Send + 'static,
    S::Response: axum::response::IntoResponse + Send,
    S::Future: Send + 'static,
    S::Error: Into<tower::BoxError>,
{
    use axum::{error_handling::HandleErrorLayer, response::IntoResponse};
    tower::ServiceBuilder::new()
        .layer(HandleErrorLayer::new(|err: tower::BoxError| async move {
            let status = if err.is::<tower::timeout::error::Elapsed>() {
                http::StatusCode::GATEWAY_TIMEOUT
            } else {
                http::StatusCode::BAD_GATEWAY
            };
            let problem = serde_json::json!({
                "type": "about:blank",
                "title": status.canonical_reason(),
                "status": status.as_u16(),
                "detail": err.to_string(),
            });
            (
                status,
                [(http::header::CONTENT_TYPE, "application/problem+json")],
                problem.to_string(),
            )
                .into_response()
        }))
        .map_err(Into::<tower::BoxError>::into)
        .service(inner)
}

/// What an axum user stacks instead of steadfast's error handler: tower-http's
/// `CatchPanic` for panics under axum's `HandleErrorLayer` for service errors.
pub fn catch_panic_and_handle_error<S>(
    inner: S,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = axum::response::Response,
    Error = Infallible,
    Future = impl Send,
> + Clone
where
    S: Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<tower::BoxError>,
{
    handle_error(tower_http::catch_panic::CatchPanicLayer::new().layer(inner))
}
