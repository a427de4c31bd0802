//! Per-route timeouts that really stop the work, with a [`Deadline`](crate::Deadline)
//! the handler can read.
//!
//! [`RouteTimeoutLayer`] gives every request a time limit chosen from a
//! [`TimeoutTable`]: a default, and rules by path (and optionally method). Use it
//! when routes need different limits — a login that calls a slow identity
//! provider, a report that aggregates for a while, an event stream that must not
//! be cut — and one `TimeoutLayer` for all would be wrong for most of them.
//!
//! # What happens to a request
//!
//! 1. The table picks the limit for the request's method and route. A client may
//!    ask for a shorter one with the `request-timeout-ms` header (a positive whole
//!    number of milliseconds; the name is configurable, see
//!    [`TimeoutTable::deadline_header`]). The header can only shorten the route's
//!    limit, never lengthen it. A malformed value (not digits, zero, repeated
//!    header) is ignored, logged at `debug` and counted
//!    ([`RouteTimeoutLayer::malformed_deadline_headers`]).
//! 2. A [`Deadline`](crate::Deadline) is put in the request's extensions before the
//!    inner service runs ([`Deadline::insert_into`](crate::Deadline::insert_into):
//!    an earlier deadline set by an outer layer is kept, and then enforced here
//!    too). Handlers read it with the `Deadline` extractor, database calls and the
//!    retry layer with [`Deadline::from_extensions`](crate::Deadline::from_extensions),
//!    to avoid starting work that cannot finish.
//! 3. If the deadline passes before the inner service has produced the response
//!    head, the inner future is **dropped** — the handler stops at its next
//!    `.await`, nothing after it runs — and the answer is `504 Gateway Timeout`
//!    as `application/problem+json` (status configurable with
//!    [`TimeoutTable::timeout_status`]; not 408, which invites clients to resend),
//!    whose detail names no internals. The response carries a
//!    [`Classification`](crate::Classification) of class
//!    [`Timeout`](crate::ErrorClass::Timeout) in its extensions, and the timeout is
//!    logged once at `warn` with the `route` (the rule's path, or `default`),
//!    `limit_ms` and `elapsed_ms`.
//!
//! A route whose limit is [`Limit::Unlimited`] opts out: the layer sets no
//! deadline and no timer (a deadline an outer layer set stays in the extensions),
//! unless the client's header asks for one.
//!
//! **The limit covers the time to the response head**, not the body: once a
//! handler has returned a (possibly streaming) response, it is passed through.
//! To bound slow bodies, add tower-http's
//! [`RequestBodyTimeoutLayer`](https://docs.rs/tower-http/0.7/tower_http/timeout/struct.RequestBodyTimeoutLayer.html)
//! and [`ResponseBodyTimeoutLayer`](https://docs.rs/tower-http/0.7/tower_http/timeout/struct.ResponseBodyTimeoutLayer.html).
//!
//! # How rules match
//!
//! With the `axum` feature and the layer added with `Router::layer` (or
//! `route_layer`), rules are matched against axum's
//! [`MatchedPath`](axum::extract::MatchedPath) — the route's pattern, such as
//! `/api/campaigns/{id}/status`; otherwise (no axum, or the layer wraps the whole
//! router from outside) against the URI path. Paths are compared segment by
//! segment (split at `/`), without building strings or allocating:
//!
//! Rule paths are literals or `String`s built from configuration; neither costs
//! anything per request.
//!
//! - [`TimeoutTable::prefix`]: the path starts with the prefix's whole segments.
//!   `/api/auth/` and `/api/auth` both match `/api/auth` and `/api/auth/login`,
//!   not `/api/authors`. `/` matches every path.
//! - [`TimeoutTable::route`]: an axum-style pattern matching the whole path.
//!   A literal segment matches itself; `{name}` matches any one non-empty
//!   segment; a final `{*name}` matches the non-empty rest. A trailing slash is
//!   significant, as in axum. Against a `MatchedPath`, `{id}` in a rule matches
//!   `{id}` in the route, while a literal in a rule (`/users/me`) only matches a
//!   route registered with that literal.
//! - `prefix_for` / `route_for` restrict a rule to one method.
//!
//! When several rules match, the most specific wins, in this order:
//!
//! 1. a pattern matching the whole path beats a prefix or a `{*wildcard}` pattern;
//! 2. a rule naming more segments beats one naming fewer;
//! 3. at the first segment where two rules differ, a literal beats a `{param}`;
//! 4. a `{*wildcard}` pattern beats a prefix of the same segments;
//! 5. a method-specific rule beats an any-method rule (the path decides first).
//!
//! If none matches, the default applies. Two rules of the same path shape, kind
//! and method are an error when the table is compiled, as is a malformed path
//! (axum 0.7's `:name` and `*name` included): [`RouteError`](crate::RouteError).
//! The [audit](crate::audit) layer matches its routes the same way, with the
//! same precedence and errors.
//!
//! # Cost
//!
//! The table is compiled once into a segment trie shared through an `Arc`. Per
//! request the layer does one lookup, reads one header, calls `Instant::now`
//! once and inserts the deadline. The timer is created only when the inner
//! future does not answer on its first poll, so a quick answer never touches
//! it. The response future ([`ResponseFuture`]) is a named type holding the
//! inner future; only a request that waits allocates (its boxed `Sleep`). The
//! layer needs a tokio runtime with time enabled.
//!
//! The deadline insert is most of the layer's cost when the request arrives
//! with no extensions (`http::Extensions` then allocates its map, its table
//! and the entry): [`TimeoutTable::without_deadline_extension`] skips it where
//! nothing reads the deadline. `benches/README.md` has the figures.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use axum::{Router, routing::{get, post}};
//! use http::Method;
//! use steadfast::{Deadline, timeout::{Limit, RouteTimeoutLayer, TimeoutTable}};
//!
//! let table = TimeoutTable::new(Duration::from_secs(15))
//!     .prefix("/api/auth/", Duration::from_secs(12))
//!     .prefix("/api/analytics/", Duration::from_secs(30))
//!     .route_for(Method::POST, "/api/campaigns/{id}/send", Duration::from_secs(60))
//!     .route("/api/events/{*rest}", Limit::Unlimited);
//! let timeouts = RouteTimeoutLayer::new(table);
//! assert_eq!(
//!     timeouts.limit_for(&Method::GET, "/api/auth/login"),
//!     Limit::After(Duration::from_secs(12)),
//! );
//!
//! let app: Router = Router::new()
//!     .route("/api/auth/login", post(|| async { "welcome" }))
//!     .route("/api/campaigns/{id}/send", post(|deadline: Deadline| async move {
//!         if !deadline.allows(Duration::from_secs(5)) {
//!             return "not enough time left to send";
//!         }
//!         "sent"
//!     }))
//!     .route("/api/events/{*rest}", get(|| async { "a long stream" }))
//!     // `Router::layer` runs the layer after routing, so rules see `MatchedPath`.
//!     .layer(timeouts);
//! # let _ = app;
//! ```

mod future;
mod service;
mod table;

pub use future::ResponseFuture;
pub use service::{RouteTimeout, RouteTimeoutLayer};
pub use table::{DEFAULT_DEADLINE_HEADER, Limit, TimeoutTable};
