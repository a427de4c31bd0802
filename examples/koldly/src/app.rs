//! The application: state, routes and the ONE middleware stack every request
//! passes, in this order (outermost first):
//!
//! 0. secret paths — a path segment that is a secret (a reset token a client
//!    still puts in the path, an unsubscribe token of `/u/{token}`) is
//!    replaced by `REDACTED` before any layer records the path
//!    ([`auth::redact_path`]; the unsubscribe token moves to the request's
//!    extensions, [`sending::unsubscribe::split_secret_path`]);
//! 1. request id — tower-http `SetRequestId` (a UUID v4 in `x-request-id`,
//!    [`UuidRequestId`], unless the client sent one) and `PropagateRequestId`
//!    (echoed on the response);
//! 2. tracing with latency — tower-http `TraceLayer`, one span per request
//!    carrying the request id;
//! 3. audit — steadfast's `AuditLayer` on the account routes
//!    ([`audit::AUDITED_ROUTES`]) and the product's changes
//!    ([`audit::PRODUCT_ROUTES`]), the client IP resolved through the
//!    configured trusted proxies; handlers enrich the event, the `Auditor`
//!    writes it to the log and `audit_log` in the background;
//! 4. error handler — steadfast's `ErrorHandlerLayer`: every error, panic and
//!    bare error response becomes problem+json;
//! 5. per-route timeouts — steadfast's `RouteTimeoutLayer`: `/api/auth/` and
//!    `/auth/` 12 s, `/api/dashboard/` and `/api/admin/` 30 s, everything else
//!    15 s; 504 problem;
//!    it puts the request's `Deadline` in its extensions;
//! 6. overload protection — steadfast's `OverloadLayer` ([`overload_layer`],
//!    unless `OVERLOAD_PROTECTION=false`): an adaptive concurrency limit
//!    (`OVERLOAD_MAX_CONCURRENCY` at most) with a bounded queue
//!    (`OVERLOAD_MAX_QUEUE`); a request that cannot start before its deadline
//!    is refused at once with a 503 problem and `Retry-After` and never reaches
//!    the handler. Inside the timeout layer, because it reads that deadline;
//!    outside everything that does work for a request (body reading, the
//!    router), so a refusal costs nothing; inside the error handler and audit,
//!    so refusals are logged and answered like any other 503;
//! 7. body limit — tower-http `RequestBodyLimitLayer` (64 KiB by default): a
//!    declared length over it is refused at once, a chunked body fails when it
//!    passes it, and axum's extractors answer that failure with 413 too (their
//!    own 2 MB limit is switched off only when the configured one is larger:
//!    the `DefaultBodyLimit` layer costs an extension per request); an
//!    oversized body is refused before any idempotency key is claimed;
//! 8. hostile text — [`text_input::RejectHostileTextLayer`]: control characters
//!    and (in identifiers) bidi controls in a JSON body or query string are a
//!    400 problem naming the field, for every route;
//! 9. session — [`auth::extract::resolve_session`] on the idempotent routes:
//!    a valid bearer token's user goes into the request's extensions;
//! 10. idempotency — steadfast's `IdempotencyLayer` on signup, forgot-password
//!     and send-verification, and on the product's `POST`s (campaigns, imports,
//!     templates, onboarding, email generation and decisions), keys scoped by
//!     the verified user or the client IP ([`idempotency_scope`]), stored in Redis when `REDIS_URL` is set
//!     (shared by instances), else in memory;
//! 11. the router, which also serves the OpenAPI document
//!     (`GET /api/openapi.json`) and its reference page (`/docs`): see
//!     [`openapi`].
//!
//! Layers 0–8 wrap the whole router from outside, as one service ([`App`]);
//! 9 and 10 wrap their route group with `Router::layer`, inside them. Outside the
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
};
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Request};
use steadfast::{
    ResponseBody,
    audit::{AuditLayer, Auditor, TrustedProxies},
    error_handler::ErrorHandlerLayer,
    idempotency::{IdempotencyLayer, MemoryStore, RedisStore, Store},
    overload::{OverloadConfig, OverloadLayer},
    timeout::{RouteTimeoutLayer, TimeoutTable},
};
use tower::{
    Service, ServiceBuilder,
    util::{Either, MapResponseLayer},
};
use tower_http::{
    LatencyUnit,
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer},
};
use tracing::Level;
use utoipa_axum::router::OpenApiRouter;
use uuid::{Uuid, fmt::Hyphenated};

