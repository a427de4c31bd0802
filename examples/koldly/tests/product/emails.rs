//! Emails: generation as a job (offline provider, and the Anthropic provider
//! against a fake Messages API), the approval queue and the decisions, and
//! their bad inputs, over HTTP on SQLite and PostgreSQL.
//!
//! Jobs are driven by the server's own runner (woken by the enqueue); tests
//! wait for a job by polling `GET /api/jobs/{id}`, never by sleeping.

use std::time::Duration;

use koldly::ai::{AnthropicConfig, Models, Pricing};
use serde_json::{Value, json};

use crate::client::{User, audited, count, email_row, get, json, request, snapshot, user, user_on};
use crate::on_both;
use crate::support::{
    Backend, Reply, TestServer,
    fake_anthropic::{Answer, FakeAnthropic},
};

const EMAILS: &str = "SELECT COUNT(*) AS n FROM generated_emails WHERE campaign_id = $1";
const JOBS: &str = "SELECT COUNT(*) AS n FROM jobs WHERE user_id = $1";

/// A campaign with a product description and `names.len()` named prospects
/// (`{name}@acme.example`); returns the campaign id and prospect ids in order.
async fn campaign_with_prospects(
    server: &TestServer,
    user: &User,
    names: &[&str],
) -> (String, Vec<String>) {
    let created = json(
        server,
        user,
        "POST",
        "/api/campaigns",
        json!({"name": "Q1 outreach", "product_description": "Ledgerly reconciles invoices and payments for finance teams."}),
    )
    .await;
    assert_eq!(created.status, 201);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    if names.is_empty() {
        return (id, Vec::new());
    }
    let rows: Vec<Value> = names
        .iter()
        .map(|n| {
            json!({"email": format!("{}@acme.example", n.to_lowercase()), "first_name": n, "company": "Acme"})
        })
        .collect();
    let imported = json(
        server,
        user,
        "POST",
        &format!("/api/campaigns/{id}/prospects"),
        Value::Array(rows),
    )
    .await;
    assert_eq!(imported.json()["imported"], names.len());
    let mut prospects = Vec::new();
    for name in names {
        let pid: String =
            sqlx::query_scalar("SELECT id FROM prospects WHERE email = $1 AND campaign_id = $2")
                .bind(format!("{}@acme.example", name.to_lowercase()))
                .bind(&id)
                .fetch_one(server.pool())
                .await
                .unwrap();
        prospects.push(pid);
    }
    (id, prospects)
}

/// `POST .../emails/generate` with `body`; asserts 202 and `Location`, and
/// returns the job's path.
async fn generate(server: &TestServer, user: &User, campaign: &str, body: Value) -> String {
    let res = json(
        server,
        user,
        "POST",
        &format!("/api/campaigns/{campaign}/emails/generate"),
        body,
    )
    .await;
    accepted(&res)
}

fn accepted(res: &Reply) -> String {
    assert_eq!(res.status, 202, "{}", String::from_utf8_lossy(&res.body));
    let location = res.headers["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/api/jobs/"), "{location}");
    assert_eq!(
        location,
        format!("/api/jobs/{}", res.json()["id"].as_str().unwrap())
    );
    location
}

