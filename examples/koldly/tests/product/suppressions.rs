//! The suppression list: an address added is suppressed for that account only
//! (case-insensitively), and the account's queued messages to it are cancelled
//! with the reason; other accounts' queues are untouched.

use koldly::db::suppressions;

use crate::{
    client::{campaign, email_row, import, queue_row, user},
    on_both,
    support::{Backend, TestServer},
};

async fn queue_statuses(server: &TestServer, campaign: &str) -> Vec<(String, Option<String>)> {
    sqlx::query_as::<_, (String, Option<String>)>(
        "SELECT status, last_error FROM campaign_sending_queue WHERE campaign_id = $1 ORDER BY id",
    )
    .bind(campaign)
    .fetch_all(server.pool())
    .await
    .unwrap()
}

async fn queued_campaign(server: &TestServer, owner: &crate::client::User, to: &str) -> String {
    let c = campaign(server, owner, "Outreach").await;
    let id = c["id"].as_str().unwrap().to_owned();
    assert_eq!(
        import(server, owner, &id, &[to.to_owned()]).await.status,
        200
    );
    let prospect: String = sqlx::query_scalar("SELECT id FROM prospects WHERE campaign_id = $1")
        .bind(&id)
        .fetch_one(server.pool())
        .await
        .unwrap();
    let email = email_row(server, &id, &prospect, "approved", 1).await;
    queue_row(server, &id, &prospect, &email).await;
    id
}

async fn add_cancels_only_the_accounts_queue(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let ann = user(&server, "ann@example.com").await;
    let bob = user(&server, "bob@example.com").await;
    let anns = queued_campaign(&server, &ann, "Lead@Example.com").await;
    let bobs = queued_campaign(&server, &bob, "lead@example.com").await;

    let pool = server.pool();
    let first = suppressions::add(pool, &ann.id, " LEAD@example.COM ", "unsubscribed", 100)
        .await
        .unwrap();
    assert_eq!(
        first,
        suppressions::Suppressed {
            new: true,
            cancelled: 1
        }
    );
    assert_eq!(
        queue_statuses(&server, &anns).await,
        [(
            "cancelled".to_owned(),
            Some("suppressed: unsubscribed".to_owned())
        )]
    );
    assert_eq!(
        queue_statuses(&server, &bobs).await,
        [("queued".to_owned(), None)]
    );

    assert!(
        suppressions::is_suppressed(pool, &ann.id, "lead@EXAMPLE.com")
            .await
            .unwrap()
    );
    assert!(
        !suppressions::is_suppressed(pool, &bob.id, "lead@example.com")
            .await
            .unwrap()
    );

    // A second suppression keeps the first reason and cancels nothing more.
    let again = suppressions::add(pool, &ann.id, "lead@example.com", "bounced", 200)
        .await
        .unwrap();
    assert_eq!(
        again,
        suppressions::Suppressed {
            new: false,
            cancelled: 0
        }
    );
    assert_eq!(
        suppressions::reason(pool, &ann.id, "lead@example.com")
            .await
            .unwrap()
            .as_deref(),
        Some("unsubscribed")
    );
    server.stop().await;
}

on_both!(add_cancels_only_the_accounts_queue);
