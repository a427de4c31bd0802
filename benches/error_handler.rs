//! The error handler's cost on the success and error paths, beside a bare service,
//! tower-http's `CatchPanic` alone (the part of the work it delegates: catching
//! panics, without problem+json), and what an axum user stacks instead to get
//! both panics and service errors answered: `CatchPanic` under axum's
//! `HandleErrorLayer`.

mod support;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use steadfast::error_handler::ErrorHandlerLayer;
use tower::{Layer, service_fn};
use tower_http::catch_panic::CatchPanicLayer;

fn success_path(c: &mut Criterion) {
    let rt = support::runtime();
    let mut group = c.benchmark_group("error_handler/success");
    let bare = service_fn(support::ok);
    group.bench_function("bare", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(support::call(&mut bare.clone(), support::get("/")).await) })
    });
    let catch_panic = CatchPanicLayer::new().layer(service_fn(support::ok));
    group.bench_function("tower_http::CatchPanic", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(support::call(&mut catch_panic.clone(), support::get("/")).await)
        })
    });
    let stacked = support::catch_panic_and_handle_error(service_fn(support::ok));
    group.bench_function("CatchPanic + axum HandleError", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(support::call(&mut stacked.clone(), support::get("/")).await)
        })
    });
    let handler = ErrorHandlerLayer::new().layer(service_fn(support::ok));
    group.bench_function("steadfast::ErrorHandler", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(support::call(&mut handler.clone(), support::get("/")).await)
        })
    });
    group.finish();
}

async fn fails(
    _req: http::Request<http_body_util::Full<bytes::Bytes>>,
) -> Result<http::Response<http_body_util::Full<bytes::Bytes>>, std::io::Error> {
    Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
}

async fn not_found(
    _req: http::Request<http_body_util::Full<bytes::Bytes>>,
) -> Result<http::Response<http_body_util::Full<bytes::Bytes>>, std::convert::Infallible> {
    let mut res = http::Response::new(http_body_util::Full::default());
    *res.status_mut() = http::StatusCode::NOT_FOUND;
    Ok(res)
}

fn error_path(c: &mut Criterion) {
    let rt = support::runtime();
    let mut group = c.benchmark_group("error_handler/error");
    let stacked = support::catch_panic_and_handle_error(service_fn(fails));
    group.bench_function("CatchPanic + axum HandleError: service error -> 502", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(support::call(&mut stacked.clone(), support::get("/")).await)
        })
    });
    let errors = ErrorHandlerLayer::new().layer(service_fn(fails));
    group.bench_function("service error -> 502 problem", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(support::call(&mut errors.clone(), support::get("/")).await)
        })
    });
    let bare_404 = ErrorHandlerLayer::new().layer(service_fn(not_found));
    group.bench_function("bare 404 -> problem", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(support::call(&mut bare_404.clone(), support::get("/")).await)
        })
    });
    group.finish();
}

criterion_group!(benches, success_path, error_path);
criterion_main!(benches);
