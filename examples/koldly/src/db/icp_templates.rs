//! The `icp_templates` aggregate: reusable ideal-customer profiles.

use serde::Serialize;
use sqlx::{AnyConnection, AnyPool, Row, any::AnyRow};

use super::new_id;
use crate::pagination::{Cursor, PageRequest};

/// A template as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IcpTemplate {
    /// Text UUID.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The profile, in words; copied into campaigns created from it.
    pub description: Option<String>,
    /// Industry.
    pub industry: Option<String>,
    /// Company size, e.g. `11-50`.
    pub company_size: Option<String>,
    /// Job titles targeted.
    pub job_titles: Vec<String>,
    /// Their pains.
    pub pain_points: Vec<String>,
    /// What the product does for them.
    pub value_proposition: Option<String>,
    /// Listed first.
    pub is_favorite: bool,
    /// Campaigns created from it.
    pub use_count: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

impl IcpTemplate {
    /// Its position in lists (favourites first).
    pub fn cursor(&self) -> Cursor {
        Cursor {
            group: i64::from(self.is_favorite),
            created_at: self.created_at,
            id: self.id.clone(),
        }
    }
}

/// A template's content (validated); for updates, `None` keeps a column.
#[derive(Debug, Clone, Default)]
pub struct TemplateFields {
    /// Name.
    pub name: Option<String>,
    /// Description (`Some(None)` clears it).
    pub description: Option<Option<String>>,
    /// Industry (`Some(None)` clears it).
    pub industry: Option<Option<String>>,
    /// Company size (`Some(None)` clears it).
    pub company_size: Option<Option<String>>,
    /// Job titles.
    pub job_titles: Option<Vec<String>>,
    /// Pain points.
    pub pain_points: Option<Vec<String>>,
    /// Value proposition (`Some(None)` clears it).
    pub value_proposition: Option<Option<String>>,
    /// Favourite flag.
    pub is_favorite: Option<bool>,
}

macro_rules! columns_sql {
    () => {
        "id, name, description, industry, company_size, job_titles, pain_points, \
     value_proposition, is_favorite, use_count, created_at, updated_at"
    };
}

