//! The inbox aggregate: an account's replies (`prospect_reply_inbox` with its
//! `prospect_replies` row), their category, read and archived flags, and a
//! drafted answer.
//!
//! Every statement carries `user_id` in its `WHERE`: another account's reply
//! is found, changed or counted exactly like a missing one.

use serde::Serialize;
use sqlx::{AnyPool, Row, any::AnyRow};

use crate::pagination::{Cursor, PageRequest};

/// The columns of a reply as the API shows it, and their joins; each query
/// appends its own `WHERE` to this literal (with `concat!`, so every statement
/// stays one `&'static str`).
macro_rules! select_reply {
    () => {
        "SELECT i.id, i.reply_id, i.campaign_id, c.name AS campaign_name, r.prospect_id, \
         p.email AS prospect_email, r.from_email, r.to_email, r.subject, r.body, i.category, \
         i.categorized_by, i.confidence, i.return_date, i.is_read, i.is_archived, \
         i.draft_subject, i.draft_body, i.draft_status, i.draft_model, i.draft_error, i.received_at, \
         i.updated_at \
         FROM prospect_reply_inbox i \
         JOIN prospect_replies r ON r.id = i.reply_id \
         JOIN prospects p ON p.id = r.prospect_id \
         JOIN campaigns c ON c.id = i.campaign_id "
    };
}

/// The list's filters (`$1` user, `$2` campaign, `$3` category, `$4` read,
/// `$5` archived); `NULL` means "any".
macro_rules! list_filters {
    () => {
        "WHERE i.user_id = $1 AND ($2 IS NULL OR i.campaign_id = $2) \
         AND ($3 IS NULL OR i.category = $3) AND ($4 IS NULL OR i.is_read = $4) \
         AND ($5 IS NULL OR i.is_archived = $5) "
    };
}

/// A drafted answer to a reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Draft {
    /// Its subject.
    pub subject: String,
    /// Its text.
    pub body: String,
    /// `draft` (not sent yet), `sending` (queued by
    /// `POST /api/inbox/replies/{id}/send`), `sent` (the provider took it) or
    /// `failed` (it will not go out: see `error`).
    pub status: String,
    /// Who wrote it: `templates` or the language model's name.
    pub model: Option<String>,
    /// Why a `failed` answer did not go out.
    pub error: Option<String>,
}

/// A reply in its owner's inbox.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InboxReply {
    /// The inbox row's id (the one the routes take).
    pub id: String,
    /// The stored reply.
    pub reply_id: String,
    /// The campaign whose message it answers.
    pub campaign_id: String,
    /// That campaign's name.
    pub campaign_name: String,
    /// Who was written to.
    pub prospect_id: String,
    /// Their address.
    pub prospect_email: String,
    /// Who wrote the reply.
    pub from_email: String,
    /// The address it was sent to.
    pub to_email: Option<String>,
    /// Its subject.
    pub subject: Option<String>,
    /// Its text.
    pub body: String,
    /// `uncategorized`, `interested`, `not_interested`, `out_of_office`,
    /// `objection`, `question`, `unsubscribe`, `bounce` or `other`.
    pub category: String,
    /// `keywords`, `model` or `user`; `null` until categorised.
    pub categorized_by: Option<String>,
    /// 0.0 to 1.0; `null` until categorised.
    pub confidence: Option<f64>,
    /// An out-of-office reply's return date (`YYYY-MM-DD`).
    pub return_date: Option<String>,
    /// Read by the user.
    pub is_read: bool,
    /// Archived by the user.
    pub is_archived: bool,
    /// A drafted answer.
    pub draft: Option<Draft>,
    /// Unix seconds.
    pub received_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    #[serde(skip)]
    confidence_percent: Option<i64>,
}

impl InboxReply {
    /// Its position in a list sorted by `sort`.
    pub fn cursor(&self, sort: Sort) -> Cursor {
        Cursor {
            group: match sort {
                Sort::Confidence => self.confidence_percent.unwrap_or(-1),
                Sort::Newest | Sort::Oldest => 0,
            },
            created_at: self.received_at,
            id: self.id.clone(),
        }
    }
}

