//! Campaign routes: create, read, update, list (stats, filters, pages),
//! duplicate, archive, delete, bad inputs, idempotency and audit.

use serde_json::json;

use crate::client::{
    audited, campaign, count, email_row, emails, get, import, json, queue_row, request, user,
    user_on,
};
use crate::on_both;
use crate::support::{Backend, TestServer};

async fn create_read_update_and_audit(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let ann = user(&server, "ann@example.com").await;
    let res = json(
        &server,
        &ann,
        "POST",
        "/api/campaigns",
        json!({
            "name": "  Q3 founders ",
            "description": "Seed-stage founders",
            "product_description": "A CRM",
            "target_industry": "SaaS",
            "daily_send_limit": 30
        }),
    )
    .await;
    assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
    let created = res.json();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        res.headers["location"].to_str().unwrap(),
        format!("/api/campaigns/{id}")
    );
    assert_eq!(created["name"], "Q3 founders", "trimmed");
    assert_eq!(created["status"], "draft");
    assert_eq!(created["archived"], false);
    assert_eq!(created["daily_send_limit"], 30);
    assert_eq!(
        created["stats"],
        json!({"prospects": 0, "emails_drafted": 0, "emails_approved": 0, "emails_sent": 0})
    );
    assert_eq!(
        count(
            &server,
            "SELECT COUNT(*) AS n FROM campaigns WHERE user_id = $1",
            &ann.id
        )
        .await,
        1
    );

    let path = format!("/api/campaigns/{id}");
    let shown = get(&server, &ann, &path).await;
    assert_eq!(shown.status, 200);
    assert_eq!(shown.json()["description"], "Seed-stage founders");

    let res = json(
        &server,
        &ann,
        "PATCH",
        &path,
        json!({"name": "Q4 founders", "description": null, "status": "paused"}),
    )
    .await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    let updated = res.json();
    assert_eq!(updated["name"], "Q4 founders");
    assert_eq!(
        updated["description"],
        serde_json::Value::Null,
        "null clears"
    );
    assert_eq!(
        updated["product_description"], "A CRM",
        "absent fields stay"
    );
    assert_eq!(updated["status"], "paused");
    assert_eq!(
        get(&server, &ann, &path).await.json()["name"],
        "Q4 founders"
    );

    for (action, target) in [("campaign.create", &id), ("campaign.update", &id)] {
        let records = audited(&server, action).await;
        assert_eq!(records.len(), 1, "{action}");
        assert_eq!(records[0].outcome, "success");
        assert_eq!(records[0].actor.as_deref(), Some(ann.id.as_str()));
        assert_eq!(records[0].target_type.as_deref(), Some("campaign"));
        assert_eq!(records[0].target_id.as_deref(), Some(target.as_str()));
    }
    server.stop().await;
}

async fn list_counts_prospects_and_emails_per_campaign(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let ann = user_on(&server, "ann@example.com", "growth").await;
    let first = campaign(&server, &ann, "First").await;
    let second = campaign(&server, &ann, "Second").await;
    let first_id = first["id"].as_str().unwrap();
    assert_eq!(
        import(&server, &ann, first_id, &emails("p", 3))
            .await
            .status,
        200
    );
    let prospects: Vec<String> = sqlx::query_scalar::<_, String>(
        "SELECT id FROM prospects WHERE campaign_id = $1 ORDER BY email",
    )
    .bind(first_id)
    .fetch_all(server.pool())
    .await
    .unwrap();
    for (prospect, status) in prospects
        .iter()
        .zip(["draft", "approved", "sent"])
        .chain([(&prospects[0], "draft")])
    {
        email_row(&server, first_id, prospect, status, 1).await;
    }

    let res = get(&server, &ann, "/api/campaigns").await;
    assert_eq!(res.status, 200);
    let page = res.json();
    assert_eq!(page["next_cursor"], serde_json::Value::Null);
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], second["id"], "newest first");
    assert_eq!(
        items[1]["stats"],
        json!({"prospects": 3, "emails_drafted": 2, "emails_approved": 1, "emails_sent": 1})
    );
    assert_eq!(items[0]["stats"]["prospects"], 0);
    let shown = get(&server, &ann, &format!("/api/campaigns/{first_id}")).await;
    assert_eq!(shown.json()["stats"], items[1]["stats"]);
    server.stop().await;
}

