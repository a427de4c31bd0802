//! Billing: the user's plan and usage, Stripe Checkout, the customer portal,
//! invoices, and Stripe's webhook ([`webhook`]).
//!
//! - `GET /api/billing/plan`: the plan, its status and entitlements;
//! - `GET /api/billing/usage`: this month's usage against the plan's limits,
//!   from [`plans::ENTITLEMENTS`], the table the limits themselves read;
//! - `POST /api/billing/checkout` (`{"plan": "starter" | "growth" | "scale"}`):
//!   a Stripe Checkout Session for the plan's configured price; the user's
//!   Stripe customer is created once, under a lock on the user (concurrent
//!   first checkouts make one customer); 409 while a subscription runs (plans
//!   change in the portal);
//! - `GET /api/billing/portal`: a customer portal session's URL;
//! - `GET /api/billing/invoices?limit=&cursor=`: invoices, newest first,
//!   paginated through Stripe's own cursor.
//!
//! Without `STRIPE_SECRET_KEY` the Stripe-backed routes (checkout, portal,
//! invoices, the webhook) answer 503 "billing is not configured"; plan and
//! usage still answer. The plan itself changes only through Stripe's events.

pub mod config;
pub mod schema;
pub mod signature;
pub mod stripe;
pub mod webhook;

use axum::{Extension, Json, extract::State};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use steadfast::{Deadline, Problem, audit::AuditContext};
use utoipa_axum::{router::OpenApiRouter, routes};

use self::schema::{
    AlreadySubscribed, CheckoutView, DatabaseOnly, NoBillingAccount, PlanView, PortalView,
    StripeProblems, UsageView,
};
use self::stripe::{Invoice, Stripe, StripeError};
use crate::{
    analytics::{self, Event, EventKind},
    audit::note_change,
    auth::extract::AuthUser,
    db::{self, ai_usage, billing::BillingAccount, campaigns, usage},
    error::{ApiError, ApiResult},
    openapi::{IdempotencyKey, Idempotent, InvalidBody, InvalidQuery, Problems, Unauthorized},
    pagination::{ListQuery, Page, PageParams},
    plans::{self, Limit, Plan},
    state::AppState,
    validation::{JsonBody, field_problem},
};

/// The problem type of "billing is not configured".
pub const NOT_CONFIGURED_TYPE: &str = "https://koldly.dev/problems/billing-not-configured";
/// The problem type of a checkout while subscribed.
pub const ALREADY_SUBSCRIBED_TYPE: &str = "https://koldly.dev/problems/already-subscribed";
/// The problem type of the portal before any checkout.
pub const NO_BILLING_ACCOUNT_TYPE: &str = "https://koldly.dev/problems/no-billing-account";
/// The problem type of Stripe being unreachable or refusing.
pub const PAYMENT_PROVIDER_TYPE: &str = "https://koldly.dev/problems/payment-provider";

/// The user's billing routes (behind a bearer token; the checkout's `POST`
/// behind the idempotency layer like every creating route).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(plan))
        .routes(routes!(usage_of))
        .routes(routes!(checkout))
        .routes(routes!(portal))
        .routes(routes!(invoices))
}

/// Stripe's webhook (no bearer token: the signature authenticates it).
pub fn webhook_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(webhook::stripe_webhook))
}

/// 503 "billing is not configured".
pub fn not_configured() -> ApiError {
    ApiError::from(
        Problem::new(StatusCode::SERVICE_UNAVAILABLE)
            .with_type(NOT_CONFIGURED_TYPE)
            .with_title("billing is not configured")
            .with_detail("This server has no Stripe configuration (STRIPE_SECRET_KEY, prices and webhook secrets)."),
    )
}

fn stripe_of(state: &AppState) -> ApiResult<&Stripe> {
    state.stripe.as_ref().ok_or_else(not_configured)
}

