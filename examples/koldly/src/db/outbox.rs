//! The `mail_outbox` table: every message the server meant to send.

use sqlx::{AnyPool, Row};

use super::new_id;

/// One message.
#[derive(Debug, Clone)]
pub struct OutboxMessage {
    /// Text UUID.
    pub id: String,
    /// Recipient.
    pub to_addr: String,
    /// Subject.
    pub subject: String,
    /// Plain-text body.
    pub body_text: String,
    /// `password_reset`, `email_verification`...
    pub kind: String,
    /// `pending`, `sent`, `failed`, `logged`.
    pub status: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// Stores a message with `status`; returns its id.
pub async fn insert(
    pool: &AnyPool,
    to: &str,
    subject: &str,
    body: &str,
    kind: &str,
    status: &str,
    now: i64,
) -> Result<String, sqlx::Error> {
    let id = new_id();
    sqlx::query(
        "INSERT INTO mail_outbox (id, to_addr, subject, body_text, kind, status, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(to)
    .bind(subject)
    .bind(body)
    .bind(kind)
    .bind(status)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(id)
}

/// Records a delivery attempt's outcome.
pub async fn mark(
    pool: &AnyPool,
    id: &str,
    status: &str,
    error: Option<&str>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE mail_outbox SET status = $1, last_error = $2, attempts = attempts + 1, \
         sent_at = CASE WHEN $1 = 'sent' THEN $3 ELSE sent_at END WHERE id = $4",
    )
    .bind(status)
    .bind(error)
    .bind(now)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Messages to `to`, newest first.
pub async fn for_recipient(pool: &AnyPool, to: &str) -> Result<Vec<OutboxMessage>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, to_addr, subject, body_text, kind, status, created_at FROM mail_outbox \
         WHERE lower(to_addr) = lower($1) ORDER BY id DESC",
    )
    .bind(to)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(OutboxMessage {
                id: r.try_get("id")?,
                to_addr: r.try_get("to_addr")?,
                subject: r.try_get("subject")?,
                body_text: r.try_get("body_text")?,
                kind: r.try_get("kind")?,
                status: r.try_get("status")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect()
}
