//! # steadfast
//!
//! [`tower`] middleware that keeps HTTP services standing when things go wrong.
//!
//! Every layer shares one vocabulary for failure ([`classify`]), one error format
//! ([`problem`], RFC 9457 `application/problem+json`) and one notion of time left
//! ([`Deadline`]):
//!
//! | module | what it does |
//! | --- | --- |
//! | [`classify`] | sorts every failure (an error or a response) into an [`ErrorClass`] and reads `Retry-After` |
//! | [`problem`] | the RFC 9457 problem type every layer answers with |
//! | [`error_handler`] | turns every error, panic and bare error response into problem+json |
//! | [`retry`] | retry with exponential backoff, jitter, a budget and `Retry-After` |
//! | [`idempotency`] | `Idempotency-Key` deduplication with memory and Redis stores |
//! | [`timeout`] | per-route timeouts that drop the work, with a readable [`Deadline`] |
//! | [`audit`] | structured, redacted audit events that are never silently lost |
//! | [`breaker`] | a circuit breaker on error classes and `Retry-After` (feature `breaker`) |
//! | [`hedge`] | hedged requests for idempotent client calls, paid from the retry budget (feature `hedge`) |
//! | [`overload`] | an adaptive concurrency limit that refuses what cannot start before its deadline (feature `overload`) |
//!
//! Everything works on plain `tower` and `hyper`; the default `axum` feature adds
//! `IntoResponse` for [`Problem`] and route matching on axum's `MatchedPath`.
//!
//! # Features
//!
//! Each layer is a feature, all on by default; turn the defaults off and name
//! the layers you use to compile only their dependencies (`retry` alone compiles
//! no moka and no sha2):
//!
//! | feature | enables | adds |
//! | --- | --- | --- |
//! | `retry` | [`retry`] | rand (public: any seedable rand 0.9 generator is a jitter source) |
//! | `idempotency` | [`idempotency`] with your own `Store` | sha2 |
//! | `memory-store` | `idempotency::MemoryStore` (implies `idempotency`) | moka |
//! | `redis` | `idempotency::RedisStore` (implies `idempotency`) | redis 1.x |
//! | `timeout` | [`timeout`] | |
//! | `audit` | [`audit`] (implies `retry`, whose backoff its sink retries use) | futures-util |
//! | `error-handler` | [`error_handler`] | |
//! | `breaker` | [`breaker`] | |
//! | `hedge` | [`hedge`] (implies `retry`: hedges are paid from its budget) | |
//! | `overload` | [`overload`] | |
//! | `axum` | `IntoResponse` for [`Problem`], `Deadline` extractor, `MatchedPath` matching | axum |
//! | `hyper` | classification of hyper and hyper-util client errors | hyper, hyper-util |
//! | `utoipa` | [`openapi`]: `ToSchema` for [`Problem`], [`problem_responses!`] and `ProblemResponses` | utoipa 6 |
//! | `reqwest` | [`reqwest::RetryMiddleware`], the retry layer's rules for reqwest-middleware clients; classification of reqwest's errors (implies `retry`, `hyper`) | reqwest 0.13 (no TLS), reqwest-middleware 0.5, async-trait |
//! | `metrics` | [`metrics`]: counters and histograms through the `metrics` facade | metrics 0.24 |
//! | `tower-http` | `classify::TraceClassifier`: tower-http's response classification by steadfast's rules | tower-http 0.7 |
//!
//! [`ServiceBuilderExt`] adds each enabled layer to a `ServiceBuilder` by name.
//! The tracing events carry OpenTelemetry's HTTP attribute names
//! (`http.request.resend_count`, `error.type`, `http.route`) whatever the features.
//!
//! No tower-http type appears in steadfast's API (but for the tower-http 0.7
//! traits `TraceClassifier` implements with the `tower-http` feature), so any
//! tower-http version stacks with it; the request id is read from the `x-request-id` header, which
//! tower-http's `SetRequestIdLayer` sets.
//!
//! ```
//! use steadfast::error_handler::ErrorHandlerLayer;
//! use tower::{ServiceBuilder, service_fn};
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use bytes::Bytes;
//!
//! let svc = ServiceBuilder::new()
//!     .layer(ErrorHandlerLayer::new())
//!     .service(service_fn(|_req: Request<Full<Bytes>>| async {
//!         Ok::<_, std::io::Error>(Response::new(Full::new(Bytes::from("hello"))))
//!     }));
//! # let _ = svc;
//! ```
#![deny(missing_docs)]
// The README's code blocks compile and run as doctests.
#![cfg_attr(doctest, doc = include_str!("../README.md"))]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "audit")]
#[cfg_attr(docsrs, doc(cfg(feature = "audit")))]
pub mod audit;
pub mod body;
#[cfg(feature = "breaker")]
#[cfg_attr(docsrs, doc(cfg(feature = "breaker")))]
pub mod breaker;
#[cfg(any(
    feature = "retry",
    feature = "idempotency",
    feature = "timeout",
    feature = "audit",
    feature = "error-handler",
    feature = "breaker",
    feature = "hedge",
    feature = "overload"
))]
mod builder;
pub mod classify;
mod deadline;
mod error;
#[cfg(feature = "error-handler")]
#[cfg_attr(docsrs, doc(cfg(feature = "error-handler")))]
pub mod error_handler;
// The fuzz targets' bodies, for `fuzz/` and the corpus replay test.
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(any(
    feature = "idempotency",
    feature = "timeout",
    feature = "error-handler",
    feature = "audit"
))]
mod headers;
#[cfg(feature = "hedge")]
#[cfg_attr(docsrs, doc(cfg(feature = "hedge")))]
pub mod hedge;
#[cfg(feature = "idempotency")]
#[cfg_attr(docsrs, doc(cfg(feature = "idempotency")))]
pub mod idempotency;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
#[cfg(feature = "utoipa")]
#[cfg_attr(docsrs, doc(cfg(feature = "utoipa")))]
pub mod openapi;
#[cfg(feature = "overload")]
#[cfg_attr(docsrs, doc(cfg(feature = "overload")))]
pub mod overload;
pub mod problem;
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub mod reqwest;
#[cfg(feature = "retry")]
#[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
pub mod retry;
#[cfg(any(feature = "timeout", feature = "audit"))]
mod route;
#[cfg(feature = "timeout")]
#[cfg_attr(docsrs, doc(cfg(feature = "timeout")))]
pub mod timeout;

pub use body::{PrefixedBody, ResponseBody};
#[cfg(any(
    feature = "retry",
    feature = "idempotency",
    feature = "timeout",
    feature = "audit",
    feature = "error-handler",
    feature = "breaker",
    feature = "hedge",
    feature = "overload"
))]
pub use builder::ServiceBuilderExt;
pub use classify::{Classification, ErrorClass};
pub use deadline::Deadline;
pub use error::Error;
pub use problem::Problem;
#[cfg(any(feature = "timeout", feature = "audit"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "timeout", feature = "audit"))))]
pub use route::RouteError;

/// The boxed error type tower services use at their boundaries.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
