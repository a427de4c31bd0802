//! Answers to replies through the sending queue, on SQLite and PostgreSQL:
//! sent once (two concurrent sends, two concurrent ticks), threaded under the
//! reply, from the campaign's sender, outside the window but within the daily
//! limit; refused clearly (no draft, suppressed address, unusable sender or
//! campaign, another account's reply); and the Mailgun `unknown` sends listed
//! and resolved by hand.

use koldly::{
    http_client::CircuitSettings,
    sending::{provider::MailgunConfig, worker::Worker},
};
use serde_json::{Value, json};

use crate::{
    client::{User, get, json, request, user},
    mailgun::{jobs_done, post_reply, reply_fields, with_key},
    on_both,
    sending::{advance, approved_campaign, send, set_clock, verified_sender, worker},
    support::{
        Backend, Reply, TestServer,
        fake_mailgun::{self, Answer, FakeMailgun, field},
    },
};

/// A server driven tick by tick, with the webhook key, sending through
/// `mailgun` when given (else the `sent_mail` table).
async fn start(backend: Backend, mailgun: Option<&FakeMailgun>) -> TestServer {
    let base = mailgun.map(FakeMailgun::base);
    TestServer::start(backend, move |c| {
        with_key(c);
        c.sending.tick = None;
        if let Some(base) = base {
            c.sending.mailgun = Some(MailgunConfig {
                base,
                key: fake_mailgun::KEY.to_owned(),
            });
            c.mail_circuit = CircuitSettings {
                min_calls: 100,
                open_for: std::time::Duration::from_secs(30),
            };
        }
    })
    .await
}

/// The queue row of the message sent to `to` in campaign `c`: (id, Message-ID).
async fn sent_to(server: &TestServer, c: &str, to: &str) -> (String, String) {
    sqlx::query_as(
        "SELECT q.id, q.message_id FROM campaign_sending_queue q JOIN prospects p ON p.id = q.prospect_id \
         WHERE q.campaign_id = $1 AND p.email = $2 AND q.reply_inbox_id IS NULL",
    )
    .bind(c)
    .bind(to)
    .fetch_one(server.pool())
    .await
    .unwrap()
}

/// `lead` replies to `message_id`; the reply's inbox id and its own
/// Message-ID (with brackets).
async fn reply_to(server: &TestServer, lead: &str, message_id: &str) -> (String, String) {
    let reply_mid = format!("<{}@lead.example>", uuid::Uuid::new_v4().simple());
    let res = post_reply(
        server,
        &reply_fields(lead, &reply_mid, message_id, "How much is it?"),
    )
    .await;
    assert_eq!(
        res.json()["stored"],
        true,
        "{}",
        String::from_utf8_lossy(&res.body)
    );
    let id: String = sqlx::query_scalar(
        "SELECT i.id FROM prospect_reply_inbox i JOIN prospect_replies r ON r.id = i.reply_id \
         WHERE r.provider_message_id = $1",
    )
    .bind(reply_mid.trim_matches(['<', '>']))
    .fetch_one(server.pool())
    .await
    .unwrap();
    (id, reply_mid)
}

async fn draft(server: &TestServer, owner: &User, id: &str) {
    let res = request(
        server,
        Some(owner),
        "POST",
        &format!("/api/inbox/replies/{id}/draft"),
        None,
        "",
        None,
    )
    .await;
    assert_eq!(res.status, 202, "{}", String::from_utf8_lossy(&res.body));
    jobs_done(server, &owner.id).await;
}

async fn send_answer(server: &TestServer, owner: &User, id: &str, body: Value) -> Reply {
    json(
        server,
        owner,
        "POST",
        &format!("/api/inbox/replies/{id}/send"),
        body,
    )
    .await
}

async fn answer_state(server: &TestServer, owner: &User, id: &str) -> Value {
    get(server, owner, &format!("/api/inbox/replies/{id}"))
        .await
        .json()["draft"]
        .clone()
}

/// The queue rows carrying answer `id`.
async fn answer_rows(server: &TestServer, id: &str) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "SELECT id, status, COALESCE(message_id, '') FROM campaign_sending_queue WHERE reply_inbox_id = $1",
    )
    .bind(id)
    .fetch_all(server.pool())
    .await
    .unwrap()
}

/// Two sends at once: exactly one is accepted (202), the other is a 409.
async fn send_twice_at_once(server: &TestServer, owner: &User, id: &str) -> Value {
    let (a, b) = tokio::join!(
        send_answer(server, owner, id, json!({"subject": "Re: pricing"})),
        send_answer(server, owner, id, json!({"subject": "Re: pricing"})),
    );
    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [202, 409], "{a:?} {b:?}");
    let accepted = if a.status == 202 { a } else { b };
    accepted.json()
}

