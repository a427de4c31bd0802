//! Admin: `koldly admin grant EMAIL` (the real binary, against the test's
//! database) and `GET /api/admin/metrics`: 403 problem for everyone else,
//! every call audited, figures over the period.

use serde_json::json;

use crate::client::{audited, campaign, emails, get, import, user};
use crate::on_both;
use crate::support::{Backend, TestServer};
use koldly::clock::Clock;
use sqlx::Row;

/// Runs `koldly admin ACTION EMAIL` against the server's database.
fn koldly_admin(server: &TestServer, action: &str, email: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_koldly"))
        .args(["admin", action, email])
        .env("DATABASE_URL", &server.handles.state.config.database_url)
        .env_remove("KOLDLY_ENV")
        .output()
        .expect("the koldly binary runs")
}

async fn metrics_are_for_admins_only(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let boss = user(&server, "boss@example.com").await;
    let member = user(&server, "member@example.com").await;
    let now = server.clock.now();

    // Data: a campaign with two prospects, sends a day apart and a week apart.
    let c = campaign(&server, &member, "Metrics").await;
    let c = c["id"].as_str().unwrap();
    assert_eq!(
        import(&server, &member, c, &emails("m", 2)).await.status,
        200
    );
    let prospects: Vec<String> =
        sqlx::query("SELECT id FROM prospects WHERE campaign_id = $1 ORDER BY id")
            .bind(c)
            .fetch_all(server.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get("id").unwrap())
            .collect();
    for (prospect, sent_at) in [
        (&prospects[0], now - 3600),
        (&prospects[1], now - 8 * 86_400),
    ] {
        sqlx::query(
            "INSERT INTO campaign_sending_queue (id, campaign_id, prospect_id, status, scheduled_for, sent_at, created_at, updated_at) \
             VALUES ($1, $2, $3, 'sent', 0, $4, 0, 0)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(c)
        .bind(prospect)
        .bind(sent_at)
        .execute(server.pool())
        .await
        .unwrap();
    }
    sqlx::query("UPDATE users SET subscription_plan = 'growth', subscription_status = 'active' WHERE id = $1")
        .bind(&member.id)
        .execute(server.pool())
        .await
        .unwrap();

    for who in [&boss, &member] {
        let problem = get(&server, who, "/api/admin/metrics")
            .await
            .assert_problem(403);
        assert!(problem["type"].as_str().unwrap().ends_with("/forbidden"));
    }
    crate::client::request(&server, None, "GET", "/api/admin/metrics", None, "", None)
        .await
        .assert_problem(401);

    let unknown = koldly_admin(&server, "grant", "nobody@example.com");
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no account"));
    let granted = koldly_admin(&server, "grant", "BOSS@example.com");
    assert!(
        granted.status.success(),
        "{}",
        String::from_utf8_lossy(&granted.stderr)
    );
    assert!(String::from_utf8_lossy(&granted.stdout).contains("is an admin"));

    let day = get(&server, &boss, "/api/admin/metrics?period=24h").await;
    assert_eq!(day.status, 200, "{}", String::from_utf8_lossy(&day.body));
    let day = day.json();
    assert_eq!(day["period"], "24h");
    assert_eq!(
        day["users"],
        json!({ "total": 2, "signups": 2, "active": 2 })
    );
    assert_eq!(day["campaigns"], json!({ "total": 1, "created": 1 }));
    assert_eq!(day["emails"], json!({ "sent": 1 }));
    assert_eq!(day["replies"], json!({ "received": 0 }));
    assert_eq!(
        day["revenue"],
        json!({ "mrr_cents": 7900, "by_plan": { "growth": { "subscribers": 1, "mrr_cents": 7900 } } })
    );
    let month = get(&server, &boss, "/api/admin/metrics?period=30d")
        .await
        .json();
    assert_eq!(month["emails"]["sent"], 2);
    let default = get(&server, &boss, "/api/admin/metrics").await.json();
    assert_eq!(default["period"], "7d");
    assert_eq!(default["emails"]["sent"], 1);
    for bad in ["1y", "", "24H"] {
        let problem = get(&server, &boss, &format!("/api/admin/metrics?period={bad}"))
            .await
            .assert_problem(400);
        assert_eq!(problem["errors"][0]["field"], "period");
    }
    get(&server, &member, "/api/admin/metrics")
        .await
        .assert_problem(403);

    let revoked = koldly_admin(&server, "revoke", "boss@example.com");
    assert!(revoked.status.success());
    get(&server, &boss, "/api/admin/metrics")
        .await
        .assert_problem(403);

    let calls = audited(&server, "admin.metrics.read").await;
    let outcomes: Vec<(&str, Option<&str>)> = calls
        .iter()
        .map(|r| (r.outcome.as_str(), r.actor.as_deref()))
        .collect();
    let b = Some(boss.id.as_str());
    let m = Some(member.id.as_str());
    assert_eq!(
        outcomes,
        [
            ("denied", b),
            ("denied", m),
            ("denied", None),
            ("success", b),
            ("success", b),
            ("success", b),
            ("failure", b),
            ("failure", b),
            ("failure", b),
            ("denied", m),
            ("denied", b),
        ]
    );
    let grants = audited(&server, "admin.grant").await;
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].target_id.as_deref(), Some(boss.id.as_str()));
    assert_eq!(grants[0].actor.as_deref(), Some("cli"));
    assert_eq!(audited(&server, "admin.revoke").await.len(), 1);
}

on_both!(metrics_are_for_admins_only);
