//! Answers to replies: an inbox reply's drafted answer handed to the sending
//! queue, and its state kept in step with the queue row that carries it.
//!
//! The draft goes `draft → sending` in the same transaction that queues it (a
//! conditional update: of two concurrent sends, one moves it and queues; the
//! other changes nothing), and the queue row's `reply_inbox_id` is unique, so
//! an answer is queued once however often it is sent. The row then settles
//! the draft ([`settle_in`]) in the transaction that records its outcome:
//! `sent`, or `failed` with the reason (refused for good, cancelled because
//! the address was suppressed meanwhile). An `unknown` row leaves the draft
//! `sending` until it is resolved.

use sqlx::{AnyConnection, AnyPool, Row};

use super::{
    Db, new_id,
    sending::{begin_write, domain_of, new_message_id},
};

/// What the campaign of an inbox reply sends from, as the send route checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// `active` or `paused`; `None` when the campaign was never started.
    pub status: Option<String>,
    /// Whether the campaign is archived.
    pub archived: bool,
    /// The sender's address; `None` when it was deleted.
    pub sender_email: Option<String>,
    /// Whether the sender is verified.
    pub sender_verified: bool,
}

/// How the campaign of reply `inbox_id` of `user_id` sends; `None` when there
/// is no such reply of this user.
pub async fn readiness(
    pool: &AnyPool,
    user_id: &str,
    inbox_id: &str,
) -> Result<Option<Readiness>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT ctx.status, c.archived_at, s.email AS sender_email, s.verified_at \
         FROM prospect_reply_inbox i JOIN campaigns c ON c.id = i.campaign_id \
         LEFT JOIN campaign_sending_context ctx ON ctx.campaign_id = c.id \
         LEFT JOIN senders s ON s.id = ctx.sender_id AND s.user_id = c.user_id \
         WHERE i.id = $1 AND i.user_id = $2",
    )
    .bind(inbox_id)
    .bind(user_id)
    .fetch_optional(pool)
    .await?;
    row.map(|row| {
        Ok(Readiness {
            status: row.try_get("status")?,
            archived: row.try_get::<Option<i64>, _>("archived_at")?.is_some(),
            sender_email: row.try_get("sender_email")?,
            sender_verified: row.try_get::<Option<i64>, _>("verified_at")?.is_some(),
        })
    })
    .transpose()
}

/// Moves the draft of reply `inbox_id` of `user_id` from `draft` to
/// `sending` with `subject` and `body`, and queues it, due `now`, under a
/// fresh Message-ID at `sender_email`'s domain — one transaction. False when
/// the draft was not `draft` any more (another call sent it): nothing changed.
pub async fn queue(
    db: &Db,
    user_id: &str,
    inbox_id: &str,
    subject: &str,
    body: &str,
    sender_email: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let mut tx = begin_write(db).await?;
    let moved = sqlx::query(
        "UPDATE prospect_reply_inbox SET draft_subject = $1, draft_body = $2, \
         draft_status = 'sending', draft_error = NULL, updated_at = $3 \
         WHERE id = $4 AND user_id = $5 AND draft_status = 'draft'",
    )
    .bind(subject)
    .bind(body)
    .bind(now)
    .bind(inbox_id)
    .bind(user_id)
    .execute(&mut *tx)
    .await?;
    if moved.rows_affected() != 1 {
        tx.rollback().await?;
        return Ok(false);
    }
    // The unique `reply_inbox_id` is the second guard: a row exists already
    // only if a draft was reset by hand in the database; then nothing is
    // queued twice.
    sqlx::query(
        "INSERT INTO campaign_sending_queue (id, campaign_id, prospect_id, reply_inbox_id, status, \
         scheduled_for, created_at, updated_at, message_id) \
         SELECT $1, i.campaign_id, r.prospect_id, i.id, 'queued', $2, $2, $2, $3 \
         FROM prospect_reply_inbox i JOIN prospect_replies r ON r.id = i.reply_id \
         WHERE i.id = $4 AND i.user_id = $5 \
         ON CONFLICT (reply_inbox_id) DO NOTHING",
    )
    .bind(new_id())
    .bind(now)
    .bind(new_message_id(domain_of(sender_email)))
    .bind(inbox_id)
    .bind(user_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// How an answer's queue row ended, for its draft.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled<'a> {
    /// The provider took it.
    Sent,
    /// It will not go out: why.
    Failed(&'a str),
}

/// Settles the draft answered by queue row `queue_id` (nothing when the row
/// carries no answer, or the draft is not `sending`), in `conn`'s transaction.
pub async fn settle_in(
    conn: &mut AnyConnection,
    queue_id: &str,
    outcome: Settled<'_>,
    now: i64,
) -> Result<(), sqlx::Error> {
    let (status, error) = match outcome {
        Settled::Sent => ("sent", None),
        Settled::Failed(reason) => ("failed", Some(reason)),
    };
    sqlx::query(
        "UPDATE prospect_reply_inbox SET draft_status = $1, draft_error = $2, updated_at = $3 \
         WHERE draft_status = 'sending' \
         AND id = (SELECT reply_inbox_id FROM campaign_sending_queue WHERE id = $4)",
    )
    .bind(status)
    .bind(error)
    .bind(now)
    .bind(queue_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Fails, with `reason`, the drafts whose answers are queued to `email` (any
/// of `user_id`'s prospects with that address), in `conn`'s transaction: run
/// right before those queued rows are cancelled (the address was suppressed).
pub async fn fail_queued_to_in(
    conn: &mut AnyConnection,
    user_id: &str,
    email: &str,
    reason: &str,
    now: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE prospect_reply_inbox SET draft_status = 'failed', draft_error = $1, updated_at = $2 \
         WHERE user_id = $3 AND draft_status = 'sending' AND id IN \
         (SELECT q.reply_inbox_id FROM campaign_sending_queue q JOIN prospects p ON p.id = q.prospect_id \
         WHERE q.status = 'queued' AND q.reply_inbox_id IS NOT NULL \
         AND p.user_id = $3 AND lower(p.email) = $4)",
    )
    .bind(reason)
    .bind(now)
    .bind(user_id)
    .bind(email)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
