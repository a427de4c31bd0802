//! The Anthropic Messages API provider.
//!
//! One call: look the answer up in the user's cache; reserve the call's most
//! possible cost (every prompt byte as a token, plus `max_tokens`) from the
//! month's budget, or fail with [`AiError::BudgetExhausted`] having sent
//! nothing; `POST /v1/messages` through steadfast's `RetryLayer`; settle.
//!
//! Retries: only answers that prove the provider did not do the work (429,
//! 503, 529, each after its `Retry-After`) and connections that were never
//! established. A timed-out or cut-off attempt is NOT sent again: the provider
//! may have run and billed it, and it honours no idempotency key. Each attempt
//! has `attempt_timeout`; no attempt or delay outlives the call's deadline.
//!
//! Circuit breaker: inside the retry layer, one circuit for the provider
//! (every clone shares it, see [`AnthropicConfig::circuit`]). While it is open
//! a call fails at once with [`AiError::CircuitOpen`] without reaching the
//! provider (its reservation is released: nothing ran), unless the circuit
//! lets a probe through within `max_retry_after`: the retry layer then waits
//! for it, since a refused call provably did not run.
//!
//! Settling: a refusal costs nothing (the reservation is released); a success
//! costs its reported usage; a timeout or a reply without usage is charged the
//! whole reservation, since the provider may have billed it. The budget thus
//! errs on the side of never being passed.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use serde::Deserialize;
use steadfast::{
    ErrorClass,
    classify::classify_error,
    retry::{RetryLayer, RetryPolicy},
};

use super::{
    AiError, AiFuture, AnthropicConfig, Call, LanguageModel,
    prompt::Prompt,
    tasks::{
        CategorizeReply, DraftEmail, DraftFollowUp, DraftReply, EmailDraft, Icp, ParseIcp,
        ReplyClassification, Task, Validate,
    },
};
use crate::{
    clock::Clock,
    db::{
        Db,
        ai_usage::{self, Reservation, Spend},
    },
    http_client::{self, RetryingClient},
};

/// Token prices in microcents (1e-6 cent) per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pricing {
    /// Per prompt token.
    pub input: i64,
    /// Per answer token.
    pub output: i64,
}

impl Default for Pricing {
    /// $3 and $15 per million tokens.
    fn default() -> Self {
        Self {
            input: 300,
            output: 1500,
        }
    }
}

impl Pricing {
    /// What `input` and `output` tokens cost.
    pub fn cost(&self, input: i64, output: i64) -> i64 {
        input
            .saturating_mul(self.input)
            .saturating_add(output.saturating_mul(self.output))
    }

    /// The most a call with `prompt` can cost: every prompt byte counted as a
    /// token (a token is at least a byte), plus the API's overhead, plus
    /// `max_tokens` of answer. This is what a call reserves.
    pub fn most(&self, prompt: &Prompt, max_tokens: u32) -> i64 {
        let prompt_tokens = (prompt.system.len() + prompt.data.len()) as i64;
        self.cost(
            prompt_tokens + PROMPT_OVERHEAD_TOKENS,
            i64::from(max_tokens),
        )
    }
}

/// The largest request kept for a retry (a bigger one is sent once).
const MAX_PROMPT_BYTES: usize = 256 * 1024;

/// The Messages API version koldly speaks.
const API_VERSION: &str = "2023-06-01";
/// Per-call overhead the API adds to a prompt, in tokens (a generous bound).
pub const PROMPT_OVERHEAD_TOKENS: i64 = 64;

/// The Anthropic provider; cheap to clone.
#[derive(Clone)]
pub struct Anthropic {
    inner: Arc<Inner>,
}

struct Inner {
    config: AnthropicConfig,
    client: RetryingClient,
    db: Db,
    clock: Arc<dyn Clock>,
}

