//! Onboarding: the first call creates the first campaign, a second updates it.

use serde_json::json;

use crate::client::{campaign, count, get, json, user};
use crate::on_both;
use crate::support::{Backend, TestServer};

const CAMPAIGNS: &str = "SELECT COUNT(*) AS n FROM campaigns WHERE user_id = $1";

async fn first_call_creates_second_updates(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let ann = user(&server, "ann@example.com").await;
    let before = get(&server, &ann, "/api/onboarding").await;
    assert_eq!(before.status, 200);
    assert_eq!(before.json(), json!({"completed": false}));

    let res = json(
        &server,
        &ann,
        "POST",
        "/api/onboarding",
        json!({"product_description": "A CRM", "icp_description": "Agencies", "sender_name": "Ann"}),
    )
    .await;
    assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
    let first = res.json();
    assert_eq!(first["completed"], true);
    let campaign_id = first["campaign_id"].as_str().unwrap().to_owned();
    let campaign = get(&server, &ann, &format!("/api/campaigns/{campaign_id}"))
        .await
        .json();
    assert_eq!(campaign["description"], "Agencies");
    assert_eq!(campaign["product_description"], "A CRM");

    let res = json(
        &server,
        &ann,
        "POST",
        "/api/onboarding",
        json!({"product_description": "A better CRM", "icp_description": "Studios", "sender_name": "Ann B"}),
    )
    .await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(res.json()["campaign_id"], campaign_id.as_str());
    assert_eq!(
        count(&server, CAMPAIGNS, &ann.id).await,
        1,
        "never duplicates"
    );
    let campaign = get(&server, &ann, &format!("/api/campaigns/{campaign_id}"))
        .await
        .json();
    assert_eq!(campaign["description"], "Studios");
    let now = get(&server, &ann, "/api/onboarding").await.json();
    assert_eq!(now["completed"], true);
    assert_eq!(now["sender_name"], "Ann B");
    assert_eq!(now["product_description"], "A better CRM");
    server.stop().await;
}

async fn onboarding_respects_the_campaign_limit(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let ann = user(&server, "ann@example.com").await;
    campaign(&server, &ann, "Made by hand").await;
    let res = json(
        &server,
        &ann,
        "POST",
        "/api/onboarding",
        json!({"product_description": "A CRM", "icp_description": "Agencies", "sender_name": "Ann"}),
    )
    .await;
    let problem = res.assert_problem(403);
    assert!(problem["type"].as_str().unwrap().ends_with("/plan-limit"));
    assert_eq!(problem["limit"], "active_campaigns");
    assert_eq!(count(&server, CAMPAIGNS, &ann.id).await, 1);
    assert_eq!(
        get(&server, &ann, "/api/onboarding").await.json()["completed"],
        false,
        "a refused onboarding stores nothing"
    );
    server.stop().await;
}

async fn bad_onboarding_bodies(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let ann = user(&server, "ann@example.com").await;
    for (body, field) in [
        (
            json!({"icp_description": "I", "sender_name": "S"}),
            "product_description",
        ),
        (
            json!({"product_description": "", "icp_description": "I", "sender_name": "S"}),
            "product_description",
        ),
        (
            json!({"product_description": "P", "icp_description": "I", "sender_name": "s".repeat(201)}),
            "sender_name",
        ),
        (
            json!({"product_description": "P", "icp_description": 3, "sender_name": "S"}),
            "icp_description",
        ),
    ] {
        let res = json(&server, &ann, "POST", "/api/onboarding", body.clone()).await;
        assert_eq!(
            res.assert_problem(422)["errors"][0]["field"],
            field,
            "{body}"
        );
    }
    assert_eq!(count(&server, CAMPAIGNS, &ann.id).await, 0);
    server.stop().await;
}

async fn onboarding_again_after_its_campaign_was_deleted(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let ann = user(&server, "ann@example.com").await;
    let answers = json!({"product_description": "A CRM", "icp_description": "Agencies", "sender_name": "Ann"});
    let first = json(&server, &ann, "POST", "/api/onboarding", answers.clone())
        .await
        .json();
    let old = first["campaign_id"].as_str().unwrap().to_owned();
    let res = json(
        &server,
        &ann,
        "DELETE",
        &format!("/api/campaigns/{old}"),
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(res.status, 204);
    assert_eq!(
        get(&server, &ann, "/api/onboarding").await.json()["campaign_id"],
        serde_json::Value::Null
    );
    let res = json(&server, &ann, "POST", "/api/onboarding", answers).await;
    assert_eq!(res.status, 201, "a new first campaign, under the limit");
    let new = res.json()["campaign_id"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(count(&server, CAMPAIGNS, &ann.id).await, 1);
    server.stop().await;
}

on_both!(
    onboarding_again_after_its_campaign_was_deleted,
    first_call_creates_second_updates,
    onboarding_respects_the_campaign_limit,
    bad_onboarding_bodies,
);
