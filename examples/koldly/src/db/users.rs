//! The `users` aggregate.

use serde::Serialize;
use sqlx::{AnyPool, Row, any::AnyRow};

use super::new_id;

/// A user as the API shows it (the password hash is never serialized).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct User {
    /// Text UUID.
    pub id: String,
    /// As given at signup.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Argon2id PHC string; `None` for accounts created through OAuth.
    #[serde(skip)]
    pub password_hash: Option<String>,
    /// Google's subject id when linked.
    #[serde(skip)]
    pub google_id: Option<String>,
    /// Whether the address was proven.
    pub email_verified: bool,
    /// `free`, `starter`, `pro`...
    pub subscription_plan: String,
    /// `inactive`, `active`, `past_due`, `canceled`.
    pub subscription_status: String,
    /// Monthly sending quota of the plan.
    pub monthly_email_quota: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// The version every session token must carry (see [`end_sessions`]).
    #[serde(skip)]
    pub session_version: i64,
}

macro_rules! columns_sql {
    () => {
        "id, email, name, password_hash, google_id, email_verified, \
     subscription_plan, subscription_status, monthly_email_quota, created_at, session_version"
    };
}

fn from_row(row: &AnyRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        password_hash: row.try_get("password_hash")?,
        google_id: row.try_get("google_id")?,
        email_verified: row.try_get::<i64, _>("email_verified")? != 0,
        subscription_plan: row.try_get("subscription_plan")?,
        subscription_status: row.try_get("subscription_status")?,
        monthly_email_quota: row.try_get("monthly_email_quota")?,
        created_at: row.try_get("created_at")?,
        session_version: row.try_get("session_version")?,
    })
}

/// What a new account starts with.
#[derive(Debug)]
pub struct NewUser<'a> {
    /// Address (stored lowercased).
    pub email: &'a str,
    /// Display name.
    pub name: &'a str,
    /// Hash, or `None` for OAuth.
    pub password_hash: Option<&'a str>,
    /// Google subject id, for OAuth.
    pub google_id: Option<&'a str>,
    /// Proven already (OAuth with a verified address).
    pub email_verified: bool,
}

/// Inserts a user. A taken address fails with a unique violation
/// (`sqlx::Error::Database` whose `is_unique_violation()` is true).
pub async fn insert(pool: &AnyPool, new: NewUser<'_>, now: i64) -> Result<User, sqlx::Error> {
    let sql = concat!(
        "INSERT INTO users (id, email, name, password_hash, google_id, email_verified, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING ",
        columns_sql!()
    );
    let row = sqlx::query(sql)
        .bind(new_id())
        .bind(new.email.to_lowercase())
        .bind(new.name)
        .bind(new.password_hash)
        .bind(new.google_id)
        .bind(i64::from(new.email_verified))
        .bind(now)
        .fetch_one(pool)
        .await?;
    from_row(&row)
}

/// The user with this address, compared case-insensitively.
pub async fn find_by_email(pool: &AnyPool, email: &str) -> Result<Option<User>, sqlx::Error> {
    let sql = concat!(
        "SELECT ",
        columns_sql!(),
        " FROM users WHERE lower(email) = lower($1)"
    );
    let row = sqlx::query(sql).bind(email).fetch_optional(pool).await?;
    row.as_ref().map(from_row).transpose()
}

/// The user with this id.
pub async fn find_by_id(pool: &AnyPool, id: &str) -> Result<Option<User>, sqlx::Error> {
    let sql = concat!("SELECT ", columns_sql!(), " FROM users WHERE id = $1");
    let row = sqlx::query(sql).bind(id).fetch_optional(pool).await?;
    row.as_ref().map(from_row).transpose()
}

/// The user linked to this Google subject id.
pub async fn find_by_google_id(
    pool: &AnyPool,
    google_id: &str,
) -> Result<Option<User>, sqlx::Error> {
    let sql = concat!(
        "SELECT ",
        columns_sql!(),
        " FROM users WHERE google_id = $1"
    );
    let row = sqlx::query(sql)
        .bind(google_id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Links a Google account to an existing user and marks the address verified.
pub async fn link_google(
    pool: &AnyPool,
    id: &str,
    google_id: &str,
    now: i64,
) -> Result<User, sqlx::Error> {
    let sql = concat!(
        "UPDATE users SET google_id = $1, email_verified = 1, updated_at = $2 WHERE id = $3 RETURNING ",
        columns_sql!()
    );
    let row = sqlx::query(sql)
        .bind(google_id)
        .bind(now)
        .bind(id)
        .fetch_one(pool)
        .await?;
    from_row(&row)
}

/// Replaces the password hash and ends every session issued before.
pub async fn set_password<'c, E>(conn: E, id: &str, hash: &str, now: i64) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    sqlx::query(
        "UPDATE users SET password_hash = $1, session_version = session_version + 1, \
         updated_at = $2 WHERE id = $3",
    )
    .bind(hash)
    .bind(now)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks the address verified.
pub async fn mark_verified<'c, E>(conn: E, id: &str, now: i64) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    sqlx::query("UPDATE users SET email_verified = 1, updated_at = $1 WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Ends every session of the user issued so far (their tokens carry an older
/// session version); returns whether the user exists.
pub async fn end_sessions(pool: &AnyPool, id: &str, now: i64) -> Result<bool, sqlx::Error> {
    let res = sqlx::query(
        "UPDATE users SET session_version = session_version + 1, updated_at = $1 WHERE id = $2",
    )
    .bind(now)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(res.rows_affected() == 1)
}
