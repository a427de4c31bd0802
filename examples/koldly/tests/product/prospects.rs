//! Prospect routes: JSON and CSV imports (duplicates, invalid rows, malformed
//! files, 501 rows), the list (status filter, latest email, pages) and delete.

use serde_json::{Value, json};

use crate::client::{
    audited, campaign, count, email_row, emails, get, import, json, request, user, user_on,
};
use crate::on_both;
use crate::support::{Backend, TestServer};

const IN_CAMPAIGN: &str = "SELECT COUNT(*) AS n FROM prospects WHERE campaign_id = $1";

async fn json_import_dedups_case_insensitively(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let ann = user_on(&server, "ann@example.com", "starter").await;
    let id = campaign(&server, &ann, "C").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/campaigns/{id}/prospects");
    let res = json(
        &server,
        &ann,
        "POST",
        &path,
        json!([
            {"email": "Ann@Example.com", "first_name": "Ann", "company": "Acme", "industry": "SaaS", "phone": "ignored"},
            {"email": "ann@example.COM"},
            {"email": "not an address"},
            {"first_name": "No email"},
            {"email": "bob@example.com", "title": "t".repeat(201)},
            {"email": "cy@example.com", "website": "https://cy.example"}
        ]),
    )
    .await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    let summary = res.json();
    assert_eq!(summary["imported"], 2);
    assert_eq!(summary["duplicates"], 1);
    let invalid: Vec<i64> = summary["invalid"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["row"].as_i64().unwrap())
        .collect();
    assert_eq!(invalid, vec![3, 4, 5]);
    assert!(
        summary["invalid"][2]["reason"]
            .as_str()
            .unwrap()
            .contains("title")
    );
    assert_eq!(count(&server, IN_CAMPAIGN, &id).await, 2);

    // Importing again: every valid row is now a duplicate.
    let again = json(
        &server,
        &ann,
        "POST",
        &path,
        json!([{"email": "ANN@example.com"}, {"email": "cy@example.com"}]),
    )
    .await
    .json();
    assert_eq!(
        (again["imported"].clone(), again["duplicates"].clone()),
        (json!(0), json!(2))
    );
    assert_eq!(count(&server, IN_CAMPAIGN, &id).await, 2);
    let listed = get(&server, &ann, &path).await.json();
    let ann_row = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["email"] == "Ann@Example.com")
        .unwrap()
        .clone();
    assert_eq!(ann_row["company"], "Acme");
    assert_eq!(ann_row["industry"], "SaaS");
    assert_eq!(ann_row["status"], "new");
    let records = audited(&server, "prospects.import").await;
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].actor.as_deref(), Some(ann.id.as_str()));
    assert_eq!(records[0].target_id.as_deref(), Some(id.as_str()));
    assert!(
        records[0].extra.contains("\"imported\":2"),
        "{}",
        records[0].extra
    );
    server.stop().await;
}

async fn csv_import(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let ann = user_on(&server, "ann@example.com", "starter").await;
    let id = campaign(&server, &ann, "C").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/campaigns/{id}/prospects");
    let csv = "\u{feff}Email,first_name,Company,notes\r\n\
               ann@example.com,Ann,\"Acme, Inc.\",x\r\n\
               ANN@example.com,Ann again,Acme,y\r\n\
               ,Nobody,None,z\r\n\
               bob@example.com,Bob,,\r\n";
    let res = request(
        &server,
        Some(&ann),
        "POST",
        &path,
        Some("text/csv; charset=utf-8"),
        csv,
        None,
    )
    .await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    let summary = res.json();
    assert_eq!(summary["imported"], 2);
    assert_eq!(summary["duplicates"], 1);
    assert_eq!(
        summary["invalid"],
        json!([{"row": 3, "reason": "`email` is required"}])
    );
    let companies: Vec<Option<String>> =
        sqlx::query_scalar("SELECT company FROM prospects WHERE campaign_id = $1 ORDER BY email")
            .bind(&id)
            .fetch_all(server.pool())
            .await
            .unwrap();
    assert_eq!(companies, vec![Some("Acme, Inc.".to_owned()), None]);
    server.stop().await;
}

async fn unreadable_imports_change_nothing(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let ann = user_on(&server, "ann@example.com", "scale").await;
    let id = campaign(&server, &ann, "C").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/campaigns/{id}/prospects");
    let rows_501: String = std::iter::once("email\n".to_owned())
        .chain(emails("r", 501).into_iter().map(|e| format!("{e}\n")))
        .collect();
    let json_501 = Value::Array(
        emails("j", 501)
            .into_iter()
            .map(|e| json!({"email": e}))
            .collect(),
    )
    .to_string();
    for (content_type, body, status, field) in [
        ("text/csv", "email,name\nann@example.com\n", 400, "body"),
        ("text/csv", "name,company\nAnn,Acme\n", 400, "email"),
        ("text/csv", "email\n", 422, "body"),
        ("text/csv", rows_501.as_str(), 422, "body"),
        ("application/json", json_501.as_str(), 422, "body"),
        ("application/json", "[]", 422, "body"),
        ("application/json", "{\"email\": \"a@b.io\"}", 422, "body"),
        ("application/json", "[{\"email\": 5}]", 422, "[0].email"),
        ("application/json", "[{\"email\": ", 400, "body"),
    ] {
        let res = request(
            &server,
            Some(&ann),
            "POST",
            &path,
            Some(content_type),
            body,
            None,
        )
        .await;
        let problem = res.assert_problem(status);
        assert_eq!(
            problem["errors"][0]["field"], field,
            "{content_type} {:.40}",
            body
        );
    }
    let res = request(
        &server,
        Some(&ann),
        "POST",
        &path,
        Some("application/xml"),
        "<x/>",
        None,
    )
    .await;
    res.assert_problem(415);
    assert_eq!(count(&server, IN_CAMPAIGN, &id).await, 0);
    assert_eq!(
        count(
            &server,
            "SELECT COUNT(*) AS n FROM plan_usage WHERE user_id = $1",
            &ann.id
        )
        .await,
        0
    );
    // 500 rows is the most, and fine.
    let res = import(&server, &ann, &id, &emails("ok", 500)).await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(res.json()["imported"], 500);
    server.stop().await;
}

