//! The audit layer: a request on an unaudited route (pass-through) and one audited
//! request (one event to a sink), beside tower-http's `TraceLayer` logging each
//! request as JSON — what a service would otherwise use to keep a record.

mod support;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use steadfast::audit::Auditor;
use support::audit::{NullSink, json_log_dispatch, json_trace_layer, request};
use tower::{Layer, service_fn};

fn one_event(c: &mut Criterion) {
    let rt = support::runtime();
    let mut group = c.benchmark_group("audit");
    let bare = service_fn(support::ok);
    group.bench_function("bare", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(support::call(&mut bare.clone(), request("/login")).await) })
    });

    let dispatch = json_log_dispatch();
    let trace = json_trace_layer().layer(service_fn(support::ok));
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
        let audited = support::audit::layer(&auditor).layer(service_fn(support::ok));
        (auditor, audited)
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
