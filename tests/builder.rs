//! `ServiceBuilderExt`: a stack built with its methods is the stack built by
//! hand with `.layer(…)` — the same type, and the same answers to the same
//! requests.

#![cfg(all(
    feature = "error-handler",
    feature = "retry",
    feature = "idempotency",
    feature = "memory-store",
    feature = "timeout",
    feature = "audit",
    feature = "breaker",
    feature = "hedge",
    feature = "overload"
))]

use std::{
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
use http_body_util::{BodyExt, Full};
use steadfast::{
    BoxError, ServiceBuilderExt,
    audit::{AuditLayer, Auditor, MemorySink},
    breaker::{BreakerConfig, BreakerLayer, Window},
    error_handler::ErrorHandlerLayer,
    hedge::HedgeLayer,
    idempotency::{IdempotencyLayer, MemoryStore},
    overload::{OverloadConfig, OverloadLayer},
    retry::{Jitter, RetryLayer, RetryPolicy},
    timeout::{RouteTimeoutLayer, TimeoutTable},
};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

fn same_type<T>(_: &T, _: &T) {}

fn table() -> TimeoutTable {
    TimeoutTable::new(Duration::from_secs(10)).route("/slow", Duration::from_secs(1))
}

fn policy() -> RetryPolicy {
    RetryPolicy::new()
        .base_delay(Duration::from_millis(10))
        .jitter(Jitter::None)
}

fn breaker() -> BreakerConfig {
    BreakerConfig::new()
        .window(Window::Count(4))
        .min_calls(2)
        .failure_rate(0.5)
        .open_for(Duration::from_secs(10))
}

fn overload() -> OverloadConfig {
    OverloadConfig::new().initial_limit(4).min_limit(1)
}

#[tokio::test]
async fn every_method_builds_the_type_the_layer_builds() {
    let auditor = Auditor::builder().build(MemorySink::new());
    let store = MemoryStore::new();
    let by_name = ServiceBuilder::new()
        .error_handler()
        .route_timeouts(table())
        .idempotency(IdempotencyLayer::new(store.clone()))
        .audit(AuditLayer::new(auditor.clone()))
        .server_breaker(breaker())
        .overload(overload())
        .client_breaker(breaker())
        .hedge(HedgeLayer::fixed(Duration::from_millis(5)))
        .retry_with(policy());
    let by_hand = ServiceBuilder::new()
        .layer(ErrorHandlerLayer::new())
        .layer(RouteTimeoutLayer::new(table()))
        .layer(IdempotencyLayer::new(store))
        .layer(AuditLayer::new(auditor))
        .layer(BreakerLayer::server(breaker()))
        .layer(OverloadLayer::new(overload()))
        .layer(BreakerLayer::client(breaker()))
        .layer(HedgeLayer::fixed(Duration::from_millis(5)))
        .layer(RetryLayer::new(policy()));
    same_type(&by_name, &by_hand);
}

/// A handler: `/orders` creates (counting its runs), `/slow` outlives its
/// timeout, `/boom` fails with an error.
fn handler(
    runs: Arc<AtomicUsize>,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = BoxError,
    Future = impl Send,
> + Clone
+ Send {
    service_fn(move |req: Request<Full<Bytes>>| {
        let n = runs.fetch_add(1, Ordering::SeqCst);
        async move {
            match req.uri().path() {
                "/slow" => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Ok(Response::new(Full::default()))
                }
                "/boom" => Err(io::Error::other("database is down").into()),
                _ => Ok(Response::builder()
                    .status(StatusCode::CREATED)
                    .body(Full::new(Bytes::from(format!("order {n}"))))
                    .unwrap()),
            }
        }
    })
}

fn requests() -> Vec<Request<Full<Bytes>>> {
    let order = || {
        Request::post("/orders")
            .header("idempotency-key", "\"k-1\"")
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap()
    };
    vec![
        order(),
        order(),
        Request::get("/slow").body(Full::default()).unwrap(),
        Request::get("/boom").body(Full::default()).unwrap(),
    ]
}

/// Each answer's status, `idempotent-replayed` and `content-type` headers and body.
async fn answers<S, B>(svc: S) -> Vec<(u16, Option<String>, Option<String>, Bytes)>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible> + Clone,
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let mut out = Vec::new();
    for req in requests() {
        let res = svc.clone().oneshot(req).await.unwrap();
        let header = |name: &str| {
            res.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let meta = (
            res.status().as_u16(),
            header("idempotent-replayed"),
            header("content-type"),
        );
        let body = res.into_body().collect().await.unwrap().to_bytes();
        out.push((meta.0, meta.1, meta.2, body));
    }
    out
}

#[tokio::test(start_paused = true)]
async fn a_server_stack_built_by_name_answers_as_the_one_built_by_hand() {
    let sink_by_name = MemorySink::new();
    let auditor = Auditor::builder().build(sink_by_name.clone());
    let runs_by_name = Arc::new(AtomicUsize::new(0));
    let by_name = ServiceBuilder::new()
        .error_handler()
        .route_timeouts(table())
        .audit(AuditLayer::new(auditor.clone()).route(Method::POST, "/orders", "order.create"))
        .idempotency(IdempotencyLayer::new(MemoryStore::new()))
        .service(handler(runs_by_name.clone()));
    let got_by_name = answers(by_name).await;
    auditor.flush().await;

    let sink_by_hand = MemorySink::new();
    let auditor = Auditor::builder().build(sink_by_hand.clone());
    let runs_by_hand = Arc::new(AtomicUsize::new(0));
    let by_hand = ServiceBuilder::new()
        .layer(ErrorHandlerLayer::new())
        .layer(RouteTimeoutLayer::new(table()))
        .layer(AuditLayer::new(auditor.clone()).route(Method::POST, "/orders", "order.create"))
        .layer(IdempotencyLayer::new(MemoryStore::new()))
        .service(handler(runs_by_hand.clone()));
    let got_by_hand = answers(by_hand).await;
    auditor.flush().await;

    assert_eq!(got_by_name, got_by_hand);
    // And what they answered is what the layers promise.
    let statuses: Vec<_> = got_by_name.iter().map(|a| a.0).collect();
    assert_eq!(statuses, [201, 201, 504, 500]);
    assert_eq!(got_by_name[1].1.as_deref(), Some("true"), "the replay");
    assert_eq!(got_by_name[0].3, got_by_name[1].3, "replayed as stored");
    for problem in &got_by_name[2..] {
        assert_eq!(problem.2.as_deref(), Some("application/problem+json"));
    }
    // One run per stack for the order and its replay, one for /slow, one for /boom.
    assert_eq!(runs_by_name.load(Ordering::SeqCst), 3);
    assert_eq!(runs_by_hand.load(Ordering::SeqCst), 3);
    assert_eq!(sink_by_name.events().len(), 2);
    assert_eq!(sink_by_hand.events().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_client_stack_built_by_name_retries_as_the_one_built_by_hand() {
    /// 503 twice, then 200; counts calls.
    fn flaky(
        calls: Arc<AtomicUsize>,
    ) -> impl Service<
        Request<steadfast::retry::RetryBody<Full<Bytes>>>,
        Response = Response<String>,
        Error = Infallible,
        Future = impl Send,
    > + Clone {
        service_fn(move |_req| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            let status = if n < 2 { 503 } else { 200 };
            async move {
                Ok(Response::builder()
                    .status(status)
                    .body(String::new())
                    .unwrap())
            }
        })
    }
    let get = || {
        Request::get("http://upstream/")
            .body(Full::default())
            .unwrap()
    };

    let calls_by_name = Arc::new(AtomicUsize::new(0));
    let by_name = ServiceBuilder::new()
        .retry_with(policy())
        .service(flaky(calls_by_name.clone()));
    let calls_by_hand = Arc::new(AtomicUsize::new(0));
    let by_hand = ServiceBuilder::new()
        .layer(RetryLayer::new(policy()))
        .service(flaky(calls_by_hand.clone()));

    let started = tokio::time::Instant::now();
    assert_eq!(by_name.oneshot(get()).await.unwrap().status(), 200);
    let by_name_took = started.elapsed();
    let started = tokio::time::Instant::now();
    assert_eq!(by_hand.oneshot(get()).await.unwrap().status(), 200);
    assert_eq!(started.elapsed(), by_name_took);
    assert_eq!(by_name_took, Duration::from_millis(30), "10 ms, then 20 ms");
    assert_eq!(calls_by_name.load(Ordering::SeqCst), 3);
    assert_eq!(calls_by_hand.load(Ordering::SeqCst), 3);
}
