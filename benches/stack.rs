//! The whole server stack in an axum Router called with `oneshot`, beside the bare
//! Router and the Router with each layer alone, so "the stack costs no more than
//! the sum of its layers" can be read off one run. The Routers are in
//! `support/stack.rs`, shared with the instruction counter.

mod support;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use steadfast::audit::Auditor;
use support::{
    audit::NullSink,
    stack::{request, variants},
};
use tower::ServiceExt;

fn stack(c: &mut Criterion) {
    let rt = support::runtime();
    let auditor = rt.block_on(async { Auditor::builder().build(NullSink) });
    let variants = rt.block_on(async { variants(&auditor) });
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
