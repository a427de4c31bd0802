//! Idempotency-Key deduplication on `RedisStore`, against the real Redis at
//! `REDIS_URL` (skipped with a printed reason when unset, failing when
//! `STEADFAST_REQUIRE_SERVICES=1`). Real time throughout: these tests go through
//! real sockets, and their assertions do not depend on timing.
#![cfg(feature = "redis")]

mod common;
mod idempotency_cases;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use http::StatusCode;
use idempotency_cases::{self as cases, Probe, order, scoped, send};
use redis::AsyncCommands;
use steadfast::idempotency::{EntryKey, IdempotencyKey, OnStoreFailure, RedisStore};

/// A prefix unique to this test in this run, so runs never see each other's keys.
fn prefix(test: &str) -> String {
    static RUN: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let n = RUN.fetch_add(1, Ordering::Relaxed);
    format!("steadfast-test:{}:{nanos}:{n}:{test}:", std::process::id())
}

/// A store on the test Redis, and its prefix; `None` (skip) without REDIS_URL.
fn store(test: &str) -> Option<(RedisStore, String)> {
    let url = common::service_url("REDIS_URL")?;
    let prefix = prefix(test);
    Some((
        RedisStore::open(&url).unwrap().prefix(prefix.clone()),
        prefix,
    ))
}

