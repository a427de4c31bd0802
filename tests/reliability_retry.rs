//! Reliability scenario: retry amplification under 100 % failure
//! (RELIABILITY.md, scenario 4). hyper-util's client behind `RetryLayer`,
//! against a loopback fake that answers every request 503, and against the
//! same fake behind a [`FaultProxy`] that refuses every connection. The
//! default budget (20 % of requests, plus 10 retries a second, over 10 s)
//! bounds the retries, whatever the retry count allows. Real sockets: the
//! delays are shortened to 1 ms so the calls end quickly; the amplification
//! does not depend on them. Each test prints a `FIGURE` line (`--nocapture`).
#![cfg(feature = "hyper")]

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use fault_proxy::FaultProxy;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
};
use steadfast::retry::{RetryBody, RetryLayer, RetryPolicy};
use tokio::net::TcpListener;
use tower::{Layer, ServiceExt};

/// Logical calls per scenario.
const CALLS: u64 = 1_000;
/// The policy's retry count: at most 4 attempts for one call.
const MAX_RETRIES: u64 = 3;
/// The default budget's reserve: 10 retries a second over a 10 s window.
const BUDGET_RESERVE: u64 = 100;
/// The default budget's ratio: each call earns a fifth of a retry.
const BUDGET_RATIO: f64 = 0.2;

/// A fake upstream on loopback that answers every request `503`; counts them.
async fn always_unavailable() -> (std::net::SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicU64::new(0));
    let count = hits.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let count = count.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    count.fetch_add(1, Ordering::SeqCst);
                    async {
                        Ok::<_, Infallible>(
                            Response::builder()
                                .status(StatusCode::SERVICE_UNAVAILABLE)
                                .body(Full::new(Bytes::from_static(b"down")))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, hits)
}

/// Runs [`CALLS`] GETs against `addr`, 50 at a time, through the retry layer
/// with the default budget; returns the retries it made.
async fn calls(addr: std::net::SocketAddr) -> u64 {
    let retries = Arc::new(AtomicU64::new(0));
    let policy = RetryPolicy::new()
        .max_retries(MAX_RETRIES as u32)
        .base_delay(Duration::from_millis(1))
        .max_delay(Duration::from_millis(4))
        .on_retry({
            let retries = retries.clone();
            move |_| {
                retries.fetch_add(1, Ordering::SeqCst);
            }
        });
    let client: Client<HttpConnector, RetryBody<Full<Bytes>>> =
        Client::builder(TokioExecutor::new()).build_http();
    let svc = RetryLayer::new(policy).layer(client);
    for wave in 0..CALLS / 50 {
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let svc = svc.clone();
                tokio::spawn(async move {
                    let req = Request::get(format!("http://{addr}/report/{wave}/{i}"))
                        .body(Full::default())
                        .unwrap();
                    match svc.oneshot(req).await {
                        Ok(res) => assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE),
                        Err(err) => {
                            let class = steadfast::classify::classify_error(&*err).class();
                            assert_eq!(class, steadfast::ErrorClass::Connect, "{err:?}");
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    }
    retries.load(Ordering::SeqCst)
}

/// The most retries the default budget pays for `CALLS` calls in one window.
fn budget_bound() -> u64 {
    (CALLS as f64 * BUDGET_RATIO) as u64 + BUDGET_RESERVE
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_503_costs_at_most_the_budget() {
    let (addr, hits) = always_unavailable().await;
    let retries = calls(addr).await;
    let attempts = hits.load(Ordering::SeqCst);
    // The fake saw every attempt: one per call plus each retry.
    assert_eq!(attempts, CALLS + retries);
    assert!(retries > 0, "a 503 is retried while the budget lasts");
    assert!(
        retries <= budget_bound(),
        "{retries} retries for {CALLS} calls: over the budget ({})",
        budget_bound()
    );
    assert!(attempts <= CALLS * (1 + MAX_RETRIES));
    println!(
        "FIGURE retry-amplification-503: calls={CALLS} attempts={attempts} retries={retries} \
         amplification={:.3} budget_bound_retries={} unbudgeted_worst={:.1}",
        attempts as f64 / CALLS as f64,
        budget_bound(),
        (1 + MAX_RETRIES) as f64,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_refused_costs_at_most_the_budget() {
    let (upstream, hits) = always_unavailable().await;
    let proxy = FaultProxy::start(upstream).await.unwrap();
    proxy.handle().refuse_new().await.unwrap();
    let retries = calls(proxy.addr()).await;
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing got through");
    assert_eq!(proxy.handle().accepted(), 0);
    assert!(retries > 0);
    assert!(
        retries <= budget_bound(),
        "{retries} retries for {CALLS} calls: over the budget ({})",
        budget_bound()
    );
    println!(
        "FIGURE retry-amplification-refused: calls={CALLS} attempts={} retries={retries} \
         amplification={:.3} budget_bound_retries={}",
        CALLS + retries,
        (CALLS + retries) as f64 / CALLS as f64,
        budget_bound(),
    );
}
