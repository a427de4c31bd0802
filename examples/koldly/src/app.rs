//! The application: state, routes and the ONE middleware stack every request
//! passes, in this order (outermost first):
//!
//! 1. request id — tower-http `SetRequestId` (a UUID v4 in `x-request-id`,
//!    [`UuidRequestId`], unless the client sent one) and `PropagateRequestId`
//!    (echoed on the response);
//! 2. tracing with latency — tower-http `TraceLayer`, one span per request
//!    carrying the request id;
//! 3. audit — steadfast's `AuditLayer` on the account routes
//!    ([`audit::AUDITED_ROUTES`]); handlers enrich the event, the `Auditor`
//!    writes it to the log and `audit_log` in the background;
//! 4. error handler — steadfast's `ErrorHandlerLayer`: every error, panic and
//!    bare error response becomes problem+json;
//! 5. per-route timeouts — steadfast's `RouteTimeoutLayer`: `/api/auth/` and
//!    `/auth/` 12 s, `/api/analytics/` 30 s, everything else 15 s; 504 problem;
//! 6. body limit — tower-http `RequestBodyLimitLayer` (64 KiB by default): a
//!    declared length over it is refused at once, a chunked body fails when it
//!    passes it, and axum's extractors answer that failure with 413 too (their
//!    own 2 MB limit is switched off only when the configured one is larger:
//!    the `DefaultBodyLimit` layer costs an extension per request); an
//!    oversized body is refused before any idempotency key is claimed;
//! 7. idempotency — steadfast's `IdempotencyLayer` on signup, forgot-password
//!    and send-verification only, keys scoped by client identity
//!    ([`idempotency_scope`]), stored in Redis when `REDIS_URL` is set (shared by
//!    instances), else in memory;
//! 8. the router.
//!
//! Layers 1–6 wrap the whole router from outside, as one service ([`App`]);
//! 7 wraps its route group with `Router::layer`, inside them. Outside the
//! router the layers see the URI path rather than the matched route, which
//! koldly's rules need no more than: its timeouts are prefixes and its audited
//! routes have no parameters. Inside it (`Router::layer`), every request would
//! pay axum's wrapping of the layered service once more: a boxed service clone,
//! a boxed future and the request and response bodies boxed again, about 1.3 k
//! instructions (measured with `stack_cost`).

use std::{
    convert::Infallible,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::DefaultBodyLimit,
    response::{IntoResponse, Response},
    routing::get,
};
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Request};
use steadfast::{
    audit::Auditor,
    error_handler::ErrorHandlerLayer,
    idempotency::{IdempotencyLayer, MemoryStore, RedisStore, Store},
    timeout::{RouteTimeoutLayer, TimeoutTable},
};
use tower::{Service, ServiceBuilder};
use tower_http::{
    LatencyUnit,
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer},
};
use tracing::Level;
use uuid::{Uuid, fmt::Hyphenated};

use crate::{
    audit,
    auth::{self, jwt::JwtKeys, password::Passwords, rate_limit::RateLimiter},
    config::Config,
    db::Db,
    health, http_client,
    mail::Mailer,
    state::{AppState, Inner},
};

/// What a running app holds besides its router: for shutdown and for tests.
#[derive(Clone)]
pub struct AppHandles {
    /// The shared state (configuration, database, mailer...).
    pub state: AppState,
    /// The audit writer: flushed and stopped at shutdown.
    pub auditor: Auditor,
}

impl AppHandles {
    /// The database.
    pub fn db(&self) -> &Db {
        &self.state.db
    }

    /// After the server stopped: finishes background mail deliveries (10 s at
    /// most), writes every queued audit event, then closes the pool.
    pub async fn close(&self) {
        if !self.state.mailer.wait_idle(Duration::from_secs(10)).await {
            tracing::warn!(
                "background mail deliveries still running at shutdown; they stay in the outbox as pending"
            );
        }
        self.auditor.shutdown().await;
        self.state.db.pool.close().await;
    }
}

/// Why the app could not start.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// koldly as one service: the router inside its middleware stack, as
/// [`build_app`] returns it and [`serve`](crate::serve) runs it.
pub trait App:
    Service<axum::extract::Request, Response = Response, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> App for S where
    S: Service<
            axum::extract::Request,
            Response = Response,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// Connects and migrates the database, then builds the router with its stack.
pub async fn build_app(config: Config) -> Result<(impl App, AppHandles), StartError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let db = Db::connect(&config.database_url).await.map_err(|e| {
        StartError(format!(
            "database {}: {e}",
            crate::config::redact_url(&config.database_url)
        ))
    })?;
    tracing::info!(backend = ?db.backend, "database connected and migrated");
    let passwords =
        Passwords::new(config.argon2).map_err(|e| StartError(format!("argon2 parameters: {e}")))?;
    let http = http_client::new_client();
    let mailer = Mailer::new(
        db.clone(),
        config.mail_from.clone(),
        config
            .postmark
            .clone()
            .map(|p| (p, http_client::retrying_client())),
        config.clock.clone(),
    );
    let state = AppState(Arc::new(Inner {
        jwt: JwtKeys::new(&config.jwt_secret, config.jwt_ttl),
        passwords,
        mailer,
        login_limiter: RateLimiter::new(config.login_limit, config.clock.clone()),
        forgot_limiter: RateLimiter::new(config.forgot_password_limit, config.clock.clone()),
        http,
        started: Instant::now(),
        db,
        config,
    }));
    let auditor = audit::auditor(state.db.clone());
    let routes = match &state.config.redis_url {
        Some(url) => {
            let client = redis::Client::open(url.as_str()).map_err(|e| {
                StartError(format!("REDIS_URL {}: {e}", crate::config::redact_url(url)))
            })?;
            tracing::info!("idempotency keys are stored in Redis");
            routes(state.clone(), RedisStore::new(client))
        }
        None => routes(state.clone(), MemoryStore::new()),
    };
    let app = stack(routes, state.config.body_limit, auditor.clone());
    Ok((app, AppHandles { state, auditor }))
}

