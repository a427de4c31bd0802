//! The circuit breaker on paused time: exact thresholds, probes under
//! concurrency, `Retry-After`, keys, callbacks.

use std::{
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use http::{Request, Response, StatusCode};
use steadfast::{
    BoxError, Classification, ErrorClass,
    breaker::{BreakerConfig, BreakerLayer, BreakerState, ByHost, Window},
    classify::classify_error,
};
use tokio::{sync::Semaphore, time::advance};
use tower::{Layer, Service, ServiceExt, service_fn};

const MS: Duration = Duration::from_millis(1);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A request the upstream answers with `status` after `delay_ms`.
fn req(status: u16) -> Request<()> {
    req_to("http://upstream/", status, 0)
}

fn req_to(uri: &str, status: u16, delay_ms: u64) -> Request<()> {
    Request::get(uri)
        .header("x-status", status.to_string())
        .header("x-delay-ms", delay_ms.to_string())
        .body(())
        .unwrap()
}

/// An upstream answering the status a request asks for, counting its calls.
#[derive(Clone, Default)]
struct Upstream {
    calls: Arc<AtomicUsize>,
}

impl Upstream {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn service(
        &self,
    ) -> impl Service<
        Request<()>,
        Response = Response<String>,
        Error = Infallible,
        Future = impl Send + 'static,
    > + Clone
    + Send
    + 'static {
        let calls = self.calls.clone();
        service_fn(move |req: Request<()>| {
            calls.fetch_add(1, Ordering::SeqCst);
            let header = |name: &str| {
                req.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
            };
            let status = header("x-status").unwrap_or(200) as u16;
            let delay = header("x-delay-ms").unwrap_or(0);
            let retry_after = req.headers().get("x-retry-after").cloned();
            async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                let mut res = Response::builder().status(status);
                if let Some(value) = retry_after {
                    res = res.header("retry-after", value);
                }
                Ok::<_, Infallible>(res.body(String::new()).unwrap())
            }
        })
    }
}

fn count_window() -> BreakerConfig {
    BreakerConfig::new()
        .window(Window::Count(10))
        .min_calls(4)
        .failure_rate(0.5)
        .open_for(secs(10))
        .half_open_probes(2)
}

#[tokio::test(start_paused = true)]
async fn opens_at_exactly_the_failure_rate_with_enough_calls_and_then_refuses_without_calling() {
    let upstream = Upstream::default();
    let breaker = BreakerLayer::server(count_window());
    let svc = breaker.layer(upstream.service());

    // Three calls, two failures: 67 %, but fewer than min_calls (4).
    for status in [500, 200, 503] {
        svc.clone().oneshot(req(status)).await.unwrap();
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
    // Four calls, two failures: 50 % = the threshold.
    svc.clone().oneshot(req(200)).await.unwrap();
    assert_eq!(breaker.state(), BreakerState::Open);
    assert_eq!(upstream.calls(), 4);

    let res = svc.clone().oneshot(req(200)).await.unwrap();
    assert_eq!(
        upstream.calls(),
        4,
        "an open circuit does not call the service"
    );
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert_eq!(res.headers()["retry-after"], "10");
    let class = res.extensions().get::<Classification>().copied().unwrap();
    assert_eq!(class.class(), ErrorClass::Overloaded);
    let steadfast::ResponseBody::Full(Some(bytes)) = res.into_body() else {
        panic!("the refusal has a problem document as body");
    };
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["status"], 503);
}

