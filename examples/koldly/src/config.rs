//! Configuration: command-line flags, each also an environment variable,
//! read with clap's derive ([`Cli`]; `koldly --help` is generated from it), then
//! checked and turned into the [`Config`] the server runs with.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use clap::{CommandFactory, Parser};
use steadfast::audit::{IpRange, TrustedProxies};

use crate::{
    ai::{AiConfig, AnthropicConfig, Models, Pricing},
    clock::{Clock, SystemClock},
    http_client::CircuitSettings,
    jobs::JobsConfig,
    sending::config::SendingConfig,
    webhooks::signature::SigningKey,
};

/// koldly's command line. Every flag is also read from the environment
/// variable shown in `--help`; a flag wins over its variable. (No `Debug`:
/// it holds secrets.)
#[derive(Parser)]
#[command(
    name = "koldly",
    version,
    about = "koldly — steadfast's reference server (the Koldly cold-email outreach API)",
    after_help = "Logging: RUST_LOG sets the filter (default info); LOG_FORMAT=json writes JSON lines."
)]
pub struct Cli {
    /// `production` or `development` (`prod`, `dev`).
    #[arg(long = "env", env = "KOLDLY_ENV", default_value = "development", value_parser = parse_mode)]
    pub mode: Mode,
    /// Address to listen on.
    #[arg(long, env = "BIND_ADDR", default_value = "127.0.0.1:8080")]
    pub bind_addr: SocketAddr,
    /// `sqlite:PATH` or `postgres://USER@HOST:PORT/DB[?sslmode=verify-full]`,
    /// created and migrated at start.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite:koldly.db")]
    pub database_url: String,
    /// HS256 signing secret, at least 32 bytes; required in production. In
    /// development, without it, one is drawn once and kept in the database.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// `redis://HOST:PORT/`: idempotency keys and rate limits shared by
    /// several instances (default: in memory, one instance).
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// How long, in seconds, an `Idempotency-Key` stays claimed by a request
    /// that never completes (its process died): retries are answered 409
    /// until then. Above the longest a keyed request may take; 1 to 3600.
    #[arg(long, env = "IDEMPOTENCY_LOCK_TTL_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub idempotency_lock_ttl_secs: u64,
    /// Comma-separated addresses or CIDR ranges of reverse proxies whose
    /// `X-Forwarded-For` is believed (default: none; the peer is the client).
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_range)]
    pub trusted_proxies: Vec<IpRange>,
    /// Base URL of the front-end, for links in mail and the OAuth redirect.
    #[arg(long, env = "PUBLIC_URL", default_value = "http://127.0.0.1:8080")]
    pub public_url: String,
    /// Postmark server token; when unset, mail goes to the `mail_outbox`
    /// table and the log.
    #[arg(long, env = "POSTMARK_TOKEN", hide_env_values = true)]
    pub postmark_token: Option<String>,
    /// Postmark API base URL.
    #[arg(
        long,
        env = "POSTMARK_URL",
        default_value = "https://api.postmarkapp.com"
    )]
    pub postmark_url: String,
    /// The mail provider's circuit breaker: the fewest calls counted before
    /// it may open (it opens when half of the last 20 failed).
    #[arg(long, env = "MAIL_CIRCUIT_MIN_CALLS", default_value_t = 5)]
    pub mail_circuit_min_calls: u32,
    /// How long, in seconds, an open mail circuit refuses sends (they stay in
    /// the outbox for the outbox job).
    #[arg(long, env = "MAIL_CIRCUIT_OPEN_SECS", default_value_t = 30)]
    pub mail_circuit_open_secs: u64,
    /// The mail provider's webhook signing key (Mailgun's "HTTP webhook
    /// signing key"): `/api/webhooks/mail-events` and `/api/webhooks/inbound`
    /// verify every delivery with it; without it they answer 503.
    #[arg(long, env = "MAIL_WEBHOOK_SIGNING_KEY", hide_env_values = true)]
    pub mail_webhook_signing_key: Option<String>,
    /// Sender address.
    #[arg(
        long,
        env = "MAIL_FROM",
        default_value = "Koldly <no-reply@koldly.local>"
    )]
    pub mail_from: String,
    /// Enables Sign in with Google (with the client secret).
    #[arg(long, env = "GOOGLE_CLIENT_ID")]
    pub google_client_id: Option<String>,
    /// Google OAuth client secret.
    #[arg(long, env = "GOOGLE_CLIENT_SECRET", hide_env_values = true)]
    pub google_client_secret: Option<String>,
    /// Google's authorization endpoint.
    #[arg(
        long,
        env = "GOOGLE_AUTH_URL",
        default_value = "https://accounts.google.com/o/oauth2/v2/auth"
    )]
    pub google_auth_url: String,
    /// Google's token endpoint.
    #[arg(
        long,
        env = "GOOGLE_TOKEN_URL",
        default_value = "https://oauth2.googleapis.com/token"
    )]
    pub google_token_url: String,
    /// Google's userinfo endpoint.
    #[arg(
        long,
        env = "GOOGLE_USERINFO_URL",
        default_value = "https://openidconnect.googleapis.com/v1/userinfo"
    )]
    pub google_userinfo_url: String,
    /// This server's OAuth callback, registered with Google (default
    /// `PUBLIC_URL/auth/google/callback`).
    #[arg(long, env = "OAUTH_REDIRECT_URL")]
    pub oauth_redirect_url: Option<String>,
    /// The largest request body accepted, in bytes.
    #[arg(long, env = "BODY_LIMIT", default_value_t = 64 * 1024)]
    pub body_limit: usize,
    /// Anthropic API key; set, emails are drafted through the Messages API,
    /// unset, by the offline provider (no network, deterministic).
    #[arg(long, env = "AI_API_KEY", hide_env_values = true)]
    pub ai_api_key: Option<String>,
    /// Messages API base URL (http or https).
    #[arg(long, env = "AI_BASE_URL", default_value = "https://api.anthropic.com")]
    pub ai_base_url: String,
    /// The model of every task.
    #[arg(long, env = "AI_MODEL", default_value = "claude-sonnet-4-5")]
    pub ai_model: String,
    /// The model of the ICP parsing task (default `AI_MODEL`).
    #[arg(long, env = "AI_MODEL_PARSE_ICP")]
    pub ai_model_parse_icp: Option<String>,
    /// The model of the email drafting task (default `AI_MODEL`).
    #[arg(long, env = "AI_MODEL_DRAFT_EMAIL")]
    pub ai_model_draft_email: Option<String>,
    /// The model of the follow-up drafting task (default `AI_MODEL`).
    #[arg(long, env = "AI_MODEL_DRAFT_FOLLOW_UP")]
    pub ai_model_draft_follow_up: Option<String>,
    /// The model of the reply filing task (default `AI_MODEL`).
    #[arg(long, env = "AI_MODEL_CATEGORIZE_REPLY")]
    pub ai_model_categorize_reply: Option<String>,
    /// The model of the reply drafting task (default `AI_MODEL`).
    #[arg(long, env = "AI_MODEL_DRAFT_REPLY")]
    pub ai_model_draft_reply: Option<String>,
    /// Answer tokens per call (bounds a call's cost), 1 to 64000.
    #[arg(long, env = "AI_MAX_TOKENS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=64_000))]
    pub ai_max_tokens: u32,
    /// One attempt's time limit, in seconds (at least 1).
    #[arg(long, env = "AI_ATTEMPT_TIMEOUT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub ai_attempt_timeout_secs: u64,
    /// Retries of a 429, 503 or 529 answer, 0 to 10.
    #[arg(long, env = "AI_MAX_RETRIES", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(0..=10))]
    pub ai_max_retries: u32,
    /// Price of a prompt token, in microcents (1e-6 cent).
    #[arg(long, env = "AI_INPUT_MICROCENTS_PER_TOKEN", default_value_t = 300,
          value_parser = clap::value_parser!(i64).range(0..))]
    pub ai_input_microcents_per_token: i64,
    /// Price of an answer token, in microcents (1e-6 cent).
    #[arg(long, env = "AI_OUTPUT_MICROCENTS_PER_TOKEN", default_value_t = 1500,
          value_parser = clap::value_parser!(i64).range(0..))]
    pub ai_output_microcents_per_token: i64,
    /// Background jobs of one kind run at once per process, 1 to 256.
    #[arg(long, env = "JOB_WORKERS", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub job_workers: u16,
    /// apalis lease of a worker's jobs, in seconds (a heartbeat every third,
    /// timed by the database's clock), 3 to 3600.
    #[arg(long, env = "JOB_LEASE_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(3..=3600))]
    pub job_lease_secs: u64,
    /// One job attempt's time limit, in seconds, 1 to 86400.
    #[arg(long, env = "JOB_TIMEOUT_SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub job_timeout_secs: u64,
    /// How often each kind's apalis queue is polled, in milliseconds, 10 to 600000.
    #[arg(long, env = "JOB_POLL_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub job_poll_ms: u64,
    /// How long running jobs may finish at shutdown, in seconds, 0 to 3600.
    #[arg(long, env = "JOB_SHUTDOWN_GRACE_SECS", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub job_shutdown_grace_secs: u64,
    /// Attempts (starts) of a job before it fails, 1 to 100.
    #[arg(long, env = "JOB_MAX_ATTEMPTS", default_value_t = 3,
          value_parser = clap::value_parser!(i64).range(1..=100))]
    pub job_max_attempts: i64,
    /// The language model provider's circuit breaker: the fewest calls
    /// counted before a failure rate can open it.
    #[arg(long, env = "AI_CIRCUIT_MIN_CALLS", default_value_t = 5)]
    pub ai_circuit_min_calls: u32,
    /// How long, in seconds, an open AI circuit refuses calls.
    #[arg(long, env = "AI_CIRCUIT_OPEN_SECS", default_value_t = 30)]
    pub ai_circuit_open_secs: u64,
    /// Overload protection on the API: requests beyond an adaptive
    /// concurrency limit wait in a bounded queue or are refused at once with
    /// 503 and `Retry-After` (`false` turns it off).
    /// A Mailgun-compatible API for campaign mail (unset: the sent_mail table).
    #[arg(long, env = "MAIL_API_BASE")]
    pub mail_api_base: Option<String>,
    /// Its key.
    #[arg(long, env = "MAIL_API_KEY", hide_env_values = true)]
    pub mail_api_key: Option<String>,
    /// How often the sending tick runs (an apalis-cron schedule), in ms,
    /// rounded up to whole seconds (0: this process sends nothing).
    #[arg(long, env = "SENDING_TICK_MS", default_value_t = 5000)]
    pub sending_tick_ms: u64,
    /// How long a message may stay `sending` before it is `unknown`.
    #[arg(long, env = "SENDING_LEASE_SECS", default_value_t = 120)]
    pub sending_lease_secs: u64,
    #[arg(long, env = "OVERLOAD_PROTECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub overload_protection: bool,
    /// The most requests the API runs at once (the adaptive limit's ceiling).
    #[arg(long, env = "OVERLOAD_MAX_CONCURRENCY", default_value_t = 200)]
    pub overload_max_concurrency: u32,
    /// The most requests waiting for a slot; more are refused at once.
    #[arg(long, env = "OVERLOAD_MAX_QUEUE", default_value_t = 100)]
    pub overload_max_queue: usize,
    /// Billing with Stripe (`STRIPE_*`).
    #[command(flatten)]
    pub stripe: crate::billing::config::StripeArgs,
    /// A one-off command instead of serving (`koldly admin grant EMAIL`).
    #[command(subcommand)]
    pub command: Option<crate::admin::cli::Command>,
}

