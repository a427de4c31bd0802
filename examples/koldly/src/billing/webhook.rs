//! `POST /api/webhooks/stripe`: Stripe's events, applied exactly once.
//!
//! The raw body's `Stripe-Signature` is verified first ([`signature`]): a
//! missing, malformed, stale or unmatched one is a 400 and nothing runs. The
//! event's id is then recorded in `stripe_events` **in the same transaction
//! as its effect**: a redelivered event finds its id and is a 200 no-op; a
//! handler that fails rolls the id back with the effect and answers 500, so
//! Stripe's redelivery applies it.
//!
//! Handled (every other type is recorded and acknowledged):
//! - `checkout.session.completed`: links the subscription to the customer's user;
//! - `customer.subscription.created|updated|deleted`: the plan is the one
//!   whose configured price the subscription's first item has (never
//!   metadata); a live status (`active`, `trialing`, `past_due`) gives that
//!   plan, anything else the free plan. An event created before the newest
//!   one applied to the same subscription is older news and is ignored;
//! - `invoice.paid`: a `past_due` subscription is `active` again;
//! - `invoice.payment_failed`: `past_due`, and the user is told by mail,
//!   written to the outbox in the same transaction.
//!
//! The plan changes only here; plan limits read `users.subscription_plan`
//! under their lock, so they follow at once.

use axum::{Json, extract::State};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::AnyConnection;
use steadfast::{Problem, audit::AuditContext};

use super::{config::StripeApi, not_configured, signature};
use crate::{
    analytics::{self, Event as AnalyticsEvent, EventKind},
    db::{self, billing::SubscriptionState},
    error::{ApiError, ApiResult},
    mail::Message,
    openapi::Problems,
    plans::Plan,
    state::AppState,
    validation::field_problem,
};

/// A Stripe event envelope.
#[derive(Debug, Deserialize)]
pub struct StripeEvent {
    /// `evt_...`.
    pub id: String,
    /// `customer.subscription.updated`...
    #[serde(rename = "type")]
    pub event_type: String,
    /// Unix seconds.
    pub created: i64,
    /// `{object: ...}`.
    pub data: EventData,
}

/// The event's payload.
#[derive(Debug, Deserialize)]
pub struct EventData {
    /// The object the event is about.
    pub object: Value,
}

/// What applying an event did.
#[derive(Debug, Default)]
struct Applied {
    outcome: &'static str,
    user_id: Option<String>,
    plan_change: Option<(String, String)>,
    mail: Option<(String, Message)>,
}

impl Applied {
    fn ignored() -> Self {
        Self {
            outcome: "ignored",
            ..Self::default()
        }
    }
}

