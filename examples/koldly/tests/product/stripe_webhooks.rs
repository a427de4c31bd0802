//! `POST /api/webhooks/stripe` over HTTP: signatures (good, bad, stale,
//! rotated secrets), exactly-once application (duplicates, a failed handler
//! then Stripe's redelivery), out-of-order subscription events, the plan from
//! the price id with the limits following at once, and dunning by mail.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use koldly::billing::signature::sign;
use serde_json::{Value, json};
use sqlx::Row;

use crate::billing::{OLD_WEBHOOK_SECRET, WEBHOOK_SECRET, server_with_stripe};
use crate::client::{User, count, get, json, user};
use crate::on_both;
use crate::support::{Backend, Reply, TestServer, fake_stripe::FakeStripe, send};

/// Posts `body` signed by `secret` at `t` (unix seconds).
async fn deliver_signed(server: &TestServer, body: &str, secret: &str, t: i64) -> Reply {
    let header = format!("t={t},v1={}", sign(secret, t, body.as_bytes()));
    deliver(server, body, Some(&header)).await
}

async fn deliver(server: &TestServer, body: &str, signature: Option<&str>) -> Reply {
    let mut req = ::http::Request::builder()
        .method("POST")
        .uri(format!("http://{}/api/webhooks/stripe", server.addr))
        .header("content-type", "application/json");
    if let Some(signature) = signature {
        req = req.header("stripe-signature", signature);
    }
    send(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap()).await
}

/// Delivers `event` signed now with the current secret; asserts 200 and
/// returns the outcome.
async fn deliver_ok(server: &TestServer, event: &Value) -> String {
    let res = deliver_signed(
        server,
        &event.to_string(),
        WEBHOOK_SECRET,
        server.clock.now(),
    )
    .await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(res.json()["received"], true);
    res.json()["outcome"].as_str().unwrap().to_owned()
}

fn subscription_event(id: &str, kind: &str, created: i64, status: &str, price: &str) -> Value {
    json!({
        "id": id,
        "object": "event",
        "type": format!("customer.subscription.{kind}"),
        "created": created,
        "data": { "object": {
            "id": "sub_1",
            "object": "subscription",
            "customer": "cus_fake1",
            "status": status,
            // Stale metadata must not decide the plan.
            "metadata": { "plan": "starter" },
            "items": { "object": "list", "data": [
                { "id": "si_1", "price": { "id": price }, "current_period_end": created + 2_592_000 }
            ] },
        } },
    })
}

fn invoice_event(id: &str, kind: &str, created: i64) -> Value {
    json!({
        "id": id, "object": "event", "type": kind, "created": created,
        "data": { "object": {
            "id": "in_1", "object": "invoice", "customer": "cus_fake1", "subscription": "sub_1",
            "hosted_invoice_url": "https://invoice.stripe.test/in_1",
        } },
    })
}

use koldly::clock::Clock;

/// A user with a Stripe customer (`cus_fake1`, made by a real checkout).
async fn customer(server: &TestServer) -> User {
    let who = user(server, "payer@example.com").await;
    let res = json(
        server,
        &who,
        "POST",
        "/api/billing/checkout",
        json!({ "plan": "growth" }),
    )
    .await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    who
}

async fn billing_row(server: &TestServer, who: &User) -> (String, String, Option<String>) {
    let row = sqlx::query(
        "SELECT subscription_plan, subscription_status, stripe_subscription_id FROM users WHERE id = $1",
    )
    .bind(&who.id)
    .fetch_one(server.pool())
    .await
    .unwrap();
    (
        row.try_get("subscription_plan").unwrap(),
        row.try_get("subscription_status").unwrap(),
        row.try_get("stripe_subscription_id").unwrap(),
    )
}

async fn events_recorded(server: &TestServer) -> i64 {
    count(
        server,
        "SELECT COUNT(*) AS n FROM stripe_events WHERE id <> $1",
        "",
    )
    .await
}

async fn create_campaign(server: &TestServer, who: &User, name: &str) -> u16 {
    json(
        server,
        who,
        "POST",
        "/api/campaigns",
        json!({ "name": name }),
    )
    .await
    .status
    .as_u16()
}

