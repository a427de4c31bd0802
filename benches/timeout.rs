//! Per-route timeouts beside tower's `Timeout` and tower-http's `TimeoutLayer`, on the
//! success path (the answer comes at once; the timer never fires).

mod support;

use std::{hint::black_box, time::Duration};

use criterion::{Criterion, criterion_group, criterion_main};
use steadfast::timeout::RouteTimeoutLayer;
use support::timeout::{PATH, table};
use tower::{Layer, service_fn};

fn success_path(c: &mut Criterion) {
    let rt = support::runtime();
    let mut group = c.benchmark_group("timeout/success");
    let bare = service_fn(support::ok);
    group.bench_function("bare", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(support::call(&mut bare.clone(), support::get(PATH)).await)
        })
    });
    let tower_timeout =
        tower::timeout::TimeoutLayer::new(Duration::from_secs(15)).layer(service_fn(support::ok));
    group.bench_function("tower::timeout::Timeout", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(support::call(&mut tower_timeout.clone(), support::get(PATH)).await)
        })
    });
    // In axum, tower's `Timeout` needs `HandleErrorLayer` to turn its error into a
    // response: the pair is what an axum user writes (axum's own docs do).
    let tower_timeout_answered = support::handle_error(
        tower::timeout::TimeoutLayer::new(Duration::from_secs(15)).layer(service_fn(support::ok)),
    );
    group.bench_function("tower::timeout::Timeout + axum HandleError", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(support::call(&mut tower_timeout_answered.clone(), support::get(PATH)).await)
        })
    });
    #[allow(deprecated)]
    let tower_http_timeout = tower_http::timeout::TimeoutLayer::new(Duration::from_secs(15))
        .layer(service_fn(support::ok));
    group.bench_function("tower_http::timeout::Timeout", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(support::call(&mut tower_http_timeout.clone(), support::get(PATH)).await)
        })
    });
    for rules in [1, 50] {
        let svc = RouteTimeoutLayer::new(table(rules)).layer(service_fn(support::ok));
        group.bench_function(format!("steadfast::RouteTimeout/{rules} rules"), |b| {
            b.to_async(&rt).iter(|| async {
                black_box(support::call(&mut svc.clone(), support::get(PATH)).await)
            })
        });
    }
    // The same layer where nothing reads the deadline: no extension insert.
    let svc = RouteTimeoutLayer::new(table(1).without_deadline_extension())
        .layer(service_fn(support::ok));
    group.bench_function(
        "steadfast::RouteTimeout/1 rules, no Deadline extension",
        |b| {
            b.to_async(&rt).iter(|| async {
                black_box(support::call(&mut svc.clone(), support::get(PATH)).await)
            })
        },
    );
    group.finish();
}

criterion_group!(benches, success_path);
criterion_main!(benches);
