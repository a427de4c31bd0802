//! The language model's settings, read from the environment.
//!
//! | Variable | Meaning | Default |
//! |---|---|---|
//! | `AI_API_KEY` | Anthropic API key; unset = the offline provider | — |
//! | `AI_BASE_URL` | Messages API base URL | `https://api.anthropic.com` |
//! | `AI_MODEL` | model for every task | `claude-sonnet-4-5` |
//! | `AI_MODEL_PARSE_ICP`, `AI_MODEL_DRAFT_EMAIL`, `AI_MODEL_DRAFT_FOLLOW_UP`, `AI_MODEL_CATEGORIZE_REPLY`, `AI_MODEL_DRAFT_REPLY` | model for one task | `AI_MODEL` |
//! | `AI_MAX_TOKENS` | answer tokens per call | 1024 |
//! | `AI_ATTEMPT_TIMEOUT_SECS` | one attempt's limit | 30 |
//! | `AI_MAX_RETRIES` | retries of a 429/503/529 | 3 |
//! | `AI_CIRCUIT_MIN_CALLS` | calls counted before the provider's circuit may open (it opens when half of the last 20 failed) | 5 |
//! | `AI_CIRCUIT_OPEN_SECS` | how long an open circuit refuses calls | 30 |
//! | `AI_INPUT_MICROCENTS_PER_TOKEN`, `AI_OUTPUT_MICROCENTS_PER_TOKEN` | prices | 300, 1500 |

use std::time::Duration;

use super::anthropic::Pricing;
use crate::http_client::CircuitSettings;

/// Which provider, with its settings.
#[derive(Clone, Default)]
pub struct AiConfig {
    /// `None`: the offline provider.
    pub anthropic: Option<AnthropicConfig>,
}

impl std::fmt::Debug for AiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AiConfig")
            .field(
                "provider",
                &if self.anthropic.is_some() {
                    "anthropic"
                } else {
                    "offline"
                },
            )
            .finish()
    }
}

/// The model of each task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Models {
    /// `parse_icp`.
    pub parse_icp: String,
    /// `draft_email`.
    pub draft_email: String,
    /// `draft_follow_up`.
    pub draft_follow_up: String,
    /// `categorize_reply`.
    pub categorize_reply: String,
    /// `draft_reply`.
    pub draft_reply: String,
}

impl Models {
    /// One model for every task.
    pub fn all(model: &str) -> Self {
        Self {
            parse_icp: model.to_owned(),
            draft_email: model.to_owned(),
            draft_follow_up: model.to_owned(),
            categorize_reply: model.to_owned(),
            draft_reply: model.to_owned(),
        }
    }

    /// The model of the task named `task`.
    pub fn for_task(&self, task: &str) -> &str {
        match task {
            "parse_icp" => &self.parse_icp,
            "draft_follow_up" => &self.draft_follow_up,
            "categorize_reply" => &self.categorize_reply,
            "draft_reply" => &self.draft_reply,
            _ => &self.draft_email,
        }
    }
}

/// The Anthropic provider's settings.
#[derive(Clone)]
pub struct AnthropicConfig {
    /// Base URL (`https://api.anthropic.com`; a loopback fake in tests).
    pub base_url: String,
    /// `x-api-key`; never logged.
    pub api_key: String,
    /// The model per task.
    pub models: Models,
    /// `max_tokens` of every call (bounds its cost).
    pub max_tokens: u32,
    /// One attempt's limit.
    pub attempt_timeout: Duration,
    /// Retries of a 429, 503 or 529.
    pub max_retries: u32,
    /// The longest `Retry-After` waited for; a longer one ends the call.
    pub max_retry_after: Duration,
    /// What tokens cost.
    pub pricing: Pricing,
    /// The provider's circuit breaker.
    pub circuit: CircuitSettings,
}

impl std::fmt::Debug for AnthropicConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnthropicConfig")
            .field("base_url", &self.base_url)
            .field("models", &self.models)
            .finish_non_exhaustive()
    }
}

impl AnthropicConfig {
    /// Defaults for `base_url` and `api_key`.
    pub fn new(base_url: impl Into<String>, api_key: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: api_key.into(),
            models: Models::all("claude-sonnet-4-5"),
            max_tokens: 1024,
            attempt_timeout: Duration::from_secs(30),
            max_retries: 3,
            max_retry_after: Duration::from_secs(60),
            pricing: Pricing::default(),
            circuit: CircuitSettings::default(),
        }
    }
}

