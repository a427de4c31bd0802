//! Idempotency-Key deduplication on `MemoryStore`: the shared scenarios, plus
//! what needs tokio's paused clock (lock TTL takeover, expiry, wait bounds),
//! a real socket, and a store that counts its calls.

mod common;
mod idempotency_cases;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use idempotency_cases::{self as cases, Probe, order, scoped, send};
use steadfast::idempotency::{
    Claim, Completion, Entry, EntryKey, IdempotencyLayer, MemoryStore, Store, StoreError,
};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt, service_fn};

#[tokio::test]
async fn replay_is_byte_exact() {
    cases::replay_is_byte_exact(MemoryStore::new()).await;
}

#[tokio::test]
async fn changed_request_is_422_and_reordered_json_is_not() {
    cases::changed_request_is_422(MemoryStore::new()).await;
}

#[tokio::test]
async fn in_flight_duplicate_is_409() {
    cases::in_flight_duplicate_is_409(MemoryStore::new()).await;
}

#[tokio::test(start_paused = true)]
async fn wait_mode_replays_the_first() {
    cases::wait_mode_replays_the_first(MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_first_requests_run_the_handler_once() {
    cases::concurrent_first_requests_run_once(vec![MemoryStore::new()]).await;
}

#[tokio::test]
async fn cancelled_request_frees_the_key_at_once() {
    let attempts = cases::cancelled_request_frees_the_key(MemoryStore::new()).await;
    assert_eq!(
        attempts, 1,
        "released synchronously, not after the lock TTL"
    );
}

#[tokio::test]
async fn panicking_handler_frees_the_key_at_once() {
    let attempts = cases::panicking_handler_frees_the_key(MemoryStore::new()).await;
    assert_eq!(attempts, 1);
}

#[tokio::test]
async fn scopes_are_kept_apart() {
    cases::scopes_are_kept_apart(MemoryStore::new()).await;
}

#[tokio::test]
async fn transient_failures_are_not_stored() {
    cases::transient_failures_are_not_stored(MemoryStore::new()).await;
}

#[tokio::test]
async fn bad_keys_are_400() {
    cases::bad_keys_are_400(MemoryStore::new()).await;
}

#[tokio::test]
async fn body_limits() {
    cases::body_limits(MemoryStore::new()).await;
}

#[tokio::test]
async fn missing_keys_and_other_methods() {
    cases::missing_keys_and_other_methods(MemoryStore::new()).await;
}

#[tokio::test]
async fn fingerprinted_headers() {
    cases::fingerprinted_headers(MemoryStore::new()).await;
}

/// A handler stuck past the lock TTL (as if its process died) loses the key to
/// the next request; its own late completion does not overwrite the successor's.
#[tokio::test(start_paused = true)]
async fn lock_ttl_lets_another_request_take_over() {
    let probe = Arc::new(Probe::default());
    let app = cases::app(
        scoped(MemoryStore::new()).lock_ttl(Duration::from_secs(60)),
        &probe,
    );
    let stuck = tokio::spawn({
        let app = app.clone();
        async move { send(&app, order("\"k-ttl\"", "{}").header("x-block", "1")).await }
    });
    cases::entered(&probe).await;
    tokio::time::advance(Duration::from_secs(59)).await;
    send(&app, order("\"k-ttl\"", "{}"))
        .await
        .assert_problem(409);

    tokio::time::advance(Duration::from_secs(1)).await;
    let successor = send(&app, order("\"k-ttl\"", "{}")).await;
    assert_eq!(successor.status, StatusCode::CREATED);
    assert_eq!(probe.runs(), 2, "took over after the lock TTL");

    probe.gate.notify_one();
    let stuck = stuck.await.unwrap();
    assert_eq!(
        stuck.status,
        StatusCode::CREATED,
        "the stuck request still answers its client"
    );
    let replay = send(&app, order("\"k-ttl\"", "{}")).await;
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert_eq!(
        replay.body, successor.body,
        "the successor's response is the one kept"
    );
    assert_eq!(probe.runs(), 2);
}

/// A handler that outlives its lock while nobody takes the key over: its
/// response is stored and replayed (as on `RedisStore`).
#[tokio::test(start_paused = true)]
async fn outlived_lock_is_stored_when_nobody_took_over() {
    let ttl = Duration::from_secs(60);
    cases::outlived_lock_is_stored_when_nobody_took_over(MemoryStore::new(), ttl, async move {
        tokio::time::advance(ttl + Duration::from_secs(1)).await;
    })
    .await;
}

/// Entries expire after the retention period; the key is then new again.
#[tokio::test(start_paused = true)]
async fn entries_expire_after_retention() {
    let probe = Arc::new(Probe::default());
    let app = cases::app(scoped(MemoryStore::new()), &probe);
    send(&app, order("\"k-exp\"", "{}")).await;
    tokio::time::advance(Duration::from_secs(24 * 3600 - 1)).await;
    let replay = send(&app, order("\"k-exp\"", "{}")).await;
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    tokio::time::advance(Duration::from_secs(1)).await;
    let fresh = send(&app, order("\"k-exp\"", "{}")).await;
    assert!(fresh.headers.get("idempotent-replayed").is_none());
    assert_eq!(probe.runs(), 2);
}

/// A waiting duplicate gives up at its bound with a 409.
#[tokio::test(start_paused = true)]
async fn wait_mode_is_bounded() {
    let probe = Arc::new(Probe::default());
    let app = cases::app(
        scoped(MemoryStore::new()).wait(Duration::from_secs(5)),
        &probe,
    );
    let _stuck = tokio::spawn({
        let app = app.clone();
        async move { send(&app, order("\"k-bound\"", "{}").header("x-block", "1")).await }
    });
    cases::entered(&probe).await;
    let started = Instant::now();
    send(&app, order("\"k-bound\"", "{}"))
        .await
        .assert_problem(409);
    assert_eq!(started.elapsed(), Duration::from_secs(5));
}

/// In wait mode, when the first request fails (5xx, released), the waiting
/// duplicate runs the handler itself.
#[tokio::test(start_paused = true)]
async fn waiting_duplicate_runs_when_the_first_fails() {
    let probe = Arc::new(Probe::default());
    let app = cases::app(
        scoped(MemoryStore::new()).wait(Duration::from_secs(30)),
        &probe,
    );
    let first = tokio::spawn({
        let app = app.clone();
        async move {
            send(
                &app,
                order("\"k-wf\"", "{}")
                    .header("x-block", "1")
                    .header("x-status", "503"),
            )
            .await
        }
    });
    cases::entered(&probe).await;
    let dup = tokio::spawn({
        let app = app.clone();
        async move { send(&app, order("\"k-wf\"", "{}")).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    probe.gate.notify_one();
    assert_eq!(first.await.unwrap().status, StatusCode::SERVICE_UNAVAILABLE);
    let dup = dup.await.unwrap();
    assert_eq!(dup.status, StatusCode::CREATED);
    assert!(dup.headers.get("idempotent-replayed").is_none());
    assert_eq!(probe.runs(), 2);
}

/// Over a real socket, through hyper: the replay is byte-exact on the wire.
#[tokio::test]
async fn replay_over_a_real_socket() {
    let probe = Arc::new(Probe::default());
    let addr = common::serve(cases::app(scoped(MemoryStore::new()), &probe)).await;
    let req = || {
        Request::post(format!("http://{addr}/orders"))
            .header("authorization", "Bearer alice")
            .header("content-type", "application/json")
            .header("idempotency-key", "\"k-wire\"")
            .body(Full::new(Bytes::from_static(b"{\"sku\":\"A1\"}")))
            .unwrap()
    };
    let first = common::send(req()).await;
    let again = common::send(req()).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.headers["content-type"], "application/json");
    assert_eq!(again.headers["location"], first.headers["location"]);
    assert!(
        again.headers.contains_key("date"),
        "the server dates the replay anew"
    );
    assert_eq!(probe.runs(), 1);
}

/// An error of the inner service is not stored: the claim is released, the
/// error propagates, and a retry runs again.
#[tokio::test]
async fn inner_service_errors_are_not_stored() {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = service_fn({
        let calls = calls.clone();
        move |_req: Request<Full<Bytes>>| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Err(std::io::Error::other("upstream reset"))
                } else {
                    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
                }
            }
        }
    });
    let mut svc = IdempotencyLayer::new(MemoryStore::new()).layer(svc);
    let req = || {
        Request::post("/")
            .header("idempotency-key", "\"k-err\"")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let err = svc.ready().await.unwrap().call(req()).await.unwrap_err();
    assert_eq!(err.to_string(), "upstream reset");
    let res = svc.ready().await.unwrap().call(req()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "ok");
    let res = svc.ready().await.unwrap().call(req()).await.unwrap();
    assert_eq!(res.headers()["idempotent-replayed"], "true");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// A store that counts its calls, built on `MemoryStore`: a user-defined store,
/// and proof that requests the layer does not deduplicate never touch it.
#[derive(Clone, Default)]
struct CountingStore {
    inner: MemoryStore,
    calls: Arc<AtomicUsize>,
}

impl Store for CountingStore {
    type Lease = <MemoryStore as Store>::Lease;

    async fn claim(
        &self,
        key: &EntryKey,
        fingerprint: &steadfast::idempotency::Fingerprint,
        lock_ttl: Duration,
    ) -> Result<Claim<Self::Lease>, StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.claim(key, fingerprint, lock_ttl).await
    }

    async fn complete(
        &self,
        key: &EntryKey,
        lease: &Self::Lease,
        completion: Completion,
        retention: Duration,
    ) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.complete(key, lease, completion, retention).await
    }

    async fn release(&self, key: &EntryKey, lease: &Self::Lease) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.release(key, lease).await
    }

    async fn lookup(&self, key: &EntryKey) -> Result<Option<Entry>, StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.lookup(key).await
    }
}

