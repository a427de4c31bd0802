//! The inbox: replies categorised in the background by the offline keyword
//! classifier (every category, an out-of-office return date, an unsubscribe
//! suppressing the address), the list's filters, sorts, pagination and total,
//! the stats, PATCH, re-categorisation, drafts and their sending, bad inputs,
//! and every route called with another account's reply: 404 like a missing
//! one, nothing changed.

use koldly::clock::Clock;
use serde_json::{Value, json};

use crate::client::{User, campaign, get, json, request, snapshot, user, user_on};
use crate::mailgun::{
    jobs_done, post_reply, prospect, queue_row, queue_state, reply_fields, suppressed, with_key,
};
use crate::on_both;
use crate::support::{
    Backend, Reply, TestServer,
    fake_anthropic::{Answer, FakeAnthropic},
};
use koldly::ai::{AnthropicConfig, Models};

/// The ISO date `days` after the server's clock.
fn days_ahead(server: &TestServer, days: i64) -> String {
    let at = server.clock.now() + days * 86_400;
    let date = time::OffsetDateTime::from_unix_timestamp(at)
        .unwrap()
        .date();
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// A reply from `lead` to a message of `owner`'s campaign `c`, with `text`;
/// returns its inbox id and the prospect's queued follow-up.
pub async fn reply(
    server: &TestServer,
    owner: &User,
    c: &str,
    lead: &str,
    text: &str,
) -> (String, String) {
    let p = prospect(server, owner, c, lead).await;
    let mid = format!("<{}@koldly.test>", uuid::Uuid::new_v4().simple());
    queue_row(server, c, &p, "sent", Some(&mid)).await;
    let queued = queue_row(server, c, &p, "queued", None).await;
    let provider_id = format!("<{}@mail.example>", uuid::Uuid::new_v4().simple());
    let res = post_reply(server, &reply_fields(lead, &provider_id, &mid, text)).await;
    assert_eq!(res.json()["stored"], true, "{text}");
    let id: String = sqlx::query_scalar(
        "SELECT i.id FROM prospect_reply_inbox i JOIN prospect_replies r ON r.id = i.reply_id \
         WHERE r.provider_message_id = $1",
    )
    .bind(provider_id.trim_matches(['<', '>']))
    .fetch_one(server.pool())
    .await
    .unwrap();
    (id, queued)
}

fn ok(res: &Reply) -> Value {
    assert!(
        res.status.is_success(),
        "{}: {}",
        res.status,
        String::from_utf8_lossy(&res.body)
    );
    res.json()
}

async fn replies_are_categorised_in_the_background(backend: Backend) {
    let server = TestServer::start(backend, with_key).await;
    let ann = user(&server, "ann@example.com").await;
    let c = campaign(&server, &ann, "Outreach").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let back = days_ahead(&server, 10);
    let ooo = format!(
        "Automatic reply: I am out of the office until {back} with limited access to email."
    );
    let cases = [
        (
            "a@acme.example",
            "Yes, I'm interested. Can we set up a call?",
            "interested",
        ),
        (
            "b@acme.example",
            "Not interested, thanks.",
            "not_interested",
        ),
        ("c@acme.example", ooo.as_str(), "out_of_office"),
        (
            "d@acme.example",
            "Honestly it is too expensive for a team our size.",
            "objection",
        ),
        (
            "e@acme.example",
            "How much does it cost per seat?",
            "question",
        ),
        (
            "f@acme.example",
            "Please remove me from your list.",
            "unsubscribe",
        ),
        ("g@acme.example", "Thanks for the note.", "other"),
    ];
    let mut ids = Vec::new();
    for (lead, text, _) in &cases {
        ids.push(reply(&server, &ann, &c, lead, text).await);
    }
    jobs_done(&server, &ann.id).await;
    for ((lead, _, category), (id, _)) in cases.iter().zip(&ids) {
        let r = ok(&get(&server, &ann, &format!("/api/inbox/replies/{id}")).await);
        assert_eq!(r["category"], *category, "{lead}");
        assert_eq!(r["categorized_by"], "keywords");
        let confidence = r["confidence"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&confidence) && confidence > 0.0);
        let expected_date = if *category == "out_of_office" {
            json!(back)
        } else {
            Value::Null
        };
        assert_eq!(r["return_date"], expected_date, "{lead}");
        assert_eq!(r["prospect_email"], *lead);
    }
    // The unsubscribe put the address on the suppression list; every queued
    // follow-up was already halted by the reply itself.
    assert_eq!(
        suppressed(&server, &ann.id).await,
        [(
            "f@acme.example".to_owned(),
            "unsubscribed (reply)".to_owned()
        )]
    );
    for (_, queued) in &ids {
        assert_eq!(
            queue_state(&server, queued).await,
            ("cancelled".to_owned(), Some("halted: replied".to_owned()))
        );
    }
    let unsubscribed: String = sqlx::query_scalar(
        "SELECT status FROM prospects WHERE campaign_id = $1 AND email = 'f@acme.example'",
    )
    .bind(&c)
    .fetch_one(server.pool())
    .await
    .unwrap();
    assert_eq!(unsubscribed, "unsubscribed");

    // Sorted by confidence: the unmistakable first, "other" last.
    let by_confidence = ok(&get(&server, &ann, "/api/inbox/replies?sort=confidence").await);
    let confidences: Vec<f64> = by_confidence["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["confidence"].as_f64().unwrap())
        .collect();
    assert!(
        confidences.windows(2).all(|w| w[0] >= w[1]),
        "{confidences:?}"
    );
    assert_eq!(by_confidence["items"][6]["category"], "other");

    // A category set by hand is the user's; re-categorising replaces it.
    let (question, _) = &ids[4];
    let patched = ok(&json(
        &server,
        &ann,
        "PATCH",
        &format!("/api/inbox/replies/{question}"),
        json!({"category": "interested"}),
    )
    .await);
    assert_eq!(patched["category"], "interested");
    assert_eq!(patched["categorized_by"], "user");
    assert_eq!(patched["confidence"], 1.0);
    let res = request(
        &server,
        Some(&ann),
        "POST",
        &format!("/api/inbox/replies/{question}/categorize"),
        None,
        "",
        None,
    )
    .await;
    assert_eq!(res.status, 202);
    assert!(
        res.headers["location"]
            .to_str()
            .unwrap()
            .starts_with("/api/jobs/")
    );
    jobs_done(&server, &ann.id).await;
    let again = ok(&get(&server, &ann, &format!("/api/inbox/replies/{question}")).await);
    assert_eq!(again["category"], "question");
    assert_eq!(again["categorized_by"], "keywords");
}

async fn the_inbox_lists_filters_counts_and_drafts(backend: Backend) {
    let server = TestServer::start(backend, with_key).await;
    let ann = user_on(&server, "ann@example.com", "growth").await;
    let c1 = campaign(&server, &ann, "One").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let c2 = campaign(&server, &ann, "Two").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut ids = Vec::new();
    for (i, (c, text)) in [
        (&c1, "Interested, let's talk"),
        (&c1, "Not interested"),
        (&c2, "Interested, tell me more"),
        (&c2, "What does it cost?"),
        (&c1, "Sounds good, book a call"),
    ]
    .iter()
    .enumerate()
    {
        server.clock.advance(std::time::Duration::from_secs(60));
        ids.push(
            reply(&server, &ann, c, &format!("lead{i}@acme.example"), text)
                .await
                .0,
        );
    }
    jobs_done(&server, &ann.id).await;

    // Newest first, paginated, with the total on every page.
    let first = ok(&get(&server, &ann, "/api/inbox/replies?limit=2").await);
    assert_eq!(first["total"], 5);
    let page: Vec<&str> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(page, [ids[4].as_str(), ids[3].as_str()]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = ok(&get(
        &server,
        &ann,
        &format!("/api/inbox/replies?limit=2&cursor={cursor}"),
    )
    .await);
    assert_eq!(second["items"][0]["id"], ids[2].as_str());
    assert_eq!(second["total"], 5);
    let oldest = ok(&get(&server, &ann, "/api/inbox/replies?sort=oldest&limit=1").await);
    assert_eq!(oldest["items"][0]["id"], ids[0].as_str());
    let cursor = oldest["next_cursor"].as_str().unwrap();
    let next = ok(&get(
        &server,
        &ann,
        &format!("/api/inbox/replies?sort=oldest&limit=1&cursor={cursor}"),
    )
    .await);
    assert_eq!(next["items"][0]["id"], ids[1].as_str());

    // Filters: campaign, category, read, archived.
    let of_c2 = ok(&get(
        &server,
        &ann,
        &format!("/api/inbox/replies?campaign_id={c2}"),
    )
    .await);
    assert_eq!(of_c2["total"], 2);
    let interested = ok(&get(&server, &ann, "/api/inbox/replies?category=interested").await);
    assert_eq!(interested["total"], 3);
    let patched = ok(&json(
        &server,
        &ann,
        "PATCH",
        &format!("/api/inbox/replies/{}", ids[0]),
        json!({"is_read": true}),
    )
    .await);
    assert_eq!(patched["is_read"], true);
    assert_eq!(patched["category"], "interested", "unchanged");
    ok(&json(
        &server,
        &ann,
        "PATCH",
        &format!("/api/inbox/replies/{}", ids[1]),
        json!({"is_archived": true, "is_read": true}),
    )
    .await);
    assert_eq!(
        ok(&get(&server, &ann, "/api/inbox/replies?is_read=true").await)["total"],
        1,
        "archived replies are hidden by default"
    );
    assert_eq!(
        ok(&get(&server, &ann, "/api/inbox/replies?is_archived=true").await)["total"],
        1
    );
    assert_eq!(
        ok(&get(
            &server,
            &ann,
            "/api/inbox/replies?is_archived=all&is_read=true"
        )
        .await)["total"],
        2
    );
    assert_eq!(
        ok(&get(&server, &ann, "/api/inbox/replies").await)["total"],
        4
    );

    // Stats: non-archived, by category, as numbers.
    let stats = ok(&get(&server, &ann, "/api/inbox/stats").await);
    assert_eq!(stats["total"], 4);
    assert_eq!(stats["unread"], 3);
    assert_eq!(
        stats["by_category"]["interested"],
        json!({"count": 3, "unread": 2})
    );
    assert_eq!(
        stats["by_category"]["question"],
        json!({"count": 1, "unread": 1})
    );
    assert_eq!(
        stats["by_category"]["not_interested"],
        json!({"count": 0, "unread": 0})
    );
    let stats = ok(&get(&server, &ann, &format!("/api/inbox/stats?campaign_id={c2}")).await);
    assert_eq!(stats["total"], 2);

    // A draft answer, by the offline templates for the reply's category.
    let before = ok(&get(&server, &ann, &format!("/api/inbox/replies/{}", ids[3])).await);
    assert_eq!(before["draft"], Value::Null);
    let send = request(
        &server,
        Some(&ann),
        "POST",
        &format!("/api/inbox/replies/{}/send", ids[3]),
        None,
        "",
        None,
    )
    .await;
    send.assert_problem(409);
    let res = request(
        &server,
        Some(&ann),
        "POST",
        &format!("/api/inbox/replies/{}/draft", ids[3]),
        None,
        "",
        None,
    )
    .await;
    assert_eq!(res.status, 202, "{}", String::from_utf8_lossy(&res.body));
    jobs_done(&server, &ann.id).await;
    let drafted = ok(&get(&server, &ann, &format!("/api/inbox/replies/{}", ids[3])).await);
    let draft = &drafted["draft"];
    assert_eq!(draft["status"], "draft");
    assert_eq!(draft["model"], "templates");
    assert!(
        draft["subject"].as_str().unwrap().starts_with("Re: "),
        "{draft}"
    );
    assert!(
        draft["body"]
            .as_str()
            .unwrap()
            .contains("Thanks for the question"),
        "{draft}"
    );
    // The campaign was never started, so it has no sender: 409, the draft
    // stays (answers that go out: `inbox_send.rs`).
    let send = json(
        &server,
        &ann,
        "POST",
        &format!("/api/inbox/replies/{}/send", ids[3]),
        json!({"subject": "Re: pricing"}),
    )
    .await;
    assert!(
        send.assert_problem(409)["detail"]
            .as_str()
            .unwrap()
            .contains("never started")
    );
    let bad = json(
        &server,
        &ann,
        "POST",
        &format!("/api/inbox/replies/{}/send", ids[3]),
        json!({"subject": ""}),
    )
    .await;
    assert_eq!(bad.assert_problem(422)["errors"][0]["field"], "subject");
    assert_eq!(
        ok(&get(&server, &ann, &format!("/api/inbox/replies/{}", ids[3])).await)["draft"],
        *draft
    );

    // Bad inputs name their field.
    for (query, field) in [
        ("category=maybe", "category"),
        ("sort=random", "sort"),
        ("is_read=yes", "is_read"),
        ("campaign_id=42", "campaign_id"),
        ("limit=0", "limit"),
        ("cursor=zz", "cursor"),
    ] {
        let res = get(&server, &ann, &format!("/api/inbox/replies?{query}")).await;
        assert_eq!(
            res.assert_problem(400)["errors"][0]["field"],
            field,
            "{query}"
        );
    }
    let path = format!("/api/inbox/replies/{}", ids[0]);
    for (body, status, field) in [
        (json!({}), 422, "body"),
        (json!({"category": "spam"}), 422, "category"),
        (json!({"is_read": "yes"}), 422, "is_read"),
        (json!({"is_starred": true}), 422, "is_starred"),
    ] {
        let res = json(&server, &ann, "PATCH", &path, body.clone()).await;
        assert_eq!(
            res.assert_problem(status)["errors"][0]["field"],
            field,
            "{body}"
        );
    }
    let res = request(
        &server,
        Some(&ann),
        "PATCH",
        &path,
        Some("application/json"),
        "{oops",
        None,
    )
    .await;
    res.assert_problem(400);
    let res = request(&server, None, "GET", "/api/inbox/replies", None, "", None).await;
    res.assert_problem(401);
    let res = get(&server, &ann, "/api/inbox/replies/not-a-uuid").await;
    res.assert_problem(404);
}

/// Every inbox row, suppression and job as text.
async fn inbox_snapshot(server: &TestServer) -> Vec<String> {
    let mut rows = snapshot(server).await;
    for sql in [
        "SELECT id || '|' || category || '|' || CAST(is_read AS TEXT) || '|' \
         || CAST(is_archived AS TEXT) || '|' || COALESCE(categorized_by, '') || '|' \
         || COALESCE(draft_subject, '') || '|' || COALESCE(draft_status, '') || '|' \
         || CAST(updated_at AS TEXT) AS r FROM prospect_reply_inbox ORDER BY id",
        "SELECT user_id || '|' || email || '|' || reason AS r FROM suppressions ORDER BY user_id, email",
    ] {
        for row in sqlx::query(sql).fetch_all(server.pool()).await.unwrap() {
            rows.push(sqlx::Row::try_get::<String, _>(&row, "r").unwrap());
        }
    }
    rows
}

async fn inbox_routes_never_reach_another_account(backend: Backend) {
    let server = TestServer::start(backend, with_key).await;
    let ann = user(&server, "ann@example.com").await;
    let eve = user(&server, "eve@example.com").await;
    let c = campaign(&server, &ann, "Outreach").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (id, _) = reply(
        &server,
        &ann,
        &c,
        "lead@acme.example",
        "Interested, let's talk",
    )
    .await;
    jobs_done(&server, &ann.id).await;
    ok(&request(
        &server,
        Some(&ann),
        "POST",
        &format!("/api/inbox/replies/{id}/draft"),
        None,
        "",
        None,
    )
    .await);
    jobs_done(&server, &ann.id).await;

    let before = inbox_snapshot(&server).await;
    let calls: [(&str, &str, &str); 6] = [
        ("GET", "/api/inbox/replies/{id}", ""),
        (
            "PATCH",
            "/api/inbox/replies/{id}",
            r#"{"is_read": true, "is_archived": true, "category": "unsubscribe"}"#,
        ),
        ("POST", "/api/inbox/replies/{id}/categorize", ""),
        ("POST", "/api/inbox/replies/{id}/draft", ""),
        ("POST", "/api/inbox/replies/{id}/send", ""),
        (
            "POST",
            "/api/inbox/replies/{id}/send",
            r#"{"body": "pwned"}"#,
        ),
    ];
    for (method, path, body) in calls {
        let content_type = (!body.is_empty()).then_some("application/json");
        let foreign = request(
            &server,
            Some(&eve),
            method,
            &path.replace("{id}", &id),
            content_type,
            body,
            None,
        )
        .await;
        let missing = request(
            &server,
            Some(&eve),
            method,
            &path.replace("{id}", &uuid::Uuid::now_v7().to_string()),
            content_type,
            body,
            None,
        )
        .await;
        let f = foreign.assert_problem(404);
        let m = missing.assert_problem(404);
        assert_eq!(
            (&f["type"], &f["title"], &f["detail"]),
            (&m["type"], &m["title"], &m["detail"]),
            "{method} {path}"
        );
    }
    // Eve's list, filtered by Ann's campaign, and her stats hold nothing of Ann's.
    let list = ok(&get(
        &server,
        &eve,
        &format!("/api/inbox/replies?campaign_id={c}&is_archived=all"),
    )
    .await);
    assert_eq!(
        (list["total"].clone(), list["items"].clone()),
        (json!(0), json!([]))
    );
    let stats = ok(&get(&server, &eve, &format!("/api/inbox/stats?campaign_id={c}")).await);
    assert_eq!(
        (stats["total"].clone(), stats["unread"].clone()),
        (json!(0), json!(0))
    );
    jobs_done(&server, &eve.id).await;
    assert_eq!(inbox_snapshot(&server).await, before, "nothing changed");
    let eves_jobs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE user_id = $1")
        .bind(&eve.id)
        .fetch_one(server.pool())
        .await
        .unwrap();
    assert_eq!(eves_jobs, 0);
}

/// With `AI_API_KEY` the language model files the reply (its category,
/// confidence and return date) and drafts the answer, through the fake
/// Messages API.
async fn the_language_model_files_and_answers_when_configured(backend: Backend) {
    let fake = FakeAnthropic::start(
        vec![
            Answer::text(
                r#"{"category":"out_of_office","confidence":0.93,"return_date":"2027-01-04"}"#,
                50,
                20,
            ),
            Answer::draft(
                "Re: Hi",
                "Hi Ann,\n\nThanks, I will write again in January.\n\nBob",
            ),
        ],
        Answer::refused(500, None),
    )
    .await;
    let url = fake.url();
    let server = TestServer::start(backend, move |config| {
        with_key(config);
        let mut anthropic = AnthropicConfig::new(url, "sk-ant-test-secret");
        anthropic.models = Models::all("claude-test");
        anthropic.max_tokens = 100;
        config.ai.anthropic = Some(anthropic);
        config.jobs.max_attempts = 1;
    })
    .await;
    let ann = user(&server, "ann@example.com").await;
    let c = campaign(&server, &ann, "Outreach").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Words the keyword classifier would file as interested.
    let (id, _) = reply(
        &server,
        &ann,
        &c,
        "lead@acme.example",
        "Interested, call me",
    )
    .await;
    jobs_done(&server, &ann.id).await;
    let r = ok(&get(&server, &ann, &format!("/api/inbox/replies/{id}")).await);
    assert_eq!(r["category"], "out_of_office");
    assert_eq!(r["categorized_by"], "model");
    assert_eq!(r["confidence"], 0.93);
    assert_eq!(r["return_date"], "2027-01-04");
    let res = request(
        &server,
        Some(&ann),
        "POST",
        &format!("/api/inbox/replies/{id}/draft"),
        None,
        "",
        None,
    )
    .await;
    assert_eq!(res.status, 202);
    jobs_done(&server, &ann.id).await;
    let r = ok(&get(&server, &ann, &format!("/api/inbox/replies/{id}")).await);
    assert_eq!(r["draft"]["model"], "anthropic");
    assert_eq!(r["draft"]["subject"], "Re: Hi");
    assert_eq!(fake.calls(), 2);
    assert!(
        fake.seen()[0]
            .body
            .to_string()
            .contains("Classify the email reply"),
        "the first call is the categorisation"
    );
}

on_both!(
    the_language_model_files_and_answers_when_configured,
    replies_are_categorised_in_the_background,
    the_inbox_lists_filters_counts_and_drafts,
    inbox_routes_never_reach_another_account,
);
