//! Webhook tokens already accepted, per provider: the replay protection of
//! signed webhooks ([`crate::webhooks::signature`]).
//!
//! A token is claimed in the transaction that does its delivery's work, so a
//! delivery whose work failed leaves its token unclaimed (the provider's retry
//! is accepted), and two deliveries of one token cannot both commit: the
//! primary key on `(provider, token)` decides.

use sqlx::{AnyConnection, AnyPool};

use crate::webhooks::signature::TOLERANCE_SECS;

/// Claims `token` of `provider` at `now`: true when it was new, false when it
/// was accepted before (a replay).
pub async fn claim(
    conn: &mut AnyConnection,
    provider: &str,
    token: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO webhook_tokens (provider, token, seen_at) VALUES ($1, $2, $3) \
         ON CONFLICT (provider, token) DO NOTHING",
    )
    .bind(provider)
    .bind(token)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Forgets tokens that can no longer be replayed: a token seen at `s` came
/// with a timestamp of at most `s + tolerance`, which goes stale at
/// `s + 2 × tolerance`. Returns how many were removed.
pub async fn purge(pool: &AnyPool, now: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM webhook_tokens WHERE seen_at < $1")
        .bind(now - 2 * TOLERANCE_SECS)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

/// Whether `token` of `provider` was accepted (and not yet purged).
pub async fn is_claimed(pool: &AnyPool, provider: &str, token: &str) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM webhook_tokens WHERE provider = $1 AND token = $2",
    )
    .bind(provider)
    .bind(token)
    .fetch_one(pool)
    .await?;
    Ok(n > 0)
}
