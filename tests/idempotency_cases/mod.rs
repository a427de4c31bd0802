//! Scenarios every idempotency store must pass, on a real axum Router driven
//! with `oneshot`. `tests/idempotency.rs` runs them on `MemoryStore`,
//! `tests/idempotency_redis.rs` on `RedisStore`.
#![allow(dead_code)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    extract::State,
    response::{IntoResponse, Response},
    routing::post,
};
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, request::Parts};
use http_body_util::BodyExt;
use steadfast::idempotency::{IdempotencyLayer, Scope, Store};
use tokio::sync::Notify;
use tower::{ServiceExt, util::MapRequestLayer};
use tower_http::catch_panic::CatchPanicLayer;

use crate::common::Reply;

/// What the handler saw: how many times it ran, and a gate to hold it in flight.
#[derive(Default)]
pub struct Probe {
    pub runs: AtomicUsize,
    pub entered: Notify,
    pub gate: Notify,
}

impl Probe {
    pub fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }
}

/// The authenticated client, as an auth layer would put it in the extensions.
#[derive(Clone)]
pub struct Principal(pub String);

/// The scope production code would use: the principal from the extensions.
pub fn by_principal(parts: &Parts) -> Option<String> {
    parts.extensions.get::<Principal>().map(|p| p.0.clone())
}

pub type PrincipalScope = fn(&Parts) -> Option<String>;

/// A layer over `store` scoped by principal, to configure further.
pub fn scoped<St: Store>(store: St) -> IdempotencyLayer<St, PrincipalScope> {
    IdempotencyLayer::new(store).scope(by_principal as PrincipalScope)
}

/// The handler: counts its runs, and obeys `x-block` (wait for the gate),
/// `x-panic`, `x-status` and `x-big` (a body of that many bytes).
async fn handler(State(probe): State<Arc<Probe>>, headers: HeaderMap, body: Bytes) -> Response {
    let run = probe.runs.fetch_add(1, Ordering::SeqCst) + 1;
    probe.entered.notify_one();
    if headers.contains_key("x-block") {
        probe.gate.notified().await;
    }
    if headers.contains_key("x-panic") {
        panic!("handler panicked on purpose");
    }
    let status = headers
        .get("x-status")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(201);
    let status = StatusCode::from_u16(status).unwrap();
    if let Some(size) = headers
        .get("x-big")
        .and_then(|v| v.to_str().ok()?.parse().ok())
    {
        return (status, vec![b'x'; size]).into_response();
    }
    let echo = String::from_utf8_lossy(&body).into_owned();
    let json = serde_json::json!({ "run": run, "echo": echo, "pad": "\u{e9}\t \\ \"" });
    (
        status,
        [
            ("content-type", "application/json".to_owned()),
            ("location", format!("/orders/{run}")),
            ("x-run", run.to_string()),
            ("set-cookie", format!("session={run}")),
        ],
        serde_json::to_vec(&json).unwrap(),
    )
        .into_response()
}

/// `/orders` (POST, PUT, GET) behind `layer`, an auth stand-in that turns
/// `authorization: Bearer NAME` into a `Principal`, and a panic catcher outside.
pub fn app<St: Store, Sc: Scope>(layer: IdempotencyLayer<St, Sc>, probe: &Arc<Probe>) -> Router {
    Router::new()
        .route(
            "/orders",
            post(handler).put(handler).get(handler).patch(handler),
        )
        .with_state(probe.clone())
        .layer(layer)
        .layer(MapRequestLayer::new(|mut req: Request<Body>| {
            let user = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_owned);
            if let Some(user) = user {
                req.extensions_mut().insert(Principal(user));
            }
            req
        }))
        .layer(CatchPanicLayer::new())
}

/// A POST to /orders by alice with `key` and a JSON body.
pub fn order(key: &str, body: &str) -> http::request::Builder {
    order_as("alice", key, body)
}

