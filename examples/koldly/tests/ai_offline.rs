//! The offline provider: the same input gives the same output, and every
//! draft keeps the rules (subject under 60 characters, body under 120 words,
//! no placeholder, no invented address), even for hostile or oversized input.

#[path = "support/ai_inputs.rs"]
mod ai_inputs;
use ai_inputs::{draft_task, prospect, sender};

use koldly::ai::{
    Call, LanguageModel, Offline,
    tasks::{
        CategorizeReply, DraftEmail, DraftFollowUp, DraftReply, EmailDraft, Icp, MAX_BODY_WORDS,
        MAX_SUBJECT_CHARS, ParseIcp, Prospect, ReplyCategory, Sender, addresses_in, placeholder_in,
        word_count,
    },
};

/// Asserts the rules every draft meets.
fn assert_rules(draft: &EmailDraft, known: &str) {
    assert!(
        draft.subject.chars().count() < MAX_SUBJECT_CHARS,
        "subject: {:?}",
        draft.subject
    );
    assert!(!draft.subject.trim().is_empty());
    assert!(
        word_count(&draft.body) < MAX_BODY_WORDS,
        "body has {} words: {}",
        word_count(&draft.body),
        draft.body
    );
    for text in [&draft.subject, &draft.body] {
        assert_eq!(placeholder_in(text), None, "placeholder in {text:?}");
        for address in addresses_in(text) {
            assert!(
                address.eq_ignore_ascii_case(known),
                "invented address {address} in {text:?}"
            );
        }
    }
}

#[tokio::test]
async fn the_offline_provider_is_deterministic_and_keeps_the_rules() {
    let model = Offline;
    let call = Call::new("user", 500);
    let long = "Supercalifragilistic ".repeat(30);
    let hostile = Prospect {
        email: "x@y.example".into(),
        first_name: Some("{{first_name}} [First Name] <b>".into()),
        last_name: None,
        company: Some(format!("{long} %COMPANY% contact sales@evil.example")),
        title: Some(long.clone()),
        industry: None,
        website: None,
    };
    let bare = Prospect {
        email: "someone@nowhere.example".into(),
        ..Prospect::default()
    };
    let wordy_sender = Sender {
        name: long.clone(),
        company: Some(long.clone()),
        product_description: format!("{long} write to me at bob@ledgerly.example {long}"),
    };
    let mut tasks = Vec::new();
    for p in [
        prospect("Ada"),
        prospect("Grace"),
        prospect("Linus"),
        hostile,
        bare,
    ] {
        for s in [sender(), wordy_sender.clone(), Sender::default()] {
            for feedback in [None, Some("shorter please".to_owned())] {
                tasks.push(DraftEmail {
                    sender: s.clone(),
                    icp: Some(Icp {
                        pain_points: vec![long.clone()],
                        ..Icp::default()
                    }),
                    prospect: p.clone(),
                    feedback,
                });
            }
        }
    }
    let mut subjects = std::collections::HashSet::new();
    for task in &tasks {
        let first = model.draft_email(&call, task).await.expect("a draft");
        let again = model.draft_email(&call, task).await.unwrap();
        assert_eq!(first, again, "same input, same output");
        assert_rules(&first, &task.prospect.email);
        subjects.insert(first.subject.clone());

        let follow_up = DraftFollowUp {
            sender: task.sender.clone(),
            prospect: task.prospect.clone(),
            previous: first.clone(),
            step: 2,
        };
        let next = model.draft_follow_up(&call, &follow_up).await.unwrap();
        assert_eq!(
            next,
            model.draft_follow_up(&call, &follow_up).await.unwrap()
        );
        assert_rules(&next, &task.prospect.email);
        assert!(next.subject.starts_with("Re: "), "{}", next.subject);

        let reply = DraftReply {
            sender: task.sender.clone(),
            prospect: task.prospect.clone(),
            original: first,
            reply_body: "Sounds interesting, tell me more".into(),
            category: None,
            return_date: None,
        };
        let answer = model.draft_reply(&call, &reply).await.unwrap();
        assert_rules(&answer, &task.prospect.email);
    }
    assert!(
        subjects.len() > 3,
        "prospects do not all get one subject: {subjects:?}"
    );

    // The draft uses the prospect, the sender and the ICP.
    let ada = model.draft_email(&call, &draft_task("Ada")).await.unwrap();
    assert!(ada.body.starts_with("Hi Ada,"), "{}", ada.body);
    assert!(ada.body.contains("Acme Analytics"), "{}", ada.body);
    assert!(ada.body.contains("reconciles invoices"), "{}", ada.body);
    assert!(ada.body.contains("month-end close"), "{}", ada.body);
    assert!(ada.body.ends_with("Bob Stone\nLedgerly"), "{}", ada.body);
    assert!(
        !ada.body.contains("many other things"),
        "one sentence of the pitch"
    );

    let category = model
        .categorize_reply(
            &call,
            &CategorizeReply {
                subject: Some("Automatic reply: back Monday".into()),
                body: "I am out of the office.".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(category.category, ReplyCategory::OutOfOffice);
    let icp = model
        .parse_icp(
            &call,
            &ParseIcp {
                description: "Fintech startups; we sell to the CFO. They waste days on manual \
                              reconciliation."
                    .into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(icp.industry.as_deref(), Some("Fintech"));
    assert_eq!(icp.job_titles, ["CFO"]);
    assert_eq!(
        icp.pain_points,
        ["They waste days on manual reconciliation"]
    );
}