impl Anthropic {
    /// A provider recording usage in `db`, dating it by `clock`.
    pub fn new(config: AnthropicConfig, db: Db, clock: Arc<dyn Clock>) -> Self {
        let statuses_that_prove_nothing_ran = |status: Option<http::StatusCode>| {
            matches!(status.map(|s| s.as_u16()), Some(429 | 503 | 529))
        };
        let policy = RetryPolicy::new()
            .max_retries(config.max_retries)
            .base_delay(Duration::from_millis(500))
            .max_delay(Duration::from_secs(10))
            .max_retry_after(config.max_retry_after)
            .attempt_timeout(config.attempt_timeout)
            .retry_if(move |c| {
                c.class() == ErrorClass::Connect
                    || http_client::is_circuit_open(c)
                    || statuses_that_prove_nothing_ran(c.status())
            });
        // POST is allowed to be retried at all; `retry_if` narrows it to
        // failures after which the provider provably did no work.
        let layer = RetryLayer::new(policy)
            .idempotent_methods([Method::POST])
            .max_body_bytes(MAX_PROMPT_BYTES);
        Self {
            inner: Arc::new(Inner {
                client: http_client::retrying_client_with(layer, config.circuit.layer()),
                config,
                db,
                clock,
            }),
        }
    }

    async fn run<T: Task>(&self, call: &Call, task: &T) -> Result<T::Output, AiError> {
        let inner = &self.inner;
        let model = inner.config.models.for_task(T::NAME);
        let prompt = Prompt::for_task(task);
        let hash = prompt.input_hash(T::NAME, model);
        let pool = &inner.db.pool;
        let known = task.known_addresses();
        if let Some(text) = ai_usage::cached(pool, &call.user_id, &hash).await? {
            match parse::<T>(&text, &known) {
                Ok(output) => return Ok(output),
                Err(why) => tracing::warn!(task = T::NAME, %why, "cached answer no longer valid"),
            }
        }
        if call.deadline.is_some_and(|d| d.is_expired()) {
            return Err(AiError::Timeout);
        }
        let now = inner.clock.now();
        let month = month_of(now);
        let most = inner.config.pricing.most(&prompt, inner.config.max_tokens);
        let reservation = Reservation {
            user_id: &call.user_id,
            job_id: call.job_id.as_deref(),
            month: &month,
            task: T::NAME,
            model,
            amount: most,
            budget: call.monthly_budget_cents.saturating_mul(1_000_000),
        };
        let Some(usage_id) = ai_usage::reserve(pool, reservation, now).await? else {
            return Err(AiError::BudgetExhausted);
        };
        let sent = self.send(call, model, &prompt).await;
        let now = inner.clock.now();
        let (result, settle) = match sent {
            Err(failure) => {
                let outcome = failure.outcome();
                let settle = if failure.may_have_run() {
                    Settle::Charge(
                        Spend {
                            cost: most,
                            ..Spend::default()
                        },
                        outcome,
                    )
                } else {
                    Settle::Release(outcome)
                };
                (Err(failure.into_error()), settle)
            }
            Ok(reply) => {
                // A provider's counts are not trusted to be sane.
                let (input, output) = (
                    reply.usage.input_tokens.max(0),
                    reply.usage.output_tokens.max(0),
                );
                let spend = Spend {
                    input_tokens: input,
                    output_tokens: output,
                    cost: inner.config.pricing.cost(input, output),
                };
                match answer::<T>(&reply, &known) {
                    Ok((output, text)) => (Ok((output, text)), Settle::Charge(spend, "ok")),
                    Err(e) => (Err(e), Settle::Charge(spend, "invalid_answer")),
                }
            }
        };
        match settle {
            Settle::Charge(spend, outcome) => {
                ai_usage::settle(pool, &usage_id, spend, outcome, now).await?
            }
            Settle::Release(outcome) => ai_usage::release(pool, &usage_id, outcome, now).await?,
        }
        let (output, text) = result?;
        ai_usage::cache(pool, &call.user_id, &hash, T::NAME, &text, now).await?;
        Ok(output)
    }

