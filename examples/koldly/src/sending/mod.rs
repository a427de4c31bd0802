//! Sending: verified senders, starting, watching, pausing and resuming a
//! campaign's sending, the queue worker, the providers, follow-up sequences
//! and one-click unsubscribe (issue 18).
//!
//! Routes (all owner-scoped, 404 for another account's ids):
//!
//! - `POST /api/senders`, `GET /api/senders`, `DELETE /api/senders/{id}`,
//!   `POST /api/senders/verify` ([`senders`]);
//! - `POST /api/campaigns/{id}/send` (`sender_id`, optional `daily_limit`,
//!   `window` `{start, end}` local hours, IANA `timezone`, `stop_on_reply`,
//!   `auto_approve_followups`): queues every approved first email not queued
//!   yet and answers `{queued, scheduled_from}`;
//! - `GET /api/campaigns/{id}/sending`: status, counts by queue state, sent
//!   today (local day), daily limit, next send time;
//! - `GET /api/campaigns/{id}/sending/unknown` and
//!   `POST /api/campaigns/{id}/sending/unknown/{queue_id}`: the sends whose
//!   outcome is unknown, listed and resolved by hand ([`unknown`]);
//! - `POST /api/campaigns/{id}/pause`, `POST /api/campaigns/{id}/resume`
//!   (409 when the campaign was never started);
//! - `GET /api/campaigns/{id}/sequence`, `PUT /api/campaigns/{id}/sequence`
//!   (the follow-up steps);
//! - `GET /api/sent-mail`: what the default provider wrote;
//! - `GET` and `POST /u/{token}` ([`unsubscribe`]), without login.
//!
//! The worker ([`worker`]) sends due rows on a periodic tick; see its docs for
//! the guarantees.
//!
//! ## How sending is scheduled
//!
//! The tick runs on the job engine: an apalis-cron schedule of its own
//! ([`periodic`]), every `SENDING_TICK_MS` (whole seconds; `0` sends nothing
//! from this process), started with the outbox/orphan schedule when the app
//! starts and stopped with it at shutdown. Every process runs it; what keeps
//! a message from going out twice across processes is not the schedule but
//! the per-row atomic claim under a lease, with the row `sending` before the
//! provider call (a send cut short ends `unknown`, never resent blindly).

pub mod config;
pub mod periodic;
pub mod provider;
pub mod schedule;
pub mod senders;
pub mod unknown;
pub mod unsubscribe;
pub mod worker;

use axum::{Json, extract::State};
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use steadfast::audit::AuditContext;
use utoipa_axum::{router::OpenApiRouter, routes};

use self::schedule::Schedule;
use crate::{
    audit::note_change,
    auth::extract::AuthUser,
    campaigns::CampaignResource,
    db::{
        sending::{self, QueueCounts, StartRefused, StartSending},
        sent_mail::{self, SentMail},
        sequences::{self, NewStep, Step},
    },
    error::{ApiError, ApiResult},
    openapi::{
        IdempotencyKey, Idempotent, InvalidBody, InvalidQuery, NotFound, Problems, Unauthorized,
    },
    pagination::{ListQuery, Page, PageParams},
    state::AppState,
    validation::{FieldErrors, JsonBody, PathId, field_problem},
};

/// The owner-scoped sending routes (behind the session and idempotency layers).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(senders::routes())
        .routes(routes!(send))
        .routes(routes!(overview))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(show_sequence, replace_sequence))
        .routes(routes!(list_sent_mail))
        .routes(routes!(unknown::list_unknown))
        .routes(routes!(unknown::resolve_unknown))
}

/// The routes without login: one-click unsubscribe.
pub fn public_routes() -> OpenApiRouter<AppState> {
    unsubscribe::routes()
}

