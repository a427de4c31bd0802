//! The sending aggregate: a campaign's sending context (sender, time zone,
//! window, daily limit, active or paused) and its queue
//! (`campaign_sending_queue`).
//!
//! Queueing is idempotent: a generated email is queued once (a unique index
//! on `generated_email_id`, inserts `ON CONFLICT DO NOTHING`).
//!
//! A worker claims a row under a lease in one transaction that first locks
//! the campaign's context row (`FOR UPDATE SKIP LOCKED` on PostgreSQL; the
//! whole transaction is `BEGIN IMMEDIATE` on SQLite), then counts the
//! campaign's sends since the local midnight and takes the next due row: two
//! workers can neither send one row twice nor both pass the daily limit. A
//! claimed row is `sending` before the provider is called; every later write
//! names the lease owner. A `sending` row whose lease passed (its worker died
//! mid-call) becomes `unknown`: it is never sent again blindly.

use serde::Serialize;
use sqlx::{AnyPool, Row, any::AnyRow};

use super::{
    Backend, Db,
    answers::{self, Settled},
    new_id,
};
use crate::pagination::{Cursor, PageRequest};

/// How a started campaign sends.
#[derive(Debug, Clone, Serialize)]
pub struct Context {
    /// The campaign.
    pub campaign_id: String,
    /// The verified sender it sends from (`None` once deleted).
    pub sender_id: Option<String>,
    /// `active` or `paused`.
    pub status: String,
    /// IANA time zone of its days and window.
    pub timezone: String,
    /// Window start, local hour (0–23).
    pub window_start: i64,
    /// Window end, local hour (1–24), exclusive.
    pub window_end: i64,
    /// Sends per local day at most.
    pub daily_limit: i64,
    /// Whether a reply halts the prospect's follow-ups.
    pub stop_on_reply: bool,
    /// Whether follow-up drafts are approved without review.
    pub auto_approve_followups: bool,
    /// When it was first started (unix seconds).
    pub started_at: i64,
}

fn context_from_row(row: &AnyRow) -> Result<Context, sqlx::Error> {
    Ok(Context {
        campaign_id: row.try_get("campaign_id")?,
        sender_id: row.try_get("sender_id")?,
        status: row.try_get("status")?,
        timezone: row.try_get("timezone")?,
        window_start: row.try_get("send_window_start")?,
        window_end: row.try_get("send_window_end")?,
        daily_limit: row.try_get("daily_limit")?,
        stop_on_reply: row.try_get::<i64, _>("stop_on_reply")? != 0,
        auto_approve_followups: row.try_get::<i64, _>("auto_approve_followups")? != 0,
        started_at: row.try_get("started_at")?,
    })
}

/// What `POST /api/campaigns/{id}/send` asks for, validated.
#[derive(Debug, Clone)]
pub struct StartSending {
    /// The sender (must be the user's and verified).
    pub sender_id: String,
    /// Sends per local day.
    pub daily_limit: i64,
    /// Window start hour.
    pub window_start: i64,
    /// Window end hour.
    pub window_end: i64,
    /// IANA zone.
    pub timezone: String,
    /// Halt follow-ups on a reply.
    pub stop_on_reply: bool,
    /// Approve follow-up drafts without review.
    pub auto_approve_followups: bool,
}

/// Why a campaign could not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartRefused {
    /// No such campaign of this user.
    NoCampaign,
    /// The campaign is archived.
    Archived,
    /// No such sender of this user.
    NoSender,
    /// The sender has not opened its verification link.
    SenderUnverified,
}

