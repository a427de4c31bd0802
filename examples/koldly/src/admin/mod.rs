//! Admin: `GET /api/admin/metrics?period=24h|7d|30d` for accounts made admin
//! by `koldly admin grant EMAIL` ([`cli`]); anyone else gets a 403 problem.
//! Every call is audited (`admin.metrics.read`, denied ones too).

pub mod cli;

use axum::{Json, Router, extract::State, routing::get};
use http::StatusCode;
use serde_json::{Value, json};
use steadfast::{Problem, audit::AuditContext};

use crate::{
    audit::note_change,
    auth::extract::AuthUser,
    billing,
    db::admin,
    error::{ApiError, ApiResult},
    pagination::ListQuery,
    plans::Plan,
    state::AppState,
};

/// The problem type of a route refused to a non-admin.
pub const FORBIDDEN_TYPE: &str = "https://koldly.dev/problems/forbidden";

/// The admin routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/admin/metrics", get(metrics))
}

fn forbidden() -> ApiError {
    ApiError::from(
        Problem::new(StatusCode::FORBIDDEN)
            .with_type(FORBIDDEN_TYPE)
            .with_title("Forbidden")
            .with_detail("This route is for admins."),
    )
}

/// `GET /api/admin/metrics`: users, signups, active users, campaigns, emails
/// sent, replies (in the period, platform-wide) and subscribers and list-price
/// MRR by plan.
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
