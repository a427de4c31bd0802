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
    // Operation ids are unique, and every operation has a tag.
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let id = operation["operationId"].as_str().unwrap();
            assert!(
                ids.insert(id.to_owned()),
                "{method} {path}: {id} is not unique"
            );
            assert!(
                operation["tags"][0].is_string(),
                "{method} {path} has no tag"
            );
        }
    }
    assert!(ids.contains("campaigns_create") && ids.contains("icp_templates_create"));
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

/// The `Idempotency-Key` header is documented on exactly the operations the
/// idempotency layer guards: each documented operation is sent a key that is
/// too long, and only the guarded ones answer the layer's `invalid-key` 400.
async fn idempotency_key_is_documented_where_honoured(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let doc = server.api.document().clone();
    let too_long = "k".repeat(300);
    let mut guarded = 0;
    for (method, template) in documented_operations(&doc) {
        let operation = &doc["paths"][&template][method.to_lowercase()];
        let documented = operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header");
        let path = support::openapi::concrete(&template);
        let reply = support::send(
            http::Request::builder()
                .method(method.as_str())
                .uri(format!("http://{}{path}", server.addr))
                .header("content-type", "application/json")
                .header("idempotency-key", too_long.as_str())
                .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
                .unwrap(),
        )
        .await;
        let refused = reply.status == 400
            && reply.json()["type"]
                .as_str()
                .is_some_and(|t| t.ends_with("#invalid-key"));
        assert_eq!(
            documented,
            refused,
            "{method} {template}: Idempotency-Key documented {documented}, honoured {refused}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        guarded += usize::from(refused);
    }
    assert!(guarded >= 10, "only {guarded} guarded operations");
    server.stop().await;
}

/// `schema`, or what its `$ref` names in `doc`.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => doc
            .pointer(reference.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("dangling {reference}")),
        None => schema,
    }
}

