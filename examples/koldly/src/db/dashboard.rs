//! The dashboards' reads: each route is one or two statements whose every
//! count walks an index scoped by the user (or by the user's campaigns).

use serde::Serialize;
use sqlx::{AnyPool, Row};

/// The figures of `GET /api/dashboard/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Campaigns not archived.
    pub campaigns_total: i64,
    /// Of those, `active`.
    pub campaigns_active: i64,
    /// Prospects.
    pub prospects: i64,
    /// Drafts awaiting a decision.
    pub emails_awaiting_approval: i64,
    /// Approved, not sent yet.
    pub emails_approved: i64,
    /// Sent (the sending queue's `sent` rows).
    pub emails_sent: i64,
    /// Replies received.
    pub replies: i64,
}

/// The stats query.
pub const STATS_SQL: &str = "SELECT \
     (SELECT COUNT(*) FROM campaigns WHERE user_id = $1 AND archived_at IS NULL) AS campaigns_total, \
     (SELECT COUNT(*) FROM campaigns WHERE user_id = $1 AND status = 'active' AND archived_at IS NULL) AS campaigns_active, \
     (SELECT COUNT(*) FROM prospects WHERE user_id = $1) AS prospects, \
     (SELECT COUNT(*) FROM generated_emails e JOIN campaigns c ON c.id = e.campaign_id \
        WHERE c.user_id = $1 AND e.status = 'draft') AS awaiting, \
     (SELECT COUNT(*) FROM generated_emails e JOIN campaigns c ON c.id = e.campaign_id \
        WHERE c.user_id = $1 AND e.status = 'approved') AS approved, \
     (SELECT COUNT(*) FROM campaign_sending_queue q JOIN campaigns c ON c.id = q.campaign_id \
        WHERE c.user_id = $1 AND q.status = 'sent') AS sent, \
     (SELECT COUNT(*) FROM prospect_reply_inbox WHERE user_id = $1) AS replies";

/// `user_id`'s figures.
pub async fn stats(pool: &AnyPool, user_id: &str) -> Result<Stats, sqlx::Error> {
    let row = sqlx::query(STATS_SQL).bind(user_id).fetch_one(pool).await?;
    Ok(Stats {
        campaigns_total: row.try_get("campaigns_total")?,
        campaigns_active: row.try_get("campaigns_active")?,
        prospects: row.try_get("prospects")?,
        emails_awaiting_approval: row.try_get("awaiting")?,
        emails_approved: row.try_get("approved")?,
        emails_sent: row.try_get("sent")?,
        replies: row.try_get("replies")?,
    })
}

/// The width of the time slots activity is counted in: every time zone's
/// offset today is a multiple of 15 minutes, so a local midnight is a slot
/// boundary and slots add up to local days exactly.
pub const SLOT_SECONDS: i64 = 900;

/// Sent mail of `$1` in `[$2, $3)`, per slot counted from `$2`.
pub const SENT_SLOTS_SQL: &str = "SELECT (q.sent_at - $2) / 900 AS slot, COUNT(*) AS n \
     FROM campaign_sending_queue q JOIN campaigns c ON c.id = q.campaign_id \
     WHERE c.user_id = $1 AND q.status = 'sent' AND q.sent_at >= $2 AND q.sent_at < $3 \
     GROUP BY slot";

/// Replies to `$1` received in `[$2, $3)`, per slot counted from `$2`.
pub const REPLY_SLOTS_SQL: &str = "SELECT (received_at - $2) / 900 AS slot, COUNT(*) AS n \
     FROM prospect_reply_inbox WHERE user_id = $1 AND received_at >= $2 AND received_at < $3 \
     GROUP BY slot";

/// Sent emails and replies per [`SLOT_SECONDS`] slot from `from` to
/// `until`: `(slot, sent, replies)` for the slots with any.
pub async fn activity_slots(
    pool: &AnyPool,
    user_id: &str,
    from: i64,
    until: i64,
) -> Result<(Vec<(i64, i64)>, Vec<(i64, i64)>), sqlx::Error> {
    let read = |rows: Vec<sqlx::any::AnyRow>| -> Result<Vec<(i64, i64)>, sqlx::Error> {
        rows.iter()
            .map(|r| Ok((r.try_get("slot")?, r.try_get("n")?)))
            .collect()
    };
    let sent = sqlx::query(SENT_SLOTS_SQL)
        .bind(user_id)
        .bind(from)
        .bind(until)
        .fetch_all(pool)
        .await?;
    let replies = sqlx::query(REPLY_SLOTS_SQL)
        .bind(user_id)
        .bind(from)
        .bind(until)
        .fetch_all(pool)
        .await?;
    Ok((read(sent)?, read(replies)?))
}

/// A campaign on the dashboard.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CampaignSummary {
    /// Text UUID.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Lifecycle status.
    pub status: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Prospects in it.
    pub prospects: i64,
    /// Emails sent.
    pub sent: i64,
    /// Replies received.
    pub replies: i64,
    /// Replies per 100 sent, one decimal (0 before any is sent).
    pub reply_rate: f64,
}

/// The newest campaigns of `$1` (not archived), `$2` at most, each with
/// counts from correlated subqueries over `(campaign_id, ...)` indexes: no
/// join fans rows out.
pub const CAMPAIGNS_SQL: &str = "SELECT c.id, c.name, c.status, c.created_at, \
     (SELECT COUNT(*) FROM prospects p WHERE p.campaign_id = c.id) AS prospects, \
     (SELECT COUNT(*) FROM campaign_sending_queue q WHERE q.campaign_id = c.id AND q.status = 'sent') AS sent, \
     (SELECT COUNT(*) FROM prospect_replies r WHERE r.campaign_id = c.id) AS replies \
     FROM campaigns c WHERE c.user_id = $1 AND c.archived_at IS NULL \
     ORDER BY c.created_at DESC, c.id DESC LIMIT $2";

/// Replies per 100 sent, one decimal.
pub fn reply_rate(replies: i64, sent: i64) -> f64 {
    if sent <= 0 {
        return 0.0;
    }
    ((replies as f64) * 1000.0 / (sent as f64)).round() / 10.0
}

/// The `limit` newest campaigns of `user_id`.
pub async fn campaigns(
    pool: &AnyPool,
    user_id: &str,
    limit: i64,
) -> Result<Vec<CampaignSummary>, sqlx::Error> {
    let rows = sqlx::query(CAMPAIGNS_SQL)
        .bind(user_id)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| {
            let sent: i64 = r.try_get("sent")?;
            let replies: i64 = r.try_get("replies")?;
            Ok(CampaignSummary {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                status: r.try_get("status")?,
                created_at: r.try_get("created_at")?,
                prospects: r.try_get("prospects")?,
                sent,
                replies,
                reply_rate: reply_rate(replies, sent),
            })
        })
        .collect()
}

/// The user's IANA time zone.
pub async fn timezone(pool: &AnyPool, user_id: &str) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query("SELECT timezone FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(pool)
        .await?;
    row.map(|r| r.try_get("timezone")).transpose()
}

/// Sets the user's IANA time zone.
pub async fn set_timezone(
    pool: &AnyPool,
    user_id: &str,
    timezone: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET timezone = $1, updated_at = $2 WHERE id = $3")
        .bind(timezone)
        .bind(now)
        .bind(user_id)
        .execute(pool)
        .await?;
    Ok(())
}
