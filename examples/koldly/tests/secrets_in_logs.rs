//! No secret in any log line or audit event: the account flows run against
//! an in-process server (mail through a fake Postmark) while every tracing
//! event of the process, at `debug` and for every target, is captured into a
//! buffer; then every secret the flows handled — passwords, session tokens,
//! reset and verification tokens, the mail provider's server token, the JWT
//! secret, Google's client secret, authorization code and access token, the
//! sealed OAuth cookie — is searched for in the capture and in the
//! `audit_log` table.

mod support;

use std::{
    io::Write,
    sync::{Arc, Mutex, OnceLock},
};

use axum::{Json, Router, routing::post};
use koldly::config::{GoogleConfig, PostmarkConfig};
use serde_json::json;
use support::{Backend, TestServer};

/// Every line the process logged so far.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber once for the whole test binary.
fn capture() -> Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let capture = Capture::default();
            let writer = capture.clone();
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .init();
            capture
        })
        .clone()
}

const POSTMARK_TOKEN: &str = "pm-server-token-0f9a8b7c6d5e";
const JWT_SECRET: &str = "jwt secret that must never be logged 0123";
const PASSWORD: &str = "first secret password 1";
const WRONG: &str = "mistyped secret password 9";
const NEW_PASSWORD: &str = "second secret password 2";
const GOOGLE_SECRET: &str = "google-client-secret-5d4c3b2a";
const WEBHOOK_KEY: &str = "webhook-signing-key-9e8d7c6b";
const GOOGLE_CODE: &str = "google-authorization-code-9e8d7c";
const GOOGLE_ACCESS: &str = "google-access-token-1a2b3c4d";

async fn fake_postmark() -> std::net::SocketAddr {
    support::common::serve(Router::new().route(
        "/email",
        post(|Json(_): Json<serde_json::Value>| async {
            Json(json!({ "ErrorCode": 0, "MessageID": "m-1" }))
        }),
    ))
    .await
}

/// A fake Google: the token endpoint trades `GOOGLE_CODE` for
/// `GOOGLE_ACCESS`, the userinfo endpoint names a verified user.
async fn fake_google() -> std::net::SocketAddr {
    support::common::serve(
        Router::new()
            .route(
                "/token",
                post(
                    |axum::Form(form): axum::Form<std::collections::HashMap<String, String>>| async move {
                        assert_eq!(form["code"], GOOGLE_CODE);
                        assert_eq!(form["client_secret"], GOOGLE_SECRET);
                        Json(json!({ "access_token": GOOGLE_ACCESS, "token_type": "Bearer", "expires_in": 3600 }))
                    },
                ),
            )
            .route(
                "/userinfo",
                axum::routing::get(|headers: http::HeaderMap| async move {
                    assert_eq!(headers["authorization"], format!("Bearer {GOOGLE_ACCESS}"));
                    Json(json!({ "sub": "g-logs", "email": "oauth-logs@example.com", "email_verified": true }))
                }),
            ),
    )
    .await
}

fn token_of(reply: &support::Reply) -> String {
    reply.json()["token"].as_str().unwrap().to_owned()
}

