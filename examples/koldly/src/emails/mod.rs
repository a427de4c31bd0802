//! Emails: drafting them with the language model, and the user's review.
//!
//! - `POST /api/campaigns/{id}/emails/generate` (`{prospect_ids?}`) and
//!   `POST /api/emails/{id}/regenerate` (`{feedback?}`) answer **202** with
//!   `Location: /api/jobs/{job_id}`: the drafting runs as a background job
//!   ([`generate`]), never inside the request. Both refuse (403 plan-limit)
//!   when the month's AI budget is already used up.
//! - `GET /api/approvals` (drafts awaiting a decision, `campaign_id` filter,
//!   paginated) and `GET /api/approvals/counts` (per campaign).
//! - `POST /api/emails/{id}/approve`, `PATCH /api/emails/{id}` (an edit
//!   returns an approved or rejected email to draft), `POST
//!   /api/emails/{id}/reject` (`{reason?}`) and `POST /api/emails/approve`
//!   (`{ids}`, 1 to 100, each approved or reported in `failed`).
//!
//! A sent email is never changed (409). Another account's email, campaign or
//! prospect is a 404 exactly like a missing one, with no side effect: the
//! owner is in the `WHERE` of every statement ([`crate::db::emails`]).

pub mod generate;
pub mod input;

use axum::{
    Json,
    extract::State,
    response::{IntoResponse, Response},
};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use steadfast::audit::AuditContext;
use utoipa_axum::{router::OpenApiRouter, routes};

use self::{
    generate::{GENERATE, GeneratePayload, REGENERATE, RegeneratePayload},
    input::{BulkApprove, Edit, Generate, Regenerate, Reject},
};
use crate::{
    audit::note_change,
    auth::extract::AuthUser,
    campaigns::CampaignResource,
    db::{
        campaigns,
        emails::{self, Decision, Email, PendingCount},
        jobs::Job,
        users::User,
    },
    error::{ApiError, ApiResult},
    jobs::routes::JobView,
    keyed::Keyed,
    openapi::{
        IdempotencyKey, Idempotent, InvalidBody, InvalidQuery, NotFound, PlanLimit, Problems,
        Unauthorized,
    },
    pagination::{ListQuery, Page, PageParams},
    plans::{self, Plan},
    state::AppState,
    validation::{JsonBody, OptionalJsonBody, PathId, Resource, field_problem},
};

/// What `{id}` names in `/api/emails/{id}`.
#[derive(Debug)]
pub struct EmailResource;

impl Resource for EmailResource {
    const NAME: &'static str = "email";
}

const TARGET: &str = "email";

/// The email routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(generate_drafts))
        .routes(routes!(regenerate))
        .routes(routes!(show, edit))
        .routes(routes!(approve))
        .routes(routes!(reject))
        .routes(routes!(approve_many))
        .routes(routes!(approvals))
        .routes(routes!(counts))
}

steadfast::problem_responses! {
    /// A decision on an email that its state does not allow.
    pub struct DecisionRefused {
        409 => "The email was sent, or its state does not allow this (a rejected email cannot be approved).";
    }
}

fn not_found() -> ApiError {
    ApiError::not_found(EmailResource::NAME)
}

/// 202 with `Location` naming the job, and the job.
fn accepted(job: Job) -> Response {
    let location = HeaderValue::try_from(format!("/api/jobs/{}", job.id))
        .expect("an id is a valid header value");
    (
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(JobView::from(job)),
    )
        .into_response()
}

/// 403 when the month's AI budget is used up, noted on the audit event.
async fn check_budget(
    state: &AppState,
    audit: &Option<AuditContext>,
    user: &User,
    kind: &'static str,
    target: &str,
) -> ApiResult<()> {
    let plan = Plan::from_name(&user.subscription_plan);
    plans::check_ai_budget(&state.db, &user.id, plan, state.now())
        .await
        .inspect_err(|_| {
            note_change(
                audit,
                &user.id,
                kind,
                target,
                Some("plan limit: ai_budget_cents_per_month"),
            )
        })
}