/// The audited sending routes: (method, route, action).
pub const AUDITED_ROUTES: &[(Method, &str, &str)] = &[
    (Method::POST, "/api/senders", "sender.create"),
    (Method::POST, "/api/senders/verify", "sender.verify"),
    (Method::DELETE, "/api/senders/{id}", "sender.delete"),
    (Method::POST, "/api/campaigns/{id}/send", "campaign.send"),
    (Method::POST, "/api/campaigns/{id}/pause", "campaign.pause"),
    (
        Method::POST,
        "/api/campaigns/{id}/resume",
        "campaign.resume",
    ),
    (
        Method::PUT,
        "/api/campaigns/{id}/sequence",
        "campaign.sequence",
    ),
    (
        Method::POST,
        "/api/campaigns/{id}/sending/unknown/{queue_id}",
        "campaign.resolve_unknown",
    ),
];

const TARGET: &str = "campaign";

fn not_found() -> ApiError {
    ApiError::not_found("campaign")
}

/// Allowed sends per local day.
pub const DAILY_LIMIT: std::ops::RangeInclusive<i64> = 1..=1000;
/// The daily limit when none is given.
pub const DEFAULT_DAILY_LIMIT: i64 = 50;

/// The sending window in local hours, `[start, end)`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Window {
    #[schema(minimum = 0, maximum = 23)]
    start: i64,
    #[schema(minimum = 1, maximum = 24)]
    end: i64,
}

/// `POST /api/campaigns/{id}/send`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    #[schema(value_type = crate::openapi::Uuid)]
    sender_id: String,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    daily_limit: Option<i64>,
    #[serde(default)]
    window: Option<Window>,
    #[serde(default)]
    #[schema(value_type = Option<crate::openapi::TimeZoneName>)]
    timezone: Option<String>,
    #[serde(default)]
    stop_on_reply: Option<bool>,
    #[serde(default)]
    auto_approve_followups: Option<bool>,
}

impl SendRequest {
    fn validate(self) -> Result<StartSending, ApiError> {
        let mut errors = FieldErrors::new();
        if uuid::Uuid::try_parse(&self.sender_id).is_err() {
            errors.add("sender_id", "no sender with this id");
        }
        let daily_limit = self.daily_limit.unwrap_or(DEFAULT_DAILY_LIMIT);
        errors.in_range("daily_limit", daily_limit, DAILY_LIMIT);
        let (start, end) = self.window.map_or((9, 17), |w| (w.start, w.end));
        if !(0..=23).contains(&start) {
            errors.add("window.start", "must be an hour from 0 to 23");
        }
        if !(1..=24).contains(&end) {
            errors.add("window.end", "must be an hour from 1 to 24");
        } else if end <= start {
            errors.add("window.end", "must be after window.start");
        }
        let timezone = self.timezone.unwrap_or_else(|| "UTC".to_owned());
        if schedule::zone(&timezone).is_err() {
            errors.add("timezone", "must be an IANA time zone such as Europe/Paris");
        }
        errors.finish()?;
        Ok(StartSending {
            sender_id: self.sender_id,
            daily_limit,
            window_start: start,
            window_end: end,
            timezone,
            stop_on_reply: self.stop_on_reply.unwrap_or(true),
            auto_approve_followups: self.auto_approve_followups.unwrap_or(false),
        })
    }
}

/// What `POST /api/campaigns/{id}/send` answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SendStarted {
    /// Rows this call queued (0 when everything approved was queued before).
    pub queued: u64,
    /// The first instant the campaign may send (unix seconds).
    pub scheduled_from: i64,
}

steadfast::problem_responses! {
    /// Sending routes of a campaign whose state does not allow the request.
    pub struct SendingConflict {
        409 => "The campaign is archived (send), or was never started (pause, resume).";
    }
}

