//! Campaigns: `GET/POST /api/campaigns`, `GET/PATCH/DELETE
//! /api/campaigns/{id}`, `POST .../duplicate`, `PUT .../archive` and
//! `PUT .../unarchive`.
//!
//! Creating, duplicating and unarchiving add an active campaign, so each runs
//! in [`plans::begin_limited`]'s transaction and checks the plan first.
//! Archiving only sets `archived_at`: the lifecycle status stays, and
//! unarchiving gives it back as it was.

pub mod input;

use std::marker::PhantomData;

use axum::{
    Json,
    extract::State,
    response::{IntoResponse, Response},
};
use http::{HeaderValue, StatusCode, header};
use steadfast::{audit::AuditContext, idempotency::IdempotencyKey as IdempotencyKeyValue};
use utoipa_axum::{router::OpenApiRouter, routes};

use self::input::{CreateCampaign, DuplicateCampaign, UpdateCampaign};
use crate::{
    audit::note_change,
    auth::extract::AuthUser,
    db::{
        campaigns::{self, ArchiveFilter, Campaign},
        icp_templates,
    },
    error::{ApiError, ApiResult},
    keyed::Keyed,
    openapi::{
        IdempotencyKey, Idempotent, InvalidBody, InvalidQuery, NotFound, PlanLimit, Problems,
        Unauthorized,
    },
    pagination::{ListQuery, Page, PageParams},
    plans::{self, Limit, Plan},
    state::AppState,
    validation::{JsonBody, OptionalJsonBody, PathId, Resource, field_problem},
};

/// The campaign routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, update, remove))
        .routes(routes!(duplicate))
        .routes(routes!(archive))
        .routes(routes!(unarchive))
}

const TARGET: &str = "campaign";

/// What `{id}` names in the campaign routes.
#[derive(Debug)]
pub struct CampaignResource;

impl Resource for CampaignResource {
    const NAME: &'static str = TARGET;
}

fn not_found() -> ApiError {
    ApiError::not_found(CampaignResource::NAME)
}

/// 201 with `Location` and the campaign.
pub(crate) fn created(campaign: Campaign) -> Response {
    let location = HeaderValue::try_from(format!("/api/campaigns/{}", campaign.id))
        .expect("an id is a valid header value");
    (
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(campaign),
    )
        .into_response()
}

/// Refuses with the plan's problem unless one more active campaign fits,
/// noting the reason on the audit event.
pub(crate) fn check_active_campaigns(
    audit: &Option<AuditContext>,
    actor: &str,
    target: &str,
    plan: Plan,
    active: i64,
) -> ApiResult<()> {
    plans::check(plan, Limit::ActiveCampaigns, active, 1).map_err(|refused| {
        note_change(
            audit,
            actor,
            TARGET,
            target,
            Some("plan limit: active_campaigns"),
        );
        ApiError::from(refused)
    })
}

// Documents the campaign list's `status` filter (the handler reads it with
// `ListQuery::one_of`; `tests/openapi.rs` checks both agree).
/// Which campaigns to list.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ListFilter {
    /// Not archived (the default).
    Active,
    /// Archived only.
    Archived,
    /// Both.
    All,
}

/// `GET /api/campaigns?status=active|archived|all&limit=&cursor=`: newest
/// first, each with its counts.
#[utoipa::path(
    get,
    path = "/api/campaigns",
    tag = "campaigns",
    security(("bearer" = [])),
    params(
        PageParams,
        ("status" = inline(Option<ListFilter>), Query, description = "`active` (default), `archived` or `all`"),
    ),
    responses(
        (status = 200, description = "A page of campaigns, newest first, each with its counts.", body = Page<Campaign>),
        Problems<(Unauthorized, InvalidQuery)>,
    )
)]
async fn list(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    query: ListQuery,
) -> ApiResult<Json<Page<Campaign>>> {
    let filter = match query.one_of("status", &["active", "archived", "all"], Some("active"))? {
        Some("archived") => ArchiveFilter::Archived,
        Some("all") => ArchiveFilter::All,
        _ => ArchiveFilter::Active,
    };
    let page = query.page()?;
    let rows = campaigns::list(&state.db.pool, &user.id, filter, &page).await?;
    Ok(Json(Page::from_rows(rows, &page, Campaign::cursor)))
}