/// Two workers tick at once, then one ticks again; the sends they made.
async fn tick_twice(server: &TestServer) -> usize {
    let (one, two) = (worker(server), Worker::new(&server.handles.state));
    let (a, b) = tokio::join!(one.tick(), two.tick());
    advance(server, 90);
    a.sent + b.sent + one.tick().await.sent
}

async fn an_answer_goes_once_threaded_outside_the_window_within_the_limit(backend: Backend) {
    let server = start(backend, None).await;
    set_clock(&server, "2027-06-01T10:00:00Z");
    let ann = user(&server, "ann@example.com").await;
    let sender = verified_sender(&server, &ann, "sales@ann.example").await;
    let c = approved_campaign(&server, &ann, "lead", 1).await;
    let started = send(
        &server,
        &ann,
        &c,
        json!({"sender_id": sender, "window": {"start": 9, "end": 17}, "daily_limit": 1}),
    )
    .await;
    assert_eq!(started.status, 200);
    assert_eq!(worker(&server).tick().await.sent, 1);
    let (first, first_mid) = sent_to(&server, &c, "lead0@example.com").await;

    // 20:00 UTC: outside the window, and the day's one send is spent.
    set_clock(&server, "2027-06-01T20:00:00Z");
    let (id, reply_mid) = reply_to(&server, "lead0@example.com", &first_mid).await;
    draft(&server, &ann, &id).await;
    let accepted = send_twice_at_once(&server, &ann, &id).await;
    assert_eq!(accepted["id"], id.as_str());
    assert_eq!(accepted["draft"]["status"], "sending");
    assert_eq!(accepted["draft"]["subject"], "Re: pricing");
    let rows = answer_rows(&server, &id).await;
    assert_eq!(rows.len(), 1, "queued once");
    let (answer, status, answer_mid) = rows[0].clone();
    assert_eq!(status, "queued");
    assert!(answer_mid.ends_with("@ann.example>"), "{answer_mid}");

    // The daily limit holds it until the next local day...
    assert_eq!(tick_twice(&server).await, 0);
    assert_eq!(answer_rows(&server, &id).await[0].1, "queued");
    // ...where it goes at 02:00, outside the 9–17 window: it is a conversation.
    set_clock(&server, "2027-06-02T02:00:00Z");
    assert_eq!(tick_twice(&server).await, 1);
    assert_eq!(answer_rows(&server, &id).await[0].1, "sent");
    let mails: Vec<(String, String, String, String, String)> = sqlx::query_as(
        "SELECT from_header, to_email, subject, message_id, headers FROM sent_mail WHERE queue_id = $1",
    )
    .bind(&answer)
    .fetch_all(server.pool())
    .await
    .unwrap();
    assert_eq!(mails.len(), 1, "written once");
    let (from, to, subject, message_id, headers) = &mails[0];
    assert_eq!(from, "Ann Seller <sales@ann.example>");
    assert_eq!(to, "lead0@example.com");
    assert_eq!(subject, "Re: pricing");
    assert_eq!(message_id, &answer_mid);
    let headers: Vec<(String, String)> = serde_json::from_str(headers).unwrap();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("In-Reply-To"), Some(reply_mid.clone()));
    assert_eq!(
        header("References"),
        Some(format!("{first_mid} {reply_mid}"))
    );
    let draft = answer_state(&server, &ann, &id).await;
    assert_eq!(
        (&draft["status"], &draft["error"]),
        (&json!("sent"), &Value::Null)
    );
    // Sent: a third call changes nothing, and the first email stays sent once.
    send_answer(&server, &ann, &id, Value::Null)
        .await
        .assert_problem(409);
    assert_eq!(answer_rows(&server, &id).await.len(), 1);
    let first_copies: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM sent_mail WHERE queue_id = $1")
            .bind(&first)
            .fetch_one(server.pool())
            .await
            .unwrap();
    assert_eq!(first_copies, 1);
    let overview = get(&server, &ann, &format!("/api/campaigns/{c}/sending"))
        .await
        .json();
    assert_eq!(
        overview["sent_today"], 1,
        "the answer counts toward the limit"
    );
}

