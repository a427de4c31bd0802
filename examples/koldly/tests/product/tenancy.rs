//! Tenancy: every product route called with another account's ids answers
//! exactly what a missing id gets, and changes nothing in the database.

use serde_json::{Value, json};

use crate::client::{campaign, email_row, emails, get, import, json, request, snapshot, user_on};
use crate::on_both;
use crate::support::{Backend, Reply, TestServer};

/// The parts of a 404 problem that must not tell a foreign id from a missing one.
fn shape(res: &Reply) -> (u16, Value, Value, Value) {
    let problem = res.assert_problem(res.status.as_u16());
    (
        res.status.as_u16(),
        problem["type"].clone(),
        problem["title"].clone(),
        problem["detail"].clone(),
    )
}

async fn foreign_ids_are_not_found_and_change_nothing(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let ann = user_on(&server, "ann@example.com", "growth").await;
    let eve = user_on(&server, "eve@example.com", "growth").await;

    // Ann's data: a campaign with prospects and an email, an archived
    // campaign, a template, and her onboarding.
    let template = json(
        &server,
        &ann,
        "POST",
        "/api/icp-templates",
        json!({"name": "Ann's ICP", "description": "secret"}),
    )
    .await
    .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let live = campaign(&server, &ann, "Live").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let archived = campaign(&server, &ann, "Old").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    json(
        &server,
        &ann,
        "PUT",
        &format!("/api/campaigns/{archived}/archive"),
        Value::Null,
    )
    .await;
    import(&server, &ann, &live, &emails("ann-lead", 2)).await;
    let prospect: String =
        sqlx::query_scalar("SELECT id FROM prospects WHERE campaign_id = $1 LIMIT 1")
            .bind(&live)
            .fetch_one(server.pool())
            .await
            .unwrap();
    let email = email_row(&server, &live, &prospect, "draft", 1).await;
    let onboarded = json(
        &server,
        &ann,
        "POST",
        "/api/onboarding",
        json!({"product_description": "P", "icp_description": "I", "sender_name": "Ann"}),
    )
    .await;
    assert_eq!(onboarded.status, 201);

    let before = snapshot(&server).await;
    let patch = json!({"name": "pwned", "description": null}).to_string();
    let rows = json!([{"email": "eve@example.com"}]).to_string();
    let template_patch = json!({"name": "pwned", "is_favorite": true}).to_string();
    // (method, path template with {id}, the id, content type, body)
    let calls: Vec<(&str, String, &str, Option<&str>, String)> = vec![
        (
            "GET",
            "/api/campaigns/{id}".into(),
            &live,
            None,
            String::new(),
        ),
        (
            "PATCH",
            "/api/campaigns/{id}".into(),
            &live,
            Some("application/json"),
            patch.clone(),
        ),
        (
            "POST",
            "/api/campaigns/{id}/duplicate".into(),
            &live,
            None,
            String::new(),
        ),
        (
            "PUT",
            "/api/campaigns/{id}/archive".into(),
            &live,
            None,
            String::new(),
        ),
        (
            "PUT",
            "/api/campaigns/{id}/unarchive".into(),
            &archived,
            None,
            String::new(),
        ),
        (
            "DELETE",
            "/api/campaigns/{id}".into(),
            &live,
            None,
            String::new(),
        ),
        (
            "POST",
            "/api/campaigns/{id}/prospects".into(),
            &live,
            Some("application/json"),
            rows.clone(),
        ),
        (
            "POST",
            "/api/campaigns/{id}/prospects".into(),
            &live,
            Some("text/csv"),
            "email\neve@example.com\n".into(),
        ),
        (
            "GET",
            "/api/campaigns/{id}/prospects".into(),
            &live,
            None,
            String::new(),
        ),
        (
            "DELETE",
            "/api/prospects/{id}".into(),
            &prospect,
            None,
            String::new(),
        ),
        (
            "PATCH",
            "/api/icp-templates/{id}".into(),
            &template,
            Some("application/json"),
            template_patch.clone(),
        ),
        (
            "DELETE",
            "/api/icp-templates/{id}".into(),
            &template,
            None,
            String::new(),
        ),
        (
            "POST",
            "/api/campaigns/{id}/emails/generate".into(),
            &live,
            None,
            String::new(),
        ),
        (
            "POST",
            "/api/campaigns/{id}/emails/generate".into(),
            &live,
            Some("application/json"),
            json!({"prospect_ids": [prospect]}).to_string(),
        ),
        (
            "GET",
            "/api/emails/{id}".into(),
            &email,
            None,
            String::new(),
        ),
        (
            "PATCH",
            "/api/emails/{id}".into(),
            &email,
            Some("application/json"),
            json!({"subject": "pwned", "body": "pwned"}).to_string(),
        ),
        (
            "POST",
            "/api/emails/{id}/approve".into(),
            &email,
            None,
            String::new(),
        ),
        (
            "POST",
            "/api/emails/{id}/reject".into(),
            &email,
            Some("application/json"),
            json!({"reason": "pwned"}).to_string(),
        ),
        (
            "POST",
            "/api/emails/{id}/regenerate".into(),
            &email,
            Some("application/json"),
            json!({"feedback": "pwned"}).to_string(),
        ),
    ];
    for (method, path, id, content_type, body) in &calls {
        let foreign = request(
            &server,
            Some(&eve),
            method,
            &path.replace("{id}", id),
            *content_type,
            body,
            None,
        )
        .await;
        assert_eq!(
            foreign.status,
            404,
            "{method} {path}: {}",
            String::from_utf8_lossy(&foreign.body)
        );
        let missing_id = uuid::Uuid::now_v7().to_string();
        let missing = request(
            &server,
            Some(&eve),
            method,
            &path.replace("{id}", &missing_id),
            *content_type,
            body,
            None,
        )
        .await;
        assert_eq!(
            shape(&foreign),
            shape(&missing),
            "{method} {path}: foreign and missing look alike"
        );
    }
    // A foreign template is refused like a missing one, and creates nothing.
    let foreign = json(
        &server,
        &eve,
        "POST",
        "/api/campaigns",
        json!({"name": "X", "icp_template_id": template}),
    )
    .await;
    let missing = json(
        &server,
        &eve,
        "POST",
        "/api/campaigns",
        json!({"name": "X", "icp_template_id": "no-such-id"}),
    )
    .await;
    assert_eq!(shape(&foreign), shape(&missing));
    assert_eq!(foreign.status, 422);
    // Eve's bulk approval of Ann's email reports it as not found.
    let bulk = json(
        &server,
        &eve,
        "POST",
        "/api/emails/approve",
        json!({"ids": [email]}),
    )
    .await;
    assert_eq!(bulk.status, 200);
    assert_eq!(
        bulk.json(),
        json!({"approved": [], "failed": [{"id": email, "reason": "not found"}]})
    );
    // Eve's approval queue holds nothing of Ann's, even filtered by her campaign.
    assert_eq!(
        get(&server, &eve, &format!("/api/approvals?campaign_id={live}"))
            .await
            .json()["items"],
        json!([])
    );
    assert_eq!(
        get(&server, &eve, "/api/approvals/counts").await.json(),
        json!({"total": 0, "campaigns": []})
    );
    // Eve's lists hold nothing of Ann's.
    for path in ["/api/campaigns?status=all", "/api/icp-templates"] {
        assert_eq!(
            get(&server, &eve, path).await.json()["items"],
            json!([]),
            "{path}"
        );
    }
    assert_eq!(
        get(&server, &eve, "/api/onboarding").await.json(),
        json!({"completed": false})
    );

    assert_eq!(snapshot(&server).await, before, "nothing changed");
    server.stop().await;
}

on_both!(foreign_ids_are_not_found_and_change_nothing);
