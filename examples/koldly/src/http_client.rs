//! Outgoing HTTP: hyper-util's legacy client over hyper-rustls (ring, webpki
//! roots) for https, plain http for loopback fakes in tests. The mail provider
//! is called through steadfast's `RetryLayer`.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use steadfast::{
    BoxError, ErrorClass,
    classify::Classification,
    retry::{Retry, RetryBody, RetryLayer, RetryPolicy},
};
use tower::{Layer, Service, ServiceExt};

/// The connector: https (TLS 1.2/1.3, Mozilla's roots) or http.
pub type Connector = HttpsConnector<HttpConnector>;

/// The plain client (the OAuth provider); cheap to clone (connections are pooled).
pub type HttpClient = Client<Connector, Full<Bytes>>;

/// The mail provider's client: retried with backoff, jitter, a budget and
/// `Retry-After`, within each request's `Deadline`.
pub type RetryingClient = Retry<Client<Connector, RetryBody<Full<Bytes>>>>;

/// The largest response body read from a provider.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

fn connector() -> Connector {
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        .expect("ring supports the default protocol versions")
        .https_or_http()
        .enable_http1()
        .build()
}

fn client<B>() -> Client<Connector, B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector())
}

/// A client speaking https and http.
pub fn new_client() -> HttpClient {
    client()
}

/// Whether a failed provider call proves the provider did not take the
/// request: the connection was refused, or it answered 429 or 503. Anything
/// else — a timeout, a reset connection, a 502 or 504 from a gateway — may
/// come after the provider accepted it, and a provider that honours no
/// idempotency key (Postmark) would then deliver a resend twice.
pub fn proves_not_accepted(failure: &Classification) -> bool {
    failure.class() == ErrorClass::Connect
        || matches!(
            failure.status(),
            Some(StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE)
        )
}

/// A client that retries only failures that [`proves_not_accepted`]: at most
/// 3 retries, 10 s per attempt, 25 s in all. (The `Idempotency-Key` the mailer
/// sends only tells steadfast's retry layer the POST may be repeated at all;
/// which failures are repeated is this predicate's choice, not the provider's.)
pub fn retrying_client() -> RetryingClient {
    let policy = RetryPolicy::new()
        .retry_if(proves_not_accepted)
        .max_retries(3)
        .base_delay(Duration::from_millis(200))
        .max_delay(Duration::from_secs(2))
        .attempt_timeout(Duration::from_secs(10))
        .deadline(Duration::from_secs(25));
    retrying_client_with(RetryLayer::new(policy))
}

/// A client behind `layer` (a caller's own retry policy).
pub fn retrying_client_with(layer: RetryLayer) -> RetryingClient {
    layer.layer(client())
}

/// Sends `req` through `service` and reads the whole response (at most 1 MiB)
/// within `timeout`.
pub async fn fetch<S>(
    service: S,
    req: Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), BoxError>
where
    S: Service<Request<Full<Bytes>>, Response = Response<Incoming>>,
    S::Error: Into<BoxError>,
{
    let res = fetch_response(service, req, timeout).await?;
    Ok((res.status(), res.into_body()))
}

/// [`fetch`], keeping the response's head.
pub async fn fetch_response<S>(
    service: S,
    req: Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<Response<Bytes>, BoxError>
where
    S: Service<Request<Full<Bytes>>, Response = Response<Incoming>>,
    S::Error: Into<BoxError>,
{
    let work = async {
        let res = service.oneshot(req).await.map_err(Into::into)?;
        let (parts, body) = res.into_parts();
        let body = Limited::new(body, MAX_RESPONSE_BYTES)
            .collect()
            .await?
            .to_bytes();
        Ok::<_, BoxError>(Response::from_parts(parts, body))
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|elapsed| Box::new(elapsed) as BoxError)?
}
