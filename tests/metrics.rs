//! The `metrics` feature: every counter and histogram of `steadfast::metrics`,
//! recorded by metrics-util's debugging recorder (installed for the test's
//! thread only; the tests run on current-thread runtimes, so spawned tasks
//! record to it too) and compared whole: exact names, labels and values.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    io,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use steadfast::{
    BoxError,
    audit::{AuditEvent, AuditLayer, Auditor, FullPolicy, MemorySink, Sink},
    breaker::{BreakerConfig, BreakerLayer, Window},
    hedge::HedgeLayer,
    idempotency::{IdempotencyLayer, MemoryStore},
    metrics as names,
    overload::{OverloadConfig, OverloadLayer},
    retry::{Jitter, RetryBudget, RetryLayer, RetryPolicy},
    timeout::{RouteTimeoutLayer, TimeoutTable},
};
use tower::{Layer, ServiceExt, service_fn};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A recorded value: a counter's count or a histogram's samples.
#[derive(Debug, PartialEq)]
enum Value {
    Counter(u64),
    Histogram(Vec<f64>),
}

/// Everything recorded, as `name{label=value,...}` (labels sorted) → value.
fn recorded(snapshotter: &Snapshotter) -> BTreeMap<String, Value> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let value = match value {
                DebugValue::Counter(n) => Value::Counter(n),
                DebugValue::Histogram(samples) => {
                    Value::Histogram(samples.into_iter().map(|s| s.into_inner()).collect())
                }
                DebugValue::Gauge(g) => panic!("steadfast records no gauge: {key:?} = {g}"),
            };
            (format!("{}{{{}}}", key.name(), labels.join(",")), value)
        })
        .collect()
}

fn counter(name: &str, labels: &str, n: u64) -> (String, Value) {
    (format!("{name}{{{labels}}}"), Value::Counter(n))
}

fn histogram(name: &str, labels: &str, samples: &[f64]) -> (String, Value) {
    (
        format!("{name}{{{labels}}}"),
        Value::Histogram(samples.to_vec()),
    )
}

/// Asserts that everything recorded is exactly `entries`.
#[track_caller]
fn assert_recorded<const N: usize>(snapshotter: &Snapshotter, entries: [(String, Value); N]) {
    assert_eq!(recorded(snapshotter), BTreeMap::from(entries));
}

/// Installs a debugging recorder for the rest of the enclosing block, on this
/// thread, and binds its snapshotter to `$snapshotter`.
macro_rules! record_metrics {
    ($snapshotter:ident) => {
        let recorder = DebuggingRecorder::new();
        let $snapshotter = recorder.snapshotter();
        let _guard = metrics::set_default_local_recorder(&recorder);
    };
}

/// An upstream that answers each status of `script` in turn, then the last
/// forever, counting its calls in `calls`.
fn upstream(
    script: &'static [u16],
    calls: Arc<AtomicUsize>,
) -> impl tower::Service<
    Request<steadfast::retry::RetryBody<Full<Bytes>>>,
    Response = Response<()>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    let count = calls.clone();
    service_fn(move |_req| {
        let n = count.fetch_add(1, Ordering::SeqCst);
        let status = script[n.min(script.len() - 1)];
        async move { Ok(Response::builder().status(status).body(()).unwrap()) }
    })
}

fn get() -> Request<Full<Bytes>> {
    Request::get("http://upstream/")
        .body(Full::default())
        .unwrap()
}

/// A GET through a `RetryLayer` with `policy` in front of `svc`.
async fn get_through<S>(policy: RetryPolicy, svc: S) -> Response<()>
where
    S: tower::Service<
            Request<steadfast::retry::RetryBody<Full<Bytes>>>,
            Response = Response<()>,
            Error = Infallible,
        > + Clone,
{
    RetryLayer::new(policy)
        .layer(svc)
        .oneshot(get())
        .await
        .unwrap()
}

fn exact() -> RetryPolicy {
    RetryPolicy::new()
        .base_delay(ms(100))
        .jitter(Jitter::None)
        .without_budget()
}

