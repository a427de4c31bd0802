//! The drafting jobs: `emails.generate` (one draft per prospect of a campaign)
//! and `emails.regenerate` (a new draft of one email, with the user's
//! feedback), both through `state.ai`.
//!
//! Each language-model call is made for the job's owner with the plan's
//! monthly AI budget ([`crate::plans::ENTITLEMENTS`]): the provider reserves
//! the call's most possible cost before sending it and settles after
//! ([`crate::db::ai_usage`]), so concurrent jobs cannot overspend the month.
//!
//! A job may run more than once (a crash, a transient failure): a generation
//! skips the prospects it already drafted (the unique index on
//! `(job_id, prospect_id)` backs this), a regeneration writes the same email
//! again. What ends a generation:
//!
//! - the budget running out: the job fails at once with the budget's reason;
//!   drafts made so far stay;
//! - a transient failure (a timeout, the provider overloaded after its
//!   retries): the job is tried again later and resumes where it stopped;
//! - an answer that is not a valid draft: that prospect is skipped with the
//!   reason, the others are drafted, and the job then fails naming each
//!   prospect that got no draft.

use serde::{Deserialize, Serialize};

use crate::{
    ai::{
        AiError, Call, LanguageModel,
        tasks::{DraftEmail, Icp, Prospect, Sender},
    },
    db::{
        emails::{self, DraftSource, NewDraft},
        users,
    },
    jobs::{JobContext, JobError, Registry},
    plans::Plan,
    state::AppState,
};

/// The kind of a generation job.
pub const GENERATE: &str = "emails.generate";
/// The kind of a regeneration job.
pub const REGENERATE: &str = "emails.regenerate";

/// What a generation job is given (resolved when it was requested).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GeneratePayload {
    /// The campaign.
    pub campaign_id: String,
    /// Its prospects to draft for, in order.
    pub prospect_ids: Vec<String>,
}

/// What a regeneration job is given.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegeneratePayload {
    /// The email to write again.
    pub email_id: String,
    /// The user's feedback on it.
    pub feedback: Option<String>,
}

/// Registers both kinds with `registry`.
pub fn register(registry: Registry, state: &AppState) -> Registry {
    let (for_generate, for_regenerate) = (state.clone(), state.clone());
    registry
        .register(GENERATE, move |ctx: JobContext| {
            let state = for_generate.clone();
            async move { generate(&state, ctx).await }
        })
        .register(REGENERATE, move |ctx: JobContext| {
            let state = for_regenerate.clone();
            async move { regenerate(&state, ctx).await }
        })
}

/// The call of the job's owner under their plan's budget and the job's deadline.
pub(crate) async fn call_for(state: &AppState, ctx: &JobContext) -> Result<Call, JobError> {
    let user = users::find_by_id(&state.db.pool, ctx.user_id())
        .await?
        .ok_or_else(|| JobError::permanent("the account no longer exists"))?;
    let plan = Plan::from_name(&user.subscription_plan);
    Ok(
        Call::new(ctx.user_id(), plan.entitlements().ai_budget_cents_per_month)
            .in_job(ctx.job.id.clone())
            .until(ctx.deadline),
    )
}

/// The task of drafting for `source`, with `feedback`.
fn task(source: DraftSource, feedback: Option<String>) -> DraftEmail {
    DraftEmail {
        sender: Sender {
            name: source.sender_name,
            company: None,
            product_description: source.product_description.unwrap_or_default(),
        },
        icp: source.target_industry.map(|industry| Icp {
            industry: Some(industry),
            ..Icp::default()
        }),
        prospect: Prospect {
            email: source.email,
            first_name: source.first_name,
            last_name: source.last_name,
            company: source.company,
            title: source.title,
            industry: source.industry,
            website: source.website,
        },
        feedback,
    }
}

async fn generate(state: &AppState, ctx: JobContext) -> Result<(), JobError> {
    let payload: GeneratePayload = ctx.payload()?;
    let call = call_for(state, &ctx).await?;
    let model: &dyn LanguageModel = state.ai.as_ref();
    let pool = &state.db.pool;
    let total = payload.prospect_ids.len() as i64;
    let mut failed: Vec<String> = Vec::new();
    for (done, prospect_id) in payload.prospect_ids.iter().enumerate() {
        if !emails::drafted_by_job(pool, &ctx.job.id, prospect_id).await? {
            let source =
                emails::draft_source(pool, ctx.user_id(), &payload.campaign_id, prospect_id)
                    .await?;
            // A prospect deleted since the request is simply not drafted.
            if let Some(source) = source {
                let address = source.email.clone();
                match model.draft_email(&call, &task(source, None)).await {
                    Ok(draft) => {
                        emails::insert_draft(
                            pool,
                            NewDraft {
                                job_id: &ctx.job.id,
                                user_id: ctx.user_id(),
                                campaign_id: &payload.campaign_id,
                                prospect_id,
                                subject: &draft.subject,
                                body: &draft.body,
                                model: model.name(),
                            },
                            state.now(),
                        )
                        .await?;
                    }
                    Err(AiError::InvalidAnswer(why)) => {
                        tracing::warn!(job_id = ctx.job.id, prospect_id, %why, "a draft was invalid");
                        failed.push(format!("{address}: {}", AiError::InvalidAnswer(why)));
                    }
                    // The budget, a timeout, the provider: the job stops here.
                    Err(err) => return Err(err.into()),
                }
            }
        }
        ctx.progress(done as i64 + 1, total).await?;
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(JobError::permanent(format!(
            "{} of {total} prospects got no draft: {}",
            failed.len(),
            failed.join("; ")
        )))
    }
}

async fn regenerate(state: &AppState, ctx: JobContext) -> Result<(), JobError> {
    let payload: RegeneratePayload = ctx.payload()?;
    let call = call_for(state, &ctx).await?;
    let pool = &state.db.pool;
    let gone = || JobError::permanent("the email no longer exists");
    let email = emails::find(pool, ctx.user_id(), &payload.email_id)
        .await?
        .ok_or_else(gone)?;
    if email.status == "sent" {
        return Err(JobError::permanent("the email was sent already"));
    }
    let source = emails::draft_source(pool, ctx.user_id(), &email.campaign_id, &email.prospect_id)
        .await?
        .ok_or_else(gone)?;
    ctx.progress(0, 1).await?;
    let draft = state
        .ai
        .draft_email(&call, &task(source, payload.feedback))
        .await?;
    let replaced = emails::replace_draft(
        pool,
        ctx.user_id(),
        &payload.email_id,
        &draft.subject,
        &draft.body,
        state.ai.name(),
        state.now(),
    )
    .await?;
    if !replaced {
        return Err(JobError::permanent(
            "the email was sent or deleted meanwhile",
        ));
    }
    ctx.progress(1, 1).await?;
    Ok(())
}