fn parse_mode(text: &str) -> Result<Mode, String> {
    match text {
        "development" | "dev" => Ok(Mode::Development),
        "production" | "prod" => Ok(Mode::Production),
        other => Err(format!(
            "must be `production` or `development`, not `{other}`"
        )),
    }
}

fn parse_range(text: &str) -> Result<IpRange, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("`{text}` is not an address or CIDR range"))
}

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

/// A rate limit: `max` requests at once, refilled evenly over `window` (GCRA;
/// see [`auth::rate_limit`](crate::auth::rate_limit)).
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    /// Requests allowed at once, and per window.
    pub max: u32,
    /// The time in which the whole budget refills.
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

/// Overload protection's settings (see [`crate::app`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverloadSettings {
    /// The most requests run at once (at least 1).
    pub max_concurrency: u32,
    /// The most requests waiting for a slot.
    pub max_queue: usize,
}

impl Default for OverloadSettings {
    /// 200 at once, 100 waiting.
    fn default() -> Self {
        Self {
            max_concurrency: 200,
            max_queue: 100,
        }
    }
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
    /// HS256 secret. `None` (development only) uses the one drawn once and
    /// kept in the database, so sessions survive a restart.
    pub jwt_secret: Option<Vec<u8>>,
    /// JWT lifetime.
    pub jwt_ttl: Duration,
    /// Redis for the shared idempotency store.
    pub redis_url: Option<String>,
    /// How long a keyed request's claim holds when it never completes.
    pub idempotency_lock_ttl: Duration,
    /// Base URL for links.
    pub public_url: String,
    /// Mail provider; `None` writes to the outbox table.
    pub postmark: Option<PostmarkConfig>,
    /// Sender address.
    pub mail_from: String,
    /// The mail webhooks' signing key; `None` turns the webhooks off (503).
    pub mail_webhook_signing_key: Option<SigningKey>,
    /// The mail provider's circuit breaker.
    pub mail_circuit: CircuitSettings,
    /// Overload protection on the API; `None` turns it off.
    pub overload: Option<OverloadSettings>,
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
    /// The proxies whose `X-Forwarded-For` is believed (none by default):
    /// the client IP of rate limits, idempotency scopes and audit events.
    pub trusted_proxies: TrustedProxies,
    /// How long in-flight requests may run after a shutdown signal.
    pub shutdown_grace: Duration,
    /// The clock for token expiry and rate limits (injectable for tests).
    pub clock: Arc<dyn Clock>,
    /// The language model (`AI_*`, see [`AiConfig`]).
    pub ai: AiConfig,
    /// The job runner (`JOB_*`, see [`JobsConfig`]).
    pub jobs: JobsConfig,
    /// The sending engine (`MAIL_API_*`, `SENDING_*`, see [`SendingConfig`]).
    pub sending: SendingConfig,
    /// Billing with Stripe (`STRIPE_*`, see [`crate::billing::config`]).
    pub stripe: crate::billing::config::StripeConfig,
    /// Per-route time limits (default [`crate::app::timeouts`]); tests shorten them.
    pub route_timeouts: steadfast::timeout::TimeoutTable,
    /// The database pool's limits (see [`crate::db::PoolSettings`]).
    pub db_pool: crate::db::PoolSettings,
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
            .field("mail_webhooks", &self.mail_webhook_signing_key.is_some())
            .field("stripe", &self.stripe)
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
    /// A development configuration for `database_url`: the JWT secret kept in
    /// the database, mail to the outbox, no Google, OWASP argon2 costs. Tests start from this.
    pub fn development(database_url: impl Into<String>) -> Self {
        Self {
            mode: Mode::Development,
            bind_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: database_url.into(),
            jwt_secret: None,
            jwt_ttl: Duration::from_secs(7 * 24 * 3600),
            redis_url: None,
            idempotency_lock_ttl: Duration::from_secs(60),
            public_url: "http://127.0.0.1:8080".to_owned(),
            postmark: None,
            mail_from: "Koldly <no-reply@koldly.local>".to_owned(),
            mail_webhook_signing_key: None,
            mail_circuit: CircuitSettings::default(),
            overload: Some(OverloadSettings::default()),
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
            trusted_proxies: TrustedProxies::none(),
            shutdown_grace: Duration::from_secs(20),
            clock: Arc::new(SystemClock),
            ai: AiConfig::default(),
            jobs: JobsConfig::default(),
            sending: SendingConfig::default(),
            stripe: crate::billing::config::StripeConfig::disabled(),
            route_timeouts: crate::app::timeouts(),
            db_pool: crate::db::PoolSettings::default(),
        }
    }

