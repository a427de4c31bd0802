//! `POST /api/inbox/replies/{id}/send`: sends the reply's drafted answer
//! (optionally edited in the body: `{subject?, body?}`; sending it is the
//! user's approval) from the campaign's sender, threaded under the reply
//! (`In-Reply-To` naming the reply's Message-ID, `References` the message it
//! answered and the reply), through the campaign's sending queue, exactly
//! once: the draft moves `draft → sending` in the transaction that queues it,
//! and the queue row's `reply_inbox_id` is unique
//! ([`crate::db::answers`]). The worker then settles it: `sent`, or `failed`
//! with `draft.error`.
//!
//! What it checks, in order:
//!
//! | Case | Answer |
//! |---|---|
//! | no such reply, or another account's | 404, nothing changed |
//! | no drafted answer | 409 |
//! | the answer is `sending`, `sent` or `failed` already (a second call, concurrent or not) | 409 naming the state |
//! | the edited subject or body break the rules | 422 naming the field |
//! | the campaign was never started, is paused or is archived | 409 |
//! | its sender was deleted or is not verified | 422 (`sender`) |
//! | the prospect's address is on the suppression list | 422 (`prospect_email`) |
//! | otherwise | **202**, the reply with its answer `sending` |
//!
//! An answer is conversational: it goes on the campaign's next tick whatever
//! its sending window or spacing say, but it counts toward the daily limit
//! (and waits for the next local day when the limit is reached). A halt of
//! the prospect (a second reply) leaves it queued; the suppression list is
//! checked again right before it is sent.

use axum::{Json, extract::State};
use http::StatusCode;
use serde::Deserialize;
use steadfast::audit::AuditContext;

use super::{ReplyResource, TARGET, not_found};
use crate::{
    ai::tasks::{MAX_BODY_WORDS, MAX_SUBJECT_CHARS, word_count},
    audit::note_change,
    auth::extract::AuthUser,
    db::{answers, inbox::InboxReply, suppressions},
    error::{ApiError, ApiResult},
    openapi::{IdempotencyKey, Idempotent, InvalidBody, NotFound, Problems, Unauthorized},
    state::AppState,
    validation::{FieldErrors, OptionalJsonBody, PathId, field_problem},
};

/// The optional body: the user's edits of the draft.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    /// The subject to send instead of the draft's (one line, under 60 characters).
    subject: Option<String>,
    /// The text to send instead of the draft's.
    body: Option<String>,
}

steadfast::problem_responses! {
    /// What sending an answer may refuse besides the common problems.
    pub struct SendRefused {
        409 => "No draft; the answer is being sent, was sent or failed already; or the campaign was never started, is paused or archived.";
    }
}

/// `POST /api/inbox/replies/{id}/send`.
#[utoipa::path(
    post,
    path = "/api/inbox/replies/{id}/send",
    tag = "inbox",
    security(("bearer" = [])),
    params(IdempotencyKey, ("id" = String, Path, description = "The reply's id (a UUID)")),
    request_body(content = Option<SendBody>, description = "Optional edits of the draft."),
    responses(
        (status = 202, description = "The reply, its answer queued (`draft.status` `sending`).", body = InboxReply),
        Problems<(Unauthorized, NotFound, InvalidBody, SendRefused, Idempotent)>,
    )
)]
pub async fn send(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    audit: Option<AuditContext>,
    PathId(id, _): PathId<ReplyResource>,
    OptionalJsonBody(edit): OptionalJsonBody<SendBody>,
) -> ApiResult<(StatusCode, Json<InboxReply>)> {
    note_change(&audit, &user.id, TARGET, &id, None);
    let pool = &state.db.pool;
    let reply = crate::db::inbox::find(pool, &user.id, &id)
        .await?
        .ok_or_else(not_found)?;
    let Some(draft) = &reply.draft else {
        return Err(conflict(
            "This reply has no drafted answer: POST /api/inbox/replies/{id}/draft first.",
        ));
    };
    if draft.status != "draft" {
        return Err(already(&draft.status));
    }
    let mut errors = FieldErrors::new();
    let subject = errors.required_text(
        "subject",
        edit.subject.as_deref().unwrap_or(&draft.subject),
        MAX_SUBJECT_CHARS - 1,
    );
    let body = errors.required_text("body", edit.body.as_deref().unwrap_or(&draft.body), 10_000);
    if word_count(&body) >= MAX_BODY_WORDS * 4 {
        errors.add(
            "body",
            format!("must be under {} words", MAX_BODY_WORDS * 4),
        );
    }
    if subject.contains(['\n', '\r']) {
        errors.add("subject", "must be one line");
    }
    errors.finish()?;
    let ready = answers::readiness(pool, &user.id, &id)
        .await?
        .ok_or_else(not_found)?;
    let sender_email = check_campaign(&ready)?;
    if let Some(reason) = suppressions::reason(pool, &user.id, &reply.prospect_email).await? {
        return Err(field_problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "prospect_email",
            format!("is on the suppression list ({reason}): nothing is sent to it"),
        ));
    }
    let queued = answers::queue(
        &state.db,
        &user.id,
        &id,
        &subject,
        &body,
        sender_email,
        state.now(),
    )
    .await?;
    let reply = crate::db::inbox::find(pool, &user.id, &id)
        .await?
        .ok_or_else(not_found)?;
    if !queued {
        // Another call moved the draft between our read and our write.
        return Err(already(
            reply
                .draft
                .as_ref()
                .map_or("sending", |d| d.status.as_str()),
        ));
    }
    Ok((StatusCode::ACCEPTED, Json(reply)))
}

/// The sender's address when the campaign can send an answer now. The
/// sender is checked before the campaign's state: deleting a sender pauses
/// its campaigns, and the deleted sender is what the user must fix.
fn check_campaign(ready: &answers::Readiness) -> ApiResult<&str> {
    let Some(status) = ready.status.as_deref() else {
        return Err(conflict(
            "The campaign was never started, so it has no sender: start it with \
             POST /api/campaigns/{id}/send.",
        ));
    };
    let sender = match &ready.sender_email {
        None => {
            return Err(field_problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "sender",
                "the campaign's sender was deleted: start the campaign again with a verified sender",
            ));
        }
        Some(_) if !ready.sender_verified => {
            return Err(field_problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "sender",
                "the campaign's sender is not verified: open the link mailed to it first",
            ));
        }
        Some(email) => email,
    };
    if ready.archived {
        return Err(conflict(
            "The campaign is archived: unarchive it to send this answer.",
        ));
    }
    if status != "active" {
        return Err(conflict(
            "The campaign is paused: resume it to send this answer (POST /api/campaigns/{id}/resume).",
        ));
    }
    Ok(sender)
}

fn already(status: &str) -> ApiError {
    conflict(&match status {
        "sent" => "The answer to this reply was sent already.".to_owned(),
        "failed" => "The answer to this reply failed; see `draft.error`.".to_owned(),
        other => format!("The answer to this reply is being sent already (`{other}`)."),
    })
}

fn conflict(detail: &str) -> ApiError {
    ApiError::status(StatusCode::CONFLICT, detail)
}
