//! Configuration from environment variables (see `--help` and the README).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use crate::{
    ai::AiConfig,
    clock::{Clock, SystemClock},
    jobs::JobsConfig,
};

/// The `--help` text: every environment variable koldly reads.
pub const HELP: &str = "\
koldly — steadfast's reference server (the Koldly cold-email outreach API)

USAGE:
    koldly [--help]

Configuration is read from environment variables:

    KOLDLY_ENV            `production` or `development` (default development)
    BIND_ADDR             address to listen on (default 127.0.0.1:8080)
    DATABASE_URL          sqlite:PATH or postgres://USER@HOST:PORT/DB[?sslmode=verify-full]
                          (default sqlite:koldly.db, created and migrated at start)
    JWT_SECRET            HS256 signing secret, at least 32 bytes; required in production,
                          a random one per start (with a warning) in development
    REDIS_URL             redis://HOST:PORT/ — idempotency store shared by several instances
                          (default: in memory, one instance)
    PUBLIC_URL            base URL of the front-end for links in mail and the OAuth
                          redirect (default http://127.0.0.1:8080)
    POSTMARK_TOKEN        Postmark server token; when unset mail goes to the mail_outbox
                          table and the log
    POSTMARK_URL          Postmark API base URL (default https://api.postmarkapp.com)
    MAIL_FROM             sender address (default Koldly <no-reply@koldly.local>)
    GOOGLE_CLIENT_ID      enables Sign in with Google (with GOOGLE_CLIENT_SECRET)
    GOOGLE_CLIENT_SECRET
    GOOGLE_AUTH_URL       default https://accounts.google.com/o/oauth2/v2/auth
    GOOGLE_TOKEN_URL      default https://oauth2.googleapis.com/token
    GOOGLE_USERINFO_URL   default https://openidconnect.googleapis.com/v1/userinfo
    OAUTH_REDIRECT_URL    this server's callback (default PUBLIC_URL/auth/google/callback)
    RUST_LOG              log filter (default info); LOG_FORMAT=json for JSON lines
";

/// Which mode the server runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Local development: a random JWT secret is allowed.
    Development,
    /// Production: every secret must be configured.
    Production,
}

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Argon2Params {
    /// OWASP's recommendation for argon2id: 19 MiB, 2 iterations, 1 lane.
    pub const OWASP: Self = Self {
        m_cost: 19 * 1024,
        t_cost: 2,
        p_cost: 1,
    };
    /// Cheap parameters for tests only.
    pub const TESTING: Self = Self {
        m_cost: 64,
        t_cost: 1,
        p_cost: 1,
    };
}

/// A fixed-window rate limit.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    /// Requests allowed per window.
    pub max: u32,
    /// Window length.
    pub window: Duration,
}

/// Postmark-compatible mail provider settings.
#[derive(Debug, Clone)]
pub struct PostmarkConfig {
    /// Server token (`X-Postmark-Server-Token`).
    pub token: String,
    /// API base URL.
    pub url: String,
}

/// Google OAuth 2.0 settings.
#[derive(Debug, Clone)]
pub struct GoogleConfig {
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: String,
    /// Authorization endpoint.
    pub auth_url: String,
    /// Token endpoint.
    pub token_url: String,
    /// Userinfo endpoint.
    pub userinfo_url: String,
    /// This server's callback URL, registered with the provider.
    pub redirect_url: String,
}

