//! The mail webhooks: Mailgun's signature (bad, wrong key, stale, replayed,
//! missing key), replies matched only through koldly's own Message-IDs (never
//! by the sender's address, never into another account), unmatched replies
//! stored nowhere, duplicate deliveries stored once, follow-ups halted by a
//! reply and by a bounce, and bounces and complaints suppressing the address
//! for the sending account only.

use std::time::Duration;

use koldly::clock::Clock;
use serde_json::json;

use crate::client::{User, campaign, get, user};
use crate::mailgun::{
    KEY, event, form, halt_reason, post_event, post_event_signed, post_form, post_reply, prospect,
    prospect_status, queue_row, queue_state, reply_fields, rows, signature_with, suppressed, token,
    with_key,
};
use crate::on_both;
use crate::support::{Backend, TestServer};

/// A campaign of `owner` that sent `lead` a message with Message-ID
/// `<{mid}>` and has a follow-up queued; returns (campaign, prospect, sent
/// row, queued row).
async fn sent_to(
    server: &TestServer,
    owner: &User,
    lead: &str,
    mid: &str,
) -> (String, String, String, String) {
    let c = campaign(server, owner, "Outreach").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let p = prospect(server, owner, &c, lead).await;
    let sent = queue_row(server, &c, &p, "sent", Some(&format!("<{mid}>"))).await;
    let queued = queue_row(server, &c, &p, "queued", None).await;
    (c, p, sent, queued)
}

async fn without_a_key_the_webhooks_answer_503(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    let res = post_reply(
        &server,
        &reply_fields("a@x.io", "<r@x.io>", "<m@k.io>", "hi"),
    )
    .await;
    let problem = res.assert_problem(503);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("MAIL_WEBHOOK_SIGNING_KEY")
    );
    post_event(
        &server,
        event("failed", Some("permanent"), "a@x.io", "m@k.io"),
    )
    .await
    .assert_problem(503);
    assert_eq!(rows(&server, "webhook_tokens").await, 0);
}