/// `POST /api/campaigns/{id}/send`: starts (or updates and resumes) the
/// campaign's sending and queues each approved first email not queued yet;
/// `{queued, scheduled_from}` (the first instant it may send, unix seconds).
#[utoipa::path(
    post,
    path = "/api/campaigns/{id}/send",
    tag = "sending",
    security(("bearer" = [])),
    params(IdempotencyKey, ("id" = String, Path, description = "The campaign's id (a UUID)")),
    request_body = SendRequest,
    responses(
        (status = 200, description = "Started; what was queued.", body = SendStarted),
        Problems<(Unauthorized, NotFound, InvalidBody, SendingConflict, Idempotent)>,
    )
)]
async fn send(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    audit: Option<AuditContext>,
    PathId(id, _): PathId<CampaignResource>,
    JsonBody(body): JsonBody<SendRequest>,
) -> ApiResult<Json<SendStarted>> {
    note_change(&audit, &user.id, TARGET, &id, None);
    let start = body.validate()?;
    let now = state.now();
    // Naturally idempotent, so no keyed_creates record (crate::keyed): the
    // queue is unique on `generated_email_id` (inserts `ON CONFLICT DO
    // NOTHING`), so a rerun (a retry the idempotency store forgot) queues no
    // email twice and answers `queued: 0`.
    let queued = match sending::start(&state.db, &user.id, &id, &start, now).await? {
        Ok(queued) => queued,
        Err(StartRefused::NoCampaign) => return Err(not_found()),
        Err(StartRefused::Archived) => {
            return Err(ApiError::status(
                StatusCode::CONFLICT,
                "The campaign is archived: unarchive it to send.",
            ));
        }
        Err(StartRefused::NoSender) => {
            return Err(field_problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "sender_id",
                "no sender with this id",
            ));
        }
        Err(StartRefused::SenderUnverified) => {
            return Err(field_problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "sender_id",
                "the sender is not verified: open the link mailed to it first",
            ));
        }
    };
    let schedule = Schedule::new(
        &start.timezone,
        start.window_start,
        start.window_end,
        start.daily_limit,
    )
    .map_err(|_| ApiError::internal("send", "a validated time zone did not load"))?;
    let (_, today, last, _) = sending::counts(&state.db.pool, &id, schedule.day_start(now)).await?;
    Ok(Json(SendStarted {
        queued,
        scheduled_from: schedule.next_send(now, today, last),
    }))
}

/// What `GET /api/campaigns/{id}/sending` answers. Before the campaign was
/// started only `status` (`not_started`) and `counts` (zeros) say anything;
/// the rest is `null`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SendingOverview {
    /// `not_started`, `active` or `paused`.
    pub status: String,
    /// The sender it sends from (`null` once deleted).
    pub sender_id: Option<String>,
    /// IANA time zone of its days and window.
    pub timezone: Option<String>,
    /// The window, local hours `[start, end)`.
    pub window: Option<WindowHours>,
    /// Sends per local day at most.
    pub daily_limit: Option<i64>,
    /// Sends since the local midnight (sent, being sent, or unknown).
    pub sent_today: i64,
    /// The queue by state.
    pub counts: QueueCounts,
    /// When the next due message may go (unix seconds); `null` when nothing
    /// is due or the campaign is paused.
    pub next_send_at: Option<i64>,
    /// Whether a reply halts the prospect's follow-ups.
    pub stop_on_reply: Option<bool>,
    /// Whether follow-up drafts are approved without review.
    pub auto_approve_followups: Option<bool>,
}

/// A sending window.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WindowHours {
    /// First local hour (0–23).
    pub start: i64,
    /// End local hour (1–24), exclusive.
    pub end: i64,
}

