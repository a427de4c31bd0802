//! The [`Auditor`]: a bounded queue in front of a background task that writes
//! batches to a [`Sink`], with counters for what was written and what was lost.

use std::{
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use futures_util::FutureExt as _;

use crate::retry::{Backoff, Jitter};
use tokio::{
    sync::{mpsc, oneshot, watch},
    time::Instant,
};

use super::{AuditEvent, Redaction, Sink};
use crate::{BoxError, classify::error_chain};

const DEFAULT_CAPACITY: usize = 4096;
const DEFAULT_MAX_BATCH: usize = 256;
const DEFAULT_WAIT: Duration = Duration::from_millis(5);
const DEFAULT_ATTEMPTS: u32 = 5;
const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(100);
const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(5);
const DEFAULT_SINK_TIMEOUT: Duration = Duration::from_secs(10);
/// At most one "events dropped" warning per this many milliseconds.
const DROP_LOG_INTERVAL_MS: u64 = 1000;

/// What recording does when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullPolicy {
    /// Drop the event at once (counted and logged).
    Drop,
    /// Wait up to this long for room, then drop (counted and logged). The
    /// default is `Wait(5ms)`: a short burst is absorbed, a stalled sink costs
    /// each audited request at most this much.
    Wait(Duration),
}

impl Default for FullPolicy {
    fn default() -> Self {
        Self::Wait(DEFAULT_WAIT)
    }
}

/// A snapshot of an [`Auditor`]'s counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct AuditStats {
    /// Events the sink accepted.
    pub written: u64,
    /// Events lost: the queue was full, the auditor was shut down, or the sink
    /// failed every attempt.
    pub dropped: u64,
    /// Failed sink writes (each attempt counts, retried ones included).
    pub sink_errors: u64,
}

/// Records audit events without ever blocking on the sink.
///
/// Cheap to clone; every clone feeds the same queue and background writer.
/// Events are queued in a bounded channel; one background task takes them in
/// batches, [redacts](Redaction) them and writes them to the [`Sink`]. A failed
/// write is retried with exponential backoff (bounded attempts, each bounded by a
/// timeout); after the last attempt the batch is counted as dropped and logged.
/// When the queue is full, the [`FullPolicy`] decides — never silently: every
/// lost event is counted in [`stats`](Self::stats) and logged (at most once a
/// second, with the running total).
///
/// ```
/// use steadfast::audit::{AuditEvent, Auditor, FullPolicy, MemorySink};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let sink = MemorySink::new();
/// let auditor = Auditor::builder()
///     .capacity(1024)
///     .when_full(FullPolicy::Wait(Duration::from_millis(2)))
///     .build(sink.clone());
///
/// // Outside a request, e.g. in a background job:
/// auditor.record(AuditEvent::new("campaign.send").with_actor("job:mailer")).await;
///
/// auditor.shutdown().await; // writes everything queued, then stops
/// assert_eq!(sink.len(), 1);
/// assert_eq!(auditor.stats().written, 1);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Auditor {
    tx: mpsc::Sender<Message>,
    shared: Arc<Shared>,
}

// Events travel by value: boxing them would cost an allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Message {
    Event(AuditEvent),
    Flush(oneshot::Sender<()>),
    Shutdown,
}

#[derive(Debug)]
struct Shared {
    written: AtomicU64,
    dropped: AtomicU64,
    sink_errors: AtomicU64,
    policy: FullPolicy,
    /// Milliseconds after `epoch` (plus one) of the last drop warning; 0 = never.
    last_drop_log: AtomicU64,
    epoch: std::time::Instant,
    done: watch::Receiver<bool>,
}

impl Shared {
    fn note_dropped(&self, n: u64, why: &'static str) {
        let total = self.dropped.fetch_add(n, Relaxed) + n;
        #[cfg(feature = "metrics")]
        ::metrics::counter!(crate::metrics::AUDIT_DROPPED, "reason" => drop_reason(why))
            .increment(n);
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let last = self.last_drop_log.load(Relaxed);
        if (last == 0 || now.saturating_sub(last) >= DROP_LOG_INTERVAL_MS)
            && self
                .last_drop_log
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
        {
            tracing::warn!(
                target: "steadfast::audit",
                dropped_total = total,
                cause = why,
                "audit events dropped"
            );
        }
    }
}

