//! Audit events: who did what, when, from where — structured, redacted, never
//! silently lost.
//!
//! Use it for the actions someone may later have to account for: sign-ups,
//! logins and their failures, password changes, permission denials, and the
//! application's own important writes (`campaign.create`). It follows the
//! [OWASP Logging Cheat Sheet] and its [logging vocabulary]. It is not an access
//! log: only the routes you configure are audited.
//!
//! - An [`AuditEvent`] is one JSON object: `time` (RFC 3339 UTC), `action`,
//!   `outcome`, `actor`, `client_ip`, `user_agent`, `request_id`, `method`,
//!   `route`, `status`, `latency_ms`, `target`, `reason` and `extra`.
//! - [`AuditLayer`] maps route + method to an action and records one event per
//!   such request, filled from the request and the response: the outcome from
//!   the status (2xx/3xx `success`, 401/403 `denied`, other 4xx `failure`, 5xx
//!   `error`), the reason from the [`Classification`](crate::Classification)
//!   the [error handler](crate::error_handler) leaves in the response (so put
//!   the audit layer outside it). Other routes pass through untouched.
//! - Handlers enrich the event — actor, target, outcome, reason, action — or add
//!   events through the [`AuditContext`] in the request extensions (also an
//!   axum extractor).
//! - The client IP is the peer address unless the peer is one of the
//!   [`TrustedProxies`]; then `X-Forwarded-For` or RFC 7239 `Forwarded` is walked
//!   right to left. Nobody is trusted by default.
//! - Before any [`Sink`] sees an event, [`Redaction`] replaces secret-looking
//!   fields with `"[REDACTED]"`, escapes control characters (no log injection)
//!   and, if asked, masks emails.
//! - Recording never blocks on the sink: the [`Auditor`] queues events in a
//!   bounded channel for a background writer. A full queue waits a few
//!   milliseconds at most, then drops — counted and logged, never silently
//!   ([`FullPolicy`]). Authentication and authorisation events are the last
//!   to go: an eighth of the queue is kept for them
//!   ([`security_reserve`](AuditorBuilder::security_reserve)), so the other
//!   events are shed first; [`when_full_security`](AuditorBuilder::when_full_security)
//!   with [`FullPolicy::UNTIL_ROOM`] and
//!   [`keep_failed_security_events`](AuditorBuilder::keep_failed_security_events)
//!   make sure none is ever dropped while the auditor runs (their requests
//!   wait instead). A failing sink is retried with backoff.
//!   [`flush`](Auditor::flush) and [`shutdown`](Auditor::shutdown) write
//!   everything queued; [`stats`](Auditor::stats) reads lock-free counters.
//! - Sinks: [`TracingSink`] (the `audit` target), [`JsonLinesSink`] (a file or
//!   stdout), [`MemorySink`] (tests), or your own [`Sink`] in a few lines.
//!
//! [OWASP Logging Cheat Sheet]: https://cheatsheetseries.owasp.org/cheatsheets/Logging_Cheat_Sheet.html
//! [logging vocabulary]: https://cheatsheetseries.owasp.org/cheatsheets/Logging_Vocabulary_Cheat_Sheet.html
//!
//! ```
//! use axum::{Router, routing::post, http::StatusCode};
//! use http::Method;
//! use steadfast::audit::{AuditContext, AuditLayer, Auditor, MemorySink, TrustedProxies};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let sink = MemorySink::new(); // TracingSink or JsonLinesSink in production
//! let auditor = Auditor::builder().build(sink.clone());
//!
//! async fn create(audit: AuditContext) -> StatusCode {
//!     audit.set_actor("user-7");
//!     audit.set_target("campaign", "42");
//!     StatusCode::CREATED
//! }
//!
//! let app = Router::new()
//!     .route("/campaigns", post(create))
//!     .layer(
//!         AuditLayer::new(auditor.clone())
//!             .route(Method::POST, "/campaigns", "campaign.create")
//!             .trusted_proxies(TrustedProxies::none()),
//!     );
//!
//! let req = http::Request::post("/campaigns").body(axum::body::Body::empty()).unwrap();
//! let res = app.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::CREATED);
//!
//! auditor.flush().await;
//! let event = &sink.events()[0];
//! assert_eq!(event.action, "campaign.create");
//! assert_eq!(event.actor.as_deref(), Some("user-7"));
//! assert_eq!(event.status, Some(StatusCode::CREATED));
//! # }
//! ```

pub mod actions;
mod client_ip;
mod context;
mod event;
mod future;
mod layer;
mod redaction;
mod service;
mod sinks;
mod writer;

pub use client_ip::{ForwardedHeader, InvalidIpRange, IpRange, TrustedProxies};
pub use context::AuditContext;
pub use event::{AuditEvent, Outcome, Target};
pub use future::ResponseFuture;
pub use layer::AuditLayer;
pub use redaction::{DEFAULT_REDACTED_FIELDS, REDACTED, Redaction, escape};
pub use service::Audit;
pub use sinks::{JsonLinesSink, MemorySink, Sink, TracingSink};
pub use writer::{AuditStats, Auditor, AuditorBuilder, FullPolicy, is_security_event};