fn from_row(row: &AnyRow) -> Result<InboxReply, sqlx::Error> {
    let confidence_percent: Option<i64> = row.try_get("confidence")?;
    let draft = match (
        row.try_get::<Option<String>, _>("draft_subject")?,
        row.try_get::<Option<String>, _>("draft_body")?,
        row.try_get::<Option<String>, _>("draft_status")?,
    ) {
        (Some(subject), Some(body), Some(status)) => Some(Draft {
            subject,
            body,
            status,
            model: row.try_get("draft_model")?,
            error: row.try_get("draft_error")?,
        }),
        _ => None,
    };
    Ok(InboxReply {
        id: row.try_get("id")?,
        reply_id: row.try_get("reply_id")?,
        campaign_id: row.try_get("campaign_id")?,
        campaign_name: row.try_get("campaign_name")?,
        prospect_id: row.try_get("prospect_id")?,
        prospect_email: row.try_get("prospect_email")?,
        from_email: row.try_get("from_email")?,
        to_email: row.try_get("to_email")?,
        subject: row.try_get("subject")?,
        body: row.try_get("body")?,
        category: row.try_get("category")?,
        categorized_by: row.try_get("categorized_by")?,
        confidence: confidence_percent.map(|p| p as f64 / 100.0),
        return_date: row.try_get("return_date")?,
        is_read: row.try_get::<i64, _>("is_read")? != 0,
        is_archived: row.try_get::<i64, _>("is_archived")? != 0,
        draft,
        received_at: row.try_get("received_at")?,
        updated_at: row.try_get("updated_at")?,
        confidence_percent,
    })
}

/// Reply `id` of `user_id`.
pub async fn find(
    pool: &AnyPool,
    user_id: &str,
    id: &str,
) -> Result<Option<InboxReply>, sqlx::Error> {
    let row = sqlx::query(concat!(
        select_reply!(),
        "WHERE i.id = $1 AND i.user_id = $2"
    ))
    .bind(id)
    .bind(user_id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// The order of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// Newest reply first (the default).
    Newest,
    /// Oldest first.
    Oldest,
    /// Most confident category first (uncategorised last), then newest.
    Confidence,
}

/// What a list shows (`None`: any).
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// One campaign.
    pub campaign_id: Option<String>,
    /// One category.
    pub category: Option<String>,
    /// Read or unread.
    pub is_read: Option<bool>,
    /// Archived or not.
    pub is_archived: Option<bool>,
}

/// One page of `user_id`'s replies.
pub async fn list(
    pool: &AnyPool,
    user_id: &str,
    filters: &Filters,
    sort: Sort,
    page: &PageRequest,
) -> Result<Vec<InboxReply>, sqlx::Error> {
    const NEWEST: &str = concat!(
        select_reply!(),
        list_filters!(),
        "AND ($6 = 0 OR i.received_at < $7 OR (i.received_at = $7 AND i.id < $8)) \
         ORDER BY i.received_at DESC, i.id DESC LIMIT $9"
    );
    const OLDEST: &str = concat!(
        select_reply!(),
        list_filters!(),
        "AND ($6 = 0 OR i.received_at > $7 OR (i.received_at = $7 AND i.id > $8)) \
         ORDER BY i.received_at ASC, i.id ASC LIMIT $9"
    );
    const CONFIDENCE: &str = concat!(
        select_reply!(),
        list_filters!(),
        "AND ($6 = 0 OR COALESCE(i.confidence, -1) < $9 OR (COALESCE(i.confidence, -1) = $9 \
         AND (i.received_at < $7 OR (i.received_at = $7 AND i.id < $8)))) \
         ORDER BY COALESCE(i.confidence, -1) DESC, i.received_at DESC, i.id DESC LIMIT $10"
    );
    let sql = match sort {
        Sort::Newest => NEWEST,
        Sort::Oldest => OLDEST,
        Sort::Confidence => CONFIDENCE,
    };
    let (has_cursor, received_at, id, group) = match &page.after {
        Some(c) => (1_i64, c.created_at, c.id.as_str(), c.group),
        None => (0, 0, "", 0),
    };
    let mut query = sqlx::query(sql)
        .bind(user_id)
        .bind(filters.campaign_id.as_deref())
        .bind(filters.category.as_deref())
        .bind(filters.is_read.map(i64::from))
        .bind(filters.is_archived.map(i64::from))
        .bind(has_cursor)
        .bind(received_at)
        .bind(id);
    if sort == Sort::Confidence {
        query = query.bind(group);
    }
    let rows = query.bind(page.fetch()).fetch_all(pool).await?;
    rows.iter().map(from_row).collect()
}