use crate::{
    ai::{self, LanguageModel},
    audit,
    auth::{self, extract::AuthUser, jwt::JwtKeys, password::Passwords, rate_limit::RateLimiter},
    background::Background,
    campaigns,
    config::{Config, Mode, OverloadSettings},
    db::{self, Db},
    emails, health, http_client, icp, inbox,
    jobs::{self, JobQueue, PeriodicHandle, Registry, RunnerHandle},
    mail::Mailer,
    onboarding, openapi, prospects, sending,
    state::{AppState, Inner},
    text_input, webhooks,
};

/// What a running app holds besides its router: for shutdown and for tests.
#[derive(Clone)]
pub struct AppHandles {
    /// The shared state (configuration, database, mailer...).
    pub state: AppState,
    /// The audit writer: flushed and stopped at shutdown.
    pub auditor: Auditor,
    /// The periodic work on apalis-cron (outbox resend, orphan sweep):
    /// stopped at shutdown.
    pub periodic: Arc<PeriodicHandle>,
    /// The background job runner: stopped gracefully at shutdown.
    pub jobs: RunnerHandle,
    /// The sending tick's schedule on apalis-cron (unless
    /// `SENDING_TICK_MS=0`): stopped at shutdown, first.
    pub sending: Option<Arc<PeriodicHandle>>,
}

impl AppHandles {
    /// The database.
    pub fn db(&self) -> &Db {
        &self.state.db
    }