#[tokio::test(start_paused = true)]
async fn each_retry_counts_its_class_and_its_delay() {
    record_metrics!(snapshotter);

    let calls = Arc::new(AtomicUsize::new(0));
    let svc = upstream(&[503, 502, 200], calls.clone());
    let res = get_through(exact(), svc).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_recorded(
        &snapshotter,
        [
            counter(names::RETRY_ATTEMPTS, "class=overloaded", 1),
            counter(names::RETRY_ATTEMPTS, "class=server", 1),
            histogram(names::RETRY_DELAY, "delay_source=backoff", &[0.1, 0.2]),
        ],
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_the_delay_source() {
    record_metrics!(snapshotter);

    let calls = Arc::new(AtomicUsize::new(0));
    let count = calls.clone();
    let svc = service_fn(move |_req: Request<_>| {
        let first = count.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            let res = if first {
                Response::builder().status(429).header("retry-after", "2")
            } else {
                Response::builder().status(200)
            };
            Ok::<_, Infallible>(res.body(()).unwrap())
        }
    });
    get_through(exact(), svc).await;
    assert_recorded(
        &snapshotter,
        [
            counter(names::RETRY_ATTEMPTS, "class=overloaded", 1),
            histogram(names::RETRY_DELAY, "delay_source=retry-after", &[2.0]),
        ],
    );
}

#[tokio::test(start_paused = true)]
async fn give_ups_are_counted_by_class_and_reason_and_client_errors_are_none() {
    record_metrics!(snapshotter);

    // Exhausted: one retry allowed, two 503s.
    let svc = upstream(&[503], Arc::default());
    let res = get_through(exact().max_retries(1), svc).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Not idempotent: a POST without a key on a 503.
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = upstream(&[503], calls.clone());
    let post = Request::post("http://upstream/orders")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    RetryLayer::new(exact())
        .layer(svc)
        .oneshot(post)
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // The budget: no reserve, no deposits count.
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = upstream(&[502], calls.clone());
    let broke = exact().budget(RetryBudget::new(Duration::from_secs(10), 0, 0.0));
    get_through(broke, svc).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // The deadline: the first delay (100 ms) would end after it.
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = upstream(&[503], calls.clone());
    get_through(exact().deadline(ms(50)), svc).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // A Retry-After over the ceiling.
    let svc = service_fn(|_req: Request<_>| async {
        Ok::<_, Infallible>(
            Response::builder()
                .status(503)
                .header("retry-after", "60")
                .body(())
                .unwrap(),
        )
    });
    get_through(exact(), svc).await;
    // A 404 is not retryable: no give-up.
    let svc = upstream(&[404], Arc::default());
    get_through(exact(), svc).await;

    assert_recorded(
        &snapshotter,
        [
            counter(names::RETRY_ATTEMPTS, "class=overloaded", 1),
            histogram(names::RETRY_DELAY, "delay_source=backoff", &[0.1]),
            counter(
                names::RETRY_GIVE_UPS,
                "class=overloaded,reason=exhausted",
                1,
            ),
            counter(
                names::RETRY_GIVE_UPS,
                "class=overloaded,reason=not_idempotent",
                1,
            ),
            counter(names::RETRY_GIVE_UPS, "class=server,reason=budget", 1),
            counter(names::RETRY_BUDGET_REFUSALS, "class=server", 1),
            counter(names::RETRY_GIVE_UPS, "class=overloaded,reason=deadline", 1),
            counter(
                names::RETRY_GIVE_UPS,
                "class=overloaded,reason=retry_after",
                1,
            ),
        ],
    );
}

#[tokio::test(start_paused = true)]
async fn run_counts_like_the_layer() {
    record_metrics!(snapshotter);

    let calls = AtomicUsize::new(0);
    let out = exact()
        .max_retries(1)
        .run(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(io::Error::from(io::ErrorKind::ConnectionRefused))
        })
        .await;
    assert!(out.is_err());
    assert_recorded(
        &snapshotter,
        [
            counter(names::RETRY_ATTEMPTS, "class=connect", 1),
            histogram(names::RETRY_DELAY, "delay_source=backoff", &[0.1]),
            counter(names::RETRY_GIVE_UPS, "class=connect,reason=exhausted", 1),
        ],
    );
}

