//! The sending engine over HTTP, on SQLite and PostgreSQL: senders and their
//! verification, starting/pausing/resuming, the worker's window, local days
//! (DST included) and daily limit, concurrent ticks, interrupted sends,
//! follow-ups, one-click unsubscribe and tenancy. The worker is driven tick
//! by tick (`SENDING_TICK_MS` off) on the manual clock.

use std::time::Duration;

use koldly::sending::worker::{TickReport, Worker};
use serde_json::{Value, json};

use crate::{
    client::{
        User, campaign, count, email_row, emails, get, import, json, request, snapshot, user,
        user_on,
    },
    on_both,
    support::{Backend, TestServer},
};

pub async fn start(backend: Backend) -> TestServer {
    TestServer::start(backend, |c| c.sending.tick = None).await
}

/// Moves the manual clock to `at` (an RFC 3339 instant after now).
pub fn set_clock(server: &TestServer, at: &str) {
    let target = at.parse::<jiff::Timestamp>().unwrap().as_second();
    let now = koldly::clock::Clock::now(&*server.clock);
    assert!(target >= now, "{at} is in the clock's past");
    server
        .clock
        .advance(Duration::from_secs((target - now) as u64));
}

pub fn advance(server: &TestServer, secs: u64) {
    server.clock.advance(Duration::from_secs(secs));
}

/// A verified sender of `owner`; its id.
pub async fn verified_sender(server: &TestServer, owner: &User, email: &str) -> String {
    let res = json(
        server,
        owner,
        "POST",
        "/api/senders",
        json!({"email": email, "name": "Ann Seller"}),
    )
    .await;
    assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
    let id = res.json()["id"].as_str().unwrap().to_owned();
    let (token, _) = server.mailed_token(email, "sender_verification").await;
    let res = server
        .post("/api/senders/verify", &json!({"token": token}).to_string())
        .await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    id
}

/// A campaign of `owner` with `n` prospects, each with an approved email;
/// its id.
pub async fn approved_campaign(
    server: &TestServer,
    owner: &User,
    prefix: &str,
    n: usize,
) -> String {
    let id = campaign(server, owner, "Outreach").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        import(server, owner, &id, &emails(prefix, n)).await.status,
        200
    );
    let prospects: Vec<String> =
        sqlx::query_scalar("SELECT id FROM prospects WHERE campaign_id = $1 ORDER BY email")
            .bind(&id)
            .fetch_all(server.pool())
            .await
            .unwrap();
    for (i, p) in prospects.iter().enumerate() {
        email_row(server, &id, p, "approved", i as i64 + 1).await;
    }
    id
}

pub async fn send(
    server: &TestServer,
    owner: &User,
    campaign: &str,
    body: Value,
) -> crate::support::Reply {
    json(
        server,
        owner,
        "POST",
        &format!("/api/campaigns/{campaign}/send"),
        body,
    )
    .await
}

pub async fn statuses(server: &TestServer, campaign: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT status FROM campaign_sending_queue WHERE campaign_id = $1 ORDER BY id",
    )
    .bind(campaign)
    .fetch_all(server.pool())
    .await
    .unwrap()
}

async fn sent_mail_count(server: &TestServer) -> i64 {
    count(
        server,
        "SELECT COUNT(*) AS n FROM sent_mail WHERE id <> $1",
        "x",
    )
    .await
}

pub fn worker(server: &TestServer) -> Worker {
    Worker::new(&server.handles.state)
}

