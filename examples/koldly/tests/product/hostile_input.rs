//! Hostile input never reaches the database as a failure: odd ids are 404s,
//! NUL characters (which PostgreSQL text cannot hold) are 400s naming the
//! field (koldly's edge check of JSON and query text) or, inside a CSV import,
//! invalid rows, and nothing is a 500.

use serde_json::{Value, json};

use crate::client::{campaign, count, json, request, snapshot, user_on};
use crate::on_both;
use crate::support::{Backend, TestServer};

async fn odd_ids_and_nul_characters(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let ann = user_on(&server, "ann@example.com", "growth").await;
    let id = campaign(&server, &ann, "C").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = snapshot(&server).await;
    let long = "a".repeat(2000);
    for odd in [
        "%00",
        "x'%3B%20DROP%20TABLE%20campaigns%3B--",
        "%E2%80%AE",
        long.as_str(),
    ] {
        for (method, path) in [
            ("GET", format!("/api/campaigns/{odd}")),
            ("PATCH", format!("/api/campaigns/{odd}")),
            ("DELETE", format!("/api/campaigns/{odd}")),
            ("POST", format!("/api/campaigns/{odd}/duplicate")),
            ("PUT", format!("/api/campaigns/{odd}/archive")),
            ("PUT", format!("/api/campaigns/{odd}/unarchive")),
            ("GET", format!("/api/campaigns/{odd}/prospects")),
            ("POST", format!("/api/campaigns/{odd}/prospects")),
            ("DELETE", format!("/api/prospects/{odd}")),
            ("PATCH", format!("/api/icp-templates/{odd}")),
            ("DELETE", format!("/api/icp-templates/{odd}")),
        ] {
            let body = if path.ends_with("prospects") {
                r#"[{"email":"a@example.com"}]"#
            } else {
                r#"{"name":"x"}"#
            };
            let res = request(
                &server,
                Some(&ann),
                method,
                &path,
                Some("application/json"),
                body,
                None,
            )
            .await;
            res.assert_problem(404);
        }
    }
    for (path, body, field) in [
        ("/api/campaigns", json!({"name": "a\u{0}b"}), "name"),
        (
            "/api/campaigns",
            json!({"name": "A", "icp_template_id": "'; --\u{0}"}),
            "icp_template_id",
        ),
        (
            "/api/icp-templates",
            json!({"name": "T", "pain_points": ["\u{0}"]}),
            "pain_points[0]",
        ),
        (
            "/api/onboarding",
            json!({"product_description": "P\u{0}", "icp_description": "I", "sender_name": "S"}),
            "product_description",
        ),
    ] {
        let res = json(&server, &ann, "POST", path, body.clone()).await;
        assert_eq!(res.assert_problem(400)["field"], field, "{body}");
    }
    let res = json(
        &server,
        &ann,
        "PATCH",
        &format!("/api/campaigns/{id}"),
        json!({"description": "\u{0}"}),
    )
    .await;
    assert_eq!(res.assert_problem(400)["field"], "description");
    for query in ["status=%00", "cursor=%00", "limit=%00"] {
        request(
            &server,
            Some(&ann),
            "GET",
            &format!("/api/campaigns?{query}"),
            None,
            "",
            None,
        )
        .await
        .assert_problem(400);
    }
    assert_eq!(snapshot(&server).await, before, "nothing changed");

    // In an import, a NUL makes its row invalid; the others go in.
    let path = format!("/api/campaigns/{id}/prospects");
    let csv = "email,company\nann@example.com,Ac\u{0}me\nbob@example.com,Bob Inc\n";
    let res = request(
        &server,
        Some(&ann),
        "POST",
        &path,
        Some("text/csv"),
        csv,
        None,
    )
    .await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    let summary = res.json();
    assert_eq!(summary["imported"], 1);
    assert_eq!(summary["invalid"][0]["row"], 1);
    let rows = Value::Array(vec![
        json!({"email": "cy@example.com", "first_name": "C\u{0}"}),
    ]);
    // In a JSON import the edge check refuses the whole request, naming the row.
    let res = json(&server, &ann, "POST", &path, rows).await;
    assert_eq!(res.assert_problem(400)["field"], "[0].first_name");
    assert_eq!(
        count(
            &server,
            "SELECT COUNT(*) AS n FROM prospects WHERE campaign_id = $1",
            &id
        )
        .await,
        1
    );
    server.stop().await;
}

