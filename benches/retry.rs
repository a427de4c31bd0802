//! Retries beside tower's own `Retry` (with an equivalent policy and its
//! `TpsBudget`): the success path (the first attempt answers), with an empty
//! and a small body, and a request that fails once with a 503 and is retried
//! at once (zero backoff on both sides).

mod support;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::StatusCode;
use support::retry::{
    empty, flaky, ok, small, steadfast_retry, steadfast_retry_always, tower_retry,
    tower_retry_always,
};
use tower::{Layer, service_fn};

fn success_path(c: &mut Criterion) {
    let rt = support::runtime();
    let mut group = c.benchmark_group("retry/success");
    for (body, request) in [
        ("empty body", empty as fn() -> _),
        ("small body", small as fn() -> _),
    ] {
        let bare = service_fn(ok);
        group.bench_function(format!("bare/{body}"), |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(support::call(&mut bare.clone(), request()).await) })
        });
        let tower = tower_retry(service_fn(ok));
        group.bench_function(format!("tower::retry::Retry/{body}"), |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(support::call(&mut tower.clone(), request()).await) })
        });
        let steadfast = steadfast_retry().layer(service_fn(ok));
        group.bench_function(format!("steadfast::Retry/{body}"), |b| {
            b.to_async(&rt).iter(|| async {
                black_box(support::call(&mut steadfast.clone(), request()).await)
            })
        });
    }
    group.finish();
}

fn one_retry(c: &mut Criterion) {
    let rt = support::runtime();
    let mut group = c.benchmark_group("retry/one retry");
    let tower = tower_retry_always(flaky());
    group.bench_function("tower::retry::Retry", |b| {
        b.to_async(&rt).iter(|| async {
            let res = support::call(&mut tower.clone(), empty()).await;
            assert_eq!(res.status(), StatusCode::OK);
            black_box(res)
        })
    });
    let steadfast = steadfast_retry_always().layer(flaky());
    group.bench_function("steadfast::Retry", |b| {
        b.to_async(&rt).iter(|| async {
            let res = support::call(&mut steadfast.clone(), empty()).await;
            assert_eq!(res.status(), StatusCode::OK);
            black_box(res)
        })
    });
    group.finish();
}

criterion_group!(benches, success_path, one_retry);
criterion_main!(benches);