/// Starts (or updates and resumes) sending of campaign `campaign_id` of
/// `user_id` and queues each approved first email not queued yet, due now.
/// One transaction; the owner is in every statement. Returns how many rows
/// this call queued.
pub async fn start(
    db: &Db,
    user_id: &str,
    campaign_id: &str,
    start: &StartSending,
    now: i64,
) -> Result<Result<u64, StartRefused>, sqlx::Error> {
    let mut tx = begin_write(db).await?;
    let archived: Option<Option<i64>> =
        sqlx::query_scalar("SELECT archived_at FROM campaigns WHERE id = $1 AND user_id = $2")
            .bind(campaign_id)
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
    match archived {
        None => return Ok(Err(StartRefused::NoCampaign)),
        Some(Some(_)) => return Ok(Err(StartRefused::Archived)),
        Some(None) => {}
    }
    let sender = sqlx::query(
        "SELECT email, name, reply_to, verified_at FROM senders WHERE id = $1 AND user_id = $2",
    )
    .bind(&start.sender_id)
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(sender) = sender else {
        return Ok(Err(StartRefused::NoSender));
    };
    if sender.try_get::<Option<i64>, _>("verified_at")?.is_none() {
        return Ok(Err(StartRefused::SenderUnverified));
    }
    let from_email: String = sender.try_get("email")?;
    let from_name: String = sender.try_get("name")?;
    let reply_to: Option<String> = sender.try_get("reply_to")?;
    sqlx::query(
        "INSERT INTO campaign_sending_context (campaign_id, from_name, from_email, reply_to, timezone, \
         send_window_start, send_window_end, daily_limit, updated_at, sender_id, status, stop_on_reply, \
         auto_approve_followups, started_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'active', $11, $12, $9) \
         ON CONFLICT (campaign_id) DO UPDATE SET from_name = excluded.from_name, \
         from_email = excluded.from_email, reply_to = excluded.reply_to, timezone = excluded.timezone, \
         send_window_start = excluded.send_window_start, send_window_end = excluded.send_window_end, \
         daily_limit = excluded.daily_limit, updated_at = excluded.updated_at, \
         sender_id = excluded.sender_id, status = 'active', stop_on_reply = excluded.stop_on_reply, \
         auto_approve_followups = excluded.auto_approve_followups",
    )
    .bind(campaign_id)
    .bind(&from_name)
    .bind(&from_email)
    .bind(reply_to)
    .bind(&start.timezone)
    .bind(start.window_start)
    .bind(start.window_end)
    .bind(start.daily_limit)
    .bind(now)
    .bind(&start.sender_id)
    .bind(i64::from(start.stop_on_reply))
    .bind(i64::from(start.auto_approve_followups))
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE campaigns SET status = 'active', updated_at = $1 WHERE id = $2 AND user_id = $3",
    )
    .bind(now)
    .bind(campaign_id)
    .bind(user_id)
    .execute(&mut *tx)
    .await?;
    let emails = sqlx::query(
        "SELECT e.id, e.prospect_id FROM generated_emails e JOIN campaigns c ON c.id = e.campaign_id \
         JOIN prospects p ON p.id = e.prospect_id \
         WHERE e.campaign_id = $1 AND c.user_id = $2 AND e.status = 'approved' \
         AND e.sequence_step_id IS NULL AND p.halted_at IS NULL \
         AND NOT EXISTS (SELECT 1 FROM campaign_sending_queue q WHERE q.generated_email_id = e.id) \
         ORDER BY e.created_at, e.id",
    )
    .bind(campaign_id)
    .bind(user_id)
    .fetch_all(&mut *tx)
    .await?;
    let domain = domain_of(&from_email);
    let mut queued = 0;
    for email in emails {
        let email_id: String = email.try_get("id")?;
        let prospect_id: String = email.try_get("prospect_id")?;
        queued += insert_row(
            &mut tx,
            campaign_id,
            &prospect_id,
            &email_id,
            None,
            domain,
            now,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Ok(queued))
}

/// A transaction that will write after reading: `BEGIN IMMEDIATE` on SQLite,
/// so it takes the write lock first instead of failing to upgrade a read lock
/// when another connection writes meanwhile.
pub async fn begin_write(db: &Db) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
    match db.backend {
        Backend::Postgres => db.pool.begin().await,
        Backend::Sqlite => db.pool.begin_with("BEGIN IMMEDIATE").await,
    }
}

/// The domain of an address (what follows its last `@`).
pub(crate) fn domain_of(email: &str) -> &str {
    email.rsplit_once('@').map_or("koldly.local", |(_, d)| d)
}

/// A fresh `Message-ID` (angle brackets included) at `domain`.
pub fn new_message_id(domain: &str) -> String {
    format!("<{}@{domain}>", uuid::Uuid::new_v4().simple())
}