/// A JSON `null` where the document describes an optional, nullable body is
/// no body (schemathesis' finding: it was a 422 "invalid type: null"). Every
/// such operation of the document is called with `null` for an id that does
/// not exist, and answers the 404 it answers without a body; a campaign is
/// duplicated and an email rejected with `null`.
async fn a_null_optional_body_is_no_body(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let ann = user_on(&server, "ann@example.com", "growth").await;
    let doc = server.api.document().clone();
    let mut nullable = Vec::new();
    for (method, template) in crate::support::openapi::documented_operations(&doc) {
        let body = &doc["paths"][&template][method.to_lowercase()]["requestBody"];
        let schema = &body["content"]["application/json"]["schema"];
        let accepts_null = schema["oneOf"]
            .as_array()
            .is_some_and(|options| options.iter().any(|o| o["type"] == "null"));
        if body["required"] != true && accepts_null && template.contains('{') {
            nullable.push((method, template));
        }
    }
    assert!(nullable.len() >= 5, "{nullable:?}");
    for (method, template) in &nullable {
        let path = crate::support::openapi::concrete(template);
        let res = request(
            &server,
            Some(&ann),
            method,
            &path,
            Some("application/json"),
            "null",
            None,
        )
        .await;
        res.assert_problem(404);
    }
    let id = campaign(&server, &ann, "C").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let copy = request(
        &server,
        Some(&ann),
        "POST",
        &format!("/api/campaigns/{id}/duplicate"),
        Some("application/json"),
        "null",
        None,
    )
    .await;
    assert_eq!(copy.status, 201, "{}", String::from_utf8_lossy(&copy.body));
    assert_eq!(copy.json()["name"], "C (copy)");
    server.stop().await;
}

/// The document's bounds of a campaign's name and daily send limit are the
/// ones enforced (schemathesis found the document allowing a `null` name in a
/// PATCH and limits of 0 or 10^18, which were 422s): at the bounds a request
/// is accepted, past them it is a 422 naming the field.
async fn documented_campaign_bounds_are_enforced(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let ann = user_on(&server, "ann@example.com", "growth").await;
    let schemas = &server.api.document()["components"]["schemas"];
    let (create, update) = (
        &schemas["CreateCampaign"]["properties"],
        &schemas["UpdateCampaign"]["properties"],
    );
    let limit = |props: &Value| {
        (
            props["daily_send_limit"]["minimum"].as_i64().unwrap(),
            props["daily_send_limit"]["maximum"].as_i64().unwrap(),
        )
    };
    let (min, max) = limit(create);
    assert_eq!((min, max), (1, 1000));
    assert_eq!(limit(update), (min, max));
    assert_eq!(update["name"]["type"], "string", "a name cannot be cleared");
    let longest = create["name"]["maxLength"].as_u64().unwrap() as usize;
    assert_eq!(update["name"]["maxLength"], longest);

    let made = json(
        &server,
        &ann,
        "POST",
        "/api/campaigns",
        json!({"name": "n".repeat(longest), "daily_send_limit": max}),
    )
    .await;
    assert_eq!(made.status, 201, "{}", String::from_utf8_lossy(&made.body));
    let path = format!("/api/campaigns/{}", made.json()["id"].as_str().unwrap());
    let patched = json(
        &server,
        &ann,
        "PATCH",
        &path,
        json!({"daily_send_limit": min}),
    )
    .await;
    assert_eq!(
        patched.status,
        200,
        "{}",
        String::from_utf8_lossy(&patched.body)
    );
    assert_eq!(patched.json()["daily_send_limit"], min);
    for (method, path, body, field) in [
        (
            "POST",
            "/api/campaigns",
            json!({"name": "n".repeat(longest + 1)}),
            "name",
        ),
        (
            "POST",
            "/api/campaigns",
            json!({"name": "C", "daily_send_limit": max + 1}),
            "daily_send_limit",
        ),
        ("PATCH", path.as_str(), json!({"name": null}), "name"),
        (
            "PATCH",
            path.as_str(),
            json!({"daily_send_limit": min - 1}),
            "daily_send_limit",
        ),
    ] {
        let res = json(&server, &ann, method, path, body).await;
        assert_eq!(
            res.assert_problem(422)["errors"][0]["field"],
            field,
            "{method} {path}"
        );
    }
    server.stop().await;
}

/// The `Idempotency-Key`'s documented length is the one enforced
/// (schemathesis found the document allowing an empty key, a 400): at the
/// bounds a key is accepted, past them it is the layer's `invalid-key` 400.
async fn documented_idempotency_key_bounds_are_enforced(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let ann = user_on(&server, "ann@example.com", "growth").await;
    let doc = server.api.document();
    let key = doc["paths"]["/api/campaigns"]["post"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Idempotency-Key")
        .expect("POST /api/campaigns documents Idempotency-Key");
    let (shortest, longest) = (
        key["schema"]["minLength"].as_u64().unwrap() as usize,
        key["schema"]["maxLength"].as_u64().unwrap() as usize,
    );
    assert_eq!((shortest, longest), (1, 255));
    let create = |key: String| {
        let (server, ann) = (&server, &ann);
        async move {
            request(
                server,
                Some(ann),
                "POST",
                "/api/campaigns",
                Some("application/json"),
                &json!({"name": format!("C{}", key.len())}).to_string(),
                Some(&key),
            )
            .await
        }
    };
    for length in [shortest, longest] {
        let res = create("k".repeat(length)).await;
        assert_eq!(
            res.status,
            201,
            "{length}: {}",
            String::from_utf8_lossy(&res.body)
        );
    }
    for length in [shortest - 1, longest + 1] {
        let res = create("k".repeat(length)).await;
        let problem = res.assert_problem(400);
        assert!(
            problem["type"].as_str().unwrap().ends_with("#invalid-key"),
            "{length}: {problem}"
        );
    }
    server.stop().await;
}

on_both!(
    documented_idempotency_key_bounds_are_enforced,
    odd_ids_and_nul_characters,
    a_null_optional_body_is_no_body,
    documented_campaign_bounds_are_enforced
);
