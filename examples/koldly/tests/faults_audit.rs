//! Reliability scenario: koldly's audit configuration never drops an
//! authentication or authorisation event (RELIABILITY.md, "koldly: database
//! and providers", K3), however long its store stalls or fails and however
//! full the queue gets.
//!
//! [`koldly::audit::builder`] (the configuration `koldly::audit::auditor`
//! uses) writes to a sink that stalls for a minute, fails for a minute, then
//! works, while events arrive every 10 ms, one in fifty a login; some login
//! requests are cancelled (their client gone) while their event waits. The
//! same flood into steadfast's default configuration shows what koldly's
//! avoids. Paused clock: the two minutes take milliseconds.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use steadfast::{
    BoxError,
    audit::{AuditEvent, Auditor, AuditorBuilder, MemorySink, Sink},
};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Never finishes: the writer's sink timeout ends each attempt.
    Stalled,
    /// Fails at once, as a database refusing connections.
    Failing,
    Working,
}

#[derive(Clone)]
struct ControlledSink {
    mode: Arc<Mutex<Mode>>,
    events: MemorySink,
}

impl Sink for ControlledSink {
    async fn write(&mut self, events: &[AuditEvent]) -> Result<(), BoxError> {
        let mode = *self.mode.lock().unwrap();
        match mode {
            Mode::Stalled => std::future::pending().await,
            Mode::Failing => Err("the audit_log table is unreachable".into()),
            Mode::Working => self.events.write(events).await,
        }
    }
}

const LOGIN: &str = "authn.login.success";
/// One event every 10 ms for two minutes.
const EVENTS: usize = 12_000;
/// Every fiftieth event is a login.
const LOGIN_EVERY: usize = 50;

/// What the flood came to.
#[derive(Debug)]
struct Outcome {
    written: u64,
    dropped: u64,
    dropped_security: u64,
    logins_written: usize,
    /// The longest a login request was held by the audit queue.
    slowest_login: Duration,
    /// The longest an ordinary request was held.
    slowest_other: Duration,
}

async fn flood(builder: AuditorBuilder) -> Outcome {
    let sink = ControlledSink {
        mode: Arc::new(Mutex::new(Mode::Stalled)),
        events: MemorySink::new(),
    };
    let auditor: Auditor = builder.build(sink.clone());
    let started = Instant::now();
    let mut requests = Vec::with_capacity(EVENTS);
    for i in 0..EVENTS {
        match started.elapsed().as_secs() {
            0..60 => {}
            60..120 => *sink.mode.lock().unwrap() = Mode::Failing,
            _ => *sink.mode.lock().unwrap() = Mode::Working,
        }
        let login = i % LOGIN_EVERY == 0;
        let event = AuditEvent::new(if login { LOGIN } else { "campaign.create" });
        let auditor = auditor.clone();
        requests.push(tokio::spawn(async move {
            let held = Instant::now();
            // Every other login's client gives up after a second: its request
            // is cancelled while the event waits for room.
            if login && i % (2 * LOGIN_EVERY) == 0 {
                let _ = tokio::time::timeout(Duration::from_secs(1), auditor.record(event)).await;
            } else {
                auditor.record(event).await;
            }
            (login, held.elapsed())
        }));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    *sink.mode.lock().unwrap() = Mode::Working;
    let (mut slowest_login, mut slowest_other) = (Duration::ZERO, Duration::ZERO);
    for request in requests {
        let (login, held) = request.await.unwrap();
        let slowest = if login {
            &mut slowest_login
        } else {
            &mut slowest_other
        };
        *slowest = (*slowest).max(held);
    }
    // Kept and detached events reach the queue within the writer's retry
    // interval; bounded in virtual time.
    let deadline = Instant::now() + Duration::from_secs(600);
    while auditor.stats().written + auditor.stats().dropped < EVENTS as u64 {
        assert!(
            Instant::now() < deadline,
            "events unaccounted for: {:?}",
            auditor.stats()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    auditor.shutdown().await;
    let stats = auditor.stats();
    assert_eq!(
        stats.written + stats.dropped,
        EVENTS as u64,
        "every event written or counted dropped: {stats:?}"
    );
    let logins_written = sink
        .events
        .events()
        .iter()
        .filter(|e| e.action == LOGIN)
        .count();
    Outcome {
        written: stats.written,
        dropped: stats.dropped,
        dropped_security: stats.dropped_security,
        logins_written,
        slowest_login,
        slowest_other,
    }
}

#[tokio::test(start_paused = true)]
async fn koldly_never_drops_a_security_event_under_a_stalled_then_failing_store() {
    let logins = EVENTS / LOGIN_EVERY;
    let koldly = flood(koldly::audit::builder()).await;
    assert_eq!(
        koldly.logins_written, logins,
        "every login written: {koldly:?}"
    );
    assert_eq!(koldly.dropped_security, 0);
    assert!(koldly.dropped > 0, "the queue was saturated: {koldly:?}");
    // Ordinary requests are held no longer than the library's default bound.
    assert!(
        koldly.slowest_other <= Duration::from_millis(5),
        "{koldly:?}"
    );

    let defaults = flood(Auditor::builder()).await;
    assert!(
        defaults.logins_written < logins,
        "the defaults lose logins in this flood (else the test proves nothing): {defaults:?}"
    );
    println!(
        "FIGURE koldly_audit_stalled_store: emitted {EVENTS} ({logins} logins, half of them \
         cancelled while waiting); koldly: written {} dropped {} (security 0), logins written \
         {}/{logins}, slowest login held {} ms, others at most {} ms; library defaults: logins \
         written {}/{logins}",
        koldly.written,
        koldly.dropped,
        koldly.logins_written,
        koldly.slowest_login.as_millis(),
        koldly.slowest_other.as_millis(),
        defaults.logins_written,
    );
}
