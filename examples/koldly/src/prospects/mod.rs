//! Prospects: `POST /api/campaigns/{id}/prospects` (import, JSON or CSV),
//! `GET /api/campaigns/{id}/prospects` and `DELETE /api/prospects/{id}`.
//!
//! An import answers `{imported, duplicates, invalid: [{row, reason}]}`: a
//! duplicate is an address the campaign already holds or one repeated in the
//! import, compared case-insensitively. Imported prospects count towards the
//! plan's monthly allowance; an import that would pass it is refused whole
//! (403), inside the transaction that would have written it.

pub mod import;

use axum::{
    Json,
    extract::{Request, State},
};
use http::StatusCode;
use serde::Serialize;
use steadfast::audit::AuditContext;
use utoipa_axum::{router::OpenApiRouter, routes};

use self::import::{InvalidRow, ProspectRows, Rows};
use crate::{
    audit::note_change,
    auth::extract::AuthUser,
    campaigns::CampaignResource,
    db::{
        campaigns,
        prospects::{self, Prospect},
        usage,
    },
    error::{ApiError, ApiResult},
    openapi::{
        IdempotencyKey, Idempotent, InvalidQuery, NotFound, PlanLimit, Problems, Unauthorized,
    },
    pagination::{ListQuery, Page, PageParams},
    plans::{self, Limit},
    state::AppState,
    validation::{PathId, Resource, body_bytes, has_content_type},
};

/// The statuses a prospect can have.
pub const STATUSES: &[&str] = &[
    "new",
    "researched",
    "email_generated",
    "queued",
    "contacted",
    "replied",
    "bounced",
    "unsubscribed",
];

// Documents [`STATUSES`] (`tests/openapi.rs` checks both agree).
/// A prospect's status.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum StatusFilter {
    /// Just added.
    New,
    /// Researched.
    Researched,
    /// An email was drafted.
    EmailGenerated,
    /// Waiting to be sent.
    Queued,
    /// Sent to.
    Contacted,
    /// Answered.
    Replied,
    /// The address bounced.
    Bounced,
    /// Asked to hear no more.
    Unsubscribed,
}

/// What `{id}` names in `/api/prospects/{id}`.
#[derive(Debug)]
pub struct ProspectResource;

impl Resource for ProspectResource {
    const NAME: &'static str = "prospect";
}

/// The prospect routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, import_prospects))
        .routes(routes!(remove))
}

steadfast::problem_responses! {
    /// An import's own problems.
    pub struct ImportProblems {
        400 => "The file cannot be read: not JSON, malformed CSV, no `email` column, no rows or more than 500.",
            types = [crate::error::types::VALIDATION];
        415 => "The body is neither `application/json` nor `text/csv`.";
    }
}

/// What an import did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportSummary {
    /// Prospects added.
    pub imported: i64,
    /// Rows skipped because the campaign holds their address already.
    pub duplicates: i64,
    /// Rows refused, with why.
    pub invalid: Vec<InvalidRow>,
}

