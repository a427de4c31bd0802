//! `GET /api/jobs/{id}`: a job's state, progress and last error, for its
//! owner only (another user's job is a 404 exactly like a missing one: the
//! owner is in the same query).

use axum::{
    Json,
    extract::{Path, State},
};
use http::StatusCode;
use serde::Serialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::extract::AuthUser,
    db::jobs::{self, Job},
    error::{ApiError, ApiResult},
    openapi::{Problems, Unauthorized},
    state::AppState,
};

/// The job routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(show))
}

steadfast::problem_responses! {
    /// No job of this user with this id.
    pub struct JobNotFound {
        404 => "No job with this id (or another account's).";
    }
}

/// A job as its owner sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobView {
    /// Its id.
    pub id: String,
    /// What it does.
    pub kind: String,
    /// `queued`, `running`, `succeeded` or `failed`.
    pub state: String,
    /// Items done and in all.
    pub progress: Progress,
    /// Runs so far.
    pub attempts: i64,
    /// Runs allowed.
    pub max_attempts: i64,
    /// The last failure, if any.
    pub error: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    /// Unix seconds, once it ended.
    pub finished_at: Option<i64>,
}

/// Progress of a job.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Progress {
    /// Items done.
    pub done: i64,
    /// Items in all (0 while unknown).
    pub total: i64,
}

impl From<Job> for JobView {
    fn from(job: Job) -> Self {
        Self {
            id: job.id,
            kind: job.kind,
            state: job.state,
            progress: Progress {
                done: job.progress_done,
                total: job.progress_total,
            },
            attempts: job.attempts,
            max_attempts: job.max_attempts,
            error: job.last_error,
            created_at: job.created_at,
            updated_at: job.updated_at,
            finished_at: job.finished_at,
        }
    }
}

/// The longest id looked up (ids are 36-character UUIDs).
const MAX_ID_LEN: usize = 64;

/// `GET /api/jobs/{id}`.
#[utoipa::path(
    get,
    path = "/api/jobs/{id}",
    tag = "jobs",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job.", body = JobView),
        Problems<(Unauthorized, JobNotFound)>,
    )
)]
async fn show(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<JobView>> {
    let job = if id.len() <= MAX_ID_LEN {
        jobs::find_owned(&state.db.pool, &id, &user.id).await?
    } else {
        None
    };
    job.map(|job| Json(job.into()))
        .ok_or_else(|| ApiError::status(StatusCode::NOT_FOUND, "No job with this id."))
}
