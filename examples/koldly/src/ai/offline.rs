//! The offline provider: deterministic templates, no network, no key, no cost.
//!
//! The variant of a template is chosen by a SHA-256 of the prospect's address
//! (and moves on when the user gave feedback), so the same input always gives
//! the same output and different prospects do not all get the same words. User
//! text is cleaned before it is put in a template (brackets and braces that
//! would read as placeholders, and any word holding an `@`, are dropped) and
//! cut to a word budget, so every draft meets [`EmailDraft`]'s rules; each
//! result is validated once more before it is returned.

use sha2::{Digest, Sha256};

use super::{
    AiError, AiFuture, Call, LanguageModel,
    tasks::{
        CategorizeReply, DraftEmail, DraftFollowUp, DraftReply, EmailDraft, Icp,
        MAX_ICP_FIELD_CHARS, MAX_SUBJECT_CHARS, ParseIcp, Prospect, ReplyCategory,
        ReplyClassification, Sender, Task, Validate,
    },
};

/// The offline provider.
#[derive(Debug, Clone, Copy, Default)]
pub struct Offline;

impl LanguageModel for Offline {
    fn name(&self) -> &'static str {
        "offline"
    }

    fn parse_icp<'a>(&'a self, _: &'a Call, task: &'a ParseIcp) -> AiFuture<'a, Icp> {
        Box::pin(async move { checked(task, parse_icp(&task.description)) })
    }

    fn draft_email<'a>(&'a self, _: &'a Call, task: &'a DraftEmail) -> AiFuture<'a, EmailDraft> {
        Box::pin(async move { checked(task, draft_email(task)) })
    }

    fn draft_follow_up<'a>(
        &'a self,
        _: &'a Call,
        task: &'a DraftFollowUp,
    ) -> AiFuture<'a, EmailDraft> {
        Box::pin(async move { checked(task, draft_follow_up(task)) })
    }

    fn categorize_reply<'a>(
        &'a self,
        _: &'a Call,
        task: &'a CategorizeReply,
    ) -> AiFuture<'a, ReplyClassification> {
        Box::pin(async move {
            let text = format!("{}\n{}", task.subject.as_deref().unwrap_or(""), task.body);
            checked(
                task,
                ReplyClassification {
                    category: categorize(&text),
                },
            )
        })
    }

    fn draft_reply<'a>(&'a self, _: &'a Call, task: &'a DraftReply) -> AiFuture<'a, EmailDraft> {
        Box::pin(async move { checked(task, draft_reply(task)) })
    }
}

/// The output, validated like any provider's.
fn checked<T: Task>(task: &T, output: T::Output) -> Result<T::Output, AiError> {
    output
        .validate(&task.known_addresses())
        .map_err(AiError::InvalidAnswer)?;
    Ok(output)
}

/// User text fit for a template: no placeholder-like brackets, no address,
/// whitespace collapsed, at most `max_words` words.
fn clean(text: &str, max_words: usize) -> String {
    text.split_whitespace()
        .filter(|w| !w.contains('@'))
        .map(|w| w.replace(['{', '}', '[', ']', '<', '>', '%'], ""))
        .filter(|w| !w.is_empty())
        .take(max_words)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `clean` of an optional field; `None` when nothing is left.
fn field(value: &Option<String>, max_words: usize) -> Option<String> {
    value
        .as_deref()
        .map(|v| clean(v, max_words))
        .filter(|v| !v.is_empty())
}

/// At most `max` characters, cut at a word boundary when there is one.
fn fit(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let cut: String = text.chars().take(max).collect();
    match cut.rfind(' ') {
        Some(space) if space > 0 => cut[..space].to_owned(),
        _ => cut,
    }
}

/// The first sentence of `text`, without its final punctuation.
fn first_sentence(text: &str) -> String {
    let end = text.find(['.', '!', '?', '\n']).unwrap_or(text.len());
    text[..end].trim().to_owned()
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) if chars.clone().next().is_some_and(|n| n.is_lowercase()) => {
            c.to_lowercase().chain(chars).collect()
        }
        _ => text.to_owned(),
    }
}

/// A stable number in `0..n` from `key`.
fn variant(key: &str, n: usize) -> usize {
    let digest = Sha256::digest(key.to_lowercase().as_bytes());
    usize::from(digest[0]) % n
}

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

