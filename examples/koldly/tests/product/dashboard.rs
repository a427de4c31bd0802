//! Dashboards over HTTP against a seeded dataset whose answers are known:
//! stats, email activity per local day of the user's time zone (across a day
//! boundary that differs from UTC's), recent campaigns, the activity feed,
//! `days` validation, tenancy; and (PostgreSQL) the query plans over 100 000
//! queue rows and 10 000 replies use indexes.

use jiff::{Timestamp, ToSpan, tz::TimeZone};
use koldly::clock::Clock;
use serde_json::{Value, json};
use sqlx::Row;

use crate::client::{User, campaign, email_row, emails, get, import, json, user, user_on};
use crate::on_both;
use crate::support::{Backend, TestServer};

const ZONE: &str = "America/New_York";

/// Local midnight `days_ago` days before today in [`ZONE`], unix seconds.
fn local_midnight(now: i64, days_ago: i64) -> i64 {
    let tz = TimeZone::get(ZONE).unwrap();
    let today = Timestamp::from_second(now)
        .unwrap()
        .to_zoned(tz.clone())
        .date();
    let day = today.checked_sub(days_ago.days()).unwrap();
    day.to_zoned(tz)
        .unwrap()
        .start_of_day()
        .unwrap()
        .timestamp()
        .as_second()
}

fn local_date(now: i64, days_ago: i64) -> String {
    let tz = TimeZone::get(ZONE).unwrap();
    let today = Timestamp::from_second(now).unwrap().to_zoned(tz).date();
    today.checked_sub(days_ago.days()).unwrap().to_string()
}

async fn prospect_ids(server: &TestServer, campaign: &str) -> Vec<String> {
    sqlx::query("SELECT id FROM prospects WHERE campaign_id = $1 ORDER BY id")
        .bind(campaign)
        .fetch_all(server.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get("id").unwrap())
        .collect()
}