async fn answers_are_refused_clearly(backend: Backend) {
    let server = start(backend, None).await;
    set_clock(&server, "2027-06-01T10:00:00Z");
    let ann = user(&server, "ann@example.com").await;
    let eve = user(&server, "eve@example.com").await;
    let sender = verified_sender(&server, &ann, "sales@ann.example").await;
    let c = approved_campaign(&server, &ann, "lead", 3).await;
    let started = send(
        &server,
        &ann,
        &c,
        json!({"sender_id": sender, "window": {"start": 0, "end": 24}, "daily_limit": 1000}),
    )
    .await;
    assert_eq!(started.status, 200);
    let w = worker(&server);
    for _ in 0..3 {
        w.tick().await;
        advance(&server, 600);
    }
    let mut replies = Vec::new();
    for n in 0..3 {
        let lead = format!("lead{n}@example.com");
        let (_, mid) = sent_to(&server, &c, &lead).await;
        replies.push(reply_to(&server, &lead, &mid).await.0);
    }
    let snapshot = |server: &TestServer| {
        let pool = server.pool().clone();
        async move {
            sqlx::query_as::<_, (String, String)>(
                "SELECT id, COALESCE(draft_status, '') || '|' || COALESCE(draft_subject, '') \
                 FROM prospect_reply_inbox ORDER BY id",
            )
            .fetch_all(&pool)
            .await
            .unwrap()
        }
    };

    // No draft yet: 409.
    let problem = send_answer(&server, &ann, &replies[0], Value::Null)
        .await
        .assert_problem(409);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("no drafted answer"),
        "{problem}"
    );
    for id in &replies {
        draft(&server, &ann, id).await;
    }

    // Another account's reply is a 404 exactly like a missing one; nothing changes.
    let before = snapshot(&server).await;
    let foreign = send_answer(&server, &eve, &replies[0], json!({"body": "pwned"})).await;
    let missing = send_answer(
        &server,
        &eve,
        &uuid::Uuid::now_v7().to_string(),
        json!({"body": "pwned"}),
    )
    .await;
    let (f, m) = (foreign.assert_problem(404), missing.assert_problem(404));
    assert_eq!((&f["title"], &f["detail"]), (&m["title"], &m["detail"]));
    assert_eq!(snapshot(&server).await, before);
    assert!(answer_rows(&server, &replies[0]).await.is_empty());

    // A suppressed address: 422 naming it, nothing queued.
    let now = koldly::clock::Clock::now(&*server.clock);
    koldly::db::suppressions::add(server.pool(), &ann.id, "LEAD0@example.com", "manual", now)
        .await
        .unwrap();
    let problem = send_answer(&server, &ann, &replies[0], Value::Null)
        .await
        .assert_problem(422);
    assert_eq!(problem["errors"][0]["field"], "prospect_email");
    assert_eq!(
        answer_state(&server, &ann, &replies[0]).await["status"],
        "draft"
    );
    assert!(answer_rows(&server, &replies[0]).await.is_empty());

    // Suppressed after it was queued (written straight to the list, as a
    // race with the worker would leave it): the worker cancels it, the draft
    // fails with the reason, nothing is written.
    assert_eq!(
        send_answer(&server, &ann, &replies[1], Value::Null)
            .await
            .status,
        202
    );
    sqlx::query(
        "INSERT INTO suppressions (user_id, email, reason, created_at) VALUES ($1, 'lead1@example.com', 'manual', 0)",
    )
    .bind(&ann.id)
    .execute(server.pool())
    .await
    .unwrap();
    advance(&server, 600);
    w.tick().await;
    let failed = answer_state(&server, &ann, &replies[1]).await;
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["error"].as_str().unwrap().contains("suppressed"),
        "{failed}"
    );
    let written: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sent_mail WHERE queue_id = $1")
        .bind(&answer_rows(&server, &replies[1]).await[0].0)
        .fetch_one(server.pool())
        .await
        .unwrap();
    assert_eq!(written, 0);
    let problem = send_answer(&server, &ann, &replies[1], Value::Null)
        .await
        .assert_problem(409);
    assert!(
        problem["detail"].as_str().unwrap().contains("failed"),
        "{problem}"
    );

    // An unverified sender: 422 naming it; a paused campaign: 409.
    sqlx::query("UPDATE senders SET verified_at = NULL WHERE id = $1")
        .bind(&sender)
        .execute(server.pool())
        .await
        .unwrap();
    let problem = send_answer(&server, &ann, &replies[2], Value::Null)
        .await
        .assert_problem(422);
    assert_eq!(problem["errors"][0]["field"], "sender");
    sqlx::query("UPDATE senders SET verified_at = 1 WHERE id = $1")
        .bind(&sender)
        .execute(server.pool())
        .await
        .unwrap();
    let paused = request(
        &server,
        Some(&ann),
        "POST",
        &format!("/api/campaigns/{c}/pause"),
        None,
        "",
        None,
    )
    .await;
    assert_eq!(paused.status, 200);
    let problem = send_answer(&server, &ann, &replies[2], Value::Null)
        .await
        .assert_problem(409);
    assert!(
        problem["detail"].as_str().unwrap().contains("paused"),
        "{problem}"
    );
    // A deleted sender (which pauses the campaign): 422 naming the sender.
    let deleted = request(
        &server,
        Some(&ann),
        "DELETE",
        &format!("/api/senders/{sender}"),
        None,
        "",
        None,
    )
    .await;
    assert_eq!(deleted.status, 204);
    let problem = send_answer(&server, &ann, &replies[2], Value::Null)
        .await
        .assert_problem(422);
    assert_eq!(problem["errors"][0]["field"], "sender");
    assert_eq!(
        answer_state(&server, &ann, &replies[2]).await["status"],
        "draft"
    );
    assert!(answer_rows(&server, &replies[2]).await.is_empty());
}

