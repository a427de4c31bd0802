//! The adaptive limit (AIMD on latency), the slots and the queue.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::Waker,
    time::Duration,
};

use tokio::time::Instant;

use super::OverloadConfig;
use crate::Deadline;

/// Weight of a new latency sample in the moving average.
const EWMA_WEIGHT: f64 = 0.1;

pub(crate) struct Limiter {
    pub(crate) config: OverloadConfig,
    state: Mutex<State>,
    pub(crate) refused_deadline: AtomicU64,
    pub(crate) refused_queue_full: AtomicU64,
}

struct State {
    limit: f64,
    in_flight: usize,
    queue: VecDeque<Arc<Waiter>>,
    /// Moving average of admitted requests' latency, in seconds.
    latency: Option<f64>,
    /// When the limit was last cut: only requests admitted after it may cut it
    /// again, so one burst of slow answers cuts it once.
    last_decrease: Option<Instant>,
}

/// A queued request, granted a slot under the limiter's lock.
pub(crate) struct Waiter {
    granted: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Waiter {
    pub(crate) fn is_granted(&self, cx_waker: &Waker) -> bool {
        // Register first, then check: a grant in between wakes the new waker.
        *self.waker.lock().unwrap_or_else(|p| p.into_inner()) = Some(cx_waker.clone());
        self.granted.load(Ordering::Acquire)
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// It could not start in time to finish before its deadline.
    Deadline,
    /// The queue was full.
    QueueFull,
}

pub(crate) enum Admission {
    Now,
    Queued {
        waiter: Arc<Waiter>,
        give_up_at: Instant,
    },
    Refused {
        why: Refusal,
        retry_after: Duration,
    },
}

impl Limiter {
    pub(crate) fn new(config: OverloadConfig) -> Self {
        Self {
            state: Mutex::new(State {
                limit: f64::from(config.initial_limit),
                in_flight: 0,
                queue: VecDeque::new(),
                latency: None,
                last_decrease: None,
            }),
            config,
            refused_deadline: AtomicU64::new(0),
            refused_queue_full: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn limit(&self) -> u32 {
        self.lock().limit as u32
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    pub(crate) fn queued(&self) -> usize {
        self.lock().queue.len()
    }

    /// Admits, queues or refuses a request arriving at `now` (the caller's
    /// clock reading, which also dates an admitted request's slot).
    pub(crate) fn admit(&self, deadline: Option<Deadline>, now: Instant) -> Admission {
        if deadline.is_some_and(|d| d.instant() <= now) {
            return self.refuse(Refusal::Deadline, Duration::ZERO);
        }
        let mut s = self.lock();
        if s.queue.is_empty() && (s.in_flight as f64) < s.limit.floor() {
            s.in_flight += 1;
            return Admission::Now;
        }
        let latency = self.latency_estimate(&s);
        // A slot frees every `latency / limit` on average.
        let wait = latency.mul_f64((s.queue.len() + 1) as f64 / s.limit.max(1.0));
        if s.queue.len() >= self.config.max_queue {
            drop(s);
            return self.refuse(Refusal::QueueFull, wait);
        }
        // The latest start that still finishes (on average) by the deadline.
        let latest_start = match deadline {
            Some(d) => d.instant().checked_sub(latency).unwrap_or(now),
            None => now + self.config.max_wait,
        };
        if now + wait >= latest_start {
            drop(s);
            return self.refuse(Refusal::Deadline, wait);
        }
        let waiter = Arc::new(Waiter {
            granted: AtomicBool::new(false),
            waker: Mutex::new(None),
        });
        s.queue.push_back(waiter.clone());
        Admission::Queued {
            waiter,
            give_up_at: latest_start,
        }
    }

    fn refuse(&self, why: Refusal, wait: Duration) -> Admission {
        match why {
            Refusal::Deadline => &self.refused_deadline,
            Refusal::QueueFull => &self.refused_queue_full,
        }
        .fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        ::metrics::counter!(
            crate::metrics::OVERLOAD_REFUSALS,
            "reason" => match why {
                Refusal::Deadline => "deadline",
                Refusal::QueueFull => "queue_full",
            }
        )
        .increment(1);
        Admission::Refused {
            why,
            retry_after: wait.max(Duration::from_secs(1)),
        }
    }

    /// The average latency, or the target before any request was answered.
    fn latency_estimate(&self, s: &State) -> Duration {
        s.latency
            .map_or(self.config.latency_target, Duration::from_secs_f64)
    }

    /// A queued request gives up: `true` when it was granted a slot meanwhile
    /// (it holds the slot and may run), `false` when it left the queue.
    pub(crate) fn leave_queue(&self, waiter: &Arc<Waiter>) -> bool {
        let mut s = self.lock();
        if waiter.granted.load(Ordering::Acquire) {
            return true;
        }
        s.queue.retain(|w| !Arc::ptr_eq(w, waiter));
        false
    }

    /// A queued request gave up too late or a granted one was dropped: count
    /// it as given up.
    pub(crate) fn refused_while_queued(&self) -> Admission {
        self.refuse(Refusal::Deadline, self.wait_estimate())
    }

    fn wait_estimate(&self) -> Duration {
        let s = self.lock();
        self.latency_estimate(&s)
            .mul_f64((s.queue.len() + 1) as f64 / s.limit.max(1.0))
    }

    /// A request that held a slot ended after `latency`; `overloaded` when its
    /// answer said so (`None` when it was dropped unanswered).
    pub(crate) fn release(&self, admitted: Instant, latency: Duration, overloaded: Option<bool>) {
        let mut wake = Vec::new();
        {
            let mut s = self.lock();
            s.in_flight = s.in_flight.saturating_sub(1);
            let cfg = &self.config;
            let too_slow = latency > cfg.latency_target || overloaded == Some(true);
            if too_slow {
                if s.last_decrease.is_none_or(|at| admitted >= at) {
                    s.limit = (s.limit * cfg.decrease_factor).max(f64::from(cfg.min_limit));
                    s.last_decrease = Some(Instant::now());
                }
            } else if overloaded.is_some() && (s.in_flight + 1) as f64 * 2.0 >= s.limit {
                // Additive increase: one more slot per `limit` good answers.
                s.limit = (s.limit + 1.0 / s.limit).min(f64::from(cfg.max_limit));
            }
            if overloaded.is_some() {
                let sample = latency.as_secs_f64();
                s.latency = Some(match s.latency {
                    Some(avg) => avg + EWMA_WEIGHT * (sample - avg),
                    None => sample,
                });
            }
            while (s.in_flight as f64) < s.limit.floor() {
                let Some(waiter) = s.queue.pop_front() else {
                    break;
                };
                s.in_flight += 1;
                waiter.granted.store(true, Ordering::Release);
                wake.push(waiter);
            }
        }
        for waiter in wake {
            if let Some(w) = waiter
                .waker
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
            {
                w.wake();
            }
        }
    }
}
