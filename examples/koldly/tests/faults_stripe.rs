//! Reliability scenarios: Stripe (the fake Stripe API) failing, slow and
//! black-holed, reached through the fault proxy (RELIABILITY.md, "koldly:
//! database and providers", K2h–K2j), on SQLite and PostgreSQL.
//!
//! Figures: attempts at the fake per logical checkout under 100 % failure
//! (amplification; Stripe's client retries twice at most and its circuit
//! opens after 5 failed calls), how long a checkout waits when Stripe hangs
//! against its route timeout, and that a checkout retried once Stripe is back
//! creates one customer and one session: no duplicate. Real sockets, so real
//! time: waits are on conditions, polled and bounded; the server runs with
//! 3 s route timeouts.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use fault_proxy::{FaultHandle, FaultProxy};
use http_body_util::Full;
use koldly::{
    billing::config::{StripeApi, StripeConfig, WEBHOOK_TOLERANCE},
    http_client::CircuitSettings,
    plans::Plan,
};
use steadfast::timeout::TimeoutTable;
use support::{Backend, Reply, TestServer, fake_stripe::FakeStripe};

const ROUTE_TIMEOUT: Duration = Duration::from_secs(3);
const SLACK: Duration = Duration::from_millis(1500);
/// Logical checkouts in the failing scenario.
const CHECKOUTS: usize = 10;
const CUSTOMERS: &str = "/v1/customers";
const SESSIONS: &str = "/v1/checkout/sessions";

struct Rig {
    server: TestServer,
    stripe: FakeStripe,
    faults: FaultHandle,
    _proxy: FaultProxy,
}

/// koldly with billing configured against the fake Stripe through the proxy
/// (Stripe's default circuit: opens when half of the last 20 calls failed,
/// after at least 5, for 30 s).
async fn rig(backend: Backend) -> Rig {
    let stripe = FakeStripe::start(Duration::ZERO).await;
    let proxy = FaultProxy::start(stripe.addr).await.expect("fault proxy");
    let url = format!("http://{}", proxy.addr());
    let server = TestServer::start(backend, move |c| {
        c.stripe = StripeConfig {
            api: Some(StripeApi {
                base_url: url,
                secret_key: "sk_test_fake_key".to_owned(),
                prices: vec![
                    (Plan::Starter, "price_starter".to_owned()),
                    (Plan::Growth, "price_growth".to_owned()),
                    (Plan::Scale, "price_scale".to_owned()),
                ],
                circuit: CircuitSettings::default(),
            }),
            webhook_secrets: vec!["whsec_faults_test_secret".to_owned()],
            webhook_tolerance: WEBHOOK_TOLERANCE,
        };
        c.route_timeouts = TimeoutTable::new(ROUTE_TIMEOUT);
    })
    .await;
    Rig {
        server,
        stripe,
        faults: proxy.handle(),
        _proxy: proxy,
    }
}