/// The slow path of recording: waiting for room in a full queue.
pub(crate) type SendLater = Pin<Box<dyn Future<Output = ()> + Send>>;

impl Auditor {
    /// A builder with the defaults.
    pub fn builder() -> AuditorBuilder {
        AuditorBuilder::default()
    }

    /// Records `event`, waiting for room in the queue as the [`FullPolicy`]
    /// allows. Returns whether it was queued; a dropped event is counted.
    pub async fn record(&self, event: AuditEvent) -> bool {
        match self.try_enqueue(event) {
            Ok(queued) => queued,
            Err(event) => match self.shared.policy {
                FullPolicy::Drop => {
                    self.shared.note_dropped(1, "queue full");
                    false
                }
                FullPolicy::Wait(wait) => {
                    send_within(
                        self.tx.clone(),
                        self.shared.clone(),
                        vec![event],
                        Instant::now() + wait,
                    )
                    .await
                        == 1
                }
            },
        }
    }

    /// Records `event` if the queue has room, without waiting. Returns whether
    /// it was queued; a dropped event is counted.
    pub fn try_record(&self, event: AuditEvent) -> bool {
        match self.try_enqueue(event) {
            Ok(queued) => queued,
            Err(_) => {
                self.shared.note_dropped(1, "queue full");
                false
            }
        }
    }

    /// Queues `event` if there is room: `Ok(true)` queued, `Ok(false)` dropped
    /// because the writer is shut down (counted), `Err(event)` when full.
    #[allow(clippy::result_large_err)] // the event comes back by value, unboxed
    pub(crate) fn try_enqueue(&self, event: AuditEvent) -> Result<bool, AuditEvent> {
        match self.tx.try_send(Message::Event(event)) {
            Ok(()) => Ok(true),
            Err(mpsc::error::TrySendError::Full(Message::Event(event))) => Err(event),
            Err(_) => {
                self.shared.note_dropped(1, "auditor shut down");
                Ok(false)
            }
        }
    }

    /// The slow path for events that found the queue full: a future that waits
    /// for room as the policy allows, or `None` (and the events counted as
    /// dropped) under [`FullPolicy::Drop`].
    pub(crate) fn send_later(&self, events: Vec<AuditEvent>) -> Option<SendLater> {
        match self.shared.policy {
            FullPolicy::Drop => {
                self.shared.note_dropped(events.len() as u64, "queue full");
                None
            }
            FullPolicy::Wait(wait) => {
                let deadline = Instant::now() + wait;
                let send = send_within(self.tx.clone(), self.shared.clone(), events, deadline);
                Some(Box::pin(async move {
                    send.await;
                }))
            }
        }
    }

    /// Counts `n` events that could not be queued as dropped.
    pub(crate) fn note_dropped(&self, n: usize, cause: &'static str) {
        self.shared.note_dropped(n as u64, cause);
    }

    /// Waits until every event queued before this call has been written (or,
    /// after failing every retry, counted as dropped).
    pub async fn flush(&self) {
        let (ack, acked) = oneshot::channel();
        if self.tx.send(Message::Flush(ack)).await.is_ok() {
            // An error means the writer stopped, after writing what it had.
            let _ = acked.await;
        } else {
            self.wait_stopped().await;
        }
    }

    /// Stops recording and waits until every queued event has been written.
    ///
    /// Shuts down every clone: events recorded afterwards are dropped (and
    /// counted). Calling it again just waits for the writer to stop.
    pub async fn shutdown(&self) {
        let _ = self.tx.send(Message::Shutdown).await;
        self.wait_stopped().await;
    }

    /// Whether [`shutdown`](Self::shutdown) was called (or the writer stopped).
    pub fn is_shut_down(&self) -> bool {
        self.tx.is_closed()
    }

    /// The counters, read without locking.
    pub fn stats(&self) -> AuditStats {
        AuditStats {
            written: self.written(),
            dropped: self.dropped(),
            sink_errors: self.sink_errors(),
        }
    }

    /// Events the sink accepted.
    pub fn written(&self) -> u64 {
        self.shared.written.load(Relaxed)
    }

