//! The `prospects` aggregate.
//!
//! A campaign holds an address once, compared case-insensitively: the unique
//! index `prospects_campaign_email` on `(campaign_id, lower(email))` decides,
//! so concurrent imports cannot both insert it.

use serde::Serialize;
use sqlx::{AnyConnection, AnyPool, Row, any::AnyRow};

use super::{StaticSql, new_id};
use crate::pagination::{Cursor, PageRequest};

/// A prospect as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Prospect {
    /// Text UUID.
    pub id: String,
    /// Its campaign.
    pub campaign_id: String,
    /// As imported.
    pub email: String,
    /// Given name.
    pub first_name: Option<String>,
    /// Family name.
    pub last_name: Option<String>,
    /// Employer.
    pub company: Option<String>,
    /// Job title.
    pub title: Option<String>,
    /// Company website.
    pub website: Option<String>,
    /// Industry.
    pub industry: Option<String>,
    /// LinkedIn profile.
    pub linkedin_url: Option<String>,
    /// `new`, `researched`, `email_generated`, `queued`, `contacted`, `replied`, `bounced`, `unsubscribed`.
    pub status: String,
    /// The status of its newest generated email, if it has one.
    pub latest_email_status: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

impl Prospect {
    /// Its position in lists.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            group: 0,
            created_at: self.created_at,
            id: self.id.clone(),
        }
    }
}

/// One row to import (validated).
#[derive(Debug, Clone, Default)]
pub struct NewProspect {
    /// Address.
    pub email: String,
    /// Given name.
    pub first_name: Option<String>,
    /// Family name.
    pub last_name: Option<String>,
    /// Employer.
    pub company: Option<String>,
    /// Job title.
    pub title: Option<String>,
    /// Website.
    pub website: Option<String>,
    /// Industry.
    pub industry: Option<String>,
    /// LinkedIn profile.
    pub linkedin_url: Option<String>,
}

macro_rules! select_sql {
    () => {
        "SELECT p.id, p.campaign_id, p.email, p.first_name, p.last_name, p.company, \
     p.title, p.website, p.industry, p.linkedin_url, p.status, p.created_at, p.updated_at, \
     (SELECT e.status FROM generated_emails e WHERE e.prospect_id = p.id \
      ORDER BY e.created_at DESC, e.id DESC LIMIT 1) AS latest_email_status \
     FROM prospects p"
    };
}

fn from_row(row: &AnyRow) -> Result<Prospect, sqlx::Error> {
    Ok(Prospect {
        id: row.try_get("id")?,
        campaign_id: row.try_get("campaign_id")?,
        email: row.try_get("email")?,
        first_name: row.try_get("first_name")?,
        last_name: row.try_get("last_name")?,
        company: row.try_get("company")?,
        title: row.try_get("title")?,
        website: row.try_get("website")?,
        industry: row.try_get("industry")?,
        linkedin_url: row.try_get("linkedin_url")?,
        status: row.try_get("status")?,
        latest_email_status: row.try_get("latest_email_status")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Inserts `new` into campaign `campaign_id` of `user_id` unless the campaign
/// already holds its address. True when inserted; false for a duplicate (or
/// when the campaign is not that user's, which callers rule out first).
pub async fn insert_unless_duplicate(
    conn: &mut AnyConnection,
    user_id: &str,
    campaign_id: &str,
    new: &NewProspect,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO prospects (id, campaign_id, user_id, email, first_name, last_name, company, \
         title, website, industry, linkedin_url, created_at, updated_at) \
         SELECT $1, c.id, c.user_id, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10 \
         FROM campaigns c WHERE c.id = $11 AND c.user_id = $12 \
         ON CONFLICT DO NOTHING",
    )
    .bind(new_id())
    .bind(&new.email)
    .bind(new.first_name.as_deref())
    .bind(new.last_name.as_deref())
    .bind(new.company.as_deref())
    .bind(new.title.as_deref())
    .bind(new.website.as_deref())
    .bind(new.industry.as_deref())
    .bind(new.linkedin_url.as_deref())
    .bind(now)
    .bind(campaign_id)
    .bind(user_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// One page of campaign `campaign_id`'s prospects (of `user_id`), newest
/// first, optionally of one `status`, each with its newest email's status.
pub async fn list(
    pool: &AnyPool,
    user_id: &str,
    campaign_id: &str,
    status: Option<&str>,
    page: &PageRequest,
) -> Result<Vec<Prospect>, sqlx::Error> {
    let mut sql = StaticSql::new(
        concat!(
            select_sql!(),
            " WHERE p.campaign_id = $1 AND p.user_id = $2"
        ),
        2,
    );
    if status.is_some() {
        sql.push(" AND p.status = ");
        sql.param();
    }
    if page.after.is_some() {
        sql.push(" AND (p.created_at < ");
        let created_at = sql.param();
        sql.push(" OR (p.created_at = ")
            .param_again(created_at)
            .push(" AND p.id < ");
        sql.param();
        sql.push("))");
    }
    sql.push(" ORDER BY p.created_at DESC, p.id DESC LIMIT ");
    sql.param();
    let sql = sql.finish();
    let mut query = sqlx::query(sql).bind(campaign_id).bind(user_id);
    if let Some(status) = status {
        query = query.bind(status);
    }
    if let Some(cursor) = &page.after {
        query = query.bind(cursor.created_at).bind(cursor.id.as_str());
    }
    let rows = query.bind(page.fetch()).fetch_all(pool).await?;
    rows.iter().map(from_row).collect()
}

/// Deletes prospect `id` of `user_id` (its emails and queue entries go with it
/// by cascade); returns its campaign, `None` when there is no such prospect.
pub async fn delete(
    pool: &AnyPool,
    user_id: &str,
    id: &str,
) -> Result<Option<String>, sqlx::Error> {
    let row =
        sqlx::query("DELETE FROM prospects WHERE id = $1 AND user_id = $2 RETURNING campaign_id")
            .bind(id)
            .bind(user_id)
            .fetch_optional(pool)
            .await?;
    row.map(|r| r.try_get("campaign_id")).transpose()
}