async fn insert_row(
    conn: &mut sqlx::AnyConnection,
    campaign_id: &str,
    prospect_id: &str,
    email_id: &str,
    step_id: Option<&str>,
    domain: &str,
    now: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO campaign_sending_queue (id, campaign_id, prospect_id, generated_email_id, \
         sequence_step_id, status, scheduled_for, created_at, updated_at, message_id) \
         VALUES ($1, $2, $3, $4, $5, 'queued', $6, $6, $6, $7) ON CONFLICT (generated_email_id) DO NOTHING",
    )
    .bind(new_id())
    .bind(campaign_id)
    .bind(prospect_id)
    .bind(email_id)
    .bind(step_id)
    .bind(now)
    .bind(new_message_id(domain))
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// The sending context of campaign `campaign_id` of `user_id`: `Ok(None)`
/// when the campaign exists but was never started, `Err(())` when there is
/// no such campaign.
pub async fn context(
    pool: &AnyPool,
    user_id: &str,
    campaign_id: &str,
) -> Result<Result<Option<Context>, ()>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT c.id AS owned, ctx.campaign_id, ctx.sender_id, ctx.status, ctx.timezone, \
         ctx.send_window_start, ctx.send_window_end, ctx.daily_limit, ctx.stop_on_reply, \
         ctx.auto_approve_followups, ctx.started_at \
         FROM campaigns c LEFT JOIN campaign_sending_context ctx ON ctx.campaign_id = c.id \
         WHERE c.id = $1 AND c.user_id = $2",
    )
    .bind(campaign_id)
    .bind(user_id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(Err(())) };
    if row.try_get::<Option<String>, _>("campaign_id")?.is_none() {
        return Ok(Ok(None));
    }
    Ok(Ok(Some(context_from_row(&row)?)))
}

/// Pauses or resumes a started campaign of `user_id`; false when there is no
/// such started campaign (nothing changed).
pub async fn set_status(
    pool: &AnyPool,
    user_id: &str,
    campaign_id: &str,
    active: bool,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE campaign_sending_context SET status = $1, updated_at = $2 WHERE campaign_id = $3 \
         AND campaign_id IN (SELECT id FROM campaigns WHERE id = $3 AND user_id = $4)",
    )
    .bind(if active { "active" } else { "paused" })
    .bind(now)
    .bind(campaign_id)
    .bind(user_id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A campaign's queue as `GET .../sending` shows it.
#[derive(Debug, Clone, Copy, Default, Serialize, utoipa::ToSchema)]
pub struct QueueCounts {
    /// Waiting to be sent.
    pub queued: i64,
    /// Being handed to the provider now.
    pub sending: i64,
    /// Accepted by the provider.
    pub sent: i64,
    /// Refused for good.
    pub failed: i64,
    /// Cancelled (paused for good, suppressed, halted).
    pub cancelled: i64,
    /// A worker died mid-send and the provider cannot say: never resent.
    pub unknown: i64,
}

/// The counts by state of campaign `campaign_id`'s queue, its sends claimed
/// since `day_start`, and its last claim.
pub async fn counts(
    pool: &AnyPool,
    campaign_id: &str,
    day_start: i64,
) -> Result<(QueueCounts, i64, Option<i64>, Option<i64>), sqlx::Error> {
    let row = sqlx::query(
        "SELECT \
         COUNT(CASE WHEN status = 'queued' THEN 1 END) AS queued, \
         COUNT(CASE WHEN status = 'sending' THEN 1 END) AS sending, \
         COUNT(CASE WHEN status = 'sent' THEN 1 END) AS sent, \
         COUNT(CASE WHEN status = 'failed' THEN 1 END) AS failed, \
         COUNT(CASE WHEN status = 'cancelled' THEN 1 END) AS cancelled, \
         COUNT(CASE WHEN status = 'unknown' THEN 1 END) AS unknown, \
         COUNT(CASE WHEN status IN ('sending', 'sent', 'unknown') AND claimed_at >= $2 THEN 1 END) AS today, \
         MAX(claimed_at) AS last_claim, \
         MIN(CASE WHEN status = 'queued' THEN scheduled_for END) AS next_due \
         FROM campaign_sending_queue WHERE campaign_id = $1",
    )
    .bind(campaign_id)
    .bind(day_start)
    .fetch_one(pool)
    .await?;
    Ok((
        QueueCounts {
            queued: row.try_get("queued")?,
            sending: row.try_get("sending")?,
            sent: row.try_get("sent")?,
            failed: row.try_get("failed")?,
            cancelled: row.try_get("cancelled")?,
            unknown: row.try_get("unknown")?,
        },
        row.try_get("today")?,
        row.try_get("last_claim")?,
        row.try_get("next_due")?,
    ))
}

/// A campaign the worker may send for now.
#[derive(Debug, Clone)]
pub struct Sendable {
    /// Its context.
    pub context: Context,
}

/// Active, unarchived campaigns with a verified sender and a due row.
pub async fn sendable(pool: &AnyPool, now: i64, limit: i64) -> Result<Vec<Sendable>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT ctx.campaign_id, ctx.sender_id, ctx.status, ctx.timezone, ctx.send_window_start, \
         ctx.send_window_end, ctx.daily_limit, ctx.stop_on_reply, ctx.auto_approve_followups, \
         ctx.started_at FROM campaign_sending_context ctx \
         JOIN campaigns c ON c.id = ctx.campaign_id \
         JOIN senders s ON s.id = ctx.sender_id \
         WHERE ctx.status = 'active' AND c.archived_at IS NULL AND s.verified_at IS NOT NULL \
         AND EXISTS (SELECT 1 FROM campaign_sending_queue q WHERE q.campaign_id = ctx.campaign_id \
         AND q.status = 'queued' AND q.scheduled_for <= $1) \
         ORDER BY ctx.campaign_id LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Sendable {
                context: context_from_row(row)?,
            })
        })
        .collect()
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Row `id` is now `sending` under this worker's lease.
    Claimed(String),
    /// Another worker holds the campaign right now, or it stopped.
    Busy,
    /// Nothing is due, or the limit or window says not yet.
    NotNow,
}

