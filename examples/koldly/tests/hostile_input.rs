//! Hostile text at the edge: control characters and bidi overrides in every
//! string field of every JSON route are a 400 problem naming the field, on
//! SQLite and PostgreSQL alike (a NUL used to be a 500 on PostgreSQL), and
//! nothing happens.

mod support;

use serde_json::{Value, json};
use support::{Backend, TestServer};

/// Every JSON route with a valid body (before the poison goes in).
fn json_routes() -> Vec<(&'static str, Value)> {
    vec![
        (
            "/api/auth/signup",
            json!({ "email": "eve@example.com", "password": "eve password 1", "name": "Eve" }),
        ),
        (
            "/api/auth/login",
            json!({ "email": "eve@example.com", "password": "eve password 1" }),
        ),
        (
            "/api/auth/forgot-password",
            json!({ "email": "eve@example.com" }),
        ),
        (
            "/api/auth/reset-password",
            json!({ "token": "a".repeat(43), "password": "eve password 2" }),
        ),
        ("/api/auth/verify-email", json!({ "token": "a".repeat(43) })),
        (
            "/api/auth/reset-password/verify",
            json!({ "token": "a".repeat(43) }),
        ),
    ]
}

async fn users(server: &TestServer) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(server.pool())
        .await
        .unwrap()
}

async fn control_characters_are_400_naming_the_field(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let poisons = ["\u{0}", "\u{7}", "\u{1b}[2J", "\u{7f}", "\u{85}", "\n"];
    for (route, body) in json_routes() {
        for field in body.as_object().unwrap().keys() {
            for poison in poisons {
                let mut bad = body.clone();
                let clean = bad[field].as_str().unwrap().to_owned();
                bad[field] = Value::String(format!("{}{poison}{}", &clean[..2], &clean[2..]));
                let res = server.post(route, &bad.to_string()).await;
                let problem = res.assert_problem(400);
                assert_eq!(problem["field"], field.as_str(), "{route} {poison:?}");
                let detail = problem["detail"].as_str().unwrap();
                assert!(detail.starts_with(field.as_str()), "{detail}");
                assert!(detail.contains("U+"), "{detail}");
            }
        }
    }
    assert_eq!(users(&server).await, 0, "no account was created");
    // The same bodies, clean, still work.
    assert_eq!(
        server
            .post("/api/auth/signup", &json_routes()[0].1.to_string())
            .await
            .status,
        201
    );
    server.stop().await;
}

async fn bidi_overrides_in_identifiers_are_400(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let spoof = json!({
        "email": "adm\u{202e}moc.elpmaxe@example.com",
        "password": "eve password 1",
        "name": "Eve",
    });
    let problem = server
        .post("/api/auth/signup", &spoof.to_string())
        .await
        .assert_problem(400);
    assert_eq!(problem["field"], "email");
    for route in ["/api/auth/login", "/api/auth/forgot-password"] {
        let res = server
            .post(
                route,
                &json!({ "email": "a\u{2066}b@example.com", "password": "x" }).to_string(),
            )
            .await;
        assert_eq!(res.assert_problem(400)["field"], "email", "{route}");
    }
    // A right-to-left mark is text in a name.
    let rtl = json!({ "email": "dana@example.com", "password": "dana password 1", "name": "\u{200f}דנה" });
    assert_eq!(
        server
            .post("/api/auth/signup", &rtl.to_string())
            .await
            .status,
        201
    );
    assert_eq!(users(&server).await, 1);
    // Query strings are checked too.
    server
        .get("/auth/google/callback?code=a%00b&state=s")
        .await
        .assert_problem(400);
    server.stop().await;
}

on_both!(
    control_characters_are_400_naming_the_field,
    bidi_overrides_in_identifiers_are_400,
);