    /// Events lost to a full queue, a shut-down auditor or a sink that kept failing.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Relaxed)
    }

    /// Failed sink write attempts.
    pub fn sink_errors(&self) -> u64 {
        self.shared.sink_errors.load(Relaxed)
    }

    async fn wait_stopped(&self) {
        let mut done = self.shared.done.clone();
        // An error means the writer task is gone, which is stopped too.
        let _ = done.wait_for(|stopped| *stopped).await;
    }
}

/// Sends `events` in order, each waiting for room until `deadline`; the rest
/// are counted as dropped, also when this future is dropped unfinished.
/// Returns how many were queued.
async fn send_within(
    tx: mpsc::Sender<Message>,
    shared: Arc<Shared>,
    events: Vec<AuditEvent>,
    deadline: Instant,
) -> usize {
    let mut unsent = Unsent {
        shared,
        count: events.len() as u64,
        cause: "cancelled while waiting for room in the queue",
    };
    let mut sent = 0;
    for event in events {
        match tokio::time::timeout_at(deadline, tx.reserve()).await {
            Ok(Ok(permit)) => {
                permit.send(Message::Event(event));
                unsent.count -= 1;
                sent += 1;
            }
            Ok(Err(_closed)) => {
                unsent.cause = "auditor shut down";
                break;
            }
            Err(_elapsed) => {
                unsent.cause = "queue full";
                break;
            }
        }
    }
    sent
}

/// Counts the events still unsent as dropped when it goes out of scope.
struct Unsent {
    shared: Arc<Shared>,
    count: u64,
    cause: &'static str,
}

impl Drop for Unsent {
    fn drop(&mut self) {
        if self.count > 0 {
            self.shared.note_dropped(self.count, self.cause);
        }
    }
}

/// Configures and starts an [`Auditor`].
#[derive(Debug, Clone)]
pub struct AuditorBuilder {
    capacity: usize,
    policy: FullPolicy,
    writer: WriterConfig,
}

#[derive(Debug, Clone)]
struct WriterConfig {
    max_batch: usize,
    attempts: u32,
    /// The crate's retry schedule, without jitter: one writer, no herd to spread.
    backoff: Backoff,
    sink_timeout: Duration,
    redaction: Redaction,
}

impl Default for AuditorBuilder {
    fn default() -> Self {
        Self {
            capacity: DEFAULT_CAPACITY,
            policy: FullPolicy::default(),
            writer: WriterConfig {
                max_batch: DEFAULT_MAX_BATCH,
                attempts: DEFAULT_ATTEMPTS,
                backoff: doubling(DEFAULT_INITIAL_BACKOFF, DEFAULT_MAX_BACKOFF),
                sink_timeout: DEFAULT_SINK_TIMEOUT,
                redaction: Redaction::new(),
            },
        }
    }
}

impl AuditorBuilder {
    /// How many events the queue holds (default 4096; at least 1).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// What recording does when the queue is full (default `Wait(5ms)`).
    pub fn when_full(mut self, policy: FullPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The most events handed to the sink in one write (default 256; at least 1).
    pub fn max_batch(mut self, max: usize) -> Self {
        self.writer.max_batch = max.max(1);
        self
    }

    /// How many times a batch is tried before it is dropped (default 5; at least 1).
    pub fn sink_attempts(mut self, attempts: u32) -> Self {
        self.writer.attempts = attempts.max(1);
        self
    }

    /// The wait before the first retry, doubling up to `max` (default 100 ms up to 5 s).
    pub fn sink_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.writer.backoff = doubling(initial, max.max(initial));
        self
    }

    /// How long one sink write may take before it counts as failed (default 10 s).
    pub fn sink_timeout(mut self, timeout: Duration) -> Self {
        self.writer.sink_timeout = timeout;
        self
    }

    /// What is redacted and escaped before the sink sees an event (default [`Redaction::new`]).
    pub fn redaction(mut self, redaction: Redaction) -> Self {
        self.writer.redaction = redaction;
        self
    }