fn stripe_problem(err: StripeError) -> ApiError {
    let (status, detail) = match &err {
        StripeError::Unavailable(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "The payment provider is unavailable. Try again shortly.",
        ),
        StripeError::Refused(..) | StripeError::Malformed(_) => (
            StatusCode::BAD_GATEWAY,
            "The payment provider refused the request. The failure was logged under this request's id.",
        ),
    };
    tracing::warn!(error = %err, "Stripe call failed");
    let mut problem = Problem::new(status)
        .with_type(PAYMENT_PROVIDER_TYPE)
        .with_detail(detail);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        problem = problem.with_retry_after(std::time::Duration::from_secs(5));
    }
    ApiError::from(problem)
}

async fn account_of(state: &AppState, user_id: &str) -> ApiResult<BillingAccount> {
    let mut conn = state.db.pool.acquire().await?;
    db::billing::account(&mut conn, user_id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("A valid bearer token is required."))
}

fn entitlements_json(plan: Plan) -> Value {
    let e = plan.entitlements();
    json!({
        "active_campaigns": e.active_campaigns,
        "prospects_per_month": e.prospects_per_month,
        "ai_budget_cents_per_month": e.ai_budget_cents_per_month,
    })
}

/// `GET /api/billing/plan`.
#[utoipa::path(
    get,
    path = "/api/billing/plan",
    tag = "billing",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The plan, its status and entitlements.", body = PlanView),
        Problems<(Unauthorized, DatabaseOnly)>,
    )
)]
async fn plan(State(state): State<AppState>, AuthUser(user): AuthUser) -> ApiResult<Json<Value>> {
    let account = account_of(&state, &user.id).await?;
    let plan = Plan::from_name(&account.plan);
    Ok(Json(json!({
        "plan": plan.name(),
        "status": account.status,
        "subscribed": account.is_subscribed(),
        "current_period_end": account.period_end,
        "entitlements": entitlements_json(plan),
        "billing_configured": state.stripe.is_some(),
    })))
}

/// `GET /api/billing/usage`: this month's (UTC) usage against the plan.
#[utoipa::path(
    get,
    path = "/api/billing/usage",
    tag = "billing",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "This UTC month's usage against the plan's limits.", body = UsageView),
        Problems<(Unauthorized, DatabaseOnly)>,
    )
)]
async fn usage_of(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> ApiResult<Json<Value>> {
    let plan = Plan::from_name(&user.subscription_plan);
    let period = plans::period_of(state.now());
    let mut conn = state.db.pool.acquire().await?;
    let campaigns = campaigns::count_active(&mut conn, &user.id).await?;
    let prospects = usage::prospects_imported(&mut conn, &user.id, &period).await?;
    drop(conn);
    let ai = ai_usage::month(&state.db.pool, &user.id, &period).await?;
    // Microcents to cents, rounded up as the limit check reports them.
    let ai_cents = ai.spent.saturating_add(ai.reserved).saturating_add(999_999) / 1_000_000;
    let metered = |limit: Limit, used: i64| json!({ "used": used, "limit": limit.allowed(plan) });
    Ok(Json(json!({
        "plan": plan.name(),
        "period": period,
        "active_campaigns": metered(Limit::ActiveCampaigns, campaigns),
        "prospects_per_month": metered(Limit::ProspectsPerMonth, prospects),
        "ai_budget_cents_per_month": metered(Limit::AiBudgetCentsPerMonth, ai_cents),
    })))
}

/// `POST /api/billing/checkout`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    /// `starter`, `growth` or `scale`.
    plan: String,
}

/// A plan's monthly list price in US cents (what the admin metrics count MRR
/// with; what Stripe charges is the configured price's amount).
pub fn list_price_cents(plan: Plan) -> i64 {
    match plan {
        Plan::Free => 0,
        Plan::Starter => 2900,
        Plan::Growth => 7900,
        Plan::Scale => 19900,
    }
}

/// The plans sold through checkout.
const PAID_PLANS: [Plan; 3] = [Plan::Starter, Plan::Growth, Plan::Scale];

