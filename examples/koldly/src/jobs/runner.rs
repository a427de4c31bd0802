//! The runner: an apalis worker takes koldly's jobs off apalis's queue (under
//! apalis's lease) and runs each through a tower service stack —
//! [`RecordOutcome`] around steadfast's [`Retry`] around [`RunAttempt`] —
//! and stops gracefully.

use std::{
    collections::HashSet,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use apalis::prelude::{
    BackendExt, BoxDynError, Data, WorkerBuilder, WorkerBuilderExt, WorkerError,
};
use serde::{Deserialize, Serialize};
use steadfast::{
    BoxError, Deadline,
    classify::{Classification, ErrorClass},
    retry::{Backoff, CloneReplay, Jitter, Retry, RetryLayer, RetryPolicy, ThreadRandom},
};
use tokio::{sync::watch, task::JoinHandle};
use tower::{Layer, Service, ServiceExt};

use super::{
    JobsConfig,
    handler::{JobContext, JobError, Registry},
};
use crate::{
    clock::Clock,
    db::{
        Db, QueuePool, job_queue,
        jobs::{self, Finish},
    },
};

/// What koldly puts on apalis's queue: the id of its `jobs` row, where the
/// owner, kind, payload, state, progress and errors live (apalis stores a
/// task's input as bytes; the row keeps `GET /api/jobs/{id}` one
/// owner-filtered statement).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct JobTask {
    pub(crate) job_id: String,
}

/// The apalis queue of jobs of `kind`: one per kind, so a runner takes only
/// the kinds it can run.
fn queue_name(kind: &str) -> String {
    format!("koldly.{kind}")
}

/// apalis's lease from `JOB_LEASE_SECS`: a worker beats every third of it
/// (whole seconds, at least one) and loses its tasks once it has missed
/// enough beats to span the lease (timed by the database's clock).
fn heartbeat(config: &JobsConfig) -> (Duration, usize) {
    let lease = config.lease.as_secs().max(1);
    let beat = (lease / 3).max(1);
    let missed = usize::try_from((lease / beat).max(1)).unwrap_or(usize::MAX);
    (Duration::from_secs(beat), missed)
}

fn postgres_storage(
    pool: &sqlx::PgPool,
    config: &JobsConfig,
    kind: &str,
) -> apalis_postgres::PostgresStorage<JobTask> {
    let (beat, missed) = heartbeat(config);
    apalis_postgres::PostgresStorage::new(pool).with_config(
        apalis_postgres::Config::default()
            .queue(queue_name(kind))
            .batch_size(config.workers.max(1))
            .heartbeat_interval(beat)
            .missed_heartbeats(missed),
    )
}

fn sqlite_storage(
    pool: &sqlx::SqlitePool,
    config: &JobsConfig,
    kind: &str,
) -> apalis_sqlite::SqliteStorage<JobTask> {
    let (beat, missed) = heartbeat(config);
    apalis_sqlite::SqliteStorage::new(pool).with_config(
        apalis_sqlite::Config::default()
            .queue(queue_name(kind))
            .batch_size(config.workers.max(1))
            .heartbeat_interval(beat)
            .missed_heartbeats(missed),
    )
}