/// A queue row of `campaign`/`prospect` with `status`, sent at `sent_at`.
async fn queued(
    server: &TestServer,
    campaign: &str,
    prospect: &str,
    status: &str,
    sent_at: Option<i64>,
) {
    sqlx::query(
        "INSERT INTO campaign_sending_queue (id, campaign_id, prospect_id, status, scheduled_for, sent_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 0, $5, 0, 0)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(campaign)
    .bind(prospect)
    .bind(status)
    .bind(sent_at)
    .execute(server.pool())
    .await
    .unwrap();
}

/// A reply from `prospect` received at `at`, with its inbox row.
async fn replied(server: &TestServer, owner: &User, campaign: &str, prospect: &str, at: i64) {
    let reply = uuid::Uuid::now_v7().to_string();
    sqlx::query(
        "INSERT INTO prospect_replies (id, prospect_id, campaign_id, from_email, body, received_at, created_at) \
         VALUES ($1, $2, $3, 'p@example.com', 'Interested', $4, $4)",
    )
    .bind(&reply)
    .bind(prospect)
    .bind(campaign)
    .bind(at)
    .execute(server.pool())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO prospect_reply_inbox (id, reply_id, user_id, campaign_id, received_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5, $5)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(&reply)
    .bind(&owner.id)
    .bind(campaign)
    .bind(at)
    .execute(server.pool())
    .await
    .unwrap();
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

/// Seeds `owner`'s account: three campaigns (one archived, one active), six
/// prospects, emails in every state, sends around the local midnight, two
/// replies. Returns (first campaign, second campaign).
async fn seed(server: &TestServer, owner: &User, prefix: &str) -> (String, String) {
    let now = server.clock.now();
    let midnight = local_midnight(now, 0);
    let c1 = id(&campaign(server, owner, &format!("{prefix} first")).await);
    let c2 = id(&campaign(server, owner, &format!("{prefix} second")).await);
    let c3 = id(&campaign(server, owner, &format!("{prefix} archived")).await);
    assert_eq!(
        json(
            server,
            owner,
            "PUT",
            &format!("/api/campaigns/{c3}/archive"),
            Value::Null
        )
        .await
        .status,
        200
    );
    sqlx::query("UPDATE campaigns SET status = 'active' WHERE id = $1")
        .bind(&c1)
        .execute(server.pool())
        .await
        .unwrap();
    assert_eq!(
        import(server, owner, &c1, &emails(&format!("{prefix}a"), 4))
            .await
            .status,
        200
    );
    // Both imports happen at one clock second; the activity feed breaks the
    // tie by the events' time-ordered ids, drawn when the background task
    // records them: let the first be recorded before the second import.
    server.settle().await;
    assert_eq!(
        import(server, owner, &c2, &emails(&format!("{prefix}b"), 2))
            .await
            .status,
        200
    );
    let p1 = prospect_ids(server, &c1).await;
    let p2 = prospect_ids(server, &c2).await;
    email_row(server, &c1, &p1[0], "draft", now).await;
    email_row(server, &c1, &p1[1], "draft", now).await;
    email_row(server, &c2, &p2[0], "approved", now).await;
    email_row(server, &c1, &p1[2], "rejected", now).await;
    // Yesterday 23:30 local (already "today" in UTC), today 00:00 and 00:01.
    queued(server, &c1, &p1[0], "sent", Some(midnight - 1800)).await;
    queued(server, &c1, &p1[1], "sent", Some(midnight)).await;
    queued(server, &c1, &p1[2], "sent", Some(midnight + 60)).await;
    // Ten days ago: in the stats, outside a 7-day window.
    queued(
        server,
        &c1,
        &p1[3],
        "sent",
        Some(local_midnight(now, 10) + 3600),
    )
    .await;
    queued(server, &c1, &p1[3], "failed", None).await;
    queued(server, &c1, &p1[3], "queued", None).await;
    // Two days ago, in the second campaign.
    queued(
        server,
        &c2,
        &p2[0],
        "sent",
        Some(local_midnight(now, 2) + 43_200),
    )
    .await;
    replied(server, owner, &c1, &p1[0], midnight - 10).await;
    replied(server, owner, &c1, &p1[1], midnight + 10).await;
    (c1, c2)
}

async fn in_new_york(server: &TestServer, who: &User) {
    let res = json(
        server,
        who,
        "PUT",
        "/api/account/timezone",
        json!({ "timezone": ZONE }),
    )
    .await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
}

/// Every figure against the seeded answers, and nothing of another account.
async fn figures_match_the_seeded_data(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let owner = user_on(&server, "owner@example.com", "growth").await;
    let other = user_on(&server, "other@example.com", "growth").await;
    in_new_york(&server, &owner).await;
    let (c1, c2) = seed(&server, &owner, "o").await;
    seed(&server, &other, "x").await;

    let stats = get(&server, &owner, "/api/dashboard/stats").await;
    assert_eq!(stats.status, 200);
    assert_eq!(
        stats.json(),
        json!({
            "campaigns": { "total": 2, "active": 1 },
            "prospects": 6,
            "emails": { "awaiting_approval": 2, "approved": 1, "sent": 5 },
            "replies": 2,
            "reply_rate": 40.0,
        })
    );

    let now = server.clock.now();
    let activity = get(&server, &owner, "/api/dashboard/email-activity")
        .await
        .json();
    assert_eq!(activity["timezone"], ZONE);
    let days = activity["days"].as_array().unwrap();
    assert_eq!(days.len(), 7, "the default is 7 days, zero days included");
    let expected: Vec<Value> = (0..7)
        .rev()
        .map(|ago| {
            let (sent, replies) = match ago {
                0 => (2, 1),
                1 => (1, 1),
                2 => (1, 0),
                _ => (0, 0),
            };
            json!({ "date": local_date(now, ago), "sent": sent, "replies": replies })
        })
        .collect();
    assert_eq!(days, &expected);
    let month = get(&server, &owner, "/api/dashboard/email-activity?days=30")
        .await
        .json();
    let month_days = month["days"].as_array().unwrap();
    assert_eq!(month_days.len(), 30);
    let sent: i64 = month_days.iter().map(|d| d["sent"].as_i64().unwrap()).sum();
    assert_eq!(sent, 5);
    assert_eq!(month_days[19]["date"], local_date(now, 10));
    assert_eq!(month_days[19]["sent"], 1);

    // In UTC, yesterday's 23:30 send is today's.
    let res = json(
        &server,
        &owner,
        "PUT",
        "/api/account/timezone",
        json!({ "timezone": "UTC" }),
    )
    .await;
    assert_eq!(res.status, 200);
    let utc = get(&server, &owner, "/api/dashboard/email-activity?days=2")
        .await
        .json();
    let utc_today = &utc["days"][1];
    let utc_date = Timestamp::from_second(now)
        .unwrap()
        .to_zoned(TimeZone::UTC)
        .date()
        .to_string();
    assert_eq!(utc_today["date"], utc_date);
    let local_midnight_utc = Timestamp::from_second(local_midnight(now, 0) - 1800)
        .unwrap()
        .to_zoned(TimeZone::UTC)
        .date()
        .to_string();
    if local_midnight_utc == utc_date {
        assert!(utc_today["sent"].as_i64().unwrap() >= 1, "{utc}");
    }
    in_new_york(&server, &owner).await;

    let campaigns = get(&server, &owner, "/api/dashboard/campaigns")
        .await
        .json();
    assert_eq!(
        campaigns["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| json!([
                c["id"],
                c["prospects"],
                c["sent"],
                c["replies"],
                c["reply_rate"]
            ]))
            .collect::<Vec<_>>(),
        vec![json!([c2, 2, 1, 0, 0.0]), json!([c1, 4, 4, 2, 50.0])]
    );
    let one = get(&server, &owner, "/api/dashboard/campaigns?limit=1")
        .await
        .json();
    assert_eq!(one["items"].as_array().unwrap().len(), 1);

    // The feed: signup, three campaigns created, two imports; pages chain.
    server.settle().await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => "/api/dashboard/activity?limit=2".to_owned(),
            Some(c) => format!("/api/dashboard/activity?limit=2&cursor={c}"),
        };
        let page = get(&server, &owner, &path).await.json();
        for item in page["items"].as_array().unwrap() {
            seen.push(item["type"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "campaign_created",
            "campaign_created",
            "campaign_created",
            "prospects_imported",
            "prospects_imported",
            "signup"
        ]
    );
    let first = get(&server, &owner, "/api/dashboard/activity?limit=1")
        .await
        .json();
    assert_eq!(first["items"][0]["type"], "prospects_imported");
    assert_eq!(first["items"][0]["metadata"]["count"], 2);
    assert_eq!(first["items"][0]["campaign_id"], c2);

    // A newcomer sees zeros and empty lists, never the others' data.
    let newcomer = user(&server, "new@example.com").await;
    server.settle().await;
    let stats = get(&server, &newcomer, "/api/dashboard/stats").await.json();
    assert_eq!(stats["emails"]["sent"], 0);
    assert_eq!(stats["reply_rate"], 0.0);
    assert_eq!(
        get(&server, &newcomer, "/api/dashboard/campaigns")
            .await
            .json()["items"],
        json!([])
    );
    let days = get(&server, &newcomer, "/api/dashboard/email-activity")
        .await
        .json();
    assert!(
        days["days"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["sent"] == 0 && d["replies"] == 0)
    );
    let feed = get(&server, &newcomer, "/api/dashboard/activity")
        .await
        .json();
    assert_eq!(
        feed["items"].as_array().unwrap().len(),
        1,
        "only its own signup"
    );
    // Another account's cursor only ever pages through the caller's feed.
    let foreign = get(
        &server,
        &newcomer,
        &format!("/api/dashboard/activity?cursor={}", cursor.unwrap()),
    )
    .await;
    assert_eq!(foreign.status, 200);
    assert!(
        foreign.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["type"] == "signup")
    );
}

