//! The `server_secrets` table: secrets the server draws once per database
//! (in development, the JWT signing secret when `JWT_SECRET` is unset).

use sqlx::AnyPool;

/// The secret stored under `name`; when there is none yet, stores `candidate`
/// and returns it. Of several instances starting at once, the first insert
/// wins and every instance returns that value.
pub async fn get_or_create(
    pool: &AnyPool,
    name: &str,
    candidate: &str,
    now: i64,
) -> Result<String, sqlx::Error> {
    sqlx::query(
        "INSERT INTO server_secrets (name, value, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(candidate)
    .bind(now)
    .execute(pool)
    .await?;
    sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = $1")
        .bind(name)
        .fetch_one(pool)
        .await
}
