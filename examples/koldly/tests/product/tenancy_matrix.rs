//! The cross-tenant matrix, generated from the OpenAPI document: every
//! documented operation whose path names a resource by id is called by
//! another account (Eve) with the id of Ann's resource, and must answer the
//! same 404 problem as an id that does not exist, and change nothing.
//!
//! The routes come from the document, not from a list here: a new route under
//! a resource that has a fixture is covered the day it is documented, and a
//! route naming a resource that has none fails this test with its name (add a
//! fixture to [`create_fixtures`], or, for a path parameter that is not an
//! owned resource's id, a reason to [`NOT_OWNED`]).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::client::{User, campaign, email_row, get, json, request, snapshot, user_on};
use crate::mailgun::{jobs_done, prospect, with_key};
use crate::on_both;
use crate::sending::verified_sender;
use crate::support::openapi::documented_operations;
use crate::support::schema_example::{Members, example, resolve};
use crate::support::{Backend, Reply, TestServer};

/// Path templates whose parameter is not an owned resource's id, and why
/// they are out of the matrix.
const NOT_OWNED: &[(&str, &str)] = &[(
    "/u/{token}",
    "a public one-click unsubscribe link: the signed token is the credential, \
     no signed-in account is involved (tests/product/sending.rs checks forged and \
     foreign tokens)",
)];

/// The resource a path parameter names: the template up to and including it
/// (`/api/campaigns/{id}` for every `/api/campaigns/{id}/...` route).
fn resource_keys(template: &str) -> Vec<String> {
    let segments: Vec<&str> = template.split('/').collect();
    segments
        .iter()
        .enumerate()
        .filter(|(_, s)| s.starts_with('{'))
        .map(|(i, _)| segments[..=i].join("/"))
        .collect()
}

/// One documented call of the matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Call {
    method: String,
    template: String,
    /// The resource each path parameter names, in order.
    resources: Vec<String>,
}

/// The calls the document asks for, given the resources that have fixtures;
/// `Err` names every route whose resource has none.
fn plan(doc: &Value, fixtures: &[&str]) -> Result<Vec<Call>, String> {
    let mut calls = Vec::new();
    let mut uncovered = Vec::new();
    for (method, template) in documented_operations(doc) {
        if !template.contains('{') || NOT_OWNED.iter().any(|(t, _)| *t == template) {
            continue;
        }
        let resources = resource_keys(&template);
        let missing: Vec<&String> = resources
            .iter()
            .filter(|r| !fixtures.contains(&r.as_str()))
            .collect();
        if missing.is_empty() {
            calls.push(Call {
                method,
                template,
                resources,
            });
        } else {
            uncovered.push(format!("{method} {template} (no fixture for {missing:?})"));
        }
    }
    if uncovered.is_empty() {
        Ok(calls)
    } else {
        Err(format!(
            "documented routes with an id the cross-tenant matrix cannot call: {}. \
             Add a fixture to create_fixtures in tests/product/tenancy_matrix.rs, or a \
             reason to NOT_OWNED if the parameter is not an owned resource's id.",
            uncovered.join("; ")
        ))
    }
}