/// `days` outside 1..90 or not an integer, a bad `limit` or cursor: 400
/// naming the parameter; a bad time zone: 422.
async fn bad_parameters_are_refused(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let who = user(&server, "params@example.com").await;
    for days in [
        "0",
        "91",
        "-1",
        "abc",
        "1.5",
        "",
        "7%20",
        "99999999999999999999",
    ] {
        let res = get(
            &server,
            &who,
            &format!("/api/dashboard/email-activity?days={days}"),
        )
        .await;
        let problem = res.assert_problem(400);
        assert_eq!(problem["errors"][0]["field"], "days", "{days}");
    }
    for (days, rows) in [("1", 1), ("90", 90)] {
        let res = get(
            &server,
            &who,
            &format!("/api/dashboard/email-activity?days={days}"),
        )
        .await;
        assert_eq!(res.json()["days"].as_array().unwrap().len(), rows);
    }
    for (path, field) in [
        ("/api/dashboard/campaigns?limit=0", "limit"),
        ("/api/dashboard/campaigns?limit=21", "limit"),
        ("/api/dashboard/activity?limit=101", "limit"),
        ("/api/dashboard/activity?cursor=nope", "cursor"),
    ] {
        let problem = get(&server, &who, path).await.assert_problem(400);
        assert_eq!(problem["errors"][0]["field"], field, "{path}");
    }
    for zone in ["Mars/Olympus", "", "Europe/Paris/x", &"A".repeat(100)] {
        let res = json(
            &server,
            &who,
            "PUT",
            "/api/account/timezone",
            json!({ "timezone": zone }),
        )
        .await;
        assert_eq!(
            res.assert_problem(422)["errors"][0]["field"],
            "timezone",
            "{zone}"
        );
    }
    assert_eq!(
        get(&server, &who, "/api/account/timezone").await.json()["timezone"],
        "UTC"
    );
    for path in [
        "/api/dashboard/stats",
        "/api/dashboard/email-activity",
        "/api/dashboard/campaigns",
        "/api/dashboard/activity",
    ] {
        crate::client::request(&server, None, "GET", path, None, "", None)
            .await
            .assert_problem(401);
    }
}

