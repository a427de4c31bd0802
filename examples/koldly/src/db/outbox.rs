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
    /// Delivery attempts so far.
    pub attempts: i64,
    /// Whether the outbox job may send it again (see [`mark`]).
    pub resend: bool,
}

macro_rules! columns_sql {
    () => {
        "id, to_addr, subject, body_text, kind, status, created_at, attempts, resend"
    };
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<OutboxMessage, sqlx::Error> {
    Ok(OutboxMessage {
        id: r.try_get("id")?,
        to_addr: r.try_get("to_addr")?,
        subject: r.try_get("subject")?,
        body_text: r.try_get("body_text")?,
        kind: r.try_get("kind")?,
        status: r.try_get("status")?,
        created_at: r.try_get("created_at")?,
        attempts: r.try_get("attempts")?,
        resend: r.try_get::<i64, _>("resend")? != 0,
    })
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

/// Stores a message with `status` on `conn` (inside a caller's transaction,
/// so the message exists exactly when the change it reports does); returns
/// its id.
pub async fn insert_in(
    conn: &mut sqlx::AnyConnection,
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
    .execute(conn)
    .await?;
    Ok(id)
}

/// Records a delivery attempt's outcome; `resend` says whether the outbox job
/// may try a `failed` message again (only when the failure proved the provider
/// did not take it).
pub async fn mark(
    pool: &AnyPool,
    id: &str,
    status: &str,
    error: Option<&str>,
    resend: bool,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE mail_outbox SET status = $1, last_error = $2, attempts = attempts + 1, \
         resend = $3, sent_at = CASE WHEN $1 = 'sent' THEN $4 ELSE sent_at END WHERE id = $5",
    )
    .bind(status)
    .bind(error)
    .bind(i64::from(resend))
    .bind(now)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Failed messages the outbox job may send again (fewer than `max_attempts`
/// attempts so far), oldest first.
pub async fn resendable(
    pool: &AnyPool,
    max_attempts: i64,
    limit: i64,
) -> Result<Vec<OutboxMessage>, sqlx::Error> {
    let sql = concat!(
        "SELECT ",
        columns_sql!(),
        " FROM mail_outbox WHERE status = 'failed' AND resend = 1 \
         AND attempts < $1 ORDER BY created_at, id LIMIT $2"
    );
    let rows = sqlx::query(sql)
        .bind(max_attempts)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Takes a resendable message for one more attempt: `pending` again, if it is
/// still failed, resendable and at `attempts` attempts. Of several instances
/// running the job, exactly one gets `true` for each attempt state.
pub async fn claim(pool: &AnyPool, id: &str, attempts: i64, now: i64) -> Result<bool, sqlx::Error> {
    let res = sqlx::query(
        "UPDATE mail_outbox SET status = 'pending', resend = 0, pending_since = $3 \
         WHERE id = $1 AND status = 'failed' AND resend = 1 AND attempts = $2",
    )
    .bind(id)
    .bind(attempts)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// `pending` messages that became pending at or before `before` (stored, or
/// claimed, and never marked since: their sender was cut off) with fewer than
/// `max_attempts` attempts, oldest first.
pub async fn stale_pending(
    pool: &AnyPool,
    before: i64,
    max_attempts: i64,
    limit: i64,
) -> Result<Vec<OutboxMessage>, sqlx::Error> {
    let sql = concat!(
        "SELECT ",
        columns_sql!(),
        " FROM mail_outbox WHERE status = 'pending' \
         AND COALESCE(pending_since, created_at) <= $1 AND attempts < $2 \
         ORDER BY created_at, id LIMIT $3"
    );
    let rows = sqlx::query(sql)
        .bind(before)
        .bind(max_attempts)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Takes a stale `pending` message (see [`stale_pending`]) for one more
/// attempt: counts the cut-off attempt, records why, and makes it pending
/// from `now`, if it is still pending since at or before `before` at
/// `attempts` attempts. Of several instances, exactly one gets `true`.
pub async fn claim_stale(
    pool: &AnyPool,
    id: &str,
    attempts: i64,
    before: i64,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let res = sqlx::query(
        "UPDATE mail_outbox SET attempts = attempts + 1, pending_since = $4, \
         last_error = 'delivery cut off before an outcome; sent again' \
         WHERE id = $1 AND status = 'pending' AND attempts = $2 \
         AND COALESCE(pending_since, created_at) <= $3",
    )
    .bind(id)
    .bind(attempts)
    .bind(before)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// Messages to `to`, newest first.
pub async fn for_recipient(pool: &AnyPool, to: &str) -> Result<Vec<OutboxMessage>, sqlx::Error> {
    let sql = concat!(
        "SELECT ",
        columns_sql!(),
        " FROM mail_outbox WHERE lower(to_addr) = lower($1) ORDER BY id DESC"
    );
    let rows = sqlx::query(sql).bind(to).fetch_all(pool).await?;
    rows.iter().map(from_row).collect()
}
