//! Idempotency-Key deduplication: a request without a key (pass-through), a fresh
//! key (claim, run, store) and a replay, on `MemoryStore` and, when `REDIS_URL` is
//! set, `RedisStore`; beside the bare service and a handler doing one SQLite
//! insert — what a replay saves.

mod support;

use std::{
    hint::black_box,
    sync::atomic::{AtomicU64, Ordering},
};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::Full;
use steadfast::idempotency::{IdempotencyLayer, MemoryStore, Store};
use tower::{Layer, service_fn};

fn post(key: Option<&str>) -> Request<Full<Bytes>> {
    let mut builder = Request::post("/orders").header("content-type", "application/json");
    if let Some(key) = key {
        builder = builder.header("idempotency-key", key);
    }
    builder
        .body(Full::new(Bytes::from_static(br#"{"sku":"A-1","qty":2}"#)))
        .unwrap()
}

fn store_group<St: Store + Clone>(c: &mut Criterion, name: &str, store: St) {
    let rt = support::runtime();
    let mut group = c.benchmark_group(format!("idempotency/{name}"));
    let bare = service_fn(support::ok);
    group.bench_function("bare", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(support::call(&mut bare.clone(), post(None)).await) })
    });
    let svc = rt.block_on(async { IdempotencyLayer::new(store).layer(service_fn(support::ok)) });
    group.bench_function("no key (pass-through)", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(support::call(&mut svc.clone(), post(None)).await) })
    });
    let next = AtomicU64::new(0);
    let run = std::process::id();
    group.bench_function("fresh key (claim + store)", |b| {
        b.to_async(&rt).iter(|| async {
            let key = format!("\"bench-{run}-{}\"", next.fetch_add(1, Ordering::Relaxed));
            black_box(support::call(&mut svc.clone(), post(Some(&key))).await)
        })
    });
    let replay_key = format!("\"bench-replay-{run}\"");
    rt.block_on(support::call(&mut svc.clone(), post(Some(&replay_key))));
    group.bench_function("replay", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(support::call(&mut svc.clone(), post(Some(&replay_key))).await)
        })
    });
    group.finish();
}

fn memory(c: &mut Criterion) {
    store_group(c, "memory", MemoryStore::new());
}

#[cfg(feature = "redis")]
fn redis(c: &mut Criterion) {
    let Ok(url) = std::env::var("REDIS_URL") else {
        eprintln!("idempotency/redis skipped: REDIS_URL is not set");
        return;
    };
    let store = steadfast::idempotency::RedisStore::open(&url)
        .expect("REDIS_URL is not a valid Redis URL")
        .with_prefix(format!("steadfast-bench:{}:", std::process::id()));
    store_group(c, "redis", store);
}

#[cfg(not(feature = "redis"))]
fn redis(_: &mut Criterion) {
    eprintln!("idempotency/redis skipped: built without the `redis` feature");
}

/// What a replay is measured against: a handler that inserts one row.
fn handler_with_one_insert(c: &mut Criterion) {
    let rt = support::runtime();
    let pool = rt.block_on(async {
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        sqlx::query(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, sku TEXT NOT NULL, qty INTEGER NOT NULL)",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool
    });
    let svc = service_fn(move |_req: Request<Full<Bytes>>| {
        let pool = pool.clone();
        async move {
            sqlx::query("INSERT INTO orders (sku, qty) VALUES (?, ?)")
                .bind("A-1")
                .bind(2)
                .execute(&pool)
                .await
                .map(|_| Response::new(Full::new(Bytes::from_static(b"created"))))
        }
    });
    let mut group = c.benchmark_group("idempotency/memory");
    group.bench_function("handler doing one SQLite insert (no layer)", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(support::call(&mut svc.clone(), post(None)).await) })
    });
    group.finish();
}

criterion_group!(benches, memory, handler_with_one_insert, redis);
criterion_main!(benches);
