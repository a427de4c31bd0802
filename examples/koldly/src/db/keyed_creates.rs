//! What keyed creates made (`keyed_creates`): one row per `Idempotency-Key`
//! of a user, written in the create's own transaction, so a retry the
//! idempotency layer's store forgot (a crash between the commit and the
//! store's completion) finds the first run's resource ([`crate::keyed`]).

use sqlx::{Any, AnyConnection, Row, Transaction};

use super::{Backend, Db};

/// Opens the transaction of a keyed create, which reads the key's record
/// before it writes: in SQLite `BEGIN IMMEDIATE`, taking the write lock at
/// once (a deferred transaction that read first could not upgrade without a
/// busy error); in PostgreSQL a plain one (two requests racing on one key
/// meet on its primary key).
pub async fn begin(db: &Db) -> Result<Transaction<'static, Any>, sqlx::Error> {
    match db.backend {
        Backend::Postgres => db.pool.begin().await,
        Backend::Sqlite => db.pool.begin_with("BEGIN IMMEDIATE").await,
    }
}

/// What an earlier request with the key made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedCreate {
    /// The request it answered (`POST` path), to refuse the key on another.
    pub route: String,
    /// What it made (`campaign`, `job`, ...).
    pub resource_kind: String,
    /// The made resource's id.
    pub resource_id: String,
}

/// What the request of `user_id` with `key` made, if one did since `since`
/// (older rows are past the idempotency layer's retention: the key is new).
pub async fn find(
    conn: &mut AnyConnection,
    user_id: &str,
    key: &str,
    since: i64,
) -> Result<Option<KeyedCreate>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT route, resource_kind, resource_id FROM keyed_creates \
         WHERE user_id = $1 AND idempotency_key = $2 AND created_at >= $3",
    )
    .bind(user_id)
    .bind(key)
    .bind(since)
    .fetch_optional(conn)
    .await?;
    row.map(|row| {
        Ok(KeyedCreate {
            route: row.try_get("route")?,
            resource_kind: row.try_get("resource_kind")?,
            resource_id: row.try_get("resource_id")?,
        })
    })
    .transpose()
}

/// Records that the request of `user_id` with `key` made `made`, replacing a
/// row past retention (older than `since`), and purges the user's other
/// rows past retention, which bounds the table by each user's keyed creates
/// of one retention period. A concurrent insert of the same key fails with a
/// unique violation, rolling back the caller's transaction.
pub async fn record(
    conn: &mut AnyConnection,
    user_id: &str,
    key: &str,
    made: &KeyedCreate,
    since: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM keyed_creates WHERE user_id = $1 AND created_at < $2")
        .bind(user_id)
        .bind(since)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO keyed_creates (user_id, idempotency_key, route, resource_kind, resource_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(user_id)
    .bind(key)
    .bind(&made.route)
    .bind(&made.resource_kind)
    .bind(&made.resource_id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}