    /// Starts the background writer on the current Tokio runtime and returns the
    /// auditor. Panics outside a Tokio runtime.
    pub fn build<S: Sink>(self, sink: S) -> Auditor {
        let (tx, rx) = mpsc::channel(self.capacity);
        let (done_tx, done_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            written: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            sink_errors: AtomicU64::new(0),
            policy: self.policy,
            last_drop_log: AtomicU64::new(0),
            epoch: std::time::Instant::now(),
            done: done_rx,
        });
        tokio::spawn(run(sink, rx, shared.clone(), self.writer, done_tx));
        Auditor { tx, shared }
    }
}

/// The background writer: batches, redacts, writes, acknowledges flushes.
async fn run<S: Sink>(
    mut sink: S,
    mut rx: mpsc::Receiver<Message>,
    shared: Arc<Shared>,
    config: WriterConfig,
    done: watch::Sender<bool>,
) {
    let mut inbox = Vec::with_capacity(config.max_batch);
    let mut batch = Vec::with_capacity(config.max_batch);
    while rx.recv_many(&mut inbox, config.max_batch).await > 0 {
        for message in inbox.drain(..) {
            match message {
                Message::Event(mut event) => {
                    config.redaction.apply(&mut event);
                    batch.push(event);
                }
                Message::Flush(ack) => {
                    write_batch(&mut sink, &mut batch, &shared, &config).await;
                    let _ = ack.send(());
                }
                // Refuse new events; the loop drains what is queued, then ends.
                Message::Shutdown => rx.close(),
            }
        }
        write_batch(&mut sink, &mut batch, &shared, &config).await;
    }
    let dropped = shared.dropped.load(Relaxed);
    if dropped > 0 {
        tracing::warn!(
            target: "steadfast::audit",
            written = shared.written.load(Relaxed),
            dropped,
            sink_errors = shared.sink_errors.load(Relaxed),
            "audit writer stopped; some events were dropped"
        );
    }
    done.send_replace(true);
}

/// Writes `batch` with retries, counts the result and empties it.
async fn write_batch<S: Sink>(
    sink: &mut S,
    batch: &mut Vec<AuditEvent>,
    shared: &Shared,
    config: &WriterConfig,
) {
    if batch.is_empty() {
        return;
    }
    let len = batch.len() as u64;
    for attempt in 1..=config.attempts {
        let write = AssertUnwindSafe(sink.write(batch)).catch_unwind();
        let error: BoxError = match tokio::time::timeout(config.sink_timeout, write).await {
            Ok(Ok(Ok(()))) => {
                shared.written.fetch_add(len, Relaxed);
                #[cfg(feature = "metrics")]
                ::metrics::counter!(crate::metrics::AUDIT_WRITTEN).increment(len);
                batch.clear();
                return;
            }
            Ok(Ok(Err(error))) => error,
            Ok(Err(_panic)) => "the sink panicked".into(),
            Err(_elapsed) => {
                format!("the sink did not finish within {:?}", config.sink_timeout).into()
            }
        };
        shared.sink_errors.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        ::metrics::counter!(crate::metrics::AUDIT_SINK_ERRORS).increment(1);
        if attempt == config.attempts {
            tracing::error!(
                target: "steadfast::audit",
                events = len,
                error.type = crate::classify::classify_error(&*error).class().as_str(),
                attempts = attempt,
                error = %error_chain(&*error),
                "audit sink failed; events dropped"
            );
            shared.note_dropped(len, "sink failed");
            batch.clear();
            return;
        }
        let backoff = config.backoff.exponential(attempt);
        tracing::warn!(
            target: "steadfast::audit",
            events = len,
            error.type = crate::classify::classify_error(&*error).class().as_str(),
            attempt,
            retry_in = ?backoff,
            error = %error_chain(&*error),
            "audit sink failed; retrying"
        );
        tokio::time::sleep(backoff).await;
    }
}

/// The metrics label of a drop's cause (the log line's words, as a label).
#[cfg(feature = "metrics")]
fn drop_reason(why: &'static str) -> &'static str {
    match why {
        "queue full" => "queue_full",
        "auditor shut down" => "shut_down",
        "sink failed" => "sink_failed",
        _ => "cancelled",
    }
}

/// `initial`, doubling up to `max`: the crate's [`Backoff`] without jitter.
fn doubling(initial: Duration, max: Duration) -> Backoff {
    Backoff::new(initial, 2.0, max, Jitter::None)
}