/// `template` with each `{param}` replaced by the next of `ids`.
fn fill(template: &str, mut ids: impl Iterator<Item = String>) -> String {
    template
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                ids.next().expect("an id per parameter")
            } else {
                segment.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The content type and a small valid body of the operation's request, from
/// its documented schema (JSON preferred), with `members` of its objects, and
/// each `{resource}_id(s)` member naming the caller's own resource of that kind
/// (so a body that refers to another resource passes its checks); none when
/// the operation documents no body.
fn request_body(
    doc: &Value,
    operation: &Value,
    members: Members,
    own: &BTreeMap<&'static str, String>,
) -> Option<(String, String)> {
    let body = resolve(doc, &operation["requestBody"]);
    let content = body["content"].as_object()?;
    let (content_type, media) = content
        .iter()
        .find(|(t, _)| t.as_str() == "application/json")
        .or_else(|| content.iter().next())?;
    let text = match content_type.as_str() {
        "application/json" => {
            let mut body = example(doc, &media["schema"], members);
            refer_to_own(&mut body, own);
            body.to_string()
        }
        "text/csv" => "email\nlead@example.com\n".to_owned(),
        _ => String::new(),
    };
    Some((content_type.clone(), text))
}

/// The singular name of a resource key's kind: `sender` for
/// `/api/senders/{id}`, `icp_template` for `/api/icp-templates/{id}`.
fn kind(key: &str) -> String {
    let plural = key.rsplit('/').nth(1).unwrap_or_default().replace('-', "_");
    match plural.strip_suffix("ies") {
        Some(stem) => format!("{stem}y"),
        None => plural.strip_suffix('s').unwrap_or(&plural).to_owned(),
    }
}

/// Replaces, anywhere in `body`, the value of a `{kind}_id` member (and each
/// element of a `{kind}_ids` one) with the id of `own`'s resource of that kind.
fn refer_to_own(body: &mut Value, own: &BTreeMap<&'static str, String>) {
    let id_of = |name: &str| {
        own.iter()
            .find(|(key, _)| kind(key) == name)
            .map(|(_, id)| Value::String(id.clone()))
    };
    match body {
        Value::Object(members) => {
            for (name, value) in members.iter_mut() {
                if let Some(id) = name.strip_suffix("_id").and_then(id_of) {
                    *value = id;
                } else if let (Some(id), Value::Array(items)) =
                    (name.strip_suffix("_ids").and_then(id_of), &mut *value)
                {
                    items.iter_mut().for_each(|item| *item = id.clone());
                } else {
                    refer_to_own(value, own);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| refer_to_own(item, own)),
        _ => {}
    }
}

/// `owner`'s resources, one per resource key the matrix knows: the key's id.
/// `tag` keeps two owners' addresses apart.
async fn create_fixtures(
    server: &TestServer,
    ann: &User,
    tag: &str,
) -> BTreeMap<&'static str, String> {
    let id = |reply: Reply| -> String {
        assert!(
            reply.status.is_success(),
            "fixture: {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
        reply.json()["id"].as_str().expect("an id").to_owned()
    };
    let c = campaign(server, ann, "Ann's campaign").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let p = prospect(server, ann, &c, "ann-lead@example.com").await;
    let email = email_row(server, &c, &p, "draft", 1).await;
    let unknown = unknown_send(server, &c, &p).await;
    let (reply, _) =
        crate::inbox::reply(server, ann, &c, "ann-lead@example.com", "Tell me more").await;
    let template = id(json(
        server,
        ann,
        "POST",
        "/api/icp-templates",
        json!({"name": "An ICP"}),
    )
    .await);
    // Verified: a send naming it gets past the sender's checks.
    let sender = verified_sender(server, ann, &format!("{tag}@{tag}.example")).await;
    let other = campaign(server, ann, "Drafts").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    prospect(server, ann, &other, &format!("{tag}-other@example.com")).await;
    let job = id(json(
        server,
        ann,
        "POST",
        &format!("/api/campaigns/{other}/emails/generate"),
        Value::Null,
    )
    .await);
    jobs_done(server, &ann.id).await;
    server.settle().await;
    BTreeMap::from([
        ("/api/campaigns/{id}", c),
        ("/api/prospects/{id}", p),
        ("/api/emails/{id}", email),
        ("/api/inbox/replies/{id}", reply),
        ("/api/icp-templates/{id}", template),
        ("/api/senders/{id}", sender),
        ("/api/jobs/{id}", job),
        ("/api/campaigns/{id}/sending/unknown/{queue_id}", unknown),
    ])
}

/// A send of `campaign` whose outcome is unknown (its process died during
/// the provider call): the row the unknown-send routes resolve by hand.
async fn unknown_send(server: &TestServer, campaign: &str, prospect: &str) -> String {
    let email = email_row(server, campaign, prospect, "approved", 1).await;
    let id = uuid::Uuid::now_v7().to_string();
    sqlx::query(
        "INSERT INTO campaign_sending_queue \
         (id, campaign_id, prospect_id, generated_email_id, status, scheduled_for, attempts, \
          message_id, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'unknown', 1, 1, $5, 1, 1)",
    )
    .bind(&id)
    .bind(campaign)
    .bind(prospect)
    .bind(&email)
    .bind(format!("<{id}@koldly.test>"))
    .execute(server.pool())
    .await
    .unwrap();
    id
}

/// How many rows each table holds, from the database's own catalogue.
async fn row_counts(server: &TestServer, backend: Backend) -> BTreeMap<String, i64> {
    let tables_sql = match backend {
        Backend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table'",
        Backend::Postgres => {
            "SELECT CAST(table_name AS TEXT) FROM information_schema.tables \
             WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        }
    };
    let tables: Vec<String> = sqlx::query_scalar(tables_sql)
        .fetch_all(server.pool())
        .await
        .unwrap();
    let mut counts = BTreeMap::new();
    for table in tables {
        if CHANGED_BY_ANY_REQUEST.iter().any(|(t, _)| *t == table) {
            continue;
        }
        // The name comes from the database's catalogue, never from input.
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM \"{table}\""
        )))
        .fetch_one(server.pool())
        .await
        .unwrap();
        counts.insert(table, n);
    }
    counts
}

/// Tables that a refused request may write to by design, and why.
const CHANGED_BY_ANY_REQUEST: &[(&str, &str)] = &[(
    "audit_log",
    "the refused attempts are themselves audited (denied or not-found events)",
)];

/// Ann's view of her resources: every documented GET naming one, as Ann.
async fn anns_view(
    server: &TestServer,
    ann: &User,
    calls: &[Call],
    ids: &BTreeMap<&'static str, String>,
) -> Vec<(String, u16, Value)> {
    let mut view = Vec::new();
    for call in calls.iter().filter(|c| c.method == "GET") {
        let path = fill(
            &call.template,
            call.resources.iter().map(|r| ids[r.as_str()].clone()),
        );
        let reply = get(server, ann, &path).await;
        let body = if reply.body.is_empty() {
            Value::Null
        } else {
            reply.json()
        };
        view.push((path, reply.status.as_u16(), body));
    }
    view
}

/// The parts of a problem that must not tell a foreign id from a missing one.
fn shape(reply: &Reply) -> Value {
    let problem = reply.json();
    json!({
        "status": reply.status.as_u16(),
        "content-type": reply.content_type(),
        "type": problem["type"],
        "title": problem["title"],
        "detail": problem["detail"],
        "errors": problem["errors"],
    })
}

async fn every_documented_id_route_refuses_another_account(backend: Backend) {
    let server = TestServer::start(backend, with_key).await;
    let doc = server.api.document().clone();
    let ann = user_on(&server, "ann@example.com", "growth").await;
    let eve = user_on(&server, "eve@example.com", "growth").await;
    let ids = create_fixtures(&server, &ann, "ann").await;
    // Eve's own resources, for the members of her bodies that name one.
    let eves = create_fixtures(&server, &eve, "eve").await;
    let keys: Vec<&str> = ids.keys().copied().collect();
    let calls = plan(&doc, &keys).unwrap_or_else(|uncovered| panic!("{uncovered}"));
    // A floor against a matrix that silently shrinks (a broken document
    // reader would find nothing to call and pass).
    assert!(calls.len() >= 30, "only {} calls: {calls:?}", calls.len());

    let counts_before = row_counts(&server, backend).await;
    let rows_before = snapshot(&server).await;
    let view_before = anns_view(&server, &ann, &calls, &ids).await;

    let mut failures = Vec::new();
    for call in &calls {
        let operation = &doc["paths"][&call.template][call.method.to_lowercase()];
        let foreign_path = fill(
            &call.template,
            call.resources.iter().map(|r| ids[r.as_str()].clone()),
        );
        let missing_path = fill(
            &call.template,
            call.resources
                .iter()
                .map(|_| uuid::Uuid::now_v7().to_string()),
        );
        // The required members first; a body refused as it is (a PATCH that
        // changes nothing) again with every documented member.
        let mut tried = Vec::new();
        for members in [Members::Required, Members::All] {
            let body = request_body(&doc, operation, members, &eves);
            let (content_type, text) = match &body {
                Some((t, b)) => (Some(t.as_str()), b.clone()),
                None => (None, String::new()),
            };
            let mut replies = Vec::new();
            for path in [&foreign_path, &missing_path] {
                replies.push(
                    request(
                        &server,
                        Some(&eve),
                        &call.method,
                        path,
                        content_type,
                        &text,
                        None,
                    )
                    .await,
                );
            }
            let refused_body = replies[0].status == 422;
            tried.push((text, replies));
            if body.is_none() || !refused_body {
                break;
            }
        }
        let (text, replies) = tried.pop().expect("a call was made");
        let (foreign, missing) = (&replies[0], &replies[1]);
        let label = format!("{} {} (body {text:?})", call.method, call.template);
        if foreign.status != 404 || foreign.content_type() != "application/problem+json" {
            failures.push(format!(
                "{label}: another account's id answered {} {}: {}",
                foreign.status,
                foreign.content_type(),
                String::from_utf8_lossy(&foreign.body)
            ));
        } else if shape(foreign) != shape(missing) {
            failures.push(format!(
                "{label}: another account's id answered {} but a missing one {}",
                shape(foreign),
                shape(missing)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cross-tenant calls failed:\n{}",
        failures.len(),
        calls.len(),
        failures.join("\n")
    );
    server.settle().await;
    assert_eq!(
        row_counts(&server, backend).await,
        counts_before,
        "row counts"
    );
    assert_eq!(snapshot(&server).await, rows_before, "Ann's rows");
    assert_eq!(
        anns_view(&server, &ann, &calls, &ids).await,
        view_before,
        "Ann's view of her resources"
    );
    println!(
        "FIGURE tenancy matrix ({backend:?}): {} documented calls with an id as another account, \
         {} resources, {} routes excluded ({:?})",
        calls.len(),
        ids.len(),
        NOT_OWNED.len(),
        NOT_OWNED.iter().map(|(t, _)| *t).collect::<Vec<_>>()
    );
    server.stop().await;
}

on_both!(every_documented_id_route_refuses_another_account);

/// A documented route naming a resource without a fixture fails the matrix
/// with its name; the excluded token route does not.
#[test]
fn a_route_without_a_fixture_is_named() {
    let doc = json!({"paths": {
        "/api/campaigns/{id}": {"get": {}, "delete": {}},
        "/api/campaigns/{id}/widgets/{widget}": {"put": {}},
        "/api/widgets/{id}": {"post": {}},
        "/u/{token}": {"get": {}},
        "/api/campaigns": {"get": {}},
    }});
    let err = plan(&doc, &["/api/campaigns/{id}"]).unwrap_err();
    assert!(err.contains("POST /api/widgets/{id}"), "{err}");
    assert!(
        err.contains("PUT /api/campaigns/{id}/widgets/{widget}"),
        "{err}"
    );
    assert!(
        err.contains("/api/campaigns/{id}/widgets/{widget}\"]"),
        "{err}"
    );
    assert!(!err.contains("/u/{token}"), "{err}");
    let calls = plan(
        &doc,
        &[
            "/api/campaigns/{id}",
            "/api/campaigns/{id}/widgets/{widget}",
            "/api/widgets/{id}",
        ],
    )
    .unwrap();
    assert_eq!(calls.len(), 4, "{calls:?}");
    // Sorted by method, then path; a parameter per resource.
    assert_eq!(calls[2].resources, ["/api/widgets/{id}"], "{calls:?}");
    assert_eq!(
        calls[3].resources,
        [
            "/api/campaigns/{id}",
            "/api/campaigns/{id}/widgets/{widget}"
        ],
        "{calls:?}"
    );
}

/// A body's `{kind}_id(s)` members name the caller's own resource of that kind.
#[test]
fn body_ids_name_the_callers_own_resources() {
    assert_eq!(kind("/api/senders/{id}"), "sender");
    assert_eq!(kind("/api/icp-templates/{id}"), "icp_template");
    assert_eq!(kind("/api/inbox/replies/{id}"), "reply");
    let own = BTreeMap::from([
        ("/api/senders/{id}", "s1".to_owned()),
        ("/api/prospects/{id}", "p1".to_owned()),
    ]);
    let mut body = json!({"sender_id": "x", "prospect_ids": ["x", "x"],
                          "step": {"sender_id": "x"}, "widget_id": "x"});
    refer_to_own(&mut body, &own);
    assert_eq!(
        body,
        json!({"sender_id": "s1", "prospect_ids": ["p1", "p1"],
               "step": {"sender_id": "s1"}, "widget_id": "x"})
    );
}

/// The bodies the matrix sends are small valid instances of the documented
/// schemas: required members only, each within its bounds.
#[test]
fn bodies_are_small_valid_instances_of_their_schemas() {
    let doc = json!({"components": {"schemas": {
        "Step": {"type": "object", "required": ["delay_days"],
                 "properties": {"delay_days": {"type": "integer", "minimum": 2}}},
    }}});
    let schema = json!({
        "type": "object",
        "required": ["name", "steps", "kind", "email", "note"],
        "properties": {
            "name": {"type": "string", "minLength": 3},
            "steps": {"type": "array", "minItems": 2, "items": {"$ref": "#/components/schemas/Step"}},
            "kind": {"type": ["string", "null"], "enum": [null, "a", "b"]},
            "email": {"type": "string", "format": "email"},
            "note": {"oneOf": [{"type": "null"}, {"type": "string"}]},
            "optional": {"type": "string"},
        }
    });
    assert_eq!(
        example(&doc, &schema, Members::Required),
        json!({"name": "xxx", "steps": [{"delay_days": 2}, {"delay_days": 2}],
               "kind": "a", "email": "lead@example.com", "note": "x"})
    );
}
