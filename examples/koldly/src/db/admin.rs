//! Admin rights and the platform-wide metrics of `GET /api/admin/metrics`.

use sqlx::{AnyPool, Row};

/// Whether `user_id` is an admin.
pub async fn is_admin(pool: &AnyPool, user_id: &str) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("SELECT is_admin FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(pool)
        .await?;
    Ok(match row {
        Some(row) => row.try_get::<i64, _>("is_admin")? != 0,
        None => false,
    })
}

/// Grants (or revokes) admin rights to the account with `email`; returns its
/// id, `None` when there is no such account.
pub async fn set_admin(
    pool: &AnyPool,
    email: &str,
    admin: bool,
    now: i64,
) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query(
        "UPDATE users SET is_admin = $1, updated_at = $2 WHERE lower(email) = lower($3) RETURNING id",
    )
    .bind(i64::from(admin))
    .bind(now)
    .bind(email.trim())
    .fetch_optional(pool)
    .await?;
    row.map(|r| r.try_get("id")).transpose()
}

/// Platform-wide counts since a time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Every account.
    pub users: i64,
    /// Accounts created since.
    pub signups: i64,
    /// Accounts with an analytics event since.
    pub active_users: i64,
    /// Every campaign.
    pub campaigns: i64,
    /// Campaigns created since.
    pub campaigns_created: i64,
    /// Emails sent since.
    pub emails_sent: i64,
    /// Replies received since.
    pub replies: i64,
}

/// The metrics query: each count over an index on its time column.
pub const METRICS_SQL: &str = "SELECT \
     (SELECT COUNT(*) FROM users) AS users, \
     (SELECT COUNT(*) FROM users WHERE created_at >= $1) AS signups, \
     (SELECT COUNT(DISTINCT user_id) FROM analytics_events WHERE occurred_at >= $1) AS active_users, \
     (SELECT COUNT(*) FROM campaigns) AS campaigns, \
     (SELECT COUNT(*) FROM campaigns WHERE created_at >= $1) AS campaigns_created, \
     (SELECT COUNT(*) FROM campaign_sending_queue WHERE status = 'sent' AND sent_at >= $1) AS emails_sent, \
     (SELECT COUNT(*) FROM prospect_replies WHERE received_at >= $1) AS replies";

/// The counts since `since` (unix seconds).
pub async fn metrics(pool: &AnyPool, since: i64) -> Result<Metrics, sqlx::Error> {
    let row = sqlx::query(METRICS_SQL).bind(since).fetch_one(pool).await?;
    Ok(Metrics {
        users: row.try_get("users")?,
        signups: row.try_get("signups")?,
        active_users: row.try_get("active_users")?,
        campaigns: row.try_get("campaigns")?,
        campaigns_created: row.try_get("campaigns_created")?,
        emails_sent: row.try_get("emails_sent")?,
        replies: row.try_get("replies")?,
    })
}

/// Subscribers per plan (running subscriptions: active, trialing, past due).
pub const SUBSCRIBERS_SQL: &str = "SELECT subscription_plan AS plan, COUNT(*) AS n FROM users \
     WHERE subscription_status IN ('active', 'trialing', 'past_due') GROUP BY subscription_plan \
     ORDER BY subscription_plan";

/// `(plan, subscribers)` pairs.
pub async fn subscribers(pool: &AnyPool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let rows = sqlx::query(SUBSCRIBERS_SQL).fetch_all(pool).await?;
    rows.iter()
        .map(|r| Ok((r.try_get("plan")?, r.try_get("n")?)))
        .collect()
}
