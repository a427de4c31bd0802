//! Reliability scenarios: the language model provider (the Anthropic fake)
//! failing and black-holed through the fault proxy (RELIABILITY.md, "koldly:
//! database and providers", K2c), on SQLite and PostgreSQL.
//!
//! Figures: attempts per logical call under 100 % failure (amplification)
//! with the provider's retries and circuit as configured by default; how long
//! a call waits when the provider hangs, against its deadline; and that
//! nothing is charged for calls that never got an answer. And that an
//! email-generation job run while the provider is down is not lost from the
//! job queue: it ends `failed` with its reason on `GET /api/jobs/{id}`, or
//! succeeds on a later attempt once the provider is back. Real time: the
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
use steadfast::{
    Deadline,
    retry::{Backoff, Jitter},
};
use support::{
    Backend, TestDb, TestServer,
    fake_anthropic::{Answer, FakeAnthropic},
};

/// Logical calls per scenario.
const CALLS: usize = 20;
const SLACK: Duration = Duration::from_millis(1500);
/// How long a job scenario may take at most before it counts as stuck.
const JOB_BOUND: Duration = Duration::from_secs(60);
const DRAFT_BODY: &str = "Hi,\n\nLedgerly matches invoices to payments.\n\nBest,\nBob";

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

/// A koldly server whose email-generation jobs draft through `proxy` (500 ms
/// per provider attempt), each job claimed `max_attempts` times at most with
/// `backoff` between its attempts.
async fn job_server(
    backend: Backend,
    proxy: &FaultProxy,
    max_attempts: i64,
    backoff: Duration,
) -> TestServer {
    let url = format!("http://{}", proxy.addr());
    TestServer::start(backend, move |config| {
        let mut anthropic = AnthropicConfig::new(url, "sk-ant-test-secret");
        anthropic.models = Models::all("claude-test");
        anthropic.max_tokens = 100;
        anthropic.attempt_timeout = Duration::from_millis(500);
        anthropic.max_retry_after = Duration::from_secs(1);
        config.ai.anthropic = Some(anthropic);
        config.jobs.max_attempts = max_attempts;
        config.jobs.retry_backoff = Backoff::new(backoff, 1.0, backoff, Jitter::None);
    })
    .await
}

/// A campaign with one prospect and its email-generation job: returns the
/// campaign id and the job's path.
async fn generation_job(server: &TestServer, token: &str) -> (String, String) {
    let campaign = serde_json::json!({
        "name": "Provider down",
        "product_description": "Ledgerly reconciles invoices and payments for finance teams."
    });
    let created = server
        .authed("POST", "/api/campaigns", token, &campaign.to_string())
        .await;
    assert_eq!(created.status, 201);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let prospects = serde_json::json!([
        { "email": "ada@acme.example", "first_name": "Ada", "company": "Acme" }
    ]);
    let imported = server
        .authed(
            "POST",
            &format!("/api/campaigns/{id}/prospects"),
            token,
            &prospects.to_string(),
        )
        .await;
    assert_eq!(imported.json()["imported"], 1);
    let job = server
        .authed(
            "POST",
            &format!("/api/campaigns/{id}/emails/generate"),
            token,
            "",
        )
        .await;
    assert_eq!(job.status, 202);
    let location = job.headers["location"].to_str().unwrap().to_owned();
    (id, location)
}

