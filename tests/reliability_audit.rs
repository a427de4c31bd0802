//! Reliability scenarios of the audit writer (RELIABILITY.md, scenarios 2 and 3):
//! a sink that stalls, then fails, then comes back; and the queue under a
//! saturated CPU, where it must keep every event at the load test's rate and,
//! when it must shed, shed the security events last. Each test prints its
//! figures on `FIGURE` lines (`--nocapture`).
#![cfg(feature = "audit")]

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime},
};

use axum::{Router, body::Body, routing::post};
use http::{Method, Request, StatusCode};
use rand::{Rng, SeedableRng, rngs::SmallRng};
use steadfast::{
    BoxError,
    audit::{AuditEvent, AuditLayer, Auditor, FullPolicy, JsonLinesSink, MemorySink, Sink},
};
use tokio::{sync::Semaphore, time::Instant};
use tower::ServiceExt;

/// What the controlled sink does with a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Never finishes: the writer's sink timeout ends each attempt.
    Stalled,
    /// Fails at once.
    Failing,
    /// Stores the batch.
    Working,
}

#[derive(Clone)]
struct ControlledSink {
    mode: Arc<Mutex<Mode>>,
    events: MemorySink,
}

impl ControlledSink {
    fn new(mode: Mode) -> Self {
        Self {
            mode: Arc::new(Mutex::new(mode)),
            events: MemorySink::new(),
        }
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
}

impl Sink for ControlledSink {
    async fn write(&mut self, events: &[AuditEvent]) -> Result<(), BoxError> {
        let mode = *self.mode.lock().unwrap();
        match mode {
            Mode::Stalled => std::future::pending().await,
            Mode::Failing => Err("the audit store is down".into()),
            Mode::Working => self.events.write(events).await,
        }
    }
}

/// Two audited routes: a login (a security event) and a campaign creation.
fn app(auditor: &Auditor) -> Router {
    Router::new()
        .route("/login", post(|| async { "ok" }))
        .route(
            "/campaigns",
            post(|| async { (StatusCode::CREATED, "made") }),
        )
        .layer(
            AuditLayer::new(auditor.clone())
                .route(Method::POST, "/login", "authn.login.success")
                .route(Method::POST, "/campaigns", "campaign.create"),
        )
}

/// Sends one request; returns how long it was held (virtual time).
async fn timed(app: &Router, path: &str) -> Duration {
    let start = Instant::now();
    let res = app
        .clone()
        .oneshot(Request::post(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert!(res.status().is_success());
    start.elapsed()
}

/// The sink stalls for a minute, fails for a minute, then works again, while a
/// request arrives every 10 ms. With the default policy (`Wait(5ms)`) no
/// request is held longer than 5 ms by the audit layer, and once the sink is
/// back every event emitted is accounted for: written + dropped = emitted.
/// The queue is 64 events here (4096 by default) so a minute overflows it.
#[tokio::test(start_paused = true)]
async fn a_stalled_then_failing_sink_never_holds_a_request_past_the_bound() {
    let sink = ControlledSink::new(Mode::Stalled);
    let auditor = Auditor::builder().capacity(64).build(sink.clone());
    let app = app(&auditor);
    let bound = Duration::from_millis(5);

    let mut emitted = 0u64;
    let mut slowest = Duration::ZERO;
    let mut per_phase = Vec::new();
    for mode in [Mode::Stalled, Mode::Failing, Mode::Working] {
        sink.set(mode);
        let before = auditor.stats();
        let phase_start = Instant::now();
        let mut n = 0u64;
        while phase_start.elapsed() < Duration::from_secs(60) {
            let path = if n.is_multiple_of(4) {
                "/login"
            } else {
                "/campaigns"
            };
            let held = timed(&app, path).await;
            assert!(
                held <= bound,
                "a request was held {held:?} in phase {mode:?}"
            );
            slowest = slowest.max(held);
            n += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        emitted += n;
        let after = auditor.stats();
        per_phase.push((
            mode,
            n,
            after.written - before.written,
            after.dropped - before.dropped,
        ));
    }
    // The backlog drains: waits until every batch was written or given up on.
    auditor.shutdown().await;

    let stats = auditor.stats();
    assert_eq!(stats.written + stats.dropped, emitted, "{stats:?}");
    assert_eq!(stats.written, sink.events.len() as u64);
    assert!(
        stats.dropped > 0,
        "the outage must have cost events: {stats:?}"
    );
    assert!(stats.sink_errors > 0);
    // Once the sink works again, events are written again.
    let (_, _, written_after_recovery, _) = per_phase[2];
    assert!(written_after_recovery > 0, "{per_phase:?}");
    println!(
        "FIGURE audit-sink-outage: emitted={emitted} written={} dropped={} dropped_security={} sink_errors={} \
         slowest_request_us={} bound_us={} phases={per_phase:?}",
        stats.written,
        stats.dropped,
        stats.dropped_security,
        stats.sink_errors,
        slowest.as_micros(),
        bound.as_micros(),
    );
}

/// A temporary JSON-lines file, removed at the end.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        Self(std::env::temp_dir().join(format!(
            "steadfast-reliability-{name}-{}-{nanos}.jsonl",
            std::process::id()
        )))
    }

    fn lines(&self) -> usize {
        std::fs::read_to_string(&self.0).unwrap().lines().count()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Keeps both cores busy with spinning threads until dropped (or 30 s pass).
struct Spinners {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<u64>>,
}

impl Spinners {
    fn start(n: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let started = std::time::Instant::now();
                    let mut spins = 0u64;
                    while !stop.load(Ordering::Relaxed)
                        && started.elapsed() < Duration::from_secs(30)
                    {
                        spins = std::hint::black_box(spins.wrapping_add(1));
                    }
                    spins
                })
            })
            .collect();
        Self { stop, threads }
    }
}