/// Puts job `job_id` of `kind` on apalis's queue, keyed by the job's id
/// (apalis's idempotency key, unique per queue): a job gets one apalis task
/// however many times it is pushed (by its enqueue and by the orphan sweep,
/// in any process). A push refused because apalis already holds the key is
/// a success.
pub(crate) async fn push(
    db: &Db,
    config: &JobsConfig,
    kind: &str,
    job_id: &str,
) -> Result<(), BoxDynError> {
    use apalis::prelude::{TaskBuilder, TaskSink};
    let task = TaskBuilder::new(JobTask {
        job_id: job_id.to_owned(),
    })
    .idempotency_key(job_id)
    .build();
    let pushed = match &db.queue {
        QueuePool::Postgres(pool) => postgres_storage(pool, config, kind)
            .push_task(task)
            .await
            .map_err(BoxDynError::from),
        QueuePool::Sqlite(pool) => sqlite_storage(pool, config, kind)
            .push_task(task)
            .await
            .map_err(BoxDynError::from),
    };
    match pushed {
        Ok(()) => Ok(()),
        // PostgreSQL answers a duplicate key with a unique violation (SQLite
        // ignores it): another push of this job got there first.
        Err(e) if held_by_apalis(db, kind, job_id).await? => {
            tracing::debug!(job_id, error = %e, "job already on apalis's queue");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Whether apalis's queue of `kind` holds a task for job `job_id`.
pub(crate) async fn held_by_apalis(db: &Db, kind: &str, job_id: &str) -> Result<bool, sqlx::Error> {
    job_queue::holds(&db.queue, &queue_name(kind), job_id).await
}

/// What every service of one runner shares.
struct Shared {
    db: Db,
    clock: Arc<dyn Clock>,
    registry: Registry,
    config: JobsConfig,
    worker_id: String,
    /// Jobs being run now (released if shutdown interrupts them).
    running: Mutex<HashSet<String>>,
    /// Set when the runner is killed or its grace has run out: runs stop
    /// where they are and record nothing.
    halted: watch::Sender<bool>,
}

/// One attempt at a job: marks its row running (counting the attempt), runs
/// its handler under the job's time limit in a task of its own (a panic is a
/// permanent failure) and answers the handler's result. A transient failure
/// on the job's last attempt is answered as permanent, so the retry layer
/// stops.
#[derive(Clone)]
pub struct RunAttempt {
    shared: Arc<Shared>,
}

impl Service<JobTask> for RunAttempt {
    type Response = ();
    type Error = JobError;
    type Future = Pin<Box<dyn Future<Output = Result<(), JobError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), JobError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, task: JobTask) -> Self::Future {
        Box::pin(attempt(self.shared.clone(), task))
    }
}

async fn attempt(shared: Arc<Shared>, task: JobTask) -> Result<(), JobError> {
    let now = shared.clock.now();
    let Some(job) = jobs::start(&shared.db.pool, &task.job_id, &shared.worker_id, now).await?
    else {
        tracing::warn!(job_id = task.job_id, "queued job has no open row; skipped");
        return Ok(());
    };
    let (attempt, max_attempts) = (job.attempts, job.max_attempts);
    tracing::info!(job_id = job.id, kind = job.kind, attempt, "job started");
    if attempt > max_attempts {
        return Err(JobError::permanent(
            "the job was interrupted too many times",
        ));
    }
    let Some(handler) = shared.registry.get(&job.kind) else {
        return Err(JobError::permanent("this kind of job is not supported"));
    };
    let deadline = Deadline::after(shared.config.job_timeout);
    let ctx = JobContext {
        job,
        deadline,
        db: shared.db.clone(),
        owner: shared.worker_id.clone(),
        clock: shared.clock.clone(),
    };
    let mut halted = shared.halted.subscribe();
    // Its own task, so a panic is caught; aborted when this future is dropped.
    let work = AbortOnDrop(tokio::spawn(handler.run(ctx)));
    let result = tokio::select! {
        joined = work => joined.unwrap_or_else(|join| {
            tracing::error!(error = %join, "job handler panicked");
            Err(JobError::permanent("the job failed unexpectedly"))
        }),
        () = deadline.sleep() => Err(JobError::transient("the job ran past its time limit")),
        () = async { let _ = halted.wait_for(|halted| *halted).await; } => {
            // As a crash: the run stops here and records nothing.
            std::future::pending::<()>().await;
            unreachable!()
        }
    };
    match result {
        Err(e) if e.is_transient() && attempt < max_attempts => {
            let now = shared.clock.now();
            let noted = jobs::note_error(
                &shared.db.pool,
                &task.job_id,
                &shared.worker_id,
                e.message(),
                now,
            )
            .await;
            if let Err(db) = noted {
                tracing::warn!(job_id = task.job_id, error = %db, "job error not recorded");
            }
            tracing::info!(job_id = task.job_id, attempt, error = %e, "job attempt failed; retrying");
            Err(e)
        }
        Err(e) if e.is_transient() => Err(JobError::permanent(e.message())),
        other => other,
    }
}

/// steadfast's classification of a job's outcome: a transient [`JobError`]
/// is retried, a permanent one is not.
fn classify_job(outcome: Result<&(), &JobError>) -> Option<Classification> {
    match outcome {
        Ok(()) => None,
        Err(e) if e.is_transient() => Some(Classification::new(ErrorClass::Network)),
        Err(_) => Some(Classification::new(ErrorClass::Internal)),
    }
}

type Classify = fn(Result<&(), &JobError>) -> Option<Classification>;

/// The retried attempts: steadfast's retry layer around [`RunAttempt`].
pub type RetriedAttempts = Retry<RunAttempt, CloneReplay, Classify, ThreadRandom>;

/// The outermost service: runs the retried attempts and records how the job
/// ended on its row (only the worker that runs it may write there).
#[derive(Clone)]
pub struct RecordOutcome<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Service<JobTask> for RecordOutcome<S>
where
    S: Service<JobTask, Response = (), Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = ();
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, task: JobTask) -> Self::Future {
        let inner = self.inner.clone();
        let shared = self.shared.clone();
        Box::pin(async move {
            let id = task.job_id.clone();
            shared.running.lock().expect("running").insert(id.clone());
            let outcome = inner.oneshot(task).await;
            shared.running.lock().expect("running").remove(&id);
            let message;
            let finish = match &outcome {
                Ok(()) => Finish::Succeeded,
                Err(e) => {
                    message = match e.downcast_ref::<JobError>() {
                        Some(e) => e.message().to_owned(),
                        None => {
                            tracing::error!(job_id = id, error = %e, "job failed outside its handler");
                            "the job failed unexpectedly".to_owned()
                        }
                    };
                    Finish::Failed(&message)
                }
            };
            let now = shared.clock.now();
            match jobs::finish(&shared.db.pool, &id, &shared.worker_id, finish, now).await {
                Ok(true) => tracing::info!(job_id = id, ?finish, "job ended"),
                Ok(false) => tracing::warn!(
                    job_id = id,
                    "job run ended after another worker took it over, or the job had ended; nothing recorded"
                ),
                Err(e) => {
                    tracing::error!(job_id = id, error = %e, "job end not recorded");
                    return Err(e.into());
                }
            }
            Ok(())
        })
    }
}

