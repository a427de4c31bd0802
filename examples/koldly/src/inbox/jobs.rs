//! The inbox's background jobs, both through `state.ai` (the offline keyword
//! classifier and templates by default, the language model when configured):
//!
//! - `inbox.categorize` files a reply: its category, the confidence and, for
//!   an out-of-office reply, the return date (the model's, else read from the
//!   text by [`return_date`]). An `unsubscribe` puts the prospect's address on
//!   the account's suppression list (which cancels its queued messages) and
//!   marks the prospect unsubscribed. The webhook's job keeps a category the
//!   user set by hand; `POST /api/inbox/replies/{id}/categorize` overrides it.
//! - `inbox.draft` drafts an answer for the reply's category and saves it on
//!   the inbox row, unless an answer is being sent or was sent.
//!
//! Both are safe to repeat: they overwrite their own result. A reply deleted
//! meanwhile (its campaign deleted) ends the job quietly.

use serde::{Deserialize, Serialize};

use super::return_date::return_date;
use crate::{
    ai::tasks::{CategorizeReply, DraftReply, EmailDraft, Prospect, ReplyCategory, Sender},
    db::{
        inbox::{self, Classification},
        replies::{self, ProspectOutcome},
        suppressions,
    },
    emails::generate::call_for,
    jobs::{JobContext, JobError, Registry},
    state::AppState,
};

/// The kind of a categorisation job.
pub const CATEGORIZE: &str = "inbox.categorize";
/// The kind of a drafting job.
pub const DRAFT: &str = "inbox.draft";

/// What an inbox job is given.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplyPayload {
    /// The inbox row.
    pub reply_id: String,
    /// Categorisation: replace a category the user set by hand.
    #[serde(default)]
    pub force: bool,
}

/// The suppression reason of a prospect who asked, in a reply, to hear no more.
pub const UNSUBSCRIBED_BY_REPLY: &str = "unsubscribed (reply)";

/// Registers both kinds with `registry`.
pub fn register(registry: Registry, state: &AppState) -> Registry {
    let (for_categorize, for_draft) = (state.clone(), state.clone());
    registry
        .register(CATEGORIZE, move |ctx: JobContext| {
            let state = for_categorize.clone();
            async move { categorize(&state, ctx).await }
        })
        .register(DRAFT, move |ctx: JobContext| {
            let state = for_draft.clone();
            async move { draft(&state, ctx).await }
        })
}

/// The API name of `category`.
pub fn category_name(category: ReplyCategory) -> &'static str {
    match category {
        ReplyCategory::Interested => "interested",
        ReplyCategory::NotInterested => "not_interested",
        ReplyCategory::OutOfOffice => "out_of_office",
        ReplyCategory::Objection => "objection",
        ReplyCategory::Question => "question",
        ReplyCategory::Unsubscribe => "unsubscribe",
        ReplyCategory::Bounce => "bounce",
        ReplyCategory::Other => "other",
    }
}

/// The category an API name stands for (`uncategorized`: none).
pub fn category_of(name: &str) -> Option<ReplyCategory> {
    Some(match name {
        "interested" => ReplyCategory::Interested,
        "not_interested" => ReplyCategory::NotInterested,
        "out_of_office" => ReplyCategory::OutOfOffice,
        "objection" => ReplyCategory::Objection,
        "question" => ReplyCategory::Question,
        "unsubscribe" => ReplyCategory::Unsubscribe,
        "bounce" => ReplyCategory::Bounce,
        "other" => ReplyCategory::Other,
        _ => return None,
    })
}

/// After an unsubscribe (by the classifier or by hand): puts the prospect's
/// address on the account's suppression list (cancelling its queued
/// messages) and marks the prospect unsubscribed, in one transaction.
pub async fn unsubscribe_prospect(
    state: &AppState,
    user_id: &str,
    prospect_id: &str,
    email: &str,
) -> Result<(), sqlx::Error> {
    let now = state.now();
    let mut tx = state.db.pool.begin().await?;
    suppressions::add_in(&mut tx, user_id, email, UNSUBSCRIBED_BY_REPLY, now).await?;
    replies::mark_prospect(
        &mut tx,
        user_id,
        prospect_id,
        ProspectOutcome::Unsubscribed,
        now,
    )
    .await?;
    tx.commit().await
}

async fn categorize(state: &AppState, ctx: JobContext) -> Result<(), JobError> {
    let payload: ReplyPayload = ctx.payload()?;
    let pool = &state.db.pool;
    let Some(reply) = inbox::find(pool, ctx.user_id(), &payload.reply_id).await? else {
        return Ok(());
    };
    if !payload.force && reply.categorized_by.as_deref() == Some("user") {
        return Ok(());
    }
    let call = call_for(state, &ctx).await?;
    let task = CategorizeReply {
        subject: reply.subject.clone(),
        body: reply.body.clone(),
    };
    let answer = state.ai.categorize_reply(&call, &task).await?;
    let by = if state.ai.name() == "offline" {
        "keywords"
    } else {
        "model"
    };
    let date = match answer.category {
        ReplyCategory::OutOfOffice => answer.return_date.clone().or_else(|| {
            let text = format!("{}\n{}", reply.subject.as_deref().unwrap_or(""), reply.body);
            return_date(&text, reply.received_at)
        }),
        _ => None,
    };
    let classification = Classification {
        category: category_name(answer.category).to_owned(),
        confidence: (answer.confidence.unwrap_or(0.5) * 100.0).round() as i64,
        return_date: date,
        by,
    };
    let filed = inbox::classify(
        pool,
        ctx.user_id(),
        &reply.id,
        &classification,
        payload.force,
        state.now(),
    )
    .await?;
    if filed && answer.category == ReplyCategory::Unsubscribe {
        unsubscribe_prospect(
            state,
            ctx.user_id(),
            &reply.prospect_id,
            &reply.prospect_email,
        )
        .await?;
    }
    Ok(())
}

async fn draft(state: &AppState, ctx: JobContext) -> Result<(), JobError> {
    let payload: ReplyPayload = ctx.payload()?;
    let pool = &state.db.pool;
    let Some(source) = inbox::draft_context(pool, ctx.user_id(), &payload.reply_id).await? else {
        return Ok(());
    };
    let call = call_for(state, &ctx).await?;
    ctx.progress(0, 1).await?;
    let task = DraftReply {
        sender: Sender {
            name: source.sender_name,
            company: None,
            product_description: source.product_description.unwrap_or_default(),
        },
        prospect: Prospect {
            email: source.email,
            first_name: source.first_name,
            last_name: source.last_name,
            company: source.company,
            title: source.title,
            industry: source.industry,
            website: source.website,
        },
        original: EmailDraft {
            subject: source
                .original_subject
                .or(source.reply_subject)
                .unwrap_or_default(),
            body: source.original_body.unwrap_or_default(),
        },
        reply_body: source.reply_body,
        category: category_of(&source.category),
        return_date: source.return_date,
    };
    let answer = state.ai.draft_reply(&call, &task).await?;
    let model = if state.ai.name() == "offline" {
        "templates"
    } else {
        state.ai.name()
    };
    let saved = inbox::save_draft(
        pool,
        ctx.user_id(),
        &payload.reply_id,
        &answer.subject,
        &answer.body,
        model,
        state.now(),
    )
    .await?;
    if !saved {
        return Err(JobError::permanent(
            "the answer to this reply is being sent or was sent",
        ));
    }
    ctx.progress(1, 1).await?;
    Ok(())
}
