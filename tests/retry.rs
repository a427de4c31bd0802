//! The retry layer, driven on paused time against an upstream that fails on cue,
//! and end to end against a real server that resets connections.

use std::{
    collections::VecDeque,
    convert::Infallible,
    future::Future,
    io,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use http::{HeaderName, Method, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full, StreamBody};
use rand::{SeedableRng, rngs::SmallRng};
use steadfast::{
    BoxError, Classification, Deadline, ErrorClass,
    retry::{
        Attempt, Backoff, DelaySource, Jitter, OnRetry, Random, RetryBudget, RetryEvent, RetryIf,
        RetryLayer, RetryPolicy, ShouldRetry,
    },
};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---------------------------------------------------------------------------
// An upstream that fails on cue and records every call.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Step {
    /// Answer with this status.
    Status(u16),
    /// Answer with this status and `Retry-After`.
    RetryAfter(u16, String),
    /// Fail with an io error of this kind.
    Fail(io::ErrorKind),
    /// Never answer.
    Hang,
}

#[derive(Debug, Clone)]
struct Call {
    at: Duration,
    method: Method,
    attempt: Option<Attempt>,
    attempt_header: Option<String>,
}

#[derive(Clone)]
struct Upstream {
    script: Arc<Mutex<VecDeque<Step>>>,
    /// What to do once the script is used up.
    then: Step,
    calls: Arc<Mutex<Vec<Call>>>,
    bodies: Arc<Mutex<Vec<Bytes>>>,
    start: Instant,
    /// Read at most this many body bytes before answering (None: all).
    read_limit: Option<usize>,
}

impl Upstream {
    fn new(script: impl IntoIterator<Item = Step>, then: Step) -> Self {
        Self {
            script: Arc::new(Mutex::new(script.into_iter().collect())),
            then,
            calls: Arc::default(),
            bodies: Arc::default(),
            start: Instant::now(),
            read_limit: None,
        }
    }

    /// Always answers `status`.
    fn always(status: u16) -> Self {
        Self::new([], Step::Status(status))
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    fn times(&self) -> Vec<u64> {
        self.calls()
            .iter()
            .map(|c| c.at.as_millis() as u64)
            .collect()
    }

    fn bodies(&self) -> Vec<Bytes> {
        self.bodies.lock().unwrap().clone()
    }
}

impl<B> Service<Request<B>> for Upstream
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Debug,
{
    type Response = Response<Full<Bytes>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let step = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| self.then.clone());
        let n = {
            let mut calls = self.calls.lock().unwrap();
            calls.push(Call {
                at: self.start.elapsed(),
                method: req.method().clone(),
                attempt: req.extensions().get::<Attempt>().copied(),
                attempt_header: req
                    .headers()
                    .get("x-retry-attempt")
                    .map(|v| v.to_str().unwrap().to_owned()),
            });
            calls.len()
        };
        let bodies = self.bodies.clone();
        let read_limit = self.read_limit;
        Box::pin(async move {
            let mut body = std::pin::pin!(req.into_body());
            let mut read = Vec::new();
            while read_limit.is_none_or(|limit| read.len() < limit) {
                match body.frame().await {
                    Some(frame) => {
                        if let Ok(data) = frame.unwrap().into_data() {
                            read.extend_from_slice(&data);
                        }
                    }
                    None => break,
                }
            }
            bodies.lock().unwrap().push(Bytes::from(read));
            let (status, retry_after) = match step {
                Step::Status(s) => (s, None),
                Step::RetryAfter(s, v) => (s, Some(v)),
                Step::Fail(kind) => return Err(io::Error::from(kind).into()),
                Step::Hang => std::future::pending().await,
            };
            let mut res = Response::builder().status(status);
            if let Some(v) = retry_after {
                res = res.header("retry-after", v);
            }
            Ok(res
                .body(Full::new(Bytes::from(format!("call {n}"))))
                .unwrap())
        })
    }
}

/// Returns the scripted values in turn (then the last, forever); each request
/// starts the script again.
#[derive(Clone)]
struct Script(Arc<[f64]>, usize);

impl Script {
    fn new(values: &[f64]) -> Self {
        Self(values.into(), 0)
    }
}

impl Random for Script {
    fn next_f64(&mut self) -> f64 {
        let v = self.0[self.1.min(self.0.len() - 1)];
        self.1 += 1;
        v
    }

    fn fork(&mut self) -> Self {
        Self(self.0.clone(), 0)
    }
}

fn get() -> Request<Full<Bytes>> {
    Request::get("http://upstream/items")
        .body(Full::default())
        .unwrap()
}

