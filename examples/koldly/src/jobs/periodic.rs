//! Periodic work on apalis-cron: on each tick of `JobsConfig::periodic`
//! (UTC), the mail outbox's resend and the orphan sweep (jobs whose row was
//! written but whose apalis task never was).
//!
//! Every koldly process runs this schedule; with several processes on one
//! database each tick fires in each. What makes each piece of a tick's work
//! happen once is that every unit of it is a single atomic claim: the outbox
//! claims each message by one conditional update (of several processes,
//! exactly one resends it per attempt), and the sweep pushes a job's task
//! keyed by the job's id, which apalis's table keeps unique per queue (of
//! several sweeps, one task is created).

use std::{sync::Mutex, time::Duration};

use apalis::prelude::{Data, WorkerBuilder, WorkerError};
use apalis_cron::{CronScheduler, Tick};
use tokio::{sync::watch, task::JoinHandle};

use super::{JobQueue, runner};
use crate::{db::jobs, mail::Mailer};

/// How many orphaned jobs one sweep pushes at most.
const SWEEP_BATCH: i64 = 100;

/// What one tick does.
#[derive(Clone)]
struct PeriodicWork {
    queue: JobQueue,
    mailer: Option<Mailer>,
}

impl PeriodicWork {
    async fn run(&self) {
        if let Some(mailer) = &self.mailer {
            let resent = mailer.resend_failed().await;
            if resent > 0 {
                tracing::info!(resent, "outbox job: failed mail resent");
            }
        }
        match self.queue.sweep_orphans().await {
            Ok(0) => {}
            Ok(pushed) => tracing::warn!(pushed, "orphaned jobs queued again"),
            Err(e) => tracing::error!(error = %e, "orphan sweep failed"),
        }
    }
}

async fn tick(_tick: Tick, work: Data<PeriodicWork>) {
    work.run().await;
}

/// The running schedule: stop it with [`shutdown`](Self::shutdown).
pub struct PeriodicHandle {
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl PeriodicHandle {
    /// Stops ticking; a tick under way gets `grace` to finish, then is
    /// dropped where it is (its claims make a later tick pick it up).
    pub async fn shutdown(&self, grace: Duration) {
        let _ = self.stop.send(true);
        let task = self.task.lock().expect("periodic handle lock").take();
        if let Some(task) = task {
            let abort = task.abort_handle();
            if tokio::time::timeout(grace, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl JobQueue {
    /// Starts koldly's periodic work on this queue's schedule
    /// (`JobsConfig::periodic`): each tick resends the outbox's resendable
    /// mail (when `mailer` is given) and runs [`sweep_orphans`](Self::sweep_orphans).
    pub fn spawn_periodic(&self, mailer: Option<Mailer>) -> PeriodicHandle {
        let work = PeriodicWork {
            queue: self.clone(),
            mailer,
        };
        let (stop, mut stopped) = watch::channel(false);
        let worker = WorkerBuilder::new(format!("koldly-periodic-{}", uuid::Uuid::new_v4()))
            .backend(CronScheduler::new(self.config.periodic.clone()))
            .data(work)
            .build(tick);
        let task = tokio::spawn(async move {
            let signal = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
                Ok::<(), WorkerError>(())
            };
            if let Err(e) = worker.run_until(signal).await {
                tracing::error!(error = %e, "periodic worker stopped with an error");
            }
        });
        PeriodicHandle {
            stop,
            task: Mutex::new(Some(task)),
        }
    }

    /// Pushes again onto apalis the jobs still `queued` whose row has not
    /// changed for `JobsConfig::orphan_after` and for which apalis holds no
    /// task: a crash between [`enqueue`](Self::enqueue)'s row and its push
    /// leaves such a job, which would otherwise never run. The push is keyed
    /// by the job's id, so sweeps in several processes (or a sweep racing a
    /// slow enqueue) create one task. Returns how many it pushed.
    pub async fn sweep_orphans(&self) -> Result<usize, sqlx::Error> {
        let bound = i64::try_from(self.config.orphan_after.as_secs()).unwrap_or(i64::MAX);
        let before = self.clock.now().saturating_sub(bound);
        let candidates = jobs::queued_before(&self.db.pool, before, SWEEP_BATCH).await?;
        let mut pushed = 0;
        for job in candidates {
            if runner::held_by_apalis(&self.db, &job.kind, &job.id).await? {
                continue;
            }
            match runner::push(&self.db, &self.config, &job.kind, &job.id).await {
                Ok(()) => {
                    tracing::warn!(
                        job_id = job.id,
                        kind = job.kind,
                        "orphaned job queued again"
                    );
                    pushed += 1;
                }
                Err(e) => tracing::error!(job_id = job.id, error = %e, "orphaned job not queued"),
            }
        }
        Ok(pushed)
    }
}
