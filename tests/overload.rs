//! Overload protection on paused time: deadline-aware refusals, the queue
//! bound, the adaptive limit. The goodput at three times capacity is a load
//! measurement: `benches/overload_load.rs`.

use std::{
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use http::{Request, Response, StatusCode};
use steadfast::{
    Classification, Deadline, ErrorClass,
    overload::{OverloadConfig, OverloadLayer},
};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt, service_fn};

const MS: Duration = Duration::from_millis(1);

/// A handler taking `latency_ms` (changeable), recording which requests it ran.
#[derive(Clone, Default)]
struct Handler {
    latency_ms: Arc<AtomicU64>,
    ran: Arc<Mutex<Vec<u32>>>,
}

impl Handler {
    fn new(latency_ms: u64) -> Self {
        let handler = Self::default();
        handler.latency_ms.store(latency_ms, Ordering::SeqCst);
        handler
    }

    fn ran(&self) -> Vec<u32> {
        self.ran.lock().unwrap().clone()
    }

    fn service(
        &self,
    ) -> impl Service<
        Request<u32>,
        Response = Response<String>,
        Error = Infallible,
        Future = impl Send,
    > + Clone
    + Send
    + 'static {
        let handler = self.clone();
        service_fn(move |req: Request<u32>| {
            handler.ran.lock().unwrap().push(*req.body());
            let latency = Duration::from_millis(handler.latency_ms.load(Ordering::SeqCst));
            async move {
                tokio::time::sleep(latency).await;
                Ok::<_, Infallible>(Response::new(String::new()))
            }
        })
    }
}

fn req(id: u32) -> Request<u32> {
    Request::new(id)
}

fn req_within(id: u32, deadline: Duration) -> Request<u32> {
    let mut req = Request::new(id);
    Deadline::after(deadline).insert_into(req.extensions_mut());
    req
}

fn assert_refused(res: &Response<steadfast::ResponseBody<String>>) {
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert!(res.headers().contains_key("retry-after"));
    let class = res.extensions().get::<Classification>().unwrap();
    assert_eq!(class.class(), ErrorClass::Overloaded);
}

fn one_slot() -> OverloadConfig {
    OverloadConfig::new()
        .initial_limit(1)
        .min_limit(1)
        .max_limit(1)
        .latency_target(Duration::from_millis(100))
        .max_queue(2)
        .max_wait(Duration::from_secs(10))
}

