//! The `generated_emails` aggregate: drafts written by the generation jobs and
//! the user's decisions on them (approve, edit, reject).
//!
//! The table has no `user_id`: every statement filters on the owner through
//! `campaign_id IN (SELECT id FROM campaigns WHERE user_id = $n)` in the same
//! statement, so another account's email is never read or written.

use serde::Serialize;
use sqlx::{AnyConnection, AnyPool, Row, any::AnyRow};

use super::{StaticSql, new_id};
use crate::pagination::{Cursor, PageRequest};

/// The owner filter every statement carries, closed by the user id's
/// placeholder and `)`; `e.` is prefixed where `generated_emails` is aliased.
macro_rules! owned_sql {
    () => {
        "campaign_id IN (SELECT c.id FROM campaigns c WHERE c.user_id = "
    };
}

/// An email as the API shows it, with its prospect's address and name.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Email {
    /// Text UUID.
    pub id: String,
    /// Its campaign.
    pub campaign_id: String,
    /// Its prospect.
    pub prospect_id: String,
    /// The prospect's address (the only recipient).
    pub prospect_email: String,
    /// The prospect's given name.
    pub prospect_first_name: Option<String>,
    /// The prospect's family name.
    pub prospect_last_name: Option<String>,
    /// The prospect's employer.
    pub prospect_company: Option<String>,
    /// One line.
    pub subject: String,
    /// Plain text.
    pub body: String,
    /// `draft`, `approved`, `rejected` or `sent`.
    pub status: String,
    /// The language model that wrote it (`offline`, `anthropic`).
    pub model: Option<String>,
    /// Why it was rejected.
    pub rejection_reason: Option<String>,
    /// Unix seconds.
    pub approved_at: Option<i64>,
    /// Unix seconds.
    pub rejected_at: Option<i64>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

impl Email {
    /// Its position in lists.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            group: 0,
            created_at: self.created_at,
            id: self.id.clone(),
        }
    }
}

macro_rules! select_sql {
    () => {
        "SELECT e.id, e.campaign_id, e.prospect_id, p.email AS prospect_email, \
     p.first_name AS prospect_first_name, p.last_name AS prospect_last_name, \
     p.company AS prospect_company, e.subject, e.body, e.status, e.model, e.rejection_reason, \
     e.approved_at, e.rejected_at, e.created_at, e.updated_at \
     FROM generated_emails e JOIN prospects p ON p.id = e.prospect_id"
    };
}

