//! The OpenAPI document: it and the router agree (every routed method and path
//! is documented, every documented one routed), it is a well-formed OpenAPI
//! 3.1 document with the bearer scheme and problem responses, and `/docs`
//! serves its page without any outside address.
//!
//! That real responses match their documented schemas is checked by the
//! other tests' clients (`TestServer::{get, post, authed}` and the product
//! tests' `client::request`), through `support::openapi::ApiSchema`.

mod support;

use std::collections::BTreeSet;

use axum::{Router, routing::get};
use serde_json::Value;
use steadfast::idempotency::MemoryStore;
use support::{
    Backend, Reply, TestServer,
    openapi::{documented_operations, routed_operations, served_document},
};
use utoipa_axum::router::OpenApiRouter;

/// Operations routed but not documented, and documented but not routed.
async fn disagreements(
    router: &Router,
) -> (BTreeSet<(String, String)>, BTreeSet<(String, String)>) {
    let routed = routed_operations(router).await;
    let documented = documented_operations(&served_document(router).await);
    (
        routed.difference(&documented).cloned().collect(),
        documented.difference(&routed).cloned().collect(),
    )
}

async fn document_and_router_agree(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let router = koldly::app::routes(server.handles.state.clone(), MemoryStore::new());
    let routed = routed_operations(&router).await;
    let (undocumented, unrouted) = disagreements(&router).await;
    assert!(
        undocumented.is_empty(),
        "routed but not in the OpenAPI document: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "in the OpenAPI document but not routed: {unrouted:?}"
    );
    // The enumeration found the routes of every domain (a sanity floor: a
    // broken enumeration finding nothing would agree with an empty document).
    for expected in [
        ("GET", "/health"),
        ("POST", "/api/auth/signup"),
        ("POST", "/api/auth/login"),
        ("GET", "/auth/google"),
        ("GET", "/api/jobs/{id}"),
        ("PATCH", "/api/campaigns/{id}"),
        ("DELETE", "/api/campaigns/{id}"),
    ] {
        assert!(
            routed.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} not found among {routed:?}"
        );
    }
    server.stop().await;
}

/// The check fails when a route is added without documentation, or a
/// documented path gains a method that is not.
#[tokio::test]
async fn an_undocumented_route_is_found() {
    #[utoipa::path(get, path = "/documented", responses((status = 200)))]
    async fn documented() {}
    let routes = OpenApiRouter::new()
        .routes(utoipa_axum::routes!(documented))
        .route("/documented", axum::routing::delete(|| async {}))
        .merge(OpenApiRouter::from(
            Router::new().route("/hidden/{id}", get(|| async {})),
        ));
    let (router, _) = koldly::openapi::serve_docs(routes);
    let (undocumented, unrouted) = disagreements(&router).await;
    assert_eq!(
        undocumented,
        BTreeSet::from([
            ("DELETE".to_owned(), "/documented".to_owned()),
            ("GET".to_owned(), "/hidden/{id}".to_owned()),
        ])
    );
    assert!(unrouted.is_empty(), "{unrouted:?}");
}

async fn document_is_openapi_31_with_bearer_and_problems(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let doc = server.api.document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    let show = &doc["paths"]["/api/campaigns/{id}"]["get"];
    assert_eq!(show["security"][0]["bearer"], serde_json::json!([]));
    let not_found = &show["responses"]["404"]["content"]["application/problem+json"]["schema"];
    assert_eq!(
        not_found["allOf"][0]["$ref"],
        "#/components/schemas/Problem"
    );
    assert_eq!(
        not_found["allOf"][1]["properties"]["type"]["enum"][0],
        koldly::error::types::NOT_FOUND
    );
    // The stack's problems are on every operation.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for status in ["500", "503", "504"] {
                assert!(
                    operation["responses"][status].is_object(),
                    "{method} {path} lacks {status}"
                );
            }
        }
    }
    // A route needs the bearer scheme exactly when it may answer 401.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let secured = operation["security"][0]["bearer"].is_array();
            let unauthorized = operation["responses"]["401"].is_object();
            let login = path == "/api/auth/login";
            assert_eq!(
                secured,
                unauthorized && !login,
                "{method} {path}: security and 401 disagree"
            );
        }
    }
    // Lists document their pagination.
    let list = &doc["paths"]["/api/campaigns"]["get"];
    let params: Vec<&str> = list["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        params.contains(&"limit") && params.contains(&"cursor"),
        "{params:?}"
    );
    // Every $ref in the document resolves.
    let mut refs = Vec::new();
    collect_refs(doc, &mut refs);
    assert!(!refs.is_empty());
    for reference in refs {
        let target = reference
            .strip_prefix("#/")
            .unwrap_or_else(|| panic!("a non-local $ref: {reference}"))
            .split('/')
            .fold(doc, |v, key| &v[key]);
        assert!(target.is_object(), "{reference} resolves to nothing");
    }
    server.stop().await;
}

