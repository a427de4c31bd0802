//! Signup, login, /me, /config, health, and every bad input answered with a
//! 4xx problem+json.

mod support;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use bytes::Bytes;
use http_body_util::Full;
use support::{Backend, TestServer, send};

const PASSWORD: &str = "correct horse 42";

async fn signup_login_and_me(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let res = server
        .post(
            "/api/auth/signup",
            r#"{"email":" Ann@Example.com ","password":"correct horse 42","name":"Ann"}"#,
        )
        .await;
    assert_eq!(res.status, 201);
    let json = res.json();
    let token = json["token"].as_str().unwrap();
    assert_eq!(json["token_type"], "Bearer");
    assert_eq!(json["expires_in"], 7 * 24 * 3600);
    assert_eq!(json["user"]["email"], "ann@example.com");
    assert_eq!(json["user"]["name"], "Ann");
    assert_eq!(json["user"]["email_verified"], false);
    assert!(
        json["user"].get("password_hash").is_none(),
        "the hash never leaves"
    );

    let me = server.authed("GET", "/api/auth/me", token, "").await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["user"]["id"], json["user"]["id"]);

    // The same address in another case is taken.
    let dup = server
        .post(
            "/api/auth/signup",
            r#"{"email":"ANN@example.com","password":"another pass 1","name":"A"}"#,
        )
        .await;
    let problem = dup.assert_problem(409);
    assert_eq!(problem["type"], "https://koldly.dev/problems/email-taken");

    let ok = server.login("ANN@example.com", PASSWORD).await;
    assert_eq!(ok.status, 200);
    let login_token = ok.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(
        server
            .authed("GET", "/api/auth/me", &login_token, "")
            .await
            .status,
        200
    );

    // Wrong password and unknown account: the same 401, byte for byte but the request id.
    let wrong = server.login("ann@example.com", "wrong horse 42").await;
    let unknown = server.login("nobody@example.com", PASSWORD).await;
    let (mut a, mut b) = (wrong.assert_problem(401), unknown.assert_problem(401));
    assert_eq!(wrong.headers["www-authenticate"], "Bearer");
    a.as_object_mut().unwrap().remove("request_id");
    b.as_object_mut().unwrap().remove("request_id");
    assert_eq!(a, b);

    let config = server.get("/api/auth/config").await;
    assert_eq!(config.status, 200);
    assert_eq!(config.json()["password"], true);
    assert_eq!(config.json()["google"], false);

    assert_eq!(
        server.audit_events().await,
        [
            "authn.signup/success",
            "authn.signup/failure",
            "authn.login.success/success",
            "authn.login.fail/failure",
            "authn.login.fail/failure"
        ]
    );
    let trail = koldly::db::audit_log::recent(server.pool(), 1)
        .await
        .unwrap();
    assert_eq!(trail[0].outcome, "failure");
    assert_eq!(trail[0].target_id.as_deref(), Some("nobody@example.com"));
    assert_eq!(trail[0].route.as_deref(), Some("/api/auth/login"));
    assert_eq!(trail[0].method.as_deref(), Some("POST"));
    assert_eq!(trail[0].status, Some(401));
    assert!(trail[0].actor.is_none(), "a failed login has no actor");
    assert!(!trail[0].extra.contains("password"), "{}", trail[0].extra);
    assert_eq!(trail[0].reason.as_deref(), Some("unknown account"));
    assert_eq!(trail[0].client_ip.as_deref(), Some("127.0.0.1"));
    assert!(
        trail[0]
            .request_id
            .as_deref()
            .is_some_and(|id| !id.is_empty())
    );
    server.stop().await;
}

