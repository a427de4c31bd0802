//! ICP template routes: favourites first, updates, deletes, bad inputs, and a
//! campaign created from a template.

use serde_json::{Value, json};

use crate::client::{audited, count, get, json, user};
use crate::on_both;
use crate::support::{Backend, TestServer};

async fn favourites_first_and_pages(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let ann = user(&server, "ann@example.com").await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let res = json(
            &server,
            &ann,
            "POST",
            "/api/icp-templates",
            json!({"name": format!("T{i}"), "job_titles": ["CTO", "VP Eng"], "pain_points": []}),
        )
        .await;
        assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
        let body = res.json();
        assert_eq!(body["job_titles"], json!(["CTO", "VP Eng"]));
        assert_eq!(body["is_favorite"], false);
        assert_eq!(body["use_count"], 0);
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    // T1 becomes a favourite: listed first, then the others newest first.
    let res = json(
        &server,
        &ann,
        "PATCH",
        &format!("/api/icp-templates/{}", ids[1]),
        json!({"is_favorite": true}),
    )
    .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["is_favorite"], true);
    assert_eq!(res.json()["name"], "T1", "other fields stay");
    let expected = [&ids[1], &ids[3], &ids[2], &ids[0]];
    let mut seen = Vec::new();
    let mut path = "/api/icp-templates?limit=1".to_owned();
    loop {
        let page = get(&server, &ann, &path).await.json();
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/icp-templates?limit=1&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, expected.map(String::clone));
    assert_eq!(audited(&server, "icp_template.create").await.len(), 4);
    assert_eq!(audited(&server, "icp_template.update").await.len(), 1);
    server.stop().await;
}

async fn campaign_from_template_copies_description_and_counts_use(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let ann = user(&server, "ann@example.com").await;
    let template = json(
        &server,
        &ann,
        "POST",
        "/api/icp-templates",
        json!({"name": "Founders", "description": "Seed-stage B2B founders"}),
    )
    .await
    .json();
    let template_id = template["id"].as_str().unwrap();
    let res = json(
        &server,
        &ann,
        "POST",
        "/api/campaigns",
        json!({"name": "From template", "icp_template_id": template_id}),
    )
    .await;
    assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
    let campaign = res.json();
    assert_eq!(campaign["description"], "Seed-stage B2B founders");
    assert_eq!(campaign["icp_template_id"], template_id);
    let listed = get(&server, &ann, "/api/icp-templates").await.json();
    assert_eq!(listed["items"][0]["use_count"], 1);

    // Deleting the template leaves the campaign's copy.
    let res = json(
        &server,
        &ann,
        "DELETE",
        &format!("/api/icp-templates/{template_id}"),
        Value::Null,
    )
    .await;
    assert_eq!(res.status, 204);
    let shown = get(
        &server,
        &ann,
        &format!("/api/campaigns/{}", campaign["id"].as_str().unwrap()),
    )
    .await
    .json();
    assert_eq!(shown["description"], "Seed-stage B2B founders");
    assert_eq!(shown["icp_template_id"], Value::Null);
    json(
        &server,
        &ann,
        "DELETE",
        &format!("/api/icp-templates/{template_id}"),
        Value::Null,
    )
    .await
    .assert_problem(404);
    server.stop().await;
}

async fn bad_template_bodies_name_the_field(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let ann = user(&server, "ann@example.com").await;
    let many: Vec<String> = (0..51).map(|i| format!("t{i}")).collect();
    for (body, field) in [
        (json!({}), "name"),
        (json!({"name": "  "}), "name"),
        (json!({"name": "x".repeat(201)}), "name"),
        (json!({"name": "A", "job_titles": "CTO"}), "job_titles"),
        (json!({"name": "A", "job_titles": many}), "job_titles"),
        (
            json!({"name": "A", "pain_points": ["x".repeat(201)]}),
            "pain_points[0]",
        ),
        (json!({"name": "A", "is_favorite": "yes"}), "is_favorite"),
        (
            json!({"name": "A", "company_size": "x".repeat(101)}),
            "company_size",
        ),
    ] {
        let res = json(&server, &ann, "POST", "/api/icp-templates", body.clone()).await;
        assert_eq!(
            res.assert_problem(422)["errors"][0]["field"],
            field,
            "{body}"
        );
    }
    assert_eq!(
        count(
            &server,
            "SELECT COUNT(*) AS n FROM icp_templates WHERE user_id = $1",
            &ann.id
        )
        .await,
        0
    );
    let res = json(
        &server,
        &ann,
        "PATCH",
        "/api/icp-templates/nope",
        json!({"name": "B"}),
    )
    .await;
    res.assert_problem(404);
    server.stop().await;
}

on_both!(
    favourites_first_and_pages,
    campaign_from_template_copies_description_and_counts_use,
    bad_template_bodies_name_the_field,
);