/// Claims campaign `campaign_id`'s next due row for `owner` until
/// `lease_until`, when `may_send(sent_today, last_claim)` (evaluated under the
/// campaign's lock) allows. A due answer to a reply goes first and needs only
/// the campaign's daily limit not to be reached: neither the window nor the
/// spacing holds it back.
pub async fn claim(
    db: &Db,
    campaign_id: &str,
    owner: &str,
    now: i64,
    lease_until: i64,
    day_start: i64,
    may_send: impl FnOnce(i64, Option<i64>) -> bool,
) -> Result<Claim, sqlx::Error> {
    const LOCK_PG: &str = "SELECT ctx.daily_limit FROM campaign_sending_context ctx \
         WHERE ctx.campaign_id = $1 AND ctx.status = 'active' FOR UPDATE SKIP LOCKED";
    const LOCK_SQLITE: &str = "SELECT ctx.daily_limit FROM campaign_sending_context ctx \
         WHERE ctx.campaign_id = $1 AND ctx.status = 'active'";
    let (mut tx, lock) = match db.backend {
        Backend::Postgres => (db.pool.begin().await?, LOCK_PG),
        Backend::Sqlite => (db.pool.begin_with("BEGIN IMMEDIATE").await?, LOCK_SQLITE),
    };
    // The campaign must still be sendable inside the lock: paused, archived
    // or deleted since the worker listed it, it sends nothing.
    let daily_limit: Option<i64> = sqlx::query_scalar(lock)
        .bind(campaign_id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(daily_limit) = daily_limit else {
        tx.rollback().await?;
        return Ok(Claim::Busy);
    };
    let live: Option<String> = sqlx::query_scalar(
        "SELECT c.id FROM campaigns c WHERE c.id = $1 AND c.archived_at IS NULL",
    )
    .bind(campaign_id)
    .fetch_optional(&mut *tx)
    .await?;
    if live.is_none() {
        tx.rollback().await?;
        return Ok(Claim::Busy);
    }
    let row = sqlx::query(
        "SELECT COUNT(CASE WHEN status IN ('sending', 'sent', 'unknown') THEN 1 END) AS today, \
         MAX(claimed_at) AS last_claim FROM campaign_sending_queue \
         WHERE campaign_id = $1 AND claimed_at >= $2",
    )
    .bind(campaign_id)
    .bind(day_start)
    .fetch_one(&mut *tx)
    .await?;
    let today: i64 = row.try_get("today")?;
    let last_claim: Option<i64> = row.try_get("last_claim")?;
    // An answer to a reply is conversational: it goes on the next tick,
    // whatever the window or the spacing say, but it counts toward (and
    // waits for) the daily limit like any send.
    let answer: Option<String> = if today < daily_limit {
        sqlx::query_scalar(
            "SELECT id FROM campaign_sending_queue WHERE campaign_id = $1 AND status = 'queued' \
             AND reply_inbox_id IS NOT NULL AND scheduled_for <= $2 ORDER BY scheduled_for, id LIMIT 1",
        )
        .bind(campaign_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?
    } else {
        None
    };
    let next = match answer {
        Some(id) => Some(id),
        None if may_send(today, last_claim) => sqlx::query_scalar(
            "SELECT id FROM campaign_sending_queue WHERE campaign_id = $1 AND status = 'queued' \
                 AND scheduled_for <= $2 ORDER BY scheduled_for, id LIMIT 1",
        )
        .bind(campaign_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?,
        None => None,
    };
    let Some(id) = next else {
        tx.rollback().await?;
        return Ok(Claim::NotNow);
    };
    let done = sqlx::query(
        "UPDATE campaign_sending_queue SET status = 'sending', lease_owner = $1, lease_until = $2, \
         claimed_at = $3, attempts = attempts + 1, updated_at = $3 WHERE id = $4 AND status = 'queued'",
    )
    .bind(owner)
    .bind(lease_until)
    .bind(now)
    .bind(&id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(if done.rows_affected() == 1 {
        Claim::Claimed(id)
    } else {
        Claim::Busy
    })
}

/// A claimed row with everything its message needs.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Queue row id.
    pub id: String,
    /// The campaign's owner.
    pub user_id: String,
    /// The campaign.
    pub campaign_id: String,
    /// The prospect.
    pub prospect_id: String,
    /// Recipient address.
    pub to: String,
    /// The prospect's first name, if known.
    pub first_name: Option<String>,
    /// Subject.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
    /// The email's approval state now (`approved` to be sent).
    pub email_status: String,
    /// Sender address.
    pub from_email: String,
    /// Sender display name.
    pub from_name: String,
    /// Reply-To, if any.
    pub reply_to: Option<String>,
    /// Its `Message-ID`.
    pub message_id: String,
    /// Claims so far (this one included).
    pub attempts: i64,
    /// Whether it is a follow-up.
    pub is_follow_up: bool,
    /// For an answer to a reply: its threading headers.
    pub thread: Option<Thread>,
}

/// The threading of an answer to a prospect's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thread {
    /// `In-Reply-To`: the reply's Message-ID (angle brackets included).
    pub in_reply_to: Option<String>,
    /// `References`: the message the prospect answered, then their reply.
    pub references: Option<String>,
}

/// `id` in angle brackets (replies' ids are stored bare).
fn bracketed(id: &str) -> String {
    let id = id.trim();
    if id.starts_with('<') {
        id.to_owned()
    } else {
        format!("<{id}>")
    }
}

impl Outgoing {
    /// The state its email (or drafted answer) must still be in to go out.
    pub fn sendable_status(&self) -> &'static str {
        if self.thread.is_some() {
            "sending"
        } else {
            "approved"
        }
    }
}

/// Row `id` as claimed, joined with its email (or, for an answer, the
/// drafted answer, the reply and the message it answered), prospect and
/// sender.
pub async fn outgoing(pool: &AnyPool, id: &str) -> Result<Option<Outgoing>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT q.id, c.user_id, q.campaign_id, q.prospect_id, p.email AS to_email, p.first_name, \
         COALESCE(e.subject, i.draft_subject) AS subject, COALESCE(e.body, i.draft_body) AS body, \
         COALESCE(e.status, i.draft_status) AS email_status, ctx.from_email, ctx.from_name, \
         ctx.reply_to, q.message_id, q.attempts, q.sequence_step_id, q.reply_inbox_id, \
         r.provider_message_id AS reply_message_id, r.in_reply_to AS reply_in_reply_to, \
         answered.message_id AS answered_message_id \
         FROM campaign_sending_queue q JOIN campaigns c ON c.id = q.campaign_id \
         JOIN prospects p ON p.id = q.prospect_id \
         LEFT JOIN generated_emails e ON e.id = q.generated_email_id \
         LEFT JOIN prospect_reply_inbox i ON i.id = q.reply_inbox_id \
         LEFT JOIN prospect_replies r ON r.id = i.reply_id \
         LEFT JOIN campaign_sending_queue answered ON answered.id = r.queue_id \
         JOIN campaign_sending_context ctx ON ctx.campaign_id = q.campaign_id \
         WHERE q.id = $1 AND (e.id IS NOT NULL OR i.id IS NOT NULL)",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let from_email: String = row.try_get("from_email")?;
    let message_id: Option<String> = row.try_get("message_id")?;
    let thread = match row.try_get::<Option<String>, _>("reply_inbox_id")? {
        None => None,
        Some(_) => {
            let reply = row
                .try_get::<Option<String>, _>("reply_message_id")?
                .filter(|id| !id.trim().is_empty())
                .map(|id| bracketed(&id));
            // What the prospect answered: koldly's message, else whatever
            // their reply said it answered.
            let answered = match row.try_get::<Option<String>, _>("answered_message_id")? {
                Some(id) => Some(id),
                None => row.try_get::<Option<String>, _>("reply_in_reply_to")?,
            }
            .filter(|id| !id.trim().is_empty())
            .map(|id| bracketed(&id));
            let references: Vec<String> = answered.iter().chain(&reply).cloned().collect();
            Some(Thread {
                in_reply_to: reply.or(answered),
                references: (!references.is_empty()).then(|| references.join(" ")),
            })
        }
    };
    Ok(Some(Outgoing {
        thread,
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        campaign_id: row.try_get("campaign_id")?,
        prospect_id: row.try_get("prospect_id")?,
        to: row.try_get("to_email")?,
        first_name: row.try_get("first_name")?,
        subject: row.try_get("subject")?,
        body: row.try_get("body")?,
        email_status: row.try_get("email_status")?,
        message_id: message_id.unwrap_or_else(|| new_message_id(domain_of(&from_email))),
        from_email,
        from_name: row.try_get("from_name")?,
        reply_to: row.try_get("reply_to")?,
        attempts: row.try_get("attempts")?,
        is_follow_up: row
            .try_get::<Option<String>, _>("sequence_step_id")?
            .is_some(),
    }))
}