    /// After the server stopped: stops the sending schedule (a tick under
    /// way gets the job runner's grace period to record its sends, past it
    /// its row is left to the lease rules), stops the job runner (running
    /// jobs get its grace period), finishes background work (10 s at most),
    /// writes every queued audit event, then closes the pool.
    pub async fn close(&self) {
        if let Some(sending) = &self.sending {
            sending
                .shutdown(self.state.config.jobs.shutdown_grace)
                .await;
        }
        let interrupted = self.jobs.shutdown().await;
        if interrupted > 0 {
            tracing::warn!(
                interrupted,
                "jobs still running at shutdown were queued again"
            );
        }
        self.periodic
            .shutdown(self.state.config.jobs.shutdown_grace)
            .await;
        if !self
            .state
            .background
            .wait_idle(Duration::from_secs(10))
            .await
        {
            tracing::warn!(
                "background work still running at shutdown; undelivered mail stays in the outbox as pending"
            );
        }
        self.auditor.shutdown().await;
        self.state.db.close().await;
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
    let db = Db::connect_with(&config.database_url, config.db_pool)
        .await
        .map_err(|e| {
            StartError(format!(
                "database {}: {e}",
                crate::config::redact_url(&config.database_url)
            ))
        })?;
    tracing::info!(backend = ?db.backend, "database connected and migrated");
    let passwords =
        Passwords::new(config.argon2).map_err(|e| StartError(format!("argon2 parameters: {e}")))?;
    let jwt_secret = jwt_secret(&config, &db).await?;
    let redis = match &config.redis_url {
        Some(url) => Some(redis::Client::open(url.as_str()).map_err(|e| {
            StartError(format!("REDIS_URL {}: {e}", crate::config::redact_url(url)))
        })?),
        None => None,
    };
    let http = http_client::new_client();
    let background = Background::new();
    let mailer = Mailer::new(
        db.clone(),
        config.mail_from.clone(),
        config
            .postmark
            .clone()
            .map(|p| (p, http_client::retrying_client(config.mail_circuit))),
        config.clock.clone(),
        background.clone(),
    );
    // The language model and the job queue (issue 17).
    let language_model: Arc<dyn LanguageModel> = match &config.ai.anthropic {
        Some(anthropic) => {
            tracing::info!(
                base_url = anthropic.base_url,
                "language model: Anthropic Messages API"
            );
            Arc::new(ai::Anthropic::new(
                anthropic.clone(),
                db.clone(),
                config.clock.clone(),
            ))
        }
        None => Arc::new(ai::Offline),
    };
    let job_queue = JobQueue::new(db.clone(), config.clock.clone(), &config.jobs);
    let state = AppState(Arc::new(Inner {
        jwt: JwtKeys::new(&jwt_secret, config.jwt_ttl),
        cookie_key: cookie_key(&jwt_secret),
        passwords,
        mailer,
        background,
        login_limiter: RateLimiter::new(
            "login",
            config.login_limit,
            config.clock.clone(),
            redis.clone(),
        ),
        forgot_limiter: RateLimiter::new(
            "forgot-password",
            config.forgot_password_limit,
            config.clock.clone(),
            redis.clone(),
        ),
        http,
        started: Instant::now(),
        ai: language_model,
        jobs: job_queue,
        stripe: config
            .stripe
            .api
            .clone()
            .map(crate::billing::stripe::Stripe::new),
        db,
        config,
    }));
    let auditor = audit::auditor(state.db.clone());
    let routes = match redis {
        Some(client) => {
            tracing::info!("idempotency keys and rate limits are kept in Redis");
            routes(state.clone(), RedisStore::new(client))
        }
        None => routes(state.clone(), MemoryStore::new()),
    };
    let app = stack(
        routes,
        state.config.body_limit,
        audit::layer(auditor.clone(), state.config.trusted_proxies.clone()),
        state.config.overload.map(overload_layer),
        state.config.route_timeouts.clone(),
    );
    let mailer = state
        .config
        .postmark
        .is_some()
        .then(|| state.mailer.clone());
    let periodic = Arc::new(state.jobs.spawn_periodic(mailer));
    let runner = state
        .jobs
        .runner(job_kinds(&state), state.config.jobs.clone())
        .spawn();
    // Sending's own apalis-cron schedule, beside the periodic work above
    // (see `sending::periodic`).
    let sending = state
        .config
        .sending
        .tick
        .map(|every| Arc::new(sending::worker::Worker::new(&state).schedule(every)));
    Ok((
        app,
        AppHandles {
            state,
            auditor,
            periodic,
            jobs: runner,
            sending,
        },
    ))
}

/// The kinds of background job this server runs (each domain registers its
/// own here, e.g. email generation).
fn job_kinds(state: &AppState) -> Registry {
    let registry = emails::generate::register(Registry::new(), state);
    inbox::jobs::register(registry, state)
}

/// The JWT signing secret: the configured one, else (development only) the one
/// drawn once and kept in the database, so sessions survive a restart.
async fn jwt_secret(config: &Config, db: &Db) -> Result<Vec<u8>, StartError> {
    if let Some(secret) = &config.jwt_secret {
        return Ok(secret.clone());
    }
    if config.mode == Mode::Production {
        return Err(StartError("JWT_SECRET is required in production".into()));
    }
    let stored = db::server_secrets::get_or_create(
        &db.pool,
        "jwt_secret",
        &auth::random_token(),
        config.clock.now(),
    )
    .await
    .map_err(|e| StartError(format!("the stored JWT secret: {e}")))?;
    Ok(stored.into_bytes())
}

/// The private-cookie key: the SHA-512 of the JWT secret under its own label
/// (64 bytes: the cookie crate's signing and encryption halves), so the two
/// uses never share a key.
fn cookie_key(jwt_secret: &[u8]) -> axum_extra::extract::cookie::Key {
    use sha2::{Digest, Sha512};
    let master = Sha512::new()
        .chain_update(b"koldly private cookies\0")
        .chain_update(jwt_secret)
        .finalize();
    axum_extra::extract::cookie::Key::from(&master)
}

/// The scope of an idempotency key: the verified user (put on the request by
/// [`auth::extract::resolve_session`], which runs first), else the client IP
/// as `proxies` resolve it (signup and forgot-password are anonymous). A token
/// that does not verify names nobody: its request is scoped by IP, and its
/// handler answers 401.
///
/// koldly's only use of the library's scope callback.
pub fn idempotency_scope(
    proxies: TrustedProxies,
) -> impl Fn(&Parts) -> Option<String> + Clone + Send + Sync + 'static {
    move |parts: &Parts| {
        if let Some(AuthUser(user)) = parts.extensions.get::<AuthUser>() {
            return Some(format!("user:{}", user.id));
        }
        proxies
            .client_ip(TrustedProxies::peer_ip(&parts.extensions), &parts.headers)
            .map(|ip| format!("ip:{ip}"))
    }
}

