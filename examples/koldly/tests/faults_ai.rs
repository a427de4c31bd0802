//! Reliability scenarios: the language model provider (the Anthropic fake)
//! failing and black-holed through the fault proxy (RELIABILITY.md, "koldly:
//! database and providers", K2c), on SQLite and PostgreSQL.
//!
//! Figures: attempts per logical call under 100 % failure (amplification)
//! with the provider's retries and circuit as configured by default; how long
//! a call waits when the provider hangs, against its deadline; and that
//! nothing is charged for calls that never got an answer. Real time: the
//! waits are the code's own (backoff, the deadline), bounded.

#[path = "support/ai_inputs.rs"]
mod ai_inputs;
mod support;
use ai_inputs::draft_task;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use fault_proxy::FaultProxy;
use koldly::{
    ai::{Anthropic, AnthropicConfig, Call, LanguageModel, Models},
    clock::{Clock, ManualClock},
    db::{
        Db, ai_usage,
        users::{self, NewUser},
    },
};
use steadfast::Deadline;
use support::{
    Backend, TestDb,
    fake_anthropic::{Answer, FakeAnthropic},
};

/// Logical calls per scenario.
const CALLS: usize = 20;
const SLACK: Duration = Duration::from_millis(1500);

struct Rig {
    _db: TestDb,
    db: Db,
    user: String,
    fake: FakeAnthropic,
    proxy: FaultProxy,
    model: Anthropic,
}

/// A user, the fake answering every call with `answer`, and the provider
/// (default retries and circuit; 1 s per attempt) reaching it through the proxy.
async fn rig(backend: Backend, answer: Answer) -> Rig {
    let (test_db, url) = TestDb::create(backend).await;
    let db = Db::connect(&url).await.unwrap();
    let clock = Arc::new(ManualClock::new());
    let user = users::insert(
        &db.pool,
        NewUser {
            email: "ai-faults@koldly.example",
            name: "User",
            password_hash: None,
            google_id: None,
            email_verified: true,
        },
        clock.now(),
    )
    .await
    .unwrap()
    .id;
    let fake = FakeAnthropic::start(Vec::new(), answer).await;
    let proxy = FaultProxy::start(fake.addr).await.expect("fault proxy");
    let mut config = AnthropicConfig::new(format!("http://{}", proxy.addr()), "sk-ant-test-secret");
    config.models = Models::all("claude-test");
    config.max_tokens = 100;
    config.attempt_timeout = Duration::from_secs(1);
    config.max_retry_after = Duration::from_secs(1);
    let model = Anthropic::new(config, db.clone(), clock);
    Rig {
        _db: test_db,
        db,
        user,
        fake,
        proxy,
        model,
    }
}

/// Every call answered 503: the provider retries (3 at most per call), and
/// its circuit opens after 5 failed attempts, after which calls fail at once
/// without reaching the provider. Nothing is charged.
async fn failing_ai_provider_amplification(backend: Backend) {
    let rig = rig(backend, Answer::refused(503, None)).await;
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..CALLS {
        let call_started = Instant::now();
        let result = rig
            .model
            .draft_email(&Call::new(&rig.user, 500), &draft_task(&format!("P{i}")))
            .await;
        slowest = slowest.max(call_started.elapsed());
        let err = result.expect_err("the provider is down");
        assert!(err.is_transient(), "a job would try again later: {err}");
    }
    let took = started.elapsed();
    let attempts = rig.fake.calls();
    assert!(
        attempts <= CALLS * 4,
        "{attempts} attempts for {CALLS} calls"
    );
    let charged: i64 = ai_usage::calls(&rig.db.pool, &rig.user)
        .await
        .unwrap()
        .iter()
        .map(|c| c.spend.cost)
        .sum();
    assert_eq!(charged, 0, "nothing charged for failed calls");
    println!(
        "FIGURE koldly_ai_failing ({backend:?}): {CALLS} calls under 100 % 503: {attempts} attempts, \
         amplification {:.2} (bound 4.0), slowest call {} ms, all {CALLS} in {} ms, 0 charged",
        attempts as f64 / CALLS as f64,
        slowest.as_millis(),
        took.as_millis(),
    );
}

/// The provider black-holed: a call with a 2 s deadline ends by it (the
/// attempt timeout is 1 s, retries included) with a transient error, and its
/// usage row is settled as a timeout.
async fn black_holed_ai_provider_ends_by_the_deadline(backend: Backend) {
    let rig = rig(backend, Answer::draft("Subject", "Body")).await;
    rig.proxy.handle().black_hole();
    let deadline = Duration::from_secs(2);
    let started = Instant::now();
    let result = rig
        .model
        .draft_email(
            &Call::new(&rig.user, 500).until(Deadline::after(deadline)),
            &draft_task("Ada"),
        )
        .await;
    let took = started.elapsed();
    let err = result.expect_err("nothing answers");
    assert!(err.is_transient(), "{err}");
    assert!(took <= deadline + SLACK, "{took:?}");
    assert_eq!(rig.fake.calls(), 0, "no byte reached the provider");
    // A timeout may come after the provider ran (and billed) the call, so
    // koldly charges the whole reservation: the budget is never passed.
    let calls = ai_usage::calls(&rig.db.pool, &rig.user).await.unwrap();
    assert_eq!(calls.len(), 1, "one logical call, one usage row");
    assert_eq!(
        (calls[0].state.as_str(), calls[0].outcome.as_deref()),
        ("settled", Some("timeout"))
    );
    let charged = calls[0].spend.cost;
    println!(
        "FIGURE koldly_ai_black_hole ({backend:?}): a call with a {} ms deadline ended in {} ms \
         ({err}); {} bytes swallowed; settled as a timeout, charged the reservation \
         ({charged} microcents) since the provider may have run it",
        deadline.as_millis(),
        took.as_millis(),
        rig.proxy.handle().swallowed_bytes(),
    );
}

on_both!(
    failing_ai_provider_amplification,
    black_holed_ai_provider_ends_by_the_deadline,
);