/// A POST to /orders by `user` with `key` and a JSON body.
pub fn order_as(user: &str, key: &str, body: &str) -> http::request::Builder {
    Request::post("/orders")
        .header("authorization", format!("Bearer {user}"))
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .extension(Bytes::copy_from_slice(body.as_bytes()))
}

/// Finishes a request builder made by [`order`] (its body is in the extensions).
pub fn build(builder: http::request::Builder) -> Request<Body> {
    let body = builder
        .extensions_ref()
        .and_then(|e| e.get::<Bytes>().cloned())
        .unwrap_or_default();
    builder.body(Body::from(body)).unwrap()
}

/// Sends a request through `app` and reads the whole response.
pub async fn call(app: &Router, req: Request<Body>) -> Reply {
    let res = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

pub async fn send(app: &Router, builder: http::request::Builder) -> Reply {
    call(app, build(builder)).await
}

fn replayed(reply: &Reply) -> bool {
    reply
        .headers
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true")
}

/// Sends until the answer is not 409 (a detached release may still be on its
/// way to a remote store); returns the reply and the number of attempts.
pub async fn until_not_in_flight(
    app: &Router,
    make: impl Fn() -> http::request::Builder,
) -> (Reply, usize) {
    for attempt in 1..=200 {
        let reply = send(app, make()).await;
        if reply.status != StatusCode::CONFLICT {
            return (reply, attempt);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the key stayed in flight");
}

/// Waits (bounded) until the handler has been entered once more.
pub async fn entered(probe: &Probe) {
    tokio::time::timeout(Duration::from_secs(30), probe.entered.notified())
        .await
        .expect("the handler was never entered");
}

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

/// The first response, then its replay: same status, body bytes and headers
/// (but Set-Cookie), plus `Idempotent-Replayed: true`; the handler ran once.
pub async fn replay_is_byte_exact<St: Store>(store: St) {
    let probe = Arc::new(Probe::default());
    let app = app(scoped(store), &probe);
    let first = send(&app, order("\"k-replay\"", r#"{"sku":"A1","qty":2}"#)).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert!(!replayed(&first));
    assert_eq!(
        first.headers["set-cookie"], "session=1",
        "the first response is untouched"
    );

    let again = send(&app, order("\"k-replay\"", r#"{"sku":"A1","qty":2}"#)).await;
    assert_eq!(probe.runs(), 1, "the handler ran once");
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.body, first.body, "byte-exact body");
    assert!(replayed(&again));
    for name in ["content-type", "location", "x-run"] {
        assert_eq!(again.headers[name], first.headers[name], "{name}");
    }
    assert!(
        again.headers.get("set-cookie").is_none(),
        "Set-Cookie is not replayed"
    );
    assert_eq!(
        again.headers["content-length"],
        first.body.len().to_string()
    );

    // The bare (Stripe) form names the same key.
    let bare = send(&app, order("k-replay", r#"{"sku":"A1","qty":2}"#)).await;
    assert!(replayed(&bare));
    assert_eq!(bare.body, first.body);
    assert_eq!(probe.runs(), 1);
}

/// Another body, path or method with the key: 422 and no run. The same JSON
/// with other whitespace and member order: a replay.
pub async fn changed_request_is_422<St: Store>(store: St) {
    let probe = Arc::new(Probe::default());
    let app = app(scoped(store), &probe);
    let first = send(
        &app,
        order(
            "\"k-fp\"",
            r#"{"sku":"A1","qty":2,"meta":{"a":1,"b":[1,2]}}"#,
        ),
    )
    .await;
    assert_eq!(first.status, StatusCode::CREATED);

    let reordered = send(
        &app,
        order(
            "\"k-fp\"",
            "{ \"meta\": {\"b\": [1, 2], \"a\": 1},\n  \"qty\": 2, \"sku\": \"A1\" }",
        ),
    )
    .await;
    assert_eq!(reordered.status, StatusCode::CREATED);
    assert!(replayed(&reordered), "reordered JSON is the same request");
    assert_eq!(reordered.body, first.body);

    let changed = send(
        &app,
        order(
            "\"k-fp\"",
            r#"{"sku":"A1","qty":3,"meta":{"a":1,"b":[1,2]}}"#,
        ),
    )
    .await;
    let problem = changed.assert_problem(422);
    assert!(
        problem["type"].as_str().unwrap().ends_with("#key-reused"),
        "{problem}"
    );

    let other_path = send(
        &app,
        order(
            "\"k-fp\"",
            r#"{"sku":"A1","qty":2,"meta":{"a":1,"b":[1,2]}}"#,
        )
        .uri("/orders?dry_run=1"),
    )
    .await;
    other_path.assert_problem(422);
    let other_method = send(
        &app,
        order(
            "\"k-fp\"",
            r#"{"sku":"A1","qty":2,"meta":{"a":1,"b":[1,2]}}"#,
        )
        .method("PATCH"),
    )
    .await;
    other_method.assert_problem(422);
    assert_eq!(probe.runs(), 1, "no 422 ran the handler");
}

/// A duplicate while the first is in flight: 409 with Retry-After; after the
/// first completes, a replay.
pub async fn in_flight_duplicate_is_409<St: Store>(store: St) {
    let probe = Arc::new(Probe::default());
    let app = app(scoped(store), &probe);
    let first = tokio::spawn({
        let app = app.clone();
        async move { send(&app, order("\"k-409\"", "{}").header("x-block", "1")).await }
    });
    entered(&probe).await;
    let dup = send(&app, order("\"k-409\"", "{}")).await;
    let problem = dup.assert_problem(409);
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("#request-in-flight")
    );
    assert_eq!(dup.headers["retry-after"], "1");
    // A different request under the same key is a reuse, even in flight.
    send(&app, order("\"k-409\"", r#"{"x":1}"#))
        .await
        .assert_problem(422);

    probe.gate.notify_one();
    let first = first.await.unwrap();
    assert_eq!(first.status, StatusCode::CREATED);
    let after = send(&app, order("\"k-409\"", "{}")).await;
    assert!(replayed(&after));
    assert_eq!(after.body, first.body);
    assert_eq!(probe.runs(), 1);
}

/// In wait mode, a duplicate waits for the first and replays its response.
pub async fn wait_mode_replays_the_first<St: Store>(store: St) {
    let probe = Arc::new(Probe::default());
    let app = app(scoped(store).wait(Duration::from_secs(30)), &probe);
    let first = tokio::spawn({
        let app = app.clone();
        async move { send(&app, order("\"k-wait\"", "{}").header("x-block", "1")).await }
    });
    entered(&probe).await;
    let dup = tokio::spawn({
        let app = app.clone();
        async move { send(&app, order("\"k-wait\"", "{}")).await }
    });
    // Let the duplicate reach the store and start waiting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !dup.is_finished(),
        "the duplicate waits instead of answering 409"
    );
    probe.gate.notify_one();
    let first = first.await.unwrap();
    let dup = dup.await.unwrap();
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(dup.status, StatusCode::CREATED);
    assert!(replayed(&dup));
    assert_eq!(dup.body, first.body);
    assert_eq!(probe.runs(), 1);
}

/// 100 concurrent first requests with one key, spread over `stores` (one
/// process, or several sharing a Redis): the handler runs once; every other
/// request is answered 409 (or the replay).
pub async fn concurrent_first_requests_run_once<St: Store>(stores: Vec<St>) {
    let probe = Arc::new(Probe::default());
    let apps: Vec<Router> = stores
        .into_iter()
        .map(|store| app(scoped(store), &probe))
        .collect();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..100 {
        let app = apps[i % apps.len()].clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let reply = send(
                &app,
                order("\"k-race\"", r#"{"n":1}"#).header("x-block", "1"),
            )
            .await;
            let _ = tx.send(reply);
        });
    }
    let mut replies = Vec::new();
    // Everything but the one request holding the claim is answered while it runs.
    for _ in 0..99 {
        let reply = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("a request hung: the handler ran more than once?")
            .unwrap();
        replies.push(reply);
    }
    probe.gate.notify_one();
    replies.push(rx.recv().await.unwrap());
    assert_eq!(probe.runs(), 1, "the handler ran exactly once");
    let firsts: Vec<_> = replies
        .iter()
        .filter(|r| r.status == StatusCode::CREATED && !replayed(r))
        .collect();
    assert_eq!(firsts.len(), 1);
    for reply in &replies {
        match reply.status {
            StatusCode::CONFLICT => {
                reply.assert_problem(409);
            }
            StatusCode::CREATED if replayed(reply) => assert_eq!(reply.body, firsts[0].body),
            StatusCode::CREATED => {}
            other => panic!("unexpected {other}"),
        }
    }
}

/// A request dropped while in flight frees its key at once: the retry runs.
/// Returns how many attempts the retry took.
pub async fn cancelled_request_frees_the_key<St: Store>(store: St) -> usize {
    let probe = Arc::new(Probe::default());
    let app = app(scoped(store), &probe);
    let task = tokio::spawn({
        let app = app.clone();
        async move { send(&app, order("\"k-cancel\"", "{}").header("x-block", "1")).await }
    });
    entered(&probe).await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    let (retry, attempts) = until_not_in_flight(&app, || order("\"k-cancel\"", "{}")).await;
    assert_eq!(retry.status, StatusCode::CREATED);
    assert!(!replayed(&retry));
    assert_eq!(probe.runs(), 2, "the retry ran the handler");
    attempts
}

/// A panicking handler frees its key at once: the retry runs.
pub async fn panicking_handler_frees_the_key<St: Store>(store: St) -> usize {
    let probe = Arc::new(Probe::default());
    let app = app(scoped(store), &probe);
    let crashed = send(&app, order("\"k-panic\"", "{}").header("x-panic", "1")).await;
    assert_eq!(crashed.status, StatusCode::INTERNAL_SERVER_ERROR);
    let (retry, attempts) = until_not_in_flight(&app, || order("\"k-panic\"", "{}")).await;
    assert_eq!(retry.status, StatusCode::CREATED);
    assert!(!replayed(&retry));
    assert_eq!(probe.runs(), 2);
    attempts
}

/// Two clients with one key never see each other's responses.
pub async fn scopes_are_kept_apart<St: Store>(store: St) {
    let probe = Arc::new(Probe::default());
    let app = app(scoped(store), &probe);
    let alice = send(&app, order("\"k-shared\"", "{}")).await;
    let bob = send(&app, order_as("bob", "\"k-shared\"", "{}")).await;
    assert_eq!(probe.runs(), 2, "bob's request ran");
    assert!(!replayed(&bob));
    assert_ne!(alice.body, bob.body);
    let bob_again = send(&app, order_as("bob", "\"k-shared\"", "{}")).await;
    assert!(replayed(&bob_again));
    assert_eq!(bob_again.body, bob.body);
    // A keyed request without an identity cannot be scoped.
    let anonymous = send(
        &app,
        Request::post("/orders")
            .header("idempotency-key", "\"k-shared\"")
            .extension(Bytes::new()),
    )
    .await;
    let problem = anonymous.assert_problem(400);
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("#unscoped-request")
    );
    assert_eq!(probe.runs(), 2);
}

/// 5xx, 408, 409 and 429 are not stored (a retry runs again); a 4xx
/// validation error is stored and replays as itself.
pub async fn transient_failures_are_not_stored<St: Store>(store: St) {
    let probe = Arc::new(Probe::default());
    let app = app(scoped(store), &probe);
    let mut runs = 0;
    for (i, status) in ["500", "503", "502", "429", "408", "409"]
        .into_iter()
        .enumerate()
    {
        let key = format!("\"k-transient-{i}\"");
        let failed = send(&app, order(&key, "{}").header("x-status", status)).await;
        assert_eq!(failed.status.as_str(), status);
        let retry = send(&app, order(&key, "{}")).await;
        runs += 2;
        assert_eq!(probe.runs(), runs, "{status} was not stored: the retry ran");
        assert_eq!(retry.status, StatusCode::CREATED);
        assert!(!replayed(&retry));
    }
    let invalid = send(&app, order("\"k-invalid\"", "{}").header("x-status", "422")).await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    let again = send(&app, order("\"k-invalid\"", "{}")).await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(replayed(&again));
    assert_eq!(again.body, invalid.body);
    assert_eq!(probe.runs(), runs + 1);
}

/// Bad keys are 400 problems saying what is wrong, and never run the handler.
pub async fn bad_keys_are_400<St: Store>(store: St) {
    let probe = Arc::new(Probe::default());
    let app = app(scoped(store), &probe);
    let long = format!("\"{}\"", "k".repeat(256));
    let cases: Vec<(http::HeaderValue, &str)> = vec![
        (http::HeaderValue::from_static(""), "empty"),
        (http::HeaderValue::from_static("\"\""), "empty"),
        (
            http::HeaderValue::from_str(&long).unwrap(),
            "longer than 255",
        ),
        (
            http::HeaderValue::from_bytes("\"caf\u{e9}\"".as_bytes()).unwrap(),
            "non-ASCII",
        ),
        (http::HeaderValue::from_static("\"abc"), "never closed"),
        (
            http::HeaderValue::from_static("\"a\tb\""),
            "control character",
        ),
        (
            http::HeaderValue::from_static("\"a\" x"),
            "after its closing quote",
        ),
    ];
    for (value, says) in cases {
        let mut req = build(order("\"unused\"", "{}"));
        req.headers_mut().insert("idempotency-key", value.clone());
        let reply = call(&app, req).await;
        let problem = reply.assert_problem(400);
        assert!(
            problem["detail"].as_str().unwrap().contains(says),
            "{value:?}: {problem}"
        );
        assert!(problem["type"].as_str().unwrap().ends_with("#invalid-key"));
    }
    let mut req = build(order("\"one\"", "{}"));
    req.headers_mut()
        .append("idempotency-key", "\"two\"".parse().unwrap());
    let problem = call(&app, req).await.assert_problem(400);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("more than one")
    );
    // 255 characters is still a key.
    let max = format!("\"{}\"", "k".repeat(255));
    assert_eq!(
        send(&app, order(&max, "{}")).await.status,
        StatusCode::CREATED
    );
    assert_eq!(probe.runs(), 1);
}

/// Request bodies over the limit are 413 (declared or streamed); responses
/// over the limit reach the client whole but their duplicates are 409 without
/// running again.
pub async fn body_limits<St: Store>(store: St) {
    let probe = Arc::new(Probe::default());
    let layer = scoped(store).max_request_bytes(64).max_response_bytes(1024);
    let app = app(layer, &probe);
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(100));
    send(&app, order("\"k-413\"", &big))
        .await
        .assert_problem(413);
    let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(Bytes::from(vec![b' '; 40])),
        Ok(Bytes::from(vec![b' '; 40])),
    ];
    let streamed = order("\"k-413s\"", "")
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .unwrap();
    assert!(streamed.headers().get("content-length").is_none());
    let problem = call(&app, streamed).await.assert_problem(413);
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("#request-too-large")
    );
    assert_eq!(probe.runs(), 0);

    let first = send(&app, order("\"k-big\"", "{}").header("x-big", "5000")).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(first.body.len(), 5000, "the first client gets every byte");
    let dup = send(&app, order("\"k-big\"", "{}").header("x-big", "5000")).await;
    let problem = dup.assert_problem(409);
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("#response-not-stored")
    );
    assert_eq!(problem["original_status"], 201);
    assert!(dup.headers.get("retry-after").is_none());
    assert_eq!(probe.runs(), 1, "not run again");
}

/// No key: passes through, or 400 when required. Other methods always pass.
pub async fn missing_keys_and_other_methods<St: Store>(store: St) {
    let probe = Arc::new(Probe::default());
    let app = app(scoped(store.clone()), &probe);
    let no_key = || {
        Request::post("/orders")
            .header("authorization", "Bearer alice")
            .extension(Bytes::new())
    };
    assert_eq!(send(&app, no_key()).await.status, StatusCode::CREATED);
    assert_eq!(send(&app, no_key()).await.status, StatusCode::CREATED);
    assert_eq!(probe.runs(), 2, "without a key nothing is deduplicated");
    // PUT is not configured: even an invalid key is ignored.
    let put = send(&app, order("\"bad", "{}").method("PUT")).await;
    assert_eq!(put.status, StatusCode::CREATED);
    let put = send(&app, order("\"k-put\"", "{}").method("PUT")).await;
    assert!(!replayed(&put));
    let put = send(&app, order("\"k-put\"", "{}").method("PUT")).await;
    assert!(!replayed(&put));
    assert_eq!(probe.runs(), 5);

    let strict = app_required(store, &probe);
    let problem = send(&strict, no_key()).await.assert_problem(400);
    assert_eq!(
        problem["type"],
        "https://docs.rs/steadfast/latest/steadfast/idempotency/index.html#missing-key"
    );
    assert_eq!(probe.runs(), 5);
}

fn app_required<St: Store>(store: St, probe: &Arc<Probe>) -> Router {
    app(scoped(store).required(true), probe)
}

/// A header named for the fingerprint makes requests differ.
pub async fn fingerprinted_headers<St: Store>(store: St) {
    let probe = Arc::new(Probe::default());
    let layer = scoped(store).fingerprint_header(http::HeaderName::from_static("x-account"));
    let app = app(layer, &probe);
    let first = send(&app, order("\"k-h\"", "{}").header("x-account", "1")).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert!(replayed(
        &send(&app, order("\"k-h\"", "{}").header("x-account", "1")).await
    ));
    send(&app, order("\"k-h\"", "{}").header("x-account", "2"))
        .await
        .assert_problem(422);
    assert_eq!(probe.runs(), 1);
}

/// A handler that outlives its lock TTL while nobody takes the key over still
/// completes: its response is stored and replayed, and a retry never runs the
/// handler a second time. `pass_lock_ttl` lets the lock TTL pass in the store's
/// own clock (tokio's paused clock for `MemoryStore`, Redis's for `RedisStore`).
pub async fn outlived_lock_is_stored_when_nobody_took_over<St, F>(
    store: St,
    lock_ttl: Duration,
    pass_lock_ttl: F,
) where
    St: Store,
    F: Future<Output = ()>,
{
    let probe = Arc::new(Probe::default());
    let app = app(scoped(store).lock_ttl(lock_ttl), &probe);
    let slow = tokio::spawn({
        let app = app.clone();
        async move { send(&app, order("\"k-outlived\"", "{}").header("x-block", "1")).await }
    });
    entered(&probe).await;
    pass_lock_ttl.await;
    probe.gate.notify_one();
    let first = slow.await.unwrap();
    assert_eq!(first.status, StatusCode::CREATED);
    let retry = send(&app, order("\"k-outlived\"", "{}")).await;
    assert_eq!(retry.status, StatusCode::CREATED);
    assert!(replayed(&retry), "the late response was stored");
    assert_eq!(retry.body, first.body);
    assert_eq!(probe.runs(), 1, "the retry did not run the handler again");
}
