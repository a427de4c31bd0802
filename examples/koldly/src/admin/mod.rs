//! Admin: `GET /api/admin/metrics?period=24h|7d|30d` for accounts made admin
//! by `koldly admin grant EMAIL` ([`cli`]); anyone else gets a 403 problem.
//! Every call is audited (`admin.metrics.read`, denied ones too).

pub mod cli;

use axum::{Json, extract::State};
use http::StatusCode;
use serde_json::{Value, json};
use steadfast::{Problem, audit::AuditContext};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    audit::note_change,
    auth::extract::AuthUser,
    billing,
    db::admin,
    error::{ApiError, ApiResult},
    openapi::{InvalidQuery, Problems, Unauthorized},
    pagination::ListQuery,
    plans::Plan,
    state::AppState,
};

/// The problem type of a route refused to a non-admin.
pub const FORBIDDEN_TYPE: &str = "https://koldly.dev/problems/forbidden";

/// The admin routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metrics))
}

steadfast::problem_responses! {
    /// Not an admin.
    pub struct Forbidden {
        403 => "This route is for admins.", types = [FORBIDDEN_TYPE];
    }
}

/// The OpenAPI description of the metrics (the handler writes this JSON).
#[allow(dead_code)]
mod schema {
    /// Users.
    #[derive(Debug, utoipa::ToSchema)]
    pub struct AdminUserCounts {
        /// Every account.
        total: i64,
        /// Created in the period.
        signups: i64,
        /// With an analytics event in the period.
        active: i64,
    }
    /// Campaigns.
    #[derive(Debug, utoipa::ToSchema)]
    pub struct AdminCampaignCounts {
        /// Every campaign.
        total: i64,
        /// Created in the period.
        created: i64,
    }
    /// Emails.
    #[derive(Debug, utoipa::ToSchema)]
    pub struct AdminEmailCounts {
        /// Sent in the period.
        sent: i64,
    }
    /// Replies.
    #[derive(Debug, utoipa::ToSchema)]
    pub struct AdminReplyCounts {
        /// Received in the period.
        received: i64,
    }
    /// One plan's subscribers.
    #[derive(Debug, utoipa::ToSchema)]
    pub struct AdminPlanRevenue {
        /// Running subscriptions.
        subscribers: i64,
        /// At list price, in cents.
        mrr_cents: i64,
    }
    /// AdminRevenue.
    #[derive(Debug, utoipa::ToSchema)]
    pub struct AdminRevenue {
        /// Monthly recurring revenue at list prices, in cents.
        mrr_cents: i64,
        /// Per plan name.
        by_plan: std::collections::BTreeMap<String, AdminPlanRevenue>,
    }
    /// `GET /api/admin/metrics`.
    #[derive(Debug, utoipa::ToSchema)]
    pub struct MetricsView {
        /// `24h`, `7d` or `30d`.
        period: String,
        /// The period's start, unix seconds.
        since: i64,
        /// Users.
        users: AdminUserCounts,
        /// Campaigns.
        campaigns: AdminCampaignCounts,
        /// Emails.
        emails: AdminEmailCounts,
        /// Replies.
        replies: AdminReplyCounts,
        /// AdminRevenue.
        revenue: AdminRevenue,
    }
}

fn forbidden() -> ApiError {
    ApiError::from(
        Problem::new(StatusCode::FORBIDDEN)
            .with_type(FORBIDDEN_TYPE)
            .with_title("Forbidden")
            .with_detail("This route is for admins."),
    )
}

// Documents the metrics' `period` (read with `ListQuery::one_of`).
/// The period the figures cover.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
enum Period {
    /// The last 24 hours.
    #[serde(rename = "24h")]
    Day,
    /// The last 7 days (the default).
    #[serde(rename = "7d")]
    Week,
    /// The last 30 days.
    #[serde(rename = "30d")]
    Month,
}

/// `GET /api/admin/metrics`: users, signups, active users, campaigns, emails
/// sent, replies (in the period, platform-wide) and subscribers and list-price
/// MRR by plan.
#[utoipa::path(
    get,
    path = "/api/admin/metrics",
    tag = "admin",
    security(("bearer" = [])),
    params(("period" = inline(Option<Period>), Query, description = "`24h`, `7d` (default) or `30d`")),
    responses(
        (status = 200, description = "Platform-wide figures over the period.", body = schema::MetricsView),
        Problems<(Unauthorized, Forbidden, InvalidQuery)>,
    )
)]
async fn metrics(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    audit: Option<AuditContext>,
    query: ListQuery,
) -> ApiResult<Json<Value>> {
    note_change(&audit, &user.id, "admin_metrics", "platform", None);
    if !admin::is_admin(&state.db.pool, &user.id).await? {
        note_change(
            &audit,
            &user.id,
            "admin_metrics",
            "platform",
            Some("not an admin"),
        );
        return Err(forbidden());
    }
    let period = query
        .one_of("period", &["24h", "7d", "30d"], Some("7d"))?
        .unwrap_or("7d");
    let seconds = match period {
        "24h" => 86_400,
        "30d" => 30 * 86_400,
        _ => 7 * 86_400,
    };
    if let Some(audit) = &audit {
        audit.insert_extra("period", period);
    }
    let since = state.now() - seconds;
    let m = admin::metrics(&state.db.pool, since).await?;
    let subscribers = admin::subscribers(&state.db.pool).await?;
    let mut by_plan = serde_json::Map::new();
    let mut mrr = 0i64;
    for (name, count) in subscribers {
        let plan = Plan::from_name(&name);
        let plan_mrr = count * billing::list_price_cents(plan);
        mrr += plan_mrr;
        by_plan.insert(
            plan.name().to_owned(),
            json!({ "subscribers": count, "mrr_cents": plan_mrr }),
        );
    }
    Ok(Json(json!({
        "period": period,
        "since": since,
        "users": { "total": m.users, "signups": m.signups, "active": m.active_users },
        "campaigns": { "total": m.campaigns, "created": m.campaigns_created },
        "emails": { "sent": m.emails_sent },
        "replies": { "received": m.replies },
        "revenue": { "mrr_cents": mrr, "by_plan": by_plan },
    })))
}