fn collect_refs(value: &Value, refs: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(r)) => refs.push(r.clone()),
                    _ => collect_refs(v, refs),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, refs)),
        _ => {}
    }
}

/// `/docs` serves Swagger UI from the binary: the page and every script and
/// stylesheet it loads answer 200 from this server, and nothing names an
/// outside address.
async fn docs_page_works_offline(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let page = support::get(server.addr, "/docs/").await;
    assert_eq!(page.status, 200);
    let html = String::from_utf8_lossy(&page.body).into_owned();
    assert!(html.contains("swagger-ui"), "{html}");
    let mut assets = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for piece in html.split(attr).skip(1) {
            let target = piece.split('"').next().unwrap();
            assets.push(target.to_owned());
        }
    }
    assert!(!assets.is_empty(), "{html}");
    for asset in assets {
        assert!(!asset.contains("//"), "{asset} is not served by koldly");
        let path = format!("/docs/{}", asset.trim_start_matches("./"));
        let res = support::get(server.addr, &path).await;
        assert_eq!(res.status, 200, "{path}");
        let text = String::from_utf8_lossy(&res.body);
        assert!(
            !text.contains("cdn.") && !text.contains("unpkg"),
            "{path} loads from a CDN"
        );
    }
    let init = support::get(server.addr, "/docs/swagger-initializer.js").await;
    assert_eq!(init.status, 200);
    assert!(
        String::from_utf8_lossy(&init.body).contains(koldly::openapi::OPENAPI_PATH),
        "the page loads koldly's document"
    );
    server.stop().await;
}

/// The check the tests' clients run on every reply: a real reply passes; the
/// same reply with a body off its schema, an undocumented status or an
/// undocumented content type does not.
async fn replies_are_checked_against_their_schemas(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let (token, _) = server
        .signup("schema@example.com", "correct horse 42")
        .await;
    let created = server
        .authed("POST", "/api/campaigns", &token, r#"{"name":"Spring"}"#)
        .await;
    assert_eq!(created.status, 201);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let path = format!("/api/campaigns/{id}");
    let real = server.authed("GET", &path, &token, "").await;
    assert_eq!(real.status, 200);
    server.api.validate("GET", &path, &real).unwrap();

    let with_body = |body: Value| Reply {
        status: real.status,
        headers: real.headers.clone(),
        body: serde_json::to_vec(&body).unwrap().into(),
    };
    let mut wrong_type = real.json();
    wrong_type["stats"]["prospects"] = "three".into();
    let err = server
        .api
        .validate("GET", &path, &with_body(wrong_type))
        .unwrap_err();
    assert!(err.contains("/stats/prospects"), "{err}");
    let mut missing = real.json();
    missing.as_object_mut().unwrap().remove("name");
    assert!(
        server
            .api
            .validate("GET", &path, &with_body(missing))
            .is_err()
    );

    let mut teapot = with_body(real.json());
    teapot.status = http::StatusCode::IM_A_TEAPOT;
    let err = server.api.validate("GET", &path, &teapot).unwrap_err();
    assert!(err.contains("418 is not documented"), "{err}");
    let mut text = with_body(real.json());
    text.headers
        .insert(http::header::CONTENT_TYPE, "text/plain".parse().unwrap());
    assert!(server.api.validate("GET", &path, &text).is_err());

    // A problem is checked against its declared type: a 404 whose `type` is
    // not the documented one fails.
    let missing_campaign = server
        .authed(
            "GET",
            "/api/campaigns/0190a8f2-0000-7000-8000-000000000001",
            &token,
            "",
        )
        .await;
    assert_eq!(missing_campaign.status, 404);
    let mut other_type = missing_campaign.json();
    other_type["type"] = "about:blank".into();
    let forged = Reply {
        status: missing_campaign.status,
        headers: missing_campaign.headers.clone(),
        body: serde_json::to_vec(&other_type).unwrap().into(),
    };
    assert!(server.api.validate("GET", &path, &forged).is_err());
    server.stop().await;
}

on_both!(
    replies_are_checked_against_their_schemas,
    document_and_router_agree,
    document_is_openapi_31_with_bearer_and_problems,
    docs_page_works_offline,
);