/// The route.
#[utoipa::path(
    post,
    path = "/api/webhooks/stripe",
    tag = "billing",
    request_body(content = String, content_type = "application/json",
        description = "A Stripe event, signed in the `Stripe-Signature` header."),
    params(("stripe-signature" = String, Header, description = "`t=TIMESTAMP,v1=HMAC[,v1=...]`")),
    responses(
        (status = 200, description = "Received: applied, ignored, out of order or a duplicate.", body = super::schema::WebhookAck),
        Problems<super::schema::WebhookProblems>,
    )
)]
pub async fn stripe_webhook(
    State(state): State<AppState>,
    audit: Option<AuditContext>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let config = &state.config.stripe;
    let Some(api) = config
        .api
        .as_ref()
        .filter(|_| !config.webhook_secrets.is_empty())
    else {
        return Err(not_configured());
    };
    let header = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    if let Err(refused) = signature::verify(
        header,
        &body,
        &config.webhook_secrets,
        state.now(),
        config.webhook_tolerance.as_secs() as i64,
    ) {
        if let Some(audit) = &audit {
            audit.set_reason(refused.detail());
        }
        return Err(ApiError::from(
            Problem::new(StatusCode::BAD_REQUEST)
                .with_title("Invalid webhook signature")
                .with_detail(refused.detail()),
        ));
    }
    let event: StripeEvent = serde_json::from_slice(&body).map_err(|e| {
        field_problem(
            StatusCode::BAD_REQUEST,
            "body",
            format!("is not a Stripe event: {e}"),
        )
    })?;
    if let Some(audit) = &audit {
        audit.set_target("stripe_event", event.id.clone());
        audit.insert_extra("event_type", event.event_type.clone());
    }
    let now = state.now();
    let mut tx = db::billing::begin_write(&state.db).await?;
    if !db::billing::record_event(&mut tx, &event.id, &event.event_type, event.created, now).await?
    {
        tx.rollback().await?;
        if let Some(audit) = &audit {
            audit.insert_extra("result", "duplicate");
        }
        return Ok(Json(json!({ "received": true, "outcome": "duplicate" })));
    }
    let applied = apply(&state, api, &mut tx, &event, now).await?;
    tx.commit().await?;
    if let Some(audit) = &audit {
        audit.insert_extra("result", applied.outcome);
        if let Some(user) = &applied.user_id {
            audit.insert_extra("user_id", user.clone());
        }
    }
    if let (Some(user), Some((from, to))) = (&applied.user_id, &applied.plan_change) {
        tracing::info!(user_id = user, from, to, "plan changed by Stripe");
        analytics::record(
            &state,
            AnalyticsEvent::new(user.clone(), EventKind::PlanChanged)
                .with("from", from.clone())
                .with("to", to.clone())
                .with("stripe_event", event.id.clone()),
        );
    }
    if let Some((id, message)) = applied.mail {
        state.mailer.deliver_stored_later(id, message);
    }
    Ok(Json(
        json!({ "received": true, "outcome": applied.outcome }),
    ))
}

fn text<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object.get(key).and_then(Value::as_str)
}

async fn apply(
    state: &AppState,
    api: &StripeApi,
    conn: &mut AnyConnection,
    event: &StripeEvent,
    now: i64,
) -> Result<Applied, ApiError> {
    let object = &event.data.object;
    match event.event_type.as_str() {
        "checkout.session.completed" => {
            let (Some(customer), Some(subscription)) =
                (text(object, "customer"), text(object, "subscription"))
            else {
                return Ok(Applied::ignored());
            };
            let Some(account) = db::billing::account_by_customer(conn, customer).await? else {
                tracing::warn!(
                    event = event.id,
                    "checkout for a customer koldly does not know"
                );
                return Ok(Applied::ignored());
            };
            db::billing::link_subscription(conn, &account.user_id, subscription, now).await?;
            Ok(Applied {
                outcome: "applied",
                user_id: Some(account.user_id),
                ..Applied::default()
            })
        }
        "customer.subscription.created"
        | "customer.subscription.updated"
        | "customer.subscription.deleted" => subscription_event(api, conn, event, now).await,
        "invoice.paid" => {
            let (Some(customer), Some(subscription)) =
                (text(object, "customer"), text(object, "subscription"))
            else {
                return Ok(Applied::ignored());
            };
            let Some(account) = db::billing::account_by_customer(conn, customer).await? else {
                return Ok(Applied::ignored());
            };
            let changed = db::billing::set_status(
                conn,
                &account.user_id,
                subscription,
                &["past_due"],
                "active",
                now,
            )
            .await?;
            Ok(Applied {
                outcome: if changed { "applied" } else { "ignored" },
                user_id: Some(account.user_id),
                ..Applied::default()
            })
        }
        "invoice.payment_failed" => {
            let (Some(customer), Some(subscription)) =
                (text(object, "customer"), text(object, "subscription"))
            else {
                return Ok(Applied::ignored());
            };
            let Some(account) = db::billing::account_by_customer(conn, customer).await? else {
                return Ok(Applied::ignored());
            };
            let changed = db::billing::set_status(
                conn,
                &account.user_id,
                subscription,
                &["active", "trialing", "past_due"],
                "past_due",
                now,
            )
            .await?;
            if !changed {
                return Ok(Applied {
                    outcome: "ignored",
                    user_id: Some(account.user_id),
                    ..Applied::default()
                });
            }
            let message = payment_failed_mail(state, &account.email, &account.plan, object);
            let id = db::outbox::insert_in(
                conn,
                &message.to,
                &message.subject,
                &message.body,
                message.kind,
                state.mailer.outbox_status(),
                now,
            )
            .await?;
            Ok(Applied {
                outcome: "applied",
                user_id: Some(account.user_id),
                mail: Some((id, message)),
                ..Applied::default()
            })
        }
        _ => Ok(Applied::ignored()),
    }
}