/// The plan follows the subscription's price (not its metadata), the limits
/// follow at once, and a deletion puts the user back on free.
async fn subscription_events_set_the_plan_and_limits_follow(backend: Backend) {
    let stripe = FakeStripe::start(Duration::ZERO).await;
    let server = server_with_stripe(backend, &stripe).await;
    let who = customer(&server).await;
    assert_eq!(create_campaign(&server, &who, "One").await, 201);
    assert_eq!(
        create_campaign(&server, &who, "Two").await,
        403,
        "free allows one"
    );

    let now = server.clock.now();
    let created = subscription_event("evt_created", "created", now, "active", "price_growth");
    assert_eq!(deliver_ok(&server, &created).await, "applied");
    assert_eq!(
        billing_row(&server, &who).await,
        ("growth".into(), "active".into(), Some("sub_1".into()))
    );
    assert_eq!(
        create_campaign(&server, &who, "Two").await,
        201,
        "growth allows five"
    );
    let plan = get(&server, &who, "/api/billing/plan").await.json();
    assert_eq!(plan["plan"], "growth");
    assert_eq!(plan["subscribed"], true);
    assert_eq!(plan["current_period_end"], now + 2_592_000);
    let res = json(
        &server,
        &who,
        "POST",
        "/api/billing/checkout",
        json!({ "plan": "scale" }),
    )
    .await;
    res.assert_problem(409);

    let deleted = subscription_event(
        "evt_deleted",
        "deleted",
        now + 10,
        "canceled",
        "price_growth",
    );
    assert_eq!(deliver_ok(&server, &deleted).await, "applied");
    assert_eq!(
        billing_row(&server, &who).await,
        ("free".into(), "canceled".into(), None)
    );
    assert_eq!(
        create_campaign(&server, &who, "Three").await,
        403,
        "free again"
    );

    server.settle().await;
    let changes = sqlx::query(
        "SELECT metadata FROM analytics_events WHERE user_id = $1 AND event_type = 'plan_changed' ORDER BY occurred_at, id",
    )
    .bind(&who.id)
    .fetch_all(server.pool())
    .await
    .unwrap();
    let changes: Vec<Value> = changes
        .iter()
        .map(|r| serde_json::from_str(&r.try_get::<String, _>("metadata").unwrap()).unwrap())
        .collect();
    assert_eq!(changes.len(), 2);
    assert_eq!(
        (changes[0]["from"].as_str(), changes[0]["to"].as_str()),
        (Some("free"), Some("growth"))
    );
    let audited = crate::client::audited(&server, "billing.webhook").await;
    assert_eq!(audited.len(), 2);
    assert_eq!(audited[0].target_id.as_deref(), Some("evt_created"));
    assert_eq!(audited[0].outcome, "success");
}

