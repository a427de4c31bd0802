//! Plan limits: atomic under concurrency, and no way around them through
//! duplicate, unarchive or repeated imports.

use std::time::Duration;

use serde_json::{Value, json};

use crate::client::{
    User, all_at_once, build, campaign, count, emails, import, json, user, user_on,
};
use crate::on_both;
use crate::support::{Backend, Reply, TestServer};

const ACTIVE: &str =
    "SELECT COUNT(*) AS n FROM campaigns WHERE user_id = $1 AND archived_at IS NULL";
const PROSPECTS: &str = "SELECT COUNT(*) AS n FROM prospects WHERE user_id = $1";

fn assert_plan_limit(res: &Reply, limit: &str, plan: &str, usage: i64) {
    let problem = res.assert_problem(403);
    assert!(
        problem["type"].as_str().unwrap().ends_with("/plan-limit"),
        "{problem}"
    );
    assert_eq!(problem["limit"], limit);
    assert_eq!(problem["plan"], plan);
    assert_eq!(problem["usage"], usage);
}

/// Ten creates at once by a user one below the limit: exactly one wins.
async fn concurrent_creates_one_below_the_limit(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    for (email, plan, existing, allowed) in [
        ("free@example.com", "free", 0, 1),
        ("growth@example.com", "growth", 4, 5),
    ] {
        let who = user_on(&server, email, plan).await;
        for i in 0..existing {
            campaign(&server, &who, &format!("Existing {i}")).await;
        }
        let attempts = (0..10).map(|i| {
            build(
                &server,
                &who,
                "POST",
                "/api/campaigns",
                "application/json",
                json!({ "name": format!("Race {i}") }).to_string(),
            )
        });
        let results = all_at_once(attempts).await;
        let created = results.iter().filter(|r| r.status == 201).count();
        assert_eq!(created, 1, "{plan}: exactly one create wins");
        for refused in results.iter().filter(|r| r.status != 201) {
            assert_plan_limit(refused, "active_campaigns", plan, allowed);
        }
        assert_eq!(count(&server, ACTIVE, &who.id).await, allowed);
    }
    server.stop().await;
}

async fn duplicate_and_unarchive_cannot_pass_the_limit(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let ann = user(&server, "ann@example.com").await; // free: one active campaign
    let first = campaign(&server, &ann, "First").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = json(
        &server,
        &ann,
        "POST",
        &format!("/api/campaigns/{first}/duplicate"),
        Value::Null,
    )
    .await;
    assert_plan_limit(&res, "active_campaigns", "free", 1);
    // Archive the first, make a second, then try to bring the first back.
    let archive = json(
        &server,
        &ann,
        "PUT",
        &format!("/api/campaigns/{first}/archive"),
        Value::Null,
    )
    .await;
    assert_eq!(archive.status, 200);
    let second = json(
        &server,
        &ann,
        "POST",
        &format!("/api/campaigns/{first}/duplicate"),
        Value::Null,
    )
    .await;
    assert_eq!(second.status, 201, "an archived campaign does not count");
    let res = json(
        &server,
        &ann,
        "PUT",
        &format!("/api/campaigns/{first}/unarchive"),
        Value::Null,
    )
    .await;
    assert_plan_limit(&res, "active_campaigns", "free", 1);
    let still: Value = crate::client::get(&server, &ann, &format!("/api/campaigns/{first}"))
        .await
        .json();
    assert_eq!(
        still["archived"], true,
        "a refused unarchive changes nothing"
    );
    assert_eq!(count(&server, ACTIVE, &ann.id).await, 1);
    let denied = crate::client::audited(&server, "campaign.unarchive").await;
    assert_eq!(denied[0].outcome, "denied");
    assert_eq!(
        denied[0].reason.as_deref(),
        Some("plan limit: active_campaigns")
    );
    server.stop().await;
}

async fn imports_count_per_month_and_deletes_give_nothing_back(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let ann = user_on(&server, "ann@example.com", "growth").await;
    crate::client::set_plan(&server, &ann, "free").await; // 25 a month
    let a = campaign(&server, &ann, "A").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        import(&server, &ann, &a, &emails("a", 20)).await.status,
        200
    );
    let over = import(&server, &ann, &a, &emails("b", 10)).await;
    assert_plan_limit(&over, "prospects_per_month", "free", 20);
    assert_eq!(
        count(&server, PROSPECTS, &ann.id).await,
        20,
        "all or nothing"
    );
    // Deleting prospects does not free the month's allowance.
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM prospects WHERE user_id = $1 AND email LIKE 'a1_@example.com'",
    )
    .bind(&ann.id)
    .fetch_all(server.pool())
    .await
    .unwrap();
    assert_eq!(ids.len(), 10);
    for id in &ids {
        let res = json(
            &server,
            &ann,
            "DELETE",
            &format!("/api/prospects/{id}"),
            Value::Null,
        )
        .await;
        assert_eq!(res.status, 204);
    }
    let again = import(&server, &ann, &a, &emails("c", 10)).await;
    assert_plan_limit(&again, "prospects_per_month", "free", 20);
    // Duplicates cost nothing: re-importing known addresses plus five new ones fits.
    let mut mixed = emails("a", 5);
    mixed.extend(emails("d", 5));
    let res = import(&server, &ann, &a, &mixed).await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(res.json()["imported"], 5);
    let full = import(&server, &ann, &a, &emails("e", 1)).await;
    assert_plan_limit(&full, "prospects_per_month", "free", 25);
    // Next month the allowance is back (after a new login: the session
    // token of 32 days ago has expired on the same clock).
    server.clock.advance(Duration::from_secs(32 * 24 * 3600));
    let ann = User {
        token: server
            .login("ann@example.com", "correct horse 42")
            .await
            .json()["token"]
            .as_str()
            .unwrap()
            .to_owned(),
        ..ann
    };
    assert_eq!(
        import(&server, &ann, &a, &emails("f", 25)).await.status,
        200
    );
    server.stop().await;
}

async fn concurrent_imports_share_one_allowance(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let ann: User = user(&server, "ann@example.com").await; // free: 25 a month
    let c = campaign(&server, &ann, "C").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let batches: Vec<Vec<String>> = (0..4).map(|i| emails(&format!("b{i}x"), 20)).collect();
    let path = format!("/api/campaigns/{c}/prospects");
    let attempts = batches.iter().map(|batch| {
        let rows: Vec<Value> = batch.iter().map(|e| json!({ "email": e })).collect();
        build(
            &server,
            &ann,
            "POST",
            &path,
            "application/json",
            Value::Array(rows).to_string(),
        )
    });
    let results = all_at_once(attempts).await;
    assert_eq!(results.iter().filter(|r| r.status == 200).count(), 1);
    for refused in results.iter().filter(|r| r.status != 200) {
        assert_plan_limit(refused, "prospects_per_month", "free", 20);
    }
    assert_eq!(count(&server, PROSPECTS, &ann.id).await, 20);
    server.stop().await;
}

on_both!(
    concurrent_creates_one_below_the_limit,
    duplicate_and_unarchive_cannot_pass_the_limit,
    imports_count_per_month_and_deletes_give_nothing_back,
    concurrent_imports_share_one_allowance,
);
