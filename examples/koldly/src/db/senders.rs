//! The `senders` aggregate: addresses a user sends from, each proved by a
//! verification link. Links follow [`super::tokens`]' pattern: only the
//! SHA-256 is stored, issuing one invalidates the sender's older ones, and
//! using one is a single atomic `UPDATE ... WHERE used_at IS NULL AND
//! expires_at > now`, so a link works once.

use serde::Serialize;
use sqlx::{AnyConnection, AnyPool, Row, any::AnyRow};

use super::new_id;
use crate::pagination::{Cursor, PageRequest};

/// A sender as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Sender {
    /// Text UUID.
    pub id: String,
    /// The address mail goes out from (lower-cased).
    pub email: String,
    /// The display name of `From:`.
    pub name: String,
    /// Where replies go, when not to `email`.
    pub reply_to: Option<String>,
    /// Whether the link mailed to `email` was opened.
    pub verified: bool,
    /// When it was verified (unix seconds).
    pub verified_at: Option<i64>,
    /// Unix seconds.
    pub created_at: i64,
}

impl Sender {
    /// Its position in lists.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            group: 0,
            created_at: self.created_at,
            id: self.id.clone(),
        }
    }
}

fn from_row(row: &AnyRow) -> Result<Sender, sqlx::Error> {
    let verified_at: Option<i64> = row.try_get("verified_at")?;
    Ok(Sender {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        reply_to: row.try_get("reply_to")?,
        verified: verified_at.is_some(),
        verified_at,
        created_at: row.try_get("created_at")?,
    })
}

/// Adds sender `email` for `user_id`, unverified; when the user already has
/// it, updates its name and reply-to and keeps its verification. Returns it.
pub async fn upsert(
    conn: &mut AnyConnection,
    user_id: &str,
    email: &str,
    name: &str,
    reply_to: Option<&str>,
    now: i64,
) -> Result<Sender, sqlx::Error> {
    let row = sqlx::query(
        "INSERT INTO senders (id, user_id, email, name, reply_to, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6) \
         ON CONFLICT (user_id, email) DO UPDATE SET name = excluded.name, reply_to = excluded.reply_to, \
         updated_at = excluded.updated_at \
         RETURNING id, email, name, reply_to, verified_at, created_at",
    )
    .bind(new_id())
    .bind(user_id)
    .bind(email)
    .bind(name)
    .bind(reply_to)
    .bind(now)
    .fetch_one(conn)
    .await?;
    from_row(&row)
}

/// `user_id`'s senders, newest first, one page.
pub async fn list(
    pool: &AnyPool,
    user_id: &str,
    page: &PageRequest,
) -> Result<Vec<Sender>, sqlx::Error> {
    let (created_at, id) = page
        .after
        .as_ref()
        .map(|c| (c.created_at, c.id.clone()))
        .unwrap_or((i64::MAX, String::new()));
    let rows = sqlx::query(
        "SELECT id, email, name, reply_to, verified_at, created_at FROM senders \
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

/// Sender `id` of `user_id`.
pub async fn find(pool: &AnyPool, user_id: &str, id: &str) -> Result<Option<Sender>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, email, name, reply_to, verified_at, created_at FROM senders \
         WHERE id = $1 AND user_id = $2",
    )
    .bind(id)
    .bind(user_id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Deletes sender `id` of `user_id` and pauses the campaigns sending from it,
/// in one transaction. False when there is no such sender.
pub async fn delete(
    pool: &AnyPool,
    user_id: &str,
    id: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE campaign_sending_context SET status = 'paused', updated_at = $1 \
         WHERE sender_id IN (SELECT id FROM senders WHERE id = $2 AND user_id = $3)",
    )
    .bind(now)
    .bind(id)
    .bind(user_id)
    .execute(&mut *tx)
    .await?;
    let done = sqlx::query("DELETE FROM senders WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 1 {
        tx.commit().await?;
        Ok(true)
    } else {
        tx.rollback().await?;
        Ok(false)
    }
}

/// Stores a verification link's hash for `sender_id`, first invalidating the
/// sender's unused ones, on `conn` (the caller's transaction: both or none).
pub async fn issue_token(
    conn: &mut AnyConnection,
    sender_id: &str,
    token_hash: &str,
    expires_at: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE sender_verification_tokens SET used_at = $1 WHERE sender_id = $2 AND used_at IS NULL",
    )
    .bind(now)
    .bind(sender_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO sender_verification_tokens (id, sender_id, token_hash, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(new_id())
    .bind(sender_id)
    .bind(token_hash)
    .bind(expires_at)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Uses a verification link and marks its sender verified, atomically:
/// returns the sender when this call used it; `None` when the link is
/// unknown, used or expired.
pub async fn verify(
    pool: &AnyPool,
    token_hash: &str,
    now: i64,
) -> Result<Option<(String, Sender)>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let sender_id: Option<String> = sqlx::query_scalar(
        "UPDATE sender_verification_tokens SET used_at = $1 \
         WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1 RETURNING sender_id",
    )
    .bind(now)
    .bind(token_hash)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(sender_id) = sender_id else {
        tx.rollback().await?;
        return Ok(None);
    };
    let row = sqlx::query(
        "UPDATE senders SET verified_at = COALESCE(verified_at, $1), updated_at = $1 WHERE id = $2 \
         RETURNING user_id, id, email, name, reply_to, verified_at, created_at",
    )
    .bind(now)
    .bind(&sender_id)
    .fetch_one(&mut *tx)
    .await?;
    let user_id: String = row.try_get("user_id")?;
    let sender = from_row(&row)?;
    tx.commit().await?;
    Ok(Some((user_id, sender)))
}