/// How many of `user_id`'s replies `filters` match (all pages).
pub async fn count(pool: &AnyPool, user_id: &str, filters: &Filters) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(concat!(
        "SELECT COUNT(*) FROM prospect_reply_inbox i ",
        list_filters!()
    ))
    .bind(user_id)
    .bind(filters.campaign_id.as_deref())
    .bind(filters.category.as_deref())
    .bind(filters.is_read.map(i64::from))
    .bind(filters.is_archived.map(i64::from))
    .fetch_one(pool)
    .await
}

/// A change of a reply's flags or category by its owner.
#[derive(Debug, Clone, Default)]
pub struct Change {
    /// Read or unread.
    pub is_read: Option<bool>,
    /// Archived or not.
    pub is_archived: Option<bool>,
    /// A category set by hand (`categorized_by` becomes `user`, confidence 1).
    pub category: Option<String>,
}

/// Applies `change` to reply `id` of `user_id`; false when there is no such reply.
pub async fn update(
    pool: &AnyPool,
    user_id: &str,
    id: &str,
    change: &Change,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE prospect_reply_inbox SET is_read = COALESCE($1, is_read), \
         is_archived = COALESCE($2, is_archived), category = COALESCE($3, category), \
         categorized_by = CASE WHEN $3 IS NULL THEN categorized_by ELSE 'user' END, \
         confidence = CASE WHEN $3 IS NULL THEN confidence ELSE 100 END, \
         return_date = CASE WHEN $3 IS NULL OR $3 = 'out_of_office' THEN return_date ELSE NULL END, \
         updated_at = $4 WHERE id = $5 AND user_id = $6",
    )
    .bind(change.is_read.map(i64::from))
    .bind(change.is_archived.map(i64::from))
    .bind(change.category.as_deref())
    .bind(now)
    .bind(id)
    .bind(user_id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A category decided by the classifier or the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    /// The category.
    pub category: String,
    /// Percent, 0 to 100.
    pub confidence: i64,
    /// An out-of-office reply's return date (`YYYY-MM-DD`).
    pub return_date: Option<String>,
    /// `keywords` or `model`.
    pub by: &'static str,
}