/// Everything the server needs to start.
#[derive(Clone)]
pub struct Config {
    /// Development or production.
    pub mode: Mode,
    /// Listen address.
    pub bind_addr: SocketAddr,
    /// `sqlite:...` or `postgres://...`.
    pub database_url: String,
    /// HS256 secret.
    pub jwt_secret: Vec<u8>,
    /// JWT lifetime.
    pub jwt_ttl: Duration,
    /// Redis for the shared idempotency store.
    pub redis_url: Option<String>,
    /// Base URL for links.
    pub public_url: String,
    /// Mail provider; `None` writes to the outbox table.
    pub postmark: Option<PostmarkConfig>,
    /// Sender address.
    pub mail_from: String,
    /// Sign in with Google; `None` disables it.
    pub google: Option<GoogleConfig>,
    /// Password hashing cost.
    pub argon2: Argon2Params,
    /// Login attempts per client IP.
    pub login_limit: RateLimit,
    /// Forgot-password requests per client IP.
    pub forgot_password_limit: RateLimit,
    /// Largest request body accepted.
    pub body_limit: usize,
    /// How long in-flight requests may run after a shutdown signal.
    pub shutdown_grace: Duration,
    /// The clock for token expiry and rate limits (injectable for tests).
    pub clock: Arc<dyn Clock>,
    /// The language model (`AI_*`, see [`AiConfig`]).
    pub ai: AiConfig,
    /// The job runner (`JOB_*`, see [`JobsConfig`]).
    pub jobs: JobsConfig,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("mode", &self.mode)
            .field("bind_addr", &self.bind_addr)
            .field("database", &redact_url(&self.database_url))
            .field("redis", &self.redis_url.as_deref().map(redact_url))
            .field("public_url", &self.public_url)
            .field("postmark", &self.postmark.is_some())
            .field("google", &self.google.is_some())
            .finish_non_exhaustive()
    }
}

/// A URL with its password replaced, for logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Why the configuration could not be read.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// A development configuration for `database_url`: random JWT secret, mail to
    /// the outbox, no Google, OWASP argon2 costs. Tests start from this.
    pub fn development(database_url: impl Into<String>) -> Self {
        Self {
            mode: Mode::Development,
            bind_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: database_url.into(),
            jwt_secret: random_secret(),
            jwt_ttl: Duration::from_secs(7 * 24 * 3600),
            redis_url: None,
            public_url: "http://127.0.0.1:8080".to_owned(),
            postmark: None,
            mail_from: "Koldly <no-reply@koldly.local>".to_owned(),
            google: None,
            argon2: Argon2Params::OWASP,
            login_limit: RateLimit {
                max: 5,
                window: Duration::from_secs(15 * 60),
            },
            forgot_password_limit: RateLimit {
                max: 3,
                window: Duration::from_secs(3600),
            },
            body_limit: 64 * 1024,
            shutdown_grace: Duration::from_secs(20),
            clock: Arc::new(SystemClock),
            ai: AiConfig::default(),
            jobs: JobsConfig::default(),
        }
    }

    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// Reads the configuration through `get` (the environment, or a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mode = match get("KOLDLY_ENV").as_deref() {
            None | Some("development") | Some("dev") => Mode::Development,
            Some("production") | Some("prod") => Mode::Production,
            Some(other) => {
                return Err(ConfigError(format!(
                    "KOLDLY_ENV must be `production` or `development`, not `{other}`"
                )));
            }
        };
        let mut config =
            Self::development(get("DATABASE_URL").unwrap_or_else(|| "sqlite:koldly.db".to_owned()));
        config.mode = mode;
        if let Some(addr) = get("BIND_ADDR") {
            config.bind_addr = addr
                .parse()
                .map_err(|e| ConfigError(format!("BIND_ADDR `{addr}`: {e}")))?;
        }
        match get("JWT_SECRET") {
            Some(secret) if secret.len() >= 32 => config.jwt_secret = secret.into_bytes(),
            Some(_) => return Err(ConfigError("JWT_SECRET must be at least 32 bytes".into())),
            None if mode == Mode::Production => {
                return Err(ConfigError(
                    "JWT_SECRET is required when KOLDLY_ENV=production".into(),
                ));
            }
            None => tracing::warn!(
                "JWT_SECRET is not set: using a random secret for this run; tokens will not survive a restart"
            ),
        }
        config.redis_url = get("REDIS_URL");
        if let Some(public) = get("PUBLIC_URL") {
            config.public_url = public.trim_end_matches('/').to_owned();
        }
        if let Some(token) = get("POSTMARK_TOKEN") {
            config.postmark = Some(PostmarkConfig {
                token,
                url: get("POSTMARK_URL")
                    .unwrap_or_else(|| "https://api.postmarkapp.com".to_owned()),
            });
        }
        if let Some(from) = get("MAIL_FROM") {
            config.mail_from = from;
        }
        match (get("GOOGLE_CLIENT_ID"), get("GOOGLE_CLIENT_SECRET")) {
            (Some(client_id), Some(client_secret)) => {
                config.google = Some(GoogleConfig {
                    client_id,
                    client_secret,
                    auth_url: get("GOOGLE_AUTH_URL").unwrap_or_else(|| {
                        "https://accounts.google.com/o/oauth2/v2/auth".to_owned()
                    }),
                    token_url: get("GOOGLE_TOKEN_URL")
                        .unwrap_or_else(|| "https://oauth2.googleapis.com/token".to_owned()),
                    userinfo_url: get("GOOGLE_USERINFO_URL").unwrap_or_else(|| {
                        "https://openidconnect.googleapis.com/v1/userinfo".to_owned()
                    }),
                    redirect_url: get("OAUTH_REDIRECT_URL")
                        .unwrap_or_else(|| format!("{}/auth/google/callback", config.public_url)),
                })
            }
            (None, None) => {}
            _ => {
                return Err(ConfigError(
                    "GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET must be set together".into(),
                ));
            }
        }
        config.ai = AiConfig::from_lookup(&get).map_err(ConfigError)?;
        config.jobs = JobsConfig::from_lookup(&get).map_err(ConfigError)?;
        if mode == Mode::Production && config.postmark.is_none() {
            tracing::warn!("POSTMARK_TOKEN is not set: mail goes to the mail_outbox table only");
        }
        Ok(config)
    }
}

