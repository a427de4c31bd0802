//! The inbox: the replies to an account's campaigns, as
//! [`crate::webhooks`]' inbound route stored them.
//!
//! - `GET /api/inbox/replies`: filters `campaign_id`, `category`, `is_read`
//!   (`true`/`false`), `is_archived` (`false` by default, `true` or `all`);
//!   `sort` = `newest` (default), `oldest` or `confidence`; `limit`/`cursor`
//!   pagination, with `total` (every page) beside `items` and `next_cursor`.
//! - `GET /api/inbox/replies/{id}`; `PATCH /api/inbox/replies/{id}`
//!   (`is_read`, `is_archived`, `category`: a category set by hand is the
//!   user's, confidence 1, and `unsubscribe` suppresses the address).
//! - `POST /api/inbox/replies/{id}/categorize` and `POST
//!   /api/inbox/replies/{id}/draft` answer **202** with `Location:
//!   /api/jobs/{job_id}`: the work runs as a job ([`jobs`]).
//! - `POST /api/inbox/replies/{id}/send`: **202**, the drafted answer queued
//!   once on the campaign's sending queue, sent from the campaign's sender,
//!   threaded under the reply, then `sent` or `failed` (see [`send`] for the
//!   checks and the window and daily-limit rules).
//! - `GET /api/inbox/stats` (`campaign_id` optional): the non-archived
//!   replies by category, with their unread counts, as numbers.
//!
//! Another account's reply is a 404 exactly like a missing one, with no side
//! effect: the owner is in the `WHERE` of every statement ([`crate::db::inbox`]).

pub mod jobs;
pub mod return_date;
pub mod send;

use std::collections::BTreeMap;

use axum::{
    Json,
    extract::State,
    response::{IntoResponse, Response},
};
use http::{HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use steadfast::audit::AuditContext;
use utoipa_axum::{router::OpenApiRouter, routes};

use self::jobs::{CATEGORIZE, DRAFT, ReplyPayload, unsubscribe_prospect};
use crate::{
    audit::note_change,
    auth::extract::AuthUser,
    db::{
        inbox::{self, CategoryCount, Change, Filters, InboxReply, Sort},
        jobs::Job,
    },
    error::{ApiError, ApiResult},
    jobs::routes::JobView,
    keyed::Keyed,
    openapi::{
        IdempotencyKey, Idempotent, InvalidBody, InvalidQuery, NotFound, Problems, Unauthorized,
    },
    pagination::{ListQuery, Page, PageParams},
    state::AppState,
    validation::{JsonBody, PathId, Resource, field_problem},
};

/// What `{id}` names in `/api/inbox/replies/{id}`.
#[derive(Debug)]
pub struct ReplyResource;

impl Resource for ReplyResource {
    const NAME: &'static str = "reply";
}

const TARGET: &str = "reply";

/// Every category a reply can be filed under, in the order stats list them.
pub const CATEGORIES: &[&str] = &[
    "uncategorized",
    "interested",
    "question",
    "objection",
    "out_of_office",
    "not_interested",
    "unsubscribe",
    "bounce",
    "other",
];

/// The inbox routes, documented in the OpenAPI document (tag `inbox`).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show, update))
        .routes(routes!(categorize))
        .routes(routes!(draft))
        .routes(routes!(send::send))
        .routes(routes!(stats))
}

fn not_found() -> ApiError {
    ApiError::not_found(ReplyResource::NAME)
}

/// A page of replies and how many match in all.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReplyPage {
    /// The replies, in the list's order.
    items: Vec<InboxReply>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    next_cursor: Option<String>,
    /// Every reply the filters match, on all pages.
    total: i64,
}

/// An optional id filter: a UUID, else a 400 naming it.
fn id_filter(query: &ListQuery, name: &str) -> ApiResult<Option<String>> {
    match query.get(name) {
        None | Some("") => Ok(None),
        Some(id) if uuid::Uuid::try_parse(id).is_ok() => Ok(Some(id.to_owned())),
        Some(_) => Err(field_problem(
            StatusCode::BAD_REQUEST,
            name,
            "must be a campaign id",
        )),
    }
}

// Documents the reply list's yes/no filters (read by `bool_filter`).
/// Whether to keep the replies with the flag, without it, or both.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum BoolFilter {
    /// Only the replies with the flag.
    True,
    /// Only the replies without it.
    False,
    /// Both.
    All,
}

// Documents the reply list's `sort` (read in `list`).
/// The order of the replies.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum SortParam {
    /// Newest first (the default).
    Newest,
    /// Oldest first.
    Oldest,
    /// Most confident categorization first.
    Confidence,
}

fn bool_filter(query: &ListQuery, name: &str, default: Option<&str>) -> ApiResult<Option<bool>> {
    Ok(
        match query.one_of(name, &["true", "false", "all"], default)? {
            Some("true") => Some(true),
            Some("false") => Some(false),
            _ => None,
        },
    )
}

