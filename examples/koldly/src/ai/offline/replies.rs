//! Filing replies by their words.

use crate::ai::tasks::ReplyCategory;

/// Files a reply by keywords, most specific first.
pub(super) fn categorize(text: &str) -> ReplyCategory {
    classify(text).0
}

/// Files a reply by keywords, most specific first, with how sure the match
/// is: a delivery notice, an absence notice or an unsubscribe request is
/// unmistakable; a bare question mark much less so.
pub(super) fn classify(text: &str) -> (ReplyCategory, f64) {
    let text = text.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| text.contains(w));
    if has(&[
        "mailer-daemon",
        "delivery status notification",
        "undeliverable",
        "address not found",
        "delivery has failed",
    ]) {
        (ReplyCategory::Bounce, 0.95)
    } else if has(&[
        "out of office",
        "out of the office",
        "on vacation",
        "on holiday",
        "annual leave",
        "automatic reply",
        "auto-reply",
        "away from my desk",
        "limited access to email",
    ]) {
        (ReplyCategory::OutOfOffice, 0.9)
    } else if has(&[
        "unsubscribe",
        "remove me",
        "stop emailing",
        "take me off",
        "do not contact",
        "don't contact",
    ]) {
        (ReplyCategory::Unsubscribe, 0.9)
    } else if has(&[
        "not interested",
        "no thanks",
        "no thank you",
        "not a fit",
        "not a priority",
    ]) {
        (ReplyCategory::NotInterested, 0.85)
    } else if has(&[
        "too expensive",
        "no budget",
        "budget is",
        "already use",
        "already using",
        "already have",
        "already work with",
        "happy with our",
        "not the right time",
        "bad timing",
        "maybe next quarter",
        "maybe next year",
        "not convinced",
        "concerned about",
    ]) {
        (ReplyCategory::Objection, 0.75)
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
        (ReplyCategory::Interested, 0.8)
    } else if text.contains('?')
        || has(&["how much", "how does", "what does", "pricing", "wondering"])
    {
        (ReplyCategory::Question, 0.6)
    } else {
        (ReplyCategory::Other, 0.3)
    }
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
            ("Thanks for the note.", ReplyCategory::Other),
            ("Who are you?", ReplyCategory::Question),
            (
                "Honestly it is too expensive for a team our size.",
                ReplyCategory::Objection,
            ),
            ("We already use a tool for that.", ReplyCategory::Objection),
            ("How much does it cost per seat?", ReplyCategory::Question),
        ] {
            assert_eq!(categorize(text), category, "{text}");
        }
    }
}
