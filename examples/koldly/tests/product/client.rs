//! Talking to the product's routes as a signed-in user, and reading the
//! database behind them.

use bytes::Bytes;
use http_body_util::Full;
use serde_json::Value;
use sqlx::Row;

use crate::support::{Reply, TestServer, send};

/// A signed-in user of a test server.
#[derive(Clone)]
pub struct User {
    pub token: String,
    pub id: String,
}

/// Signs `email` up.
pub async fn user(server: &TestServer, email: &str) -> User {
    let (token, id) = server.signup(email, "correct horse 42").await;
    User { token, id }
}

/// Signs `email` up on `plan`.
pub async fn user_on(server: &TestServer, email: &str, plan: &str) -> User {
    let user = user(server, email).await;
    set_plan(server, &user, plan).await;
    user
}

/// Moves `user` to `plan`.
pub async fn set_plan(server: &TestServer, user: &User, plan: &str) {
    sqlx::query("UPDATE users SET subscription_plan = $1 WHERE id = $2")
        .bind(plan)
        .bind(&user.id)
        .execute(server.pool())
        .await
        .unwrap();
}

/// A request as `user` (`None`: without a token) with a body of `content_type`.
pub async fn request(
    server: &TestServer,
    user: Option<&User>,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &str,
    idempotency_key: Option<&str>,
) -> Reply {
    let mut builder = ::http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", server.addr));
    if let Some(user) = user {
        builder = builder.header("authorization", format!("Bearer {}", user.token));
    }
    if let Some(content_type) = content_type {
        builder = builder.header("content-type", content_type);
    }
    if let Some(key) = idempotency_key {
        builder = builder.header("idempotency-key", key);
    }
    let reply = send(
        builder
            .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
            .unwrap(),
    )
    .await;
    server.api.check(method, path, &reply);
    reply
}

/// A JSON request as `user`.
pub async fn json(
    server: &TestServer,
    user: &User,
    method: &str,
    path: &str,
    body: Value,
) -> Reply {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    request(
        server,
        Some(user),
        method,
        path,
        Some("application/json"),
        &body,
        None,
    )
    .await
}

/// A GET as `user`.
pub async fn get(server: &TestServer, user: &User, path: &str) -> Reply {
    request(server, Some(user), "GET", path, None, "", None).await
}

/// Creates a campaign named `name`; returns its JSON.
pub async fn campaign(server: &TestServer, user: &User, name: &str) -> Value {
    let res = json(
        server,
        user,
        "POST",
        "/api/campaigns",
        serde_json::json!({ "name": name }),
    )
    .await;
    assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
    res.json()
}

/// Imports prospects with these addresses into `campaign`; returns the summary.
pub async fn import(server: &TestServer, user: &User, campaign: &str, emails: &[String]) -> Reply {
    let rows: Vec<Value> = emails
        .iter()
        .map(|e| serde_json::json!({ "email": e }))
        .collect();
    json(
        server,
        user,
        "POST",
        &format!("/api/campaigns/{campaign}/prospects"),
        Value::Array(rows),
    )
    .await
}

/// `n` distinct addresses starting with `prefix`.
pub fn emails(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}@example.com")).collect()
}

