//! The typed tasks a [`LanguageModel`](super::LanguageModel) performs: their
//! inputs, their outputs, and the rules an output must meet before anyone
//! sees it. A provider's answer that does not deserialize into the output
//! type, or breaks a rule, is an [`AiError::InvalidAnswer`](super::AiError),
//! never a half-filled value.

use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// The longest subject, in characters (exclusive).
pub const MAX_SUBJECT_CHARS: usize = 60;
/// The longest body, in words (exclusive).
pub const MAX_BODY_WORDS: usize = 120;
/// The most job titles or pain points an ICP lists.
pub const MAX_ICP_ITEMS: usize = 10;
/// The longest text of one ICP field.
pub const MAX_ICP_FIELD_CHARS: usize = 200;

/// One task: its name, input and typed, validated output.
pub trait Task: Serialize + Send + Sync {
    /// A stable name (`draft_email`...): in usage rows, cache keys and config.
    const NAME: &'static str;
    /// What the task produces.
    type Output: Serialize + DeserializeOwned + Validate + Send;
    /// What the model is told to do (never user text: that goes in data
    /// blocks, see [`super::prompt`]).
    fn instructions(&self) -> &'static str;
    /// The email addresses an answer may mention (any other is invented).
    fn known_addresses(&self) -> Vec<&str> {
        Vec::new()
    }
}

/// The rules an output must meet.
pub trait Validate {
    /// `Err` names the first broken rule. `known` are the addresses the input
    /// mentions.
    fn validate(&self, known: &[&str]) -> Result<(), String>;
}

/// The person a campaign writes to, as imported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prospect {
    /// Their address (never invented: the only recipient address).
    pub email: String,
    /// Given name.
    pub first_name: Option<String>,
    /// Family name.
    pub last_name: Option<String>,
    /// Employer.
    pub company: Option<String>,
    /// Job title.
    pub title: Option<String>,
    /// Employer's industry.
    pub industry: Option<String>,
    /// Employer's website.
    pub website: Option<String>,
}

/// Who sends, and what they sell.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sender {
    /// The sender's name, for the signature.
    pub name: String,
    /// The sender's company.
    pub company: Option<String>,
    /// What the campaign offers, in the user's words.
    pub product_description: String,
}

/// An ideal customer profile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Icp {
    /// Target industry.
    pub industry: Option<String>,
    /// Target company size (`11-50`, `enterprise`...).
    pub company_size: Option<String>,
    /// Roles to write to.
    pub job_titles: Vec<String>,
    /// Problems the product solves for them.
    pub pain_points: Vec<String>,
    /// Why they should care, in one sentence.
    pub value_proposition: Option<String>,
}

impl Validate for Icp {
    fn validate(&self, known: &[&str]) -> Result<(), String> {
        for (field, items) in [
            ("job_titles", &self.job_titles),
            ("pain_points", &self.pain_points),
        ] {
            if items.len() > MAX_ICP_ITEMS {
                return Err(format!("{field} lists more than {MAX_ICP_ITEMS} items"));
            }
            for item in items {
                check_text(field, item, MAX_ICP_FIELD_CHARS, known)?;
            }
        }
        for (field, value) in [
            ("industry", &self.industry),
            ("company_size", &self.company_size),
            ("value_proposition", &self.value_proposition),
        ] {
            if let Some(value) = value {
                check_text(field, value, MAX_ICP_FIELD_CHARS, known)?;
            }
        }
        Ok(())
    }
}

/// An email ready for review: a subject and a plain-text body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailDraft {
    /// Under 60 characters, one line.
    pub subject: String,
    /// Under 120 words.
    pub body: String,
}

impl Validate for EmailDraft {
    fn validate(&self, known: &[&str]) -> Result<(), String> {
        let subject = self.subject.trim();
        if subject.is_empty() {
            return Err("the subject is empty".into());
        }
        if subject.chars().count() >= MAX_SUBJECT_CHARS {
            return Err(format!(
                "the subject has {MAX_SUBJECT_CHARS} characters or more"
            ));
        }
        if subject.contains(['\n', '\r']) {
            return Err("the subject spans several lines".into());
        }
        if self.body.trim().is_empty() {
            return Err("the body is empty".into());
        }
        let words = word_count(&self.body);
        if words >= MAX_BODY_WORDS {
            return Err(format!(
                "the body has {words} words; it must stay under {MAX_BODY_WORDS}"
            ));
        }
        check_text("subject", subject, MAX_SUBJECT_CHARS, known)?;
        check_text("body", &self.body, usize::MAX, known)
    }
}

/// How a reply to a campaign email is filed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyCategory {
    /// Wants to talk.
    Interested,
    /// Declined.
    NotInterested,
    /// An automatic absence notice.
    OutOfOffice,
    /// Pushed back (price, timing, a competitor) without closing the door.
    Objection,
    /// Asked something before deciding.
    Question,
    /// Asked to hear no more.
    Unsubscribe,
    /// A delivery failure notice.
    Bounce,
    /// Anything else.
    Other,
}

