//! The `jobs` aggregate: what a background job is for its owner — kind,
//! payload, state, attempts, progress, last error.
//!
//! The queue and its leases are apalis's (its own tables); a row here is the
//! job's owner-facing record, written by the worker apalis hands the job to:
//! [`start`] marks it running by that worker (`lease_owner`), and every later
//! write checks `lease_owner`, so a worker that lost the job (its lease passed
//! and another worker took it over) writes nothing. `GET /api/jobs/{id}`
//! reads it in one statement with the owner filter ([`find_owned`]).

use serde::Serialize;
use sqlx::{AnyConnection, AnyPool, Row, any::AnyRow};

use super::new_id;

/// A job as the API and the runner see it.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    /// Text UUID.
    pub id: String,
    /// The owner: the user the work is done for.
    #[serde(skip)]
    pub user_id: String,
    /// What to do (the handler's name).
    pub kind: String,
    /// The handler's input (JSON).
    #[serde(skip)]
    pub payload: serde_json::Value,
    /// `queued`, `running`, `succeeded`, `failed`.
    pub state: String,
    /// How many times a runner claimed it.
    pub attempts: i64,
    /// The most claims before it fails for good.
    pub max_attempts: i64,
    /// Items done so far.
    pub progress_done: i64,
    /// Items in all (0 while unknown).
    pub progress_total: i64,
    /// The last failure, in words fit for the owner.
    pub last_error: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    /// Unix seconds, once succeeded or failed.
    pub finished_at: Option<i64>,
}

macro_rules! columns_sql {
    () => {
        "id, user_id, kind, payload, state, attempts, max_attempts, progress_done, \
     progress_total, last_error, created_at, updated_at, finished_at"
    };
}

