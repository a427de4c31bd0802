//! Sends whose outcome is unknown: a worker stopped during the provider call,
//! or the provider failed in a way that may come after it took the message
//! (a timeout, a 500). koldly never resends them on its own (a lookup settles
//! them with the `sent_mail` provider; Mailgun has none), so their owner
//! checks the provider's logs for the Message-ID and says what happened:
//!
//! - `GET /api/campaigns/{id}/sending/unknown`: the campaign's `unknown`
//!   rows, oldest first (`limit`/`cursor` pagination);
//! - `POST /api/campaigns/{id}/sending/unknown/{queue_id}` with
//!   `{"outcome": "sent" | "not_sent"}`: `sent` marks the row sent (its
//!   email, or its answer to a reply, too); `not_sent` queues it again, due
//!   now, once — the row leaves `unknown`, so a second call is a 409.
//!
//! Another account's campaign or row is a 404 exactly like a missing one.

use axum::{
    Json,
    extract::{Path, State},
};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use steadfast::audit::AuditContext;

use super::{TARGET, not_found};
use crate::{
    audit::note_change,
    auth::extract::AuthUser,
    campaigns::CampaignResource,
    db::sending::{self, HandResolution, UnknownSend},
    error::{ApiError, ApiResult},
    openapi::{
        IdempotencyKey, Idempotent, InvalidBody, InvalidQuery, NotFound, Problems, Unauthorized,
    },
    pagination::{ListQuery, Page, PageParams},
    state::AppState,
    validation::{JsonBody, PathId},
};

/// `GET /api/campaigns/{id}/sending/unknown`.
#[utoipa::path(
    get,
    path = "/api/campaigns/{id}/sending/unknown",
    tag = "sending",
    security(("bearer" = [])),
    params(PageParams, ("id" = String, Path, description = "The campaign's id (a UUID)")),
    responses(
        (status = 200, description = "A page of the campaign's sends whose outcome is unknown, oldest first.", body = Page<UnknownSend>),
        Problems<(Unauthorized, NotFound, InvalidQuery)>,
    )
)]
pub async fn list_unknown(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    PathId(id, _): PathId<CampaignResource>,
    query: ListQuery,
) -> ApiResult<Json<Page<UnknownSend>>> {
    let page = query.page()?;
    let rows = sending::list_unknown(&state.db.pool, &user.id, &id, &page)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(Page::from_rows(rows, &page, UnknownSend::cursor)))
}

/// What the owner found at their provider.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckedOutcome {
    /// The provider has the message: mark it sent.
    Sent,
    /// The provider never took it: queue it again.
    NotSent,
}

/// The body of `POST /api/campaigns/{id}/sending/unknown/{queue_id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resolution {
    /// `sent` or `not_sent`.
    outcome: CheckedOutcome,
}

/// The row's state after its resolution.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Resolved {
    /// The queue row.
    pub queue_id: String,
    /// `sent`, or `queued` (it goes on a later tick).
    pub status: String,
}

steadfast::problem_responses! {
    /// What resolving an unknown send may refuse besides the common problems.
    pub struct NotUnknown {
        409 => "The row's outcome is not unknown (it was resolved already, or never was unknown).";
    }
}

/// `POST /api/campaigns/{id}/sending/unknown/{queue_id}`.
#[utoipa::path(
    post,
    path = "/api/campaigns/{id}/sending/unknown/{queue_id}",
    tag = "sending",
    security(("bearer" = [])),
    params(
        IdempotencyKey,
        ("id" = String, Path, description = "The campaign's id (a UUID)"),
        ("queue_id" = String, Path, description = "The unknown row's `queue_id` (a UUID)"),
    ),
    request_body = Resolution,
    responses(
        (status = 200, description = "Resolved: sent, or queued again.", body = Resolved),
        Problems<(Unauthorized, NotFound, InvalidBody, NotUnknown, Idempotent)>,
    )
)]
pub async fn resolve_unknown(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    audit: Option<AuditContext>,
    Path((id, queue_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<Resolution>,
) -> ApiResult<Json<Resolved>> {
    note_change(&audit, &user.id, TARGET, &id, None);
    if uuid::Uuid::try_parse(&id).is_err() || uuid::Uuid::try_parse(&queue_id).is_err() {
        return Err(unknown_not_found());
    }
    let delivered = matches!(body.outcome, CheckedOutcome::Sent);
    match sending::resolve_by_hand(&state.db, &user.id, &id, &queue_id, delivered, state.now())
        .await?
    {
        HandResolution::Resolved => Ok(Json(Resolved {
            queue_id,
            status: if delivered { "sent" } else { "queued" }.to_owned(),
        })),
        HandResolution::NotFound => Err(unknown_not_found()),
        HandResolution::NotUnknown => Err(ApiError::status(
            StatusCode::CONFLICT,
            "This send's outcome is not unknown: it was resolved already, or never was unknown.",
        )),
    }
}

/// A missing row, or one of another account's campaign (the same answer).
fn unknown_not_found() -> ApiError {
    ApiError::not_found("unknown send")
}