impl Drop for Spinners {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// koldly's load test (`benches/README.md`): 35 537 requests/s on its database
/// route, the slower of its two; every request audited is the worst case.
const LOAD_TEST_RATE: u64 = 35_000;

/// Both cores spin while events arrive at the load test's rate for two seconds
/// (70 000 events, paced per millisecond; a late tick catches up in a burst),
/// into the default auditor writing a JSON-lines file: none is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturated_cpu_at_the_load_test_rate_drops_no_event_with_the_defaults() {
    let file = TempFile::new("cpu");
    let auditor = Auditor::builder().build(JsonLinesSink::append(&file.0).unwrap());
    let spinners = Spinners::start(2);

    let per_tick = LOAD_TEST_RATE / 1000;
    let ticks = 2_000u64;
    let started = std::time::Instant::now();
    let mut interval = tokio::time::interval(Duration::from_millis(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut emitted = 0u64;
    for tick in 0..ticks {
        interval.tick().await;
        for i in 0..per_tick {
            let action = if i == 0 {
                "authn.login.success"
            } else {
                "campaign.create"
            };
            let event = AuditEvent::new(action).with_extra("n", tick * per_tick + i);
            assert!(auditor.record(event).await, "event {emitted} was dropped");
            emitted += 1;
        }
    }
    let took = started.elapsed();
    drop(spinners);
    auditor.shutdown().await;

    let stats = auditor.stats();
    assert_eq!(stats.dropped, 0, "{stats:?}");
    assert_eq!(stats.written, emitted);
    assert_eq!(file.lines() as u64, emitted);
    println!(
        "FIGURE audit-saturated-cpu: emitted={emitted} written={} dropped=0 target_rate={LOAD_TEST_RATE}/s \
         achieved_rate={:.0}/s took_ms={}",
        stats.written,
        emitted as f64 / took.as_secs_f64(),
        took.as_millis(),
    );
}

/// Blocks every write until the gate opens, then keeps what it got.
#[derive(Clone)]
struct GatedSink {
    gate: Arc<Semaphore>,
    events: MemorySink,
}

impl Sink for GatedSink {
    async fn write(&mut self, events: &[AuditEvent]) -> Result<(), BoxError> {
        let _pass = self.gate.acquire().await?;
        self.events.write(events).await
    }
}

/// 1 000 ordinary events and 8 logins, in a seeded random order, into a
/// 64-event queue whose sink is stalled and whose policy drops at once: the
/// queue must shed at least 944 events. With the default reserve (one slot in eight),
/// every login is kept and the ordinary events are shed; with no reserve,
/// logins are lost with them.
#[tokio::test(start_paused = true)]
async fn when_the_queue_must_shed_security_events_go_last() {
    async fn flood(reserve: Option<usize>) -> (u64, u64, u64, usize) {
        let sink = GatedSink {
            gate: Arc::new(Semaphore::new(0)),
            events: MemorySink::new(),
        };
        let mut builder = Auditor::builder()
            .capacity(64)
            .max_batch(64)
            .when_full(FullPolicy::Drop);
        if let Some(slots) = reserve {
            builder = builder.security_reserve(slots);
        }
        let auditor = builder.build(sink.clone());
        let mut rng = SmallRng::seed_from_u64(20);
        let mut logins_left = 8;
        let mut ordinary_left = 1_000;
        while logins_left + ordinary_left > 0 {
            let login = rng.random_range(0..logins_left + ordinary_left) < logins_left;
            let event = if login {
                logins_left -= 1;
                AuditEvent::new("authn.login.success")
            } else {
                ordinary_left -= 1;
                AuditEvent::new("campaign.create")
            };
            auditor.record(event).await;
        }
        sink.gate.add_permits(1_000);
        auditor.shutdown().await;
        let stats = auditor.stats();
        assert_eq!(stats.written + stats.dropped, 1_008, "{stats:?}");
        let logins_written = sink
            .events
            .events()
            .iter()
            .filter(|e| e.action == "authn.login.success")
            .count();
        (
            stats.written,
            stats.dropped,
            stats.dropped_security,
            logins_written,
        )
    }

    let (written, dropped, dropped_security, logins) = flood(None).await;
    assert_eq!(dropped_security, 0);
    assert_eq!(logins, 8, "every login kept");
    // The others took at most their share, 56 of the 64 slots (less any
    // login that came before the share was full, since logins count too).
    assert!(written - 8 <= 56, "{written}");
    assert_eq!(written + dropped, 1_008);

    let (_, _, lost_without_reserve, logins_without) = flood(Some(0)).await;
    assert!(
        lost_without_reserve > 0,
        "without a reserve, logins are shed too"
    );
    assert_eq!(logins_without as u64 + lost_without_reserve, 8);
    println!(
        "FIGURE audit-shedding: emitted=1008 queue=64 written={written} dropped={dropped} \
         security_dropped=0 (no reserve: {lost_without_reserve} of 8)"
    );
}

/// Both cores spin while a burst of 20 000 events (500 of them logins) hits
/// the default auditor at once: whatever the queue sheds, no login is lost
/// (500 < the 512 reserved slots), and every event is accounted for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_under_saturated_cpu_never_sheds_a_login() {
    let file = TempFile::new("burst");
    let auditor = Auditor::builder().build(JsonLinesSink::append(&file.0).unwrap());
    let spinners = Spinners::start(2);
    let tasks: Vec<_> = (0..20_000u64)
        .map(|n| {
            let auditor = auditor.clone();
            tokio::spawn(async move {
                let action = if n.is_multiple_of(40) {
                    "authn.login.fail"
                } else {
                    "campaign.create"
                };
                auditor
                    .record(AuditEvent::new(action).with_extra("n", n))
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    drop(spinners);
    auditor.shutdown().await;
    let stats = auditor.stats();
    assert_eq!(stats.written + stats.dropped, 20_000, "{stats:?}");
    assert_eq!(stats.dropped_security, 0, "{stats:?}");
    assert_eq!(file.lines() as u64, stats.written);
    println!(
        "FIGURE audit-burst-saturated-cpu: emitted=20000 logins=500 written={} dropped={} security_dropped=0",
        stats.written, stats.dropped
    );
}

/// A 16-event queue with no reserve, a sink that fails for a minute, and 60
/// logins among 600 ordinary events sent through `AuditLayer` at once (a
/// third of the logins' clients giving up after 100 ms): with
/// `when_full_security(FullPolicy::UNTIL_ROOM)` and
/// `keep_failed_security_events(true)`, the ordinary events are shed at once
/// (`Drop`) while every login waits for room, survives its cancelled request
/// and the failed batches, and is written once the sink is back.
#[tokio::test(start_paused = true)]
async fn security_events_wait_for_room_and_outlive_a_failing_sink() {
    let sink = ControlledSink::new(Mode::Failing);
    let auditor = Auditor::builder()
        .capacity(16)
        .max_batch(16)
        .security_reserve(0)
        .when_full(FullPolicy::Drop)
        .when_full_security(FullPolicy::UNTIL_ROOM)
        .keep_failed_security_events(true)
        .sink_attempts(2)
        .sink_backoff(Duration::from_millis(50), Duration::from_millis(200))
        .build(sink.clone());
    let app = app(&auditor);
    let mut requests = Vec::new();
    for i in 0..660 {
        let login = i % 11 == 0;
        let app = app.clone();
        requests.push(tokio::spawn(async move {
            let request = timed(&app, if login { "/login" } else { "/campaigns" });
            if login && i % 3 == 0 {
                // The client gives up: the request is dropped while waiting.
                tokio::time::timeout(Duration::from_millis(100), request)
                    .await
                    .ok();
            } else {
                request.await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    sink.set(Mode::Working);
    for request in requests {
        request.await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while auditor.stats().written + auditor.stats().dropped < 660 {
        assert!(Instant::now() < deadline, "{:?}", auditor.stats());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    auditor.shutdown().await;
    let stats = auditor.stats();
    let logins = sink
        .events
        .events()
        .iter()
        .filter(|e| e.action == "authn.login.success")
        .count();
    assert_eq!(logins, 60, "every login written: {stats:?}");
    assert_eq!(stats.dropped_security, 0);
    assert_eq!(stats.written + stats.dropped, 660, "{stats:?}");
    assert!(stats.dropped > 0, "ordinary events were shed: {stats:?}");
    println!(
        "FIGURE audit-security-until-room: emitted=660 logins=60 (20 cancelled while waiting) \
         queue=16 written={} dropped={} security_dropped=0 sink_errors={}",
        stats.written, stats.dropped, stats.sink_errors
    );
}