/// The scope of an idempotency key: the user of a valid bearer token, else the
/// client IP (signup and forgot-password are anonymous).
pub fn idempotency_scope(
    jwt: JwtKeys,
) -> impl Fn(&Parts) -> Option<String> + Clone + Send + Sync + 'static {
    move |parts: &Parts| {
        let bearer = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if let Some(claims) = bearer.and_then(|token| jwt.verify(token.trim())) {
            return Some(format!("user:{}", claims.sub));
        }
        parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|ci| format!("ip:{}", ci.0.ip()))
    }
}

/// The limit axum's body extractors apply unless told otherwise.
const AXUM_DEFAULT_BODY_LIMIT: usize = 2 * 1024 * 1024;

/// The routes, with idempotency on its route group.
fn routes<St: Store>(state: AppState, store: St) -> Router {
    let idempotency = IdempotencyLayer::new(store)
        .scope(idempotency_scope(state.jwt.clone()))
        .max_request_bytes(state.config.body_limit);
    let idempotent = Router::new()
        .nest("/api/auth", auth::idempotent_api_routes())
        .layer(idempotency);
    let plain = Router::new()
        .route("/health", get(health::health))
        .nest("/api/auth", auth::api_routes())
        .nest("/auth", auth::oauth_routes());
    idempotent.merge(plain).with_state(state)
}

/// `routes` inside the common layers (see the module docs).
fn stack(routes: Router, body_limit: usize, auditor: Auditor) -> impl App {
    ServiceBuilder::new()
        // axum's server takes its own body type: the one box per response that
        // `Router::layer` would also make.
        .map_response(IntoResponse::into_response)
        .layer(SetRequestIdLayer::x_request_id(UuidRequestId))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request<_>| {
                    tracing::info_span!(
                        "request",
                        method = %req.method(),
                        path = req.uri().path(),
                        request_id = request_id(req),
                    )
                })
                .on_response(
                    DefaultOnResponse::new()
                        .level(Level::INFO)
                        .latency_unit(LatencyUnit::Millis),
                )
                .on_failure(DefaultOnFailure::new().latency_unit(LatencyUnit::Millis)),
        )
        .layer(audit::layer(auditor))
        .layer(ErrorHandlerLayer::new())
        .layer(RouteTimeoutLayer::new(timeouts()))
        .option_layer((body_limit > AXUM_DEFAULT_BODY_LIMIT).then(DefaultBodyLimit::disable))
        .layer(RequestBodyLimitLayer::new(body_limit))
        .service(routes)
}

/// The request id `SetRequestId` put on the request: read from its extension,
/// not by looking the header up by name again. Evaluated only when the span is
/// recorded.
fn request_id<B>(req: &Request<B>) -> &str {
    req.extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or("")
}

/// A random (v4) UUID as the request id, like tower-http's `MakeRequestUuid`,
/// without its `String` and `fmt` round trip: the hyphenated form is written
/// into a stack buffer and the header value owns it, so the clones tower-http
/// makes for the extension and the response are reference counts rather than
/// copies.
#[derive(Debug, Clone, Copy)]
pub struct UuidRequestId;

impl MakeRequestId for UuidRequestId {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let mut text = [0u8; Hyphenated::LENGTH];
        Uuid::new_v4().hyphenated().encode_lower(&mut text);
        let value = HeaderValue::from_maybe_shared(Bytes::from_owner(text))
            .expect("a hyphenated UUID is a valid header value");
        Some(RequestId::new(value))
    }
}

/// Per-route time limits: authentication 12 s (it may call the OAuth
/// provider), analytics 30 s, everything else 15 s.
pub fn timeouts() -> TimeoutTable {
    TimeoutTable::new(Duration::from_secs(15))
        .prefix("/api/auth/", Duration::from_secs(12))
        .prefix("/auth/", Duration::from_secs(12))
        .prefix("/api/analytics/", Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;
    use steadfast::timeout::Limit;

    #[test]
    fn route_timeouts() {
        let layer = RouteTimeoutLayer::new(timeouts());
        let limit = |path| layer.limit_for(&Method::POST, path);
        assert_eq!(
            limit("/api/auth/login"),
            Limit::After(Duration::from_secs(12))
        );
        assert_eq!(
            limit("/auth/google/callback"),
            Limit::After(Duration::from_secs(12))
        );
        assert_eq!(
            limit("/api/analytics/overview"),
            Limit::After(Duration::from_secs(30))
        );
        assert_eq!(
            limit("/api/campaigns"),
            Limit::After(Duration::from_secs(15))
        );
        assert_eq!(limit("/health"), Limit::After(Duration::from_secs(15)));
    }

    #[test]
    fn request_ids_are_uuid_v4() {
        let req = Request::new(());
        let id = UuidRequestId.make_request_id(&req).unwrap();
        let text = id.header_value().to_str().unwrap();
        let uuid = Uuid::parse_str(text).unwrap();
        assert_eq!(uuid.get_version_num(), 4);
        assert_eq!(text, uuid.hyphenated().to_string());
        let other = UuidRequestId.make_request_id(&req).unwrap();
        assert_ne!(id.header_value(), other.header_value());
    }
}
