//! When sending happens: the sending tick ([`Worker::tick`]) is periodic work
//! on the job engine — an apalis-cron schedule of its own
//! ([`crate::jobs::spawn_schedule`], the same machinery as the outbox resend
//! and the orphan sweep of [`crate::jobs::JobQueue::spawn_periodic`]), one
//! tick every `SENDING_TICK_MS` rounded up to whole seconds (apalis-cron's
//! ticks are whole seconds of UTC), in every process that sends. A tick that
//! fires while the previous one still runs is skipped: a process runs one
//! sending tick at a time.
//!
//! Why every row goes out once however many processes tick: each tick's unit
//! of work is one atomic claim of one row under a lease
//! ([`crate::db::sending::claim`], in one transaction with its campaign's row
//! locked), and the row is `sending` in the database before the provider is
//! called. Of several processes whose ticks fire in the same second, one
//! claims a given row; the others find its campaign busy or the row gone from
//! the due rows. Each message is not a job pushed per tick (that would need
//! its own deduplication); the claim is the deduplication.
//!
//! At shutdown ([`crate::app::AppHandles::close`]) the schedule stops ticking
//! and a tick under way gets `JOB_SHUTDOWN_GRACE_SECS` to finish its provider
//! call and record the outcome; past that it is dropped where it is, and the
//! lease rules take over: a row left `sending` becomes `unknown` once its
//! lease passes (never resent blindly).

use std::time::Duration;

use super::worker::{TickReport, Worker};
use crate::jobs::{Every, PeriodicHandle, spawn_schedule};

impl Worker {
    /// Runs [`tick`](Self::tick) on an apalis-cron schedule, every `every`
    /// (rounded up to whole seconds), until the handle's
    /// [`shutdown`](PeriodicHandle::shutdown).
    pub fn schedule(self, every: Duration) -> PeriodicHandle {
        let every = Every::new(every);
        tracing::info!(
            provider = self.provider_name(),
            every = ?every.period(),
            "sending scheduled on the job engine"
        );
        spawn_schedule("sending", every, move || {
            let worker = self.clone();
            async move {
                let report = worker.tick().await;
                if report != TickReport::default() {
                    tracing::info!(?report, "sending tick");
                }
            }
        })
    }
}