/// A hex SHA-256 of `parts`, for Stripe idempotency keys derived from what a
/// request is for.
fn derived_key(prefix: &str, parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    let mut out = String::from(prefix);
    for b in &digest[..16] {
        use std::fmt::Write;
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The client's `Idempotency-Key`, else the request id: what makes one
/// request's Stripe keys its own, and a client's retry reuse them.
fn request_key(headers: &HeaderMap) -> String {
    ["idempotency-key", "x-request-id"]
        .iter()
        .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// The user's Stripe customer, created on their first checkout: concurrent
/// first checkouts wait on the lock [`db::billing::lock_customer`] takes,
/// and the later ones use the customer the first stored. The creation's
/// `Idempotency-Key` is derived from the user, so a retry reuses it.
async fn customer_of(
    state: &AppState,
    stripe: &Stripe,
    account: &BillingAccount,
    deadline: Option<Deadline>,
) -> ApiResult<String> {
    if let Some(customer) = &account.customer_id {
        return Ok(customer.clone());
    }
    let (mut tx, stored) = db::billing::lock_customer(&state.db, &account.user_id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("A valid bearer token is required."))?;
    if let Some(customer) = stored {
        tx.rollback().await?;
        return Ok(customer);
    }
    let key = derived_key("koldly-customer-", &[&account.user_id]);
    let customer = stripe
        .create_customer(
            &account.email,
            &account.name,
            &account.user_id,
            &key,
            deadline,
        )
        .await
        .map_err(stripe_problem)?;
    db::billing::set_customer(&mut tx, &account.user_id, &customer, state.now()).await?;
    tx.commit().await?;
    Ok(customer)
}

fn already_subscribed() -> ApiError {
    ApiError::from(
        Problem::new(StatusCode::CONFLICT)
            .with_type(ALREADY_SUBSCRIBED_TYPE)
            .with_title("Already subscribed")
            .with_detail("A subscription is running: change plans in the billing portal (GET /api/billing/portal)."),
    )
}

/// `POST /api/billing/checkout`: 200 `{url, session_id}`.
#[utoipa::path(
    post,
    path = "/api/billing/checkout",
    tag = "billing",
    security(("bearer" = [])),
    params(IdempotencyKey),
    request_body = CheckoutRequest,
    responses(
        (status = 200, description = "A Stripe Checkout Session for the plan.", body = CheckoutView),
        Problems<(Unauthorized, InvalidBody, Idempotent, AlreadySubscribed, StripeProblems)>,
    )
)]
async fn checkout(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    audit: Option<AuditContext>,
    deadline: Option<Extension<Deadline>>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CheckoutRequest>,
) -> ApiResult<Json<Value>> {
    note_change(&audit, &user.id, "subscription", "checkout", None);
    let stripe = stripe_of(&state)?;
    let plan = PAID_PLANS
        .into_iter()
        .find(|p| p.name() == body.plan)
        .ok_or_else(|| {
            field_problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "plan",
                "must be one of starter, growth, scale",
            )
        })?;
    let price = stripe.api().price_of(plan).ok_or_else(not_configured)?;
    let account = account_of(&state, &user.id).await?;
    if account.is_subscribed() {
        note_change(
            &audit,
            &user.id,
            "subscription",
            "checkout",
            Some("already subscribed"),
        );
        return Err(already_subscribed());
    }
    let deadline = deadline.map(|Extension(d)| d);
    let customer = customer_of(&state, stripe, &account, deadline).await?;
    let public = &state.config.public_url;
    let key = derived_key(
        "koldly-checkout-",
        &[&user.id, plan.name(), &customer, &request_key(&headers)],
    );
    let session = stripe
        .create_checkout_session(
            &customer,
            price,
            &user.id,
            plan.name(),
            &format!("{public}/billing?session_id={{CHECKOUT_SESSION_ID}}&success=true"),
            &format!("{public}/billing?canceled=true"),
            &key,
            deadline,
        )
        .await
        .map_err(stripe_problem)?;
    if let Some(audit) = &audit {
        audit.insert_extra("plan", plan.name());
        audit.insert_extra("session_id", session.id.clone());
    }
    analytics::record(
        &state,
        Event::new(user.id.clone(), EventKind::CheckoutStarted).with("plan", plan.name()),
    );
    Ok(Json(
        json!({ "url": session.url, "session_id": session.id }),
    ))
}

