//! Background jobs: long work (drafting emails with a language model, sending)
//! runs here, never inside a request past its timeout. The engine is
//! **apalis 1.0**: apalis-postgres when `DATABASE_URL` is PostgreSQL,
//! apalis-sqlite otherwise (in a file of its own beside koldly's, `<file>-jobs`).
//!
//! A route [`JobQueue::enqueue`]s a job (owned by a user, with a JSON payload):
//! koldly writes its row in the `jobs` table (owner, kind, payload, state,
//! attempts, progress, last error), then pushes a task carrying the row's id
//! on apalis's queue for that kind. It answers 202 with
//! `Location: /api/jobs/{id}`; `GET /api/jobs/{id}` ([`routes`]) reads the row
//! in one statement with the owner filter (apalis stores task input as bytes,
//! so the row, not apalis's table, is what the owner sees). A [`JobRunner`]
//! starts one apalis worker per kind in its [`Registry`]; each task goes
//! through a tower service stack: [`RecordOutcome`] (writes how the job ended)
//! around steadfast's `RetryLayer` (retries transient failures with backoff,
//! classified by steadfast) around [`RunAttempt`] (one attempt under the job's
//! time limit). What holds, each shown by a test in `tests/jobs.rs` (on
//! SQLite and PostgreSQL) and, for apalis on its own, `tests/apalis.rs`:
//!
//! - **One worker per job.** apalis locks a task to the worker that fetched
//!   it (`FOR UPDATE SKIP LOCKED` on PostgreSQL); another worker, in this
//!   process or another on the same database, does not run it while it runs.
//!   The row's `lease_owner` names the worker; every write checks it.
//! - **Crash safety.** A worker beats every third of `JOB_LEASE_SECS` (whole
//!   seconds, at least 1). A worker that dies — even SIGKILLed — stops
//!   beating; once its lease has passed **on the database's clock**, another
//!   worker takes its tasks back and runs them again (the attempt is
//!   counted). A job that keeps killing its workers fails once its row has
//!   seen more than `max_attempts` starts.
//! - **Time limit.** Each attempt gets `JOB_TIMEOUT_SECS`, as a steadfast
//!   [`Deadline`](steadfast::Deadline) handlers pass on (the language model's
//!   retries stop at it); an attempt past it is a transient failure.
//! - **Retries.** A transient failure ([`JobError::transient`], or one
//!   steadfast classifies as such with [`JobError::classified`]) is tried
//!   again in the same worker after an exponential backoff (10 s, 20 s…
//!   10 min) while attempts are left; its reason shows as the job's error
//!   meanwhile, its state stays `running`. A permanent failure fails the job.
//!   A panic fails the job.
//! - **Shutdown.** [`RunnerHandle::shutdown`] stops claiming, lets running
//!   jobs finish within `JOB_SHUTDOWN_GRACE_SECS`, then stops the rest and
//!   marks their rows queued (the interrupted attempt not counted); apalis
//!   hands them to a worker once this one's lease has passed.
//!
//! Known limit (SQLite only): apalis-sqlite 1.0 can leave a fetch's write
//! transaction open while its worker stops and waits for a running job; an
//! enqueue in that window waits for SQLite's 5 s busy timeout and may fail
//! with "database is locked" (reproduced about 1 run in 6 by enqueueing
//! between `RunnerHandle::stop_claiming` and the running job's end). The
//! enqueue then fails cleanly: the row is marked failed and the route answers
//! an error. PostgreSQL's row locks do not block other writers this way.
//!
//! - **Orphans recovered.** A crash between [`JobQueue::enqueue`]'s row and
//!   its push leaves a `queued` row apalis never got. apalis-postgres 1.0
//!   pushes through its own typed pool (koldly's rows go through
//!   `sqlx::Any`), so the two cannot share a transaction; instead every push
//!   carries the job's id as apalis's idempotency key (unique per queue in
//!   apalis's table), and the orphan sweep ([`JobQueue::sweep_orphans`])
//!   pushes again each job `queued` and unchanged for
//!   [`JobsConfig::orphan_after`] for which apalis holds no task.
//!
//! Periodic work runs on **apalis-cron** ([`JobQueue::spawn_periodic`],
//! schedule [`JobsConfig::periodic`], every minute by default), in every
//! process: the mail outbox's resend and the orphan sweep. With several
//! processes on one database each tick fires in each; each tick's work still
//! happens once because every unit of it is a single atomic claim (not a
//! job pushed once per tick): the outbox claims each message by one
//! conditional update, and the sweep's push is keyed by the job's id, so of
//! several sweeps one creates the task (PostgreSQL refuses the duplicate key,
//! which counts as done; SQLite ignores it). Tested with two processes'
//! schedules ticking every second (`tests/jobs.rs`).
//! Sending runs on a second schedule of the same kind, with its own cadence
//! (`SENDING_TICK_MS`, see [`crate::sending::periodic`]), under the same
//! rule: its unit of work is the atomic claim of one row under a lease.
//!
//! Cost: apalis polls each kind's queue every `JOB_POLL_MS` and beats every
//! third of the lease; two writes to the row per attempt, one per end; a
//! periodic tick reads up to 100 `queued` rows older than `orphan_after`
//! (through the state prefix of the `(state, run_at)` index) and looks each
//! up in apalis's table by its unique `(queue, idempotency key)` index.
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
//! # db.close().await; let _ = std::fs::remove_file(&path);
//! # let _ = std::fs::remove_file(format!("{}-jobs", path.display()));
//! # Ok(()) }
//! ```

mod handler;
mod periodic;
pub mod routes;
mod runner;

use std::{sync::Arc, time::Duration};