/// `POST /api/campaigns/{id}/prospects` with `application/json` (an array of
/// 1 to 500 objects) or `text/csv` (a header row, then 1 to 500 rows).
#[utoipa::path(
    post,
    path = "/api/campaigns/{id}/prospects",
    tag = "prospects",
    security(("bearer" = [])),
    params(IdempotencyKey, ("id" = String, Path, description = "The campaign's id")),
    request_body(
        description = "1 to 500 prospects: a JSON array, or CSV with a header row (`email` required; \
                       first_name, last_name, company, title, website, industry, linkedin_url).",
        content((ProspectRows = "application/json"), (String = "text/csv")),
    ),
    responses(
        (status = 200, description = "What the import did; refused rows are listed with their reason.", body = ImportSummary),
        Problems<(Unauthorized, NotFound, ImportProblems, PlanLimit, Idempotent)>,
    )
)]
async fn import_prospects(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    audit: Option<AuditContext>,
    PathId(campaign_id, _): PathId<CampaignResource>,
    request: Request,
) -> ApiResult<Json<ImportSummary>> {
    note_change(&audit, &user.id, "campaign", &campaign_id, None);
    let headers = request.headers().clone();
    let body = body_bytes(request, &state).await?;
    let Rows { valid, invalid } = if has_content_type(&headers, "application/json") {
        import::from_json(&body)?
    } else if has_content_type(&headers, "text/csv") {
        import::from_csv(&body)?
    } else {
        return Err(ApiError::status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Send prospects as `application/json` (an array) or `text/csv` (with a header row).",
        ));
    };

    let now = state.now();
    let period = plans::period_of(now);
    let (mut tx, plan) = plans::begin_limited(&state.db, &user.id).await?;
    if campaigns::archived_state(&mut tx, &user.id, &campaign_id)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found(CampaignResource::NAME));
    }
    // Naturally idempotent, so no keyed_creates record (crate::keyed): a
    // rerun of the same import (a retry the idempotency store forgot) finds
    // every row on the unique (campaign, lower(email)) index, inserts none
    // and counts none against the plan; it answers them as `duplicates`.
    let used = usage::prospects_imported(&mut tx, &user.id, &period).await?;
    let (mut imported, mut duplicates) = (0i64, 0i64);
    for (_, prospect) in &valid {
        if prospects::insert_unless_duplicate(&mut tx, &user.id, &campaign_id, prospect, now)
            .await?
        {
            imported += 1;
        } else {
            duplicates += 1;
        }
    }
    if let Err(refused) = plans::check(plan, Limit::ProspectsPerMonth, used, imported) {
        // Dropping the transaction rolls every row of this import back.
        note_change(
            &audit,
            &user.id,
            "campaign",
            &campaign_id,
            Some("plan limit: prospects_per_month"),
        );
        return Err(refused.into());
    }
    if imported > 0 {
        usage::add_prospects(&mut tx, &user.id, &period, imported).await?;
    }
    tx.commit().await?;
    if imported > 0 {
        crate::analytics::record(
            &state,
            crate::analytics::Event::new(
                user.id.clone(),
                crate::analytics::EventKind::ProspectsImported,
            )
            .campaign(campaign_id.clone())
            .with("count", imported),
        );
    }
    if let Some(audit) = &audit {
        audit.insert_extra("imported", imported);
        audit.insert_extra("duplicates", duplicates);
        audit.insert_extra("invalid", invalid.len());
    }
    Ok(Json(ImportSummary {
        imported,
        duplicates,
        invalid,
    }))
}

/// `GET /api/campaigns/{id}/prospects?status=&limit=&cursor=`: newest first,
/// each with its newest email's status.
#[utoipa::path(
    get,
    path = "/api/campaigns/{id}/prospects",
    tag = "prospects",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The campaign's id"),
        PageParams,
        ("status" = inline(Option<StatusFilter>), Query, description = "Only prospects with this status"),
    ),
    responses(
        (status = 200, description = "A page of prospects, newest first, each with its newest email's status.", body = Page<Prospect>),
        Problems<(Unauthorized, NotFound, InvalidQuery)>,
    )
)]
async fn list(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    PathId(campaign_id, _): PathId<CampaignResource>,
    query: ListQuery,
) -> ApiResult<Json<Page<Prospect>>> {
    let status = query.one_of("status", STATUSES, None)?;
    let page = query.page()?;
    {
        let mut conn = state.db.pool.acquire().await?;
        if campaigns::archived_state(&mut conn, &user.id, &campaign_id)
            .await?
            .is_none()
        {
            return Err(ApiError::not_found(CampaignResource::NAME));
        }
    }
    let rows = prospects::list(&state.db.pool, &user.id, &campaign_id, status, &page).await?;
    Ok(Json(Page::from_rows(rows, &page, Prospect::cursor)))
}

/// `DELETE /api/prospects/{id}`: 204; its emails and queue entries go with it.
/// The month's import count is not given back.
#[utoipa::path(
    delete,
    path = "/api/prospects/{id}",
    tag = "prospects",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The prospect's id")),
    responses(
        (status = 204, description = "Deleted, with its emails and queue entries."),
        Problems<(Unauthorized, NotFound)>,
    )
)]
async fn remove(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    audit: Option<AuditContext>,
    PathId(id, _): PathId<ProspectResource>,
) -> ApiResult<StatusCode> {
    note_change(&audit, &user.id, "prospect", &id, None);
    match prospects::delete(&state.db.pool, &user.id, &id).await? {
        Some(campaign_id) => {
            if let Some(audit) = &audit {
                audit.insert_extra("campaign_id", campaign_id);
            }
            Ok(StatusCode::NO_CONTENT)
        }
        None => Err(ApiError::not_found(ProspectResource::NAME)),
    }
}
