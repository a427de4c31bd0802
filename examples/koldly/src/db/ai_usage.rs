//! The language model's bookkeeping: the monthly budget per user
//! (`ai_budgets`), one usage row per call (`ai_usage`) and the answer cache
//! (`ai_cache`). Amounts are microcents (1e-6 cent).
//!
//! A call first [`reserve`]s its most possible cost: one conditional `UPDATE`
//! that adds the reservation only while settled spend plus open reservations
//! plus it stay within the budget. PostgreSQL re-evaluates that condition on
//! the locked row and SQLite runs the transaction as one writer, so concurrent
//! calls cannot together pass the budget. [`settle`] then replaces the
//! reservation by the real cost (or [`release`] drops it).

use sqlx::{AnyPool, Row};

use super::new_id;

/// What a call is about to spend.
#[derive(Debug, Clone, Copy)]
pub struct Reservation<'a> {
    /// The user who pays.
    pub user_id: &'a str,
    /// The job the call is part of, if any.
    pub job_id: Option<&'a str>,
    /// `YYYY-MM`.
    pub month: &'a str,
    /// The task's name.
    pub task: &'a str,
    /// The model called.
    pub model: &'a str,
    /// The most the call can cost.
    pub amount: i64,
    /// The month's budget.
    pub budget: i64,
}

/// Reserves `r.amount` of the month's budget; returns the usage row's id, or
/// `None` when the budget cannot cover it (nothing is written then).
pub async fn reserve(
    pool: &AnyPool,
    r: Reservation<'_>,
    now: i64,
) -> Result<Option<String>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO ai_budgets (user_id, month) VALUES ($1, $2) \
         ON CONFLICT (user_id, month) DO NOTHING",
    )
    .bind(r.user_id)
    .bind(r.month)
    .execute(&mut *tx)
    .await?;
    let reserved = sqlx::query(
        "UPDATE ai_budgets SET reserved_microcents = reserved_microcents + $1 \
         WHERE user_id = $2 AND month = $3 \
         AND spent_microcents + reserved_microcents + $1 <= $4",
    )
    .bind(r.amount)
    .bind(r.user_id)
    .bind(r.month)
    .bind(r.budget)
    .execute(&mut *tx)
    .await?;
    if reserved.rows_affected() != 1 {
        tx.rollback().await?;
        return Ok(None);
    }
    let id = new_id();
    sqlx::query(
        "INSERT INTO ai_usage (id, user_id, job_id, month, task, model, reserved_microcents, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&id)
    .bind(r.user_id)
    .bind(r.job_id)
    .bind(r.month)
    .bind(r.task)
    .bind(r.model)
    .bind(r.amount)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(id))
}

/// What a call really used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spend {
    /// Prompt tokens.
    pub input_tokens: i64,
    /// Answer tokens.
    pub output_tokens: i64,
    /// Their cost.
    pub cost: i64,
}

/// Replaces the reservation `usage_id` by what the call cost; `outcome` says
/// how it ended (`ok`, `invalid_answer`, `timeout`...). Settling twice is a
/// no-op.
pub async fn settle(
    pool: &AnyPool,
    usage_id: &str,
    spend: Spend,
    outcome: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    close(pool, usage_id, "settled", spend, outcome, now).await
}

/// Drops the reservation `usage_id`: the call cost nothing (the provider
/// refused it).
pub async fn release(
    pool: &AnyPool,
    usage_id: &str,
    outcome: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    close(pool, usage_id, "released", Spend::default(), outcome, now).await
}

async fn close(
    pool: &AnyPool,
    usage_id: &str,
    state: &str,
    spend: Spend,
    outcome: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query(
        "UPDATE ai_usage SET state = $1, cost_microcents = $2, input_tokens = $3, \
         output_tokens = $4, outcome = $5, settled_at = $6 \
         WHERE id = $7 AND state = 'reserved' \
         RETURNING user_id, month, reserved_microcents",
    )
    .bind(state)
    .bind(spend.cost)
    .bind(spend.input_tokens)
    .bind(spend.output_tokens)
    .bind(outcome)
    .bind(now)
    .bind(usage_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        tx.rollback().await?;
        return Ok(());
    };
    let user_id: String = row.try_get("user_id")?;
    let month: String = row.try_get("month")?;
    let reserved: i64 = row.try_get("reserved_microcents")?;
    sqlx::query(
        "UPDATE ai_budgets SET reserved_microcents = reserved_microcents - $1, \
         spent_microcents = spent_microcents + $2 WHERE user_id = $3 AND month = $4",
    )
    .bind(reserved)
    .bind(spend.cost)
    .bind(&user_id)
    .bind(&month)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// A user's month: settled spend and open reservations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MonthBudget {
    /// Settled cost.
    pub spent: i64,
    /// Reserved by calls still running.
    pub reserved: i64,
}

/// The month's spend and reservations of `user_id`.
pub async fn month(pool: &AnyPool, user_id: &str, month: &str) -> Result<MonthBudget, sqlx::Error> {
    let row = sqlx::query(
        "SELECT spent_microcents, reserved_microcents FROM ai_budgets \
         WHERE user_id = $1 AND month = $2",
    )
    .bind(user_id)
    .bind(month)
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        Some(r) => MonthBudget {
            spent: r.try_get("spent_microcents")?,
            reserved: r.try_get("reserved_microcents")?,
        },
        None => MonthBudget::default(),
    })
}

/// One call as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    /// `reserved`, `settled`, `released`.
    pub state: String,
    /// The task's name.
    pub task: String,
    /// The model.
    pub model: String,
    /// The reservation.
    pub reserved: i64,
    /// What it cost.
    pub spend: Spend,
    /// How it ended.
    pub outcome: Option<String>,
    /// The job it was part of.
    pub job_id: Option<String>,
}

/// The calls of `user_id`, oldest first.
pub async fn calls(pool: &AnyPool, user_id: &str) -> Result<Vec<UsageRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT state, task, model, reserved_microcents, cost_microcents, input_tokens, \
         output_tokens, outcome, job_id FROM ai_usage WHERE user_id = $1 ORDER BY id",
    )
    .bind(user_id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(UsageRow {
                state: r.try_get("state")?,
                task: r.try_get("task")?,
                model: r.try_get("model")?,
                reserved: r.try_get("reserved_microcents")?,
                spend: Spend {
                    input_tokens: r.try_get("input_tokens")?,
                    output_tokens: r.try_get("output_tokens")?,
                    cost: r.try_get("cost_microcents")?,
                },
                outcome: r.try_get("outcome")?,
                job_id: r.try_get("job_id")?,
            })
        })
        .collect()
}

/// The cached answer for `input_hash`, if `user_id` has one.
pub async fn cached(
    pool: &AnyPool,
    user_id: &str,
    input_hash: &str,
) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query("SELECT output FROM ai_cache WHERE user_id = $1 AND input_hash = $2")
        .bind(user_id)
        .bind(input_hash)
        .fetch_optional(pool)
        .await?;
    row.map(|r| r.try_get("output")).transpose()
}

/// Caches a validated answer (the first one stored wins).
pub async fn cache(
    pool: &AnyPool,
    user_id: &str,
    input_hash: &str,
    task: &str,
    output: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO ai_cache (user_id, input_hash, task, output, created_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, input_hash) DO NOTHING",
    )
    .bind(user_id)
    .bind(input_hash)
    .bind(task)
    .bind(output)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}