impl AiConfig {
    /// Reads the `AI_*` variables through `get`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let Some(api_key) = get("AI_API_KEY") else {
            return Ok(Self::default());
        };
        let base_url = get("AI_BASE_URL").unwrap_or_else(|| "https://api.anthropic.com".to_owned());
        match url::Url::parse(&base_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
            _ => {
                return Err(format!(
                    "AI_BASE_URL must be an http(s) URL, not `{base_url}`"
                ));
            }
        }
        let mut c = AnthropicConfig::new(base_url, api_key);
        if let Some(model) = get("AI_MODEL") {
            c.models = Models::all(&model);
        }
        for (var, slot) in [
            ("AI_MODEL_PARSE_ICP", &mut c.models.parse_icp),
            ("AI_MODEL_DRAFT_EMAIL", &mut c.models.draft_email),
            ("AI_MODEL_DRAFT_FOLLOW_UP", &mut c.models.draft_follow_up),
            ("AI_MODEL_CATEGORIZE_REPLY", &mut c.models.categorize_reply),
            ("AI_MODEL_DRAFT_REPLY", &mut c.models.draft_reply),
        ] {
            if let Some(model) = get(var) {
                *slot = model;
            }
        }
        let number = |var: &str| -> Result<Option<u64>, String> {
            get(var)
                .map(|v| {
                    v.parse::<u64>()
                        .map_err(|_| format!("{var} must be a whole number, not `{v}`"))
                })
                .transpose()
        };
        if let Some(n) = number("AI_MAX_TOKENS")? {
            c.max_tokens = u32::try_from(n)
                .ok()
                .filter(|n| (1..=64_000).contains(n))
                .ok_or("AI_MAX_TOKENS must be between 1 and 64000")?;
        }
        if let Some(n) = number("AI_ATTEMPT_TIMEOUT_SECS")? {
            if n == 0 {
                return Err("AI_ATTEMPT_TIMEOUT_SECS must be at least 1".into());
            }
            c.attempt_timeout = Duration::from_secs(n);
        }
        if let Some(n) = number("AI_MAX_RETRIES")? {
            c.max_retries = u32::try_from(n.min(10)).unwrap_or(10);
        }
        let min_calls = match number("AI_CIRCUIT_MIN_CALLS")? {
            Some(n) => u32::try_from(n).map_err(|_| "AI_CIRCUIT_MIN_CALLS is too large")?,
            None => c.circuit.min_calls,
        };
        let open_secs = number("AI_CIRCUIT_OPEN_SECS")?.unwrap_or(c.circuit.open_for.as_secs());
        c.circuit =
            crate::config::circuit_settings("AI_CIRCUIT", min_calls, open_secs).map_err(|e| e.0)?;
        if let Some(n) = number("AI_INPUT_MICROCENTS_PER_TOKEN")? {
            c.pricing.input =
                i64::try_from(n).map_err(|_| "AI_INPUT_MICROCENTS_PER_TOKEN is too large")?;
        }
        if let Some(n) = number("AI_OUTPUT_MICROCENTS_PER_TOKEN")? {
            c.pricing.output =
                i64::try_from(n).map_err(|_| "AI_OUTPUT_MICROCENTS_PER_TOKEN is too large")?;
        }
        Ok(Self { anthropic: Some(c) })
    }
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
    fn offline_without_a_key() {
        assert!(
            AiConfig::from_lookup(lookup(&[]))
                .unwrap()
                .anthropic
                .is_none()
        );
    }

    #[test]
    fn reads_every_variable_and_hides_the_key() {
        let c = AiConfig::from_lookup(lookup(&[
            ("AI_API_KEY", "sk-secret"),
            ("AI_BASE_URL", "http://127.0.0.1:9"),
            ("AI_MODEL", "m-all"),
            ("AI_MODEL_CATEGORIZE_REPLY", "m-small"),
            ("AI_MAX_TOKENS", "500"),
            ("AI_ATTEMPT_TIMEOUT_SECS", "7"),
            ("AI_MAX_RETRIES", "2"),
            ("AI_CIRCUIT_MIN_CALLS", "3"),
            ("AI_CIRCUIT_OPEN_SECS", "45"),
            ("AI_INPUT_MICROCENTS_PER_TOKEN", "10"),
            ("AI_OUTPUT_MICROCENTS_PER_TOKEN", "20"),
        ]))
        .unwrap();
        let a = c.anthropic.clone().unwrap();
        assert_eq!(a.base_url, "http://127.0.0.1:9");
        assert_eq!(a.models.for_task("draft_email"), "m-all");
        assert_eq!(a.models.for_task("categorize_reply"), "m-small");
        assert_eq!(a.max_tokens, 500);
        assert_eq!(a.attempt_timeout, Duration::from_secs(7));
        assert_eq!(a.max_retries, 2);
        assert_eq!(
            a.circuit,
            CircuitSettings {
                min_calls: 3,
                open_for: Duration::from_secs(45)
            }
        );
        assert_eq!(
            AiConfig::from_lookup(lookup(&[
                ("AI_API_KEY", "k"),
                ("AI_CIRCUIT_OPEN_SECS", "0")
            ]))
            .err(),
            Some("AI_CIRCUIT_OPEN_SECS must be at least 1".to_owned())
        );
        assert_eq!((a.pricing.input, a.pricing.output), (10, 20));
        assert!(!format!("{c:?} {a:?}").contains("sk-secret"));
        assert!(
            AiConfig::from_lookup(lookup(&[("AI_API_KEY", "k"), ("AI_MAX_TOKENS", "x")])).is_err()
        );
        assert!(
            AiConfig::from_lookup(lookup(&[
                ("AI_API_KEY", "k"),
                ("AI_BASE_URL", "api.example")
            ]))
            .is_err()
        );
        assert!(
            AiConfig::from_lookup(lookup(&[
                ("AI_API_KEY", "k"),
                ("AI_ATTEMPT_TIMEOUT_SECS", "0")
            ]))
            .is_err()
        );
    }
}