/// The documented `enum` of the query parameter `name` of `GET path`.
fn query_enum(doc: &Value, path: &str, name: &str) -> Vec<String> {
    let parameters = doc["paths"][path]["get"]["parameters"].as_array().unwrap();
    let parameter = parameters
        .iter()
        .find(|p| p["name"] == name && p["in"] == "query")
        .unwrap_or_else(|| panic!("GET {path} documents no {name}"));
    resolve(doc, &parameter["schema"])["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("GET {path}: {name} has no enum"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

fn sorted(values: impl IntoIterator<Item = impl Into<String>>) -> Vec<String> {
    let mut values: Vec<String> = values.into_iter().map(Into::into).collect();
    values.sort();
    values
}

/// The list filters the handlers check against a list are documented as that
/// list (`enum`), every documented value is accepted and another refused
/// (schemathesis' `positive_data_acceptance` found them documented as free
/// strings, so a client built from the document could send anything).
async fn documented_filter_values_are_accepted(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let doc = server.api.document().clone();
    let (token, _) = server
        .signup("filters@example.com", "correct horse 42")
        .await;
    let created = server
        .authed("POST", "/api/campaigns", &token, r#"{"name":"Spring"}"#)
        .await;
    assert_eq!(created.status, 201);
    let prospects = format!(
        "/api/campaigns/{}/prospects",
        created.json()["id"].as_str().unwrap()
    );
    assert_eq!(
        query_enum(&doc, "/api/campaigns/{id}/prospects", "status"),
        koldly::prospects::STATUSES
    );
    assert_eq!(
        sorted(query_enum(&doc, "/api/inbox/replies", "category")),
        sorted(koldly::inbox::CATEGORIES.iter().copied())
    );
    assert_eq!(
        query_enum(&doc, "/api/admin/metrics", "period"),
        ["24h", "7d", "30d"]
    );
    for (template, path, name) in [
        ("/api/campaigns", "/api/campaigns", "status"),
        (
            "/api/campaigns/{id}/prospects",
            prospects.as_str(),
            "status",
        ),
        ("/api/inbox/replies", "/api/inbox/replies", "category"),
        ("/api/inbox/replies", "/api/inbox/replies", "is_read"),
        ("/api/inbox/replies", "/api/inbox/replies", "is_archived"),
        ("/api/inbox/replies", "/api/inbox/replies", "sort"),
    ] {
        for value in query_enum(&doc, template, name) {
            let reply = server
                .authed("GET", &format!("{path}?{name}={value}"), &token, "")
                .await;
            assert_eq!(
                reply.status,
                200,
                "GET {template}?{name}={value}: {}",
                String::from_utf8_lossy(&reply.body)
            );
        }
        let refused = server
            .authed("GET", &format!("{path}?{name}=bogus"), &token, "")
            .await;
        assert_eq!(refused.status, 400, "GET {template}?{name}=bogus");
    }
    server.stop().await;
}

/// The time zones are documented as the names of the bundled tz database, on
/// both operations that take one, and every one of them is accepted.
async fn documented_time_zones_are_accepted(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let doc = server.api.document().clone();
    let schemas = &doc["components"]["schemas"];
    let zones: Vec<String> = schemas["TimeZoneName"]["enum"]
        .as_array()
        .expect("TimeZoneName has an enum")
        .iter()
        .map(|z| z.as_str().unwrap().to_owned())
        .collect();
    assert!(zones.len() > 300, "only {} zones", zones.len());
    assert!(zones.iter().any(|z| z == "Europe/Paris"));
    assert_eq!(
        schemas["TimezoneRequest"]["properties"]["timezone"]["$ref"],
        "#/components/schemas/TimeZoneName"
    );
    assert!(
        schemas["SendRequest"]["properties"]["timezone"]
            .to_string()
            .contains("#/components/schemas/TimeZoneName"),
        "{}",
        schemas["SendRequest"]["properties"]["timezone"]
    );
    let (token, _) = server.signup("zones@example.com", "correct horse 42").await;
    for zone in &zones {
        let body = serde_json::json!({ "timezone": zone }).to_string();
        let reply = server
            .authed("PUT", "/api/account/timezone", &token, &body)
            .await;
        assert_eq!(
            reply.status,
            200,
            "{zone}: {}",
            String::from_utf8_lossy(&reply.body)
        );
    }
    let refused = server
        .authed(
            "PUT",
            "/api/account/timezone",
            &token,
            r#"{"timezone":"Mars/Olympus_Mons"}"#,
        )
        .await;
    assert_eq!(refused.status, 422);
    server.stop().await;
}

/// Item counts, lengths, a name that cannot be `null` and PATCH bodies that
/// must change something are documented as the handlers enforce them, and
/// the documented boundary is what the server accepts.
async fn documented_request_rules_are_the_enforced_ones(backend: Backend) {
    use koldly::emails::input::{MAX_BULK_IDS, MAX_PROSPECT_IDS};
    let server = TestServer::start(backend, |_| {}).await;
    let doc = server.api.document().clone();
    let schemas = &doc["components"]["schemas"];
    let bounds = |schema: &Value| {
        (
            schema["minItems"].as_u64(),
            schema["maxItems"].as_u64().map(|n| n as usize),
        )
    };
    assert_eq!(
        bounds(&schemas["Generate"]["properties"]["prospect_ids"]),
        (Some(1), Some(MAX_PROSPECT_IDS))
    );
    assert_eq!(
        bounds(&schemas["BulkApprove"]["properties"]["ids"]),
        (Some(1), Some(MAX_BULK_IDS))
    );
    assert_eq!(
        bounds(&schemas["ProspectRows"]),
        (Some(1), Some(koldly::prospects::import::MAX_ROWS))
    );
    assert_eq!(
        bounds(&schemas["SequenceInput"]["properties"]["steps"]),
        (None, Some(koldly::sending::MAX_STEPS))
    );
    assert!(
        resolve(&doc, &schemas["BulkApprove"]["properties"]["ids"]["items"])["pattern"].is_string(),
        "ids are documented as UUIDs"
    );
    for patch in ["Edit", "Patch"] {
        assert_eq!(schemas[patch]["minProperties"], 1, "{patch}");
    }
    assert_eq!(schemas["Edit"]["properties"]["subject"]["type"], "string");
    assert_eq!(schemas["Edit"]["properties"]["subject"]["minLength"], 1);
    assert_eq!(
        schemas["TemplateBody"]["properties"]["name"]["type"],
        "string"
    );
    assert!(
        schemas["NewIcpTemplate"]["allOf"][1]["required"]
            .as_array()
            .unwrap()
            .contains(&"name".into())
    );
    for request in ["SignupRequest", "ResetRequest"] {
        assert_eq!(
            schemas[request]["properties"]["password"]["minLength"], 10,
            "{request}"
        );
    }

    // The boundaries: the shortest documented password is accepted, one
    // character less refused; an empty id list and an empty PATCH are refused
    // as documented; an ICP template without a name is refused on POST only.
    let ok = server
        .post(
            "/api/auth/signup",
            r#"{"email":"rules@example.com","password":"abcdefghi1","name":"R"}"#,
        )
        .await;
    assert_eq!(ok.status, 201, "{}", String::from_utf8_lossy(&ok.body));
    let token = ok.json()["token"].as_str().unwrap().to_owned();
    let short = server
        .post(
            "/api/auth/signup",
            r#"{"email":"short@example.com","password":"abcdefgh1","name":"S"}"#,
        )
        .await;
    assert_eq!(short.status, 422);
    let empty_ids = server
        .authed("POST", "/api/emails/approve", &token, r#"{"ids":[]}"#)
        .await;
    assert_eq!(empty_ids.status, 422);
    let empty_patch = server
        .authed(
            "PATCH",
            "/api/inbox/replies/0190a8f2-0000-7000-8000-000000000001",
            &token,
            "{}",
        )
        .await;
    assert_eq!(empty_patch.status, 422);
    let nameless = server
        .authed(
            "POST",
            "/api/icp-templates",
            &token,
            r#"{"industry":"SaaS"}"#,
        )
        .await;
    assert_eq!(nameless.status, 422);
    let named = server
        .authed("POST", "/api/icp-templates", &token, r#"{"name":"SaaS"}"#)
        .await;
    assert_eq!(
        named.status,
        201,
        "{}",
        String::from_utf8_lossy(&named.body)
    );
    let null_name = server
        .authed(
            "PATCH",
            &format!(
                "/api/icp-templates/{}",
                named.json()["id"].as_str().unwrap()
            ),
            &token,
            r#"{"name":null}"#,
        )
        .await;
    assert_eq!(
        null_name.status, 422,
        "the document says a name is a string"
    );
    server.stop().await;
}

on_both!(
    idempotency_key_is_documented_where_honoured,
    documented_filter_values_are_accepted,
    documented_time_zones_are_accepted,
    documented_request_rules_are_the_enforced_ones,
    replies_are_checked_against_their_schemas,
    document_and_router_agree,
    document_is_openapi_31_with_bearer_and_problems,
    docs_page_works_offline,
);