async fn senders_are_verified_before_a_campaign_sends(backend: Backend) {
    let server = start(backend).await;
    let ann = user(&server, "ann@example.com").await;
    let c = approved_campaign(&server, &ann, "lead", 2).await;

    // Bad input names the field.
    let bad = json(
        &server,
        &ann,
        "POST",
        "/api/senders",
        json!({"email": "nope", "name": ""}),
    )
    .await;
    let problem = bad.assert_problem(422);
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["email", "name"]);

    let res = json(
        &server,
        &ann,
        "POST",
        "/api/senders",
        json!({"email": "Sales@Ann.example", "name": "Ann", "reply_to": "replies@ann.example"}),
    )
    .await;
    assert_eq!(res.status, 201);
    let sender = res.json();
    assert_eq!(sender["email"], "sales@ann.example");
    assert_eq!(sender["verified"], false);
    let sender_id = sender["id"].as_str().unwrap().to_owned();

    // Unverified: the campaign cannot start, nothing is queued.
    let refused = send(&server, &ann, &c, json!({"sender_id": sender_id})).await;
    assert_eq!(
        refused.assert_problem(422)["errors"][0]["field"],
        "sender_id"
    );
    assert!(statuses(&server, &c).await.is_empty());

    let (token, mails) = server
        .mailed_token("sales@ann.example", "sender_verification")
        .await;
    assert_eq!(mails, 1);
    let ok = server
        .post("/api/senders/verify", &json!({"token": token}).to_string())
        .await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()["sender"]["verified"], true);
    // A link works once.
    server
        .post("/api/senders/verify", &json!({"token": token}).to_string())
        .await
        .assert_problem(400);

    let listed = get(&server, &ann, "/api/senders").await.json();
    assert_eq!(listed["items"][0]["verified"], true);

    // Bad sending settings name their field.
    let bad = send(&server, &ann, &c, json!({"sender_id": sender_id, "timezone": "Mars/Base", "window": {"start": 18, "end": 9}, "daily_limit": 0})).await;
    let problem = bad.assert_problem(422);
    let mut fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["daily_limit", "timezone", "window.end"]);

    let started = send(&server, &ann, &c, json!({"sender_id": sender_id})).await;
    assert_eq!(
        started.status,
        200,
        "{}",
        String::from_utf8_lossy(&started.body)
    );
    assert_eq!(started.json()["queued"], 2);
    // Again: only what is new is queued.
    assert_eq!(
        send(&server, &ann, &c, json!({"sender_id": sender_id}))
            .await
            .json()["queued"],
        0
    );
    let overview = get(&server, &ann, &format!("/api/campaigns/{c}/sending"))
        .await
        .json();
    assert_eq!(overview["status"], "active");
    assert_eq!(overview["counts"]["queued"], 2);
    assert_eq!(overview["sent_today"], 0);
    assert_eq!(overview["daily_limit"], 50);

    // Deleting the sender pauses the campaign.
    let del = request(
        &server,
        Some(&ann),
        "DELETE",
        &format!("/api/senders/{sender_id}"),
        None,
        "",
        None,
    )
    .await;
    assert_eq!(del.status, 204);
    let overview = get(&server, &ann, &format!("/api/campaigns/{c}/sending"))
        .await
        .json();
    assert_eq!(overview["status"], "paused");
}

