//! What the mail provider tells koldly about the messages it sent: replies
//! (`prospect_replies` and the owner's `prospect_reply_inbox` row) and
//! delivery failures.
//!
//! A reply or an event is tied to an account only through the Message-ID of
//! the message it concerns ([`find_sent`]: `campaign_sending_queue.message_id`,
//! unique), never through an address: two accounts may write to the same
//! person, and a sender's address says nothing about which one they answer.

use sqlx::{AnyConnection, AnyPool, Row};

use super::{new_id, sequences};

/// A message koldly sent, as a reply or an event names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    /// Its queue row.
    pub queue_id: String,
    /// The account that sent it.
    pub user_id: String,
    /// Its campaign.
    pub campaign_id: String,
    /// Its recipient.
    pub prospect_id: String,
    /// The recipient's address (as imported).
    pub prospect_email: String,
}

/// The message whose Message-ID is `bare` (`local@domain`, without angle
/// brackets) or `<bare>`: both forms are looked up, whichever the sending
/// engine stored.
pub async fn find_sent(pool: &AnyPool, bare: &str) -> Result<Option<SentMessage>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT q.id AS queue_id, p.user_id, q.campaign_id, q.prospect_id, p.email \
         FROM campaign_sending_queue q JOIN prospects p ON p.id = q.prospect_id \
         WHERE q.message_id = $1 OR q.message_id = $2",
    )
    .bind(bare)
    .bind(format!("<{bare}>"))
    .fetch_optional(pool)
    .await?;
    row.map(|row| {
        Ok(SentMessage {
            queue_id: row.try_get("queue_id")?,
            user_id: row.try_get("user_id")?,
            campaign_id: row.try_get("campaign_id")?,
            prospect_id: row.try_get("prospect_id")?,
            prospect_email: row.try_get("email")?,
        })
    })
    .transpose()
}

/// A reply to store.
#[derive(Debug, Clone)]
pub struct NewReply<'a> {
    /// The message it answers.
    pub answers: &'a SentMessage,
    /// The provider's id of the reply (its own Message-ID): the dedup key.
    pub provider_message_id: &'a str,
    /// Its `In-Reply-To`, as received.
    pub in_reply_to: Option<&'a str>,
    /// Who wrote it.
    pub from_email: &'a str,
    /// The address it was sent to.
    pub to_email: Option<&'a str>,
    /// Its subject.
    pub subject: Option<&'a str>,
    /// Its text (the quoted history stripped when the provider did).
    pub body: &'a str,
}

/// What [`store`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Stored: the owner's inbox row, and the queued messages to the prospect
    /// that were cancelled.
    New {
        /// The inbox row.
        inbox_id: String,
        /// Cancelled queue rows.
        cancelled: u64,
    },
    /// The provider delivered this reply before: nothing changed.
    Duplicate,
}

/// The reason queued messages to a prospect who replied are cancelled with.
pub const REPLIED: &str = "replied";

/// Stores `reply` in `conn`'s transaction: the reply and the owner's inbox row,
/// the prospect marked `replied` (unless it unsubscribed or bounced), and,
/// when its campaign stops on a reply, the prospect halted with [`REPLIED`]
/// ([`sequences::halt_prospect_in`]: `halted_at` set, queued messages
/// cancelled as `halted: replied`, follow-up drafts not yet queued rejected).
/// A reply whose provider id is stored already changes nothing.
pub async fn store(
    conn: &mut AnyConnection,
    reply: &NewReply<'_>,
    now: i64,
) -> Result<Stored, sqlx::Error> {
    let sent = reply.answers;
    let reply_id: Option<String> = sqlx::query_scalar(
        "INSERT INTO prospect_replies (id, prospect_id, campaign_id, queue_id, from_email, subject, \
         body, provider_message_id, in_reply_to, to_email, received_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) \
         ON CONFLICT (provider_message_id) DO NOTHING RETURNING id",
    )
    .bind(new_id())
    .bind(&sent.prospect_id)
    .bind(&sent.campaign_id)
    .bind(&sent.queue_id)
    .bind(reply.from_email)
    .bind(reply.subject)
    .bind(reply.body)
    .bind(reply.provider_message_id)
    .bind(reply.in_reply_to)
    .bind(reply.to_email)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(reply_id) = reply_id else {
        return Ok(Stored::Duplicate);
    };
    let inbox_id = new_id();
    sqlx::query(
        "INSERT INTO prospect_reply_inbox (id, reply_id, user_id, campaign_id, received_at, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5, $5)",
    )
    .bind(&inbox_id)
    .bind(&reply_id)
    .bind(&sent.user_id)
    .bind(&sent.campaign_id)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE prospects SET status = 'replied', updated_at = $1 \
         WHERE id = $2 AND user_id = $3 AND status NOT IN ('unsubscribed', 'bounced')",
    )
    .bind(now)
    .bind(&sent.prospect_id)
    .bind(&sent.user_id)
    .execute(&mut *conn)
    .await?;
    // Halted the sending engine's way (queued rows cancelled, follow-up
    // drafts rejected, `halted_at` set) unless the campaign keeps sending
    // after a reply.
    let cancelled = if sequences::stops_on_reply_in(conn, &sent.prospect_id).await? {
        sequences::halt_prospect_in(conn, &sent.prospect_id, REPLIED, now)
            .await?
            .cancelled
    } else {
        0
    };
    Ok(Stored::New {
        inbox_id,
        cancelled,
    })
}

/// Marks prospect `prospect_id` of `user_id` `bounced` or `unsubscribed`
/// (after a hard bounce, a complaint or an unsubscribe) and halts its
/// follow-ups ([`sequences::halt_prospect_in`], reason `bounced` or
/// `unsubscribed`). Another account's prospect is left untouched.
pub async fn mark_prospect(
    conn: &mut AnyConnection,
    user_id: &str,
    prospect_id: &str,
    status: ProspectOutcome,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE prospects SET status = $1, updated_at = $2 WHERE id = $3 AND user_id = $4")
        .bind(status.as_str())
        .bind(now)
        .bind(prospect_id)
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    let owned: Option<String> =
        sqlx::query_scalar("SELECT id FROM prospects WHERE id = $1 AND user_id = $2")
            .bind(prospect_id)
            .bind(user_id)
            .fetch_optional(&mut *conn)
            .await?;
    if owned.is_some() {
        sequences::halt_prospect_in(conn, prospect_id, status.as_str(), now).await?;
    }
    Ok(())
}

/// What a delivery event or a reply made of a prospect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProspectOutcome {
    /// A hard bounce.
    Bounced,
    /// A complaint or an unsubscribe.
    Unsubscribed,
}

impl ProspectOutcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Bounced => "bounced",
            Self::Unsubscribed => "unsubscribed",
        }
    }
}