fn post(body: &'static str) -> Request<Full<Bytes>> {
    Request::post("http://upstream/orders")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

/// No jitter, 100 ms base, ×2: delays 100, 200, 400 ms.
fn exact() -> RetryPolicy {
    RetryPolicy::new().jitter(Jitter::None)
}

/// Collects every retry event the policy reports.
fn recorded(policy: RetryPolicy) -> (RetryPolicy, Arc<Mutex<Vec<RetryEvent>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let policy = policy.on_retry(move |e| sink.lock().unwrap().push(*e));
    (policy, events)
}

async fn send<B>(
    layer: &RetryLayer<
        steadfast::retry::HttpReplay,
        steadfast::classify::DefaultClassifier,
        impl Random,
    >,
    upstream: &Upstream,
    req: Request<B>,
) -> Result<Response<Full<Bytes>>, BoxError>
where
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError> + Send + std::fmt::Debug,
{
    layer.layer(upstream.clone()).oneshot(req).await
}

// ---------------------------------------------------------------------------
// Backoff and jitter
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn without_jitter_delays_are_exactly_exponential_and_retries_stop_at_max() {
    let upstream = Upstream::always(503);
    let (policy, events) = recorded(exact());
    let res = send(&RetryLayer::new(policy), &upstream, get())
        .await
        .unwrap();

    assert_eq!(
        res.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "the last failure is returned"
    );
    assert_eq!(
        upstream.times(),
        [0, 100, 300, 700],
        "1 attempt + 3 retries"
    );
    let delays: Vec<_> = events.lock().unwrap().iter().map(|e| e.delay).collect();
    assert_eq!(delays, [ms(100), ms(200), ms(400)]);
}

#[tokio::test(start_paused = true)]
async fn each_jitter_kind_gives_its_formula_exactly() {
    // U(a, b) is drawn as a + (b - a) * r, with r scripted as 0.5, 0.25, 0.75.
    let cases = [
        // U(0, d): 0.5·100, 0.25·200, 0.75·400
        (Jitter::Full, [50_000_000, 50_000_000, 300_000_000]),
        // d/2 + U(0, d/2): 50 + 25, 100 + 25, 200 + 150
        (Jitter::Equal, [75_000_000, 125_000_000, 350_000_000]),
        // min(cap, U(base, 3·prev)): U(100, 300)→200, U(100, 600)→225, U(100, 675)→531.25
        (
            Jitter::Decorrelated,
            [200_000_000, 225_000_000, 531_250_000],
        ),
    ];
    for (jitter, expected) in cases {
        let upstream = Upstream::always(503);
        let (policy, events) = recorded(RetryPolicy::new().jitter(jitter));
        let layer = RetryLayer::new(policy).rng(Script::new(&[0.5, 0.25, 0.75]));
        send(&layer, &upstream, get()).await.unwrap();

        let delays: Vec<_> = events.lock().unwrap().iter().map(|e| e.delay).collect();
        assert_eq!(delays, expected.map(Duration::from_nanos), "{jitter:?}");
        // The upstream saw the calls that far apart (tokio's timer has 1 ms ticks).
        let times = upstream.times();
        let mut at = 0;
        for (i, d) in delays.iter().enumerate() {
            at += d.as_nanos().div_ceil(1_000_000) as u64;
            assert_eq!(times[i + 1], at, "{jitter:?} retry {}", i + 1);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_seeded_rng_gives_reproducible_delays_that_follow_the_formula() {
    let backoff = Backoff::new(ms(100), 2.0, Duration::from_secs(5), Jitter::Full);
    let delays_of = |seed| async move {
        let upstream = Upstream::always(503);
        let (policy, events) = recorded(RetryPolicy::new().backoff(backoff));
        let layer = RetryLayer::new(policy).rng(SmallRng::seed_from_u64(seed));
        send(&layer, &upstream, get()).await.unwrap();
        let delays: Vec<_> = events.lock().unwrap().iter().map(|e| e.delay).collect();
        delays
    };
    let first = delays_of(7).await;
    assert_eq!(first, delays_of(7).await, "same seed, same delays");
    assert_ne!(first, delays_of(8).await, "another seed, other delays");

    // Each request draws from a fork of the service's generator.
    let mut rng = SmallRng::seed_from_u64(7);
    let mut fork = rng.fork();
    let expected: Vec<_> = (1..=3)
        .map(|n| backoff.delay(n, Duration::ZERO, &mut fork))
        .collect();
    assert_eq!(first, expected);
    for (n, d) in first.iter().enumerate() {
        assert!(*d < backoff.exponential(n as u32 + 1));
    }
}

#[tokio::test(start_paused = true)]
async fn requests_through_one_service_get_different_jitter() {
    let upstream = Upstream::always(503);
    let (policy, events) = recorded(RetryPolicy::new().max_retries(1));
    let mut svc = RetryLayer::new(policy)
        .rng(SmallRng::seed_from_u64(1))
        .layer(upstream.clone());
    for _ in 0..2 {
        ServiceExt::<Request<Full<Bytes>>>::ready(&mut svc)
            .await
            .unwrap()
            .call(get())
            .await
            .unwrap();
    }
    let events = events.lock().unwrap();
    assert_eq!(events.len(), 2);
    assert_ne!(events[0].delay, events[1].delay);
}

#[tokio::test(start_paused = true)]
async fn max_retries_bounds_the_attempts() {
    for (max, calls) in [(0, 1), (1, 2), (5, 6)] {
        let upstream = Upstream::new([], Step::Fail(io::ErrorKind::ConnectionReset));
        let layer = RetryLayer::new(exact().max_retries(max).max_delay(ms(200)));
        let err = send(&layer, &upstream, get()).await.unwrap_err();
        let io = err
            .downcast_ref::<io::Error>()
            .expect("the inner error is returned");
        assert_eq!(io.kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(upstream.count(), calls, "max_retries({max})");
    }
}

#[tokio::test(start_paused = true)]
async fn a_failure_that_recovers_returns_the_success() {
    let upstream = Upstream::new(
        [
            Step::Status(502),
            Step::Fail(io::ErrorKind::TimedOut),
            Step::Status(504),
        ],
        Step::Status(200),
    );
    let res = send(&RetryLayer::new(exact()), &upstream, get())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.into_body().collect().await.unwrap().to_bytes(),
        "call 4"
    );
}

// ---------------------------------------------------------------------------
// What is retried
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn client_errors_are_never_retried() {
    for status in [400, 401, 404, 409, 422] {
        let upstream = Upstream::always(status);
        let res = send(&RetryLayer::new(exact()), &upstream, get())
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), status);
        assert_eq!(upstream.count(), 1, "{status} is not retried");
    }
}

#[tokio::test(start_paused = true)]
async fn a_500_is_retried_only_when_configured() {
    let upstream = Upstream::always(500);
    send(&RetryLayer::new(exact()), &upstream, get())
        .await
        .unwrap();
    assert_eq!(upstream.count(), 1);

    let upstream = Upstream::always(500);
    let layer = RetryLayer::new(exact().retry_internal_server_error(true));
    send(&layer, &upstream, get()).await.unwrap();
    assert_eq!(upstream.count(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_predicate_widens_and_narrows_what_is_retried() {
    // Narrowed: timeouts are not worth another try here.
    let upstream = Upstream::new([], Step::Fail(io::ErrorKind::TimedOut));
    let layer =
        RetryLayer::new(exact().retry_if(|c| c.is_transient() && c.class() != ErrorClass::Timeout));
    send(&layer, &upstream, get()).await.unwrap_err();
    assert_eq!(upstream.count(), 1);

    // Widened: a 409 from this upstream is a lock that clears.
    let upstream = Upstream::new([Step::Status(409)], Step::Status(200));
    let layer = RetryLayer::new(
        exact().retry_if(|c| c.is_transient() || c.status() == Some(StatusCode::CONFLICT)),
    );
    let res = send(&layer, &upstream, get()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(upstream.count(), 2);
}

/// A `ShouldRetry` with state: retries only the statuses it was configured
/// with, and counts how often it was asked (shared, since the policy owns it).
struct RetryStatuses {
    statuses: Vec<StatusCode>,
    asked: Arc<AtomicUsize>,
}

impl ShouldRetry for RetryStatuses {
    fn should_retry(&self, failure: &Classification) -> bool {
        self.asked.fetch_add(1, Ordering::SeqCst);
        failure.status().is_some_and(|s| self.statuses.contains(&s))
    }
}

#[tokio::test(start_paused = true)]
async fn a_should_retry_type_decides_by_its_own_state() {
    let asked = Arc::new(AtomicUsize::new(0));
    let policy = exact().retry_if_with(RetryStatuses {
        statuses: vec![StatusCode::CONFLICT],
        asked: asked.clone(),
    });
    let layer = RetryLayer::new(policy);

    // Its own list: two 409s are retried, the third attempt answers.
    let upstream = Upstream::new([Step::Status(409), Step::Status(409)], Step::Status(200));
    let res = send(&layer, &upstream, get()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(upstream.count(), 3);
    assert_eq!(asked.load(Ordering::SeqCst), 2, "asked once per failure");

    // It replaces the default: a 503, transient but not on its list, is not retried.
    let upstream = Upstream::always(503);
    let res = send(&layer, &upstream, get()).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(upstream.count(), 1);
    assert_eq!(asked.load(Ordering::SeqCst), 3);
}

/// An `OnRetry` with state: counts retries and keeps the attempts announced.
#[derive(Clone, Default)]
struct RetryLog {
    retries: Arc<AtomicUsize>,
    attempts: Arc<Mutex<Vec<u32>>>,
}

impl OnRetry for RetryLog {
    fn on_retry(&self, event: &RetryEvent) {
        self.retries.fetch_add(1, Ordering::SeqCst);
        self.attempts.lock().unwrap().push(event.attempt);
    }
}

#[tokio::test(start_paused = true)]
async fn an_on_retry_type_is_told_of_every_retry() {
    let log = RetryLog::default();
    let layer = RetryLayer::new(exact().on_retry_with(log.clone()));

    let upstream = Upstream::always(503);
    let res = send(&layer, &upstream, get()).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(upstream.count(), 4, "1 attempt + 3 retries");
    assert_eq!(log.retries.load(Ordering::SeqCst), 3);
    assert_eq!(*log.attempts.lock().unwrap(), [2, 3, 4]);

    // Not called when nothing is retried.
    let upstream = Upstream::always(200);
    send(&layer, &upstream, get()).await.unwrap();
    assert_eq!(log.retries.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn a_request_can_override_the_policy() {
    let upstream = Upstream::always(503);
    let mut req = get();
    req.extensions_mut().insert(RetryIf::never());
    send(&RetryLayer::new(exact()), &upstream, req)
        .await
        .unwrap();
    assert_eq!(upstream.count(), 1, "RetryIf::never");

    let upstream = Upstream::new([Step::Status(409)], Step::Status(200));
    let mut req = get();
    req.extensions_mut()
        .insert(RetryIf::new(|c| c.status() == Some(StatusCode::CONFLICT)));
    let res = send(&RetryLayer::new(exact()), &upstream, req)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        upstream.count(),
        2,
        "RetryIf::new widened it for this request"
    );
}

// ---------------------------------------------------------------------------
// Idempotency
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_post_without_key_is_sent_once_on_a_503() {
    let upstream = Upstream::always(503);
    let res = send(&RetryLayer::new(exact()), &upstream, post("{}"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(upstream.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_post_without_key_is_sent_once_after_a_reset_or_a_timeout() {
    for kind in [io::ErrorKind::ConnectionReset, io::ErrorKind::TimedOut] {
        let upstream = Upstream::new([Step::Fail(kind)], Step::Status(200));
        let err = send(&RetryLayer::new(exact()), &upstream, post("{}"))
            .await
            .unwrap_err();
        assert_eq!(err.downcast_ref::<io::Error>().unwrap().kind(), kind);
        assert_eq!(upstream.count(), 1, "{kind:?}: it may have been processed");
    }
}

#[tokio::test(start_paused = true)]
async fn a_post_without_key_is_retried_after_a_refused_connection() {
    let upstream = Upstream::new(
        [Step::Fail(io::ErrorKind::ConnectionRefused)],
        Step::Status(201),
    );
    let res = send(&RetryLayer::new(exact()), &upstream, post(r#"{"qty":1}"#))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(upstream.count(), 2);
    assert_eq!(upstream.bodies()[1], r#"{"qty":1}"#, "the body is replayed");
}

#[tokio::test(start_paused = true)]
async fn a_post_with_an_idempotency_key_is_retried() {
    let upstream = Upstream::new([Step::Status(503), Step::Status(502)], Step::Status(201));
    let mut req = post(r#"{"qty":1}"#);
    req.headers_mut()
        .insert("idempotency-key", "3f1c".parse().unwrap());
    let res = send(&RetryLayer::new(exact()), &upstream, req)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(upstream.count(), 3);
    assert!(upstream.bodies().iter().all(|b| b == r#"{"qty":1}"#));
}

#[tokio::test(start_paused = true)]
async fn idempotent_methods_and_key_header_are_configurable() {
    // PATCH declared idempotent; PUT no longer.
    let layer = RetryLayer::new(exact())
        .idempotent_methods([Method::GET, Method::PATCH])
        .idempotency_key_header(Some(HeaderName::from_static("x-request-key")));
    let upstream = Upstream::always(503);
    let req = Request::patch("http://upstream/a")
        .body(Full::default())
        .unwrap();
    send(&layer, &upstream, req).await.unwrap();
    assert_eq!(upstream.count(), 4);

    let upstream = Upstream::always(503);
    let req = Request::put("http://upstream/a")
        .body(Full::default())
        .unwrap();
    send(&layer, &upstream, req).await.unwrap();
    assert_eq!(upstream.count(), 1);

    let upstream = Upstream::always(503);
    let req = Request::post("http://upstream/a")
        .header("x-request-key", "k1")
        .body(Full::default())
        .unwrap();
    send(&layer, &upstream, req).await.unwrap();
    assert_eq!(upstream.count(), 4);
}

// ---------------------------------------------------------------------------
// Retry-After
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn retry_after_in_seconds_sets_the_delay() {
    let upstream = Upstream::new([Step::RetryAfter(429, "2".into())], Step::Status(200));
    let (policy, events) = recorded(exact());
    let res = send(&RetryLayer::new(policy), &upstream, get())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(upstream.times(), [0, 2000], "2 s, not the 100 ms backoff");
    let event = events.lock().unwrap()[0];
    assert_eq!(event.delay_source, DelaySource::RetryAfter);
    assert_eq!(event.classification.class(), ErrorClass::Overloaded);
}

#[tokio::test(start_paused = true)]
async fn retry_after_as_an_http_date_sets_the_delay() {
    let at = SystemTime::now() + Duration::from_secs(4);
    let date = httpdate::fmt_http_date(at);
    let upstream = Upstream::new([Step::RetryAfter(503, date)], Step::Status(200));
    let (policy, events) = recorded(exact());
    let res = send(&RetryLayer::new(policy), &upstream, get())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // An HTTP-date has whole seconds: 4 s from now, less the fraction of this second.
    let delay = events.lock().unwrap()[0].delay;
    assert!(
        delay > Duration::from_secs(3) && delay <= Duration::from_secs(4),
        "{delay:?}"
    );
    let waited = upstream.times()[1];
    assert!((3000..=4000).contains(&waited), "{waited}");
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_clamped_to_the_ceiling() {
    let layer = RetryLayer::new(exact().max_retry_after(Duration::from_secs(3)));

    // At the ceiling: honoured exactly.
    let upstream = Upstream::new([Step::RetryAfter(503, "3".into())], Step::Status(200));
    let res = send(&layer, &upstream, get()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(upstream.times(), [0, 3000]);

    // Beyond it: no retry; the response is returned as it is.
    let upstream = Upstream::new([Step::RetryAfter(503, "4".into())], Step::Status(200));
    let started = Instant::now();
    let res = send(&layer, &upstream, get()).await.unwrap();
    assert_eq!(started.elapsed(), Duration::ZERO, "returned at once");
    assert_eq!(upstream.count(), 1);
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "4");
    assert_eq!(
        res.into_body().collect().await.unwrap().to_bytes(),
        "call 1"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_beyond_the_deadline_is_not_retried() {
    let upstream = Upstream::new([Step::RetryAfter(429, "3".into())], Step::Status(200));
    let mut req = get();
    Deadline::after(Duration::from_secs(2)).insert_into(req.extensions_mut());
    let res = send(&RetryLayer::new(exact()), &upstream, req)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(upstream.count(), 1);
}

// ---------------------------------------------------------------------------
// Budget
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn an_empty_budget_returns_the_failure_at_once() {
    let budget = RetryBudget::new(Duration::from_secs(10), 0, 0.0);
    let upstream = Upstream::always(503);
    let started = Instant::now();
    let res = send(&RetryLayer::new(exact().budget(budget)), &upstream, get())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(upstream.count(), 1);
    assert_eq!(started.elapsed(), Duration::ZERO);
}

/// Sends `rate` requests per second for `seconds` to an upstream that always
/// fails; returns (requests, upstream calls).
async fn storm(policy: RetryPolicy, rate: u64, seconds: u64) -> (usize, usize) {
    let upstream = Upstream::always(503);
    let svc = RetryLayer::new(policy).layer(upstream.clone());
    let requests = (rate * seconds) as usize;
    let gap = Duration::from_nanos(1_000_000_000 / rate);
    let mut tasks = Vec::with_capacity(requests);
    for _ in 0..requests {
        tasks.push(tokio::spawn(svc.clone().oneshot(get())));
        tokio::time::sleep(gap).await;
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().status(), 503);
    }
    (requests, upstream.count())
}

#[tokio::test(start_paused = true)]
async fn the_budget_caps_amplification_at_20_percent_under_total_failure() {
    // Without the floor, retries may add at most 20% to the requests.
    let budget = RetryBudget::new(Duration::from_secs(10), 0, 0.2);
    let policy = RetryPolicy::new().budget(budget);
    let (requests, calls) = storm(policy, 100, 60).await;
    let amplification = calls as f64 / requests as f64;
    assert!(amplification <= 1.2, "amplification {amplification}");
    assert!(
        amplification >= 1.15,
        "the budget was used: {amplification}"
    );
    // Without a budget the same storm would have made 4 calls per request.
}

#[tokio::test(start_paused = true)]
async fn the_default_budget_adds_20_percent_plus_10_retries_per_second() {
    let (requests, calls) = storm(RetryPolicy::default(), 100, 60).await;
    let retries = calls - requests;
    // 20% of 6000 requests, 10/s over 60 s, and one window's reserve of slack.
    let bound = requests / 5 + 10 * 60 + 100;
    assert!(retries <= bound, "{retries} retries > {bound}");
    assert!(retries > requests / 5, "the floor added retries: {retries}");
}

#[tokio::test(start_paused = true)]
async fn a_budget_is_shared_between_layers() {
    let budget = RetryBudget::new(Duration::from_secs(10), 0, 1.0);
    let a = RetryLayer::new(exact().budget(budget.clone()));
    let b = RetryLayer::new(exact().budget(budget.clone()));
    // Two successful requests through `a` earn two retries...
    let ok = Upstream::always(200);
    send(&a, &ok, get()).await.unwrap();
    send(&a, &ok, get()).await.unwrap();
    // ...which a failing request through `b` (depositing one more) spends.
    let failing = Upstream::always(503);
    send(&b, &failing, get()).await.unwrap();
    assert_eq!(failing.count(), 4, "three retries, paid by three requests");
    let failing = Upstream::always(503);
    send(&a, &failing, get()).await.unwrap();
    assert_eq!(failing.count(), 2, "one retry left, paid by this request");
}

// ---------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------

type Chunked =
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

fn chunked(data: &Bytes, chunk: usize) -> Chunked {
    let frames: Vec<_> = data
        .chunks(chunk)
        .map(|c| Ok(Frame::data(data.slice_ref(c))))
        .collect();
    StreamBody::new(futures_util::stream::iter(frames))
}

fn payload(len: usize) -> Bytes {
    (0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>().into()
}

#[tokio::test(start_paused = true)]
async fn a_small_body_is_replayed_identically_on_every_attempt() {
    let data = payload(10_000);
    let upstream = Upstream::new([Step::Status(503), Step::Status(503)], Step::Status(200));
    let req = Request::put("http://upstream/blob")
        .body(chunked(&data, 1000))
        .unwrap();
    let res = send(&RetryLayer::new(exact()), &upstream, req)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(upstream.bodies(), vec![data.clone(), data.clone(), data]);
}

#[tokio::test(start_paused = true)]
async fn a_streamed_body_over_the_limit_is_sent_once_and_intact() {
    let data = payload(100 * 1024);
    let upstream = Upstream::always(503);
    let layer = RetryLayer::new(exact()).max_body_bytes(16 * 1024);
    let req = Request::put("http://upstream/blob")
        .body(chunked(&data, 1000))
        .unwrap();
    let res = send(&layer, &upstream, req).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(upstream.count(), 1, "not retried");
    assert_eq!(upstream.bodies(), vec![data], "never truncated");
}

#[tokio::test(start_paused = true)]
async fn a_one_chunk_body_is_replayed_identically() {
    let data = payload(3000);
    let upstream = Upstream::new([Step::Status(503)], Step::Status(200));
    let req = Request::put("http://upstream/blob")
        .body(Full::new(data.clone()))
        .unwrap();
    let res = send(&RetryLayer::new(exact()), &upstream, req)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(upstream.bodies(), vec![data.clone(), data]);
}

#[tokio::test(start_paused = true)]
async fn one_chunk_over_the_limit_without_a_size_hint_is_sent_once_and_intact() {
    let data = payload(20 * 1024);
    let upstream = Upstream::always(503);
    let layer = RetryLayer::new(exact()).max_body_bytes(16 * 1024);
    // One ready chunk, its size unknown until it is read.
    let req = Request::put("http://upstream/blob")
        .body(chunked(&data, data.len()))
        .unwrap();
    let res = send(&layer, &upstream, req).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(upstream.count(), 1, "not retried");
    assert_eq!(upstream.bodies(), vec![data]);
}

#[tokio::test(start_paused = true)]
async fn a_body_known_to_be_over_the_limit_passes_through_untouched() {
    let data = payload(65 * 1024);
    let upstream = Upstream::always(503);
    let req = Request::put("http://upstream/blob")
        .body(Full::new(data.clone()))
        .unwrap();
    send(&RetryLayer::new(exact()), &upstream, req)
        .await
        .unwrap();
    assert_eq!(upstream.count(), 1);
    assert_eq!(upstream.bodies(), vec![data]);
}

/// A long body that counts how many chunks were pulled from it.
struct Counted {
    left: usize,
    pulled: Arc<AtomicUsize>,
}

impl Body for Counted {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        self.left -= 1;
        self.pulled.fetch_add(1, Ordering::SeqCst);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![7u8; 1024])))))
    }
}

#[tokio::test(start_paused = true)]
async fn a_big_stream_is_never_read_whole_before_it_is_sent() {
    let pulled = Arc::new(AtomicUsize::new(0));
    let body = Counted {
        left: 10_000, // 10 MB
        pulled: pulled.clone(),
    };
    let mut upstream = Upstream::always(503);
    upstream.read_limit = Some(4 * 1024); // answers after reading 4 KiB
    let layer = RetryLayer::new(exact()).max_body_bytes(8 * 1024);
    let req = Request::put("http://upstream/blob").body(body).unwrap();
    send(&layer, &upstream, req).await.unwrap();
    assert_eq!(upstream.count(), 1);
    let pulled = pulled.load(Ordering::SeqCst);
    assert!(
        pulled <= 9,
        "only the buffered prefix was read ahead: {pulled} KiB"
    );
}

/// A body whose chunks arrive over time, from a channel.
struct Arriving(tokio::sync::mpsc::Receiver<Result<Bytes, io::Error>>);

impl Body for Arriving {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| c.map(Frame::data)))
    }
}

/// Sends `chunks` 10 ms apart (then `error`, if any), and closes.
fn arriving(chunks: Vec<Bytes>, error: Option<io::Error>) -> Arriving {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        for chunk in chunks {
            tokio::time::sleep(ms(10)).await;
            tx.send(Ok(chunk)).await.unwrap();
        }
        if let Some(err) = error {
            tx.send(Err(err)).await.unwrap();
        }
    });
    Arriving(rx)
}

#[tokio::test(start_paused = true)]
async fn a_body_still_arriving_is_read_once_then_replayed() {
    let data = payload(3000);
    let chunks = data.chunks(1000).map(|c| data.slice_ref(c)).collect();
    let upstream = Upstream::new([Step::Status(503)], Step::Status(200));
    let req = Request::put("http://upstream/blob")
        .body(arriving(chunks, None))
        .unwrap();
    let res = send(&RetryLayer::new(exact()), &upstream, req)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(upstream.times(), [30, 130], "called once the body was read");
    assert_eq!(upstream.bodies(), vec![data.clone(), data]);
}

#[tokio::test(start_paused = true)]
async fn a_body_still_arriving_over_the_limit_is_streamed_once() {
    let data = payload(20 * 1024);
    let chunks = data.chunks(1024).map(|c| data.slice_ref(c)).collect();
    let upstream = Upstream::always(503);
    let layer = RetryLayer::new(exact()).max_body_bytes(4 * 1024);
    let req = Request::put("http://upstream/blob")
        .body(arriving(chunks, None))
        .unwrap();
    let res = send(&layer, &upstream, req).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        upstream.times(),
        [50],
        "called as soon as the body overflowed"
    );
    assert_eq!(upstream.bodies(), vec![data]);
}

#[tokio::test(start_paused = true)]
async fn a_failing_body_fails_the_request_before_any_attempt() {
    let upstream = Upstream::always(200);
    let req = Request::put("http://upstream/blob")
        .body(arriving(
            vec![Bytes::from("ab")],
            Some(io::Error::other("client went away")),
        ))
        .unwrap();
    let err = send(&RetryLayer::new(exact()), &upstream, req)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "client went away");
    assert_eq!(upstream.count(), 0);

    // A body that has already failed when the request is called.
    let failed: Vec<Result<Frame<Bytes>, io::Error>> =
        vec![Err(io::Error::other("truncated upload"))];
    let req = Request::put("http://upstream/blob")
        .body(StreamBody::new(futures_util::stream::iter(failed)))
        .unwrap();
    let err = send(&RetryLayer::new(exact()), &upstream, req)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "truncated upload");
    assert_eq!(upstream.count(), 0);
}

// ---------------------------------------------------------------------------
// Deadlines and attempt timeouts
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn the_policy_deadline_cuts_retries_short() {
    let upstream = Upstream::always(503);
    let layer = RetryLayer::new(exact().deadline(ms(250)));
    let started = Instant::now();
    let res = send(&layer, &upstream, get()).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    // 0, 100; the next (after 200 ms, at 300) would outlive the deadline.
    assert_eq!(upstream.times(), [0, 100]);
    assert_eq!(started.elapsed(), ms(100), "returned without sleeping");
}

#[tokio::test(start_paused = true)]
async fn a_deadline_in_the_request_extensions_is_honoured() {
    let upstream = Upstream::always(503);
    let mut req = get();
    Deadline::after(ms(350)).insert_into(req.extensions_mut());
    send(&RetryLayer::new(exact()), &upstream, req)
        .await
        .unwrap();
    assert_eq!(upstream.times(), [0, 100, 300]);
}

#[tokio::test(start_paused = true)]
async fn a_hung_attempt_times_out_and_is_retried() {
    let upstream = Upstream::new([Step::Hang], Step::Status(200));
    let layer = RetryLayer::new(exact().attempt_timeout(ms(50)));
    let res = send(&layer, &upstream, get()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        upstream.times(),
        [0, 150],
        "50 ms timeout, then 100 ms backoff"
    );
}

#[tokio::test(start_paused = true)]
async fn the_deadline_stops_an_attempt_in_flight() {
    let upstream = Upstream::new([], Step::Hang);
    let layer = RetryLayer::new(exact().deadline(ms(300)));
    let started = Instant::now();
    let err = send(&layer, &upstream, get()).await.unwrap_err();
    assert_eq!(started.elapsed(), ms(300));
    let err = err.downcast_ref::<steadfast::Error>().unwrap();
    assert_eq!(err.class(), ErrorClass::Timeout);
    assert_eq!(upstream.count(), 1);
}

// ---------------------------------------------------------------------------
// Observability
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn the_inner_service_sees_the_attempt_number() {
    let upstream = Upstream::new([Step::Status(503), Step::Status(504)], Step::Status(200));
    let layer = RetryLayer::new(exact()).attempt_header(HeaderName::from_static("x-retry-attempt"));
    send(&layer, &upstream, get()).await.unwrap();
    let calls = upstream.calls();
    let attempts: Vec<_> = calls.iter().map(|c| c.attempt).collect();
    assert_eq!(attempts, [None, Some(Attempt(2)), Some(Attempt(3))]);
    let headers: Vec<_> = calls.iter().map(|c| c.attempt_header.as_deref()).collect();
    assert_eq!(headers, [None, Some("2"), Some("3")]);
    assert!(calls.iter().all(|c| c.method == Method::GET));
}

#[tokio::test(start_paused = true)]
async fn the_hook_sees_every_retry() {
    let upstream = Upstream::new(
        [
            Step::Status(503),
            Step::Fail(io::ErrorKind::ConnectionRefused),
        ],
        Step::Status(200),
    );
    let (policy, events) = recorded(exact());
    send(&RetryLayer::new(policy), &upstream, get())
        .await
        .unwrap();
    let events = events.lock().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].attempt, 2);
    assert_eq!(events[0].delay, ms(100));
    assert_eq!(
        events[0].classification.status(),
        Some(StatusCode::SERVICE_UNAVAILABLE)
    );
    assert_eq!(events[0].delay_source, DelaySource::Backoff);
    assert_eq!(events[1].attempt, 3);
    assert_eq!(events[1].classification.class(), ErrorClass::Connect);
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn each_retry_is_a_tracing_event() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    // tracing caches each callsite's interest process-wide, computed by the
    // first thread to reach it: a test running without a subscriber would pin
    // the retry event to "never". A global no-op registry keeps every callsite
    // enabled, and the rebuild re-asks the ones already registered.
    static GLOBAL: std::sync::Once = std::sync::Once::new();
    GLOBAL.call_once(|| {
        let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry());
    });
    let _guard = tracing::subscriber::set_default(subscriber);
    tracing::callsite::rebuild_interest_cache();
    let upstream = Upstream::new([Step::Status(503)], Step::Status(200));
    send(&RetryLayer::new(exact()), &upstream, get())
        .await
        .unwrap();
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert_eq!(log.matches("retrying").count(), 1, "{log}");
    for field in [
        "attempt=2",
        "delay_ms=100",
        "overloaded",
        "status=503",
        "backoff",
    ] {
        assert!(log.contains(field), "{field} missing from {log}");
    }
}

// ---------------------------------------------------------------------------
// Any Clone request, and code that is not a service
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn any_service_with_clone_requests_is_retried() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let inner = tower::service_fn(move |query: String| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            if n < 2 {
                Err(io::Error::from(io::ErrorKind::ConnectionReset))
            } else {
                Ok(format!("{query}: 3 rows"))
            }
        }
    });
    let classify = |outcome: Result<&String, &io::Error>| {
        outcome
            .err()
            .map(|e| steadfast::classify::classify_error(e))
    };
    let svc = RetryLayer::for_clone_requests(exact())
        .classifier(classify)
        .layer(inner);
    let rows = svc.oneshot("select 1".to_owned()).await.unwrap();
    assert_eq!(rows, "select 1: 3 rows");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn run_retries_plain_async_code_with_the_same_policy() {
    let (policy, events) = recorded(exact());
    let calls = AtomicUsize::new(0);
    let value = policy
        .run(|| async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 => Err(steadfast::Error::new(ErrorClass::Overloaded, "busy")
                    .with_retry_after(Duration::from_secs(1))),
                1 => Err(steadfast::Error::new(ErrorClass::Network, "reset")),
                _ => Ok(42),
            }
        })
        .await
        .unwrap();
    assert_eq!(value, 42);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let delays: Vec<_> = events.lock().unwrap().iter().map(|e| e.delay).collect();
    assert_eq!(delays, [Duration::from_secs(1), ms(200)]);

    // A client error is returned at once.
    let calls = AtomicUsize::new(0);
    let err = policy
        .run(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(steadfast::Error::new(ErrorClass::Client, "bad input"))
        })
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Client);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn run_takes_a_classifier_a_deadline_and_shares_the_budget() {
    // An Ok value can be a failure ("try again later" in a 200).
    let calls = AtomicUsize::new(0);
    let answer = RetryPolicy::new()
        .jitter(Jitter::None)
        .run(|| async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, io::Error>(if n == 0 { "pending" } else { "done" })
        })
        .classifier(|r: Result<&&str, &io::Error>| match r {
            Ok(&"pending") => Some(Classification::new(ErrorClass::Overloaded)),
            Ok(_) => None,
            Err(e) => Some(steadfast::classify::classify_error(e)),
        })
        .rng(Script::new(&[0.5]))
        .await
        .unwrap();
    assert_eq!(answer, "done");

    // The deadline bounds the delays.
    let calls = AtomicUsize::new(0);
    let started = Instant::now();
    exact()
        .run(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(io::Error::from(io::ErrorKind::ConnectionRefused))
        })
        .deadline(Deadline::after(ms(250)))
        .await
        .unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(started.elapsed(), ms(100));

    // An empty budget, shared with a layer, stops run too.
    let budget = RetryBudget::new(Duration::from_secs(10), 0, 0.0);
    let policy = exact().budget(budget);
    let calls = AtomicUsize::new(0);
    policy
        .run(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(io::Error::from(io::ErrorKind::ConnectionReset))
        })
        .await
        .unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------