pub use handler::{JobContext, JobError, JobFuture, JobHandler, Registry};
pub use periodic::{Every, PeriodicHandle, spawn_schedule};
pub use runner::{
    JobPipeline, JobRunner, RecordOutcome, RetriedAttempts, RunAttempt, RunnerHandle,
    default_backoff,
};
use serde::Serialize;
use steadfast::retry::Backoff;

use crate::{
    clock::Clock,
    db::{
        Db,
        jobs::{self, Job, NewJob},
    },
    error::{ApiError, ApiResult},
    keyed::Keyed,
};

/// What [`crate::keyed`] records a keyed job as.
const KEYED_KIND: &str = "job";

/// The runner's settings, as [`crate::config::Cli`] reads them from flags and
/// environment variables.
///
/// | Variable | Meaning | Default |
/// |---|---|---|
/// | `JOB_WORKERS` | jobs of one kind run at once per process | 4 |
/// | `JOB_LEASE_SECS` | apalis lease of a worker's jobs (a heartbeat every third, database clock) | 60 |
/// | `JOB_TIMEOUT_SECS` | one attempt's time limit | 600 |
/// | `JOB_POLL_MS` | how often each kind's apalis queue is polled | 1000 |
/// | `JOB_SHUTDOWN_GRACE_SECS` | how long running jobs may finish at shutdown | 15 |
/// | `JOB_MAX_ATTEMPTS` | attempts (starts) before a job fails | 3 |
///
/// Not read from the environment: `periodic` (the schedule of the outbox
/// resend and the orphan sweep, a cron expression with seconds, UTC; every
/// minute) and `orphan_after` (how long a queued job's row must be unchanged
/// before the sweep pushes it again; 5 minutes).
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
    /// When periodic work runs (apalis-cron, UTC).
    pub periodic: cron::Schedule,
    /// How long a queued job's row stays unchanged before the orphan sweep
    /// pushes it onto apalis again (when apalis holds no task for it).
    pub orphan_after: Duration,
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
            periodic: every_minute(),
            orphan_after: Duration::from_secs(300),
        }
    }
}

/// The default schedule of periodic work: at second 0 of every minute.
fn every_minute() -> cron::Schedule {
    "0 * * * * *".parse().expect("a valid cron expression")
}

/// Where routes put jobs; cheap to clone.
#[derive(Clone)]
pub struct JobQueue {
    db: Db,
    clock: Arc<dyn Clock>,
    config: JobsConfig,
}

impl JobQueue {
    /// A queue on `db`.
    pub fn new(db: Db, clock: Arc<dyn Clock>, config: &JobsConfig) -> Self {
        Self {
            db,
            clock,
            config: config.clone(),
        }
    }

    /// Queues a job of `kind` for `user_id`, due now: its row (owner, payload,
    /// state) in koldly's `jobs` table, then its task on apalis's queue. When
    /// the task cannot be queued the row is marked failed and the error
    /// returned.
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
                max_attempts: self.config.max_attempts,
                run_at: now,
            },
            now,
        )
        .await?;
        self.push(kind, &job).await?;
        Ok(job)
    }

    /// The job an earlier request with `keyed`'s `Idempotency-Key` queued,
    /// if one did ([`crate::keyed`]): a retry the idempotency store forgot
    /// answers it instead of queueing the work twice. Look it up before the
    /// checks a new job needs (budget, ...).
    pub async fn keyed_earlier(&self, keyed: &Keyed, user_id: &str) -> ApiResult<Option<Job>> {
        let mut conn = self.db.pool.acquire().await?;
        let Some(id) = keyed
            .earlier(&mut conn, user_id, KEYED_KIND, self.clock.now())
            .await?
        else {
            return Ok(None);
        };
        jobs::find_owned(&self.db.pool, &id, user_id)
            .await?
            .map(Some)
            .ok_or_else(|| ApiError::not_found("job"))
    }

    /// [`enqueue`](Self::enqueue), recording in the job row's transaction
    /// that `keyed`'s key queued it. A crash after the commit and before the
    /// push leaves a queued row that [`sweep_orphans`](Self::sweep_orphans)
    /// pushes.
    pub async fn enqueue_keyed(
        &self,
        keyed: &Keyed,
        user_id: &str,
        kind: &str,
        payload: &impl Serialize,
    ) -> ApiResult<Job> {
        let payload =
            serde_json::to_value(payload).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        let now = self.clock.now();
        let mut tx = self.db.pool.begin().await?;
        let job = jobs::insert(
            &mut tx,
            NewJob {
                user_id,
                kind,
                payload: &payload,
                max_attempts: self.config.max_attempts,
                run_at: now,
            },
            now,
        )
        .await?;
        keyed
            .record(&mut tx, user_id, KEYED_KIND, &job.id, now)
            .await?;
        tx.commit().await?;
        self.push(kind, &job).await?;
        Ok(job)
    }

    /// Pushes the task of `job` onto apalis; a failure marks the row failed.
    async fn push(&self, kind: &str, job: &Job) -> Result<(), sqlx::Error> {
        if let Err(e) = runner::push(&self.db, &self.config, kind, &job.id).await {
            tracing::error!(job_id = job.id, error = %e, "job not queued in apalis");
            let now = self.clock.now();
            jobs::fail_unqueued(&self.db.pool, &job.id, "the job could not be queued", now).await?;
            return Err(sqlx::Error::Io(std::io::Error::other(e)));
        }
        Ok(())
    }

    /// A runner of `registry` on this queue's database.
    pub fn runner(&self, registry: Registry, config: JobsConfig) -> JobRunner {
        JobRunner::new(self.db.clone(), self.clock.clone(), registry, config)
    }
}