async fn bad_inputs_are_problems(backend: Backend) {
    let server = TestServer::start(backend, |c| c.body_limit = 4096).await;
    let cases: &[(&str, &str, u16)] = &[
        ("/api/auth/signup", r#"{"email":"a@b.co","password":"#, 400),
        ("/api/auth/signup", r#"{"email":"a@b.co","name":"x"}"#, 422),
        (
            "/api/auth/signup",
            r#"{"email":"a@b.co","password":12345678901,"name":"x"}"#,
            422,
        ),
        ("/api/auth/signup", r#"[1,2,3]"#, 422),
        (
            "/api/auth/signup",
            r#"{"email":"not-an-email","password":"correct horse 42","name":"x"}"#,
            422,
        ),
        (
            "/api/auth/signup",
            r#"{"email":"a@b.co","password":"short1","name":"x"}"#,
            422,
        ),
        (
            "/api/auth/signup",
            r#"{"email":"a@b.co","password":"no digits at all","name":"x"}"#,
            422,
        ),
        (
            "/api/auth/signup",
            r#"{"email":"a@b.co","password":"correct horse 42","name":"  "}"#,
            422,
        ),
        ("/api/auth/login", r#"{"email":"a@b.co"}"#, 422),
        ("/api/auth/login", r#"not json"#, 400),
        ("/api/auth/forgot-password", r#"{"email":42}"#, 422),
        ("/api/auth/reset-password", r#"{"token":"x"}"#, 422),
        (
            "/api/auth/reset-password",
            r#"{"token":"nope","password":"correct horse 42"}"#,
            400,
        ),
        ("/api/auth/verify-email", r#"{"token":"nope"}"#, 400),
        ("/api/auth/verify-email", r#"{}"#, 422),
    ];
    for (path, body, status) in cases {
        let res = server.post(path, body).await;
        let problem = res.assert_problem(*status);
        assert!(problem["detail"].is_string(), "{path} {body}: {problem}");
    }

    // No content type.
    let res = send(
        ::http::Request::post(format!("http://{}/api/auth/login", server.addr))
            .body(Full::new(Bytes::from_static(
                br#"{"email":"a@b.co","password":"x"}"#,
            )))
            .unwrap(),
    )
    .await;
    res.assert_problem(415);

    // Oversized body, announced and chunked.
    let big = format!(
        r#"{{"email":"a@b.co","password":"{}","name":"x"}}"#,
        "x".repeat(10_000)
    );
    server
        .post("/api/auth/signup", &big)
        .await
        .assert_problem(413);
    let (status, raw) =
        support::post_chunked(server.addr, "/api/auth/signup", big.as_bytes()).await;
    assert_eq!(status, 413, "{raw}");
    assert!(raw.contains("application/problem+json"), "{raw}");
    // The same on a route without idempotency: axum's extractor hits the limit.
    let (status, raw) = support::post_chunked(server.addr, "/api/auth/login", big.as_bytes()).await;
    assert_eq!(status, 413, "{raw}");
    assert!(raw.contains("application/problem+json"), "{raw}");

    // Unknown route and method.
    server.get("/api/nope").await.assert_problem(404);
    server.get("/api/auth/login").await.assert_problem(405);
    server
        .get("/health?check=everything")
        .await
        .assert_problem(400);
    server
        .post(
            "/api/auth/reset-password/verify",
            r#"{"token":"not-a-token"}"#,
        )
        .await
        .assert_problem(400);
    // The old path form answers 404 without the segment reaching any log.
    server
        .get("/api/auth/reset-password/verify/not-a-token")
        .await
        .assert_problem(404);

    // Nothing reached the audit trail but refusals, and nothing was created.
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(server.pool())
        .await
        .unwrap();
    assert_eq!(users, 0);
    server.stop().await;
}

fn b64(json: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(json.to_string())
}

async fn bad_tokens_are_401(backend: Backend) {
    let secret = b"bad tokens test secret 0123456789".to_vec();
    let server = TestServer::start(backend, |c| c.jwt_secret = Some(secret.clone())).await;
    let (token, user_id) = server.signup("bob@example.com", PASSWORD).await;
    let now = server.handles.state.now();
    let sign = |header: jsonwebtoken::Header, claims: serde_json::Value, key: &[u8]| {
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(key),
        )
        .unwrap()
    };
    let claims = |iss: &str, aud: &str, exp: i64| serde_json::json!({ "sub": user_id, "iat": now, "exp": exp, "iss": iss, "aud": aud });
    let hs256 = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    let forged = sign(
        hs256.clone(),
        claims("koldly", "koldly-api", now + 3600),
        b"not the server secret at all 123",
    );
    let expired = sign(
        hs256.clone(),
        claims("koldly", "koldly-api", now - 3600),
        &secret,
    );
    let wrong_iss = sign(
        hs256.clone(),
        claims("evil", "koldly-api", now + 3600),
        &secret,
    );
    let wrong_aud = sign(
        hs256.clone(),
        claims("koldly", "other", now + 3600),
        &secret,
    );
    let hs512 = sign(
        jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
        claims("koldly", "koldly-api", now + 3600),
        &secret,
    );
    let alg_none = format!(
        "{}.{}.",
        b64(&serde_json::json!({ "alg": "none", "typ": "JWT" })),
        b64(&claims("koldly", "koldly-api", now + 3600))
    );
    let ghost = sign(
        hs256,
        serde_json::json!({ "sub": "no-such-user", "iat": now, "exp": now + 3600, "iss": "koldly", "aud": "koldly-api" }),
        &secret,
    );
    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    for (what, bad) in [
        ("forged", forged.as_str()),
        ("expired", &expired),
        ("wrong issuer", &wrong_iss),
        ("wrong audience", &wrong_aud),
        ("HS512", &hs512),
        ("alg=none", &alg_none),
        ("unknown user", &ghost),
        ("tampered", &tampered),
        ("garbage", "garbage"),
        ("empty", ""),
    ] {
        let res = server.authed("GET", "/api/auth/me", bad, "").await;
        let problem = res.assert_problem(401);
        assert_eq!(
            problem["detail"], "A valid bearer token is required.",
            "{what}"
        );
        assert_eq!(res.headers["www-authenticate"], "Bearer", "{what}");
    }
    server.get("/api/auth/me").await.assert_problem(401);
    assert_eq!(
        server
            .authed("GET", "/api/auth/me", &token, "")
            .await
            .status,
        200
    );
    server.stop().await;
}

async fn health(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let res = server.get("/health").await;
    assert_eq!(res.status, 200);
    let json = res.json();
    assert_eq!(json["status"], "ok");
    assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
    assert!(json["uptime_s"].is_u64());
    assert!(
        res.headers.contains_key("x-request-id"),
        "request ids are propagated"
    );

    let res = server.get("/health?check=db").await;
    assert_eq!(res.status, 200);
    let db = &res.json()["database"];
    assert_eq!(db["status"], "ok");
    let expected = if backend == Backend::Sqlite {
        "sqlite"
    } else {
        "postgres"
    };
    assert_eq!(db["backend"], expected);
    assert!(db["latency_ms"].as_f64().unwrap() >= 0.0);

    // A client's own request id is kept.
    let res = send(
        ::http::Request::get(format!("http://{}/health", server.addr))
            .header("x-request-id", "abc-123")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(res.headers["x-request-id"], "abc-123");

    // The database goes away: 503 problem, and plain /health still answers.
    server.pool().close().await;
    let res = server.get("/health?check=db").await;
    res.assert_problem(503);
    assert!(res.headers.contains_key("retry-after"));
    assert_eq!(server.get("/health").await.status, 200);
    server.stop().await;
}

/// A body limit above axum's own 2 MB default: the configured one rules, for
/// the extractors too.
async fn body_limit_above_axums_default(backend: Backend) {
    let server = TestServer::start(backend, |c| c.body_limit = 3 * 1024 * 1024).await;
    let login = |padding: usize| {
        format!(
            r#"{{"email":"nobody@example.com","password":"{}"}}"#,
            "x".repeat(padding)
        )
    };
    // 2.5 MB: read and judged on its content (no such account).
    let res = server.post("/api/auth/login", &login(2_500_000)).await;
    assert_eq!(res.status, 401, "{:?}", String::from_utf8_lossy(&res.body));
    // Over the configured 3 MiB: refused from its Content-Length, before
    // the server asks for a byte of the body.
    let (status, raw, asked_for_body) = support::post_expecting_continue(
        server.addr,
        "/api/auth/login",
        login(3_200_000).as_bytes(),
    )
    .await;
    assert_eq!(status, 413, "{raw}");
    assert!(raw.contains("application/problem+json"), "{raw}");
    assert!(!asked_for_body, "the server read an over-limit body: {raw}");
    server.stop().await;
}

on_both!(
    signup_login_and_me,
    bad_inputs_are_problems,
    bad_tokens_are_401,
    body_limit_above_axums_default,
    health
);
