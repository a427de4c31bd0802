//! The `audit_log` table: the durable trail of authentication events.

use serde::Serialize;
use sqlx::{AnyPool, Row};

use super::new_id;

/// One audit record.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    /// Unix seconds.
    pub occurred_at: i64,
    /// `auth.signup`, `auth.login.failure`...
    pub event: String,
    /// `success` or `failure`.
    pub outcome: String,
    /// The account, when known.
    pub user_id: Option<String>,
    /// The address involved, when known.
    pub email: Option<String>,
    /// The client's IP.
    pub client_ip: Option<String>,
    /// The request id.
    pub request_id: Option<String>,
    /// A short reason, never a secret.
    pub detail: Option<String>,
}

/// Appends a record.
pub async fn insert(pool: &AnyPool, record: &AuditRecord) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_log (id, occurred_at, event, outcome, user_id, email, client_ip, request_id, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(new_id())
    .bind(record.occurred_at)
    .bind(&record.event)
    .bind(&record.outcome)
    .bind(&record.user_id)
    .bind(&record.email)
    .bind(&record.client_ip)
    .bind(&record.request_id)
    .bind(&record.detail)
    .execute(pool)
    .await?;
    Ok(())
}

/// The most recent records, newest first (for operators and tests).
pub async fn recent(pool: &AnyPool, limit: i64) -> Result<Vec<AuditRecord>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT occurred_at, event, outcome, user_id, email, client_ip, request_id, detail \
         FROM audit_log ORDER BY id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AuditRecord {
                occurred_at: r.try_get("occurred_at")?,
                event: r.try_get("event")?,
                outcome: r.try_get("outcome")?,
                user_id: r.try_get("user_id")?,
                email: r.try_get("email")?,
                client_ip: r.try_get("client_ip")?,
                request_id: r.try_get("request_id")?,
                detail: r.try_get("detail")?,
            })
        })
        .collect()
}