/// `GET /api/inbox/replies`.
#[utoipa::path(
    get,
    path = "/api/inbox/replies",
    tag = "inbox",
    security(("bearer" = [])),
    params(
        PageParams,
        ("campaign_id" = Option<String>, Query, description = "Only the replies to this campaign (a UUID)"),
        ("category" = inline(Option<CategoryInput>), Query, description = "Only the replies in this category"),
        ("is_read" = inline(Option<BoolFilter>), Query, description = "`true`, `false` or `all` (the default: both)"),
        ("is_archived" = inline(Option<BoolFilter>), Query, description = "`false` (default), `true` or `all`"),
        ("sort" = inline(Option<SortParam>), Query, description = "`newest` (default), `oldest` or `confidence`"),
    ),
    responses(
        (status = 200, description = "A page of the caller's replies and their total.", body = ReplyPage),
        Problems<(Unauthorized, InvalidQuery)>,
    )
)]
async fn list(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    query: ListQuery,
) -> ApiResult<Json<ReplyPage>> {
    let page = query.page()?;
    let filters = Filters {
        campaign_id: id_filter(&query, "campaign_id")?,
        category: query
            .one_of("category", CATEGORIES, None)?
            .map(str::to_owned),
        is_read: bool_filter(&query, "is_read", None)?,
        is_archived: bool_filter(&query, "is_archived", Some("false"))?,
    };
    let sort = match query.one_of("sort", &["newest", "oldest", "confidence"], Some("newest"))? {
        Some("oldest") => Sort::Oldest,
        Some("confidence") => Sort::Confidence,
        _ => Sort::Newest,
    };
    let pool = &state.db.pool;
    let rows = inbox::list(pool, &user.id, &filters, sort, &page).await?;
    let total = inbox::count(pool, &user.id, &filters).await?;
    let Page { items, next_cursor } = Page::from_rows(rows, &page, |r| r.cursor(sort));
    Ok(Json(ReplyPage {
        items,
        next_cursor,
        total,
    }))
}

/// `GET /api/inbox/replies/{id}`.
#[utoipa::path(
    get,
    path = "/api/inbox/replies/{id}",
    tag = "inbox",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The reply's id (a UUID)")),
    responses(
        (status = 200, description = "The reply.", body = InboxReply),
        Problems<(Unauthorized, NotFound)>,
    )
)]
async fn show(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    PathId(id, _): PathId<ReplyResource>,
) -> ApiResult<Json<InboxReply>> {
    inbox::find(&state.db.pool, &user.id, &id)
        .await?
        .map(Json)
        .ok_or_else(not_found)
}

/// A reply's category as a client names it.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum CategoryInput {
    Uncategorized,
    Interested,
    NotInterested,
    OutOfOffice,
    Objection,
    Question,
    Unsubscribe,
    Bounce,
    Other,
}

impl CategoryInput {
    fn as_str(self) -> &'static str {
        match self {
            Self::Uncategorized => "uncategorized",
            Self::Interested => "interested",
            Self::NotInterested => "not_interested",
            Self::OutOfOffice => "out_of_office",
            Self::Objection => "objection",
            Self::Question => "question",
            Self::Unsubscribe => "unsubscribe",
            Self::Bounce => "bounce",
            Self::Other => "other",
        }
    }
}

/// The body of `PATCH /api/inbox/replies/{id}`: at least one field.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct Patch {
    /// Read or unread.
    #[serde(default)]
    #[schema(value_type = bool)]
    is_read: Option<bool>,
    /// Archived or not.
    #[serde(default)]
    #[schema(value_type = bool)]
    is_archived: Option<bool>,
    /// A category set by hand (`unsubscribe` suppresses the address).
    #[serde(default)]
    #[schema(value_type = CategoryInput)]
    category: Option<CategoryInput>,
}

/// `PATCH /api/inbox/replies/{id}`.
#[utoipa::path(
    patch,
    path = "/api/inbox/replies/{id}",
    tag = "inbox",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The reply's id (a UUID)")),
    request_body = Patch,
    responses(
        (status = 200, description = "The reply as changed.", body = InboxReply),
        Problems<(Unauthorized, NotFound, InvalidBody)>,
    )
)]
async fn update(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    audit: Option<AuditContext>,
    PathId(id, _): PathId<ReplyResource>,
    JsonBody(patch): JsonBody<Patch>,
) -> ApiResult<Json<InboxReply>> {
    note_change(&audit, &user.id, TARGET, &id, None);
    if patch.is_read.is_none() && patch.is_archived.is_none() && patch.category.is_none() {
        return Err(field_problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "body",
            "must set at least one of is_read, is_archived, category",
        ));
    }
    let change = Change {
        is_read: patch.is_read,
        is_archived: patch.is_archived,
        category: patch.category.map(|c| c.as_str().to_owned()),
    };
    let pool = &state.db.pool;
    if !inbox::update(pool, &user.id, &id, &change, state.now()).await? {
        return Err(not_found());
    }
    let reply = inbox::find(pool, &user.id, &id)
        .await?
        .ok_or_else(not_found)?;
    if matches!(patch.category, Some(CategoryInput::Unsubscribe)) {
        unsubscribe_prospect(&state, &user.id, &reply.prospect_id, &reply.prospect_email).await?;
    }
    Ok(Json(reply))
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

