//! Mail through a Postmark-compatible provider, graceful shutdown with a
//! request in flight, restarts on the same database, and the data model's
//! foreign keys.

mod support;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Json, Router, extract::State, http::HeaderMap, routing::post};
use koldly::config::PostmarkConfig;
use support::{Backend, TestServer};
use tokio::sync::Notify;

#[derive(Default)]
struct Postmark {
    received: Mutex<Vec<serde_json::Value>>,
    calls: AtomicUsize,
    /// When set, each call waits for `release` after announcing itself on `arrived`.
    hold: Mutex<bool>,
    arrived: Notify,
    release: Notify,
    fail: Mutex<bool>,
    /// How many calls to answer 503 before accepting.
    unavailable: AtomicUsize,
    /// The Idempotency-Key of every call.
    keys: Mutex<Vec<String>>,
    /// When set, the message is accepted (delivered) and then this status
    /// answered, as a gateway timing out after the provider took it would.
    accept_then: Mutex<Option<axum::http::StatusCode>>,
}

async fn email(
    State(pm): State<Arc<Postmark>>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> (axum::http::StatusCode, Json<serde_json::Value>) {
    pm.calls.fetch_add(1, Ordering::SeqCst);
    assert_eq!(headers["x-postmark-server-token"], "pm-token");
    let key = headers
        .get("idempotency-key")
        .map(|v| v.to_str().unwrap().to_owned());
    pm.keys.lock().unwrap().push(key.unwrap_or_default());
    if pm
        .unavailable
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "ErrorCode": 0, "Message": "try again" })),
        );
    }
    if *pm.hold.lock().unwrap() {
        pm.arrived.notify_one();
        pm.release.notified().await;
    }
    if *pm.fail.lock().unwrap() {
        return (
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            Json(serde_json::json!({ "ErrorCode": 300, "Message": "Invalid email request" })),
        );
    }
    pm.received.lock().unwrap().push(body);
    if let Some(status) = *pm.accept_then.lock().unwrap() {
        return (status, Json(serde_json::json!({ "Message": "gateway" })));
    }
    (
        axum::http::StatusCode::OK,
        Json(serde_json::json!({ "ErrorCode": 0, "MessageID": "m-1" })),
    )
}

async fn start_with_postmark(backend: Backend) -> (TestServer, Arc<Postmark>) {
    start_with_postmark_and(backend, |_| {}).await
}

async fn start_with_postmark_and(
    backend: Backend,
    tweak: impl FnOnce(&mut koldly::config::Config),
) -> (TestServer, Arc<Postmark>) {
    let pm = Arc::new(Postmark::default());
    let addr = support::common::serve(
        Router::new()
            .route("/email", post(email))
            .with_state(pm.clone()),
    )
    .await;
    let server = TestServer::start(backend, |c| {
        c.postmark = Some(PostmarkConfig {
            token: "pm-token".into(),
            url: format!("http://{addr}"),
        });
        c.mail_from = "Koldly <hello@koldly.test>".into();
        c.forgot_password_limit.max = 100;
        tweak(c);
    })
    .await;
    (server, pm)
}

async fn mail_goes_through_the_provider(backend: Backend) {
    let (server, pm) = start_with_postmark(backend).await;
    server.signup("jack@example.com", "jack password 1").await;
    let res = server
        .post(
            "/api/auth/forgot-password",
            r#"{"email":"jack@example.com"}"#,
        )
        .await;
    assert_eq!(res.status, 200);
    assert!(
        server
            .handles
            .state
            .mailer
            .wait_idle(Duration::from_secs(10))
            .await
    );
    {
        let received = pm.received.lock().unwrap();
        assert_eq!(received.len(), 1);
        assert_eq!(received[0]["To"], "jack@example.com");
        assert_eq!(received[0]["From"], "Koldly <hello@koldly.test>");
        assert!(
            received[0]["TextBody"]
                .as_str()
                .unwrap()
                .contains("/reset-password?token=")
        );
    }
    let outbox = koldly::db::outbox::for_recipient(server.pool(), "jack@example.com")
        .await
        .unwrap();
    assert_eq!(outbox[0].status, "sent");

    // The provider refuses: the request still answers 200 (no account
    // enumeration) and the message stays in the outbox as failed.
    *pm.fail.lock().unwrap() = true;
    let res = server
        .post(
            "/api/auth/forgot-password",
            r#"{"email":"jack@example.com"}"#,
        )
        .await;
    assert_eq!(res.status, 200);
    assert!(
        server
            .handles
            .state
            .mailer
            .wait_idle(Duration::from_secs(10))
            .await
    );
    let outbox = koldly::db::outbox::for_recipient(server.pool(), "jack@example.com")
        .await
        .unwrap();
    assert_eq!(outbox[0].status, "failed");
    assert_eq!(pm.calls.load(Ordering::SeqCst), 2);
    server.stop().await;
}

