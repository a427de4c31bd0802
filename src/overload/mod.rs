//! Overload protection for servers: an adaptive concurrency limit with a
//! bounded queue that refuses, at once, what could not be served in time.
//!
//! Without it a server under more load than it can take queues everything:
//! latency climbs past every timeout, the work done for requests that then
//! time out is wasted, and goodput collapses while the CPU is busy.
//! [`OverloadLayer`] keeps the service at the concurrency it can sustain:
//!
//! - **An adaptive limit (AIMD on latency).** A request answered within
//!   [`latency_target`](OverloadConfig::latency_target) while at least half the
//!   slots are in use adds `1 / limit` to the limit (one slot per round of
//!   answers); one slower than the target, or answered 429, 503 or 504, or
//!   dropped past the target, multiplies it by
//!   [`decrease_factor`](OverloadConfig::decrease_factor) — once per burst:
//!   only a request admitted after the last cut may cut again. The limit stays
//!   within [`min_limit`](OverloadConfig::min_limit) and
//!   [`max_limit`](OverloadConfig::max_limit).
//! - **A bounded FIFO queue** of [`max_queue`](OverloadConfig::max_queue)
//!   requests for when every slot is taken.
//! - **Deadline-aware admission.** A request whose [`Deadline`](crate::Deadline)
//!   (put in its extensions by the [`timeout`](crate::timeout) layer outside)
//!   does not leave time for the estimated wait in the queue plus the average
//!   latency is refused **at once**, instead of timing out later; a queued
//!   request is refused when that latest start passes. Without a deadline a
//!   request waits at most [`max_wait`](OverloadConfig::max_wait).
//!
//! A refused request never reaches the inner service. It is answered
//! `503 Service Unavailable` as problem+json with `Retry-After` (the estimated
//! wait, at least one second) and a [`Classification`](crate::Classification)
//! of class `Overloaded` in the response's extensions, logged at `debug` and
//! counted ([`OverloadLayer::refused_past_deadline`],
//! [`OverloadLayer::refused_queue_full`]).
//!
//! Place it inside the timeout layer (so it sees the deadline) and outside the
//! handlers; every clone of the layer shares one limit.
//!
//! # Cost
//!
//! An admitted request takes the limiter's mutex twice (admission and
//! release; a few comparisons and float operations each), reads the clock
//! twice and holds one `Arc`; nothing is boxed. A queued request also clones
//! the inner service and boxes its state (the request, that clone, a timer). `benches/README.md` has the per
//! request cost beside tower's `ConcurrencyLimit` + `LoadShed`, and goodput
//! at three times capacity with and without the layer.
//!
//! # Example
//!
//! ```
//! use std::{convert::Infallible, time::Duration};
//! use http::{Request, Response, StatusCode};
//! use steadfast::{Deadline, overload::{OverloadConfig, OverloadLayer}};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let overload = OverloadLayer::new(
//!     OverloadConfig::new()
//!         .initial_limit(1)
//!         .min_limit(1)
//!         .latency_target(Duration::from_millis(500)),
//! );
//! let slow = service_fn(|_req: Request<()>| async {
//!     tokio::time::sleep(Duration::from_secs(1)).await;
//!     Ok::<_, Infallible>(Response::new(String::new()))
//! });
//! let svc = overload.layer(slow);
//!
//! // One request holds the only slot for a second.
//! let first = tokio::spawn(svc.clone().oneshot(Request::new(())));
//! tokio::task::yield_now().await;
//!
//! // A request that must be answered within 100 ms cannot start in time.
//! let mut req = Request::new(());
//! Deadline::after(Duration::from_millis(100)).insert_into(req.extensions_mut());
//! let res = svc.clone().oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
//! assert!(res.headers().contains_key("retry-after"));
//! assert_eq!(overload.refused_past_deadline(), 1);
//! assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
//! # }
//! ```

mod config;
mod future;
mod limiter;
mod service;

pub use config::{ConfigError, OverloadConfig};
pub use future::ResponseFuture;
pub use service::{Overload, OverloadLayer};
