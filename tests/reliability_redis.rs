//! Reliability scenario: Redis cut while keyed requests are in flight and
//! arriving, on `IdempotencyLayer` with `RedisStore` (RELIABILITY.md, scenario 1).
//!
//! The store talks to the real Redis at `REDIS_URL` through a [`FaultProxy`],
//! which takes Redis away (port closed, every connection reset) and gives it
//! back. Real sockets, so real time: every wait is on a condition, polled and
//! bounded. Each test prints its figures on `FIGURE` lines (`--nocapture`).
#![cfg(feature = "redis")]

mod common;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::{Router, body::Body, extract::State, routing::post};
use fault_proxy::{FaultHandle, FaultProxy};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use redis::AsyncCommands;
use steadfast::idempotency::{IdempotencyLayer, RedisStore};
use tokio::sync::watch;
use tower::ServiceExt;

/// The longest any condition here may take to come true.
const BOUND: Duration = Duration::from_secs(20);

/// The handler: counts its runs per key and holds the `in-flight-…` ones at a gate.
#[derive(Default)]
struct Handler {
    runs: Mutex<HashMap<String, u32>>,
    entered: AtomicUsize,
    gate: watch::Sender<bool>,
}

impl Handler {
    fn runs_of(&self, key: &str) -> u32 {
        self.runs.lock().unwrap().get(key).copied().unwrap_or(0)
    }

    fn most_runs(&self) -> u32 {
        self.runs
            .lock()
            .unwrap()
            .values()
            .copied()
            .max()
            .unwrap_or(0)
    }

    fn total_runs(&self) -> u32 {
        self.runs.lock().unwrap().values().sum()
    }
}

async fn create(State(handler): State<Arc<Handler>>, headers: HeaderMap) -> (StatusCode, String) {
    let key = headers["idempotency-key"].to_str().unwrap().to_owned();
    *handler.runs.lock().unwrap().entry(key.clone()).or_default() += 1;
    handler.entered.fetch_add(1, Ordering::SeqCst);
    if key.contains("in-flight") {
        let mut open = handler.gate.subscribe();
        let _ = open.wait_for(|open| *open).await;
    }
    (StatusCode::CREATED, format!("order for {key}"))
}

struct Rig {
    app: Router,
    handler: Arc<Handler>,
    faults: FaultHandle,
    prefix: String,
    _proxy: FaultProxy,
}

/// A unique key prefix for this test in this run.
fn prefix(test: &str) -> String {
    static RUN: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let n = RUN.fetch_add(1, Ordering::Relaxed);
    format!(
        "steadfast-reliability:{}:{nanos}:{n}:{test}:",
        std::process::id()
    )
}

/// The app on a `RedisStore` that reaches Redis through a fault proxy; `None`
/// (skip) without `REDIS_URL`.
async fn rig(test: &str, lock_ttl: Duration) -> Option<Rig> {
    let url = common::service_url("REDIS_URL")?;
    let redis: SocketAddr = tokio::net::lookup_host(
        url.trim_start_matches("redis://")
            .trim_end_matches('/')
            .to_owned(),
    )
    .await
    .unwrap()
    .find(SocketAddr::is_ipv4)
    .unwrap();
    let proxy = FaultProxy::start(redis).await.unwrap();
    let prefix = prefix(test);
    let store = RedisStore::open(&format!("redis://{}/", proxy.addr()))
        .unwrap()
        .prefix(prefix.clone());
    let handler = Arc::new(Handler::default());
    handler.gate.send_replace(true);
    let app = Router::new()
        .route("/orders", post(create))
        .layer(IdempotencyLayer::new(store).lock_ttl(lock_ttl))
        .with_state(handler.clone());
    Some(Rig {
        app,
        handler,
        faults: proxy.handle(),
        prefix,
        _proxy: proxy,
    })
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: bytes::Bytes,
}

impl Reply {
    fn replayed(&self) -> bool {
        self.headers
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true")
    }

    fn assert_problem(&self, status: StatusCode) -> serde_json::Value {
        assert_eq!(self.status, status, "{:?}", self.body);
        assert_eq!(self.headers["content-type"], "application/problem+json");
        let json: serde_json::Value = serde_json::from_slice(&self.body).unwrap();
        assert_eq!(json["status"], status.as_u16());
        json
    }
}