async fn transient_provider_failures_are_retried(backend: Backend) {
    let (server, pm) = start_with_postmark(backend).await;
    server.signup("omar@example.com", "omar password 1").await;
    pm.unavailable.store(2, Ordering::SeqCst);
    let res = server
        .post(
            "/api/auth/forgot-password",
            r#"{"email":"omar@example.com"}"#,
        )
        .await;
    assert_eq!(res.status, 200);
    assert!(
        server
            .handles
            .state
            .mailer
            .wait_idle(Duration::from_secs(20))
            .await
    );
    assert_eq!(
        pm.calls.load(Ordering::SeqCst),
        3,
        "two 503s, then accepted"
    );
    assert_eq!(pm.received.lock().unwrap().len(), 1, "delivered once");
    let keys = pm.keys.lock().unwrap().clone();
    assert!(
        !keys[0].is_empty() && keys.iter().all(|k| *k == keys[0]),
        "{keys:?}"
    );
    let outbox = koldly::db::outbox::for_recipient(server.pool(), "omar@example.com")
        .await
        .unwrap();
    assert_eq!(outbox[0].status, "sent");
    assert_eq!(
        outbox[0].id, keys[0],
        "the outbox id is the idempotency key"
    );

    // send-verification, waiting for the provider: retried within the request.
    let login = server.login("omar@example.com", "omar password 1").await;
    let token = login.json()["token"].as_str().unwrap().to_owned();
    pm.unavailable.store(1, Ordering::SeqCst);
    let res = server
        .authed("POST", "/api/auth/send-verification", &token, "")
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(pm.calls.load(Ordering::SeqCst), 5);
    server.stop().await;
}

/// A failure that may come after the provider took the message (a 502 or
/// 504 from a gateway, a timeout) is not retried, and the outbox job does not
/// resend it: the provider honours no idempotency key, so a resend could
/// deliver it twice.
async fn mail_that_may_have_been_accepted_is_not_sent_again(backend: Backend) {
    let (server, pm) = start_with_postmark(backend).await;
    let (token, _) = server.signup("una@example.com", "una password 1").await;
    for status in [
        axum::http::StatusCode::BAD_GATEWAY,
        axum::http::StatusCode::GATEWAY_TIMEOUT,
    ] {
        *pm.accept_then.lock().unwrap() = Some(status);
        let before = pm.received.lock().unwrap().len();
        let res = server
            .authed("POST", "/api/auth/send-verification", &token, "")
            .await;
        res.assert_problem(502);
        assert_eq!(
            pm.received.lock().unwrap().len(),
            before + 1,
            "{status}: delivered once, not retried"
        );
    }
    let outbox = koldly::db::outbox::for_recipient(server.pool(), "una@example.com")
        .await
        .unwrap();
    assert!(outbox.iter().all(|m| m.status == "failed" && !m.resend));
    assert_eq!(server.handles.state.mailer.resend_failed().await, 0);
    assert_eq!(
        pm.received.lock().unwrap().len(),
        2,
        "the job resent nothing"
    );
    server.stop().await;
}

/// A failure that proves the provider did not take the message (503 on every
/// retry) leaves it resendable; the outbox job sends it once, and a second
/// run (or another instance's) finds nothing to send.
async fn refused_mail_is_resent_once_by_the_outbox_job(backend: Backend) {
    let (server, pm) = start_with_postmark(backend).await;
    server.signup("vic@example.com", "vic password 1").await;
    pm.unavailable.store(100, Ordering::SeqCst);
    server
        .post(
            "/api/auth/forgot-password",
            r#"{"email":"vic@example.com"}"#,
        )
        .await;
    server.settle().await;
    let outbox = koldly::db::outbox::for_recipient(server.pool(), "vic@example.com")
        .await
        .unwrap();
    assert_eq!(outbox[0].status, "failed");
    assert!(outbox[0].resend, "a 503 proves it was not taken");
    assert_eq!(outbox[0].attempts, 1);
    assert_eq!(
        pm.calls.load(Ordering::SeqCst),
        4,
        "the first try and 3 retries"
    );
    assert!(pm.received.lock().unwrap().is_empty());

    pm.unavailable.store(0, Ordering::SeqCst);
    let mailer = &server.handles.state.mailer;
    let (first, second) = tokio::join!(mailer.resend_failed(), mailer.resend_failed());
    assert_eq!(first + second, 1, "claimed by exactly one run");
    assert_eq!(mailer.resend_failed().await, 0);
    assert_eq!(pm.received.lock().unwrap().len(), 1, "delivered once");
    let outbox = koldly::db::outbox::for_recipient(server.pool(), "vic@example.com")
        .await
        .unwrap();
    assert_eq!(outbox[0].status, "sent");
    server.stop().await;
}

