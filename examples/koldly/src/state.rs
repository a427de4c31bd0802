//! The state every handler shares.

use std::{ops::Deref, sync::Arc, time::Instant};

use axum::extract::FromRef;
use axum_extra::extract::cookie::Key;

use crate::{
    ai::LanguageModel,
    auth::{jwt::JwtKeys, password::Passwords, rate_limit::RateLimiter},
    background::Background,
    config::Config,
    db::Db,
    http_client::HttpClient,
    jobs::JobQueue,
    mail::Mailer,
};

/// Cheap to clone: one `Arc`.
#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

/// What [`AppState`] holds.
pub struct Inner {
    /// The configuration it started with.
    pub config: Config,
    /// The database.
    pub db: Db,
    /// Session tokens.
    pub jwt: JwtKeys,
    /// Seals private cookies (the OAuth flow's), derived from the JWT secret.
    pub cookie_key: Key,
    /// Password hashing.
    pub passwords: Passwords,
    /// Outgoing mail.
    pub mailer: Mailer,
    /// Work that runs after its request answered (the mailer's too).
    pub background: Background,
    /// Login attempts per client.
    pub login_limiter: RateLimiter,
    /// Forgot-password requests per client.
    pub forgot_limiter: RateLimiter,
    /// Outgoing HTTP (OAuth provider).
    pub http: HttpClient,
    /// When the server started.
    pub started: Instant,
    /// The language model (offline unless `AI_API_KEY` is set).
    pub ai: Arc<dyn LanguageModel>,
    /// Where routes queue background jobs.
    pub jobs: JobQueue,
    /// The Stripe API (`None` without `STRIPE_SECRET_KEY`: billing not configured).
    pub stripe: Option<crate::billing::stripe::Stripe>,
}

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The key axum-extra's `PrivateCookieJar` seals and opens cookies with.
impl FromRef<AppState> for Key {
    fn from_ref(state: &AppState) -> Key {
        state.cookie_key.clone()
    }
}

impl AppState {
    /// The current time in unix seconds, from the configured clock.
    pub fn now(&self) -> i64 {
        self.config.clock.now()
    }
}