/// `GET /api/campaigns/{id}/sending`.
#[utoipa::path(
    get,
    path = "/api/campaigns/{id}/sending",
    tag = "sending",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The campaign's id (a UUID)")),
    responses(
        (status = 200, description = "The campaign's sending state, counts and next send.", body = SendingOverview),
        Problems<(Unauthorized, NotFound)>,
    )
)]
async fn overview(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    PathId(id, _): PathId<CampaignResource>,
) -> ApiResult<Json<SendingOverview>> {
    let Ok(context) = sending::context(&state.db.pool, &user.id, &id).await? else {
        return Err(not_found());
    };
    let Some(context) = context else {
        return Ok(Json(SendingOverview {
            status: "not_started".to_owned(),
            sender_id: None,
            timezone: None,
            window: None,
            daily_limit: None,
            sent_today: 0,
            counts: QueueCounts::default(),
            next_send_at: None,
            stop_on_reply: None,
            auto_approve_followups: None,
        }));
    };
    let now = state.now();
    let schedule = Schedule::new(
        &context.timezone,
        context.window_start,
        context.window_end,
        context.daily_limit,
    )
    .map_err(|_| ApiError::internal("sending overview", "a stored time zone did not load"))?;
    let (counts, today, last, next_due) =
        sending::counts(&state.db.pool, &id, schedule.day_start(now)).await?;
    let next_send_at = match (context.status.as_str(), next_due) {
        ("active", Some(due)) => Some(schedule.next_send(now.max(due), today, last).max(due)),
        _ => None,
    };
    Ok(Json(SendingOverview {
        status: context.status,
        sender_id: context.sender_id,
        timezone: Some(context.timezone),
        window: Some(WindowHours {
            start: context.window_start,
            end: context.window_end,
        }),
        daily_limit: Some(context.daily_limit),
        sent_today: today,
        counts,
        next_send_at,
        stop_on_reply: Some(context.stop_on_reply),
        auto_approve_followups: Some(context.auto_approve_followups),
    }))
}

/// What pausing or resuming answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SendingStatus {
    /// `active` or `paused`.
    pub status: String,
}

async fn set_active(
    state: &AppState,
    user_id: &str,
    id: &str,
    active: bool,
) -> ApiResult<Json<SendingStatus>> {
    if sending::set_status(&state.db.pool, user_id, id, active, state.now()).await? {
        let status = if active { "active" } else { "paused" };
        return Ok(Json(SendingStatus {
            status: status.to_owned(),
        }));
    }
    match sending::context(&state.db.pool, user_id, id).await? {
        Err(()) => Err(not_found()),
        Ok(_) => Err(ApiError::status(
            StatusCode::CONFLICT,
            "The campaign was never started: start it with POST /api/campaigns/{id}/send.",
        )),
    }
}

/// `POST /api/campaigns/{id}/pause`: nothing more is sent until resumed.
#[utoipa::path(
    post,
    path = "/api/campaigns/{id}/pause",
    tag = "sending",
    security(("bearer" = [])),
    params(IdempotencyKey, ("id" = String, Path, description = "The campaign's id (a UUID)")),
    responses(
        (status = 200, description = "Paused: nothing more is sent until resumed.", body = SendingStatus),
        Problems<(Unauthorized, NotFound, SendingConflict, Idempotent)>,
    )
)]
async fn pause(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    audit: Option<AuditContext>,
    PathId(id, _): PathId<CampaignResource>,
) -> ApiResult<Json<SendingStatus>> {
    note_change(&audit, &user.id, TARGET, &id, None);
    set_active(&state, &user.id, &id, false).await
}

/// `POST /api/campaigns/{id}/resume`.
#[utoipa::path(
    post,
    path = "/api/campaigns/{id}/resume",
    tag = "sending",
    security(("bearer" = [])),
    params(IdempotencyKey, ("id" = String, Path, description = "The campaign's id (a UUID)")),
    responses(
        (status = 200, description = "Sending again.", body = SendingStatus),
        Problems<(Unauthorized, NotFound, SendingConflict, Idempotent)>,
    )
)]
async fn resume(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    audit: Option<AuditContext>,
    PathId(id, _): PathId<CampaignResource>,
) -> ApiResult<Json<SendingStatus>> {
    note_change(&audit, &user.id, TARGET, &id, None);
    set_active(&state, &user.id, &id, true).await
}

/// Longest step subject / body template.
pub const STEP_SUBJECT_MAX: usize = 200;
/// Longest step body template.
pub const STEP_BODY_MAX: usize = 5000;
/// Most steps in a sequence.
pub const MAX_STEPS: usize = 10;