/// Polls the job until `done` holds for it (bounded); returns it.
async fn job_until(
    server: &TestServer,
    token: &str,
    location: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let job = server.authed("GET", location, token, "").await.json();
        if done(&job) {
            return job;
        }
        assert!(started.elapsed() < JOB_BOUND, "job stuck: {job}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ended(job: &serde_json::Value) -> bool {
    job["state"] == "succeeded" || job["state"] == "failed"
}

async fn drafts(server: &TestServer, campaign: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM generated_emails WHERE campaign_id = $1")
        .bind(campaign)
        .fetch_one(server.pool())
        .await
        .unwrap()
}

/// An email-generation job while the provider answers every call 503: each
/// job attempt fails transiently, and once its attempts are spent the job
/// ends `failed` with the provider's reason on `GET /api/jobs/{id}`: never
/// left `queued` or `running`, no draft written.
async fn ai_job_under_a_failing_provider_fails_with_its_reason(backend: Backend) {
    let fake = FakeAnthropic::start(Vec::new(), Answer::refused(503, None)).await;
    let proxy = FaultProxy::start(fake.addr).await.expect("fault proxy");
    let server = job_server(backend, &proxy, 2, Duration::from_millis(200)).await;
    let (token, _) = server.signup("ai-job@example.com", "password long 1").await;
    let (campaign, location) = generation_job(&server, &token).await;
    let started = Instant::now();
    let job = job_until(&server, &token, &location, ended).await;
    let took = started.elapsed();
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["attempts"], 2, "{job}");
    let error = job["error"].as_str().expect("a reason");
    assert!(
        error.contains("503") || error.contains("language model"),
        "{error}"
    );
    assert!(!error.contains("sk-ant"), "no secret in the reason");
    assert_eq!(drafts(&server, &campaign).await, 0);
    let attempts = fake.calls();
    assert!(
        (1..=2 * 4).contains(&attempts),
        "{attempts} provider attempts for 2 job attempts"
    );
    println!(
        "FIGURE koldly_ai_job_failing ({backend:?}): an email-generation job under 100 % 503 \
         ended failed after 2 job attempts in {} ms, {attempts} provider attempts \
         (amplification {attempts} per logical draft), reason {error:?}",
        took.as_millis(),
    );
    server.stop().await;
}

/// An email-generation job while the provider is black-holed: its first
/// attempt ends by the provider's attempt timeout, the job shows the reason
/// while it waits to try again (still `running`), and once the provider is
/// back the retry drafts the email, exactly once.
async fn ai_job_black_holed_then_restored_succeeds_on_a_retry(backend: Backend) {
    let fake = FakeAnthropic::start(Vec::new(), Answer::draft("Faster close", DRAFT_BODY)).await;
    let proxy = FaultProxy::start(fake.addr).await.expect("fault proxy");
    let faults = proxy.handle();
    faults.black_hole();
    let server = job_server(backend, &proxy, 3, Duration::from_secs(2)).await;
    let (token, _) = server.signup("ai-job@example.com", "password long 1").await;
    let (campaign, location) = generation_job(&server, &token).await;
    let started = Instant::now();
    let waiting = job_until(&server, &token, &location, |j| {
        ended(j) || !j["error"].is_null()
    })
    .await;
    let first_failed_in = started.elapsed();
    assert_eq!(waiting["state"], "running", "{waiting}");
    assert_eq!(waiting["attempts"], 1, "{waiting}");
    let reason = waiting["error"].as_str().unwrap().to_owned();
    assert_eq!(fake.calls(), 0, "nothing reached the provider");
    assert_eq!(drafts(&server, &campaign).await, 0);

    faults.restore().await.expect("restore");
    faults.cut().await;
    let job = job_until(&server, &token, &location, ended).await;
    let took = started.elapsed();
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["attempts"], 2, "{job}");
    assert_eq!(job["progress"]["done"], 1);
    assert_eq!(
        drafts(&server, &campaign).await,
        1,
        "one draft, no duplicate"
    );
    assert_eq!(fake.calls(), 1, "one call once the provider was back");
    println!(
        "FIGURE koldly_ai_job_black_hole ({backend:?}): an email-generation job with the provider \
         black-holed: first attempt failed in {} ms ({reason:?}, job still running), provider \
         restored, the retry succeeded at {} ms: 1 draft, 1 provider call",
        first_failed_in.as_millis(),
        took.as_millis(),
    );
    server.stop().await;
}

on_both!(
    failing_ai_provider_amplification,
    black_holed_ai_provider_ends_by_the_deadline,
    ai_job_under_a_failing_provider_fails_with_its_reason,
    ai_job_black_holed_then_restored_succeeds_on_a_retry,
);