/// The whole stack one apalis worker calls per task.
pub type JobPipeline = RecordOutcome<RetriedAttempts>;

/// The apalis task function: hands the task to the pipeline.
async fn run_job(task: JobTask, pipeline: Data<JobPipeline>) -> Result<(), BoxDynError> {
    (*pipeline).clone().oneshot(task).await
}

/// Runs jobs of the kinds in its [`Registry`]; see [`JobRunner::spawn`].
pub struct JobRunner {
    shared: Arc<Shared>,
}

/// A running [`JobRunner`]: stop it with [`shutdown`](Self::shutdown). Cheap to
/// clone.
#[derive(Clone)]
pub struct RunnerHandle {
    inner: Arc<HandleInner>,
}

struct HandleInner {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl JobRunner {
    /// A runner of `registry`'s kinds on `db`'s job queue.
    pub fn new(db: Db, clock: Arc<dyn Clock>, registry: Registry, config: JobsConfig) -> Self {
        let (halted, _) = watch::channel(false);
        Self {
            shared: Arc::new(Shared {
                db,
                clock,
                registry,
                config,
                // apalis needs a unique name per live worker.
                worker_id: format!("koldly-{}", uuid::Uuid::new_v4()),
                running: Mutex::new(HashSet::new()),
                halted,
            }),
        }
    }

    /// This runner's id: apalis's worker name, and the `lease_owner` of the
    /// jobs it runs.
    pub fn worker_id(&self) -> &str {
        &self.shared.worker_id
    }

    /// The service stack a task goes through.
    fn pipeline(&self) -> JobPipeline {
        let config = &self.shared.config;
        let retries = u32::try_from(config.max_attempts.saturating_sub(1)).unwrap_or(0);
        let policy = RetryPolicy::new()
            .max_retries(retries)
            .backoff(config.retry_backoff)
            .without_budget();
        let retry = RetryLayer::for_clone_requests(policy).classifier(classify_job as Classify);
        RecordOutcome {
            inner: retry.layer(RunAttempt {
                shared: self.shared.clone(),
            }),
            shared: self.shared.clone(),
        }
    }

