//! Sign in with Google, the whole flow, against a fake provider on loopback.

mod support;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::{
    Form, Json, Router,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::{get, post},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use bytes::Bytes;
use http_body_util::Full;
use koldly::config::GoogleConfig;
use sha2::{Digest, Sha256};
use support::{Backend, Reply, TestServer, send};

/// What the fake provider knows: codes it issued (with their PKCE challenge
/// and the user they stand for) and access tokens.
#[derive(Default)]
struct Provider {
    codes: HashMap<String, (String, serde_json::Value)>,
    tokens: HashMap<String, serde_json::Value>,
    token_calls: usize,
    fail_token: bool,
}

type Shared = Arc<Mutex<Provider>>;

async fn token(
    State(p): State<Shared>,
    Form(form): Form<HashMap<String, String>>,
) -> (StatusCode, Json<serde_json::Value>) {
    let mut p = p.lock().unwrap();
    p.token_calls += 1;
    if p.fail_token {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(serde_json::json!({ "error": "server_error" })),
        );
    }
    let refuse = |e: &str| {
        (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({ "error": e })),
        )
    };
    if form.get("grant_type").map(String::as_str) != Some("authorization_code")
        || form.get("client_id").map(String::as_str) != Some("client-1")
        || form.get("client_secret").map(String::as_str) != Some("secret-1")
        || form.get("redirect_uri").map(String::as_str)
            != Some("http://127.0.0.1:1/auth/google/callback")
    {
        return refuse("invalid_client");
    }
    let Some((challenge, user)) = form.get("code").and_then(|c| p.codes.remove(c)) else {
        return refuse("invalid_grant");
    };
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != challenge {
        return refuse("invalid_grant: PKCE");
    }
    let access = format!("at-{}", p.tokens.len());
    p.tokens.insert(access.clone(), user);
    (
        StatusCode::OK,
        Json(
            serde_json::json!({ "access_token": access, "token_type": "Bearer", "expires_in": 3600 }),
        ),
    )
}

async fn userinfo(
    State(p): State<Shared>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, StatusCode> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(StatusCode::UNAUTHORIZED)?;
    p.lock()
        .unwrap()
        .tokens
        .get(bearer)
        .cloned()
        .map(Json)
        .ok_or(StatusCode::UNAUTHORIZED)
}

struct Flow {
    state: String,
    challenge: String,
    cookie: String,
}

/// `GET /auth/google`: checks the redirect and returns what the browser keeps.
async fn start_flow(server: &TestServer, provider_addr: std::net::SocketAddr) -> Flow {
    let res = server.get("/auth/google").await;
    assert_eq!(res.status, 303);
    let location = url::Url::parse(res.headers["location"].to_str().unwrap()).unwrap();
    assert_eq!(
        location.as_str().split('?').next().unwrap(),
        format!("http://{provider_addr}/authorize")
    );
    let q: HashMap<String, String> = location.query_pairs().into_owned().collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], "client-1");
    assert_eq!(q["redirect_uri"], "http://127.0.0.1:1/auth/google/callback");
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q["scope"].contains("email"));
    let set_cookie = res.headers["set-cookie"].to_str().unwrap();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"),
        "{set_cookie}"
    );
    Flow {
        state: q["state"].clone(),
        challenge: q["code_challenge"].clone(),
        cookie: set_cookie.split(';').next().unwrap().to_owned(),
    }
}

async fn callback(server: &TestServer, query: &str, cookie: Option<&str>) -> Reply {
    let mut req = ::http::Request::get(format!(
        "http://{}/auth/google/callback?{query}",
        server.addr
    ));
    if let Some(cookie) = cookie {
        req = req.header("cookie", cookie);
    }
    send(req.body(Full::<Bytes>::default()).unwrap()).await
}

/// The provider approves: it issues `code` for `user`.
fn approve(provider: &Shared, flow: &Flow, code: &str, user: serde_json::Value) {
    provider
        .lock()
        .unwrap()
        .codes
        .insert(code.to_owned(), (flow.challenge.clone(), user));
}

fn token_from(res: &Reply) -> String {
    assert_eq!(res.status, 303, "{}", String::from_utf8_lossy(&res.body));
    let location = res.headers["location"].to_str().unwrap();
    let (base, fragment) = location
        .split_once('#')
        .expect("the token is in the fragment");
    assert_eq!(
        base, "http://front.example/auth/callback",
        "no token in the query string"
    );
    assert!(!base.contains("token"));
    fragment.strip_prefix("token=").unwrap().to_owned()
}