/// `POST /api/campaigns`: 201, or 403 at the plan's active-campaign limit.
/// From a template (`icp_template_id`), the template's description is copied
/// unless one is given, and its use is counted.
#[utoipa::path(
    post,
    path = "/api/campaigns",
    tag = "campaigns",
    params(IdempotencyKey),
    security(("bearer" = [])),
    request_body = CreateCampaign,
    responses(
        (status = 201, description = "The campaign; `Location` names it.", body = Campaign,
            headers(("location" = String, description = "`/api/campaigns/{id}`"))),
        Problems<(Unauthorized, InvalidBody, PlanLimit, Idempotent)>,
    )
)]
async fn create(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    audit: Option<AuditContext>,
    headers: http::HeaderMap,
    JsonBody(body): JsonBody<CreateCampaign>,
) -> ApiResult<Response> {
    note_change(&audit, &user.id, TARGET, "new", None);
    let mut new = body.validate()?;
    // The idempotency layer (scoped by user) has checked the key already.
    let key = IdempotencyKeyValue::from_headers(&headers).ok().flatten();
    let key = key.as_ref().map(IdempotencyKeyValue::as_str);
    let (mut tx, plan) = plans::begin_limited(&state.db, &user.id).await?;
    // The layer's record of a completed request lives in its store, written
    // after this transaction commits: a process killed between the two leaves
    // the key merely claimed, and a retry after the claim expires would run
    // again. The key on the row (same transaction) answers that retry with
    // the campaign it made. The user's row lock taken above serialises it.
    if let Some(key) = key
        && let Some(id) = campaigns::created_with_key(&mut tx, &user.id, key).await?
    {
        let campaign = campaigns::find(&mut tx, &user.id, &id)
            .await?
            .ok_or_else(|| ApiError::internal("campaign create", "the keyed row is missing"))?;
        tx.commit().await?;
        note_change(&audit, &user.id, TARGET, &id, None);
        return Ok(created(campaign));
    }
    let active = campaigns::count_active(&mut tx, &user.id).await?;
    check_active_campaigns(&audit, &user.id, "new", plan, active)?;
    if let Some(template) = &new.icp_template_id {
        let unknown = || {
            field_problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "icp_template_id",
                "no ICP template with this id",
            )
        };
        if uuid::Uuid::try_parse(template).is_err() {
            return Err(unknown());
        }
        let description = icp_templates::count_use(&mut tx, &user.id, template)
            .await?
            .ok_or_else(unknown)?;
        if new.description.is_none() {
            new.description = description;
        }
    }
    let id = campaigns::insert(&mut tx, &user.id, &new, key, state.now()).await?;
    let campaign = campaigns::find(&mut tx, &user.id, &id)
        .await?
        .ok_or_else(|| ApiError::internal("campaign create", "the new row is missing"))?;
    tx.commit().await?;
    note_change(&audit, &user.id, TARGET, &id, None);
    crate::analytics::record(
        &state,
        crate::analytics::Event::new(
            user.id.clone(),
            crate::analytics::EventKind::CampaignCreated,
        )
        .campaign(id.clone()),
    );
    Ok(created(campaign))
}

/// `GET /api/campaigns/{id}`.
#[utoipa::path(
    get,
    path = "/api/campaigns/{id}",
    tag = "campaigns",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The campaign's id (a UUID)")),
    responses(
        (status = 200, description = "The campaign with its counts.", body = Campaign),
        Problems<(Unauthorized, NotFound)>,
    )
)]
async fn show(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    PathId(id, _): PathId<CampaignResource>,
) -> ApiResult<Json<Campaign>> {
    let mut conn = state.db.pool.acquire().await?;
    campaigns::find(&mut conn, &user.id, &id)
        .await?
        .map(Json)
        .ok_or_else(not_found)
}

/// `PATCH /api/campaigns/{id}`.
#[utoipa::path(
    patch,
    path = "/api/campaigns/{id}",
    tag = "campaigns",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The campaign's id (a UUID)")),
    request_body = UpdateCampaign,
    responses(
        (status = 200, description = "The campaign as changed.", body = Campaign),
        Problems<(Unauthorized, NotFound, InvalidBody)>,
    )
)]
async fn update(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    audit: Option<AuditContext>,
    PathId(id, _): PathId<CampaignResource>,
    JsonBody(body): JsonBody<UpdateCampaign>,
) -> ApiResult<Json<Campaign>> {
    note_change(&audit, &user.id, TARGET, &id, None);
    let patch = body.validate()?;
    if !campaigns::update(&state.db.pool, &user.id, &id, &patch, state.now()).await? {
        return Err(not_found());
    }
    show(State(state), AuthUser(user), PathId(id, PhantomData)).await
}

