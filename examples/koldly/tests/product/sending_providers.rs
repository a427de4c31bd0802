//! The Mailgun-compatible provider against a fake on loopback, and real
//! koldly processes: two on one PostgreSQL send every row exactly once
//! (counted at the fake), and one killed with SIGKILL mid-send leaves its row
//! `unknown`, never resent.

use std::time::Duration;

use koldly::{http_client::CircuitSettings, sending::provider::MailgunConfig};
use serde_json::json;

use crate::{
    client::{get, user, user_on},
    on_both,
    sending::{advance, approved_campaign, send, set_clock, statuses, verified_sender, worker},
    support::{
        Backend, TestServer,
        fake_mailgun::{self, Answer, FakeMailgun, field},
        process::{self, wait_for},
    },
};

async fn start_with(backend: Backend, mailgun: &FakeMailgun) -> TestServer {
    start_tweaked(backend, mailgun, |c| c.sending.tick = None).await
}

/// A server sending through `mailgun`, after `tweak` adjusts its
/// configuration.
pub async fn start_tweaked(
    backend: Backend,
    mailgun: &FakeMailgun,
    tweak: impl FnOnce(&mut koldly::config::Config),
) -> TestServer {
    let base = mailgun.base();
    TestServer::start(backend, move |c| {
        tweak(c);
        c.sending.mailgun = Some(MailgunConfig {
            base,
            key: fake_mailgun::KEY.to_owned(),
        });
        // The circuit stays out of this test's way: it counts every failure.
        c.mail_circuit = CircuitSettings {
            min_calls: 100,
            open_for: Duration::from_secs(30),
        };
    })
    .await
}

async fn queue_row(
    server: &TestServer,
    campaign: &str,
    n: usize,
) -> (String, String, String, Option<String>) {
    sqlx::query_as(
        "SELECT q.id, q.status, COALESCE(q.last_error, '') AS e, q.provider_message_id FROM campaign_sending_queue q \
         JOIN prospects p ON p.id = q.prospect_id WHERE q.campaign_id = $1 ORDER BY p.email LIMIT 1 OFFSET $2",
    )
    .bind(campaign)
    .bind(n as i64)
    .fetch_one(server.pool())
    .await
    .unwrap()
}

async fn mailgun_failures_are_classified(backend: Backend) {
    let fake = FakeMailgun::start(vec![
        Answer::Status(429), // lead0: refused, retried within the call...
        Answer::Status(200), // ...and accepted
        Answer::Status(400), // lead1: refused for good
        Answer::Status(500), // lead2: may have been taken
        Answer::Status(503), // lead3: refused on every attempt of the call
        Answer::Status(503),
        Answer::Status(503),
        Answer::Status(503),
    ])
    .await;
    let server = start_with(backend, &fake).await;
    set_clock(&server, "2027-06-01T10:00:00Z");
    let ann = user(&server, "ann@example.com").await;
    let sender = verified_sender(&server, &ann, "sales@ann.example").await;
    let c = approved_campaign(&server, &ann, "lead", 4).await;
    let started = send(
        &server,
        &ann,
        &c,
        json!({"sender_id": sender, "window": {"start": 0, "end": 24}, "daily_limit": 1000}),
    )
    .await;
    assert_eq!(started.status, 200);
    let w = worker(&server);
    for _ in 0..4 {
        w.tick().await;
        advance(&server, 90);
    }
    let (lead0, status, _, provider_id) = queue_row(&server, &c, 0).await;
    assert_eq!(status, "sent");
    assert!(provider_id.unwrap().ends_with("@mg.example.com>"));
    let (_, status, error, _) = queue_row(&server, &c, 1).await;
    assert_eq!(status, "failed");
    assert!(error.contains("400"), "{error}");
    let (lead2, status, error, _) = queue_row(&server, &c, 2).await;
    assert_eq!(status, "unknown");
    assert!(error.contains("500"), "{error}");
    let (lead3, status, error, _) = queue_row(&server, &c, 3).await;
    assert_eq!(status, "queued", "queued again for a later tick");
    assert!(error.contains("503"), "{error}");
    let ids = fake.queue_ids();
    assert_eq!(ids.len(), 8);
    assert_eq!(&ids[..2], [lead0.clone(), lead0.clone()]);

    // The message as Mailgun got it.
    let message = &fake.received()[1];
    assert_eq!(
        field(message, "from"),
        Some("Ann Seller <sales@ann.example>")
    );
    assert_eq!(field(message, "to"), Some("lead0@example.com"));
    assert_eq!(field(message, "subject"), Some("Hi"));
    assert_eq!(
        field(message, "h:List-Unsubscribe-Post"),
        Some("List-Unsubscribe=One-Click")
    );
    assert!(
        field(message, "h:List-Unsubscribe")
            .unwrap()
            .starts_with("<http://127.0.0.1:8080/u/")
    );
    assert!(field(message, "html").unwrap().contains("Unsubscribe"));
    let message_id: String =
        sqlx::query_scalar("SELECT message_id FROM campaign_sending_queue WHERE id = $1")
            .bind(&lead0)
            .fetch_one(server.pool())
            .await
            .unwrap();
    assert_eq!(field(message, "h:Message-Id"), Some(message_id.as_str()));

    // Later ticks: lead3 goes out after its backoff; lead2 (unknown) never.
    for _ in 0..5 {
        advance(&server, 600);
        w.tick().await;
    }
    assert_eq!(queue_row(&server, &c, 3).await.1, "sent");
    let ids = fake.queue_ids();
    assert_eq!(
        ids.iter().filter(|id| **id == lead2).count(),
        1,
        "unknown is never resent"
    );
    assert_eq!(ids.iter().filter(|id| **id == lead3).count(), 5);
    let overview = get(&server, &ann, &format!("/api/campaigns/{c}/sending"))
        .await
        .json();
    assert_eq!(
        overview["counts"],
        json!({"queued": 0, "sending": 0, "sent": 2, "failed": 1, "cancelled": 0, "unknown": 1})
    );
}