/// How a claimed row ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// The provider accepted it, under its own id.
    Sent(Option<&'a str>),
    /// Refused in a way that proves it was not accepted: queued again for `at`.
    Retry {
        /// Why.
        error: &'a str,
        /// Not before (unix seconds).
        at: i64,
    },
    /// Refused for good.
    Failed(&'a str),
    /// Not sent, and never will be (suppressed, no longer approved...).
    Cancelled(&'a str),
    /// The provider may or may not have taken it: never resent.
    Unknown(&'a str),
}

/// Records how row `id`, claimed by `owner`, ended; false when the lease was
/// lost (another worker moved it to `unknown`: `Sent` still lands, as it
/// resolves that). An answer's draft is settled in the same transaction
/// (`sent`, or `failed` with the reason; retried and unknown rows leave it
/// `sending`).
pub async fn finish(
    pool: &AnyPool,
    id: &str,
    owner: &str,
    outcome: Outcome<'_>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let recorded = record_outcome(&mut tx, id, owner, outcome.clone(), now).await?;
    if recorded {
        let settled = match outcome {
            Outcome::Sent(_) => Some(Settled::Sent),
            Outcome::Failed(reason) | Outcome::Cancelled(reason) => Some(Settled::Failed(reason)),
            Outcome::Retry { .. } | Outcome::Unknown(_) => None,
        };
        if let Some(settled) = settled {
            answers::settle_in(&mut tx, id, settled, now).await?;
        }
    }
    tx.commit().await?;
    Ok(recorded)
}

async fn record_outcome(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    owner: &str,
    outcome: Outcome<'_>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = match outcome {
        Outcome::Sent(provider_id) => {
            sqlx::query(
                "UPDATE campaign_sending_queue SET status = 'sent', sent_at = $1, provider_message_id = $2, \
                 lease_owner = NULL, lease_until = NULL, last_error = NULL, updated_at = $1 \
                 WHERE id = $3 AND lease_owner = $4 AND status IN ('sending', 'unknown')",
            )
            .bind(now)
            .bind(provider_id)
            .bind(id)
            .bind(owner)
            .execute(&mut *conn)
            .await?
        }
        Outcome::Retry { error, at } => {
            sqlx::query(
                "UPDATE campaign_sending_queue SET status = 'queued', scheduled_for = $1, last_error = $2, \
                 lease_owner = NULL, lease_until = NULL, updated_at = $3 \
                 WHERE id = $4 AND lease_owner = $5 AND status = 'sending'",
            )
            .bind(at)
            .bind(error)
            .bind(now)
            .bind(id)
            .bind(owner)
            .execute(&mut *conn)
            .await?
        }
        Outcome::Failed(error) | Outcome::Cancelled(error) | Outcome::Unknown(error) => {
            let status = match outcome {
                Outcome::Failed(_) => "failed",
                Outcome::Cancelled(_) => "cancelled",
                _ => "unknown",
            };
            sqlx::query(
                "UPDATE campaign_sending_queue SET status = $1, last_error = $2, lease_until = NULL, \
                 updated_at = $3 WHERE id = $4 AND lease_owner = $5 AND status = 'sending'",
            )
            .bind(status)
            .bind(error)
            .bind(now)
            .bind(id)
            .bind(owner)
            .execute(&mut *conn)
            .await?
        }
    };
    Ok(done.rows_affected() == 1)
}

/// A row whose worker died mid-send.
#[derive(Debug, Clone)]
pub struct Orphan {
    /// Queue row id.
    pub id: String,
    /// Its `Message-ID`.
    pub message_id: Option<String>,
}

/// Moves every `sending` row whose lease passed to `unknown` (never back to
/// `queued`: the provider may have taken it). Returns them.
pub async fn expire_leases(pool: &AnyPool, now: i64) -> Result<Vec<Orphan>, sqlx::Error> {
    let rows = sqlx::query(
        "UPDATE campaign_sending_queue SET status = 'unknown', \
         last_error = 'the worker stopped during the provider call; not resent', updated_at = $1 \
         WHERE status = 'sending' AND lease_until < $1 RETURNING id, message_id",
    )
    .bind(now)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Orphan {
                id: r.try_get("id")?,
                message_id: r.try_get("message_id")?,
            })
        })
        .collect()
}