async fn no_secret_in_logs_or_audit(backend: Backend) {
    let capture = capture();
    let postmark = fake_postmark().await;
    let google = fake_google().await;
    let server = TestServer::start(backend, |c| {
        c.google = Some(GoogleConfig {
            client_id: "client-logs".into(),
            client_secret: GOOGLE_SECRET.into(),
            auth_url: format!("http://{google}/authorize"),
            token_url: format!("http://{google}/token"),
            userinfo_url: format!("http://{google}/userinfo"),
            redirect_url: "http://127.0.0.1:1/auth/google/callback".into(),
        });
        c.postmark = Some(PostmarkConfig {
            token: POSTMARK_TOKEN.into(),
            url: format!("http://{postmark}"),
        });
        c.jwt_secret = JWT_SECRET.as_bytes().to_vec().into();
        c.mail_webhook_signing_key =
            Some(koldly::webhooks::signature::SigningKey::new(WEBHOOK_KEY));
    })
    .await;
    let email = format!("{backend:?}-logs@example.com").to_lowercase();
    let mut secrets: Vec<String> = vec![
        POSTMARK_TOKEN.into(),
        JWT_SECRET.into(),
        PASSWORD.into(),
        WRONG.into(),
        NEW_PASSWORD.into(),
        GOOGLE_SECRET.into(),
        WEBHOOK_KEY.into(),
        GOOGLE_CODE.into(),
        GOOGLE_ACCESS.into(),
    ];

    let (signup_token, _) = server.signup(&email, PASSWORD).await;
    secrets.push(signup_token.clone());
    server.login(&email, WRONG).await.assert_problem(401);
    let login = server.login(&email, PASSWORD).await;
    assert_eq!(login.status, 200);
    secrets.push(token_of(&login));
    assert_eq!(
        server
            .authed("GET", "/api/auth/me", &signup_token, "")
            .await
            .status,
        200
    );

    assert_eq!(
        server
            .authed("POST", "/api/auth/send-verification", &signup_token, "")
            .await
            .status,
        200
    );
    let (verification, _) = server.mailed_token(&email, "email_verification").await;
    secrets.push(verification.clone());
    let verified = server
        .post(
            "/api/auth/verify-email",
            &json!({ "token": verification }).to_string(),
        )
        .await;
    assert_eq!(verified.status, 200);

    let forgot = server
        .post(
            "/api/auth/forgot-password",
            &json!({ "email": email }).to_string(),
        )
        .await;
    assert_eq!(forgot.status, 200);
    let (reset, _) = server.mailed_token(&email, "password_reset").await;
    secrets.push(reset.clone());
    let check = server
        .post(
            "/api/auth/reset-password/verify",
            &json!({ "token": reset }).to_string(),
        )
        .await;
    assert_eq!(check.status, 200);
    // A client still using the old path form: answered, not logged.
    server
        .get(&format!("/api/auth/reset-password/verify/{reset}"))
        .await
        .assert_problem(404);
    let changed = server
        .post(
            "/api/auth/reset-password",
            &json!({ "token": reset, "password": NEW_PASSWORD }).to_string(),
        )
        .await;
    assert_eq!(changed.status, 200);
    let login = server.login(&email, NEW_PASSWORD).await;
    assert_eq!(login.status, 200);
    let last = token_of(&login);
    secrets.push(last.clone());
    assert_eq!(
        server
            .authed("POST", "/api/auth/logout-all", &last, "")
            .await
            .status,
        200
    );
    // Ended and forged sessions are refused (and their refusal is logged).
    server
        .authed("GET", "/api/auth/me", &last, "")
        .await
        .assert_problem(401);
    server
        .authed("GET", "/api/auth/me", &format!("{last}x"), "")
        .await
        .assert_problem(401);

    // Sign in with Google: the client secret, the code, the access token and
    // the session handed to the front-end.
    let start = server.get("/auth/google").await;
    assert_eq!(start.status, 303);
    let location = url::Url::parse(start.headers["location"].to_str().unwrap()).unwrap();
    let state = location
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let cookie = start.headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    secrets.push(cookie.trim_start_matches("koldly_oauth=").to_owned());
    let back = support::send(
        http::Request::get(format!(
            "http://{}/auth/google/callback?code={GOOGLE_CODE}&state={state}",
            server.addr
        ))
        .header("cookie", &cookie)
        .body(http_body_util::Full::<bytes::Bytes>::default())
        .unwrap(),
    )
    .await;
    assert_eq!(back.status, 303, "{:?}", back.body);
    let session = back.headers["location"]
        .to_str()
        .unwrap()
        .split_once("#token=")
        .unwrap()
        .1
        .to_owned();
    secrets.push(session);

    // The mail webhooks: a delivery signed with the key, one with another key.
    for key in [WEBHOOK_KEY, "some-other-key"] {
        let now = koldly::clock::Clock::now(server.clock.as_ref()).to_string();
        let token = uuid::Uuid::new_v4().simple().to_string();
        let signature = koldly::webhooks::signature::sign(
            &koldly::webhooks::signature::SigningKey::new(key),
            &now,
            &token,
        );
        let body = format!(
            "sender=lead%40acme.example&Message-Id=%3Cr%40x.io%3E&In-Reply-To=%3Cm%40k.io%3E\
             &body-plain=hi&timestamp={now}&token={token}&signature={signature}"
        );
        let res = support::send(
            http::Request::post(format!("http://{}/api/webhooks/inbound", server.addr))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                .unwrap(),
        )
        .await;
        let expected = if key == WEBHOOK_KEY { 200 } else { 403 };
        assert_eq!(res.status, expected, "{:?}", res.body);
        assert!(!String::from_utf8_lossy(&res.body).contains(WEBHOOK_KEY));
    }
    // Sending: a sender's verification link, and a one-click unsubscribe
    // token in a path (`/u/{token}`: logged as `/u/REDACTED`).
    let login = server.login(&email, NEW_PASSWORD).await;
    let sending_session = token_of(&login);
    secrets.push(sending_session.clone());
    let sender_address = format!("{backend:?}-sender@example.com").to_lowercase();
    let created = server
        .authed(
            "POST",
            "/api/senders",
            &sending_session,
            &json!({ "email": sender_address, "name": "Logs" }).to_string(),
        )
        .await;
    assert_eq!(created.status, 201);
    let (sender_token, _) = server
        .mailed_token(&sender_address, "sender_verification")
        .await;
    secrets.push(sender_token.clone());
    let verified = server
        .post(
            "/api/senders/verify",
            &json!({ "token": sender_token }).to_string(),
        )
        .await;
    assert_eq!(verified.status, 200);
    let user_id = login.json()["user"]["id"].as_str().unwrap().to_owned();
    let secret = koldly::sending::unsubscribe::secret(server.handles.db(), 0)
        .await
        .unwrap();
    let unsubscribe = koldly::sending::unsubscribe::sign(&secret, &user_id, "lead@example.org");
    secrets.push(unsubscribe.clone());
    assert_eq!(server.get(&format!("/u/{unsubscribe}")).await.status, 200);
    assert_eq!(
        server.post(&format!("/u/{unsubscribe}"), "").await.status,
        200
    );
    assert!(
        koldly::db::suppressions::is_suppressed(server.pool(), &user_id, "lead@example.org")
            .await
            .unwrap()
    );

    let audit_rows: Vec<String> = {
        server.flush_audit().await;
        koldly::db::audit_log::recent(server.pool(), 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|r| format!("{r:?}"))
            .collect()
    };
    server.stop().await;

    let logs = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    // The capture really holds this run: its requests, their spans, debug lines.
    assert!(
        logs.contains("/api/auth/reset-password/verify/REDACTED"),
        "the old path form was logged redacted"
    );
    assert!(logs.contains(" DEBUG "), "debug lines are captured");
    assert!(logs.contains(&email), "this run's lines are captured");
    assert!(audit_rows.len() >= 8, "{audit_rows:?}");
    for secret in &secrets {
        let forms = [
            secret.clone(),
            secret.replace(' ', "+"),
            secret.replace(' ', "%20"),
        ];
        for form in &forms {
            if let Some(at) = logs.find(form.as_str()) {
                let start = logs[..at].rfind('\n').map_or(0, |i| i + 1);
                let end = logs[at..].find('\n').map_or(logs.len(), |i| at + i);
                panic!("a secret is in the log: {}", &logs[start..end]);
            }
            for row in &audit_rows {
                assert!(
                    !row.contains(form.as_str()),
                    "a secret is in an audit event: {row}"
                );
            }
        }
    }
}

on_both!(no_secret_in_logs_or_audit);
