//! apalis's own task table, read only: whether apalis holds a task for one
//! of koldly's jobs. koldly pushes each job's task with the job's id as
//! apalis's idempotency key (unique per queue in apalis's table), so that
//! key, not the task's encoded bytes, answers the question.

use super::QueuePool;

const POSTGRES_HOLDS: &str =
    "SELECT COUNT(*) FROM apalis.jobs WHERE job_type = $1 AND idempotency_key = $2";
const SQLITE_HOLDS: &str = "SELECT COUNT(*) FROM Jobs WHERE job_type = ?1 AND idempotency_key = ?2";

/// Whether apalis's queue `queue` holds a task (in any state: pending,
/// running, done…) keyed `key`.
pub(crate) async fn holds(pool: &QueuePool, queue: &str, key: &str) -> Result<bool, sqlx::Error> {
    let count: i64 = match pool {
        QueuePool::Postgres(pool) => {
            sqlx::query_scalar(POSTGRES_HOLDS)
                .bind(queue)
                .bind(key)
                .fetch_one(pool)
                .await?
        }
        QueuePool::Sqlite(pool) => {
            sqlx::query_scalar(SQLITE_HOLDS)
                .bind(queue)
                .bind(key)
                .fetch_one(pool)
                .await?
        }
    };
    Ok(count > 0)
}
