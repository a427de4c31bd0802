//! The `onboarding` aggregate: one row per user, what onboarding asked and the
//! campaign it created.

use serde::Serialize;
use sqlx::{AnyConnection, AnyPool, Row, any::AnyRow};

/// A user's onboarding answers.
#[derive(Debug, Clone, Serialize)]
pub struct Onboarding {
    /// What the user sells.
    pub product_description: String,
    /// Who they sell to.
    pub icp_description: String,
    /// The name emails are signed with.
    pub sender_name: String,
    /// The campaign onboarding created; `None` once it was deleted.
    pub campaign_id: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

macro_rules! columns_sql {
    () => {
        "product_description, icp_description, sender_name, campaign_id, created_at, updated_at"
    };
}

fn from_row(row: &AnyRow) -> Result<Onboarding, sqlx::Error> {
    Ok(Onboarding {
        product_description: row.try_get("product_description")?,
        icp_description: row.try_get("icp_description")?,
        sender_name: row.try_get("sender_name")?,
        campaign_id: row.try_get("campaign_id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// `user_id`'s answers, if they onboarded.
pub async fn find(pool: &AnyPool, user_id: &str) -> Result<Option<Onboarding>, sqlx::Error> {
    let sql = concat!(
        "SELECT ",
        columns_sql!(),
        " FROM onboarding WHERE user_id = $1"
    );
    let row = sqlx::query(sql).bind(user_id).fetch_optional(pool).await?;
    row.as_ref().map(from_row).transpose()
}

/// The same, inside a transaction.
pub async fn find_in(
    conn: &mut AnyConnection,
    user_id: &str,
) -> Result<Option<Onboarding>, sqlx::Error> {
    let sql = concat!(
        "SELECT ",
        columns_sql!(),
        " FROM onboarding WHERE user_id = $1"
    );
    let row = sqlx::query(sql).bind(user_id).fetch_optional(conn).await?;
    row.as_ref().map(from_row).transpose()
}

/// What onboarding stores.
#[derive(Debug, Clone)]
pub struct Answers<'a> {
    /// What the user sells.
    pub product_description: &'a str,
    /// Who they sell to.
    pub icp_description: &'a str,
    /// The name emails are signed with.
    pub sender_name: &'a str,
    /// The campaign it created or updates.
    pub campaign_id: &'a str,
}

/// Stores `user_id`'s answers, replacing earlier ones.
pub async fn upsert(
    conn: &mut AnyConnection,
    user_id: &str,
    answers: &Answers<'_>,
    now: i64,
) -> Result<Onboarding, sqlx::Error> {
    let sql = concat!(
        "INSERT INTO onboarding (user_id, product_description, icp_description, sender_name, \
         campaign_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6) \
         ON CONFLICT (user_id) DO UPDATE SET product_description = excluded.product_description, \
         icp_description = excluded.icp_description, sender_name = excluded.sender_name, \
         campaign_id = excluded.campaign_id, updated_at = excluded.updated_at \
         RETURNING ",
        columns_sql!()
    );
    let row = sqlx::query(sql)
        .bind(user_id)
        .bind(answers.product_description)
        .bind(answers.icp_description)
        .bind(answers.sender_name)
        .bind(answers.campaign_id)
        .bind(now)
        .fetch_one(conn)
        .await?;
    from_row(&row)
}