/// The limit axum's body extractors apply unless told otherwise.
const AXUM_DEFAULT_BODY_LIMIT: usize = 2 * 1024 * 1024;

/// The routes, with idempotency on its route group, `GET /api/openapi.json`
/// and the `/docs` page. Every route is registered through an
/// [`OpenApiRouter`], so it is documented where it is routed ([`openapi`]).
pub fn routes<St: Store + Clone>(state: AppState, store: St) -> Router {
    let product = product_routes(&state, store.clone());
    let idempotency = IdempotencyLayer::new(store)
        .scope(idempotency_scope(state.config.trusted_proxies.clone()))
        .lock_ttl(state.config.idempotency_lock_ttl)
        .max_request_bytes(state.config.body_limit);
    let idempotent = OpenApiRouter::new()
        .nest("/api/auth", auth::idempotent_api_routes())
        .layer(idempotency)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::extract::resolve_session,
        ));
    let plain = OpenApiRouter::new()
        .merge(health::routes())
        .nest("/api/auth", auth::api_routes())
        .nest("/auth", auth::oauth_routes())
        .merge(jobs::routes::routes())
        .merge(webhooks::routes())
        .merge(sending::public_routes())
        .merge(crate::billing::webhook_routes());
    let (router, _) = openapi::serve_docs(idempotent.merge(plain).merge(product));
    router.with_state(state)
}

/// The product's routes (campaigns, prospects, ICP templates, onboarding),
/// every one behind a bearer token. Their `POST`s (the creating routes)
/// deduplicate on `Idempotency-Key`, scoped by the user
/// [`auth::extract::resolve_session`] verified first; a request without a
/// valid token falls back to the client IP as its scope and is answered 401
/// by the handler.
fn product_routes<St: Store>(state: &AppState, store: St) -> OpenApiRouter<AppState> {
    let idempotency = IdempotencyLayer::new(store)
        .scope(idempotency_scope(state.config.trusted_proxies.clone()))
        .methods([http::Method::POST])
        .lock_ttl(state.config.idempotency_lock_ttl)
        .max_request_bytes(state.config.body_limit);
    OpenApiRouter::new()
        .merge(campaigns::routes())
        .merge(prospects::routes())
        .merge(icp::routes())
        .merge(onboarding::routes())
        .merge(emails::routes())
        .merge(inbox::routes())
        .merge(sending::routes())
        .merge(crate::billing::routes())
        .merge(crate::dashboard::routes())
        .merge(crate::admin::routes())
        .layer(idempotency)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::extract::resolve_session,
        ))
}

/// Overload protection for the API (layer 6): AIMD between a floor of
/// [`OVERLOAD_MIN_LIMIT`] (or the ceiling, if lower) and the configured
/// ceiling, starting at [`OVERLOAD_INITIAL_LIMIT`], a request slower than
/// [`OVERLOAD_LATENCY_TARGET`] counting as a sign of too much concurrency.
pub fn overload_layer(settings: OverloadSettings) -> OverloadLayer {
    let max = settings.max_concurrency.max(1);
    OverloadLayer::new(
        OverloadConfig::new()
            .max_limit(max)
            .initial_limit(OVERLOAD_INITIAL_LIMIT.min(max))
            .min_limit(OVERLOAD_MIN_LIMIT.min(max))
            .latency_target(OVERLOAD_LATENCY_TARGET)
            .max_queue(settings.max_queue),
    )
}