/// Polls the job at `location` until it ended; returns it.
async fn finished(server: &TestServer, user: &User, location: &str) -> Value {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let job = get(server, user, location).await.json();
            if job["state"] == "succeeded" || job["state"] == "failed" {
                return job;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the job ends")
}

/// The emails of `campaign` as (prospect email, subject, body, status, model).
async fn drafts(
    server: &TestServer,
    campaign: &str,
) -> Vec<(String, String, String, String, String)> {
    let rows: Vec<(String, String, String, String, String)> = sqlx::query_as(
        "SELECT p.email, e.subject, e.body, e.status, e.model FROM generated_emails e \
         JOIN prospects p ON p.id = e.prospect_id WHERE e.campaign_id = $1 ORDER BY p.email, e.id",
    )
    .bind(campaign)
    .fetch_all(server.pool())
    .await
    .unwrap();
    rows
}

/// Offline generation: 202 + Location, the job succeeds with its progress,
/// one draft per prospect, deterministic text; an Idempotency-Key retry
/// replays the answer without a second job; audited with actor and target.
async fn generation_drafts_one_email_per_prospect(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let ann = user(&server, "ann@example.com").await;
    let (campaign, prospects) =
        campaign_with_prospects(&server, &ann, &["Ada", "Bob", "Cyd"]).await;

    let path = format!("/api/campaigns/{campaign}/emails/generate");
    let first = request(&server, Some(&ann), "POST", &path, None, "", Some("gen-1")).await;
    let location = accepted(&first);
    let again = request(&server, Some(&ann), "POST", &path, None, "", Some("gen-1")).await;
    assert_eq!(again.status, 202);
    assert_eq!(
        again.headers["location"], first.headers["location"],
        "replayed"
    );
    assert_eq!(
        count(&server, JOBS, &ann.id).await,
        1,
        "one job for one key"
    );

    let job = finished(&server, &ann, &location).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["kind"], "emails.generate");
    assert_eq!(job["progress"], json!({"done": 3, "total": 3}));
    assert_eq!(job["error"], Value::Null);

    let made = drafts(&server, &campaign).await;
    assert_eq!(made.len(), 3, "{made:?}");
    for ((address, subject, body, status, model), name) in made.iter().zip(["Ada", "Bob", "Cyd"]) {
        assert_eq!(address, &format!("{}@acme.example", name.to_lowercase()));
        assert_eq!((status.as_str(), model.as_str()), ("draft", "offline"));
        assert!(subject.chars().count() < 60 && !subject.is_empty());
        assert!(body.contains(name), "addressed to {name}: {body}");
        assert!(
            !body.contains('{') && !body.contains('['),
            "no placeholder: {body}"
        );
    }
    let statuses: Vec<String> =
        sqlx::query_scalar("SELECT status FROM prospects WHERE campaign_id = $1")
            .bind(&campaign)
            .fetch_all(server.pool())
            .await
            .unwrap();
    assert!(
        statuses.iter().all(|s| s == "email_generated"),
        "{statuses:?}"
    );

    // Nothing left without an email: the default has nothing to do.
    let nothing = json(&server, &ann, "POST", &path, Value::Null).await;
    assert_eq!(
        nothing.assert_problem(422)["errors"][0]["field"],
        "prospect_ids"
    );
    // Named prospects are drafted again, with the same text (deterministic).
    let location = generate(
        &server,
        &ann,
        &campaign,
        json!({"prospect_ids": [prospects[0]]}),
    )
    .await;
    assert_eq!(
        finished(&server, &ann, &location).await["state"],
        "succeeded"
    );
    let made = drafts(&server, &campaign).await;
    assert_eq!(made.len(), 4);
    assert_eq!(made[0].1, made[1].1, "same input, same subject");
    assert_eq!(made[0].2, made[1].2, "same input, same body");

    let records = audited(&server, "emails.generate").await;
    assert_eq!(records.len(), 4, "two accepted, one replayed, one refused");
    assert_eq!(records[0].actor.as_deref(), Some(ann.id.as_str()));
    assert_eq!(records[0].target_type.as_deref(), Some("campaign"));
    assert_eq!(records[0].target_id.as_deref(), Some(campaign.as_str()));
    assert_eq!(records[0].outcome, "success");
    server.stop().await;
}