    async fn send(&self, call: &Call, model: &str, prompt: &Prompt) -> Result<Reply, Failure> {
        let inner = &self.inner;
        let body = serde_json::json!({
            "model": model,
            "max_tokens": inner.config.max_tokens,
            "system": prompt.system,
            "messages": [{ "role": "user", "content": prompt.data }],
        });
        let url = format!(
            "{}/v1/messages",
            inner.config.base_url.trim_end_matches('/')
        );
        let mut req = Request::post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .header("anthropic-version", API_VERSION)
            .header("x-api-key", &inner.config.api_key)
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|_| Failure::Unreachable)?;
        // The retry layer bounds each attempt, the delays and the whole by the
        // deadline; this backstop only guards against a body that never ends.
        let backstop = match call.deadline {
            Some(deadline) => {
                deadline.insert_into(req.extensions_mut());
                deadline.remaining()
            }
            None => {
                inner.config.attempt_timeout * (inner.config.max_retries + 1)
                    + inner.config.max_retry_after * inner.config.max_retries
            }
        };
        let (status, bytes) = http_client::fetch(inner.client.clone(), req, backstop)
            .await
            .map_err(|err| match classify_error(err.as_ref()) {
                c if http_client::is_circuit_open(&c) => {
                    Failure::CircuitOpen(c.retry_after().unwrap_or_default())
                }
                c if c.class() == ErrorClass::Timeout => Failure::Timeout,
                c if c.class() == ErrorClass::Connect => Failure::Unreachable,
                _ => {
                    tracing::warn!(error = %err, "language model call failed");
                    Failure::CutOff
                }
            })?;
        if !status.is_success() {
            tracing::warn!(%status, "language model provider refused the call");
            return Err(Failure::Refused(status.as_u16()));
        }
        serde_json::from_slice::<Reply>(&bytes).map_err(|e| Failure::Malformed(e.to_string()))
    }
}

enum Settle {
    Charge(Spend, &'static str),
    Release(&'static str),
}

/// Why no usable reply came back.
enum Failure {
    /// An attempt or the deadline ran out: it may have run.
    Timeout,
    /// The connection failed after the request left: it may have run.
    CutOff,
    /// No connection: it did not run.
    Unreachable,
    /// The provider's circuit is open (for this long): it was not called.
    CircuitOpen(Duration),
    /// A non-2xx answer: the provider did not do the work.
    Refused(u16),
    /// A 2xx whose envelope did not parse: it ran, its usage is unknown.
    Malformed(String),
}

impl Failure {
    fn may_have_run(&self) -> bool {
        matches!(self, Self::Timeout | Self::CutOff | Self::Malformed(_))
    }

    fn outcome(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::CutOff => "cut_off",
            Self::Unreachable => "unreachable",
            Self::CircuitOpen(_) => "circuit_open",
            Self::Refused(_) => "refused",
            Self::Malformed(_) => "invalid_answer",
        }
    }

    fn into_error(self) -> AiError {
        match self {
            Self::Timeout => AiError::Timeout,
            Self::CutOff | Self::Unreachable => AiError::Unavailable,
            Self::CircuitOpen(retry_after) => AiError::CircuitOpen { retry_after },
            Self::Refused(status) => AiError::Provider { status },
            Self::Malformed(why) => {
                AiError::InvalidAnswer(format!("not a Messages API reply: {why}"))
            }
        }
    }
}

/// The parts of a Messages API reply koldly reads.
#[derive(Debug, Deserialize)]
struct Reply {
    content: Vec<Content>,
    usage: Usage,
    stop_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Content {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: String,
}

#[derive(Debug, Deserialize)]
struct Usage {
    input_tokens: i64,
    output_tokens: i64,
}

/// The reply's text as the task's output, and the text to cache.
fn answer<T: Task>(reply: &Reply, known: &[&str]) -> Result<(T::Output, String), AiError> {
    if reply.stop_reason.as_deref() == Some("max_tokens") {
        return Err(AiError::InvalidAnswer(
            "the answer was cut off at max_tokens".into(),
        ));
    }
    let text: String = reply
        .content
        .iter()
        .filter(|c| c.kind == "text")
        .map(|c| c.text.as_str())
        .collect();
    let output = parse::<T>(&text, known).map_err(AiError::InvalidAnswer)?;
    Ok((output, text))
}

/// Parses and validates an answer; a code fence around the JSON is allowed.
fn parse<T: Task>(text: &str, known: &[&str]) -> Result<T::Output, String> {
    let trimmed = text.trim();
    let json = trimmed
        .strip_prefix("```json")
        .or_else(|| trimmed.strip_prefix("```"))
        .and_then(|rest| rest.strip_suffix("```"))
        .unwrap_or(trimmed);
    let output: T::Output =
        serde_json::from_str(json).map_err(|e| format!("it is not the expected JSON ({e})"))?;
    output.validate(known)?;
    Ok(output)
}

/// `YYYY-MM` (UTC) of a unix time: the budget's month.
pub fn month_of(unix_seconds: i64) -> String {
    crate::plans::period_of(unix_seconds)
}

impl LanguageModel for Anthropic {
    fn name(&self) -> &'static str {
        "anthropic"
    }

