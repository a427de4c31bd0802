//! The `campaigns` aggregate (with its prospects, emails and queue on delete).
//!
//! Every statement names the owner (`user_id`) next to the id, so another
//! account's campaign is simply not found.

use serde::Serialize;
use sqlx::{AnyConnection, AnyPool, Row, any::AnyRow};

use super::{StaticSql, new_id};
use crate::pagination::{Cursor, PageRequest};

/// A campaign with its counts, as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Campaign {
    /// Text UUID.
    pub id: String,
    /// The ICP template it was created from, if any.
    pub icp_template_id: Option<String>,
    /// Display name.
    pub name: String,
    /// Who it targets (the ICP description).
    pub description: Option<String>,
    /// What is sold.
    pub product_description: Option<String>,
    /// The industry targeted.
    pub target_industry: Option<String>,
    /// Lifecycle: `draft`, `active`, `paused`, `completed`.
    pub status: String,
    /// Whether it is archived (independent of `status`).
    pub archived: bool,
    /// When it was archived (unix seconds).
    pub archived_at: Option<i64>,
    /// Emails sent per day at most.
    pub daily_send_limit: i64,
    /// Its prospects and emails.
    pub stats: CampaignStats,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// A campaign's counts.
#[derive(Debug, Clone, Copy, Default, Serialize, utoipa::ToSchema)]
pub struct CampaignStats {
    /// Prospects in it.
    pub prospects: i64,
    /// Generated emails awaiting a decision.
    pub emails_drafted: i64,
    /// Approved, not sent yet.
    pub emails_approved: i64,
    /// Sent.
    pub emails_sent: i64,
}

/// Columns and counts, in one statement: correlated counts over the indexed
/// `(campaign_id, status)` columns, evaluated for the returned rows only.
macro_rules! select_sql {
    () => {
        "SELECT c.id, c.icp_template_id, c.name, c.description, c.product_description, \
     c.target_industry, c.status, c.archived_at, c.daily_send_limit, c.created_at, c.updated_at, \
     (SELECT COUNT(*) FROM prospects p WHERE p.campaign_id = c.id) AS n_prospects, \
     (SELECT COUNT(*) FROM generated_emails e WHERE e.campaign_id = c.id AND e.status = 'draft') AS n_drafted, \
     (SELECT COUNT(*) FROM generated_emails e WHERE e.campaign_id = c.id AND e.status = 'approved') AS n_approved, \
     (SELECT COUNT(*) FROM generated_emails e WHERE e.campaign_id = c.id AND e.status = 'sent') AS n_sent \
     FROM campaigns c"
    };
}

fn from_row(row: &AnyRow) -> Result<Campaign, sqlx::Error> {
    let archived_at: Option<i64> = row.try_get("archived_at")?;
    Ok(Campaign {
        id: row.try_get("id")?,
        icp_template_id: row.try_get("icp_template_id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        product_description: row.try_get("product_description")?,
        target_industry: row.try_get("target_industry")?,
        status: row.try_get("status")?,
        archived: archived_at.is_some(),
        archived_at,
        daily_send_limit: row.try_get("daily_send_limit")?,
        stats: CampaignStats {
            prospects: row.try_get("n_prospects")?,
            emails_drafted: row.try_get("n_drafted")?,
            emails_approved: row.try_get("n_approved")?,
            emails_sent: row.try_get("n_sent")?,
        },
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Campaign {
    /// Its position in lists.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            group: 0,
            created_at: self.created_at,
            id: self.id.clone(),
        }
    }
}

/// Which campaigns a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFilter {
    /// Not archived.
    Active,
    /// Archived.
    Archived,
    /// Both.
    All,
}

/// A new campaign's content (validated).
#[derive(Debug, Clone, Default)]
pub struct NewCampaign {
    /// Display name.
    pub name: String,
    /// ICP description.
    pub description: Option<String>,
    /// What is sold.
    pub product_description: Option<String>,
    /// Industry.
    pub target_industry: Option<String>,
    /// Lifecycle status.
    pub status: String,
    /// Per-day sending cap.
    pub daily_send_limit: i64,
    /// Source template.
    pub icp_template_id: Option<String>,
}

/// A partial update: `None` leaves a column as it is; for nullable columns
/// `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct CampaignPatch {
    /// New name.
    pub name: Option<String>,
    /// New ICP description.
    pub description: Option<Option<String>>,
    /// New product description.
    pub product_description: Option<Option<String>>,
    /// New industry.
    pub target_industry: Option<Option<String>>,
    /// New lifecycle status.
    pub status: Option<String>,
    /// New sending cap.
    pub daily_send_limit: Option<i64>,
}

