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

on_both!(odd_ids_and_nul_characters);
