//! Billing over HTTP against a fake Stripe on loopback: checkout (one
//! customer under concurrent first checkouts, idempotency keys, 409 when
//! subscribed), the portal, invoices through Stripe's cursor, plan and usage,
//! and 503 without a key.

use std::time::Duration;

use koldly::{
    billing::config::{StripeApi, StripeConfig, WEBHOOK_TOLERANCE},
    http_client::CircuitSettings,
    plans::{ENTITLEMENTS, Plan},
};
use serde_json::{Value, json};
use sqlx::Row;

use crate::client::{User, all_at_once, build, campaign, get, json, request, user};
use crate::on_both;
use crate::support::{Backend, TestServer, fake_stripe::FakeStripe};

pub const WEBHOOK_SECRET: &str = "whsec_current_test_secret";
pub const OLD_WEBHOOK_SECRET: &str = "whsec_previous_test_secret";

/// Billing configured against `stripe` (prices `price_starter`,
/// `price_growth`, `price_scale`; both webhook secrets accepted).
pub fn configured(stripe_url: &str) -> StripeConfig {
    StripeConfig {
        api: Some(StripeApi {
            base_url: stripe_url.to_owned(),
            secret_key: "sk_test_fake_key".to_owned(),
            prices: vec![
                (Plan::Starter, "price_starter".to_owned()),
                (Plan::Growth, "price_growth".to_owned()),
                (Plan::Scale, "price_scale".to_owned()),
            ],
            circuit: CircuitSettings::default(),
        }),
        webhook_secrets: vec![OLD_WEBHOOK_SECRET.to_owned(), WEBHOOK_SECRET.to_owned()],
        webhook_tolerance: WEBHOOK_TOLERANCE,
    }
}

pub async fn server_with_stripe(backend: Backend, stripe: &FakeStripe) -> TestServer {
    let url = stripe.url();
    TestServer::start(backend, move |c| c.stripe = configured(&url)).await
}

async fn checkout(server: &TestServer, who: &User, plan: &str) -> crate::support::Reply {
    json(
        server,
        who,
        "POST",
        "/api/billing/checkout",
        json!({ "plan": plan }),
    )
    .await
}

async fn customer_of(server: &TestServer, who: &User) -> Option<String> {
    sqlx::query("SELECT stripe_customer_id FROM users WHERE id = $1")
        .bind(&who.id)
        .fetch_one(server.pool())
        .await
        .unwrap()
        .try_get("stripe_customer_id")
        .unwrap()
}

/// Without STRIPE_SECRET_KEY: the Stripe routes are 503 "billing is not
/// configured"; plan and usage still answer.
async fn without_a_key_billing_is_not_configured(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let who = user(&server, "nokey@example.com").await;
    for res in [
        checkout(&server, &who, "starter").await,
        get(&server, &who, "/api/billing/portal").await,
        get(&server, &who, "/api/billing/invoices").await,
        server.post("/api/webhooks/stripe", "{}").await,
    ] {
        let problem = res.assert_problem(503);
        assert_eq!(problem["title"], "billing is not configured");
    }
    let plan = get(&server, &who, "/api/billing/plan").await;
    assert_eq!(plan.status, 200);
    assert_eq!(plan.json()["plan"], "free");
    assert_eq!(plan.json()["billing_configured"], false);
    assert_eq!(get(&server, &who, "/api/billing/usage").await.status, 200);
}

