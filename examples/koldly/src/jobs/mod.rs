//! Background jobs: long work (drafting emails with a language model, sending)
//! runs here, never inside a request past its timeout.
//!
//! A route [`JobQueue::enqueue`]s a job (owned by a user, with a JSON payload)
//! and answers 202 with `Location: /api/jobs/{id}`; `GET /api/jobs/{id}`
//! ([`routes`]) shows its owner its state, progress and last error. A
//! [`JobRunner`] claims due jobs of the kinds in its [`Registry`] and runs them:
//!
//! - **One runner per job.** A claim is one statement that marks the job
//!   `running` under a lease (owner and expiry): `FOR UPDATE SKIP LOCKED` on
//!   PostgreSQL, one write transaction on SQLite ([`crate::db::jobs`]). Two
//!   runners, in one process or in several on one database, never hold the same
//!   job; every later write checks the lease owner.
//! - **Crash safety.** A running job's lease is renewed every third of
//!   `JOB_LEASE_SECS`. A runner that dies stops renewing; once the lease passes
//!   another runner claims the job again (the attempt is counted). A job that
//!   keeps killing its runners fails after `max_attempts` claims.
//! - **Time limit.** Each run gets `JOB_TIMEOUT_SECS`, as a steadfast
//!   [`Deadline`](steadfast::Deadline) handlers pass on (the language model's
//!   retries stop at it); a run past it is a transient failure.
//! - **Retries.** A transient failure ([`JobError::transient`], or one
//!   steadfast classifies as such with [`JobError::classified`]) queues the job
//!   again after an exponential backoff (10 s, 20 s… 10 min) while attempts
//!   are left; a permanent one fails it. Retries are rows, so they survive a
//!   restart. A panic fails the job.
//! - **Shutdown.** [`RunnerHandle::shutdown`] stops claiming, lets running jobs
//!   finish within `JOB_SHUTDOWN_GRACE_SECS`, then interrupts the rest and
//!   queues them again at once (the interrupted attempt is not counted).
//!
//! Cost: one claim query per free worker slot and poll (`JOB_POLL_MS`, or at
//! once after an enqueue in this process), one lease renewal per running job
//! every `lease / 3`, two writes per run.
//!
//! # Why not apalis
//!
//! Issue 17 asked for apalis 1.x. Checked on crates.io on 2026-12-01:
//! `apalis` 1.0.0, `apalis-postgres` 1.0.0, `apalis-sqlite` 1.0.0 and
//! `apalis-cron` 1.0.0 exist, but both storage backends depend on **sqlx 0.9**
//! (`apalis-sql` is 1.0.0-rc.9 and only shared utilities); koldly was then on
//! sqlx 0.8 with `sqlx::Any` (it is on 0.9 now). sqlx 0.9's `query()` takes `impl SqlSafeStr`, so
//! moving koldly means touching every `db` module (`users`, `tokens`, … are
//! being changed on other branches now); keeping both majors means two pools
//! per database and two copies of sqlx. apalis also times its leases with the
//! database's `NOW()` (`reenqueue_orphaned.sql`: `NOW() - workers.last_seen`),
//! so "runs again after the lease" cannot be tested with koldly's
//! `ManualClock`, and it stores payloads as bytes, so the owner filter of
//! `GET /api/jobs/{id}` could not be in the same statement as the read. Hence
//! this small runner on a `jobs` table, meeting the same requirements (see
//! `tests/jobs.rs`). Revisit when koldly moves to sqlx 0.9.
//!
//! ```
//! use std::sync::Arc;
//! use koldly::{clock::{Clock, SystemClock}, db::{Db, users}, jobs::{JobContext, JobError, JobQueue, JobsConfig, Registry}};
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let path = std::env::temp_dir().join(format!("koldly-doc-{}.db", uuid::Uuid::new_v4()));
//! let db = Db::connect(&format!("sqlite:{}", path.display())).await?;
//! let clock: Arc<dyn Clock> = Arc::new(SystemClock);
//! # let user = users::insert(&db.pool, users::NewUser { email: "ada@example.com", name: "Ada", password_hash: None, google_id: None, email_verified: true }, clock.now()).await?;
//! let queue = JobQueue::new(db.clone(), clock, &JobsConfig::default());
//! let (done_tx, done) = tokio::sync::oneshot::channel();
//! let done_tx = std::sync::Mutex::new(Some(done_tx));
//! let registry = Registry::new().register("demo.count", move |ctx: JobContext| {
//!     let done_tx = done_tx.lock().unwrap().take();
//!     async move {
//!         let items: Vec<String> = ctx.payload()?;
//!         for done in 1..=items.len() as i64 {
//!             ctx.progress(done, items.len() as i64).await?;
//!         }
//!         if let Some(tx) = done_tx { let _ = tx.send(()); }
//!         Ok::<_, JobError>(())
//!     }
//! });
//! let runner = queue.runner(registry, JobsConfig::default()).spawn();
//! let job = queue.enqueue(&user.id, "demo.count", &["a", "b"]).await?;
//! done.await?;
//! runner.shutdown().await; // lets the run record its end
//! let job = koldly::db::jobs::find(&db.pool, &job.id).await?.unwrap();
//! assert_eq!((job.state.as_str(), job.progress_done, job.progress_total), ("succeeded", 2, 2));
//! # db.pool.close().await; let _ = std::fs::remove_file(&path);
//! # Ok(()) }
//! ```

