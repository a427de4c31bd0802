//! The outgoing HTTP client: hyper-util's legacy client over hyper-rustls
//! (ring, webpki roots) for https, plain http for loopback fakes in tests.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use steadfast::BoxError;

/// The client type; cheap to clone (connections are pooled).
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The largest response body read from a provider.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// A client speaking https (TLS 1.2/1.3, Mozilla's roots) and http.
pub fn new_client() -> HttpClient {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        .expect("ring supports the default protocol versions")
        .https_or_http()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(https)
}

/// Sends `req` and reads the whole response (at most 1 MiB) within `timeout`.
pub async fn fetch(
    client: &HttpClient,
    req: Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), BoxError> {
    let work = async {
        let res = client.request(req).await?;
        let status = res.status();
        let body = Limited::new(res.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await?
            .to_bytes();
        Ok::<_, BoxError>((status, body))
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|elapsed| Box::new(elapsed) as BoxError)?
}
