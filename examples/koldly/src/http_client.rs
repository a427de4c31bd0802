//! Outgoing HTTP: hyper-util's legacy client over hyper-rustls (ring, webpki
//! roots) for https, plain http for loopback fakes in tests. Each outbound
//! provider (mail, the language model) is called through steadfast's
//! `RetryLayer` around its own `BreakerLayer`: the breaker sits inside, so it
//! counts every attempt, and an open circuit's `Overloaded` error (with the time
//! until it lets a probe through) reaches the retry layer, which waits that
//! long when its policy allows, or gives up at once, instead of hammering a
//! provider that is down.

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
    breaker::{Breaker, BreakerConfig, BreakerLayer, ClientSide, Window},
    classify::Classification,
    retry::{Retry, RetryBody, RetryLayer, RetryPolicy},
};
use tower::{Service, ServiceBuilder, ServiceExt};

/// The connector: https (TLS 1.2/1.3, Mozilla's roots) or http.
pub type Connector = HttpsConnector<HttpConnector>;

/// The plain client (the OAuth provider); cheap to clone (connections are pooled).
pub type HttpClient = Client<Connector, Full<Bytes>>;

/// A provider's client: retried with backoff, jitter, a budget and
/// `Retry-After`, within each request's `Deadline`, around the provider's
/// circuit breaker (one circuit per provider, shared by every clone).
pub type RetryingClient = Retry<Breaker<Client<Connector, RetryBody<Full<Bytes>>>, ClientSide>>;

/// When a provider's circuit opens and how long it stays open.
///
/// The circuit counts the provider's last [`CIRCUIT_WINDOW`] calls (attempts,
/// retries included); once it holds `min_calls` of them and at least half
/// failed — a timeout, a connection failure, a 429 or a 5xx, never a 4xx — it
/// opens: calls fail at once without reaching the provider for `open_for`
/// (or as long as the provider's own `Retry-After` on a 429 or 503 says), then
/// a few probes decide whether it closes again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitSettings {
    /// The fewest calls counted before the circuit may open (at least 1).
    pub min_calls: u32,
    /// How long an opened circuit refuses calls (longer than zero).
    pub open_for: Duration,
}

/// The calls a provider's circuit measures its failure rate over.
pub const CIRCUIT_WINDOW: u32 = 20;

impl Default for CircuitSettings {
    /// Opens after 5 calls of which half failed, for 30 s.
    fn default() -> Self {
        Self {
            min_calls: 5,
            open_for: Duration::from_secs(30),
        }
    }
}

impl CircuitSettings {
    /// The client-side breaker these settings describe: one circuit, shared by
    /// every clone of the layer and of the services it makes.
    ///
    /// # Panics
    ///
    /// When `min_calls` is 0 or `open_for` is zero (the configuration refuses both).
    pub fn layer(&self) -> BreakerLayer<ClientSide> {
        BreakerLayer::client(
            BreakerConfig::new()
                .window(Window::Count(CIRCUIT_WINDOW.max(self.min_calls)))
                .min_calls(self.min_calls)
                .failure_rate(0.5)
                .open_for(self.open_for),
        )
    }
}

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
/// request: the connection was refused, it answered 429 or 503, or the
/// provider's circuit breaker refused the call before it was sent (an
/// `Overloaded` failure without a status; the retry layer repeats only what
/// this predicate accepts, so every earlier attempt of that call was refused
/// too). Anything else — a timeout, a reset connection, a 502 or 504 from a gateway — may
/// come after the provider accepted it, and a provider that honours no
/// idempotency key (Postmark) would then deliver a resend twice.
pub fn proves_not_accepted(failure: &Classification) -> bool {
    failure.class() == ErrorClass::Connect
        || is_circuit_open(failure)
        || matches!(
            failure.status(),
            Some(StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE)
        )
}

/// Whether `failure` is an open circuit's refusal: the call never left.
pub fn is_circuit_open(failure: &Classification) -> bool {
    failure.class() == ErrorClass::Overloaded && failure.status().is_none()
}

/// The mail provider's client: retries only failures that
/// [`proves_not_accepted`] (at most 3 retries, 10 s per attempt, 25 s in
/// all), around the mail circuit described by `circuit`. (The
/// `Idempotency-Key` the mailer sends only tells steadfast's retry layer the
/// POST may be repeated at all; which failures are repeated is this
/// predicate's choice, not the provider's.) A send the open circuit refuses
/// is retried after the time until the circuit lets a probe through when that
/// is at most 5 s (the retry layer's `Retry-After` ceiling), and fails at once
/// otherwise: the message then stays in the outbox, resendable, for the outbox
/// job.
pub fn retrying_client(circuit: CircuitSettings) -> RetryingClient {
    let policy = RetryPolicy::new()
        .retry_if(proves_not_accepted)
        .max_retries(3)
        .base_delay(Duration::from_millis(200))
        .max_delay(Duration::from_secs(2))
        .attempt_timeout(Duration::from_secs(10))
        .deadline(Duration::from_secs(25));
    retrying_client_with(RetryLayer::new(policy), circuit.layer())
}

/// A client behind `retry` (a caller's own retry policy) with `breaker`
/// inside it.
pub fn retrying_client_with(
    retry: RetryLayer,
    breaker: BreakerLayer<ClientSide>,
) -> RetryingClient {
    ServiceBuilder::new()
        .layer(retry)
        .layer(breaker)
        .service(client())
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
