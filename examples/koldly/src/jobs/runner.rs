//! The runner: claims due jobs under a lease, runs them with a time limit,
//! renews their leases while they run, records how they ended, and stops
//! gracefully.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use steadfast::{
    Deadline,
    retry::{Backoff, Jitter},
};
use tokio::{
    sync::{Notify, watch},
    task::{AbortHandle, JoinHandle, JoinSet},
};

use super::{
    JobsConfig,
    handler::{JobContext, JobError, Registry},
};
use crate::{
    clock::Clock,
    db::{
        Db,
        jobs::{self, Finish, Job},
    },
};

/// Runs jobs of the kinds in its [`Registry`]; see [`JobRunner::spawn`].
pub struct JobRunner {
    db: Db,
    clock: Arc<dyn Clock>,
    registry: Arc<Registry>,
    config: JobsConfig,
    worker_id: String,
    wake: Arc<Notify>,
}

/// A running [`JobRunner`]: stop it with [`shutdown`](Self::shutdown). Cheap to
/// clone.
#[derive(Clone)]
pub struct RunnerHandle {
    inner: Arc<HandleInner>,
}

struct HandleInner {
    worker_id: String,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<usize>>>,
}

impl JobRunner {
    /// A runner of `registry`'s kinds; `wake` is the queue's (an enqueue wakes
    /// it before its next poll).
    pub fn new(
        db: Db,
        clock: Arc<dyn Clock>,
        registry: Registry,
        config: JobsConfig,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            db,
            clock,
            registry: Arc::new(registry),
            config,
            worker_id: format!("runner-{}", uuid::Uuid::new_v4()),
            wake,
        }
    }

    /// This runner's id: the `lease_owner` of the jobs it holds.
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// Starts claiming and running jobs in the background, at most
    /// `config.workers` at a time.
    pub fn spawn(self) -> RunnerHandle {
        let (stop, stopped) = watch::channel(false);
        let worker_id = self.worker_id.clone();
        let task = tokio::spawn(self.run(stopped));
        RunnerHandle {
            inner: Arc::new(HandleInner {
                worker_id,
                stop,
                task: Mutex::new(Some(task)),
            }),
        }
    }

    async fn run(self, mut stopped: watch::Receiver<bool>) -> usize {
        let registry = self.registry.clone();
        let kinds = registry.kinds();
        let mut running: JoinSet<()> = JoinSet::new();
        let mut holding: HashMap<tokio::task::Id, String> = HashMap::new();
        let this = Arc::new(self);
        if kinds.is_empty() {
            tracing::info!("job runner has no job kinds to run");
        }
        loop {
            while !kinds.is_empty() && running.len() < this.config.workers && !*stopped.borrow() {
                match this.claim(&kinds).await {
                    Ok(Some(job)) if *stopped.borrow() => {
                        // Stopped while the claim was in flight: hand it back.
                        this.release(&job.id).await;
                        break;
                    }
                    Ok(Some(job)) => {
                        let id = job.id.clone();
                        let handle: AbortHandle = running.spawn(this.clone().execute(job));
                        holding.insert(handle.id(), id);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "claiming a job failed");
                        break;
                    }
                }
            }
            tokio::select! {
                changed = stopped.changed() => {
                    if changed.is_err() || *stopped.borrow() {
                        break;
                    }
                }
                Some(done) = running.join_next_with_id(), if !running.is_empty() => {
                    let id = match &done { Ok((id, ())) => *id, Err(e) => e.id() };
                    holding.remove(&id);
                }
                () = this.wake.notified() => {}
                () = tokio::time::sleep(this.config.poll_interval) => {}
            }
        }
        this.drain(running, holding).await
    }

    /// After a stop: claims nothing more, lets the running jobs finish within
    /// the grace period, then interrupts the rest and queues them again.
    /// Returns how many were interrupted.
    async fn drain(
        &self,
        mut running: JoinSet<()>,
        mut holding: HashMap<tokio::task::Id, String>,
    ) -> usize {
        tracing::info!(
            running = running.len(),
            grace = ?self.config.shutdown_grace,
            "job runner stopping: no new claims; letting running jobs finish"
        );
        let grace = tokio::time::sleep(self.config.shutdown_grace);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                done = running.join_next_with_id() => match done {
                    None => return 0,
                    Some(Ok((id, ()))) => { holding.remove(&id); }
                    Some(Err(e)) => { holding.remove(&e.id()); }
                },
                () = &mut grace => break,
            }
        }
        running.abort_all();
        while running.join_next().await.is_some() {}
        let interrupted = holding.len();
        for job_id in holding.into_values() {
            tracing::warn!(job_id, "job interrupted by shutdown; queued again");
            self.release(&job_id).await;
        }
        interrupted
    }

    /// Queues a job this runner holds again at once, its attempt not counted.
    async fn release(&self, job_id: &str) {
        let now = self.clock.now();
        if let Err(e) = jobs::finish(
            &self.db.pool,
            job_id,
            &self.worker_id,
            Finish::Released,
            now,
        )
        .await
        {
            tracing::error!(job_id, error = %e, "job not released; it runs again after its lease");
        }
    }

    async fn claim(&self, kinds: &[&str]) -> Result<Option<Job>, sqlx::Error> {
        let now = self.clock.now();
        let Some(job) = jobs::claim(
            &self.db,
            &self.worker_id,
            kinds,
            now,
            now + self.lease_secs(),
        )
        .await?
        else {
            return Ok(None);
        };
        tracing::info!(
            job_id = job.id,
            kind = job.kind,
            attempt = job.attempts,
            "job claimed"
        );
        Ok(Some(job))
    }

    fn lease_secs(&self) -> i64 {
        i64::try_from(self.config.lease.as_secs()).unwrap_or(i64::MAX / 4)
    }

    /// Runs one claimed job and records how it ended.
    async fn execute(self: Arc<Self>, job: Job) {
        let id = job.id.clone();
        let finish = self.outcome(job).await;
        let Some(finish) = finish else { return };
        let now = self.clock.now();
        let (message, finish) = match &finish {
            Ended::Succeeded => (None, Finish::Succeeded),
            Ended::Failed(m) => (Some(m.as_str()), Finish::Failed(m)),
            Ended::Retry(m, run_at) => (
                Some(m.as_str()),
                Finish::Retry {
                    error: m,
                    run_at: *run_at,
                },
            ),
        };
        match jobs::finish(&self.db.pool, &id, &self.worker_id, finish, now).await {
            Ok(true) => tracing::info!(job_id = id, ?finish, "job run ended"),
            Ok(false) => {
                tracing::warn!(job_id = id, error = ?message, "job lease lost before the end was recorded")
            }
            Err(e) => {
                tracing::error!(job_id = id, error = %e, "job end not recorded; it runs again after its lease")
            }
        }
    }

    /// How the run ended; `None` when the lease was lost (another runner owns
    /// the job now, and nothing may be written).
    async fn outcome(&self, job: Job) -> Option<Ended> {
        let attempt = job.attempts;
        let max_attempts = job.max_attempts;
        if attempt > max_attempts {
            return Some(Ended::Failed(
                "the job was interrupted too many times".to_owned(),
            ));
        }
        let Some(handler) = self.registry.get(&job.kind) else {
            return Some(Ended::Failed(
                "this kind of job is not supported".to_owned(),
            ));
        };
        let deadline = Deadline::after(self.config.job_timeout);
        let job_id = job.id.clone();
        let ctx = JobContext {
            job,
            deadline,
            db: self.db.clone(),
            owner: self.worker_id.clone(),
            clock: self.clock.clone(),
        };
        // Its own task, so a panic is caught; aborted with this one (a kill).
        let work = AbortOnDrop(tokio::spawn(handler.run(ctx)));
        let result = tokio::select! {
            joined = work => joined,
            () = deadline.sleep() => Ok(Err(JobError::transient("the job ran past its time limit"))),
            () = self.keep_lease(&job_id) => return None,
        };
        Some(match result {
            Ok(Ok(())) => Ended::Succeeded,
            Ok(Err(e)) if e.is_transient() && attempt < max_attempts => {
                let delay = self.config.retry_backoff.exponential(attempt as u32);
                let run_at = self.clock.now() + i64::try_from(delay.as_secs()).unwrap_or(0);
                Ended::Retry(e.message().to_owned(), run_at)
            }
            Ok(Err(e)) => Ended::Failed(e.message().to_owned()),
            Err(join) => {
                tracing::error!(error = %join, "job handler panicked");
                Ended::Failed("the job failed unexpectedly".to_owned())
            }
        })
    }

    /// Renews the lease every third of it; returns when it was lost.
    async fn keep_lease(&self, job_id: &str) {
        let every = (self.config.lease / 3).max(Duration::from_millis(100));
        loop {
            tokio::time::sleep(every).await;
            let until = self.clock.now() + self.lease_secs();
            match jobs::renew(&self.db.pool, job_id, &self.worker_id, until).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(job_id, "job lease lost; abandoning the run");
                    return;
                }
                Err(e) => tracing::warn!(job_id, error = %e, "job lease not renewed; retrying"),
            }
        }
    }
}

