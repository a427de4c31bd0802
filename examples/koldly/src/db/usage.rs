//! The `plan_usage` aggregate: metered usage per user and month, and the lock
//! every plan-limited change takes (see [`crate::plans`]).

use sqlx::{Any, AnyConnection, Row, Transaction};

use super::{Backend, Db};

/// A transaction holding the user's limit lock, and the plan it read under it.
pub struct Locked {
    /// Commit it once the limited change is written; dropping it rolls back.
    pub tx: Transaction<'static, Any>,
    /// `users.subscription_plan`, read under the lock.
    pub plan_name: String,
}

/// Opens a transaction that serialises every plan-limited change of
/// `user_id`: in PostgreSQL the user's row is locked (`SELECT ... FOR
/// UPDATE`); in SQLite the transaction is `BEGIN IMMEDIATE`, which takes the
/// database's write lock at once (SQLite has one writer at a time; a
/// deferred transaction that read first could not upgrade without a busy
/// error). `None` when the user does not exist.
pub async fn begin_locked(db: &Db, user_id: &str) -> Result<Option<Locked>, sqlx::Error> {
    let (mut tx, sql) = match db.backend {
        Backend::Postgres => (
            db.pool.begin().await?,
            "SELECT subscription_plan FROM users WHERE id = $1 FOR UPDATE",
        ),
        Backend::Sqlite => (
            db.pool.begin_with("BEGIN IMMEDIATE").await?,
            "SELECT subscription_plan FROM users WHERE id = $1",
        ),
    };
    let row = sqlx::query(sql)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
    match row {
        Some(row) => Ok(Some(Locked {
            plan_name: row.try_get("subscription_plan")?,
            tx,
        })),
        None => Ok(None),
    }
}

/// Prospects `user_id` imported in `period` (`YYYY-MM`).
pub async fn prospects_imported(
    conn: &mut AnyConnection,
    user_id: &str,
    period: &str,
) -> Result<i64, sqlx::Error> {
    let row =
        sqlx::query("SELECT prospects_imported FROM plan_usage WHERE user_id = $1 AND period = $2")
            .bind(user_id)
            .bind(period)
            .fetch_optional(conn)
            .await?;
    row.map(|r| r.try_get("prospects_imported"))
        .transpose()
        .map(|n| n.unwrap_or(0))
}

/// Counts `count` more imported prospects for `user_id` in `period`.
pub async fn add_prospects(
    conn: &mut AnyConnection,
    user_id: &str,
    period: &str,
    count: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO plan_usage (user_id, period, prospects_imported) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id, period) \
         DO UPDATE SET prospects_imported = plan_usage.prospects_imported + excluded.prospects_imported",
    )
    .bind(user_id)
    .bind(period)
    .bind(count)
    .execute(conn)
    .await?;
    Ok(())
}
