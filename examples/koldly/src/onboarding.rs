//! Onboarding: `POST /api/onboarding` takes what the user sells, who they sell
//! to and the name they sign with, and creates their first campaign from it
//! (under the plan's active-campaign limit, in the limit's transaction); a
//! later call updates those answers and that campaign instead of creating
//! another. `GET /api/onboarding` answers `{completed, ...answers}`.

use axum::{
    Json,
    extract::State,
    response::{IntoResponse, Response},
};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use steadfast::audit::AuditContext;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    audit::note_change,
    auth::extract::AuthUser,
    campaigns::{self, input::DEFAULT_DAILY_SEND_LIMIT},
    db::{
        campaigns::{self as campaign_rows, NewCampaign},
        onboarding::{self as answers, Answers, Onboarding},
    },
    error::{ApiError, ApiResult},
    openapi::{IdempotencyKey, Idempotent, InvalidBody, PlanLimit, Problems, Unauthorized},
    plans,
    state::AppState,
    validation::{FieldErrors, JsonBody},
};

/// Longest product or ICP description.
pub const TEXT_MAX: usize = 5000;
/// Longest sender name.
pub const SENDER_NAME_MAX: usize = 200;
/// The name of the campaign onboarding creates.
pub const FIRST_CAMPAIGN_NAME: &str = "My first campaign";

/// The onboarding routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(show, submit))
}

/// `POST /api/onboarding`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OnboardingBody {
    #[schema(min_length = 1, max_length = 5000, pattern = "\\S")]
    product_description: String,
    #[schema(min_length = 1, max_length = 5000, pattern = "\\S")]
    icp_description: String,
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    sender_name: String,
}

/// `GET /api/onboarding`: whether it was completed, and the answers if so.
#[derive(Debug, Serialize)]
pub struct OnboardingView {
    /// Whether the user onboarded.
    pub completed: bool,
    /// The answers.
    #[serde(flatten)]
    pub answers: Option<Onboarding>,
}

/// How [`OnboardingView`] is documented: `completed`, and the answers'
/// members beside it once completed.
#[derive(Debug, utoipa::ToSchema)]
#[schema(as = OnboardingView)]
#[allow(dead_code)]
pub struct OnboardingViewSchema {
    /// Whether the user onboarded; the other members are there when so.
    completed: bool,
    /// What the user sells.
    product_description: Option<String>,
    /// Who they sell to.
    icp_description: Option<String>,
    /// The name emails are signed with.
    sender_name: Option<String>,
    /// The campaign onboarding created; `null` once it was deleted.
    campaign_id: Option<String>,
    /// Unix seconds.
    created_at: Option<i64>,
    /// Unix seconds.
    updated_at: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/onboarding",
    tag = "onboarding",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Whether onboarding was completed, and the answers if so.", body = OnboardingViewSchema),
        Problems<Unauthorized>,
    )
)]
async fn show(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> ApiResult<Json<OnboardingView>> {
    let answers = answers::find(&state.db.pool, &user.id).await?;
    Ok(Json(OnboardingView {
        completed: answers.is_some(),
        answers,
    }))
}

/// 201 the first time (with the campaign created), 200 when it updated.
#[utoipa::path(
    post,
    path = "/api/onboarding",
    tag = "onboarding",
    params(IdempotencyKey),
    security(("bearer" = [])),
    request_body = OnboardingBody,
    responses(
        (status = 201, description = "Onboarded: the answers, and the first campaign was created.", body = OnboardingViewSchema),
        (status = 200, description = "The answers were updated (and the campaign's brief with them).", body = OnboardingViewSchema),
        Problems<(Unauthorized, InvalidBody, PlanLimit, Idempotent)>,
    )
)]
async fn submit(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    audit: Option<AuditContext>,
    JsonBody(body): JsonBody<OnboardingBody>,
) -> ApiResult<Response> {
    note_change(&audit, &user.id, "user", &user.id, None);
    let mut errors = FieldErrors::new();
    let product = errors.required_text("product_description", &body.product_description, TEXT_MAX);
    let icp = errors.required_text("icp_description", &body.icp_description, TEXT_MAX);
    let sender = errors.required_text("sender_name", &body.sender_name, SENDER_NAME_MAX);
    errors.finish()?;

    let now = state.now();
    let (mut tx, plan) = plans::begin_limited(&state.db, &user.id).await?;
    let earlier = answers::find_in(&mut tx, &user.id).await?;
    let kept = match earlier.and_then(|a| a.campaign_id) {
        Some(id) => campaign_rows::set_brief(&mut tx, &user.id, &id, &icp, &product, now)
            .await?
            .then_some(id),
        None => None,
    };
    let (campaign_id, status) = match kept {
        Some(id) => (id, StatusCode::OK),
        None => {
            let active = campaign_rows::count_active(&mut tx, &user.id).await?;
            campaigns::check_active_campaigns(&audit, &user.id, "new", plan, active)?;
            let new = NewCampaign {
                name: FIRST_CAMPAIGN_NAME.to_owned(),
                description: Some(icp.clone()),
                product_description: Some(product.clone()),
                target_industry: None,
                status: "draft".to_owned(),
                daily_send_limit: DEFAULT_DAILY_SEND_LIMIT,
                icp_template_id: None,
            };
            let id = campaign_rows::insert(&mut tx, &user.id, &new, None, now).await?;
            (id, StatusCode::CREATED)
        }
    };
    let saved = answers::upsert(
        &mut tx,
        &user.id,
        &Answers {
            product_description: &product,
            icp_description: &icp,
            sender_name: &sender,
            campaign_id: &campaign_id,
        },
        now,
    )
    .await
    .map_err(ApiError::from)?;
    tx.commit().await?;
    if let Some(audit) = &audit {
        audit.insert_extra("campaign_id", campaign_id);
    }
    Ok((
        status,
        Json(OnboardingView {
            completed: true,
            answers: Some(saved),
        }),
    )
        .into_response())
}
