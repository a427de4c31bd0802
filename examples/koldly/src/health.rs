//! `GET /health`: liveness, and with `?check=db` a timed database round trip.

use std::time::{Duration, Instant};

use axum::{
    Json,
    extract::{Query, State},
};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use steadfast::Problem;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{error::ApiResult, openapi::Problems, state::AppState};

/// The health route.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(health))
}

/// How long the database may take to answer before the check fails.
pub const DB_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The query string.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HealthQuery {
    /// `db` adds a timed database round trip.
    #[param(pattern = "^db$")]
    check: Option<String>,
}

/// What `GET /health` answers (documentation of the JSON it writes).
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct HealthReport {
    /// Always `ok`.
    status: String,
    /// Seconds since the server started.
    uptime_s: u64,
    /// The server's version.
    version: String,
    /// With `?check=db`.
    database: Option<DatabaseHealth>,
}

/// The database check.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct DatabaseHealth {
    /// `ok`.
    status: String,
    /// `sqlite` or `postgres`.
    backend: String,
    /// The round trip, in milliseconds.
    latency_ms: f64,
}

steadfast::problem_responses! {
    /// What the health check may answer besides 200.
    pub struct HealthProblems {
        400 => "`check` is not `db`.";
    }
}

/// 200 `{status, uptime_s, version}`, plus `{database: {status, latency_ms}}` with
/// `?check=db`; 503 problem+json when the database does not answer in 2 s.
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    params(HealthQuery),
    responses(
        (status = 200, description = "The server is up (and the database answered, with `?check=db`).", body = HealthReport),
        Problems<HealthProblems>,
    )
)]
pub async fn health(
    State(state): State<AppState>,
    Query(query): Query<HealthQuery>,
) -> ApiResult<Json<Value>> {
    let mut body = json!({
        "status": "ok",
        "uptime_s": state.started.elapsed().as_secs(),
        "version": env!("CARGO_PKG_VERSION"),
    });
    match query.check.as_deref() {
        None => {}
        Some("db") => {
            let started = Instant::now();
            let outcome = tokio::time::timeout(DB_CHECK_TIMEOUT, state.db.ping()).await;
            let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
            match outcome {
                Ok(Ok(())) => {
                    body["database"] = json!({
                        "status": "ok",
                        "backend": format!("{:?}", state.db.backend).to_lowercase(),
                        "latency_ms": (latency_ms * 1000.0).round() / 1000.0,
                    });
                }
                Ok(Err(err)) => {
                    tracing::error!(error = %err, "health check: database query failed");
                    return Err(unavailable("The database query failed.").into());
                }
                Err(_) => {
                    tracing::error!("health check: database did not answer within 2 s");
                    return Err(unavailable("The database did not answer within 2 seconds.").into());
                }
            }
        }
        Some(_) => {
            return Err(Problem::new(StatusCode::BAD_REQUEST)
                .with_detail("The only check is `db`.")
                .into());
        }
    }
    Ok(Json(body))
}

fn unavailable(detail: &'static str) -> Problem {
    Problem::new(StatusCode::SERVICE_UNAVAILABLE)
        .with_detail(detail)
        .with_retry_after(Duration::from_secs(5))
}