/// Bad, missing and stale signatures are 400s that change nothing; every
/// configured secret is accepted (rotation).
async fn signatures_are_verified(backend: Backend) {
    let stripe = FakeStripe::start(Duration::ZERO).await;
    let server = server_with_stripe(backend, &stripe).await;
    let who = customer(&server).await;
    let now = server.clock.now();
    let event = subscription_event("evt_sig", "created", now, "active", "price_scale").to_string();

    let refused = [
        deliver_signed(&server, &event, "whsec_someone_else", now).await,
        deliver(&server, &event, None).await,
        deliver(&server, &event, Some("garbage")).await,
        deliver(&server, &event, Some(&format!("t={now}"))).await,
        // Signed, then altered.
        deliver(
            &server,
            &event.replace("price_scale", "price_growth"),
            Some(&format!(
                "t={now},v1={}",
                sign(WEBHOOK_SECRET, now, event.as_bytes())
            )),
        )
        .await,
        deliver_signed(&server, &event, WEBHOOK_SECRET, now - 301).await,
        deliver_signed(&server, &event, WEBHOOK_SECRET, now + 301).await,
    ];
    for res in &refused {
        let problem = res.assert_problem(400);
        assert!(!problem.to_string().contains("whsec_"), "{problem}");
    }
    assert_eq!(events_recorded(&server).await, 0);
    assert_eq!(billing_row(&server, &who).await.0, "free");

    // Signed in time, delivered after the clock moved past the tolerance.
    let signed_at = server.clock.now();
    let header = format!(
        "t={signed_at},v1={}",
        sign(WEBHOOK_SECRET, signed_at, event.as_bytes())
    );
    server.clock.advance(Duration::from_secs(301));
    deliver(&server, &event, Some(&header))
        .await
        .assert_problem(400);
    assert_eq!(events_recorded(&server).await, 0);

    // At the edge of the tolerance, by the previous secret: accepted.
    let now = server.clock.now();
    let res = deliver_signed(&server, &event, OLD_WEBHOOK_SECRET, now - 300).await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(billing_row(&server, &who).await.0, "scale");
    // The current secret, with an unknown v1 beside the right one.
    let next =
        subscription_event("evt_sig2", "updated", now + 1, "active", "price_starter").to_string();
    let header = format!(
        "t={now},v1={},v1={}",
        "ab".repeat(32),
        sign(WEBHOOK_SECRET, now, next.as_bytes())
    );
    assert_eq!(deliver(&server, &next, Some(&header)).await.status, 200);
    assert_eq!(billing_row(&server, &who).await.0, "starter");
    assert_eq!(events_recorded(&server).await, 2);

    // Signed, but not a Stripe event.
    let res = deliver_signed(&server, "[1,2]", WEBHOOK_SECRET, now).await;
    assert_eq!(res.assert_problem(400)["errors"][0]["field"], "body");
}

/// A redelivered event is a 200 no-op: one dunning mail, one status change.
async fn duplicate_events_are_no_ops(backend: Backend) {
    let stripe = FakeStripe::start(Duration::ZERO).await;
    let server = server_with_stripe(backend, &stripe).await;
    let who = customer(&server).await;
    let now = server.clock.now();
    deliver_ok(
        &server,
        &subscription_event("evt_sub", "created", now, "active", "price_growth"),
    )
    .await;

    let failed = invoice_event("evt_failed", "invoice.payment_failed", now + 5);
    assert_eq!(deliver_ok(&server, &failed).await, "applied");
    assert_eq!(deliver_ok(&server, &failed).await, "duplicate");
    assert_eq!(billing_row(&server, &who).await.1, "past_due");
    assert_eq!(
        get(&server, &who, "/api/billing/plan").await.json()["plan"],
        "growth"
    );
    server.settle().await;
    let mails: Vec<_> = koldly::db::outbox::for_recipient(server.pool(), "payer@example.com")
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.kind == "billing_payment_failed")
        .collect();
    assert_eq!(mails.len(), 1, "one dunning mail for one event");
    assert!(
        mails[0]
            .body_text
            .contains("https://invoice.stripe.test/in_1")
    );
    assert!(mails[0].body_text.contains("growth"));

    let paid = invoice_event("evt_paid", "invoice.paid", now + 9);
    assert_eq!(deliver_ok(&server, &paid).await, "applied");
    assert_eq!(billing_row(&server, &who).await.1, "active");
    assert_eq!(deliver_ok(&server, &paid).await, "duplicate");
    assert_eq!(
        count(
            &server,
            "SELECT COUNT(*) AS n FROM stripe_events WHERE id = $1",
            "evt_failed"
        )
        .await,
        1
    );
    assert_eq!(events_recorded(&server).await, 3);
}

/// An event created before the newest one applied to its subscription is
/// ignored, whatever order Stripe delivers them in.
async fn out_of_order_subscription_events_are_ignored(backend: Backend) {
    let stripe = FakeStripe::start(Duration::ZERO).await;
    let server = server_with_stripe(backend, &stripe).await;
    let who = customer(&server).await;
    let now = server.clock.now();
    let newer = subscription_event("evt_newer", "updated", now, "active", "price_scale");
    let older = subscription_event("evt_older", "updated", now - 60, "active", "price_starter");
    let older_delete = subscription_event(
        "evt_older_delete",
        "deleted",
        now - 30,
        "canceled",
        "price_scale",
    );
    assert_eq!(deliver_ok(&server, &newer).await, "applied");
    assert_eq!(deliver_ok(&server, &older).await, "out_of_order");
    assert_eq!(deliver_ok(&server, &older_delete).await, "out_of_order");
    assert_eq!(
        billing_row(&server, &who).await,
        ("scale".into(), "active".into(), Some("sub_1".into()))
    );
    // Recorded all the same: a redelivery of the old one stays ignored.
    assert_eq!(deliver_ok(&server, &older).await, "duplicate");
    let later = subscription_event("evt_later", "updated", now + 60, "past_due", "price_growth");
    assert_eq!(deliver_ok(&server, &later).await, "applied");
    assert_eq!(
        billing_row(&server, &who).await,
        ("growth".into(), "past_due".into(), Some("sub_1".into()))
    );
}

