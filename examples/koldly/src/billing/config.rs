//! Stripe's settings: `STRIPE_*` flags and variables ([`StripeArgs`], part
//! of koldly's command line) checked into a [`StripeConfig`].

use std::time::Duration;

use crate::{
    config::{ConfigError, circuit_settings},
    http_client::CircuitSettings,
    plans::Plan,
};

/// Stripe's flags, flattened into koldly's command line.
#[derive(Debug, Clone, clap::Args)]
pub struct StripeArgs {
    /// Stripe secret API key (`sk_...`); unset, the Stripe-backed billing
    /// routes answer 503 "billing is not configured" and everything else works.
    #[arg(long, env = "STRIPE_SECRET_KEY", hide_env_values = true)]
    pub stripe_secret_key: Option<String>,
    /// Stripe API base URL (http or https).
    #[arg(
        long,
        env = "STRIPE_API_BASE",
        default_value = "https://api.stripe.com"
    )]
    pub stripe_api_base: String,
    /// The Stripe price id of the starter plan (required with the key).
    #[arg(long, env = "STRIPE_PRICE_STARTER")]
    pub stripe_price_starter: Option<String>,
    /// The Stripe price id of the growth plan (required with the key).
    #[arg(long, env = "STRIPE_PRICE_GROWTH")]
    pub stripe_price_growth: Option<String>,
    /// The Stripe price id of the scale plan (required with the key).
    #[arg(long, env = "STRIPE_PRICE_SCALE")]
    pub stripe_price_scale: Option<String>,
    /// Comma-separated webhook signing secrets (`whsec_...`): a signature by
    /// any of them is accepted, so a secret can be rolled without downtime.
    /// Unset, `POST /api/webhooks/stripe` answers 503.
    #[arg(
        long,
        env = "STRIPE_WEBHOOK_SECRETS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub stripe_webhook_secrets: Vec<String>,
    /// The Stripe API's circuit breaker: the fewest calls counted before a
    /// failure rate can open it.
    #[arg(long, env = "STRIPE_CIRCUIT_MIN_CALLS", default_value_t = 5)]
    pub stripe_circuit_min_calls: u32,
    /// How long, in seconds, an open Stripe circuit refuses calls.
    #[arg(long, env = "STRIPE_CIRCUIT_OPEN_SECS", default_value_t = 30)]
    pub stripe_circuit_open_secs: u64,
}

/// The Stripe API: where, with which key and prices.
#[derive(Clone)]
pub struct StripeApi {
    /// Base URL, without a trailing slash.
    pub base_url: String,
    /// Secret key (never logged).
    pub secret_key: String,
    /// The price id of each paid plan.
    pub prices: Vec<(Plan, String)>,
    /// The Stripe API's circuit breaker.
    pub circuit: CircuitSettings,
}

impl StripeApi {
    /// The price id of `plan`, if it is sold.
    pub fn price_of(&self, plan: Plan) -> Option<&str> {
        self.prices
            .iter()
            .find(|(p, _)| *p == plan)
            .map(|(_, id)| id.as_str())
    }

    /// The plan whose price is `price_id`.
    pub fn plan_of(&self, price_id: &str) -> Option<Plan> {
        self.prices
            .iter()
            .find(|(_, id)| id == price_id)
            .map(|(p, _)| *p)
    }
}

impl std::fmt::Debug for StripeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeApi")
            .field("base_url", &self.base_url)
            .field("prices", &self.prices)
            .finish_non_exhaustive()
    }
}

/// Billing's configuration: the API (`None` without a key) and the webhook
/// signing secrets (empty: webhooks refused).
#[derive(Clone, Default)]
pub struct StripeConfig {
    /// The Stripe API; `None` without `STRIPE_SECRET_KEY`.
    pub api: Option<StripeApi>,
    /// Webhook signing secrets, every one accepted.
    pub webhook_secrets: Vec<String>,
    /// How far a webhook's signed timestamp may be from koldly's clock.
    pub webhook_tolerance: Duration,
}

impl std::fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeConfig")
            .field("api", &self.api)
            .field("webhook_secrets", &self.webhook_secrets.len())
            .field("webhook_tolerance", &self.webhook_tolerance)
            .finish()
    }
}

/// Stripe's own default tolerance for a webhook's timestamp.
pub const WEBHOOK_TOLERANCE: Duration = Duration::from_secs(300);

impl StripeConfig {
    /// No API, no webhook secrets: billing not configured.
    pub fn disabled() -> Self {
        Self {
            api: None,
            webhook_secrets: Vec::new(),
            webhook_tolerance: WEBHOOK_TOLERANCE,
        }
    }