fn from_row(row: &AnyRow) -> Result<Job, sqlx::Error> {
    let payload: String = row.try_get("payload")?;
    Ok(Job {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        kind: row.try_get("kind")?,
        payload: serde_json::from_str(&payload).map_err(|e| sqlx::Error::ColumnDecode {
            index: "payload".into(),
            source: Box::new(e),
        })?,
        state: row.try_get("state")?,
        attempts: row.try_get("attempts")?,
        max_attempts: row.try_get("max_attempts")?,
        progress_done: row.try_get("progress_done")?,
        progress_total: row.try_get("progress_total")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

/// What a new job is.
#[derive(Debug, Clone)]
pub struct NewJob<'a> {
    /// The owner.
    pub user_id: &'a str,
    /// The handler's name.
    pub kind: &'a str,
    /// The handler's input.
    pub payload: &'a serde_json::Value,
    /// The most claims before it fails for good (at least 1).
    pub max_attempts: i64,
    /// Not before (unix seconds).
    pub run_at: i64,
}

/// Queues a job; returns it.
pub async fn enqueue(pool: &AnyPool, new: NewJob<'_>, now: i64) -> Result<Job, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    insert(&mut conn, new, now).await
}

/// Queues a job on `conn` (in the caller's transaction); returns it.
pub async fn insert(
    conn: &mut AnyConnection,
    new: NewJob<'_>,
    now: i64,
) -> Result<Job, sqlx::Error> {
    let sql = concat!(
        "INSERT INTO jobs (id, user_id, kind, payload, max_attempts, run_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING ",
        columns_sql!()
    );
    let row = sqlx::query(sql)
        .bind(new_id())
        .bind(new.user_id)
        .bind(new.kind)
        .bind(new.payload.to_string())
        .bind(new.max_attempts.max(1))
        .bind(new.run_at)
        .bind(now)
        .fetch_one(conn)
        .await?;
    from_row(&row)
}

/// The job `id` if `user_id` owns it (one statement: another user's job is
/// exactly as absent as a missing one).
pub async fn find_owned(
    pool: &AnyPool,
    id: &str,
    user_id: &str,
) -> Result<Option<Job>, sqlx::Error> {
    let sql = concat!(
        "SELECT ",
        columns_sql!(),
        " FROM jobs WHERE id = $1 AND user_id = $2"
    );
    let row = sqlx::query(sql)
        .bind(id)
        .bind(user_id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// The job `id`, whoever owns it (for the runner and tests).
pub async fn find(pool: &AnyPool, id: &str) -> Result<Option<Job>, sqlx::Error> {
    let sql = concat!("SELECT ", columns_sql!(), " FROM jobs WHERE id = $1");
    let row = sqlx::query(sql).bind(id).fetch_optional(pool).await?;
    row.as_ref().map(from_row).transpose()
}

/// Starts a run of job `id` for worker `owner` (the job engine, apalis, has
/// handed it the job under its lease): marks it `running` by `owner` and
/// counts the attempt. A job left `running` by a worker that died is taken
/// over (its lease in apalis passed); `owner` is the fence: writes of the
/// former worker (which check `lease_owner`) no longer land. `None` when the
/// job is unknown or has ended.
pub async fn start(
    pool: &AnyPool,
    id: &str,
    owner: &str,
    now: i64,
) -> Result<Option<Job>, sqlx::Error> {
    let sql = concat!(
        "UPDATE jobs SET state = 'running', lease_owner = $1, lease_until = NULL, \
         attempts = attempts + 1, updated_at = $2 \
         WHERE id = $3 AND state IN ('queued', 'running') RETURNING ",
        columns_sql!()
    );
    let row = sqlx::query(sql)
        .bind(owner)
        .bind(now)
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Fails a job that never reached the job engine's queue.
pub async fn fail_unqueued(
    pool: &AnyPool,
    id: &str,
    error: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE jobs SET state = 'failed', last_error = $1, finished_at = $2, updated_at = $2 \
         WHERE id = $3 AND state = 'queued'",
    )
    .bind(error)
    .bind(now)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Records the owner-facing reason of a failed attempt that will be tried
/// again, on a job `owner` still runs.
pub async fn note_error(
    pool: &AnyPool,
    id: &str,
    owner: &str,
    error: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let res = sqlx::query(
        "UPDATE jobs SET last_error = $1, updated_at = $2 \
         WHERE id = $3 AND lease_owner = $4 AND state = 'running'",
    )
    .bind(error)
    .bind(now)
    .bind(id)
    .bind(owner)
    .execute(pool)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// Records progress of a job `owner` holds.
pub async fn progress(
    pool: &AnyPool,
    id: &str,
    owner: &str,
    done: i64,
    total: i64,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let res = sqlx::query(
        "UPDATE jobs SET progress_done = $1, progress_total = $2, updated_at = $3 \
         WHERE id = $4 AND lease_owner = $5 AND state = 'running'",
    )
    .bind(done)
    .bind(total)
    .bind(now)
    .bind(id)
    .bind(owner)
    .execute(pool)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// How a run ended, as the row records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish<'a> {
    /// Done.
    Succeeded,
    /// Failed for good, with the owner-facing reason.
    Failed(&'a str),
    /// Failed for now: queued again for `run_at`, with the reason.
    Retry {
        /// The reason.
        error: &'a str,
        /// Unix seconds.
        run_at: i64,
    },
    /// Interrupted by shutdown: queued again at once, the attempt not counted.
    Released,
}

/// Ends the run of a job `owner` holds and clears its lease. False when the
/// lease was lost (another runner took the job over): nothing is written.
pub async fn finish(
    pool: &AnyPool,
    id: &str,
    owner: &str,
    finish: Finish<'_>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let (state, error, run_at, finished_at, uncount) = match finish {
        Finish::Succeeded => ("succeeded", None, None, Some(now), 0_i64),
        Finish::Failed(e) => ("failed", Some(e), None, Some(now), 0),
        Finish::Retry { error, run_at } => ("queued", Some(error), Some(run_at), None, 0),
        Finish::Released => ("queued", None, Some(now), None, 1),
    };
    let res = sqlx::query(
        "UPDATE jobs SET state = $1, last_error = COALESCE($2, last_error), \
         run_at = COALESCE($3, run_at), finished_at = $4, attempts = attempts - $5, \
         lease_owner = NULL, lease_until = NULL, updated_at = $6 \
         WHERE id = $7 AND lease_owner = $8 AND state = 'running'",
    )
    .bind(state)
    .bind(error)
    .bind(run_at)
    .bind(finished_at)
    .bind(uncount)
    .bind(now)
    .bind(id)
    .bind(owner)
    .execute(pool)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// A queued job the orphan sweep looks at: its id and kind.
#[derive(Debug, Clone)]
pub struct QueuedJob {
    /// The job's id.
    pub id: String,
    /// Its kind (which apalis queue it belongs on).
    pub kind: String,
}

/// Up to `limit` jobs still `queued` whose row has not changed since before
/// `before` (unix seconds), oldest first: candidates for the orphan sweep.
pub async fn queued_before(
    pool: &AnyPool,
    before: i64,
    limit: i64,
) -> Result<Vec<QueuedJob>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, kind FROM jobs WHERE state = 'queued' AND updated_at < $1 \
         ORDER BY updated_at, id LIMIT $2",
    )
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(QueuedJob {
                id: row.try_get("id")?,
                kind: row.try_get("kind")?,
            })
        })
        .collect()
}
