//! Billing: a user's Stripe customer and subscription (columns of `users`),
//! the Stripe events applied (`stripe_events`) and each subscription's newest
//! applied state (`stripe_subscriptions`).

use sqlx::{Any, AnyConnection, Row, Transaction};

use super::{Backend, Db};

/// A user's billing state.
#[derive(Debug, Clone)]
pub struct BillingAccount {
    /// The user.
    pub user_id: String,
    /// Their address (for Stripe and the dunning mail).
    pub email: String,
    /// Their name.
    pub name: String,
    /// `users.subscription_plan`.
    pub plan: String,
    /// `inactive`, `active`, `trialing`, `past_due`, `canceled`...
    pub status: String,
    /// `cus_...` once a first checkout created it.
    pub customer_id: Option<String>,
    /// `sub_...` while subscribed.
    pub subscription_id: Option<String>,
    /// The paid period's end (unix seconds).
    pub period_end: Option<i64>,
}

impl BillingAccount {
    /// Whether a subscription runs (paid, on trial or being retried): a new
    /// checkout would make a second one.
    pub fn is_subscribed(&self) -> bool {
        self.subscription_id.is_some()
            && matches!(self.status.as_str(), "active" | "trialing" | "past_due")
    }
}

fn account_of(row: &sqlx::any::AnyRow) -> Result<BillingAccount, sqlx::Error> {
    Ok(BillingAccount {
        user_id: row.try_get("id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        plan: row.try_get("subscription_plan")?,
        status: row.try_get("subscription_status")?,
        customer_id: row.try_get("stripe_customer_id")?,
        subscription_id: row.try_get("stripe_subscription_id")?,
        period_end: row.try_get("subscription_period_end")?,
    })
}

/// The billing state of `user_id`.
pub async fn account(
    conn: &mut AnyConnection,
    user_id: &str,
) -> Result<Option<BillingAccount>, sqlx::Error> {
    const SQL: &str = "SELECT id, email, name, subscription_plan, subscription_status, \
         stripe_customer_id, stripe_subscription_id, subscription_period_end FROM users WHERE id = $1";
    let row = sqlx::query(SQL).bind(user_id).fetch_optional(conn).await?;
    row.as_ref().map(account_of).transpose()
}

/// The user whose Stripe customer is `customer`.
pub async fn account_by_customer(
    conn: &mut AnyConnection,
    customer: &str,
) -> Result<Option<BillingAccount>, sqlx::Error> {
    const SQL: &str = "SELECT id, email, name, subscription_plan, subscription_status, \
         stripe_customer_id, stripe_subscription_id, subscription_period_end FROM users \
         WHERE stripe_customer_id = $1";
    let row = sqlx::query(SQL).bind(customer).fetch_optional(conn).await?;
    row.as_ref().map(account_of).transpose()
}

/// A write transaction: in SQLite `BEGIN IMMEDIATE` (the write lock at once,
/// so a transaction that reads first never fails to upgrade).
pub async fn begin_write(db: &Db) -> Result<Transaction<'static, Any>, sqlx::Error> {
    match db.backend {
        Backend::Postgres => db.pool.begin().await,
        Backend::Sqlite => db.pool.begin_with("BEGIN IMMEDIATE").await,
    }
}

/// Opens the transaction in which a user's first Stripe customer is made:
/// the user's row locked in PostgreSQL (`FOR UPDATE`), the write lock taken in
/// SQLite, so concurrent first checkouts wait here and the later ones find
/// the customer the first stored. Returns the customer already stored, if
/// any; `None` for the outer option when the user does not exist.
pub async fn lock_customer(
    db: &Db,
    user_id: &str,
) -> Result<Option<(Transaction<'static, Any>, Option<String>)>, sqlx::Error> {
    let (mut tx, sql) = match db.backend {
        Backend::Postgres => (
            db.pool.begin().await?,
            "SELECT stripe_customer_id FROM users WHERE id = $1 FOR UPDATE",
        ),
        Backend::Sqlite => (
            db.pool.begin_with("BEGIN IMMEDIATE").await?,
            "SELECT stripe_customer_id FROM users WHERE id = $1",
        ),
    };
    let row = sqlx::query(sql)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
    match row {
        None => Ok(None),
        Some(row) => {
            let customer: Option<String> = row.try_get("stripe_customer_id")?;
            Ok(Some((tx, customer)))
        }
    }
}