    /// Checks `args`: with a key, every paid plan needs its price id and the
    /// base URL must be http(s).
    pub fn from_args(args: StripeArgs) -> Result<Self, ConfigError> {
        let circuit = circuit_settings(
            "STRIPE_CIRCUIT",
            args.stripe_circuit_min_calls,
            args.stripe_circuit_open_secs,
        )?;
        let webhook_secrets: Vec<String> = args
            .stripe_webhook_secrets
            .into_iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        let api = match args.stripe_secret_key.filter(|k| !k.trim().is_empty()) {
            None => None,
            Some(secret_key) => {
                match url::Url::parse(&args.stripe_api_base) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                    _ => {
                        return Err(ConfigError(format!(
                            "STRIPE_API_BASE must be an http(s) URL, not `{}`",
                            args.stripe_api_base
                        )));
                    }
                }
                let mut prices = Vec::new();
                for (plan, var, value) in [
                    (
                        Plan::Starter,
                        "STRIPE_PRICE_STARTER",
                        args.stripe_price_starter,
                    ),
                    (
                        Plan::Growth,
                        "STRIPE_PRICE_GROWTH",
                        args.stripe_price_growth,
                    ),
                    (Plan::Scale, "STRIPE_PRICE_SCALE", args.stripe_price_scale),
                ] {
                    match value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) {
                        Some(price) => prices.push((plan, price)),
                        None => {
                            return Err(ConfigError(format!(
                                "{var} is required when STRIPE_SECRET_KEY is set"
                            )));
                        }
                    }
                }
                Some(StripeApi {
                    base_url: args.stripe_api_base.trim_end_matches('/').to_owned(),
                    secret_key: secret_key.trim().to_owned(),
                    prices,
                    circuit,
                })
            }
        };
        Ok(Self {
            api,
            webhook_secrets,
            webhook_tolerance: WEBHOOK_TOLERANCE,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use clap::CommandFactory;

    use crate::config::{Cli, Config};

    fn read(pairs: &[(&str, &str)]) -> Result<Config, String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(move |k| map.get(k).cloned()).map_err(|e| e.0)
    }

    const PRICES: [(&str, &str); 3] = [
        ("STRIPE_PRICE_STARTER", "price_s"),
        ("STRIPE_PRICE_GROWTH", "price_g"),
        ("STRIPE_PRICE_SCALE", "price_x"),
    ];

    #[test]
    fn stripe_settings_are_read_checked_and_hidden() {
        let off = read(&[]).unwrap();
        assert!(off.stripe.api.is_none());
        assert!(off.stripe.webhook_secrets.is_empty());

        let mut vars = vec![
            ("STRIPE_SECRET_KEY", "sk_live_secret"),
            ("STRIPE_API_BASE", "http://127.0.0.1:9/"),
            ("STRIPE_WEBHOOK_SECRETS", "whsec_old, whsec_new"),
            ("STRIPE_CIRCUIT_MIN_CALLS", "3"),
        ];
        vars.extend(PRICES);
        let on = read(&vars).unwrap();
        let api = on.stripe.api.clone().unwrap();
        assert_eq!(api.base_url, "http://127.0.0.1:9");
        assert_eq!(api.price_of(crate::plans::Plan::Growth), Some("price_g"));
        assert_eq!(api.plan_of("price_x"), Some(crate::plans::Plan::Scale));
        assert_eq!(api.plan_of("price_other"), None);
        assert_eq!(api.circuit.min_calls, 3);
        assert_eq!(on.stripe.webhook_secrets, ["whsec_old", "whsec_new"]);
        let shown = format!("{on:?}");
        assert!(
            !shown.contains("sk_live_secret") && !shown.contains("whsec_"),
            "{shown}"
        );

        let missing_price = read(&[("STRIPE_SECRET_KEY", "sk"), PRICES[0], PRICES[1]]).unwrap_err();
        assert!(
            missing_price.contains("STRIPE_PRICE_SCALE"),
            "{missing_price}"
        );
        let mut bad_base = vec![
            ("STRIPE_SECRET_KEY", "sk"),
            ("STRIPE_API_BASE", "api.stripe.com"),
        ];
        bad_base.extend(PRICES);
        assert!(read(&bad_base).unwrap_err().contains("STRIPE_API_BASE"));
        let help = Cli::command().render_long_help().to_string();
        for var in [
            "STRIPE_SECRET_KEY",
            "STRIPE_API_BASE",
            "STRIPE_PRICE_STARTER",
            "STRIPE_PRICE_GROWTH",
            "STRIPE_PRICE_SCALE",
            "STRIPE_WEBHOOK_SECRETS",
            "STRIPE_CIRCUIT_MIN_CALLS",
            "STRIPE_CIRCUIT_OPEN_SECS",
        ] {
            assert!(help.contains(var), "{var} is documented in --help");
        }
    }
}
