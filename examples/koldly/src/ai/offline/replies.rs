//! Filing replies by their words.

use crate::ai::tasks::ReplyCategory;

/// Files a reply by keywords, most specific first.
pub(super) fn categorize(text: &str) -> ReplyCategory {
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
}