async fn raw() -> redis::aio::MultiplexedConnection {
    let url = std::env::var("REDIS_URL").unwrap();
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// The keys under `prefix`.
async fn keys(prefix: &str) -> Vec<String> {
    raw().await.keys(format!("{prefix}*")).await.unwrap()
}

/// Deletes what a test wrote.
async fn cleanup(prefix: &str) {
    let keys = keys(prefix).await;
    if !keys.is_empty() {
        let _: () = raw().await.del(keys).await.unwrap();
    }
}

macro_rules! scenario {
    ($name:ident, $case:ident) => {
        #[tokio::test]
        async fn $name() {
            let Some((store, prefix)) = store(stringify!($name)) else {
                return;
            };
            cases::$case(store).await;
            cleanup(&prefix).await;
        }
    };
}

scenario!(replay_is_byte_exact, replay_is_byte_exact);
scenario!(
    changed_request_is_422_and_reordered_json_is_not,
    changed_request_is_422
);
scenario!(in_flight_duplicate_is_409, in_flight_duplicate_is_409);
scenario!(wait_mode_replays_the_first, wait_mode_replays_the_first);
scenario!(scopes_are_kept_apart, scopes_are_kept_apart);
scenario!(
    transient_failures_are_not_stored,
    transient_failures_are_not_stored
);
scenario!(bad_keys_are_400, bad_keys_are_400);
scenario!(body_limits, body_limits);
scenario!(
    missing_keys_and_other_methods,
    missing_keys_and_other_methods
);
scenario!(fingerprinted_headers, fingerprinted_headers);

#[tokio::test]
async fn cancelled_request_frees_the_key_before_its_lock_ttl() {
    let Some((store, prefix)) = store("cancel") else {
        return;
    };
    let started = Instant::now();
    cases::cancelled_request_frees_the_key(store).await;
    // The lock TTL is 60 s: the key was released, not left to expire.
    assert!(started.elapsed() < Duration::from_secs(30));
    cleanup(&prefix).await;
}

#[tokio::test]
async fn panicking_handler_frees_the_key_before_its_lock_ttl() {
    let Some((store, prefix)) = store("panic") else {
        return;
    };
    let started = Instant::now();
    cases::panicking_handler_frees_the_key(store).await;
    assert!(started.elapsed() < Duration::from_secs(30));
    cleanup(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_first_requests_run_the_handler_once() {
    let Some((store, prefix)) = store("race-one") else {
        return;
    };
    cases::concurrent_first_requests_run_once(vec![store]).await;
    cleanup(&prefix).await;
}

/// Two separate stores — two processes, each with its own connection and
/// instance id — race 100 requests on one key: the handler runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_racing_on_one_key_run_the_handler_once() {
    let Some((one, prefix)) = store("race-two") else {
        return;
    };
    let url = std::env::var("REDIS_URL").unwrap();
    let two = RedisStore::open(&url).unwrap().prefix(prefix.clone());
    cases::concurrent_first_requests_run_once(vec![one, two]).await;
    assert_eq!(keys(&prefix).await.len(), 1, "one entry, under the prefix");
    cleanup(&prefix).await;
}

/// The claim carries the lock TTL in Redis; the completion the retention.
#[tokio::test]
async fn claims_and_entries_carry_their_ttls_in_redis() {
    let Some((store, prefix)) = store("ttls") else {
        return;
    };
    let probe = Arc::new(Probe::default());
    let app = cases::app(scoped(store.clone()), &probe);
    let key = EntryKey::new("alice", &IdempotencyKey::parse(b"\"k-ttl\"").unwrap());
    let redis_key = store.redis_key(&key);
    assert!(redis_key.starts_with(&prefix));

    let first = tokio::spawn({
        let app = app.clone();
        async move { send(&app, order("\"k-ttl\"", "{}").header("x-block", "1")).await }
    });
    cases::entered(&probe).await;
    let pttl: i64 = raw().await.pttl(&redis_key).await.unwrap();
    assert!(pttl > 0 && pttl <= 60_000, "lock TTL: {pttl}");
    probe.gate.notify_one();
    first.await.unwrap();
    let pttl: i64 = raw().await.pttl(&redis_key).await.unwrap();
    assert!(
        pttl > 23 * 3600 * 1000 && pttl <= 24 * 3600 * 1000,
        "retention: {pttl}"
    );
    cleanup(&prefix).await;
}

/// A process that dies holding a claim (here: a handler stuck past a short
/// lock TTL) loses the key when the claim expires in Redis.
#[tokio::test]
async fn lock_ttl_lets_another_instance_take_over() {
    let Some((one, prefix)) = store("takeover") else {
        return;
    };
    let url = std::env::var("REDIS_URL").unwrap();
    let two = RedisStore::open(&url).unwrap().prefix(prefix.clone());
    let probe = Arc::new(Probe::default());
    let ttl = Duration::from_millis(300);
    let app_one = cases::app(scoped(one).lock_ttl(ttl), &probe);
    let app_two = cases::app(scoped(two).lock_ttl(ttl), &probe);
    let stuck = tokio::spawn({
        let app = app_one.clone();
        async move { send(&app, order("\"k-dead\"", "{}").header("x-block", "1")).await }
    });
    cases::entered(&probe).await;
    // Until the lock TTL passes the other instance answers 409; then it takes over.
    let (successor, _) = cases::until_not_in_flight(&app_two, || order("\"k-dead\"", "{}")).await;
    assert_eq!(successor.status, StatusCode::CREATED);
    assert_eq!(probe.runs(), 2);
    probe.gate.notify_one();
    assert_eq!(stuck.await.unwrap().status, StatusCode::CREATED);
    let replay = send(&app_one, order("\"k-dead\"", "{}")).await;
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert_eq!(
        replay.body, successor.body,
        "the late completion did not overwrite the successor"
    );
    cleanup(&prefix).await;
}

/// A handler that outlives its lock while nobody takes the key over: the claim
/// has expired in Redis, and the late completion is stored and replayed (as on
/// `MemoryStore`), so the retry does not run the handler again.
#[tokio::test]
async fn outlived_lock_is_stored_when_nobody_took_over() {
    let Some((store, prefix)) = store("outlived") else {
        return;
    };
    let ttl = Duration::from_millis(200);
    let expired = {
        let prefix = prefix.clone();
        async move {
            // Redis's clock: wait (bounded) until the claim has expired there.
            let deadline = Instant::now() + Duration::from_secs(10);
            while !keys(&prefix).await.is_empty() {
                assert!(Instant::now() < deadline, "the claim never expired");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    cases::outlived_lock_is_stored_when_nobody_took_over(store, ttl, expired).await;
    cleanup(&prefix).await;
}

/// Entries expire after the retention period.
#[tokio::test]
async fn entries_expire_after_retention() {
    let Some((store, prefix)) = store("expiry") else {
        return;
    };
    let probe = Arc::new(Probe::default());
    let app = cases::app(scoped(store).retention(Duration::from_millis(200)), &probe);
    send(&app, order("\"k-exp\"", "{}")).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = send(&app, order("\"k-exp\"", "{}")).await;
        if reply.headers.get("idempotent-replayed").is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "the entry never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(probe.runs(), 2);
    cleanup(&prefix).await;
}

/// A port nothing listens on.
async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("redis://{addr}/")
}

/// Redis down: 503 problem+json by default, the handler when failing open;
/// bounded by the store timeout either way, never a hang.
#[tokio::test]
async fn redis_down_fails_closed_by_default_and_open_when_configured() {
    if common::service_url("REDIS_URL").is_none() {
        return;
    }
    let down = RedisStore::open(&closed_port().await).unwrap();
    let probe = Arc::new(Probe::default());
    let timeout = Duration::from_millis(500);
    let closed = cases::app(scoped(down.clone()).store_timeout(timeout), &probe);
    let started = Instant::now();
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        send(&closed, order("\"k-down\"", "{}")),
    )
    .await
    .expect("bounded");
    let problem = reply.assert_problem(503);
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("#store-unavailable")
    );
    assert!(reply.headers.contains_key("retry-after"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(probe.runs(), 0);

    let open = cases::app(
        scoped(down)
            .store_timeout(timeout)
            .on_store_failure(OnStoreFailure::FailOpen),
        &probe,
    );
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        send(&open, order("\"k-down\"", "{}")),
    )
    .await
    .expect("bounded");
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(probe.runs(), 1);
}

/// Redis that accepts connections and never answers: the store timeout fires.
#[tokio::test]
async fn a_silent_redis_is_bounded_by_the_store_timeout() {
    if common::service_url("REDIS_URL").is_none() {
        return;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let store = RedisStore::open(&format!("redis://{addr}/")).unwrap();
    let probe = Arc::new(Probe::default());
    let app = cases::app(
        scoped(store).store_timeout(Duration::from_millis(300)),
        &probe,
    );
    let started = Instant::now();
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        send(&app, order("\"k-silent\"", "{}")),
    )
    .await
    .expect("bounded");
    reply.assert_problem(503);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(probe.runs(), 0);
    silent.abort();
}