#[tokio::test(start_paused = true)]
async fn just_under_the_threshold_stays_closed() {
    let upstream = Upstream::default();
    let breaker = BreakerLayer::server(count_window().failure_rate(0.6));
    let svc = breaker.layer(upstream.service());
    // 10 calls alternating success and failure: never 60 % at any point.
    for i in 0..10 {
        svc.clone()
            .oneshot(req(if i % 2 == 1 { 502 } else { 200 }))
            .await
            .unwrap();
    }
    assert_eq!(breaker.state(), BreakerState::Closed, "5 of 10");
    // A success comes in as the oldest success leaves: 5 of 10.
    svc.clone().oneshot(req(200)).await.unwrap();
    // A failure comes in as the oldest failure leaves: 5 of 10.
    svc.clone().oneshot(req(504)).await.unwrap();
    assert_eq!(breaker.state(), BreakerState::Closed);
    // A failure comes in as a success leaves: 6 of 10 = 60 %.
    svc.clone().oneshot(req(500)).await.unwrap();
    assert_eq!(breaker.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn client_errors_never_count_as_failures() {
    let upstream = Upstream::default();
    let breaker = BreakerLayer::server(count_window());
    let svc = breaker.layer(upstream.service());
    for status in [400, 401, 404, 409, 422, 404, 400, 404, 404, 404, 404] {
        svc.clone().oneshot(req(status)).await.unwrap();
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(upstream.calls(), 11);
}

async fn open(svc: &(impl Service<Request<()>> + Clone), calls: usize) {
    for _ in 0..calls {
        let _ = svc.clone().oneshot(req(500)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn half_open_comes_exactly_after_open_for_and_successful_probes_close() {
    let upstream = Upstream::default();
    let breaker = BreakerLayer::server(count_window());
    let svc = breaker.layer(upstream.service());
    open(&svc, 4).await;
    assert_eq!(breaker.state(), BreakerState::Open);

    advance(secs(10) - MS).await;
    let res = svc.clone().oneshot(req(200)).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "1", "1 ms left, rounded up");
    assert_eq!(upstream.calls(), 4);

    advance(MS).await;
    let res = svc.clone().oneshot(req(200)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "the first probe goes through");
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    let res = svc.clone().oneshot(req(200)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        breaker.state(),
        BreakerState::Closed,
        "two probes succeeded"
    );
    assert_eq!(upstream.calls(), 6);

    // Closed again with an empty window: three failures are below min_calls.
    open(&svc, 3).await;
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_opens_the_circuit_again_for_open_for() {
    let upstream = Upstream::default();
    let breaker = BreakerLayer::server(count_window());
    let svc = breaker.layer(upstream.service());
    open(&svc, 4).await;
    advance(secs(10)).await;
    svc.clone().oneshot(req(503)).await.unwrap();
    assert_eq!(breaker.state(), BreakerState::Open);
    let res = svc.clone().oneshot(req(200)).await.unwrap();
    assert_eq!(res.headers()["retry-after"], "10");
    assert_eq!(upstream.calls(), 5);
}

#[tokio::test(start_paused = true)]
async fn half_open_lets_only_the_configured_probes_through_at_once() {
    let gate = Arc::new(Semaphore::new(0));
    let entered = Arc::new(AtomicUsize::new(0));
    let fail_first = Arc::new(AtomicUsize::new(4));
    let inner = service_fn({
        let (gate, entered, fail_first) = (gate.clone(), entered.clone(), fail_first.clone());
        move |_req: Request<()>| {
            let (gate, entered) = (gate.clone(), entered.clone());
            let failing = fail_first
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            async move {
                if failing {
                    return Ok::<_, Infallible>(
                        Response::builder().status(500).body(String::new()).unwrap(),
                    );
                }
                entered.fetch_add(1, Ordering::SeqCst);
                gate.acquire().await.unwrap().forget();
                Ok(Response::new(String::new()))
            }
        }
    });
    let breaker = BreakerLayer::server(count_window());
    let svc = breaker.layer(inner);
    open(&svc, 4).await;
    advance(secs(10)).await;

    let calls: Vec<_> = (0..6)
        .map(|_| tokio::spawn(svc.clone().oneshot(Request::new(()))))
        .collect();
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
    assert_eq!(entered.load(Ordering::SeqCst), 2, "two probes at once");

    let mut refused = 0;
    let mut waiting = Vec::new();
    for call in calls {
        if call.is_finished() {
            let res = call.await.unwrap().unwrap();
            assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
            refused += 1;
        } else {
            waiting.push(call);
        }
    }
    assert_eq!(refused, 4, "the others were refused at once");
    gate.add_permits(2);
    for call in waiting {
        assert_eq!(call.await.unwrap().unwrap().status(), StatusCode::OK);
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_gives_its_slot_back() {
    let upstream = Upstream::default();
    let breaker = BreakerLayer::server(count_window().half_open_probes(1));
    let mut svc = breaker.layer(upstream.service());
    open(&svc, 4).await;
    advance(secs(10)).await;
    // A probe that takes a minute, abandoned by its caller.
    let probe = svc
        .ready()
        .await
        .unwrap()
        .call(req_to("http://upstream/", 200, 60_000));
    let blocked = svc.clone().oneshot(req(200)).await.unwrap();
    assert_eq!(blocked.status(), StatusCode::SERVICE_UNAVAILABLE);
    drop(probe);
    let res = svc.clone().oneshot(req(200)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn slow_calls_open_the_circuit_at_the_exact_duration() {
    let upstream = Upstream::default();
    let breaker = BreakerLayer::server(count_window().slow_calls(secs(1), 0.5));
    let svc = breaker.layer(upstream.service());
    let uri = "http://upstream/";
    for delay in [999, 999, 999, 999] {
        svc.clone().oneshot(req_to(uri, 200, delay)).await.unwrap();
    }
    assert_eq!(breaker.state(), BreakerState::Closed, "999 ms is not slow");
    for delay in [1000, 1000, 1000] {
        svc.clone().oneshot(req_to(uri, 200, delay)).await.unwrap();
    }
    assert_eq!(breaker.state(), BreakerState::Closed, "3 of 7 slow");
    svc.clone().oneshot(req_to(uri, 200, 1000)).await.unwrap();
    assert_eq!(breaker.state(), BreakerState::Open, "4 of 8 slow");
}

#[tokio::test(start_paused = true)]
async fn a_time_window_forgets_failures_older_than_it() {
    let upstream = Upstream::default();
    let config = count_window().window(Window::Time(secs(10))).min_calls(2);
    let breaker = BreakerLayer::server(config);
    let svc = breaker.layer(upstream.service());
    svc.clone().oneshot(req(500)).await.unwrap();
    advance(secs(11)).await;
    svc.clone().oneshot(req(200)).await.unwrap();
    svc.clone().oneshot(req(500)).await.unwrap();
    // In the window: one success, one failure (the old failure is gone): 50 %.
    assert_eq!(breaker.state(), BreakerState::Open);

    let breaker = BreakerLayer::server(count_window().window(Window::Time(secs(10))).min_calls(3));
    let svc = breaker.layer(upstream.service());
    svc.clone().oneshot(req(500)).await.unwrap();
    advance(secs(11)).await;
    svc.clone().oneshot(req(200)).await.unwrap();
    svc.clone().oneshot(req(200)).await.unwrap();
    svc.clone().oneshot(req(500)).await.unwrap();
    assert_eq!(
        breaker.state(),
        BreakerState::Closed,
        "1 of 3 in the window"
    );
}

#[tokio::test(start_paused = true)]
async fn an_upstream_retry_after_opens_the_client_breaker_for_that_long() {
    let upstream = Upstream::default();
    let breaker = BreakerLayer::client(count_window());
    let svc = breaker.layer(upstream.service());
    let mut first = req(503);
    first
        .headers_mut()
        .insert("x-retry-after", http::HeaderValue::from_static("30"));
    let res = svc.clone().oneshot(first).await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "passed on as it is"
    );
    assert_eq!(breaker.state(), BreakerState::Open, "one answer is enough");

    let err: BoxError = svc.clone().oneshot(req(200)).await.unwrap_err();
    let class = classify_error(&*err);
    assert_eq!(class.class(), ErrorClass::Overloaded);
    assert_eq!(class.retry_after(), Some(secs(30)));
    assert_eq!(upstream.calls(), 1);

    // Held for the upstream's 30 s, not the configured 10 s.
    advance(secs(30) - MS).await;
    assert!(svc.clone().oneshot(req(200)).await.is_err());
    advance(MS).await;
    assert_eq!(
        svc.clone().oneshot(req(200)).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(upstream.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_longer_than_the_cap_is_capped_and_an_open_circuit_is_held() {
    let upstream = Upstream::default();
    let breaker = BreakerLayer::client(count_window().max_retry_after(secs(60)));
    let svc = breaker.layer(upstream.service());
    open(&svc, 4).await; // open for 10 s
    advance(secs(10)).await;
    let mut probe = req(429);
    probe
        .headers_mut()
        .insert("x-retry-after", http::HeaderValue::from_static("86400"));
    svc.clone().oneshot(probe).await.unwrap();
    let err = svc.clone().oneshot(req(200)).await.unwrap_err();
    assert_eq!(classify_error(&*err).retry_after(), Some(secs(60)));
}

#[tokio::test(start_paused = true)]
async fn circuits_are_per_key_and_shared_by_clones_with_transitions_reported() {
    let upstream = Upstream::default();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let config = count_window().key_by(ByHost).on_transition({
        let seen = seen.clone();
        move |key: &str, from: BreakerState, to: BreakerState| {
            seen.lock().unwrap().push((key.to_owned(), from, to));
        }
    });
    let breaker = BreakerLayer::client(config);
    let a = breaker.layer(upstream.service());
    let b = breaker.clone().layer(upstream.service());

    for _ in 0..4 {
        a.clone()
            .oneshot(req_to("http://mail.example/send", 502, 0))
            .await
            .unwrap();
    }
    assert_eq!(breaker.state_of("mail.example"), Some(BreakerState::Open));
    assert_eq!(breaker.state_of("ai.example"), None);
    assert_eq!(
        breaker.state(),
        BreakerState::Closed,
        "the default circuit is untouched"
    );

    // The other service of the same layer sees the open circuit of that host ...
    assert!(
        b.clone()
            .oneshot(req_to("http://mail.example/", 200, 0))
            .await
            .is_err()
    );
    // ... and nothing of it on another host.
    for _ in 0..3 {
        let res = b
            .clone()
            .oneshot(req_to("http://ai.example/", 500, 0))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
    assert_eq!(breaker.state_of("ai.example"), Some(BreakerState::Closed));
    assert_eq!(upstream.calls(), 7);

    advance(secs(10)).await;
    for _ in 0..2 {
        a.clone()
            .oneshot(req_to("http://mail.example/", 200, 0))
            .await
            .unwrap();
    }
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            (
                "mail.example".to_owned(),
                BreakerState::Closed,
                BreakerState::Open
            ),
            (
                "mail.example".to_owned(),
                BreakerState::Open,
                BreakerState::HalfOpen
            ),
            (
                "mail.example".to_owned(),
                BreakerState::HalfOpen,
                BreakerState::Closed
            ),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_breaker_counts_errors_by_class() {
    let calls = Arc::new(AtomicUsize::new(0));
    let refused = service_fn({
        let calls = calls.clone();
        move |_req: Request<()>| {
            calls.fetch_add(1, Ordering::SeqCst);
            async {
                Err::<Response<String>, _>(std::io::Error::from(
                    std::io::ErrorKind::ConnectionRefused,
                ))
            }
        }
    });
    let breaker = BreakerLayer::client(count_window());
    let svc = breaker.layer(refused);
    for _ in 0..4 {
        let err = svc.clone().oneshot(req(200)).await.unwrap_err();
        assert_eq!(classify_error(&*err).class(), ErrorClass::Connect);
    }
    assert_eq!(breaker.state(), BreakerState::Open);
    let err = svc.clone().oneshot(req(200)).await.unwrap_err();
    assert_eq!(classify_error(&*err).class(), ErrorClass::Overloaded);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[test]
fn a_configuration_that_cannot_work_is_an_error() {
    for config in [
        BreakerConfig::new().failure_rate(0.0),
        BreakerConfig::new().failure_rate(1.5),
        BreakerConfig::new().window(Window::Count(0)),
        BreakerConfig::new().window(Window::Count(5)).min_calls(6),
        BreakerConfig::new().half_open_probes(0),
        BreakerConfig::new().open_for(Duration::ZERO),
        BreakerConfig::new().slow_calls(secs(1), f64::NAN),
    ] {
        let err = BreakerLayer::try_server(config).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid circuit breaker configuration")
        );
    }
    assert!(BreakerLayer::try_client(BreakerConfig::new()).is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_retry_layer_outside_waits_out_the_open_circuit_or_gives_up_at_once() {
    use bytes::Bytes;
    use http_body_util::Full;
    use steadfast::retry::{RetryBody, RetryLayer, RetryPolicy};

    let calls = Arc::new(AtomicUsize::new(0));
    let upstream = service_fn({
        let calls = calls.clone();
        move |_req: Request<RetryBody<Full<Bytes>>>| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                let status = if n < 4 { 500 } else { 200 };
                Ok::<_, Infallible>(
                    Response::builder()
                        .status(status)
                        .body(String::new())
                        .unwrap(),
                )
            }
        }
    });
    let get = || {
        Request::get("http://upstream/")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    for (open_for, retried) in [(secs(2), true), (secs(10), false)] {
        calls.store(0, Ordering::SeqCst);
        let breaker = BreakerLayer::client(count_window().open_for(open_for));
        let client = tower::ServiceBuilder::new()
            // Retry-After up to 5 s is waited for (the default ceiling).
            .layer(RetryLayer::new(RetryPolicy::new().max_retries(3)))
            .layer(breaker.clone())
            .service(upstream.clone());
        for _ in 0..4 {
            let res = client.clone().oneshot(get()).await.unwrap();
            assert_eq!(
                res.status(),
                StatusCode::INTERNAL_SERVER_ERROR,
                "500 is not retried"
            );
        }
        assert_eq!(breaker.state(), BreakerState::Open);

        let started = tokio::time::Instant::now();
        let result = client.clone().oneshot(get()).await;
        if retried {
            assert_eq!(result.unwrap().status(), StatusCode::OK);
            assert_eq!(started.elapsed(), open_for, "exactly the breaker's delay");
            assert_eq!(calls.load(Ordering::SeqCst), 5, "one probe, no hammering");
        } else {
            let err = result.unwrap_err();
            assert_eq!(classify_error(&*err).class(), ErrorClass::Overloaded);
            assert_eq!(
                started.elapsed(),
                Duration::ZERO,
                "a 10 s delay is not waited for"
            );
            assert_eq!(calls.load(Ordering::SeqCst), 4);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_server_breaker_keyed_by_route_opens_one_route_of_a_router() {
    use axum::{Router, body::Body, routing::get};
    use steadfast::breaker::ByRoute;

    let breaker = BreakerLayer::server(count_window().key_by(ByRoute));
    let app: Router = Router::new()
        .route(
            "/reports/{id}",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "database down") }),
        )
        .route("/health", get(|| async { "ok" }))
        .route_layer(breaker.clone());
    let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();

    for id in 1..=4 {
        let res = app
            .clone()
            .oneshot(get(&format!("/reports/{id}")))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
    // One circuit for the route pattern, whatever the id.
    assert_eq!(breaker.state_of("/reports/{id}"), Some(BreakerState::Open));
    let res = app.clone().oneshot(get("/reports/99")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "10");
    let res = app.clone().oneshot(get("/health")).await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "another route is not affected"
    );
    assert_eq!(breaker.state_of("/health"), Some(BreakerState::Closed));
}
