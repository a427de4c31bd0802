//! What a job kind implements ([`JobHandler`]), what it is given
//! ([`JobContext`]) and how it fails ([`JobError`]).

use std::{collections::HashMap, future::Future, pin::Pin, sync::Arc};

use serde::de::DeserializeOwned;
use steadfast::{Deadline, classify::classify_error};

use crate::{
    ai::AiError,
    clock::Clock,
    db::{
        Db,
        jobs::{self, Job},
    },
};

/// The future a handler returns.
pub type JobFuture = Pin<Box<dyn Future<Output = Result<(), JobError>> + Send + 'static>>;

/// One kind of job. Closures `Fn(JobContext) -> impl Future<Output =
/// Result<(), JobError>>` implement it.
pub trait JobHandler: Send + Sync + 'static {
    /// Does the job. It may run more than once (after a crash or a transient
    /// failure), so it must be safe to repeat: check what is already done.
    fn run(&self, ctx: JobContext) -> JobFuture;
}

impl<F, Fut> JobHandler for F
where
    F: Fn(JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), JobError>> + Send + 'static,
{
    fn run(&self, ctx: JobContext) -> JobFuture {
        Box::pin(self(ctx))
    }
}

/// The handlers a runner serves, by kind.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<String, Arc<dyn JobHandler>>,
}

impl Registry {
    /// No kinds.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `kind` with `handler`.
    ///
    /// # Panics
    ///
    /// When `kind` is empty or has a character other than a lower-case ASCII
    /// letter, a digit, `.` or `-` (kinds are constants in code; the claim
    /// query matches them as a list).
    pub fn register(mut self, kind: &str, handler: impl JobHandler) -> Self {
        assert!(
            !kind.is_empty()
                && kind
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-'),
            "job kind `{kind}` must be lower-case letters, digits, `.` or `-`"
        );
        self.handlers.insert(kind.to_owned(), Arc::new(handler));
        self
    }

    /// The kinds served, sorted.
    pub fn kinds(&self) -> Vec<&str> {
        let mut kinds: Vec<&str> = self.handlers.keys().map(String::as_str).collect();
        kinds.sort_unstable();
        kinds
    }

    pub(super) fn get(&self, kind: &str) -> Option<Arc<dyn JobHandler>> {
        self.handlers.get(kind).cloned()
    }
}

/// What a running job is given.
pub struct JobContext {
    /// The job as claimed (its `attempts` counts this run).
    pub job: Job,
    /// When the job's time is up: pass it to every call that can wait (the
    /// language model honours it).
    pub deadline: Deadline,
    pub(super) db: Db,
    pub(super) owner: String,
    pub(super) clock: Arc<dyn Clock>,
}

impl JobContext {
    /// The payload as `T`; a payload that does not fit is a permanent failure.
    pub fn payload<T: DeserializeOwned>(&self) -> Result<T, JobError> {
        serde_json::from_value(self.job.payload.clone()).map_err(|e| {
            tracing::error!(job_id = self.job.id, error = %e, "job payload does not fit its kind");
            JobError::permanent("the job's input is invalid")
        })
    }

    /// The owner's user id.
    pub fn user_id(&self) -> &str {
        &self.job.user_id
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Records progress (`done` of `total`), shown by `GET /api/jobs/{id}`.
    pub async fn progress(&self, done: i64, total: i64) -> Result<(), JobError> {
        let now = self.clock.now();
        jobs::progress(&self.db.pool, &self.job.id, &self.owner, done, total, now).await?;
        Ok(())
    }
}

/// Why a run failed. Its message is shown to the job's owner: say what
/// happened in their words; put details in the log, never secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    message: String,
    transient: bool,
}

impl JobError {
    /// A failure that may pass: the job is tried again later, while attempts
    /// are left.
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            transient: true,
        }
    }

    /// A failure that will not pass: the job fails now.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            transient: false,
        }
    }

    /// A failure classified by steadfast (`classify_error`): timeouts,
    /// connection failures and overload are transient, anything else permanent.
    pub fn classified(err: &(dyn std::error::Error + 'static), message: impl Into<String>) -> Self {
        let class = classify_error(err);
        tracing::warn!(error = %steadfast::classify::error_chain(err), class = class.class().as_str(), "job step failed");
        Self {
            message: message.into(),
            transient: class.is_transient(),
        }
    }

    /// The owner-facing message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether a retry may succeed.
    pub fn is_transient(&self) -> bool {
        self.transient
    }
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for JobError {}

impl From<AiError> for JobError {
    fn from(err: AiError) -> Self {
        if let AiError::Storage(e) = &err {
            tracing::error!(error = %e, "AI bookkeeping failed");
        }
        Self {
            message: err.to_string(),
            transient: err.is_transient(),
        }
    }
}

impl From<sqlx::Error> for JobError {
    fn from(err: sqlx::Error) -> Self {
        tracing::error!(error = %err, "database error in a job");
        Self::transient("a database error interrupted the job")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_classified_by_steadfast() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(JobError::classified(&refused, "the provider is unreachable").is_transient());
        let timeout = steadfast::Error::new(steadfast::ErrorClass::Timeout, "slow");
        assert!(JobError::classified(&timeout, "too slow").is_transient());
        let bad_input = serde_json::from_str::<u32>("x").unwrap_err();
        let err = JobError::classified(&bad_input, "the input is invalid");
        assert!(!err.is_transient());
        assert_eq!(err.message(), "the input is invalid");

        assert!(!JobError::from(AiError::BudgetExhausted).is_transient());
        assert!(!JobError::from(AiError::InvalidAnswer("x".into())).is_transient());
        assert!(JobError::from(AiError::Timeout).is_transient());
        assert!(JobError::from(AiError::Provider { status: 429 }).is_transient());
        assert!(!JobError::from(AiError::Provider { status: 401 }).is_transient());
        assert_eq!(
            JobError::from(AiError::BudgetExhausted).message(),
            "the monthly AI budget is exhausted"
        );
    }

    #[test]
    #[should_panic(expected = "job kind `Bad_Kind`")]
    fn kinds_are_checked() {
        let _ = Registry::new().register("Bad_Kind", |_: JobContext| async { Ok(()) });
    }
}
