//! Hedged requests: when an idempotent call is slow, send a second one and take
//! the first good answer.
//!
//! Use it around a client whose upstream has a long latency tail — a replica
//! that stalls on a GC pause, a cold cache — where waiting for the slowest
//! percent costs more than a second request. [`HedgeLayer`] sends the request;
//! if no answer came after the delay ([`fixed`](HedgeLayer::fixed), or a
//! [`percentile`](HedgeLayer::percentile) of the latency it tracks), it sends a
//! copy, takes whichever good answer comes first and **drops the other attempt**
//! at once (its connection is closed, its work on this side stops). An attempt
//! ending in a transient failure (as [`crate::classify`] sorts it) while the
//! other still runs does not end the race.
//!
//! Hedging is safe only where sending twice is: only GET, HEAD and OPTIONS
//! requests and requests carrying an `Idempotency-Key` are hedged; anything else
//! passes through untouched. Hedges cannot multiply load: each hedgeable request
//! deposits into a [`RetryBudget`](crate::retry::RetryBudget) and each hedge
//! withdraws one retry from it (give the layer the retry layer's budget, so the
//! two share one bound); an empty budget means no hedge. No hedge is sent past
//! the request's [`Deadline`](crate::Deadline), or when its delay would end
//! after it. One hedge at most per request.
//!
//! # Cost
//!
//! For a hedgeable request: a copy of the request (its head, extensions and a
//! `Clone` of the body: use a cheap body such as `Full<Bytes>` or `Empty`), a
//! clone of the inner service, a budget deposit, and a boxed timer when the
//! answer does not come at the first poll. With a percentile delay, one short
//! lock per call records its latency. Other requests pay one method check.
//!
//! # Example
//!
//! ```
//! use std::{convert::Infallible, sync::{Arc, atomic::{AtomicUsize, Ordering}}, time::Duration};
//! use http::{Request, Response};
//! use steadfast::{hedge::HedgeLayer, retry::RetryBudget};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! // The first call stalls for a second; every later one takes 10 ms.
//! let calls = Arc::new(AtomicUsize::new(0));
//! let upstream = service_fn({
//!     let calls = calls.clone();
//!     move |_req: Request<()>| {
//!         let n = calls.fetch_add(1, Ordering::SeqCst);
//!         async move {
//!             let ms = if n == 0 { 1000 } else { 10 };
//!             tokio::time::sleep(Duration::from_millis(ms)).await;
//!             Ok::<_, Infallible>(Response::new(n))
//!         }
//!     }
//! });
//! let hedging = HedgeLayer::fixed(Duration::from_millis(50)).budget(RetryBudget::default());
//! let client = hedging.layer(upstream);
//!
//! let started = tokio::time::Instant::now();
//! let res = client.oneshot(Request::get("http://upstream/").body(()).unwrap()).await.unwrap();
//! assert_eq!(*res.body(), 1, "the hedge answered");
//! assert_eq!(started.elapsed(), Duration::from_millis(60));
//! assert_eq!(hedging.hedges_won(), 1);
//! # }
//! ```

mod future;
mod latency;
mod service;

pub use future::ResponseFuture;
pub use service::{Hedge, HedgeLayer, PercentileError};