/// The approval queue and every decision: list (filtered, paginated),
/// counts, approve, edit (approved -> draft), reject with a multi-line
/// reason, regenerate with feedback, bulk with a foreign and a missing id,
/// and a sent email that never changes.
async fn review_flow(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let ann = user_on(&server, "ann@example.com", "growth").await;
    let eve = user(&server, "eve@example.com").await;
    let (first, _) = campaign_with_prospects(&server, &ann, &["Ada", "Bob", "Cyd"]).await;
    let (second, _) = campaign_with_prospects(&server, &ann, &["Dan"]).await;
    for campaign in [&first, &second] {
        let location = generate(&server, &ann, campaign, Value::Null).await;
        assert_eq!(
            finished(&server, &ann, &location).await["state"],
            "succeeded"
        );
    }

    let counts = get(&server, &ann, "/api/approvals/counts").await.json();
    assert_eq!(counts["total"], 4);
    let per: Vec<(String, i64)> = counts["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["campaign_id"].as_str().unwrap().to_owned(),
                c["pending"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(
        per.contains(&(first.clone(), 3)) && per.contains(&(second.clone(), 1)),
        "{per:?}"
    );

    // Pages of two, filtered by campaign, newest first, no repeats.
    let page1 = get(
        &server,
        &ann,
        &format!("/api/approvals?campaign_id={first}&limit=2"),
    )
    .await
    .json();
    assert_eq!(page1["items"].as_array().unwrap().len(), 2);
    let cursor = page1["next_cursor"].as_str().unwrap();
    let page2 = get(
        &server,
        &ann,
        &format!("/api/approvals?campaign_id={first}&limit=2&cursor={cursor}"),
    )
    .await
    .json();
    assert_eq!(page2["items"].as_array().unwrap().len(), 1);
    assert_eq!(page2["next_cursor"], Value::Null);
    let mut ids: Vec<String> = page1["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(page2["items"].as_array().unwrap())
        .map(|e| {
            assert_eq!(e["campaign_id"], first.as_str());
            assert_eq!(e["status"], "draft");
            e["id"].as_str().unwrap().to_owned()
        })
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    let (a, b, c) = (ids[0].clone(), ids[1].clone(), ids[2].clone());

    // Approve, then edit: back to draft with the new text.
    let approved = json(
        &server,
        &ann,
        "POST",
        &format!("/api/emails/{a}/approve"),
        Value::Null,
    )
    .await;
    assert_eq!(approved.status, 200);
    assert_eq!(approved.json()["status"], "approved");
    assert!(approved.json()["approved_at"].is_i64());
    let edited = json(
        &server,
        &ann,
        "PATCH",
        &format!("/api/emails/{a}"),
        json!({"subject": "A better subject", "body": "Hi Ada,\n\nShorter.\n\nBob"}),
    )
    .await;
    assert_eq!(
        edited.status,
        200,
        "{}",
        String::from_utf8_lossy(&edited.body)
    );
    let edited = edited.json();
    assert_eq!(
        (
            edited["status"].clone(),
            edited["subject"].clone(),
            edited["body"].clone()
        ),
        (
            json!("draft"),
            json!("A better subject"),
            json!("Hi Ada,\n\nShorter.\n\nBob")
        )
    );
    assert_eq!(edited["approved_at"], Value::Null);

    // Reject with a reason over several lines; a rejected email is not approved.
    let rejected = json(
        &server,
        &ann,
        "POST",
        &format!("/api/emails/{b}/reject"),
        json!({"reason": "Too long.\nMention the pilot."}),
    )
    .await;
    assert_eq!(rejected.status, 200);
    assert_eq!(rejected.json()["status"], "rejected");
    assert_eq!(
        rejected.json()["rejection_reason"],
        "Too long.\nMention the pilot."
    );
    let refused = json(
        &server,
        &ann,
        "POST",
        &format!("/api/emails/{b}/approve"),
        Value::Null,
    )
    .await;
    refused.assert_problem(409);

    // Regenerate the rejected one with feedback: a job; a draft again.
    let res = json(
        &server,
        &ann,
        "POST",
        &format!("/api/emails/{b}/regenerate"),
        json!({"feedback": "Shorter,\nplease."}),
    )
    .await;
    let location = accepted(&res);
    let job = finished(&server, &ann, &location).await;
    assert_eq!(
        (job["state"].clone(), job["kind"].clone()),
        (json!("succeeded"), json!("emails.regenerate"))
    );
    let again = get(&server, &ann, &format!("/api/emails/{b}")).await.json();
    assert_eq!(again["status"], "draft");
    assert_eq!(again["rejection_reason"], Value::Null);

    // A sent email never changes.
    let prospect: String =
        sqlx::query_scalar("SELECT prospect_id FROM generated_emails WHERE id = $1")
            .bind(&c)
            .fetch_one(server.pool())
            .await
            .unwrap();
    let sent = email_row(&server, &first, &prospect, "sent", 5).await;
    for (method, path, body) in [
        ("POST", format!("/api/emails/{sent}/approve"), Value::Null),
        ("POST", format!("/api/emails/{sent}/reject"), Value::Null),
        (
            "PATCH",
            format!("/api/emails/{sent}"),
            json!({"subject": "x"}),
        ),
        (
            "POST",
            format!("/api/emails/{sent}/regenerate"),
            Value::Null,
        ),
    ] {
        json(&server, &ann, method, &path, body)
            .await
            .assert_problem(409);
    }

    // Bulk: Eve's email and a missing id fail alone; the rest is approved.
    let (eves, _) = campaign_with_prospects(&server, &eve, &["Eli"]).await;
    let location = generate(&server, &eve, &eves, Value::Null).await;
    finished(&server, &eve, &location).await;
    let eve_email: String =
        sqlx::query_scalar("SELECT id FROM generated_emails WHERE campaign_id = $1")
            .bind(&eves)
            .fetch_one(server.pool())
            .await
            .unwrap();
    let missing = uuid::Uuid::now_v7().to_string();
    let bulk = json(
        &server,
        &ann,
        "POST",
        "/api/emails/approve",
        json!({"ids": [a, eve_email, c, missing, sent, a]}),
    )
    .await;
    assert_eq!(bulk.status, 200, "{}", String::from_utf8_lossy(&bulk.body));
    assert_eq!(
        bulk.json(),
        json!({
            "approved": [a, c],
            "failed": [
                {"id": eve_email, "reason": "not found"},
                {"id": missing, "reason": "not found"},
                {"id": sent, "reason": "the email is sent"},
            ],
        })
    );
    let eve_status: String =
        sqlx::query_scalar("SELECT status FROM generated_emails WHERE id = $1")
            .bind(&eve_email)
            .fetch_one(server.pool())
            .await
            .unwrap();
    assert_eq!(
        eve_status, "draft",
        "another user's email is never approved"
    );
    let counts = get(&server, &ann, "/api/approvals/counts").await.json();
    assert_eq!(counts["total"], 2, "{counts}"); // b (regenerated) and Dan's

    for action in [
        "email.approve",
        "email.edit",
        "email.reject",
        "email.regenerate",
        "emails.approve",
    ] {
        let records = audited(&server, action).await;
        assert!(!records.is_empty(), "{action}");
        assert!(
            records
                .iter()
                .all(|r| r.actor.as_deref() == Some(ann.id.as_str())),
            "{action}"
        );
    }
    let approvals = audited(&server, "email.approve").await;
    assert_eq!(approvals[0].target_type.as_deref(), Some("email"));
    assert_eq!(approvals[0].target_id.as_deref(), Some(a.as_str()));
    server.stop().await;
}

/// Bad input is a 4xx problem naming what is wrong, and changes nothing.
async fn bad_inputs_are_named(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let ann = user_on(&server, "ann@example.com", "growth").await;
    let (campaign, _) = campaign_with_prospects(&server, &ann, &["Ada"]).await;
    let location = generate(&server, &ann, &campaign, Value::Null).await;
    finished(&server, &ann, &location).await;
    let email: String =
        sqlx::query_scalar("SELECT id FROM generated_emails WHERE campaign_id = $1")
            .bind(&campaign)
            .fetch_one(server.pool())
            .await
            .unwrap();
    let other = campaign_with_prospects(&server, &ann, &[]).await.0;
    let before = snapshot(&server).await;
    let id = || uuid::Uuid::now_v7().to_string();
    let ids_101: Vec<String> = (0..101).map(|_| id()).collect();
    let edit = format!("/api/emails/{email}");
    let gen_path = format!("/api/campaigns/{campaign}/emails/generate");
    let foreign_prospect = json!({"prospect_ids": [id()]});
    // (method, path, body, status, field)
    let cases: Vec<(&str, String, Value, u16, &str)> = vec![
        (
            "POST",
            "/api/emails/approve".into(),
            json!({"ids": ids_101}),
            422,
            "ids",
        ),
        (
            "POST",
            "/api/emails/approve".into(),
            json!({"ids": []}),
            422,
            "ids",
        ),
        (
            "POST",
            "/api/emails/approve".into(),
            json!({"ids": ["nope"]}),
            422,
            "ids[0]",
        ),
        (
            "POST",
            "/api/emails/approve".into(),
            json!({"ids": "x"}),
            422,
            "ids",
        ),
        (
            "POST",
            "/api/emails/approve".into(),
            json!({"ids": [], "all": true}),
            422,
            "all",
        ),
        (
            "PATCH",
            edit.clone(),
            json!({"subject": "x".repeat(201)}),
            422,
            "subject",
        ),
        (
            "PATCH",
            edit.clone(),
            json!({"body": "x".repeat(10_001)}),
            422,
            "body",
        ),
        (
            "PATCH",
            edit.clone(),
            json!({"subject": "  "}),
            422,
            "subject",
        ),
        ("PATCH", edit.clone(), json!({}), 422, "body"),
        (
            "PATCH",
            edit.clone(),
            json!({"status": "approved"}),
            422,
            "status",
        ),
        (
            "PATCH",
            edit.clone(),
            json!({"subject": "Two\nlines"}),
            400,
            "subject",
        ),
        (
            "POST",
            format!("{edit}/reject"),
            json!({"reason": "x".repeat(2001)}),
            422,
            "reason",
        ),
        (
            "POST",
            format!("{edit}/reject"),
            json!({"why": "x"}),
            422,
            "why",
        ),
        (
            "POST",
            format!("{edit}/regenerate"),
            json!({"feedback": 5}),
            422,
            "feedback",
        ),
        (
            "POST",
            gen_path.clone(),
            json!({"prospect_ids": []}),
            422,
            "prospect_ids",
        ),
        (
            "POST",
            gen_path.clone(),
            json!({"prospect_ids": ["x"]}),
            422,
            "prospect_ids[0]",
        ),
        (
            "POST",
            gen_path.clone(),
            foreign_prospect,
            422,
            "prospect_ids[0]",
        ),
        (
            "POST",
            gen_path.clone(),
            json!({"prospects": []}),
            422,
            "prospects",
        ),
        (
            "POST",
            format!("/api/campaigns/{other}/emails/generate"),
            Value::Null,
            422,
            "prospect_ids",
        ),
    ];
    for (method, path, body, status, field) in cases {
        let res = json(&server, &ann, method, &path, body).await;
        let problem = res.assert_problem(status);
        let named = problem["errors"][0]["field"]
            .as_str()
            .or(problem["field"].as_str());
        assert_eq!(named, Some(field), "{method} {path}: {problem}");
    }
    for path in [
        "/api/emails/not-an-id/approve",
        "/api/emails/1",
        "/api/campaigns/x/emails/generate",
    ] {
        let method = if path.ends_with("/1") {
            "PATCH"
        } else {
            "POST"
        };
        json(&server, &ann, method, path, json!({"subject": "x"}))
            .await
            .assert_problem(404);
    }
    for query in ["campaign_id=x", "limit=0", "limit=101", "cursor=zz"] {
        get(&server, &ann, &format!("/api/approvals?{query}"))
            .await
            .assert_problem(400);
    }
    let anonymous = request(&server, None, "GET", "/api/approvals", None, "", None).await;
    anonymous.assert_problem(401);
    let anonymous = request(&server, None, "POST", &gen_path, None, "", None).await;
    anonymous.assert_problem(401);
    assert_eq!(snapshot(&server).await, before, "nothing changed");
    server.stop().await;
}

/// The plan's monthly AI budget (from `plans::ENTITLEMENTS`, spent in
/// `ai_budgets`): a user who used it up is refused before any job is queued;
/// the same spend fits a bigger plan.
async fn generation_is_refused_when_the_budget_is_used_up(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let ann = user(&server, "ann@example.com").await; // free: 500 cents
    let (campaign, _) = campaign_with_prospects(&server, &ann, &["Ada"]).await;
    let month = koldly::plans::period_of(server.handles.state.now());
    sqlx::query("INSERT INTO ai_budgets (user_id, month, spent_microcents, reserved_microcents) VALUES ($1, $2, $3, $4)")
        .bind(&ann.id)
        .bind(&month)
        .bind(400_000_000_i64)
        .bind(100_000_000_i64)
        .execute(server.pool())
        .await
        .unwrap();
    let path = format!("/api/campaigns/{campaign}/emails/generate");
    let res = json(&server, &ann, "POST", &path, Value::Null).await;
    let problem = res.assert_problem(403);
    assert!(problem["type"].as_str().unwrap().ends_with("/plan-limit"));
    assert_eq!(problem["limit"], "ai_budget_cents_per_month");
    assert_eq!(
        (
            problem["plan"].clone(),
            problem["usage"].clone(),
            problem["allowed"].clone()
        ),
        (json!("free"), json!(500), json!(500))
    );
    assert_eq!(count(&server, JOBS, &ann.id).await, 0, "no job queued");
    let records = audited(&server, "emails.generate").await;
    assert_eq!(records[0].outcome, "denied");

    crate::client::set_plan(&server, &ann, "growth").await; // 5000 cents
    let location = generate(&server, &ann, &campaign, Value::Null).await;
    assert_eq!(
        finished(&server, &ann, &location).await["state"],
        "succeeded"
    );
    assert_eq!(count(&server, EMAILS, &campaign).await, 1);
    server.stop().await;
}

/// A server drafting through a fake Anthropic API, jobs tried once.
async fn with_fake(
    backend: Backend,
    fake: &FakeAnthropic,
    tweak: impl FnOnce(&mut AnthropicConfig),
) -> TestServer {
    let url = fake.url();
    TestServer::start(backend, move |config| {
        let mut anthropic = AnthropicConfig::new(url, "sk-ant-test-secret");
        anthropic.models = Models::all("claude-test");
        anthropic.max_tokens = 100;
        anthropic.attempt_timeout = Duration::from_secs(5);
        anthropic.max_retry_after = Duration::from_secs(5);
        tweak(&mut anthropic);
        config.ai.anthropic = Some(anthropic);
        config.jobs.max_attempts = 1;
    })
    .await
}

const GOOD_BODY: &str = "Hi,\n\nLedgerly matches invoices to payments.\n\nBest,\nBob";

/// Through the Anthropic provider: a 429 with `Retry-After` is waited out
/// and retried; a malformed answer fails that prospect's draft only, and the
/// job reports which one and why.
async fn anthropic_retries_and_reports_a_malformed_draft(backend: Backend) {
    let fake = FakeAnthropic::start(
        vec![
            Answer::refused(429, Some(1)),
            Answer::draft("Faster close at Acme", GOOD_BODY),
            Answer::raw(r#"{"type":"message","content":[{"type":"text","text":"not json at all"}],"usage":{"input_tokens":5,"output_tokens":5}}"#),
        ],
        Answer::draft("Faster close at Acme", GOOD_BODY),
    )
    .await;
    let server = with_fake(backend, &fake, |_| {}).await;
    let ann = user(&server, "ann@example.com").await;
    let (campaign, _) = campaign_with_prospects(&server, &ann, &["Ada", "Bob", "Cyd"]).await;
    let location = generate(&server, &ann, &campaign, Value::Null).await;
    let job = finished(&server, &ann, &location).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["progress"], json!({"done": 3, "total": 3}));
    let error = job["error"].as_str().unwrap();
    assert!(error.starts_with("1 of 3 prospects got no draft: bob@acme.example: the language model's answer was invalid"), "{error}");
    assert!(!error.contains("sk-ant"), "no secret in the error");
    let made = drafts(&server, &campaign).await;
    let addresses: Vec<&str> = made.iter().map(|d| d.0.as_str()).collect();
    assert_eq!(addresses, ["ada@acme.example", "cyd@acme.example"]);
    assert!(
        made.iter()
            .all(|d| d.4 == "anthropic" && d.1 == "Faster close at Acme")
    );
    let seen = fake.seen();
    assert_eq!(seen.len(), 4, "one retry, three drafts");
    assert!(
        seen[1].at - seen[0].at >= Duration::from_secs(1),
        "Retry-After was honoured"
    );
    let usage: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM ai_usage WHERE user_id = $1 AND job_id IS NOT NULL",
    )
    .bind(&ann.id)
    .fetch_one(server.pool())
    .await
    .unwrap();
    assert_eq!(usage, 3, "every call recorded against the job");
    server.stop().await;
}

/// A provider that hangs past the attempt timeout fails the job with the
/// timeout's reason, and no draft is written.
async fn anthropic_hang_times_out(backend: Backend) {
    let fake = FakeAnthropic::start(vec![Answer::Hang], Answer::draft("Hi", GOOD_BODY)).await;
    let server = with_fake(backend, &fake, |a| {
        a.attempt_timeout = Duration::from_millis(300)
    })
    .await;
    let ann = user(&server, "ann@example.com").await;
    let (campaign, _) = campaign_with_prospects(&server, &ann, &["Ada", "Bob"]).await;
    let location = generate(&server, &ann, &campaign, Value::Null).await;
    let job = finished(&server, &ann, &location).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["error"], "the language model did not answer in time");
    assert_eq!(job["progress"]["done"], 0);
    assert_eq!(fake.calls(), 1, "a timed-out attempt is not sent again");
    assert_eq!(count(&server, EMAILS, &campaign).await, 0);
    server.stop().await;
}

/// The budget runs out mid-job: the drafts that fit are written, then the
/// job stops with the budget's reason and nothing more is sent.
async fn anthropic_budget_runs_out_mid_job(backend: Backend) {
    // Each call reserves and costs 100 answer tokens at 2e6 microcents: 200
    // cents. The free plan's 500 cents cover two calls.
    let fake = FakeAnthropic::start(
        Vec::new(),
        Answer::text(
            &json!({"subject": "Faster close", "body": GOOD_BODY}).to_string(),
            0,
            100,
        ),
    )
    .await;
    let server = with_fake(backend, &fake, |a| {
        a.pricing = Pricing {
            input: 0,
            output: 2_000_000,
        };
    })
    .await;
    let ann = user(&server, "ann@example.com").await;
    let (campaign, _) = campaign_with_prospects(&server, &ann, &["Ada", "Bob", "Cyd", "Dan"]).await;
    let location = generate(&server, &ann, &campaign, Value::Null).await;
    let job = finished(&server, &ann, &location).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["error"], "the monthly AI budget is exhausted");
    assert_eq!(job["progress"], json!({"done": 2, "total": 4}));
    assert_eq!(fake.calls(), 2);
    assert_eq!(count(&server, EMAILS, &campaign).await, 2);
    let spent: i64 =
        sqlx::query_scalar("SELECT spent_microcents FROM ai_budgets WHERE user_id = $1")
            .bind(&ann.id)
            .fetch_one(server.pool())
            .await
            .unwrap();
    assert_eq!(spent, 400_000_000);
    server.stop().await;
}