/// The statuses in which a subscription gives its plan.
fn is_live(status: &str) -> bool {
    matches!(status, "active" | "trialing" | "past_due")
}

async fn subscription_event(
    api: &StripeApi,
    conn: &mut AnyConnection,
    event: &StripeEvent,
    now: i64,
) -> Result<Applied, ApiError> {
    let object = &event.data.object;
    let (Some(id), Some(customer)) = (text(object, "id"), text(object, "customer")) else {
        return Ok(Applied::ignored());
    };
    let Some(account) = db::billing::account_by_customer(conn, customer).await? else {
        tracing::warn!(
            event = event.id,
            "subscription of a customer koldly does not know"
        );
        return Ok(Applied::ignored());
    };
    if db::billing::subscription_last_event(conn, id)
        .await?
        .is_some_and(|last| event.created < last)
    {
        tracing::info!(
            event = event.id,
            subscription = id,
            "older than the subscription's last applied event: ignored"
        );
        return Ok(Applied {
            outcome: "out_of_order",
            user_id: Some(account.user_id),
            ..Applied::default()
        });
    }
    let deleted = event.event_type == "customer.subscription.deleted";
    let status = if deleted {
        "canceled"
    } else {
        text(object, "status").unwrap_or("incomplete")
    };
    let item = &object["items"]["data"][0];
    let price = item["price"]["id"].as_str();
    let period_end = object["current_period_end"]
        .as_i64()
        .or_else(|| item["current_period_end"].as_i64());
    let plan = match price.and_then(|p| api.plan_of(p)) {
        Some(plan) if is_live(status) && !deleted => plan,
        None if is_live(status) && !deleted => {
            tracing::error!(
                event = event.id,
                price,
                "a live subscription's price is none of STRIPE_PRICE_*: the user stays on the free plan"
            );
            Plan::Free
        }
        _ => Plan::Free,
    };
    let newest = db::billing::upsert_subscription(
        conn,
        &SubscriptionState {
            id,
            user_id: &account.user_id,
            status,
            price_id: price,
            plan: plan.name(),
            period_end,
            event_created: event.created,
        },
        now,
    )
    .await?;
    if !newest {
        return Ok(Applied {
            outcome: "out_of_order",
            user_id: Some(account.user_id),
            ..Applied::default()
        });
    }
    let theirs = account.subscription_id.as_deref().is_none_or(|s| s == id);
    if !theirs && account.is_subscribed() {
        tracing::warn!(
            event = event.id,
            subscription = id,
            "the user has another running subscription: their plan follows that one"
        );
        return Ok(Applied {
            outcome: "ignored",
            user_id: Some(account.user_id),
            ..Applied::default()
        });
    }
    let linked = if is_live(status) || !deleted {
        Some(id)
    } else {
        None
    };
    db::billing::set_subscription(
        conn,
        &account.user_id,
        plan.name(),
        status,
        linked,
        period_end,
        now,
    )
    .await?;
    let plan_change =
        (account.plan != plan.name()).then(|| (account.plan.clone(), plan.name().to_owned()));
    Ok(Applied {
        outcome: "applied",
        user_id: Some(account.user_id),
        plan_change,
        ..Applied::default()
    })
}

fn payment_failed_mail(state: &AppState, to: &str, plan: &str, invoice: &Value) -> Message {
    let mut body = format!(
        "Hello,\n\nthe payment for your Koldly {plan} plan failed. Stripe will try again; \
         to keep your plan, update your payment method in the billing portal:\n{}/billing\n",
        state.config.public_url
    );
    if let Some(url) = text(invoice, "hosted_invoice_url") {
        body.push_str(&format!("\nThe invoice: {url}\n"));
    }
    body.push_str("\nThe Koldly team\n");
    Message {
        to: to.to_owned(),
        subject: "Your Koldly payment failed".to_owned(),
        body,
        kind: "billing_payment_failed",
    }
}