async fn list_filters_pages_and_shows_latest_email(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let ann = user_on(&server, "ann@example.com", "starter").await;
    let id = campaign(&server, &ann, "C").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/campaigns/{id}/prospects");
    import(&server, &ann, &id, &emails("p", 5)).await;
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT id FROM prospects WHERE campaign_id = $1 ORDER BY email")
            .bind(&id)
            .fetch_all(server.pool())
            .await
            .unwrap();
    // p0 has two emails: the newest one's status shows.
    email_row(&server, &id, &ids[0], "rejected", 10).await;
    email_row(&server, &id, &ids[0], "approved", 20).await;
    sqlx::query("UPDATE prospects SET status = 'contacted' WHERE id = $1 OR id = $2")
        .bind(&ids[1])
        .bind(&ids[2])
        .execute(server.pool())
        .await
        .unwrap();

    let mut seen = Vec::new();
    let mut next = format!("{path}?limit=2");
    loop {
        let page = get(&server, &ann, &next).await.json();
        for p in page["items"].as_array().unwrap() {
            seen.push((
                p["id"].as_str().unwrap().to_owned(),
                p["latest_email_status"].clone(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => next = format!("{path}?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    let mut seen_ids: Vec<_> = seen.iter().map(|(i, _)| i.clone()).collect();
    seen_ids.sort();
    let mut all = ids.clone();
    all.sort();
    assert_eq!(seen_ids, all, "every prospect once");
    let p0 = seen.iter().find(|(i, _)| *i == ids[0]).unwrap();
    assert_eq!(p0.1, "approved");
    assert!(
        seen.iter()
            .filter(|(i, _)| *i != ids[0])
            .all(|(_, s)| s.is_null())
    );

    let contacted = get(&server, &ann, &format!("{path}?status=contacted"))
        .await
        .json();
    assert_eq!(contacted["items"].as_array().unwrap().len(), 2);
    for query in ["status=lost", "limit=0", "cursor=@@"] {
        get(&server, &ann, &format!("{path}?{query}"))
            .await
            .assert_problem(400);
    }
    server.stop().await;
}

async fn delete_prospect(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let ann = user(&server, "ann@example.com").await;
    let id = campaign(&server, &ann, "C").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    import(&server, &ann, &id, &emails("p", 2)).await;
    let prospect: String =
        sqlx::query_scalar("SELECT id FROM prospects WHERE campaign_id = $1 LIMIT 1")
            .bind(&id)
            .fetch_one(server.pool())
            .await
            .unwrap();
    let email = email_row(&server, &id, &prospect, "draft", 1).await;
    let res = json(
        &server,
        &ann,
        "DELETE",
        &format!("/api/prospects/{prospect}"),
        Value::Null,
    )
    .await;
    assert_eq!(res.status, 204);
    assert_eq!(count(&server, IN_CAMPAIGN, &id).await, 1);
    assert_eq!(
        count(
            &server,
            "SELECT COUNT(*) AS n FROM generated_emails WHERE id = $1",
            &email
        )
        .await,
        0,
        "its emails go with it"
    );
    json(
        &server,
        &ann,
        "DELETE",
        &format!("/api/prospects/{prospect}"),
        Value::Null,
    )
    .await
    .assert_problem(404);
    let records = audited(&server, "prospect.delete").await;
    assert_eq!(records[0].target_id.as_deref(), Some(prospect.as_str()));
    server.stop().await;
}

async fn import_is_idempotent(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let ann = user(&server, "ann@example.com").await;
    let id = campaign(&server, &ann, "C").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/campaigns/{id}/prospects");
    let body = "email\nann@example.com\nbob@example.com\n";
    let first = request(
        &server,
        Some(&ann),
        "POST",
        &path,
        Some("text/csv"),
        body,
        Some("import-1"),
    )
    .await;
    let retry = request(
        &server,
        Some(&ann),
        "POST",
        &path,
        Some("text/csv"),
        body,
        Some("import-1"),
    )
    .await;
    assert_eq!(first.status, 200);
    assert_eq!(retry.status, 200);
    assert_eq!(
        retry.json(),
        first.json(),
        "the retry replays the first answer"
    );
    assert_eq!(retry.json()["imported"], 2);
    assert_eq!(count(&server, IN_CAMPAIGN, &id).await, 2);
    let used: i64 =
        sqlx::query_scalar("SELECT prospects_imported FROM plan_usage WHERE user_id = $1")
            .bind(&ann.id)
            .fetch_one(server.pool())
            .await
            .unwrap();
    assert_eq!(used, 2, "counted once");
    server.stop().await;
}

on_both!(
    import_is_idempotent,
    json_import_dedups_case_insensitively,
    csv_import,
    unreadable_imports_change_nothing,
    list_filters_pages_and_shows_latest_email,
    delete_prospect,
);
