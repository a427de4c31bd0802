//! The resilience wiring over HTTP: the mail provider's circuit breaker and
//! the API's overload protection, against a fake Postmark on loopback, on
//! SQLite and PostgreSQL. (The language model's circuit: `ai.rs`.)
//!
//! The breaker runs on tokio's real clock here (sqlx's pool timers rule out a
//! paused one, see `ai.rs`): its circuit is opened for ten minutes and only
//! what happens while it surely is open is asserted. The retry layer's one
//! backoff (about 0.2 s) is the only wait, bounded by the code under test.

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Json, Router, extract::State, http::StatusCode, routing::post};
use koldly::{
    config::{OverloadSettings, PostmarkConfig},
    db::outbox,
    http_client::CircuitSettings,
    mail::MAX_ATTEMPTS,
};
use support::{Backend, TestServer};
use tokio::sync::Notify;

/// A Postmark-compatible `POST /email` that counts its calls, answers 503
/// while `unavailable`, and while `hold` waits for `release` after
/// announcing each call on `arrived`.
#[derive(Default)]
struct Postmark {
    calls: AtomicUsize,
    unavailable: AtomicBool,
    hold: AtomicBool,
    arrived: Notify,
    release: Notify,
}

async fn email(State(pm): State<Arc<Postmark>>) -> (StatusCode, Json<serde_json::Value>) {
    pm.calls.fetch_add(1, Ordering::SeqCst);
    if pm.unavailable.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "ErrorCode": 0, "Message": "try again" })),
        );
    }
    if pm.hold.load(Ordering::SeqCst) {
        pm.arrived.notify_one();
        pm.release.notified().await;
    }
    (
        StatusCode::OK,
        Json(serde_json::json!({ "ErrorCode": 0, "MessageID": "m-1" })),
    )
}

async fn start(
    backend: Backend,
    tweak: impl FnOnce(&mut koldly::Config),
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
        c.forgot_password_limit.max = 100;
        tweak(c);
    })
    .await;
    (server, pm)
}

async fn forgot_password(server: &TestServer, email: &str) {
    let body = serde_json::json!({ "email": email }).to_string();
    let res = server.post("/api/auth/forgot-password", &body).await;
    assert_eq!(res.status, 200);
    server.settle().await;
}

/// Postmark answering 503 opens the mail circuit after `min_calls` attempts
/// (retries count): later sends fail at once without reaching the provider,
/// and every message stays in the outbox as failed and resendable (the open
/// circuit proves it was never sent).
async fn a_failing_mail_provider_opens_the_mail_circuit(backend: Backend) {
    let (server, pm) = start(backend, |c| {
        c.mail_circuit = CircuitSettings {
            min_calls: 2,
            open_for: Duration::from_secs(600),
        };
    })
    .await;
    server.signup("jack@example.com", "jack password 1").await;
    pm.unavailable.store(true, Ordering::SeqCst);

    // Attempt 1: 503, retried; attempt 2: 503, the circuit opens; the retry
    // layer's third attempt is refused by the circuit for ten minutes, longer
    // than it waits for a Retry-After, so it gives up.
    forgot_password(&server, "jack@example.com").await;
    assert_eq!(pm.calls.load(Ordering::SeqCst), 2);

    for _ in 0..3 {
        forgot_password(&server, "jack@example.com").await;
    }
    assert_eq!(
        pm.calls.load(Ordering::SeqCst),
        2,
        "no send reached the provider while its circuit was open"
    );

    let mut sent = outbox::for_recipient(server.pool(), "jack@example.com")
        .await
        .unwrap();
    sent.retain(|m| m.kind == "password_reset");
    assert_eq!(sent.len(), 4);
    assert!(
        sent.iter().all(|m| m.status == "failed"),
        "{:?}",
        sent.iter().map(|m| &m.status).collect::<Vec<_>>()
    );
    let resendable = outbox::resendable(server.pool(), MAX_ATTEMPTS, 50)
        .await
        .unwrap();
    let mut ids: Vec<_> = resendable.iter().map(|m| m.id.clone()).collect();
    let mut expected: Vec<_> = sent.iter().map(|m| m.id.clone()).collect();
    ids.sort();
    expected.sort();
    assert_eq!(ids, expected, "every message stays resendable");

    // The outbox job's resend meets the open circuit too: nothing is sent,
    // nothing is lost.
    assert_eq!(server.handles.state.mailer.resend_failed().await, 0);
    assert_eq!(pm.calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        outbox::resendable(server.pool(), MAX_ATTEMPTS, 50)
            .await
            .unwrap()
            .len(),
        4
    );
}

