//! Who sent a request: the client IP (from the socket) and the request id.

use std::{
    convert::Infallible,
    net::{IpAddr, SocketAddr},
};

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath};
use http::request::Parts;

/// The client's IP and the request id, for rate limits and audit records.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    /// The peer address of the connection (koldly does not trust forwarding
    /// headers; put it behind a proxy that terminates at the same host only
    /// with that in mind).
    pub ip: IpAddr,
    /// The `x-request-id` the stack assigned.
    pub request_id: Option<String>,
    /// The client's `User-Agent` (at most 256 bytes).
    pub user_agent: Option<String>,
    /// The request method.
    pub method: http::Method,
    /// The matched route pattern, never the raw path.
    pub route: String,
}

impl<S: Send + Sync> FromRequestParts<S> for RequestMeta {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ci| ci.0.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let request_id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let user_agent = parts
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(256).collect());
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
        Ok(Self {
            ip,
            request_id,
            user_agent,
            method: parts.method.clone(),
            route,
        })
    }
}