/// How many campaigns of `user_id` are not archived.
pub async fn count_active(conn: &mut AnyConnection, user_id: &str) -> Result<i64, sqlx::Error> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM campaigns WHERE user_id = $1 AND archived_at IS NULL",
    )
    .bind(user_id)
    .fetch_one(conn)
    .await?;
    row.try_get("n")
}

/// Inserts a campaign of `user_id`, with the `Idempotency-Key` of the request
/// that creates it (if any); returns its id.
pub async fn insert(
    conn: &mut AnyConnection,
    user_id: &str,
    new: &NewCampaign,
    idempotency_key: Option<&str>,
    now: i64,
) -> Result<String, sqlx::Error> {
    let id = new_id();
    sqlx::query(
        "INSERT INTO campaigns (id, user_id, icp_template_id, name, description, product_description, \
         target_industry, status, daily_send_limit, idempotency_key, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)",
    )
    .bind(&id)
    .bind(user_id)
    .bind(new.icp_template_id.as_deref())
    .bind(&new.name)
    .bind(new.description.as_deref())
    .bind(new.product_description.as_deref())
    .bind(new.target_industry.as_deref())
    .bind(&new.status)
    .bind(new.daily_send_limit)
    .bind(idempotency_key)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(id)
}

/// The id of the campaign of `user_id` a request with `idempotency_key`
/// created, if one did.
pub async fn created_with_key(
    conn: &mut AnyConnection,
    user_id: &str,
    idempotency_key: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM campaigns WHERE user_id = $1 AND idempotency_key = $2")
        .bind(user_id)
        .bind(idempotency_key)
        .fetch_optional(conn)
        .await
}

/// Copies campaign `id` of `user_id` (content and template, not prospects or
/// emails) as a new `draft` named `name`, or the original's name with
/// " (copy)" (cut to stay within the 200 characters of a name). Returns the copy's id, `None` when there is no such campaign.
pub async fn duplicate(
    conn: &mut AnyConnection,
    user_id: &str,
    id: &str,
    name: Option<&str>,
    now: i64,
) -> Result<Option<String>, sqlx::Error> {
    let copy = new_id();
    let done = sqlx::query(
        "INSERT INTO campaigns (id, user_id, icp_template_id, name, description, product_description, \
         target_industry, status, daily_send_limit, created_at, updated_at) \
         SELECT $1, user_id, icp_template_id, COALESCE($2, substr(name, 1, 193) || ' (copy)'), description, \
         product_description, target_industry, 'draft', daily_send_limit, $3, $3 \
         FROM campaigns WHERE id = $4 AND user_id = $5",
    )
    .bind(&copy)
    .bind(name)
    .bind(now)
    .bind(id)
    .bind(user_id)
    .execute(conn)
    .await?;
    Ok((done.rows_affected() == 1).then_some(copy))
}