fn from_row(row: &AnyRow) -> Result<Email, sqlx::Error> {
    Ok(Email {
        id: row.try_get("id")?,
        campaign_id: row.try_get("campaign_id")?,
        prospect_id: row.try_get("prospect_id")?,
        prospect_email: row.try_get("prospect_email")?,
        prospect_first_name: row.try_get("prospect_first_name")?,
        prospect_last_name: row.try_get("prospect_last_name")?,
        prospect_company: row.try_get("prospect_company")?,
        subject: row.try_get("subject")?,
        body: row.try_get("body")?,
        status: row.try_get("status")?,
        model: row.try_get("model")?,
        rejection_reason: row.try_get("rejection_reason")?,
        approved_at: row.try_get("approved_at")?,
        rejected_at: row.try_get("rejected_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Email `id` of `user_id`.
pub async fn find(pool: &AnyPool, user_id: &str, id: &str) -> Result<Option<Email>, sqlx::Error> {
    let sql = concat!(
        select_sql!(),
        " WHERE e.id = $1 AND e.",
        owned_sql!(),
        "$2)"
    );
    let row = sqlx::query(sql)
        .bind(id)
        .bind(user_id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// The prospects of campaign `campaign_id` (of `user_id`) that have no email
/// yet, oldest first: what a generation without `prospect_ids` drafts.
pub async fn prospects_without_email(
    pool: &AnyPool,
    user_id: &str,
    campaign_id: &str,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT p.id FROM prospects p WHERE p.campaign_id = $1 AND p.user_id = $2 \
         AND NOT EXISTS (SELECT 1 FROM generated_emails e WHERE e.prospect_id = p.id) \
         ORDER BY p.created_at, p.id LIMIT $3",
    )
    .bind(campaign_id)
    .bind(user_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(|r| r.try_get("id")).collect()
}

/// Which of `ids` are prospects of campaign `campaign_id` of `user_id`.
pub async fn prospects_in_campaign(
    pool: &AnyPool,
    user_id: &str,
    campaign_id: &str,
    ids: &[String],
) -> Result<Vec<String>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = StaticSql::new(
        "SELECT p.id FROM prospects p WHERE p.campaign_id = $1 AND p.user_id = $2 AND p.id IN (",
        2,
    );
    for i in 0..ids.len() {
        if i > 0 {
            sql.push(", ");
        }
        sql.param();
    }
    sql.push(")");
    let sql = sql.finish();
    let mut query = sqlx::query(sql).bind(campaign_id).bind(user_id);
    for id in ids {
        query = query.bind(id.as_str());
    }
    let rows = query.fetch_all(pool).await?;
    rows.iter().map(|r| r.try_get("id")).collect()
}

/// What a draft is written from: the prospect, its campaign and its sender.
#[derive(Debug, Clone)]
pub struct DraftSource {
    /// The prospect's address.
    pub email: String,
    /// Given name.
    pub first_name: Option<String>,
    /// Family name.
    pub last_name: Option<String>,
    /// Employer.
    pub company: Option<String>,
    /// Job title.
    pub title: Option<String>,
    /// Industry.
    pub industry: Option<String>,
    /// Website.
    pub website: Option<String>,
    /// The campaign's product description, else its description, else the
    /// onboarding's product description.
    pub product_description: Option<String>,
    /// The campaign's target industry.
    pub target_industry: Option<String>,
    /// The onboarding's sender name, else the user's name.
    pub sender_name: String,
}

/// The draft source of prospect `prospect_id` in campaign `campaign_id` of
/// `user_id`; `None` when it is gone (deleted meanwhile) or not theirs.
pub async fn draft_source(
    pool: &AnyPool,
    user_id: &str,
    campaign_id: &str,
    prospect_id: &str,
) -> Result<Option<DraftSource>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT p.email, p.first_name, p.last_name, p.company, p.title, p.industry, p.website, \
         COALESCE(c.product_description, c.description, o.product_description) AS product_description, \
         c.target_industry, COALESCE(o.sender_name, u.name) AS sender_name \
         FROM prospects p JOIN campaigns c ON c.id = p.campaign_id \
         JOIN users u ON u.id = c.user_id LEFT JOIN onboarding o ON o.user_id = c.user_id \
         WHERE p.id = $1 AND p.campaign_id = $2 AND c.user_id = $3",
    )
    .bind(prospect_id)
    .bind(campaign_id)
    .bind(user_id)
    .fetch_optional(pool)
    .await?;
    row.map(|r| {
        Ok(DraftSource {
            email: r.try_get("email")?,
            first_name: r.try_get("first_name")?,
            last_name: r.try_get("last_name")?,
            company: r.try_get("company")?,
            title: r.try_get("title")?,
            industry: r.try_get("industry")?,
            website: r.try_get("website")?,
            product_description: r.try_get("product_description")?,
            target_industry: r.try_get("target_industry")?,
            sender_name: r.try_get("sender_name")?,
        })
    })
    .transpose()
}

/// Whether job `job_id` already drafted an email for `prospect_id` (a job
/// that runs again skips it).
pub async fn drafted_by_job(
    pool: &AnyPool,
    job_id: &str,
    prospect_id: &str,
) -> Result<bool, sqlx::Error> {
    let row =
        sqlx::query("SELECT 1 AS one FROM generated_emails WHERE job_id = $1 AND prospect_id = $2")
            .bind(job_id)
            .bind(prospect_id)
            .fetch_optional(pool)
            .await?;
    Ok(row.is_some())
}

/// A draft to store.
#[derive(Debug, Clone, Copy)]
pub struct NewDraft<'a> {
    /// The job that wrote it.
    pub job_id: &'a str,
    /// The owner.
    pub user_id: &'a str,
    /// Its campaign.
    pub campaign_id: &'a str,
    /// Its prospect.
    pub prospect_id: &'a str,
    /// Subject.
    pub subject: &'a str,
    /// Body.
    pub body: &'a str,
    /// The model's name.
    pub model: &'a str,
}

/// Stores a draft (once per job and prospect: the unique index
/// `(job_id, prospect_id)` drops a second one) and moves a `new` prospect to
/// `email_generated`, in one transaction. False when nothing was written (a
/// repeat, or the prospect is gone).
pub async fn insert_draft(
    pool: &AnyPool,
    new: NewDraft<'_>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query(
        "INSERT INTO generated_emails (id, prospect_id, campaign_id, subject, body, status, model, \
         job_id, created_at, updated_at) \
         SELECT $1, p.id, p.campaign_id, $2, $3, 'draft', $4, $5, $6, $6 FROM prospects p \
         WHERE p.id = $7 AND p.campaign_id = $8 AND p.user_id = $9 \
         ON CONFLICT DO NOTHING",
    )
    .bind(new_id())
    .bind(new.subject)
    .bind(new.body)
    .bind(new.model)
    .bind(new.job_id)
    .bind(now)
    .bind(new.prospect_id)
    .bind(new.campaign_id)
    .bind(new.user_id)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    sqlx::query(
        "UPDATE prospects SET status = 'email_generated', updated_at = $1 \
         WHERE id = $2 AND user_id = $3 AND status = 'new'",
    )
    .bind(now)
    .bind(new.prospect_id)
    .bind(new.user_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Replaces the text of email `id` of `user_id` with a regenerated draft
/// (status back to `draft`, decisions cleared); a sent email is left alone.
/// False when nothing matched.
pub async fn replace_draft(
    pool: &AnyPool,
    user_id: &str,
    id: &str,
    subject: &str,
    body: &str,
    model: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let sql = concat!(
        "UPDATE generated_emails SET subject = $1, body = $2, model = $3, status = 'draft', \
         approved_at = NULL, rejected_at = NULL, rejection_reason = NULL, updated_at = $4 \
         WHERE id = $5 AND status <> 'sent' AND ",
        owned_sql!(),
        "$6)"
    );
    let done = sqlx::query(sql)
        .bind(subject)
        .bind(body)
        .bind(model)
        .bind(now)
        .bind(id)
        .bind(user_id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// What a decision on an email found.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Done: the email as it is now (boxed: the other variants are small).
    Done(Box<Email>),
    /// The email is in a status the decision does not apply to.
    Refused {
        /// Its current status.
        status: String,
    },
    /// No such email of this user.
    NotFound,
}

/// Approves email `id` of `user_id` (a draft, or one already approved: then
/// nothing changes). A rejected or sent email is refused.
pub async fn approve(
    conn: &mut AnyConnection,
    user_id: &str,
    id: &str,
    now: i64,
) -> Result<Decision, sqlx::Error> {
    let sql = concat!(
        "UPDATE generated_emails SET status = 'approved', approved_at = $1, updated_at = $1 \
         WHERE id = $2 AND status = 'draft' AND ",
        owned_sql!(),
        "$3)"
    );
    sqlx::query(sql)
        .bind(now)
        .bind(id)
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    decided(conn, user_id, id, &["approved"]).await
}

/// Rejects email `id` of `user_id` with `reason` (a draft or an approved
/// one; rejecting again updates the reason). A sent email is refused.
pub async fn reject(
    pool: &AnyPool,
    user_id: &str,
    id: &str,
    reason: Option<&str>,
    now: i64,
) -> Result<Decision, sqlx::Error> {
    let sql = concat!(
        "UPDATE generated_emails SET status = 'rejected', rejection_reason = $1, rejected_at = $2, \
         approved_at = NULL, updated_at = $2 \
         WHERE id = $3 AND status IN ('draft', 'approved', 'rejected') AND ",
        owned_sql!(),
        "$4)"
    );
    sqlx::query(sql)
        .bind(reason)
        .bind(now)
        .bind(id)
        .bind(user_id)
        .execute(pool)
        .await?;
    let mut conn = pool.acquire().await?;
    decided(&mut conn, user_id, id, &["rejected"]).await
}

/// Edits email `id` of `user_id`: absent fields stay. Any edit leaves a
/// draft (an approved or rejected email goes back to review). A sent email
/// is refused.
pub async fn edit(
    pool: &AnyPool,
    user_id: &str,
    id: &str,
    subject: Option<&str>,
    body: Option<&str>,
    now: i64,
) -> Result<Decision, sqlx::Error> {
    let sql = concat!(
        "UPDATE generated_emails SET subject = COALESCE($1, subject), body = COALESCE($2, body), \
         status = 'draft', approved_at = NULL, rejected_at = NULL, rejection_reason = NULL, \
         updated_at = $3 WHERE id = $4 AND status <> 'sent' AND ",
        owned_sql!(),
        "$5)"
    );
    let done = sqlx::query(sql)
        .bind(subject)
        .bind(body)
        .bind(now)
        .bind(id)
        .bind(user_id)
        .execute(pool)
        .await?;
    let mut conn = pool.acquire().await?;
    if done.rows_affected() == 1 {
        return decided(&mut conn, user_id, id, &["draft"]).await;
    }
    decided(&mut conn, user_id, id, &[]).await
}

/// The email after a decision: `Done` when its status is one of `wanted`.
async fn decided(
    conn: &mut AnyConnection,
    user_id: &str,
    id: &str,
    wanted: &[&str],
) -> Result<Decision, sqlx::Error> {
    let sql = concat!(
        select_sql!(),
        " WHERE e.id = $1 AND e.",
        owned_sql!(),
        "$2)"
    );
    let row = sqlx::query(sql)
        .bind(id)
        .bind(user_id)
        .fetch_optional(conn)
        .await?;
    let Some(email) = row.as_ref().map(from_row).transpose()? else {
        return Ok(Decision::NotFound);
    };
    Ok(if wanted.contains(&email.status.as_str()) {
        Decision::Done(Box::new(email))
    } else {
        Decision::Refused {
            status: email.status,
        }
    })
}

/// One page of `user_id`'s drafts awaiting a decision, newest first,
/// optionally of one campaign.
pub async fn pending(
    pool: &AnyPool,
    user_id: &str,
    campaign_id: Option<&str>,
    page: &PageRequest,
) -> Result<Vec<Email>, sqlx::Error> {
    let mut sql = StaticSql::new(
        concat!(
            select_sql!(),
            " WHERE e.status = 'draft' AND e.",
            owned_sql!(),
            "$1)"
        ),
        1,
    );
    if campaign_id.is_some() {
        sql.push(" AND e.campaign_id = ");
        sql.param();
    }
    if page.after.is_some() {
        sql.push(" AND (e.created_at < ");
        let created_at = sql.param();
        sql.push(" OR (e.created_at = ")
            .param_again(created_at)
            .push(" AND e.id < ");
        sql.param();
        sql.push("))");
    }
    sql.push(" ORDER BY e.created_at DESC, e.id DESC LIMIT ");
    sql.param();
    let sql = sql.finish();
    let mut query = sqlx::query(sql).bind(user_id);
    if let Some(campaign_id) = campaign_id {
        query = query.bind(campaign_id);
    }
    if let Some(cursor) = &page.after {
        query = query.bind(cursor.created_at).bind(cursor.id.as_str());
    }
    let rows = query.bind(page.fetch()).fetch_all(pool).await?;
    rows.iter().map(from_row).collect()
}

/// Drafts awaiting a decision in one campaign.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PendingCount {
    /// The campaign.
    pub campaign_id: String,
    /// Its name.
    pub campaign_name: String,
    /// Drafts in it.
    pub pending: i64,
}

/// `user_id`'s drafts awaiting a decision, per campaign that has any, by name.
pub async fn pending_counts(
    pool: &AnyPool,
    user_id: &str,
) -> Result<Vec<PendingCount>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT c.id AS campaign_id, c.name AS campaign_name, COUNT(e.id) AS pending \
         FROM campaigns c JOIN generated_emails e ON e.campaign_id = c.id AND e.status = 'draft' \
         WHERE c.user_id = $1 GROUP BY c.id, c.name ORDER BY c.name, c.id",
    )
    .bind(user_id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(PendingCount {
                campaign_id: r.try_get("campaign_id")?,
                campaign_name: r.try_get("campaign_name")?,
                pending: r.try_get("pending")?,
            })
        })
        .collect()
}