on_both!(figures_match_the_seeded_data, bad_parameters_are_refused);

/// With 100 000 queue rows, 10 000 replies and 50 000 events in PostgreSQL,
/// every dashboard and admin statement reads the big tables through indexes
/// (EXPLAIN; nothing is timed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_plans_use_indexes() {
    if crate::support::common::service_url("DATABASE_URL").is_none() {
        return;
    }
    let server = TestServer::start(Backend::Postgres, |_| {}).await;
    let now = server.clock.now();
    let pool = server.pool();
    let seed = [
        "INSERT INTO users (id, email, name, created_at, updated_at) \
         SELECT 'u' || g, 'u' || g || '@example.com', 'U', 1700000000 + g, 1700000000 FROM generate_series(1, 500) g",
        "INSERT INTO campaigns (id, user_id, name, status, created_at, updated_at) \
         SELECT 'c' || g, 'u' || ((g - 1) / 2 + 1), 'C', 'active', 1700000000 + g, 1700000000 FROM generate_series(1, 1000) g",
        "INSERT INTO prospects (id, campaign_id, user_id, email, created_at, updated_at) \
         SELECT 'p' || g, 'c' || ((g - 1) / 10 + 1), 'u' || ((g - 1) / 20 + 1), 'p' || g || '@example.com', 1700000000, 1700000000 \
         FROM generate_series(1, 10000) g",
        "INSERT INTO campaign_sending_queue (id, campaign_id, prospect_id, status, scheduled_for, sent_at, created_at, updated_at) \
         SELECT 'q' || g, 'c' || ((g - 1) / 100 + 1), 'p' || ((g - 1) / 10 + 1), \
         CASE WHEN g % 10 = 0 THEN 'queued' ELSE 'sent' END, 0, \
         CASE WHEN g % 10 = 0 THEN NULL ELSE $1 - (g * 317) % 31536000 END, 0, 0 FROM generate_series(1, 100000) g",
        "INSERT INTO prospect_replies (id, prospect_id, campaign_id, from_email, body, received_at, created_at) \
         SELECT 'r' || g, 'p' || g, 'c' || ((g - 1) / 10 + 1), 'p@example.com', 'Hi', $1 - (g * 997) % 31536000, 0 \
         FROM generate_series(1, 10000) g",
        "INSERT INTO prospect_reply_inbox (id, reply_id, user_id, campaign_id, received_at, created_at, updated_at) \
         SELECT 'i' || g, 'r' || g, 'u' || ((g - 1) / 20 + 1), 'c' || ((g - 1) / 10 + 1), $1 - (g * 997) % 31536000, 0, 0 \
         FROM generate_series(1, 10000) g",
        "INSERT INTO analytics_events (id, user_id, event_type, occurred_at) \
         SELECT 'e' || g, 'u' || (g % 500 + 1), 'login', $1 - (g * 131) % 31536000 FROM generate_series(1, 50000) g",
    ];
    for sql in seed {
        sqlx::query(sql).bind(now).execute(pool).await.unwrap();
    }
    sqlx::query("ANALYZE").execute(pool).await.unwrap();
    let queue: i64 = sqlx::query("SELECT COUNT(*) AS n FROM campaign_sending_queue")
        .fetch_one(pool)
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    assert_eq!(queue, 100_000);

    let week = now - 7 * 86_400;
    let explain = |sql: &'static str, binds: Vec<Value>| async move {
        let text = format!("EXPLAIN {sql}");
        // The constants of koldly's own statements, prefixed: no outside input.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(text));
        for bind in binds {
            query = match bind {
                Value::String(s) => query.bind(s),
                Value::Number(n) => query.bind(n.as_i64().unwrap()),
                _ => unreachable!(),
            };
        }
        let rows = query.fetch_all(pool).await.unwrap();
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    };
    use koldly::db::{admin, dashboard};
    let plans = [
        (
            "stats",
            explain(dashboard::STATS_SQL, vec![json!("u7")]).await,
        ),
        (
            "sent slots",
            explain(
                dashboard::SENT_SLOTS_SQL,
                vec![json!("u7"), json!(week), json!(now + 86_400)],
            )
            .await,
        ),
        (
            "reply slots",
            explain(
                dashboard::REPLY_SLOTS_SQL,
                vec![json!("u7"), json!(week), json!(now + 86_400)],
            )
            .await,
        ),
        (
            "campaigns",
            explain(dashboard::CAMPAIGNS_SQL, vec![json!("u7"), json!(5)]).await,
        ),
        (
            "feed",
            explain(
                koldly::db::analytics::FEED_SQL,
                vec![json!("u7"), json!(21)],
            )
            .await,
        ),
        (
            "admin metrics",
            explain(admin::METRICS_SQL, vec![json!(week)]).await,
        ),
    ];
    for (name, plan) in &plans {
        println!("-- {name}\n{plan}");
        for table in [
            "campaign_sending_queue",
            "prospect_replies",
            "prospect_reply_inbox",
            "analytics_events",
            "prospects",
        ] {
            assert!(
                !plan.contains(&format!("Seq Scan on {table}")),
                "{name} scans {table} whole:\n{plan}"
            );
        }
        assert!(plan.contains("Index"), "{name} uses an index:\n{plan}");
    }
}