#[tokio::test(start_paused = true)]
async fn a_request_that_cannot_start_before_its_deadline_is_refused_at_once() {
    let handler = Handler::new(1000);
    let overload = OverloadLayer::new(one_slot());
    let svc = overload.layer(handler.service());
    let running = tokio::spawn(svc.clone().oneshot(req(1)));
    tokio::task::yield_now().await;
    assert_eq!(overload.in_flight(), 1);

    // The slot frees in about 100 ms (the target, as nothing was measured
    // yet), and the request needs about 100 ms to run: 150 ms is not enough.
    let started = Instant::now();
    let res = svc
        .clone()
        .oneshot(req_within(2, Duration::from_millis(150)))
        .await
        .unwrap();
    assert_eq!(started.elapsed(), Duration::ZERO, "refused at once");
    assert_refused(&res);
    assert_eq!(res.headers()["retry-after"], "1");

    // An expired deadline is refused too.
    let res = svc
        .clone()
        .oneshot(req_within(3, Duration::ZERO))
        .await
        .unwrap();
    assert_refused(&res);

    assert_eq!(overload.refused_past_deadline(), 2);
    assert_eq!(overload.refused(), 2);
    assert_eq!(
        handler.ran(),
        vec![1],
        "refused requests never reach the handler"
    );
    assert_eq!(running.await.unwrap().unwrap().status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn queued_requests_run_in_order_and_the_queue_is_bounded() {
    let handler = Handler::new(50);
    let overload = OverloadLayer::new(one_slot());
    let svc = overload.layer(handler.service());
    let calls: Vec<_> = (1..=3)
        .map(|id| tokio::spawn(svc.clone().oneshot(req(id))))
        .collect();
    tokio::task::yield_now().await;
    assert_eq!((overload.in_flight(), overload.queued()), (1, 2));

    let res = svc.clone().oneshot(req(4)).await.unwrap();
    assert_refused(&res);
    assert_eq!(overload.refused_queue_full(), 1);

    let started = Instant::now();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().status(), StatusCode::OK);
    }
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(150),
        "one at a time"
    );
    assert_eq!(handler.ran(), vec![1, 2, 3]);
    assert_eq!((overload.in_flight(), overload.queued()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_queued_request_is_refused_when_its_latest_start_passes() {
    let handler = Handler::new(1000);
    let overload = OverloadLayer::new(one_slot());
    let svc = overload.layer(handler.service());
    let running = tokio::spawn(svc.clone().oneshot(req(1)));
    tokio::task::yield_now().await;

    // 500 ms leaves room for the estimated wait (100 ms) and run (100 ms), so
    // it queues; the slot stays taken, and at 400 ms (the deadline less the
    // estimated run) it gives up.
    let started = Instant::now();
    let res = svc
        .clone()
        .oneshot(req_within(2, Duration::from_millis(500)))
        .await
        .unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(400));
    assert_refused(&res);
    assert_eq!(overload.refused_past_deadline(), 1);
    assert_eq!(overload.queued(), 0, "it left the queue");
    running.await.unwrap().unwrap();
    assert_eq!(handler.ran(), vec![1]);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_request_gives_its_slot_or_its_place_back() {
    let handler = Handler::new(60_000);
    let overload = OverloadLayer::new(one_slot());
    let mut svc = overload.layer(handler.service());
    let running = svc.ready().await.unwrap().call(req(1));
    let queued = svc.ready().await.unwrap().call(req(2));
    let mut running = Box::pin(running);
    let mut queued = Box::pin(queued);
    assert!(futures_poll_once(running.as_mut()).await);
    assert!(futures_poll_once(queued.as_mut()).await);
    assert_eq!((overload.in_flight(), overload.queued()), (1, 1));
    drop(queued);
    assert_eq!(overload.queued(), 0);
    drop(running);
    assert_eq!(overload.in_flight(), 0);

    handler.latency_ms.store(5, Ordering::SeqCst);
    let res = svc.clone().oneshot(req(3)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(handler.ran(), vec![1, 3]);
}

/// Polls a future once; `true` when it is still pending.
async fn futures_poll_once<F: Future>(future: std::pin::Pin<&mut F>) -> bool {
    let mut future = Some(future);
    std::future::poll_fn(|cx| {
        let pending = future.take().unwrap().poll(cx).is_pending();
        std::task::Poll::Ready(pending)
    })
    .await
}

/// Runs `rounds` rounds of `limit` concurrent requests, as a saturated server sees.
async fn saturate<S>(svc: &S, overload: &OverloadLayer, rounds: usize)
where
    S: Service<Request<u32>> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
    S::Error: Send + std::fmt::Debug,
{
    for _ in 0..rounds {
        let calls: Vec<_> = (0..overload.limit())
            .map(|id| tokio::spawn(svc.clone().oneshot(req(id))))
            .collect();
        for call in calls {
            call.await.unwrap().unwrap();
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_limit_grows_while_latency_is_under_target_and_shrinks_once_per_slow_burst() {
    let handler = Handler::new(10);
    let overload = OverloadLayer::new(
        OverloadConfig::new()
            .initial_limit(10)
            .min_limit(2)
            .max_limit(100)
            .latency_target(Duration::from_millis(100)),
    );
    let svc = overload.layer(handler.service());

    // Saturated and fast: it grows (by 1/limit per answer while at least half
    // the slots are busy: here 6 of the 10 answers of each round).
    saturate(&svc, &overload, 5).await;
    let grown = overload.limit();
    assert_eq!(grown, 12);

    // Slow: a whole round of slow answers cuts the limit once (×0.9), not 14 times.
    handler.latency_ms.store(150, Ordering::SeqCst);
    saturate(&svc, &overload, 1).await;
    let after_one = overload.limit();
    assert_eq!(after_one, 11, "12.x × 0.9, once for the whole burst");
    saturate(&svc, &overload, 10).await;
    let shrunk = overload.limit();
    assert!(shrunk <= 5, "{shrunk}");

    // Fast again: it grows back.
    handler.latency_ms.store(10, Ordering::SeqCst);
    saturate(&svc, &overload, 10).await;
    assert!(
        overload.limit() >= shrunk + 4,
        "{} after {shrunk}",
        overload.limit()
    );
}

#[tokio::test(start_paused = true)]
async fn overload_answers_from_the_handler_cut_the_limit_and_the_floor_holds() {
    let calls = Arc::new(AtomicUsize::new(0));
    let shedding = service_fn({
        let calls = calls.clone();
        move |_req: Request<u32>| {
            calls.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(MS).await;
                Ok::<_, Infallible>(Response::builder().status(503).body(String::new()).unwrap())
            }
        }
    });
    let overload = OverloadLayer::new(
        OverloadConfig::new()
            .initial_limit(4)
            .min_limit(2)
            .latency_target(Duration::from_secs(1)),
    );
    let svc = overload.layer(shedding);
    for id in 0..10 {
        let res = svc.clone().oneshot(req(id)).await.unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(overload.limit(), 2, "cut to the floor, never below");
    assert_eq!(overload.refused(), 0, "the handler's 503s are not refusals");
    assert_eq!(calls.load(Ordering::SeqCst), 10);
}

#[test]
fn a_configuration_that_cannot_work_is_an_error() {
    for config in [
        OverloadConfig::new().min_limit(0),
        OverloadConfig::new().initial_limit(5).max_limit(4),
        OverloadConfig::new().initial_limit(1).min_limit(2),
        OverloadConfig::new().decrease_factor(1.0),
        OverloadConfig::new().decrease_factor(0.0),
        OverloadConfig::new().latency_target(Duration::ZERO),
    ] {
        let err = OverloadLayer::try_new(config).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid overload configuration")
        );
    }
}
