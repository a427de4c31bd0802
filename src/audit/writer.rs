//! The [`Auditor`]: a bounded queue in front of a background task that writes
//! batches to a [`Sink`], with counters for what was written and what was lost.

use std::{
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
    },
    time::Duration,
};

use futures_util::FutureExt as _;

use crate::retry::{Backoff, Jitter};
use tokio::{
    sync::{Notify, mpsc, oneshot, watch},
    time::Instant,
};

use super::{AuditEvent, Redaction, Sink};
use crate::{BoxError, classify::error_chain};

const DEFAULT_CAPACITY: usize = 4096;
/// The share of the queue kept for security events by default: one slot in eight.
const DEFAULT_RESERVE_DIVISOR: usize = 8;
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

impl FullPolicy {
    /// Wait for room however long it takes: the event is never dropped while
    /// the auditor runs (only a shut-down auditor drops it). A request whose
    /// event waits is held until the writer makes room; one cancelled while
    /// waiting hands its event to a task that goes on waiting. Meant for
    /// [`AuditorBuilder::when_full_security`]: authentication and
    /// authorisation events then slow their requests down rather than vanish.
    pub const UNTIL_ROOM: Self = Self::Wait(Duration::MAX);

    /// When an event that found the queue full at `started` stops waiting;
    /// `None` never (a wait too long to represent, such as [`Self::UNTIL_ROOM`]).
    fn deadline(self, started: Instant) -> Option<Instant> {
        match self {
            Self::Drop => Some(started),
            Self::Wait(wait) => started.checked_add(wait),
        }
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
    /// Of the events counted in `dropped`, the security events (see
    /// [`AuditorBuilder::security_reserve`]) lost to a full queue or a shut-down
    /// auditor. Security events lost with a failed sink batch are in `dropped` only.
    pub dropped_security: u64,
}

/// Whether `event` is a security event: an authentication (`authn.…`) or an
/// authorisation (`authz.…`) event of the OWASP vocabulary ([`actions`](super::actions)).
/// The default of [`AuditorBuilder::security_events`].
pub fn is_security_event(event: &AuditEvent) -> bool {
    event.action.starts_with("authn.") || event.action.starts_with("authz.")
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
/// Security events ([`is_security_event`]) may use the whole queue, the others
/// all but its [security reserve](AuditorBuilder::security_reserve): when events
/// must be shed, the others go first.
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
    dropped_security: AtomicU64,
    policy: FullPolicy,
    /// The policy of security events.
    security_policy: FullPolicy,
    /// Events in the channel now (flush and shutdown messages not counted).
    queued: AtomicUsize,
    /// How many events other than security events the queue may hold.
    ordinary_limit: usize,
    is_security: fn(&AuditEvent) -> bool,
    /// Woken when the writer takes events out of the queue.
    room: Notify,
    /// Milliseconds after `epoch` (plus one) of the last drop warning; 0 = never.
    last_drop_log: AtomicU64,
    epoch: std::time::Instant,
    done: watch::Receiver<bool>,
}

impl Shared {
    /// The full policy for `event`: its class's.
    fn policy_for(&self, event: &AuditEvent) -> FullPolicy {
        if (self.is_security)(event) {
            self.security_policy
        } else {
            self.policy
        }
    }

    /// Whether `event` waits for room without a deadline.
    fn waits_until_room(&self, event: &AuditEvent) -> bool {
        self.policy_for(event).deadline(Instant::now()).is_none()
    }

