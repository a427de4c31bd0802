//! The whole server stack in an axum Router called with `oneshot`, beside the bare
//! Router and the Router with each layer alone, so "the stack costs no more than
//! the sum of its layers" can be read off one run.

mod support;

use std::{hint::black_box, net::SocketAddr, time::Duration};

use axum::{Router, body::Body, routing::post};
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Method, Request, StatusCode};
use steadfast::{
    BoxError,
    audit::{AuditEvent, AuditLayer, Auditor, Sink},
    error_handler::ErrorHandlerLayer,
    idempotency::{IdempotencyLayer, MemoryStore},
    timeout::{RouteTimeoutLayer, TimeoutTable},
};
use tower::{ServiceBuilder, ServiceExt};

struct NullSink;

impl Sink for NullSink {
    async fn write(&mut self, events: &[AuditEvent]) -> Result<(), BoxError> {
        black_box(events);
        Ok(())
    }
}

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

/// A POST without an Idempotency-Key, as most requests are.
fn request() -> Request<Body> {
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

fn stack(c: &mut Criterion) {
    let rt = support::runtime();
    let auditor = rt.block_on(async { Auditor::builder().build(NullSink) });
    let variants: Vec<(&str, Router)> = rt.block_on(async {
        vec![
            ("bare Router", routes()),
            ("+ ErrorHandler", routes().layer(ErrorHandlerLayer::new())),
            ("+ RouteTimeout", routes().layer(timeouts())),
            ("+ Idempotency (no key)", routes().layer(idempotency())),
            ("+ Audit (one event)", routes().layer(audit(&auditor))),
            (
                "whole stack",
                routes().layer(
                    ServiceBuilder::new()
                        .layer(audit(&auditor))
                        .layer(ErrorHandlerLayer::new())
                        .layer(timeouts())
                        .layer(idempotency()),
                ),
            ),
        ]
    });
    let mut group = c.benchmark_group("stack");
    for (name, router) in &variants {
        group.bench_function(*name, |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(router.clone().oneshot(request()).await.unwrap()) })
        });
    }
    group.finish();
    rt.block_on(auditor.shutdown());
}

criterion_group!(benches, stack);
criterion_main!(benches);
