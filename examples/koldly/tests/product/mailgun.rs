//! Speaking to koldly's webhooks as Mailgun does (signed form posts and JSON
//! events), and seeding the messages they refer to: queue rows with their
//! Message-IDs, written directly as the sending engine would.

use std::time::Duration;

use koldly::{
    Config,
    clock::Clock,
    webhooks::signature::{SigningKey, sign},
};
use serde_json::{Value, json};

use crate::client::{User, email_row, import, request};
use crate::support::{Reply, TestServer};

/// The signing key the test servers are configured with.
pub const KEY: &str = "whsec-test-signing-key-3f9a1c";

/// Configures `config` with [`KEY`].
pub fn with_key(config: &mut Config) {
    config.mail_webhook_signing_key = Some(SigningKey::new(KEY));
}

/// A fresh delivery token.
pub fn token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// `(timestamp, token, signature)` of a delivery at `at`, signed with `key`.
pub fn signature_with(key: &str, at: i64, token: &str) -> (String, String) {
    let ts = at.to_string();
    let sig = sign(&SigningKey::new(key), &ts, token);
    (ts, sig)
}

/// Form-encodes `fields`.
pub fn form(fields: &[(&str, &str)]) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        out.append_pair(k, v);
    }
    out.finish()
}

/// Posts `body` to the inbound webhook as a Mailgun route would.
pub async fn post_form(server: &TestServer, body: &str) -> Reply {
    request(
        server,
        None,
        "POST",
        "/api/webhooks/inbound",
        Some("application/x-www-form-urlencoded"),
        body,
        None,
    )
    .await
}

/// The fields of a reply from `from` answering `in_reply_to` (a Message-ID
/// with brackets), with provider id `message_id`.
pub fn reply_fields<'a>(
    from: &'a str,
    message_id: &'a str,
    in_reply_to: &'a str,
    text: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("sender", from),
        ("from", from),
        ("recipient", "bob@sender.example"),
        ("subject", "Re: Quick question"),
        ("body-plain", text),
        ("stripped-text", text),
        ("Message-Id", message_id),
        ("In-Reply-To", in_reply_to),
        ("References", in_reply_to),
    ]
}

/// Posts `fields`, signed now with [`KEY`] and a fresh token.
pub async fn post_reply(server: &TestServer, fields: &[(&str, &str)]) -> Reply {
    let token = token();
    let (ts, sig) = signature_with(KEY, server.clock.now(), &token);
    let mut all = fields.to_vec();
    all.extend([
        ("timestamp", ts.as_str()),
        ("token", token.as_str()),
        ("signature", sig.as_str()),
    ]);
    post_form(server, &form(&all)).await
}

/// Posts an event webhook with `event_data`, signed as given.
pub async fn post_event_signed(
    server: &TestServer,
    event_data: Value,
    ts: &str,
    token: &str,
    sig: &str,
) -> Reply {
    let body = json!({
        "signature": {"timestamp": ts, "token": token, "signature": sig},
        "event-data": event_data,
    });
    request(
        server,
        None,
        "POST",
        "/api/webhooks/mail-events",
        Some("application/json"),
        &body.to_string(),
        None,
    )
    .await
}

/// Posts an event webhook with `event_data`, signed now with [`KEY`].
pub async fn post_event(server: &TestServer, event_data: Value) -> Reply {
    let token = token();
    let (ts, sig) = signature_with(KEY, server.clock.now(), &token);
    post_event_signed(server, event_data, &ts, &token, &sig).await
}

/// Mailgun's event data for `event` (`failed`, `complained`...) of the message
/// `message_id` (bare, as Mailgun sends it) to `recipient`.
pub fn event(event: &str, severity: Option<&str>, recipient: &str, message_id: &str) -> Value {
    let mut data = json!({
        "event": event,
        "recipient": recipient,
        "timestamp": 1_800_000_000.5,
        "message": {"headers": {"message-id": message_id, "subject": "Quick question"}},
        "delivery-status": {"code": 550, "message": "5.1.1 The email account does not exist.\nPlease check."},
    });
    if let Some(severity) = severity {
        data["severity"] = json!(severity);
    }
    data
}