/// One step of `PUT .../sequence`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepInput {
    // Also: not less than the step before (JSON Schema cannot say so).
    #[schema(minimum = 1, maximum = 365)]
    delay_days: i64,
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    subject: String,
    #[schema(min_length = 1, max_length = 5000, pattern = "\\S")]
    body: String,
}

/// `PUT /api/campaigns/{id}/sequence`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SequenceInput {
    #[schema(max_items = 10)]
    steps: Vec<StepInput>,
}

/// A campaign's follow-up sequence.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Sequence {
    /// Its steps, in order.
    pub steps: Vec<Step>,
}

/// `GET /api/campaigns/{id}/sequence`: `{steps}`.
#[utoipa::path(
    get,
    path = "/api/campaigns/{id}/sequence",
    tag = "sending",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The campaign's id (a UUID)")),
    responses(
        (status = 200, description = "The follow-up steps, in order.", body = Sequence),
        Problems<(Unauthorized, NotFound)>,
    )
)]
async fn show_sequence(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    PathId(id, _): PathId<CampaignResource>,
) -> ApiResult<Json<Sequence>> {
    let steps: Vec<Step> = sequences::steps(&state.db.pool, &user.id, &id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(Sequence { steps }))
}

/// `PUT /api/campaigns/{id}/sequence` with `{steps: [{delay_days, subject,
/// body}]}` (at most 10; delays 1–365 days, not decreasing): replaces the
/// follow-ups; drafts and queued rows of the old steps are dropped.
#[utoipa::path(
    put,
    path = "/api/campaigns/{id}/sequence",
    tag = "sending",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The campaign's id (a UUID)")),
    request_body = SequenceInput,
    responses(
        (status = 200, description = "The new steps.", body = Sequence),
        Problems<(Unauthorized, NotFound, InvalidBody)>,
    )
)]
async fn replace_sequence(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    audit: Option<AuditContext>,
    PathId(id, _): PathId<CampaignResource>,
    JsonBody(body): JsonBody<SequenceInput>,
) -> ApiResult<Json<Sequence>> {
    note_change(&audit, &user.id, TARGET, &id, None);
    let mut errors = FieldErrors::new();
    if body.steps.len() > MAX_STEPS {
        errors.add("steps", format!("must have at most {MAX_STEPS} steps"));
    }
    let mut previous = 0;
    let mut steps = Vec::with_capacity(body.steps.len());
    for (i, step) in body.steps.into_iter().enumerate() {
        errors.in_range(&format!("steps[{i}].delay_days"), step.delay_days, 1..=365);
        if step.delay_days < previous {
            errors.add(
                format!("steps[{i}].delay_days"),
                "must not be less than the step before",
            );
        }
        previous = step.delay_days;
        steps.push(NewStep {
            delay_days: step.delay_days,
            subject: errors.required_text(
                &format!("steps[{i}].subject"),
                &step.subject,
                STEP_SUBJECT_MAX,
            ),
            body: errors.required_text(&format!("steps[{i}].body"), &step.body, STEP_BODY_MAX),
        });
    }
    errors.finish()?;
    if !sequences::replace(&state.db, &user.id, &id, &steps, state.now()).await? {
        return Err(not_found());
    }
    show_sequence(
        State(state),
        AuthUser(user),
        PathId(id, std::marker::PhantomData),
    )
    .await
}

/// `GET /api/sent-mail`: what the default provider wrote, newest first.
#[utoipa::path(
    get,
    path = "/api/sent-mail",
    tag = "sending",
    security(("bearer" = [])),
    params(PageParams),
    responses(
        (status = 200, description = "A page of the messages the `sent_mail` provider wrote, newest first.", body = Page<SentMail>),
        Problems<(Unauthorized, InvalidQuery)>,
    )
)]
async fn list_sent_mail(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    query: ListQuery,
) -> ApiResult<Json<Page<SentMail>>> {
    let page = query.page()?;
    let rows = sent_mail::list(&state.db.pool, &user.id, &page).await?;
    Ok(Json(Page::from_rows(rows, &page, SentMail::cursor)))
}
