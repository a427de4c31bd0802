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
//!
//! [`spawn_schedule`] is the one way koldly runs work on a schedule: the
//! sending tick ([`crate::sending::periodic`]) runs on it too, with its own
//! cadence ([`Every`]).

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use apalis::prelude::{Data, WorkerBuilder, WorkerError};
use apalis_cron::{CronScheduler, Schedule, Tick, timezone::Utc};
use tokio::{sync::watch, task::JoinHandle};

use super::{JobQueue, runner};
use crate::{db::jobs, mail::Mailer};

/// How many orphaned jobs one sweep pushes at most.
const SWEEP_BATCH: i64 = 100;

/// What one tick of koldly's periodic work does.
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

/// The work of one tick of a schedule, as [`spawn_schedule`] runs it.
type TickWork = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The apalis task function of every schedule: a tick fires while the
/// previous one of the same schedule still runs (apalis-cron does not wait)
/// is skipped, so a process never runs two ticks of one schedule at once.
async fn tick(_tick: Tick, work: Data<ScheduledWork>) {
    let Ok(_running) = work.running.try_lock() else {
        tracing::debug!(
            schedule = work.name,
            "previous tick still running; tick skipped"
        );
        return;
    };
    (work.work)().await;
}

#[derive(Clone)]
struct ScheduledWork {
    name: &'static str,
    work: TickWork,
    running: Arc<tokio::sync::Mutex<()>>,
}

/// An apalis-cron schedule of one tick every `every` (whole seconds, at
/// least one; apalis-cron's ticks are whole seconds of UTC), counted from
/// the tick that fired (or from the start).
#[derive(Debug, Clone, Copy)]
pub struct Every(u64);

impl Every {
    /// Every `every`, rounded up to whole seconds (at least one).
    pub fn new(every: Duration) -> Self {
        let secs = every.as_secs() + u64::from(every.subsec_nanos() > 0);
        Self(secs.max(1))
    }

    /// The period, in whole seconds.
    pub fn period(&self) -> Duration {
        Duration::from_secs(self.0)
    }
}

impl Schedule<Utc> for Every {
    fn next_tick(&mut self, _: &Utc) -> Option<Tick<Utc>> {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Some(Tick::new(now + self.0))
    }
}

/// A running schedule: stop it with [`shutdown`](Self::shutdown).
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

/// Runs `work` on each tick of `schedule` (apalis-cron, UTC), one tick at a
/// time (a tick that fires while the previous one runs is skipped), until
/// the handle's [`shutdown`](PeriodicHandle::shutdown). `name` names the
/// schedule in logs and apalis's worker name.
///
/// apalis-cron ends its worker with an error when it is polled after its
/// next tick has passed (a process suspended, the system clock set
/// forward); the schedule is then started again, so it never stops for
/// good before its shutdown.
pub fn spawn_schedule<S, W, F>(name: &'static str, schedule: S, work: W) -> PeriodicHandle
where
    S: Schedule<Utc> + Clone + Send + Sync + Unpin + 'static,
    W: Fn() -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let work = ScheduledWork {
        name,
        work: Arc::new(move || Box::pin(work())),
        running: Arc::new(tokio::sync::Mutex::new(())),
    };
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            let worker = WorkerBuilder::new(format!("koldly-{name}-{}", uuid::Uuid::new_v4()))
                .backend(CronScheduler::new(schedule.clone()))
                .data(work.clone())
                .build(tick);
            let mut signal_stopped = stopped.clone();
            let signal = async move {
                let _ = signal_stopped.wait_for(|stop| *stop).await;
                Ok::<(), WorkerError>(())
            };
            match worker.run_until(signal).await {
                Ok(()) => break,
                Err(_) if *stopped.borrow() => break,
                Err(e) => {
                    tracing::warn!(schedule = name, error = %e, "schedule stopped with an error; started again");
                    // Not in a tight loop should the error repeat.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    PeriodicHandle {
        stop,
        task: Mutex::new(Some(task)),
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
        spawn_schedule("periodic", self.config.periodic.clone(), move || {
            let work = work.clone();
            async move { work.run().await }
        })
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