// End to end: hyper-util's client against a server that resets connections
// ---------------------------------------------------------------------------

#[cfg(feature = "hyper")]
mod end_to_end {
    use super::*;
    use hyper_util::{
        client::legacy::{Client, connect::HttpConnector},
        rt::{TokioExecutor, TokioIo},
    };
    use steadfast::retry::RetryBody;
    use tokio::net::TcpListener;

    /// Serves on loopback: resets the first `resets` connections (RST, no
    /// answer), then answers every request with "hello" over hyper.
    async fn flaky_server(resets: usize) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                if count.fetch_add(1, Ordering::SeqCst) < resets {
                    #[allow(deprecated)]
                    stream.set_linger(Some(Duration::ZERO)).unwrap();
                    drop(stream);
                    continue;
                }
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|_req| async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("hello"))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        (addr, accepted)
    }

    fn client() -> Client<HttpConnector, RetryBody<Full<Bytes>>> {
        Client::builder(TokioExecutor::new()).build_http()
    }

    fn policy() -> (RetryPolicy, Arc<Mutex<Vec<RetryEvent>>>) {
        recorded(RetryPolicy::new().base_delay(ms(10)))
    }

    #[tokio::test]
    async fn a_get_survives_two_reset_connections() {
        let (addr, accepted) = flaky_server(2).await;
        let (policy, events) = policy();
        let svc = RetryLayer::new(policy).layer(client());
        let req = Request::get(format!("http://{addr}/"))
            .body(Full::default())
            .unwrap();
        let res = svc.oneshot(req).await.expect("retried through the resets");
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "hello");
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
        let events = events.lock().unwrap();
        assert_eq!(events.len(), 2);
        assert!(
            events
                .iter()
                .all(|e| e.classification.class() == ErrorClass::Network),
            "{events:?}"
        );
    }

    #[tokio::test]
    async fn a_post_without_key_is_not_resent_after_a_reset() {
        let (addr, accepted) = flaky_server(2).await;
        let (policy, events) = policy();
        let svc = RetryLayer::new(policy).layer(client());
        let req = Request::post(format!("http://{addr}/orders"))
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        let err = svc.oneshot(req).await.unwrap_err();
        assert_eq!(
            steadfast::classify::classify_error(&*err).class(),
            ErrorClass::Network,
            "{err:?}"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "sent once");
        assert!(events.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_post_is_retried_when_the_connection_is_refused() {
        // A port nothing listens on.
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let (policy, events) = policy();
        let svc = RetryLayer::new(policy).layer(client());
        let req = Request::post(format!("http://{addr}/orders"))
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        let err = svc.oneshot(req).await.unwrap_err();
        assert_eq!(
            steadfast::classify::classify_error(&*err).class(),
            ErrorClass::Connect
        );
        let events = events.lock().unwrap();
        assert_eq!(events.len(), 3, "a refused connection proves it never left");
        assert!(
            events
                .iter()
                .all(|e| e.classification.class() == ErrorClass::Connect)
        );
    }
}

// ---------------------------------------------------------------------------
// Cost of the success path, against tower's own Retry
// ---------------------------------------------------------------------------

mod allocations {
    use super::*;
    use std::{
        alloc::{GlobalAlloc, Layout, System},
        cell::Cell,
    };
    use tower::retry::{
        Policy,
        budget::{Budget, TpsBudget},
    };

    /// Counts allocations made on the current thread.
    struct Counting;

    thread_local! {
        static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    }

    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            ALLOCATIONS.with(|n| n.set(n.get() + 1));
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    fn allocations() -> usize {
        ALLOCATIONS.with(Cell::get)
    }

    /// An upstream that answers 200 without allocating.
    #[derive(Clone)]
    struct Ok200;

    impl<B> Service<Request<B>> for Ok200 {
        type Response = Response<()>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Response<()>, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<B>) -> Self::Future {
            std::future::ready(Ok(Response::new(())))
        }
    }

    /// tower's Retry as its docs write it: clone the request, budget the retries.
    #[derive(Clone)]
    struct TowerPolicy(Arc<TpsBudget>);

    impl<B: Clone, Res, E> Policy<Request<B>, Response<Res>, E> for TowerPolicy {
        type Future = std::future::Ready<()>;

        fn retry(
            &mut self,
            _: &mut Request<B>,
            result: &mut Result<Response<Res>, E>,
        ) -> Option<Self::Future> {
            match result {
                Ok(res) if !res.status().is_server_error() => {
                    self.0.deposit();
                    None
                }
                _ => self.0.withdraw().then(|| std::future::ready(())),
            }
        }

        fn clone_request(&mut self, req: &Request<B>) -> Option<Request<B>> {
            Some(req.clone())
        }
    }

    /// Allocations of one call (after `ready`), the request built beforehand.
    async fn cost<S, B>(svc: &mut S, make: impl Fn() -> Request<B>) -> usize
    where
        S: Service<Request<B>>,
        S::Error: std::fmt::Debug,
    {
        // Warm up: first uses of thread-locals and the timer allocate once.
        for _ in 0..2 {
            svc.ready().await.unwrap().call(make()).await.unwrap();
        }
        let req = make();
        svc.ready().await.unwrap();
        let before = allocations();
        let res = svc.call(req).await.unwrap();
        let used = allocations() - before;
        drop(res);
        used
    }

    fn request(body: &'static str) -> Request<Full<Bytes>> {
        let body = Full::new(Bytes::from_static(body.as_bytes()));
        Request::put("http://upstream/items/7")
            .header("content-type", "application/json")
            .header("authorization", "Bearer x")
            .body(body)
            .unwrap()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_success_path_allocates_no_more_than_towers_retry() {
        let mut bare = Ok200;
        let mut ours = RetryLayer::new(RetryPolicy::default()).layer(Ok200);
        let mut tower =
            tower::retry::RetryLayer::new(TowerPolicy(Arc::new(TpsBudget::default()))).layer(Ok200);
        for body in ["", r#"{"qty":1}"#] {
            let bare = cost(&mut bare, || request(body)).await;
            let ours = cost(&mut ours, || request(body)).await;
            let tower = cost(&mut tower, || request(body)).await;
            eprintln!(
                "allocations per call, body {body:?}: inner {bare}, steadfast {ours}, tower {tower}"
            );
            assert_eq!(bare, 0);
            assert!(ours <= tower, "steadfast {ours} > tower {tower}");
        }
    }
}