#[tokio::test]
async fn pass_through_requests_never_touch_the_store() {
    let store = CountingStore::default();
    let probe = Arc::new(Probe::default());
    let app = cases::app(scoped(store.clone()), &probe);
    let get = Request::get("/orders")
        .header("authorization", "Bearer alice")
        .header("idempotency-key", "\"k-get\"")
        .extension(Bytes::new());
    assert_eq!(send(&app, get).await.status, StatusCode::CREATED);
    let no_key = Request::post("/orders")
        .header("authorization", "Bearer alice")
        .extension(Bytes::new());
    assert_eq!(send(&app, no_key).await.status, StatusCode::CREATED);
    send(&app, order("\"bad", "{}")).await.assert_problem(400);
    assert_eq!(store.calls.load(Ordering::SeqCst), 0);
    // A keyed request: one claim, one completion; its replay: one claim.
    send(&app, order("\"k-post\"", "{}")).await;
    assert_eq!(store.calls.load(Ordering::SeqCst), 2);
    send(&app, order("\"k-post\"", "{}")).await;
    assert_eq!(store.calls.load(Ordering::SeqCst), 3);
}

/// A store that never answers: the layer's store timeout bounds it, and the
/// policy decides: 503 by default, the handler when failing open.
#[derive(Clone, Default)]
struct HangingStore;

