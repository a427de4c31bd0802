//! What overload protection costs an admitted request, beside tower's
//! `LoadShed` + `ConcurrencyLimit` (a static limit). The load behaviour, the
//! point of the layer, is measured by `benches/overload_load.rs`.

mod support;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use steadfast::overload::{OverloadConfig, OverloadLayer};
use support::ok;
use tower::{BoxError, Layer, ServiceBuilder, service_fn};

fn admitted(c: &mut Criterion) {
    let rt = support::runtime();
    let mut group = c.benchmark_group("overload/admitted");
    let bare = service_fn(ok);
    group.bench_function("bare", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(support::call(&mut bare.clone(), support::get("/")).await) })
    });
    let tower = ServiceBuilder::new()
        .map_err(Into::<BoxError>::into)
        .load_shed()
        .concurrency_limit(100)
        .service(service_fn(ok));
    group.bench_function("tower LoadShed + ConcurrencyLimit", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(support::call(&mut tower.clone(), support::get("/")).await)
        })
    });
    let steadfast =
        OverloadLayer::new(OverloadConfig::new().initial_limit(100)).layer(service_fn(ok));
    group.bench_function("steadfast Overload", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(support::call(&mut steadfast.clone(), support::get("/")).await)
        })
    });
    group.finish();
}

criterion_group!(benches, admitted);
criterion_main!(benches);
