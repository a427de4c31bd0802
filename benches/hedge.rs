//! What hedging costs a request answered before the hedge delay (the usual
//! case), beside tower's `Hedge` (its `hedge` feature) with the same kind of
//! policy. Each variant is one service called in a loop under `block_on`
//! (tower's `Hedge` is not `Clone`), so times include `block_on` and compare
//! only within this group. The tail-latency effect is measured by `tests/hedge.rs` in
//! virtual time (p99 1 s without, 40 ms with).

mod support;

use std::{hint::black_box, time::Duration};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use http_body_util::Full;
use steadfast::hedge::HedgeLayer;
use support::ok;
use tower::{Layer, service_fn};

/// tower's hedge policy: clone any GET.
#[derive(Clone)]
struct CloneGets;

impl tower::hedge::Policy<Request<Full<Bytes>>> for CloneGets {
    fn clone_request(&self, req: &Request<Full<Bytes>>) -> Option<Request<Full<Bytes>>> {
        let mut copy = Request::new(req.body().clone());
        *copy.uri_mut() = req.uri().clone();
        *copy.headers_mut() = req.headers().clone();
        Some(copy)
    }

    fn can_retry(&self, _req: &Request<Full<Bytes>>) -> bool {
        true
    }
}

fn fast_answer(c: &mut Criterion) {
    let rt = support::runtime();
    let mut group = c.benchmark_group("hedge/answered before the delay");
    let mut bare = service_fn(ok);
    group.bench_function("bare", |b| {
        b.iter(|| black_box(rt.block_on(support::call(&mut bare, support::get("/")))))
    });
    let mut tower = rt.block_on(async {
        tower::hedge::Hedge::new(service_fn(ok), CloneGets, 10, 0.95, Duration::from_secs(10))
    });
    group.bench_function("tower Hedge (p95)", |b| {
        b.iter(|| black_box(rt.block_on(support::call(&mut tower, support::get("/")))))
    });
    let mut fixed = HedgeLayer::fixed(Duration::from_millis(50)).layer(service_fn(ok));
    group.bench_function("steadfast Hedge (fixed)", |b| {
        b.iter(|| black_box(rt.block_on(support::call(&mut fixed, support::get("/")))))
    });
    let mut percentile =
        HedgeLayer::percentile(0.95, Duration::from_millis(50)).layer(service_fn(ok));
    group.bench_function("steadfast Hedge (p95)", |b| {
        b.iter(|| black_box(rt.block_on(support::call(&mut percentile, support::get("/")))))
    });
    group.finish();
}

criterion_group!(benches, fast_answer);
criterion_main!(benches);