async fn the_window_and_the_local_day_follow_the_time_zone_across_dst(backend: Backend) {
    let server = start(backend).await;
    set_clock(&server, "2027-03-27T07:00:00Z");
    let ann = user(&server, "ann@example.com").await;
    let sender = verified_sender(&server, &ann, "sales@ann.example").await;
    let c = approved_campaign(&server, &ann, "lead", 4).await;
    // 27 March 2027, 08:00 in Paris (UTC+1): before the window.
    let started = send(&server, &ann, &c, json!({"sender_id": sender, "timezone": "Europe/Paris", "window": {"start": 9, "end": 17}, "daily_limit": 2})).await;
    assert_eq!(started.status, 200);
    assert_eq!(
        started.json()["scheduled_from"],
        "2027-03-27T08:00:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_second()
    );
    let w = worker(&server);
    assert_eq!(w.tick().await.sent, 0, "before the window");

    set_clock(&server, "2027-03-27T08:00:00Z"); // 09:00 local
    assert_eq!(w.tick().await.sent, 1);
    assert_eq!(
        w.tick().await.sent,
        0,
        "spread: the next send waits (8 h / 2 = 4 h)"
    );
    advance(&server, 4 * 3600 - 1);
    assert_eq!(w.tick().await.sent, 0);
    advance(&server, 1); // 13:00 local
    assert_eq!(w.tick().await.sent, 1);
    let overview = get(&server, &ann, &format!("/api/campaigns/{c}/sending"))
        .await
        .json();
    assert_eq!(overview["sent_today"], 2);
    // The limit: nothing more today, though the window is open.
    advance(&server, 3 * 3600); // 16:00 local
    assert_eq!(w.tick().await.sent, 0);
    // The next send is tomorrow's window, which starts at 07:00 UTC: Paris
    // moves to UTC+2 on 28 March 2027.
    let overview = get(&server, &ann, &format!("/api/campaigns/{c}/sending"))
        .await
        .json();
    assert_eq!(
        overview["next_send_at"],
        "2027-03-28T07:00:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_second()
    );

    // Local midnight (23:00 UTC) starts a new day, but the window is closed.
    set_clock(&server, "2027-03-27T23:30:00Z");
    assert_eq!(w.tick().await.sent, 0);
    set_clock(&server, "2027-03-28T06:59:59Z"); // 08:59:59 CEST
    assert_eq!(w.tick().await.sent, 0);
    advance(&server, 1);
    assert_eq!(w.tick().await.sent, 1);
    let overview = get(&server, &ann, &format!("/api/campaigns/{c}/sending"))
        .await
        .json();
    assert_eq!(overview["sent_today"], 1);
    assert_eq!(overview["counts"]["sent"], 3);
    assert_eq!(overview["counts"]["queued"], 1);
    assert_eq!(sent_mail_count(&server).await, 3);
}

async fn concurrent_ticks_send_each_row_once_within_the_limit(backend: Backend) {
    let server = start(backend).await;
    set_clock(&server, "2027-06-01T00:00:00Z");
    let ann = user(&server, "ann@example.com").await;
    let sender = verified_sender(&server, &ann, "sales@ann.example").await;
    let c = approved_campaign(&server, &ann, "lead", 6).await;
    let started = send(
        &server,
        &ann,
        &c,
        json!({"sender_id": sender, "window": {"start": 0, "end": 24}, "daily_limit": 2}),
    )
    .await;
    assert_eq!(started.status, 200);
    let workers: Vec<Worker> = (0..4).map(|_| worker(&server)).collect();
    let mut total = 0;
    for round in 0..4 {
        let ticks: Vec<_> = workers
            .iter()
            .flat_map(|w| [w.clone(), w.clone()])
            .map(|w| tokio::spawn(async move { w.tick().await }))
            .collect();
        let mut sent = 0;
        for t in ticks {
            sent += t.await.unwrap().sent;
        }
        assert_eq!(
            sent, 1,
            "round {round}: 8 concurrent ticks send one row (spacing 12 h)"
        );
        total += sent;
        advance(&server, 12 * 3600);
    }
    // Two local days, two a day.
    assert_eq!(total, 4);
    assert_eq!(sent_mail_count(&server).await, 4);
    let distinct = count(
        &server,
        "SELECT COUNT(DISTINCT queue_id) AS n FROM sent_mail WHERE id <> $1",
        "x",
    )
    .await;
    assert_eq!(distinct, 4);
    // One "email sent" analytics event per message that went out.
    server.settle().await;
    let recorded = count(
        &server,
        "SELECT COUNT(*) AS n FROM analytics_events WHERE user_id = $1 AND event_type = 'email_sent'",
        &ann.id,
    )
    .await;
    assert_eq!(recorded, 4);
}