/// A first checkout creates the customer (once), then a session with the
/// plan's price; each Stripe POST carries an Idempotency-Key and the key.
async fn checkout_creates_the_customer_once_and_a_session(backend: Backend) {
    let stripe = FakeStripe::start(Duration::ZERO).await;
    let server = server_with_stripe(backend, &stripe).await;
    let who = user(&server, "buyer@example.com").await;
    let res = checkout(&server, &who, "growth").await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    let body = res.json();
    assert!(
        body["url"]
            .as_str()
            .unwrap()
            .starts_with("https://checkout.stripe.test/c/cs_fake")
    );
    assert!(body["session_id"].as_str().unwrap().starts_with("cs_fake"));

    let customers = stripe.seen_at("/v1/customers");
    assert_eq!(customers.len(), 1);
    let created = &customers[0];
    assert_eq!(created.param("email"), Some("buyer@example.com"));
    assert_eq!(created.param("metadata[user_id]"), Some(who.id.as_str()));
    assert_eq!(
        created.authorization.as_deref(),
        Some("Bearer sk_test_fake_key")
    );
    assert_eq!(
        created.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert!(
        created
            .idempotency_key
            .as_deref()
            .unwrap()
            .starts_with("koldly-customer-")
    );
    let customer = customer_of(&server, &who).await.expect("customer stored");
    assert_eq!(customer, "cus_fake1");

    let sessions = stripe.seen_at("/v1/checkout/sessions");
    assert_eq!(sessions.len(), 1);
    let session = &sessions[0];
    assert_eq!(session.param("customer"), Some("cus_fake1"));
    assert_eq!(session.param("mode"), Some("subscription"));
    assert_eq!(session.param("line_items[0][price]"), Some("price_growth"));
    assert_eq!(session.param("line_items[0][quantity]"), Some("1"));
    assert_eq!(session.param("client_reference_id"), Some(who.id.as_str()));
    assert_eq!(session.param("metadata[plan]"), Some("growth"));
    assert!(
        session
            .param("success_url")
            .unwrap()
            .contains("{CHECKOUT_SESSION_ID}")
    );
    assert!(
        session
            .idempotency_key
            .as_deref()
            .unwrap()
            .starts_with("koldly-checkout-")
    );

    // A second checkout (another plan) reuses the customer; its key differs.
    let res = checkout(&server, &who, "scale").await;
    assert_eq!(res.status, 200);
    assert_eq!(stripe.seen_at("/v1/customers").len(), 1);
    let sessions = stripe.seen_at("/v1/checkout/sessions");
    assert_eq!(sessions[1].param("customer"), Some("cus_fake1"));
    assert_eq!(
        sessions[1].param("line_items[0][price]"),
        Some("price_scale")
    );
    assert_ne!(sessions[0].idempotency_key, sessions[1].idempotency_key);

    // The plan does not change by a checkout: only Stripe's events change it.
    assert_eq!(
        get(&server, &who, "/api/billing/plan").await.json()["plan"],
        "free"
    );
    let audited = crate::client::audited(&server, "billing.checkout").await;
    assert_eq!(audited.len(), 2);
    assert_eq!(audited[0].actor.as_deref(), Some(who.id.as_str()));
    server.settle().await;
    let started = crate::client::count(
        &server,
        "SELECT COUNT(*) AS n FROM analytics_events WHERE user_id = $1 AND event_type = 'checkout_started'",
        &who.id,
    )
    .await;
    assert_eq!(started, 2);
}

/// Eight first checkouts at once make one Stripe customer: koldly's lock on
/// the user, not Stripe's idempotency (the fake does not deduplicate).
async fn concurrent_first_checkouts_make_one_customer(backend: Backend) {
    let stripe = FakeStripe::start(Duration::from_millis(150)).await;
    let server = server_with_stripe(backend, &stripe).await;
    let who = user(&server, "racer@example.com").await;
    let requests = (0..8).map(|_| {
        build(
            &server,
            &who,
            "POST",
            "/api/billing/checkout",
            "application/json",
            json!({ "plan": "starter" }).to_string(),
        )
    });
    let replies = all_at_once(requests).await;
    for reply in &replies {
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
    }
    assert_eq!(
        stripe.seen_at("/v1/customers").len(),
        1,
        "one customer created"
    );
    let sessions = stripe.seen_at("/v1/checkout/sessions");
    assert_eq!(sessions.len(), 8);
    assert!(
        sessions
            .iter()
            .all(|s| s.param("customer") == Some("cus_fake1"))
    );
    assert_eq!(
        customer_of(&server, &who).await.as_deref(),
        Some("cus_fake1")
    );
}

/// Stripe answering 503 once: the retry layer sends the same POST again,
/// with the same Idempotency-Key and body.
async fn a_retried_stripe_post_reuses_its_idempotency_key(backend: Backend) {
    let stripe = FakeStripe::start(Duration::ZERO).await;
    let server = server_with_stripe(backend, &stripe).await;
    let who = user(&server, "retry@example.com").await;
    stripe.fail_next("/v1/checkout/sessions", 1);
    let res = checkout(&server, &who, "starter").await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    let sessions = stripe.seen_at("/v1/checkout/sessions");
    assert_eq!(sessions.len(), 2, "one failed attempt, one retry");
    assert!(sessions[0].idempotency_key.is_some());
    assert_eq!(sessions[0].idempotency_key, sessions[1].idempotency_key);
    assert_eq!(sessions[0].params, sessions[1].params);

    // A client retrying with its Idempotency-Key gets the stored answer:
    // Stripe is not called again.
    let body = json!({ "plan": "starter" }).to_string();
    let first = request(
        &server,
        Some(&who),
        "POST",
        "/api/billing/checkout",
        Some("application/json"),
        &body,
        Some("client-key-1"),
    )
    .await;
    let again = request(
        &server,
        Some(&who),
        "POST",
        "/api/billing/checkout",
        Some("application/json"),
        &body,
        Some("client-key-1"),
    )
    .await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body, again.body);
    assert_eq!(stripe.seen_at("/v1/checkout/sessions").len(), 3);

    // Stripe down for good: a 503 problem, nothing stored.
    stripe.fail_next("/v1/checkout/sessions", 10);
    let res = checkout(&server, &who, "starter").await;
    let problem = res.assert_problem(503);
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("/payment-provider")
    );
    assert!(!String::from_utf8_lossy(&res.body).contains("sk_test"));
}

