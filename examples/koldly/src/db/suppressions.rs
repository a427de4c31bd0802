//! An account's suppression list: addresses it never sends to again (an
//! unsubscribe, a hard bounce, a complaint). Adding an address cancels the
//! account's queued messages to it, with the reason, in the same transaction,
//! so nothing already queued slips out after the address was suppressed.

use sqlx::{AnyConnection, AnyPool};

/// Suppresses `email` (compared case-insensitively) for `user_id` and cancels
/// that account's queued messages to it with `reason`. Returns whether the
/// address was new on the list (a second suppression keeps the first reason)
/// and how many queued messages were cancelled.
pub async fn add(
    pool: &AnyPool,
    user_id: &str,
    email: &str,
    reason: &str,
    now: i64,
) -> Result<Suppressed, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let suppressed = add_in(&mut tx, user_id, email, reason, now).await?;
    tx.commit().await?;
    Ok(suppressed)
}

/// [`add`] on `conn`, inside the caller's transaction (a webhook claims its
/// token and suppresses the address in one transaction).
pub async fn add_in(
    conn: &mut AnyConnection,
    user_id: &str,
    email: &str,
    reason: &str,
    now: i64,
) -> Result<Suppressed, sqlx::Error> {
    let email = email.trim().to_lowercase();
    let inserted = sqlx::query(
        "INSERT INTO suppressions (user_id, email, reason, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (user_id, email) DO NOTHING",
    )
    .bind(user_id)
    .bind(&email)
    .bind(reason)
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    // A queued answer to a reply fails with the same reason as its row.
    super::answers::fail_queued_to_in(
        &mut *conn,
        user_id,
        &email,
        &format!("suppressed: {reason}"),
        now,
    )
    .await?;
    let cancelled = sqlx::query(
        "UPDATE campaign_sending_queue SET status = 'cancelled', last_error = $1, updated_at = $2 \
         WHERE status = 'queued' AND prospect_id IN \
         (SELECT p.id FROM prospects p WHERE p.user_id = $3 AND lower(p.email) = $4)",
    )
    .bind(format!("suppressed: {reason}"))
    .bind(now)
    .bind(user_id)
    .bind(&email)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(Suppressed {
        new: inserted == 1,
        cancelled,
    })
}

/// What [`add`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suppressed {
    /// The address was not on the list before.
    pub new: bool,
    /// Queued messages to it that were cancelled.
    pub cancelled: u64,
}

/// Whether `email` is on `user_id`'s suppression list.
pub async fn is_suppressed(
    pool: &AnyPool,
    user_id: &str,
    email: &str,
) -> Result<bool, sqlx::Error> {
    Ok(reason(pool, user_id, email).await?.is_some())
}

/// The suppression reason of `email` for `user_id`, if it is on the list.
pub async fn reason(
    pool: &AnyPool,
    user_id: &str,
    email: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT reason FROM suppressions WHERE user_id = $1 AND email = $2")
        .bind(user_id)
        .bind(email.trim().to_lowercase())
        .fetch_optional(pool)
        .await
}
