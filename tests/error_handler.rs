//! The error handler on a real axum Router and a plain hyper server, over HTTP on loopback.

mod common;

use std::{
    io,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    extract::DefaultBodyLimit,
    http::StatusCode,
    routing::{get, post},
};
use bytes::Bytes;
use common::{Reply, send, send_json, serve};
use http::Request;
use http_body_util::Full;
use serde::Deserialize;
use steadfast::{BoxError, ErrorClass, Problem, error_handler::ErrorHandlerLayer};
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

#[derive(Deserialize)]
struct Signup {
    #[allow(dead_code)]
    email: String,
}

async fn panicking() -> &'static str {
    panic!("secret panic text at /srv/app/src/main.rs")
}

fn app(panics: Arc<AtomicUsize>) -> Router {
    Router::new()
        .route("/ok", get(|| async { "fine" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                "too late"
            }),
        )
        .route(
            "/panic",
            get(move || {
                panics.fetch_add(1, Ordering::SeqCst);
                panicking()
            }),
        )
        .route(
            "/signup",
            post(|Json(_): Json<Signup>| async { StatusCode::CREATED }),
        )
        .route(
            "/own-problem",
            get(|| async {
                Err::<(), _>(
                    Problem::new(StatusCode::CONFLICT)
                        .with_type("https://koldly.example/problems/dup")
                        .with_detail("Already exists.")
                        .with_extension("field", "email"),
                )
            }),
        )
        .route(
            "/own-json-error",
            get(|| async {
                (
                    StatusCode::BAD_REQUEST,
                    Json(serde_json::json!({"error": "mine"})),
                )
            }),
        )
        .route(
            "/leaky-500",
            get(|| async {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "db error: SELECT password_hash FROM users at /srv/db.rs",
                )
            }),
        )
        .layer(DefaultBodyLimit::max(64))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(ErrorHandlerLayer::new())
                .layer(tower::timeout::TimeoutLayer::new(Duration::from_millis(
                    100,
                ))),
        )
}

async fn start() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let panics = Arc::new(AtomicUsize::new(0));
    (serve(app(panics.clone())).await, panics)
}

fn request_id_matches(reply: &Reply, problem: &serde_json::Value) {
    let header = reply.headers["x-request-id"].to_str().unwrap();
    assert!(!header.is_empty());
    assert_eq!(
        problem["request_id"], header,
        "problem carries the request id"
    );
}

#[tokio::test]
async fn success_passes_untouched() {
    let (addr, _) = start().await;
    let reply = common::get(addr, "/ok").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "fine");
    assert_eq!(reply.content_type(), "text/plain; charset=utf-8");
}

#[tokio::test]
async fn a_service_error_becomes_a_classified_problem() {
    let (addr, _) = start().await;
    let reply = common::get(addr, "/slow").await;
    let problem = reply.assert_problem(504);
    assert_eq!(problem["type"], "about:blank");
    assert_eq!(problem["title"], "Gateway Timeout");
    assert_eq!(
        problem["detail"],
        "The server did not finish the request in time."
    );
    request_id_matches(&reply, &problem);
}