/// Where the adaptive limit starts.
pub const OVERLOAD_INITIAL_LIMIT: u32 = 50;

/// The adaptive limit never falls below this: a slow dependency (a provider
/// call a request waits for, retries included) also makes requests slow, and
/// must not shrink the server to a request or two at a time.
pub const OVERLOAD_MIN_LIMIT: u32 = 10;

/// Slower than this, a request says the server runs too much at once. koldly's
/// handlers answer in milliseconds, password hashing in about 0.1 s; the
/// target sits well above both and well under the 12–15 s route timeouts.
pub const OVERLOAD_LATENCY_TARGET: Duration = Duration::from_secs(2);

/// Lets a response through unchanged, in the overload layer's body type: the
/// stack's type when overload protection is off.
fn without_overload<B: http_body::Body>(res: Response<B>) -> Response<ResponseBody<B>> {
    res.map(ResponseBody::inner)
}

/// `routes` inside the common layers (see the module docs).
fn stack(
    routes: Router,
    body_limit: usize,
    audit: AuditLayer,
    overload: Option<OverloadLayer>,
    timeouts: TimeoutTable,
) -> impl App {
    let overload = match overload {
        Some(layer) => Either::Left(layer),
        None => Either::Right(MapResponseLayer::new(without_overload)),
    };
    ServiceBuilder::new()
        // axum's server takes its own body type: the one box per response that
        // `Router::layer` would also make.
        .map_response(IntoResponse::into_response)
        .map_request(redact_secret_path)
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
        .layer(audit)
        .layer(ErrorHandlerLayer::new())
        .layer(RouteTimeoutLayer::new(timeouts))
        .layer(overload)
        .option_layer((body_limit > AXUM_DEFAULT_BODY_LIMIT).then(DefaultBodyLimit::disable))
        .layer(RequestBodyLimitLayer::new(body_limit))
        .layer(text_input::RejectHostileTextLayer)
        .service(routes)
}

/// Replaces a secret path segment (see [`auth::redact_path`]) before any layer
/// sees the path: the span, the error handler's log and the audit event then
/// record `REDACTED`, and the router answers 404.
fn redact_secret_path<B>(mut req: Request<B>) -> Request<B> {
    // An unsubscribe token: its route needs it, so it moves to an extension.
    if let Some((redacted, token)) = sending::unsubscribe::split_secret_path(req.uri().path()) {
        req.extensions_mut().insert(token);
        *req.uri_mut() =
            http::Uri::try_from(redacted).unwrap_or_else(|_| http::Uri::from_static("/REDACTED"));
        return req;
    }
    if let Some(redacted) = auth::redact_path(req.uri().path()) {
        match redacted.parse() {
            Ok(uri) => *req.uri_mut() = uri,
            Err(_) => *req.uri_mut() = http::Uri::from_static("/REDACTED"),
        }
    }
    req
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
/// provider), dashboards and admin metrics 30 s (they aggregate), everything
/// else 15 s.
pub fn timeouts() -> TimeoutTable {
    TimeoutTable::new(Duration::from_secs(15))
        .prefix("/api/auth/", Duration::from_secs(12))
        .prefix("/auth/", Duration::from_secs(12))
        .prefix("/api/dashboard/", Duration::from_secs(30))
        .prefix("/api/admin/", Duration::from_secs(30))
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
            limit("/api/dashboard/email-activity"),
            Limit::After(Duration::from_secs(30))
        );
        assert_eq!(
            limit("/api/admin/metrics"),
            Limit::After(Duration::from_secs(30))
        );
        assert_eq!(
            limit("/api/billing/checkout"),
            Limit::After(Duration::from_secs(15))
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
