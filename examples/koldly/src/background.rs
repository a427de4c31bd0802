//! Work that runs after the request that asked for it has answered: mail
//! deliveries, and the per-account half of forgot-password (so that its answer
//! takes the same time whether or not the account exists).
//!
//! Every task is tracked: shutdown waits for them ([`Background::wait_idle`]),
//! and so do tests. [`Background::hold`] keeps new tasks from starting while
//! its guard lives, for tests that look at what a request did before its
//! background work ran.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::sync::{Notify, OwnedRwLockWriteGuard, RwLock};

/// Spawns and tracks background tasks; cheap to clone.
#[derive(Clone, Default)]
pub struct Background {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    in_flight: AtomicUsize,
    idle: Notify,
    gate: Arc<RwLock<()>>,
}

impl Background {
    /// A tracker with nothing running.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `work` on its own task, counted until it ends.
    pub fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        self.inner.in_flight.fetch_add(1, Ordering::SeqCst);
        let inner = self.inner.clone();
        tokio::spawn(async move {
            {
                let _open = inner.gate.read().await;
                work.await;
            }
            if inner.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
                inner.idle.notify_waiters();
            }
        });
    }

    /// Waits (at most `limit`) until no task is running or waiting; returns
    /// whether none is.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                let idle = self.inner.idle.notified();
                if self.inner.in_flight.load(Ordering::SeqCst) == 0 {
                    return;
                }
                idle.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }

    /// While the returned guard lives, spawned tasks wait before they start.
    pub async fn hold(&self) -> OwnedRwLockWriteGuard<()> {
        self.inner.gate.clone().write_owned().await
    }
}