async fn signatures_are_checked(backend: Backend) {
    let server = TestServer::start(backend, with_key).await;
    let ann = user(&server, "ann@example.com").await;
    let (_, p, _, queued) = sent_to(&server, &ann, "lead@acme.example", "m1@koldly.test").await;
    let fields = reply_fields(
        "lead@acme.example",
        "<r1@mail.acme.example>",
        "<m1@koldly.test>",
        "Interested, tell me more",
    );
    let now = server.clock.now();

    // (timestamp, token, signature) that must all be refused with 403.
    let tok = token();
    let (ts, good_sig) = signature_with(KEY, now, &tok);
    let (_, wrong_key_sig) = signature_with("another-key", now, &tok);
    let (stale_ts, stale_sig) = signature_with(KEY, now - 301, &tok);
    let (future_ts, future_sig) = signature_with(KEY, now + 301, &tok);
    let refused = [
        (ts.clone(), tok.clone(), "00".repeat(32)),
        (ts.clone(), tok.clone(), wrong_key_sig),
        (ts.clone(), format!("{tok}x"), good_sig.clone()),
        (stale_ts, tok.clone(), stale_sig),
        (future_ts, tok.clone(), future_sig),
        (ts.clone(), tok.clone(), "not-hex".into()),
        (String::new(), String::new(), String::new()),
    ];
    for (ts, tok, sig) in &refused {
        let mut all = fields.clone();
        all.extend([
            ("timestamp", ts.as_str()),
            ("token", tok.as_str()),
            ("signature", sig.as_str()),
        ]);
        let res = post_form(&server, &form(&all)).await;
        let problem = res.assert_problem(403);
        assert_eq!(
            problem["type"],
            "https://koldly.dev/problems/webhook-signature"
        );
        let text = String::from_utf8_lossy(&res.body);
        assert!(!text.contains(KEY), "the key never shows: {text}");
        assert!(!text.contains(&good_sig), "nor the expected digest");
    }
    assert_eq!(rows(&server, "prospect_replies").await, 0);
    assert_eq!(rows(&server, "webhook_tokens").await, 0);
    assert_eq!(queue_state(&server, &queued).await.0, "queued");

    // A good signature 299 s old is accepted once; its replay is refused.
    server.clock.advance(Duration::from_secs(299));
    let mut good = fields.clone();
    good.extend([
        ("timestamp", ts.as_str()),
        ("token", tok.as_str()),
        ("signature", good_sig.as_str()),
    ]);
    let first = post_form(&server, &form(&good)).await;
    assert_eq!(
        first.status,
        200,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    assert_eq!(first.json(), json!({"stored": true, "duplicate": false}));
    let replay = post_form(&server, &form(&good)).await;
    replay.assert_problem(409);
    assert_eq!(rows(&server, "prospect_replies").await, 1);
    assert_eq!(prospect_status(&server, &p).await, "replied");

    // The same token on the event webhook is a replay too.
    let res = post_event_signed(
        &server,
        event("delivered", None, "lead@acme.example", "m1@koldly.test"),
        &ts,
        &tok,
        &good_sig,
    )
    .await;
    res.assert_problem(409);
    // Event signatures are checked like the inbound ones.
    let res = post_event_signed(
        &server,
        event(
            "failed",
            Some("permanent"),
            "lead@acme.example",
            "m1@koldly.test",
        ),
        &ts,
        &token(),
        &good_sig,
    )
    .await;
    res.assert_problem(403);
    assert!(suppressed(&server, &ann.id).await.is_empty());

    // Tokens past twice the tolerance are purged as deliveries arrive.
    assert_eq!(rows(&server, "webhook_tokens").await, 1);
    server.clock.advance(Duration::from_secs(601));
    let res = post_event(
        &server,
        event("opened", None, "lead@acme.example", "m1@koldly.test"),
    )
    .await;
    assert_eq!(res.json(), json!({"result": "ignored"}));
    assert_eq!(rows(&server, "webhook_tokens").await, 1, "only the new one");
}

async fn replies_reach_only_the_account_whose_message_they_answer(backend: Backend) {
    let server = TestServer::start(backend, with_key).await;
    let ann = user(&server, "ann@example.com").await;
    let bob = user(&server, "bob@example.com").await;
    // Both accounts wrote to the same person.
    let (_, ann_p, ann_sent, ann_queued) =
        sent_to(&server, &ann, "lead@acme.example", "ann-1@koldly.test").await;
    let (bob_c, bob_p, _, bob_queued) =
        sent_to(&server, &bob, "Lead@Acme.example", "bob-1@koldly.test").await;

    // A reply to Bob's message lands in Bob's inbox only.
    let res = post_reply(
        &server,
        &reply_fields(
            "Lead <lead@acme.example>",
            "<r1@mail.acme.example>",
            "<bob-1@koldly.test>",
            "Sounds good, let's talk",
        ),
    )
    .await;
    assert_eq!(res.json(), json!({"stored": true, "duplicate": false}));
    let bobs = get(&server, &bob, "/api/inbox/replies").await.json();
    assert_eq!(bobs["total"], 1);
    assert_eq!(bobs["items"][0]["campaign_id"], bob_c.as_str());
    assert_eq!(bobs["items"][0]["from_email"], "lead@acme.example");
    let anns = get(&server, &ann, "/api/inbox/replies").await.json();
    assert_eq!(anns["total"], 0);
    assert_eq!(anns["items"], json!([]));
    assert_eq!(
        get(&server, &ann, "/api/inbox/stats").await.json()["total"],
        0
    );
    // Bob's follow-up is halted; Ann's is not, and her prospect is untouched.
    assert_eq!(
        queue_state(&server, &bob_queued).await,
        ("cancelled".to_owned(), Some("halted: replied".to_owned()))
    );
    assert_eq!(prospect_status(&server, &bob_p).await, "replied");
    assert_eq!(
        halt_reason(&server, &bob_p).await.as_deref(),
        Some("replied")
    );
    assert_eq!(
        queue_state(&server, &ann_queued).await,
        ("queued".to_owned(), None)
    );
    assert_eq!(queue_state(&server, &ann_sent).await.0, "sent");
    assert_eq!(prospect_status(&server, &ann_p).await, "new");
    assert_eq!(halt_reason(&server, &ann_p).await, None);

    // The same reply delivered again (a new token) is stored once.
    let again = post_reply(
        &server,
        &reply_fields(
            "lead@acme.example",
            "<r1@mail.acme.example>",
            "<bob-1@koldly.test>",
            "Sounds good, let's talk",
        ),
    )
    .await;
    assert_eq!(again.json(), json!({"stored": true, "duplicate": true}));
    assert_eq!(rows(&server, "prospect_replies").await, 1);
    assert_eq!(rows(&server, "prospect_reply_inbox").await, 1);
    // One "reply received" analytics event for Bob, none for the duplicate.
    server.settle().await;
    let recorded = crate::client::count(
        &server,
        "SELECT COUNT(*) AS n FROM analytics_events WHERE user_id = $1 AND event_type = 'reply_received'",
        &bob.id,
    )
    .await;
    assert_eq!(recorded, 1);

    // A reply naming Ann's message only in References (a bare In-Reply-To of
    // another thread) is Ann's.
    let mut fields = reply_fields(
        "lead@acme.example",
        "<r2@mail.acme.example>",
        "<elsewhere@other.example>",
        "Forwarding to my colleague",
    );
    fields.retain(|(k, _)| *k != "References");
    fields.push(("References", "<x@y.example> <ann-1@koldly.test>"));
    assert_eq!(post_reply(&server, &fields).await.json()["stored"], true);
    assert_eq!(
        get(&server, &ann, "/api/inbox/replies").await.json()["total"],
        1
    );
    assert_eq!(
        queue_state(&server, &ann_queued).await,
        ("cancelled".to_owned(), Some("halted: replied".to_owned()))
    );
    assert_eq!(
        get(&server, &bob, "/api/inbox/replies").await.json()["total"],
        1
    );

    // Threading headers only inside `message-headers` (as some routes post
    // them) are read there.
    let headers = json!([
        ["Message-Id", "<r6@mail.acme.example>"],
        ["In-Reply-To", "<bob-1@koldly.test>"],
    ])
    .to_string();
    let res = post_reply(
        &server,
        &[
            ("sender", "lead@acme.example"),
            ("body-plain", "One more thing"),
            ("message-headers", headers.as_str()),
        ],
    )
    .await;
    assert_eq!(res.json(), json!({"stored": true, "duplicate": false}));
    assert_eq!(
        get(&server, &bob, "/api/inbox/replies").await.json()["total"],
        2
    );

    // A reply from a known prospect's address answering no message of
    // koldly's is stored nowhere, in no account.
    let unmatched = post_reply(
        &server,
        &reply_fields(
            "lead@acme.example",
            "<r3@mail.acme.example>",
            "<unknown@elsewhere.example>",
            "Hello again",
        ),
    )
    .await;
    assert_eq!(unmatched.status, 200);
    assert_eq!(
        unmatched.json(),
        json!({"stored": false, "duplicate": false})
    );
    let stored: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM prospect_replies WHERE provider_message_id = 'r3@mail.acme.example'",
    )
    .fetch_one(server.pool())
    .await
    .unwrap();
    assert_eq!(stored, 0);
    assert_eq!(rows(&server, "prospect_reply_inbox").await, 3);

    // Bad inputs name their field.
    let mut no_id = reply_fields("lead@acme.example", "", "<bob-1@koldly.test>", "x");
    no_id.retain(|(k, _)| *k != "Message-Id");
    let res = post_reply(&server, &no_id).await;
    assert_eq!(res.assert_problem(422)["errors"][0]["field"], "Message-Id");
    let res = post_reply(
        &server,
        &reply_fields("not an address", "<r4@x.io>", "<bob-1@koldly.test>", "x"),
    )
    .await;
    assert_eq!(res.assert_problem(422)["errors"][0]["field"], "sender");
    let res = post_reply(
        &server,
        &reply_fields("a@x.io", "<r5@x.io>", "<bob-1@koldly.test>", "nul\0here"),
    )
    .await;
    assert_eq!(res.assert_problem(422)["errors"][0]["field"], "body-plain");
    let res = crate::client::request(
        &server,
        None,
        "POST",
        "/api/webhooks/inbound",
        Some("application/json"),
        "{}",
        None,
    )
    .await;
    res.assert_problem(415);
    assert_eq!(rows(&server, "prospect_replies").await, 3);
}