async fn pages_are_stable_under_inserts(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let ann = user_on(&server, "ann@example.com", "scale").await;
    let mut made = Vec::new();
    for i in 0..5 {
        made.push(campaign(&server, &ann, &format!("C{i}")).await["id"].clone());
    }
    made.reverse(); // newest first
    let first = get(&server, &ann, "/api/campaigns?limit=2").await.json();
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    // A campaign created between pages goes to the front, not into later pages.
    campaign(&server, &ann, "Late").await;
    let second = get(
        &server,
        &ann,
        &format!("/api/campaigns?limit=2&cursor={cursor}"),
    )
    .await
    .json();
    let cursor = second["next_cursor"].as_str().unwrap().to_owned();
    let third = get(
        &server,
        &ann,
        &format!("/api/campaigns?limit=2&cursor={cursor}"),
    )
    .await
    .json();
    assert_eq!(third["next_cursor"], serde_json::Value::Null);
    let seen: Vec<_> = [&first, &second, &third]
        .iter()
        .flat_map(|p| {
            p["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].clone())
        })
        .collect();
    assert_eq!(seen, made);
    let all = get(&server, &ann, "/api/campaigns?limit=100").await.json();
    assert_eq!(all["items"].as_array().unwrap().len(), 6);
    server.stop().await;
}

async fn list_refuses_bad_parameters(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let ann = user(&server, "ann@example.com").await;
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("cursor=bm90LWEtY3Vyc29y", "cursor"),
        ("cursor=%27%20OR%201%3D1", "cursor"),
        ("status=deleted", "status"),
    ] {
        let res = get(&server, &ann, &format!("/api/campaigns?{query}")).await;
        let problem = res.assert_problem(400);
        assert_eq!(problem["errors"][0]["field"], field, "{query}");
    }
    let res = request(&server, None, "GET", "/api/campaigns", None, "", None).await;
    res.assert_problem(401);
    server.stop().await;
}