async fn paused_archived_and_deleted_campaigns_send_nothing(backend: Backend) {
    let server = start(backend).await;
    set_clock(&server, "2027-06-01T10:00:00Z");
    let ann = user(&server, "ann@example.com").await;
    let sender = verified_sender(&server, &ann, "sales@ann.example").await;
    let c = approved_campaign(&server, &ann, "lead", 2).await;
    // Never started: 409.
    json(
        &server,
        &ann,
        "POST",
        &format!("/api/campaigns/{c}/pause"),
        Value::Null,
    )
    .await
    .assert_problem(409);
    json(
        &server,
        &ann,
        "POST",
        &format!("/api/campaigns/{c}/resume"),
        Value::Null,
    )
    .await
    .assert_problem(409);
    assert_eq!(
        get(&server, &ann, &format!("/api/campaigns/{c}/sending"))
            .await
            .json()["status"],
        "not_started"
    );
    assert_eq!(
        send(
            &server,
            &ann,
            &c,
            json!({"sender_id": sender, "window": {"start": 0, "end": 24}, "daily_limit": 1000})
        )
        .await
        .status,
        200
    );
    let paused = json(
        &server,
        &ann,
        "POST",
        &format!("/api/campaigns/{c}/pause"),
        Value::Null,
    )
    .await;
    assert_eq!(paused.json()["status"], "paused");
    let w = worker(&server);
    assert_eq!(w.tick().await, TickReport::default());
    assert_eq!(
        json(
            &server,
            &ann,
            "POST",
            &format!("/api/campaigns/{c}/resume"),
            Value::Null
        )
        .await
        .json()["status"],
        "active"
    );
    assert_eq!(w.tick().await.sent, 1);
    // Archived: nothing more.
    advance(&server, 3600);
    assert_eq!(
        json(
            &server,
            &ann,
            "PUT",
            &format!("/api/campaigns/{c}/archive"),
            Value::Null
        )
        .await
        .status,
        200
    );
    assert_eq!(w.tick().await.sent, 0);
    assert_eq!(
        statuses(&server, &c)
            .await
            .iter()
            .filter(|s| *s == "queued")
            .count(),
        1
    );
    // Archived campaigns cannot be started again.
    send(&server, &ann, &c, json!({"sender_id": sender}))
        .await
        .assert_problem(409);
    // Deleted: its queue goes with it.
    let del = request(
        &server,
        Some(&ann),
        "DELETE",
        &format!("/api/campaigns/{c}"),
        None,
        "",
        None,
    )
    .await;
    assert_eq!(del.status, 204);
    assert_eq!(w.tick().await.sent, 0);
    assert_eq!(sent_mail_count(&server).await, 1);
}