/// `POST /api/billing/checkout` for the growth plan as `token`, with the
/// client's `Idempotency-Key` `key`.
async fn checkout(server: &TestServer, token: &str, key: &str) -> Reply {
    support::send(
        http::Request::post(format!("http://{}/api/billing/checkout", server.addr))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(Full::new(Bytes::from_static(br#"{"plan":"growth"}"#)))
            .unwrap(),
    )
    .await
}

fn user(i: usize) -> String {
    format!("stripe-fault-{i}@example.com")
}

/// Stripe answers every customer creation 503 while ten users start their
/// first checkout: each ends with a 503 problem within its route timeout,
/// the retries and the circuit bound the attempts, nothing is stored.
async fn failing_stripe_amplification(backend: Backend) {
    let rig = rig(backend).await;
    let mut tokens = Vec::new();
    for i in 0..CHECKOUTS {
        tokens.push(
            rig.server
                .signup(&user(i), &format!("password {i} long"))
                .await
                .0,
        );
    }
    rig.stripe.fail_next(CUSTOMERS, 1_000_000);
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for (i, token) in tokens.iter().enumerate() {
        let call_started = Instant::now();
        let res = checkout(&rig.server, token, &format!("fail-{i}")).await;
        slowest = slowest.max(call_started.elapsed());
        res.assert_problem(503);
        assert!(
            !String::from_utf8_lossy(&res.body).contains("sk_test"),
            "no secret in the problem"
        );
    }
    let took = started.elapsed();
    assert!(slowest <= ROUTE_TIMEOUT + SLACK, "{slowest:?}");
    let attempts = rig.stripe.seen_at(CUSTOMERS).len();
    // One attempt and 2 retries per call at most; the circuit cuts it short.
    assert!(
        attempts <= CHECKOUTS * 3,
        "{attempts} attempts for {CHECKOUTS}"
    );
    assert!(rig.stripe.seen_at(SESSIONS).is_empty(), "no session");
    let stored: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE stripe_customer_id IS NOT NULL")
            .fetch_one(rig.server.pool())
            .await
            .unwrap();
    assert_eq!(stored, 0, "no customer stored");
    println!(
        "FIGURE koldly_stripe_failing ({backend:?}): {CHECKOUTS} checkouts under 100 % 503: \
         {attempts} attempts at Stripe, amplification {:.2} (bound 3.0), all 503 problem+json, \
         slowest {} ms, all {CHECKOUTS} in {} ms, 0 customers stored",
        attempts as f64 / CHECKOUTS as f64,
        slowest.as_millis(),
        took.as_millis(),
    );
}

/// Stripe slowed down (every chunk delayed 300 ms): a checkout succeeds,
/// without a retry.
async fn slow_stripe_still_checks_out_once(backend: Backend) {
    let rig = rig(backend).await;
    let (token, _) = rig.server.signup(&user(0), "password 0 long").await;
    rig.faults.set_latency(Duration::from_millis(300));
    let started = Instant::now();
    let res = checkout(&rig.server, &token, "slow-1").await;
    let took = started.elapsed();
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    assert!(
        res.json()["session_id"]
            .as_str()
            .unwrap()
            .starts_with("cs_")
    );
    let (customers, sessions) = (
        rig.stripe.seen_at(CUSTOMERS).len(),
        rig.stripe.seen_at(SESSIONS).len(),
    );
    assert_eq!((customers, sessions), (1, 1), "one attempt each, no retry");
    println!(
        "FIGURE koldly_stripe_slow ({backend:?}): slow (300 ms a chunk): 200 in {} ms, \
         {customers} customer and {sessions} session attempt(s)",
        took.as_millis(),
    );
}

/// Stripe black-holed: a checkout ends by its route timeout with a 5xx
/// problem and nothing reaches Stripe; once Stripe is back the client's
/// retry (same `Idempotency-Key`) creates one customer and one session, and
/// a further retry replays that answer without calling Stripe again.
async fn black_holed_stripe_then_back_creates_one_customer_and_session(backend: Backend) {
    let rig = rig(backend).await;
    let (token, user_id) = rig.server.signup(&user(0), "password 0 long").await;
    rig.faults.black_hole();
    let started = Instant::now();
    let hung = checkout(&rig.server, &token, "hole-1").await;
    let hung_took = started.elapsed();
    assert!(
        hung_took <= ROUTE_TIMEOUT + SLACK,
        "the checkout ends by its route timeout: {hung_took:?}"
    );
    assert!(matches!(hung.status.as_u16(), 503 | 504), "{}", hung.status);
    hung.assert_problem(hung.status.as_u16());
    assert!(rig.stripe.seen().is_empty(), "nothing reached Stripe");

    rig.faults.restore().await.expect("restore");
    rig.faults.cut().await;
    let retried = checkout(&rig.server, &token, "hole-1").await;
    assert_eq!(
        retried.status,
        200,
        "{}",
        String::from_utf8_lossy(&retried.body)
    );
    let replayed = checkout(&rig.server, &token, "hole-1").await;
    assert_eq!(replayed.status, 200);
    assert_eq!(
        replayed.json()["session_id"],
        retried.json()["session_id"],
        "the client's retry replays the session"
    );
    let customers = rig.stripe.seen_at(CUSTOMERS);
    let sessions = rig.stripe.seen_at(SESSIONS);
    assert_eq!(customers.len(), 1, "one customer");
    assert_eq!(sessions.len(), 1, "one session");
    assert!(
        customers[0]
            .idempotency_key
            .as_deref()
            .unwrap()
            .starts_with("koldly-customer-")
    );
    let stored: Option<String> =
        sqlx::query_scalar("SELECT stripe_customer_id FROM users WHERE id = $1")
            .bind(&user_id)
            .fetch_one(rig.server.pool())
            .await
            .unwrap();
    assert!(stored.is_some(), "the customer is stored");
    println!(
        "FIGURE koldly_stripe_black_hole ({backend:?}): black-holed: {} in {} ms (route timeout \
         {} ms), {} bytes swallowed, 0 requests reached Stripe; back: the client's retry 200, a \
         further retry replayed; Stripe saw {} customer and {} session creation(s)",
        hung.status.as_u16(),
        hung_took.as_millis(),
        ROUTE_TIMEOUT.as_millis(),
        rig.faults.swallowed_bytes(),
        customers.len(),
        sessions.len(),
    );
}

on_both!(
    failing_stripe_amplification,
    slow_stripe_still_checks_out_once,
    black_holed_stripe_then_back_creates_one_customer_and_session,
);