/// A running subscription: checkout is a 409 and Stripe is not called.
async fn checkout_is_409_while_subscribed(backend: Backend) {
    let stripe = FakeStripe::start(Duration::ZERO).await;
    let server = server_with_stripe(backend, &stripe).await;
    let who = user(&server, "subscribed@example.com").await;
    for status in ["active", "trialing", "past_due"] {
        sqlx::query(
            "UPDATE users SET subscription_plan = 'growth', subscription_status = $1, \
             stripe_customer_id = 'cus_x', stripe_subscription_id = 'sub_x' WHERE id = $2",
        )
        .bind(status)
        .bind(&who.id)
        .execute(server.pool())
        .await
        .unwrap();
        let problem = checkout(&server, &who, "scale").await.assert_problem(409);
        assert!(
            problem["type"]
                .as_str()
                .unwrap()
                .ends_with("/already-subscribed")
        );
    }
    assert!(stripe.seen().is_empty());
    // Cancelled: a new checkout is allowed.
    sqlx::query("UPDATE users SET subscription_status = 'canceled', stripe_subscription_id = NULL WHERE id = $1")
        .bind(&who.id)
        .execute(server.pool())
        .await
        .unwrap();
    assert_eq!(checkout(&server, &who, "scale").await.status, 200);
}

