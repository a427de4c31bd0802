//! A campaign's follow-up sequence (`email_sequences`, `email_sequence_steps`)
//! and the follow-ups drafted from it per prospect.
//!
//! After a prospect's first email is sent, each step is drafted for them as a
//! `generated_emails` row (once per step: a unique index on
//! `(prospect_id, sequence_step_id)`), approved at once when the campaign
//! says so or else awaiting approval like any draft. An approved follow-up is
//! queued once its step's delay after the first send has passed.
//! [`halt_prospect`] stops all of it for one prospect.

use serde::Serialize;
use sqlx::{AnyConnection, AnyPool, Row};

use super::{new_id, sending};

/// One step as stored.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Step {
    /// Text UUID.
    pub id: String,
    /// 1, 2, ...
    pub step_number: i64,
    /// Days after the first email.
    pub delay_days: i64,
    /// Subject template (`{{first_name}}`, `{{last_name}}`, `{{company}}`).
    pub subject: String,
    /// Body template.
    pub body: String,
}

/// A step to store.
#[derive(Debug, Clone)]
pub struct NewStep {
    /// Days after the first email.
    pub delay_days: i64,
    /// Subject template.
    pub subject: String,
    /// Body template.
    pub body: String,
}

/// The steps of campaign `campaign_id` of `user_id`, in order; `None` when
/// there is no such campaign.
pub async fn steps(
    pool: &AnyPool,
    user_id: &str,
    campaign_id: &str,
) -> Result<Option<Vec<Step>>, sqlx::Error> {
    let owned: Option<String> =
        sqlx::query_scalar("SELECT id FROM campaigns WHERE id = $1 AND user_id = $2")
            .bind(campaign_id)
            .bind(user_id)
            .fetch_optional(pool)
            .await?;
    if owned.is_none() {
        return Ok(None);
    }
    let rows = sqlx::query(
        "SELECT st.id, st.step_number, st.delay_days, st.subject_template, st.body_template \
         FROM email_sequence_steps st JOIN email_sequences s ON s.id = st.sequence_id \
         JOIN campaigns c ON c.id = s.campaign_id \
         WHERE s.campaign_id = $1 AND c.user_id = $2 ORDER BY st.step_number",
    )
    .bind(campaign_id)
    .bind(user_id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Step {
                id: r.try_get("id")?,
                step_number: r.try_get("step_number")?,
                delay_days: r.try_get("delay_days")?,
                subject: r.try_get("subject_template")?,
                body: r.try_get("body_template")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map(Some)
}

/// Replaces the sequence of campaign `campaign_id` of `user_id` with `steps`
/// (drafts of removed steps go with them), in one transaction. False when
/// there is no such campaign.
pub async fn replace(
    db: &super::Db,
    user_id: &str,
    campaign_id: &str,
    steps: &[NewStep],
    now: i64,
) -> Result<bool, sqlx::Error> {
    let mut tx = sending::begin_write(db).await?;
    let owned: Option<String> =
        sqlx::query_scalar("SELECT id FROM campaigns WHERE id = $1 AND user_id = $2")
            .bind(campaign_id)
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
    if owned.is_none() {
        tx.rollback().await?;
        return Ok(false);
    }
    // Queued follow-ups of the old steps are cancelled, not deleted: their
    // history stays; the drafts go with the steps (ON DELETE CASCADE).
    sqlx::query(
        "UPDATE campaign_sending_queue SET status = 'cancelled', last_error = 'sequence replaced', \
         updated_at = $1 WHERE campaign_id = $2 AND status = 'queued' AND sequence_step_id IS NOT NULL",
    )
    .bind(now)
    .bind(campaign_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "DELETE FROM generated_emails WHERE campaign_id = $1 AND sequence_step_id IS NOT NULL \
         AND id NOT IN (SELECT generated_email_id FROM campaign_sending_queue \
         WHERE campaign_id = $1 AND generated_email_id IS NOT NULL)",
    )
    .bind(campaign_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM email_sequences WHERE campaign_id = $1")
        .bind(campaign_id)
        .execute(&mut *tx)
        .await?;
    if !steps.is_empty() {
        let sequence_id = new_id();
        sqlx::query(
            "INSERT INTO email_sequences (id, campaign_id, name, created_at, updated_at) \
             VALUES ($1, $2, 'Follow-ups', $3, $3)",
        )
        .bind(&sequence_id)
        .bind(campaign_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        for (i, step) in steps.iter().enumerate() {
            sqlx::query(
                "INSERT INTO email_sequence_steps (id, sequence_id, step_number, delay_days, \
                 subject_template, body_template, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(new_id())
            .bind(&sequence_id)
            .bind(i as i64 + 1)
            .bind(step.delay_days)
            .bind(&step.subject)
            .bind(&step.body)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(true)
}

/// Fills a template's `{{first_name}}`, `{{last_name}}`, `{{company}}` (an
/// unknown value becomes a neutral word, never a left-over placeholder).
pub fn render(
    template: &str,
    first_name: Option<&str>,
    last_name: Option<&str>,
    company: Option<&str>,
) -> String {
    let or = |v: Option<&str>, fallback: &'static str| -> String {
        v.map(str::trim)
            .filter(|v| !v.is_empty())
            .unwrap_or(fallback)
            .to_owned()
    };
    template
        .replace("{{first_name}}", &or(first_name, "there"))
        .replace("{{last_name}}", &or(last_name, ""))
        .replace("{{company}}", &or(company, "your team"))
}

/// Drafts every step of the campaign's sequence for prospect `prospect_id`
/// (after its first email was sent), unless the prospect was halted; steps
/// already drafted are left alone. Returns how many were drafted.
pub async fn draft_follow_ups(
    pool: &AnyPool,
    prospect_id: &str,
    auto_approve: bool,
    now: i64,
) -> Result<u64, sqlx::Error> {
    let prospect = sqlx::query(
        "SELECT campaign_id, first_name, last_name, company FROM prospects \
         WHERE id = $1 AND halted_at IS NULL",
    )
    .bind(prospect_id)
    .fetch_optional(pool)
    .await?;
    let Some(prospect) = prospect else {
        return Ok(0);
    };
    let campaign_id: String = prospect.try_get("campaign_id")?;
    let first: Option<String> = prospect.try_get("first_name")?;
    let last: Option<String> = prospect.try_get("last_name")?;
    let company: Option<String> = prospect.try_get("company")?;
    let steps = sqlx::query(
        "SELECT st.id, st.subject_template, st.body_template FROM email_sequence_steps st \
         JOIN email_sequences s ON s.id = st.sequence_id WHERE s.campaign_id = $1 ORDER BY st.step_number",
    )
    .bind(&campaign_id)
    .fetch_all(pool)
    .await?;
    let status = if auto_approve { "approved" } else { "draft" };
    let mut drafted = 0;
    for step in steps {
        let step_id: String = step.try_get("id")?;
        let subject: String = step.try_get("subject_template")?;
        let body: String = step.try_get("body_template")?;
        let done = sqlx::query(
            "INSERT INTO generated_emails (id, prospect_id, campaign_id, subject, body, status, model, \
             approved_at, created_at, updated_at, sequence_step_id) \
             VALUES ($1, $2, $3, $4, $5, $6, 'sequence', $7, $8, $8, $9) \
             ON CONFLICT (prospect_id, sequence_step_id) DO NOTHING",
        )
        .bind(new_id())
        .bind(prospect_id)
        .bind(&campaign_id)
        .bind(render(&subject, first.as_deref(), last.as_deref(), company.as_deref()))
        .bind(render(&body, first.as_deref(), last.as_deref(), company.as_deref()))
        .bind(status)
        .bind(auto_approve.then_some(now))
        .bind(now)
        .bind(&step_id)
        .execute(pool)
        .await?;
        drafted += done.rows_affected();
    }
    Ok(drafted)
}

/// Queues every approved follow-up whose step's delay after its prospect's
/// first sent email has passed, in active campaigns, for prospects not
/// halted. Returns how many rows were queued.
pub async fn queue_due_follow_ups(
    pool: &AnyPool,
    now: i64,
    limit: i64,
) -> Result<u64, sqlx::Error> {
    let due = sqlx::query(
        "SELECT e.id, e.campaign_id, e.prospect_id, e.sequence_step_id, ctx.from_email FROM generated_emails e \
         JOIN email_sequence_steps st ON st.id = e.sequence_step_id \
         JOIN prospects p ON p.id = e.prospect_id \
         JOIN campaign_sending_context ctx ON ctx.campaign_id = e.campaign_id \
         WHERE e.status = 'approved' AND p.halted_at IS NULL AND ctx.status = 'active' \
         AND NOT EXISTS (SELECT 1 FROM campaign_sending_queue q WHERE q.generated_email_id = e.id) \
         AND EXISTS (SELECT 1 FROM campaign_sending_queue f JOIN generated_emails fe ON fe.id = f.generated_email_id \
             WHERE f.prospect_id = e.prospect_id AND f.status = 'sent' AND fe.sequence_step_id IS NULL \
             AND f.sent_at + st.delay_days * 86400 <= $1) \
         ORDER BY e.created_at, e.id LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let mut queued = 0;
    for row in due {
        let email_id: String = row.try_get("id")?;
        let from_email: String = row.try_get("from_email")?;
        let domain = from_email
            .rsplit_once('@')
            .map_or("koldly.local", |(_, d)| d);
        let done = sqlx::query(
            "INSERT INTO campaign_sending_queue (id, campaign_id, prospect_id, generated_email_id, \
             sequence_step_id, status, scheduled_for, created_at, updated_at, message_id) \
             VALUES ($1, $2, $3, $4, $5, 'queued', $6, $6, $6, $7) ON CONFLICT (generated_email_id) DO NOTHING",
        )
        .bind(new_id())
        .bind(row.try_get::<String, _>("campaign_id")?)
        .bind(row.try_get::<String, _>("prospect_id")?)
        .bind(&email_id)
        .bind(row.try_get::<String, _>("sequence_step_id")?)
        .bind(now)
        .bind(sending::new_message_id(domain))
        .execute(pool)
        .await?;
        queued += done.rows_affected();
    }
    Ok(queued)
}

/// Whether a reply from prospect `prospect_id` should halt its follow-ups:
/// its campaign was started with `stop_on_reply` (the default).
pub async fn stops_on_reply(pool: &AnyPool, prospect_id: &str) -> Result<bool, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    stops_on_reply_in(&mut conn, prospect_id).await
}

/// [`stops_on_reply`] on the caller's connection or transaction `conn`.
pub async fn stops_on_reply_in(
    conn: &mut AnyConnection,
    prospect_id: &str,
) -> Result<bool, sqlx::Error> {
    let flag: Option<i64> = sqlx::query_scalar(
        "SELECT ctx.stop_on_reply FROM prospects p \
         JOIN campaign_sending_context ctx ON ctx.campaign_id = p.campaign_id WHERE p.id = $1",
    )
    .bind(prospect_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(flag.is_none_or(|f| f != 0))
}

/// What [`halt_prospect`] stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Halted {
    /// Queued rows cancelled.
    pub cancelled: u64,
    /// Follow-up drafts (awaiting approval or approved, not queued) rejected.
    pub rejected: u64,
}

/// Halts prospect `prospect_id` (a reply, an unsubscribe, a hard bounce):
/// its queued rows are cancelled with `reason`, its follow-up drafts not yet
/// queued are rejected with it, and no later step is drafted. One
/// transaction; halting twice keeps the first reason.
pub async fn halt_prospect(
    pool: &AnyPool,
    prospect_id: &str,
    reason: &str,
    now: i64,
) -> Result<Halted, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let halted = halt_prospect_in(&mut tx, prospect_id, reason, now).await?;
    tx.commit().await?;
    Ok(halted)
}

/// [`halt_prospect`] inside the caller's transaction `conn` (a webhook halts
/// the prospect in the same transaction that stores the reply or the bounce).
pub async fn halt_prospect_in(
    conn: &mut AnyConnection,
    prospect_id: &str,
    reason: &str,
    now: i64,
) -> Result<Halted, sqlx::Error> {
    sqlx::query(
        "UPDATE prospects SET halted_at = COALESCE(halted_at, $1), halt_reason = COALESCE(halt_reason, $2), \
         updated_at = $1 WHERE id = $3",
    )
    .bind(now)
    .bind(reason)
    .bind(prospect_id)
    .execute(&mut *conn)
    .await?;
    // An answer to a reply the user chose to send is not a follow-up: a
    // halt (a second reply, say) leaves it queued; an unsubscribe still stops
    // it, as the worker checks the suppression list before every send.
    let cancelled = sqlx::query(
        "UPDATE campaign_sending_queue SET status = 'cancelled', last_error = $1, updated_at = $2 \
         WHERE prospect_id = $3 AND status = 'queued' AND reply_inbox_id IS NULL",
    )
    .bind(format!("halted: {reason}"))
    .bind(now)
    .bind(prospect_id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let rejected = sqlx::query(
        "UPDATE generated_emails SET status = 'rejected', rejection_reason = $1, rejected_at = $2, \
         updated_at = $2 WHERE prospect_id = $3 AND sequence_step_id IS NOT NULL \
         AND status IN ('draft', 'approved') \
         AND id NOT IN (SELECT generated_email_id FROM campaign_sending_queue \
         WHERE prospect_id = $3 AND generated_email_id IS NOT NULL AND status <> 'cancelled')",
    )
    .bind(format!("halted: {reason}"))
    .bind(now)
    .bind(prospect_id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(Halted {
        cancelled,
        rejected,
    })
}

/// Halts every prospect of `user_id` with address `email` (compared
/// case-insensitively; see [`halt_prospect`]). Returns how many.
pub async fn halt_address(
    pool: &AnyPool,
    user_id: &str,
    email: &str,
    reason: &str,
    now: i64,
) -> Result<usize, sqlx::Error> {
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT id FROM prospects WHERE user_id = $1 AND lower(email) = $2")
            .bind(user_id)
            .bind(email.trim().to_lowercase())
            .fetch_all(pool)
            .await?;
    for id in &ids {
        halt_prospect(pool, id, reason, now).await?;
    }
    Ok(ids.len())
}