    /// Counts one event lost before it reached the queue.
    fn note_dropped_event(&self, event: &AuditEvent, why: &'static str) {
        if (self.is_security)(event) {
            self.dropped_security.fetch_add(1, Relaxed);
        }
        self.note_dropped(1, why);
    }

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
            Err(event) => match self.shared.policy_for(&event) {
                FullPolicy::Drop => {
                    self.shared.note_dropped_event(&event, "queue full");
                    false
                }
                FullPolicy::Wait(_) => {
                    send_within(
                        self.tx.clone(),
                        self.shared.clone(),
                        vec![event],
                        Instant::now(),
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
            Err(event) => {
                self.shared.note_dropped_event(&event, "queue full");
                false
            }
        }
    }

    /// Queues `event` if there is room: `Ok(true)` queued, `Ok(false)` dropped
    /// because the writer is shut down (counted), `Err(event)` when full.
    #[allow(clippy::result_large_err)] // the event comes back by value, unboxed
    pub(crate) fn try_enqueue(&self, event: AuditEvent) -> Result<bool, AuditEvent> {
        enqueue(&self.tx, &self.shared, event)
    }

    /// The slow path for events that found the queue full: a future that waits
    /// for room as the policy allows, or `None` (and the events counted as
    /// dropped) under [`FullPolicy::Drop`].
    pub(crate) fn send_later(&self, events: Vec<AuditEvent>) -> Option<SendLater> {
        let (wait, drop): (Vec<_>, Vec<_>) = events
            .into_iter()
            .partition(|event| self.shared.policy_for(event) != FullPolicy::Drop);
        for event in &drop {
            self.shared.note_dropped_event(event, "queue full");
        }
        if wait.is_empty() {
            return None;
        }
        let send = send_within(self.tx.clone(), self.shared.clone(), wait, Instant::now());
        Some(Box::pin(async move {
            send.await;
        }))
    }

    /// Counts `events` that could not be queued (their request was cancelled)
    /// as dropped, except those whose policy is to wait until room
    /// ([`FullPolicy::UNTIL_ROOM`]): a task goes on waiting for them.
    pub(crate) fn note_dropped(&self, events: Vec<AuditEvent>, cause: &'static str) {
        let (keep, lost): (Vec<_>, Vec<_>) = events
            .into_iter()
            .partition(|event| self.shared.waits_until_room(event));
        for event in &lost {
            self.shared.note_dropped_event(event, cause);
        }
        wait_detached(&self.tx, &self.shared, keep, cause);
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
            dropped_security: self.shared.dropped_security.load(Relaxed),
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

/// Queues `event` if its share of the queue has room: `Ok(true)` queued,
/// `Ok(false)` dropped because the writer is shut down (counted), `Err(event)`
/// when full. Security events may use the whole queue; the others leave the
/// security reserve free.
#[allow(clippy::result_large_err)] // the event comes back by value, unboxed
fn enqueue(
    tx: &mpsc::Sender<Message>,
    shared: &Shared,
    event: AuditEvent,
) -> Result<bool, AuditEvent> {
    let claimed = if (shared.is_security)(&event) {
        shared.queued.fetch_add(1, Relaxed);
        true
    } else {
        shared
            .queued
            .fetch_update(Relaxed, Relaxed, |queued| {
                (queued < shared.ordinary_limit).then_some(queued + 1)
            })
            .is_ok()
    };
    if !claimed {
        return Err(event);
    }
    match tx.try_send(Message::Event(event)) {
        Ok(()) => Ok(true),
        Err(mpsc::error::TrySendError::Full(Message::Event(event))) => {
            shared.queued.fetch_sub(1, Relaxed);
            Err(event)
        }
        Err(mpsc::error::TrySendError::Closed(Message::Event(event))) => {
            shared.queued.fetch_sub(1, Relaxed);
            shared.note_dropped_event(&event, "auditor shut down");
            Ok(false)
        }
        Err(_) => unreachable!("only events are sent here"),
    }
}

/// Hands `events` (which wait until room, [`FullPolicy::UNTIL_ROOM`]) to a
/// task that waits for them; without a runtime to run it, counts them dropped.
fn wait_detached(
    tx: &mpsc::Sender<Message>,
    shared: &Arc<Shared>,
    events: Vec<AuditEvent>,
    cause: &'static str,
) {
    if events.is_empty() {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(send_within(
                tx.clone(),
                shared.clone(),
                events,
                Instant::now(),
            ));
        }
        Err(_) => {
            for event in &events {
                shared.note_dropped_event(event, cause);
            }
        }
    }
}

/// Sends `events` in order, each waiting for room as its class's policy
/// allows from `started` on; those that found no room in time are counted as
/// dropped, and so are the rest when this future is dropped unfinished
/// (except those that wait until room: a task goes on waiting for them).
/// Returns how many were queued.
async fn send_within(
    tx: mpsc::Sender<Message>,
    shared: Arc<Shared>,
    events: Vec<AuditEvent>,
    started: Instant,
) -> usize {
    let mut unsent = Unsent {
        tx: tx.clone(),
        shared: shared.clone(),
        events: events.into(),
        cause: "cancelled while waiting for room in the queue",
    };
    let mut sent = 0;
    'events: while let Some(mut event) = unsent.events.pop_front() {
        let deadline = shared.policy_for(&event).deadline(started);
        loop {
            // Registered before trying, so room made in between is not missed.
            let room = shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match enqueue(&tx, &shared, event) {
                Ok(true) => {
                    sent += 1;
                    break;
                }
                Ok(false) => {
                    unsent.cause = "auditor shut down";
                    return sent;
                }
                Err(full) => {
                    let timed_out = match deadline {
                        Some(deadline) => tokio::time::timeout_at(deadline, room).await.is_err(),
                        None => {
                            // Held here (not in `event`) while waiting, so a
                            // cancellation finds it in `unsent`.
                            unsent.events.push_front(full);
                            room.await;
                            event = unsent.events.pop_front().expect("pushed above");
                            continue;
                        }
                    };
                    if timed_out {
                        shared.note_dropped_event(&full, "queue full");
                        continue 'events;
                    }
                    event = full;
                }
            }
        }
    }
    sent
}

/// Counts the events still unsent as dropped when it goes out of scope, except
/// those that wait until room: a task goes on waiting for them.
struct Unsent {
    tx: mpsc::Sender<Message>,
    shared: Arc<Shared>,
    events: std::collections::VecDeque<AuditEvent>,
    cause: &'static str,
}

impl Drop for Unsent {
    fn drop(&mut self) {
        if self.events.is_empty() {
            return;
        }
        let (keep, lost): (Vec<_>, Vec<_>) = self.events.drain(..).partition(|event| {
            self.cause != "auditor shut down" && self.shared.waits_until_room(event)
        });
        for event in &lost {
            self.shared.note_dropped_event(event, self.cause);
        }
        wait_detached(&self.tx, &self.shared, keep, self.cause);
    }
}

/// Configures and starts an [`Auditor`].
#[derive(Debug, Clone)]
pub struct AuditorBuilder {
    capacity: usize,
    /// Slots kept for security events; `None`: one in eight.
    security_reserve: Option<usize>,
    is_security: fn(&AuditEvent) -> bool,
    policy: FullPolicy,
    /// `None`: the same as `policy`.
    security_policy: Option<FullPolicy>,
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
    /// Keep the security events of a batch the sink failed, to write again.
    keep_failed_security: bool,
    /// The most kept events; with this many, the writer takes no new ones.
    keep_limit: usize,
}

impl Default for AuditorBuilder {
    fn default() -> Self {
        Self {
            capacity: DEFAULT_CAPACITY,
            security_reserve: None,
            is_security: is_security_event,
            policy: FullPolicy::default(),
            security_policy: None,
            writer: WriterConfig {
                max_batch: DEFAULT_MAX_BATCH,
                attempts: DEFAULT_ATTEMPTS,
                backoff: doubling(DEFAULT_INITIAL_BACKOFF, DEFAULT_MAX_BACKOFF),
                sink_timeout: DEFAULT_SINK_TIMEOUT,
                redaction: Redaction::new(),
                keep_failed_security: false,
                keep_limit: DEFAULT_CAPACITY,
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

    /// How many queue slots only security events may take (default: one in
    /// eight of the [`capacity`](Self::capacity), 512 of 4096; at most the
    /// capacity less one).
    ///
    /// When the queue must shed, the other events go first: they are refused
    /// (waited for and dropped as the [`FullPolicy`] says) once the queue holds
    /// `capacity - reserve` events, while security events may fill it whole. A
    /// security event is dropped only when the queue is full to the last slot.
    /// `0` treats every event alike.
    pub fn security_reserve(mut self, slots: usize) -> Self {
        self.security_reserve = Some(slots);
        self
    }

    /// Which events are security events, for the
    /// [`security_reserve`](Self::security_reserve) (default
    /// [`is_security_event`]: actions starting `authn.` or `authz.`).
    pub fn security_events(mut self, is_security: fn(&AuditEvent) -> bool) -> Self {
        self.is_security = is_security;
        self
    }

    /// What recording does when the queue is full (default `Wait(5ms)`), for
    /// every event unless [`when_full_security`](Self::when_full_security)
    /// sets another policy for security events.
    pub fn when_full(mut self, policy: FullPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// What recording a security event (see
    /// [`security_events`](Self::security_events)) does when the queue is full
    /// to its last slot (default: the [`when_full`](Self::when_full) policy).
    ///
    /// [`FullPolicy::UNTIL_ROOM`] never drops one while the auditor runs: its
    /// request waits for room instead (after the reserve is used up, so only
    /// when the queue is full however it sheds the others).
    pub fn when_full_security(mut self, policy: FullPolicy) -> Self {
        self.security_policy = Some(policy);
        self
    }

    /// Whether a batch the sink failed on every attempt keeps its security
    /// events to write again, rather than dropping them with the others
    /// (default `false`: the whole batch is dropped).
    ///
    /// Kept events are written again with the next batch, or alone after the
    /// [longest backoff](Self::sink_backoff) when nothing new arrives. At most
    /// a queue's [`capacity`](Self::capacity) of them are kept: with that many,
    /// the writer takes nothing new until the sink accepts them, so the queue
    /// fills and recording waits or sheds as the full policies say. Events
    /// still kept when the auditor shuts down are dropped (and counted).
    pub fn keep_failed_security_events(mut self, keep: bool) -> Self {
        self.writer.keep_failed_security = keep;
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
    pub fn build<S: Sink>(mut self, sink: S) -> Auditor {
        self.writer.keep_limit = self.capacity;
        let (tx, rx) = mpsc::channel(self.capacity);
        let reserve = self
            .security_reserve
            .unwrap_or(self.capacity / DEFAULT_RESERVE_DIVISOR)
            .min(self.capacity - 1);
        let (done_tx, done_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            written: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            sink_errors: AtomicU64::new(0),
            dropped_security: AtomicU64::new(0),
            policy: self.policy,
            security_policy: self.security_policy.unwrap_or(self.policy),
            queued: AtomicUsize::new(0),
            ordinary_limit: self.capacity - reserve,
            is_security: self.is_security,
            room: Notify::new(),
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
    loop {
        // `batch` is empty unless it holds security events the sink failed
        // (`keep_failed_security_events`): they go again with the next events,
        // or alone after the longest backoff; with too many kept, alone.
        let received = if batch.is_empty() {
            rx.recv_many(&mut inbox, config.max_batch).await
        } else if batch.len() >= config.keep_limit {
            tokio::time::sleep(config.backoff.max_delay()).await;
            write_batch(&mut sink, &mut batch, &shared, &config).await;
            continue;
        } else {
            tokio::select! {
                received = rx.recv_many(&mut inbox, config.max_batch) => received,
                () = tokio::time::sleep(config.backoff.max_delay()) => {
                    write_batch(&mut sink, &mut batch, &shared, &config).await;
                    continue;
                }
            }
        };
        if received == 0 {
            break;
        }
        let events = inbox
            .iter()
            .filter(|m| matches!(m, Message::Event(_)))
            .count();
        shared.queued.fetch_sub(events, Relaxed);
        shared.room.notify_waiters();
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
    if !batch.is_empty() {
        // Kept security events the sink still refuses at shutdown.
        for event in &batch {
            shared.note_dropped_event(event, "sink failed");
        }
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
            if config.keep_failed_security {
                batch.retain(|event| (shared.is_security)(event));
            } else {
                batch.clear();
            }
            let lost = len - batch.len() as u64;
            if lost > 0 {
                shared.note_dropped(lost, "sink failed");
            }
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