    /// Starts, in the background, one apalis worker per kind of the registry,
    /// each running up to `config.workers` jobs at a time.
    pub fn spawn(self) -> RunnerHandle {
        let (stop, stopped) = watch::channel(false);
        let shared = self.shared.clone();
        let kinds: Vec<String> = shared
            .registry
            .kinds()
            .into_iter()
            .map(str::to_owned)
            .collect();
        if kinds.is_empty() {
            tracing::info!("job runner has no job kinds to run");
        }
        let pipeline = self.pipeline();
        let mut workers = tokio::task::JoinSet::new();
        for kind in kinds {
            let mut stopped = stopped.clone();
            let signal = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
                Ok::<(), WorkerError>(())
            };
            // apalis needs a unique name per live worker.
            let name = format!("{}/{kind}", shared.worker_id);
            let concurrency = shared.config.workers.max(1);
            match &shared.db.queue {
                QueuePool::Postgres(pool) => {
                    let worker = WorkerBuilder::new(name.as_str())
                        .backend(
                            postgres_storage(pool, &shared.config, &kind)
                                .poll_with_interval(shared.config.poll_interval),
                        )
                        .data(pipeline.clone())
                        .concurrency(concurrency)
                        .build(run_job);
                    workers.spawn(worker.run_until(signal));
                }
                QueuePool::Sqlite(pool) => {
                    let worker = WorkerBuilder::new(name.as_str())
                        .backend(
                            sqlite_storage(pool, &shared.config, &kind)
                                .poll_with_interval(shared.config.poll_interval),
                        )
                        .data(pipeline.clone())
                        .concurrency(concurrency)
                        .build(run_job);
                    workers.spawn(worker.run_until(signal));
                }
            }
        }
        let mut stopped = stopped;
        let task = tokio::spawn(async move {
            // Dropping the set (an abort of this task) aborts every worker.
            while let Some(ended) = workers.join_next().await {
                match ended {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "job worker stopped with an error"),
                    Err(e) => tracing::error!(error = %e, "job worker task failed"),
                }
            }
            let _ = stopped.wait_for(|stop| *stop).await;
        });
        RunnerHandle {
            inner: Arc::new(HandleInner {
                shared,
                stop,
                task: Mutex::new(Some(task)),
            }),
        }
    }
}

/// A task that is aborted when its handle is dropped.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl RunnerHandle {
    /// The runner's id (apalis's worker name, the `lease_owner` of its jobs).
    pub fn worker_id(&self) -> &str {
        &self.inner.shared.worker_id
    }

    /// Stops claiming, lets running jobs finish within the configured grace
    /// period, then stops the rest where they are and marks them queued again
    /// (the interrupted attempt not counted; apalis hands them to a worker
    /// once this one's lease has passed). Returns how many were interrupted.
    /// Calling it again returns 0.
    pub async fn shutdown(&self) -> usize {
        self.stop_claiming();
        let task = self.inner.task.lock().expect("runner handle lock").take();
        let Some(task) = task else { return 0 };
        let shared = &self.inner.shared;
        tracing::info!(
            running = shared.running.lock().expect("running").len(),
            grace = ?shared.config.shutdown_grace,
            "job runner stopping: no new claims; letting running jobs finish"
        );
        let abort = task.abort_handle();
        if tokio::time::timeout(shared.config.shutdown_grace, task)
            .await
            .is_ok()
        {
            return 0;
        }
        let _ = shared.halted.send(true);
        abort.abort();
        let interrupted: Vec<String> = shared.running.lock().expect("running").drain().collect();
        for job_id in &interrupted {
            tracing::warn!(job_id, "job interrupted by shutdown; queued again");
            let now = shared.clock.now();
            if let Err(e) = jobs::finish(
                &shared.db.pool,
                job_id,
                &shared.worker_id,
                Finish::Released,
                now,
            )
            .await
            {
                tracing::error!(job_id, error = %e, "job not released");
            }
        }
        interrupted.len()
    }

    /// Stops claiming jobs, at once; running jobs go on. [`shutdown`](Self::shutdown)
    /// then waits for them.
    pub fn stop_claiming(&self) {
        let _ = self.inner.stop.send(true);
    }

    /// Stops the runner as a crash would: its runs stop where they are, record
    /// nothing, and its apalis worker stops beating, so its jobs run again
    /// elsewhere once its lease has passed.
    pub fn kill(&self) {
        let _ = self.inner.shared.halted.send(true);
        if let Some(task) = self.inner.task.lock().expect("runner handle lock").take() {
            task.abort();
        }
    }
}

/// The default schedule of retries after a transient failure: 10 s, 20 s,
/// 40 s… capped at 10 minutes, no jitter.
pub fn default_backoff() -> Backoff {
    Backoff::new(
        Duration::from_secs(10),
        2.0,
        Duration::from_secs(600),
        Jitter::None,
    )
}
