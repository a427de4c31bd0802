//! The OpenAPI description of billing's answers and problems (the handlers
//! write the JSON these structs document).
#![allow(dead_code)]

use super::{
    ALREADY_SUBSCRIBED_TYPE, NO_BILLING_ACCOUNT_TYPE, NOT_CONFIGURED_TYPE, PAYMENT_PROVIDER_TYPE,
};

/// A plan's entitlements.
#[derive(Debug, utoipa::ToSchema)]
pub struct EntitlementsView {
    /// Campaigns not archived at once; `null` for unlimited.
    active_campaigns: Option<i64>,
    /// Prospects imported per calendar month.
    prospects_per_month: i64,
    /// Language-model spending per month, in US cents.
    ai_budget_cents_per_month: i64,
}

/// `GET /api/billing/plan`.
#[derive(Debug, utoipa::ToSchema)]
pub struct PlanView {
    /// `free`, `starter`, `growth` or `scale`.
    plan: String,
    /// `inactive`, `active`, `trialing`, `past_due`, `canceled`...
    status: String,
    /// Whether a subscription runs (a new checkout is refused).
    subscribed: bool,
    /// The paid period's end, unix seconds.
    current_period_end: Option<i64>,
    /// What the plan allows.
    entitlements: EntitlementsView,
    /// Whether this server has Stripe configured.
    billing_configured: bool,
}

/// One metered limit.
#[derive(Debug, utoipa::ToSchema)]
pub struct UsageMetered {
    /// Used this month.
    used: i64,
    /// Allowed; `null` for unlimited.
    limit: Option<i64>,
}

/// `GET /api/billing/usage`.
#[derive(Debug, utoipa::ToSchema)]
pub struct UsageView {
    /// The plan.
    plan: String,
    /// The UTC month, `YYYY-MM`.
    period: String,
    /// Campaigns not archived.
    active_campaigns: UsageMetered,
    /// Prospects imported this month.
    prospects_per_month: UsageMetered,
    /// Language-model spending this month, in cents (rounded up).
    ai_budget_cents_per_month: UsageMetered,
}

/// `POST /api/billing/checkout`'s answer.
#[derive(Debug, utoipa::ToSchema)]
pub struct CheckoutView {
    /// Where the user pays (Stripe Checkout).
    url: String,
    /// The Checkout Session's id.
    session_id: String,
}

/// `GET /api/billing/portal`'s answer.
#[derive(Debug, utoipa::ToSchema)]
pub struct PortalView {
    /// The customer portal session's URL.
    url: String,
}

/// The webhook's acknowledgement.
#[derive(Debug, utoipa::ToSchema)]
pub struct WebhookAck {
    /// Always true.
    received: bool,
    /// `applied`, `ignored`, `out_of_order` or `duplicate`.
    outcome: String,
}

steadfast::problem_responses! {
    /// Billing without Stripe, or Stripe failing.
    pub struct StripeProblems {
        502 => "The payment provider refused the request.", types = [PAYMENT_PROVIDER_TYPE];
        503 => "Billing is not configured, or the payment provider is unavailable (retry after `Retry-After`).",
            types = [NOT_CONFIGURED_TYPE, PAYMENT_PROVIDER_TYPE];
    }
}

steadfast::problem_responses! {
    /// Billing routes that answer without Stripe.
    pub struct DatabaseOnly {
        503 => "The database is busy or the server overloaded; retry after `Retry-After`.";
    }
}

steadfast::problem_responses! {
    /// A checkout while a subscription runs.
    pub struct AlreadySubscribed {
        409 => "A subscription is running: change plans in the portal.", types = [ALREADY_SUBSCRIBED_TYPE];
    }
}

steadfast::problem_responses! {
    /// The portal before any checkout.
    pub struct NoBillingAccount {
        409 => "No billing account yet: start with a checkout.", types = [NO_BILLING_ACCOUNT_TYPE];
    }
}

steadfast::problem_responses! {
    /// The webhook's refusals.
    pub struct WebhookProblems {
        400 => "The Stripe-Signature is missing, malformed, stale or matches no secret, or the body is not a Stripe event.";
        500 => "Applying the event failed; nothing was recorded, so Stripe's redelivery applies it.";
        503 => "Billing is not configured.", types = [NOT_CONFIGURED_TYPE];
    }
}