async fn an_interrupted_send_is_never_resent_blindly(backend: Backend) {
    let server = start(backend).await;
    set_clock(&server, "2027-06-01T10:00:00Z");
    let ann = user_on(&server, "ann@example.com", "growth").await;
    let sender = verified_sender(&server, &ann, "sales@ann.example").await;
    let c = approved_campaign(&server, &ann, "lead", 2).await;
    assert_eq!(
        send(
            &server,
            &ann,
            &c,
            json!({"sender_id": sender, "window": {"start": 0, "end": 24}, "daily_limit": 1000})
        )
        .await
        .status,
        200
    );
    // A worker that claims a row and dies before the provider answers.
    let db = &server.handles.state.db;
    let now = koldly::clock::Clock::now(&*server.clock);
    let claim = koldly::db::sending::claim(db, &c, "dead-worker", now, now + 120, 0, |_, _| true)
        .await
        .unwrap();
    let koldly::db::sending::Claim::Claimed(id) = claim else {
        panic!("{claim:?}")
    };
    let w = worker(&server);
    // Within the lease: the row stays `sending`, and counts against spacing.
    assert_eq!(w.tick().await.expired, 0);
    assert_eq!(
        statuses(&server, &c)
            .await
            .iter()
            .filter(|s| *s == "sending")
            .count(),
        1
    );
    // Past the lease: `unknown`, then looked up in sent_mail — never written,
    // so it is queued again, and sent once.
    advance(&server, 121);
    let report = w.tick().await;
    assert_eq!((report.expired, report.resolved), (1, 1));
    advance(&server, 3600);
    w.tick().await;
    advance(&server, 3600);
    w.tick().await;
    let written = count(
        &server,
        "SELECT COUNT(*) AS n FROM sent_mail WHERE queue_id = $1",
        &id,
    )
    .await;
    assert_eq!(written, 1);
    assert_eq!(statuses(&server, &c).await, ["sent", "sent"]);

    // A worker that wrote the message and died before recording it: the
    // lookup finds it, and it is not sent again.
    let c2 = approved_campaign(&server, &ann, "other", 1).await;
    assert_eq!(
        send(
            &server,
            &ann,
            &c2,
            json!({"sender_id": sender, "window": {"start": 0, "end": 24}})
        )
        .await
        .status,
        200
    );
    let now = koldly::clock::Clock::now(&*server.clock);
    let koldly::db::sending::Claim::Claimed(id2) =
        koldly::db::sending::claim(db, &c2, "dead-worker", now, now + 120, 0, |_, _| true)
            .await
            .unwrap()
    else {
        panic!("not claimed")
    };
    sqlx::query("INSERT INTO sent_mail (id, user_id, queue_id, message_id, from_header, to_email, subject, text_body, html_body, headers, created_at) VALUES ($1, $2, $3, '<m@x>', 'a', 'b', 's', 't', 'h', '[]', 0)")
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(&ann.id)
        .bind(&id2)
        .execute(server.pool())
        .await
        .unwrap();
    advance(&server, 121);
    let report = w.tick().await;
    assert_eq!((report.expired, report.resolved, report.sent), (1, 1, 0));
    assert_eq!(statuses(&server, &c2).await, ["sent"]);
    assert_eq!(
        count(
            &server,
            "SELECT COUNT(*) AS n FROM sent_mail WHERE queue_id = $1",
            &id2
        )
        .await,
        1
    );
}

/// The `/u/{token}` path of the newest message to `to`.
async fn unsubscribe_path(server: &TestServer, to: &str) -> String {
    let headers: String = sqlx::query_scalar("SELECT headers FROM sent_mail WHERE to_email = $1 ORDER BY created_at DESC, id DESC LIMIT 1")
        .bind(to)
        .fetch_one(server.pool())
        .await
        .unwrap();
    let headers: Vec<[String; 2]> = serde_json::from_str(&headers).unwrap();
    let get = |name: &str| {
        headers
            .iter()
            .find(|[n, _]| n == name)
            .map(|[_, v]| v.clone())
            .unwrap()
    };
    assert_eq!(get("List-Unsubscribe-Post"), "List-Unsubscribe=One-Click");
    assert!(get("Message-ID").starts_with('<') && get("Message-ID").ends_with("@ann.example>"));
    let link = get("List-Unsubscribe");
    let url = link.trim_start_matches('<').trim_end_matches('>');
    let path = url.split_once("/u/").unwrap().1;
    format!("/u/{path}")
}