/// `POST /api/campaigns/{id}/emails/generate`: 202 and a job drafting one
/// email per prospect (the named ones, or every one without an email yet).
#[utoipa::path(
    post,
    path = "/api/campaigns/{id}/emails/generate",
    tag = "emails",
    security(("bearer" = [])),
    params(IdempotencyKey, ("id" = String, Path, description = "The campaign's id")),
    request_body(content = Option<Generate>, description = "Optional: `prospect_ids` to draft for; by default every prospect without an email."),
    responses(
        (status = 202, description = "A job drafting one email per prospect; `Location` names it.", body = JobView,
            headers(("location" = String, description = "`/api/jobs/{id}`"))),
        Problems<(Unauthorized, NotFound, InvalidBody, PlanLimit, Idempotent)>,
    )
)]
async fn generate_drafts(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    audit: Option<AuditContext>,
    headers: http::HeaderMap,
    PathId(campaign_id, _): PathId<CampaignResource>,
    OptionalJsonBody(body): OptionalJsonBody<Generate>,
) -> ApiResult<Response> {
    note_change(&audit, &user.id, "campaign", &campaign_id, None);
    let named = body.validate()?;
    let keyed = Keyed::new(
        &headers,
        format!("/api/campaigns/{campaign_id}/emails/generate"),
    );
    if let Some(job) = state.jobs.keyed_earlier(&keyed, &user.id).await? {
        return Ok(accepted(job));
    }
    {
        let mut conn = state.db.pool.acquire().await?;
        if campaigns::archived_state(&mut conn, &user.id, &campaign_id)
            .await?
            .is_none()
        {
            return Err(ApiError::not_found(CampaignResource::NAME));
        }
    }
    let pool = &state.db.pool;
    let prospect_ids = match named {
        Some(ids) => {
            let found = emails::prospects_in_campaign(pool, &user.id, &campaign_id, &ids).await?;
            if let Some(i) = ids.iter().position(|id| !found.contains(id)) {
                return Err(field_problem(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("prospect_ids[{i}]"),
                    "no prospect with this id in the campaign",
                ));
            }
            ids
        }
        None => {
            let limit = input::MAX_PROSPECT_IDS as i64;
            emails::prospects_without_email(pool, &user.id, &campaign_id, limit).await?
        }
    };
    if prospect_ids.is_empty() {
        return Err(field_problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "prospect_ids",
            "the campaign has no prospect without an email; name the prospects to draft for",
        ));
    }
    check_budget(&state, &audit, &user, "campaign", &campaign_id).await?;
    let count = prospect_ids.len();
    let job = state
        .jobs
        .enqueue_keyed(
            &keyed,
            &user.id,
            GENERATE,
            &GeneratePayload {
                campaign_id,
                prospect_ids,
            },
        )
        .await?;
    if let Some(audit) = &audit {
        audit.insert_extra("job_id", job.id.clone());
        audit.insert_extra("prospects", count);
    }
    Ok(accepted(job))
}

/// `POST /api/emails/{id}/regenerate`: 202 and a job writing the email again,
/// with `feedback`. A sent email is a 409.
#[utoipa::path(
    post,
    path = "/api/emails/{id}/regenerate",
    tag = "emails",
    security(("bearer" = [])),
    params(IdempotencyKey, ("id" = String, Path, description = "The email's id")),
    request_body(content = Option<Regenerate>, description = "Optional: `feedback` for the new draft."),
    responses(
        (status = 202, description = "A job writing the email again; `Location` names it.", body = JobView,
            headers(("location" = String, description = "`/api/jobs/{id}`"))),
        Problems<(Unauthorized, NotFound, InvalidBody, PlanLimit, DecisionRefused, Idempotent)>,
    )
)]
async fn regenerate(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    audit: Option<AuditContext>,
    headers: http::HeaderMap,
    PathId(id, _): PathId<EmailResource>,
    OptionalJsonBody(body): OptionalJsonBody<Regenerate>,
) -> ApiResult<Response> {
    note_change(&audit, &user.id, TARGET, &id, None);
    let feedback = body.validate()?;
    let keyed = Keyed::new(&headers, format!("/api/emails/{id}/regenerate"));
    if let Some(job) = state.jobs.keyed_earlier(&keyed, &user.id).await? {
        return Ok(accepted(job));
    }
    let email = emails::find(&state.db.pool, &user.id, &id)
        .await?
        .ok_or_else(not_found)?;
    if email.status == "sent" {
        return Err(sent_already());
    }
    check_budget(&state, &audit, &user, TARGET, &id).await?;
    let job = state
        .jobs
        .enqueue_keyed(
            &keyed,
            &user.id,
            REGENERATE,
            &RegeneratePayload {
                email_id: id,
                feedback,
            },
        )
        .await?;
    if let Some(audit) = &audit {
        audit.insert_extra("job_id", job.id.clone());
    }
    Ok(accepted(job))
}