async fn order(app: &Router, key: &str) -> Reply {
    let req = Request::post("/orders")
        .header("idempotency-key", format!("\"{key}\""))
        .header("content-type", "application/json")
        .body(Body::from(format!("{{\"sku\":\"A1\",\"for\":\"{key}\"}}")))
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

async fn raw() -> redis::aio::MultiplexedConnection {
    redis::Client::open(std::env::var("REDIS_URL").unwrap())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Every key under `prefix` with its remaining TTL in milliseconds.
async fn keys_with_ttl(prefix: &str) -> Vec<(String, i64)> {
    let mut conn = raw().await;
    let keys: Vec<String> = conn.keys(format!("{prefix}*")).await.unwrap();
    let mut out = Vec::new();
    for key in keys {
        let pttl: i64 = conn.pttl(&key).await.unwrap();
        out.push((key, pttl));
    }
    out
}

async fn cleanup(prefix: &str) {
    let keys: Vec<String> = raw().await.keys(format!("{prefix}*")).await.unwrap();
    if !keys.is_empty() {
        let _: () = raw().await.del(keys).await.unwrap();
    }
}

/// Polls `condition` every 10 ms until it holds; panics after [`BOUND`].
async fn eventually<F: Future<Output = bool>>(what: &str, mut condition: impl FnMut() -> F) {
    let start = Instant::now();
    while !condition().await {
        assert!(start.elapsed() < BOUND, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Starts `keys` as requests that enter the handler and wait at its gate.
async fn start_in_flight(rig: &Rig, keys: &[String]) -> Vec<tokio::task::JoinHandle<Reply>> {
    let before = rig.handler.entered.load(Ordering::SeqCst);
    rig.handler.gate.send_replace(false);
    let tasks: Vec<_> = keys
        .iter()
        .map(|key| {
            let app = rig.app.clone();
            let key = key.clone();
            tokio::spawn(async move { order(&app, &key).await })
        })
        .collect();
    let handler = rig.handler.clone();
    eventually("every in-flight request is in its handler", || {
        let handler = handler.clone();
        let want = before + keys.len();
        async move { handler.entered.load(Ordering::SeqCst) == want }
    })
    .await;
    tasks
}

/// Sends `keys` concurrently while Redis is away: each is a 503 problem.
async fn arrivals_fail_closed(rig: &Rig, keys: &[String]) {
    let tasks: Vec<_> = keys
        .iter()
        .map(|key| {
            let app = rig.app.clone();
            let key = key.clone();
            tokio::spawn(async move { order(&app, &key).await })
        })
        .collect();
    for task in tasks {
        let reply = task.await.unwrap();
        let problem = reply.assert_problem(StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            problem["type"]
                .as_str()
                .unwrap()
                .ends_with("store-unavailable"),
            "{problem}"
        );
        assert!(reply.headers.contains_key("retry-after"));
    }
}

/// Restores Redis and sends fresh keyed requests until one succeeds; returns
/// the time from the restore to that success, and how many probes failed.
async fn recover(rig: &Rig) -> (Duration, u32) {
    rig.faults.restore().await.unwrap();
    let restored = Instant::now();
    let mut failed = 0;
    loop {
        let probe = order(&rig.app, &format!("probe-{failed}")).await;
        if probe.status == StatusCode::CREATED {
            return (restored.elapsed(), failed);
        }
        probe.assert_problem(StatusCode::SERVICE_UNAVAILABLE);
        failed += 1;
        assert!(restored.elapsed() < BOUND, "service did not resume");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn keys(kind: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{kind}-{i}")).collect()
}

/// Redis goes away while 20 keyed requests run their handlers and 30 more
/// arrive; it comes back before the 20 finish. The 30 are refused with a 503
/// problem without running; once Redis is back every key runs exactly once,
/// every retry replays, and every key in Redis is a completed entry (none
/// stuck as a claim).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cut_under_keyed_load_runs_each_handler_once_and_leaves_no_claim() {
    let lock_ttl = Duration::from_secs(60);
    let Some(rig) = rig("cut-recovered", lock_ttl).await else {
        return;
    };
    assert_eq!(order(&rig.app, "warm").await.status, StatusCode::CREATED);

    let in_flight = keys("in-flight", 20);
    let arriving = keys("arriving", 30);
    let tasks = start_in_flight(&rig, &in_flight).await;

    rig.faults.outage().await.unwrap();
    arrivals_fail_closed(&rig, &arriving).await;
    // A duplicate of an in-flight key is refused too, and does not run.
    arrivals_fail_closed(&rig, &in_flight[..5]).await;
    for key in &arriving {
        assert_eq!(
            rig.handler.runs_of(key),
            0,
            "{key} ran while Redis was away"
        );
    }

    let (recovery, failed_probes) = recover(&rig).await;

    rig.handler.gate.send_replace(true);
    for (key, task) in in_flight.iter().zip(tasks) {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, StatusCode::CREATED, "{key}");
        assert!(!reply.replayed());
    }
    // Every client retries every key: the in-flight ones replay, the refused
    // ones run now (once), and their retries replay.
    for key in &in_flight {
        let reply = order(&rig.app, key).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{key}");
        assert!(reply.replayed(), "{key} was not replayed");
    }
    for key in &arriving {
        let first = order(&rig.app, key).await;
        assert_eq!(first.status, StatusCode::CREATED);
        assert!(!first.replayed());
        let retry = order(&rig.app, key).await;
        assert!(retry.replayed(), "{key} was not replayed");
        assert_eq!(retry.body, first.body);
    }

    assert_eq!(rig.handler.most_runs(), 1, "a handler ran twice");
    let ran = 1 + in_flight.len() + arriving.len() + 1; // warm-up, both groups, the first good probe
    assert_eq!(rig.handler.total_runs() as usize, ran);
    let stored = keys_with_ttl(&rig.prefix).await;
    assert_eq!(stored.len(), ran, "one Redis key per key that ran");
    let claims = stored
        .iter()
        .filter(|(_, pttl)| *pttl <= lock_ttl.as_millis() as i64)
        .count();
    assert_eq!(claims, 0, "stuck claims: {stored:?}");
    println!(
        "FIGURE redis-cut-recovered: requests={} refused_503={} handler_runs={} duplicates=0 lost=0 \
         recovery_ms={} failed_probes={failed_probes} redis_keys={} stuck_claims=0 accepted_connections={}",
        1 + 2 * in_flight.len() + 5 + 3 * arriving.len() + failed_probes as usize + 1,
        arriving.len() + 5 + failed_probes as usize,
        rig.handler.total_runs(),
        recovery.as_millis(),
        stored.len(),
        rig.faults.accepted(),
    );
    cleanup(&rig.prefix).await;
}

/// Redis goes away and the in-flight handlers finish before it returns: their
/// clients still get their responses, but the completions cannot be stored. As
/// documented, those keys stay claimed until the lock TTL: a retry meanwhile is
/// a 409 (the handler does not run twice), and the claims expire by themselves
/// within the lock TTL of their claim, leaving no key behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_lost_to_an_outage_hold_their_keys_only_until_the_lock_ttl() {
    let lock_ttl = Duration::from_secs(3);
    let Some(rig) = rig("cut-during-completion", lock_ttl).await else {
        return;
    };
    assert_eq!(order(&rig.app, "warm").await.status, StatusCode::CREATED);
    let in_flight = keys("in-flight", 10);
    let tasks = start_in_flight(&rig, &in_flight).await;

    rig.faults.outage().await.unwrap();
    rig.handler.gate.send_replace(true);
    for (key, task) in in_flight.iter().zip(tasks) {
        // The response whose storing failed still reaches its client.
        assert_eq!(task.await.unwrap().status, StatusCode::CREATED, "{key}");
    }
    let (recovery, failed_probes) = recover(&rig).await;

    let mut conflicts = 0;
    for key in &in_flight {
        let retry = order(&rig.app, key).await;
        retry.assert_problem(StatusCode::CONFLICT);
        conflicts += 1;
    }
    assert_eq!(rig.handler.most_runs(), 1, "a handler ran twice");

    let claim_of = |prefix: String| async move {
        keys_with_ttl(&prefix)
            .await
            .into_iter()
            .filter(|(_, pttl)| *pttl <= 3_000)
            .count()
    };
    assert_eq!(claim_of(rig.prefix.clone()).await, in_flight.len());
    let waiting = Instant::now();
    let prefix = rig.prefix.clone();
    eventually("the orphaned claims expire", || {
        let prefix = prefix.clone();
        async move { claim_of(prefix).await == 0 }
    })
    .await;
    let expired_after = waiting.elapsed();
    assert!(expired_after <= lock_ttl + Duration::from_secs(1));
    // Left: the warm-up and the first good probe, both completed entries.
    assert_eq!(keys_with_ttl(&rig.prefix).await.len(), 2);
    println!(
        "FIGURE redis-cut-during-completion: in_flight={} responses_delivered={} retries_409={conflicts} \
         handler_runs_max=1 recovery_ms={} failed_probes={failed_probes} claims_left_after_lock_ttl=0 \
         claims_expired_within_ms={}",
        in_flight.len(),
        in_flight.len(),
        recovery.as_millis(),
        expired_after.as_millis(),
    );
    cleanup(&rig.prefix).await;
}
