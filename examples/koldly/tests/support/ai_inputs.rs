//! The language model's test inputs, shared by `ai.rs` (the Anthropic
//! provider) and `ai_offline.rs` (the offline provider).

use koldly::ai::tasks::{DraftEmail, Icp, Prospect, Sender};

pub fn sender() -> Sender {
    Sender {
        name: "Bob Stone".into(),
        company: Some("Ledgerly".into()),
        product_description: "Ledgerly reconciles invoices and payments automatically for \
                              finance teams. It also does many other things."
            .into(),
    }
}

pub fn prospect(first_name: &str) -> Prospect {
    Prospect {
        email: format!("{}@acme.example", first_name.to_lowercase()),
        first_name: Some(first_name.into()),
        last_name: Some("Lovelace".into()),
        company: Some("Acme Analytics".into()),
        title: Some("Head of Finance".into()),
        industry: Some("SaaS".into()),
        website: Some("https://acme.example".into()),
    }
}

pub fn draft_task(first_name: &str) -> DraftEmail {
    DraftEmail {
        sender: sender(),
        icp: Some(Icp {
            pain_points: vec!["Month-end close takes two weeks of manual matching".into()],
            ..Icp::default()
        }),
        prospect: prospect(first_name),
        feedback: None,
    }
}
