//! The state every handler shares.

use std::{ops::Deref, sync::Arc, time::Instant};

use crate::{
    auth::{jwt::JwtKeys, password::Passwords, rate_limit::RateLimiter},
    background::Background,
    config::Config,
    db::Db,
    http_client::HttpClient,
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
}

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// The current time in unix seconds, from the configured clock.
    pub fn now(&self) -> i64 {
        self.config.clock.now()
    }
}
