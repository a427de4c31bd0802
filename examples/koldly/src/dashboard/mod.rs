//! Dashboards: `GET /api/dashboard/stats`, `/email-activity?days=1..90`,
//! `/campaigns?limit=1..20` and `/activity` (the analytics feed, paginated),
//! and the user's time zone (`GET`/`PUT /api/account/timezone`) that
//! email-activity counts local days in. Numbers are JSON numbers; each route
//! runs one or two statements over indexes ([`crate::db::dashboard`]).

pub mod days;
pub mod schema;

use axum::{Json, extract::State};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::extract::AuthUser,
    db::{
        analytics::{self, Activity},
        dashboard::{self, SLOT_SECONDS},
    },
    error::{ApiError, ApiResult},
    openapi::{InvalidBody, InvalidQuery, Problems, Unauthorized},
    pagination::{ListQuery, Page, PageParams},
    state::AppState,
    validation::{JsonBody, field_problem},
};

/// The dashboard routes and the time-zone setting.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(stats))
        .routes(routes!(email_activity))
        .routes(routes!(campaigns))
        .routes(routes!(activity))
        .routes(routes!(get_timezone, put_timezone))
}

/// `GET /api/dashboard/stats`.
#[utoipa::path(
    get,
    path = "/api/dashboard/stats",
    tag = "dashboard",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's figures.", body = schema::StatsView),
        Problems<Unauthorized>,
    )
)]
async fn stats(State(state): State<AppState>, AuthUser(user): AuthUser) -> ApiResult<Json<Value>> {
    let s = dashboard::stats(&state.db.pool, &user.id).await?;
    Ok(Json(json!({
        "campaigns": { "total": s.campaigns_total, "active": s.campaigns_active },
        "prospects": s.prospects,
        "emails": {
            "awaiting_approval": s.emails_awaiting_approval,
            "approved": s.emails_approved,
            "sent": s.emails_sent,
        },
        "replies": s.replies,
        "reply_rate": dashboard::reply_rate(s.replies, s.emails_sent),
    })))
}

/// An integer query parameter in `range`, `default` when absent; anything
/// else is a 400 naming it.
fn int_param(
    query: &ListQuery,
    name: &str,
    range: std::ops::RangeInclusive<i64>,
    default: i64,
) -> ApiResult<i64> {
    match query.get(name) {
        None => Ok(default),
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                field_problem(
                    StatusCode::BAD_REQUEST,
                    name,
                    format!(
                        "must be an integer from {} to {}",
                        range.start(),
                        range.end()
                    ),
                )
            }),
    }
}

async fn zone_of(state: &AppState, user_id: &str) -> ApiResult<(String, jiff::tz::TimeZone)> {
    let name = dashboard::timezone(&state.db.pool, user_id)
        .await?
        .unwrap_or_else(|| "UTC".to_owned());
    match days::zone(&name) {
        Some(tz) => Ok((name, tz)),
        None => Ok(("UTC".to_owned(), jiff::tz::TimeZone::UTC)),
    }
}

/// `GET /api/dashboard/email-activity?days=N`: one row per local day of the
/// user's time zone, oldest first, zero days included, counting emails by the
/// time they were sent and replies by the time they arrived.
#[utoipa::path(
    get,
    path = "/api/dashboard/email-activity",
    tag = "dashboard",
    security(("bearer" = [])),
    params(("days" = Option<i64>, Query, minimum = 1, maximum = 90, description = "Local days, 1 to 90 (default 7)")),
    responses(
        (status = 200, description = "One row per local day, zero days included.", body = schema::EmailActivityView),
        Problems<(Unauthorized, InvalidQuery)>,
    )
)]
async fn email_activity(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    query: ListQuery,
) -> ApiResult<Json<Value>> {
    let n = int_param(&query, "days", 1..=90, 7)?;
    let (name, tz) = zone_of(&state, &user.id).await?;
    let local_days = days::last_days(&tz, state.now(), n as u32)
        .ok_or_else(|| ApiError::internal("email activity", "local days out of range"))?;
    let (from, until) = (local_days[0].start, local_days[local_days.len() - 1].end);
    let (sent, replies) = dashboard::activity_slots(&state.db.pool, &user.id, from, until).await?;
    let mut counts = vec![(0i64, 0i64); local_days.len()];
    let day_of = |slot: i64| {
        let at = from + slot * SLOT_SECONDS;
        local_days.partition_point(|d| d.end <= at)
    };
    for (slot, n) in sent {
        if let Some(c) = counts.get_mut(day_of(slot)) {
            c.0 += n;
        }
    }
    for (slot, n) in replies {
        if let Some(c) = counts.get_mut(day_of(slot)) {
            c.1 += n;
        }
    }
    let items: Vec<Value> = local_days
        .iter()
        .zip(counts)
        .map(|(day, (sent, replies))| {
            json!({ "date": day.date.to_string(), "sent": sent, "replies": replies })
        })
        .collect();
    Ok(Json(json!({ "timezone": name, "days": items })))
}

