//! A koldly process (the real binary) killed with SIGKILL mid-request and
//! mid-job, then restarted on the same PostgreSQL and Redis: no acknowledged
//! write is lost, a retried keyed request replays or runs once (never twice),
//! and the job that was running reruns after its lease and completes once.
//!
//! Mid-send is `tests/product/sending_providers.rs`
//! (`a_process_killed_mid_send_leaves_its_row_unknown_and_never_resends_it`);
//! apalis on its own, `tests/apalis.rs`. Each test prints a `FIGURE` line.
//! Needs PostgreSQL and Redis (skipped with a printed reason without them,
//! failing under `STEADFAST_REQUIRE_SERVICES=1`); bounded at about 30 s each:
//! short lock TTL and lease through koldly's variables, bounded polls.

mod support;

use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use support::{
    Backend, TestDb,
    common::try_send,
    fake_anthropic::{Answer, FakeAnthropic},
    keyed_load::{self, Load},
    process::{self, KoldlyProcess},
};

/// A process on `url` sharing `redis`, whose dead requests' keys free up
/// after 2 s.
fn koldly(url: &str, redis: &str) -> tokio::process::Command {
    let mut command = process::command(url);
    command
        .env("REDIS_URL", redis)
        .env("IDEMPOTENCY_LOCK_TTL_SECS", "2");
    command
}

async fn pool(url: &str) -> sqlx::AnyPool {
    sqlx::AnyPool::connect(url).await.expect("test pool")
}

/// 200 keyed campaign creates, 16 at a time; SIGKILL once 60 are
/// acknowledged; restart; the client retries every key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_mid_request_loses_no_acknowledged_write() {
    let Some(redis) = process::postgres_and_redis() else {
        return;
    };
    let (_db, url) = TestDb::create(Backend::Postgres).await;
    let mut first = KoldlyProcess::start(koldly(&url, &redis)).await;
    let pool = pool(&url).await;
    let account = keyed_load::account(first.addr, &pool, "load@example.com").await;

    let load = Load::start(vec![first.addr], &account, 200, 16);
    load.until_acked(60).await;
    first.kill().await;
    let killed = Instant::now();
    let outcomes = load.outcomes().await;
    let acked = outcomes.values().flatten().count();

    let second = KoldlyProcess::start(koldly(&url, &redis)).await;
    let back = killed.elapsed();
    let (_, before) = keyed_load::campaigns(&pool, &account).await;
    let retries = keyed_load::retry_all(second.addr, &account, &outcomes).await;
    let (lost, duplicated) =
        keyed_load::check_exactly_once(&pool, &account, &outcomes, &retries).await;
    let committed = keyed_load::committed_unacknowledged(&outcomes, &retries, &before);
    println!(
        "FIGURE kill_mid_request: keys={} acked_before_kill={acked} unacknowledged={} \
         committed_unacknowledged={committed} retries_replayed={} retries_ran={} conflicts_409={} \
         lost={lost} duplicated={duplicated} \
         restart_ms={}",
        outcomes.len(),
        outcomes.len() - acked,
        retries.replayed,
        retries.ran,
        retries.conflicts,
        back.as_millis()
    );
}

/// A POST as `token` to `path` on `addr`; the reply's JSON.
async fn post(
    addr: std::net::SocketAddr,
    token: &str,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let reply = try_send(
        http::Request::post(format!("http://{addr}{path}"))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap(),
    )
    .await
    .expect("the instance answers");
    (reply.status.as_u16(), reply.json())
}

/// A job drafting three emails: the language model answers the first draft
/// and hangs on the second; SIGKILL; restart. The job reruns once its 3 s
/// lease has passed, skips the draft it made, and succeeds: one email per
/// prospect, two attempts, the first prospect never drafted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_mid_job_reruns_it_after_its_lease_and_completes_it_once() {
    let Some(redis) = process::postgres_and_redis() else {
        return;
    };
    let (_db, url) = TestDb::create(Backend::Postgres).await;
    let model = FakeAnthropic::start(
        vec![Answer::draft("Hello 0", "Body 0"), Answer::Hang],
        Answer::draft("Hello again", "Body again"),
    )
    .await;
    let with_model = || {
        let mut command = koldly(&url, &redis);
        command
            .env("AI_API_KEY", "sk-fake-key")
            .env("AI_BASE_URL", model.url())
            .env("AI_MAX_RETRIES", "0")
            .env("JOB_LEASE_SECS", "3")
            .env("JOB_POLL_MS", "100");
        command
    };
    let mut first = KoldlyProcess::start(with_model()).await;
    let pool = pool(&url).await;
    let account = keyed_load::account(first.addr, &pool, "jobs@example.com").await;
    let (status, campaign) = post(
        first.addr,
        &account.token,
        "/api/campaigns",
        serde_json::json!({"name": "Drafts"}),
    )
    .await;
    assert_eq!(status, 201, "{campaign}");
    let campaign = campaign["id"].as_str().unwrap().to_owned();
    let prospects: Vec<_> = (0..3)
        .map(|i| serde_json::json!({"email": format!("lead{i}@example.com")}))
        .collect();
    let (status, imported) = post(
        first.addr,
        &account.token,
        &format!("/api/campaigns/{campaign}/prospects"),
        serde_json::Value::Array(prospects),
    )
    .await;
    assert!((200..300).contains(&status), "{imported}");
    let (status, job) = post(
        first.addr,
        &account.token,
        &format!("/api/campaigns/{campaign}/emails/generate"),
        serde_json::json!({}),
    )
    .await;
    assert_eq!(status, 202, "{job}");
    let job = job["id"].as_str().unwrap().to_owned();
    process::wait_for("the second draft's call", async || model.calls() >= 2).await;
    first.kill().await;
    let killed = Instant::now();

    let second = KoldlyProcess::start(with_model()).await;
    let job_row = async || -> (String, i64) {
        sqlx::query_as("SELECT state, attempts FROM jobs WHERE id = $1")
            .bind(&job)
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    process::wait_for("the job to end", async || {
        matches!(job_row().await.0.as_str(), "succeeded" | "failed")
    })
    .await;
    let rerun_after = killed.elapsed();
    let (state, attempts) = job_row().await;
    let drafts: Vec<(String, i64)> = sqlx::query_as(
        "SELECT prospect_id, COUNT(*) FROM generated_emails WHERE campaign_id = $1 GROUP BY prospect_id",
    )
    .bind(&campaign)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(state, "succeeded");
    assert_eq!(attempts, 2, "the killed attempt and the rerun");
    assert_eq!(drafts.len(), 3, "one email per prospect: {drafts:?}");
    assert!(drafts.iter().all(|(_, n)| *n == 1), "{drafts:?}");
    assert_eq!(
        model.calls(),
        4,
        "the first prospect drafted once, the hung one twice, the last once"
    );
    drop(second);
    println!(
        "FIGURE kill_mid_job: prospects=3 attempts={attempts} model_calls={} emails={} \
         duplicated=0 lost=0 completed_after_kill_ms={} (lease 3 s)",
        model.calls(),
        drafts.len(),
        rerun_after.as_millis()
    );
}