/// How many rows `sql` (a `SELECT COUNT(*) AS n ...` with `$1`) counts for `arg`.
pub async fn count(server: &TestServer, sql: &str, arg: &str) -> i64 {
    // Tests pass their own SQL (a table name from a constant list at most).
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .bind(arg)
        .fetch_one(server.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap()
}

/// Inserts a generated email for `prospect` with `status`, `created_at` seconds
/// after the prospect (the email engine's rows, written directly).
pub async fn email_row(
    server: &TestServer,
    campaign: &str,
    prospect: &str,
    status: &str,
    at: i64,
) -> String {
    let id = uuid::Uuid::now_v7().to_string();
    sqlx::query(
        "INSERT INTO generated_emails (id, prospect_id, campaign_id, subject, body, status, created_at, updated_at) \
         VALUES ($1, $2, $3, 'Hi', 'Hello', $4, $5, $5)",
    )
    .bind(&id)
    .bind(prospect)
    .bind(campaign)
    .bind(status)
    .bind(at)
    .execute(server.pool())
    .await
    .unwrap();
    id
}

/// Queues `email` for sending.
pub async fn queue_row(server: &TestServer, campaign: &str, prospect: &str, email: &str) {
    sqlx::query(
        "INSERT INTO campaign_sending_queue (id, campaign_id, prospect_id, generated_email_id, scheduled_for, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 0, 0, 0)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(campaign)
    .bind(prospect)
    .bind(email)
    .execute(server.pool())
    .await
    .unwrap();
}

/// Every product row in the database as text, table by table: what a request
/// without effect leaves exactly as it was.
pub async fn snapshot(server: &TestServer) -> Vec<String> {
    const QUERIES: &[&str] = &[
        "SELECT id || '|' || user_id || '|' || name || '|' || COALESCE(description, '') || '|' || status || '|' \
         || CAST(COALESCE(archived_at, -1) AS TEXT) || '|' || CAST(updated_at AS TEXT) || '|' \
         || CAST(daily_send_limit AS TEXT) AS r FROM campaigns ORDER BY id",
        "SELECT id || '|' || campaign_id || '|' || email || '|' || status || '|' || CAST(updated_at AS TEXT) AS r \
         FROM prospects ORDER BY id",
        "SELECT id || '|' || name || '|' || CAST(is_favorite AS TEXT) || '|' || CAST(use_count AS TEXT) || '|' \
         || CAST(updated_at AS TEXT) AS r FROM icp_templates ORDER BY id",
        "SELECT id || '|' || status || '|' || subject || '|' || body || '|' || COALESCE(rejection_reason, '') \
         || '|' || CAST(COALESCE(approved_at, -1) AS TEXT) || '|' || CAST(updated_at AS TEXT) AS r \
         FROM generated_emails ORDER BY id",
        "SELECT id || '|' || user_id || '|' || kind || '|' || state AS r FROM jobs ORDER BY id",
        "SELECT user_id || '|' || month || '|' || CAST(spent_microcents AS TEXT) || '|' \
         || CAST(reserved_microcents AS TEXT) AS r FROM ai_budgets ORDER BY user_id",
        "SELECT id || '|' || status AS r FROM campaign_sending_queue ORDER BY id",
        "SELECT user_id || '|' || period || '|' || CAST(prospects_imported AS TEXT) AS r FROM plan_usage ORDER BY user_id",
        "SELECT user_id || '|' || COALESCE(campaign_id, '') || '|' || product_description || '|' \
         || CAST(updated_at AS TEXT) AS r FROM onboarding ORDER BY user_id",
    ];
    let mut rows = Vec::new();
    for sql in QUERIES {
        for row in sqlx::query(*sql).fetch_all(server.pool()).await.unwrap() {
            rows.push(row.try_get::<String, _>("r").unwrap());
        }
    }
    rows
}

/// The audit records of `action`, oldest first.
pub async fn audited(server: &TestServer, action: &str) -> Vec<koldly::db::audit_log::AuditRecord> {
    server.flush_audit().await;
    let mut records: Vec<_> = koldly::db::audit_log::recent(server.pool(), 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.action == action)
        .collect();
    records.reverse();
    records
}

/// A request as `user`, built to be sent later (see [`all_at_once`]).
pub fn build(
    server: &TestServer,
    user: &User,
    method: &str,
    path: &str,
    content_type: &str,
    body: String,
) -> ::http::Request<Full<Bytes>> {
    ::http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", server.addr))
        .header("authorization", format!("Bearer {}", user.token))
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// Sends every request at once, each on its own task (so on several threads),
/// and returns the replies in order.
pub async fn all_at_once(
    requests: impl Iterator<Item = ::http::Request<Full<Bytes>>>,
) -> Vec<Reply> {
    let tasks: Vec<_> = requests.map(|req| tokio::spawn(send(req))).collect();
    let mut replies = Vec::with_capacity(tasks.len());
    for task in tasks {
        replies.push(task.await.expect("request task"));
    }
    replies
}
