//! `Idempotency-Key` deduplication: a retried request takes effect once, on one
//! process or across a fleet.
//!
//! A client that sends a `POST` and loses the connection cannot tell whether
//! the order was placed. With an `Idempotency-Key` (the IETF httpapi draft *The
//! Idempotency-Key HTTP Header Field*, which Stripe's API made common) it resends
//! the request with the same key and gets the first attempt's response, while
//! the handler runs only once. Put [`IdempotencyLayer`] on the routes whose
//! effects must not happen twice: creating orders, payments, sending mail.
//!
//! ```
//! use axum::{Router, routing::post};
//! use steadfast::idempotency::{IdempotencyLayer, MemoryStore};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let idempotency = IdempotencyLayer::new(MemoryStore::new())
//!     // The authenticated client; set by your auth layer (outside this one).
//!     .scope(|parts: &http::request::Parts| {
//!         parts.headers.get("x-client-id")?.to_str().ok().map(str::to_owned)
//!     });
//! let app: Router = Router::new()
//!     .route("/orders", post(|| async { (http::StatusCode::CREATED, "order 17") }))
//!     .layer(idempotency);
//!
//! let order = || {
//!     http::Request::post("/orders")
//!         .header("x-client-id", "alice")
//!         .header("idempotency-key", "\"8e03978e-40d5-43e8-bc93-6894a57f9324\"")
//!         .body(axum::body::Body::from("{\"sku\":\"A1\"}"))
//!         .unwrap()
//! };
//! let first = app.clone().oneshot(order()).await.unwrap();
//! assert_eq!(first.status(), http::StatusCode::CREATED);
//! let retry = app.oneshot(order()).await.unwrap();
//! assert_eq!(retry.status(), http::StatusCode::CREATED);
//! assert_eq!(retry.headers()["idempotent-replayed"], "true");
//! # }
//! ```
//!
//! # Behaviour
//!
//! This is the behaviour a resource using the layer publishes, as the draft asks.
//!
//! - **Which requests.** The configured methods (default `POST` and `PATCH`) on the
//!   routes the layer wraps. Other methods pass through untouched, without a
//!   store access or an allocation.
//! - **The key.** The `Idempotency-Key` header: an RFC 8941 sf-String
//!   (`"…"`), or the same key unquoted as Stripe's clients send it. 1 to 255
//!   printable ASCII characters. An empty, too long, non-ASCII, badly quoted or
//!   repeated key is answered [400](#invalid-key). A request without a key passes
//!   through undeduplicated, or is answered [400](#missing-key) when the layer is
//!   [`required`](IdempotencyLayer::required).
//! - **Scope.** A key belongs to a client: entries are found by (scope, key),
//!   the scope coming from [`IdempotencyLayer::scope`] (the authenticated
//!   principal, an API key, a tenant). Two clients sending the same key never see
//!   each other's responses. **Production must set a scope**; the default is one
//!   scope for everyone. A keyed request the scope cannot place is answered
//!   [400](#unscoped-request).
//! - **Fingerprint.** The key is bound to a SHA-256 fingerprint of the method,
//!   path and query, body, and the headers named with
//!   [`fingerprint_header`](IdempotencyLayer::fingerprint_header). JSON
//!   bodies are canonicalised first (whitespace and member order do not count;
//!   [`canonical_json`](IdempotencyLayer::canonical_json)). The same key
//!   with another fingerprint is answered [422](#key-reused) and the handler does
//!   not run.
//! - **First request.** Its key is claimed atomically, the handler runs, and its
//!   status, headers and body are stored. Of any number of concurrent first
//!   requests with one key, exactly one runs the handler.
//! - **Duplicate while the first is in flight.** Answered [409](#request-in-flight)
//!   with `Retry-After`; or, with [`wait`](IdempotencyLayer::wait), it waits
//!   (bounded) for the first and replays its response.
//! - **Duplicate after completion.** The stored response is replayed: same
//!   status, same body bytes, same headers, plus `Idempotent-Replayed: true`. Not
//!   replayed: hop-by-hop headers, `Date` and `Content-Length` (set anew), and
//!   `Set-Cookie` (a replay must not hand a cookie to whoever resends a key).
//!   The handler does not run.
//! - **What is stored.** By default every status below 500 except 408, 409 and
//!   429: a success, a redirect, and a validation error (it replays as itself, as
//!   with Stripe). 5xx, 408, 409, 429, an error of the inner service and a response
//!   body that fails midway are not stored: the claim is released, and a retry
//!   runs the handler again. See [`store_if`](IdempotencyLayer::store_if).
//! - **The claim never sticks.** When the request future is dropped (the client
//!   left, a timeout fired) or the handler panics, the claim is released at once.
//!   A claim also expires after its lock TTL (default 60 s), after which another
//!   request may take the key over: the claim of a process that died. A request
//!   that outlives its lock TTL still answers its own client; its response is
//!   stored when nobody took the key over meanwhile, and is not when another
//!   request did (the successor's response is the one kept). Both stores behave
//!   alike.
//! - **Body limits.** Request bodies are buffered up to 1 MiB to fingerprint them;
//!   a larger keyed request is answered [413](#request-too-large). A response
//!   larger than 1 MiB (or one with trailers) reaches its client whole but is not
//!   stored; since its effects happened, its duplicates are **not** run again but
//!   answered [409](#response-not-stored), naming the original status. This is the
//!   safe choice: a retry can never repeat a payment whose receipt was too large.
//! - **Retention.** Completed entries expire after 24 h
//!   ([`retention`](IdempotencyLayer::retention)); the key is then new again.
//! - **Store failure.** A store call that fails or exceeds the
//!   [`store_timeout`](IdempotencyLayer::store_timeout) (default 1 s) is
//!   answered [503](#store-unavailable) by default, or runs the handler without
//!   deduplication with [`OnStoreFailure::FailOpen`]. Never a panic or a hang. A
//!   response whose storing failed still reaches its client; its key stays claimed
//!   until the lock TTL.
//!
//! Put the layer inside the authentication layer (so the scope can see the
//! principal) and inside the error handler or tower-http's `CatchPanicLayer`
//! (panics unwind through it). The inner service's request body type must be
//! buildable from [`Bytes`](bytes::Bytes) (axum's `Body` is), since the buffered
//! body is handed on.
//!
//! # Stores
//!
//! [`MemoryStore`] keeps entries in this process, on a moka cache bounded by
//! bytes. `RedisStore` (feature `redis`) shares them between instances: the claim
//! is one atomic Lua script, a completion and a replay one round trip each. Other
//! stores implement [`Store`].
//!
//! # Problems
//!
//! Every answer the layer writes itself is `application/problem+json`; its
//! `type` is [the documentation page](IdempotencyLayer::documentation)
//! (this one by default) plus one of these anchors.
//!
//! ## Missing key
//! 400: the layer is `required` and the request has no `Idempotency-Key`.
//!
//! ## Invalid key
//! 400: the key is empty, longer than 255 characters, not printable ASCII, badly
//! quoted, or sent twice. The `detail` says which.
//!
//! ## Unscoped request
//! 400: the request has a key but the scope extractor found no client identity.
//!
//! ## Request too large
//! 413: the body of a keyed request exceeds the limit.
//!
//! ## Unreadable body
//! 400: the body of a keyed request could not be read to its end.
//!
//! ## Key reused
//! 422: the key was used for a different request. Use a new key.
//!
//! ## Request in flight
//! 409, with `Retry-After`: the first request with this key is still running.
//! Retry later with the same key.
//!
//! ## Response not stored
//! 409: the request with this key ran, but its response was too large to keep.
//! It is not run again.
//!
//! ## Store unavailable
//! 503, with `Retry-After`: the store failed. Retry later with the same key.

mod body;
pub(crate) mod fingerprint;
mod flow;
mod future;
mod guard;
mod key;
mod layer;
mod problems;
mod replay;
mod scope;
mod service;
mod store;

pub use fingerprint::Fingerprint;
pub use future::ResponseFuture;
pub use key::{IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED, IdempotencyKey, KeyError, MAX_KEY_LEN};
pub use layer::{DEFAULT_DOCUMENTATION, DefaultStoreIf, IdempotencyLayer, OnStoreFailure, StoreIf};
pub use scope::{GlobalScope, Scope};
pub use service::Idempotency;
pub use store::{
    Claim, Completion, Entry, EntryKey, Store, StoreError, StoreErrorKind, StoredResponse,
};

#[cfg(feature = "memory-store")]
#[cfg_attr(docsrs, doc(cfg(feature = "memory-store")))]
pub use store::{MemoryLease, MemoryStore};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use store::{RedisLease, RedisStore};