async fn google_sign_in(backend: Backend) {
    let provider: Shared = Arc::default();
    let fake = Router::new()
        .route("/authorize", get(|| async { "the consent screen" }))
        .route("/token", post(token))
        .route("/userinfo", get(userinfo))
        .with_state(provider.clone());
    let provider_addr = support::common::serve(fake).await;
    let server = TestServer::start(backend, |c| {
        c.public_url = "http://front.example".into();
        c.google = Some(GoogleConfig {
            client_id: "client-1".into(),
            client_secret: "secret-1".into(),
            auth_url: format!("http://{provider_addr}/authorize"),
            token_url: format!("http://{provider_addr}/token"),
            userinfo_url: format!("http://{provider_addr}/userinfo"),
            redirect_url: "http://127.0.0.1:1/auth/google/callback".into(),
        });
    })
    .await;
    assert_eq!(server.get("/api/auth/config").await.json()["google"], true);

    // A new account, verified, without a password.
    let flow = start_flow(&server, provider_addr).await;
    approve(
        &provider,
        &flow,
        "code-1",
        serde_json::json!({
            "sub": "g-1", "email": "Hana@Example.com", "email_verified": true, "name": "Hana"
        }),
    );
    let res = callback(
        &server,
        &format!("code=code-1&state={}", flow.state),
        Some(&flow.cookie),
    )
    .await;
    assert!(
        res.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0"),
        "the flow cookie is cleared"
    );
    let token = token_from(&res);
    let me = server
        .authed("GET", "/api/auth/me", &token, "")
        .await
        .json();
    assert_eq!(me["user"]["email"], "hana@example.com");
    assert_eq!(me["user"]["email_verified"], true);
    let hana_id = me["user"]["id"].clone();
    server
        .login("hana@example.com", "")
        .await
        .assert_problem(401);

    // Signing in again finds the same account.
    let flow = start_flow(&server, provider_addr).await;
    approve(
        &provider,
        &flow,
        "code-2",
        serde_json::json!({ "sub": "g-1", "email": "hana@example.com", "email_verified": true }),
    );
    let token = token_from(
        &callback(
            &server,
            &format!("code=code-2&state={}", flow.state),
            Some(&flow.cookie),
        )
        .await,
    );
    assert_eq!(
        server
            .authed("GET", "/api/auth/me", &token, "")
            .await
            .json()["user"]["id"],
        hana_id
    );

    // An existing password account with the same verified address is linked.
    let (_, ivan_id) = server.signup("ivan@example.com", "ivan password 1").await;
    let flow = start_flow(&server, provider_addr).await;
    approve(
        &provider,
        &flow,
        "code-3",
        serde_json::json!({ "sub": "g-2", "email": "ivan@example.com", "email_verified": "true" }),
    );
    let token = token_from(
        &callback(
            &server,
            &format!("code=code-3&state={}", flow.state),
            Some(&flow.cookie),
        )
        .await,
    );
    let me = server
        .authed("GET", "/api/auth/me", &token, "")
        .await
        .json();
    assert_eq!(me["user"]["id"], ivan_id);
    assert_eq!(me["user"]["email_verified"], true);
    assert_eq!(
        server
            .login("ivan@example.com", "ivan password 1")
            .await
            .status,
        200,
        "the password still works"
    );

    // An unverified provider address never takes over an account.
    let flow = start_flow(&server, provider_addr).await;
    approve(
        &provider,
        &flow,
        "code-4",
        serde_json::json!({ "sub": "g-3", "email": "ivan@example.com", "email_verified": false }),
    );
    callback(
        &server,
        &format!("code=code-4&state={}", flow.state),
        Some(&flow.cookie),
    )
    .await
    .assert_problem(403);

    // Forged state, missing cookie, missing code, provider error: 400, and no token exchange.
    let calls = provider.lock().unwrap().token_calls;
    let flow = start_flow(&server, provider_addr).await;
    approve(
        &provider,
        &flow,
        "code-5",
        serde_json::json!({ "sub": "g-4", "email": "x@example.com", "email_verified": true }),
    );
    callback(&server, "code=code-5&state=forged", Some(&flow.cookie))
        .await
        .assert_problem(400);
    callback(&server, &format!("code=code-5&state={}", flow.state), None)
        .await
        .assert_problem(400);
    callback(
        &server,
        &format!("state={}", flow.state),
        Some(&flow.cookie),
    )
    .await
    .assert_problem(400);
    callback(&server, "error=access_denied", Some(&flow.cookie))
        .await
        .assert_problem(400);
    assert_eq!(provider.lock().unwrap().token_calls, calls);

    // The flow cookie is sealed (axum-extra's private jar): it shows neither
    // the state nor the PKCE verifier, and a cookie the server did not seal —
    // the old plain `state.verifier` form, or a sealed one with one character
    // changed — is no flow at all: 400, and no token exchange.
    let sealed = flow.cookie.strip_prefix("koldly_oauth=").unwrap();
    assert!(!sealed.contains(&flow.state), "the state is not readable");
    assert!(!sealed.contains('.'), "no plain state.verifier pair");
    let other = start_flow(&server, provider_addr).await;
    let plain = format!("koldly_oauth={}.{}", flow.state, "v".repeat(43));
    let mut tampered = other.cookie.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    for cookie in [plain, String::from_utf8(tampered).unwrap()] {
        callback(
            &server,
            &format!("code=code-5&state={}", flow.state),
            Some(&cookie),
        )
        .await
        .assert_problem(400);
    }
    assert_eq!(provider.lock().unwrap().token_calls, calls);

    // The provider fails: 502 problem.
    provider.lock().unwrap().fail_token = true;
    let flow = start_flow(&server, provider_addr).await;
    approve(
        &provider,
        &flow,
        "code-6",
        serde_json::json!({ "sub": "g-5", "email": "y@example.com", "email_verified": true }),
    );
    callback(
        &server,
        &format!("code=code-6&state={}", flow.state),
        Some(&flow.cookie),
    )
    .await
    .assert_problem(502);

    let events = server.audit_events().await;
    assert_eq!(
        events
            .iter()
            .filter(|e| *e == "authn.oauth.login.success/success")
            .count(),
        3
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| *e == "authn.oauth.login.fail/failure")
            .count(),
        8
    );
    server.stop().await;
}

async fn google_disabled(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    server.get("/auth/google").await.assert_problem(404);
    server
        .get("/auth/google/callback?code=a&state=b")
        .await
        .assert_problem(404);
    server.stop().await;
}

on_both!(google_sign_in, google_disabled);
