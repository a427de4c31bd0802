//! Idempotency-Key deduplication: a request without a key (pass-through, beside a
//! tower layer that does nothing, the floor for any layer, and tower-http's
//! header check, a layer of the same shape), a fresh key (claim, run, store) and
//! a replay, on `MemoryStore` and, when `REDIS_URL` is set, `RedisStore`; beside
//! the bare service and a handler doing one insert — what a replay saves.

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

fn store_group<St: Store + Clone>(c: &mut Criterion, name: &str, store: St) {
    let rt = support::runtime();
    let mut group = c.benchmark_group(format!("idempotency/{name}"));
    let bare = service_fn(support::ok);
    group.bench_function("bare", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(support::call(&mut bare.clone(), support::post(None)).await)
        })
    });
    let svc = rt.block_on(async { IdempotencyLayer::new(store).layer(service_fn(support::ok)) });
    group.bench_function("no key (pass-through)", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(support::call(&mut svc.clone(), support::post(None)).await)
        })
    });
    // The floor for the pass-through: a layer that does nothing but wrap the
    // inner future and map the response, as every tower layer does.
    let identity = tower::util::MapResponseLayer::new(|res| res).layer(service_fn(support::ok));
    group.bench_function("identity layer (tower MapResponse)", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(support::call(&mut identity.clone(), support::post(None)).await)
        })
    });
    // A tower-http layer of the same shape: it checks a header on every request
    // and either passes it through or answers itself.
    let validate =
        tower_http::validate_request::ValidateRequestHeaderLayer::accept("application/json")
            .layer(service_fn(support::ok));
    group.bench_function("header check (tower-http ValidateRequestHeader)", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(support::call(&mut validate.clone(), support::post(None)).await)
        })
    });
    let next = AtomicU64::new(0);
    let run = std::process::id();
    group.bench_function("fresh key (claim + store)", |b| {
        b.to_async(&rt).iter(|| async {
            let key = format!("\"bench-{run}-{}\"", next.fetch_add(1, Ordering::Relaxed));
            black_box(support::call(&mut svc.clone(), support::post(Some(&key))).await)
        })
    });
    let replay_key = format!("\"bench-replay-{run}\"");
    rt.block_on(support::call(
        &mut svc.clone(),
        support::post(Some(&replay_key)),
    ));
    group.bench_function("replay", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(support::call(&mut svc.clone(), support::post(Some(&replay_key))).await)
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
        .prefix(format!("steadfast-bench:{}:", std::process::id()));
    store_group(c, "redis", store);
}

#[cfg(not(feature = "redis"))]
fn redis(_: &mut Criterion) {
    eprintln!("idempotency/redis skipped: built without the `redis` feature");
}

/// What a replay is measured against: a handler that inserts one row, into an
/// in-memory SQLite database (the cheapest insert there is), a SQLite file as
/// koldly keeps by default (WAL, `synchronous = NORMAL`) and, when
/// `DATABASE_URL` names one, PostgreSQL over loopback, as a fleet sharing a
/// Redis store would use.
fn handler_with_one_insert(c: &mut Criterion) {
    let rt = support::runtime();
    let dir = std::env::temp_dir().join(format!("steadfast-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut databases = vec![
        ("SQLite in memory", "sqlite::memory:".to_owned()),
        (
            "SQLite file",
            format!("sqlite://{}/bench.db?mode=rwc", dir.display()),
        ),
    ];
    match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => databases.push(("PostgreSQL", url)),
        _ => eprintln!("idempotency: PostgreSQL insert skipped: DATABASE_URL is not postgres://"),
    }
    let mut group = c.benchmark_group("idempotency/memory");
    for (name, url) in databases {
        let pool = rt.block_on(insert_pool(&url));
        // Leaked: the handler's query text lives as long as a handler's would.
        let insert: &'static str =
            format!("INSERT INTO {} (sku, qty) VALUES ($1, $2)", orders_table()).leak();
        let handler_pool = pool.clone();
        let svc = service_fn(move |_req: Request<Full<Bytes>>| {
            let pool = handler_pool.clone();
            async move {
                sqlx::query(insert)
                    .bind("A-1")
                    .bind(2)
                    .execute(&pool)
                    .await
                    .map(|_| Response::new(Full::new(Bytes::from_static(b"created"))))
            }
        });
        group.bench_function(format!("handler doing one {name} insert (no layer)"), |b| {
            b.to_async(&rt).iter(|| async {
                black_box(support::call(&mut svc.clone(), support::post(None)).await)
            })
        });
        rt.block_on(async {
            // The table name is this run's own (see `orders_table`), never input.
            let drop = format!("DROP TABLE {}", orders_table());
            sqlx::query(sqlx::AssertSqlSafe(drop))
                .execute(&pool)
                .await
                .unwrap();
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

/// This run's table of orders.
fn orders_table() -> String {
    format!("steadfast_bench_orders_{}", std::process::id())
}

/// A one-connection pool on `url` with an empty [`orders_table`].
async fn insert_pool(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    let file = url.starts_with("sqlite://");
    let pool = sqlx::pool::PoolOptions::new()
        .max_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if file {
                    sqlx::query("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL")
                        .execute(conn)
                        .await?;
                }
                Ok(())
            })
        })
        .connect(url)
        .await
        .expect("the comparison database opens");
    let id = if url.starts_with("postgres") {
        "BIGSERIAL PRIMARY KEY"
    } else {
        "INTEGER PRIMARY KEY"
    };
    // A real table (a temporary one skips PostgreSQL's write-ahead log, and
    // with it the cost of a commit), named for this run in the shared database.
    // Built from this run's table name and a constant column type, never input.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {} (id {id}, sku TEXT NOT NULL, qty INTEGER NOT NULL)",
        orders_table()
    )))
    .execute(&pool)
    .await
    .unwrap();
    pool
}

criterion_group!(benches, memory, handler_with_one_insert, redis);
criterion_main!(benches);