/// `unknown` rows, oldest first (for a provider that can look messages up).
pub async fn unknown(pool: &AnyPool, limit: i64) -> Result<Vec<Orphan>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, message_id FROM campaign_sending_queue WHERE status = 'unknown' \
         ORDER BY updated_at, id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Orphan {
                id: r.try_get("id")?,
                message_id: r.try_get("message_id")?,
            })
        })
        .collect()
}

/// Resolves an `unknown` row after the provider answered a lookup: `sent`
/// (it has the message) or `queued` again, due now (it proves it never got it).
pub async fn resolve_unknown(
    pool: &AnyPool,
    id: &str,
    delivered: bool,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let resolved = resolve_in(
        &mut tx,
        id,
        delivered,
        "the provider never received it; queued again",
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(resolved)
}

/// Resolves `unknown` row `id` (nothing when it is not `unknown`): `sent`,
/// its email marked sent and an answer's draft settled; or `queued` again,
/// due now, with `requeued_because`.
async fn resolve_in(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    delivered: bool,
    requeued_because: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = if delivered {
        sqlx::query(
            "UPDATE campaign_sending_queue SET status = 'sent', sent_at = $1, lease_owner = NULL, \
             last_error = NULL, updated_at = $1 WHERE id = $2 AND status = 'unknown'",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *conn)
        .await?
    } else {
        sqlx::query(
            "UPDATE campaign_sending_queue SET status = 'queued', scheduled_for = $1, lease_owner = NULL, \
             last_error = $2, updated_at = $1 WHERE id = $3 AND status = 'unknown'",
        )
        .bind(now)
        .bind(requeued_because)
        .bind(id)
        .execute(&mut *conn)
        .await?
    };
    let resolved = done.rows_affected() == 1;
    if resolved && delivered {
        mark_email_sent_in(conn, id, now).await?;
        answers::settle_in(conn, id, Settled::Sent, now).await?;
    }
    Ok(resolved)
}

/// An `unknown` row as its owner sees it, to look it up at their provider.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UnknownSend {
    /// The queue row (what `POST .../sending/unknown/{queue_id}` takes).
    pub queue_id: String,
    /// The prospect written to.
    pub prospect_id: String,
    /// Their address.
    pub prospect_email: String,
    /// The message's subject.
    pub subject: String,
    /// The `Message-ID` koldly gave it (search the provider's logs for it).
    pub message_id: Option<String>,
    /// The provider's own id, when it answered one.
    pub provider_message_id: Option<String>,
    /// Whether it is an answer to a reply (from the inbox).
    pub is_answer: bool,
    /// What happened to the call.
    pub last_error: Option<String>,
    /// When it became unknown (unix seconds).
    pub since: i64,
}

