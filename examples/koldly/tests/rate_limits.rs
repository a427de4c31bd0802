//! Login (5 per 15 minutes) and forgot-password (3 per hour) limits per client
//! IP, on the server's injectable clock: no waiting.

mod support;

use std::time::Duration;

use support::{Backend, TestServer};

async fn login_and_forgot_password_limits(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    server.signup("gina@example.com", "gina password 1").await;
    for _ in 0..5 {
        server
            .login("gina@example.com", "wrong password 1")
            .await
            .assert_problem(401);
    }
    // The sixth attempt is refused even with the right password.
    let limited = server.login("gina@example.com", "gina password 1").await;
    let problem = limited.assert_problem(429);
    assert_eq!(problem["type"], "https://koldly.dev/problems/rate-limited");
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry), "Retry-After {retry}");
    server.clock.advance(Duration::from_secs(15 * 60));
    assert_eq!(
        server
            .login("gina@example.com", "gina password 1")
            .await
            .status,
        200
    );

    for _ in 0..3 {
        let res = server
            .post(
                "/api/auth/forgot-password",
                r#"{"email":"gina@example.com"}"#,
            )
            .await;
        assert_eq!(res.status, 200);
    }
    let limited = server
        .post(
            "/api/auth/forgot-password",
            r#"{"email":"gina@example.com"}"#,
        )
        .await;
    limited.assert_problem(429);
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry), "Retry-After {retry}");
    let (_, mailed) = server
        .mailed_token("gina@example.com", "password_reset")
        .await;
    assert_eq!(mailed, 3, "the refused request sent nothing");
    server.clock.advance(Duration::from_secs(3600));
    let res = server
        .post(
            "/api/auth/forgot-password",
            r#"{"email":"gina@example.com"}"#,
        )
        .await;
    assert_eq!(res.status, 200);

    let events = server.audit_events().await;
    assert_eq!(
        events
            .iter()
            .filter(|e| *e == "authn.throttled/denied")
            .count(),
        2
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| *e == "authn.login.fail/failure")
            .count(),
        5
    );
    server.stop().await;
}

on_both!(login_and_forgot_password_limits);