/// The answer of [`CategorizeReply`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyClassification {
    /// The category.
    pub category: ReplyCategory,
    /// How sure the classifier is, 0.0 to 1.0 (`None`: it did not say).
    #[serde(default)]
    pub confidence: Option<f64>,
    /// An out-of-office reply's return date, `YYYY-MM-DD` (`None`: not named).
    #[serde(default)]
    pub return_date: Option<String>,
}

impl ReplyClassification {
    /// `category` with no confidence or date.
    pub fn of(category: ReplyCategory) -> Self {
        Self {
            category,
            confidence: None,
            return_date: None,
        }
    }
}

impl Validate for ReplyClassification {
    fn validate(&self, _: &[&str]) -> Result<(), String> {
        if let Some(confidence) = self.confidence
            && !(0.0..=1.0).contains(&confidence)
        {
            return Err("the confidence is not between 0 and 1".into());
        }
        if let Some(date) = &self.return_date
            && !is_iso_date(date)
        {
            return Err("the return date is not a YYYY-MM-DD date".into());
        }
        Ok(())
    }
}

/// Whether `text` is a `YYYY-MM-DD` calendar date.
pub fn is_iso_date(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return false;
    };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return false;
    }
    let (Ok(y), Ok(m), Ok(d)) = (y.parse::<i32>(), m.parse::<u8>(), d.parse::<u8>()) else {
        return false;
    };
    time::Month::try_from(m)
        .ok()
        .and_then(|m| time::Date::from_calendar_date(y, m, d).ok())
        .is_some()
}

/// Turns a free-text description of the customers into an [`Icp`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParseIcp {
    /// The user's description.
    pub description: String,
}

impl Task for ParseIcp {
    const NAME: &'static str = "parse_icp";
    type Output = Icp;
    fn instructions(&self) -> &'static str {
        "Extract an ideal customer profile from the description in the `description` data block. \
         Answer with one JSON object and nothing else: {\"industry\": string or null, \
         \"company_size\": string or null, \"job_titles\": [string], \"pain_points\": [string], \
         \"value_proposition\": string or null}. At most 10 job titles and 10 pain points, \
         each under 200 characters. Do not include email addresses."
    }
}

/// The first email to a prospect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DraftEmail {
    /// Who sends and what they sell.
    pub sender: Sender,
    /// Whom the campaign targets, if known.
    pub icp: Option<Icp>,
    /// Whom this email is for.
    pub prospect: Prospect,
    /// The user's feedback on an earlier draft (regeneration).
    pub feedback: Option<String>,
}

impl Task for DraftEmail {
    const NAME: &'static str = "draft_email";
    type Output = EmailDraft;
    fn instructions(&self) -> &'static str {
        "Write a short, personal cold email from the sender to the prospect about the sender's \
         product, using the `sender`, `icp`, `prospect` and `feedback` data blocks. Answer with \
         one JSON object and nothing else: {\"subject\": string, \"body\": string}. The subject \
         is one line under 60 characters; the body is plain text under 120 words, signed with \
         the sender's name. Write final text: no placeholders or brackets to fill in. Mention \
         no email address."
    }
    fn known_addresses(&self) -> Vec<&str> {
        vec![self.prospect.email.as_str()]
    }
}

/// A follow-up to an email that got no answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DraftFollowUp {
    /// Who sends and what they sell.
    pub sender: Sender,
    /// Whom it is for.
    pub prospect: Prospect,
    /// The email sent before.
    pub previous: EmailDraft,
    /// Which follow-up this is (1 for the first).
    pub step: u32,
}

impl Task for DraftFollowUp {
    const NAME: &'static str = "draft_follow_up";
    type Output = EmailDraft;
    fn instructions(&self) -> &'static str {
        "Write a brief, polite follow-up to the email in the `previous` data block, which got no \
         answer, from the sender to the prospect. Answer with one JSON object and nothing else: \
         {\"subject\": string, \"body\": string}. The subject is one line under 60 characters; \
         the body is plain text under 120 words, signed with the sender's name. No placeholders. \
         Mention no email address."
    }
    fn known_addresses(&self) -> Vec<&str> {
        vec![self.prospect.email.as_str()]
    }
}

/// Files a prospect's reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategorizeReply {
    /// The reply's subject.
    pub subject: Option<String>,
    /// The reply's text.
    pub body: String,
}

impl Task for CategorizeReply {
    const NAME: &'static str = "categorize_reply";
    type Output = ReplyClassification;
    fn instructions(&self) -> &'static str {
        "Classify the email reply in the `reply` data block. Answer with one JSON object and \
         nothing else: {\"category\": one of \"interested\", \"not_interested\", \
         \"out_of_office\", \"objection\", \"question\", \"unsubscribe\", \"bounce\", \
         \"other\"; \"confidence\": a number from 0 to 1; \"return_date\": for an \
         out-of-office reply that names the day its writer is back, that day as YYYY-MM-DD, \
         else null}."
    }
}

