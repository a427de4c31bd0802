//! The `audit_log` table: the durable trail of audit events. Its columns are
//! the fields of steadfast's audit event, so one row is one event.

use serde::Serialize;
use sqlx::{AnyPool, Row, any::AnyRow};

use super::new_id;

/// One audit record.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditRecord {
    /// Unix seconds.
    pub occurred_at: i64,
    /// Dotted OWASP-vocabulary name: `authn.signup`, `authn.login.fail`...
    pub action: String,
    /// `success`, `failure`, `denied` or `error`.
    pub outcome: String,
    /// The user id, when known.
    pub actor: Option<String>,
    /// The client's IP.
    pub client_ip: Option<String>,
    /// The client's `User-Agent`.
    pub user_agent: Option<String>,
    /// The request id.
    pub request_id: Option<String>,
    /// The request method.
    pub method: Option<String>,
    /// The route pattern.
    pub route: Option<String>,
    /// The response status.
    pub status: Option<i64>,
    /// Time to the response head.
    pub latency_ms: Option<f64>,
    /// The kind of resource acted upon (`user`).
    pub target_type: Option<String>,
    /// Its id (or the address a login named).
    pub target_id: Option<String>,
    /// Why it ended so; never a secret.
    pub reason: Option<String>,
    /// Anything else, a JSON object.
    pub extra: String,
}

/// Appends records in one transaction.
pub async fn insert_all(pool: &AnyPool, records: &[AuditRecord]) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    for record in records {
        sqlx::query(
            "INSERT INTO audit_log (id, occurred_at, action, outcome, actor, client_ip, user_agent, request_id, \
             method, route, status, latency_ms, target_type, target_id, reason, extra) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        )
        .bind(new_id())
        .bind(record.occurred_at)
        .bind(&record.action)
        .bind(&record.outcome)
        .bind(&record.actor)
        .bind(&record.client_ip)
        .bind(&record.user_agent)
        .bind(&record.request_id)
        .bind(&record.method)
        .bind(&record.route)
        .bind(record.status)
        .bind(record.latency_ms)
        .bind(&record.target_type)
        .bind(&record.target_id)
        .bind(&record.reason)
        .bind(&record.extra)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

fn from_row(r: &AnyRow) -> Result<AuditRecord, sqlx::Error> {
    Ok(AuditRecord {
        occurred_at: r.try_get("occurred_at")?,
        action: r.try_get("action")?,
        outcome: r.try_get("outcome")?,
        actor: r.try_get("actor")?,
        client_ip: r.try_get("client_ip")?,
        user_agent: r.try_get("user_agent")?,
        request_id: r.try_get("request_id")?,
        method: r.try_get("method")?,
        route: r.try_get("route")?,
        status: r.try_get("status")?,
        latency_ms: r.try_get("latency_ms")?,
        target_type: r.try_get("target_type")?,
        target_id: r.try_get("target_id")?,
        reason: r.try_get("reason")?,
        extra: r.try_get("extra")?,
    })
}

/// The most recent records, newest first (for operators and tests).
pub async fn recent(pool: &AnyPool, limit: i64) -> Result<Vec<AuditRecord>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT occurred_at, action, outcome, actor, client_ip, user_agent, request_id, method, route, \
         status, latency_ms, target_type, target_id, reason, extra FROM audit_log ORDER BY id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(from_row).collect()
}
