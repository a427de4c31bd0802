//! The email templates: first emails, follow-ups and answers to replies.

use super::{
    replies::categorize,
    text::{clean, field, first_sentence, fit, lowercase_first, variant},
};
use crate::ai::tasks::{
    DraftEmail, DraftFollowUp, DraftReply, EmailDraft, MAX_SUBJECT_CHARS, Prospect, ReplyCategory,
    Sender,
};

struct Facts {
    greeting: String,
    first_name: Option<String>,
    company: Option<String>,
    title: Option<String>,
    product: String,
    signature: String,
}

fn facts(sender: &Sender, prospect: &Prospect) -> Facts {
    let first_name = field(&prospect.first_name, 3).map(|n| fit(&n, 20));
    let product = clean(&first_sentence(&sender.product_description), 30);
    let product = if product.is_empty() {
        "a tool that could save your team time".to_owned()
    } else {
        lowercase_first(&product)
    };
    let mut signature = clean(&sender.name, 4);
    if let Some(company) = field(&sender.company, 4) {
        signature = if signature.is_empty() {
            company
        } else {
            format!("{signature}\n{company}")
        };
    }
    if signature.is_empty() {
        signature = "The team".to_owned();
    }
    Facts {
        greeting: match &first_name {
            Some(name) => format!("Hi {name},"),
            None => "Hi there,".to_owned(),
        },
        first_name,
        company: field(&prospect.company, 5).map(|c| fit(&c, 30)),
        title: field(&prospect.title, 5),
        product,
        signature,
    }
}

/// The first subject of `candidates` under the limit (the last one is short).
fn subject(candidates: &[String]) -> String {
    candidates
        .iter()
        .find(|s| s.chars().count() < MAX_SUBJECT_CHARS)
        .cloned()
        .unwrap_or_else(|| "A quick question".to_owned())
}

pub(super) fn draft_email(task: &DraftEmail) -> EmailDraft {
    let f = facts(&task.sender, &task.prospect);
    let pick = (variant(&task.prospect.email, 3) + usize::from(task.feedback.is_some())) % 3;
    let company = f.company.clone().unwrap_or_else(|| "your team".to_owned());
    let pain = task
        .icp
        .as_ref()
        .and_then(|icp| icp.pain_points.first())
        .map(|p| clean(p, 15))
        .filter(|p| !p.is_empty());
    let role = match &f.title {
        Some(title) => format!("As {} at {company}, you", article(title)),
        None => format!("At {company}, you"),
    };
    let pain_line = match &pain {
        Some(p) => format!(
            "{role} probably know this one: {}. ",
            lowercase_first(p).trim_end_matches('.')
        ),
        None => String::new(),
    };
    let name_prefix = f
        .first_name
        .as_ref()
        .map(|n| format!("{n}, "))
        .unwrap_or_default();
    let (subjects, middle) = match pick {
        0 => (
            vec![
                format!("{name_prefix}a quick idea for {company}"),
                format!("A quick idea for {company}"),
            ],
            format!(
                "I'm reaching out because we built {}. {pain_line}I think it could help {company}.",
                f.product
            ),
        ),
        1 => (
            vec![
                format!("Question for {company}"),
                format!("{name_prefix}a question"),
            ],
            format!(
                "{pain_line}That is why we built {}, and teams like yours use it to move faster.",
                f.product
            ),
        ),
        _ => (
            vec![
                format!("{name_prefix}worth a look for {company}?"),
                format!("Worth a look for {company}?"),
            ],
            format!(
                "Short note: we offer {}. {pain_line}Happy to share how it would work for {company}.",
                f.product
            ),
        ),
    };
    let ask = match pick {
        0 => "Would a 15-minute call next week be useful?",
        1 => "Open to a short call to see if it fits?",
        _ => "Is this worth a quick chat?",
    };
    EmailDraft {
        subject: subject(&subjects),
        body: format!(
            "{}\n\n{middle}\n\n{ask}\n\nBest,\n{}",
            f.greeting, f.signature
        ),
    }
}

fn article(title: &str) -> String {
    let vowel = title
        .chars()
        .next()
        .is_some_and(|c| "AEIOUaeiou".contains(c));
    format!("{} {title}", if vowel { "an" } else { "a" })
}

fn re(subject: &str) -> String {
    let base = subject.trim_start_matches("Re: ");
    let candidate = format!("Re: {base}");
    if candidate.chars().count() < MAX_SUBJECT_CHARS {
        candidate
    } else {
        fit(&candidate, MAX_SUBJECT_CHARS - 1)
    }
}

pub(super) fn draft_follow_up(task: &DraftFollowUp) -> EmailDraft {
    let f = facts(&task.sender, &task.prospect);
    let line = match task.step {
        0 | 1 => "I wanted to bring my last note back to the top of your inbox.",
        2 => "I know inboxes get busy, so one more short nudge.",
        _ => "This is my last note on this; if the timing is wrong, no worries at all.",
    };
    let previous = clean(&task.previous.subject, 10);
    EmailDraft {
        subject: subject(&[re(&previous), "Following up".to_owned()]),
        body: format!(
            "{}\n\n{line} We built {}.\n\nWould a short call make sense?\n\nBest,\n{}",
            f.greeting, f.product, f.signature
        ),
    }
}

pub(super) fn draft_reply(task: &DraftReply) -> EmailDraft {
    let f = facts(&task.sender, &task.prospect);
    let category = task
        .category
        .unwrap_or_else(|| categorize(&task.reply_body));
    let middle = match category {
        ReplyCategory::Interested => format!(
            "Thanks for getting back to me. Glad this sounds useful. Would Tuesday or Thursday \
             afternoon work for a 15-minute call about {}? Send any time that suits you.",
            f.product
        ),
        ReplyCategory::Question => format!(
            "Thanks for the question. In short, we built {}. Happy to walk you through the \
             details on a short call, or to answer by email if you prefer.",
            f.product
        ),
        ReplyCategory::Objection => "That is a fair point, and thank you for being direct. Many \
             teams felt the same before trying it; a 15-minute look usually shows whether it is \
             worth it. If now is not the time, I am happy to check back later."
            .to_owned(),
        ReplyCategory::OutOfOffice => match &task.return_date {
            Some(date) if super::super::tasks::is_iso_date(date) => format!(
                "Thanks for letting me know you are away. I will follow up after you are back \
                 on {date}."
            ),
            _ => "Thanks for letting me know you are away. I will follow up once you are back."
                .to_owned(),
        },
        ReplyCategory::NotInterested | ReplyCategory::Unsubscribe | ReplyCategory::Bounce => {
            "Thanks for letting me know. I will not follow up again. All the best.".to_owned()
        }
        ReplyCategory::Other => {
            "Thanks for your reply. Happy to answer any question you have.".to_owned()
        }
    };
    EmailDraft {
        subject: subject(&[
            re(&clean(&task.original.subject, 10)),
            "Thanks for your reply".to_owned(),
        ]),
        body: format!("{}\n\n{middle}\n\nBest,\n{}", f.greeting, f.signature),
    }
}
