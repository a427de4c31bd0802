//! The retry groups' requests, services and policies: tower's `Retry` with a
//! policy equivalent to steadfast's default, and steadfast's `RetryLayer`.

use std::{
    convert::Infallible,
    future::{Ready, ready},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use steadfast::retry::{Jitter, RetryBudget, RetryLayer, RetryPolicy};
use tower::{
    Layer, Service,
    retry::{
        Policy,
        budget::{Budget, TpsBudget},
    },
    service_fn,
};

const PATH: &str = "http://upstream/api/campaigns/42/status";
const SMALL: &[u8] = br#"{"campaign":42,"status":"paused"}"#;

/// A GET with an empty body.
pub fn empty() -> Request<Full<Bytes>> {
    super::get(PATH)
}

/// A PUT with a small body in one chunk.
pub fn small() -> Request<Full<Bytes>> {
    Request::put(PATH)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(SMALL)))
        .unwrap()
}

/// The bare service for any body (steadfast's inner service sees a `RetryBody`).
pub async fn ok<B>(_req: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

/// A service that answers 503 to every other call, starting with the first:
/// called twice per request, in sequence, it fails the first attempt and
/// answers the retry.
type Answer = Ready<Result<Response<Full<Bytes>>, Infallible>>;

pub fn flaky<B>()
-> impl Service<Request<B>, Response = Response<Full<Bytes>>, Error = Infallible, Future = Answer>
+ Clone {
    let failed = Arc::new(AtomicBool::new(false));
    service_fn(move |_req: Request<B>| {
        let status = if failed.fetch_xor(true, Ordering::Relaxed) {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        let mut res = Response::new(Full::new(Bytes::from_static(b"ok")));
        *res.status_mut() = status;
        ready(Ok(res))
    })
}

/// A tower `Policy` doing what steadfast's default does on this path: retry
/// transient failures (429, 502, 503, 504 and errors) of idempotent requests,
/// at most `retries` times, within a `TpsBudget`, with no delay.
#[derive(Clone)]
pub struct TowerPolicy {
    budget: Arc<TpsBudget>,
    retries: u32,
}

impl TowerPolicy {
    pub fn new(budget: TpsBudget) -> Self {
        Self {
            budget: Arc::new(budget),
            retries: 3,
        }
    }
}

impl<B: Clone, Res, E> Policy<Request<B>, Response<Res>, E> for TowerPolicy {
    type Future = Ready<()>;

    fn retry(
        &mut self,
        _req: &mut Request<B>,
        result: &mut Result<Response<Res>, E>,
    ) -> Option<Ready<()>> {
        let transient = match result {
            Ok(res) => matches!(res.status().as_u16(), 429 | 502 | 503 | 504),
            Err(_) => true,
        };
        if !transient {
            self.budget.deposit();
            return None;
        }
        if self.retries == 0 || !self.budget.withdraw() {
            return None;
        }
        self.retries -= 1;
        Some(ready(()))
    }

    fn clone_request(&mut self, req: &Request<B>) -> Option<Request<B>> {
        let idempotent = matches!(
            *req.method(),
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::TRACE
                | Method::PUT
                | Method::DELETE
        ) || req.headers().contains_key("idempotency-key");
        idempotent.then(|| req.clone())
    }
}

/// tower's `Retry` with the default budget (20% + 10/s over 10 s).
pub fn tower_retry<S>(inner: S) -> tower::retry::Retry<TowerPolicy, S> {
    tower::retry::RetryLayer::new(TowerPolicy::new(TpsBudget::default())).layer(inner)
}

/// tower's `Retry` with a budget every retry is paid for (ratio 1).
pub fn tower_retry_always<S>(inner: S) -> tower::retry::Retry<TowerPolicy, S> {
    let budget = TpsBudget::new(Duration::from_secs(10), 10, 1.0);
    tower::retry::RetryLayer::new(TowerPolicy::new(budget)).layer(inner)
}

/// steadfast's `RetryLayer` with the default policy.
pub fn steadfast_retry() -> RetryLayer {
    RetryLayer::new(RetryPolicy::default())
}

/// steadfast's `RetryLayer` with zero backoff and a budget every retry is paid for.
pub fn steadfast_retry_always() -> RetryLayer {
    RetryLayer::new(
        RetryPolicy::new()
            .base_delay(Duration::ZERO)
            .jitter(Jitter::None)
            .budget(RetryBudget::new(Duration::from_secs(10), 10, 1.0)),
    )
}
