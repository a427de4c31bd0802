//! Idempotency-Key on signup, forgot-password and send-verification: a retried
//! request takes effect once, keys are scoped by client identity, and with
//! REDIS_URL the keys are shared by several instances.

mod support;

use bytes::Bytes;
use http_body_util::Full;
use support::{Backend, Reply, TestServer, send};

async fn keyed(
    server: &TestServer,
    path: &str,
    key: &str,
    token: Option<&str>,
    body: &str,
) -> Reply {
    let mut req = ::http::Request::post(format!("http://{}{path}", server.addr))
        .header("content-type", "application/json")
        .header("idempotency-key", key);
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    send(
        req.body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
            .unwrap(),
    )
    .await
}

async fn count(server: &TestServer, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(server.pool())
        .await
        .unwrap()
}

async fn retried_requests_take_effect_once(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let body = r#"{"email":"olga@example.com","password":"olga password 1","name":"Olga"}"#;
    let first = keyed(&server, "/api/auth/signup", "signup-1", None, body).await;
    assert_eq!(first.status, 201);
    assert!(!first.headers.contains_key("idempotent-replayed"));
    let retry = keyed(&server, "/api/auth/signup", "signup-1", None, body).await;
    assert_eq!(
        retry.status, 201,
        "the retry gets the first answer, not a 409"
    );
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    assert_eq!(retry.body, first.body);
    assert_eq!(count(&server, "SELECT COUNT(*) FROM users").await, 1);

    // The same key for another request: refused, nothing runs.
    let other = r#"{"email":"pia@example.com","password":"pia password 1","name":"Pia"}"#;
    keyed(&server, "/api/auth/signup", "signup-1", None, other)
        .await
        .assert_problem(422);
    assert_eq!(count(&server, "SELECT COUNT(*) FROM users").await, 1);
    // An oversized keyed body is refused before anything runs.
    let big = format!(
        r#"{{"email":"big@example.com","password":"{}","name":"x"}}"#,
        "x".repeat(70_000)
    );
    keyed(&server, "/api/auth/signup", "signup-big", None, &big)
        .await
        .assert_problem(413);
    // A malformed key is a 400 problem.
    keyed(&server, "/api/auth/signup", "", None, other)
        .await
        .assert_problem(400);

    // One mail for a retried forgot-password.
    for _ in 0..2 {
        let res = keyed(
            &server,
            "/api/auth/forgot-password",
            "forgot-1",
            None,
            r#"{"email":"olga@example.com"}"#,
        )
        .await;
        assert_eq!(res.status, 200);
    }
    // The mail is written after the answer, by the background step.
    server.settle().await;
    assert_eq!(
        count(
            &server,
            "SELECT COUNT(*) FROM mail_outbox WHERE kind = 'password_reset'"
        )
        .await,
        1
    );

    // send-verification is scoped by user: one key, two users, two mails; a retry, none.
    let olga = first.json()["token"].as_str().unwrap().to_owned();
    let (pia, _) = server.signup("pia@example.com", "pia password 1").await;
    for token in [&olga, &pia, &olga] {
        let res = keyed(
            &server,
            "/api/auth/send-verification",
            "verify-1",
            Some(token),
            "",
        )
        .await;
        assert_eq!(res.status, 200);
    }
    assert_eq!(
        count(
            &server,
            "SELECT COUNT(*) FROM mail_outbox WHERE kind = 'email_verification'"
        )
        .await,
        2
    );

    // Routes without the layer ignore the header.
    let login = r#"{"email":"olga@example.com","password":"olga password 1"}"#;
    let res = keyed(&server, "/api/auth/login", "login-1", None, login).await;
    assert_eq!(res.status, 200);
    assert!(!res.headers.contains_key("idempotent-replayed"));
    server.stop().await;
}

async fn redis_shares_keys_between_instances(backend: Backend) {
    let Some(redis) = support::common::service_url("REDIS_URL") else {
        return;
    };
    let a = TestServer::start(backend, |c| c.redis_url = Some(redis.clone())).await;
    let b = TestServer::start(backend, |c| c.redis_url = Some(redis.clone())).await;
    let key = format!("koldly-test-{}", uuid::Uuid::new_v4());
    let body = r#"{"email":"quinn@example.com","password":"quinn password 1","name":"Quinn"}"#;
    let first = keyed(&a, "/api/auth/signup", &key, None, body).await;
    assert_eq!(first.status, 201);
    let retry = keyed(&b, "/api/auth/signup", &key, None, body).await;
    assert_eq!(retry.status, 201);
    assert_eq!(
        retry.headers["idempotent-replayed"], "true",
        "instance b replays a's answer"
    );
    assert_eq!(retry.body, first.body);
    assert_eq!(
        count(&b, "SELECT COUNT(*) FROM users").await,
        0,
        "b never ran the handler"
    );
    a.stop().await;
    b.stop().await;
}

