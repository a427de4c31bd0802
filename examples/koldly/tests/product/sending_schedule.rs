//! Sending on the job engine's schedule (`SENDING_TICK_MS`, an apalis-cron
//! schedule ticking every second here, on real time) in a running server,
//! on SQLite and PostgreSQL: due rows go out by themselves, each once
//! (counted at a fake Mailgun); the send window's spacing still follows the
//! manual clock; and a send under way at shutdown is cut off after the grace
//! period and left to the lease rules (`unknown`, never resent). Waits are
//! bounded polls for a condition, not fixed sleeps.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::{
    client::{get, user, user_on},
    on_both,
    sending::{advance, approved_campaign, send, set_clock, statuses, verified_sender},
    sending_providers::start_tweaked,
    support::{
        Backend, TestServer,
        fake_mailgun::{Answer, FakeMailgun},
        process::wait_for,
    },
};

/// The sending schedule ticks every second.
const TICK: Duration = Duration::from_secs(1);

async fn sorted_statuses(server: &TestServer, campaign: &str) -> Vec<String> {
    let mut statuses = statuses(server, campaign).await;
    statuses.sort();
    statuses
}

/// How many times the fake received each queue row, for the rows of
/// `campaign`.
async fn sends_per_row(server: &TestServer, fake: &FakeMailgun, campaign: &str) -> Vec<usize> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM campaign_sending_queue WHERE campaign_id = $1 ORDER BY id",
    )
    .bind(campaign)
    .fetch_all(server.pool())
    .await
    .unwrap();
    let received = fake.queue_ids();
    ids.iter()
        .map(|id| received.iter().filter(|r| *r == id).count())
        .collect()
}

async fn the_sending_schedule_sends_each_due_row_once(backend: Backend) {
    let fake = FakeMailgun::start(vec![]).await;
    let server = start_tweaked(backend, &fake, |c| c.sending.tick = Some(TICK)).await;
    set_clock(&server, "2027-06-01T10:00:00Z");
    // Two campaigns: a plan that allows them.
    let ann = user_on(&server, "ann@example.com", "scale").await;
    let sender = verified_sender(&server, &ann, "sales@ann.example").await;
    // Two rows: 1000 a day over 24 hours spaces them 86 s apart on the
    // manual clock, which only the test moves.
    let first = approved_campaign(&server, &ann, "lead", 2).await;
    let started = send(
        &server,
        &ann,
        &first,
        json!({"sender_id": sender, "window": {"start": 0, "end": 24}, "daily_limit": 1000}),
    )
    .await;
    assert_eq!(started.json()["queued"], 2);
    wait_for("the schedule to send the first row", async || {
        sorted_statuses(&server, &first).await == ["queued", "sent"]
    })
    .await;

    // A campaign started later goes out on a later tick, while the first
    // campaign's second row waits for its spacing: ticks went on, and none
    // sent a row twice.
    let second = approved_campaign(&server, &ann, "later", 1).await;
    let started = send(
        &server,
        &ann,
        &second,
        json!({"sender_id": sender, "window": {"start": 0, "end": 24}, "daily_limit": 1000}),
    )
    .await;
    assert_eq!(started.json()["queued"], 1);
    wait_for("the schedule to send the later campaign", async || {
        statuses(&server, &second).await == ["sent"]
    })
    .await;
    assert_eq!(sorted_statuses(&server, &first).await, ["queued", "sent"]);
    let mut first_sends = sends_per_row(&server, &fake, &first).await;
    first_sends.sort_unstable();
    assert_eq!(
        first_sends,
        [0, 1],
        "the first row reached the provider once"
    );

    // Past the spacing on the manual clock, the schedule sends the rest.
    advance(&server, 90);
    wait_for("the schedule to send the second row", async || {
        statuses(&server, &first).await == ["sent", "sent"]
    })
    .await;
    assert_eq!(sends_per_row(&server, &fake, &first).await, [1, 1]);
    assert_eq!(sends_per_row(&server, &fake, &second).await, [1]);
    assert_eq!(fake.received().len(), 3, "three rows, three sends");
    let overview = get(&server, &ann, &format!("/api/campaigns/{first}/sending"))
        .await
        .json();
    assert_eq!(overview["counts"]["sent"], 2);
    assert_eq!(overview["sent_today"], 2);
    server.stop().await;
}

async fn a_send_under_way_at_shutdown_is_left_to_the_lease_rules(backend: Backend) {
    let fake = FakeMailgun::start(vec![Answer::Hang]).await;
    let server = start_tweaked(backend, &fake, |c| {
        c.sending.tick = Some(TICK);
        // Shutdown reaches the sending schedule after the HTTP drain, and
        // well before the mail client's own 10 s attempt timeout would end
        // the call.
        c.shutdown_grace = Duration::from_secs(1);
        c.jobs.shutdown_grace = Duration::from_secs(1);
    })
    .await;
    set_clock(&server, "2027-06-01T10:00:00Z");
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
    wait_for("the provider call", async || !fake.received().is_empty()).await;
    assert_eq!(statuses(&server, &c).await, ["sending"]);

    // The provider never answers: stopping the schedule (the first step of
    // `AppHandles::close`) waits out its grace, not the call.
    let stopping = Instant::now();
    let sending = server.handles.sending.clone().expect("sending scheduled");
    sending
        .shutdown(server.handles.state.config.jobs.shutdown_grace)
        .await;
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    let server = server.restart().await;
    assert_eq!(
        statuses(&server, &c).await,
        ["sending"],
        "cut off mid-call: nothing recorded"
    );

    // The restarted server's schedule leaves the row to its lease (taken on
    // the manual clock, 120 s), then marks it unknown; it never resends it.
    advance(&server, 300);
    wait_for("the expired send to become unknown", async || {
        statuses(&server, &c).await == ["unknown"]
    })
    .await;
    let error: String =
        sqlx::query_scalar("SELECT last_error FROM campaign_sending_queue WHERE campaign_id = $1")
            .bind(&c)
            .fetch_one(server.pool())
            .await
            .unwrap();
    assert_eq!(
        error, "the worker stopped during the provider call; not resent",
        "the lease rules, not the cut-off call, decided"
    );
    let overview = get(&server, &ann, &format!("/api/campaigns/{c}/sending"))
        .await
        .json();
    assert_eq!(overview["counts"]["unknown"], 1);
    assert_eq!(fake.received().len(), 1, "never resent");
    server.stop().await;
}

on_both!(
    the_sending_schedule_sends_each_due_row_once,
    a_send_under_way_at_shutdown_is_left_to_the_lease_rules,
);