impl UnknownSend {
    /// Its position in the list (oldest first).
    pub fn cursor(&self) -> Cursor {
        Cursor {
            group: 0,
            created_at: self.since,
            id: self.queue_id.clone(),
        }
    }
}

/// One page of campaign `campaign_id`'s `unknown` rows, oldest first; `None`
/// when `user_id` has no such campaign.
pub async fn list_unknown(
    pool: &AnyPool,
    user_id: &str,
    campaign_id: &str,
    page: &PageRequest,
) -> Result<Option<Vec<UnknownSend>>, sqlx::Error> {
    let owned: Option<String> =
        sqlx::query_scalar("SELECT id FROM campaigns WHERE id = $1 AND user_id = $2")
            .bind(campaign_id)
            .bind(user_id)
            .fetch_optional(pool)
            .await?;
    if owned.is_none() {
        return Ok(None);
    }
    let (since, id) = page
        .after
        .as_ref()
        .map(|c| (c.created_at, c.id.clone()))
        .unwrap_or((i64::MIN, String::new()));
    let rows = sqlx::query(
        "SELECT q.id, q.prospect_id, p.email, COALESCE(e.subject, i.draft_subject, '') AS subject, \
         q.message_id, q.provider_message_id, q.reply_inbox_id, q.last_error, q.updated_at \
         FROM campaign_sending_queue q JOIN campaigns c ON c.id = q.campaign_id \
         JOIN prospects p ON p.id = q.prospect_id \
         LEFT JOIN generated_emails e ON e.id = q.generated_email_id \
         LEFT JOIN prospect_reply_inbox i ON i.id = q.reply_inbox_id \
         WHERE q.campaign_id = $1 AND c.user_id = $2 AND q.status = 'unknown' \
         AND (q.updated_at > $3 OR (q.updated_at = $3 AND q.id > $4) OR $5 = 0) \
         ORDER BY q.updated_at, q.id LIMIT $6",
    )
    .bind(campaign_id)
    .bind(user_id)
    .bind(since)
    .bind(id)
    .bind(i64::from(page.after.is_some()))
    .bind(page.fetch())
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(UnknownSend {
                queue_id: row.try_get("id")?,
                prospect_id: row.try_get("prospect_id")?,
                prospect_email: row.try_get("email")?,
                subject: row.try_get("subject")?,
                message_id: row.try_get("message_id")?,
                provider_message_id: row.try_get("provider_message_id")?,
                is_answer: row
                    .try_get::<Option<String>, _>("reply_inbox_id")?
                    .is_some(),
                last_error: row.try_get("last_error")?,
                since: row.try_get("updated_at")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map(Some)
}

/// What resolving an `unknown` row by hand found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandResolution {
    /// Resolved.
    Resolved,
    /// No such row in a campaign of this user.
    NotFound,
    /// The row is not `unknown` (resolved already, or never was).
    NotUnknown,
}

/// Resolves `unknown` row `queue_id` of campaign `campaign_id` of `user_id`
/// as its owner checked at their provider: `delivered` marks it sent (see
/// [`resolve_unknown`]); otherwise it is queued again, once (the row leaves
/// `unknown`, so a second call finds nothing to resolve).
pub async fn resolve_by_hand(
    db: &Db,
    user_id: &str,
    campaign_id: &str,
    queue_id: &str,
    delivered: bool,
    now: i64,
) -> Result<HandResolution, sqlx::Error> {
    let mut tx = begin_write(db).await?;
    let status: Option<String> = sqlx::query_scalar(
        "SELECT q.status FROM campaign_sending_queue q JOIN campaigns c ON c.id = q.campaign_id \
         WHERE q.id = $1 AND q.campaign_id = $2 AND c.user_id = $3",
    )
    .bind(queue_id)
    .bind(campaign_id)
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await?;
    let outcome = match status.as_deref() {
        None => HandResolution::NotFound,
        Some("unknown") => {
            if resolve_in(
                &mut tx,
                queue_id,
                delivered,
                "checked at the provider by its owner: not sent; queued again",
                now,
            )
            .await?
            {
                HandResolution::Resolved
            } else {
                HandResolution::NotUnknown
            }
        }
        Some(_) => HandResolution::NotUnknown,
    };
    tx.commit().await?;
    Ok(outcome)
}

/// After row `id` was sent: its email is `sent` and its prospect contacted.
pub async fn mark_email_sent(pool: &AnyPool, id: &str, now: i64) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    mark_email_sent_in(&mut conn, id, now).await
}

/// [`mark_email_sent`] on `conn`.
async fn mark_email_sent_in(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE generated_emails SET status = 'sent', updated_at = $1 \
         WHERE id = (SELECT generated_email_id FROM campaign_sending_queue WHERE id = $2)",
    )
    .bind(now)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE prospects SET status = 'contacted', updated_at = $1 \
         WHERE id = (SELECT prospect_id FROM campaign_sending_queue WHERE id = $2) \
         AND status NOT IN ('replied', 'bounced', 'unsubscribed')",
    )
    .bind(now)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