fn sent_already() -> ApiError {
    ApiError::status(
        StatusCode::CONFLICT,
        "This email was sent already; it can no longer change.",
    )
}

/// The answer to a decision on one email.
fn decided(decision: Decision, action: &str) -> ApiResult<Json<Email>> {
    match decision {
        Decision::Done(email) => Ok(Json(*email)),
        Decision::NotFound => Err(not_found()),
        Decision::Refused { status } if status == "sent" => Err(sent_already()),
        Decision::Refused { status } => Err(ApiError::status(
            StatusCode::CONFLICT,
            format!("A {status} email cannot be {action}; edit it to make it a draft again."),
        )),
    }
}

/// `GET /api/emails/{id}`.
#[utoipa::path(
    get,
    path = "/api/emails/{id}",
    tag = "emails",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The email's id")),
    responses(
        (status = 200, description = "The email with its prospect's address and name.", body = Email),
        Problems<(Unauthorized, NotFound)>,
    )
)]
async fn show(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    PathId(id, _): PathId<EmailResource>,
) -> ApiResult<Json<Email>> {
    emails::find(&state.db.pool, &user.id, &id)
        .await?
        .map(Json)
        .ok_or_else(not_found)
}

/// `POST /api/emails/{id}/approve`: a draft becomes approved (approving
/// again changes nothing); a rejected or sent email is a 409.
#[utoipa::path(
    post,
    path = "/api/emails/{id}/approve",
    tag = "emails",
    security(("bearer" = [])),
    params(IdempotencyKey, ("id" = String, Path, description = "The email's id")),
    responses(
        (status = 200, description = "The email, approved (approving again changes nothing).", body = Email),
        Problems<(Unauthorized, NotFound, DecisionRefused, Idempotent)>,
    )
)]
async fn approve(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    audit: Option<AuditContext>,
    PathId(id, _): PathId<EmailResource>,
) -> ApiResult<Json<Email>> {
    note_change(&audit, &user.id, TARGET, &id, None);
    let mut conn = state.db.pool.acquire().await?;
    let now = state.now();
    let decision = emails::approve(&mut conn, &user.id, &id, now).await?;
    if let Decision::Done(email) = &decision {
        record_approval(&state, &user.id, email, now);
    }
    decided(decision, "approved")
}

/// An `email_approved` analytics event when `email` was approved just now
/// (approving an approved email again changes nothing and records nothing).
fn record_approval(state: &AppState, user_id: &str, email: &Email, now: i64) {
    if email.approved_at == Some(now) {
        crate::analytics::record(
            state,
            crate::analytics::Event::new(
                user_id.to_owned(),
                crate::analytics::EventKind::EmailApproved,
            )
            .campaign(email.campaign_id.clone())
            .prospect(email.prospect_id.clone()),
        );
    }
}

/// `PATCH /api/emails/{id}` `{subject?, body?}`: the email is a draft again.
#[utoipa::path(
    patch,
    path = "/api/emails/{id}",
    tag = "emails",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The email's id")),
    request_body = Edit,
    responses(
        (status = 200, description = "The email, edited: a draft again.", body = Email),
        Problems<(Unauthorized, NotFound, InvalidBody, DecisionRefused)>,
    )
)]
async fn edit(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    audit: Option<AuditContext>,
    PathId(id, _): PathId<EmailResource>,
    JsonBody(body): JsonBody<Edit>,
) -> ApiResult<Json<Email>> {
    note_change(&audit, &user.id, TARGET, &id, None);
    let (subject, body) = body.validate()?;
    let decision = emails::edit(
        &state.db.pool,
        &user.id,
        &id,
        subject.as_deref(),
        body.as_deref(),
        state.now(),
    )
    .await?;
    decided(decision, "edited")
}