mod handler;
pub mod routes;
mod runner;

use std::{sync::Arc, time::Duration};

pub use handler::{JobContext, JobError, JobFuture, JobHandler, Registry};
pub use runner::{JobRunner, RunnerHandle, default_backoff};
use serde::Serialize;
use steadfast::retry::Backoff;
use tokio::sync::Notify;

use crate::{
    clock::Clock,
    db::{
        Db,
        jobs::{self, Job, NewJob},
    },
};

/// The runner's settings, as [`crate::config::Cli`] reads them from flags and
/// environment variables.
///
/// | Variable | Meaning | Default |
/// |---|---|---|
/// | `JOB_WORKERS` | jobs run at once per process | 4 |
/// | `JOB_LEASE_SECS` | lease of a claimed job (renewed every third) | 60 |
/// | `JOB_TIMEOUT_SECS` | one run's time limit | 600 |
/// | `JOB_POLL_MS` | how often to look for due jobs | 1000 |
/// | `JOB_SHUTDOWN_GRACE_SECS` | how long running jobs may finish at shutdown | 15 |
/// | `JOB_MAX_ATTEMPTS` | claims before a job fails | 3 |
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// Jobs run at once.
    pub workers: usize,
    /// Lease of a claimed job.
    pub lease: Duration,
    /// One run's limit.
    pub job_timeout: Duration,
    /// Poll interval.
    pub poll_interval: Duration,
    /// Grace at shutdown.
    pub shutdown_grace: Duration,
    /// Claims before a job fails (for new jobs).
    pub max_attempts: i64,
    /// Delay before retry `n` after a transient failure (`exponential(n)`).
    pub retry_backoff: Backoff,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            workers: 4,
            lease: Duration::from_secs(60),
            job_timeout: Duration::from_secs(600),
            poll_interval: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(15),
            max_attempts: 3,
            retry_backoff: default_backoff(),
        }
    }
}

/// Where routes put jobs; cheap to clone.
#[derive(Clone)]
pub struct JobQueue {
    db: Db,
    clock: Arc<dyn Clock>,
    max_attempts: i64,
    wake: Arc<Notify>,
}

impl JobQueue {
    /// A queue on `db`.
    pub fn new(db: Db, clock: Arc<dyn Clock>, config: &JobsConfig) -> Self {
        Self {
            db,
            clock,
            max_attempts: config.max_attempts,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Queues a job of `kind` for `user_id`, due now, and wakes this process's
    /// runner.
    pub async fn enqueue(
        &self,
        user_id: &str,
        kind: &str,
        payload: &impl Serialize,
    ) -> Result<Job, sqlx::Error> {
        let payload =
            serde_json::to_value(payload).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        let now = self.clock.now();
        let job = jobs::enqueue(
            &self.db.pool,
            NewJob {
                user_id,
                kind,
                payload: &payload,
                max_attempts: self.max_attempts,
                run_at: now,
            },
            now,
        )
        .await?;
        self.wake.notify_one();
        Ok(job)
    }

    /// A runner of `registry` on this queue's database, woken by its enqueues.
    pub fn runner(&self, registry: Registry, config: JobsConfig) -> JobRunner {
        JobRunner::new(
            self.db.clone(),
            self.clock.clone(),
            registry,
            config,
            self.wake.clone(),
        )
    }
}