enum Ended {
    Succeeded,
    Failed(String),
    Retry(String, i64),
}

/// A task that is aborted when its handle is dropped.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> std::future::Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl RunnerHandle {
    /// The runner's id (the `lease_owner` of its jobs).
    pub fn worker_id(&self) -> &str {
        &self.inner.worker_id
    }

    /// Stops claiming, lets running jobs finish within the configured grace
    /// period, then queues any still running again. Returns how many were
    /// interrupted. Calling it again returns 0.
    pub async fn shutdown(&self) -> usize {
        self.stop_claiming();
        let task = self.inner.task.lock().expect("runner handle lock").take();
        match task {
            Some(task) => task.await.unwrap_or(0),
            None => 0,
        }
    }

    /// Stops claiming jobs, at once; running jobs go on. [`shutdown`](Self::shutdown)
    /// then waits for them.
    pub fn stop_claiming(&self) {
        let _ = self.inner.stop.send(true);
    }

    /// Stops the runner as a crash would: its tasks are aborted where they
    /// are, and the jobs it holds keep their leases until those pass.
    pub fn kill(&self) {
        if let Some(task) = self.inner.task.lock().expect("runner handle lock").take() {
            task.abort();
        }
    }
}

/// The default schedule of retries after a transient failure: 10 s, 20 s,
/// 40 s… capped at 10 minutes, no jitter (the poll interval spreads them).
pub fn default_backoff() -> Backoff {
    Backoff::new(
        Duration::from_secs(10),
        2.0,
        Duration::from_secs(600),
        Jitter::None,
    )
}