/// Stores the user's Stripe customer (only if none is stored).
pub async fn set_customer(
    conn: &mut AnyConnection,
    user_id: &str,
    customer: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE users SET stripe_customer_id = $1, updated_at = $2 \
         WHERE id = $3 AND stripe_customer_id IS NULL",
    )
    .bind(customer)
    .bind(now)
    .bind(user_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records the Stripe event `id` as applied; `false` when it already was
/// (a redelivery). Call inside the transaction of its effect: in PostgreSQL a
/// concurrent delivery of the same event waits on the key until this one
/// commits (then sees it) or rolls back (then applies it itself).
pub async fn record_event(
    conn: &mut AnyConnection,
    id: &str,
    event_type: &str,
    created: i64,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let res = sqlx::query(
        "INSERT INTO stripe_events (id, event_type, created, processed_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(event_type)
    .bind(created)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// The `created` time of the newest event applied to subscription `id`.
pub async fn subscription_last_event(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<i64>, sqlx::Error> {
    let row = sqlx::query("SELECT last_event_created FROM stripe_subscriptions WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.map(|r| r.try_get("last_event_created")).transpose()
}

/// A subscription's state as one event tells it.
#[derive(Debug, Clone)]
pub struct SubscriptionState<'a> {
    /// `sub_...`.
    pub id: &'a str,
    /// Its user.
    pub user_id: &'a str,
    /// Stripe's status.
    pub status: &'a str,
    /// Its price.
    pub price_id: Option<&'a str>,
    /// The plan that price is.
    pub plan: &'a str,
    /// The paid period's end.
    pub period_end: Option<i64>,
    /// The event's `created`.
    pub event_created: i64,
}

/// Stores `state` as the subscription's newest, unless an event created
/// later was applied already; returns whether it was stored. The condition is
/// in the same statement: in PostgreSQL a concurrent delivery about the same
/// subscription waits on its row and is compared with what that one wrote.
pub async fn upsert_subscription(
    conn: &mut AnyConnection,
    state: &SubscriptionState<'_>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let res = sqlx::query(
        "INSERT INTO stripe_subscriptions (id, user_id, status, price_id, plan, current_period_end, \
         last_event_created, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id, status = excluded.status, \
         price_id = excluded.price_id, plan = excluded.plan, \
         current_period_end = excluded.current_period_end, \
         last_event_created = excluded.last_event_created, updated_at = excluded.updated_at \
         WHERE stripe_subscriptions.last_event_created <= excluded.last_event_created",
    )
    .bind(state.id)
    .bind(state.user_id)
    .bind(state.status)
    .bind(state.price_id)
    .bind(state.plan)
    .bind(state.period_end)
    .bind(state.event_created)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// Puts the user on `plan` with `status` and `subscription` (`None` clears it).
pub async fn set_subscription(
    conn: &mut AnyConnection,
    user_id: &str,
    plan: &str,
    status: &str,
    subscription: Option<&str>,
    period_end: Option<i64>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE users SET subscription_plan = $1, subscription_status = $2, \
         stripe_subscription_id = $3, subscription_period_end = $4, updated_at = $5 WHERE id = $6",
    )
    .bind(plan)
    .bind(status)
    .bind(subscription)
    .bind(period_end)
    .bind(now)
    .bind(user_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Links `subscription` to the user when none is linked yet (a completed
/// checkout whose subscription events have not arrived).
pub async fn link_subscription(
    conn: &mut AnyConnection,
    user_id: &str,
    subscription: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE users SET stripe_subscription_id = $1, updated_at = $2 \
         WHERE id = $3 AND stripe_subscription_id IS NULL",
    )
    .bind(subscription)
    .bind(now)
    .bind(user_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Sets the status of the user's subscription `subscription` (when it is
/// still theirs) from `from` to `to`; returns whether it changed.
pub async fn set_status(
    conn: &mut AnyConnection,
    user_id: &str,
    subscription: &str,
    from: &[&str],
    to: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    // Two fixed lists cover every caller: a bind per status keeps it literal.
    let (a, b, c) = match from {
        [a] => (*a, *a, *a),
        [a, b] => (*a, *b, *b),
        [a, b, c, ..] => (*a, *b, *c),
        [] => return Ok(false),
    };
    let res = sqlx::query(
        "UPDATE users SET subscription_status = $1, updated_at = $2 \
         WHERE id = $3 AND stripe_subscription_id = $4 AND subscription_status IN ($5, $6, $7)",
    )
    .bind(to)
    .bind(now)
    .bind(user_id)
    .bind(subscription)
    .bind(a)
    .bind(b)
    .bind(c)
    .execute(conn)
    .await?;
    Ok(res.rows_affected() == 1)
}