on_both!(mailgun_failures_are_classified);

/// A koldly process (the real binary) on `database_url`, sending through
/// `mailgun` every 50 ms.
fn koldly_process(database_url: &str, mailgun: &FakeMailgun) -> tokio::process::Child {
    process::command(database_url)
        .env("MAIL_API_BASE", mailgun.base())
        .env("MAIL_API_KEY", fake_mailgun::KEY)
        .env("SENDING_TICK_MS", "50")
        .spawn()
        .expect("koldly starts")
}

fn postgres_available() -> bool {
    crate::support::common::service_url("DATABASE_URL").is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_postgres_send_every_row_exactly_once() {
    if !postgres_available() {
        return;
    }
    let fake = FakeMailgun::start(vec![]).await;
    let server = start_with(Backend::Postgres, &fake).await;
    let ann = user_on(&server, "ann@example.com", "scale").await;
    let sender = verified_sender(&server, &ann, "sales@ann.example").await;
    let mut campaigns = Vec::new();
    for i in 0..12 {
        let c = approved_campaign(&server, &ann, &format!("lead{i}-"), 1).await;
        let started = send(
            &server,
            &ann,
            &c,
            json!({"sender_id": sender, "window": {"start": 0, "end": 24}, "daily_limit": 1000}),
        )
        .await;
        assert_eq!(started.json()["queued"], 1);
        campaigns.push(c);
    }
    let url = server.handles.state.config.database_url.clone();
    let mut a = koldly_process(&url, &fake);
    let mut b = koldly_process(&url, &fake);
    wait_for("every row sent", async || {
        let sent: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM campaign_sending_queue WHERE status = 'sent'")
                .fetch_one(server.pool())
                .await
                .unwrap();
        sent == 12
    })
    .await;
    // A few more ticks of both: nothing is sent again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.kill().await.unwrap();
    b.kill().await.unwrap();
    let mut ids = fake.queue_ids();
    ids.sort();
    let mut distinct = ids.clone();
    distinct.dedup();
    assert_eq!(ids.len(), 12, "each row reached the provider once: {ids:?}");
    assert_eq!(distinct.len(), 12);
    for c in &campaigns {
        assert_eq!(statuses(&server, c).await, ["sent"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_mid_send_leaves_its_row_unknown_and_never_resends_it() {
    if !postgres_available() {
        return;
    }
    let fake = FakeMailgun::start(vec![Answer::Hang]).await;
    let server = start_with(Backend::Postgres, &fake).await;
    let ann = user(&server, "ann@example.com").await;
    let sender = verified_sender(&server, &ann, "sales@ann.example").await;
    let c = approved_campaign(&server, &ann, "lead", 1).await;
    let started = send(
        &server,
        &ann,
        &c,
        json!({"sender_id": sender, "window": {"start": 0, "end": 24}}),
    )
    .await;
    assert_eq!(started.json()["queued"], 1);
    let mut child = koldly_process(&server.handles.state.config.database_url, &fake);
    wait_for("the provider call", async || !fake.received().is_empty()).await;
    child.kill().await.expect("SIGKILL");
    assert_eq!(statuses(&server, &c).await, ["sending"]);

    let w = worker(&server);
    let report = w.tick().await;
    assert_eq!(
        (report.expired, report.sent),
        (0, 0),
        "leased to the dead process"
    );
    // Past the child's lease (taken on the system clock, 120 s).
    advance(&server, 300);
    let report = w.tick().await;
    assert_eq!((report.expired, report.resolved, report.sent), (1, 0, 0));
    for _ in 0..3 {
        advance(&server, 3600);
        assert_eq!(w.tick().await.sent, 0);
    }
    assert_eq!(statuses(&server, &c).await, ["unknown"]);
    assert_eq!(fake.received().len(), 1, "never resent");
    let overview = get(&server, &ann, &format!("/api/campaigns/{c}/sending"))
        .await
        .json();
    assert_eq!(overview["counts"]["unknown"], 1);
}
