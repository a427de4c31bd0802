//! The language model: a [`LanguageModel`] trait with typed tasks, and two
//! providers.
//!
//! - [`Offline`] (the default: no network, no key) fills templates from the
//!   prospect, the sender and the ICP. Same input, same output; its drafts
//!   meet every rule of [`tasks::EmailDraft`] (subject under 60 characters,
//!   body under 120 words, no placeholder left, no invented address).
//! - [`Anthropic`] speaks the Anthropic Messages API (`AI_BASE_URL`,
//!   `AI_API_KEY`, a model per task) through steadfast's `RetryLayer`: a 429,
//!   503 or 529 is retried after its `Retry-After`, each attempt has a
//!   timeout, and nothing runs past the call's [`Deadline`] (the job's).
//!   Every call reserves its most possible cost from the user's monthly
//!   budget before it is sent and settles the real cost after
//!   ([`crate::db::ai_usage`]); answers are cached per user by a hash of the
//!   input.
//!
//! Every answer is parsed into the task's output type and validated
//! ([`tasks::Validate`]); an answer that fails either is an
//! [`AiError::InvalidAnswer`], never a half-filled value. User text reaches the
//! model only inside delimited data blocks ([`prompt`]).
//!
//! Use it from a job (long work never runs inside a request); the app holds
//! one as `state.ai`. With the offline provider:
//!
//! ```
//! use koldly::ai::{Call, LanguageModel, Offline, tasks::{DraftEmail, Prospect, Sender}};
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), koldly::ai::AiError> {
//! let model: &dyn LanguageModel = &Offline;
//! let call = Call::new("user-id", 500);
//! let task = DraftEmail {
//!     sender: Sender { name: "Bob".into(), company: None, product_description: "Invoicing for plumbers.".into() },
//!     icp: None,
//!     prospect: Prospect { email: "ada@acme.example".into(), first_name: Some("Ada".into()), ..Default::default() },
//!     feedback: None,
//! };
//! let draft = model.draft_email(&call, &task).await?;
//! assert!(draft.subject.chars().count() < 60);
//! assert!(draft.body.starts_with("Hi Ada,"));
//! assert_eq!(draft, model.draft_email(&call, &task).await?, "deterministic");
//! # Ok(()) }
//! ```
//!
//! Cost: the offline provider is a few string operations. The Anthropic
//! provider adds, per call, one cache read, a reservation transaction, the
//! HTTP exchange and a settlement transaction (plus a cache write on success).

mod anthropic;
mod config;
mod offline;
pub mod prompt;
pub mod tasks;

use std::{fmt, future::Future, pin::Pin, time::Duration};

pub use anthropic::{Anthropic, PROMPT_OVERHEAD_TOKENS, Pricing, month_of};
pub use config::{AiConfig, AnthropicConfig, Models};
pub use offline::Offline;
use steadfast::Deadline;
use tasks::{
    CategorizeReply, DraftEmail, DraftFollowUp, DraftReply, EmailDraft, Icp, ParseIcp,
    ReplyClassification,
};

/// What a call of the model returns.
pub type AiFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, AiError>> + Send + 'a>>;

/// Who a call is for and what bounds it.
#[derive(Debug, Clone)]
pub struct Call {
    /// The user who pays (and whose cache is used).
    pub user_id: String,
    /// The job the call is part of, recorded with its usage.
    pub job_id: Option<String>,
    /// The user's monthly AI budget, in cents (from the plan).
    pub monthly_budget_cents: i64,
    /// No attempt or retry delay runs past this (the job's deadline).
    pub deadline: Option<Deadline>,
}

impl Call {
    /// A call for `user_id` with a monthly budget, outside any job.
    pub fn new(user_id: impl Into<String>, monthly_budget_cents: i64) -> Self {
        Self {
            user_id: user_id.into(),
            job_id: None,
            monthly_budget_cents,
            deadline: None,
        }
    }

    /// Part of job `id`.
    pub fn in_job(mut self, id: impl Into<String>) -> Self {
        self.job_id = Some(id.into());
        self
    }

    /// Bounded by `deadline`.
    pub fn until(mut self, deadline: Deadline) -> Self {
        self.deadline = Some(deadline);
        self
    }
}

/// A language model. Every task returns its typed, validated output or an
/// error; object safe, so the app holds an `Arc<dyn LanguageModel>`.
pub trait LanguageModel: Send + Sync + 'static {
    /// `offline` or `anthropic`.
    fn name(&self) -> &'static str;
    /// Turns a description of the customers into an ICP.
    fn parse_icp<'a>(&'a self, call: &'a Call, task: &'a ParseIcp) -> AiFuture<'a, Icp>;
    /// Writes the first email to a prospect.
    fn draft_email<'a>(&'a self, call: &'a Call, task: &'a DraftEmail) -> AiFuture<'a, EmailDraft>;
    /// Writes a follow-up.
    fn draft_follow_up<'a>(
        &'a self,
        call: &'a Call,
        task: &'a DraftFollowUp,
    ) -> AiFuture<'a, EmailDraft>;
    /// Files a reply.
    fn categorize_reply<'a>(
        &'a self,
        call: &'a Call,
        task: &'a CategorizeReply,
    ) -> AiFuture<'a, ReplyClassification>;
    /// Answers a reply.
    fn draft_reply<'a>(&'a self, call: &'a Call, task: &'a DraftReply) -> AiFuture<'a, EmailDraft>;
}

/// Why a call produced no value. The `Display` text is fit for the user (a
/// job's `last_error`): it names no key, URL or provider text.
#[derive(Debug)]
pub enum AiError {
    /// The month's AI budget cannot cover the call; nothing was sent.
    BudgetExhausted,
    /// The answer did not parse into the task's type or broke a rule.
    InvalidAnswer(String),
    /// An attempt or the call's deadline ran out.
    Timeout,
    /// The provider refused the call (after retries, for 429/503/529).
    Provider {
        /// Its status.
        status: u16,
    },
    /// The provider could not be reached.
    Unavailable,
    /// The provider failed too often: its circuit breaker refuses calls for
    /// a while, and this one was not sent.
    CircuitOpen {
        /// How long until the circuit lets a call through again.
        retry_after: Duration,
    },
    /// The usage or cache tables failed.
    Storage(sqlx::Error),
}

impl AiError {
    /// Whether trying again later may succeed (a job retries these).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Timeout | Self::Unavailable | Self::CircuitOpen { .. } | Self::Storage(_) => true,
            Self::Provider { status } => matches!(status, 429 | 500..=599),
            Self::BudgetExhausted | Self::InvalidAnswer(_) => false,
        }
    }
}

impl fmt::Display for AiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BudgetExhausted => f.write_str("the monthly AI budget is exhausted"),
            Self::InvalidAnswer(why) => write!(f, "the language model's answer was invalid: {why}"),
            Self::Timeout => f.write_str("the language model did not answer in time"),
            Self::Provider { status } => {
                write!(f, "the language model provider refused the call ({status})")
            }
            Self::Unavailable => f.write_str("the language model provider is unreachable"),
            Self::CircuitOpen { retry_after } => write!(
                f,
                "the language model provider is failing: calls are paused for {} s",
                retry_after.as_secs_f64().ceil()
            ),
            Self::Storage(_) => f.write_str("AI usage could not be recorded"),
        }
    }
}

impl std::error::Error for AiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Storage(e) => Some(e),
            _ => None,
        }
    }
}

impl From<sqlx::Error> for AiError {
    fn from(err: sqlx::Error) -> Self {
        Self::Storage(err)
    }
}