/// A handler that fails answers 500 and records nothing; Stripe's
/// redelivery then applies the event once.
async fn a_failed_handler_then_the_redelivery(backend: Backend) {
    let stripe = FakeStripe::start(Duration::ZERO).await;
    let server = server_with_stripe(backend, &stripe).await;
    let who = customer(&server).await;
    let event = subscription_event(
        "evt_retry",
        "created",
        server.clock.now(),
        "active",
        "price_growth",
    );
    // The subscription table is briefly unavailable: the handler fails.
    sqlx::query("ALTER TABLE stripe_subscriptions RENAME TO stripe_subscriptions_away")
        .execute(server.pool())
        .await
        .unwrap();
    let body = event.to_string();
    let res = deliver_signed(&server, &body, WEBHOOK_SECRET, server.clock.now()).await;
    let problem = res.assert_problem(500);
    assert!(
        !problem.to_string().contains("stripe_subscriptions"),
        "{problem}"
    );
    assert_eq!(
        events_recorded(&server).await,
        0,
        "the event id rolled back with its effect"
    );
    assert_eq!(billing_row(&server, &who).await.0, "free");
    sqlx::query("ALTER TABLE stripe_subscriptions_away RENAME TO stripe_subscriptions")
        .execute(server.pool())
        .await
        .unwrap();
    assert_eq!(deliver_ok(&server, &event).await, "applied");
    assert_eq!(billing_row(&server, &who).await.0, "growth");
    assert_eq!(deliver_ok(&server, &event).await, "duplicate");
    assert_eq!(events_recorded(&server).await, 1);
}

/// `checkout.session.completed` links the subscription to the customer's
/// user; events about customers koldly does not know are acknowledged and
/// change nothing.
async fn checkout_completed_and_unknown_customers(backend: Backend) {
    let stripe = FakeStripe::start(Duration::ZERO).await;
    let server = server_with_stripe(backend, &stripe).await;
    let who = customer(&server).await;
    let other = user(&server, "bystander@example.com").await;
    let completed = json!({
        "id": "evt_cs", "type": "checkout.session.completed", "created": server.clock.now(),
        "data": { "object": { "id": "cs_1", "customer": "cus_fake1", "subscription": "sub_9", "client_reference_id": other.id } },
    });
    assert_eq!(deliver_ok(&server, &completed).await, "applied");
    assert_eq!(billing_row(&server, &who).await.2.as_deref(), Some("sub_9"));
    assert_eq!(
        billing_row(&server, &other).await.2,
        None,
        "the customer decides, not the reference"
    );
    let mut stranger = subscription_event(
        "evt_stranger",
        "created",
        server.clock.now(),
        "active",
        "price_scale",
    );
    stranger["data"]["object"]["customer"] = json!("cus_unknown");
    assert_eq!(deliver_ok(&server, &stranger).await, "ignored");
    let unknown_type = json!({ "id": "evt_other", "type": "customer.updated", "created": 1, "data": { "object": {} } });
    assert_eq!(deliver_ok(&server, &unknown_type).await, "ignored");
    assert_eq!(billing_row(&server, &other).await.0, "free");
    assert_eq!(billing_row(&server, &who).await.0, "free");
}

on_both!(
    subscription_events_set_the_plan_and_limits_follow,
    signatures_are_verified,
    duplicate_events_are_no_ops,
    out_of_order_subscription_events_are_ignored,
    a_failed_handler_then_the_redelivery,
    checkout_completed_and_unknown_customers,
);