/// Sends of campaign `c` as (to, status), by address.
async fn queue_by_lead(server: &TestServer, c: &str) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT p.email, q.status FROM campaign_sending_queue q JOIN prospects p ON p.id = q.prospect_id \
         WHERE q.campaign_id = $1 AND q.reply_inbox_id IS NULL ORDER BY p.email",
    )
    .bind(c)
    .fetch_all(server.pool())
    .await
    .unwrap()
}

async fn mailgun_answers_are_threaded_and_unknown_sends_are_resolved_by_hand(backend: Backend) {
    let fake = FakeMailgun::start(vec![
        Answer::Status(200), // lead0
        Answer::Status(500), // lead1: may have been taken
        Answer::Status(500), // lead2: may have been taken
    ])
    .await;
    let server = start(backend, Some(&fake)).await;
    set_clock(&server, "2027-06-01T10:00:00Z");
    let ann = user(&server, "ann@example.com").await;
    let eve = user(&server, "eve@example.com").await;
    let sender = verified_sender(&server, &ann, "sales@ann.example").await;
    let c = approved_campaign(&server, &ann, "lead", 3).await;
    let eves = approved_campaign(&server, &eve, "other", 1).await;
    let started = send(
        &server,
        &ann,
        &c,
        json!({"sender_id": sender, "window": {"start": 0, "end": 24}, "daily_limit": 1000}),
    )
    .await;
    assert_eq!(started.status, 200);
    let w = worker(&server);
    for _ in 0..3 {
        w.tick().await;
        advance(&server, 600);
    }
    assert_eq!(
        queue_by_lead(&server, &c).await,
        [
            ("lead0@example.com".to_owned(), "sent".to_owned()),
            ("lead1@example.com".to_owned(), "unknown".to_owned()),
            ("lead2@example.com".to_owned(), "unknown".to_owned()),
        ]
    );

    // The answer to lead0's reply: once at Mailgun, threaded, from the sender.
    let (_, first_mid) = sent_to(&server, &c, "lead0@example.com").await;
    let (id, reply_mid) = reply_to(&server, "lead0@example.com", &first_mid).await;
    draft(&server, &ann, &id).await;
    send_twice_at_once(&server, &ann, &id).await;
    assert_eq!(tick_twice(&server).await, 1);
    let (answer, _, answer_mid) = answer_rows(&server, &id).await.remove(0);
    let received: Vec<_> = fake
        .received()
        .into_iter()
        .filter(|m| field(m, "v:queue_id") == Some(answer.as_str()))
        .collect();
    assert_eq!(received.len(), 1, "one call to the provider");
    let message = &received[0];
    assert_eq!(
        field(message, "from"),
        Some("Ann Seller <sales@ann.example>")
    );
    assert_eq!(field(message, "to"), Some("lead0@example.com"));
    assert_eq!(field(message, "subject"), Some("Re: pricing"));
    assert_eq!(field(message, "h:Message-Id"), Some(answer_mid.as_str()));
    assert_eq!(field(message, "h:In-Reply-To"), Some(reply_mid.as_str()));
    let references = format!("{first_mid} {reply_mid}");
    assert_eq!(field(message, "h:References"), Some(references.as_str()));
    assert_eq!(answer_state(&server, &ann, &id).await["status"], "sent");

    // The unknown sends, listed oldest first, a page at a time.
    let list = format!("/api/campaigns/{c}/sending/unknown");
    let page = get(&server, &ann, &format!("{list}?limit=1")).await.json();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let item = &page["items"][0];
    assert_eq!(item["prospect_email"], "lead1@example.com");
    assert_eq!(item["subject"], "Hi");
    assert_eq!(item["is_answer"], false);
    assert!(
        item["message_id"]
            .as_str()
            .unwrap()
            .ends_with("@ann.example>")
    );
    assert!(
        item["last_error"].as_str().unwrap().contains("500"),
        "{item}"
    );
    assert!(item["since"].as_i64().unwrap() > 0);
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = get(&server, &ann, &format!("{list}?limit=1&cursor={cursor}"))
        .await
        .json();
    assert_eq!(rest["items"][0]["prospect_email"], "lead2@example.com");
    assert_eq!(rest["next_cursor"], Value::Null);
    let lead1 = item["queue_id"].as_str().unwrap().to_owned();
    let lead2 = rest["items"][0]["queue_id"].as_str().unwrap().to_owned();

    // Another account sees and resolves nothing: 404 like a missing campaign
    // or row, through its own campaign too.
    let before = queue_by_lead(&server, &c).await;
    let missing_campaign = uuid::Uuid::now_v7().to_string();
    let foreign = get(&server, &eve, &list).await.assert_problem(404);
    let missing = get(
        &server,
        &eve,
        &format!("/api/campaigns/{missing_campaign}/sending/unknown"),
    )
    .await
    .assert_problem(404);
    assert_eq!(foreign["detail"], missing["detail"]);
    let resolve =
        |campaign: &str, row: &str| format!("/api/campaigns/{campaign}/sending/unknown/{row}");
    let missing_row = json(
        &server,
        &eve,
        "POST",
        &resolve(&eves, &uuid::Uuid::now_v7().to_string()),
        json!({"outcome": "sent"}),
    )
    .await
    .assert_problem(404);
    for path in [resolve(&c, &lead1), resolve(&eves, &lead1)] {
        let foreign = json(&server, &eve, "POST", &path, json!({"outcome": "sent"}))
            .await
            .assert_problem(404);
        assert_eq!(foreign["detail"], missing_row["detail"], "{path}");
    }
    assert_eq!(queue_by_lead(&server, &c).await, before);

    // Bad input names the field.
    let bad = json(
        &server,
        &ann,
        "POST",
        &resolve(&c, &lead1),
        json!({"outcome": "maybe"}),
    )
    .await;
    bad.assert_problem(422);

    // `sent`: marked sent, never resent; a second resolution is a 409.
    let done = json(
        &server,
        &ann,
        "POST",
        &resolve(&c, &lead1),
        json!({"outcome": "sent"}),
    )
    .await;
    assert_eq!(done.status, 200, "{done:?}");
    assert_eq!(done.json(), json!({"queue_id": lead1, "status": "sent"}));
    json(
        &server,
        &ann,
        "POST",
        &resolve(&c, &lead1),
        json!({"outcome": "not_sent"}),
    )
    .await
    .assert_problem(409);

    // `not_sent`: queued again once, and sent on a later tick.
    let done = json(
        &server,
        &ann,
        "POST",
        &resolve(&c, &lead2),
        json!({"outcome": "not_sent"}),
    )
    .await;
    assert_eq!(done.json(), json!({"queue_id": lead2, "status": "queued"}));
    json(
        &server,
        &ann,
        "POST",
        &resolve(&c, &lead2),
        json!({"outcome": "not_sent"}),
    )
    .await
    .assert_problem(409);
    advance(&server, 600);
    w.tick().await;
    advance(&server, 600);
    w.tick().await;
    assert_eq!(
        queue_by_lead(&server, &c).await,
        [
            ("lead0@example.com".to_owned(), "sent".to_owned()),
            ("lead1@example.com".to_owned(), "sent".to_owned()),
            ("lead2@example.com".to_owned(), "sent".to_owned()),
        ]
    );
    let ids = fake.queue_ids();
    assert_eq!(
        ids.iter().filter(|q| **q == lead1).count(),
        1,
        "never resent"
    );
    assert_eq!(
        ids.iter().filter(|q| **q == lead2).count(),
        2,
        "sent again once"
    );
    let page = get(&server, &ann, &list).await.json();
    assert_eq!(page["items"], json!([]));
}

on_both!(
    an_answer_goes_once_threaded_outside_the_window_within_the_limit,
    answers_are_refused_clearly,
    mailgun_answers_are_threaded_and_unknown_sends_are_resolved_by_hand,
);