/// 32 random bytes from the OS.
fn random_secret() -> Vec<u8> {
    use rand::RngCore;
    let mut secret = vec![0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    secret
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn help_lists_every_variable() {
        for var in [
            "KOLDLY_ENV",
            "BIND_ADDR",
            "DATABASE_URL",
            "JWT_SECRET",
            "REDIS_URL",
            "PUBLIC_URL",
            "POSTMARK_TOKEN",
            "POSTMARK_URL",
            "MAIL_FROM",
            "GOOGLE_CLIENT_ID",
            "GOOGLE_CLIENT_SECRET",
            "GOOGLE_AUTH_URL",
            "GOOGLE_TOKEN_URL",
            "GOOGLE_USERINFO_URL",
            "OAUTH_REDIRECT_URL",
        ] {
            assert!(HELP.contains(var), "{var} is documented in --help");
        }
    }

    #[test]
    fn production_requires_a_jwt_secret() {
        let err = Config::from_lookup(lookup(&[("KOLDLY_ENV", "production")])).unwrap_err();
        assert!(err.0.contains("JWT_SECRET"), "{err}");
    }

    #[test]
    fn development_secrets_are_random_per_start() {
        let a = Config::from_lookup(lookup(&[])).unwrap();
        let b = Config::from_lookup(lookup(&[])).unwrap();
        assert_ne!(a.jwt_secret, b.jwt_secret);
        assert_eq!(a.jwt_secret.len(), 32);
    }

    #[test]
    fn reads_every_variable() {
        let c = Config::from_lookup(lookup(&[
            ("KOLDLY_ENV", "production"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            ("BIND_ADDR", "0.0.0.0:9000"),
            ("DATABASE_URL", "postgres://u:pw@db/x"),
            ("GOOGLE_CLIENT_ID", "id"),
            ("GOOGLE_CLIENT_SECRET", "s"),
            ("PUBLIC_URL", "https://app.example/"),
            ("POSTMARK_TOKEN", "t"),
        ]))
        .unwrap();
        assert_eq!(c.bind_addr.port(), 9000);
        assert_eq!(c.public_url, "https://app.example");
        assert_eq!(
            c.google.as_ref().unwrap().redirect_url,
            "https://app.example/auth/google/callback"
        );
        assert!(!format!("{c:?}").contains("pw"), "the password is redacted");
        assert!(Config::from_lookup(lookup(&[("JWT_SECRET", "short")])).is_err());
        assert!(Config::from_lookup(lookup(&[("BIND_ADDR", "nope")])).is_err());
    }
}