    fn parse_icp<'a>(&'a self, call: &'a Call, task: &'a ParseIcp) -> AiFuture<'a, Icp> {
        Box::pin(self.run(call, task))
    }

    fn draft_email<'a>(&'a self, call: &'a Call, task: &'a DraftEmail) -> AiFuture<'a, EmailDraft> {
        Box::pin(self.run(call, task))
    }

    fn draft_follow_up<'a>(
        &'a self,
        call: &'a Call,
        task: &'a DraftFollowUp,
    ) -> AiFuture<'a, EmailDraft> {
        Box::pin(self.run(call, task))
    }

    fn categorize_reply<'a>(
        &'a self,
        call: &'a Call,
        task: &'a CategorizeReply,
    ) -> AiFuture<'a, ReplyClassification> {
        Box::pin(self.run(call, task))
    }

    fn draft_reply<'a>(&'a self, call: &'a Call, task: &'a DraftReply) -> AiFuture<'a, EmailDraft> {
        Box::pin(self.run(call, task))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_utc_calendar_months() {
        assert_eq!(month_of(0), "1970-01");
        assert_eq!(month_of(951_782_400), "2000-02-29".get(..7).unwrap());
        assert_eq!(month_of(1_798_761_599), "2026-12");
        assert_eq!(month_of(1_798_761_600), "2027-01");
    }

    #[test]
    fn answers_parse_whole_or_not_at_all() {
        let known = ["ada@acme.example"];
        assert!(parse::<DraftEmail>(r#"{"subject":"Hi","body":"Hello.\nBob"}"#, &known).is_ok());
        assert!(
            parse::<DraftEmail>(
                "```json\n{\"subject\":\"Hi\",\"body\":\"Hello.\"}\n```",
                &known
            )
            .is_ok()
        );
        assert!(parse::<DraftEmail>(r#"{"subject":"Hi"}"#, &known).is_err());
        assert!(parse::<DraftEmail>(r#"{"subject":"Hi","body":"x","extra":1}"#, &known).is_err());
        assert!(parse::<DraftEmail>(r#"{"subject":"Hi","body":"#, &known).is_err());
        assert!(parse::<CategorizeReply>(r#"{"category":"maybe"}"#, &known).is_err());
        assert_eq!(
            parse::<CategorizeReply>(r#"{"category":"out_of_office"}"#, &known).unwrap(),
            ReplyClassification::of(crate::ai::tasks::ReplyCategory::OutOfOffice)
        );
        assert_eq!(
            parse::<CategorizeReply>(
                r#"{"category":"out_of_office","confidence":0.9,"return_date":"2026-12-14"}"#,
                &known
            )
            .unwrap()
            .return_date
            .as_deref(),
            Some("2026-12-14")
        );
        assert!(
            parse::<CategorizeReply>(r#"{"category":"question","confidence":7}"#, &known).is_err()
        );
        assert!(
            parse::<CategorizeReply>(
                r#"{"category":"out_of_office","return_date":"next week"}"#,
                &known
            )
            .is_err()
        );
    }
}
