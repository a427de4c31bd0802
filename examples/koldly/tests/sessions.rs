//! Sessions: which bearer tokens are accepted, and when they stop working.

mod support;

use koldly::auth::jwt::{AUDIENCE, Claims, ISSUER};
use support::{Backend, TestServer};

const PASSWORD: &str = "session password 1";

fn claims(user_id: &str, iat: i64, nbf: Option<i64>, exp: i64) -> Claims {
    Claims {
        sub: user_id.to_owned(),
        iat,
        nbf,
        exp,
        iss: ISSUER.to_owned(),
        aud: AUDIENCE.to_owned(),
        sv: 0,
    }
}

/// A token signed with the server's own key whose `nbf` or `iat` lies in the
/// future is refused like a forged one; one within the leeway is accepted.
async fn future_nbf_and_iat_are_refused(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let (_, user_id) = server.signup("nbf@example.com", PASSWORD).await;
    let now = server.handles.state.now();
    let jwt = &server.handles.state.jwt;
    let s = &server;
    let me = move |token: String| async move { s.authed("GET", "/api/auth/me", &token, "").await };

    let future_nbf = jwt.sign(&claims(&user_id, now, Some(now + 3600), now + 7200));
    let res = me(future_nbf.clone()).await;
    res.assert_problem(401);
    assert_eq!(res.headers["www-authenticate"], "Bearer");

    let future_iat = jwt.sign(&claims(&user_id, now + 3600, None, now + 7200));
    me(future_iat).await.assert_problem(401);

    let expired = jwt.sign(&claims(&user_id, now - 7200, Some(now - 7200), now - 3600));
    me(expired).await.assert_problem(401);

    let skewed = jwt.sign(&claims(&user_id, now + 10, Some(now + 10), now + 7200));
    assert_eq!(me(skewed).await.status, 200, "within the 30 s leeway");

    // Once the clock reaches nbf, the same token works.
    server.clock.advance(std::time::Duration::from_secs(3600));
    assert_eq!(me(future_nbf).await.status, 200);
    server.stop().await;
}

async fn me_status(server: &TestServer, token: &str) -> u16 {
    server
        .authed("GET", "/api/auth/me", token, "")
        .await
        .status
        .as_u16()
}

/// A password reset ends every session issued before it; a new login works.
async fn password_reset_ends_earlier_sessions(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let (signup_token, _) = server.signup("reset-sessions@example.com", PASSWORD).await;
    let login = server.login("reset-sessions@example.com", PASSWORD).await;
    let login_token = login.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(me_status(&server, &signup_token).await, 200);
    assert_eq!(me_status(&server, &login_token).await, 200);

    let forgot = server
        .post(
            "/api/auth/forgot-password",
            r#"{"email":"reset-sessions@example.com"}"#,
        )
        .await;
    assert_eq!(forgot.status, 200);
    let (reset, _) = server
        .mailed_token("reset-sessions@example.com", "password_reset")
        .await;
    let body = serde_json::json!({ "token": reset, "password": "brand new password 2" });
    assert_eq!(
        server
            .post("/api/auth/reset-password", &body.to_string())
            .await
            .status,
        200
    );

    for token in [&signup_token, &login_token] {
        server
            .authed("GET", "/api/auth/me", token, "")
            .await
            .assert_problem(401);
    }
    // An idempotent route refuses it too (its session is resolved before the
    // idempotency layer).
    server
        .authed("POST", "/api/auth/send-verification", &signup_token, "")
        .await
        .assert_problem(401);
    let fresh = server
        .login("reset-sessions@example.com", "brand new password 2")
        .await;
    let fresh = fresh.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(me_status(&server, &fresh).await, 200);
    server.stop().await;
}

/// `POST /api/auth/logout-all` ends every session of its user, and only theirs.
async fn logout_all_ends_every_session(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let (first, user_id) = server.signup("everywhere@example.com", PASSWORD).await;
    let second = server
        .login("everywhere@example.com", PASSWORD)
        .await
        .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (other, _) = server.signup("bystander@example.com", PASSWORD).await;

    server
        .post("/api/auth/logout-all", "")
        .await
        .assert_problem(401);
    let out = server
        .authed("POST", "/api/auth/logout-all", &second, "")
        .await;
    assert_eq!(out.status, 200, "{:?}", out.body);
    for token in [&first, &second] {
        server
            .authed("GET", "/api/auth/me", token, "")
            .await
            .assert_problem(401);
    }
    assert_eq!(
        me_status(&server, &other).await,
        200,
        "another user stays in"
    );
    let version: i64 = sqlx::query_scalar("SELECT session_version FROM users WHERE id = $1")
        .bind(&user_id)
        .fetch_one(server.pool())
        .await
        .unwrap();
    assert_eq!(version, 1);
    let again = server
        .login("everywhere@example.com", PASSWORD)
        .await
        .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(me_status(&server, &again).await, 200);
    assert!(
        server
            .audit_events()
            .await
            .contains(&"authn.logout.all/success".to_owned())
    );
    server.stop().await;
}

/// The scheme is case-insensitive everywhere: the idempotency layer scopes a
/// key by the same verified user the handler sees, so two users behind one
/// address who happen to send the same key each get their own answer.
async fn bearer_scheme_is_parsed_once(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let (ann, _) = server.signup("ann-bearer@example.com", PASSWORD).await;
    let (bob, _) = server.signup("bob-bearer@example.com", PASSWORD).await;
    let send_verification = |token: String, scheme: &'static str| {
        let addr = server.addr;
        async move {
            support::send(
                http::Request::post(format!("http://{addr}/api/auth/send-verification"))
                    .header("authorization", format!("{scheme} {token}"))
                    .header("idempotency-key", "same-key-1")
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .unwrap(),
            )
            .await
        }
    };
    let first = send_verification(ann, "bearer").await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    let second = send_verification(bob, "BEARER").await;
    assert_eq!(second.status, 200, "{:?}", second.body);
    assert!(
        second.headers.get("idempotent-replayed").is_none(),
        "Bob's request is not a replay of Ann's"
    );
    for who in ["ann-bearer@example.com", "bob-bearer@example.com"] {
        let (_, mails) = server.mailed_token(who, "email_verification").await;
        assert_eq!(mails, 1, "{who} got their own mail");
    }
    server.stop().await;
}

/// Without `JWT_SECRET`, development keeps the secret it drew in the
/// database: a restart does not log anyone out.
async fn sessions_survive_a_restart_in_development(backend: Backend) {
    let server = TestServer::start(backend, |c| assert!(c.jwt_secret.is_none())).await;
    let (token, _) = server.signup("restart@example.com", PASSWORD).await;
    assert_eq!(me_status(&server, &token).await, 200);
    let server = server.restart().await;
    assert_eq!(
        me_status(&server, &token).await,
        200,
        "the session survived"
    );
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM server_secrets")
        .fetch_one(server.pool())
        .await
        .unwrap();
    assert_eq!(stored, 1, "one secret, drawn once");
    server.stop().await;
}

on_both!(
    sessions_survive_a_restart_in_development,
    future_nbf_and_iat_are_refused,
    password_reset_ends_earlier_sessions,
    logout_all_ends_every_session,
    bearer_scheme_is_parsed_once,
);