fn from_row(row: &AnyRow) -> Result<IcpTemplate, sqlx::Error> {
    let list = |column: &str| -> Result<Vec<String>, sqlx::Error> {
        let text: String = row.try_get(column)?;
        Ok(serde_json::from_str(&text).unwrap_or_default())
    };
    Ok(IcpTemplate {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        industry: row.try_get("industry")?,
        company_size: row.try_get("company_size")?,
        job_titles: list("job_titles")?,
        pain_points: list("pain_points")?,
        value_proposition: row.try_get("value_proposition")?,
        is_favorite: row.try_get::<i64, _>("is_favorite")? != 0,
        use_count: row.try_get("use_count")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn json_list(list: &[String]) -> String {
    serde_json::to_string(list).expect("a list of strings serializes")
}

/// Inserts a template of `user_id`; `fields.name` must be set.
pub async fn insert(
    conn: &mut AnyConnection,
    user_id: &str,
    fields: &TemplateFields,
    now: i64,
) -> Result<IcpTemplate, sqlx::Error> {
    let sql = concat!(
        "INSERT INTO icp_templates (id, user_id, name, description, industry, company_size, job_titles, \
         pain_points, value_proposition, is_favorite, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING ",
        columns_sql!()
    );
    let row = sqlx::query(sql)
        .bind(new_id())
        .bind(user_id)
        .bind(fields.name.as_deref().unwrap_or_default())
        .bind(fields.description.clone().flatten())
        .bind(fields.industry.clone().flatten())
        .bind(fields.company_size.clone().flatten())
        .bind(json_list(fields.job_titles.as_deref().unwrap_or_default()))
        .bind(json_list(fields.pain_points.as_deref().unwrap_or_default()))
        .bind(fields.value_proposition.clone().flatten())
        .bind(i64::from(fields.is_favorite.unwrap_or(false)))
        .bind(now)
        .fetch_one(conn)
        .await?;
    from_row(&row)
}

/// The template `id` of `user_id` (the owner in the same statement).
pub async fn find(
    conn: &mut AnyConnection,
    user_id: &str,
    id: &str,
) -> Result<Option<IcpTemplate>, sqlx::Error> {
    let sql = concat!(
        "SELECT ",
        columns_sql!(),
        " FROM icp_templates WHERE id = $1 AND user_id = $2"
    );
    let row = sqlx::query(sql)
        .bind(id)
        .bind(user_id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// One page of `user_id`'s templates: favourites first, then newest first.
pub async fn list(
    pool: &AnyPool,
    user_id: &str,
    page: &PageRequest,
) -> Result<Vec<IcpTemplate>, sqlx::Error> {
    let sql = match page.after {
        Some(_) => concat!(
            "SELECT ",
            columns_sql!(),
            " FROM icp_templates WHERE user_id = $1 \
             AND (is_favorite < $2 OR (is_favorite = $2 AND (created_at < $3 \
             OR (created_at = $3 AND id < $4)))) \
             ORDER BY is_favorite DESC, created_at DESC, id DESC LIMIT $5"
        ),
        None => concat!(
            "SELECT ",
            columns_sql!(),
            " FROM icp_templates WHERE user_id = $1 \
             ORDER BY is_favorite DESC, created_at DESC, id DESC LIMIT $2"
        ),
    };
    let mut query = sqlx::query(sql).bind(user_id);
    if let Some(cursor) = &page.after {
        query = query
            .bind(cursor.group)
            .bind(cursor.created_at)
            .bind(cursor.id.as_str());
    }
    let rows = query.bind(page.fetch()).fetch_all(pool).await?;
    rows.iter().map(from_row).collect()
}

/// Applies `fields` to template `id` of `user_id`; `None` when there is no such template.
pub async fn update(
    pool: &AnyPool,
    user_id: &str,
    id: &str,
    fields: &TemplateFields,
    now: i64,
) -> Result<Option<IcpTemplate>, sqlx::Error> {
    let flag = |v: &Option<Option<String>>| i64::from(v.is_some());
    let value = |v: &Option<Option<String>>| v.clone().flatten();
    let sql = concat!(
        "UPDATE icp_templates SET \
         name = COALESCE($1, name), \
         description = CASE WHEN $2 = 1 THEN $3 ELSE description END, \
         industry = CASE WHEN $4 = 1 THEN $5 ELSE industry END, \
         company_size = CASE WHEN $6 = 1 THEN $7 ELSE company_size END, \
         job_titles = COALESCE($8, job_titles), \
         pain_points = COALESCE($9, pain_points), \
         value_proposition = CASE WHEN $10 = 1 THEN $11 ELSE value_proposition END, \
         is_favorite = COALESCE($12, is_favorite), \
         updated_at = $13 \
         WHERE id = $14 AND user_id = $15 RETURNING ",
        columns_sql!()
    );
    let row = sqlx::query(sql)
        .bind(fields.name.as_deref())
        .bind(flag(&fields.description))
        .bind(value(&fields.description))
        .bind(flag(&fields.industry))
        .bind(value(&fields.industry))
        .bind(flag(&fields.company_size))
        .bind(value(&fields.company_size))
        .bind(fields.job_titles.as_deref().map(json_list))
        .bind(fields.pain_points.as_deref().map(json_list))
        .bind(flag(&fields.value_proposition))
        .bind(value(&fields.value_proposition))
        .bind(fields.is_favorite.map(i64::from))
        .bind(now)
        .bind(id)
        .bind(user_id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Deletes template `id` of `user_id` (campaigns created from it keep their
/// copy and lose the link); false when there is no such template.
pub async fn delete(pool: &AnyPool, user_id: &str, id: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM icp_templates WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user_id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Counts one use of template `id` of `user_id` and returns its description
/// (outer `None`: no such template).
pub async fn count_use(
    conn: &mut AnyConnection,
    user_id: &str,
    id: &str,
) -> Result<Option<Option<String>>, sqlx::Error> {
    let row = sqlx::query(
        "UPDATE icp_templates SET use_count = use_count + 1 \
         WHERE id = $1 AND user_id = $2 RETURNING description",
    )
    .bind(id)
    .bind(user_id)
    .fetch_optional(conn)
    .await?;
    row.map(|r| r.try_get("description")).transpose()
}