/// `POST /api/emails/{id}/reject` `{reason?}`.
#[utoipa::path(
    post,
    path = "/api/emails/{id}/reject",
    tag = "emails",
    security(("bearer" = [])),
    params(IdempotencyKey, ("id" = String, Path, description = "The email's id")),
    request_body(content = Option<Reject>, description = "Optional: the `reason`."),
    responses(
        (status = 200, description = "The email, rejected.", body = Email),
        Problems<(Unauthorized, NotFound, InvalidBody, DecisionRefused, Idempotent)>,
    )
)]
async fn reject(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    audit: Option<AuditContext>,
    PathId(id, _): PathId<EmailResource>,
    OptionalJsonBody(body): OptionalJsonBody<Reject>,
) -> ApiResult<Json<Email>> {
    note_change(&audit, &user.id, TARGET, &id, None);
    let reason = body.validate()?;
    let decision = emails::reject(
        &state.db.pool,
        &user.id,
        &id,
        reason.as_deref(),
        state.now(),
    )
    .await?;
    decided(decision, "rejected")
}

/// What a bulk approval did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkResult {
    /// The ids approved (or approved already).
    pub approved: Vec<String>,
    /// The others, with why.
    pub failed: Vec<BulkFailure>,
}

/// An id a bulk approval did not approve.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkFailure {
    /// The id as given.
    pub id: String,
    /// `not found` (missing, or another account's), `sent`, `rejected`.
    pub reason: String,
}

/// `POST /api/emails/approve` `{ids}`: each id approved on its own, or
/// reported in `failed`.
#[utoipa::path(
    post,
    path = "/api/emails/approve",
    tag = "emails",
    params(IdempotencyKey),
    security(("bearer" = [])),
    request_body = BulkApprove,
    responses(
        (status = 200, description = "Each id approved on its own, or listed in `failed` with why.", body = BulkResult),
        Problems<(Unauthorized, InvalidBody, Idempotent)>,
    )
)]
async fn approve_many(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    audit: Option<AuditContext>,
    JsonBody(body): JsonBody<BulkApprove>,
) -> ApiResult<Json<BulkResult>> {
    note_change(&audit, &user.id, TARGET, "bulk", None);
    let ids = body.validate()?;
    let now = state.now();
    let mut conn = state.db.pool.acquire().await?;
    let mut result = BulkResult {
        approved: Vec::new(),
        failed: Vec::new(),
    };
    for id in ids {
        match emails::approve(&mut conn, &user.id, &id, now).await? {
            Decision::Done(email) => {
                record_approval(&state, &user.id, &email, now);
                result.approved.push(id)
            }
            Decision::NotFound => result.failed.push(BulkFailure {
                id,
                reason: "not found".into(),
            }),
            Decision::Refused { status } => result.failed.push(BulkFailure {
                id,
                reason: format!("the email is {status}"),
            }),
        }
    }
    if let Some(audit) = &audit {
        audit.insert_extra("approved", result.approved.len());
        audit.insert_extra("failed", result.failed.len());
    }
    Ok(Json(result))
}

/// `GET /api/approvals?campaign_id=&limit=&cursor=`: drafts awaiting a
/// decision, newest first.
#[utoipa::path(
    get,
    path = "/api/approvals",
    tag = "emails",
    security(("bearer" = [])),
    params(
        PageParams,
        ("campaign_id" = Option<String>, Query, description = "Only this campaign's drafts"),
    ),
    responses(
        (status = 200, description = "Drafts awaiting a decision, newest first.", body = Page<Email>),
        Problems<(Unauthorized, InvalidQuery)>,
    )
)]
async fn approvals(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    query: ListQuery,
) -> ApiResult<Json<Page<Email>>> {
    let campaign_id = query.get("campaign_id");
    if campaign_id.is_some_and(|id| uuid::Uuid::try_parse(id).is_err()) {
        return Err(field_problem(
            StatusCode::BAD_REQUEST,
            "campaign_id",
            "is not an id",
        ));
    }
    let page = query.page()?;
    let rows = emails::pending(&state.db.pool, &user.id, campaign_id, &page).await?;
    Ok(Json(Page::from_rows(rows, &page, Email::cursor)))
}

/// What `GET /api/approvals/counts` answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Counts {
    /// Drafts awaiting a decision in all.
    pub total: i64,
    /// Per campaign that has any.
    pub campaigns: Vec<PendingCount>,
}

/// `GET /api/approvals/counts`.
#[utoipa::path(
    get,
    path = "/api/approvals/counts",
    tag = "emails",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Drafts awaiting a decision, in all and per campaign.", body = Counts),
        Problems<Unauthorized>,
    )
)]
async fn counts(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> ApiResult<Json<Counts>> {
    let campaigns = emails::pending_counts(&state.db.pool, &user.id).await?;
    Ok(Json(Counts {
        total: campaigns.iter().map(|c| c.pending).sum(),
        campaigns,
    }))
}