/// `GET /api/dashboard/campaigns?limit=1..20` (default 5): the newest
/// campaigns not archived, with prospects, sent, replies and reply rate.
#[utoipa::path(
    get,
    path = "/api/dashboard/campaigns",
    tag = "dashboard",
    security(("bearer" = [])),
    params(("limit" = Option<i64>, Query, minimum = 1, maximum = 20, description = "Campaigns, 1 to 20 (default 5)")),
    responses(
        (status = 200, description = "The newest campaigns with their counts.", body = schema::CampaignsView),
        Problems<(Unauthorized, InvalidQuery)>,
    )
)]
async fn campaigns(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    query: ListQuery,
) -> ApiResult<Json<Value>> {
    let limit = int_param(&query, "limit", 1..=20, 5)?;
    let items = dashboard::campaigns(&state.db.pool, &user.id, limit).await?;
    Ok(Json(json!({ "items": items })))
}

/// `GET /api/dashboard/activity?limit=&cursor=`: the user's analytics events,
/// newest first.
#[utoipa::path(
    get,
    path = "/api/dashboard/activity",
    tag = "dashboard",
    security(("bearer" = [])),
    params(PageParams),
    responses(
        (status = 200, description = "The caller's analytics events, newest first.", body = Page<Activity>),
        Problems<(Unauthorized, InvalidQuery)>,
    )
)]
async fn activity(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    query: ListQuery,
) -> ApiResult<Json<Page<Activity>>> {
    let page = query.page()?;
    let rows = analytics::feed(&state.db.pool, &user.id, &page).await?;
    Ok(Json(Page::from_rows(rows, &page, Activity::cursor)))
}

/// `GET /api/account/timezone`.
#[utoipa::path(
    get,
    path = "/api/account/timezone",
    tag = "dashboard",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's time zone.", body = schema::TimezoneView),
        Problems<Unauthorized>,
    )
)]
async fn get_timezone(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> ApiResult<Json<Value>> {
    let (name, _) = zone_of(&state, &user.id).await?;
    Ok(Json(json!({ "timezone": name })))
}

/// `PUT /api/account/timezone` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TimezoneRequest {
    /// IANA name, e.g. `Europe/Paris`.
    #[schema(value_type = crate::openapi::TimeZoneName)]
    timezone: String,
}

/// `PUT /api/account/timezone` with `{"timezone": "Europe/Paris"}` (IANA).
#[utoipa::path(
    put,
    path = "/api/account/timezone",
    tag = "dashboard",
    security(("bearer" = [])),
    request_body = TimezoneRequest,
    responses(
        (status = 200, description = "The time zone, stored.", body = schema::TimezoneView),
        Problems<(Unauthorized, InvalidBody)>,
    )
)]
async fn put_timezone(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    JsonBody(body): JsonBody<TimezoneRequest>,
) -> ApiResult<Json<Value>> {
    let name = body.timezone.trim();
    if name.is_empty() || name.len() > 64 || days::zone(name).is_none() {
        return Err(field_problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "timezone",
            "must be an IANA time zone name such as Europe/Paris",
        ));
    }
    dashboard::set_timezone(&state.db.pool, &user.id, name, state.now()).await?;
    Ok(Json(json!({ "timezone": name })))
}