/// `POST /api/campaigns/{id}/duplicate` with an optional `{"name": ...}`: a
/// new draft with the same content and no prospects; 201, 403 at the limit.
#[utoipa::path(
    post,
    path = "/api/campaigns/{id}/duplicate",
    tag = "campaigns",
    security(("bearer" = [])),
    params(IdempotencyKey, ("id" = String, Path, description = "The campaign's id (a UUID)")),
    request_body(content = Option<DuplicateCampaign>, description = "Optional: the copy's name"),
    responses(
        (status = 201, description = "The copy, a draft without prospects; `Location` names it.", body = Campaign,
            headers(("location" = String, description = "`/api/campaigns/{id}`"))),
        Problems<(Unauthorized, NotFound, InvalidBody, PlanLimit, Idempotent)>,
    )
)]
async fn duplicate(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    audit: Option<AuditContext>,
    headers: http::HeaderMap,
    PathId(id, _): PathId<CampaignResource>,
    OptionalJsonBody(body): OptionalJsonBody<DuplicateCampaign>,
) -> ApiResult<Response> {
    note_change(&audit, &user.id, TARGET, &id, None);
    let name = body.validate()?;
    let keyed = Keyed::new(&headers, format!("/api/campaigns/{id}/duplicate"));
    let now = state.now();
    let (mut tx, plan) = plans::begin_limited(&state.db, &user.id).await?;
    // A retry the idempotency store forgot answers the first run's copy,
    // before the plan's limit counts it (the user's row lock serialises).
    if let Some(copy) = keyed.earlier(&mut tx, &user.id, TARGET, now).await? {
        let campaign = campaigns::find(&mut tx, &user.id, &copy)
            .await?
            .ok_or_else(not_found)?;
        tx.commit().await?;
        return Ok(created(campaign));
    }
    if campaigns::archived_state(&mut tx, &user.id, &id)
        .await?
        .is_none()
    {
        return Err(not_found());
    }
    let active = campaigns::count_active(&mut tx, &user.id).await?;
    check_active_campaigns(&audit, &user.id, &id, plan, active)?;
    let copy = campaigns::duplicate(&mut tx, &user.id, &id, name.as_deref(), now)
        .await?
        .ok_or_else(not_found)?;
    keyed.record(&mut tx, &user.id, TARGET, &copy, now).await?;
    let campaign = campaigns::find(&mut tx, &user.id, &copy)
        .await?
        .ok_or_else(|| ApiError::internal("campaign duplicate", "the new row is missing"))?;
    tx.commit().await?;
    if let Some(audit) = &audit {
        audit.insert_extra("copy_id", copy);
    }
    Ok(created(campaign))
}

/// `PUT /api/campaigns/{id}/archive`: idempotent; the status is kept.
#[utoipa::path(
    put,
    path = "/api/campaigns/{id}/archive",
    tag = "campaigns",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The campaign's id (a UUID)")),
    responses(
        (status = 200, description = "The campaign, archived (its status is kept).", body = Campaign),
        Problems<(Unauthorized, NotFound)>,
    )
)]
async fn archive(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    audit: Option<AuditContext>,
    PathId(id, _): PathId<CampaignResource>,
) -> ApiResult<Json<Campaign>> {
    note_change(&audit, &user.id, TARGET, &id, None);
    let mut conn = state.db.pool.acquire().await?;
    if !campaigns::set_archived(&mut conn, &user.id, &id, true, state.now()).await? {
        return Err(not_found());
    }
    campaigns::find(&mut conn, &user.id, &id)
        .await?
        .map(Json)
        .ok_or_else(not_found)
}

/// `PUT /api/campaigns/{id}/unarchive`: the campaign counts as active again,
/// so the plan's limit applies; unarchiving one that is not archived changes
/// nothing.
#[utoipa::path(
    put,
    path = "/api/campaigns/{id}/unarchive",
    tag = "campaigns",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The campaign's id (a UUID)")),
    responses(
        (status = 200, description = "The campaign, active again.", body = Campaign),
        Problems<(Unauthorized, NotFound, PlanLimit)>,
    )
)]
async fn unarchive(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    audit: Option<AuditContext>,
    PathId(id, _): PathId<CampaignResource>,
) -> ApiResult<Json<Campaign>> {
    note_change(&audit, &user.id, TARGET, &id, None);
    let (mut tx, plan) = plans::begin_limited(&state.db, &user.id).await?;
    match campaigns::archived_state(&mut tx, &user.id, &id).await? {
        None => return Err(not_found()),
        Some(false) => {}
        Some(true) => {
            let active = campaigns::count_active(&mut tx, &user.id).await?;
            check_active_campaigns(&audit, &user.id, &id, plan, active)?;
            campaigns::set_archived(&mut tx, &user.id, &id, false, state.now()).await?;
        }
    }
    let campaign = campaigns::find(&mut tx, &user.id, &id)
        .await?
        .ok_or_else(not_found)?;
    tx.commit().await?;
    Ok(Json(campaign))
}

/// `DELETE /api/campaigns/{id}`: 204; its prospects, emails and queue go with
/// it in one transaction.
#[utoipa::path(
    delete,
    path = "/api/campaigns/{id}",
    tag = "campaigns",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The campaign's id (a UUID)")),
    responses(
        (status = 204, description = "Deleted, with its prospects, emails and queue."),
        Problems<(Unauthorized, NotFound)>,
    )
)]
async fn remove(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    audit: Option<AuditContext>,
    PathId(id, _): PathId<CampaignResource>,
) -> ApiResult<StatusCode> {
    note_change(&audit, &user.id, TARGET, &id, None);
    if campaigns::delete(&state.db.pool, &user.id, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found())
    }
}