/// The server's periodic work (apalis-cron, every second here) resends a
/// refused message by itself, once.
async fn refused_mail_is_resent_by_the_periodic_outbox_job(backend: Backend) {
    let (server, pm) = start_with_postmark_and(backend, |c| {
        c.jobs.periodic = "* * * * * *".parse().unwrap();
    })
    .await;
    server.signup("una@example.com", "una password 1").await;
    pm.unavailable.store(100, Ordering::SeqCst);
    server
        .post(
            "/api/auth/forgot-password",
            r#"{"email":"una@example.com"}"#,
        )
        .await;
    server.settle().await;
    assert!(pm.received.lock().unwrap().is_empty());
    pm.unavailable.store(0, Ordering::SeqCst);
    let end = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let outbox = koldly::db::outbox::for_recipient(server.pool(), "una@example.com")
            .await
            .unwrap();
        if outbox[0].status == "sent" {
            assert_eq!(outbox[0].attempts, 2, "the first send and one resend");
            break;
        }
        assert!(tokio::time::Instant::now() < end, "resent within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
    assert_eq!(pm.received.lock().unwrap().len(), 1, "delivered once");
}

async fn shutdown_finishes_in_flight_requests(backend: Backend) {
    let (mut server, pm) = start_with_postmark(backend).await;
    let (token, _) = server.signup("kim@example.com", "kim password 1").await;
    *pm.hold.lock().unwrap() = true;
    let addr = server.addr;
    // send-verification waits for the provider, which holds it.
    let in_flight = tokio::spawn(async move {
        support::send(
            ::http::Request::post(format!("http://{addr}/api/auth/send-verification"))
                .header("authorization", format!("Bearer {token}"))
                .body(http_body_util::Full::default())
                .unwrap(),
        )
        .await
    });
    pm.arrived.notified().await; // the request is inside the handler
    server.signal_shutdown();
    // New connections are refused once the server stopped accepting.
    let mut refused = false;
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "the listener closed after the signal");
    pm.release.notify_one();
    let res = in_flight.await.unwrap();
    assert_eq!(res.status, 200, "the in-flight request finished");
    server.wait().await;
    assert!(
        server.pool().is_closed(),
        "the pool is closed after serve returns"
    );
    let auditor = &server.handles.auditor;
    assert!(auditor.is_shut_down());
    assert_eq!(
        auditor.written(),
        2,
        "signup and the in-flight request's event were flushed"
    );
    assert_eq!(auditor.dropped(), 0);
}

async fn slow_requests_time_out_with_504(backend: Backend) {
    let (server, pm) = start_with_postmark(backend).await;
    let (token, _) = server.signup("nina@example.com", "nina password 1").await;
    *pm.hold.lock().unwrap() = true;
    // The client asks for a deadline shorter than the route's 12 s.
    let res = support::send(
        ::http::Request::post(format!("http://{}/api/auth/send-verification", server.addr))
            .header("authorization", format!("Bearer {token}"))
            .header("request-timeout-ms", "300")
            .body(http_body_util::Full::default())
            .unwrap(),
    )
    .await;
    let problem = res.assert_problem(504);
    assert!(problem["request_id"].is_string(), "{problem}");
    assert_eq!(
        pm.calls.load(Ordering::SeqCst),
        1,
        "the provider was called once"
    );
    pm.release.notify_one();
    let events = server.audit_events().await;
    assert_eq!(
        events.last().map(String::as_str),
        Some("authn.email.verification.request/error")
    );
    server.stop().await;
}

async fn restart_keeps_data_and_migrations_apply_once(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    server.signup("lea@example.com", "lea password 1").await;
    let url = server.handles.state.config.database_url.clone();
    // A second app on the same database: migrations are already applied.
    let mut config = koldly::Config::development(url);
    config.argon2 = koldly::config::Argon2Params::TESTING;
    let (_router, again) = koldly::build_app(config).await.expect("restarts");
    let user = koldly::db::users::find_by_email(&again.db().pool, "LEA@example.com")
        .await
        .unwrap();
    assert_eq!(user.unwrap().email, "lea@example.com");
    let migrations: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&again.db().pool)
        .await
        .unwrap();
    // Once each: as many rows as migration files (both engines have the same ones).
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"))
        .unwrap()
        .count() as i64;
    assert_eq!(migrations, files);
    again.close().await;
    server.stop().await;
}