/// Campaign `id` of `user_id`, with its counts.
pub async fn find(
    conn: &mut AnyConnection,
    user_id: &str,
    id: &str,
) -> Result<Option<Campaign>, sqlx::Error> {
    let sql = concat!(select_sql!(), " WHERE c.id = $1 AND c.user_id = $2");
    let row = sqlx::query(sql)
        .bind(id)
        .bind(user_id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Whether campaign `id` of `user_id` exists, and whether it is archived.
pub async fn archived_state(
    conn: &mut AnyConnection,
    user_id: &str,
    id: &str,
) -> Result<Option<bool>, sqlx::Error> {
    let row = sqlx::query("SELECT archived_at FROM campaigns WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user_id)
        .fetch_optional(conn)
        .await?;
    row.map(|r| {
        r.try_get::<Option<i64>, _>("archived_at")
            .map(|a| a.is_some())
    })
    .transpose()
}

/// One page of `user_id`'s campaigns, newest first, with their counts (one
/// statement).
pub async fn list(
    pool: &AnyPool,
    user_id: &str,
    filter: ArchiveFilter,
    page: &PageRequest,
) -> Result<Vec<Campaign>, sqlx::Error> {
    let mut sql = StaticSql::new(concat!(select_sql!(), " WHERE c.user_id = $1"), 1);
    sql.push(match filter {
        ArchiveFilter::Active => " AND c.archived_at IS NULL",
        ArchiveFilter::Archived => " AND c.archived_at IS NOT NULL",
        ArchiveFilter::All => "",
    });
    if page.after.is_some() {
        sql.push(" AND (c.created_at < ");
        let created_at = sql.param();
        sql.push(" OR (c.created_at = ")
            .param_again(created_at)
            .push(" AND c.id < ");
        sql.param();
        sql.push("))");
    }
    sql.push(" ORDER BY c.created_at DESC, c.id DESC LIMIT ");
    sql.param();
    let sql = sql.finish();
    let mut query = sqlx::query(sql).bind(user_id);
    if let Some(cursor) = &page.after {
        query = query.bind(cursor.created_at).bind(cursor.id.as_str());
    }
    let rows = query.bind(page.fetch()).fetch_all(pool).await?;
    rows.iter().map(from_row).collect()
}

/// Applies `patch` to campaign `id` of `user_id`; false when there is no such campaign.
pub async fn update(
    pool: &AnyPool,
    user_id: &str,
    id: &str,
    patch: &CampaignPatch,
    now: i64,
) -> Result<bool, sqlx::Error> {
    // A flag per nullable column: 1 sets it to the value (possibly NULL), 0 keeps it.
    let flag = |v: &Option<Option<String>>| i64::from(v.is_some());
    let value = |v: &Option<Option<String>>| v.clone().flatten();
    let done = sqlx::query(
        "UPDATE campaigns SET \
         name = COALESCE($1, name), \
         description = CASE WHEN $2 = 1 THEN $3 ELSE description END, \
         product_description = CASE WHEN $4 = 1 THEN $5 ELSE product_description END, \
         target_industry = CASE WHEN $6 = 1 THEN $7 ELSE target_industry END, \
         status = COALESCE($8, status), \
         daily_send_limit = COALESCE($9, daily_send_limit), \
         updated_at = $10 \
         WHERE id = $11 AND user_id = $12",
    )
    .bind(patch.name.as_deref())
    .bind(flag(&patch.description))
    .bind(value(&patch.description))
    .bind(flag(&patch.product_description))
    .bind(value(&patch.product_description))
    .bind(flag(&patch.target_industry))
    .bind(value(&patch.target_industry))
    .bind(patch.status.as_deref())
    .bind(patch.daily_send_limit)
    .bind(now)
    .bind(id)
    .bind(user_id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Sets the ICP description and product of campaign `id` of `user_id`
/// (onboarding's second call); false when there is no such campaign.
pub async fn set_brief(
    conn: &mut AnyConnection,
    user_id: &str,
    id: &str,
    description: &str,
    product_description: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE campaigns SET description = $1, product_description = $2, updated_at = $3 \
         WHERE id = $4 AND user_id = $5",
    )
    .bind(description)
    .bind(product_description)
    .bind(now)
    .bind(id)
    .bind(user_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Archives (`true`) or unarchives campaign `id` of `user_id`, leaving its
/// lifecycle status alone; an archived campaign keeps its first
/// `archived_at`. False when there is no such campaign.
pub async fn set_archived(
    conn: &mut AnyConnection,
    user_id: &str,
    id: &str,
    archived: bool,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let sql = if archived {
        "UPDATE campaigns SET archived_at = COALESCE(archived_at, $1), updated_at = $1 \
         WHERE id = $2 AND user_id = $3"
    } else {
        "UPDATE campaigns SET archived_at = NULL, updated_at = $1 WHERE id = $2 AND user_id = $3"
    };
    let done = sqlx::query(sql)
        .bind(now)
        .bind(id)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes campaign `id` of `user_id` with its queue, emails and prospects, in
/// one transaction; each statement is limited to that owner's campaign, so
/// nothing of another account's is touched. False when there is no such
/// campaign (and nothing was deleted).
pub async fn delete(pool: &AnyPool, user_id: &str, id: &str) -> Result<bool, sqlx::Error> {
    macro_rules! owned_sql {
        () => {
            "campaign_id IN (SELECT id FROM campaigns WHERE id = $1 AND user_id = $2)"
        };
    }
    let mut tx = pool.begin().await?;
    for sql in [
        concat!("DELETE FROM campaign_sending_queue WHERE ", owned_sql!()),
        concat!("DELETE FROM prospect_replies WHERE ", owned_sql!()),
        concat!("DELETE FROM generated_emails WHERE ", owned_sql!()),
        concat!("DELETE FROM prospects WHERE ", owned_sql!()),
    ] {
        sqlx::query(sql)
            .bind(id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
    }
    let done = sqlx::query("DELETE FROM campaigns WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 1 {
        tx.commit().await?;
        Ok(true)
    } else {
        tx.rollback().await?;
        Ok(false)
    }
}