fn draft_email(task: &DraftEmail) -> EmailDraft {
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

fn draft_follow_up(task: &DraftFollowUp) -> EmailDraft {
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

fn draft_reply(task: &DraftReply) -> EmailDraft {
    let f = facts(&task.sender, &task.prospect);
    let middle = match categorize(&task.reply_body) {
        ReplyCategory::Interested => {
            "Thanks for getting back to me. Glad this sounds useful. Would Tuesday or Thursday \
             afternoon work for a 15-minute call? Send any time that suits you."
        }
        ReplyCategory::NotInterested | ReplyCategory::Unsubscribe => {
            "Thanks for letting me know. I will not follow up again. All the best."
        }
        _ => "Thanks for your reply. Happy to answer any question you have.",
    };
    EmailDraft {
        subject: subject(&[
            re(&clean(&task.original.subject, 10)),
            "Thanks for your reply".to_owned(),
        ]),
        body: format!("{}\n\n{middle}\n\nBest,\n{}", f.greeting, f.signature),
    }
}

/// Files a reply by keywords, most specific first.
fn categorize(text: &str) -> ReplyCategory {
    let text = text.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| text.contains(w));
    if has(&[
        "mailer-daemon",
        "delivery status notification",
        "undeliverable",
        "address not found",
        "delivery has failed",
    ]) {
        ReplyCategory::Bounce
    } else if has(&[
        "out of office",
        "out of the office",
        "on vacation",
        "annual leave",
        "automatic reply",
        "auto-reply",
    ]) {
        ReplyCategory::OutOfOffice
    } else if has(&[
        "unsubscribe",
        "remove me",
        "stop emailing",
        "take me off",
        "do not contact",
    ]) {
        ReplyCategory::Unsubscribe
    } else if has(&[
        "not interested",
        "no thanks",
        "no thank you",
        "not a fit",
        "not a priority",
    ]) {
        ReplyCategory::NotInterested
    } else if has(&[
        "interested",
        "let's talk",
        "lets talk",
        "tell me more",
        "sounds good",
        "book a",
        "schedule",
        "demo",
        "call",
    ]) {
        ReplyCategory::Interested
    } else {
        ReplyCategory::Other
    }
}

const INDUSTRIES: &[(&str, &str)] = &[
    ("saas", "SaaS"),
    ("software", "Software"),
    ("fintech", "Fintech"),
    ("healthcare", "Healthcare"),
    ("e-commerce", "E-commerce"),
    ("ecommerce", "E-commerce"),
    ("manufacturing", "Manufacturing"),
    ("logistics", "Logistics"),
    ("education", "Education"),
    ("real estate", "Real estate"),
    ("marketing agenc", "Marketing agencies"),
    ("retail", "Retail"),
    ("construction", "Construction"),
];

const TITLES: &[&str] = &[
    "CEO",
    "CTO",
    "CFO",
    "COO",
    "CMO",
    "Founder",
    "VP of Sales",
    "VP of Marketing",
    "VP of Engineering",
    "Head of Sales",
    "Head of Marketing",
    "Head of Growth",
    "Engineering Manager",
    "Sales Manager",
    "Operations Manager",
    "Owner",
];

const PAIN_WORDS: &[&str] = &[
    "struggle", "pain", "problem", "waste", "slow", "manual", "hard to", "costly", "lose",
];

const SIZES: &[(&str, &str)] = &[
    ("enterprise", "enterprise"),
    ("startup", "startup"),
    ("small business", "small business"),
    ("smb", "small business"),
    ("mid-market", "mid-market"),
];

fn parse_icp(description: &str) -> Icp {
    let lower = description.to_lowercase();
    let industry = INDUSTRIES
        .iter()
        .find(|(needle, _)| lower.contains(needle))
        .map(|(_, name)| (*name).to_owned());
    let job_titles = TITLES
        .iter()
        .filter(|t| contains_word(&lower, &t.to_lowercase()))
        .map(|t| (*t).to_owned())
        .collect();
    let company_size = employee_range(&lower).or_else(|| {
        SIZES
            .iter()
            .find(|(needle, _)| lower.contains(needle))
            .map(|(_, size)| (*size).to_owned())
    });
    let pain_points = description
        .split(['.', '!', '?', '\n'])
        .map(str::trim)
        .filter(|s| {
            let s = s.to_lowercase();
            PAIN_WORDS.iter().any(|w| s.contains(w))
        })
        .map(|s| fit(&clean(s, 40), MAX_ICP_FIELD_CHARS))
        .filter(|s| !s.is_empty())
        .take(3)
        .collect();
    Icp {
        industry,
        company_size,
        job_titles,
        pain_points,
        value_proposition: None,
    }
}

/// Whether `needle` occurs in `haystack` between non-alphanumeric characters.
fn contains_word(haystack: &str, needle: &str) -> bool {
    haystack.match_indices(needle).any(|(at, _)| {
        let before = haystack[..at].chars().next_back();
        let after = haystack[at + needle.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

/// `10-50` (or `10 to 50`) followed by "employees" or "people".
fn employee_range(lower: &str) -> Option<String> {
    let words: Vec<&str> = lower.split_whitespace().collect();
    words.iter().enumerate().find_map(|(i, w)| {
        let next = words.get(i + 1)?;
        if !(next.starts_with("employee") || next.starts_with("people")) {
            return None;
        }
        let range = if i >= 2 && words[i - 1] == "to" {
            format!("{}-{}", words[i - 2], w)
        } else {
            (*w).to_owned()
        };
        let valid = range
            .split('-')
            .all(|n| !n.is_empty() && n.trim_end_matches('+').chars().all(|c| c.is_ascii_digit()));
        valid.then_some(range)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_filed_by_their_words() {
        for (text, category) in [
            (
                "Yes, I'm interested. Can we talk Tuesday?",
                ReplyCategory::Interested,
            ),
            ("Not interested, thanks.", ReplyCategory::NotInterested),
            (
                "I am out of the office until Monday.",
                ReplyCategory::OutOfOffice,
            ),
            (
                "Please remove me from your list",
                ReplyCategory::Unsubscribe,
            ),
            (
                "Delivery Status Notification (Failure)",
                ReplyCategory::Bounce,
            ),
            ("Who are you?", ReplyCategory::Other),
        ] {
            assert_eq!(categorize(text), category, "{text}");
        }
    }

    #[test]
    fn icps_are_read_from_descriptions() {
        let icp = parse_icp(
            "We sell to SaaS companies with 50 to 200 employees. Our buyers are the CTO and the \
             VP of Engineering. They struggle with flaky deploys. They like coffee.",
        );
        assert_eq!(icp.industry.as_deref(), Some("SaaS"));
        assert_eq!(icp.company_size.as_deref(), Some("50-200"));
        assert_eq!(icp.job_titles, ["CTO", "VP of Engineering"]);
        assert_eq!(icp.pain_points, ["They struggle with flaky deploys"]);
        assert!(icp.validate(&[]).is_ok());
    }
}
