//! Who sent a request: the client IP, as the trusted-proxy configuration
//! resolves it.

use std::{convert::Infallible, net::IpAddr};

use axum::extract::FromRequestParts;
use http::request::Parts;
use steadfast::audit::TrustedProxies;

use crate::state::AppState;

/// The client's IP, for rate limits.
#[derive(Debug, Clone, Copy)]
pub struct RequestMeta {
    /// The peer address of the connection, or — when the peer is one of the
    /// configured `TRUSTED_PROXIES` — the nearest untrusted address of its
    /// `X-Forwarded-For` chain (steadfast's `TrustedProxies`; none is trusted
    /// by default). The audit layer resolves it the same way.
    pub ip: IpAddr,
}

/// The client address of a request, by `proxies`.
pub fn client_ip(proxies: &TrustedProxies, parts: &Parts) -> IpAddr {
    proxies
        .client_ip(TrustedProxies::peer_ip(&parts.extensions), &parts.headers)
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

impl FromRequestParts<AppState> for RequestMeta {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self {
            ip: client_ip(&state.config.trusted_proxies, parts),
        })
    }
}