/// A transient failure mid-job (a hang past the attempt timeout) is retried
/// after its backoff (steadfast's retry layer around the job's attempts); the
/// next attempt drafts only the prospects still without a draft: one draft
/// each, and the first prospect's call is not paid twice.
async fn a_retried_job_resumes_where_it_stopped(backend: Backend) {
    let fake = FakeAnthropic::start(
        vec![
            Answer::draft("Faster close at Acme", GOOD_BODY),
            Answer::Hang,
        ],
        Answer::draft("Faster close at Acme", GOOD_BODY),
    )
    .await;
    let url = fake.url();
    let server = TestServer::start(backend, move |config| {
        let mut anthropic = AnthropicConfig::new(url, "sk-ant-test-secret");
        anthropic.models = Models::all("claude-test");
        anthropic.max_tokens = 100;
        anthropic.attempt_timeout = Duration::from_millis(300);
        config.ai.anthropic = Some(anthropic);
        config.jobs.max_attempts = 2;
        config.jobs.poll_interval = Duration::from_millis(20);
        config.jobs.retry_backoff = steadfast::retry::Backoff::new(
            Duration::from_millis(50),
            2.0,
            Duration::from_millis(50),
            steadfast::retry::Jitter::None,
        );
    })
    .await;
    let ann = user(&server, "ann@example.com").await;
    let (campaign, _) = campaign_with_prospects(&server, &ann, &["Ada", "Bob", "Cyd"]).await;
    let location = generate(&server, &ann, &campaign, Value::Null).await;
    // The first attempt drafts Ada and times out on Bob; the second drafts
    // Bob and Cyd.
    let job = finished(&server, &ann, &location).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["attempts"], 2);
    assert_eq!(
        job["error"], "the language model did not answer in time",
        "the failed attempt's reason stays visible"
    );
    assert_eq!(job["progress"], json!({"done": 3, "total": 3}));
    let made = drafts(&server, &campaign).await;
    let addresses: Vec<&str> = made.iter().map(|d| d.0.as_str()).collect();
    assert_eq!(
        addresses,
        ["ada@acme.example", "bob@acme.example", "cyd@acme.example"]
    );
    assert_eq!(
        fake.calls(),
        4,
        "Ada once, Bob twice (the hang, then the draft), Cyd once"
    );
    server.stop().await;
}

on_both!(
    generation_drafts_one_email_per_prospect,
    review_flow,
    bad_inputs_are_named,
    generation_is_refused_when_the_budget_is_used_up,
    anthropic_retries_and_reports_a_malformed_draft,
    anthropic_hang_times_out,
    anthropic_budget_runs_out_mid_job,
    a_retried_job_resumes_where_it_stopped,
);
