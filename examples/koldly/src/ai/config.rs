//! The language model's settings, as [`crate::config::Cli`] reads them from
//! flags and environment variables.
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
