//! Email verification end to end.

mod support;

use std::time::Duration;

use support::{Backend, TestServer};

async fn verification_flow(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let (token, _) = server.signup("erin@example.com", "erin password 1").await;
    server
        .post("/api/auth/send-verification", "")
        .await
        .assert_problem(401);

    assert_eq!(
        server
            .authed("POST", "/api/auth/send-verification", &token, "")
            .await
            .status,
        200
    );
    let (first, n) = server
        .mailed_token("erin@example.com", "email_verification")
        .await;
    assert_eq!(n, 1);
    assert_eq!(
        server
            .authed("POST", "/api/auth/send-verification", &token, "")
            .await
            .status,
        200
    );
    let (second, n) = server
        .mailed_token("erin@example.com", "email_verification")
        .await;
    assert_eq!(n, 2);
    assert_ne!(first, second);

    // The older link stopped working when the newer one was sent.
    let body = |t: &str| serde_json::json!({ "token": t }).to_string();
    server
        .post("/api/auth/verify-email", &body(&first))
        .await
        .assert_problem(400);
    let me = server
        .authed("GET", "/api/auth/me", &token, "")
        .await
        .json();
    assert_eq!(me["user"]["email_verified"], false);

    let ok = server.post("/api/auth/verify-email", &body(&second)).await;
    assert_eq!(ok.status, 200);
    let me = server
        .authed("GET", "/api/auth/me", &token, "")
        .await
        .json();
    assert_eq!(me["user"]["email_verified"], true);
    server
        .post("/api/auth/verify-email", &body(&second))
        .await
        .assert_problem(400);
    server
        .authed("POST", "/api/auth/send-verification", &token, "")
        .await
        .assert_problem(409);

    // A link older than 24 hours is refused.
    let (other, _) = server.signup("frank@example.com", "frank password 1").await;
    assert_eq!(
        server
            .authed("POST", "/api/auth/send-verification", &other, "")
            .await
            .status,
        200
    );
    let (late, _) = server
        .mailed_token("frank@example.com", "email_verification")
        .await;
    server.clock.advance(Duration::from_secs(24 * 3600 + 1));
    server
        .post("/api/auth/verify-email", &body(&late))
        .await
        .assert_problem(400);

    let events = server.audit_events().await;
    assert_eq!(
        events
            .iter()
            .filter(|e| *e == "authn.email.verification.request/success")
            .count(),
        3
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| *e == "authn.email.verified/success")
            .count(),
        1
    );
    server.stop().await;
}

on_both!(verification_flow);