/// Files reply `id` of `user_id` under `classification`. Unless `force`, a
/// category the user set by hand is kept. True when the row changed.
pub async fn classify(
    pool: &AnyPool,
    user_id: &str,
    id: &str,
    classification: &Classification,
    force: bool,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE prospect_reply_inbox SET category = $1, confidence = $2, return_date = $3, \
         categorized_by = $4, updated_at = $5 WHERE id = $6 AND user_id = $7 \
         AND ($8 = 1 OR categorized_by IS NULL OR categorized_by <> 'user')",
    )
    .bind(&classification.category)
    .bind(classification.confidence)
    .bind(classification.return_date.as_deref())
    .bind(classification.by)
    .bind(now)
    .bind(id)
    .bind(user_id)
    .bind(i64::from(force))
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Saves a drafted answer to reply `id` of `user_id`, unless one is being sent
/// or was sent. True when saved.
pub async fn save_draft(
    pool: &AnyPool,
    user_id: &str,
    id: &str,
    subject: &str,
    body: &str,
    model: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE prospect_reply_inbox SET draft_subject = $1, draft_body = $2, \
         draft_status = 'draft', draft_model = $3, updated_at = $4 \
         WHERE id = $5 AND user_id = $6 AND (draft_status IS NULL OR draft_status = 'draft')",
    )
    .bind(subject)
    .bind(body)
    .bind(model)
    .bind(now)
    .bind(id)
    .bind(user_id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// What drafting an answer to a reply needs to know.
#[derive(Debug, Clone)]
pub struct DraftContext {
    /// The reply's category.
    pub category: String,
    /// The reply's subject.
    pub reply_subject: Option<String>,
    /// The reply's text.
    pub reply_body: String,
    /// The prospect's address.
    pub email: String,
    /// Given name.
    pub first_name: Option<String>,
    /// Family name.
    pub last_name: Option<String>,
    /// Employer.
    pub company: Option<String>,
    /// Job title.
    pub title: Option<String>,
    /// Industry.
    pub industry: Option<String>,
    /// Website.
    pub website: Option<String>,
    /// The campaign's product.
    pub product_description: Option<String>,
    /// The campaign's sender name, else the account's name.
    pub sender_name: String,
    /// The subject of the message the prospect answered.
    pub original_subject: Option<String>,
    /// Its text.
    pub original_body: Option<String>,
    /// An out-of-office reply's return date.
    pub return_date: Option<String>,
}

/// The [`DraftContext`] of reply `id` of `user_id`.
pub async fn draft_context(
    pool: &AnyPool,
    user_id: &str,
    id: &str,
) -> Result<Option<DraftContext>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT i.category, i.return_date, r.subject AS reply_subject, r.body AS reply_body, p.email, p.first_name, \
         p.last_name, p.company, p.title, p.industry, p.website, c.product_description, \
         COALESCE(s.from_name, u.name) AS sender_name, e.subject AS original_subject, \
         e.body AS original_body \
         FROM prospect_reply_inbox i \
         JOIN prospect_replies r ON r.id = i.reply_id \
         JOIN prospects p ON p.id = r.prospect_id \
         JOIN campaigns c ON c.id = i.campaign_id \
         JOIN users u ON u.id = i.user_id \
         LEFT JOIN campaign_sending_context s ON s.campaign_id = i.campaign_id \
         LEFT JOIN campaign_sending_queue q ON q.id = r.queue_id \
         LEFT JOIN generated_emails e ON e.id = q.generated_email_id \
         WHERE i.id = $1 AND i.user_id = $2",
    )
    .bind(id)
    .bind(user_id)
    .fetch_optional(pool)
    .await?;
    row.map(|row| {
        Ok(DraftContext {
            category: row.try_get("category")?,
            reply_subject: row.try_get("reply_subject")?,
            reply_body: row.try_get("reply_body")?,
            email: row.try_get("email")?,
            first_name: row.try_get("first_name")?,
            last_name: row.try_get("last_name")?,
            company: row.try_get("company")?,
            title: row.try_get("title")?,
            industry: row.try_get("industry")?,
            website: row.try_get("website")?,
            product_description: row.try_get("product_description")?,
            sender_name: row.try_get("sender_name")?,
            original_subject: row.try_get("original_subject")?,
            original_body: row.try_get("original_body")?,
            return_date: row.try_get("return_date")?,
        })
    })
    .transpose()
}

/// Non-archived replies of one category: how many, how many unread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CategoryCount {
    /// Replies.
    pub count: i64,
    /// Of which unread.
    pub unread: i64,
}

/// `user_id`'s non-archived replies (of one campaign, if given) by category.
pub async fn stats(
    pool: &AnyPool,
    user_id: &str,
    campaign_id: Option<&str>,
) -> Result<Vec<(String, CategoryCount)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT i.category, COUNT(*) AS n, \
         SUM(CASE WHEN i.is_read = 0 THEN 1 ELSE 0 END) AS unread \
         FROM prospect_reply_inbox i \
         WHERE i.user_id = $1 AND i.is_archived = 0 AND ($2 IS NULL OR i.campaign_id = $2) \
         GROUP BY i.category",
    )
    .bind(user_id)
    .bind(campaign_id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("category")?,
                CategoryCount {
                    count: row.try_get("n")?,
                    unread: row.try_get("unread")?,
                },
            ))
        })
        .collect()
}