#[tokio::test]
async fn a_panic_becomes_a_500_and_the_server_goes_on() {
    let (addr, panics) = start().await;
    let reply = common::get(addr, "/panic").await;
    let problem = reply.assert_problem(500);
    request_id_matches(&reply, &problem);
    let body = String::from_utf8_lossy(&reply.body);
    assert!(!body.contains("secret") && !body.contains("/srv"), "{body}");
    assert_eq!(panics.load(Ordering::SeqCst), 1);
    assert_eq!(common::get(addr, "/ok").await.status, 200);
    common::get(addr, "/panic").await.assert_problem(500);
    assert_eq!(panics.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn bare_404_and_405_become_problems() {
    let (addr, _) = start().await;
    let reply = common::get(addr, "/nowhere").await;
    let problem = reply.assert_problem(404);
    assert_eq!(problem["detail"], "Nothing is served at this path.");
    request_id_matches(&reply, &problem);

    let reply = send_json(addr, "DELETE", "/ok", "").await;
    let problem = reply.assert_problem(405);
    assert!(problem["detail"].as_str().unwrap().contains("Allow"));
    let allow = reply.headers["allow"].to_str().unwrap();
    assert!(allow.contains("GET"), "Allow survives the rewrite: {allow}");
}

#[tokio::test]
async fn body_limit_413() {
    let (addr, _) = start().await;
    let big = format!(r#"{{"email":"{}"}}"#, "a".repeat(500));
    let problem = send_json(addr, "POST", "/signup", &big)
        .await
        .assert_problem(413);
    assert!(
        problem["detail"].as_str().unwrap().contains("length limit"),
        "{problem}"
    );
}

#[tokio::test]
async fn wrong_content_type_415() {
    let (addr, _) = start().await;
    let reply = send(
        Request::post(format!("http://{addr}/signup"))
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap(),
    )
    .await;
    let problem = reply.assert_problem(415);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("application/json"),
        "{problem}"
    );
}

#[tokio::test]
async fn malformed_json_400_and_missing_field_422() {
    let (addr, _) = start().await;
    let problem = send_json(addr, "POST", "/signup", "{not json")
        .await
        .assert_problem(400);
    assert!(
        problem["detail"].as_str().unwrap().contains("JSON"),
        "{problem}"
    );

    let reply = send_json(addr, "POST", "/signup", r#"{"name":"x"}"#).await;
    let problem = reply.assert_problem(422);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("missing field `email`"),
        "{problem}"
    );
    request_id_matches(&reply, &problem);

    let problem = send_json(addr, "POST", "/signup", r#"{"email":5}"#)
        .await
        .assert_problem(422);
    assert!(
        problem["detail"].as_str().unwrap().contains("invalid type"),
        "{problem}"
    );
}

#[tokio::test]
async fn a_handlers_own_problem_passes_through_byte_for_byte() {
    let (addr, _) = start().await;
    let reply = common::get(addr, "/own-problem").await;
    let expected = Problem::new(StatusCode::CONFLICT)
        .with_type("https://koldly.example/problems/dup")
        .with_detail("Already exists.")
        .with_extension("field", "email")
        .to_bytes();
    assert_eq!(reply.status, 409);
    assert_eq!(reply.body, expected);
    assert!(reply.json().get("request_id").is_none());
}

#[tokio::test]
async fn other_content_types_are_left_alone() {
    let (addr, _) = start().await;
    let reply = common::get(addr, "/own-json-error").await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.content_type(), "application/json");
    assert_eq!(reply.json(), serde_json::json!({"error": "mine"}));
}

#[tokio::test]
async fn a_5xx_body_never_reaches_the_client() {
    let (addr, _) = start().await;
    let reply = common::get(addr, "/leaky-500").await;
    let problem = reply.assert_problem(500);
    let body = String::from_utf8_lossy(&reply.body);
    assert!(!body.contains("SELECT") && !body.contains("/srv"), "{body}");
    assert!(problem["detail"].as_str().unwrap().contains("request's id"));
}

/// A plain tower service that fails with the error its path names.
async fn fail_by_path(
    req: Request<hyper::body::Incoming>,
) -> Result<http::Response<Full<Bytes>>, BoxError> {
    let err: BoxError = match req.uri().path() {
        "/connect" => io::Error::from(io::ErrorKind::ConnectionRefused).into(),
        "/reset" => io::Error::from(io::ErrorKind::ConnectionReset).into(),
        "/shed" => steadfast::Error::new(ErrorClass::Overloaded, "queue full")
            .with_retry_after(Duration::from_secs(7))
            .into(),
        "/bug" => String::from("invariant broken: user 42 has no tenant").into(),
        _ => return Ok(http::Response::new(Full::new(Bytes::from_static(b"ok")))),
    };
    Err(err)
}

/// Plain hyper + tower, no axum: errors by class.
#[tokio::test]
async fn plain_hyper_service_errors_by_class() {
    use hyper_util::{rt::TokioIo, server::conn::auto, service::TowerToHyperService};

    let svc = ServiceBuilder::new()
        .layer(ErrorHandlerLayer::new())
        .service(tower::service_fn(fail_by_path));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let svc = TowerToHyperService::new(svc.clone());
            tokio::spawn(async move {
                let _ = auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });

    assert_eq!(common::get(addr, "/fine").await.body, "ok");
    common::get(addr, "/connect").await.assert_problem(502);
    common::get(addr, "/reset").await.assert_problem(502);
    let shed = common::get(addr, "/shed").await;
    shed.assert_problem(503);
    assert_eq!(shed.headers["retry-after"], "7");
    let bug = common::get(addr, "/bug").await;
    let problem = bug.assert_problem(500);
    assert!(!String::from_utf8_lossy(&bug.body).contains("tenant"));
    assert!(problem.get("request_id").is_none(), "no request id was set");
}
