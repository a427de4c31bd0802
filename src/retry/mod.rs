//! Retry with exponential backoff, jitter, a shared budget and `Retry-After`:
//! a [`RetryLayer`] that is safe by default.
//!
//! Put it around an HTTP client (hyper-util's, or any `Service<http::Request<B>>`)
//! or any tower service whose requests are `Clone`. A failed call is tried again
//! when all of these hold, and returned as it is otherwise:
//!
//! 1. **The failure is transient**, as [`crate::classify`] sorts it: `Timeout`,
//!    `Connect`, `Network`, `Overloaded` (429, 503), a 502 or 504 — and a 500
//!    only with [`retry_internal_server_error`](RetryPolicy::retry_internal_server_error).
//!    Never a client error. [`retry_if`](RetryPolicy::retry_if) (a closure) or
//!    [`retry_if_with`](RetryPolicy::retry_if_with) (any [`ShouldRetry`])
//!    widens or narrows this, and a [`RetryIf`] request extension does so for
//!    one request.
//! 2. **Sending it again is safe.** GET, HEAD, OPTIONS, TRACE, PUT and DELETE
//!    are idempotent, as is any request with an `Idempotency-Key` header (both
//!    configurable). Anything else — a POST without a key — is never sent twice:
//!    it is retried only after a `Connect` failure (refused, not established),
//!    which proves it never left, as Envoy's `connect-failure` and gRPC's
//!    transparent retries do.
//! 3. **It can be sent again.** `http::Request<B>` is not `Clone`, so the layer
//!    reads the body once into memory, up to
//!    [`max_body_bytes`](RetryLayer::max_body_bytes) (64 KiB), and replays it.
//!    A body known to be bigger (its `size_hint`) passes through untouched; one
//!    that proves bigger while being read is sent as what was read followed by
//!    the rest of the stream. Either way it is sent once, whole, and not
//!    retried. A body known to be empty is not read at all.
//! 4. **Retries are left**: at most [`max_retries`](RetryPolicy::max_retries)
//!    (3) per request, and the shared [`RetryBudget`] is not empty (by default
//!    retries add at most 20% to the request rate, plus 10 per second). An empty
//!    budget returns the failure at once.
//! 5. **There is time.** The delay is the backoff ([`Jitter`] has the formulas;
//!    by default `U(0, min(5 s, 100 ms · 2^(n-1)))` before retry `n`) or,
//!    when the failure carries one (a 429 or 503, either `Retry-After` form),
//!    exactly its `Retry-After`. A `Retry-After` over
//!    [`max_retry_after`](RetryPolicy::max_retry_after) (5 s) means no
//!    retry. No delay starts that would end after the request's
//!    [`Deadline`](crate::Deadline) (put in its extensions by the timeout layer)
//!    or the policy's own [`deadline`](RetryPolicy::deadline);
//!    [`attempt_timeout`](RetryPolicy::attempt_timeout) bounds each attempt.
//!
//! Each retry is a `tracing` event at `WARN` (attempt, delay, class, status,
//! reason) and a call of the [`OnRetry`] hook, if one is set; the
//! inner service sees an [`Attempt`] extension on retries, and optionally an
//! [`attempt_header`](RetryLayer::attempt_header).
//!
//! # Two kinds of request
//!
//! [`RetryLayer::new`] is for `http::Request<B>` (bodies with `Data = Bytes`
//! that are `Unpin`; box one that is not): the inner service receives
//! `http::Request<`[`RetryBody<B>`]`>`. [`RetryLayer::for_clone_requests`] is
//! for any `Req: Clone`, cloned before each attempt as tower's own `Retry`
//! does; give it a [`Classifier`](crate::classify::Classifier) for its
//! responses. The service's error is a [`BoxError`](crate::BoxError): the inner
//! error, or a `Timeout` [`steadfast::Error`](crate::Error) from an attempt
//! timeout.
//!
//! # Cost
//!
//! On success the layer allocates what tower's `Retry` allocates: the copy kept
//! for a retry, a clone of the request head (a small body is kept by reference
//! to its bytes, never copied when it came in one chunk). It adds one
//! budget deposit (a relaxed atomic add; no clock read), one `Arc` increment
//! and, when a retry is possible, one clone of the inner service. Timers (a
//! backoff, an attempt timeout or deadline) are boxed and made only when used. A body that is already whole (`Full`, a
//! buffered `Incoming`) is read inside `call`, so the first attempt starts
//! there as it would without the layer; one still arriving is read by the
//! response future, a named state machine (reading, calling, sleeping,
//! waiting for readiness). Nothing is boxed.
//!
//! # Outside tower
//!
//! [`RetryPolicy::run`] retries any async operation with the same policy.
//!
//! # Example
//!
//! ```
//! use steadfast::retry::{Jitter, RetryLayer, RetryPolicy};
//! use std::{convert::Infallible, sync::{Arc, atomic::{AtomicUsize, Ordering}}, time::Duration};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use bytes::Bytes;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let policy = RetryPolicy::new()
//!     .max_retries(3)
//!     .base_delay(Duration::from_millis(100))
//!     .jitter(Jitter::Full);
//!
//! // An upstream that is unavailable once, then answers.
//! let calls = Arc::new(AtomicUsize::new(0));
//! let upstream = service_fn({
//!     let calls = calls.clone();
//!     move |_req: Request<_>| {
//!         let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
//!         async move {
//!             let status = if first { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
//!             Ok::<_, Infallible>(Response::builder().status(status).body(()).unwrap())
//!         }
//!     }
//! });
//!
//! let client = ServiceBuilder::new()
//!     .layer(RetryLayer::new(policy))
//!     .service(upstream);
//! let res = client
//!     .oneshot(Request::get("http://upstream/").body(Full::new(Bytes::new())).unwrap())
//!     .await
//!     .unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(calls.load(Ordering::SeqCst), 2);
//! # }
//! ```

mod backoff;
mod body;
mod budget;
mod callbacks;
mod future;
mod log;
mod policy;
mod random;
mod replay;
mod run;
mod service;

pub use backoff::{Backoff, Jitter};
pub use body::RetryBody;
pub use budget::RetryBudget;
pub use callbacks::{OnRetry, ShouldRetry};
pub use future::{CloneResponseFuture, ResponseFuture};
pub use policy::{DelaySource, RetryEvent, RetryIf, RetryPolicy};
pub use random::{Random, ThreadRandom};
pub use replay::{Attempt, CloneReplay, HttpReplay};
pub use run::{ClassifyErrors, Run, RunFuture};
pub use service::{Retry, RetryLayer};
#[cfg(feature = "reqwest")]
pub(crate) use {
    log::Reason,
    policy::{RequestFacts, RetryState},
    replay::HttpOptions,
};