async fn follow_ups_are_sent_after_their_delay_and_halted_by_an_unsubscribe(backend: Backend) {
    let server = start(backend).await;
    set_clock(&server, "2027-06-01T10:00:00Z");
    let ann = user(&server, "ann@example.com").await;
    let sender = verified_sender(&server, &ann, "sales@ann.example").await;
    let c = approved_campaign(&server, &ann, "lead", 2).await;
    let seq = json(&server, &ann, "PUT", &format!("/api/campaigns/{c}/sequence"), json!({"steps": [{"delay_days": 2, "subject": "Following up, {{first_name}}", "body": "Any thoughts on {{company}}?"}]})).await;
    assert_eq!(seq.status, 200, "{}", String::from_utf8_lossy(&seq.body));
    assert_eq!(seq.json()["steps"][0]["delay_days"], 2);
    let bad = json(
        &server,
        &ann,
        "PUT",
        &format!("/api/campaigns/{c}/sequence"),
        json!({"steps": [{"delay_days": 0, "subject": "", "body": "x"}]}),
    )
    .await;
    assert_eq!(
        bad.assert_problem(422)["errors"].as_array().unwrap().len(),
        2
    );
    assert_eq!(send(&server, &ann, &c, json!({"sender_id": sender, "window": {"start": 0, "end": 24}, "daily_limit": 1000, "auto_approve_followups": true})).await.status, 200);
    let w = worker(&server);
    assert_eq!(w.tick().await.sent, 1);
    advance(&server, 90);
    assert_eq!(w.tick().await.sent, 1);
    let drafts = count(&server, "SELECT COUNT(*) AS n FROM generated_emails WHERE campaign_id = $1 AND sequence_step_id IS NOT NULL AND status = 'approved'", &c).await;
    assert_eq!(drafts, 2);
    let rendered: String = sqlx::query_scalar("SELECT subject FROM generated_emails WHERE campaign_id = $1 AND sequence_step_id IS NOT NULL LIMIT 1")
        .bind(&c).fetch_one(server.pool()).await.unwrap();
    assert_eq!(rendered, "Following up, there");

    // lead0 unsubscribes through the link of the mail it received.
    let path = unsubscribe_path(&server, "lead0@example.com").await;
    let res = request(
        &server,
        None,
        "POST",
        &path,
        Some("application/x-www-form-urlencoded"),
        "List-Unsubscribe=One-Click",
        None,
    )
    .await;
    assert_eq!(res.status, 200);
    let answer = res.body.clone();
    assert_eq!(
        count(
            &server,
            "SELECT COUNT(*) AS n FROM suppressions WHERE email = $1",
            "lead0@example.com"
        )
        .await,
        1
    );

    // A day later: nothing due. Two days after the first sends: lead1's
    // follow-up goes out, lead0's does not.
    advance(&server, 86_400);
    assert_eq!(w.tick().await.follow_ups_queued, 0);
    advance(&server, 86_400);
    let report = w.tick().await;
    assert_eq!((report.follow_ups_queued, report.sent), (1, 1));
    let to: Vec<String> =
        sqlx::query_scalar("SELECT to_email FROM sent_mail ORDER BY created_at, id")
            .fetch_all(server.pool())
            .await
            .unwrap();
    assert_eq!(
        to,
        [
            "lead0@example.com",
            "lead1@example.com",
            "lead1@example.com"
        ]
    );
    assert_eq!(w.tick().await.sent, 0);

    // A forged or unknown token gets the same answer and changes nothing.
    let before = snapshot(&server).await;
    let suppressions_before = count(
        &server,
        "SELECT COUNT(*) AS n FROM suppressions WHERE email <> $1",
        "x",
    )
    .await;
    let forged_payload = base64_url(&format!("{}\nlead1@example.com", ann.id));
    let signature = path.rsplit_once('.').unwrap().1;
    for bad in [
        format!("/u/{forged_payload}.{signature}"),
        "/u/garbage".to_owned(),
        format!("/u/{forged_payload}.AAAA"),
    ] {
        for method in ["GET", "POST"] {
            let res = request(&server, None, method, &bad, None, "", None).await;
            assert_eq!(
                (res.status.as_u16(), res.body.clone()),
                (200, answer.clone()),
                "{method} {bad}"
            );
        }
    }
    assert_eq!(snapshot(&server).await, before);
    assert_eq!(
        count(
            &server,
            "SELECT COUNT(*) AS n FROM suppressions WHERE email <> $1",
            "x"
        )
        .await,
        suppressions_before
    );
}