async fn archive_is_independent_of_status(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let ann = user(&server, "ann@example.com").await;
    let id = campaign(&server, &ann, "Running").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/campaigns/{id}");
    json(&server, &ann, "PATCH", &path, json!({"status": "active"})).await;
    let res = json(
        &server,
        &ann,
        "PUT",
        &format!("{path}/archive"),
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(res.status, 200);
    let archived = res.json();
    assert_eq!(archived["archived"], true);
    assert_eq!(archived["status"], "active", "the lifecycle status stays");
    let archived_at = archived["archived_at"].clone();
    // Archiving again changes nothing.
    let again = json(
        &server,
        &ann,
        "PUT",
        &format!("{path}/archive"),
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(again.json()["archived_at"], archived_at);

    let listed = |q: &'static str| {
        let server = &server;
        let ann = &ann;
        async move {
            get(server, ann, &format!("/api/campaigns{q}")).await.json()["items"]
                .as_array()
                .unwrap()
                .len()
        }
    };
    assert_eq!(listed("").await, 0, "active is the default filter");
    assert_eq!(listed("?status=archived").await, 1);
    assert_eq!(listed("?status=all").await, 1);

    let res = json(
        &server,
        &ann,
        "PUT",
        &format!("{path}/unarchive"),
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(res.status, 200);
    let back = res.json();
    assert_eq!(back["archived"], false);
    assert_eq!(back["archived_at"], serde_json::Value::Null);
    assert_eq!(
        back["status"], "active",
        "unarchive restores what was there"
    );
    assert_eq!(listed("").await, 1);
    assert_eq!(audited(&server, "campaign.archive").await.len(), 2);
    assert_eq!(audited(&server, "campaign.unarchive").await.len(), 1);
    server.stop().await;
}

async fn duplicate_copies_content_not_prospects(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let ann = user_on(&server, "ann@example.com", "growth").await;
    let res = json(
        &server,
        &ann,
        "POST",
        "/api/campaigns",
        json!({"name": "Base", "description": "ICP", "status": "active", "daily_send_limit": 7}),
    )
    .await;
    let id = res.json()["id"].as_str().unwrap().to_owned();
    import(&server, &ann, &id, &emails("d", 2)).await;
    let res = json(
        &server,
        &ann,
        "POST",
        &format!("/api/campaigns/{id}/duplicate"),
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
    let copy = res.json();
    assert_ne!(copy["id"], json!(id));
    assert_eq!(copy["name"], "Base (copy)");
    assert_eq!(copy["description"], "ICP");
    assert_eq!(copy["daily_send_limit"], 7);
    assert_eq!(copy["status"], "draft");
    assert_eq!(copy["stats"]["prospects"], 0);
    let named = json(
        &server,
        &ann,
        "POST",
        &format!("/api/campaigns/{id}/duplicate"),
        json!({"name": "Named"}),
    )
    .await;
    assert_eq!(named.status, 201);
    assert_eq!(named.json()["name"], "Named");
    let bad = json(
        &server,
        &ann,
        "POST",
        &format!("/api/campaigns/{id}/duplicate"),
        json!({"name": ""}),
    )
    .await;
    assert_eq!(bad.assert_problem(422)["errors"][0]["field"], "name");
    let missing = json(
        &server,
        &ann,
        "POST",
        "/api/campaigns/nope/duplicate",
        serde_json::Value::Null,
    )
    .await;
    missing.assert_problem(404);
    assert_eq!(
        count(
            &server,
            "SELECT COUNT(*) AS n FROM campaigns WHERE user_id = $1",
            &ann.id
        )
        .await,
        3
    );
    server.stop().await;
}

async fn delete_takes_prospects_emails_and_queue(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let ann = user_on(&server, "ann@example.com", "growth").await;
    let doomed = campaign(&server, &ann, "Doomed").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let kept = campaign(&server, &ann, "Kept").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for c in [&doomed, &kept] {
        import(&server, &ann, c, &emails(&format!("x{}", &c[..8]), 2)).await;
        let prospect: String =
            sqlx::query_scalar("SELECT id FROM prospects WHERE campaign_id = $1 LIMIT 1")
                .bind(c)
                .fetch_one(server.pool())
                .await
                .unwrap();
        let email = email_row(&server, c, &prospect, "approved", 1).await;
        queue_row(&server, c, &prospect, &email).await;
    }
    let res = json(
        &server,
        &ann,
        "DELETE",
        &format!("/api/campaigns/{doomed}"),
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(res.status, 204);
    for table in ["prospects", "generated_emails", "campaign_sending_queue"] {
        let sql = format!("SELECT COUNT(*) AS n FROM {table} WHERE campaign_id = $1");
        assert_eq!(count(&server, &sql, &doomed).await, 0, "{table}");
        assert!(
            count(&server, &sql, &kept).await > 0,
            "{table} of the other campaign"
        );
    }
    get(&server, &ann, &format!("/api/campaigns/{doomed}"))
        .await
        .assert_problem(404);
    json(
        &server,
        &ann,
        "DELETE",
        &format!("/api/campaigns/{doomed}"),
        serde_json::Value::Null,
    )
    .await
    .assert_problem(404);
    let records = audited(&server, "campaign.delete").await;
    assert_eq!(
        records
            .iter()
            .map(|r| r.outcome.as_str())
            .collect::<Vec<_>>(),
        ["success", "failure"]
    );
    server.stop().await;
}

async fn bad_campaign_bodies_name_the_field(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let ann = user(&server, "ann@example.com").await;
    let long = "x".repeat(201);
    for (body, status, field) in [
        (json!({}), 422, "name"),
        (json!({"name": ""}), 422, "name"),
        (json!({"name": long}), 422, "name"),
        (json!({"name": 5}), 422, "name"),
        (json!({"name": "A", "status": "archived"}), 422, "status"),
        (json!({"name": "A", "status": "bogus"}), 422, "status"),
        (
            json!({"name": "A", "daily_send_limit": 0}),
            422,
            "daily_send_limit",
        ),
        (
            json!({"name": "A", "daily_send_limit": "many"}),
            422,
            "daily_send_limit",
        ),
        (
            json!({"name": "A", "description": "d".repeat(5001)}),
            422,
            "description",
        ),
        (json!({"name": "A", "colour": "red"}), 422, "colour"),
        (
            json!({"name": "A", "icp_template_id": "nope"}),
            422,
            "icp_template_id",
        ),
        (json!("a campaign"), 422, "body"),
    ] {
        let res = json(&server, &ann, "POST", "/api/campaigns", body.clone()).await;
        let problem = res.assert_problem(status);
        assert_eq!(problem["errors"][0]["field"], field, "{body}");
        assert!(problem["errors"][0]["message"].is_string());
    }
    let res = request(
        &server,
        Some(&ann),
        "POST",
        "/api/campaigns",
        Some("application/json"),
        "{\"name\": ",
        None,
    )
    .await;
    assert_eq!(res.assert_problem(400)["errors"][0]["field"], "body");
    let res = request(
        &server,
        Some(&ann),
        "POST",
        "/api/campaigns",
        Some("text/plain"),
        "name=A",
        None,
    )
    .await;
    res.assert_problem(415);
    let res = request(
        &server,
        None,
        "POST",
        "/api/campaigns",
        Some("application/json"),
        r#"{"name":"A"}"#,
        None,
    )
    .await;
    res.assert_problem(401);
    // PATCH: null for a required field, an archived status, a wrong type.
    let id = campaign(&server, &ann, "Real").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/campaigns/{id}");
    for (body, field) in [
        (json!({"name": null}), "name"),
        (json!({"status": "archived"}), "status"),
        (json!({"daily_send_limit": 1001}), "daily_send_limit"),
        (json!({"target_industry": ["a"]}), "target_industry"),
    ] {
        let res = json(&server, &ann, "PATCH", &path, body.clone()).await;
        assert_eq!(
            res.assert_problem(422)["errors"][0]["field"],
            field,
            "{body}"
        );
    }
    assert_eq!(get(&server, &ann, &path).await.json()["name"], "Real");
    assert_eq!(
        count(
            &server,
            "SELECT COUNT(*) AS n FROM campaigns WHERE user_id = $1",
            &ann.id
        )
        .await,
        1
    );
    server.stop().await;
}

async fn create_is_idempotent_per_user(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let ann = user(&server, "ann@example.com").await;
    let bob = user(&server, "bob@example.com").await;
    let send = |who| {
        let server = &server;
        async move {
            request(
                server,
                Some(who),
                "POST",
                "/api/campaigns",
                Some("application/json"),
                r#"{"name":"Once"}"#,
                Some("key-1"),
            )
            .await
        }
    };
    let first = send(&ann).await;
    let replay = send(&ann).await;
    assert_eq!(first.status, 201);
    assert_eq!(replay.status, 201);
    assert_eq!(first.json()["id"], replay.json()["id"]);
    let bobs = send(&bob).await;
    assert_eq!(bobs.status, 201, "the key is scoped by user");
    assert_ne!(bobs.json()["id"], first.json()["id"]);
    for who in [&ann, &bob] {
        assert_eq!(
            count(
                &server,
                "SELECT COUNT(*) AS n FROM campaigns WHERE user_id = $1",
                &who.id
            )
            .await,
            1
        );
    }
    server.stop().await;
}

on_both!(
    create_read_update_and_audit,
    list_counts_prospects_and_emails_per_campaign,
    pages_are_stable_under_inserts,
    list_refuses_bad_parameters,
    archive_is_independent_of_status,
    duplicate_copies_content_not_prospects,
    delete_takes_prospects_emails_and_queue,
    bad_campaign_bodies_name_the_field,
    create_is_idempotent_per_user,
);
