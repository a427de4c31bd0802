//! The circuit breaker's closed path (every call goes through and is counted)
//! beside tower-resilience's `CircuitBreaker` with the same window, and the
//! open path (refused at once) of both.

mod support;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use steadfast::breaker::{BreakerConfig, BreakerLayer, Window};
use support::ok;
use tower::{Layer, ServiceExt, service_fn};
use tower_resilience_circuitbreaker::CircuitBreakerLayer;

fn config() -> BreakerConfig {
    BreakerConfig::new()
        .window(Window::Count(100))
        .min_calls(20)
        .failure_rate(0.5)
}

fn closed(c: &mut Criterion) {
    let rt = support::runtime();
    let mut group = c.benchmark_group("breaker/closed");
    let bare = service_fn(ok);
    group.bench_function("bare", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(support::call(&mut bare.clone(), support::get("/")).await) })
    });
    let resilience = CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.5)
        .sliding_window_size(100)
        .minimum_number_of_calls(20)
        .build()
        .unwrap()
        .layer(service_fn(ok));
    group.bench_function("tower-resilience CircuitBreaker", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(support::call(&mut resilience.clone(), support::get("/")).await)
        })
    });
    let server = BreakerLayer::server(config()).layer(service_fn(ok));
    group.bench_function("steadfast Breaker (server)", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(support::call(&mut server.clone(), support::get("/")).await)
        })
    });
    let client = BreakerLayer::client(config()).layer(service_fn(ok));
    group.bench_function("steadfast Breaker (client)", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(support::call(&mut client.clone(), support::get("/")).await)
        })
    });
    group.finish();
}

fn open(c: &mut Criterion) {
    let rt = support::runtime();
    let mut group = c.benchmark_group("breaker/open");
    let failing = || {
        service_fn(|_req: http::Request<_>| async {
            Err::<http::Response<http_body_util::Full<bytes::Bytes>>, _>(std::io::Error::from(
                std::io::ErrorKind::ConnectionRefused,
            ))
        })
    };
    let resilience = CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.5)
        .sliding_window_size(10)
        .minimum_number_of_calls(2)
        .build()
        .unwrap()
        .layer(failing());
    let steadfast =
        BreakerLayer::client(config().window(Window::Count(10)).min_calls(2)).layer(failing());
    rt.block_on(async {
        for _ in 0..5 {
            let _ = resilience.clone().oneshot(support::get("/")).await;
            let _ = steadfast.clone().oneshot(support::get("/")).await;
        }
    });
    group.bench_function("tower-resilience CircuitBreaker", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(resilience.clone().oneshot(support::get("/")).await.is_err())
        })
    });
    group.bench_function("steadfast Breaker (client)", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(steadfast.clone().oneshot(support::get("/")).await.is_err())
        })
    });
    group.finish();
}

criterion_group!(benches, closed, open);
criterion_main!(benches);
