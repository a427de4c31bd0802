//! The OpenAPI document in tests: which operations the router really routes,
//! which the document lists, and whether a real response matches the schema
//! its operation documents.

use std::collections::BTreeSet;

use axum::{Router, body::Body};
use http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::Reply;

/// Routes that are not API operations: the document itself and its page.
pub const UNDOCUMENTED: &[&str] = &[
    koldly::openapi::OPENAPI_PATH,
    "/docs",
    "/docs/",
    "/docs/{*rest}",
];

/// The methods a route may have (HEAD is GET's, answered by axum itself).
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// Every (method, path template) `router` routes, found without trusting the
/// document: the path templates from the router's own table (its `Debug`
/// output lists them), the methods of each from the `Allow` header of the 405
/// that a `TRACE` (routed nowhere) gets there. No handler runs.
pub async fn routed_operations(router: &Router) -> BTreeSet<(String, String)> {
    let table = format!("{router:?}");
    let paths = route_paths(&table);
    assert!(
        !paths.is_empty(),
        "no path found in the router's Debug output (did axum change its format?): {table:.2000}"
    );
    let mut routed = BTreeSet::new();
    for path in paths {
        if UNDOCUMENTED.contains(&path.as_str()) {
            continue;
        }
        let res = router
            .clone()
            .oneshot(
                Request::builder()
                    .method(Method::TRACE)
                    .uri(concrete(&path))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "TRACE {path} was not refused by the router (a TRACE route, or no route?)"
        );
        let allow = res
            .headers()
            .get(header::ALLOW)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("405 without Allow for {path}"))
            .to_owned();
        let methods: Vec<&str> = allow.split(',').map(str::trim).collect();
        for method in methods {
            if method == "HEAD" && allow.contains("GET") {
                continue;
            }
            assert!(
                METHODS.contains(&method) || method == "HEAD",
                "{method} {path}"
            );
            routed.insert((method.to_owned(), path.clone()));
        }
    }
    routed
}

/// The path templates in a router's `Debug` text: the first `Node`'s
/// `paths` map (`RouteId(n): "/path"`, ...), which is the path router's (the
/// fallback router's comes after it); axum's private paths left out.
fn route_paths(table: &str) -> BTreeSet<String> {
    const START: &str = "node: Node { paths: {";
    let at = table
        .find(START)
        .unwrap_or_else(|| panic!("no route table in {table:.500}"));
    let mut rest = &table[at + START.len()..];
    let mut paths = BTreeSet::new();
    while let Some(entry) = rest.strip_prefix("RouteId(") {
        let close = entry.find("): \"").expect("RouteId(n): \"path\"");
        assert!(entry[..close].bytes().all(|b| b.is_ascii_digit()));
        let path_start = &entry[close + 4..];
        let end = path_start.find('"').expect("the path's closing quote");
        let path = &path_start[..end];
        if !path.contains("__private__axum") {
            paths.insert(path.to_owned());
        }
        rest = &path_start[end + 1..];
        rest = rest.strip_prefix(", ").unwrap_or(rest);
    }
    assert!(
        rest.starts_with('}'),
        "the route table did not end where expected: {rest:.200}"
    );
    paths
}

/// A request path for a template: each `{param}` an id-like value.
pub fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "0190a8f2-0000-7000-8000-000000000001"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Every (method, path template) the document lists.
pub fn documented_operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, _) in item.as_object().expect("path item") {
            if [
                "get", "put", "post", "delete", "options", "head", "patch", "trace",
            ]
            .contains(&method.as_str())
            {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    documented
}

/// The document `router` serves.
pub async fn served_document(router: &Router) -> Value {
    let res = router
        .clone()
        .oneshot(
            Request::get(koldly::openapi::OPENAPI_PATH)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).expect("the document is JSON")
}

/// The document, ready to check responses against.
#[derive(Debug, Clone)]
pub struct ApiSchema {
    doc: Value,
}

impl ApiSchema {
    pub fn new(doc: Value) -> Self {
        Self { doc }
    }

    pub fn document(&self) -> &Value {
        &self.doc
    }

    /// The documented operation for `method` on the request path `path` (a
    /// query string is ignored): the template that matches with the most
    /// literal segments, as the router prefers static segments.
    pub fn operation(&self, method: &str, path: &str) -> Option<(&str, &Value)> {
        let path = path.split('?').next().unwrap_or(path);
        let segments: Vec<&str> = path.split('/').collect();
        let method = method.to_lowercase();
        self.doc["paths"]
            .as_object()?
            .iter()
            .filter_map(|(template, item)| {
                let parts: Vec<&str> = template.split('/').collect();
                let matches = parts.len() == segments.len()
                    && parts
                        .iter()
                        .zip(&segments)
                        .all(|(t, s)| (t.starts_with('{') && !s.is_empty()) || t == s);
                let operation = item.get(&method)?;
                matches.then(|| {
                    let literal = parts.iter().filter(|t| !t.starts_with('{')).count();
                    (literal, template.as_str(), operation)
                })
            })
            .max_by_key(|(literal, _, _)| *literal)
            .map(|(_, template, operation)| (template, operation))
    }

    /// Panics unless `reply` to `method path` is documented: the operation,
    /// its status, its content type, and a body that validates against the
    /// documented schema.
    pub fn check(&self, method: &str, path: &str, reply: &Reply) {
        if let Err(problem) = self.validate(method, path, reply) {
            panic!(
                "{method} {path} answered {} against its OpenAPI document: {problem}\nbody: {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            );
        }
    }

    /// What is wrong with `reply` by the document, if anything.
    pub fn validate(&self, method: &str, path: &str, reply: &Reply) -> Result<(), String> {
        let Some((template, operation)) = self.operation(method, path) else {
            // A request to no route at all: the router's 404/405 problem.
            return if matches!(reply.status.as_u16(), 404 | 405) {
                Ok(())
            } else {
                Err("no documented operation".into())
            };
        };
        let status = reply.status.as_str();
        let response = operation["responses"]
            .get(status)
            .or_else(|| operation["responses"].get("default"))
            .ok_or_else(|| format!("status {status} is not documented for {template}"))?;
        let response = self.resolve(response);
        if reply.body.is_empty() {
            return Ok(());
        }
        let content_type = reply
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .ok_or("a body without a content type")?;
        let content = response["content"].get(&content_type).ok_or_else(|| {
            format!("{content_type} is not documented for {status} of {method} {template}")
        })?;
        let Some(schema) = content.get("schema") else {
            return Ok(());
        };
        let body: Value = serde_json::from_slice(&reply.body)
            .map_err(|e| format!("the {content_type} body is not JSON: {e}"))?;
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.doc["components"],
            "allOf": [schema],
        });
        let validator = jsonschema::validator_for(&root)
            .map_err(|e| format!("the documented schema does not compile: {e}"))?;
        let errors: Vec<String> = validator
            .iter_errors(&body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the body does not match the schema of {status} {method} {template}: {}",
                errors.join("; ")
            ))
        }
    }

    /// A response, its `$ref` followed.
    fn resolve<'a>(&'a self, response: &'a Value) -> &'a Value {
        match response.get("$ref").and_then(Value::as_str) {
            Some(reference) => reference
                .strip_prefix("#/")
                .map(|p| p.split('/').fold(&self.doc, |v, key| &v[key]))
                .unwrap_or(response),
            None => response,
        }
    }
}