/// With room for one request and no queue, a request held at the mail
/// provider takes the only slot: others are refused at once with a 503
/// problem and `Retry-After`, and their handlers never run (the refused
/// signup created no account, the refused send reached no provider).
async fn requests_beyond_the_limit_are_refused_before_their_handler(backend: Backend) {
    let (server, pm) = start(backend, |c| {
        c.overload = Some(OverloadSettings {
            max_concurrency: 1,
            max_queue: 0,
        });
    })
    .await;
    let (ada, _) = server.signup("ada@example.com", "ada password 1").await;
    let (cy, _) = server.signup("cy@example.com", "cy password 1").await;
    pm.hold.store(true, Ordering::SeqCst);

    let held = tokio::spawn({
        let addr = server.addr;
        let ada = ada.clone();
        async move {
            support::send(
                ::http::Request::post(format!("http://{addr}/api/auth/send-verification"))
                    .header("authorization", format!("Bearer {ada}"))
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .unwrap(),
            )
            .await
        }
    });
    tokio::time::timeout(Duration::from_secs(10), pm.arrived.notified())
        .await
        .expect("the first request reached the provider");

    let body = serde_json::json!({
        "email": "bea@example.com",
        "password": "bea password 1",
        "name": "Bea",
    })
    .to_string();
    let refused = [
        server.post("/api/auth/signup", &body).await,
        server
            .authed("POST", "/api/auth/send-verification", &cy, "")
            .await,
        server.get("/health").await,
    ];
    for res in &refused {
        res.assert_problem(503);
        let retry_after: u64 = res.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .expect("Retry-After in seconds");
        assert!(retry_after >= 1);
    }

    pm.release.notify_one();
    let held = held.await.unwrap();
    assert_eq!(held.status, 200, "{}", String::from_utf8_lossy(&held.body));
    assert_eq!(
        pm.calls.load(Ordering::SeqCst),
        1,
        "the refused send-verification did not reach the provider"
    );
    assert!(
        outbox::for_recipient(server.pool(), "cy@example.com")
            .await
            .unwrap()
            .is_empty(),
        "the refused send-verification wrote no mail"
    );
    assert_eq!(
        server
            .login("bea@example.com", "bea password 1")
            .await
            .status,
        401,
        "the refused signup created no account"
    );
    pm.hold.store(false, Ordering::SeqCst);
    server.signup("bea@example.com", "bea password 1").await;
}

/// `OVERLOAD_PROTECTION=false`: nothing is refused; a request runs beside
/// one held at the provider.
async fn without_overload_protection_nothing_is_refused(backend: Backend) {
    let (server, pm) = start(backend, |c| c.overload = None).await;
    let (ada, _) = server.signup("ada@example.com", "ada password 1").await;
    pm.hold.store(true, Ordering::SeqCst);
    let held = tokio::spawn({
        let addr = server.addr;
        async move {
            support::send(
                ::http::Request::post(format!("http://{addr}/api/auth/send-verification"))
                    .header("authorization", format!("Bearer {ada}"))
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .unwrap(),
            )
            .await
        }
    });
    tokio::time::timeout(Duration::from_secs(10), pm.arrived.notified())
        .await
        .expect("the first request reached the provider");
    server.signup("bea@example.com", "bea password 1").await;
    assert_eq!(server.get("/health").await.status, 200);
    pm.release.notify_one();
    assert_eq!(held.await.unwrap().status, 200);
}

on_both!(
    a_failing_mail_provider_opens_the_mail_circuit,
    requests_beyond_the_limit_are_refused_before_their_handler,
    without_overload_protection_nothing_is_refused,
);