async fn bounces_and_complaints_suppress_for_the_sending_account(backend: Backend) {
    let server = TestServer::start(backend, with_key).await;
    let ann = user(&server, "ann@example.com").await;
    let bob = user(&server, "bob@example.com").await;
    let (_, ann_p, _, ann_queued) =
        sent_to(&server, &ann, "lead@acme.example", "ann-1@koldly.test").await;
    let (_, bob_p, _, bob_queued) =
        sent_to(&server, &bob, "lead@acme.example", "bob-1@koldly.test").await;

    // A temporary failure changes nothing.
    let res = post_event(
        &server,
        event(
            "failed",
            Some("temporary"),
            "lead@acme.example",
            "ann-1@koldly.test",
        ),
    )
    .await;
    assert_eq!(res.json(), json!({"result": "ignored"}));
    assert_eq!(rows(&server, "suppressions").await, 0);

    // A hard bounce of Ann's message suppresses the address for Ann only and
    // halts her follow-up.
    let res = post_event(
        &server,
        event(
            "failed",
            Some("permanent"),
            "lead@acme.example",
            "ann-1@koldly.test",
        ),
    )
    .await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(res.json(), json!({"result": "suppressed"}));
    assert_eq!(
        suppressed(&server, &ann.id).await,
        [("lead@acme.example".to_owned(), "bounced".to_owned())]
    );
    assert!(suppressed(&server, &bob.id).await.is_empty());
    assert_eq!(
        queue_state(&server, &ann_queued).await,
        (
            "cancelled".to_owned(),
            Some("suppressed: bounced".to_owned())
        )
    );
    assert_eq!(prospect_status(&server, &ann_p).await, "bounced");
    assert_eq!(
        halt_reason(&server, &ann_p).await.as_deref(),
        Some("bounced")
    );
    assert_eq!(
        queue_state(&server, &bob_queued).await,
        ("queued".to_owned(), None)
    );
    assert_eq!(prospect_status(&server, &bob_p).await, "new");
    assert_eq!(halt_reason(&server, &bob_p).await, None);

    // A complaint about Bob's message (Message-ID with brackets this time).
    let res = post_event(
        &server,
        event(
            "complained",
            None,
            "lead@acme.example",
            "<bob-1@koldly.test>",
        ),
    )
    .await;
    assert_eq!(res.json(), json!({"result": "suppressed"}));
    assert_eq!(
        suppressed(&server, &bob.id).await,
        [("lead@acme.example".to_owned(), "complained".to_owned())]
    );
    assert_eq!(prospect_status(&server, &bob_p).await, "unsubscribed");
    assert_eq!(
        halt_reason(&server, &bob_p).await.as_deref(),
        Some("unsubscribed")
    );
    assert_eq!(queue_state(&server, &bob_queued).await.0, "cancelled");

    // A message koldly never sent: 200, nothing stored.
    let res = post_event(
        &server,
        event(
            "failed",
            Some("permanent"),
            "x@acme.example",
            "nobody@koldly.test",
        ),
    )
    .await;
    assert_eq!(res.json(), json!({"result": "unknown_message"}));
    assert_eq!(rows(&server, "suppressions").await, 2);

    // Bad inputs name their field.
    let res = post_event(
        &server,
        json!({"event": "failed", "severity": "permanent", "recipient": "x@acme.example"}),
    )
    .await;
    assert_eq!(
        res.assert_problem(422)["errors"][0]["field"],
        "event-data.message.headers.message-id"
    );
    let res = crate::client::request(
        &server,
        None,
        "POST",
        "/api/webhooks/mail-events",
        Some("application/json"),
        r#"{"event-data": {"event": "failed"}}"#,
        None,
    )
    .await;
    assert_eq!(res.assert_problem(422)["errors"][0]["field"], "signature");
    let res = crate::client::request(
        &server,
        None,
        "POST",
        "/api/webhooks/mail-events",
        Some("application/json"),
        "{not json",
        None,
    )
    .await;
    res.assert_problem(400);
    assert_eq!(rows(&server, "suppressions").await, 2);
}

on_both!(
    without_a_key_the_webhooks_answer_503,
    signatures_are_checked,
    replies_reach_only_the_account_whose_message_they_answer,
    bounces_and_complaints_suppress_for_the_sending_account,
);
