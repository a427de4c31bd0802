//! `POST /api/inbox/replies/{id}/send`: sends the reply's drafted answer
//! (optionally edited in the body: `{subject?, body?}`; sending it is the
//! user's approval) from the campaign's sender, threaded under the reply
//! (`In-Reply-To` and `References` naming the reply's Message-ID), through the
//! sending queue, exactly once.
//!
//! What it checks, in order: the reply is the caller's (404), it has a draft
//! (409), the draft was not sent already (409), the edited subject and body
//! fit the rules (422), the prospect's address is not suppressed (409).
//!
//! The hand-over to the sending queue belongs to the sending engine (issue 18,
//! branch `sending`), which is not on `main` yet: until it is, a request that
//! passes every check is answered 503 (`Retry-After`), and nothing changes.

use axum::{Json, extract::State};
use http::StatusCode;
use serde::Deserialize;
use steadfast::{Problem, audit::AuditContext};

use super::{ReplyResource, TARGET, not_found};
use crate::{
    ai::tasks::{MAX_BODY_WORDS, MAX_SUBJECT_CHARS, word_count},
    audit::note_change,
    auth::extract::AuthUser,
    db::{inbox::InboxReply, suppressions},
    error::{ApiError, ApiResult},
    openapi::{IdempotencyKey, Idempotent, InvalidBody, NotFound, Problems, Unauthorized},
    state::AppState,
    validation::{FieldErrors, OptionalJsonBody, PathId},
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
        409 => "No draft, the draft was sent already, or the address is suppressed.";
        503 => "The sending queue is not on this server yet: nothing was sent; retry after `Retry-After`.";
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
        (status = 200, description = "The reply, its answer queued for sending.", body = InboxReply),
        Problems<(Unauthorized, NotFound, InvalidBody, SendRefused, Idempotent)>,
    )
)]
pub async fn send(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    audit: Option<AuditContext>,
    PathId(id, _): PathId<ReplyResource>,
    OptionalJsonBody(edit): OptionalJsonBody<SendBody>,
) -> ApiResult<Json<InboxReply>> {
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
        return Err(conflict("The answer to this reply was already sent."));
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
    if let Some(reason) = suppressions::reason(pool, &user.id, &reply.prospect_email).await? {
        return Err(conflict(&format!(
            "The prospect's address is on the suppression list ({reason}): nothing is sent to it."
        )));
    }
    Err(ApiError::from(
        Problem::new(StatusCode::SERVICE_UNAVAILABLE)
            .with_detail(
                "Answers to replies are sent through the sending queue, which this server does \
                 not run yet. Nothing was sent; the draft is kept.",
            )
            .with_retry_after(std::time::Duration::from_secs(3600)),
    ))
}

fn conflict(detail: &str) -> ApiError {
    ApiError::status(StatusCode::CONFLICT, detail)
}
