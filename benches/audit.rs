//! The audit layer: a request on an unaudited route (pass-through) and one audited
//! request (one event to a sink), beside tower-http's `TraceLayer` logging each
//! request as JSON — what a service would otherwise use to keep a record.

mod support;

use std::{hint::black_box, net::SocketAddr};

use criterion::{Criterion, criterion_group, criterion_main};
use http::Method;
use steadfast::{
    BoxError,
    audit::{AuditEvent, AuditLayer, Auditor, Sink},
};
use tower::{Layer, service_fn};
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;

/// A sink that keeps nothing: the cost measured is the layer's and the queue's.
struct NullSink;

impl Sink for NullSink {
    async fn write(&mut self, events: &[AuditEvent]) -> Result<(), BoxError> {
        black_box(events);
        Ok(())
    }
}

fn request(path: &'static str) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    let mut req = support::get(path);
    *req.method_mut() = Method::POST;
    req.extensions_mut()
        .insert(SocketAddr::from(([127, 0, 0, 1], 40_000)));
    req.headers_mut()
        .insert("user-agent", http::HeaderValue::from_static("bench/1.0"));
    req
}

fn one_event(c: &mut Criterion) {
    let rt = support::runtime();
    let mut group = c.benchmark_group("audit");
    let bare = service_fn(support::ok);
    group.bench_function("bare", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(support::call(&mut bare.clone(), request("/login")).await) })
    });

    // A JSON log line per request to a discarding writer, as a service would log requests.
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::sink)
        .with_max_level(Level::INFO)
        .finish();
    let dispatch = tracing::Dispatch::new(subscriber);
    let trace = TraceLayer::new_for_http()
        .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
        .on_response(DefaultOnResponse::new().level(Level::INFO))
        .layer(service_fn(support::ok));
    {
        // The runtime is current-thread, so the thread's default subscriber applies.
        let _guard = tracing::dispatcher::set_default(&dispatch);
        group.bench_function("tower_http::Trace (JSON log line)", |b| {
            b.to_async(&rt).iter(|| async {
                black_box(support::call(&mut trace.clone(), request("/login")).await)
            })
        });
    }

    let (auditor, audited) = rt.block_on(async {
        let auditor = Auditor::builder().build(NullSink);
        let layer =
            AuditLayer::new(auditor.clone()).route(Method::POST, "/login", "authn.login.success");
        (auditor, layer.layer(service_fn(support::ok)))
    });
    group.bench_function("steadfast::Audit/unaudited route", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(support::call(&mut audited.clone(), request("/health")).await)
        })
    });
    group.bench_function("steadfast::Audit/one event", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(support::call(&mut audited.clone(), request("/login")).await)
        })
    });
    rt.block_on(auditor.shutdown());
    group.finish();
}

criterion_group!(benches, one_event);
criterion_main!(benches);
