//! Who sent a request: the client IP, from the socket.

use std::{
    convert::Infallible,
    net::{IpAddr, SocketAddr},
};

use axum::extract::{ConnectInfo, FromRequestParts};
use http::request::Parts;

/// The client's IP, for rate limits.
#[derive(Debug, Clone, Copy)]
pub struct RequestMeta {
    /// The peer address of the connection. koldly trusts no forwarding header
    /// (the audit layer's `TrustedProxies` is `none` for the same reason).
    pub ip: IpAddr,
}

impl<S: Send + Sync> FromRequestParts<S> for RequestMeta {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ci| ci.0.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        Ok(Self { ip })
    }
}
