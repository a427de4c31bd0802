//! Single-use tokens: `password_reset_tokens` and `email_verification_tokens`.
//! Only the SHA-256 of a token is stored; consuming one is one atomic
//! `UPDATE ... WHERE used_at IS NULL AND expires_at > now`, so of two
//! concurrent uses exactly one succeeds.

use sqlx::{AnyPool, Row};

use super::new_id;

/// Which token table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// `password_reset_tokens`.
    PasswordReset,
    /// `email_verification_tokens`.
    EmailVerification,
}

/// The literal query of `kind`'s table: `per_table!(kind, "before ", " after")`
/// is `"before password_reset_tokens after"` or the same with
/// `email_verification_tokens` (sqlx takes only literal SQL).
macro_rules! per_table {
    ($kind:expr, $before:literal, $after:literal) => {
        match $kind {
            TokenKind::PasswordReset => concat!($before, "password_reset_tokens", $after),
            TokenKind::EmailVerification => concat!($before, "email_verification_tokens", $after),
        }
    };
}

/// Stores a token hash for `user_id`, first invalidating the user's unused ones
/// of the same kind, in one transaction.
pub async fn issue(
    pool: &AnyPool,
    kind: TokenKind,
    user_id: &str,
    token_hash: &str,
    expires_at: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(per_table!(
        kind,
        "UPDATE ",
        " SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL"
    ))
    .bind(now)
    .bind(user_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query(per_table!(
        kind,
        "INSERT INTO ",
        " (id, user_id, token_hash, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)"
    ))
    .bind(new_id())
    .bind(user_id)
    .bind(token_hash)
    .bind(expires_at)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// The user of a token that is unused and unexpired, without using it.
pub async fn peek(
    pool: &AnyPool,
    kind: TokenKind,
    token_hash: &str,
    now: i64,
) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query(per_table!(
        kind,
        "SELECT user_id FROM ",
        " WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2"
    ))
    .bind(token_hash)
    .bind(now)
    .fetch_optional(pool)
    .await?;
    row.map(|r| r.try_get("user_id")).transpose()
}

/// Uses a token atomically: returns its user when this call is the one that
/// used it, `None` when it is unknown, used or expired.
pub async fn consume<'c, E>(
    conn: E,
    kind: TokenKind,
    token_hash: &str,
    now: i64,
) -> Result<Option<String>, sqlx::Error>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let row = sqlx::query(per_table!(
        kind,
        "UPDATE ",
        " SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1 \
         RETURNING user_id"
    ))
    .bind(now)
    .bind(token_hash)
    .fetch_optional(conn)
    .await?;
    row.map(|r| r.try_get("user_id")).transpose()
}

/// Invalidates every unused token of `user_id` of this kind.
pub async fn revoke_all<'c, E>(
    conn: E,
    kind: TokenKind,
    user_id: &str,
    now: i64,
) -> Result<u64, sqlx::Error>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let res = sqlx::query(per_table!(
        kind,
        "UPDATE ",
        " SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL"
    ))
    .bind(now)
    .bind(user_id)
    .execute(conn)
    .await?;
    Ok(res.rows_affected())
}
