//! The `sent_mail` table: the default mail provider. koldly runs without a
//! mail provider; then every message it sends is written here, exactly as it
//! would have gone out (headers included), and `GET /api/sent-mail` shows it
//! to its owner. One row per queue row (a unique `queue_id`), so writing it
//! twice stores it once.

use serde::Serialize;
use sqlx::{AnyPool, Row, any::AnyRow};

use super::new_id;
use crate::pagination::{Cursor, PageRequest};

/// A message as written.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SentMail {
    /// Text UUID.
    pub id: String,
    /// The queue row it came from.
    pub queue_id: String,
    /// Its `Message-ID`.
    pub message_id: String,
    /// `From:`.
    pub from: String,
    /// Recipient.
    pub to: String,
    /// `Reply-To:`.
    pub reply_to: Option<String>,
    /// Subject.
    pub subject: String,
    /// Plain text.
    pub text: String,
    /// HTML.
    pub html: String,
    /// Every header, as `[name, value]` pairs.
    #[schema(value_type = Vec<Vec<String>>)]
    pub headers: serde_json::Value,
    /// Unix seconds.
    pub created_at: i64,
}

impl SentMail {
    /// Its position in lists.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            group: 0,
            created_at: self.created_at,
            id: self.id.clone(),
        }
    }
}

fn from_row(row: &AnyRow) -> Result<SentMail, sqlx::Error> {
    let headers: String = row.try_get("headers")?;
    Ok(SentMail {
        id: row.try_get("id")?,
        queue_id: row.try_get("queue_id")?,
        message_id: row.try_get("message_id")?,
        from: row.try_get("from_header")?,
        to: row.try_get("to_email")?,
        reply_to: row.try_get("reply_to")?,
        subject: row.try_get("subject")?,
        text: row.try_get("text_body")?,
        html: row.try_get("html_body")?,
        headers: serde_json::from_str(&headers).unwrap_or(serde_json::Value::Null),
        created_at: row.try_get("created_at")?,
    })
}

/// A message to write.
#[derive(Debug, Clone)]
pub struct NewSentMail<'a> {
    /// Owner.
    pub user_id: &'a str,
    /// Queue row.
    pub queue_id: &'a str,
    /// `Message-ID`.
    pub message_id: &'a str,
    /// `From:`.
    pub from: &'a str,
    /// Recipient.
    pub to: &'a str,
    /// `Reply-To:`.
    pub reply_to: Option<&'a str>,
    /// Subject.
    pub subject: &'a str,
    /// Plain text.
    pub text: &'a str,
    /// HTML.
    pub html: &'a str,
    /// Headers as a JSON array of pairs.
    pub headers: &'a str,
}

/// Writes `mail` once per queue row; returns whether this call wrote it.
pub async fn insert(pool: &AnyPool, mail: &NewSentMail<'_>, now: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO sent_mail (id, user_id, queue_id, message_id, from_header, to_email, reply_to, \
         subject, text_body, html_body, headers, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (queue_id) DO NOTHING",
    )
    .bind(new_id())
    .bind(mail.user_id)
    .bind(mail.queue_id)
    .bind(mail.message_id)
    .bind(mail.from)
    .bind(mail.to)
    .bind(mail.reply_to)
    .bind(mail.subject)
    .bind(mail.text)
    .bind(mail.html)
    .bind(mail.headers)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Whether the message of queue row `queue_id` was written.
pub async fn exists(pool: &AnyPool, queue_id: &str) -> Result<bool, sqlx::Error> {
    let found: Option<String> = sqlx::query_scalar("SELECT id FROM sent_mail WHERE queue_id = $1")
        .bind(queue_id)
        .fetch_optional(pool)
        .await?;
    Ok(found.is_some())
}

/// `user_id`'s messages, newest first, one page.
pub async fn list(
    pool: &AnyPool,
    user_id: &str,
    page: &PageRequest,
) -> Result<Vec<SentMail>, sqlx::Error> {
    let (created_at, id) = page
        .after
        .as_ref()
        .map(|c| (c.created_at, c.id.clone()))
        .unwrap_or((i64::MAX, String::new()));
    let rows = sqlx::query(
        "SELECT id, queue_id, message_id, from_header, to_email, reply_to, subject, text_body, \
         html_body, headers, created_at FROM sent_mail \
         WHERE user_id = $1 AND (created_at < $2 OR (created_at = $2 AND id < $3) OR $4 = 0) \
         ORDER BY created_at DESC, id DESC LIMIT $5",
    )
    .bind(user_id)
    .bind(created_at)
    .bind(id)
    .bind(i64::from(page.after.is_some()))
    .bind(page.fetch())
    .fetch_all(pool)
    .await?;
    rows.iter().map(from_row).collect()
}
