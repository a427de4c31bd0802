//! A circuit breaker that stops calling what is failing, on steadfast's error
//! classes and `Retry-After`.
//!
//! Use it where a failing dependency should be given room to recover instead
//! of more load: around each outbound client (mail, payments, an AI API), or in
//! front of a server's handlers that share a struggling resource. A circuit is
//!
//! - **closed** — calls go through, and their outcomes are counted over a
//!   sliding [`Window`] (the last *n* calls, or the last *d* of time). Once the
//!   window holds [`min_calls`](BreakerConfig::min_calls), a share of failures
//!   at or above [`failure_rate`](BreakerConfig::failure_rate) — or of calls
//!   slower than a threshold, with [`slow_calls`](BreakerConfig::slow_calls) —
//!   opens it. A failure is what [`crate::classify`] calls transient
//!   (timeouts, connection failures, 429, 502, 503, 504) or server-side (5xx,
//!   internal errors, panics); never a client's 4xx.
//! - **open** — calls are refused at once, without calling the inner service,
//!   for [`open_for`](BreakerConfig::open_for). A [`ServerSide`] breaker answers
//!   `503` problem+json with `Retry-After` set to the time until half-open; a
//!   [`ClientSide`] breaker fails with an [`Overloaded`](crate::ErrorClass::Overloaded)
//!   [`steadfast::Error`](crate::Error) carrying that delay, which a
//!   [`RetryLayer`](crate::retry::RetryLayer) outside respects instead of retrying at once.
//! - **half-open** — up to [`half_open_probes`](BreakerConfig::half_open_probes)
//!   calls go through at once; that many successes close the circuit, one
//!   failure (or slow call) opens it again. Other calls are refused meanwhile.
//!
//! An upstream that answers 429 or 503 with `Retry-After` opens the circuit
//! (or holds it open) for exactly that long, capped by
//! [`max_retry_after`](BreakerConfig::max_retry_after), whatever the window says.
//!
//! Every clone of the layer and of its services shares the circuits. There is
//! one circuit unless [`key_by`](BreakerConfig::key_by) says otherwise
//! ([`ByHost`] for clients, [`ByRoute`] for servers, or a closure). The state is
//! observable: [`BreakerLayer::state`], a `tracing` event on every transition
//! (`warn` when opening, `info` otherwise) and an [`OnTransition`] callback.
//! Time is tokio's, so `tokio::time::pause()` drives the breaker in tests.
//!
//! # Cost
//!
//! A closed circuit costs per call two short, uncontended locks of the
//! circuit's mutex (admission and outcome), two `Arc` increments, two
//! readings of the clock and the classification of the outcome; nothing is boxed or
//! allocated (the response future is a named type), except the key `String`
//! when circuits are keyed. An open circuit answers without calling anything.
//! `benches/README.md` compares the closed path with tower-resilience's breaker.
//!
//! # Example
//!
//! ```
//! use std::{convert::Infallible, time::Duration};
//! use http::{Request, Response, StatusCode};
//! use steadfast::breaker::{BreakerConfig, BreakerLayer, BreakerState, Window};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let breaker = BreakerLayer::server(
//!     BreakerConfig::new()
//!         .window(Window::Count(10))
//!         .min_calls(4)
//!         .failure_rate(0.5)
//!         .open_for(Duration::from_secs(10)),
//! );
//! let failing = service_fn(|_req: Request<()>| async {
//!     Ok::<_, Infallible>(Response::builder().status(500).body(String::new()).unwrap())
//! });
//! let svc = breaker.layer(failing);
//!
//! for _ in 0..4 {
//!     svc.clone().oneshot(Request::new(())).await.unwrap();
//! }
//! assert_eq!(breaker.state(), BreakerState::Open);
//!
//! // Open: answered at once, the handler is not called.
//! let res = svc.clone().oneshot(Request::new(())).await.unwrap();
//! assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
//! assert_eq!(res.headers()["retry-after"], "10");
//! # }
//! ```

mod circuit;
mod config;
mod future;
mod key;
mod mode;
mod service;

pub use config::{BreakerConfig, ConfigError, OnTransition, Window};
pub use future::ResponseFuture;
pub use key::{ByHost, ByRoute, KeyFor};
pub use mode::{ClientSide, OnOpen, ServerSide};
pub use service::{Breaker, BreakerLayer};

/// The state of a circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls go through and are counted.
    Closed,
    /// Calls are refused until the open time is over.
    Open,
    /// A bounded number of probe calls go through.
    HalfOpen,
}

impl BreakerState {
    /// A short, stable, lower-case name, for logs and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}