fn order(key: &str, body: &'static str) -> Request<Full<Bytes>> {
    Request::post("/orders")
        .header("idempotency-key", key)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn idempotency_counts_claims_replays_conflicts_and_mismatches() {
    record_metrics!(snapshotter);

    // The handler of "slow" waits until released, so its duplicate finds it in flight.
    let release = Arc::new(tokio::sync::Notify::new());
    let runs = Arc::new(AtomicUsize::new(0));
    let handler = service_fn({
        let release = release.clone();
        let runs = runs.clone();
        move |req: Request<Full<Bytes>>| {
            let release = release.clone();
            runs.fetch_add(1, Ordering::SeqCst);
            async move {
                if req.headers()["idempotency-key"] == "\"slow\"" {
                    release.notified().await;
                }
                Ok::<_, Infallible>(
                    Response::builder()
                        .status(StatusCode::CREATED)
                        .body(Full::new(Bytes::from_static(b"order 17")))
                        .unwrap(),
                )
            }
        }
    });
    let svc = IdempotencyLayer::new(MemoryStore::new()).layer(handler);

    let first = svc.clone().oneshot(order("\"a\"", "{}")).await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let replay = svc.clone().oneshot(order("\"a\"", "{}")).await.unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let reused = svc
        .clone()
        .oneshot(order("\"a\"", "{\"x\":1}"))
        .await
        .unwrap();
    assert_eq!(reused.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let slow = tokio::spawn(svc.clone().oneshot(order("\"slow\"", "{}")));
    tokio::task::yield_now().await;
    let in_flight = svc.clone().oneshot(order("\"slow\"", "{}")).await.unwrap();
    assert_eq!(in_flight.status(), StatusCode::CONFLICT);
    release.notify_one();
    assert_eq!(slow.await.unwrap().unwrap().status(), StatusCode::CREATED);
    assert_eq!(runs.load(Ordering::SeqCst), 2);

    assert_recorded(
        &snapshotter,
        [
            counter(names::IDEMPOTENCY_CLAIMS, "", 2),
            counter(names::IDEMPOTENCY_REPLAYS, "", 1),
            counter(names::IDEMPOTENCY_MISMATCHES, "", 1),
            counter(names::IDEMPOTENCY_CONFLICTS, "reason=in_flight", 1),
        ],
    );
}

/// A store whose every call fails.
#[derive(Clone, Default)]
struct DownStore;

impl steadfast::idempotency::Store for DownStore {
    type Lease = ();

    async fn claim(
        &self,
        _: &steadfast::idempotency::EntryKey,
        _: &steadfast::idempotency::Fingerprint,
        _: Duration,
    ) -> Result<steadfast::idempotency::Claim<()>, steadfast::idempotency::StoreError> {
        Err(down())
    }

    async fn complete(
        &self,
        _: &steadfast::idempotency::EntryKey,
        _: &(),
        _: steadfast::idempotency::Completion,
        _: Duration,
    ) -> Result<(), steadfast::idempotency::StoreError> {
        Err(down())
    }

    async fn release(
        &self,
        _: &steadfast::idempotency::EntryKey,
        _: &(),
    ) -> Result<(), steadfast::idempotency::StoreError> {
        Err(down())
    }

    async fn lookup(
        &self,
        _: &steadfast::idempotency::EntryKey,
    ) -> Result<Option<steadfast::idempotency::Entry>, steadfast::idempotency::StoreError> {
        Err(down())
    }
}

fn down() -> steadfast::idempotency::StoreError {
    steadfast::idempotency::StoreError::new(
        steadfast::idempotency::StoreErrorKind::Unavailable,
        "connection refused",
    )
}

#[tokio::test(start_paused = true)]
async fn a_failing_store_is_counted_by_operation() {
    record_metrics!(snapshotter);

    let handler = service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    });
    let svc = IdempotencyLayer::new(DownStore).layer(handler);
    let res = svc.oneshot(order("\"k\"", "{}")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_recorded(
        &snapshotter,
        [counter(
            names::IDEMPOTENCY_STORE_ERRORS,
            "operation=claim",
            1,
        )],
    );
}

#[tokio::test(start_paused = true)]
async fn timeouts_are_counted_by_route_template() {
    record_metrics!(snapshotter);

    let handler = service_fn(|_req: Request<()>| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let svc = RouteTimeoutLayer::new(
        TimeoutTable::new(Duration::from_secs(30)).route("/reports/{id}", Duration::from_secs(1)),
    )
    .layer(handler);
    for id in [1, 2] {
        let req = Request::get(format!("/reports/{id}")).body(()).unwrap();
        let res = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    }
    assert_recorded(
        &snapshotter,
        [counter(names::TIMEOUTS, "route=/reports/{id}", 2)],
    );
}

/// Fails its first `n` writes, then keeps what it gets.
#[derive(Clone)]
struct FlakySink {
    failures: Arc<AtomicUsize>,
    events: MemorySink,
}

impl Sink for FlakySink {
    async fn write(&mut self, events: &[AuditEvent]) -> Result<(), BoxError> {
        if self.failures.load(Ordering::SeqCst) > 0 {
            self.failures.fetch_sub(1, Ordering::SeqCst);
            return Err(io::Error::other("database is down").into());
        }
        self.events.write(events).await
    }
}

#[tokio::test(start_paused = true)]
async fn audit_counts_written_dropped_and_sink_errors() {
    record_metrics!(snapshotter);

    // Two failures, then writes: the first batch is written on its third try.
    let sink = FlakySink {
        failures: Arc::new(AtomicUsize::new(2)),
        events: MemorySink::new(),
    };
    let auditor = Auditor::builder()
        .sink_backoff(ms(10), ms(10))
        .build(sink.clone());
    let svc = AuditLayer::new(auditor.clone())
        .route(Method::POST, "/login", "authn.login")
        .layer(service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(()))
        }));
    svc.clone()
        .oneshot(Request::post("/login").body(()).unwrap())
        .await
        .unwrap();
    auditor.flush().await;
    assert_eq!(sink.events.events().len(), 1);

    // A queue of one, dropping when full: of three events recorded at once, the
    // writer (not yet run) leaves room for one.
    let full = Auditor::builder()
        .capacity(1)
        .when_full(FullPolicy::Drop)
        .build(MemorySink::new());
    for _ in 0..3 {
        full.try_record(AuditEvent::new("export"));
    }
    full.flush().await;

    assert_recorded(
        &snapshotter,
        [
            counter(names::AUDIT_SINK_ERRORS, "", 2),
            counter(names::AUDIT_WRITTEN, "", 2),
            counter(names::AUDIT_DROPPED, "reason=queue_full", 2),
        ],
    );
}