/// An answer to a prospect's reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DraftReply {
    /// Who answers.
    pub sender: Sender,
    /// Who wrote.
    pub prospect: Prospect,
    /// The email the prospect answered.
    pub original: EmailDraft,
    /// What they wrote.
    pub reply_body: String,
    /// How the reply is filed, when known (the answer is written for it).
    #[serde(default)]
    pub category: Option<ReplyCategory>,
    /// An out-of-office reply's return date (`YYYY-MM-DD`).
    #[serde(default)]
    pub return_date: Option<String>,
}

impl Task for DraftReply {
    const NAME: &'static str = "draft_reply";
    type Output = EmailDraft;
    fn instructions(&self) -> &'static str {
        "Write the sender's answer to the prospect's reply in the `reply` data block, which \
         answers the email in the `original` data block, fitting the reply's `category` (and \
         `return_date`, for an out-of-office reply) when given. Answer with one JSON object and nothing \
         else: {\"subject\": string, \"body\": string}. The subject is one line under 60 \
         characters; the body is plain text under 120 words, signed with the sender's name. No \
         placeholders. Mention no email address."
    }
    fn known_addresses(&self) -> Vec<&str> {
        vec![self.prospect.email.as_str()]
    }
}

/// Words as a reader counts them: runs of non-whitespace.
pub fn word_count(text: &str) -> usize {
    text.split_whitespace().count()
}

/// Rejects text that is too long, still holds a template placeholder, or
/// mentions an email address the input did not.
fn check_text(field: &str, text: &str, max_chars: usize, known: &[&str]) -> Result<(), String> {
    if max_chars != usize::MAX && text.chars().count() > max_chars {
        return Err(format!("{field} is longer than {max_chars} characters"));
    }
    if let Some(placeholder) = placeholder_in(text) {
        return Err(format!(
            "{field} holds an unrendered placeholder `{placeholder}`"
        ));
    }
    for address in addresses_in(text) {
        if !known.iter().any(|k| k.eq_ignore_ascii_case(address)) {
            return Err(format!(
                "{field} mentions an email address not in the input"
            ));
        }
    }
    Ok(())
}

/// The first template placeholder in `text`: `{{…}}`, `{…}`, `[First Name]`-style
/// brackets, `<…>` or `%…%` tokens.
pub fn placeholder_in(text: &str) -> Option<&str> {
    for (open, close) in [("{{", "}}"), ("{", "}"), ("[", "]"), ("<", ">")] {
        if let Some(start) = text.find(open) {
            let rest = &text[start..];
            let end = rest.find(close).map_or(rest.len(), |e| e + close.len());
            return Some(&rest[..end.min(40)]);
        }
    }
    // `%NAME%` tokens: what sits between two `%` signs.
    text.split('%').skip(1).find(|candidate| {
        !candidate.is_empty()
            && candidate.len() <= 30
            && candidate
                .chars()
                .all(|c| c.is_ascii_uppercase() || c == '_')
    })
}

/// The email addresses in `text`: `local@domain.tld` tokens.
pub fn addresses_in(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| c.is_whitespace() || "(),;:<>\"'".contains(c))
        .map(|t| t.trim_end_matches(['.', '!', '?']))
        .filter(|t| {
            let Some((local, domain)) = t.split_once('@') else {
                return false;
            };
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(subject: &str, body: &str) -> EmailDraft {
        EmailDraft {
            subject: subject.into(),
            body: body.into(),
        }
    }

    #[test]
    fn drafts_break_no_rule() {
        assert!(
            draft("Hello Ada", "Short and fine.\n\nBob")
                .validate(&[])
                .is_ok()
        );
        let long_subject = "x".repeat(60);
        assert!(draft(&long_subject, "ok").validate(&[]).is_err());
        let long_body = "word ".repeat(120);
        assert!(draft("Hi", &long_body).validate(&[]).is_err());
        assert!(draft("Hi {{first_name}}", "ok").validate(&[]).is_err());
        assert!(draft("Hi", "Dear [First Name],").validate(&[]).is_err());
        assert!(draft("Hi", "Hello %FIRST_NAME%").validate(&[]).is_err());
        assert!(draft("", "ok").validate(&[]).is_err());
        assert!(draft("Two\nlines", "ok").validate(&[]).is_err());
        assert!(
            draft("Hi", "Write to sales@invented.example.")
                .validate(&[])
                .is_err()
        );
        assert!(
            draft("Hi", "Write to ada@acme.example.")
                .validate(&["Ada@Acme.example"])
                .is_ok()
        );
        assert!(draft("Hi", "We grew 50% last year.").validate(&[]).is_ok());
    }

    #[test]
    fn icps_break_no_rule() {
        let mut icp = Icp {
            job_titles: vec!["CTO".into()],
            ..Icp::default()
        };
        assert!(icp.validate(&[]).is_ok());
        icp.job_titles = vec!["CTO".into(); 11];
        assert!(icp.validate(&[]).is_err());
        icp.job_titles = vec!["x".repeat(201)];
        assert!(icp.validate(&[]).is_err());
    }
}