    /// Reads the command line and the process environment; exits with clap's
    /// message (or `--help`, `--version`) when they do not parse.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_cli(Cli::parse())
    }

    /// Reads the configuration through `get` (a map in tests): each variable it
    /// knows is passed as its flag. Variables it does not know are still read
    /// from the process environment, as clap does.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let command = Cli::command();
        let mut args = vec!["koldly".to_owned()];
        for arg in command.get_arguments() {
            let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) else {
                continue;
            };
            if let Some(value) = env.to_str().and_then(&get).filter(|v| !v.is_empty()) {
                args.push(format!("--{long}={value}"));
            }
        }
        let cli = Cli::try_parse_from(args).map_err(|e| ConfigError(e.to_string()))?;
        Self::from_cli(cli)
    }

    /// Checks what `cli` says and builds the configuration.
    pub fn from_cli(cli: Cli) -> Result<Self, ConfigError> {
        let mut config = Self::development(cli.database_url);
        config.mode = cli.mode;
        config.bind_addr = cli.bind_addr;
        match cli.jwt_secret.filter(|s| !s.is_empty()) {
            Some(secret) if secret.len() >= 32 => config.jwt_secret = Some(secret.into_bytes()),
            Some(_) => return Err(ConfigError("JWT_SECRET must be at least 32 bytes".into())),
            None if cli.mode == Mode::Production => {
                return Err(ConfigError(
                    "JWT_SECRET is required when KOLDLY_ENV=production".into(),
                ));
            }
            None => tracing::warn!(
                "JWT_SECRET is not set: using a secret drawn once and kept in the database (development only)"
            ),
        }
        config.redis_url = cli.redis_url.filter(|u| !u.is_empty());
        config.trusted_proxies = cli
            .trusted_proxies
            .into_iter()
            .fold(TrustedProxies::none(), TrustedProxies::trust);
        config.public_url = cli.public_url.trim_end_matches('/').to_owned();
        config.postmark =
            cli.postmark_token
                .filter(|t| !t.is_empty())
                .map(|token| PostmarkConfig {
                    token,
                    url: cli.postmark_url,
                });
        config.mail_from = cli.mail_from;
        config.sending = SendingConfig::from_values(
            cli.sending_tick_ms,
            cli.sending_lease_secs,
            cli.mail_api_base,
            cli.mail_api_key,
        )
        .map_err(ConfigError)?;
        config.mail_circuit = circuit_settings(
            "MAIL_CIRCUIT",
            cli.mail_circuit_min_calls,
            cli.mail_circuit_open_secs,
        )?;
        if cli.overload_max_concurrency == 0 {
            return Err(ConfigError(
                "OVERLOAD_MAX_CONCURRENCY must be at least 1".into(),
            ));
        }
        config.idempotency_lock_ttl = Duration::from_secs(cli.idempotency_lock_ttl_secs);
        config.overload = cli.overload_protection.then_some(OverloadSettings {
            max_concurrency: cli.overload_max_concurrency,
            max_queue: cli.overload_max_queue,
        });
        match (cli.google_client_id, cli.google_client_secret) {
            (Some(client_id), Some(client_secret)) => {
                config.google = Some(GoogleConfig {
                    client_id,
                    client_secret,
                    auth_url: cli.google_auth_url,
                    token_url: cli.google_token_url,
                    userinfo_url: cli.google_userinfo_url,
                    redirect_url: cli
                        .oauth_redirect_url
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
        if cli.body_limit == 0 {
            return Err(ConfigError("BODY_LIMIT must be at least 1 byte".into()));
        }
        config.body_limit = cli.body_limit;
        config.stripe = crate::billing::config::StripeConfig::from_args(cli.stripe)?;
        config.jobs = JobsConfig {
            workers: usize::from(cli.job_workers),
            lease: Duration::from_secs(cli.job_lease_secs),
            job_timeout: Duration::from_secs(cli.job_timeout_secs),
            poll_interval: Duration::from_millis(cli.job_poll_ms),
            shutdown_grace: Duration::from_secs(cli.job_shutdown_grace_secs),
            max_attempts: cli.job_max_attempts,
            ..JobsConfig::default()
        };
        config.ai = match cli.ai_api_key.filter(|k| !k.is_empty()) {
            None => AiConfig::default(),
            Some(api_key) => {
                match url::Url::parse(&cli.ai_base_url) {
                    Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                    }
                    _ => {
                        return Err(ConfigError(format!(
                            "AI_BASE_URL must be an http(s) URL, not `{}`",
                            cli.ai_base_url
                        )));
                    }
                }
                let mut anthropic = AnthropicConfig::new(cli.ai_base_url, api_key);
                anthropic.models = Models::all(&cli.ai_model);
                for (model, slot) in [
                    (cli.ai_model_parse_icp, &mut anthropic.models.parse_icp),
                    (cli.ai_model_draft_email, &mut anthropic.models.draft_email),
                    (
                        cli.ai_model_draft_follow_up,
                        &mut anthropic.models.draft_follow_up,
                    ),
                    (
                        cli.ai_model_categorize_reply,
                        &mut anthropic.models.categorize_reply,
                    ),
                    (cli.ai_model_draft_reply, &mut anthropic.models.draft_reply),
                ] {
                    if let Some(model) = model.filter(|m| !m.is_empty()) {
                        *slot = model;
                    }
                }
                anthropic.max_tokens = cli.ai_max_tokens;
                anthropic.attempt_timeout = Duration::from_secs(cli.ai_attempt_timeout_secs);
                anthropic.max_retries = cli.ai_max_retries;
                anthropic.circuit = circuit_settings(
                    "AI_CIRCUIT",
                    cli.ai_circuit_min_calls,
                    cli.ai_circuit_open_secs,
                )?;
                anthropic.pricing = Pricing {
                    input: cli.ai_input_microcents_per_token,
                    output: cli.ai_output_microcents_per_token,
                };
                AiConfig {
                    anthropic: Some(anthropic),
                }
            }
        };
        config.mail_webhook_signing_key = cli
            .mail_webhook_signing_key
            .filter(|k| !k.is_empty())
            .map(SigningKey::new);
        if config.mode == Mode::Production && config.postmark.is_none() {
            tracing::warn!("POSTMARK_TOKEN is not set: mail goes to the mail_outbox table only");
        }
        Ok(config)
    }
}

/// A provider's circuit settings from its `{prefix}_MIN_CALLS` and
/// `{prefix}_OPEN_SECS`, each at least 1.
pub fn circuit_settings(
    prefix: &str,
    min_calls: u32,
    open_secs: u64,
) -> Result<CircuitSettings, ConfigError> {
    if min_calls == 0 {
        return Err(ConfigError(format!(
            "{prefix}_MIN_CALLS must be at least 1"
        )));
    }
    if open_secs == 0 {
        return Err(ConfigError(format!(
            "{prefix}_OPEN_SECS must be at least 1"
        )));
    }
    Ok(CircuitSettings {
        min_calls,
        open_for: Duration::from_secs(open_secs),
    })
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
    fn every_flag_is_also_a_variable() {
        for arg in Cli::command().get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            assert!(
                arg.get_env().is_some(),
                "--{id} has an environment variable"
            );
        }
    }

    #[test]
    fn help_lists_every_variable() {
        let help = Cli::command().render_long_help().to_string();
        for var in [
            "KOLDLY_ENV",
            "BIND_ADDR",
            "DATABASE_URL",
            "JWT_SECRET",
            "REDIS_URL",
            "IDEMPOTENCY_LOCK_TTL_SECS",
            "TRUSTED_PROXIES",
            "PUBLIC_URL",
            "POSTMARK_TOKEN",
            "POSTMARK_URL",
            "MAIL_FROM",
            "MAIL_WEBHOOK_SIGNING_KEY",
            "GOOGLE_CLIENT_ID",
            "GOOGLE_CLIENT_SECRET",
            "GOOGLE_AUTH_URL",
            "GOOGLE_TOKEN_URL",
            "GOOGLE_USERINFO_URL",
            "OAUTH_REDIRECT_URL",
            "BODY_LIMIT",
            "MAIL_CIRCUIT_MIN_CALLS",
            "MAIL_CIRCUIT_OPEN_SECS",
            "OVERLOAD_PROTECTION",
            "OVERLOAD_MAX_CONCURRENCY",
            "OVERLOAD_MAX_QUEUE",
            "RUST_LOG",
            "AI_API_KEY",
            "AI_BASE_URL",
            "AI_MODEL",
            "AI_MODEL_PARSE_ICP",
            "AI_MODEL_DRAFT_EMAIL",
            "AI_MODEL_DRAFT_FOLLOW_UP",
            "AI_MODEL_CATEGORIZE_REPLY",
            "AI_MODEL_DRAFT_REPLY",
            "AI_MAX_TOKENS",
            "AI_ATTEMPT_TIMEOUT_SECS",
            "AI_MAX_RETRIES",
            "AI_INPUT_MICROCENTS_PER_TOKEN",
            "AI_OUTPUT_MICROCENTS_PER_TOKEN",
            "JOB_WORKERS",
            "JOB_LEASE_SECS",
            "JOB_TIMEOUT_SECS",
            "JOB_POLL_MS",
            "JOB_SHUTDOWN_GRACE_SECS",
            "JOB_MAX_ATTEMPTS",
        ] {
            assert!(help.contains(var), "{var} is documented in --help");
        }
    }

    #[test]
    fn circuit_and_overload_settings_are_read_and_checked() {
        let c = Config::from_lookup(lookup(&[])).unwrap();
        assert_eq!(c.mail_circuit, CircuitSettings::default());
        assert_eq!(c.overload, Some(OverloadSettings::default()));
        let c = Config::from_lookup(lookup(&[
            ("MAIL_CIRCUIT_MIN_CALLS", "2"),
            ("MAIL_CIRCUIT_OPEN_SECS", "90"),
            ("OVERLOAD_MAX_CONCURRENCY", "8"),
            ("OVERLOAD_MAX_QUEUE", "0"),
        ]))
        .unwrap();
        assert_eq!(
            c.mail_circuit,
            CircuitSettings {
                min_calls: 2,
                open_for: Duration::from_secs(90)
            }
        );
        assert_eq!(
            c.overload,
            Some(OverloadSettings {
                max_concurrency: 8,
                max_queue: 0
            })
        );
        let off = Config::from_lookup(lookup(&[("OVERLOAD_PROTECTION", "false")])).unwrap();
        assert_eq!(off.overload, None);
        let ai = Config::from_lookup(lookup(&[
            ("AI_API_KEY", "k"),
            ("AI_CIRCUIT_MIN_CALLS", "3"),
            ("AI_CIRCUIT_OPEN_SECS", "45"),
        ]))
        .unwrap();
        assert_eq!(
            ai.ai.anthropic.unwrap().circuit,
            CircuitSettings {
                min_calls: 3,
                open_for: Duration::from_secs(45)
            }
        );
        assert_eq!(
            Config::from_lookup(lookup(&[
                ("AI_API_KEY", "k"),
                ("AI_CIRCUIT_OPEN_SECS", "0")
            ]))
            .err()
            .map(|e| e.0),
            Some("AI_CIRCUIT_OPEN_SECS must be at least 1".to_owned())
        );
        for (var, value, message) in [
            (
                "MAIL_CIRCUIT_MIN_CALLS",
                "0",
                "MAIL_CIRCUIT_MIN_CALLS must be at least 1",
            ),
            (
                "MAIL_CIRCUIT_OPEN_SECS",
                "0",
                "MAIL_CIRCUIT_OPEN_SECS must be at least 1",
            ),
            (
                "OVERLOAD_MAX_CONCURRENCY",
                "0",
                "OVERLOAD_MAX_CONCURRENCY must be at least 1",
            ),
        ] {
            let err = Config::from_lookup(lookup(&[(var, value)])).err().unwrap();
            assert_eq!(err.0, message);
        }
        assert!(Config::from_lookup(lookup(&[("OVERLOAD_PROTECTION", "maybe")])).is_err());
    }

    #[test]
    fn idempotency_lock_ttl_is_read_and_checked() {
        let default = Config::from_lookup(lookup(&[])).unwrap();
        assert_eq!(default.idempotency_lock_ttl, Duration::from_secs(60));
        let c = Config::from_lookup(lookup(&[("IDEMPOTENCY_LOCK_TTL_SECS", "3")])).unwrap();
        assert_eq!(c.idempotency_lock_ttl, Duration::from_secs(3));
        for bad in ["0", "3601", "soon"] {
            let err = Config::from_lookup(lookup(&[("IDEMPOTENCY_LOCK_TTL_SECS", bad)]))
                .err()
                .unwrap();
            assert!(
                err.0.contains("--idempotency-lock-ttl-secs"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn body_limit_is_read() {
        let c = Config::from_lookup(lookup(&[("BODY_LIMIT", "1048576")])).unwrap();
        assert_eq!(c.body_limit, 1024 * 1024);
        assert!(Config::from_lookup(lookup(&[("BODY_LIMIT", "lots")])).is_err());
        assert!(Config::from_lookup(lookup(&[("KOLDLY_ENV", "staging")])).is_err());
        let proxies = Config::from_lookup(lookup(&[("TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1")]))
            .unwrap()
            .trusted_proxies;
        assert!(proxies.is_trusted("10.1.2.3".parse().unwrap()));
        assert!(proxies.is_trusted("127.0.0.1".parse().unwrap()));
        assert!(!proxies.is_trusted("192.0.2.1".parse().unwrap()));
        assert!(Config::from_lookup(lookup(&[("TRUSTED_PROXIES", "10.0.0.0/99")])).is_err());
    }

    #[test]
    fn production_requires_a_jwt_secret() {
        let err = Config::from_lookup(lookup(&[("KOLDLY_ENV", "production")])).unwrap_err();
        assert!(err.0.contains("JWT_SECRET"), "{err}");
    }

    #[test]
    fn development_leaves_the_secret_to_the_database() {
        assert!(
            Config::from_lookup(lookup(&[]))
                .unwrap()
                .jwt_secret
                .is_none()
        );
        let set = Config::from_lookup(lookup(&[(
            "JWT_SECRET",
            "0123456789abcdef0123456789abcdef",
        )]))
        .unwrap();
        assert_eq!(
            set.jwt_secret.as_deref(),
            Some(&b"0123456789abcdef0123456789abcdef"[..])
        );
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

    #[test]
    fn ai_settings_are_read_and_the_key_is_hidden() {
        assert!(
            Config::from_lookup(lookup(&[]))
                .unwrap()
                .ai
                .anthropic
                .is_none()
        );
        let c = Config::from_lookup(lookup(&[
            ("AI_API_KEY", "sk-secret"),
            ("AI_BASE_URL", "http://127.0.0.1:9"),
            ("AI_MODEL", "m-all"),
            ("AI_MODEL_CATEGORIZE_REPLY", "m-small"),
            ("AI_MAX_TOKENS", "500"),
            ("AI_ATTEMPT_TIMEOUT_SECS", "7"),
            ("AI_MAX_RETRIES", "2"),
            ("AI_INPUT_MICROCENTS_PER_TOKEN", "10"),
            ("AI_OUTPUT_MICROCENTS_PER_TOKEN", "20"),
        ]))
        .unwrap();
        let a = c.ai.anthropic.clone().unwrap();
        assert_eq!(a.base_url, "http://127.0.0.1:9");
        assert_eq!(a.models.for_task("draft_email"), "m-all");
        assert_eq!(a.models.for_task("categorize_reply"), "m-small");
        assert_eq!(a.max_tokens, 500);
        assert_eq!(a.attempt_timeout, Duration::from_secs(7));
        assert_eq!(a.max_retries, 2);
        assert_eq!((a.pricing.input, a.pricing.output), (10, 20));
        assert!(!format!("{c:?} {:?} {a:?}", c.ai).contains("sk-secret"));
        for bad in [
            ("AI_MAX_TOKENS", "x"),
            ("AI_MAX_TOKENS", "0"),
            ("AI_BASE_URL", "api.example"),
            ("AI_ATTEMPT_TIMEOUT_SECS", "0"),
            ("AI_MAX_RETRIES", "11"),
        ] {
            let err = Config::from_lookup(lookup(&[("AI_API_KEY", "k"), bad])).unwrap_err();
            let flag = format!("--{}", bad.0.to_lowercase().replace('_', "-"));
            assert!(
                err.0.contains(bad.0) || err.0.contains(&flag),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn job_settings_are_read_and_checked() {
        let c = Config::from_lookup(lookup(&[
            ("JOB_WORKERS", "2"),
            ("JOB_LEASE_SECS", "30"),
            ("JOB_TIMEOUT_SECS", "120"),
            ("JOB_POLL_MS", "250"),
            ("JOB_SHUTDOWN_GRACE_SECS", "5"),
            ("JOB_MAX_ATTEMPTS", "4"),
        ]))
        .unwrap()
        .jobs;
        assert_eq!(c.workers, 2);
        assert_eq!(c.lease, Duration::from_secs(30));
        assert_eq!(c.job_timeout, Duration::from_secs(120));
        assert_eq!(c.poll_interval, Duration::from_millis(250));
        assert_eq!(c.shutdown_grace, Duration::from_secs(5));
        assert_eq!(c.max_attempts, 4);
        let defaults = Config::from_lookup(lookup(&[])).unwrap().jobs;
        assert_eq!(defaults.workers, JobsConfig::default().workers);
        assert_eq!(defaults.lease, JobsConfig::default().lease);
        for bad in [
            ("JOB_WORKERS", "0"),
            ("JOB_WORKERS", "257"),
            ("JOB_LEASE_SECS", "1"),
            ("JOB_POLL_MS", "x"),
            ("JOB_MAX_ATTEMPTS", "101"),
        ] {
            let err = Config::from_lookup(lookup(&[bad])).unwrap_err();
            let flag = format!("--{}", bad.0.to_lowercase().replace('_', "-"));
            assert!(err.0.contains(&flag), "{bad:?}: {err}");
        }
    }
}
