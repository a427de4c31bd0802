//! The application: state, routes and the ONE middleware stack every request
//! passes, in this order (outermost first):
//!
//! 1. request id — tower-http `SetRequestId` (a UUID in `x-request-id` unless the
//!    client sent one) and `PropagateRequestId` (echoed on the response);
//! 2. tracing with latency — tower-http `TraceLayer`, one span per request
//!    carrying the request id;
//! 3. audit — steadfast's audit layer (not landed yet; authentication events
//!    are written by the handlers to the log and `audit_log` meanwhile);
//! 4. error handler — steadfast's `ErrorHandlerLayer`: every error, panic and
//!    bare error response becomes problem+json;
//! 5. per-route timeouts — steadfast's timeout layer (not landed yet);
//! 6. idempotency — steadfast's idempotency layer (not landed yet);
//! 7. body limit — tower-http `RequestBodyLimitLayer` (64 KiB by default);
//! 8. the router.

use std::{sync::Arc, time::Instant};

use axum::{Router, extract::DefaultBodyLimit, routing::get};
use http::Request;
use steadfast::error_handler::ErrorHandlerLayer;
use tower::ServiceBuilder;
use tower_http::{
    LatencyUnit,
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer},
};
use tracing::Level;

use crate::{
    audit::AuthAudit,
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
}

impl AppHandles {
    /// The database.
    pub fn db(&self) -> &Db {
        &self.state.db
    }

    /// Closes the pool after the server stopped.
    pub async fn close(&self) {
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

/// Connects and migrates the database, then builds the router with its stack.
pub async fn build_app(config: Config) -> Result<(Router, AppHandles), StartError> {
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
        config.postmark.clone().map(|p| (p, http.clone())),
        config.clock.clone(),
    );
    let state = AppState(Arc::new(Inner {
        jwt: JwtKeys::new(&config.jwt_secret, config.jwt_ttl),
        passwords,
        mailer,
        login_limiter: RateLimiter::new(config.login_limit, config.clock.clone()),
        forgot_limiter: RateLimiter::new(config.forgot_password_limit, config.clock.clone()),
        http,
        audit: AuthAudit::new(db.clone()),
        started: Instant::now(),
        db,
        config,
    }));
    let router = router(state.clone());
    Ok((router, AppHandles { state }))
}

/// The routes and the stack.
fn router(state: AppState) -> Router {
    let body_limit = state.config.body_limit;
    let routes = Router::new()
        .route("/health", get(health::health))
        .nest("/api/auth", auth::api_routes())
        .nest("/auth", auth::oauth_routes())
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state);
    let stack = ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request<_>| {
                    let request_id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    tracing::info_span!("request", method = %req.method(), path = req.uri().path(), request_id)
                })
                .on_response(DefaultOnResponse::new().level(Level::INFO).latency_unit(LatencyUnit::Millis))
                .on_failure(DefaultOnFailure::new().latency_unit(LatencyUnit::Millis)),
        )
        .layer(ErrorHandlerLayer::new())
        .layer(RequestBodyLimitLayer::new(body_limit));
    routes.layer(stack)
}