/// Imports `email` into `campaign`; returns the prospect's id.
pub async fn prospect(server: &TestServer, user: &User, campaign: &str, email: &str) -> String {
    let res = import(server, user, campaign, &[email.to_owned()]).await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    sqlx::query_scalar("SELECT id FROM prospects WHERE campaign_id = $1 AND lower(email) = $2")
        .bind(campaign)
        .bind(email.to_lowercase())
        .fetch_one(server.pool())
        .await
        .unwrap()
}

/// A queue row of `prospect` with `status` and `message_id`; returns its id.
pub async fn queue_row(
    server: &TestServer,
    campaign: &str,
    prospect: &str,
    status: &str,
    message_id: Option<&str>,
) -> String {
    let email = email_row(server, campaign, prospect, "approved", 1).await;
    let id = uuid::Uuid::now_v7().to_string();
    sqlx::query(
        "INSERT INTO campaign_sending_queue (id, campaign_id, prospect_id, generated_email_id, \
         status, scheduled_for, message_id, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 0, $6, 0, 0)",
    )
    .bind(&id)
    .bind(campaign)
    .bind(prospect)
    .bind(&email)
    .bind(status)
    .bind(message_id)
    .execute(server.pool())
    .await
    .unwrap();
    id
}

/// The status and reason of queue row `id`.
pub async fn queue_state(server: &TestServer, id: &str) -> (String, Option<String>) {
    sqlx::query_as("SELECT status, last_error FROM campaign_sending_queue WHERE id = $1")
        .bind(id)
        .fetch_one(server.pool())
        .await
        .unwrap()
}

/// The status of prospect `id`.
pub async fn prospect_status(server: &TestServer, id: &str) -> String {
    sqlx::query_scalar("SELECT status FROM prospects WHERE id = $1")
        .bind(id)
        .fetch_one(server.pool())
        .await
        .unwrap()
}

/// Prospect `id`'s halt reason when it is halted (`halted_at` set), else None.
pub async fn halt_reason(server: &TestServer, id: &str) -> Option<String> {
    sqlx::query_scalar("SELECT halt_reason FROM prospects WHERE id = $1 AND halted_at IS NOT NULL")
        .bind(id)
        .fetch_optional(server.pool())
        .await
        .unwrap()
}

/// `user_id`'s suppression list as (email, reason).
pub async fn suppressed(server: &TestServer, user_id: &str) -> Vec<(String, String)> {
    sqlx::query_as("SELECT email, reason FROM suppressions WHERE user_id = $1 ORDER BY email")
        .bind(user_id)
        .fetch_all(server.pool())
        .await
        .unwrap()
}

/// How many rows `table` holds.
pub async fn rows(server: &TestServer, table: &str) -> i64 {
    let sql = match table {
        "prospect_replies" => "SELECT COUNT(*) FROM prospect_replies",
        "prospect_reply_inbox" => "SELECT COUNT(*) FROM prospect_reply_inbox",
        "webhook_tokens" => "SELECT COUNT(*) FROM webhook_tokens",
        "suppressions" => "SELECT COUNT(*) FROM suppressions",
        other => panic!("no count for {other}"),
    };
    sqlx::query_scalar(sql)
        .fetch_one(server.pool())
        .await
        .unwrap()
}

/// Waits until every job of `user_id` has ended (the server's runner runs them).
pub async fn jobs_done(server: &TestServer, user_id: &str) {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let open: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM jobs WHERE user_id = $1 AND state NOT IN ('succeeded', 'failed')",
            )
            .bind(user_id)
            .fetch_one(server.pool())
            .await
            .unwrap();
            if open == 0 {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the jobs end");
}