fn no_customer() -> ApiError {
    ApiError::from(
        Problem::new(StatusCode::CONFLICT)
            .with_type(NO_BILLING_ACCOUNT_TYPE)
            .with_title("No billing account")
            .with_detail("Start a subscription with POST /api/billing/checkout first."),
    )
}

/// `GET /api/billing/portal`: `{url}` of a customer portal session.
#[utoipa::path(
    get,
    path = "/api/billing/portal",
    tag = "billing",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A customer portal session.", body = PortalView),
        Problems<(Unauthorized, NoBillingAccount, StripeProblems)>,
    )
)]
async fn portal(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    deadline: Option<Extension<Deadline>>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let stripe = stripe_of(&state)?;
    let account = account_of(&state, &user.id).await?;
    let customer = account.customer_id.ok_or_else(no_customer)?;
    let key = derived_key("koldly-portal-", &[&user.id, &request_key(&headers)]);
    let url = stripe
        .create_portal_session(
            &customer,
            &format!("{}/billing", state.config.public_url),
            &key,
            deadline.map(|Extension(d)| d),
        )
        .await
        .map_err(stripe_problem)?;
    Ok(Json(json!({ "url": url })))
}

/// An invoice cursor: Stripe's invoice id, base64url (opaque to clients).
fn decode_invoice_cursor(text: &str) -> Option<String> {
    if text.len() > 200 {
        return None;
    }
    let id = String::from_utf8(URL_SAFE_NO_PAD.decode(text).ok()?).ok()?;
    let valid = id.starts_with("in_")
        && id.len() <= 120
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    valid.then_some(id)
}

/// `GET /api/billing/invoices?limit=1..100&cursor=`: `{items, next_cursor}`.
#[utoipa::path(
    get,
    path = "/api/billing/invoices",
    tag = "billing",
    security(("bearer" = [])),
    params(PageParams),
    responses(
        (status = 200, description = "A page of invoices, newest first (Stripe's cursor, opaque).", body = Page<Invoice>),
        Problems<(Unauthorized, InvalidQuery, StripeProblems)>,
    )
)]
async fn invoices(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    deadline: Option<Extension<Deadline>>,
    query: ListQuery,
) -> ApiResult<Json<Page<Invoice>>> {
    let stripe = stripe_of(&state)?;
    let limit = match query.get("limit") {
        None => crate::pagination::DEFAULT_LIMIT,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=crate::pagination::MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                field_problem(
                    StatusCode::BAD_REQUEST,
                    "limit",
                    "must be an integer from 1 to 100",
                )
            })?,
    };
    let after = match query.get("cursor") {
        None | Some("") => None,
        Some(text) => Some(decode_invoice_cursor(text).ok_or_else(|| {
            field_problem(
                StatusCode::BAD_REQUEST,
                "cursor",
                "is not a cursor this list returned",
            )
        })?),
    };
    let account = account_of(&state, &user.id).await?;
    let Some(customer) = account.customer_id else {
        return Ok(Json(Page {
            items: Vec::new(),
            next_cursor: None,
        }));
    };
    let page = stripe
        .list_invoices(
            &customer,
            limit,
            after.as_deref(),
            deadline.map(|Extension(d)| d),
        )
        .await
        .map_err(stripe_problem)?;
    let next_cursor = page
        .has_more
        .then(|| page.data.last().map(|i| URL_SAFE_NO_PAD.encode(&i.id)))
        .flatten();
    Ok(Json(Page {
        items: page.data,
        next_cursor,
    }))
}