async fn follow_ups_wait_for_approval_and_halt_prospect_stops_them(backend: Backend) {
    let server = start(backend).await;
    set_clock(&server, "2027-06-01T10:00:00Z");
    let ann = user(&server, "ann@example.com").await;
    let sender = verified_sender(&server, &ann, "sales@ann.example").await;
    let c = approved_campaign(&server, &ann, "lead", 3).await;
    let seq = json(
        &server,
        &ann,
        "PUT",
        &format!("/api/campaigns/{c}/sequence"),
        json!({"steps": [
            {"delay_days": 1, "subject": "Step one", "body": "One"},
            {"delay_days": 3, "subject": "Step two", "body": "Two"},
        ]}),
    )
    .await;
    assert_eq!(seq.status, 200);
    let started = send(
        &server,
        &ann,
        &c,
        json!({"sender_id": sender, "window": {"start": 0, "end": 24}, "daily_limit": 1000}),
    )
    .await;
    assert_eq!(started.json()["queued"], 3);
    // lead2's email is edited after it was queued: a draft again, so the
    // worker cancels its row rather than send what was not approved.
    let lead2_email: String = sqlx::query_scalar(
        "SELECT e.id FROM generated_emails e JOIN prospects p ON p.id = e.prospect_id WHERE p.email = 'lead2@example.com'",
    )
    .fetch_one(server.pool())
    .await
    .unwrap();
    let edited = json(
        &server,
        &ann,
        "PATCH",
        &format!("/api/emails/{lead2_email}"),
        json!({"subject": "Changed"}),
    )
    .await;
    assert_eq!(
        edited.status,
        200,
        "{}",
        String::from_utf8_lossy(&edited.body)
    );
    let w = worker(&server);
    for _ in 0..3 {
        w.tick().await;
        advance(&server, 90);
    }
    let cancelled: Vec<String> = sqlx::query_scalar(
        "SELECT last_error FROM campaign_sending_queue WHERE status = 'cancelled'",
    )
    .fetch_all(server.pool())
    .await
    .unwrap();
    assert_eq!(cancelled, ["the email is no longer approved"]);
    // Two first emails sent: two steps each drafted, awaiting approval.
    let drafts = count(&server, "SELECT COUNT(*) AS n FROM generated_emails WHERE campaign_id = $1 AND sequence_step_id IS NOT NULL AND status = 'draft'", &c).await;
    assert_eq!(drafts, 4);
    let pending = get(&server, &ann, &format!("/api/approvals?campaign_id={c}"))
        .await
        .json();
    assert_eq!(
        pending["items"].as_array().unwrap().len(),
        5,
        "4 follow-ups and lead2's edited email"
    );
    // A day later nothing is queued: the drafts are not approved.
    advance(&server, 86_400);
    assert_eq!(w.tick().await.follow_ups_queued, 0);
    // lead1's first step is approved: it goes out; lead0 is halted (a reply).
    let step_one = |email: &'static str| {
        let server = &server;
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT e.id FROM generated_emails e JOIN prospects p ON p.id = e.prospect_id \
                 JOIN email_sequence_steps st ON st.id = e.sequence_step_id WHERE p.email = $1 AND st.step_number = 1",
            )
            .bind(email)
            .fetch_one(server.pool())
            .await
            .unwrap()
        }
    };
    for email in ["lead0@example.com", "lead1@example.com"] {
        let id = step_one(email).await;
        let approved = json(
            &server,
            &ann,
            "POST",
            &format!("/api/emails/{id}/approve"),
            Value::Null,
        )
        .await;
        assert_eq!(approved.status, 200);
    }
    let lead0: String =
        sqlx::query_scalar("SELECT id FROM prospects WHERE email = 'lead0@example.com'")
            .fetch_one(server.pool())
            .await
            .unwrap();
    assert!(
        koldly::db::sequences::stops_on_reply(server.pool(), &lead0)
            .await
            .unwrap()
    );
    let now = koldly::clock::Clock::now(&*server.clock);
    let halted = koldly::db::sequences::halt_prospect(server.pool(), &lead0, "replied", now)
        .await
        .unwrap();
    assert_eq!(
        halted,
        koldly::db::sequences::Halted {
            cancelled: 0,
            rejected: 2
        }
    );
    let report = w.tick().await;
    assert_eq!((report.follow_ups_queued, report.sent), (1, 1));
    let to: Vec<String> =
        sqlx::query_scalar("SELECT to_email FROM sent_mail ORDER BY created_at, id")
            .fetch_all(server.pool())
            .await
            .unwrap();
    assert_eq!(
        to,
        [
            "lead0@example.com",
            "lead1@example.com",
            "lead1@example.com"
        ]
    );
    // Halting twice keeps the first reason and changes nothing more.
    let again = koldly::db::sequences::halt_prospect(server.pool(), &lead0, "bounced", now)
        .await
        .unwrap();
    assert_eq!(again, koldly::db::sequences::Halted::default());
    let reason: String = sqlx::query_scalar("SELECT halt_reason FROM prospects WHERE id = $1")
        .bind(&lead0)
        .fetch_one(server.pool())
        .await
        .unwrap();
    assert_eq!(reason, "replied");
}

