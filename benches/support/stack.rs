//! The stack group's Routers: one route, bare, with each steadfast layer alone and
//! with all four, as a server would stack them; and the request they are sent.

use std::{net::SocketAddr, time::Duration};

use axum::{Router, body::Body, routing::post};
use http::{Method, Request, StatusCode};
use steadfast::{
    audit::{AuditLayer, Auditor},
    error_handler::ErrorHandlerLayer,
    idempotency::{IdempotencyLayer, MemoryStore},
    timeout::{RouteTimeoutLayer, TimeoutTable},
};
use tower::ServiceBuilder;

fn routes() -> Router {
    Router::new().route(
        "/api/orders/{id}",
        post(|| async { (StatusCode::CREATED, "created") }),
    )
}

fn timeouts() -> RouteTimeoutLayer {
    RouteTimeoutLayer::new(
        TimeoutTable::new(Duration::from_secs(15))
            .prefix("/api/auth/", Duration::from_secs(12))
            .prefix("/api/analytics/", Duration::from_secs(30)),
    )
}

fn idempotency() -> IdempotencyLayer<MemoryStore> {
    IdempotencyLayer::new(MemoryStore::new())
}

fn audit(auditor: &Auditor) -> AuditLayer {
    AuditLayer::new(auditor.clone()).route(Method::POST, "/api/orders/{id}", "order.create")
}

/// The variants by name, in the order the group reports them. Call inside a
/// runtime: the idempotency store and the auditor's writer start there.
pub fn variants(auditor: &Auditor) -> Vec<(&'static str, Router)> {
    vec![
        ("bare Router", routes()),
        ("+ ErrorHandler", routes().layer(ErrorHandlerLayer::new())),
        ("+ RouteTimeout", routes().layer(timeouts())),
        ("+ Idempotency (no key)", routes().layer(idempotency())),
        ("+ Audit (one event)", routes().layer(audit(auditor))),
        (
            "whole stack",
            routes().layer(
                ServiceBuilder::new()
                    .layer(audit(auditor))
                    .layer(ErrorHandlerLayer::new())
                    .layer(timeouts())
                    .layer(idempotency()),
            ),
        ),
    ]
}

/// A POST without an Idempotency-Key, as most requests are.
pub fn request() -> Request<Body> {
    let mut req = Request::post("/api/orders/7")
        .header("content-type", "application/json")
        .header("user-agent", "bench/1.0")
        .body(Body::from(r#"{"sku":"A-1"}"#))
        .unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(SocketAddr::from((
            [127, 0, 0, 1],
            40_000,
        ))));
    req
}