/// A keyed create whose completion never reached the idempotency store (its
/// process was killed after the commit; here a restart empties the in-memory
/// store) is not made twice: the key on the campaign's row answers the retry
/// with that campaign, before the plan's limit is counted. Regression test of
/// the duplicate `tests/kills.rs` found.
async fn a_keyed_create_the_store_forgot_is_not_made_twice(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let (ann, _) = server.signup("ann@example.com", "ann password 1").await;
    let body = r#"{"name":"Spring"}"#;
    let first = keyed(&server, "/api/campaigns", "create-1", Some(&ann), body).await;
    assert_eq!(first.status, 201);
    let server = server.restart().await;
    let retry = keyed(&server, "/api/campaigns", "create-1", Some(&ann), body).await;
    assert_eq!(
        retry.status,
        201,
        "not the free plan's one-campaign limit: {}",
        String::from_utf8_lossy(&retry.body)
    );
    assert_eq!(retry.json()["id"], first.json()["id"]);
    assert_eq!(retry.headers["location"], first.headers["location"]);
    // A new key is a new campaign: over the free plan's limit.
    keyed(&server, "/api/campaigns", "create-2", Some(&ann), body)
        .await
        .assert_problem(403);
    // The key is the user's: another user's same key makes their own.
    let (bea, _) = server.signup("bea@example.com", "bea password 1").await;
    let theirs = keyed(&server, "/api/campaigns", "create-1", Some(&bea), body).await;
    assert_eq!(theirs.status, 201);
    assert_ne!(theirs.json()["id"], first.json()["id"]);
    assert_eq!(count(&server, "SELECT COUNT(*) FROM campaigns").await, 2);
    server.stop().await;
}

/// The same for every other keyed route that creates a row or queues work
/// ([`koldly::keyed`]): after a restart empties the in-memory store, a retry
/// with the key answers what the first request made (same status, id and
/// `Location`) and nothing is made, mailed or queued twice; the key on
/// another route is refused, and another user's same key is their own.
async fn keyed_creates_the_store_forgot_are_answered_not_repeated(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let (ann, ann_id) = server.signup("ann@example.com", "ann password 1").await;
    // Room for a campaign and its copy.
    sqlx::query("UPDATE users SET subscription_plan = 'scale' WHERE id = $1")
        .bind(&ann_id)
        .execute(server.pool())
        .await
        .unwrap();
    let campaign = keyed(
        &server,
        "/api/campaigns",
        "c-1",
        Some(&ann),
        r#"{"name":"Spring"}"#,
    )
    .await;
    assert_eq!(campaign.status, 201);
    let campaign = campaign.json()["id"].as_str().unwrap().to_owned();
    let imported = keyed(
        &server,
        &format!("/api/campaigns/{campaign}/prospects"),
        "p-1",
        Some(&ann),
        r#"[{"email":"lead@example.com"}]"#,
    )
    .await;
    assert!(
        imported.status.is_success(),
        "{}",
        String::from_utf8_lossy(&imported.body)
    );

    let generate = format!("/api/campaigns/{campaign}/emails/generate");
    let duplicate = format!("/api/campaigns/{campaign}/duplicate");
    let requests: [(&str, &str, &str, u16); 4] = [
        ("/api/icp-templates", "icp-1", r#"{"name":"Founders"}"#, 201),
        (&duplicate, "dup-1", r#"{"name":"Copy"}"#, 201),
        (
            "/api/senders",
            "sender-1",
            r#"{"email":"out@example.com","name":"Out"}"#,
            201,
        ),
        (&generate, "gen-1", "{}", 202),
    ];
    let mut firsts = Vec::new();
    for (path, key, body, status) in requests {
        let first = keyed(&server, path, key, Some(&ann), body).await;
        assert_eq!(
            first.status,
            status,
            "{path}: {}",
            String::from_utf8_lossy(&first.body)
        );
        firsts.push(first);
    }
    let counts = async |server: &TestServer| {
        [
            count(server, "SELECT COUNT(*) FROM icp_templates").await,
            count(server, "SELECT COUNT(*) FROM campaigns").await,
            count(server, "SELECT COUNT(*) FROM senders").await,
            count(
                server,
                "SELECT COUNT(*) FROM mail_outbox WHERE kind = 'sender_verification'",
            )
            .await,
            count(
                server,
                "SELECT COUNT(*) FROM jobs WHERE kind = 'emails.generate'",
            )
            .await,
        ]
    };
    let before = counts(&server).await;
    assert_eq!(
        before,
        [1, 2, 1, 1, 1],
        "one of each, as the first requests made"
    );

    let server = server.restart().await;
    for ((path, key, body, status), first) in requests.iter().zip(&firsts) {
        let retry = keyed(&server, path, key, Some(&ann), body).await;
        assert_eq!(
            retry.status,
            *status,
            "{path}: {}",
            String::from_utf8_lossy(&retry.body)
        );
        assert!(
            !retry.headers.contains_key("idempotent-replayed"),
            "{path}: the store forgot; the database answered"
        );
        assert_eq!(retry.json()["id"], first.json()["id"], "{path}");
        assert_eq!(
            retry.headers["location"], first.headers["location"],
            "{path}"
        );
    }
    assert_eq!(
        counts(&server).await,
        before,
        "nothing made, mailed or queued twice"
    );

    // A key that made something is refused on another route, as the layer
    // refuses it for a different request.
    keyed(
        &server,
        "/api/icp-templates",
        "dup-1",
        Some(&ann),
        r#"{"name":"Other"}"#,
    )
    .await
    .assert_problem(422);
    assert_eq!(
        count(&server, "SELECT COUNT(*) FROM icp_templates").await,
        1
    );
    // The key is the user's: another user's same key makes their own.
    let (bea, _) = server.signup("bea@example.com", "bea password 1").await;
    let theirs = keyed(
        &server,
        "/api/icp-templates",
        "icp-1",
        Some(&bea),
        r#"{"name":"Founders"}"#,
    )
    .await;
    assert_eq!(theirs.status, 201);
    assert_ne!(theirs.json()["id"], firsts[0].json()["id"]);
    assert_eq!(
        count(&server, "SELECT COUNT(*) FROM icp_templates").await,
        2
    );
    server.stop().await;
}

on_both!(
    retried_requests_take_effect_once,
    redis_shares_keys_between_instances,
    a_keyed_create_the_store_forgot_is_not_made_twice,
    keyed_creates_the_store_forgot_are_answered_not_repeated
);