#[tokio::test(start_paused = true)]
async fn breaker_transitions_are_counted_from_and_to() {
    record_metrics!(snapshotter);

    let status = Arc::new(AtomicUsize::new(500));
    let svc = BreakerLayer::server(
        BreakerConfig::new()
            .window(Window::Count(4))
            .min_calls(2)
            .failure_rate(0.5)
            .open_for(Duration::from_secs(10))
            .half_open_probes(1),
    )
    .layer(service_fn({
        let status = status.clone();
        move |_req: Request<()>| {
            let status = status.load(Ordering::SeqCst) as u16;
            async move {
                Ok::<_, Infallible>(
                    Response::builder()
                        .status(status)
                        .body(String::new())
                        .unwrap(),
                )
            }
        }
    }));
    for _ in 0..2 {
        svc.clone().oneshot(Request::new(())).await.unwrap();
    }
    // Open: refused. After `open_for`, one probe succeeds and closes it.
    let refused = svc.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    tokio::time::advance(Duration::from_secs(11)).await;
    status.store(200, Ordering::SeqCst);
    let probe = svc.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(probe.status(), StatusCode::OK);

    assert_recorded(
        &snapshotter,
        [
            counter(names::BREAKER_TRANSITIONS, "from=closed,to=open", 1),
            counter(names::BREAKER_TRANSITIONS, "from=open,to=half_open", 1),
            counter(names::BREAKER_TRANSITIONS, "from=half_open,to=closed", 1),
        ],
    );
}

#[tokio::test(start_paused = true)]
async fn overload_refusals_are_counted_by_reason() {
    record_metrics!(snapshotter);

    let overload = OverloadLayer::new(
        OverloadConfig::new()
            .initial_limit(1)
            .min_limit(1)
            .max_limit(1)
            .latency_target(ms(100))
            .max_queue(1)
            .max_wait(Duration::from_secs(10)),
    );
    let svc = overload.layer(service_fn(|_req: Request<()>| async {
        tokio::time::sleep(ms(100)).await;
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    let running = tokio::spawn(svc.clone().oneshot(Request::new(())));
    tokio::task::yield_now().await;
    let queued = tokio::spawn(svc.clone().oneshot(Request::new(())));
    tokio::task::yield_now().await;
    // The slot is taken and the queue (one) is full.
    let full = svc.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(full.status(), StatusCode::SERVICE_UNAVAILABLE);
    // An expired deadline cannot start in time.
    let mut late = Request::new(());
    steadfast::Deadline::after(Duration::ZERO).insert_into(late.extensions_mut());
    let late = svc.clone().oneshot(late).await.unwrap();
    assert_eq!(late.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(running.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(queued.await.unwrap().unwrap().status(), StatusCode::OK);

    assert_recorded(
        &snapshotter,
        [
            counter(names::OVERLOAD_REFUSALS, "reason=queue_full", 1),
            counter(names::OVERLOAD_REFUSALS, "reason=deadline", 1),
        ],
    );
}

#[tokio::test(start_paused = true)]
async fn hedges_are_counted_sent_and_refused_by_the_budget() {
    record_metrics!(snapshotter);

    // Every call takes 100 ms; the hedge goes after 10 ms.
    let slow = || {
        service_fn(|_req: Request<()>| async {
            tokio::time::sleep(ms(100)).await;
            Ok::<_, Infallible>(Response::new(()))
        })
    };
    let hedged = HedgeLayer::fixed(ms(10)).layer(slow());
    hedged
        .oneshot(Request::get("http://upstream/").body(()).unwrap())
        .await
        .unwrap();
    let broke = HedgeLayer::fixed(ms(10))
        .budget(RetryBudget::new(Duration::from_secs(10), 0, 0.0))
        .layer(slow());
    broke
        .oneshot(Request::get("http://upstream/").body(()).unwrap())
        .await
        .unwrap();

    assert_recorded(
        &snapshotter,
        [
            counter(names::HEDGES, "outcome=sent", 1),
            counter(names::HEDGES, "outcome=budget_refused", 1),
        ],
    );
}
