//! The offline provider: deterministic templates, no network, no key, no cost.
//!
//! The variant of a template is chosen by a SHA-256 of the prospect's address
//! (and moves on when the user gave feedback), so the same input always gives
//! the same output and different prospects do not all get the same words. User
//! text is cleaned before it is put in a template (brackets and braces that
//! would read as placeholders, and any word holding an `@`, are dropped) and
//! cut to a word budget, so every draft meets [`EmailDraft`]'s rules; each
//! result is validated once more before it is returned.

mod drafts;
mod icp;
mod replies;
mod text;

use super::{
    AiError, AiFuture, Call, LanguageModel,
    tasks::{
        CategorizeReply, DraftEmail, DraftFollowUp, DraftReply, EmailDraft, Icp, ParseIcp,
        ReplyClassification, Task, Validate,
    },
};
use drafts::{draft_email, draft_follow_up, draft_reply};
use icp::parse_icp;
use replies::classify;

/// The offline provider.
#[derive(Debug, Clone, Copy, Default)]
pub struct Offline;

impl LanguageModel for Offline {
    fn name(&self) -> &'static str {
        "offline"
    }

    fn parse_icp<'a>(&'a self, _: &'a Call, task: &'a ParseIcp) -> AiFuture<'a, Icp> {
        Box::pin(async move { checked(task, parse_icp(&task.description)) })
    }

    fn draft_email<'a>(&'a self, _: &'a Call, task: &'a DraftEmail) -> AiFuture<'a, EmailDraft> {
        Box::pin(async move { checked(task, draft_email(task)) })
    }

    fn draft_follow_up<'a>(
        &'a self,
        _: &'a Call,
        task: &'a DraftFollowUp,
    ) -> AiFuture<'a, EmailDraft> {
        Box::pin(async move { checked(task, draft_follow_up(task)) })
    }

    fn categorize_reply<'a>(
        &'a self,
        _: &'a Call,
        task: &'a CategorizeReply,
    ) -> AiFuture<'a, ReplyClassification> {
        Box::pin(async move {
            let text = format!("{}\n{}", task.subject.as_deref().unwrap_or(""), task.body);
            let (category, confidence) = classify(&text);
            checked(
                task,
                ReplyClassification {
                    category,
                    confidence: Some(confidence),
                    return_date: None,
                },
            )
        })
    }

    fn draft_reply<'a>(&'a self, _: &'a Call, task: &'a DraftReply) -> AiFuture<'a, EmailDraft> {
        Box::pin(async move { checked(task, draft_reply(task)) })
    }
}

/// The output, validated like any provider's.
fn checked<T: Task>(task: &T, output: T::Output) -> Result<T::Output, AiError> {
    output
        .validate(&task.known_addresses())
        .map_err(AiError::InvalidAnswer)?;
    Ok(output)
}