fn base64_url(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

async fn sending_routes_are_owner_scoped(backend: Backend) {
    let server = start(backend).await;
    let ann = user(&server, "ann@example.com").await;
    let eve = user(&server, "eve@example.com").await;
    let sender = verified_sender(&server, &ann, "sales@ann.example").await;
    let eves_sender = verified_sender(&server, &eve, "eve@eve.example").await;
    let c = approved_campaign(&server, &ann, "lead", 1).await;
    assert_eq!(
        send(&server, &ann, &c, json!({"sender_id": sender}))
            .await
            .status,
        200
    );
    let before = snapshot(&server).await;
    let senders_before: Vec<String> =
        sqlx::query_scalar("SELECT id || name FROM senders ORDER BY id")
            .fetch_all(server.pool())
            .await
            .unwrap();
    let missing = uuid::Uuid::now_v7().to_string();
    for id in [c.as_str(), missing.as_str()] {
        for (method, path, body) in [
            (
                "POST",
                format!("/api/campaigns/{id}/send"),
                json!({"sender_id": eves_sender}),
            ),
            ("GET", format!("/api/campaigns/{id}/sending"), Value::Null),
            ("POST", format!("/api/campaigns/{id}/pause"), Value::Null),
            ("POST", format!("/api/campaigns/{id}/resume"), Value::Null),
            ("GET", format!("/api/campaigns/{id}/sequence"), Value::Null),
            (
                "PUT",
                format!("/api/campaigns/{id}/sequence"),
                json!({"steps": []}),
            ),
        ] {
            let res = json(&server, &eve, method, &path, body).await;
            assert_eq!(
                res.assert_problem(404)["detail"],
                "No campaign with this id.",
                "{method} {path}"
            );
        }
    }
    for id in [sender.as_str(), missing.as_str()] {
        let res = request(
            &server,
            Some(&eve),
            "DELETE",
            &format!("/api/senders/{id}"),
            None,
            "",
            None,
        )
        .await;
        res.assert_problem(404);
    }
    // Eve's sender on Ann's campaign, by Ann: not Ann's sender.
    send(&server, &ann, &c, json!({"sender_id": eves_sender}))
        .await
        .assert_problem(422);
    assert_eq!(
        get(&server, &eve, "/api/senders").await.json()["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        get(&server, &eve, "/api/sent-mail").await.json()["items"],
        json!([])
    );
    assert_eq!(snapshot(&server).await, before);
    let senders_after: Vec<String> =
        sqlx::query_scalar("SELECT id || name FROM senders ORDER BY id")
            .fetch_all(server.pool())
            .await
            .unwrap();
    assert_eq!(senders_after, senders_before);
}

on_both!(
    senders_are_verified_before_a_campaign_sends,
    the_window_and_the_local_day_follow_the_time_zone_across_dst,
    concurrent_ticks_send_each_row_once_within_the_limit,
    paused_archived_and_deleted_campaigns_send_nothing,
    an_interrupted_send_is_never_resent_blindly,
    follow_ups_are_sent_after_their_delay_and_halted_by_an_unsubscribe,
    follow_ups_wait_for_approval_and_halt_prospect_stops_them,
    sending_routes_are_owner_scoped,
);