async fn data_model_foreign_keys(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let (_, user) = server.signup("max@example.com", "max password 1").await;
    let pool = server.pool();
    let exec = |sql: &'static str| sqlx::query(sql);
    exec("INSERT INTO icp_templates (id, user_id, name, created_at, updated_at) VALUES ('icp1', $1, 'SaaS CTOs', 0, 0)")
        .bind(&user).execute(pool).await.unwrap();
    exec("INSERT INTO campaigns (id, user_id, icp_template_id, name, created_at, updated_at) VALUES ('c1', $1, 'icp1', 'Q1', 0, 0)")
        .bind(&user).execute(pool).await.unwrap();
    exec("INSERT INTO prospects (id, campaign_id, user_id, email, created_at, updated_at) VALUES ('p1', 'c1', $1, 'p@x.com', 0, 0)")
        .bind(&user).execute(pool).await.unwrap();
    exec("INSERT INTO generated_emails (id, prospect_id, campaign_id, subject, body, created_at, updated_at) VALUES ('g1', 'p1', 'c1', 's', 'b', 0, 0)")
        .execute(pool).await.unwrap();
    exec("INSERT INTO email_sequences (id, campaign_id, name, created_at, updated_at) VALUES ('s1', 'c1', 'seq', 0, 0)")
        .execute(pool).await.unwrap();
    exec("INSERT INTO email_sequence_steps (id, sequence_id, step_number, subject_template, body_template, created_at) VALUES ('st1', 's1', 1, 's', 'b', 0)")
        .execute(pool).await.unwrap();
    exec("INSERT INTO campaign_sending_context (campaign_id, from_name, from_email, updated_at) VALUES ('c1', 'Max', 'max@example.com', 0)")
        .execute(pool).await.unwrap();
    exec("INSERT INTO campaign_sending_queue (id, campaign_id, prospect_id, generated_email_id, sequence_step_id, scheduled_for, created_at, updated_at) VALUES ('q1', 'c1', 'p1', 'g1', 'st1', 0, 0, 0)")
        .execute(pool).await.unwrap();
    exec("INSERT INTO prospect_replies (id, prospect_id, campaign_id, queue_id, from_email, body, received_at, created_at) VALUES ('r1', 'p1', 'c1', 'q1', 'p@x.com', 'yes', 0, 0)")
        .execute(pool).await.unwrap();
    exec("INSERT INTO prospect_reply_inbox (id, reply_id, user_id, campaign_id, category, received_at, created_at, updated_at) VALUES ('i1', 'r1', $1, 'c1', 'interested', 0, 0, 0)")
        .bind(&user).execute(pool).await.unwrap();
    exec("INSERT INTO analytics_events (id, user_id, campaign_id, event_type, occurred_at) VALUES ('a1', $1, 'c1', 'email_sent', 0)")
        .bind(&user).execute(pool).await.unwrap();

    // Foreign keys are enforced, and so are the CHECK constraints.
    assert!(exec("INSERT INTO campaigns (id, user_id, name, created_at, updated_at) VALUES ('c2', 'ghost', 'x', 0, 0)")
        .execute(pool).await.is_err());
    assert!(exec("INSERT INTO campaigns (id, user_id, name, status, created_at, updated_at) VALUES ('c3', $1, 'x', 'bogus', 0, 0)")
        .bind(&user).execute(pool).await.is_err());
    // The same prospect twice in a campaign (any case) is refused.
    assert!(exec("INSERT INTO prospects (id, campaign_id, user_id, email, created_at, updated_at) VALUES ('p2', 'c1', $1, 'P@X.com', 0, 0)")
        .bind(&user).execute(pool).await.is_err());

    // Deleting the account removes everything it owns, but not its audit trail.
    exec("DELETE FROM users WHERE id = $1")
        .bind(&user)
        .execute(pool)
        .await
        .unwrap();
    for table in [
        "icp_templates",
        "campaigns",
        "prospects",
        "generated_emails",
        "email_sequences",
        "email_sequence_steps",
        "campaign_sending_context",
        "campaign_sending_queue",
        "prospect_replies",
        "prospect_reply_inbox",
        "analytics_events",
    ] {
        // `table` comes from the constant list above.
        let n: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!(n, 0, "{table} rows cascade");
    }
    server.flush_audit().await;
    let audit: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(audit, 1);
    server.stop().await;
}

on_both!(
    mail_that_may_have_been_accepted_is_not_sent_again,
    refused_mail_is_resent_once_by_the_outbox_job,
    refused_mail_is_resent_by_the_periodic_outbox_job,
    mail_goes_through_the_provider,
    transient_provider_failures_are_retried,
    shutdown_finishes_in_flight_requests,
    slow_requests_time_out_with_504,
    restart_keeps_data_and_migrations_apply_once,
    data_model_foreign_keys,
);