/// Queues a job of `kind` on reply `id` of the user, after checking it is theirs.
/// A retry with the `Idempotency-Key` of a request the idempotency store
/// forgot answers the job that request queued ([`crate::keyed`]).
async fn enqueue(
    state: &AppState,
    keyed: &Keyed,
    user_id: &str,
    id: &str,
    kind: &str,
    force: bool,
) -> ApiResult<Response> {
    if let Some(job) = state.jobs.keyed_earlier(keyed, user_id).await? {
        return Ok(accepted(job));
    }
    if inbox::find(&state.db.pool, user_id, id).await?.is_none() {
        return Err(not_found());
    }
    let payload = ReplyPayload {
        reply_id: id.to_owned(),
        force,
    };
    let job = state
        .jobs
        .enqueue_keyed(keyed, user_id, kind, &payload)
        .await?;
    Ok(accepted(job))
}

/// `POST /api/inbox/replies/{id}/categorize`: 202 and a job filing the reply
/// again (replacing a category set by hand).
#[utoipa::path(
    post,
    path = "/api/inbox/replies/{id}/categorize",
    tag = "inbox",
    security(("bearer" = [])),
    params(IdempotencyKey, ("id" = String, Path, description = "The reply's id (a UUID)")),
    responses(
        (status = 202, description = "The categorisation job; `Location` names it.", body = JobView,
            headers(("location" = String, description = "`/api/jobs/{job_id}`"))),
        Problems<(Unauthorized, NotFound, Idempotent)>,
    )
)]
async fn categorize(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    audit: Option<AuditContext>,
    headers: http::HeaderMap,
    PathId(id, _): PathId<ReplyResource>,
) -> ApiResult<Response> {
    note_change(&audit, &user.id, TARGET, &id, None);
    let keyed = Keyed::new(&headers, format!("/api/inbox/replies/{id}/categorize"));
    enqueue(&state, &keyed, &user.id, &id, CATEGORIZE, true).await
}

/// `POST /api/inbox/replies/{id}/draft`: 202 and a job drafting an answer.
#[utoipa::path(
    post,
    path = "/api/inbox/replies/{id}/draft",
    tag = "inbox",
    security(("bearer" = [])),
    params(IdempotencyKey, ("id" = String, Path, description = "The reply's id (a UUID)")),
    responses(
        (status = 202, description = "The drafting job; `Location` names it.", body = JobView,
            headers(("location" = String, description = "`/api/jobs/{job_id}`"))),
        Problems<(Unauthorized, NotFound, Idempotent)>,
    )
)]
async fn draft(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    audit: Option<AuditContext>,
    headers: http::HeaderMap,
    PathId(id, _): PathId<ReplyResource>,
) -> ApiResult<Response> {
    note_change(&audit, &user.id, TARGET, &id, None);
    let keyed = Keyed::new(&headers, format!("/api/inbox/replies/{id}/draft"));
    enqueue(&state, &keyed, &user.id, &id, DRAFT, false).await
}

/// The answer of `GET /api/inbox/stats`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Stats {
    /// Non-archived replies.
    total: i64,
    /// Of which unread.
    unread: i64,
    /// Every category, with its count and unread count.
    by_category: BTreeMap<String, CategoryCount>,
}

/// `GET /api/inbox/stats`.
#[utoipa::path(
    get,
    path = "/api/inbox/stats",
    tag = "inbox",
    security(("bearer" = [])),
    params(("campaign_id" = Option<String>, Query, description = "Only the replies to this campaign (a UUID)")),
    responses(
        (status = 200, description = "The caller's non-archived replies by category.", body = Stats),
        Problems<(Unauthorized, InvalidQuery)>,
    )
)]
async fn stats(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    query: ListQuery,
) -> ApiResult<Json<Stats>> {
    let campaign_id = id_filter(&query, "campaign_id")?;
    let counts = inbox::stats(&state.db.pool, &user.id, campaign_id.as_deref()).await?;
    let mut by_category = BTreeMap::new();
    let (mut total, mut unread) = (0, 0);
    for category in CATEGORIES {
        let count = counts
            .iter()
            .find(|(name, _)| name == category)
            .map(|(_, count)| *count)
            .unwrap_or_default();
        total += count.count;
        unread += count.unread;
        by_category.insert((*category).to_owned(), count);
    }
    Ok(Json(Stats {
        total,
        unread,
        by_category,
    }))
}
