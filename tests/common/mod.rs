//! Helpers shared by the integration tests: a real server on loopback, an HTTP
//! client, and the rule for tests that need Redis or PostgreSQL.
#![allow(dead_code)]

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

/// Serves `router` on an ephemeral loopback port (with `ConnectInfo<SocketAddr>`)
/// and returns its address.
pub async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

/// A complete response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON; panics with the body text when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The Content-Type header, or "".
    pub fn content_type(&self) -> &str {
        self.headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Asserts an RFC 9457 problem with `status`, and returns its JSON.
    pub fn assert_problem(&self, status: u16) -> serde_json::Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.content_type(), "application/problem+json");
        let json = self.json();
        assert_eq!(json["status"], status, "status member equals the status");
        assert!(json["title"].is_string(), "problem has a title: {json}");
        json
    }
}

/// Sends a request over a fresh HTTP/1 client and reads the whole response.
pub async fn send(req: Request<Full<Bytes>>) -> Reply {
    try_send(req).await.expect("request failed")
}

/// [`send`], returning the failure (a refused connection, a connection reset
/// before the whole response arrived) instead of panicking: for tests whose
/// server may die mid-request.
pub async fn try_send(
    req: Request<Full<Bytes>>,
) -> Result<Reply, Box<dyn std::error::Error + Send + Sync>> {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let res = client.request(req).await?;
    let (parts, body) = res.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// GET `http://{addr}{path}`.
pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    send(
        Request::get(format!("http://{addr}{path}"))
            .body(Full::default())
            .unwrap(),
    )
    .await
}

/// A request with a JSON (or any) body and `Content-Type: application/json`.
pub async fn send_json(addr: SocketAddr, method: &str, path: &str, body: &str) -> Reply {
    send(
        Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
            .unwrap(),
    )
    .await
}

/// The URL of a service a test needs (`REDIS_URL`, `DATABASE_URL`).
///
/// Unset: the test is skipped with a printed reason, unless
/// `STEADFAST_REQUIRE_SERVICES=1`, when it fails.
pub fn service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("STEADFAST_REQUIRE_SERVICES").as_deref() == Ok("1") => {
            panic!("{var} is not set but STEADFAST_REQUIRE_SERVICES=1 requires it")
        }
        _ => {
            eprintln!(
                "skipping: {var} is not set (set it, or STEADFAST_REQUIRE_SERVICES=1 to require it)"
            );
            None
        }
    }
}
