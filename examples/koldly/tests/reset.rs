//! Password reset end to end: request, check, use once, expiry, and a race.

mod support;

use std::time::Duration;

use support::{Backend, TestServer};

const OLD: &str = "old password 1";
const NEW: &str = "new password 2";

async fn reset_flow(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    server.signup("carol@example.com", OLD).await;

    // Known and unknown addresses get the same answer.
    let known = server
        .post(
            "/api/auth/forgot-password",
            r#"{"email":"Carol@Example.com"}"#,
        )
        .await;
    let unknown = server
        .post(
            "/api/auth/forgot-password",
            r#"{"email":"nobody@example.com"}"#,
        )
        .await;
    assert_eq!(known.status, 200);
    assert_eq!(unknown.status, 200);
    assert_eq!(known.body, unknown.body);
    server.settle().await;
    assert!(
        koldly::db::outbox::for_recipient(server.pool(), "nobody@example.com")
            .await
            .unwrap()
            .is_empty()
    );
    let (token, count) = server
        .mailed_token("carol@example.com", "password_reset")
        .await;
    assert_eq!(count, 1);
    assert_eq!(token.len(), 43, "32 random bytes, base64url");

    // Only the hash is stored.
    let stored: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM password_reset_tokens WHERE token_hash = $1")
            .bind(&token)
            .fetch_one(server.pool())
            .await
            .unwrap();
    assert_eq!(stored, 0, "the raw token is not in the database");

    let check = server
        .post(
            "/api/auth/reset-password/verify",
            &serde_json::json!({ "token": token }).to_string(),
        )
        .await;
    assert_eq!(check.status, 200);
    assert_eq!(check.json()["valid"], true);

    // A weak new password is refused and does not use the token.
    let weak = serde_json::json!({ "token": token, "password": "weak" }).to_string();
    server
        .post("/api/auth/reset-password", &weak)
        .await
        .assert_problem(422);

    let reset = serde_json::json!({ "token": token, "password": NEW }).to_string();
    assert_eq!(
        server.post("/api/auth/reset-password", &reset).await.status,
        200
    );
    server
        .login("carol@example.com", OLD)
        .await
        .assert_problem(401);
    assert_eq!(server.login("carol@example.com", NEW).await.status, 200);

    // Used: refused everywhere.
    let again = server
        .post("/api/auth/reset-password", &reset)
        .await
        .assert_problem(400);
    assert_eq!(again["type"], "https://koldly.dev/problems/invalid-token");
    server
        .post(
            "/api/auth/reset-password/verify",
            &serde_json::json!({ "token": token }).to_string(),
        )
        .await
        .assert_problem(400);

    // Expired after an hour.
    server
        .post(
            "/api/auth/forgot-password",
            r#"{"email":"carol@example.com"}"#,
        )
        .await;
    let (late, count) = server
        .mailed_token("carol@example.com", "password_reset")
        .await;
    assert_eq!(count, 2);
    assert_ne!(late, token);
    server.clock.advance(Duration::from_secs(3601));
    server
        .post(
            "/api/auth/reset-password/verify",
            &serde_json::json!({ "token": late }).to_string(),
        )
        .await
        .assert_problem(400);
    let body = serde_json::json!({ "token": late, "password": "third password 3" }).to_string();
    server
        .post("/api/auth/reset-password", &body)
        .await
        .assert_problem(400);
    assert_eq!(server.login("carol@example.com", NEW).await.status, 200);

    // A newer link replaces an older one.
    server
        .post(
            "/api/auth/forgot-password",
            r#"{"email":"carol@example.com"}"#,
        )
        .await;
    let (first, _) = server
        .mailed_token("carol@example.com", "password_reset")
        .await;
    server
        .post(
            "/api/auth/forgot-password",
            r#"{"email":"carol@example.com"}"#,
        )
        .await;
    let (second, _) = server
        .mailed_token("carol@example.com", "password_reset")
        .await;
    let body = serde_json::json!({ "token": first, "password": "fourth password 4" }).to_string();
    server
        .post("/api/auth/reset-password", &body)
        .await
        .assert_problem(400);
    let body = serde_json::json!({ "token": second, "password": "fourth password 4" }).to_string();
    assert_eq!(
        server.post("/api/auth/reset-password", &body).await.status,
        200
    );

    let events = server.audit_events().await;
    assert_eq!(
        events
            .iter()
            .filter(|e| *e == "authn.password.reset.request/success")
            .count(),
        5
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| *e == "authn.password.change/success")
            .count(),
        2
    );
    server.stop().await;
}

async fn concurrent_resets_of_one_token(backend: Backend) {
    let server = TestServer::start(backend, |c| c.forgot_password_limit.max = 100).await;
    server.signup("dave@example.com", OLD).await;
    for round in 0..5 {
        server
            .post(
                "/api/auth/forgot-password",
                r#"{"email":"dave@example.com"}"#,
            )
            .await;
        let (token, _) = server
            .mailed_token("dave@example.com", "password_reset")
            .await;
        let a = serde_json::json!({ "token": token, "password": format!("racer one {round}a") })
            .to_string();
        let b = serde_json::json!({ "token": token, "password": format!("racer two {round}b") })
            .to_string();
        let (ra, rb) = tokio::join!(
            server.post("/api/auth/reset-password", &a),
            server.post("/api/auth/reset-password", &b)
        );
        let mut statuses = [ra.status.as_u16(), rb.status.as_u16()];
        statuses.sort();
        assert_eq!(
            statuses,
            [200, 400],
            "round {round}: exactly one reset wins"
        );
        let winner = if ra.status == 200 {
            format!("racer one {round}a")
        } else {
            format!("racer two {round}b")
        };
        let loser = if ra.status == 200 {
            format!("racer two {round}b")
        } else {
            format!("racer one {round}a")
        };
        assert_eq!(server.login("dave@example.com", &winner).await.status, 200);
        server
            .login("dave@example.com", &loser)
            .await
            .assert_problem(401);
        server.clock.advance(Duration::from_secs(15 * 60)); // reopen the login window
    }
    let events = server.audit_events().await;
    assert_eq!(
        events
            .iter()
            .filter(|e| *e == "authn.password.change/success")
            .count(),
        5
    );
    server.stop().await;
}

/// forgot-password does the same work on the request path for a known and
/// an unknown address: the account lookup, the token and the mail all happen
/// after the answer, on the background step both share.
async fn forgot_password_defers_account_work(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    server.signup("dora@example.com", OLD).await;
    let tokens = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM password_reset_tokens")
            .fetch_one(server.pool())
            .await
            .unwrap()
    };
    let hold = server.handles.state.background.hold().await;
    let mut answers = Vec::new();
    for email in ["dora@example.com", "nobody@example.com"] {
        let res = server
            .post(
                "/api/auth/forgot-password",
                &serde_json::json!({ "email": email }).to_string(),
            )
            .await;
        assert_eq!(res.status, 200);
        answers.push(res.body);
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(tokens().await, 0, "no per-account work before the answer");
    assert!(
        koldly::db::outbox::for_recipient(server.pool(), "dora@example.com")
            .await
            .unwrap()
            .is_empty()
    );
    drop(hold);
    let (_, mailed) = server
        .mailed_token("dora@example.com", "password_reset")
        .await;
    assert_eq!(mailed, 1);
    assert_eq!(tokens().await, 1);
    server.stop().await;
}

on_both!(
    reset_flow,
    concurrent_resets_of_one_token,
    forgot_password_defers_account_work,
);