/// Bad checkout requests name what is wrong and call nobody.
async fn checkout_refuses_bad_input(backend: Backend) {
    let stripe = FakeStripe::start(Duration::ZERO).await;
    let server = server_with_stripe(backend, &stripe).await;
    let who = user(&server, "bad@example.com").await;
    for (body, field) in [
        (json!({ "plan": "enterprise" }), "plan"),
        (json!({ "plan": "free" }), "plan"),
        (json!({}), "plan"),
        (json!({ "plan": 3 }), "plan"),
        (json!({ "plan": "starter", "coupon": "x" }), "coupon"),
    ] {
        let problem = json(&server, &who, "POST", "/api/billing/checkout", body)
            .await
            .assert_problem(422);
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    let problem = request(
        &server,
        Some(&who),
        "POST",
        "/api/billing/checkout",
        Some("application/json"),
        "{plan",
        None,
    )
    .await
    .assert_problem(400);
    assert_eq!(problem["errors"][0]["field"], "body");
    let anonymous = request(
        &server,
        None,
        "POST",
        "/api/billing/checkout",
        Some("application/json"),
        r#"{"plan":"starter"}"#,
        None,
    )
    .await;
    anonymous.assert_problem(401);
    for path in [
        "/api/billing/plan",
        "/api/billing/usage",
        "/api/billing/portal",
        "/api/billing/invoices",
    ] {
        request(&server, None, "GET", path, None, "", None)
            .await
            .assert_problem(401);
    }
    assert!(stripe.seen().is_empty());
}

/// The portal needs a customer; invoices page through Stripe's cursor, and a
/// cursor never reaches another account's invoices.
async fn portal_and_invoices(backend: Backend) {
    let stripe = FakeStripe::start(Duration::ZERO).await;
    let server = server_with_stripe(backend, &stripe).await;
    let who = user(&server, "invoices@example.com").await;
    let problem = get(&server, &who, "/api/billing/portal")
        .await
        .assert_problem(409);
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("/no-billing-account")
    );
    let empty = get(&server, &who, "/api/billing/invoices").await;
    assert_eq!(empty.json(), json!({ "items": [], "next_cursor": null }));
    assert!(stripe.seen().is_empty());

    assert_eq!(checkout(&server, &who, "starter").await.status, 200);
    let portal = get(&server, &who, "/api/billing/portal").await;
    assert_eq!(portal.status, 200);
    assert!(
        portal.json()["url"]
            .as_str()
            .unwrap()
            .starts_with("https://billing.stripe.test/p/")
    );
    let portal_call = stripe.seen_at("/v1/billing_portal/sessions");
    assert_eq!(portal_call[0].param("customer"), Some("cus_fake1"));
    assert_eq!(
        portal_call[0].param("return_url"),
        Some("http://127.0.0.1:8080/billing")
    );
    assert!(portal_call[0].idempotency_key.is_some());

    stripe.set_invoices("cus_fake1", &["in_3", "in_2", "in_1"]);
    let first = get(&server, &who, "/api/billing/invoices?limit=2")
        .await
        .json();
    let ids: Vec<&str> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["in_3", "in_2"]);
    assert_eq!(first["items"][0]["amount_paid"], 2900);
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let second = get(
        &server,
        &who,
        &format!("/api/billing/invoices?limit=2&cursor={cursor}"),
    )
    .await
    .json();
    assert_eq!(second["items"][0]["id"], "in_1");
    assert_eq!(second["next_cursor"], Value::Null);
    let calls = stripe.seen_at("/v1/invoices");
    assert_eq!(calls[1].param("starting_after"), Some("in_2"));
    assert_eq!(calls[1].param("customer"), Some("cus_fake1"));
    assert_eq!(calls[1].param("limit"), Some("2"));

    for query in [
        "limit=0",
        "limit=101",
        "limit=x",
        "cursor=not-ours",
        "cursor=aW5fMQ%3D%3D%3D",
    ] {
        let problem = get(&server, &who, &format!("/api/billing/invoices?{query}"))
            .await
            .assert_problem(400);
        let field = query.split('=').next().unwrap();
        assert_eq!(problem["errors"][0]["field"], field, "{query}");
    }

    // Another account with the first one's cursor: Stripe is asked for its
    // own customer's invoices only.
    let other = user(&server, "other-invoices@example.com").await;
    assert_eq!(checkout(&server, &other, "starter").await.status, 200);
    let other_customer = customer_of(&server, &other).await.unwrap();
    stripe.set_invoices(&other_customer, &["in_9"]);
    let res = get(
        &server,
        &other,
        &format!("/api/billing/invoices?cursor={cursor}"),
    )
    .await;
    let last = stripe.seen_at("/v1/invoices").pop().unwrap();
    assert_eq!(last.param("customer"), Some(other_customer.as_str()));
    // Stripe does not know that invoice in this customer's list: 502, no data.
    res.assert_problem(502);
    let mine = get(&server, &other, "/api/billing/invoices").await.json();
    assert_eq!(mine["items"].as_array().unwrap().len(), 1);
    assert_eq!(mine["items"][0]["id"], "in_9");
}

/// Plan and usage read the entitlements table the limits use.
async fn plan_and_usage_follow_the_entitlements(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let who = user(&server, "usage@example.com").await;
    let c = campaign(&server, &who, "Counted").await;
    let res = crate::client::import(
        &server,
        &who,
        c["id"].as_str().unwrap(),
        &crate::client::emails("u", 3),
    )
    .await;
    assert_eq!(res.status, 200);
    for (plan, entitlements) in ENTITLEMENTS {
        crate::client::set_plan(&server, &who, plan.name()).await;
        let body = get(&server, &who, "/api/billing/plan").await.json();
        assert_eq!(body["plan"], plan.name());
        assert_eq!(body["status"], "inactive");
        assert_eq!(body["subscribed"], false);
        assert_eq!(
            body["entitlements"]["active_campaigns"],
            json!(entitlements.active_campaigns)
        );
        assert_eq!(
            body["entitlements"]["prospects_per_month"],
            entitlements.prospects_per_month
        );
        let usage = get(&server, &who, "/api/billing/usage").await.json();
        assert_eq!(usage["plan"], plan.name());
        assert_eq!(
            usage["active_campaigns"],
            json!({ "used": 1, "limit": entitlements.active_campaigns })
        );
        assert_eq!(
            usage["prospects_per_month"],
            json!({ "used": 3, "limit": entitlements.prospects_per_month })
        );
        assert_eq!(
            usage["ai_budget_cents_per_month"],
            json!({ "used": 0, "limit": entitlements.ai_budget_cents_per_month })
        );
    }
}

on_both!(
    without_a_key_billing_is_not_configured,
    checkout_creates_the_customer_once_and_a_session,
    concurrent_first_checkouts_make_one_customer,
    a_retried_stripe_post_reuses_its_idempotency_key,
    checkout_is_409_while_subscribed,
    checkout_refuses_bad_input,
    portal_and_invoices,
    plan_and_usage_follow_the_entitlements,
);