impl Store for HangingStore {
    type Lease = ();

    async fn claim(
        &self,
        _: &EntryKey,
        _: &steadfast::idempotency::Fingerprint,
        _: Duration,
    ) -> Result<Claim<()>, StoreError> {
        std::future::pending().await
    }

    async fn complete(
        &self,
        _: &EntryKey,
        _: &(),
        _: Completion,
        _: Duration,
    ) -> Result<(), StoreError> {
        std::future::pending().await
    }

    async fn release(&self, _: &EntryKey, _: &()) -> Result<(), StoreError> {
        std::future::pending().await
    }

    async fn lookup(&self, _: &EntryKey) -> Result<Option<Entry>, StoreError> {
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_hanging_store_is_bounded_by_the_store_timeout() {
    let probe = Arc::new(Probe::default());
    let closed = cases::app(
        scoped(HangingStore).store_timeout(Duration::from_millis(300)),
        &probe,
    );
    let started = Instant::now();
    let reply = send(&closed, order("\"k-hang\"", "{}")).await;
    let problem = reply.assert_problem(503);
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("#store-unavailable")
    );
    assert_eq!(reply.headers["retry-after"], "1");
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    assert_eq!(probe.runs(), 0);

    let open = cases::app(
        scoped(HangingStore)
            .store_timeout(Duration::from_millis(300))
            .on_store_failure(steadfast::idempotency::OnStoreFailure::FailOpen),
        &probe,
    );
    let reply = send(&open, order("\"k-hang\"", "{}")).await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(probe.runs(), 1);
}

#[tokio::test]
async fn under_the_error_handler_its_problems_carry_the_request_id() {
    let probe = Arc::new(Probe::default());
    let app = cases::app(scoped(MemoryStore::new()), &probe)
        .layer(steadfast::error_handler::ErrorHandlerLayer::new());
    let reply = send(&app, order("\"abc", "{}").header("x-request-id", "req-42")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let problem: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(problem["status"], 400);
    assert_eq!(problem["request_id"], "req-42");
    assert!(
        problem["type"].as_str().unwrap().ends_with("#invalid-key"),
        "{problem}"
    );
    assert_eq!(probe.runs.load(Ordering::SeqCst), 0);
}
